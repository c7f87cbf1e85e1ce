"""The interview state machine (pure): answer turns, attempts, the candidate's choices,
folding events, next actions, resume, spans."""

from __future__ import annotations

from llm.interview import InterviewState
from stream import contract
from tests._messages import score_update


def _profile(session="s1"):
    return contract.Profile(session=session, self_intro="저는 Python 개발자입니다.", at_ms=1.0)


def _step(step, data, at=10.0, session="s1"):
    return contract.InterviewEvent(session=session, step=step, at_ms=at, data=data)


def _transcript(uid, text, start, end, part=0, final=True, metrics=None, question=0, attempt=1):
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
        metrics=metrics or contract.SpeakingMetrics(duration_s=(end - start) / 1000),
        question=question,
        attempt=attempt,
        dropped_reason="" if text else "silence",
    )


def _ended(question, attempt, parts, at, reason="done", opened=0.0):
    return contract.AnswerEnded(
        session="s1",
        question=question,
        attempt=attempt,
        reason=reason,
        parts=parts,
        opened_ms=opened,
        at_ms=at,
    )


def _request(kind, question, attempt=1):
    return contract.CandidateRequest(
        session="s1", request=kind, question=question, attempt=attempt, at_ms=1.0
    )


def _started(state, questions=("q1", "q2", "q3")):
    state.apply(_profile())
    state.apply(_step("questions", {"questions": list(questions), "engine": "offline"}))
    return state


def _answer(state, index, attempt, at, text="an answer", reason="done"):
    """One answer turn as the gateway and the speech worker report it."""
    uid = f"u{index}-{attempt}"
    state.apply(_transcript(uid, text, at + 10, at + 500, question=index, attempt=attempt))
    state.apply(_ended(index, attempt, [f"{uid}#0"], at + 600, reason, opened=at))


def test_nothing_happens_without_a_profile():
    state = InterviewState("s1")
    assert state.next_action() is None
    state.apply(_transcript("u0", "hello", 0, 1000))
    assert state.next_action() is None


def test_full_interview_waits_for_the_candidate_between_questions():
    state = _started(InterviewState("s1"))
    for index in range(3):
        action = state.next_action()
        assert (action.kind, action.index) == ("ask", index)
        state.apply(_step("asked", {"index": index, "attempt": 1, "question": f"q{index + 1}"}))
        assert state.next_action() is None  # the candidate answers
        _answer(state, index, 1, 1000 * index, text=f"answer {index}")
        assert (state.next_action().kind, state.next_action().index) == ("answered", index)
        state.apply(_step("answered", {"index": index, "attempt": 1}))
        assert state.next_action().kind == "evaluate"
        state.apply(_step("evaluated", {"index": index, "attempt": 1, "evaluation": {"x": 1}}))
        # the feedback stays until the candidate asks for more
        assert state.next_action() is None
        state.apply(_request("next", index))
    assert state.next_action().kind == "report"
    state.apply(_step("report", {}))
    assert state.next_action() is None and state.finished
    items = state.report_items()
    assert [i.question for i in items] == ["q1", "q2", "q3"]
    assert [i.answer for i in items] == ["answer 0", "answer 1", "answer 2"]


def test_pauses_between_utterances_do_not_end_an_answer():
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1, "question": "q1"}, at=0))
    # three utterances with thinking pauses, each a "final" VAD utterance
    spoken = [("u1", "First I built the index.", 1000, 6000),
              ("u2", "Then I measured it.", 8000, 12_000),
              ("u3", "Latency fell by 30%.", 14_500, 17_000)]  # fmt: skip
    for uid, text, start, end in spoken:
        state.apply(
            _transcript(
                uid,
                text,
                start,
                end,
                metrics=contract.SpeakingMetrics(duration_s=(end - start) / 1000),
            )
        )
        assert state.next_action() is None  # still answering: no end of turn yet
    state.apply(_ended(0, 1, ["u1#0", "u2#0", "u3#0"], 22_000, "silence"))
    record = state.answers[(0, 1)]
    assert record.text == "First I built the index. Then I measured it. Latency fell by 30%."
    assert (record.start_ms, record.end_ms) == (1000, 17_000)
    assert record.metrics.pause_count == 2 and record.metrics.longest_pause_s == 2.5
    assert state.next_action().kind == "answered"


