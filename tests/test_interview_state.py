"""The interview state machine (pure): folding events, next actions, resume, spans."""

from __future__ import annotations

from llm.interview import InterviewState
from stream import contract
from tests._messages import score_update


def _profile(session="s1"):
    return contract.Profile(session=session, self_intro="저는 Python 개발자입니다.", at_ms=1.0)


def _step(step, data, at=10.0, session="s1"):
    return contract.InterviewEvent(session=session, step=step, at_ms=at, data=data)


def _transcript(uid, text, start, end, part=0, final=True, metrics=None):
    return contract.Transcript(
        session="s1",
        utterance_id=uid,
        part=part,
        final=final,
        text=text,
        language="ko",
        start_ms=start,
        end_ms=end,
        cut_ms=end,
        done_ms=end + 500,
        metrics=metrics or {"duration_s": (end - start) / 1000, "word_count": 4},
    )


def test_nothing_happens_without_a_profile():
    state = InterviewState("s1")
    assert state.next_action() is None
    state.apply(_transcript("u0", "hello", 0, 1000))
    assert state.next_action() is None


def test_full_interview_sequence():
    state = InterviewState("s1")
    state.apply(_profile())
    assert state.next_action().kind == "questions"
    state.apply(_step("questions", {"questions": ["q1", "q2", "q3"], "engine": "offline"}))
    for index in range(3):
        action = state.next_action()
        assert (action.kind, action.index) == ("ask", index)
        state.apply(_step("asked", {"index": index, "question": f"q{index + 1}"}, at=1000 * index))
        assert state.next_action() is None  # waiting for the candidate
        state.apply(
            _transcript(f"u{index}", f"answer {index}", 1000 * index + 10, 1000 * index + 900)
        )
        assert (state.next_action().kind, state.next_action().index) == ("answered", index)
        state.apply(_step("answered", {"index": index, "answer": f"answer {index}"}))
        assert state.next_action().kind == "evaluate"
        state.apply(_step("evaluated", {"index": index, "evaluation": {"x": 1}}))
    assert state.next_action().kind == "report"
    state.apply(_step("report", {}))
    assert state.next_action() is None
    items = state.report_items()
    assert [i["question"] for i in items] == ["q1", "q2", "q3"]
    assert [i["answer"] for i in items] == ["answer 0", "answer 1", "answer 2"]


def test_answer_parts_are_joined_until_the_final_one():
    state = InterviewState("s1")
    state.apply(_profile())
    state.apply(_step("questions", {"questions": ["q1", "q2", "q3"]}))
    state.apply(_step("asked", {"index": 0}, at=0))
    state.apply(
        _transcript(
            "u1",
            "first part",
            100,
            28_100,
            part=0,
            final=False,
            metrics={"duration_s": 28.0, "word_count": 50, "longest_pause_s": 1.0},
        )
    )
    assert state.next_action() is None
    state.apply(
        _transcript(
            "u1",
            "second part",
            28_100,
            30_100,
            part=1,
            final=True,
            metrics={"duration_s": 2.0, "word_count": 10, "longest_pause_s": 2.5},
        )
    )
    record = state.answers[0]
    assert record.text == "first part second part"
    assert record.metrics["duration_s"] == 30.0 and record.metrics["word_count"] == 60
    assert record.metrics["longest_pause_s"] == 2.5
    assert (record.start_ms, record.end_ms) == (100, 30_100)
    assert state.next_action().kind == "answered"


def test_redelivered_transcripts_and_early_speech_are_ignored():
    state = InterviewState("s1")
    state.apply(_profile())
    state.apply(_step("questions", {"questions": ["q1", "q2", "q3"]}))
    state.apply(_step("asked", {"index": 0}, at=5000))
    state.apply(_transcript("early", "talking before the question", 0, 4000))
    assert 0 not in state.answers
    state.apply(_transcript("u1", "the answer", 5100, 7000))
    state.apply(_transcript("u1", "the answer", 5100, 7000))  # redelivered
    assert state.answers[0].text == "the answer"


