"""What the dashboard shows, computed from a session's events (pure: no Streamlit, no I/O,
no clock reads: every function that needs "now" takes it as an argument).

`fold(events)` turns a session's stored events (in stream order) into a `SessionView`: its
profile, questions with their answer spans, transcripts, emotion points, score updates and
lifecycle. The other functions derive figures from a view:

- `window` / `emotion_mix` / `bins`: the emotion results of a time window, the share of each
  class among the faces seen, and the same over fixed-width bins (the stacked area);
- `align_words`: each transcript word with the emotion seen while it was spoken;
- `answer_summaries`: a headline and notes per answer ("anxiety rose during the first 10 s
  of Q3");
- `health`: analysed fps, dropped frames, glass-to-result latency, malformed events;
- `card`: everything an overview card shows for a live session.

Bad input never raises: an event whose payload did not decode (`StoredEvent.message` None)
or whose data does not fit (an interview step without an index, …) is skipped and counted
in `SessionView.malformed`.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from llm.steps import StepFold
from stream import contract
from stream.bus import StoredEvent
from stream.score import answer_emotion
from stream.stats import percentile

EMOTIONS = contract.EMOTIONS
POSITIVE = contract.POSITIVE_EMOTIONS
NEGATIVE = contract.NEGATIVE_EMOTIONS

#: The window of the live emotion mix.
MIX_WINDOW_MS = 30_000.0
#: The window of the live health figures (fps, latency).
HEALTH_WINDOW_MS = 10_000.0
#: A segment at the start/end of an answer that summaries look at.
SEGMENT_MS = 10_000.0
#: Fewest faces in a window before its mix is described at all.
MIN_FACES = 5
#: A class "rose" when its share in a segment is this much above the baseline ...
RISE = 0.15
#: ... and at least this large.
RISE_FLOOR = 0.25
#: How far from a word an emotion result may be to describe it.
WORD_SLACK_MS = 250.0
WORD_NEAREST_MS = 1000.0

ADJECTIVE = {
    "anger": "angry",
    "anxiety": "anxious",
    "embarrass": "embarrassed",
    "happy": "happy",
    "normal": "neutral",
    "pain": "pained",
    "sad": "sad",
}


# --------------------------------------------------------------------------- the fold


@dataclass
class EmotionPoint:
    """One analysed frame: its primary face (the largest), or no face."""

    t_ms: float  # capture time (glass)
    done_ms: float
    seq: int
    label: str | None  # None: no face
    confidence: float = 0.0
    probs: dict[str, float] = field(default_factory=dict)
    valence: float = 0.0  # P(positive) − P(negative) of the primary face, −1 … 1
    positive: int = 0  # faces in the frame with a positive label (the score counts all)
    negative: int = 0
    capture_source: str = "gateway"
    #: every face's top label (the score's counting rule reads these)
    labels: tuple[str, ...] = ()

    @property
    def latency_ms(self) -> float:
        return self.done_ms - self.t_ms


@dataclass
class TranscriptView:
    utterance_id: str
    part: int
    text: str
    start_ms: float
    end_ms: float
    words: list[contract.Word]
    metrics: contract.SpeakingMetrics | None
    language: str
    final: bool
    question: int = -1  # index of the question it answers (-1: before the first)
    attempt: int = 1  # which attempt at that question
    #: the answer turn it was spoken in, as the gateway tagged it (None: an older event)
    turn: tuple[int, int] | None = None


@dataclass
class QuestionView:
    index: int
    text: str
    follow_up: bool = False
    asked_ms: float | None = None
    answer_start_ms: float | None = None
    answer_end_ms: float | None = None
    answer: str = ""
    #: How the answer was spoken: the interviewer's merged metrics once it took the answer,
    #: the same merge over the transcripts so far before (None: nothing heard yet)
    metrics: contract.SpeakingMetrics | None = None
    answered: bool = False  # the interviewer took the answer ("answered" step)
    #: The rubric (an empty one for an attempt evaluated as `no_answer`).
    evaluation: contract.Evaluation | None = None
    rows: list[list[str]] = field(default_factory=list)
    engine: str = ""
    emotion: contract.AnswerEmotion | None = None  # the interviewer's, with the evaluation
    #: the answer turn as the gateway kept it (`AnswerEnded`): opened and ended (server clock)
    turn_opened_ms: float | None = None
    turn_ended_ms: float | None = None
    #: which attempt this is (a "Try again" asks the same question again) and how it ended
    attempt: int = 1
    end_reason: str = ""
    no_answer: bool = False
    #: the question's earlier attempts, oldest first (this view is the latest, the one that
    #: counts)
    earlier: list[QuestionView] = field(default_factory=list)

    @property
    def number(self) -> int:
        return self.index + 1

    @property
    def label(self) -> str:
        return f"Q{self.number}"

    @property
    def state(self) -> str:
        if self.evaluation is not None:
            return "evaluated"
        if self.answered:
            return "answered"
        if self.answer_start_ms is not None:
            return "answering"
        if self.asked_ms is not None:
            return "asked"
        return "planned"


@dataclass
class SessionView:
    session: str
    started_ms: float | None = None
    ended_ms: float | None = None
    end_reason: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    meta: dict[str, str] = field(default_factory=dict)
    profile: contract.Profile | None = None
    questions: list[QuestionView] = field(default_factory=list)
    engine: str = ""
    transcripts: list[TranscriptView] = field(default_factory=list)
    points: list[EmotionPoint] = field(default_factory=list)  # sorted by t_ms
    scores: list[contract.ScoreUpdate] = field(default_factory=list)
    speaking: bool | None = None
    speaking_since_ms: float | None = None
    report: contract.ReportStep | None = None
    errors: list[contract.ErrorStep] = field(default_factory=list)
    #: The interviewer's slow step under way (questions being prepared, an answer's
    #: feedback being written) and when it began; None once its result came.
    working: contract.WorkingStep | None = None
    working_ms: float | None = None
    commands: list[contract.InterviewCommand] = field(default_factory=list)
    first_ms: float | None = None
    last_ms: float | None = None
    events: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    malformed: int = 0
    malformed_samples: list[str] = field(default_factory=list)

    # ---- derived --------------------------------------------------------------------

    @property
    def t0_ms(self) -> float:
        """The session's zero on every chart: its start, else its first event."""
        return self.started_ms or self.first_ms or 0.0

    @property
    def current(self) -> QuestionView | None:
        asked = [q for q in self.questions if q.asked_ms is not None]
        return asked[-1] if asked else None

    @property
    def score(self) -> contract.ScoreUpdate | None:
        return self.scores[-1] if self.scores else None

    @property
    def pending_follow_ups(self) -> list[str]:
        asked = sum(1 for q in self.questions if q.follow_up)
        texts = [c.text.strip() for c in self.commands if c.text.strip()]
        return texts[asked:]

    def title(self) -> str:
        """Candidate and job in a few words."""
        who = self.meta.get("candidate") or self.meta.get("name") or ""
        job = ""
        if self.profile is not None:
            job = f"{self.profile.job_title} · {self.profile.company}"
            job += f" ({self.profile.years} y)"
        if who and job:
            return f"{who} — {job}"
        return who or job or f"session {self.session}"


