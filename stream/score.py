"""The emotion score (DESIGN.md, "vocabulary"), as pure logic.

Starts at 50; each detected face adds 0.1 if its emotion is positive (happy, normal) and
subtracts 0.1 if negative; above 70 is "good", above 40 "normal", otherwise "bad". The
score is not clamped: the original did not clamp it, and the bands make a clamp moot.

Counting rate: faces are counted from one analysed frame per second of video, not from
every analysed frame. Counting every frame made the score a function of the analysis rate
(at 10 analysed fps a calm face climbed a point a second, 50 → 95 in 45 s; at 5 fps half
as fast). Capture time is cut into `COUNT_INTERVAL_MS` buckets (aligned to the clock, not
to the session start); the first result with at least one face in each bucket counts (each
of its faces, as before), later results in the same bucket do not, and a result whose
bucket is older than the last counted one does not count either (results can arrive out of
order from several vision workers). With one face on screen the score reads
``50 + (positive seconds − negative seconds) / 10``, whatever the camera or analysis fps
(as long as at least one frame a second is analysed).

`EmotionScore.add_result` is the live counter (the gateway's). `answer_emotion` is the
score over one answer turn, from the live counter's own cumulative counts (`ScoreUpdate`s),
so a session's score and its answers' scores are one rule, and the interviewer (which
publishes it with the evaluation) and the dashboard (while an answer is not evaluated yet)
compute it from the same data the same way.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from stream.contract import NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS, AnswerEmotion

Band = Literal["good", "normal", "bad"]

START_SCORE = 50.0
STEP = 0.1
GOOD_ABOVE = 70.0
NORMAL_ABOVE = 40.0

#: One reading per this much capture time. A facial expression is held for roughly 0.5-4 s,
#: so one reading a second counts a held expression once for each second it is held,
#: whatever the camera or analysis fps, and makes the scale "net positive seconds / 10"
#: (20 s of smiling: +2). Shorter intervals would bring the fps dependence back for
#: analysis rates near the interval; longer ones would miss short expressions.
COUNT_INTERVAL_MS = 1000


def band_of(score: float) -> Band:
    if score > GOOD_ABOVE:
        return "good"
    if score > NORMAL_ABOVE:
        return "normal"
    return "bad"


def count_bucket(capture_ms: float, interval_ms: int = COUNT_INTERVAL_MS) -> int:
    """The counting bucket of a capture time: ``floor(capture_ms / interval_ms)``."""
    if not math.isfinite(capture_ms):
        raise ValueError(f"capture time must be finite, got {capture_ms!r}")
    return math.floor(capture_ms / interval_ms)


def _split_labels(labels: Iterable[str]) -> tuple[int, int]:
    positive = negative = 0
    for label in labels:
        if label in POSITIVE_EMOTIONS:
            positive += 1
        elif label in NEGATIVE_EMOTIONS:
            negative += 1
        else:
            raise ValueError(f"unknown emotion label {label!r}")
    return positive, negative


@dataclass
class EmotionScore:
    """Running score of one session (or one answer). Counts are kept as integers so that
    the score is exact (50 + 0.1·(positive − negative)) however long the session runs."""

    positive: int = 0
    negative: int = 0
    #: Results counted by `add_result` (seconds with a face, at the default interval).
    readings: int = 0
    #: The bucket of the last counted result (`count_bucket`), None before the first.
    last_bucket: int | None = None
    interval_ms: int = COUNT_INTERVAL_MS

    def __post_init__(self) -> None:
        if self.interval_ms <= 0:
            raise ValueError("interval_ms must be positive")

    @property
    def score(self) -> float:
        return round(START_SCORE + STEP * (self.positive - self.negative), 1)

    @property
    def band(self) -> Band:
        return band_of(self.score)

    @property
    def faces_seen(self) -> int:
        return self.positive + self.negative

    def add_result(self, capture_ms: float, labels: Iterable[str]) -> bool:
        """Count one analysed frame's faces (each face's top emotion label) at the fixed
        rate: True if it counted, i.e. it has a face and is the first such result in a
        `interval_ms` bucket of capture time newer than the last counted one. A result
        with no face counts nothing and leaves its bucket open. An unknown label raises
        ValueError and counts nothing."""
        bucket = count_bucket(capture_ms, self.interval_ms)
        positive, negative = _split_labels(labels)
        if positive + negative == 0:
            return False
        if self.last_bucket is not None and bucket <= self.last_bucket:
            return False
        self.positive += positive
        self.negative += negative
        self.readings += 1
        self.last_bucket = bucket
        return True

    def add_faces(self, labels: Iterable[str]) -> None:
        """Count each face given, on every call (no counting rate). The live score uses
        `add_result`; this stays for callers that pick the counted frames themselves."""
        positive, negative = _split_labels(labels)
        self.positive += positive
        self.negative += negative


def answer_emotion(
    updates: Iterable[tuple[float, int, int]], start_ms: float, end_ms: float
) -> AnswerEmotion | None:
    """The emotion score over one answer turn only (from the question reaching the
    candidate to the end of the answer, on the gateway's clock like the score updates):
    50 ± 0.1 per face reading counted in the turn. `updates` are the session's score
    updates as ``(at_ms, positive, negative)`` with the live counter's cumulative counts,
    in stream order; the last one before the turn is the baseline, the last one within it
    the end. None when no update falls in the turn (no face was counted, or no result)."""
    before: tuple[int, int] = (0, 0)
    last: tuple[int, int] | None = None
    for at_ms, positive, negative in updates:
        if at_ms < start_ms:
            before = (positive, negative)
        elif at_ms <= end_ms:
            last = (positive, negative)
    if last is None:
        return None
    positive, negative = last[0] - before[0], last[1] - before[1]
    score = round(START_SCORE + STEP * (positive - negative), 1)
    return AnswerEmotion(score=score, band=band_of(score), faces=positive + negative)