def test_rebuilding_from_persisted_events_resumes_without_repeating():
    events = [
        _profile(),
        _step("questions", {"questions": ["q1", "q2", "q3"]}),
        _step("asked", {"index": 0}, at=0),
        _transcript("u1", "answer", 10, 900),
        _step("answered", {"index": 0, "answer": "answer"}),
    ]
    state = InterviewState("s1")
    for event in events:
        state.apply(event)
    # The orchestrator died after "answered": the rebuilt state evaluates next.
    assert state.next_action().kind == "evaluate"
    state.apply(events[0])  # a redelivered profile changes nothing
    assert state.next_action().kind == "evaluate"


def test_no_more_questions_after_the_session_ended():
    state = InterviewState("s1")
    state.apply(_profile())
    state.apply(_step("questions", {"questions": ["q1", "q2", "q3"]}))
    state.apply(contract.SessionEvent(session="s1", event="ended", at_ms=1.0))
    assert state.next_action() is None


def test_answer_score_covers_only_the_answer_span():
    state = InterviewState("s1")
    state.apply(_profile())
    state.apply(_step("questions", {"questions": ["q1", "q2", "q3"]}))
    state.apply(_step("asked", {"index": 0}, at=0))
    state.apply(_transcript("u1", "answer", 1000, 2000))
    for at, pos, neg in [(500, 10, 0), (1200, 12, 3), (1900, 13, 8), (2500, 30, 8)]:
        state.apply(score_update("s1", 1, at, pos, neg))
    figure = state.answer_score(0)
    # Within the span: +3 positive, +8 negative → 50 − 0.5
    assert figure == {"score": 49.5, "band": "normal", "faces": 11}
    assert state.answer_score(1) is None


def _run_through(state, start_index, at):
    """Answer and evaluate whatever is asked next, as the orchestrator would."""
    action = state.next_action()
    assert action.kind in ("ask", "follow_up")
    follow_up = action.kind == "follow_up"
    question = state.follow_ups[0] if follow_up else state.questions[action.index]
    data = {"index": action.index, "question": question, "follow_up": follow_up}
    state.apply(_step("asked", data, at=at))
    state.apply(_transcript(f"u{at}", "an answer", at + 10, at + 500))
    state.apply(_step("answered", {"index": action.index, "answer": "an answer"}))
    state.apply(_step("evaluated", {"index": action.index, "evaluation": {}}))
    return action


def test_a_follow_up_is_asked_next_and_evaluated_and_reopens_a_finished_interview():
    state = InterviewState("s1")
    state.apply(_profile())
    state.apply(_step("questions", {"questions": ["q1", "q2", "q3"]}))
    _run_through(state, 0, 1000)
    state.apply(
        contract.InterviewCommand(
            session="s1", command="follow_up", text="Why Kubernetes?", by="kim", at_ms=1.0
        )
    )
    # The follow-up is the next question; the planned ones follow it.
    action = _run_through(state, 1, 2000)
    assert action.kind == "follow_up"
    assert state.questions == ["q1", "Why Kubernetes?", "q2", "q3"] and state.follow_ups == []
    _run_through(state, 2, 3000)
    _run_through(state, 3, 4000)
    assert state.next_action().kind == "report"
    state.apply(_step("report", {"items": state.report_items()}))
    assert [i["question"] for i in state.report_items()][1] == "Why Kubernetes?"
    assert state.next_action() is None
    # A follow-up after the report: asked, evaluated, then a new report.
    state.apply(
        contract.InterviewCommand(session="s1", command="follow_up", text="One more?", at_ms=2.0)
    )
    assert state.next_action().kind == "follow_up"
    _run_through(state, 4, 5000)
    assert state.next_action().kind == "report"


def test_a_follow_up_command_applied_twice_is_asked_once():
    # a rebuilt state already holds the stored command that is then consumed again
    state = InterviewState("s1")
    state.apply(_profile())
    command = contract.InterviewCommand(
        session="s1", command="follow_up", text="Why PyTorch?", by="kim", at_ms=5.0
    )
    state.apply(command)
    state.apply(command)
    assert state.follow_ups == ["Why PyTorch?"]
    other = contract.InterviewCommand(
        session="s1", command="follow_up", text="Why PyTorch?", by="kim", at_ms=9.0
    )
    state.apply(other)  # the same words sent again later: a second question
    assert state.follow_ups == ["Why PyTorch?", "Why PyTorch?"]