def fold(events: Iterable[StoredEvent], session: str = "") -> SessionView:
    """A session's events (stream order) as a view; bad events are skipped and counted."""
    view = SessionView(session=session)
    steps = StepFold()  # the interviewer's steps, as the orchestrator folds them
    seen_parts: set[tuple[str, int]] = set()
    speech: list[tuple[float, bool]] = []
    turns: dict[tuple[int, int], contract.AnswerEnded] = {}
    for event in events:
        view.events += 1
        message = event.message
        if message is None:
            _bad(view, f"#{event.seq} {event.subject}: {event.error or 'undecodable'}")
            continue
        if not view.session:
            view.session = message.session
        kind = type(message).__struct_config__.tag
        view.counts[kind] = view.counts.get(kind, 0) + 1
        try:
            at = _apply(view, message, steps, seen_parts)
            if isinstance(message, contract.SpeechActivity):
                speech.append((message.at_ms, message.speaking))
            elif isinstance(message, contract.AnswerEnded):
                turns.setdefault((message.question, message.attempt), message)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            _bad(view, f"#{event.seq} {event.subject}: unusable {kind} ({exc})")
            continue
        if at is not None and math.isfinite(at) and at > 0:
            view.first_ms = at if view.first_ms is None else min(view.first_ms, at)
            view.last_ms = at if view.last_ms is None else max(view.last_ms, at)
    view.points.sort(key=lambda p: p.t_ms)
    view.engine, view.report = steps.engine, steps.report
    view.errors = [error for _, error in steps.errors]
    view.working, view.working_ms = steps.working, steps.working_ms
    _build_questions(view, steps, speech, turns)
    return view


