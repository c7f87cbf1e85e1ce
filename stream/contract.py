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
                  answer evaluated, report, errors (`data`: one struct a step,
                  `STEP_TYPES`; its ``working`` steps go on ``progress``)
    ``command``   `InterviewCommand`, an interviewer's follow-up question for the session
    ``turn``      `AnswerEnded`, the candidate's answer turn ended (Done, a long silence,
                  the time cap, or the session's end), naming the utterance parts it holds
    ``request``   `CandidateRequest`, the candidate asked for the next question or to try
                  the same one again
    ``progress``  `InterviewEvent` of step ``working`` only: the interviewer began a step
                  that may take a while (advisory; kept off ``interview`` so that it never
                  takes part in the steps' optimistic concurrency)
``intervue.utterances.<session>``        JetStream work queue ``INTERVUE_UTTERANCES``:
    `Utterance`, 16 kHz mono s16 audio cut by VAD, consumed once by a speech worker
JetStream key-value bucket ``intervue_invitations`` (key: an invitation's nonce):
    `InvitationRecord` (JSON), how many sessions it has opened and whether it is revoked

The room page's data channel (JSON, both directions) is typed here too: `PageMessage`
(gateway → page) and `RoomRequest` (page → gateway), encoded with `encode_page` and
decoded with `decode_room_request`.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, Literal, TypeVar

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

#: Key-value bucket of invitation records, shared by every gateway.
INVITATIONS_BUCKET = "intervue_invitations"
#: Key-value bucket of the sessions a live gateway holds (key: session id; value: the
#: gateway's name), each key refreshed while its session lives (`stream.presence`).
PRESENCE_BUCKET = "intervue_presence"

EventKind = Literal[
    "emotion",
    "score",
    "lifecycle",
    "profile",
    "speech",
    "transcript",
    "interview",
    "command",
    "turn",
    "request",
    "progress",
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


#: The candidate's form: DESIGN.md's defaults and the limits `profile_fields` applies.
DEFAULT_JOB_TITLE = "AI 개발자"
DEFAULT_YEARS = 2
DEFAULT_COMPANY = "EST Soft"
MAX_YEARS = 60
#: Longest job title or company name (characters).
MAX_PROFILE_NAME_CHARS = 100
#: Longest self-introduction unless the gateway is configured otherwise
#: (``INTERVUE_GATEWAY_MAX_INTRO_CHARS``), and the most any configuration may allow.
DEFAULT_MAX_INTRO_CHARS = 5000
MAX_INTRO_CHARS = 100_000


class Profile(msgspec.Struct, tag="profile", kw_only=True):
    """What the candidate filled in before the interview (DESIGN.md defaults). Build one
    from outside input with `parse_profile`: the struct itself checks nothing."""

    v: int = SCHEMA_VERSION
    session: str
    job_title: str = DEFAULT_JOB_TITLE
    years: int = DEFAULT_YEARS
    company: str = DEFAULT_COMPANY
    self_intro: str
    language: Literal["ko", "en"] = "ko"
    at_ms: float = 0.0


class ProfileError(ContractError):
    """The candidate's form cannot be used; the message says why in plain words (the
    gateway shows it on the form; the interviewer publishes it as an error step)."""


def profile_fields(
    data: Mapping[str, object], *, max_intro_chars: int = DEFAULT_MAX_INTRO_CHARS
) -> dict[str, Any]:
    """The one rule for the candidate's form: `data` (the page's JSON, or a `Profile`'s
    fields) → the checked, normalised ``job_title``, ``years``, ``company``,
    ``self_intro`` and ``language``; `ProfileError` says what to fix.

    Text is stripped; a blank job title or company means the default; the
    self-introduction must hold something and at most `max_intro_chars` characters."""
    intro = data.get("self_intro")
    if not isinstance(intro, str) or not intro.strip():
        raise ProfileError("the self-introduction is empty")
    intro = intro.strip()
    if len(intro) > max_intro_chars:
        raise ProfileError(
            f"the self-introduction is {len(intro):,} characters; the limit is {max_intro_chars:,}"
        )
    language = data.get("language", "ko")
    if language not in ("ko", "en"):
        raise ProfileError("language must be 'ko' or 'en'")
    years = data.get("years", DEFAULT_YEARS)
    if years is None or isinstance(years, bool):
        raise ProfileError("years of experience must be a whole number")
    try:
        # The page sends a number (a fraction of a year is dropped); other clients a string.
        years = int(years)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):  # OverflowError: int(inf), from 1e400
        raise ProfileError("years of experience must be a whole number") from None
    if not 0 <= years <= MAX_YEARS:
        raise ProfileError(f"years of experience must be between 0 and {MAX_YEARS}")
    fields: dict[str, Any] = {"self_intro": intro, "language": language, "years": years}
    for name, default in (("job_title", DEFAULT_JOB_TITLE), ("company", DEFAULT_COMPANY)):
        value = data.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ProfileError(
                f"{name} must be text of at most {MAX_PROFILE_NAME_CHARS} characters"
            )
        value = value.strip()
        if len(value) > MAX_PROFILE_NAME_CHARS:
            raise ProfileError(
                f"{name} must be text of at most {MAX_PROFILE_NAME_CHARS} characters"
            )
        fields[name] = value or default
    return fields


def parse_profile(
    session: str,
    data: Mapping[str, object],
    *,
    max_intro_chars: int = DEFAULT_MAX_INTRO_CHARS,
    at_ms: float | None = None,
) -> Profile:
    """A `Profile` for `session` from the candidate's form (`profile_fields`' rule)."""
    fields = profile_fields(data, max_intro_chars=max_intro_chars)
    return Profile(session=session, at_ms=now_ms() if at_ms is None else at_ms, **fields)


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
    #: The answer turn the speech was cut in: the question's index (-1: no answer turn was
    #: open, e.g. while the candidate read their feedback) and its attempt (1, 2, …).
    question: int = -1
    attempt: int = 0
    #: A guess sent at a pause in the speech (the VAD's `SpeechPaused`): the part as it
    #: would be cut if the answer ended there. A worker transcribes it ahead and keeps the
    #: result; it is never an answer's part and never published as a transcript.
    speculative: bool = False
    #: Nonzero: in a speculative part, its number; in a real part, "this is the same
    #: speech as speculative part N of this utterance and part" (only trailing silence
    #: differs), so its transcript can stand for this one.
    speculation: int = 0

    @property
    def part_key(self) -> str:
        return part_key(self.utterance_id, self.part)


class Word(msgspec.Struct, array_like=True):
    """A transcribed word with its start/end in seconds from the utterance start."""

    text: str
    start: float
    end: float
    probability: float = 1.0


# --------------------------------------------------------------------------- speaking metrics
#
# How an utterance, or a whole answer, was spoken. The speech worker measures each
# utterance part (inference/speech/metrics.py); `merge_speaking_metrics` is the only way
# an answer's metrics are made from its parts; every reader (interviewer, engines,
# dashboard, report, room page) reads these fields and recomputes nothing.

#: A gap between two words, or between two utterances of one answer, at least this long
#: is a pause (the speech worker's default threshold too).
PAUSE_S = 0.5
#: Upper bounds that only keep values finite (msgpack can carry inf/NaN): no utterance or
#: answer lasts a day, and no rate reaches a million per second or minute.
MAX_SPEAKING_S = 86_400.0
MAX_RATE = 1e6

Seconds = Annotated[float, msgspec.Meta(ge=0, le=MAX_SPEAKING_S)]
Count = Annotated[int, msgspec.Meta(ge=0)]
Rate = Annotated[float, msgspec.Meta(ge=0, le=MAX_RATE)]
RateBasis = Literal["words", "syllables"]
_T = TypeVar("_T")


class SpeakingMetrics(msgspec.Struct, kw_only=True):
    """How one utterance part, or one whole answer, was spoken.

    Rates are always ``count / rate_s`` (rounded as below) and are made only by
    `SpeakingMetrics.of`: the worker calls it on one utterance's counts, the merge on an
    answer's summed counts. A rate is 0 when there was no time to measure over. Every field
    has a default so that a stored dict from an older build (no ``rate_s``; a merge without
    rates when nothing was timed) still decodes."""

    #: Length of the audio, seconds (an answer: the sum over its utterances).
    duration_s: Seconds = 0.0
    #: First word start to last word end, seconds; 0 without word timings (an answer: the
    #: sum over its utterances, so thinking pauses between utterances are not in it).
    speech_s: Seconds = 0.0
    #: The time the rates are over, seconds: `speech_s`, or `duration_s` for an utterance
    #: without word timings (so the VAD's padding slows nobody down); an answer's is the sum
    #: of its parts'. Filled from those two for a dict stored before this field existed.
    rate_s: Seconds = 0.0
    #: Space-separated words holding a letter or digit (Korean: 어절).
    word_count: Count = 0
    #: ``word_count`` per minute of `rate_s`, 1 decimal (the rate to read for English).
    words_per_minute: Rate = 0.0
    #: Precomposed Hangul syllable characters in the text (each is one spoken syllable).
    hangul_syllables: Count = 0
    #: ``hangul_syllables`` per second of `rate_s`, 2 decimals (the rate to read for Korean).
    syllables_per_second: Rate = 0.0
    #: Which rate to read: "words" (`words_per_minute`) or "syllables"
    #: (`syllables_per_second`, for Korean: 어절 vary too much in length to pace by).
    rate_basis: RateBasis = "words"
    #: The filler words heard, in order, lower-cased ("um", "you know", "음"; the rule is
    #: `stream.fillers.find_fillers`).
    filler_words: list[str] = []
    #: ``len(filler_words)``.
    filler_count: Count = 0
    #: Fillers per word (``filler_count / word_count``, 4 decimals; 0 without words).
    filler_rate: Rate = 0.0
    #: Fillers per minute of `rate_s`, 1 decimal.
    fillers_per_minute: Rate = 0.0
    #: Pauses: gaps of at least the pause threshold (`PAUSE_S` by default) between words,
    #: and for an answer between its utterances too.
    pause_count: Count = 0
    #: The longest gap between two words (or utterances of an answer), any length, seconds.
    longest_pause_s: Seconds = 0.0
    #: All pauses together, seconds.
    total_pause_s: Seconds = 0.0
    #: The Whisper language code the text was transcribed in ("en", "ko"; "" unknown).
    language: Annotated[str, msgspec.Meta(max_length=16)] = ""

    def __post_init__(self) -> None:
        # a dict stored before `rate_s` existed: the worker's rule gives it back
        if not self.rate_s:
            self.rate_s = self.speech_s or self.duration_s

    @classmethod
    def of(
        cls,
        *,
        duration_s: float,
        speech_s: float,
        rate_s: float,
        word_count: int,
        hangul_syllables: int,
        rate_basis: RateBasis,
        filler_words: list[str],
        pause_count: int,
        longest_pause_s: float,
        total_pause_s: float,
        language: str,
    ) -> SpeakingMetrics:
        """The metrics of these counts and times, with every rate derived from them: the
        one place a rate is computed."""
        per_minute = 60.0 / rate_s if rate_s > 0 else 0.0
        fillers = len(filler_words)
        return cls(
            duration_s=round(float(duration_s), 3),
            speech_s=round(float(speech_s), 3),
            rate_s=round(float(rate_s), 3),
            word_count=word_count,
            words_per_minute=round(word_count * per_minute, 1),
            hangul_syllables=hangul_syllables,
            syllables_per_second=round(hangul_syllables / rate_s, 2) if rate_s > 0 else 0.0,
            rate_basis=rate_basis,
            filler_words=list(filler_words),
            filler_count=fillers,
            filler_rate=round(fillers / word_count, 4) if word_count else 0.0,
            fillers_per_minute=round(fillers * per_minute, 1),
            pause_count=pause_count,
            longest_pause_s=round(float(longest_pause_s), 3),
            total_pause_s=round(float(total_pause_s), 3),
            language=language,
        )


def merge_speaking_metrics(
    parts: Iterable[tuple[float, float, SpeakingMetrics | None]],
) -> SpeakingMetrics | None:
    """The speaking metrics of a whole answer from its utterance parts (the only merge).

    `parts` are ``(start_ms, end_ms, metrics)`` in any order; a part without metrics (no
    speech in it) is left out, and None comes back when no part has any. Counts and times
    add up (Hangul syllables too); the rates are `SpeakingMetrics.of` the sums, i.e. over
    the summed speaking time. A gap between utterances of at least `PAUSE_S` (a pause to
    think) counts as a pause, and the longest pause is the longest of those gaps and of
    the pauses inside the utterances. The answer's language and rate basis are those of
    most of its speaking time (Whisper labels each utterance; a short English one inside
    a Korean answer must not switch the whole answer to words per minute)."""
    ordered = sorted(((s, e, m) for s, e, m in parts if m is not None), key=lambda p: p[0])
    if not ordered:
        return None
    metrics = [m for _, _, m in ordered]
    pause_count = sum(m.pause_count for m in metrics)
    total_pause_s = sum(m.total_pause_s for m in metrics)
    longest_pause_s = max(m.longest_pause_s for m in metrics)
    for (_, end_a, _), (start_b, _, _) in itertools.pairwise(ordered):
        gap_s = max(0.0, start_b - end_a) / 1000.0
        if gap_s >= PAUSE_S:
            pause_count += 1
            total_pause_s += gap_s
        longest_pause_s = max(longest_pause_s, gap_s)
    return SpeakingMetrics.of(
        duration_s=sum(m.duration_s for m in metrics),
        speech_s=sum(m.speech_s for m in metrics),
        rate_s=sum(m.rate_s for m in metrics),
        word_count=sum(m.word_count for m in metrics),
        hangul_syllables=sum(m.hangul_syllables for m in metrics),
        rate_basis=_by_most_time(metrics, lambda m: m.rate_basis),
        filler_words=[word for m in metrics for word in m.filler_words],
        pause_count=pause_count,
        longest_pause_s=longest_pause_s,
        total_pause_s=total_pause_s,
        language=_by_most_time(metrics, lambda m: m.language),
    )


def _by_most_time(metrics: list[SpeakingMetrics], key: Callable[[SpeakingMetrics], _T]) -> _T:
    """The value of `key` that holds the most speaking time (the earliest on a tie)."""
    time: dict[_T, float] = {}
    for m in metrics:
        time[key(m)] = time.get(key(m), 0.0) + m.rate_s
    return max(time, key=lambda value: time[value])  # max keeps the first of equals


class AnswerEmotion(msgspec.Struct, kw_only=True):
    """The emotion score over one answer turn (``evaluated``'s ``emotion``), by the session
    score's rule: `stream.score.answer_emotion` makes it."""

    score: float
    band: Literal["good", "normal", "bad"]
    #: Face readings counted in the turn.
    faces: Count


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
    #: How the utterance was spoken (None: no speech in it, `dropped_reason` says why).
    metrics: SpeakingMetrics | None = None
    model: str = ""
    worker: str = ""
    #: The answer turn of the utterance (copied from `Utterance`).
    question: int = -1
    attempt: int = 0
    #: Why no speech was found ("silence", "hallucination", …); then `text` is empty.
    #: Every utterance part gets a transcript, so whoever assembles an answer knows when
    #: all its parts are in; an empty one is bookkeeping and is never shown.
    dropped_reason: str = ""

    @property
    def part_key(self) -> str:
        return part_key(self.utterance_id, self.part)


# --------------------------------------------------------------------------- interview steps
#
# What each step of the interviewer (`InterviewEvent.step`) carries as its `data`: one
# struct a step, made by the orchestrator (llm/) and read by everyone else (the fold in
# `llm.steps`, the gateway, the dashboard, the room page) without guessing at keys. Every
# field that a step stored by an older build may lack has a default, so those still decode.

#: How many questions are generated from the candidate's profile.
QUESTION_COUNT = 3
#: The longest question (generated or an interviewer's follow-up), in characters.
MAX_QUESTION_CHARS = 1000

Index = Annotated[int, msgspec.Meta(ge=0)]
Attempt = Annotated[int, msgspec.Meta(ge=1)]
QuestionText = Annotated[str, msgspec.Meta(max_length=MAX_QUESTION_CHARS)]
#: One row of an evaluation table as shown: criterion, rating, reason (in the interview's
#: language).
EvaluationRow = tuple[str, str, str]
StepName = Literal["questions", "asked", "answered", "evaluated", "report", "error", "working"]
#: What the interviewer is working on in a `WorkingStep`.
WorkingStage = Literal["questions", "evaluation"]


class QuestionsStep(msgspec.Struct, kw_only=True):
    """``questions``: the questions generated from the profile, in the order asked."""

    questions: Annotated[list[QuestionText], msgspec.Meta(max_length=QUESTION_COUNT)] = []
    #: Which engine wrote them: "llm" or "offline".
    engine: str = ""
    #: The interview's language ("ko", "en"; "" from a build that did not say).
    language: str = ""


class AskedStep(msgspec.Struct, kw_only=True):
    """``asked``: a question put to the candidate. A "Try again" asks the same index
    again with the next attempt; an interviewer's follow-up is a new index."""

    index: Index
    attempt: Attempt = 1
    #: The question's text ("" in an older step: the planned question of that index).
    question: QuestionText = ""
    #: How many questions the interview holds now (follow-ups waiting included).
    total: Count = 0
    follow_up: bool = False


class AnsweredStep(msgspec.Struct, kw_only=True):
    """``answered``: the interviewer took the candidate's answer to one attempt."""

    index: Index
    attempt: Attempt = 1
    #: Everything said in the turn, in order ("" when nothing was heard).
    answer: str = ""
    #: How the answer was spoken, merged over its parts (`merge_speaking_metrics`); None
    #: when nothing was heard.
    metrics: SpeakingMetrics | None = None
    #: The first word's start and the last word's end (None: nothing was heard).
    start_ms: float | None = None
    end_ms: float | None = None
    #: When the question was asked and the turn ended (server clock).
    asked_ms: float | None = None
    ended_ms: float | None = None
    #: Why the turn ended (a `TurnEndReason`; "" from a build that did not say).
    reason: str = ""

    def __post_init__(self) -> None:
        self.metrics = _heard(self.metrics)


class Criterion(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One rubric criterion as stored: its rating (None: NA), why, and for the similarity
    criterion the percent match (None: NA)."""

    rating: str | None = None
    reason: str = ""
    match_percent: int | None = None


class Evaluation(msgspec.Struct, kw_only=True):
    """The seven-criterion rubric of one answer as the engines write it (the JSON of
    `llm.schemas.Evaluation`, which validates the model's reply), with three tips and a
    model answer."""

    overall: Criterion = msgspec.field(default_factory=Criterion)
    similarity: Criterion = msgspec.field(default_factory=Criterion)
    clarity: Criterion = msgspec.field(default_factory=Criterion)
    technical_explanation: Criterion = msgspec.field(default_factory=Criterion)
    examples: Criterion = msgspec.field(default_factory=Criterion)
    communication: Criterion = msgspec.field(default_factory=Criterion)
    natural_delivery: Criterion = msgspec.field(default_factory=Criterion)
    tips: list[str] = []
    model_answer: str = ""
    engine: str = ""
    fallback_error: str | None = None
    #: Written by the language model ("llm"): the criteria the stated rules rated instead
    #: (overall and the measured ones; `llm.hybrid`). Empty: one engine rated all.
    rule_based: list[str] = []
    #: The model's criteria that a rule's clamp lowered (their reasons say why).
    clamped: list[str] = []


class EvaluatedStep(msgspec.Struct, kw_only=True):
    """``evaluated``: one attempt's answer judged, or marked `no_answer` (nothing was
    heard: there is nothing to judge, `evaluation` is None and `rows` empty)."""

    index: Index
    attempt: Attempt = 1
    question: str = ""
    evaluation: Evaluation | None = None
    #: The seven criteria as table rows in the interview's language.
    rows: list[EvaluationRow] = []
    engine: str = ""
    no_answer: bool = False
    #: The emotion score over the answer turn (None: no face was counted).
    emotion: AnswerEmotion | None = None


class AttemptSummary(msgspec.Struct, kw_only=True):
    """One attempt at a question as the report keeps it (None: not evaluated, or the
    turn had not ended)."""

    attempt: Attempt = 1
    answer: str = ""
    metrics: SpeakingMetrics | None = None
    evaluation: Evaluation | None = None
    rows: list[EvaluationRow] | None = None
    engine: str | None = None
    emotion: AnswerEmotion | None = None
    reason: str | None = None

    def __post_init__(self) -> None:
        self.metrics = _heard(self.metrics)


class ReportItem(AttemptSummary, kw_only=True):
    """One question of the report: its latest attempt (the one that counts) and the
    earlier ones."""

    index: Index = 0
    question: str = ""
    follow_up: bool = False
    earlier_attempts: list[AttemptSummary] = []


class ReportStep(msgspec.Struct, kw_only=True):
    """``report``: one item per question asked."""

    items: list[ReportItem] = []
    engine: str = ""


class ErrorStep(msgspec.Struct, kw_only=True):
    """``error``: a step failed (or the offline engine stood in for the language model)."""

    message: str = ""
    #: Where: "profile", "questions", "evaluation", …
    stage: str = ""
    retryable: bool = False


class WorkingStep(msgspec.Struct, kw_only=True):
    """``working``: the interviewer started a step that may take a while (a language model
    writing the questions or an evaluation), published just before the engine is called so
    the candidate sees progress instead of a silent wait. The step's own result
    (``questions``, or ``evaluated`` of the same `index` and `attempt`) ends it. Published
    on the session's ``progress`` subject, not ``interview``: it is advisory, and a claim
    on the interview subject would make racing interviewers refuse each other's results."""

    #: "questions" (being prepared) or "evaluation" (of answer `index`, `attempt`).
    stage: WorkingStage
    #: The question whose answer is being evaluated (-1 for questions).
    index: int = -1
    attempt: Attempt = 1
    #: The engine at work: "llm" or "offline" (instant: the page shows nothing for it).
    engine: str = ""
    #: The time the step may take before the offline engine answers it instead (None:
    #: no budget).
    budget_s: float | None = None


StepData = (
    QuestionsStep | AskedStep | AnsweredStep | EvaluatedStep | ReportStep | ErrorStep | WorkingStep
)

#: The payload type of each step.
STEP_TYPES: dict[str, type[StepData]] = {
    "questions": QuestionsStep,
    "asked": AskedStep,
    "answered": AnsweredStep,
    "evaluated": EvaluatedStep,
    "report": ReportStep,
    "error": ErrorStep,
    "working": WorkingStep,
}
_STEP_NAMES = {kind: step for step, kind in STEP_TYPES.items()}


def _heard(metrics: SpeakingMetrics | None) -> SpeakingMetrics | None:
    # older builds stored an answer with no speech as an empty object, not null
    return None if metrics == SpeakingMetrics() else metrics


def step_data(step: str, value: object) -> StepData:
    """The typed payload of a `step` from its struct or its stored JSON-ready object (the
    one place a step's data is decoded); `ContractError` for anything that does not fit."""
    kind = STEP_TYPES.get(step)
    if kind is None:
        raise ContractError(f"unknown interview step {step!r}")
    if isinstance(value, kind):
        return value
    if isinstance(value, msgspec.Struct):
        raise ContractError(f"a {step!r} step cannot carry {type(value).__name__}")
    try:
        return msgspec.convert(value, kind)
    except msgspec.ValidationError as exc:
        raise ContractError(f"unusable {step!r} step: {exc}") from exc


class InterviewEvent(msgspec.Struct, tag="interview", kw_only=True):
    """One step of the interviewer's state machine. `step` names it and `data` is that
    step's struct (`STEP_TYPES`): ``questions`` `QuestionsStep`, ``asked`` `AskedStep`,
    ``answered`` `AnsweredStep`, ``evaluated`` `EvaluatedStep`, ``report`` `ReportStep`,
    ``error`` `ErrorStep`, ``working`` `WorkingStep`. On the wire `data` is that struct's
    object, as older builds wrote it; a dict given (or decoded) here becomes the struct
    (`step_data`), and one that does not fit makes the whole event undecodable. Make one
    with `InterviewEvent.of`."""

    v: int = SCHEMA_VERSION
    session: str
    step: StepName
    at_ms: float
    #: The step's struct (typed `Any` only because msgspec cannot tell untagged structs
    #: apart: `__post_init__` makes it the step's type).
    data: Any = {}

    def __post_init__(self) -> None:
        self.data = step_data(self.step, self.data)

    @classmethod
    def of(cls, session: str, data: StepData, at_ms: float | None = None) -> InterviewEvent:
        """The event of one step's data (its step name comes from the data's type)."""
        return cls(
            session=session,
            step=_STEP_NAMES[type(data)],  # type: ignore[arg-type]
            at_ms=now_ms() if at_ms is None else at_ms,
            data=data,
        )


class InterviewCommand(msgspec.Struct, tag="command", kw_only=True):
    """An interviewer's instruction for a live session (from the dashboard).

    ``follow_up``  text = the question to ask next; it is asked after the current
                   question's evaluation and evaluated like the others."""

    v: int = SCHEMA_VERSION
    session: str
    command: Literal["follow_up"]
    text: QuestionText
    by: str = ""
    at_ms: float


def part_key(utterance_id: str, part: int) -> str:
    """One utterance part's name in an `AnswerEnded` list: ``<utterance_id>#<part>``."""
    return f"{utterance_id}#{part}"


TurnEndReason = Literal["done", "silence", "time_cap", "session_end"]


class AnswerEnded(msgspec.Struct, tag="turn", kw_only=True):
    """The candidate's answer turn for one question attempt is over (from the gateway).

    An answer is everything said between the question being asked and this event; the
    interviewer takes it once the transcript of every part named in `parts` is in.
    ``reason``: ``done`` (the candidate pressed Done answering), ``silence`` (a long
    silence after they had spoken), ``time_cap`` (the longest answer time), or
    ``session_end`` (the session ended while they answered)."""

    v: int = SCHEMA_VERSION
    session: str
    question: int
    attempt: int
    reason: TurnEndReason
    #: `part_key`s of every utterance part cut during the turn, in order.
    parts: list[str] = []
    #: When the turn opened (the question reached the gateway) and ended (server clock).
    opened_ms: float
    at_ms: float


class CandidateRequest(msgspec.Struct, tag="request", kw_only=True):
    """The candidate, having read the feedback on an attempt, asks for the next question
    (``next``) or to answer the same question again (``retry``)."""

    v: int = SCHEMA_VERSION
    session: str
    request: Literal["next", "retry"]
    #: The attempt whose card the candidate pressed the button on (stale presses on an
    #: older card are ignored).
    question: int
    attempt: int
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
    | AnswerEnded
    | CandidateRequest
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


class InvitationRecord(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What the gateways know of one invitation (the value under its nonce in
    ``INVITATIONS_BUCKET``; JSON so an operator can read it with `nats kv get`)."""

    v: int = SCHEMA_VERSION
    #: Sessions it has opened so far.
    used: int = 0
    #: Revoked by `intervue invite revoke`: it opens nothing more.
    revoked: bool = False
    #: When it was revoked (wall-clock ms), and why.
    revoked_at_ms: float | None = None
    reason: str = ""


def encode_invitation(record: InvitationRecord) -> bytes:
    return msgspec.json.encode(record)


def decode_invitation(payload: bytes) -> InvitationRecord:
    """An invitation record, or `ContractError`."""
    try:
        record = msgspec.json.decode(payload, type=InvitationRecord)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise ContractError(f"undecodable invitation record: {exc}") from exc
    if record.v != SCHEMA_VERSION:
        raise ContractError(f"invitation record schema version {record.v} is not supported")
    return record


def to_builtins(message: BusMessage) -> dict:
    """JSON-ready dict with its type tag (for exports, the data channel and the dashboard)."""
    data = msgspec.to_builtins(message)
    data["type"] = type(message).__struct_config__.tag
    if isinstance(message, Frame):
        data["jpeg"] = f"<{len(message.jpeg)} bytes>"
    if isinstance(message, Utterance):
        data["pcm"] = f"<{len(message.pcm)} bytes>"
    return data


# --------------------------------------------------------------------------- the room page
#
# The data channel between the gateway and the room page carries JSON objects whose
# "type" names the message. Every message in both directions is a struct below:
# `PageMessage` (gateway → page) and `RoomRequest` (page → gateway). The gateway and the
# load harness (deploy/load.py) encode and decode only through them; room.js follows
# the JSON Schema generated from them, checked in as stream/static/protocol.schema.json
# (`intervue protocol-schema` writes it; tests/test_room_protocol.py fails when it is stale
# or when room.js handles or sends a type the schema lacks).

#: The data channel's protocol version: `Hello.v` carries it, the schema file states it,
#: and room.js checks it. Bump it when a message changes incompatibly.
ROOM_PROTOCOL_VERSION = 1
#: Limits on what a page may send (a ping's t0 is echoed; anything bigger is refused).
MAX_ROOM_REQUEST_BYTES = 1024


class PageFace(msgspec.Struct, kw_only=True):
    """One face on the page: box in frame pixels, top label and all class probabilities."""

    box: tuple[float, float, float, float]
    label: str
    confidence: float
    probs: dict[str, float]
    valence: Literal["positive", "negative"]


class Hello(msgspec.Struct, tag="hello", tag_field="type", kw_only=True):
    """The data channel is open. `resumed`: the page came back to a session it had
    (a reload); the history of the interview follows as `InterviewUpdate`s and
    `TranscriptUpdate`s marked ``replay``. `v`: the protocol version the gateway speaks
    (`ROOM_PROTOCOL_VERSION`)."""

    v: int = ROOM_PROTOCOL_VERSION
    session: str
    analysis_fps: float
    resumed: bool = False


class Pong(msgspec.Struct, tag="pong", tag_field="type", kw_only=True):
    t0: float | None = None
    server_ms: float


class EmotionUpdate(msgspec.Struct, tag="emotion", tag_field="type", kw_only=True):
    """One analysed frame's result and the session's emotion score after it."""

    seq: int
    width: int
    height: int
    faces: list[PageFace] = []
    capture_ms: float
    capture_source: str
    gateway_ms: float
    timings: dict[str, float] = {}
    score: float
    band: Literal["good", "normal", "bad"]
    faces_seen: int
    #: Whether this result counted towards the score (one reading per second of video).
    counted: bool = False


class RoomStats(msgspec.Struct, tag="stats", tag_field="type", kw_only=True):
    """The session's counters, every two seconds."""

    video_frames: int
    audio_frames: int
    frames_sampled: int
    frames_sent: int
    frames_dropped: int
    frames_timed_out: int
    results: int
    no_face_results: int
    late_results: int
    utterances: int
    result_latency_p50_ms: float
    #: The camera's frame rate and the analysed rate over the last seconds.
    camera_fps: float = 0.0
    analysed_fps: float = 0.0


class SpeechUpdate(msgspec.Struct, tag="speech", tag_field="type", kw_only=True):
    speaking: bool
    at_ms: float


class TranscriptUpdate(msgspec.Struct, tag="transcript", tag_field="type", kw_only=True):
    """One utterance part transcribed (a live caption); empty ones are never sent."""

    utterance_id: str
    part: int
    final: bool
    text: str
    language: str
    metrics: SpeakingMetrics | None = None
    latency_ms: float
    question: int
    attempt: int
    replay: bool = False


class InterviewUpdate(msgspec.Struct, tag="interview", tag_field="type", kw_only=True):
    """One interviewer step (`InterviewEvent`), as stored: `data` is the step's struct
    (`STEP_TYPES`), its JSON object on the wire."""

    step: StepName
    data: Any
    at_ms: float
    replay: bool = False

    def __post_init__(self) -> None:
        self.data = step_data(self.step, self.data)


TurnState = Literal["answering", "ended"]


class TurnUpdate(msgspec.Struct, tag="turn", tag_field="type", kw_only=True):
    """The answer turn's clock, sent when it changes and every second while it runs.

    Durations, not times: the page counts down from when it received the message, so a
    browser clock that differs from the server's does not matter."""

    question: int
    attempt: int
    state: TurnState
    #: Time since the question was asked.
    elapsed_ms: float
    #: Time left before the answer time cap ends the turn.
    cap_left_ms: float
    #: Whether the countdown to the cap should be visible (its last stretch).
    countdown: bool = False
    #: Time left before the long silence ends the turn (None: not armed — the candidate
    #: is speaking or has not spoken yet).
    silence_left_ms: float | None = None
    #: Show the "still there?" hint (the silence is about to end the answer).
    silence_hint: bool = False
    #: Why the turn ended (state "ended").
    reason: TurnEndReason | None = None
    #: Whether the candidate has spoken in this turn.
    spoken: bool = False


class AutoAdvance(msgspec.Struct, tag="auto_next", tag_field="type", kw_only=True):
    """Kiosk mode: the next question comes by itself in `in_ms`."""

    question: int
    attempt: int
    in_ms: float


EndCode = Literal[
    "candidate", "left", "no_media", "no_offer", "max_length", "connection", "shutdown", "other"
]


class SessionEnded(msgspec.Struct, tag="ended", tag_field="type", kw_only=True):
    """The session is over; `code` is for the page (it words it in its language),
    `reason` for logs."""

    code: EndCode
    reason: str


PageMessage = (
    Hello
    | Pong
    | EmotionUpdate
    | RoomStats
    | SpeechUpdate
    | TranscriptUpdate
    | InterviewUpdate
    | TurnUpdate
    | AutoAdvance
    | SessionEnded
)


class Ping(msgspec.Struct, tag="ping", tag_field="type", kw_only=True):
    """Round-trip probe; `t0` comes back in the `Pong`."""

    t0: float | None = None


class Bye(msgspec.Struct, tag="bye", tag_field="type", kw_only=True):
    """The candidate ended the session (End session)."""


class _OnCard(msgspec.Struct, tag_field="type", kw_only=True):
    """A button pressed on one question attempt's card."""

    question: int
    attempt: int


class DoneAnswering(_OnCard, tag="done"):
    """The candidate pressed Done answering on this attempt's card."""


class NextQuestion(_OnCard, tag="next"):
    """The candidate asks for the next question (or the report after the last one)."""


class TryAgain(_OnCard, tag="retry"):
    """The candidate wants to answer the same question again."""


RoomRequest = Ping | Bye | DoneAnswering | NextQuestion | TryAgain

_page_encoder = msgspec.json.Encoder()
_room_request_decoder = msgspec.json.Decoder(RoomRequest)


def encode_page(message: PageMessage) -> str:
    """A gateway → page data-channel message as JSON text."""
    return _page_encoder.encode(message).decode("utf-8")


def decode_page(text: str | bytes) -> PageMessage:
    """A gateway → page message (for clients of the gateway: the load harness, tests);
    `ContractError` for anything else, and for a `Hello` of another protocol version."""
    try:
        message = msgspec.json.decode(text, type=PageMessage)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ContractError(f"not a page message: {exc}") from exc
    if isinstance(message, Hello) and message.v != ROOM_PROTOCOL_VERSION:
        raise ContractError(
            f"room protocol version {message.v} is not supported "
            f"(this build speaks {ROOM_PROTOCOL_VERSION})"
        )
    return message


def encode_room_request(message: RoomRequest) -> str:
    return _page_encoder.encode(message).decode("utf-8")


def decode_room_request(text: str | bytes) -> RoomRequest:
    """A page → gateway message; `ContractError` for anything else (too long, not JSON,
    not an object, an unknown type, a wrong field)."""
    if len(text) > MAX_ROOM_REQUEST_BYTES:
        raise ContractError(f"room request too long ({len(text)} > {MAX_ROOM_REQUEST_BYTES})")
    try:
        return _room_request_decoder.decode(text)
    except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
        raise ContractError(f"not a room request: {exc}") from exc


#: Where the generated schema is checked in (inside the `stream` package).
PROTOCOL_SCHEMA_FILE = ("static", "protocol.schema.json")


def data_channel_schema() -> dict:
    """JSON Schema of both directions of the data channel, with its version and limits:
    ``$defs.PageMessage`` (gateway → page) and ``$defs.RoomRequest`` (page → gateway) are
    unions discriminated by ``type``."""
    step_types = list(STEP_TYPES.values())
    (page, request, *steps), components = msgspec.json.schema_components(
        [PageMessage, RoomRequest, *step_types], ref_template="#/$defs/{name}"
    )
    # `InterviewUpdate.data` is typed by its `step` (`step_data`), which msgspec cannot
    # express for an `Any` field: say it here, one if/then per step.
    update = components["InterviewUpdate"]
    update["properties"]["data"] = {"type": "object"}
    update["allOf"] = [
        {"if": {"properties": {"step": {"const": name}}}, "then": {"properties": {"data": ref}}}
        for name, ref in zip(STEP_TYPES, steps, strict=True)
    ]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "intervue room data channel",
        "description": (
            "JSON messages on the room page's data channel, both directions. Generated from "
            "stream/contract.py by `intervue protocol-schema`; do not edit by hand."
        ),
        "x-protocol-version": ROOM_PROTOCOL_VERSION,
        "x-limits": {"max_request_bytes": MAX_ROOM_REQUEST_BYTES},
        "anyOf": [{"$ref": "#/$defs/PageMessage"}, {"$ref": "#/$defs/RoomRequest"}],
        "$defs": {"PageMessage": page, "RoomRequest": request, **components},
    }


def data_channel_schema_text() -> str:
    """`data_channel_schema` as the checked-in file's exact text."""
    return json.dumps(data_channel_schema(), indent=2, ensure_ascii=False) + "\n"
