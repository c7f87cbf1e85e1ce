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


_METRICS = contract.SpeakingMetrics.of(
    duration_s=4.0,
    speech_s=3.5,
    rate_s=3.5,
    word_count=9,
    hangul_syllables=0,
    rate_basis="words",
    filler_words=["um"],
    pause_count=1,
    longest_pause_s=0.6,
    total_pause_s=0.6,
    language="en",
)
_EVALUATION = contract.Evaluation(
    overall=contract.Criterion(rating="무난함", reason="clear"),
    similarity=contract.Criterion(rating="매우 좋음", reason="close", match_percent=70),
    examples=contract.Criterion(rating=None, reason="none needed"),
    tips=["a", "b", "c"],
    model_answer="A model answer.",
    engine="offline",
)
_ROWS = [("Overall", "Fine", "clear")] * 7
_EMOTION = contract.AnswerEmotion(score=50.3, band="normal", faces=5)
_ATTEMPT = contract.AttemptSummary(
    attempt=1,
    answer="a first try",
    metrics=_METRICS,
    evaluation=_EVALUATION,
    rows=_ROWS,
    engine="offline",
    emotion=_EMOTION,
    reason="done",
)
#: One example of every interview step's data (test_every_step_has_an_example keeps this
#: list complete), with every optional part filled in.
STEP_EXAMPLES = [
    contract.QuestionsStep(questions=["q1", "q2", "q3"], engine="llm", language="ko"),
    contract.AskedStep(index=1, attempt=2, question="q2", total=3, follow_up=True),
    contract.AnsweredStep(
        index=1,
        attempt=2,
        answer="an answer",
        metrics=_METRICS,
        start_ms=10.0,
        end_ms=20.0,
        asked_ms=5.0,
        ended_ms=22.0,
        reason="silence",
    ),
    contract.EvaluatedStep(
        index=1,
        attempt=2,
        question="q2",
        evaluation=_EVALUATION,
        rows=_ROWS,
        engine="offline",
        emotion=_EMOTION,
    ),
    contract.ReportStep(
        items=[
            contract.ReportItem(
                **{**msgspec.structs.asdict(_ATTEMPT), "attempt": 2, "answer": "a second try"},
                index=0,
                question="q1",
                follow_up=False,
                earlier_attempts=[_ATTEMPT],
            )
        ],
        engine="offline",
    ),
    contract.WorkingStep(stage="evaluation", index=1, attempt=2, engine="llm", budget_s=90.0),
    contract.ErrorStep(message="the model failed", stage="evaluation", retryable=True),
]


def test_every_step_has_an_example():
    assert {type(d) for d in STEP_EXAMPLES} == set(typing.get_args(contract.StepData))
    assert set(contract.STEP_TYPES.values()) == set(typing.get_args(contract.StepData))


@pytest.mark.parametrize("data", STEP_EXAMPLES, ids=lambda d: type(d).__name__)
def test_step_round_trip_on_the_bus_and_the_page(data):
    event = contract.InterviewEvent.of("s1", data, at_ms=7.0)
    assert contract.STEP_TYPES[event.step] is type(data)
    decoded = contract.decode(contract.encode(event), contract.InterviewEvent)
    assert decoded == event and type(decoded.data) is type(data)
    update = contract.InterviewUpdate(step=event.step, data=event.data, at_ms=event.at_ms)
    page = contract.decode_page(contract.encode_page(update))
    assert page == update and type(page.data) is type(data)
    # a step given as its plain object (as stored) becomes the same struct
    assert contract.step_data(event.step, msgspec.to_builtins(data)) == data


#: Steps as older builds stored them: plain objects, some keys missing, an answer with no
#: speech stored as an empty object, no ``no_answer`` on an evaluated answer.
LEGACY_STEPS = [
    ("questions", {"questions": ["q1", "q2", "q3"], "engine": "offline"}),
    ("asked", {"index": 0, "attempt": 1, "question": "q1", "follow_up": False, "total": 3}),
    ("asked", {"index": 1, "question": "q2"}),
    (
        "answered",
        {"index": 0, "attempt": 1, "answer": "", "metrics": {}, "start_ms": None, "end_ms": None},
    ),
    (
        "evaluated",
        {
            "index": 0,
            "attempt": 1,
            "evaluation": {
                "overall": {"rating": "무난함", "reason": "ok"},
                "similarity": {"rating": None, "reason": "n/a", "match_percent": None},
                "tips": ["a", "b", "c"],
                "model_answer": "m",
                "engine": "offline",
                "fallback_error": None,
            },
            "rows": [["전반적인 점수", "무난함", "ok"]],
            "engine": "offline",
            "emotion": None,
        },
    ),
    (
        "report",
        {
            "items": [
                {
                    "index": 0,
                    "question": "q1",
                    "attempt": 1,
                    "answer": "",
                    "metrics": {},
                    "evaluation": None,
                    "rows": None,
                    "engine": None,
                }
            ],
            "engine": "offline",
        },
    ),
    ("error", {"message": "boom", "stage": "questions", "retryable": True}),
]


