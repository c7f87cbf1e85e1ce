"""`intervue bench room`: the pure parts (the interview's WAV and where its answers lie,
the table, the glass reader) without services, and one short real run: one Chromium
candidate against a real `intervue up`, two answers (one ended by Done, one by the
silence rule). Nothing asserts a time: the figures are what the bench prints."""

from __future__ import annotations

import json
import wave

import numpy as np
import pytest

from deploy.bench import room
from deploy.bench.room import AnswerTiming, CandidateRun, VariantRun


def test_the_interviews_wav_has_each_answer_where_the_bench_says(tmp_path) -> None:
    media = room.make_interview_media(tmp_path, "en", 2, fps=15)
    with wave.open(str(media.audio), "rb") as clip:
        rate = clip.getframerate()
        samples = np.frombuffer(clip.readframes(clip.getnframes()), np.int16)
    loud = np.abs(samples.astype(np.int32)) > room.SPEECH_LEVEL * 32767
    assert not loud[: int(room.LEAD_S * rate) - 1].any()  # the lead-in is silent
    for clip_ in media.answers:
        start, last = int(clip_.start_ms * rate / 1000), int(clip_.last_word_ms * rate / 1000)
        assert loud[start] and loud[last - 1]
        # after the last word: the gap, silent, long enough for the silence rule
        assert not loud[last : last + int((room.GAP_S - 0.1) * rate)].any()
    first, second = media.answers
    # the gap, plus the quiet ends espeak-ng leaves around its clips
    assert 0 <= second.start_ms - first.last_word_ms - room.GAP_S * 1000 < 1000
    assert media.seconds == pytest.approx(len(samples) / rate)
    assert media.video.exists()


def test_korean_answers_are_spoken_too(tmp_path) -> None:
    media = room.make_interview_media(tmp_path, "ko", 1, fps=15)
    (clip,) = media.answers
    assert clip.last_word_ms - clip.start_ms > 2000  # two sentences of speech


def _answer(end: str, **times: float) -> AnswerTiming:
    return AnswerTiming(candidate=1, index=0, end=end, reason=end, **times)


def _variant(buffer: str, glass: list[float], done_s: float) -> VariantRun:
    done = _answer(
        "done",
        last_word_ms=1000.0,
        asked_ms=0.0,
        done_ms=1400.0,
        answered_ms=1400.0 + done_s * 1000,
        evaluated_ms=1500.0 + done_s * 1000,
    )
    silence = _answer(
        "silence", last_word_ms=1000.0, ended_ms=6000.0, answered_ms=6100.0, evaluated_ms=6200.0
    )
    late = _answer("done", late=True, done_ms=0.0, answered_ms=99_000.0)
    failed = _answer("silence", error="answer 2: TimeoutError", last_word_ms=0.0)
    candidate = CandidateRun(1, glass_ms=glass, results=len(glass),
                             answers=[done, silence, late, failed])  # fmt: skip
    return VariantRun(buffer, [candidate], 60.0, 1.0, 2.0)


def test_the_table_has_each_figure_per_buffer_and_the_baseline_ratio() -> None:
    marker = _variant("marker", [10.0, 20.0, 30.0], done_s=0.5)
    stock = _variant("stock", [70.0, 80.0, 90.0], done_s=0.5)
    table = room.room_table([marker, stock])
    assert table[0].startswith("| what the candidate waits for | marker: p50 / p95 (n) |")
    assert table[0].endswith("| p50 stock ÷ marker |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert "| 20 / 29 (3) | 80 / 89 (3) | 4.0× |" in rows["glass-to-emotion, ms"]
    # the late and the failed answers are left out; the others counted once each
    assert "| 0.50 / 0.50 (1) |" in rows["Done → transcript complete, s"]
    assert "| 0.90 / 0.90 (1) |" in rows["last word → transcript complete (Done), s"]
    assert "| 5.10 / 5.10 (1) |" in rows["last word → transcript complete (silence rule), s"]
    assert "| 0.10 / 0.10 (1) |" in rows["turn end → transcript complete (silence rule), s"]
    assert "| – | – | – |" in rows["question shown → spoken, s"]  # never spoken
    report = room.render_report(
        [marker, stock],
        {"machine": "m", "candidates": 1, "fps": 15.0, "language": "en", "answers": 2,
         "ends": ["done", "silence"], "whisper": "base", "llm": "offline engine",
         "silence_end_s": 5.0},
    )  # fmt: skip
    assert "- marker: 60 s, load average 1.0 → 2.0, 3 emotion results, 4 answers (1 late, " in (
        report
    )
    assert "1 failed: answer 2: TimeoutError)" in report


def test_each_baseline_has_its_ratio_column() -> None:
    marker = _variant("marker", [10.0], done_s=0.5)
    nopause = _variant("nopause", [10.0], done_s=1.5)
    stock = _variant("stock", [40.0], done_s=0.5)
    table = room.room_table([marker, stock, nopause])
    assert table[0].endswith("| p50 stock ÷ marker | p50 nopause ÷ marker |")
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table[2:]}
    assert rows["glass-to-emotion, ms"].endswith("| 4.0× | 1.0× |")
    assert rows["Done → transcript complete, s"].endswith("| 1.0× | 3.0× |")
    # without marker there is nothing to compare with
    assert "÷" not in room.room_table([stock, nopause])[0]


