"""Answer turns, as pure logic: when does the candidate's answer to a question end?

An answer turn opens when the interviewer asks a question (or the same one again) and
ends at the first of:

* **Done** — the candidate pressed *Done answering* (or its keyboard shortcut);
* **a long silence** — once they have spoken, ``silence_end_s`` without speech (default
  5 s). Pauses to think are shorter than that, so they never end an answer; a "still
  there?" hint shows for the last ``silence_hint_s`` of it;
* **the time cap** — ``max_answer_s`` after the question (default 3 minutes), with a
  visible countdown for its last ``countdown_s``;
* **the session's end** while they answer.

VAD utterances are only the transcription parts of a turn: a turn collects the names of
the parts cut while it is open, and its end (`contract.AnswerEnded`) lists them, so the
interviewer knows when the whole answer is transcribed. Time is whatever clock the caller
passes (the gateway's wall clock in ms); nothing here reads one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream import contract


class TurnSettings(BaseSettings):
    """How answer turns end (env prefix ``INTERVUE_TURN_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_TURN_", extra="forbid")

    #: Silence (after the candidate has spoken) that ends the answer; 0 turns it off.
    silence_end_s: float = Field(5.0, ge=0, le=120)
    #: The "still there?" hint shows for this last stretch of that silence.
    silence_hint_s: float = Field(2.0, ge=0, le=60)
    #: The longest answer, from the question being asked.
    max_answer_s: float = Field(180.0, ge=5, le=3600)
    #: A countdown to the time cap shows for its last stretch.
    countdown_s: float = Field(30.0, ge=0, le=3600)
    #: Kiosk use: the next question comes by itself this long after the feedback is
    #: shown; 0 (the default) waits for the candidate's Next.
    auto_advance_s: float = Field(0.0, ge=0, le=3600)

    @model_validator(mode="after")
    def _consistent(self) -> TurnSettings:
        if self.silence_end_s and self.silence_hint_s >= self.silence_end_s:
            raise ValueError("silence_hint_s must be shorter than silence_end_s")
        return self


@dataclass
class AnswerTurn:
    """One open (or just ended) answer turn of a session."""

    settings: TurnSettings
    question: int
    attempt: int
    opened_ms: float
    #: `contract.part_key`s of the utterance parts cut while the turn was open.
    parts: list[str] = field(default_factory=list)
    speaking: bool = False
    spoken: bool = False
    #: When the current silence began (after speech); None while speaking or before any.
    silence_since_ms: float | None = None
    ended_ms: float | None = None
    reason: contract.TurnEndReason | None = None

    @property
    def open(self) -> bool:
        return self.reason is None

    @property
    def key(self) -> tuple[int, int]:
        return (self.question, self.attempt)

    def speech(self, speaking: bool, at_ms: float) -> None:
        """The VAD saw the candidate start or stop speaking at `at_ms`."""
        if not self.open:
            return
        self.speaking = speaking
        if speaking:
            self.spoken = True
            self.silence_since_ms = None
        elif self.spoken:  # only a silence after speech in this turn can end it
            self.silence_since_ms = at_ms

    def add_part(self, key: str) -> None:
        if self.open and key not in self.parts:
            self.parts.append(key)

    def silence_left_ms(self, now_ms: float) -> float | None:
        """Time before the silence ends the answer; None when not armed."""
        if not self.settings.silence_end_s or self.speaking or self.silence_since_ms is None:
            return None
        elapsed = max(0.0, now_ms - self.silence_since_ms)
        return max(0.0, self.settings.silence_end_s * 1000.0 - elapsed)

    def cap_left_ms(self, now_ms: float) -> float:
        return max(0.0, self.settings.max_answer_s * 1000.0 - (now_ms - self.opened_ms))

    def due(self, now_ms: float, *, listening: bool = True) -> contract.TurnEndReason | None:
        """Whether the turn should end now by itself, and why. While the candidate is not
        `listening` (the page is reconnecting), a silence does not end the answer."""
        if not self.open:
            return None
        if self.cap_left_ms(now_ms) <= 0:
            return "time_cap"
        silence = self.silence_left_ms(now_ms)
        if listening and silence is not None and silence <= 0:
            return "silence"
        return None

    def end(self, reason: contract.TurnEndReason, now_ms: float) -> None:
        if self.open:
            self.reason = reason
            self.ended_ms = now_ms
            self.speaking = False

    def status(self, now_ms: float) -> contract.TurnUpdate:
        """The turn's clock for the page."""
        at = now_ms if self.open else (self.ended_ms or now_ms)
        silence = self.silence_left_ms(at) if self.open else None
        cap_left = self.cap_left_ms(at)
        return contract.TurnUpdate(
            question=self.question,
            attempt=self.attempt,
            state="answering" if self.open else "ended",
            elapsed_ms=round(max(0.0, at - self.opened_ms)),
            cap_left_ms=round(cap_left),
            countdown=self.open and cap_left <= self.settings.countdown_s * 1000.0,
            silence_left_ms=None if silence is None else round(silence),
            silence_hint=silence is not None and silence <= self.settings.silence_hint_s * 1000.0,
            reason=self.reason,
            spoken=self.spoken,
        )

    def ended_event(self, session: str) -> contract.AnswerEnded:
        assert self.reason is not None and self.ended_ms is not None
        return contract.AnswerEnded(
            session=session,
            question=self.question,
            attempt=self.attempt,
            reason=self.reason,
            parts=list(self.parts),
            opened_ms=self.opened_ms,
            at_ms=self.ended_ms,
        )
