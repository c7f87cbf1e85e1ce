"""The dashboard's pure aggregation on recorded event sequences built from contract messages."""

from __future__ import annotations

import msgspec
import pytest

from dashboard import aggregate as agg
from dashboard import report
from stream import contract
from stream.bus import StoredEvent
from stream.score import START_SCORE, STEP, band_of
from tests._dashboard_events import (
    ANSWER_DELAY_MS,
    ANSWER_MS,
    ANSWERS,
    QUESTION_GAP_MS,
    QUESTIONS,
    interview_session,
    kind_of,
)

T0 = 1_700_000_000_000.0


def stored(messages, start_seq: int = 1) -> list[StoredEvent]:
    return [
        StoredEvent(start_seq + i, contract.event_subject(m.session, kind_of(m)), m)
        for i, m in enumerate(messages)
    ]


def point_result(seq: int, at: float, label: str | None, session: str = "s") -> StoredEvent:
    faces = []
    if label is not None:
        probs = {e: (0.7 if e == label else 0.05) for e in contract.EMOTIONS}
        faces = [
            contract.Face(
                box=(0, 0, 100, 100),
                detector_score=0.9,
                probs=probs,
                label=label,
                confidence=0.7,
                valence="positive" if label in contract.POSITIVE_EMOTIONS else "negative",
            )
        ]
    message = contract.EmotionResult(
        session=session,
        seq=seq,
        capture_ms=at,
        frame_sent_ms=at + 5,
        done_ms=at + 50 + seq,
        width=640,
        height=480,
        faces=faces,
    )
    return StoredEvent(seq, contract.event_subject(session, "emotion"), message)


@pytest.fixture(scope="module")
def full() -> agg.SessionView:
    return agg.fold(stored(interview_session("s1", T0)))


# --------------------------------------------------------------------------- bad input


def test_a_session_with_no_events_is_empty_and_renders():
    view = agg.fold([], "nothing")
    assert agg.status(view, T0) == "empty"
    assert view.questions == [] and view.points == [] and view.current is None
    assert agg.answer_summaries(view) == {}
    h = agg.health(view, T0)
    assert h.fps is None and h.latency_p50_ms is None and h.frames_dropped is None
    card = agg.card(view, T0)
    assert card.score is None and card.mix.faces == 0
    assert card.question == "waiting for the candidate's profile"
    assert "no emotion results" in report.render_html(view, T0)


def test_malformed_events_are_skipped_and_counted():
    events = stored(interview_session("s1", T0, questions=1))
    events.insert(3, StoredEvent(900, "intervue.events.s1.speech", None, "undecodable"))
    # An interview step whose data does not fit (no index) does not decode: unusable too.
    bad_step = msgspec.msgpack.encode(
        {"type": "interview", "v": 1, "session": "s1", "step": "answered", "at_ms": T0, "data": {}}
    )
    with pytest.raises(contract.ContractError) as error:
        contract.decode(bad_step)
    events.insert(5, StoredEvent(901, "intervue.events.s1.interview", None, str(error.value)))
    view = agg.fold(events)
    assert view.malformed == 2
    assert "undecodable" in view.malformed_samples[0]
    assert "unusable 'answered' step" in view.malformed_samples[1]
    # Everything else still counts.
    assert view.questions[0].state == "evaluated"
    assert agg.health(view, T0).malformed == 2
    only_bad = agg.fold([StoredEvent(1, "intervue.events.x.emotion", None, "bad")], "x")
    assert agg.status(only_bad, T0) == "empty" and only_bad.malformed == 1


def test_a_session_whose_events_stop_mid_way():
    # Events up to 20 s into the second answer; no answer, evaluation or end after that.
    cut = T0 + 2_000 + QUESTION_GAP_MS + ANSWER_DELAY_MS + 20_000
    view = agg.fold(stored(interview_session("s1", T0, ended=False, until_ms=cut)))
    assert agg.status(view, cut + 5_000) == "live"
    assert agg.status(view, cut + 10 * 60_000, stale_after_ms=120_000) == "stalled"
    q1, q2, q3 = view.questions
    assert (q1.state, q2.state, q3.state) == ("evaluated", "answering", "planned")
    assert view.current is q2 and view.speaking is True
    # The answer in progress spans from the candidate's first word to the last event.
    assert q2.answer_start_ms == q2.asked_ms + ANSWER_DELAY_MS
    assert q2.answer_end_ms == view.last_ms
    assert q2.answer == ""  # no transcript yet
    card = agg.card(view, cut + 1_000)
    assert card.question.startswith("Q2/3 · ") and QUESTIONS[1] in card.question
    assert card.speaking is True and card.score is not None
    summary = agg.summarize_answer(view, q2)
    assert summary is not None and summary.faces > 0


