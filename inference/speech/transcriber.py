"""Whisper (faster-whisper / CTranslate2) on one utterance at a time.

The audio arrives already cut by the gateway's VAD, so Whisper's own VAD filter is off, and
each utterance is decoded on its own (``condition_on_previous_text=False``: a hallucination
cannot leak into the next one). Word timestamps are on: the speaking metrics need them.
`Transcriber.transcribe` is blocking and CPU-bound: the worker runs it in a thread pool.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inference.speech import hallucination
from inference.speech.models import is_multilingual, resolve_model
from inference.speech.token_text import TokenText, without_partial_characters

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000


class TranscriptionError(RuntimeError):
    """Whisper failed on an utterance (retryable: another attempt or worker may succeed)."""

    retryable = True


class BadAudioError(ValueError):
    """The utterance audio itself is unusable (never retryable)."""

    retryable = False


@dataclass
class WordTiming:
    """One recognised word."""

    #: The word as Whisper wrote it, without its leading space (punctuation kept).
    text: str
    #: Start and end in seconds from the start of the utterance audio.
    start: float
    end: float
    #: Whisper's probability of the word (0..1).
    probability: float


@dataclass
class TranscriptionResult:
    """What Whisper made of one utterance."""

    #: The transcript after the hallucination guard; "" when dropped.
    text: str
    #: Language code Whisper used (the requested one, or the detected one on auto).
    language: str
    #: Words with timings (only those of the kept segments); empty when dropped.
    words: list[WordTiming] = field(default_factory=list)
    #: Length of the audio in seconds.
    duration_s: float = 0.0
    #: Mean token log-probability over the kept segments (weighted by their length);
    #: closer to 0 is more confident. NaN when Whisper was not run.
    avg_logprob: float = float("nan")
    #: Highest probability Whisper gave to "no speech here" among the segments (0..1);
    #: NaN when Whisper was not run.
    no_speech_prob: float = float("nan")
    #: Why nothing is to be published ("silence", "no_speech", "known_hallucination",
    #: "repetition", "empty"), or None when `text` is a transcript.
    dropped_reason: str | None = None
    #: Detection confidence when the language was detected (1.0 when it was given).
    language_probability: float = 1.0
    #: Seconds spent in Whisper (0 when skipped), and the model that ran.
    compute_s: float = 0.0
    model: str = ""
    #: Loudness of the audio (90th percentile of 30 ms frame levels, dBFS).
    loudness_dbfs: float = float("-inf")

    @property
    def dropped(self) -> bool:
        return self.dropped_reason is not None


class Transcriber:
    """A loaded Whisper model with this product's decoding options.

    `model` is ``tiny.en`` / ``base`` (offline, prepared into `models_dir`), a directory
    holding a CTranslate2 Whisper model, or any faster-whisper model name (downloaded by
    faster-whisper when online). `language` None means detect per utterance; an English-only
    model always decodes English."""

    def __init__(
        self,
        model: str = "base",
        *,
        models_dir: Path | str | None = None,
        device: str = "cpu",
        compute_type: str = "int8",
        beam_size: int = 1,
        language: str | None = None,
        cpu_threads: int = 0,
        num_workers: int = 1,
        # Greedy only by default: Whisper's fallback to higher temperatures re-decodes an
        # utterance up to 3× when a pass looks poor, which on this CPU tripled Korean
        # end-of-answer → transcript latency (p50 4.1 s → 0.84 s) without better text.
        temperatures: tuple[float, ...] = (0.0,),
        max_tokens_per_s: float = 12.0,
        guard: hallucination.GuardSettings | None = None,
    ) -> None:
        from faster_whisper import WhisperModel

        if beam_size < 1:
            raise ValueError("beam_size must be >= 1")
        self.model_name = model
        self.model_path = resolve_model(model, models_dir)
        self.english_only = is_multilingual(model) is False or model.endswith(".en")
        self.language = language or None
        if self.english_only and self.language not in (None, "en"):
            raise ValueError(
                f"Whisper {model} is English-only; language {self.language!r} needs a "
                "multilingual model such as base"
            )
        self.beam_size = beam_size
        self.temperatures = tuple(temperatures) or (0.0,)
        self.max_tokens_per_s = max_tokens_per_s
        self.guard = guard or hallucination.GuardSettings()
        start = time.perf_counter()
        self._model = WhisperModel(
            self.model_path,
            device=device,
            compute_type=compute_type,
            cpu_threads=cpu_threads,
            # >1 lets that many threads transcribe at once (the worker's concurrency)
            num_workers=num_workers,
        )
        self._token_text = TokenText(self._model.hf_tokenizer)
        log.info(
            "loaded Whisper %s (%s, %s) in %.2f s",
            model, device, compute_type, time.perf_counter() - start,
        )  # fmt: skip

    def transcribe(
        self, pcm_int16: np.ndarray | bytes, language: str | None = None
    ) -> TranscriptionResult:
        """Transcribe one utterance of 16 kHz mono int16 samples (array or raw bytes)."""
        pcm = self._as_samples(pcm_int16)
        duration = pcm.size / SAMPLE_RATE
        lang = language or self.language
        if self.english_only:
            lang = "en"
        level = hallucination.loudness_dbfs(pcm)
        if level < self.guard.silence_dbfs:
            return TranscriptionResult(
                text="", language=lang or "", duration_s=duration, dropped_reason="silence",
                model=self.model_name, loudness_dbfs=level,
            )  # fmt: skip
        audio = pcm.astype(np.float32) / 32768.0
        start = time.perf_counter()
        try:
            segments_iter, info = self._model.transcribe(
                audio,
                language=lang,
                beam_size=self.beam_size,
                temperature=list(self.temperatures),
                word_timestamps=True,
                vad_filter=False,
                condition_on_previous_text=False,
                no_speech_threshold=self.guard.no_speech_threshold,
                log_prob_threshold=self.guard.logprob_threshold,
                max_new_tokens=self._token_budget(duration),
            )
            segments = list(segments_iter)
        except (RuntimeError, ValueError, IndexError) as exc:
            raise TranscriptionError(f"Whisper failed on {duration:.2f} s of audio: {exc}") from exc
        compute_s = time.perf_counter() - start
        # faster-whisper decodes each segment's tokens alone: a character split by a
        # segment boundary or by the token budget would show as U+FFFD (see token_text).
        decoded = self._token_text.segment_texts([(s.seek, s.tokens) for s in segments])
        if decoded.dropped_bytes:
            log.debug(
                "dropped %d bytes of incomplete characters (a decode cut by the token budget)",
                decoded.dropped_bytes,
            )
        scores = [
            hallucination.SegmentScore(
                text,
                float(s.avg_logprob),
                float(s.no_speech_prob),
                float(np.mean([w.probability for w in s.words])) if s.words else 1.0,
            )
            for s, text in zip(segments, decoded.texts, strict=True)
        ]
        verdict = hallucination.judge(scores, self.guard)
        kept = [segments[i] for i in verdict.kept_segments]
        result = TranscriptionResult(
            text=verdict.text,
            language=info.language or (lang or ""),
            duration_s=duration,
            avg_logprob=_weighted_logprob(kept) if kept else float("nan"),
            no_speech_prob=max((float(s.no_speech_prob) for s in segments), default=float("nan")),
            dropped_reason=verdict.dropped_reason,
            language_probability=float(info.language_probability or 0.0) if not lang else 1.0,
            compute_s=compute_s,
            model=self.model_name,
            loudness_dbfs=level,
        )
        if verdict.dropped_reason is None:
            result.words = [
                WordTiming(
                    text=word,
                    start=round(float(w.start), 3),
                    end=round(float(w.end), 3),
                    probability=round(float(w.probability), 4),
                )
                for s in kept
                for w in (s.words or [])
                if (word := without_partial_characters(w.word).strip())
            ]
        else:
            log.debug(
                "dropped %.2f s utterance (%s): %r",
                duration, verdict.dropped_reason, " ".join(decoded.texts),
            )  # fmt: skip
        return result

    def _token_budget(self, duration_s: float) -> int | None:
        """`max_new_tokens` for faster-whisper: a hallucination loop on noise would
        otherwise decode the full window, several times over with temperature fallback.

        What the decoder is granted is about half of it: CTranslate2 stops a Whisper
        decode at ``min(total_max_length / 2, total_max_length - start_step)`` tokens,
        total being prompt + `max_new_tokens` (OpenNMT/CTranslate2#1856), so 12 tokens/s
        asked for is ~6 tokens/s + 9 granted. Fast Korean (rarer syllables take two or
        three byte-level tokens) reaches that; faster-whisper then goes on with a new
        window from the last word it aligned, and `TokenText` keeps the syllable the cut
        split from showing as "�". Asking for twice as much, to be granted the full
        12 tokens/s, let a -40 dBFS hiss hallucination through the guard
        (test_korean_smoke_with_base): the guard would need retuning first."""
        if self.max_tokens_per_s <= 0:
            return None
        return int(min(30.0, duration_s) * self.max_tokens_per_s) + 16

    @staticmethod
    def _as_samples(pcm: np.ndarray | bytes) -> np.ndarray:
        if isinstance(pcm, bytes | bytearray | memoryview):
            if len(pcm) % 2:
                raise BadAudioError(f"odd number of PCM bytes ({len(pcm)}): not s16 samples")
            return np.frombuffer(pcm, "<i2")
        x = np.asarray(pcm)
        if x.dtype != np.int16 or x.ndim != 1:
            raise BadAudioError(f"expected 1-D int16 samples, got {x.dtype} {x.shape}")
        return x


def _weighted_logprob(segments: list) -> float:
    total = sum(max(1, len(s.tokens)) for s in segments)
    return float(sum(s.avg_logprob * max(1, len(s.tokens)) for s in segments) / total)