def test_an_answer_waits_for_every_part_the_turn_names():
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1}, at=0))
    state.apply(_transcript("u1", "first part", 100, 8100, part=0, final=False))
    # Done was pressed while the second part was still being transcribed
    state.apply(_ended(0, 1, ["u1#0", "u1#1", "u2#0"], 9000))
    assert state.next_action() is None
    state.apply(_transcript("u1", "second part", 8100, 8600, part=1))
    assert state.next_action() is None
    state.apply(_transcript("u2", "", 8700, 8900))  # silence: bookkeeping only
    assert state.answers[(0, 1)].text == "first part second part"
    assert state.next_action().kind == "answered"


def test_redelivered_transcripts_and_speech_outside_a_turn_are_ignored():
    state = _started(InterviewState("s1"))
    state.apply(_transcript("early", "talking before the question", 0, 4000, question=-1))
    state.apply(_step("asked", {"index": 0, "attempt": 1}, at=5000))
    state.apply(_transcript("u1", "the answer", 5100, 7000))
    state.apply(_transcript("u1", "the answer", 5100, 7000))  # redelivered
    assert state.answers[(0, 1)].text == "the answer"


def test_try_again_asks_the_same_question_and_keeps_every_attempt():
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1, "question": "q1"}, at=0))
    _answer(state, 0, 1, 0, text="a weak answer")
    state.apply(_step("answered", {"index": 0, "attempt": 1}))
    state.apply(
        _step("evaluated", {"index": 0, "attempt": 1, "evaluation": {"model_answer": "v1"}})
    )
    state.apply(_request("retry", 0, 1))
    action = state.next_action()
    assert (action.kind, action.index) == ("retry", 0)
    state.apply(_step("asked", {"index": 0, "attempt": 2, "question": "q1"}, at=2000))
    assert state.current.key == (0, 2)
    # a late Next on the first attempt's card changes nothing
    state.apply(_request("next", 0, 1))
    assert state.next_action() is None
    _answer(state, 0, 2, 2000, text="a better answer")
    state.apply(_step("answered", {"index": 0, "attempt": 2}))
    state.apply(
        _step("evaluated", {"index": 0, "attempt": 2, "evaluation": {"model_answer": "v2"}})
    )
    state.apply(_request("next", 0, 2))
    assert (state.next_action().kind, state.next_action().index) == ("ask", 1)
    item = state.report_items()[0]
    assert item.attempt == 2 and item.answer == "a better answer"
    assert item.evaluation.model_answer == "v2"
    assert [a.answer for a in item.earlier_attempts] == ["a weak answer"]
    assert item.earlier_attempts[0].evaluation.model_answer == "v1"


def test_a_request_stored_before_its_evaluation_is_folded_in_order():
    # folding stored events sorts by stream sequence; a request never depends on arriving
    # after the evaluation it answers
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1}, at=0))
    _answer(state, 0, 1, 0)
    state.apply(_request("next", 0, 1))
    state.apply(_step("answered", {"index": 0, "attempt": 1}))
    assert state.next_action().kind == "evaluate"
    state.apply(_step("evaluated", {"index": 0, "attempt": 1, "evaluation": {}}))
    assert (state.next_action().kind, state.next_action().index) == ("ask", 1)


def test_repeated_or_out_of_order_asked_steps_are_ignored():
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1}, at=0))
    state.apply(_step("asked", {"index": 0, "attempt": 1}, at=1))
    state.apply(_step("asked", {"index": 2, "attempt": 1}, at=2))
    state.apply(_step("asked", {"index": 0, "attempt": 3}, at=3))
    assert [t.key for t in state.turns] == [(0, 1)]


def test_an_empty_turn_is_answered_empty():
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1}, at=0))
    state.apply(_ended(0, 1, [], 180_000, "time_cap"))
    assert state.next_action().kind == "answered"
    assert state.answers[(0, 1)].text == ""


def test_rebuilding_from_persisted_events_resumes_without_repeating():
    events = [
        _profile(),
        _step("questions", {"questions": ["q1", "q2", "q3"]}),
        _step("asked", {"index": 0, "attempt": 1}, at=0),
        _transcript("u1", "answer", 10, 900),
        _ended(0, 1, ["u1#0"], 1000),
        _step("answered", {"index": 0, "attempt": 1, "answer": "answer"}),
    ]
    state = InterviewState("s1")
    for event in events:
        state.apply(event)
    # The orchestrator died after "answered": the rebuilt state evaluates next.
    assert state.next_action().kind == "evaluate"
    state.apply(events[0])  # a redelivered profile changes nothing
    state.apply(events[4])  # nor a redelivered end of turn
    assert state.next_action().kind == "evaluate"