def _bad(view: SessionView, text: str) -> None:
    view.malformed += 1
    if len(view.malformed_samples) < 20:
        view.malformed_samples.append(text[:300])


def _apply(
    view: SessionView,
    message: contract.BusMessage,
    steps: StepFold,
    seen_parts: set[tuple[str, int]],
) -> float | None:
    """Apply one message; return its timestamp (ms) or None."""
    if isinstance(message, contract.EmotionResult):
        view.points.append(_point(message))
        return message.done_ms
    if isinstance(message, contract.ScoreUpdate):
        view.scores.append(message)
        return message.at_ms
    if isinstance(message, contract.SessionEvent):
        if message.event == "started":
            if view.started_ms is None:
                view.started_ms = message.at_ms
            view.meta.update(message.meta)
        else:
            view.ended_ms = message.at_ms
            view.end_reason = message.reason
            view.stats = dict(message.stats)
            view.meta.update(message.meta)
        return message.at_ms
    if isinstance(message, contract.Profile):
        if view.profile is None:
            view.profile = message
        return message.at_ms or None
    if isinstance(message, contract.SpeechActivity):
        if view.speaking != message.speaking:
            view.speaking_since_ms = message.at_ms
        view.speaking = message.speaking
        return message.at_ms
    if isinstance(message, contract.Transcript):
        key = (message.utterance_id, message.part)
        if key in seen_parts:
            return message.done_ms  # a redelivered utterance transcribed twice
        seen_parts.add(key)
        if not message.text.strip():
            return message.done_ms  # a part with no speech: bookkeeping, never shown
        view.transcripts.append(
            TranscriptView(
                utterance_id=message.utterance_id,
                part=message.part,
                text=message.text,
                start_ms=float(message.start_ms),
                end_ms=float(message.end_ms),
                words=list(message.words),
                metrics=message.metrics,
                language=message.language,
                final=message.final,
                turn=(message.question, message.attempt) if message.question >= 0 else None,
            )
        )
        return message.end_ms
    if isinstance(message, contract.InterviewCommand):
        view.commands.append(message)
        return message.at_ms
    if isinstance(message, contract.InterviewEvent):
        steps.apply_step(message)
        return message.at_ms
    return None


def _point(result: contract.EmotionResult) -> EmotionPoint:
    positive = sum(1 for f in result.faces if f.label in POSITIVE)
    negative = sum(1 for f in result.faces if f.label in NEGATIVE)
    point = EmotionPoint(
        t_ms=float(result.capture_ms),
        done_ms=float(result.done_ms),
        seq=result.seq,
        label=None,
        positive=positive,
        negative=negative,
        capture_source=result.capture_source,
        labels=tuple(f.label for f in result.faces if f.label in EMOTIONS),
    )
    if result.faces:
        face = max(result.faces, key=_area)
        probs = {k: float(v) for k, v in face.probs.items() if k in EMOTIONS}
        point.label = face.label if face.label in EMOTIONS else None
        point.confidence = float(face.confidence)
        point.probs = probs
        if probs:
            point.valence = sum(v for k, v in probs.items() if k in POSITIVE) - sum(
                v for k, v in probs.items() if k in NEGATIVE
            )
        else:
            point.valence = 1.0 if face.label in POSITIVE else -1.0
    return point


