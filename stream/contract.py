"""The bus contract: every subject name and every message type the roles exchange.

This module is the only thing the roles share (DESIGN.md, "Processes and data flow").
Messages are msgspec structs, encoded to MessagePack only at the edge (`encode` /
`decode`). Each carries `v`, the schema version; a decoder refuses a version it does not
know with `ContractError` instead of guessing.

Subjects
--------
``intervue.frames.<session>``            core NATS, `Frame` (latest frame wins, never queued)
``intervue.events.<session>.<kind>``     JetStream stream ``INTERVUE_EVENTS``:
    ``emotion``   `EmotionResult`, one per analysed frame
    ``score``     `ScoreUpdate`, the session's emotion score after each result
    ``lifecycle`` `SessionEvent`, started / ended (with the session's frame counters)
    ``profile``   `Profile`, the candidate's form (job, years, company, self-introduction)
    ``speech``    `SpeechActivity`, the candidate started / stopped speaking (VAD)
    ``transcript`` `Transcript`, one utterance transcribed, with its speaking metrics
    ``interview`` `InterviewEvent`, the interviewer's steps: questions, question asked,
                  answer evaluated, report, errors (payload is JSON-ready data)
    ``command``   `InterviewCommand`, an interviewer's follow-up question for the session
``intervue.utterances.<session>``        JetStream work queue ``INTERVUE_UTTERANCES``:
    `Utterance`, 16 kHz mono s16 audio cut by VAD, consumed once by a speech worker
"""

from __future__ import annotations

import re
import time
from typing import Literal

import msgspec

SCHEMA_VERSION = 1

EVENTS_STREAM = "INTERVUE_EVENTS"
FRAMES_PREFIX = "intervue.frames"
EVENTS_PREFIX = "intervue.events"
VISION_QUEUE_GROUP = "vision-workers"

#: The product's seven emotion classes (DESIGN.md). A model bundle carries its own
#: label order; this tuple is only the vocabulary, never an index order for a model.
EMOTIONS: tuple[str, ...] = ("anger", "anxiety", "embarrass", "happy", "normal", "pain", "sad")
POSITIVE_EMOTIONS: frozenset[str] = frozenset({"happy", "normal"})
NEGATIVE_EMOTIONS: frozenset[str] = frozenset(EMOTIONS) - POSITIVE_EMOTIONS

_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


class ContractError(ValueError):
    """A payload that does not decode into a known message (corrupt, wrong type, or a
    schema version this build does not speak). Never retryable: the same bytes fail again."""

    retryable = False


def valid_session_id(session_id: str) -> bool:
    """Session ids become subject tokens, so they may hold no dots, spaces or wildcards."""
    return bool(_SESSION_ID.match(session_id))


def frames_subject(session_id: str) -> str:
    return f"{FRAMES_PREFIX}.{session_id}"


def frames_wildcard() -> str:
    return f"{FRAMES_PREFIX}.*"


UTTERANCES_STREAM = "INTERVUE_UTTERANCES"
UTTERANCES_PREFIX = "intervue.utterances"
SPEECH_CONSUMER = "speech-workers"
INTERVIEWER_CONSUMER = "interviewer"

EventKind = Literal[
    "emotion", "score", "lifecycle", "profile", "speech", "transcript", "interview", "command"
]


def utterances_subject(session_id: str) -> str:
    return f"{UTTERANCES_PREFIX}.{session_id}"


def utterances_wildcard() -> str:
    return f"{UTTERANCES_PREFIX}.*"


def event_subject(session_id: str, kind: EventKind) -> str:
    return f"{EVENTS_PREFIX}.{session_id}.{kind}"


def session_events_wildcard(session_id: str) -> str:
    return f"{EVENTS_PREFIX}.{session_id}.>"


def all_events_wildcard() -> str:
    return f"{EVENTS_PREFIX}.>"


def session_from_subject(subject: str) -> str:
    """``intervue.frames.abc`` or ``intervue.events.abc.emotion`` → ``abc``."""
    parts = subject.split(".")
    if len(parts) < 3:
        raise ContractError(f"not an intervue subject: {subject!r}")
    return parts[2]


def now_ms() -> float:
    """Wall-clock milliseconds since the epoch: the one clock every timestamp here uses."""
    return time.time() * 1000.0


class Frame(msgspec.Struct, tag="frame", kw_only=True, array_like=False):
    """One sampled video frame, JPEG-encoded, on core NATS."""

    v: int = SCHEMA_VERSION
    session: str
    seq: int
    #: When the browser captured the frame (ms since epoch, browser clock mapped through
    #: RTCP sender reports; the gateway's receive time where no report came yet).
    capture_ms: float
    #: "rtcp" (browser capture clock) or "gateway" (the gateway's receive time).
    capture_source: str = "gateway"
    #: When the gateway published the frame (ms since epoch, server clock).
    sent_ms: float
    width: int
    height: int
    jpeg: bytes


class Face(msgspec.Struct, kw_only=True):
    """One detected face. The box is in pixels of the frame as sent (x1, y1, x2, y2)."""

    box: tuple[float, float, float, float]
    detector_score: float
    #: Probability per product emotion class, keyed by class name (sums to 1).
    probs: dict[str, float]
    label: str
    confidence: float
    valence: Literal["positive", "negative"]


class EmotionResult(msgspec.Struct, tag="emotion", kw_only=True):
    """The vision worker's verdict on one frame. `faces` empty means "no face"."""

    v: int = SCHEMA_VERSION
    session: str
    seq: int
    capture_ms: float
    capture_source: str = "gateway"
    frame_sent_ms: float
    done_ms: float
    width: int
    height: int
    faces: list[Face] = []
    #: Worker-side stage timings in ms: decode, detect, classify, total.
    timings: dict[str, float] = {}
    worker: str = ""
    model: str = ""

    @property
    def no_face(self) -> bool:
        return not self.faces


