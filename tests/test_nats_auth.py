"""`intervue up`'s locked bus on a real nats-server: the server `up` starts (its own
`start_embedded_bus`, generated users and permissions) refuses anonymous clients, gives
each role what it needs and nothing more, and the command line finds its way in through
up's credentials file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import stat
import uuid
from pathlib import Path

import nats
import pytest
from pydantic import ValidationError

from deploy import nats_auth
from deploy.up import UpSettings, is_loopback, start_embedded_bus
from stream import bus, contract
from stream.ports import free_port
from stream.presence import PresenceBoard, ensure_presence_bucket, session_present
from stream.settings import BusSettings
from tests._cli import run_cli


@pytest.fixture(scope="module")
async def locked(tmp_path_factory):
    """The embedded bus exactly as `intervue up` starts it (streams made by its admin)."""
    data_dir = tmp_path_factory.mktemp("up-data")
    embedded = await start_embedded_bus(
        UpSettings(data_dir=data_dir, nats_port=free_port()), BusSettings()
    )
    yield embedded
    embedded.server.stop()
    embedded.remove_files()


@contextlib.asynccontextmanager
async def as_role(locked, role: str):
    nc = await bus.connect(locked.settings(role), f"test-{role}")
    try:
        yield nc
    finally:
        await nc.close()


async def assert_refused(caplog, nc, attempt, action: str, subject: str) -> None:
    """`attempt` makes the server refuse `action` ("Publish" / "Subscription") on
    `subject` for permissions (the server says so; a refused request goes unanswered)."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="stream.bus"):
        with contextlib.suppress(TimeoutError, nats.errors.Error):
            await attempt()
        await nc.flush(timeout=2)
        # The server's -ERR usually comes before the flush's PONG, but not always (a
        # refused SUB was seen to be reported after it in a loaded CI run), so wait
        # for the report itself rather than assume the order.
        said = f'permissions violation for {action} to "{subject}"'.lower()  # nats-py lowercases
        for _ in range(200):  # up to 10 s
            if said in caplog.text.lower():
                break
            await asyncio.sleep(0.05)
    assert said in caplog.text.lower(), caplog.text


def new_session() -> str:
    return uuid.uuid4().hex[:16]


async def stored(locked, subject: str) -> list[bus.StoredEvent]:
    async with as_role(locked, "admin") as nc:
        return await bus.read_events(nc.jetstream(), subject, idle_timeout_s=0.5)


def started(session: str) -> contract.SessionEvent:
    return contract.SessionEvent(session=session, event="started", at_ms=contract.now_ms())


# --------------------------------------------------------------------------- the config


def test_every_event_kind_has_exactly_one_publisher():
    assert set(nats_auth.EVENT_PUBLISHERS) == set(nats_auth.event_kinds())
    assert set(nats_auth.EVENT_PUBLISHERS.values()) <= set(nats_auth.ROLES) - {"admin"}


def test_permissions_come_from_the_contract():
    gateway = nats_auth.role_permissions("gateway")
    assert contract.frames_subject("*") in gateway["publish"]["allow"]
    assert contract.event_subject("*", "lifecycle") in gateway["publish"]["allow"]
    assert contract.event_subject("*", "interview") not in gateway["publish"]["allow"]
    dashboard = nats_auth.role_permissions("dashboard")
    assert [s for s in dashboard["publish"]["allow"] if s.startswith("intervue.")] == [
        contract.event_subject("*", "command")
    ]
    assert dashboard["subscribe"]["allow"] == ["_INBOX_dashboard.>"]
    for role in set(nats_auth.ROLES) - {"admin"}:
        assert "$JS.API.STREAM.DELETE.>" in nats_auth.role_permissions(role)["publish"]["deny"]
    assert nats_auth.role_permissions("admin") is None
    with pytest.raises(ValueError, match="unknown role"):
        nats_auth.role_permissions("intruder")