def _area(face: contract.Face) -> float:
    x1, y1, x2, y2 = face.box
    return max(0.0, x2 - x1) * max(0.0, y2 - y1)


def _build_questions(
    view: SessionView,
    steps: StepFold,
    speech: list[tuple[float, bool]],
    turns: dict[tuple[int, int], contract.AnswerEnded],
) -> None:
    speech.sort()
    planned = steps.questions
    asked = [
        QuestionView(
            t.index, t.question, follow_up=t.follow_up, asked_ms=t.asked_ms, attempt=t.attempt
        )
        for t in steps.turns
    ]
    for q in asked:
        key = (q.index, q.attempt)
        ended = turns.get(key)
        if ended is not None:
            q.turn_opened_ms, q.turn_ended_ms = ended.opened_ms, ended.at_ms
        answered = steps.answered.get(key)
        if answered is not None:
            q.answered = True
            q.answer = answered.answer
            q.metrics = answered.metrics
            q.answer_start_ms, q.answer_end_ms = answered.start_ms, answered.end_ms
            q.end_reason = answered.reason
        evaluated = steps.evaluations.get(key)
        if evaluated is not None:
            q.evaluation = evaluated.evaluation or contract.Evaluation()
            q.no_answer = evaluated.no_answer
            q.rows = [list(row) for row in evaluated.rows]
            q.engine = evaluated.engine
            q.emotion = evaluated.emotion
    # Transcripts go to the answer turn the gateway tagged them with; older events (no
    # tag) to the question asked last before the utterance ended, unless an "answered"
    # step says exactly which span an answer took.
    asked_at = [q.asked_ms for q in asked if q.asked_ms is not None]
    turns = {(q.index, q.attempt) for q in asked}
    for t in view.transcripts:
        t.question, t.attempt = -1, 1
        if t.turn is not None:
            if t.turn in turns:
                t.question, t.attempt = t.turn
            continue
        for q in asked:
            if (
                q.answer_start_ms is not None
                and q.answer_end_ms is not None
                and q.answer_start_ms - 1 <= t.start_ms
                and t.end_ms <= q.answer_end_ms + 1
            ):
                t.question, t.attempt = q.index, q.attempt
                break
        else:
            position = bisect.bisect_right(asked_at, t.end_ms) - 1
            if position >= 0:
                t.question, t.attempt = asked[position].index, asked[position].attempt
    # A turn still being answered: its span and text so far come from transcripts,
    # and while the candidate is still talking, from the speech activity (VAD) too.
    for position, q in enumerate(asked):
        if q.answered:
            continue
        parts = answer_transcripts(view, q)
        if parts:
            q.answer_start_ms = min(t.start_ms for t in parts)
            q.answer_end_ms = max(t.end_ms for t in parts)
            q.answer = " ".join(t.text for t in parts).strip()
            q.metrics = contract.merge_speaking_metrics(
                (t.start_ms, t.end_ms, t.metrics) for t in parts
            )
        if position == len(asked) - 1 and q.asked_ms is not None:
            talk = [a for a in speech if a[0] >= q.asked_ms]
            starts = [at for at, speaking in talk if speaking]
            if starts:
                first = min(starts)
                q.answer_start_ms = min(q.answer_start_ms or first, first)
                still_talking = talk[-1][1]
                last = (view.last_ms or talk[-1][0]) if still_talking else talk[-1][0]
                q.answer_end_ms = max(q.answer_end_ms or last, last)
    # One view per question: its latest attempt, the earlier ones kept inside it.
    latest: dict[int, QuestionView] = {}
    for q in asked:
        previous = latest.get(q.index)
        if previous is not None:
            q.earlier = [*previous.earlier, previous]
            previous.earlier = []
        latest[q.index] = q
    questions = [latest[index] for index in sorted(latest)]
    for index in range(len(questions), len(planned)):
        questions.append(QuestionView(index, planned[index]))
    view.questions = questions