# --------------------------------------------------------------------------- the fold


def test_questions_answers_evaluations_and_transcripts(full):
    assert full.title() == "ML Engineer · Acme (3 y)"
    assert full.started_ms == T0 and full.ended_ms is not None
    assert full.end_reason == "client ended the session"
    assert [q.text for q in full.questions] == list(QUESTIONS)
    assert [q.state for q in full.questions] == ["evaluated"] * 3
    assert full.report is not None and full.engine == "offline"
    for index, q in enumerate(full.questions):
        assert q.asked_ms == T0 + 2_000 + index * QUESTION_GAP_MS
        assert q.answer_start_ms == q.asked_ms + ANSWER_DELAY_MS
        assert q.answer_end_ms == q.answer_start_ms + ANSWER_MS
        assert q.answer == ANSWERS[index]
        assert q.rows[0] == ["Overall", "Fine", "A clear answer with a concrete project."]
        assert len(q.rows) == 7 and q.evaluation.tips[0] == "Lead with the result."
        assert q.metrics.word_count == len(ANSWERS[index].split())
    assert [t.question for t in full.transcripts] == [0, 1, 2]
    assert agg.status(full, full.ended_ms + 1) == "ended"


def test_duplicate_transcripts_are_counted_once():
    messages = interview_session("s1", T0, questions=1)
    transcript = next(m for m in messages if isinstance(m, contract.Transcript))
    view = agg.fold(stored([*messages, transcript]))
    assert len(view.transcripts) == 1


def test_transcripts_without_an_answered_step_go_to_the_last_question_asked():
    def asked(index, at):
        return contract.InterviewEvent(
            session="s", step="asked", at_ms=at, data={"index": index, "question": f"q{index}"}
        )

    def said(uid, start, end):
        return contract.Transcript(
            session="s",
            utterance_id=uid,
            text=uid,
            language="en",
            start_ms=start,
            end_ms=end,
            cut_ms=end,
            done_ms=end,
        )

    view = agg.fold(
        stored(
            [
                said("hello", T0 - 5_000, T0 - 4_000),  # before any question
                asked(0, T0),
                said("a0", T0 + 1_000, T0 + 3_000),
                asked(1, T0 + 10_000),
                said("a1", T0 + 11_000, T0 + 12_000),
                said("a1b", T0 + 13_000, T0 + 14_000),
            ]
        )
    )
    assert [t.question for t in view.transcripts] == [-1, 0, 1, 1]
    q1 = view.questions[1]
    assert q1.answer == "a1 a1b"
    assert (q1.answer_start_ms, q1.answer_end_ms) == (T0 + 11_000, T0 + 14_000)


def test_an_interviewers_follow_up_is_inserted_and_pending_ones_are_listed():
    messages = interview_session("s1", T0, questions=1)
    end = max(m.at_ms for m in messages if isinstance(m, contract.InterviewEvent))
    command = contract.InterviewCommand(
        session="s1", command="follow_up", text="Why Python?", by="kim", at_ms=end + 1
    )
    view = agg.fold(stored([*messages, command]))
    assert view.pending_follow_ups == ["Why Python?"]
    follow = contract.InterviewEvent(
        session="s1",
        step="asked",
        at_ms=end + 2,
        data={"index": 1, "question": "Why Python?", "follow_up": True},
    )
    view = agg.fold(stored([*messages, command, follow]))
    assert view.pending_follow_ups == []
    assert [q.text for q in view.questions[:2]] == [QUESTIONS[0], "Why Python?"]
    assert view.questions[1].follow_up and view.current is view.questions[1]
    assert [q.text for q in view.questions[2:]] == list(QUESTIONS[1:])  # still planned


# --------------------------------------------------------------------------- windows


