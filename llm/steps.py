"""The one fold of the interviewer's own steps (`stream.contract.InterviewEvent`s), as
pure logic (no I/O, no clock reads).

The orchestrator's state (`llm.interview.InterviewState`) and the dashboard's view
(`dashboard.aggregate.fold`) both read a session's steps through `StepFold`, so the
interview they see is the same: which questions are planned, which turns were asked (a
repeated or out-of-order ``asked`` step is ignored), which answers were taken and
evaluated, how many reports were made, the errors, and the slow step under way (a
``working`` step until the result it announced: ``questions``, or the ``evaluated`` step of
the same answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stream import contract

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


@dataclass(kw_only=True)
class StepFold:
    """A session's interviewer steps, folded in stream order."""

    #: The questions by index: the planned ones, with follow-ups inserted where asked.
    questions: list[str] = field(default_factory=list)
    engine: str = ""
    #: Every accepted "asked" step, in order (a retry is a turn of the same index).
    turns: list[Turn] = field(default_factory=list)
    answered: dict[TurnKey, contract.AnsweredStep] = field(default_factory=dict)
    evaluations: dict[TurnKey, contract.EvaluatedStep] = field(default_factory=dict)
    #: The latest report, how many there were, and how many turns had been asked when
    #: the latest was made (a follow-up after a report reopens the interview).
    report: contract.ReportStep | None = None
    reports: int = 0
    reported_turns: int = 0
    #: Error steps with their times.
    errors: list[tuple[float, contract.ErrorStep]] = field(default_factory=list)
    #: The slow step under way and when it began (None: none, or its result came).
    working: contract.WorkingStep | None = None
    working_ms: float | None = None

    @property
    def current(self) -> Turn | None:
        """The turn being answered or last answered (None before the first question)."""
        return self.turns[-1] if self.turns else None

    @property
    def asked_questions(self) -> int:
        """How many distinct questions have been asked."""
        return self.turns[-1].index + 1 if self.turns else 0

    def apply_step(self, event: contract.InterviewEvent) -> Turn | None:
        """Fold one step; return the turn it opened (an accepted "asked" step), else None."""
        data = event.data
        if self.working is not None and _ends(self.working, data):
            self.working = self.working_ms = None
        if isinstance(data, contract.WorkingStep):
            self.working, self.working_ms = data, event.at_ms
        elif isinstance(data, contract.QuestionsStep):
            self.questions = list(data.questions)
            self.engine = data.engine
        elif isinstance(data, contract.AskedStep):
            return self._asked(data, event.at_ms)
        elif isinstance(data, contract.AnsweredStep):
            self.answered[(data.index, data.attempt)] = data
        elif isinstance(data, contract.EvaluatedStep):
            self.evaluations[(data.index, data.attempt)] = data
        elif isinstance(data, contract.ReportStep):
            self.report = data
            self.reports += 1
            self.reported_turns = len(self.turns)
        elif isinstance(data, contract.ErrorStep):
            self.errors.append((event.at_ms, data))
        return None

    def _asked(self, data: contract.AskedStep, at_ms: float) -> Turn | None:
        current = self.current
        retry = current is not None and (data.index, data.attempt) == (
            current.index,
            current.attempt + 1,
        )
        new = data.index == self.asked_questions and data.attempt == 1
        if not (retry or new):
            return None  # a repeated or out-of-order step
        planned = self.questions[data.index] if data.index < len(self.questions) else ""
        question = data.question or planned
        if new and data.follow_up:  # an interviewer's question, asked next
            self.questions.insert(data.index, question)
        turn = Turn(data.index, data.attempt, question, data.follow_up, at_ms)
        self.turns.append(turn)
        return turn


def _ends(working: contract.WorkingStep, data: contract.StepData) -> bool:
    """Whether step `data` is the result `working` announced."""
    if working.stage == "questions":
        return isinstance(data, contract.QuestionsStep)
    return isinstance(data, contract.EvaluatedStep) and (data.index, data.attempt) == (
        working.index,
        working.attempt,
    )
