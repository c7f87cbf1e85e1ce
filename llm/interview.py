"""The interview state machine, as pure logic (no I/O, no clock reads).

A session's interview is the fold of its events: the candidate's profile, the
interviewer's own steps (`InterviewEvent`s it published earlier), transcripts, and score
updates. Folding the persisted events again after a restart gives the same state, so the
orchestrator resumes where it stopped and never repeats a step it already published.

    profile → questions → for each question: asked → answering → answered → evaluated
            → report

`next_action()` says what the orchestrator should do now (or None: wait for events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from stream import contract
from stream.score import START_SCORE, STEP, band_of

QUESTION_COUNT = 3


@dataclass
class AnswerRecord:
    """One answer as heard: its transcript parts joined, with metrics and its time span."""

    text: str = ""
    start_ms: float | None = None
    end_ms: float | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    utterances: list[str] = field(default_factory=list)
    complete: bool = False


@dataclass
class Action:
    """What the orchestrator should do next."""

    kind: str  # "questions" | "ask" | "follow_up" | "answered" | "evaluate" | "report"
    index: int = -1


@dataclass
class InterviewState:
    session: str
    profile: contract.Profile | None = None
    questions: list[str] = field(default_factory=list)
    engine: str = ""
    asked: list[dict[str, Any]] = field(default_factory=list)  # "asked" step data, in order
    asked_at_ms: list[float] = field(default_factory=list)
    answers: dict[int, AnswerRecord] = field(default_factory=dict)
    answered: set[int] = field(default_factory=set)  # "answered" steps published
    evaluations: dict[int, dict[str, Any]] = field(default_factory=dict)
    #: Questions the last published report covered (a follow-up after a report reopens
    #: the interview: it is asked, evaluated, and a new report follows).
    reported: int = 0
    #: Interviewers' follow-up questions not yet asked.
    follow_ups: list[str] = field(default_factory=list)
    errors: list[dict[str, Any]] = field(default_factory=list)
    #: (at_ms, positive, negative) of every score update, for per-answer score bands.
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
    def current(self) -> int:
        """Index of the question being answered (-1 before the first is asked)."""
        return len(self.asked) - 1

    def apply(self, message: contract.BusMessage) -> None:
        if isinstance(message, contract.Profile):
            if self.profile is None:  # the first profile wins; a session has one interview
                self.profile = message
        elif isinstance(message, contract.InterviewEvent):
            self._apply_step(message)
        elif isinstance(message, contract.Transcript):
            self._apply_transcript(message)
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
            index = int(data.get("index", len(self.asked)))
            if index == len(self.asked):
                self.asked.append(dict(data))
                self.asked_at_ms.append(event.at_ms)
                if data.get("follow_up"):  # an interviewer's question, asked next
                    self.questions.insert(index, str(data.get("question", "")))
                    if self.follow_ups:
                        self.follow_ups.pop(0)
        elif event.step == "answered":
            index = int(data["index"])
            self.answered.add(index)
            record = self.answers.setdefault(index, AnswerRecord())
            record.text = str(data.get("answer", record.text))
            record.start_ms = data.get("start_ms", record.start_ms)
            record.end_ms = data.get("end_ms", record.end_ms)
            record.metrics = dict(data.get("metrics", record.metrics))
            record.complete = True
        elif event.step == "evaluated":
            self.evaluations[int(data["index"])] = dict(data)
        elif event.step == "report":
            self.reported = len(data.get("items", self.questions))
        elif event.step == "error":
            self.errors.append(dict(data))

    def _apply_transcript(self, transcript: contract.Transcript) -> None:
        key = (transcript.utterance_id, transcript.part)
        if key in self.seen_utterances:
            return  # a redelivered utterance transcribed twice
        self.seen_utterances.add(key)
        index = self.current
        if index < 0 or index in self.answered or index in self.evaluations:
            return  # speech before the first question or after the answer was taken
        if transcript.end_ms < self.asked_at_ms[index]:
            return  # speech that ended before the question was asked
        record = self.answers.setdefault(index, AnswerRecord())
        if record.complete:
            return
        record.text = f"{record.text} {transcript.text}".strip()
        record.utterances.append(transcript.utterance_id)
        record.start_ms = transcript.start_ms if record.start_ms is None else record.start_ms
        record.end_ms = transcript.end_ms
        record.metrics = _merge_metrics(record.metrics, transcript.metrics)
        record.complete = transcript.final

    # ---- what next -------------------------------------------------------------------

    @property
    def report_done(self) -> bool:
        """A report covers every question asked and no follow-up waits."""
        return (
            bool(self.questions) and self.reported >= len(self.questions) and not (self.follow_ups)
        )

    def next_action(self) -> Action | None:
        if self.profile is None or self.failed or self.report_done:
            return None
        if not self.questions:
            return Action("questions")
        index = self.current
        if index >= 0 and index not in self.evaluations:
            record = self.answers.get(index)
            if record is None or not record.complete:
                return None  # waiting for the candidate
            if index not in self.answered:
                return Action("answered", index)
            return Action("evaluate", index)
        if self.ended:
            return None  # the candidate left: ask nothing more
        if self.follow_ups:
            return Action("follow_up", len(self.asked))
        if len(self.asked) < len(self.questions):
            return Action("ask", len(self.asked))
        return Action("report")

    # ---- derived figures -------------------------------------------------------------

    def answer_score(self, index: int) -> dict[str, Any] | None:
        """The emotion score over one answer's time span only: 50 ± 0.1 per face seen
        while the candidate answered (and its band), from the cumulative score updates."""
        record = self.answers.get(index)
        if record is None or record.start_ms is None or record.end_ms is None:
            return None
        before = [(p, n) for at, p, n in self.scores if at < record.start_ms]
        within = [(p, n) for at, p, n in self.scores if record.start_ms <= at <= record.end_ms]
        if not within:
            return None
        p0, n0 = before[-1] if before else (0, 0)
        p1, n1 = within[-1]
        score = round(START_SCORE + STEP * ((p1 - p0) - (n1 - n0)), 1)
        return {"score": score, "band": band_of(score), "faces": (p1 - p0) + (n1 - n0)}

    def report_items(self) -> list[dict[str, Any]]:
        items = []
        for index, question in enumerate(self.questions):
            record = self.answers.get(index, AnswerRecord())
            evaluation = self.evaluations.get(index, {})
            items.append(
                {
                    "index": index,
                    "question": question,
                    "answer": record.text,
                    "metrics": record.metrics,
                    "evaluation": evaluation.get("evaluation"),
                    "engine": evaluation.get("engine"),
                    "emotion": evaluation.get("emotion"),
                }
            )
        return items


def _merge_metrics(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Metrics of an answer told in several utterance parts: add what adds up, keep the
    worst of what does not (a longest pause is a maximum)."""
    if not old:
        return dict(new)
    merged = dict(old)
    for key, value in new.items():
        if key in ("duration_s", "word_count", "filler_count", "pause_count", "total_pause_s"):
            merged[key] = (merged.get(key) or 0) + (value or 0)
        elif key == "longest_pause_s":
            merged[key] = max(merged.get(key) or 0, value or 0)
        elif key == "filler_words" and isinstance(value, list):
            merged[key] = list(merged.get(key) or []) + value
        else:
            merged[key] = value
    duration = merged.get("duration_s") or 0
    if duration and "word_count" in merged and "words_per_minute" in merged:
        merged["words_per_minute"] = round(merged["word_count"] * 60.0 / duration, 1)
    return merged
