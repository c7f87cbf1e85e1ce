"""Real Whisper (the offline registry models) on espeak-ng speech, silence and noise."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from deploy.fake_media import make_speech_wav, read_wav
from inference.speech import models as whisper_models
from inference.speech.metrics import speaking_metrics
from inference.speech.models import (
    STAMP,
    ModelIntegrityError,
    prepare_whisper_models,
    resolve_model,
)
from inference.speech.token_text import TokenText
from inference.speech.transcriber import BadAudioError, Transcriber

SR = 16_000
HANGUL = re.compile(r"[\uac00-\ud7a3]")


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("whisper-models")
    prepare_whisper_models(directory)
    return directory


@pytest.fixture(scope="module")
def tiny(whisper_dir: Path) -> Transcriber:
    return Transcriber("tiny.en", models_dir=whisper_dir, cpu_threads=2)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("whisper-media")


def speech(media: Path, text: str, voice: str = "en-us", rate_wpm: int = 150) -> np.ndarray:
    samples, rate = read_wav(make_speech_wav(media, text, voice=voice, rate_wpm=rate_wpm,
                                             sample_rate=SR, lead_silence=0.3,
                                             trail_silence=0.3))  # fmt: skip
    assert rate == SR
    return samples[:, 0].copy()


def test_tiny_en_recovers_key_words(tiny: Transcriber, media: Path) -> None:
    pcm = speech(media, "I am a software engineer. I build python services on a database.")
    result = tiny.transcribe(pcm)
    assert result.dropped_reason is None, result
    text = result.text.lower()
    for word in ("engineer", "python", "database"):
        assert word in text, result.text
    assert result.language == "en"
    assert result.duration_s == pytest.approx(pcm.size / SR)
    assert result.compute_s > 0 and result.model == "tiny.en"
    assert result.words and all(w.text == w.text.strip() and w.text for w in result.words)
    starts = [w.start for w in result.words]
    assert starts == sorted(starts)
    assert all(0.0 <= w.start <= w.end <= result.duration_s + 0.05 for w in result.words)
    assert result.no_speech_prob < 0.6 and result.avg_logprob > -1.0
    # raw s16 bytes (as they travel on the bus) give the same result
    assert tiny.transcribe(pcm.tobytes()).text == result.text

    m = speaking_metrics(result.words, result.text, result.language, result.duration_s)
    assert m.word_count >= 10
    assert 90 <= m.words_per_minute <= 260, m  # espeak-ng speaks at 150 wpm
    assert m.rate_basis == "words"


def test_silence_and_noise_give_no_transcript(tiny: Transcriber) -> None:
    silence = tiny.transcribe(np.zeros(2 * SR, np.int16))
    assert silence.dropped_reason == "silence" and silence.text == "" and not silence.words
    assert silence.compute_s == 0.0  # Whisper was not even run

    rng = np.random.default_rng(7)
    hiss = (rng.standard_normal(2 * SR) * 20).astype(np.int16)  # about -64 dBFS
    assert tiny.transcribe(hiss).dropped_reason == "silence"

    for level in (300, 3000):  # -40 and -20 dBFS white noise: Whisper runs, nothing comes out
        noise = (rng.standard_normal(3 * SR) * level).astype(np.int16)
        result = tiny.transcribe(noise)
        assert result.dropped_reason is not None, result
        assert result.text == "" and not result.words

    brown = np.cumsum(rng.standard_normal(3 * SR))
    brown = (brown / np.abs(brown).max() * 4000).astype(np.int16)
    assert tiny.transcribe(brown).dropped_reason is not None


def test_bad_audio_is_refused(tiny: Transcriber) -> None:
    with pytest.raises(BadAudioError):
        tiny.transcribe(b"\x00\x01\x02")
    with pytest.raises(BadAudioError):
        tiny.transcribe(np.zeros(100, np.float32))
    assert not BadAudioError("x").retryable


def test_english_only_model_refuses_korean(whisper_dir: Path) -> None:
    with pytest.raises(ValueError, match="English-only"):
        Transcriber("tiny.en", models_dir=whisper_dir, language="ko")


def test_korean_smoke_with_base(whisper_dir: Path, media: Path) -> None:
    base = Transcriber("base", models_dir=whisper_dir, cpu_threads=2)
    pcm = speech(media, "안녕하세요 저는 개발자입니다", voice="ko", rate_wpm=130)
    result = base.transcribe(pcm, language="ko")
    assert result.dropped_reason is None, result
    assert result.language == "ko"
    assert len(HANGUL.findall(result.text)) >= 3, result.text
    m = speaking_metrics(result.words, result.text, "ko", result.duration_s)
    assert m.rate_basis == "syllables" and m.syllables_per_second > 0

    # hiss with the language left to detection: multilingual Whisper guesses a language
    # and writes something; the guard drops it
    noise = (np.random.default_rng(3).standard_normal(3 * SR) * 300).astype(np.int16)
    assert base.transcribe(noise).dropped_reason is not None


def test_a_token_budget_cut_inside_a_syllable_leaves_no_replacement_character(
    whisper_dir: Path, media: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Korean under a tight token budget: the decoder stops in the middle of a syllable's
    bytes (Whisper base writes rarer syllables with two or three byte-level tokens), which
    faster-whisper decoded as "�" into the transcript and the last word."""
    base = Transcriber("base", models_dir=whisper_dir, cpu_threads=2, language="ko")
    pcm = speech(media, "저는 파이썬과 파이토치를 이용해서 딥러닝 모델을 학습시키고 배포하는 "
                 "일을 했습니다.", voice="ko", rate_wpm=220)  # fmt: skip
    duration = pcm.size / SR
    token_text = TokenText(base._model.hf_tokenizer)
    windows: list[list[int]] = []
    generate = base._model.generate_with_fallback

    def record_windows(*args, **kwargs):  # the tokens each 30 s window decoded
        result = generate(*args, **kwargs)
        windows.append(list(result[0].sequences_ids[0]))
        return result

    monkeypatch.setattr(base._model, "generate_with_fallback", record_windows)
    windows_cut_inside_a_syllable = 0
    for extra_tokens in range(7):
        # max_new_tokens 16..22: a few words of this sentence per window
        base.max_tokens_per_s = (extra_tokens + 0.5) / duration
        windows.clear()
        result = base.transcribe(pcm)
        assert "\ufffd" not in result.text, (extra_tokens, result.text)
        assert all("\ufffd" not in w.text and w.text for w in result.words), result.words
        # CTranslate2 grants half of prompt (3) + max_new_tokens (Transcriber._token_budget)
        assert len(windows[0]) <= (base._token_budget(duration) + 3) // 2, windows[0]
        for window in windows:
            try:
                token_text.text_bytes(window).decode("utf-8")
            except UnicodeDecodeError:
                windows_cut_inside_a_syllable += 1
    # this audio and these budgets do cut syllables (else the test proves nothing)
    assert windows_cut_inside_a_syllable > 0


