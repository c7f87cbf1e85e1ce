"""Hostile input, fuzzed with hypothesis for a bounded number of examples: the gateway's
HTTP/signaling endpoints, the bus decoder, the vision pipeline on corrupt JPEGs, and the
audio path on odd PCM. Each bad input must get a clean rejection (a 4xx, or the module's
own error type) and leave the component serving.

Examples are drawn at random (no example database is written); a failure prints the
falsifying example and a reproduction blob (``@reproduce_failure``).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
import time

import av
import cv2
import msgspec
import numpy as np
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deploy.bench.media import face_frames
from inference.pipeline import CorruptFrameError, FrameAnalysis, jpeg_size
from inference.speech.transcriber import BadAudioError, Transcriber
from stream import contract, tokens
from stream.audio import AudioConverter, AudioFormatError, resample_to_16k_mono
from stream.gateway import GATEWAY, create_app
from stream.settings import GatewaySettings
from stream.vad import SpeechEnded, SpeechPaused, SpeechStarted, VadSegmenter, VadSettings

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    print_blob=True,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
SECRET = "fuzz-invitation-signing-key-0123456789abcdef"

# ---------------------------------------------------------------------------------------
# strategies

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    # json.dumps writes inf/nan as Infinity/NaN, and Python's json.loads (the gateway's
    # parser) reads them back: a client can send them.
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)
#: Bodies as bytes: arbitrary JSON, random bytes, and near-JSON garbage.
bodies = st.one_of(
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.sampled_from(
        [b"", b"{", b"[]", b"null", b'{"sdp": ', b"\xff\xfe{}", b'{"a":1}{"b":2}', b"1e999"]
    ),
)
#: Values of every JSON type (and a few nasty ones) for a field the gateway reads.
field_values = json_values | st.sampled_from(
    ["", " ", "\x00", "가" * 200, "v=0", float("inf"), -1, 10**30, True]
)


def profile_bodies() -> st.SearchStrategy[dict]:
    fields = st.sampled_from(["self_intro", "language", "years", "job_title", "company", "x"])
    typed = st.fixed_dictionaries(
        {},
        optional={
            "self_intro": st.text(max_size=60) | field_values,
            "language": st.sampled_from(["ko", "en", "fr", "", None, 1]) | field_values,
            "years": st.integers(-5, 100) | field_values,
            "job_title": st.text(max_size=120) | field_values,
            "company": st.text(max_size=120) | field_values,
        },
    )
    return typed | st.dictionaries(fields, field_values, max_size=6)


# ---------------------------------------------------------------------------------------
# the gateway over HTTP


@pytest.fixture(scope="module")
def offer_sdp() -> str:
    """A real aiortc offer (video + audio + data channel) without ICE candidates, so a
    mutated offer that is still accepted makes the gateway try no address at all."""
    from aiortc import RTCConfiguration, RTCPeerConnection

    async def make() -> str:
        pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        pc.createDataChannel("results")
        pc.addTransceiver("video", direction="sendonly")
        pc.addTransceiver("audio", direction="sendonly")
        await pc.setLocalDescription(await pc.createOffer())
        sdp = pc.localDescription.sdp
        await pc.close()
        return sdp

    sdp = asyncio.run(make())  # its own loop: the fixture is sync and module-scoped
    lines = [ln for ln in sdp.splitlines() if not ln.startswith("a=candidate")]
    lines = [
        ln.replace(ln.split()[-1], "127.0.0.1") if ln.startswith("c=IN IP4") else ln for ln in lines
    ]
    return "\r\n".join(lines) + "\r\n"


def _settings(**overrides) -> GatewaySettings:
    values = dict(
        dev_mode=True,
        session_burst=10_000,
        sessions_per_minute=60_000,
        max_sessions=10_000,
        offer_timeout_s=5,
        media_timeout_s=2,
    )
    values.update(overrides)
    return GatewaySettings(**values)


@pytest.fixture
async def gateway_client(nc, bus_settings):
    decoders = _decoder_threads()
    app = create_app(_settings(), bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as client:
        yield client
        await _assert_still_serving(client)
    assert app[GATEWAY].sessions == {}, "every session the fuzzers opened must be closed"
    # aiortc's receivers run non-daemon decoder threads: one left behind keeps the gateway
    # process from ever exiting
    assert _decoder_threads() <= decoders, "a peer connection's decoder thread was left"


@pytest.fixture
async def token_client(nc, bus_settings):
    app = create_app(_settings(dev_mode=False, token_secret=SECRET), bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as client:
        yield client
        await _assert_still_serving(client)


async def _assert_still_serving(client) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/")).status == 200


def _clean(status: int, allowed: set[int], what: str) -> None:
    assert status < 500, f"{what}: answered {status} (a server error)"
    assert status in allowed, f"{what}: unexpected status {status}"


async def _new_session(client) -> str:
    response = await client.post("/api/sessions", json={})
    assert response.status == 201
    return (await response.json())["session_id"]


async def _end(client, session: str) -> None:
    await client.post(f"/api/sessions/{session}/end")


@FUZZ
@given(body=bodies, content_type=st.sampled_from(["application/json", "text/plain", ""]))
async def test_session_creation_survives_any_body(gateway_client, body, content_type):
    headers = {"Content-Type": content_type} if content_type else {}
    response = await gateway_client.post("/api/sessions", data=body, headers=headers)
    _clean(response.status, {201, 400}, f"POST /api/sessions {body[:80]!r}")
    data = await response.json()
    if response.status == 201:
        await _end(gateway_client, data["session_id"])
    else:
        assert data["error"]


@FUZZ
@given(
    token=field_values | st.text(max_size=80) | st.sampled_from(["a.b", "a.é", "é.x", ".", "x."]),
    room=field_values,
    bearer=st.none()
    | st.text(
        # what an HTTP client can send in a header: no control characters
        alphabet=st.characters(min_codepoint=32, max_codepoint=255, exclude_characters="\x7f"),
        max_size=60,
    ),
)
async def test_invitation_checks_survive_any_token(token_client, token, room, bearer):
    """Whatever a client puts where the invitation goes: 401/403/400, never a 500."""
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    response = await token_client.post(
        "/api/sessions", json={"room": room, "token": token}, headers=headers
    )
    _clean(response.status, {400, 401, 403}, f"token {token!r}, room {room!r}")


@pytest.mark.parametrize("token", [5, 1.5, True, ["a.b"], {"a": "b"}])
async def test_once_a_bug_non_string_token_is_a_401(token_client, token):
    response = await token_client.post("/api/sessions", json={"room": "r", "token": token})
    assert response.status == 401


@pytest.mark.parametrize("where", ["body", "header"])
async def test_once_a_bug_non_ascii_signature_is_a_401(token_client, where):
    if where == "body":
        response = await token_client.post("/api/sessions", json={"room": "r", "token": "a.é"})
    else:
        response = await token_client.post(
            "/api/sessions", json={"room": "r"}, headers={"Authorization": "Bearer a.é"}
        )
    assert response.status == 401


async def test_a_genuine_invitation_still_works_after_fuzzing(token_client):
    token = tokens.issue(SECRET.encode(), "fuzz-room", 60, time.time())
    response = await token_client.post("/api/sessions", json={"room": "fuzz-room", "token": token})
    assert response.status == 201
    await _end(token_client, (await response.json())["session_id"])


@FUZZ
@given(body=bodies)
async def test_offer_survives_any_body(gateway_client, body):
    session = await _new_session(gateway_client)
    response = await gateway_client.post(f"/api/sessions/{session}/offer", data=body)
    _clean(response.status, {400}, f"offer body {body[:80]!r}")
    await _end(gateway_client, session)


def _mutations(sdp: str) -> st.SearchStrategy[str]:
    lines = sdp.split("\r\n")
    hostile = st.sampled_from(
        [
            "m=video 0 UDP/TLS/RTP/SAVPF",
            "m=video 9 UDP/TLS/RTP/SAVPF 96 " + "97 " * 500,
            "a=rtpmap:96",
            "a=rtpmap:96 VP8/-1",
            "a=fmtp:96 " + "x" * 5000,
            "a=fingerprint:sha-256 ZZ",
            "a=setup:bogus",
            "a=mid:" + "m" * 300,
            "a=ssrc:4294967296 cname:x",
            "a=sctp-port:-5",
            "a=max-message-size:-1",
            "a=ice-ufrag:",
            "a=group:BUNDLE 0 1 2 3 4 5",
            "c=IN IP4 127.0.0.1",
            "\x00\xff",
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel",
        ]
    )
    edits = st.lists(
        st.tuples(
            st.sampled_from(["delete", "duplicate", "replace", "insert", "truncate", "chars"]),
            st.integers(0, len(lines) - 1),
            hostile | st.text(alphabet=st.characters(codec="utf-8"), max_size=30),
        ),
        min_size=1,
        max_size=5,
    )

    def apply(ops) -> str:
        out = list(lines)
        for op, i, text in ops:
            i = min(i, len(out) - 1)
            if op == "delete" and len(out) > 1:
                del out[i]
            elif op == "duplicate":
                out.insert(i, out[i])
            elif op == "replace":
                out[i] = text
            elif op == "insert":
                out.insert(i, text)
            elif op == "truncate":
                return "\r\n".join(out)[: max(3, i * 7)]
            elif op == "chars" and out[i]:
                pos = len(text) % len(out[i])
                out[i] = out[i][:pos] + text + out[i][pos + 1 :]
        return "\r\n".join(out)

    return edits.map(apply)


async def test_the_unmutated_offer_is_answered(gateway_client, offer_sdp):
    """The fuzzed offers below start from something valid."""
    session = await _new_session(gateway_client)
    response = await gateway_client.post(
        f"/api/sessions/{session}/offer", json={"sdp": offer_sdp, "type": "offer"}
    )
    assert response.status == 200, await response.text()
    await _end(gateway_client, session)


async def test_an_offer_whose_video_has_no_mid_is_a_clean_400(gateway_client, offer_sdp):
    # found by the fuzzer below: without "a=mid" the video transceiver gets no DTLS
    # transport, aiortc's answer fails, and the teardown after it tripped over the missing
    # transport (500)
    lines = offer_sdp.split("\r\n")
    lines.remove("a=mid:0")
    decoders = _decoder_threads()
    session = await _new_session(gateway_client)
    response = await gateway_client.post(
        f"/api/sessions/{session}/offer", json={"sdp": "\r\n".join(lines), "type": "offer"}
    )
    _clean(response.status, {200, 400}, "an offer without the video's a=mid")
    if response.status == 200:
        await gateway_client.post(f"/api/sessions/{session}/end")
    # aiortc started a (non-daemon) decoder thread for the failed receiver: it must be
    # stopped, or the gateway process can never exit
    assert _decoder_threads() <= decoders


def _decoder_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.endswith("-decoder")}


@settings(FUZZ, max_examples=80)
@given(data=st.data(), sdp_type=st.sampled_from(["offer", "offer", "offer", "answer", ""]))
async def test_mutated_offers_are_rejected_or_answered(gateway_client, offer_sdp, data, sdp_type):
    sdp = data.draw(_mutations(offer_sdp), label="sdp")
    session = await _new_session(gateway_client)
    response = await gateway_client.post(
        f"/api/sessions/{session}/offer", json={"sdp": sdp, "type": sdp_type}
    )
    _clean(response.status, {200, 400}, f"offer {sdp[:300]!r}")
    await _end(gateway_client, session)


@FUZZ
@given(body=profile_bodies())
async def test_profile_survives_any_fields(gateway_client, body):
    session = await _new_session(gateway_client)
    response = await gateway_client.post(
        f"/api/sessions/{session}/profile", data=json.dumps(body).encode()
    )
    _clean(response.status, {202, 400}, f"profile {body!r}")
    if response.status == 400:
        assert (await response.json())["error"]
    again = await gateway_client.post(f"/api/sessions/{session}/profile", data=b"[1]")
    _clean(again.status, {400}, "second profile")
    await _end(gateway_client, session)


@pytest.mark.parametrize("years", [b"Infinity", b"-Infinity", b"1e400"])
async def test_once_a_bug_infinite_years_is_a_400(gateway_client, years):
    session = await _new_session(gateway_client)
    try:
        response = await gateway_client.post(
            f"/api/sessions/{session}/profile",
            data=b'{"self_intro": "hi", "years": ' + years + b"}",
        )
        assert response.status == 400
    finally:
        await _end(gateway_client, session)


SURROGATE_REASON = (
    'bug: a lone surrogate (valid JSON, e.g. "\\ud800") reaches str.encode / msgspec '
    "(UTF-8): UnicodeEncodeError → 500 (stream/gateway.py _read_json accepts it)"
)


@pytest.mark.parametrize("field", ["self_intro", "job_title", "company"])
async def test_once_a_bug_lone_surrogate_in_a_profile_is_a_400(gateway_client, field):
    session = await _new_session(gateway_client)
    try:
        body = json.dumps({"self_intro": "hello", field: "hi \ud800"}).encode()
        response = await gateway_client.post(f"/api/sessions/{session}/profile", data=body)
        assert response.status == 400
        retry = await gateway_client.post(
            f"/api/sessions/{session}/profile", json={"self_intro": "ok"}
        )
        assert retry.status == 202  # the bad one was not half-taken
    finally:
        await _end(gateway_client, session)


@pytest.mark.parametrize("where", ["token body", "signature", "room"])
async def test_once_a_bug_lone_surrogate_in_an_invitation_is_a_4xx(token_client, where):
    genuine = tokens.issue(SECRET.encode(), "r", 60, time.time())
    body = {
        "token body": {"room": "r", "token": "\ud800.x"},
        "signature": {"room": "r", "token": "ab.\ud800"},
        "room": {"room": "\ud800", "token": genuine},
    }[where]
    response = await token_client.post("/api/sessions", data=json.dumps(body).encode())
    assert 400 <= response.status < 500


async def test_once_a_bug_hostile_user_agent_still_records_the_session(
    gateway_client, nc, offer_sdp
):
    from stream import bus

    reader, writer = await asyncio.open_connection("127.0.0.1", gateway_client.server.port)
    writer.write(
        b"POST /api/sessions HTTP/1.1\r\nHost: x\r\nUser-Agent: \xff\xfe\r\n"
        b"Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"
    )
    await writer.drain()
    raw = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    created = json.loads(raw.split(b"\r\n\r\n", 1)[1])
    session, owner = created["session_id"], {"X-Session-Secret": created["session_secret"]}
    response = await gateway_client.post(
        f"/api/sessions/{session}/offer", json={"sdp": offer_sdp, "type": "offer"}, headers=owner
    )
    assert response.status == 200
    await gateway_client.post(f"/api/sessions/{session}/end", headers=owner)
    events = await bus.read_events(nc.jetstream(), contract.event_subject(session, "lifecycle"))
    assert [e.message.event for e in events] == ["started", "ended"]


@FUZZ
@given(
    session=st.text(min_size=1, max_size=80).filter(lambda s: "/" not in s and "?" not in s),
    body=bodies,
    action=st.sampled_from(["offer", "profile", "end", ""]),
)
async def test_unknown_sessions_are_404_whatever_the_id(gateway_client, session, body, action):
    path = f"/api/sessions/{session}" + (f"/{action}" if action else "")
    method = "GET" if not action else "POST"
    response = await gateway_client.request(method, path, data=body)
    _clean(response.status, {404, 405, 400}, f"{method} {path!r}")


@FUZZ
@given(
    presented=st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xFF, blacklist_characters="\x7f"),
        max_size=120,
    ),
    where=st.sampled_from(["header", "cookie"]),
    action=st.sampled_from(["offer", "profile", "leave", "resume", "end", ""]),
    body=bodies,
)
async def test_any_wrong_session_secret_is_a_403_and_touches_nothing(
    gateway_client, presented, where, action, body
):
    created = await (await gateway_client.post("/api/sessions", json={})).json()
    session, secret = created["session_id"], created["session_secret"]
    if presented == secret:
        return
    headers = (
        {"X-Session-Secret": presented}
        if where == "header"
        else {"Cookie": f"intervue_session={presented}"}
    )
    gateway_client.session.cookie_jar.clear()  # only what this example presents counts
    path = f"/api/sessions/{session}" + (f"/{action}" if action else "")
    response = await gateway_client.request(
        "POST" if action else "GET", path, data=body, headers=headers
    )
    _clean(response.status, {403}, f"{path} with secret {presented!r} in the {where}")
    assert gateway_client.server.app[GATEWAY].sessions[session].state == "created"
    await gateway_client.post(f"/api/sessions/{session}/end", headers={"X-Session-Secret": secret})


async def test_end_is_idempotent_and_takes_any_body(gateway_client):
    session = await _new_session(gateway_client)
    first = await gateway_client.post(f"/api/sessions/{session}/end", data=b"\xff\x00garbage")
    assert first.status == 204
    # the page's beacon after its goodbye on the data channel: the session has just ended
    second = await gateway_client.post(f"/api/sessions/{session}/end", data=b"{}")
    assert second.status == 204
    # a session that never existed is still unknown
    unknown = await gateway_client.post("/api/sessions/0123456789abcdef/end", data=b"{}")
    assert unknown.status == 404


async def test_huge_bodies_are_refused_before_they_are_read(gateway_client):
    session = await _new_session(gateway_client)
    cases = [
        ("/api/sessions", b"{" + b" " * (64 * 1024)),  # 16 kB limit
        (f"/api/sessions/{session}/offer", b'{"sdp": "v=0' + b"a" * (200 * 1024) + b'"}'),
        (f"/api/sessions/{session}/profile", b"[" + b"1," * (1024 * 1024) + b"1]"),
    ]
    for path, body in cases:
        response = await gateway_client.post(path, data=body)
        assert response.status in (400, 413), (path, response.status)
        if response.status == 400:
            assert "too large" in (await response.json())["error"]

    async def chunked():  # no Content-Length: the limit holds while reading
        for _ in range(40):
            yield b"x" * (64 * 1024)

    response = await gateway_client.post(f"/api/sessions/{session}/offer", data=chunked())
    assert response.status in (400, 413)
    await _end(gateway_client, session)


async def test_session_creation_rate_limit_holds_for_hostile_bodies(nc, bus_settings):
    """Hostile bodies are refused (400) before they cost a session or the address's
    bucket; valid requests from one address get 429 (with Retry-After) past the burst; a
    spoofed X-Forwarded-For does not buy a new bucket; the rest of the gateway keeps
    serving."""
    settings = _settings(session_burst=2, sessions_per_minute=6)
    app = create_app(settings, bus_settings, nc=nc)
    async with TestClient(TestServer(app)) as client:
        statuses = []
        for i in range(12):
            body = [b"{bad json", b"\xff" * 100, b'{"meta": 5}', b"{}"][i % 4]
            response = await client.post(
                "/api/sessions", data=body, headers={"X-Forwarded-For": f"10.0.0.{i}"}
            )
            statuses.append(response.status)
            if response.status == 201:
                await _end(client, (await response.json())["session_id"])
            if response.status == 429:
                assert int(response.headers["Retry-After"]) >= 1
        assert statuses == [400, 400, 400, 201] * 2 + [400, 400, 400, 429]
        await _assert_still_serving(client)


# ---------------------------------------------------------------------------------------
# the bus contract


def _valid_messages() -> list[contract.BusMessage]:
    now = contract.now_ms()
    face = contract.Face(
        box=(1.0, 2.0, 3.0, 4.0),
        detector_score=0.9,
        probs={e: 1 / 7 for e in contract.EMOTIONS},
        label="happy",
        confidence=1 / 7,
        valence="positive",
    )
    return [
        contract.Frame(
            session="s", seq=1, capture_ms=now, sent_ms=now, width=2, height=2, jpeg=b"\xff\xd8"
        ),
        contract.EmotionResult(
            session="s",
            seq=1,
            capture_ms=now,
            frame_sent_ms=now,
            done_ms=now,
            width=2,
            height=2,
            faces=[face],
        ),
        contract.ScoreUpdate(
            session="s",
            seq=1,
            score=50.1,
            band="normal",
            faces_seen=1,
            positive=1,
            negative=0,
            at_ms=now,
        ),
        contract.SessionEvent(session="s", event="started", at_ms=now, meta={"a": "b"}),
        contract.Profile(session="s", self_intro="hi", at_ms=now),
        contract.SpeechActivity(session="s", speaking=True, at_ms=now),
        contract.Utterance(
            session="s", utterance_id="u", start_ms=0, end_ms=1, cut_ms=1, pcm=b"\x00\x01"
        ),
        contract.Transcript(
            session="s",
            utterance_id="u",
            text="hello",
            language="en",
            words=[contract.Word("hello", 0.0, 0.5)],
            start_ms=0,
            end_ms=1,
            cut_ms=1,
            done_ms=2,
            metrics=contract.SpeakingMetrics(words_per_minute=100.0, filler_words=["um"]),
        ),
        contract.InterviewEvent(session="s", step="asked", at_ms=now, data={"index": 0}),
        contract.InterviewCommand(session="s", command="follow_up", text="why?", at_ms=now),
    ]


VALID = [contract.encode(m) for m in _valid_messages()]


def _decode_cleanly(payload: bytes) -> contract.BusMessage | None:
    try:
        message = contract.decode(payload)
    except contract.ContractError:
        return None
    assert message.v == contract.SCHEMA_VERSION
    return message


def _cut_session_frame() -> bytes:
    """A Frame whose 1-character session string lost its character (found by the mutation
    fuzzer below): the string now holds the next field's header byte, invalid UTF-8."""
    frame = contract.Frame(
        session="s", seq=1, capture_ms=1.0, sent_ms=1.0, width=2, height=2, jpeg=b"\xff\xd8"
    )
    data = bytearray(contract.encode(frame))
    del data[data.index(b"\xa7session\xa1s") + 9]
    return bytes(data)


