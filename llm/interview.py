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

from llm.steps import StepFold, Turn, TurnKey
from stream import contract
from stream.score import answer_emotion


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
class InterviewState(StepFold):
    """The interviewer's own steps (`StepFold`: questions, turns asked, answers taken,
    evaluations, reports, errors) and everything else a session's interview is folded
    from."""

    session: str
    profile: contract.Profile | None = None
    answers: dict[TurnKey, AnswerRecord] = field(default_factory=dict)
    #: The candidate's choice after reading an attempt's feedback (the first one counts).
    requests: dict[TurnKey, str] = field(default_factory=dict)
    #: Interviewers' follow-up questions not yet asked.
    follow_ups: list[str] = field(default_factory=list)
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
        turn = self.apply_step(event)
        if turn is not None and turn.follow_up and turn.attempt == 1 and self.follow_ups:
            self.follow_ups.pop(0)  # the interviewer's question was asked

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
            # A candidate who left before their questions came wants none: an interviewer
            # that starts late (its durable consumer holds every session opened meanwhile)
            # must not spend a model's minutes on them while a present candidate waits.
            return None if self.ended else Action("questions")
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

    def answered_data(self) -> contract.AnsweredStep:
        """The ``answered`` step's data for the current turn (its answer is complete)."""
        turn = self.current
        record = self.answers[turn.key]
        return contract.AnsweredStep(
            index=turn.index,
            attempt=turn.attempt,
            answer=record.text,
            metrics=record.metrics,
            start_ms=record.start_ms,
            end_ms=record.end_ms,
            asked_ms=turn.asked_ms,
            ended_ms=record.ended.at_ms,
            reason=record.ended.reason,
        )

    def attempt_summary(self, turn: Turn) -> contract.AttemptSummary:
        """One attempt as the report shows it."""
        return contract.AttemptSummary(attempt=turn.attempt, **self._attempt_fields(turn))

    def _attempt_fields(self, turn: Turn) -> dict[str, object]:
        record = self.answers.get(turn.key, AnswerRecord())
        evaluation = self.evaluations.get(turn.key)
        return {
            "answer": record.text,
            "metrics": record.metrics,
            "evaluation": evaluation.evaluation if evaluation else None,
            "rows": evaluation.rows if evaluation else None,
            "engine": evaluation.engine if evaluation else None,
            "emotion": evaluation.emotion if evaluation else None,
            "reason": record.ended.reason if record.ended else None,
        }

    def report_items(self) -> list[contract.ReportItem]:
        """One item per question asked: its latest attempt counted, earlier ones kept."""
        items = []
        for index in range(self.asked_questions):
            attempts = [t for t in self.turns if t.index == index]
            latest = attempts[-1]
            items.append(
                contract.ReportItem(
                    index=index,
                    question=latest.question,
                    follow_up=latest.follow_up,
                    attempt=latest.attempt,
                    **self._attempt_fields(latest),
                    earlier_attempts=[self.attempt_summary(t) for t in attempts[:-1]],
                )
            )
        return items