@pytest.mark.parametrize("step, data", LEGACY_STEPS, ids=[s for s, _ in LEGACY_STEPS])
def test_steps_stored_by_older_builds_still_decode(step, data):
    payload = msgspec.msgpack.encode(
        {"type": "interview", "v": 1, "session": "s1", "step": step, "at_ms": 1.0, "data": data}
    )
    event = contract.decode(payload, contract.InterviewEvent)
    assert type(event.data) is contract.STEP_TYPES[step]
    if step == "answered":
        assert event.data.metrics is None and event.data.attempt == 1
    if step == "asked":
        assert event.data.attempt == 1
    if step == "evaluated":
        assert event.data.evaluation.tips == ["a", "b", "c"] and not event.data.no_answer
        assert event.data.evaluation.similarity.rating is None
        assert event.data.rows == [("전반적인 점수", "무난함", "ok")]
    if step == "report":
        assert event.data.items[0].metrics is None and event.data.items[0].earlier_attempts == []


def test_the_page_reads_the_same_keys_as_before():
    """room.js reads each step's data by these keys (the JSON of the step structs)."""
    evaluated, report = STEP_EXAMPLES[3], STEP_EXAMPLES[4]
    page = msgspec.json.decode(
        contract.encode_page(contract.InterviewUpdate(step="evaluated", data=evaluated, at_ms=1.0))
    )
    data = page["data"]
    assert data["index"] == 1 and data["attempt"] == 2 and data["engine"] == "offline"
    assert data["rows"][0] == ["Overall", "Fine", "clear"] and data["no_answer"] is False
    assert data["evaluation"]["tips"] == ["a", "b", "c"]
    assert data["evaluation"]["model_answer"] == "A model answer."
    assert data["emotion"] == {"score": 50.3, "band": "normal", "faces": 5}
    # a criterion keeps the keys the engines write (no null percent where none applies)
    assert data["evaluation"]["overall"] == {"rating": "무난함", "reason": "clear"}
    item = msgspec.to_builtins(report)["items"][0]
    assert {"index", "question", "rows", "answer", "emotion", "earlier_attempts"} <= set(item)
    asked = msgspec.to_builtins(STEP_EXAMPLES[1])
    assert asked == {"index": 1, "attempt": 2, "question": "q2", "total": 3, "follow_up": True}


@pytest.mark.parametrize(
    "step, data",
    [
        ("questions", {"questions": ["q"] * (contract.QUESTION_COUNT + 1)}),
        ("questions", {"questions": ["x" * (contract.MAX_QUESTION_CHARS + 1)]}),
        ("asked", {"index": 0, "question": "x" * (contract.MAX_QUESTION_CHARS + 1)}),
        ("asked", {"question": "no index"}),
        ("asked", {"index": -1}),
        ("answered", {"index": 0, "attempt": 0}),
        ("evaluated", {"index": 0, "rows": [["only", "two"]]}),
        ("error", [1, 2]),
        ("thanks", {}),
    ],
)
def test_a_step_that_does_not_fit_is_refused(step, data):
    with pytest.raises(contract.ContractError):
        contract.step_data(step, data)
    if step in contract.STEP_TYPES:
        payload = msgspec.msgpack.encode(
            {"type": "interview", "v": 1, "session": "s", "step": step, "at_ms": 1.0, "data": data}
        )
        with pytest.raises(contract.ContractError):
            contract.decode(payload)


def test_a_step_carries_its_own_struct():
    with pytest.raises(contract.ContractError, match="cannot carry"):
        contract.InterviewEvent(session="s", step="asked", at_ms=1.0, data=STEP_EXAMPLES[0])
    # an interviewer's follow-up is a question too: one longer than a question may be is
    # refused where it is decoded, before it could be asked
    too_long = msgspec.msgpack.encode(
        {
            "type": "command",
            "v": 1,
            "session": "s",
            "command": "follow_up",
            "text": "x" * (contract.MAX_QUESTION_CHARS + 1),
            "at_ms": 1.0,
        }
    )
    with pytest.raises(contract.ContractError):
        contract.decode(too_long)


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