BAD_UTF8 = [
    _cut_session_frame(),
    # an Utterance whose session is not UTF-8
    contract.encode(
        contract.Utterance(session="s", utterance_id="u", start_ms=0, end_ms=1, cut_ms=1, pcm=b"")
    ).replace(b"\xa1s", b"\xa1\xff"),
]


@pytest.mark.parametrize("payload", BAD_UTF8, ids=["frame", "utterance"])
def test_once_a_bug_invalid_utf8_is_a_contract_error(payload):
    with pytest.raises(contract.ContractError):
        contract.decode(payload)


class _NoWhisper:
    """Never called: the utterances below are refused before any transcription."""

    model_name = "none"

    def transcribe(self, pcm, language=None):  # pragma: no cover
        raise AssertionError("no utterance here should reach Whisper")


async def test_once_a_bug_a_poison_utterance_stops_the_speech_worker(tmp_path):
    from deploy.nats_server import EmbeddedNats
    from inference.speech.worker import SpeechSettings, SpeechWorker
    from stream import bus
    from stream.ports import free_port
    from stream.settings import BusSettings

    # Its own server: a poison message must never reach other tests' workers.
    server = EmbeddedNats(tmp_path / "store", port=free_port()).start()
    settings = BusSettings(nats_url=server.url)
    client = await bus.connect(settings, "poison")
    worker = SpeechWorker(
        client, _NoWhisper(), settings, SpeechSettings(name="poison", fetch_timeout_s=0.2)
    )
    try:
        await worker.start()
        js = client.jetstream()
        await js.publish(contract.utterances_subject("s"), BAD_UTF8[1])
        refused = contract.Utterance(
            session="s",
            utterance_id="u2",
            start_ms=0,
            end_ms=1,
            cut_ms=1,
            pcm=b"",
            sample_rate=8000,
        )
        await js.publish(contract.utterances_subject("s"), contract.encode(refused))
        for _ in range(50):
            if worker.counts["received"] >= 2:
                break
            await asyncio.sleep(0.1)
        assert worker.counts["received"] == 2, worker.counts  # the second one is still served
    finally:
        await worker.abandon()
        await client.close()
        server.stop()


