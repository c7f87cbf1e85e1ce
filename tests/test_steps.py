"""The one fold of the interviewer's steps (`llm.steps.StepFold`), without services, and
the orchestrator's state and the dashboard's view agreeing because both use it."""

from __future__ import annotations

from dashboard import aggregate as agg
from llm.interview import InterviewState
from llm.steps import StepFold, Turn
from stream import contract
from stream.bus import StoredEvent


def _event(data: contract.StepData, at_ms: float) -> contract.InterviewEvent:
    return contract.InterviewEvent.of("s1", data, at_ms=at_ms)


def _asked(index: int, attempt: int = 1, question: str = "", follow_up: bool = False):
    return contract.AskedStep(index=index, attempt=attempt, question=question, follow_up=follow_up)


#: Questions, a repeated and an out-of-order "asked", a retry, a follow-up, evaluations,
#: a report and an error.
EVENTS = [
    _event(contract.QuestionsStep(questions=["q1", "q2", "q3"], engine="offline"), 1.0),
    _event(_asked(0, question="q1"), 2.0),
    _event(_asked(0, question="q1"), 2.5),  # repeated: ignored
    _event(_asked(2, question="q3"), 2.6),  # out of order: ignored
    _event(contract.AnsweredStep(index=0, answer="first"), 3.0),
    _event(contract.EvaluatedStep(index=0, engine="offline"), 4.0),
    _event(_asked(0, attempt=2), 5.0),  # a retry of an older step: the planned text
    _event(_asked(0, attempt=4, question="q1"), 5.5),  # skips an attempt: ignored
    _event(contract.EvaluatedStep(index=0, attempt=2, engine="offline"), 6.0),
    _event(_asked(1, question="Why Kafka?", follow_up=True), 7.0),
    _event(contract.ErrorStep(message="boom", stage="evaluation", retryable=True), 7.5),
    _event(contract.EvaluatedStep(index=1, no_answer=True), 8.0),
    _event(contract.ReportStep(engine="offline"), 9.0),
]


def test_the_fold_keeps_the_accepted_turns_in_order():
    fold = StepFold()
    opened = [fold.apply_step(e) for e in EVENTS]
    assert [t.key for t in fold.turns] == [(0, 1), (0, 2), (1, 1)]
    assert [t.key for t in opened if t is not None] == [(0, 1), (0, 2), (1, 1)]
    assert fold.turns[1] == Turn(0, 2, "q1", False, 5.0)
    # the follow-up is inserted where it was asked; the planned questions move down
    assert fold.questions == ["q1", "Why Kafka?", "q2", "q3"] and fold.engine == "offline"
    assert fold.turns[2].follow_up and fold.current == fold.turns[2]
    assert fold.asked_questions == 2
    assert set(fold.answered) == {(0, 1)} and fold.answered[(0, 1)].answer == "first"
    assert set(fold.evaluations) == {(0, 1), (0, 2), (1, 1)}
    assert fold.evaluations[(1, 1)].no_answer
    assert fold.errors == [(7.5, EVENTS[10].data)]
    assert (fold.reports, fold.reported_turns) == (1, 3) and fold.report == EVENTS[-1].data


def test_a_working_step_lasts_until_the_result_it_announced():
    fold = StepFold()
    questions = contract.WorkingStep(stage="questions", engine="llm", budget_s=60.0)
    fold.apply_step(_event(questions, 1.0))
    assert fold.working == questions and fold.working_ms == 1.0
    fold.apply_step(_event(contract.ErrorStep(message="slow", stage="questions"), 1.5))
    assert fold.working == questions  # an error is not the result
    fold.apply_step(_event(contract.QuestionsStep(questions=["q1", "q2", "q3"]), 2.0))
    assert fold.working is None and fold.working_ms is None
    fold.apply_step(_event(_asked(0, question="q1"), 3.0))
    evaluation = contract.WorkingStep(stage="evaluation", index=0, attempt=1, engine="llm")
    fold.apply_step(_event(evaluation, 4.0))
    fold.apply_step(_event(contract.EvaluatedStep(index=0, attempt=2), 4.5))  # another one
    assert fold.working == evaluation
    fold.apply_step(_event(contract.EvaluatedStep(index=0, attempt=1), 5.0))
    assert fold.working is None
    # the dashboard's fold says the same, in words for a live session
    view = agg.fold(
        [StoredEvent(seq=1, subject="intervue.events.s1.progress", message=_event(evaluation, 4.0))]
    )
    assert view.working == evaluation
    assert agg.working_text(view, 12_004.0) == "Writing feedback on Q1… (llm engine, 12 s so far)"
    assert agg.working_text(agg.fold([]), 1.0) is None


def test_an_empty_fold_and_a_question_past_the_plan():
    fold = StepFold()
    assert fold.current is None and fold.asked_questions == 0
    fold.apply_step(_event(_asked(0), 1.0))  # asked before any questions step
    assert fold.turns == [Turn(0, 1, "", False, 1.0)]


def test_the_orchestrator_and_the_dashboard_fold_the_same_interview():
    state = InterviewState("s1")
    state.follow_ups = ["Why Kafka?"]
    for event in EVENTS:
        state.apply(event)
    view = agg.fold(
        StoredEvent(seq, "intervue.events.s1.interview", event)
        for seq, event in enumerate(EVENTS, 1)
    )
    views = [e for q in view.questions for e in (*q.earlier, q)]
    asked = [(q.index, q.attempt, q.text, q.follow_up, q.asked_ms) for q in views]
    assert asked == [
        *((t.index, t.attempt, t.question, t.follow_up, t.asked_ms) for t in state.turns),
        (2, 1, "q2", False, None),  # planned, not asked yet
        (3, 1, "q3", False, None),
    ]
    # the follow-up was taken off the orchestrator's list when it was asked
    assert state.follow_ups == []
    assert [e.message for e in view.errors] == ["boom"] and view.report == state.report
    assert view.questions[1].no_answer and view.questions[1].state == "evaluated"
