"""Speaking metrics and the hallucination guard on fixed inputs."""

from __future__ import annotations

import numpy as np
import pytest

from inference.speech import hallucination as h
from inference.speech.metrics import pauses, speaking_metrics
from stream.contract import Word
from stream.fillers import find_fillers


def timed(*items: tuple[str, float, float]) -> list[Word]:
    return [Word(text, start, end) for text, start, end in items]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Um, I worked on, uh, the database layer.", ["um", "uh"]),
        ("I like Python and I like databases.", []),
        ("I was, like, really into it.", ["like"]),
        ("Like, I think so.", ["like"]),
        ("You know, it was hard, you know.", ["you know", "you know"]),
        ("Do you know the answer?", []),
        ("I mean, the cache was the problem.", ["i mean"]),
        ("What I mean is the cache.", []),
        ("What kind of database did you use?", []),
        ("It was kind of hard, and I sort of knew it.", ["kind of", "sort of"]),
        ("The umbrella and the error were erm fine.", ["erm"]),
        ("Hmm. Well, basically, it worked.", ["hmm", "basically"]),
        ("음, 저는 어 백엔드 개발자입니다.", ["음", "어"]),
        ("그 사람이 저기 있습니다.", []),
        ("그, 저는, 뭐, 데이터 엔지니어입니다.", ["그", "뭐"]),
        ("그러니까, 이제 저는 그 그 파이썬을 합니다.", ["그러니까", "그"]),
        ("뭐랄까 이제 좀 어려웠습니다.", ["뭐랄까"]),
        ("", []),
    ],
)
def test_fillers_only_as_standalone_words(text: str, expected: list[str]) -> None:
    assert find_fillers(text) == expected


def test_pauses_from_word_timings() -> None:
    words = timed(("I", 0.0, 0.2), ("worked", 0.25, 0.6), ("on", 1.4, 1.5),
                  ("search", 1.55, 2.0), ("engines.", 2.5, 3.0))  # fmt: skip
    count, longest, total = pauses(words)
    assert count == 2  # 0.8 s and 0.5 s
    assert longest == pytest.approx(0.8)
    assert total == pytest.approx(1.3)
    assert pauses(words, threshold_s=0.6)[0] == 1
    assert pauses([]) == (0, 0.0, 0.0)
    # tuples are accepted too, and order does not matter
    assert pauses([("b", 2.0, 2.5), ("a", 0.0, 1.0)])[0] == 1


def test_english_rate_and_fillers() -> None:
    text = "Um, I built a search engine in Python, you know, for logs."
    words = timed(*[(w, i * 0.5, i * 0.5 + 0.4) for i, w in enumerate(text.split())])
    m = speaking_metrics(words, text, "en", duration_s=6.0)
    assert m.word_count == 12
    assert m.speech_s == pytest.approx(11 * 0.5 + 0.4)
    assert m.words_per_minute == pytest.approx(12 / 5.9 * 60, abs=0.1)
    assert m.rate_basis == "words"
    assert m.filler_words == ["um", "you know"]
    assert m.filler_count == 2
    assert m.filler_rate == pytest.approx(2 / 12, abs=1e-4)
    assert m.hangul_syllables == 0 and m.syllables_per_second == 0.0
    assert m.pause_count == 0 and m.longest_pause_s == pytest.approx(0.1)
    assert m.duration_s == 6.0 and m.language == "en"


def test_korean_syllable_rate() -> None:
    text = "안녕하세요, 저는 음 개발자입니다."
    # 5 + 2 + 1 + 6 = 14 Hangul syllables over a 2.6 s speaking span
    words = timed(("안녕하세요,", 0.0, 0.9), ("저는", 1.0, 1.3), ("음", 1.9, 2.0),
                  ("개발자입니다.", 2.0, 2.6))  # fmt: skip
    m = speaking_metrics(words, text, "ko", duration_s=3.2)
    assert m.hangul_syllables == 14
    assert m.syllables_per_second == pytest.approx(14 / 2.6, abs=0.01)
    assert m.rate_basis == "syllables"
    assert m.word_count == 4
    assert m.filler_words == ["음"]
    assert m.pause_count == 1 and m.longest_pause_s == pytest.approx(0.6)


