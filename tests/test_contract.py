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


@pytest.mark.parametrize(
    "message",
    [
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
    ],
)
def test_round_trip(message):
    decoded = contract.decode(contract.encode(message))
    assert decoded == message
    assert type(decoded) is type(message)


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