def answer_transcripts(view: SessionView, q: QuestionView) -> list[TranscriptView]:
    """The transcripts of one question attempt, in the order spoken."""
    return sorted(
        (t for t in view.transcripts if t.question == q.index and t.attempt == q.attempt),
        key=lambda t: (t.start_ms, t.part),
    )


# --------------------------------------------------------------------------- status


def working_text(view: SessionView, now_ms: float) -> str | None:
    """What the interviewer is busy with, for a live session ("Writing feedback on Q2 …");
    None when it is not working on anything."""
    working = view.working
    if working is None:
        return None
    seconds = max(0.0, (now_ms - (view.working_ms or now_ms)) / 1000)
    engine = f"{working.engine} engine, " if working.engine else ""
    budget = f" of a {working.budget_s:.0f} s budget" if working.budget_s else ""
    if working.stage == "questions":
        what = "Preparing the questions"
    else:
        attempt = f" (attempt {working.attempt})" if working.attempt > 1 else ""
        what = f"Writing feedback on Q{working.index + 1}{attempt}"
    return f"{what}… ({engine}{seconds:.0f} s so far{budget})"


def status(view: SessionView, now_ms: float, stale_after_ms: float = 120_000.0) -> str:
    """ "live", "ended", "stalled" (no end, but silent for `stale_after_ms`) or "empty"."""
    if view.ended_ms is not None:
        return "ended"
    if view.last_ms is None:
        return "empty" if view.events == view.malformed else "live"
    if now_ms - view.last_ms > stale_after_ms:
        return "stalled"
    return "live"


# --------------------------------------------------------------------------- windows


def window(points: Sequence[EmotionPoint], start_ms: float, end_ms: float) -> list[EmotionPoint]:
    """Points with start_ms <= t_ms < end_ms (points sorted by t_ms)."""
    keys = [p.t_ms for p in points]
    return list(points[bisect.bisect_left(keys, start_ms) : bisect.bisect_left(keys, end_ms)])


@dataclass
class Mix:
    """The share of each class among the faces of a window."""

    shares: dict[str, float]
    faces: int  # frames with a face
    frames: int  # analysed frames
    positive: float  # share of positive faces (0 when none)

    @property
    def dominant(self) -> str | None:
        if not self.faces:
            return None
        return max(self.shares, key=lambda k: self.shares[k])

    @property
    def face_share(self) -> float:
        return self.faces / self.frames if self.frames else 0.0


def emotion_mix(points: Sequence[EmotionPoint]) -> Mix:
    counts = Counter(p.label for p in points if p.label is not None)
    faces = sum(counts.values())
    shares = {e: (counts[e] / faces if faces else 0.0) for e in EMOTIONS}
    positive = sum(shares[e] for e in POSITIVE)
    return Mix(shares, faces, len(points), positive if faces else 0.0)


def recent_mix(view: SessionView, now_ms: float, window_ms: float = MIX_WINDOW_MS) -> Mix:
    """The emotion mix of the last `window_ms`: frames captured in (end − window, end],
    where end is `now_ms`, or the session's end once it ended."""
    end = min(now_ms, view.ended_ms) if view.ended_ms is not None else now_ms
    keys = [p.t_ms for p in view.points]
    lo, hi = bisect.bisect_right(keys, end - window_ms), bisect.bisect_right(keys, end)
    return emotion_mix(view.points[lo:hi])


@dataclass
class Bin:
    start_ms: float
    end_ms: float
    counts: dict[str, int]
    frames: int
    mean_probs: dict[str, float]
    valence: float | None  # mean valence of the faces; None without faces

    @property
    def faces(self) -> int:
        return sum(self.counts.values())