async def test_up_writes_its_bus_files_for_the_owner_only(locked):
    config = locked.server.config_file
    creds_file = locked.credentials_file
    assert {config, creds_file} == set(locked.files)
    for path in (config, creds_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    document = json.loads(creds_file.read_text())
    assert document["url"] == locked.server.url
    assert set(document["users"]) == set(nats_auth.ROLES)
    passwords = {entry["password"] for entry in document["users"].values()}
    assert len(passwords) == len(nats_auth.ROLES)  # one of its own per role
    assert all(len(p) >= 40 for p in passwords)
    text = config.read_text()
    assert all(p in text for p in passwords)
    # the store is the owner's too (it holds every session's events)
    assert stat.S_IMODE(locked.server.store_dir.stat().st_mode) & 0o077 == 0


async def test_anonymous_and_wrong_logins_are_refused(locked):
    with pytest.raises(bus.BusUnavailableError, match=r"(?i)authorization"):
        await bus.connect(
            BusSettings(nats_url=locked.server.url),
            "anonymous",
            connect_timeout_s=1,
            first_connect_timeout_s=3,
        )
    admin_password = locked.credentials["admin"].password
    gateway_with_admins_password = locked.settings("gateway").model_copy(
        update={"nats_password": admin_password}
    )
    with pytest.raises(bus.BusUnavailableError, match=r"(?i)authorization"):
        await bus.connect(
            gateway_with_admins_password, "wrong", connect_timeout_s=1, first_connect_timeout_s=3
        )


async def test_roles_find_the_streams_up_made_without_changing_them(locked, caplog):
    caplog.set_level(logging.INFO, logger="stream.bus")
    for role in ("gateway", "vision", "speech", "interviewer"):
        async with as_role(locked, role) as nc:
            js = nc.jetstream(timeout=2)
            await bus.ensure_events_stream(js, locked.settings(role))
            if role in ("gateway", "speech"):
                await bus.ensure_utterances_stream(js, locked.settings(role))
    assert "updated JetStream stream" not in caplog.text
    assert "could not update" not in caplog.text
    assert "permissions violation" not in caplog.text.lower()


async def test_a_role_with_other_stream_settings_keeps_serving(locked, caplog):
    """A role may not change a stream: it says so and serves with the stream as it is."""
    settings = locked.settings("gateway").model_copy(update={"events_max_age_s": 60.0})
    async with as_role(locked, "gateway") as nc:
        with caplog.at_level(logging.WARNING, logger="stream.bus"):
            await bus.ensure_events_stream(nc.jetstream(timeout=1), settings)
    assert "could not update INTERVUE_EVENTS (max_age differ" in caplog.text
    async with as_role(locked, "admin") as nc:
        info = await nc.jetstream().stream_info(contract.EVENTS_STREAM)
    assert info.config.max_age == BusSettings().events_max_age_s


async def test_the_admin_updates_a_stream_only_where_its_settings_changed(locked, caplog):
    caplog.set_level(logging.INFO, logger="stream.bus")
    default = locked.settings("admin")
    shorter = default.model_copy(update={"events_max_age_s": 3600.0})
    async with as_role(locked, "admin") as nc:
        js = nc.jetstream()
        try:
            await bus.ensure_events_stream(js, shorter)
            assert "updated JetStream stream INTERVUE_EVENTS (max_age)" in caplog.text
            assert (await js.stream_info(contract.EVENTS_STREAM)).config.max_age == 3600.0
            caplog.clear()
            await bus.ensure_events_stream(js, shorter)
            assert "updated" not in caplog.text
        finally:
            await bus.ensure_events_stream(js, default)
        assert (await js.stream_info(contract.EVENTS_STREAM)).config.max_age == (
            default.events_max_age_s
        )


# --------------------------------------------------------------------------- refusals


async def test_the_gateway_cannot_delete_purge_or_forge(locked, caplog):
    session = new_session()
    async with as_role(locked, "gateway") as nc:
        js = nc.jetstream(timeout=1)
        await bus.publish_event(js, started(session), "lifecycle")  # its own kind: stored
        events, utterances = contract.EVENTS_STREAM, contract.UTTERANCES_STREAM
        interviewer = contract.INTERVIEWER_CONSUMER
        for attempt, subject in (
            (lambda: js.delete_stream(events), f"$JS.API.STREAM.DELETE.{events}"),
            (lambda: js.purge_stream(events), f"$JS.API.STREAM.PURGE.{events}"),
            (lambda: js.delete_msg(events, 1), f"$JS.API.STREAM.MSG.DELETE.{events}"),
            (lambda: js.delete_stream(utterances), f"$JS.API.STREAM.DELETE.{utterances}"),
            (
                lambda: js.delete_consumer(events, interviewer),
                f"$JS.API.CONSUMER.DELETE.{events}.{interviewer}",
            ),
        ):
            await assert_refused(caplog, nc, attempt, "Publish", subject)
        # nor speak for the interviewer: a question it never asked
        fake = contract.InterviewEvent.of(session, contract.AskedStep(index=0, question="fake"))
        subject = contract.event_subject(session, "interview")
        await assert_refused(
            caplog, nc, lambda: bus.publish_event(js, fake, "interview"), "Publish", subject
        )
    events = await stored(locked, contract.session_events_wildcard(session))
    assert [e.subject for e in events] == [contract.event_subject(session, "lifecycle")]
    async with as_role(locked, "admin") as nc:
        info = await nc.jetstream().stream_info(contract.EVENTS_STREAM)
    assert info.state.messages >= 1


async def test_the_gateway_keeps_presence_and_the_interviewer_only_reads_it(locked, caplog):
    session = new_session()
    async with as_role(locked, "gateway") as nc:
        js = nc.jetstream(timeout=2)
        board = PresenceBoard(await ensure_presence_bucket(js, BusSettings()), "gw")
        await board.mark(session)
        assert await session_present(js, session) is True
    async with as_role(locked, "interviewer") as nc:
        js = nc.jetstream(timeout=2)
        assert await session_present(js, session) is True
        kv = await js.key_value(contract.PRESENCE_BUCKET)
        subject = f"$KV.{contract.PRESENCE_BUCKET}.{session}"
        await assert_refused(caplog, nc, lambda: kv.delete(session), "Publish", subject)
        assert await session_present(js, session) is True
    async with as_role(locked, "gateway") as nc:
        js = nc.jetstream(timeout=2)
        await PresenceBoard(await js.key_value(contract.PRESENCE_BUCKET), "gw").unmark(session)
        assert await session_present(js, session) is False


async def test_the_dashboard_reads_and_sends_follow_ups_but_cannot_fake_events(locked, caplog):
    session = new_session()
    async with as_role(locked, "gateway") as nc:
        await bus.publish_event(nc.jetstream(), started(session), "lifecycle")
    async with as_role(locked, "dashboard") as nc:
        js = nc.jetstream(timeout=1)
        # it reads the sessions back, and sends the interviewer's follow-up question
        events = await bus.read_events(js, contract.session_events_wildcard(session))
        assert [type(e.message) for e in events] == [contract.SessionEvent]
        follow_up = contract.InterviewCommand(
            session=session, command="follow_up", text="Why Python?", at_ms=contract.now_ms()
        )
        await bus.publish_event(js, follow_up, "command")
        # a fake question, as if the interviewer had asked it: refused, through JetStream
        # and on core NATS alike
        fake = contract.InterviewEvent(
            session=session,
            step="asked",
            at_ms=contract.now_ms(),
            data={"index": 0, "attempt": 1, "question": "Tell me your bank PIN."},
        )
        subject = contract.event_subject(session, "interview")
        await assert_refused(
            caplog, nc, lambda: bus.publish_event(js, fake, "interview"), "Publish", subject
        )
        await assert_refused(
            caplog, nc, lambda: nc.publish(subject, contract.encode(fake)), "Publish", subject
        )
        ended = contract.SessionEvent(session=session, event="ended", at_ms=contract.now_ms())
        await assert_refused(
            caplog,
            nc,
            lambda: bus.publish_event(js, ended, "lifecycle"),
            "Publish",
            contract.event_subject(session, "lifecycle"),
        )
        # no live camera frames, no raw audio, no other role's replies, no deletes
        await assert_refused(
            caplog, nc, lambda: nc.subscribe(contract.frames_wildcard()), "Subscription",
            contract.frames_wildcard(),
        )  # fmt: skip
        await assert_refused(
            caplog,
            nc,
            lambda: js.subscribe(
                contract.utterances_wildcard(),
                stream=contract.UTTERANCES_STREAM,
                ordered_consumer=True,
            ),
            "Publish",
            "$JS.API.CONSUMER.CREATE.INTERVUE_UTTERANCES",
        )
        await assert_refused(
            caplog, nc, lambda: nc.subscribe("_INBOX_speech.>"), "Subscription", "_INBOX_speech.>"
        )
        await assert_refused(
            caplog,
            nc,
            lambda: js.purge_stream(contract.EVENTS_STREAM),
            "Publish",
            "$JS.API.STREAM.PURGE.INTERVUE_EVENTS",
        )
    events = await stored(locked, contract.session_events_wildcard(session))
    assert [type(e.message) for e in events] == [contract.SessionEvent, contract.InterviewCommand]


# --------------------------------------------------------------------------- every role


@pytest.mark.slow
async def test_every_role_does_its_work_with_its_own_user(locked, models_dir, tmp_path, caplog):
    """The real roles, each connected as its own user: a face frame gets its emotion, an
    answer is transcribed and evaluated, the dashboard follows it all, and the server
    refuses nothing."""
    from dashboard.store import EventStore
    from deploy.bench.media import face_frames
    from deploy.fake_media import make_speech_wav, read_wav
    from inference.pipeline import VisionPipeline
    from inference.speech.models import prepare_whisper_models
    from inference.speech.transcriber import Transcriber
    from inference.speech.worker import SpeechSettings, SpeechWorker
    from inference.vision_worker import VisionSettings, VisionWorker
    from llm.offline import OfflineEngine
    from llm.orchestrator import InterviewerSettings, Orchestrator

    caplog.set_level(logging.WARNING, logger="stream.bus")
    await asyncio.to_thread(prepare_whisper_models, models_dir, names=("tiny.en",))
    transcriber = Transcriber("tiny.en", models_dir=models_dir, cpu_threads=1)
    wav = make_speech_wav(
        tmp_path, "I built the search service in Python.", sample_rate=16_000,
        lead_silence=0.3, trail_silence=0.3,
    )  # fmt: skip
    samples, _ = read_wav(wav)
    pcm = samples[:, 0].tobytes()

    connections = {
        role: await bus.connect(locked.settings(role), f"test-{role}")
        for role in ("gateway", "vision", "speech", "interviewer")
    }
    vision = VisionWorker(
        connections["vision"],
        VisionPipeline.load(models_dir),
        locked.settings("vision"),
        VisionSettings(name="locked-vision"),
    )
    speech = SpeechWorker(
        connections["speech"],
        transcriber,
        locked.settings("speech"),
        SpeechSettings(model="tiny.en", name="locked-speech", fetch_timeout_s=0.5),
    )
    interviewer = Orchestrator(
        connections["interviewer"], OfflineEngine(), locked.settings("interviewer"),
        InterviewerSettings(name="locked-interviewer"),
    )  # fmt: skip
    store = EventStore(locked.settings("dashboard"), name="locked-dashboard", probe_every_s=0.5)
    session = new_session()
    gateway = connections["gateway"]
    js = gateway.jetstream()
    results: list[contract.BusMessage] = []

    async def on_event(msg) -> None:  # the gateway's live subscription to its session
        results.append(contract.decode(msg.data))

    async def steps() -> list[str]:
        events = await stored(locked, contract.event_subject(session, "interview"))
        return [e.message.step for e in events]

    async def until(check, what: str, timeout_s: float = 90.0):
        deadline = asyncio.get_running_loop().time() + timeout_s
        while not (value := await check()):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out waiting for {what}\n{caplog.text[-3000:]}")
            await asyncio.sleep(0.3)
        return value

    try:
        for role in (vision, speech, interviewer):
            await role.start()
        store.start()
        await gateway.subscribe(contract.session_events_wildcard(session), cb=on_event)
        await bus.publish_event(js, started(session), "lifecycle")
        profile = contract.Profile(
            session=session, self_intro="I am a backend engineer.", language="en",
            at_ms=contract.now_ms(),
        )  # fmt: skip
        await bus.publish_event(js, profile, "profile")
        await until(lambda: _has(steps, "asked"), "the first question")

        jpeg = face_frames(1)[0]
        now = contract.now_ms()
        frame = contract.Frame(
            session=session, seq=1, capture_ms=now, sent_ms=now, width=640, height=480, jpeg=jpeg
        )
        await gateway.publish(contract.frames_subject(session), contract.encode(frame))
        await until(
            lambda: asyncio.sleep(
                0, result=any(isinstance(m, contract.EmotionResult) for m in results)
            ),
            "the emotion result of the frame",
        )

        utterance = contract.Utterance(
            session=session, utterance_id="u1", start_ms=now - 2000, end_ms=now, cut_ms=now,
            pcm=pcm, language="en", question=0, attempt=1,
        )  # fmt: skip
        await js.publish(contract.utterances_subject(session), contract.encode(utterance))
        turn = contract.AnswerEnded(
            session=session, question=0, attempt=1, reason="done", parts=["u1#0"],
            opened_ms=now - 3000, at_ms=contract.now_ms(),
        )  # fmt: skip
        await bus.publish_event(js, turn, "turn")
        await until(lambda: _has(steps, "evaluated"), "the answer's evaluation", 180.0)

        # the dashboard has followed all of it, and its follow-up question is stored
        assert await asyncio.to_thread(store.wait_caught_up, 10.0)
        assert store.status().available, store.status()
        follow_up = contract.InterviewCommand(
            session=session, command="follow_up", text="And the tests?", by="interviewer",
            at_ms=contract.now_ms(),
        )  # fmt: skip
        await asyncio.to_thread(store.publish, follow_up, "command")
        kinds = {e.subject.rsplit(".", 1)[1] for e in await stored(
            locked, contract.session_events_wildcard(session))}  # fmt: skip
        assert {"lifecycle", "profile", "emotion", "transcript", "turn", "interview",
                "command"} <= kinds  # fmt: skip
        # (everything but the follow-up, sent after the stream was read here)
        assert await asyncio.to_thread(store.wait_for_events, session, len(kinds) - 1, 10.0)
    finally:
        store.stop()
        for role in (vision, speech, interviewer):
            await role.stop()
        for nc in connections.values():
            await nc.close()
    assert "permissions violation" not in caplog.text.lower(), caplog.text
    server_log = locked.server.log_file.read_text()
    assert "permissions violation" not in server_log.lower(), server_log[-3000:]


async def _has(steps, step: str) -> bool:
    return step in await steps()


# --------------------------------------------------------------------------- the command line


async def test_the_cli_reaches_the_locked_bus_through_ups_credentials_file(locked, tmp_path):
    session = new_session()
    async with as_role(locked, "gateway") as nc:
        await bus.publish_event(nc.jetstream(), started(session), "lifecycle")
    env = {
        "INTERVUE_UP_DATA_DIR": str(locked.credentials_file.parent),
        "INTERVUE_NATS_URL": locked.server.url,
    }
    listed = await asyncio.to_thread(run_cli, env, "session", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert session in [s["session"] for s in json.loads(listed.stdout)]
    exported = await asyncio.to_thread(run_cli, env, "session", "export", session)
    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout)["events"][0]["event"] == "started"
    # Elsewhere (another data directory: no credentials file) the server refuses, and the
    # message says where the credentials would be read from.
    elsewhere = {**env, "INTERVUE_UP_DATA_DIR": str(tmp_path)}
    refused = await asyncio.to_thread(run_cli, elsewhere, "session", "list")
    assert refused.returncode == 1
    assert "Authorization" in refused.stderr
    assert str(tmp_path / nats_auth.CREDENTIALS_FILE) in refused.stderr
    passwords = [c.password.get_secret_value() for c in locked.credentials.values()]
    for output in (listed, exported, refused):
        assert not any(p in output.stdout + output.stderr for p in passwords)


def test_the_credentials_file_is_used_only_where_it_applies(tmp_path, caplog):
    creds = nats_auth.generate_credentials()
    url = "nats://127.0.0.1:4222"
    nats_auth.write_credentials_file(tmp_path / nats_auth.CREDENTIALS_FILE, url, creds)
    plain = BusSettings(nats_url=url)

    found = nats_auth.local_bus_settings(plain, "admin", tmp_path)
    assert found.nats_user == "intervue-admin"
    assert found.nats_password == creds["admin"].password
    assert found.nats_inbox_prefix == "_INBOX_admin"
    assert nats_auth.local_bus_settings(plain, "speech", tmp_path).nats_user == "intervue-speech"
    # another server, credentials of one's own, or no file: left as configured
    other = BusSettings(nats_url="nats://10.0.0.5:4222")
    assert nats_auth.local_bus_settings(other, "admin", tmp_path) == other
    own = BusSettings(nats_url=url, nats_user="me", nats_password="pw")
    assert nats_auth.local_bus_settings(own, "admin", tmp_path) == own
    assert nats_auth.local_bus_settings(plain, "admin", tmp_path / "none") == plain
    # a file others may read is not trusted
    os.chmod(tmp_path / nats_auth.CREDENTIALS_FILE, 0o644)
    with caplog.at_level(logging.WARNING, logger="deploy.nats_auth"):
        assert nats_auth.local_bus_settings(plain, "admin", tmp_path) == plain
    assert "readable by you only" in caplog.text


def test_an_open_bus_must_stay_on_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5")
    assert not is_loopback("myhost")
    UpSettings(nats_host="0.0.0.0")  # locked: allowed (with a warning at start)
    UpSettings(nats_auth=False)  # open on loopback: allowed (with a warning at start)
    with pytest.raises(ValidationError, match="loopback only"):
        UpSettings(nats_auth=False, nats_host="0.0.0.0")


def test_inbox_prefix_is_validated():
    assert BusSettings().nats_inbox_prefix == "_INBOX"
    for bad in ("_INBOX.>", "a b", "x.*", ""):
        with pytest.raises(ValidationError):
            BusSettings(nats_inbox_prefix=bad)


def test_private_files_replace_older_ones(tmp_path):
    path = tmp_path / "secret.json"
    path.write_text("old")
    os.chmod(path, 0o644)
    nats_auth.write_private(path, "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in Path(tmp_path).iterdir()] == ["secret.json"]