def test_no_more_questions_after_the_session_ended():
    state = _started(InterviewState("s1"))
    state.apply(contract.SessionEvent(session="s1", event="ended", at_ms=1.0))
    assert state.next_action() is None


def test_no_questions_for_a_candidate_who_left_before_they_came():
    state = InterviewState("s1")
    state.apply(_profile())
    assert state.next_action().kind == "questions"
    state.apply(contract.SessionEvent(session="s1", event="ended", at_ms=2.0))
    assert state.next_action() is None


def test_an_answer_cut_by_the_session_end_is_still_evaluated():
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1}, at=0))
    state.apply(contract.SessionEvent(session="s1", event="ended", at_ms=5000.0))
    _answer(state, 0, 1, 0, reason="session_end")
    assert state.next_action().kind == "answered"
    state.apply(_step("answered", {"index": 0, "attempt": 1}))
    state.apply(_step("evaluated", {"index": 0, "attempt": 1, "evaluation": {}}))
    state.apply(_request("next", 0, 1))
    assert state.next_action() is None  # nobody is there to ask


def test_answer_score_covers_only_the_answer_turn():
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1}, at=1000))
    state.apply(_transcript("u1", "answer", 1200, 1800))
    state.apply(_ended(0, 1, ["u1#0"], 2000, opened=1000))
    for at, pos, neg in [(500, 10, 0), (1200, 12, 3), (1900, 13, 8), (2500, 30, 8)]:
        state.apply(score_update("s1", 1, at, pos, neg))
    figure = state.answer_score((0, 1))
    # Within the turn: +3 positive, +8 negative → 50 − 0.5
    assert figure == contract.AnswerEmotion(score=49.5, band="normal", faces=11)
    assert state.answer_score((1, 1)) is None


def _run_through(state, at):
    """Ask, answer and evaluate whatever comes next, then press Next, as the orchestrator,
    the gateway and the candidate would."""
    action = state.next_action()
    assert action.kind in ("ask", "follow_up")
    follow_up = action.kind == "follow_up"
    question = state.follow_ups[0] if follow_up else state.questions[action.index]
    data = {"index": action.index, "attempt": 1, "question": question, "follow_up": follow_up}
    state.apply(_step("asked", data, at=at))
    _answer(state, action.index, 1, at)
    state.apply(_step("answered", {"index": action.index, "attempt": 1}))
    state.apply(_step("evaluated", {"index": action.index, "attempt": 1, "evaluation": {}}))
    state.apply(_request("next", action.index, 1))
    return action


def test_a_follow_up_is_asked_next_and_evaluated_and_reopens_a_finished_interview():
    state = _started(InterviewState("s1"))
    state.apply(_step("asked", {"index": 0, "attempt": 1, "question": "q1"}, at=1000))
    _answer(state, 0, 1, 1000)
    state.apply(_step("answered", {"index": 0, "attempt": 1}))
    state.apply(_step("evaluated", {"index": 0, "attempt": 1, "evaluation": {}}))
    state.apply(
        contract.InterviewCommand(
            session="s1", command="follow_up", text="Why Kubernetes?", by="kim", at_ms=2.0
        )
    )
    assert state.next_action() is None  # the candidate still reads q1's feedback
    state.apply(_request("next", 0, 1))
    action = _run_through(state, 2000)
    assert action.kind == "follow_up"
    assert state.questions == ["q1", "Why Kubernetes?", "q2", "q3"] and state.follow_ups == []
    _run_through(state, 3000)
    _run_through(state, 4000)
    assert state.next_action().kind == "report"
    state.apply(_step("report", {"items": state.report_items()}))
    assert [i.question for i in state.report_items()][1] == "Why Kubernetes?"
    assert state.next_action() is None
    # A follow-up after the report: asked at once, evaluated, then a new report.
    state.apply(
        contract.InterviewCommand(session="s1", command="follow_up", text="One more?", at_ms=3.0)
    )
    assert state.next_action().kind == "follow_up"
    _run_through(state, 5000)
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
