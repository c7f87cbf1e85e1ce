"""One answer's speaking metrics: the one merge of its parts, and the same figures from the
speech worker through the interviewer to the dashboard, the HTML report and the room page."""

from __future__ import annotations

import json
import re

import msgspec
import pytest

from dashboard import aggregate as agg
from dashboard import report
from inference.speech.metrics import speaking_metrics
from llm.interview import InterviewState
from llm.offline import OfflineEngine
from llm.schemas import Profile
from stream import contract
from stream.bus import StoredEvent
from stream.contract import SpeakingMetrics, merge_speaking_metrics
from tests._messages import score_update


def _part(syllables: int, seconds: float, language: str = "ko", words: int = 10) -> SpeakingMetrics:
    rate_basis = "syllables" if language == "ko" else "words"
    return SpeakingMetrics.of(
        duration_s=seconds + 0.6, speech_s=seconds, rate_s=seconds, word_count=words,
        hangul_syllables=syllables, rate_basis=rate_basis, filler_words=[], pause_count=0,
        longest_pause_s=0.2, total_pause_s=0.0, language=language,
    )  # fmt: skip


def test_korean_answer_over_several_parts_keeps_every_syllable() -> None:
    # Spoken at 73 syllables over 20 s of speech; the last part alone is 13 over 5.4 s,
    # the 2.41 syllables/s a merge that kept the last part's figures used to report.
    parts = [(0.0, 8_200.0, _part(32, 7.6)), (9_000.0, 16_600.0, _part(28, 7.0)),
             (18_000.0, 24_000.0, _part(13, 5.4))]  # fmt: skip
    assert parts[-1][2].syllables_per_second == 2.41
    merged = merge_speaking_metrics(reversed(parts))  # any order
    assert merged.hangul_syllables == 73
    assert merged.rate_s == pytest.approx(20.0)
    assert merged.syllables_per_second == 3.65
    assert merged.word_count == 30 and merged.words_per_minute == 90.0
    assert merged.rate_basis == "syllables" and merged.language == "ko"
    # the gaps between the utterances (0.8 s and 1.4 s) are the answer's pauses
    assert merged.pause_count == 2
    assert merged.total_pause_s == pytest.approx(2.2)
    assert merged.longest_pause_s == pytest.approx(1.4)
    assert merged.duration_s == pytest.approx(21.8)


def test_english_answer_rates_are_over_the_summed_speaking_time() -> None:
    one = speaking_metrics(
        [("Um,", 0.0, 0.3), ("I", 0.4, 0.5), ("built", 0.6, 1.0), ("it.", 1.1, 1.5)],
        "Um, I built it.", "en", 2.0,
    )  # fmt: skip
    two = speaking_metrics([("Then", 0.0, 0.4), ("uh", 1.2, 1.4), ("shipped.", 1.5, 2.5)],
                           "Then uh shipped.", "en", 3.0)  # fmt: skip
    merged = merge_speaking_metrics([(0.0, 2_000.0, one), (2_300.0, 5_300.0, two), (0, 1, None)])
    assert merged.word_count == 7
    assert merged.rate_s == pytest.approx(1.5 + 2.5)
    assert merged.words_per_minute == round(7 * 60 / 4.0, 1)
    assert merged.filler_words == ["um", "uh"] and merged.filler_count == 2
    assert merged.fillers_per_minute == 30.0 and merged.filler_rate == round(2 / 7, 4)
    # 0.8 s between "Then" and "uh" is a pause; the 0.3 s between the utterances is not
    assert merged.pause_count == 1 and merged.longest_pause_s == pytest.approx(0.8)
    assert merge_speaking_metrics([]) is None
    assert merge_speaking_metrics([(0.0, 1.0, None)]) is None


def test_an_utterance_without_word_timings_counts_its_audio_time() -> None:
    timed = speaking_metrics([("a", 0.0, 0.5), ("b", 0.5, 1.0)], "a b", "en", 1.5)
    bare = speaking_metrics([], "c d e", "en", 2.0)
    merged = merge_speaking_metrics([(0.0, 1_500.0, timed), (1_600.0, 3_600.0, bare)])
    assert merged.speech_s == 1.0 and merged.rate_s == 3.0
    assert merged.words_per_minute == 100.0