@settings(FUZZ, max_examples=300)
@given(payload=st.binary(max_size=400))
def test_decoder_on_random_bytes(payload):
    _decode_cleanly(payload)


@settings(FUZZ, max_examples=300)
@given(
    index=st.integers(0, len(VALID) - 1),
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "cut"]),
            st.integers(0, 10**6),
            st.integers(0, 255),
        ),
        min_size=1,
        max_size=6,
    ),
)
def test_decoder_on_mutated_valid_payloads(index, edits):
    data = bytearray(VALID[index])
    for op, where, value in edits:
        if not data:
            break
        i = where % len(data)
        if op == "flip":
            data[i] ^= value or 1
        elif op == "insert":
            data.insert(i, value)
        elif op == "delete":
            del data[i]
        else:
            del data[i:]
    _decode_cleanly(bytes(data))


@settings(FUZZ, max_examples=200)
@given(value=json_values, tag=st.sampled_from([None, "frame", "emotion", "utterance", "bogus"]))
def test_decoder_on_well_formed_msgpack_of_the_wrong_shape(value, tag):
    if tag is not None:
        value = (
            {"type": tag, "v": 1, "payload": value}
            if not isinstance(value, dict)
            else {
                **value,
                "type": tag,
            }
        )
    try:
        payload = msgspec.msgpack.encode(value)
    except (OverflowError, msgspec.EncodeError):
        assume(False)
    _decode_cleanly(payload)