def test_one_buffer_has_no_ratio_column() -> None:
    table = room.room_table([_variant("running", [10.0], done_s=1.0)])
    assert "÷" not in table[0] and table[1].count("---") == 2


def test_no_voice_is_said_not_hidden() -> None:
    variant = _variant("marker", [10.0], done_s=1.0)
    variant.candidates[0].answers[0].speech_error = "synthesis-failed"
    assert "synthesis-failed" in room.speech_note([variant])
    variant.candidates[0].answers[0].spoken_ms = 50.0
    assert room.speech_note([variant]) == ""


class _FakePage:
    """What `_GlassReader` reads: the page's count and its last ≤ 1000 latencies."""

    def __init__(self) -> None:
        self.all: list[float] = []

    def push(self, *values: float) -> None:
        self.all += values

    async def evaluate(self, expression: str):
        assert "glassCount" in expression
        kept = self.all[-1000:]
        return [len(self.all), kept]


async def test_the_glass_reader_copies_each_latency_once() -> None:
    page, reader = _FakePage(), room._GlassReader()
    page.push(1.0, 2.0)
    await reader.read(page)
    await reader.read(page)  # nothing new
    page.push(3.0)
    await reader.read(page)
    assert reader.values == [1.0, 2.0, 3.0]


def test_bad_arguments_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="language"):
        room.run_room_bench(language="fr")
    with pytest.raises(ValueError, match="end modes"):
        room.run_room_bench(ends=["wait"])
    with pytest.raises(ValueError, match="variants: marker, stock, nopause"):
        room.run_room_bench(buffers=["fast"])
    with pytest.raises(ValueError, match="done after"):
        room.run_room_bench(done_after_s=5.0)  # the silence rule would end it first


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_one_candidate_against_intervue_up(tmp_path, models_dir, monkeypatch) -> None:
    """The whole bench, small: `intervue up` (the gateway's buffer), one Chromium, two
    answers, one ended by Done and one by the silence rule; every figure but "spoken"
    (headless Chromium has no voice) is measured, and the JSON holds the raw times."""
    monkeypatch.setenv("INTERVUE_MODELS_DIR", str(models_dir))
    report, data = await room.run_room_bench_async(
        candidates=1,
        answers=2,
        buffers=["marker"],
        whisper="tiny.en",
        workdir=tmp_path,
    )
    print("\n" + report)
    (variant,) = data["variants"]
    (candidate,) = variant["candidates"]
    assert candidate["error"] is None, candidate
    answers = candidate["answers"]
    assert [a["end"] for a in answers] == ["done", "silence"]
    assert [a["reason"] for a in answers] == ["done", "silence"], answers
    for answer in answers:
        assert answer["error"] is None and not answer["late"], answer
        assert answer["answered_ms"] and answer["evaluated_ms"], answer
    summary = variant["summary"]
    assert summary["glass-to-emotion"]["n"] > 20
    for figure in (
        "Done → transcript complete",
        "Done → evaluation shown",
        "last word → transcript complete (silence rule)",
        "turn end → transcript complete (silence rule)",
    ):
        assert summary[figure]["n"] == 1, figure
    assert "| glass-to-emotion, ms | " in report
    json.dumps(data)  # all of it serialisable


def test_done_to_transcript_splits_into_its_stages() -> None:
    answer = _answer(
        "done", done_ms=1000.0, caption_ms=2000.0, caption_whisper_ms=700.0, answered_ms=2100.0
    )
    assert answer.stages_s() == pytest.approx((0.3, 0.7, 0.1))
    # the last part was transcribed before Done: nothing of it is Done's wait
    answer.caption_ms = 900.0
    assert answer.stages_s() is None


def test_the_speech_workers_counts_come_from_their_stop_lines() -> None:
    log_text = (
        "[speech] 00:01 INFO speech worker speech-1 pulling ...\n"
        "[speech] 00:09 INFO speech worker speech-1 stopped: received 9, transcribed 6, "
        "speculated 4, speculation_skipped 1, speculation_reused 3\n"
        "[speech] 00:12 INFO speech worker speech-1 stopped: received 1, speculated 1\n"
    )
    counts = room.speech_worker_counts(log_text)
    assert counts == {
        "received": 10,
        "transcribed": 6,
        "speculated": 5,
        "speculation_skipped": 1,
        "speculation_reused": 3,
    }
    assert room.snapshot_note(counts) == (
        "; snapshots at pauses: 5 transcribed, 3 used, 2 stale, 1 skipped"
    )
    assert room.snapshot_note({"received": 3}) == ""  # snapshots off (nopause)