def test_without_word_timings_the_audio_length_is_used() -> None:
    m = speaking_metrics([], "three short words", "en", duration_s=2.0)
    assert m.speech_s == 0.0
    assert m.words_per_minute == pytest.approx(90.0)
    assert m.pause_count == 0 and m.longest_pause_s == 0.0


def test_metrics_fit_the_contract() -> None:
    import msgspec

    from stream.contract import Transcript, decode, encode

    m = speaking_metrics(timed(("Um,", 0.0, 0.3), ("hello.", 0.4, 0.8)), "Um, hello.", "en", 1.0)
    t = Transcript(session="s", utterance_id="u", text="Um, hello.", language="en",
                   start_ms=0, end_ms=1000, cut_ms=0, done_ms=1, metrics=m)  # fmt: skip
    back = decode(encode(t), Transcript)
    assert back.metrics == m and back.metrics.filler_words == ["um"]
    # a transcript stored by an older build (metrics as a plain map, no rate_s) still decodes
    old = msgspec.to_builtins(m)
    del old["rate_s"]
    stored = msgspec.msgpack.encode(
        {**msgspec.to_builtins(t), "type": "transcript", "metrics": old}
    )
    assert decode(stored, Transcript).metrics == m


# -- the hallucination guard -------------------------------------------------------------


def seg(text: str, logprob: float = -0.3, no_speech: float = 0.05) -> h.SegmentScore:
    return h.SegmentScore(text, logprob, no_speech)


@pytest.mark.parametrize(
    "text",
    [
        "시청해주셔서 감사합니다.",
        "구독과 좋아요 부탁드립니다!",
        "MBC 뉴스 이덕영입니다.",
        " Thank you for watching!",
        "Thanks for watching!",
        "Subtitles by the Amara.org community",
        "구독과 좋아요. 시청해 주셔서 감사합니다",
    ],
)
def test_known_caption_phrases_are_dropped(text: str) -> None:
    assert h.judge([seg(text)]).dropped_reason == "known_hallucination"


def test_weak_phrases_need_weak_evidence() -> None:
    assert h.judge([seg(" you", no_speech=0.5)]).dropped_reason == "known_hallucination"
    assert h.judge([seg("감사합니다.", no_speech=0.4)]).dropped_reason == "known_hallucination"
    # a clear "Thank you." is an honest answer
    verdict = h.judge([seg("Thank you.", no_speech=0.01)])
    assert verdict.dropped_reason is None and verdict.text == "Thank you."


def test_phrases_after_real_speech_are_stripped() -> None:
    verdict = h.judge([seg("저는 백엔드 개발자입니다. 시청해주셔서 감사합니다.")])
    assert verdict.dropped_reason is None
    assert verdict.text == "저는 백엔드 개발자입니다"
    assert verdict.stripped


def test_repetition_loops() -> None:
    assert h.judge([seg("the the the the the the")]).dropped_reason == "repetition"
    assert h.judge([seg("타이틀, 타이틀, 타이틀, 타이틀, 타이틀")]).dropped_reason == "repetition"
    assert h.judge([seg("ㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋㅋ")]).dropped_reason == "repetition"
    real = "I used Python for the backend and Postgres for storage."
    verdict = h.judge([seg(real + " Thank you. Thank you. Thank you. Thank you.")])
    assert verdict.dropped_reason is None
    assert verdict.text == real + " Thank you."
    # two repeats are ordinary speech
    assert h.judge([seg("very very good")]).text == "very very good"


def test_whisper_silence_signature() -> None:
    assert h.judge([]).dropped_reason == "no_speech"
    assert h.judge([seg("Hello there.", -1.4, 0.8)]).dropped_reason == "no_speech"
    # only the silent segment goes
    verdict = h.judge([seg("Hello there.", -1.4, 0.8), seg("I am Kim.", -0.2, 0.1)])
    assert verdict.text == "I am Kim." and verdict.kept_segments == (1,)
    assert h.judge([seg(" ... ")]).dropped_reason == "empty"


def test_loudness_gate() -> None:
    assert h.is_near_silent(np.zeros(16_000, np.int16))
    assert h.is_near_silent(np.zeros(0, np.int16))
    hiss = (np.random.default_rng(0).standard_normal(16_000) * 20).astype(np.int16)
    assert h.is_near_silent(hiss)  # about -64 dBFS
    tone = (np.sin(np.arange(16_000) / 5) * 3000).astype(np.int16)
    assert not h.is_near_silent(tone)
