import typing

import msgspec
import pytest

from stream import contract


def _result(**kw):
    base = dict(
        session="abc",
        seq=3,
        capture_ms=1.0,
        frame_sent_ms=2.0,
        done_ms=3.0,
        width=640,
        height=480,
        faces=[
            contract.Face(
                box=(1.0, 2.0, 3.0, 4.0),
                detector_score=0.9,
                probs={e: 1 / 7 for e in contract.EMOTIONS},
                label="happy",
                confidence=1 / 7,
                valence="positive",
            )
        ],
    )
    base.update(kw)
    return contract.EmotionResult(**base)


#: One example of every bus message type (test_every_bus_message_type_has_an_example keeps
#: this list complete), with every optional part filled in where it has one.
BUS_EXAMPLES = [
    contract.Frame(
        session="s1", seq=1, capture_ms=1.5, sent_ms=2.5, width=4, height=2, jpeg=b"\xff\xd8"
    ),
    _result(),
    _result(faces=[]),
    contract.ScoreUpdate(
        session="s1",
        seq=1,
        score=50.1,
        band="normal",
        faces_seen=1,
        positive=1,
        negative=0,
        at_ms=1.0,
    ),
    contract.SessionEvent(session="s1", event="ended", at_ms=1.0, reason="x", stats={"a": 1}),
    contract.Profile(
        session="s1",
        job_title="Backend engineer",
        years=5,
        company="Acme",
        self_intro="저는 백엔드 개발자입니다.",
        language="en",
        at_ms=1.0,
    ),
    contract.SpeechActivity(session="s1", speaking=True, at_ms=2.0),
    contract.Utterance(
        session="s1",
        utterance_id="u1",
        part=1,
        final=False,
        start_ms=1.0,
        end_ms=2.0,
        cut_ms=2.1,
        pcm=b"\x00\x01" * 8,
        language="ko",
        question=0,
        attempt=2,
    ),
    contract.Transcript(
        session="s1",
        utterance_id="u1",
        part=1,
        final=False,
        text="hello there",
        language="en",
        words=[contract.Word("hello", 0.0, 0.4, 0.9), contract.Word("there", 0.5, 0.9)],
        start_ms=1.0,
        end_ms=2.0,
        cut_ms=2.1,
        done_ms=2.5,
        metrics=contract.SpeakingMetrics(duration_s=1.0, word_count=2, rate_basis="words"),
        model="base",
        worker="w1",
        question=0,
        attempt=1,
    ),
    contract.Transcript(
        session="s1",
        utterance_id="u2",
        text="",
        language="en",
        start_ms=1.0,
        end_ms=2.0,
        cut_ms=2.1,
        done_ms=2.5,
        dropped_reason="silence",
    ),
    contract.InterviewEvent(
        session="s1",
        step="asked",
        at_ms=3.0,
        data={"index": 0, "attempt": 1, "question": "Why?", "follow_up": False, "total": 3},
    ),
    contract.InterviewCommand(
        session="s1", command="follow_up", text="And then?", by="interviewer", at_ms=4.0
    ),
    contract.AnswerEnded(
        session="s1",
        question=0,
        attempt=1,
        reason="silence",
        parts=["u1#0", "u1#1"],
        opened_ms=1.0,
        at_ms=5.0,
    ),
    contract.CandidateRequest(session="s1", request="retry", question=0, attempt=1, at_ms=6.0),
]


def test_every_bus_message_type_has_an_example():
    assert {type(m) for m in BUS_EXAMPLES} == set(typing.get_args(contract.BusMessage))