def bins(
    points: Sequence[EmotionPoint], start_ms: float, end_ms: float, bin_ms: float
) -> list[Bin]:
    """Fixed-width bins over [start_ms, end_ms): label counts, mean probabilities, valence."""
    if bin_ms <= 0:
        raise ValueError("bin_ms must be positive")
    if end_ms <= start_ms:
        return []
    n = math.ceil((end_ms - start_ms) / bin_ms)
    out = [
        Bin(start_ms + i * bin_ms, start_ms + (i + 1) * bin_ms, {}, 0, {}, None) for i in range(n)
    ]
    sums: list[dict[str, float]] = [{} for _ in range(n)]
    valence: list[list[float]] = [[] for _ in range(n)]
    for p in window(points, start_ms, end_ms):
        i = min(n - 1, int((p.t_ms - start_ms) // bin_ms))
        b = out[i]
        b.frames += 1
        if p.label is None:
            continue
        b.counts[p.label] = b.counts.get(p.label, 0) + 1
        for k, v in p.probs.items():
            sums[i][k] = sums[i].get(k, 0.0) + v
        valence[i].append(p.valence)
    for i, b in enumerate(out):
        faces = b.faces
        if faces:
            b.mean_probs = {k: sums[i].get(k, 0.0) / faces for k in EMOTIONS}
            b.valence = sum(valence[i]) / len(valence[i])
    return out


def auto_bin_ms(span_ms: float, target_bins: int = 300, floor_ms: float = 1000.0) -> float:
    """A bin width that keeps a chart near `target_bins` points, at least `floor_ms`."""
    if span_ms <= 0:
        return floor_ms
    raw = span_ms / target_bins
    for nice in (1000, 2000, 5000, 10_000, 15_000, 30_000, 60_000, 120_000, 300_000):
        if raw <= nice:
            return max(floor_ms, float(nice))
    return max(floor_ms, math.ceil(raw / 600_000) * 600_000.0)


def session_span(view: SessionView, now_ms: float) -> tuple[float, float]:
    """[t0, end] of the session's charts: to its end, or to now while it is live."""
    t0 = view.t0_ms
    end = view.ended_ms if view.ended_ms is not None else max(now_ms, view.last_ms or t0)
    if view.ended_ms is not None and view.last_ms is not None:
        end = max(end, min(view.last_ms, end + 60_000))
    return t0, max(end, t0 + 1000)


# --------------------------------------------------------------------------- alignment


@dataclass
class AlignedWord:
    text: str
    start_ms: float
    end_ms: float
    label: str | None  # the emotion seen while the word was spoken (None: no face/result)
    valence: float | None


def align_words(transcript: TranscriptView, points: Sequence[EmotionPoint]) -> list[AlignedWord]:
    """Each word of a transcript with the primary face's majority label while it was said.

    Words without timings get the utterance's span split evenly."""
    words = transcript.words
    out: list[AlignedWord] = []
    if words:
        spans = [
            (w.text, transcript.start_ms + w.start * 1000.0, transcript.start_ms + w.end * 1000.0)
            for w in words
        ]
    else:
        texts = transcript.text.split()
        step = (transcript.end_ms - transcript.start_ms) / max(1, len(texts))
        spans = [
            (t, transcript.start_ms + i * step, transcript.start_ms + (i + 1) * step)
            for i, t in enumerate(texts)
        ]
    keys = [p.t_ms for p in points]
    for text, start, end in spans:
        near = [
            p
            for p in window(points, start - WORD_SLACK_MS, end + WORD_SLACK_MS)
            if p.label is not None
        ]
        if not near and points:
            i = bisect.bisect_left(keys, (start + end) / 2)
            candidates = [points[j] for j in (i - 1, i) if 0 <= j < len(points)]
            candidates = [
                p
                for p in candidates
                if p.label is not None and abs(p.t_ms - (start + end) / 2) <= WORD_NEAREST_MS
            ]
            near = candidates[:1]
        if near:
            label = Counter(p.label for p in near).most_common(1)[0][0]
            valence = sum(p.valence for p in near) / len(near)
        else:
            label, valence = None, None
        out.append(AlignedWord(text.strip(), start, end, label, valence))
    return out


# --------------------------------------------------------------------------- summaries


@dataclass
class AnswerSummary:
    index: int
    headline: str
    notes: list[str]
    mix: Mix
    score: float | None
    band: str | None
    faces: int
    duration_s: float | None


def answer_score(view: SessionView, q: QuestionView) -> contract.AnswerEmotion | None:
    """The emotion score over one answer turn: the interviewer's (it comes with the
    evaluation), else the same rule on the same score updates (`stream.score.answer_emotion`)
    over the turn — as the gateway kept it once it ended, from the question being asked to
    the latest event while it is being answered."""
    if q.emotion is not None:
        return q.emotion
    start = q.turn_opened_ms if q.turn_opened_ms is not None else q.asked_ms
    end = q.turn_ended_ms
    if end is None:  # events from before turns were kept: the answer's end, or now
        end = q.answer_end_ms if q.answered else view.last_ms
    if start is None or end is None:
        return None
    return answer_emotion(((s.at_ms, s.positive, s.negative) for s in view.scores), start, end)


def _rises(segment: Mix, baseline: Mix) -> list[tuple[str, float]]:
    if segment.faces < MIN_FACES or baseline.faces < MIN_FACES:
        return []
    found = []
    for emotion in sorted(NEGATIVE):  # a rise worth a note is a negative one
        share = segment.shares[emotion]
        if share >= RISE_FLOOR and share - baseline.shares[emotion] >= RISE:
            found.append((emotion, share - baseline.shares[emotion]))
    return sorted(found, key=lambda x: -x[1])


def summarize_answer(view: SessionView, q: QuestionView) -> AnswerSummary | None:
    """Headline and notes for one answer; None before it has a span."""
    if q.answer_start_ms is None or q.answer_end_ms is None:
        return None
    start, end = q.answer_start_ms, max(q.answer_end_ms, q.answer_start_ms)
    inside = window(view.points, start, end + 1)
    mix = emotion_mix(inside)
    emotion = answer_score(view, q)
    score, band, faces = (
        (emotion.score, emotion.band, emotion.faces) if emotion else (None, None, 0)
    )
    duration_ms = end - start
    notes: list[str] = []
    if not inside:
        headline = f"no emotion results during {q.label}"
    elif mix.faces == 0:
        headline = f"no face seen during {q.label}"
    else:
        dominant = mix.dominant or "normal"
        headline = (
            f"mostly {dominant} ({mix.shares[dominant]:.0%}), "
            f"{mix.positive:.0%} positive during {q.label}"
        )
        if mix.face_share < 0.5:
            notes.append(f"face seen in only {mix.face_share:.0%} of frames during {q.label}")
        outside = [p for p in view.points if not start <= p.t_ms <= end]
        baseline = emotion_mix(outside)
        if baseline.faces < MIN_FACES:
            baseline = mix  # nothing else to compare with: segments against the answer
        segments = []
        if duration_ms >= 1.5 * SEGMENT_MS:
            segments.append(("first", window(view.points, start, start + SEGMENT_MS)))
        if duration_ms >= 2.5 * SEGMENT_MS:
            segments.append(("last", window(view.points, end - SEGMENT_MS, end + 1)))
        said: set[str] = set()
        for which, points in segments:
            for emotion, _ in _rises(emotion_mix(points), baseline)[:1]:
                notes.append(f"{emotion} rose during the {which} 10 s of {q.label}")
                said.add(emotion)
        if baseline is not mix:
            for emotion, _ in _rises(mix, baseline)[:2]:
                if emotion not in said:
                    notes.append(f"{emotion} rose during {q.label} (vs the rest of the session)")
        run = _negative_run(view, q)
        if run is not None:
            label, text = run
            notes.append(f'looked {ADJECTIVE.get(label, label)} while saying "{text}"')
    return AnswerSummary(
        q.index,
        headline,
        notes,
        mix,
        score,
        band,
        faces,
        duration_ms / 1000.0 if duration_ms > 0 else None,
    )


def _negative_run(view: SessionView, q: QuestionView, min_words: int = 2) -> tuple[str, str] | None:
    """The longest stretch of words said with a negative face (≥ `min_words`)."""
    best: list[AlignedWord] = []
    for t in view.transcripts:
        if t.question != q.index:
            continue
        current: list[AlignedWord] = []
        for word in [*align_words(t, view.points), None]:
            if word is not None and word.label in NEGATIVE:
                current.append(word)
                continue
            if len(current) > len(best):
                best = current
            current = []
    if len(best) < min_words:
        return None
    label = Counter(w.label for w in best).most_common(1)[0][0]
    text = " ".join(w.text for w in best[:12]) + (" …" if len(best) > 12 else "")
    return str(label), text


def answer_summaries(view: SessionView) -> dict[int, AnswerSummary]:
    out = {}
    for q in view.questions:
        summary = summarize_answer(view, q)
        if summary is not None:
            out[q.index] = summary
    return out


# --------------------------------------------------------------------------- health


@dataclass
class Health:
    fps: float | None  # analysed frames per second (recent window while live)
    results: int
    no_face_share: float | None
    frames_dropped: int | None
    dropped_source: str  # "gateway" (lifecycle stats) | "estimated" (gaps in seq) | ""
    latency_p50_ms: float | None  # glass (capture) to result (done)
    latency_p95_ms: float | None
    latency_samples: int
    browser_clock_share: float | None  # share of results timed by the browser's clock
    malformed: int
    last_event_age_s: float | None
    stats: dict[str, float]


def health(view: SessionView, now_ms: float, window_ms: float = HEALTH_WINDOW_MS) -> Health:
    """Pipeline figures: recent ones while live, whole-session ones once it ended."""
    live = view.ended_ms is None
    points = view.points
    if live:
        recent = [p for p in points if now_ms - window_ms <= p.done_ms <= now_ms + 1]
        fps = len(recent) / (window_ms / 1000.0) if points else None
    else:
        recent = list(points)
        span = (points[-1].t_ms - points[0].t_ms) / 1000.0 if len(points) > 1 else 0.0
        fps = (len(points) - 1) / span if span > 0 else None
    latencies = [p.latency_ms for p in recent if math.isfinite(p.latency_ms)]
    dropped: int | None = None
    source = ""
    if "frames_dropped" in view.stats:
        dropped = int(view.stats.get("frames_dropped", 0))
        source = "gateway"
    elif points:
        seqs = {p.seq for p in points}
        dropped = max(0, max(seqs) - min(seqs) + 1 - len(seqs))
        source = "estimated"
    return Health(
        fps=round(fps, 2) if fps is not None else None,
        results=len(points),
        no_face_share=(sum(1 for p in points if p.label is None) / len(points)) if points else None,
        frames_dropped=dropped,
        dropped_source=source,
        latency_p50_ms=percentile(latencies, 50),
        latency_p95_ms=percentile(latencies, 95),
        latency_samples=len(latencies),
        browser_clock_share=(sum(1 for p in recent if p.capture_source == "rtcp") / len(recent))
        if recent
        else None,
        malformed=view.malformed,
        last_event_age_s=(now_ms - view.last_ms) / 1000.0 if view.last_ms else None,
        stats=dict(view.stats),
    )


# --------------------------------------------------------------------------- the card


@dataclass
class Card:
    session: str
    status: str
    title: str
    question: str  # "Q2/3 · …" or a state line
    speaking: bool | None
    score: float | None
    band: str | None
    mix: Mix
    health: Health
    started_ms: float | None
    errors: int


def card(view: SessionView, now_ms: float, stale_after_ms: float = 120_000.0) -> Card:
    """What an overview card shows for one session."""
    current = view.current
    total = len(view.questions)
    if current is not None:
        question = f"{current.label}/{total} · {current.text}"
    elif view.questions:
        question = "questions ready, none asked yet"
    elif view.profile is not None:
        question = "preparing questions…"
    else:
        question = "waiting for the candidate's profile"
    if view.report is not None and current is not None and current.evaluation is not None:
        question = f"interview complete ({total} questions)"
    score = view.score
    return Card(
        session=view.session,
        status=status(view, now_ms, stale_after_ms),
        title=view.title(),
        question=question,
        speaking=view.speaking,
        score=score.score if score else None,
        band=score.band if score else None,
        mix=recent_mix(view, now_ms),
        health=health(view, now_ms),
        started_ms=view.started_ms or view.first_ms,
        errors=len(view.errors),
    )
