"""The interview state machine, as pure logic (no I/O, no clock reads).

A session's interview is the fold of its events: the candidate's profile, the
interviewer's own steps (`InterviewEvent`s it published earlier), transcripts, the ends
of answer turns, the candidate's requests and the dashboard's commands. Folding the
persisted events again after a restart gives the same state, so the orchestrator resumes
where it stopped and never repeats a step it already published.

    profile → questions → for each question:
        asked (attempt 1) → the candidate answers (any number of utterances, pauses
        included) → the turn ends (`AnswerEnded`: Done, a long silence, the time cap)
        → answered (once every utterance part of the turn is transcribed) → evaluated
        → the candidate reads the feedback and asks for the next question
          (`CandidateRequest` "next") or to try again ("retry": asked, attempt + 1)
    → after the last question's "next": report

Every attempt is kept; the latest attempt of a question is the one its report item
counts. `next_action()` says what the orchestrator should do now (or None: wait).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from stream import contract
from stream.score import answer_emotion

QUESTION_COUNT = 3

#: (question index, attempt): one answer turn.
TurnKey = tuple[int, int]


@dataclass
class Turn:
    """One "asked" step: a question put to the candidate (again, for a retry)."""

    index: int
    attempt: int
    question: str
    follow_up: bool
    asked_ms: float

    @property
    def key(self) -> TurnKey:
        return (self.index, self.attempt)


@dataclass
class AnswerRecord:
    """One answer turn as heard: its transcript parts and how the turn ended."""

    #: Transcripts of the turn's utterance parts, by `contract.part_key`.
    parts: dict[str, contract.Transcript] = field(default_factory=dict)
    #: The gateway's end of the turn (None while the candidate may still be answering).
    ended: contract.AnswerEnded | None = None

    @property
    def complete(self) -> bool:
        """The turn ended and every utterance part it names is transcribed."""
        return self.ended is not None and all(key in self.parts for key in self.ended.parts)

    def _spoken(self) -> list[contract.Transcript]:
        return sorted(
            (t for t in self.parts.values() if t.text.strip()),
            key=lambda t: (t.start_ms, t.part),
        )

    @property
    def text(self) -> str:
        return " ".join(t.text.strip() for t in self._spoken())

    @property
    def start_ms(self) -> float | None:
        spoken = self._spoken()
        return spoken[0].start_ms if spoken else None

    @property
    def end_ms(self) -> float | None:
        spoken = self._spoken()
        return spoken[-1].end_ms if spoken else None

    @property
    def metrics(self) -> contract.SpeakingMetrics | None:
        """How the whole answer was spoken (None: nothing was heard)."""
        return contract.merge_speaking_metrics(
            (t.start_ms, t.end_ms, t.metrics) for t in self._spoken()
        )


@dataclass
class Action:
    """What the orchestrator should do next."""

    kind: str  # "questions" | "ask" | "retry" | "follow_up" | "answered" | "evaluate" | "report"
    index: int = -1


@dataclass
class InterviewState:
    session: str
    profile: contract.Profile | None = None
    #: The questions by index: the planned ones, with follow-ups inserted where asked.
    questions: list[str] = field(default_factory=list)
    engine: str = ""
    #: Every "asked" step, in order (a retry is a turn of the same index).
    turns: list[Turn] = field(default_factory=list)
    answers: dict[TurnKey, AnswerRecord] = field(default_factory=dict)
    answered: set[TurnKey] = field(default_factory=set)  # "answered" steps published
    evaluations: dict[TurnKey, dict[str, Any]] = field(default_factory=dict)
    #: The candidate's choice after reading an attempt's feedback (the first one counts).
    requests: dict[TurnKey, str] = field(default_factory=dict)
    #: How many turns had been asked when the last report was published (a follow-up
    #: after a report reopens the interview: it is asked, evaluated, and a new report
    #: follows).
    reported_turns: int = 0
    reports: int = 0
    #: Interviewers' follow-up questions not yet asked.
    follow_ups: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: (at_ms, positive, negative) of score updates, for per-answer score bands.
    scores: list[tuple[float, int, int]] = field(default_factory=list)
    ended: bool = False
    #: The interview cannot go on (an unusable profile); set by the orchestrator.
    failed: bool = False
    seen_utterances: set[tuple[str, int]] = field(default_factory=set)
    #: follow-up commands already taken: a rebuilt state holds the stored command that is
    #: then applied again as the consumed message
    seen_commands: set[tuple[float, str, str]] = field(default_factory=set)

    # ---- folding events --------------------------------------------------------------

    @property
    def current(self) -> Turn | None:
        """The turn being answered or last answered (None before the first question)."""
        return self.turns[-1] if self.turns else None

    @property
    def asked_questions(self) -> int:
        """How many distinct questions have been asked."""
        return self.turns[-1].index + 1 if self.turns else 0

    def apply(self, message: contract.BusMessage) -> None:
        if isinstance(message, contract.Profile):
            if self.profile is None:  # the first profile wins; a session has one interview
                self.profile = message
        elif isinstance(message, contract.InterviewEvent):
            self._apply_step(message)
        elif isinstance(message, contract.Transcript):
            self._apply_transcript(message)
        elif isinstance(message, contract.AnswerEnded):
            record = self.answers.setdefault((message.question, message.attempt), AnswerRecord())
            if record.ended is None:  # the first end of a turn counts
                record.ended = message
        elif isinstance(message, contract.CandidateRequest):
            self.requests.setdefault((message.question, message.attempt), message.request)
        elif isinstance(message, contract.ScoreUpdate):
            self.scores.append((message.at_ms, message.positive, message.negative))
        elif isinstance(message, contract.SessionEvent) and message.event == "ended":
            self.ended = True
        elif isinstance(message, contract.InterviewCommand) and message.command == "follow_up":
            text = message.text.strip()
            key = (message.at_ms, message.by, text)
            if text and key not in self.seen_commands:
                self.seen_commands.add(key)
                self.follow_ups.append(text)

    def _apply_step(self, event: contract.InterviewEvent) -> None:
        data = event.data
        if event.step == "questions":
            self.questions = [str(q) for q in data.get("questions", [])]
            self.engine = str(data.get("engine", ""))
        elif event.step == "asked":
            index = int(data.get("index", self.asked_questions))
            attempt = int(data.get("attempt", 1))
            current = self.current
            retry = current is not None and index == current.index and attempt > 1
            new = index == self.asked_questions and attempt == 1
            if not (retry and attempt == current.attempt + 1) and not new:
                return  # a repeated or out-of-order step
            follow_up = bool(data.get("follow_up"))
            if new and follow_up:  # an interviewer's question, asked next
                self.questions.insert(index, str(data.get("question", "")))
                if self.follow_ups:
                    self.follow_ups.pop(0)
            question = str(data.get("question") or self.questions[index])
            self.turns.append(Turn(index, attempt, question, follow_up, event.at_ms))
        elif event.step == "answered":
            self.answered.add((int(data["index"]), int(data.get("attempt", 1))))
        elif event.step == "evaluated":
            self.evaluations[(int(data["index"]), int(data.get("attempt", 1)))] = dict(data)
        elif event.step == "report":
            self.reported_turns = len(self.turns)
            self.reports += 1
        elif event.step == "error":
            self.errors.append(dict(data))

    def _apply_transcript(self, transcript: contract.Transcript) -> None:
        key = (transcript.utterance_id, transcript.part)
        if key in self.seen_utterances:
            return  # a redelivered utterance transcribed twice
        self.seen_utterances.add(key)
        if transcript.question < 0:
            return  # speech outside an answer turn: recorded, never evaluated
        turn = (transcript.question, transcript.attempt)
        if turn in self.answered:
            return  # the answer was taken already
        record = self.answers.setdefault(turn, AnswerRecord())
        record.parts[transcript.part_key] = transcript

    # ---- what next -------------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """A report covers every turn asked and no follow-up waits."""
        return self.reports > 0 and self.reported_turns == len(self.turns) and not self.follow_ups

    def next_action(self) -> Action | None:
        if self.profile is None or self.failed:
            return None
        if not self.questions:
            return Action("questions")
        turn = self.current
        if turn is None:
            return None if self.ended else Action("ask", 0)
        if turn.key not in self.evaluations:
            record = self.answers.get(turn.key)
            if record is None or not record.complete:
                return None  # the candidate is answering (or their words are in transcription)
            if turn.key not in self.answered:
                return Action("answered", turn.index)
            return Action("evaluate", turn.index)
        if self.ended:
            return None  # the candidate left: ask nothing more
        if self.reports and self.reported_turns == len(self.turns):
            # the interview was over; only an interviewer's follow-up reopens it
            return Action("follow_up", turn.index + 1) if self.follow_ups else None
        request = self.requests.get(turn.key)
        if request is None:
            return None  # the candidate is reading the feedback
        if request == "retry":
            return Action("retry", turn.index)
        if self.follow_ups:
            return Action("follow_up", turn.index + 1)
        if turn.index + 1 < len(self.questions):
            return Action("ask", turn.index + 1)
        return Action("report")

    # ---- derived figures -------------------------------------------------------------

    def turn_of(self, index: int, attempt: int | None = None) -> Turn | None:
        """The turn of question `index` (its latest attempt unless `attempt` is given)."""
        for turn in reversed(self.turns):
            if turn.index == index and (attempt is None or turn.attempt == attempt):
                return turn
        return None

    def answer_score(self, key: TurnKey) -> contract.AnswerEmotion | None:
        """The emotion score over one answer turn (`stream.score.answer_emotion`), from the
        score updates folded so far; None while the turn has not ended."""
        record = self.answers.get(key)
        if record is None or record.ended is None:
            return None
        return answer_emotion(self.scores, record.ended.opened_ms, record.ended.at_ms)

    def answered_data(self) -> dict[str, Any]:
        """The ``answered`` step's data for the current turn (its answer is complete)."""
        turn = self.current
        record = self.answers[turn.key]
        return {
            "index": turn.index,
            "attempt": turn.attempt,
            "answer": record.text,
            "metrics": msgspec.to_builtins(record.metrics),
            "start_ms": record.start_ms,
            "end_ms": record.end_ms,
            "asked_ms": turn.asked_ms,
            "ended_ms": record.ended.at_ms,
            "reason": record.ended.reason,
        }

    def attempt_summary(self, turn: Turn) -> dict[str, Any]:
        """One attempt as the report shows it."""
        record = self.answers.get(turn.key, AnswerRecord())
        evaluation = self.evaluations.get(turn.key, {})
        return {
            "attempt": turn.attempt,
            "answer": record.text,
            "metrics": msgspec.to_builtins(record.metrics),
            "evaluation": evaluation.get("evaluation"),
            "rows": evaluation.get("rows"),
            "engine": evaluation.get("engine"),
            "emotion": evaluation.get("emotion"),
            "reason": record.ended.reason if record.ended else None,
        }

    def report_items(self) -> list[dict[str, Any]]:
        """One item per question asked: its latest attempt counted, earlier ones kept."""
        items = []
        for index in range(self.asked_questions):
            attempts = [t for t in self.turns if t.index == index]
            latest = attempts[-1]
            items.append(
                {
                    "index": index,
                    "question": latest.question,
                    "follow_up": latest.follow_up,
                    **self.attempt_summary(latest),
                    "earlier_attempts": [self.attempt_summary(t) for t in attempts[:-1]],
                }
            )
        return items