@pytest.mark.parametrize("message", BUS_EXAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(message):
    decoded = contract.decode(contract.encode(message))
    assert decoded == message
    assert type(decoded) is type(message)
    assert type(contract.decode(contract.encode(message), expected=type(message))) is type(message)


_FACE = contract.PageFace(
    box=(1.0, 2.0, 3.0, 4.0),
    label="happy",
    confidence=0.6,
    probs={"happy": 0.6},
    valence="positive",
)
PAGE_EXAMPLES = [
    contract.Hello(session="s1", analysis_fps=10.0, resumed=True),
    contract.Pong(t0=12.5, server_ms=13.0),
    contract.EmotionUpdate(
        seq=1,
        width=640,
        height=480,
        faces=[_FACE],
        capture_ms=1.0,
        capture_source="rtcp",
        gateway_ms=2.0,
        timings={"total": 3.0},
        score=50.1,
        band="normal",
        faces_seen=1,
        counted=True,
    ),
    contract.RoomStats(
        video_frames=1,
        audio_frames=2,
        frames_sampled=3,
        frames_sent=4,
        frames_dropped=5,
        frames_timed_out=6,
        results=7,
        no_face_results=8,
        late_results=9,
        utterances=10,
        result_latency_p50_ms=11.5,
        camera_fps=30.0,
        analysed_fps=10.0,
    ),
    contract.SpeechUpdate(speaking=False, at_ms=1.0),
    contract.TranscriptUpdate(
        utterance_id="u1",
        part=0,
        final=True,
        text="hi",
        language="en",
        metrics=contract.SpeakingMetrics(word_count=1),
        latency_ms=300.0,
        question=0,
        attempt=1,
        replay=True,
    ),
    contract.InterviewUpdate(step="questions", data={"questions": ["a", "b", "c"]}, at_ms=1.0),
    contract.TurnUpdate(
        question=0,
        attempt=1,
        state="ended",
        elapsed_ms=1000.0,
        cap_left_ms=179_000.0,
        countdown=True,
        silence_left_ms=2000.0,
        silence_hint=True,
        reason="done",
        spoken=True,
    ),
    contract.AutoAdvance(question=0, attempt=1, in_ms=5000.0),
    contract.SessionEnded(code="candidate", reason="the candidate ended it"),
]
ROOM_REQUEST_EXAMPLES = [
    contract.Ping(t0=1.5),
    contract.Bye(),
    contract.DoneAnswering(question=0, attempt=1),
    contract.NextQuestion(question=1, attempt=2),
    contract.TryAgain(question=2, attempt=3),
]


def test_every_data_channel_message_type_has_an_example():
    assert {type(m) for m in PAGE_EXAMPLES} == set(typing.get_args(contract.PageMessage))
    assert {type(m) for m in ROOM_REQUEST_EXAMPLES} == set(typing.get_args(contract.RoomRequest))


@pytest.mark.parametrize("message", PAGE_EXAMPLES, ids=lambda m: type(m).__name__)
def test_page_message_round_trip(message):
    decoded = contract.decode_page(contract.encode_page(message))
    assert decoded == message and type(decoded) is type(message)


@pytest.mark.parametrize("message", ROOM_REQUEST_EXAMPLES, ids=lambda m: type(m).__name__)
def test_room_request_round_trip(message):
    decoded = contract.decode_room_request(contract.encode_room_request(message))
    assert decoded == message and type(decoded) is type(message)


def test_invitation_record_round_trip():
    record = contract.InvitationRecord(used=2, revoked=True, revoked_at_ms=5.0, reason="leaked")
    assert contract.decode_invitation(contract.encode_invitation(record)) == record


# --------------------------------------------------------------------------- the profile rule


def test_profile_rule_normalises_the_form():
    profile = contract.parse_profile(
        "s1",
        {"self_intro": "  저는 개발자입니다.  ", "job_title": "  ", "company": None, "years": "3"},
        at_ms=7.0,
    )
    assert profile == contract.Profile(
        session="s1", self_intro="저는 개발자입니다.", years=3, language="ko", at_ms=7.0
    )
    assert (profile.job_title, profile.company) == ("AI 개발자", "EST Soft")
    # the page sends numbers; a fraction of a year is dropped, as the gateway always did
    assert contract.profile_fields({"self_intro": "x", "years": 4.7})["years"] == 4


@pytest.mark.parametrize(
    ("data", "limit", "message"),
    [
        ({}, 5000, "the self-introduction is empty"),
        ({"self_intro": " \n "}, 5000, "the self-introduction is empty"),
        ({"self_intro": 5}, 5000, "the self-introduction is empty"),
        ({"self_intro": "가" * 5001}, 5000, "is 5,001 characters; the limit is 5,000"),
        ({"self_intro": "x" * 101}, 100, "the limit is 100"),
        ({"self_intro": "x", "language": "fr"}, 5000, "language must be 'ko' or 'en'"),
        ({"self_intro": "x", "years": "many"}, 5000, "whole number"),
        ({"self_intro": "x", "years": True}, 5000, "whole number"),
        ({"self_intro": "x", "years": None}, 5000, "whole number"),
        ({"self_intro": "x", "years": float("inf")}, 5000, "whole number"),
        ({"self_intro": "x", "years": 61}, 5000, "between 0 and 60"),
        ({"self_intro": "x", "years": -1}, 5000, "between 0 and 60"),
        ({"self_intro": "x", "job_title": "j" * 101}, 5000, "job_title must be text"),
        ({"self_intro": "x", "company": ["Acme"]}, 5000, "company must be text"),
    ],
)
def test_profile_rule_says_what_to_fix(data, limit, message):
    with pytest.raises(contract.ProfileError, match=message):
        contract.profile_fields(data, max_intro_chars=limit)
    assert issubclass(contract.ProfileError, contract.ContractError)


def test_gateway_and_interviewer_apply_the_same_rule():
    # What the gateway publishes, the interviewer reads back unchanged.
    from llm.schemas import Profile as EngineProfile

    form = {"self_intro": " intro ", "job_title": "ML", "years": 1, "language": "en"}
    published = contract.parse_profile("s1", form, at_ms=1.0)
    read = EngineProfile.parse(contract.decode(contract.encode(published)))
    assert read.model_dump() == contract.profile_fields(form)
    with pytest.raises(contract.ProfileError, match="the limit is 100"):
        EngineProfile.parse({"self_intro": "x" * 101}, max_intro_chars=100)


def test_expected_type_is_enforced():
    payload = contract.encode(_result())
    with pytest.raises(contract.ContractError, match="expected Frame"):
        contract.decode(payload, contract.Frame)


@pytest.mark.parametrize(
    "payload", [b"", b"\x00\x01garbage", b"\xff" * 100, msgspec.msgpack.encode({"type": "nope"})]
)
def test_garbage_is_a_contract_error(payload):
    with pytest.raises(contract.ContractError):
        contract.decode(payload)


def test_unknown_schema_version_is_refused():
    message = _result()
    message.v = 99
    with pytest.raises(contract.ContractError, match="schema version 99"):
        contract.decode(contract.encode(message))


def test_subjects():
    assert contract.frames_subject("abc") == "intervue.frames.abc"
    assert contract.event_subject("abc", "emotion") == "intervue.events.abc.emotion"
    assert contract.session_from_subject("intervue.events.abc.score") == "abc"
    assert contract.session_from_subject("intervue.frames.abc") == "abc"
    assert contract.valid_session_id("a1_B-2")
    assert not contract.valid_session_id("a.b")
    assert not contract.valid_session_id("*")
    assert not contract.valid_session_id("")


def test_to_builtins_hides_jpeg_bytes_and_tags_type():
    frame = contract.Frame(
        session="s", seq=1, capture_ms=0, sent_ms=0, width=1, height=1, jpeg=b"123"
    )
    data = contract.to_builtins(frame)
    assert data["type"] == "frame"
    assert data["jpeg"] == "<3 bytes>"
    assert contract.to_builtins(_result())["type"] == "emotion"


def test_emotion_vocabulary():
    assert set(contract.EMOTIONS) == contract.POSITIVE_EMOTIONS | contract.NEGATIVE_EMOTIONS
    assert contract.POSITIVE_EMOTIONS == {"happy", "normal"}
    assert len(contract.NEGATIVE_EMOTIONS) == 5