class ScoreUpdate(msgspec.Struct, tag="score", kw_only=True):
    """The session's emotion score after one result (see `stream.score`)."""

    v: int = SCHEMA_VERSION
    session: str
    seq: int
    score: float
    band: Literal["good", "normal", "bad"]
    faces_seen: int
    positive: int
    negative: int
    at_ms: float


class SessionEvent(msgspec.Struct, tag="lifecycle", kw_only=True):
    """Session lifecycle on the events stream."""

    v: int = SCHEMA_VERSION
    session: str
    event: Literal["started", "ended"]
    at_ms: float
    reason: str = ""
    #: Counters at the end of a session: frames received, published, dropped, results.
    stats: dict[str, float] = {}
    meta: dict[str, str] = {}


class Profile(msgspec.Struct, tag="profile", kw_only=True):
    """What the candidate filled in before the interview (DESIGN.md defaults)."""

    v: int = SCHEMA_VERSION
    session: str
    job_title: str = "AI 개발자"
    years: int = 2
    company: str = "EST Soft"
    self_intro: str
    language: Literal["ko", "en"] = "ko"
    at_ms: float = 0.0


class SpeechActivity(msgspec.Struct, tag="speech", kw_only=True):
    """VAD saw the candidate start or stop speaking (for live UI and the dashboard)."""

    v: int = SCHEMA_VERSION
    session: str
    speaking: bool
    at_ms: float


class Utterance(msgspec.Struct, tag="utterance", kw_only=True):
    """One stretch of speech cut by VAD: 16 kHz mono signed 16-bit little-endian PCM.

    A stretch longer than the maximum utterance length is split into parts; `part`
    counts from 0 and `final` marks the last part of the stretch."""

    v: int = SCHEMA_VERSION
    session: str
    utterance_id: str
    part: int = 0
    final: bool = True
    start_ms: float
    end_ms: float
    #: When the gateway decided the utterance (or part) had ended (server clock).
    cut_ms: float
    sample_rate: int = 16_000
    pcm: bytes
    language: str = ""


class Word(msgspec.Struct, array_like=True):
    """A transcribed word with its start/end in seconds from the utterance start."""

    text: str
    start: float
    end: float
    probability: float = 1.0


class Transcript(msgspec.Struct, tag="transcript", kw_only=True):
    """A speech worker's transcription of one utterance (or part of one)."""

    v: int = SCHEMA_VERSION
    session: str
    utterance_id: str
    part: int = 0
    final: bool = True
    text: str
    language: str
    words: list[Word] = []
    start_ms: float
    end_ms: float
    cut_ms: float
    done_ms: float
    #: Speaking metrics of this utterance (duration_s, words_per_minute, …).
    metrics: dict[str, float | int | str | list[str]] = {}
    model: str = ""
    worker: str = ""


class InterviewEvent(msgspec.Struct, tag="interview", kw_only=True):
    """One step of the interviewer's state machine. `step` names it:

    ``questions``  data = {"questions": [str, str, str], "engine": "llm"|"offline"}
    ``asked``      data = {"index": i, "question": str, "follow_up": bool}
    ``answered``   data = {"index": i, "answer": str, "metrics": {...}, "start_ms", "end_ms"}
    ``evaluated``  data = {"index": i, "evaluation": {...rubric...}, "engine": ...,
                           "score_band": "good"|"normal"|"bad"|null}
    ``report``     data = {"items": [...], "engine": ...}
    ``error``      data = {"message": str, "stage": str, "retryable": bool}
    """

    v: int = SCHEMA_VERSION
    session: str
    step: Literal["questions", "asked", "answered", "evaluated", "report", "error"]
    at_ms: float
    data: dict = {}


class InterviewCommand(msgspec.Struct, tag="command", kw_only=True):
    """An interviewer's instruction for a live session (from the dashboard).

    ``follow_up``  text = the question to ask next; it is asked after the current
                   question's evaluation and evaluated like the others."""

    v: int = SCHEMA_VERSION
    session: str
    command: Literal["follow_up"]
    text: str
    by: str = ""
    at_ms: float


BusMessage = (
    Frame
    | EmotionResult
    | ScoreUpdate
    | SessionEvent
    | Profile
    | SpeechActivity
    | Utterance
    | Transcript
    | InterviewEvent
    | InterviewCommand
)

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(BusMessage)


def encode(message: BusMessage) -> bytes:
    return _encoder.encode(message)


def decode(payload: bytes, expected: type | None = None) -> BusMessage:
    """Decode one bus payload; raise `ContractError` for anything but a known message."""
    try:
        message = _decoder.decode(payload)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        # UnicodeDecodeError: invalid UTF-8 in a string field (msgspec raises it as is)
        raise ContractError(f"undecodable bus payload ({len(payload)} bytes): {exc}") from exc
    if message.v != SCHEMA_VERSION:
        raise ContractError(
            f"schema version {message.v} of {type(message).__name__} is not supported "
            f"(this build speaks {SCHEMA_VERSION})"
        )
    if expected is not None and not isinstance(message, expected):
        raise ContractError(f"expected {expected.__name__}, got {type(message).__name__}")
    return message


def to_builtins(message: BusMessage) -> dict:
    """JSON-ready dict with its type tag (for exports, the data channel and the dashboard)."""
    data = msgspec.to_builtins(message)
    data["type"] = type(message).__struct_config__.tag
    if isinstance(message, Frame):
        data["jpeg"] = f"<{len(message.jpeg)} bytes>"
    if isinstance(message, Utterance):
        data["pcm"] = f"<{len(message.pcm)} bytes>"
    return data