def test_language_and_rate_basis_follow_most_of_the_speaking_time() -> None:
    merged = merge_speaking_metrics(
        [(0.0, 1.0, _part(0, 1.0, "en", 3)), (2_000.0, 3.0, _part(40, 9.0, "ko"))]
    )
    assert (merged.language, merged.rate_basis) == ("ko", "syllables")


def test_metrics_stored_by_an_older_build_still_decode() -> None:
    old = {"duration_s": 4.2, "speech_s": 4.0, "word_count": 10, "words_per_minute": 150.0,
           "hangul_syllables": 0, "syllables_per_second": 0.0, "rate_basis": "words",
           "filler_words": [], "filler_count": 0, "filler_rate": 0.0, "fillers_per_minute": 0.0,
           "pause_count": 0, "longest_pause_s": 0.3, "total_pause_s": 0.0,
           "language": "en"}  # fmt: skip

    def answered(metrics: object) -> contract.SpeakingMetrics | None:
        event = contract.InterviewEvent(
            session="s1", step="answered", at_ms=1.0, data={"index": 0, "metrics": metrics}
        )
        return contract.decode(contract.encode(event), contract.InterviewEvent).data.metrics

    metrics = answered(old)
    assert metrics.rate_s == 4.0 and metrics.words_per_minute == 150.0
    assert answered({}) is None  # an answer with no speech, as older builds stored it
    assert answered(None) is None
    for bad in ({"word_count": -1}, {"duration_s": float("inf")}, {"rate_basis": "beats"}, [1]):
        with pytest.raises(contract.ContractError):
            answered(bad)


# --------------------------------------------------------------------------- one answer, end to end

ANSWERS = {
    "ko": [
        ("저는 백엔드 개발자로 일하면서, 음, 대용량 트래픽을 처리했습니다", 6.0),
        ("그 과정에서 캐시 구조를 새로 설계했습니다", 4.0),
        ("결과적으로 응답 시간이 절반으로 줄었습니다", 4.5),
    ],
    "en": [
        ("I led the migration of our search service to a new cluster,", 4.0),
        ("um, and we cut the latency in half", 2.5),
        ("because the cache finally fit in memory.", 3.0),
    ],
}


def _worker_transcripts(language: str, t0: float) -> list[contract.Transcript]:
    """The speech worker's transcripts of one answer's three utterances, as they come
    off the bus (encoded and decoded)."""
    out, start = [], t0 + 1_000.0
    for i, (text, span) in enumerate(ANSWERS[language]):
        tokens = text.split()
        step = span / len(tokens)
        words = [
            contract.Word(w, 0.2 + k * step, 0.2 + (k + 0.9) * step) for k, w in enumerate(tokens)
        ]
        duration = span + 0.5
        transcript = contract.Transcript(
            session="s1", utterance_id=f"u{i}", text=text, language=language, words=words,
            start_ms=start, end_ms=start + duration * 1000, cut_ms=start + duration * 1000,
            done_ms=start + duration * 1000 + 300,
            metrics=speaking_metrics(words, text, language, duration),
            question=0, attempt=1,
        )  # fmt: skip
        out.append(contract.decode(contract.encode(transcript), contract.Transcript))
        start += duration * 1000 + 2_000.0  # a pause to think between utterances
    return out