@settings(FUZZ, max_examples=100)
@given(
    index=st.integers(0, len(VALID) - 1),
    version=st.integers(-(2**63), 2**64 - 1).filter(lambda v: v != contract.SCHEMA_VERSION),
)
def test_unknown_schema_versions_are_refused(index, version):
    raw = msgspec.msgpack.decode(VALID[index])
    raw["v"] = version
    with pytest.raises(contract.ContractError):
        contract.decode(msgspec.msgpack.encode(raw))


# ---------------------------------------------------------------------------------------
# the vision pipeline on corrupt JPEGs


@pytest.fixture(scope="module")
def pipeline(models_dir):
    from inference.pipeline import VisionPipeline

    return VisionPipeline.load(models_dir)


GOOD_JPEG = face_frames(1)[0]


def _analyse(pipeline, data: bytes) -> FrameAnalysis | None:
    try:
        result = pipeline.analyse_jpeg(data)
    except CorruptFrameError:
        return None
    except ValueError:  # documented: a bad payload may also be a plain ValueError
        return None
    assert isinstance(result, FrameAnalysis)
    return result


@settings(FUZZ, max_examples=150)
@given(
    data=st.binary(max_size=2000)
    | st.binary(max_size=500).map(lambda b: b"\xff\xd8" + b + b"\xff\xd9"),
)
def test_pipeline_on_random_bytes(pipeline, data):
    _analyse(pipeline, data)