def test_emotion_mix_of_the_last_30_seconds():
    events = [point_result(i + 1, T0 + i * 1_000, "normal") for i in range(60)]
    # The last 30 s: 20 anxious frames, 5 without a face, 5 happy.
    for i in range(30, 50):
        events[i] = point_result(i + 1, T0 + i * 1_000, "anxiety")
    for i in range(50, 55):
        events[i] = point_result(i + 1, T0 + i * 1_000, None)
    for i in range(55, 60):
        events[i] = point_result(i + 1, T0 + i * 1_000, "happy")
    view = agg.fold(events, "s")
    now = T0 + 59_000
    mix = agg.recent_mix(view, now)
    assert mix.frames == 30 and mix.faces == 25
    assert mix.shares["anxiety"] == pytest.approx(20 / 25)
    assert mix.shares["happy"] == pytest.approx(5 / 25)
    assert mix.positive == pytest.approx(5 / 25)
    assert mix.dominant == "anxiety"
    assert sum(mix.shares.values()) == pytest.approx(1.0)
    assert agg.recent_mix(view, now, window_ms=10_000).shares["happy"] == pytest.approx(5 / 5)


def test_bins_count_labels_and_average_valence():
    events = [point_result(i + 1, T0 + i * 500, "happy" if i < 4 else "sad") for i in range(8)]
    events.append(point_result(9, T0 + 4_500, None))
    view = agg.fold(events, "s")
    bins = agg.bins(view.points, T0, T0 + 6_000, 2_000)
    assert [b.start_ms - T0 for b in bins] == [0, 2_000, 4_000]
    assert [b.counts for b in bins] == [{"happy": 4}, {"sad": 4}, {}]
    assert bins[2].frames == 1 and bins[2].valence is None
    assert bins[0].valence == pytest.approx(0.7 + 0.05 - 5 * 0.05)
    assert bins[1].valence == pytest.approx(2 * 0.05 - (0.7 + 4 * 0.05))
    assert bins[0].mean_probs["happy"] == pytest.approx(0.7)
    assert agg.auto_bin_ms(60_000) == 1000.0
    assert agg.auto_bin_ms(3_600_000, target_bins=300) == 15_000.0
    with pytest.raises(ValueError):
        agg.bins(view.points, T0, T0 + 1, 0)


def test_words_are_aligned_with_the_emotion_seen_while_they_were_said():
    events = [point_result(i + 1, T0 + i * 200, "normal" if i < 10 else "pain") for i in range(20)]
    transcript = contract.Transcript(
        session="s",
        utterance_id="u",
        text="one two three",
        language="en",
        words=[
            contract.Word("one", 0.0, 0.5),
            contract.Word("two", 2.5, 3.0),
            contract.Word("three", 9.0, 9.5),
        ],
        start_ms=T0,
        end_ms=T0 + 9_500,
        cut_ms=T0 + 9_500,
        done_ms=T0 + 10_000,
    )
    view = agg.fold([*events, *stored([transcript], 100)], "s")
    words = agg.align_words(view.transcripts[0], view.points)
    assert [(w.text, w.label) for w in words] == [
        ("one", "normal"),
        ("two", "pain"),
        ("three", None),  # no result within a second of it
    ]
    assert words[1].start_ms == T0 + 2_500
    # Without word timings the utterance is split evenly.
    bare = agg.TranscriptView("u2", 0, "a b", T0, T0 + 4_000, [], {}, "en", True)
    assert [(w.start_ms - T0, w.label) for w in agg.align_words(bare, view.points)] == [
        (0.0, "normal"),
        (2_000.0, "pain"),
    ]


# --------------------------------------------------------------------------- summaries


def test_per_answer_summaries_name_what_rose_and_when(full):
    summaries = agg.answer_summaries(full)
    assert set(summaries) == {0, 1, 2}
    q3 = summaries[2]
    assert "anxiety rose during the first 10 s of Q3" in q3.notes
    assert any(n.startswith('looked anxious while saying "') for n in q3.notes)
    assert q3.headline.endswith("during Q3")
    assert summaries[0].notes == []  # a calm answer has only its headline
    assert summaries[0].headline.startswith("mostly normal")


