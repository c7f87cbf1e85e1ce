"""`intervue bench speech`: end of speech → transcript latency and real-time factor.

Synthesises interview answers of about 3 to 20 s with espeak-ng (English for ``tiny.en``,
English and Korean for ``base``), then for each answer, in one process on this machine:

1. pushes the answer plus trailing silence through the gateway's `VadSegmenter` in 20 ms
   chunks and notes, in stream time, how long after the end of the speech the utterance is
   cut (the end-of-utterance silence the VAD waits for, minus its padding);
2. transcribes the utterance the VAD cut with `Transcriber` (what the speech worker does)
   and times it on the wall clock.

"end of speech → transcript" is (1) + (2); the bus hops (two JetStream publishes, a few ms
on one machine) are not included. RTF is Whisper time over utterance length. The error
rate compares with the text that was synthesised: word error rate for English, character
error rate over Hangul for Korean (espeak-ng's Korean voice is hard to understand even
for people, so the Korean figure says little about real speakers).
"""

from __future__ import annotations

import logging
import platform
import re
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from deploy.bench.tables import machine, p50_p95, render
from deploy.fake_media import espeak_samples
from stream.vad import SpeechEnded, VadSegmenter, VadSettings

log = logging.getLogger(__name__)

SR = 16_000

EN_SENTENCES = (
    "Yes, I use python every day.",
    "I have been working as a backend engineer for about two years.",
    "Most of my work is in python, with a postgres database behind it.",
    "In my last project I redesigned the data pipeline for our recommendation service.",
    "The hardest part was moving the old batch jobs to a streaming system without downtime.",
    "We measured every step, and the latency dropped from minutes to a few seconds.",
    "I also mentored two junior developers and reviewed most of the pull requests.",
    "When something breaks in production, I start from the metrics and the logs.",
    "I would like to grow into a role where I design systems end to end.",
)
KO_SENTENCES = (
    "네, 파이썬을 매일 씁니다.",
    "안녕하세요 저는 이년 차 백엔드 개발자입니다.",
    "주로 파이썬과 데이터베이스를 사용해서 서비스를 만들었습니다.",
    "지난 프로젝트에서는 추천 시스템의 데이터 파이프라인을 다시 설계했습니다.",
    "가장 어려웠던 점은 서비스를 멈추지 않고 시스템을 옮기는 것이었습니다.",
    "그 결과 처리 시간이 몇 분에서 몇 초로 줄었습니다.",
    "앞으로는 시스템 전체를 설계하는 개발자로 성장하고 싶습니다.",
)
DEFAULT_TARGETS_S = (4.0, 6.0, 9.0, 12.0, 16.0, 20.0)


@dataclass
class Clip:
    language: str
    text: str
    pcm: np.ndarray  # 16 kHz mono int16, speech only (no lead or trail padding)

    @property
    def seconds(self) -> float:
        return self.pcm.size / SR


def _trim(pcm: np.ndarray, threshold: int = 300) -> np.ndarray:
    loud = np.flatnonzero(np.abs(pcm.astype(np.int32)) > threshold)
    return pcm[loud[0] : loud[-1] + 1] if loud.size else pcm


def synth_answers(language: str, targets_s: tuple[float, ...] = DEFAULT_TARGETS_S) -> list[Clip]:
    """One answer per target length: sentences joined with 0.4 s pauses until long enough."""
    sentences, voice = (KO_SENTENCES, "ko") if language == "ko" else (EN_SENTENCES, "en-us")
    gap = np.zeros(int(0.4 * SR), np.int16)
    audio = [_trim(espeak_samples(s, voice)) for s in sentences]
    clips = []
    for k, target in enumerate(targets_s):
        parts, texts, total = [], [], 0.0
        # greedy fit from a different first sentence each time: within ~1 s of the target
        for j in [(k + 1 + n) % len(sentences) for n in range(4 * len(sentences))]:
            seconds = (audio[j].size + gap.size) / SR
            if total + seconds <= target + 1.0 or not parts:
                parts += [audio[j], gap]
                texts.append(sentences[j])
                total += seconds
            if total >= target - 1.0:
                break
        clips.append(Clip(language, " ".join(texts), np.concatenate(parts[:-1])))
    return clips


def _edit_distance(a: list[str], b: list[str]) -> int:
    prev = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        cur = [i]
        for j, y in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (x != y)))
        prev = cur
    return prev[-1]


def error_rate(reference: str, hypothesis: str, language: str) -> float:
    """WER (English) or Hangul CER (Korean) of `hypothesis` against `reference`."""
    if language == "ko":
        ref = re.findall(r"[\uac00-\ud7a3]", reference)
        hyp = re.findall(r"[\uac00-\ud7a3]", hypothesis)
    else:
        ref = re.findall(r"[a-z0-9']+", reference.lower())
        hyp = re.findall(r"[a-z0-9']+", hypothesis.lower())
    return _edit_distance(ref, hyp) / max(1, len(ref))


@dataclass
class Measurement:
    seconds: float
    vad_delay_s: float
    transcribe_s: float
    error: float
    #: From the VAD's cut of the final part to the whole answer transcribed (earlier
    #: parts are transcribed while the candidate is still speaking).
    done_after_cut_s: float = 0.0
    parts: int = 1

    @property
    def latency_s(self) -> float:
        """End of speech → the answer's transcript: the VAD's wait plus what is left to
        transcribe after the cut."""
        return self.vad_delay_s + self.done_after_cut_s

    @property
    def rtf(self) -> float:
        return self.transcribe_s / self.seconds