@settings(FUZZ, max_examples=150)
@given(
    edits=st.lists(
        st.tuples(
            st.sampled_from(["flip", "cut", "zero", "splice"]),
            st.integers(0, 10**7),
            st.integers(1, 255),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_pipeline_on_damaged_face_frames(pipeline, edits):
    data = bytearray(GOOD_JPEG)
    for op, where, value in edits:
        i = where % len(data)
        if op == "flip":
            data[i] ^= value
        elif op == "cut":
            del data[i:]
        elif op == "zero":
            data[i : i + value] = bytes(min(value, len(data) - i))
        elif op == "splice" and len(data) > 2:
            del data[i : i + value]
        if not data:
            break
    _analyse(pipeline, bytes(data))


@settings(FUZZ, max_examples=60)
@given(
    width=st.integers(1, 1200),
    height=st.integers(1, 1200),
    channels=st.sampled_from([1, 3]),
    quality=st.integers(5, 100),
    seed=st.integers(0, 2**32 - 1),
)
def test_pipeline_on_valid_jpegs_of_any_size(pipeline, width, height, channels, quality, seed):
    """Odd sizes and aspect ratios (1×1200, grey) are valid JPEGs: analysed, or (under
    8 pixels on a side, too small to hold a face) refused with a ValueError; no crash."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, channels)[: 2 if channels == 1 else 3], np.uint8)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    try:
        result = pipeline.analyse_jpeg(buf.tobytes())
    except ValueError as exc:
        assert min(width, height) < 8, exc
        return
    assert (result.width, result.height) == (width, height)


def test_absurd_declared_sizes_are_refused_before_decoding(pipeline):
    data = bytearray(GOOD_JPEG)
    width, height = jpeg_size(bytes(data))
    sof = 2  # walk the segments to the frame header
    while data[sof + 1] not in (0xC0, 0xC1, 0xC2):
        sof += 2 + int.from_bytes(data[sof + 2 : sof + 4], "big")
    data[sof + 5 : sof + 9] = (65535).to_bytes(2, "big") * 2
    with pytest.raises(CorruptFrameError, match="too large"):
        pipeline.analyse_jpeg(bytes(data))
    assert (width, height) == (640, 480)


async def test_a_worker_fed_garbage_keeps_serving(nc, bus_settings, pipeline):
    """Random and damaged frame payloads straight onto the bus: the worker skips them all
    and still answers the next good frame."""
    from inference.vision_worker import VisionSettings, VisionWorker
    from stream import bus

    worker_nc = await bus.connect(bus_settings, "fuzz-worker")
    worker = VisionWorker(worker_nc, pipeline, bus_settings, VisionSettings(name="fuzz-w"))
    await worker.start()
    session = "fuzzframes"
    got = asyncio.Queue()
    sub = await nc.subscribe(contract.event_subject(session, "emotion"), cb=got.put)
    try:
        rng = np.random.default_rng(7)
        now = contract.now_ms()
        for i in range(60):
            kind = i % 4
            if kind == 0:
                payload = rng.bytes(int(rng.integers(0, 3000)))
            elif kind == 1:
                cut = GOOD_JPEG[: int(rng.integers(0, len(GOOD_JPEG)))]
                payload = contract.encode(
                    contract.Frame(session=session, seq=i, capture_ms=now, sent_ms=now,
                                   width=640, height=480, jpeg=cut)
                )  # fmt: skip
            elif kind == 2:
                payload = bytearray(VALID[0])
                payload[int(rng.integers(0, len(payload)))] ^= 0xFF
                payload = bytes(payload)
            else:
                noisy = bytearray(GOOD_JPEG)
                for _ in range(20):
                    noisy[int(rng.integers(200, len(noisy) - 2))] = int(rng.integers(0, 256))
                payload = contract.encode(
                    contract.Frame(session=session, seq=i, capture_ms=now, sent_ms=now,
                                   width=640, height=480, jpeg=bytes(noisy))
                )  # fmt: skip
            await nc.publish(contract.frames_subject(session), payload)
        await nc.flush()
        await asyncio.sleep(1.0)
        while not got.empty():
            got.get_nowait()
        good = contract.Frame(
            session=session,
            seq=1000,
            capture_ms=contract.now_ms(),
            sent_ms=contract.now_ms(),
            width=640,
            height=480,
            jpeg=GOOD_JPEG,
        )
        await nc.publish(contract.frames_subject(session), contract.encode(good))
        for _ in range(20):
            msg = await asyncio.wait_for(got.get(), timeout=10)
            result = contract.decode(msg.data, contract.EmotionResult)
            if result.seq == 1000:
                break
        assert result.seq == 1000 and result.faces
        assert worker.counts["rejected"] + worker.counts["failed"] >= 15
    finally:
        await sub.unsubscribe()
        await worker.stop()
        await worker_nc.close()


# ---------------------------------------------------------------------------------------
# the audio path


@settings(FUZZ, max_examples=120)
@given(
    fmt=st.sampled_from(["s16", "s16p", "flt", "fltp", "s32", "dbl", "u8"]),
    layout=st.sampled_from(["mono", "stereo"]),
    rate=st.sampled_from([8000, 11025, 16000, 22050, 44100, 48000, 96000])
    | st.integers(1, 200_000),
    sizes=st.lists(st.integers(1, 2000), min_size=1, max_size=6),
    seed=st.integers(0, 2**32 - 1),
)
def test_audio_converter_on_odd_frames(fmt, layout, rate, sizes, seed):
    """Frames of any format, layout, rate and length (a renegotiated or hostile track):
    16 kHz mono int16 out, or AudioFormatError/ValueError; the VAD takes whatever comes out."""
    rng = np.random.default_rng(seed)
    converter = AudioConverter()
    segmenter = VadSegmenter(VadSettings())
    for samples in sizes:
        frame = av.AudioFrame(format=fmt, layout=layout, samples=samples)
        for plane in frame.planes:
            plane.update(rng.bytes(plane.buffer_size))
        frame.sample_rate = rate
        try:
            out = converter.convert(frame)
        except (AudioFormatError, ValueError):
            continue
        assert out.dtype == np.int16 and out.ndim == 1
        for event in segmenter.push(out):
            assert isinstance(event, SpeechStarted | SpeechEnded | SpeechPaused)
    tail = converter.flush()
    assert tail.dtype == np.int16


@settings(FUZZ, max_examples=150)
@given(
    chunks=st.lists(
        st.tuples(st.integers(0, 4000), st.sampled_from(["noise", "tone", "zeros", "clip"])),
        min_size=1,
        max_size=30,
    ),
    seed=st.integers(0, 2**32 - 1),
    max_ms=st.sampled_from([2000, 8000]),
)
def test_vad_on_any_chunking_of_odd_audio(chunks, seed, max_ms):
    """Odd-length chunks (a truncated last sample, 1-sample chunks), full-scale clipping,
    noise: the segmenter only emits well-formed utterances, each part within the cap."""
    rng = np.random.default_rng(seed)
    settings_ = VadSettings(max_utterance_ms=max_ms)
    segmenter = VadSegmenter(settings_)
    events = []
    for size, kind in chunks:
        if kind == "noise":
            x = rng.integers(-32768, 32768, size).astype(np.int16)
        elif kind == "tone":
            t = np.arange(size) / 16_000
            x = (12_000 * np.sin(2 * math.pi * 220 * t)).astype(np.int16)
        elif kind == "clip":
            x = np.full(size, 32767 if rng.random() < 0.5 else -32768, np.int16)
        else:
            x = np.zeros(size, np.int16)
        events += segmenter.push(x)
    events += segmenter.flush()
    for event in events:
        if isinstance(event, SpeechEnded | SpeechPaused):
            pcm = event.utterance.pcm
            assert pcm.dtype == np.int16 and pcm.ndim == 1 and pcm.size > 0
            assert event.utterance.duration_ms <= max_ms + settings_.frame_ms * 2


@settings(FUZZ, max_examples=100)
@given(payload=st.binary(max_size=3001))
def test_utterance_pcm_bytes_are_checked(payload):
    """A hostile Utterance's pcm: odd lengths are a non-retryable BadAudioError (the speech
    worker drops it instead of retrying), even lengths are samples."""
    try:
        samples = Transcriber._as_samples(payload)
    except BadAudioError as exc:
        assert len(payload) % 2 == 1 and exc.retryable is False
        return
    assert samples.dtype == np.int16 and samples.size == len(payload) // 2


@settings(FUZZ, max_examples=100)
@given(
    rate=st.integers(1, 200_000),
    channels=st.integers(1, 8),
    n=st.integers(0, 5000),
    dtype=st.sampled_from([np.int16, np.int32, np.float32, np.float64, np.uint8]),
    seed=st.integers(0, 2**32 - 1),
)
def test_numpy_resampler_on_odd_arrays(rate, channels, n, dtype, seed):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 1000).astype(dtype)
    try:
        out = resample_to_16k_mono(x, rate, channels)
    except AudioFormatError:
        assert n % channels != 0
        return
    assert out.dtype == np.int16 and out.ndim == 1


# ---------------------------------------------------------------------------------------
# the shapes issue 12 added: page messages on the data channel, invitation records, the
# dashboard's login limiter

#: Room requests as the page writes them, to mutate.
_PAGE_REQUESTS = [
    {"type": "ping", "t0": 12.5},
    {"type": "bye"},
    {"type": "done", "question": 0, "attempt": 1},
    {"type": "next", "question": 1, "attempt": 1},
    {"type": "retry", "question": 2, "attempt": 3},
]


@FUZZ
@given(
    text=st.one_of(
        json_values.map(json.dumps),
        st.text(max_size=1200),
        st.binary(max_size=1200),
        st.builds(
            lambda base, key, value: json.dumps({**base, key: value}),
            st.sampled_from(_PAGE_REQUESTS),
            st.sampled_from(["type", "t0", "question", "attempt", "extra"]),
            field_values,
        ),
    )
)
def test_page_messages_decode_to_a_request_or_are_refused(text):
    """Whatever a page sends on the data channel is one typed room request or a
    ContractError (which the session counts and ignores): never another exception, never
    an echoed field that is not a number."""
    try:
        request = contract.decode_room_request(text)
    except contract.ContractError:
        return
    assert isinstance(request, contract.RoomRequest)
    if isinstance(request, contract.Ping):
        assert request.t0 is None or isinstance(request.t0, float)
    assert len(text) <= contract.MAX_ROOM_REQUEST_BYTES


@FUZZ
@given(
    payload=st.one_of(st.binary(max_size=200), json_values.map(lambda v: json.dumps(v).encode()))
)
def test_invitation_records_decode_or_are_refused(payload):
    """A record in the invitations bucket is read back or refused as a contract error
    (the gateway then answers 503, it does not crash)."""
    try:
        record = contract.decode_invitation(payload)
    except contract.ContractError:
        return
    assert isinstance(record, contract.InvitationRecord)


@FUZZ
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from(["interviewer", "INTERVIEWER", "admin", "가" * 100]),
            st.sampled_from(["10.0.0.1", "10.0.0.2", "::1"]),
            st.booleans(),  # the right password?
            st.floats(min_value=0, max_value=120),  # seconds before this attempt
        ),
        max_size=40,
    )
)
def test_the_login_limiter_never_checks_a_password_while_a_limit_holds(steps):
    """Any sequence of logins: a refused attempt never ran the password check, a checked
    one reports whether it was right, and a wait is always finite and non-negative."""
    from dashboard.login_limit import LoginLimiter, LoginPolicy

    now = [1000.0]
    limiter = LoginLimiter(
        LoginPolicy(max_failures=3, lockout_s=10, max_lockout_s=60, global_max_failures=8),
        clock=lambda: now[0],
    )
    for account, address, right, wait_s in steps:
        now[0] += wait_s
        checked = []

        def verify(right: bool = right, checked: list = checked) -> bool:
            checked.append(right)
            return right

        outcome = limiter.attempt(account, address, verify)
        assert outcome.checked == bool(checked)
        assert outcome.ok == (outcome.checked and right)
        assert 0 <= outcome.retry_after_s < math.inf
        if outcome.refused:
            assert not checked and outcome.scope is not None