def test_score_band_per_answer_is_the_score_over_its_span(full):
    # The interviewer's rule (stream.score.answer_emotion) on the same score updates: the
    # face readings the live counter counted within the turn (these events predate
    # AnswerEnded, so the turn runs from the question to the answer's end).
    q1 = full.questions[0]
    before = [s for s in full.scores if s.at_ms < q1.asked_ms]
    within = [s for s in full.scores if q1.asked_ms <= s.at_ms <= q1.answer_end_ms]
    p0, n0 = (before[-1].positive, before[-1].negative) if before else (0, 0)
    positive, negative = within[-1].positive - p0, within[-1].negative - n0
    expected = round(START_SCORE + STEP * (positive - negative), 1)
    summary = agg.summarize_answer(full, q1)
    assert (summary.score, summary.band, summary.faces) == (
        expected,
        band_of(expected),
        positive + negative,
    )
    # The interviewer's own figure is the one shown when the evaluation carries it.
    q1.emotion = contract.AnswerEmotion(score=38.5, band="bad", faces=12)
    try:
        summary = agg.summarize_answer(full, q1)
        assert (summary.score, summary.band, summary.faces) == (38.5, "bad", 12)
    finally:
        q1.emotion = None


def test_an_answer_without_a_face_says_so():
    asked = contract.InterviewEvent(
        session="s", step="asked", at_ms=T0, data={"index": 0, "question": "q"}
    )
    answered = contract.InterviewEvent(
        session="s",
        step="answered",
        at_ms=T0 + 20_000,
        data={"index": 0, "answer": "a", "start_ms": T0 + 1_000, "end_ms": T0 + 19_000},
    )
    results = [point_result(i + 1, T0 + 1_000 + i * 1_000, None) for i in range(10)]
    view = agg.fold([*stored([asked, answered]), *results], "s")
    summary = agg.summarize_answer(view, view.questions[0])
    assert summary.headline == "no face seen during Q1"
    assert summary.score is None and summary.band is None


# --------------------------------------------------------------------------- health


def test_health_while_live_uses_the_last_10_seconds():
    # 10 fps for 60 s, with every 10th frame missing (dropped) from 30 s on.
    events = []
    for seq in range(1, 601):
        if seq > 300 and seq % 10 == 0:
            continue
        events.append(point_result(seq, T0 + seq * 100, "normal"))
    view = agg.fold(events, "s")
    now = T0 + 60_100
    h = agg.health(view, now)
    assert h.fps == pytest.approx(9.0, abs=0.2)
    # 310, 320, … 590 are gaps; 600, the last, cannot be told from a frame not sent yet.
    assert (h.frames_dropped, h.dropped_source) == (29, "estimated")
    # done_ms = capture + 50 + seq: the p50 over the window is about 50 + 550.
    assert 500 < h.latency_p50_ms < 700 and h.latency_p95_ms >= h.latency_p50_ms
    assert h.results == 570 and h.no_face_share == 0


def test_health_of_an_ended_session_uses_the_gateways_counters(full):
    h = agg.health(full, full.ended_ms + 60_000)
    assert (h.frames_dropped, h.dropped_source) == (7, "gateway")
    assert h.fps == pytest.approx(4.0, abs=0.1)
    assert h.stats["frames_sampled"] > 0
    assert h.browser_clock_share == 1.0
    assert h.latency_p50_ms == pytest.approx(80.0, abs=10)


# --------------------------------------------------------------------------- report


def test_html_report_is_self_contained_and_escapes_text(full):
    html = report.render_html(full, full.ended_ms + 1_000)
    assert html.startswith("<!doctype html>")
    assert "<svg" in html and "emotion timeline" in html
    for question in QUESTIONS:
        assert report.esc(question) in html
    assert "anxiety rose during the first 10 s of Q3" in html
    assert "Natural delivery / filler words" in html and "Lead with the result." in html
    assert "Pipeline health" in html and "7 (gateway count)" in html
    # No external assets, no scripts.
    for needle in ("<script", "src=", "href=", "@import", "url("):
        assert needle not in html
    evil = "<script>alert(1)</script>"
    hostile = []
    for m in interview_session("s2", T0, questions=1):
        if isinstance(m, contract.Transcript):
            m = msgspec.structs.replace(m, text=evil, words=[])
        elif isinstance(m, contract.InterviewEvent) and m.step == "answered":
            m = msgspec.structs.replace(m, data=msgspec.structs.replace(m.data, answer=evil))
        hostile.append(m)
    text = report.render_html(agg.fold(stored(hostile)), T0 + 100_000)
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
