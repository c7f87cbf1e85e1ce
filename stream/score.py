"""The emotion score (DESIGN.md, "vocabulary"), as pure logic.

Starts at 50; each detected face adds 0.1 if its emotion is positive (happy, normal) and
subtracts 0.1 if negative; above 70 is "good", above 40 "normal", otherwise "bad". The
score is not clamped: the original did not clamp it, and the bands make a clamp moot.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from stream.contract import NEGATIVE_EMOTIONS, POSITIVE_EMOTIONS

Band = Literal["good", "normal", "bad"]

START_SCORE = 50.0
STEP = 0.1
GOOD_ABOVE = 70.0
NORMAL_ABOVE = 40.0


def band_of(score: float) -> Band:
    if score > GOOD_ABOVE:
        return "good"
    if score > NORMAL_ABOVE:
        return "normal"
    return "bad"


@dataclass
class EmotionScore:
    """Running score of one session. Counts are kept as integers so that the score is
    exact (50 + 0.1·(positive − negative)) however long the session runs."""

    positive: int = 0
    negative: int = 0

    @property
    def score(self) -> float:
        return round(START_SCORE + STEP * (self.positive - self.negative), 1)

    @property
    def band(self) -> Band:
        return band_of(self.score)

    @property
    def faces_seen(self) -> int:
        return self.positive + self.negative

    def add_faces(self, labels: Iterable[str]) -> None:
        """Count each detected face's top emotion label."""
        for label in labels:
            if label in POSITIVE_EMOTIONS:
                self.positive += 1
            elif label in NEGATIVE_EMOTIONS:
                self.negative += 1
            else:
                raise ValueError(f"unknown emotion label {label!r}")