@pytest.mark.parametrize("language", ["ko", "en"])
def test_one_answer_has_the_same_pace_everywhere(language: str) -> None:
    t0 = 1_700_000_000_000.0
    transcripts = _worker_transcripts(language, t0)
    # the expected figures, by hand: counts over the summed speaking spans
    words = sum(len(text.split()) for text, _ in ANSWERS[language])
    syllables = sum(len(re.findall("[가-힣]", text)) for text, _ in ANSWERS[language])
    span = sum(t.metrics.speech_s for t in transcripts)
    wpm, sps = round(words * 60 / span, 1), round(syllables / span, 2)
    assert span == pytest.approx(sum(s for _, s in ANSWERS[language]) * 0.99, abs=0.1)

    # the interviewer folds the answer and publishes it
    events: list[contract.BusMessage] = [
        contract.SessionEvent(session="s1", event="started", at_ms=t0),
        contract.Profile(session="s1", self_intro="저는 백엔드 개발자입니다.", language=language),
        contract.InterviewEvent(session="s1", step="questions", at_ms=t0 + 1,
                                data={"questions": ["q1", "q2", "q3"], "engine": "offline"}),
        contract.InterviewEvent(session="s1", step="asked", at_ms=t0 + 2,
                                data={"index": 0, "attempt": 1, "question": "q1", "total": 3}),
        score_update("s1", 1, t0 - 500, 2, 0),
        *transcripts,
        score_update("s1", 2, t0 + 5_000, 9, 1),
        contract.AnswerEnded(session="s1", question=0, attempt=1, reason="done",
                             parts=[t.part_key for t in transcripts], opened_ms=t0 + 2,
                             at_ms=transcripts[-1].end_ms + 1_000),
        score_update("s1", 3, transcripts[-1].end_ms + 5_000, 20, 1),
    ]  # fmt: skip
    state = InterviewState("s1")
    for message in events:
        state.apply(message)
    assert state.next_action().kind == "answered"
    answered = contract.InterviewEvent(
        session="s1", step="answered", at_ms=t0 + 60_000, data=state.answered_data()
    )
    answered = contract.decode(contract.encode(answered), contract.InterviewEvent)
    state.apply(answered)
    record = state.answers[(0, 1)]
    assert record.metrics.words_per_minute == wpm
    assert record.metrics.syllables_per_second == sps
    assert answered.data.metrics.words_per_minute == wpm
    assert answered.data.metrics.syllables_per_second == sps

    # the offline engine reads the same pace
    profile = Profile(self_intro="저는 백엔드 개발자입니다.", language=language)
    evaluation = OfflineEngine().evaluation(profile, "q1", record.text, record.metrics)
    reason = evaluation.communication.reason
    assert (f"초당 {sps:.1f}음절" if language == "ko" else f"at {round(wpm)} words per minute") in (
        reason
    )
    emotion = state.answer_score((0, 1))
    assert emotion == contract.AnswerEmotion(score=50.6, band="normal", faces=8)
    evaluated = contract.InterviewEvent(
        session="s1", step="evaluated", at_ms=t0 + 61_000,
        data={"index": 0, "attempt": 1, "evaluation": evaluation.model_dump(mode="json"),
              "rows": [list(r) for r in evaluation.rows(language)], "engine": "offline",
              "emotion": msgspec.to_builtins(emotion)},
    )  # fmt: skip

    # the dashboard folds the stored events; the report shows the same figures
    stored = [
        StoredEvent(i + 1, "intervue.events.s1.x", contract.decode(contract.encode(m)))
        for i, m in enumerate([*events, answered, evaluated])
    ]
    view = agg.fold(stored, "s1")
    q = view.questions[0]
    assert view.malformed == 0
    assert q.metrics == record.metrics
    assert (q.metrics.words_per_minute, q.metrics.syllables_per_second) == (wpm, sps)
    # the dashboard's own figure for the answer's emotion is the interviewer's rule too
    assert agg.answer_score(view, q) == emotion
    q.emotion = None
    assert agg.answer_score(view, q) == emotion
    html = report.render_html(agg.fold(stored, "s1"), now_ms=t0 + 70_000)
    assert f"{wpm:.0f} words/min" in html and f"{sps:.1f} syll/s" in html

    # the room page gets the interviewer's step as stored (room.js reads these keys)
    page = json.loads(
        contract.encode_page(
            contract.InterviewUpdate(step=answered.step, data=answered.data, at_ms=answered.at_ms)
        )
    )
    assert page["data"]["metrics"]["words_per_minute"] == wpm
    assert page["data"]["metrics"]["syllables_per_second"] == sps
    assert page["data"]["metrics"]["rate_basis"] == ("syllables" if language == "ko" else "words")