def test_base_is_verified_and_cached(whisper_dir: Path) -> None:
    again = prepare_whisper_models(whisper_dir)
    base = again["models"]["base"]
    assert base["skipped"] and again["models"]["tiny.en"]["skipped"]
    target = Path(base["path"])
    assert target == whisper_dir / "whisper-base"
    stamp = json.loads((target / STAMP).read_text())
    assert stamp["sha256"] == whisper_models.SOURCES["base"].sha256
    assert (target / "model.bin").stat().st_size == whisper_models.SOURCES["base"].size
    assert not (target / "model.bin").is_symlink()  # the concatenation is a real file
    for name in ("config.json", "tokenizer.json", "vocabulary.txt"):
        assert (target / name).is_file()
    assert resolve_model("base", whisper_dir) == str(target)
    assert resolve_model("whisper-tiny.en", whisper_dir) == str(whisper_dir / "whisper-tiny.en")


def test_base_checksum_is_enforced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = prepare_whisper_models(tmp_path, names=("base",))["models"]["base"]
    assert not first["skipped"]
    model_bin = Path(first["path"]) / "model.bin"
    # a damaged copy (wrong size) is noticed by the cheap check and rebuilt
    with model_bin.open("r+b") as f:
        f.truncate(1000)
    rebuilt = prepare_whisper_models(tmp_path, names=("base",))["models"]["base"]
    assert not rebuilt["skipped"]
    assert model_bin.stat().st_size == whisper_models.SOURCES["base"].size

    # parts that do not hash to the recorded sha256 are refused, leaving no debris
    wrong = whisper_models.SOURCES["base"].__class__(
        **{**whisper_models.SOURCES["base"].__dict__, "sha256": "0" * 64}
    )
    monkeypatch.setitem(whisper_models.SOURCES, "base", wrong)
    other = tmp_path / "other"
    with pytest.raises(ModelIntegrityError, match="sha256"):
        prepare_whisper_models(other, names=("base",))
    assert not (other / "whisper-base").exists()
    assert [p.name for p in other.iterdir()] == []


def test_resolve_passes_other_names_through(tmp_path: Path) -> None:
    assert resolve_model("small", tmp_path) == "small"  # faster-whisper would fetch it
    assert resolve_model(str(tmp_path), tmp_path) == str(tmp_path)
    assert not (tmp_path / "whisper-base").exists()
    with pytest.raises(ValueError):
        whisper_models.prepare_whisper_model("large-v3", tmp_path)