def measure(transcriber, clip: Clip, vad: VadSettings) -> Measurement:
    lead, tail = np.zeros(SR // 2, np.int16), np.zeros(2 * SR, np.int16)
    stream = np.concatenate([lead, clip.pcm, tail])
    speech_end_ms = (lead.size + clip.pcm.size) * 1000 / SR
    seg = VadSegmenter(vad, id_prefix="bench")
    parts, cut_ms = [], None
    for i in range(0, stream.size, 320):
        for event in seg.push(stream[i : i + 320]):
            if isinstance(event, SpeechEnded):
                parts.append(event.utterance)
                if event.utterance.final and cut_ms is None:
                    cut_ms = (i + 320) * 1000 / SR
    parts += [e.utterance for e in seg.flush() if isinstance(e, SpeechEnded)]
    if not parts or cut_ms is None:
        raise RuntimeError(f"the VAD found no complete utterance in a {clip.seconds:.1f} s clip")
    # The room passes the candidate's chosen language, so no detection pass is spent.
    language = clip.language
    texts, spent = [], 0.0
    # One worker's timeline in stream time: a part can start when it is cut (a non-final
    # part while the candidate still speaks) and when the previous part is done. The
    # answer's transcript is complete when the final part is.
    worker_free_ms = 0.0
    for part in parts:
        start = time.perf_counter()
        result = transcriber.transcribe(part.pcm, language)
        took = time.perf_counter() - start
        spent += took
        texts.append(result.text)
        available_ms = cut_ms if part.final else part.end_ms
        worker_free_ms = max(worker_free_ms, available_ms) + took * 1000
    seconds = sum(p.pcm.size for p in parts) / SR
    return Measurement(
        seconds=seconds,
        vad_delay_s=max(0.0, cut_ms - speech_end_ms) / 1000,
        transcribe_s=spent,
        error=error_rate(clip.text, " ".join(texts), clip.language),
        done_after_cut_s=(worker_free_ms - cut_ms) / 1000,
        parts=len(parts),
    )


def run_speech_bench(
    models: tuple[str, ...] = ("tiny.en", "base"),
    targets_s: tuple[float, ...] = DEFAULT_TARGETS_S,
    repeats: int = 1,
    models_dir: Path | None = None,
    beam_size: int = 1,
    compute_type: str = "int8",
    cpu_threads: int = 0,
    vad: VadSettings | None = None,
) -> str:
    """Run the benchmark and return the Markdown report (p50/p95 latency and RTF per
    model and language)."""
    from inference.speech.models import is_multilingual, prepare_whisper_models
    from inference.speech.transcriber import Transcriber

    vad = vad or VadSettings()
    offline = [m for m in models if m in ("tiny.en", "base")]
    if offline:
        prepare_whisper_models(models_dir, names=tuple(offline))
    answers = {lang: synth_answers(lang, targets_s) for lang in ("en", "ko")}
    rows = []
    for model in models:
        transcriber = Transcriber(model, models_dir=models_dir, beam_size=beam_size,
                                  compute_type=compute_type, cpu_threads=cpu_threads)  # fmt: skip
        languages = ["en"] if is_multilingual(model) is False else ["en", "ko"]
        transcriber.transcribe(answers["en"][0].pcm)  # warm-up
        for lang in languages:
            results = [
                measure(transcriber, clip, vad) for _ in range(repeats) for clip in answers[lang]
            ]
            rows.append((model, lang, results))
            log.info("benchmarked %s on %d %s answers", model, len(results), lang)

    lines = [
        "### Speech: end of speech → transcript, per answer",
        "",
        f"Machine: {machine()}, "
        f"Python {platform.python_version()}; Whisper {compute_type}, beam {beam_size}, "
        f"cpu_threads {cpu_threads or 'default'}. Answers: espeak-ng at 150 wpm, "
        f"{min(targets_s):g}–{max(targets_s):g} s, x{repeats}. VAD: end silence "
        f"{vad.end_silence_ms} ms, end padding {vad.end_padding_ms} ms, parts cut every "
        f"≤ {vad.max_utterance_ms / 1000:g} s and transcribed while the candidate speaks "
        "(one worker). Whisper columns: all parts of an answer together.",
        "",
        "| model | lang | answers | audio s | parts | VAD wait s | Whisper p50 s "
        "| Whisper p95 s | cut→transcript p50 s | cut→transcript p95 s "
        "| end→transcript p50 s | end→transcript p95 s | RTF p50 | RTF p95 | WER/CER |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for model, lang, results in rows:
        secs = [r.seconds for r in results]
        whisper = [r.transcribe_s for r in results]
        latency = [r.latency_s for r in results]
        rtf = [r.rtf for r in results]
        after_cut = [r.done_after_cut_s for r in results]
        lines.append(
            f"| {model} | {lang} | {len(results)} | {min(secs):.1f}–{max(secs):.1f} "
            f"| {min(r.parts for r in results)}–{max(r.parts for r in results)} "
            f"| {statistics.fmean(r.vad_delay_s for r in results):.2f} "
            f"| {p50_p95(whisper)} "
            f"| {p50_p95(after_cut)} "
            f"| {p50_p95(latency)} "
            f"| {p50_p95(rtf)} "
            f"| {statistics.fmean(r.error for r in results):.1%} |"
        )
    lines += [
        "",
        "Latency excludes the two JetStream hops (gateway → work queue → worker → events). "
        "WER/CER is against the synthesised text (espeak-ng's Korean voice is hard to "
        "recognise; real speakers fare better).",
    ]
    return render(lines)
