"""`intervue bench room`: what a candidate feels, measured in real headless Chromium
candidates against `intervue up`.

Each candidate is its own Chromium (`deploy.browser`) with a fake camera (the astronaut's
face at the chosen fps, `deploy.fake_media`) and a fake microphone that plays one WAV,
once (no loop): a lead-in, then each answer (espeak-ng sentences with thinking pauses),
each followed by a gap. The page keeps its own clock of what happened (`room.js`:
``mediaAt`` when the camera and microphone opened, which is where the file starts to
play; per card ``askedAt``, ``spokenAt``, ``doneAt``, ``endedAt``, ``answeredAt``,
``evaluatedAt``; ``glass``, the glass-to-emotion latencies). The bench drives the page as
a candidate would: it starts the interview, presses **Done** (Ctrl+Enter) a moment after
an answer's last word or lets the silence end the answer (the interview's rule at the
time, `INTERVUE_TURN_SILENCE_END_S`), and clicks **Next** once the feedback is shown;
then reads the page's clock.

What is reported, each as p50 / p95 over every answer (or result) of every candidate:

* **glass-to-emotion**: the page's receive time of an emotion result minus the frame's
  capture time on the browser's clock (RTCP sender-report mapping; results before the
  first sender report are left out), at the moment the page draws the box;
* **Done → transcript complete**: Done pressed → the card holds the whole transcript
  (the interviewer's ``answered`` step, sent once every part of the answer is
  transcribed); and **Done → evaluation shown**;
* **last word → transcript complete**: from the end of the answer's last word (its place
  in the WAV, on the page's clock from ``mediaAt``) — for Done answers (Done comes
  ``done_after_s`` after the last word: `DONE_AFTER_S` unless told) and for answers the
  silence ended (the silence rule's seconds are part of it: that is what the candidate
  waits);
* **turn end → transcript complete** for silence-ended answers: from the page learning
  that the turn ended;
* **question shown → question spoken**: the card appearing → the browser's speech
  synthesis starting to speak it. The bench gives its headless Chromium a voice of its
  own (a private speech-dispatcher with espeak-ng, `deploy.speech_synthesis`); without
  those packages the column is empty and the report says why.

Every figure is measured once per variant of the stack (`VARIANTS`), each on a fresh
`intervue up`, in the same run: ``marker`` (the gateway's jitter buffer,
`INTERVUE_GATEWAY_JITTER_BUFFER`), ``stock`` (aiortc's, the video baseline) and, when
asked for, ``nopause`` (marker without the transcripts made ahead at pauses,
``INTERVUE_VAD_SPECULATE_AFTER_MS=0``: the speech baseline), with each baseline's ratio
to marker beside it. With ``url`` the bench uses a stack that already runs (one variant,
no baseline).

An answer whose question came after its speech had begun in the WAV is "late": the page
was behind the file (a slow start, a slow evaluation); it is reported and left out.
Everything is bounded by deadlines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import signal
import statistics
import sys
import tempfile
import time
import wave
from collections.abc import AsyncIterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploy.bench.tables import fmt
from deploy.speech_synthesis import PrivateSpeechDispatcher, missing
from stream.stats import percentile

log = logging.getLogger(__name__)

#: The stacks the bench can compare: name → (jitter buffer, environment of its `up`).
VARIANTS: dict[str, tuple[str, dict[str, str]]] = {
    "marker": ("marker", {}),
    "stock": ("stock", {}),
    "nopause": ("marker", {"INTERVUE_VAD_SPECULATE_AFTER_MS": "0"}),
}
#: Baselines, each compared with marker as "p50 baseline ÷ marker".
BASELINES = ("stock", "nopause")
#: Done is pressed this long after the answer's last word by default (a quick person's
#: reaction time; a slower click gives a transcript made at the pause more of a head start).
DONE_AFTER_S = 0.4
#: Silence before the first answer: the page connects and the first question comes.
LEAD_S = 8.0
#: Silence after each answer: the silence rule (5 s by default) can end it, the feedback
#: comes and the bench clicks Next before the next answer starts.
GAP_S = 12.0
#: A sample louder than this (of full scale) is speech, for finding an answer's last word.
SPEECH_LEVEL = 0.02
#: Answers per candidate at most: an interview has three questions.
MAX_ANSWERS = 3
#: The room's answer-end rules as the page tells them apart.
END_MODES = ("done", "silence")

#: Per language: a self-introduction and spoken answers (sentences with pauses).
SCRIPTS: dict[str, dict[str, Any]] = {
    "en": {
        "voice": "en-us",
        "job": "Backend engineer",
        "intro": (
            "I am a backend engineer with three years on a payments team. I moved our "
            "nightly settlement batch from Hadoop to Spark and Airflow, cutting it from six "
            "hours to two, and built a Kafka pipeline for payment events."
        ),
        "answers": [
            [
                "The hardest part was data consistency between the old and new batch.",
                "For two weeks a job compared both outputs every night before we switched.",
            ],
            [
                "I built the Kafka pipeline with idempotent consumers.",
                "Duplicate payment events dropped to zero after the change.",
            ],
            [
                "Our alerts were noisy, so I grouped them by service in Grafana.",
                "Pages at night fell by half within a month.",
            ],
        ],
    },
    "ko": {
        "voice": "ko",
        "job": "백엔드 개발자",
        "intro": (
            "안녕하세요. 저는 3년 차 백엔드 개발자입니다. 결제 서비스 팀에서 Hadoop 기반 배치 "
            "정산을 Spark와 Airflow로 옮겨 야간 정산 시간을 6시간에서 2시간으로 줄였고, Kafka로 "
            "결제 이벤트 파이프라인을 만들었습니다."
        ),
        "answers": [
            [
                "가장 어려웠던 점은 데이터 정합성이었습니다.",
                "두 주 동안 두 배치의 결과를 매일 비교한 뒤에 전환했습니다.",
            ],
            [
                "카프카 파이프라인은 중복 처리를 막도록 설계했습니다.",
                "그 뒤로 중복 결제 이벤트가 사라졌습니다.",
            ],
            [
                "알림이 너무 많아서 서비스별로 묶었습니다.",
                "한 달 만에 야간 호출이 절반으로 줄었습니다.",
            ],
        ],
    },
}


class RoomBenchError(RuntimeError):
    """The bench cannot run (no browser, the stack did not start); the message says why."""


# --------------------------------------------------------------------------- media


@dataclass(frozen=True)
class AnswerClip:
    """Where one answer lies in the interview's WAV, in ms from the file's start."""

    start_ms: float
    last_word_ms: float


@dataclass(frozen=True)
class InterviewMedia:
    video: Path
    audio: Path
    answers: tuple[AnswerClip, ...]
    seconds: float


def _speech_bounds(samples: np.ndarray) -> tuple[int, int]:
    """The first and one-past-last sample louder than `SPEECH_LEVEL`."""
    loud = np.flatnonzero(np.abs(samples.astype(np.int32)) > SPEECH_LEVEL * 32767)
    if not loud.size:
        raise RoomBenchError("espeak-ng wrote a silent clip")
    return int(loud[0]), int(loud[-1]) + 1


def make_interview_media(
    directory: Path, language: str, answers: int, fps: float, *, pause_s: float = 1.5
) -> InterviewMedia:
    """The candidate's camera (Y4M) and microphone (one WAV with every answer, each
    answer's place in it known to the millisecond)."""
    from deploy.fake_media import make_face_y4m, make_speech_wav

    script = SCRIPTS[language]
    if not 1 <= answers <= MAX_ANSWERS:
        raise ValueError(f"answers: 1 to {MAX_ANSWERS}")
    rate = 48_000
    chunks: list[np.ndarray] = [np.zeros(round(LEAD_S * rate), np.int16)]
    position = len(chunks[0])
    clips = []
    with tempfile.TemporaryDirectory(prefix="intervue-room-") as work:
        for sentences in script["answers"][:answers]:
            start = last = None
            for number, sentence in enumerate(sentences):
                path = make_speech_wav(work, sentence, script["voice"], 150, rate)
                with wave.open(str(path), "rb") as clip:
                    samples = np.frombuffer(clip.readframes(clip.getnframes()), np.int16)
                first, end = _speech_bounds(samples)
                start = position + first if start is None else start
                last = position + end
                chunks.append(samples)
                position += len(samples)
                gap = pause_s if number < len(sentences) - 1 else GAP_S
                chunks.append(np.zeros(round(gap * rate), np.int16))
                position += len(chunks[-1])
            clips.append(AnswerClip(start_ms=start * 1000 / rate, last_word_ms=last * 1000 / rate))
    audio = directory / f"room-{language}-{answers}.wav"
    with wave.open(str(audio), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(np.concatenate(chunks).tobytes())
    video = make_face_y4m(directory, seconds=4.0, fps=fps)
    return InterviewMedia(video, audio, tuple(clips), position / rate)


# --------------------------------------------------------------------------- results


@dataclass
class AnswerTiming:
    """One answer as the candidate's page saw it (times: the page's ms clock)."""

    candidate: int
    index: int
    #: How the bench ended it: "done" (pressed) or "silence" (it waited).
    end: str
    #: Why the room says the turn ended ("done", "silence", "time_cap", …).
    reason: str | None = None
    late: bool = False
    error: str | None = None
    last_word_ms: float | None = None
    asked_ms: float | None = None
    spoken_ms: float | None = None
    speech_error: str | None = None
    done_ms: float | None = None
    ended_ms: float | None = None
    answered_ms: float | None = None
    evaluated_ms: float | None = None
    #: The answer's last caption (transcribed part) reaching the page, and its
    #: cut → transcribed time (the speech worker's queue and Whisper).
    caption_ms: float | None = None
    caption_whisper_ms: float | None = None

    def stages_s(self) -> tuple[float, float, float] | None:
        """Done → transcript complete in three stages, for an answer whose last caption
        came after Done: (Done → the last part cut and on the bus, plus the caption's way
        back; the speech worker's queue and Whisper; the caption → the interviewer's
        ``answered`` step on the page)."""
        if None in (self.done_ms, self.caption_ms, self.caption_whisper_ms, self.answered_ms):
            return None
        if self.caption_ms < self.done_ms:  # type: ignore[operator]
            return None  # everything was transcribed before Done
        whisper = self.caption_whisper_ms / 1000.0  # type: ignore[operator]
        to_caption = (self.caption_ms - self.done_ms) / 1000.0  # type: ignore[operator]
        return (
            to_caption - whisper,
            whisper,
            (self.answered_ms - self.caption_ms) / 1000.0,  # type: ignore[operator]
        )

    def span_s(self, start: str, end: str) -> float | None:
        a, b = getattr(self, f"{start}_ms"), getattr(self, f"{end}_ms")
        return (b - a) / 1000.0 if a is not None and b is not None else None


@dataclass
class CandidateRun:
    candidate: int
    glass_ms: list[float] = field(default_factory=list)
    results: int = 0
    answers: list[AnswerTiming] = field(default_factory=list)
    error: str | None = None


@dataclass
class VariantRun:
    """Every candidate of one stack."""

    #: The variant's name (`VARIANTS`; named when only jitter buffers were compared).
    buffer: str
    candidates: list[CandidateRun]
    seconds: float
    load_start: float
    load_end: float
    #: The speech workers' counts when the stack stopped (`speech_worker_counts`), summed
    #: over workers; empty for a running stack (``url``) or when none was logged.
    speech_counts: dict[str, int] = field(default_factory=dict)

    @property
    def answers(self) -> list[AnswerTiming]:
        return [a for c in self.candidates for a in c.answers]

    def usable(self, end: str | None = None) -> list[AnswerTiming]:
        return [
            a
            for a in self.answers
            if not a.late and a.error is None and (end is None or a.end == end)
        ]


#: (label, unit, how a variant gives its values)
METRICS: tuple[tuple[str, str, Any], ...] = (
    ("glass-to-emotion", "ms", lambda v: [x for c in v.candidates for x in c.glass_ms]),
    (
        "Done → transcript complete",
        "s",
        lambda v: [a.span_s("done", "answered") for a in v.usable("done")],
    ),
    (
        "· Done → last part on the bus, and its caption back",
        "s",
        lambda v: [st[0] for a in v.usable("done") if (st := a.stages_s())],
    ),
    (
        "· the last part's queue and Whisper",
        "s",
        lambda v: [st[1] for a in v.usable("done") if (st := a.stages_s())],
    ),
    (
        "· its caption → transcript complete (interviewer)",
        "s",
        lambda v: [st[2] for a in v.usable("done") if (st := a.stages_s())],
    ),
    (
        "Done → evaluation shown",
        "s",
        lambda v: [a.span_s("done", "evaluated") for a in v.usable("done")],
    ),
    (
        "last word → transcript complete (Done)",
        "s",
        lambda v: [a.span_s("last_word", "answered") for a in v.usable("done")],
    ),
    (
        "last word → transcript complete (silence rule)",
        "s",
        lambda v: [a.span_s("last_word", "answered") for a in v.usable("silence")],
    ),
    (
        "turn end → transcript complete (silence rule)",
        "s",
        lambda v: [a.span_s("ended", "answered") for a in v.usable("silence")],
    ),
    (
        "last word → evaluation shown (silence rule)",
        "s",
        lambda v: [a.span_s("last_word", "evaluated") for a in v.usable("silence")],
    ),
    (
        "question shown → spoken",
        "s",
        lambda v: [a.span_s("asked", "spoken") for a in v.usable()],
    ),
)


def metric_values(variant: VariantRun, getter: Any) -> list[float]:
    return [x for x in getter(variant) if x is not None]


def _cell(values: list[float], unit: str) -> str:
    if not values:
        return "–"
    digits = 0 if unit == "ms" else 2
    p50, p95 = percentile(values, 50), percentile(values, 95)
    return f"{fmt(p50, digits)} / {fmt(p95, digits)} ({len(values)})"


def room_table(variants: Sequence[VariantRun]) -> list[str]:
    """The Markdown table: one row per figure, one column per variant, and the ratio of
    each baseline that ran (stock, nopause) to marker when marker ran too."""
    names = [v.buffer for v in variants]
    ratios = [b for b in BASELINES if b in names and "marker" in names]
    head = ["what the candidate waits for", *(f"{n}: p50 / p95 (n)" for n in names)]
    head += [f"p50 {b} ÷ marker" for b in ratios]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for label, unit, getter in METRICS:
        values = {v.buffer: metric_values(v, getter) for v in variants}
        row = [f"{label}, {unit}", *(_cell(values[n], unit) for n in names)]
        m = values.get("marker")
        for baseline in ratios:
            b = values[baseline]
            row.append(
                f"{statistics.median(b) / statistics.median(m):.1f}×"
                if m and b and statistics.median(m) > 0
                else "–"
            )
        lines.append("| " + " | ".join(row) + " |")
    return lines


_WORKER_STOPPED = re.compile(r"speech worker \S+ stopped: (.+)")


def speech_worker_counts(log_text: str) -> dict[str, int]:
    """The speech workers' counts from their "stopped" lines in `intervue up`'s log,
    summed (a restarted worker logs one line per life)."""
    counts: dict[str, int] = {}
    for found in _WORKER_STOPPED.finditer(log_text):
        for item in found.group(1).split(","):
            name, _, number = item.strip().rpartition(" ")
            if name and number.isdigit():
                counts[name] = counts.get(name, 0) + int(number)
    return counts


def snapshot_note(counts: dict[str, int]) -> str:
    """The fate of the transcripts made at pauses: used by the part that ended there, or
    stale (the candidate went on: a Whisper run nobody reads, on a machine this slow
    perhaps in the way of the next part), or skipped by the worker."""
    if not counts.get("speculated") and not counts.get("speculation_skipped"):
        return ""
    made, used = counts.get("speculated", 0), counts.get("speculation_reused", 0)
    return (
        f"; snapshots at pauses: {made} transcribed, {used} used, {made - used} stale, "
        f"{counts.get('speculation_skipped', 0)} skipped"
    )


def speech_note(variants: Sequence[VariantRun], voice: str | None = None) -> str:
    """Why "question shown → spoken" is empty, when it is (``voice``: the run's voice, or
    what was missing for one)."""
    errors = sorted({a.speech_error for v in variants for a in v.answers if a.speech_error})
    spoken = sum(1 for v in variants for a in v.answers if a.spoken_ms is not None)
    if spoken or not errors:
        return ""
    return (
        "Question shown → spoken: this browser never started speaking "
        f"({', '.join(errors)}); voice: {voice or 'none'}."
    )


def render_report(variants: Sequence[VariantRun], meta: dict[str, Any]) -> str:
    done_after_s = meta.get("done_after_s", DONE_AFTER_S)
    lines = [
        "### The room as a candidate feels it — `intervue bench room`",
        "",
        f"Machine: {meta['machine']}. {meta['candidates']} candidate(s) at once, each its "
        f"own headless Chromium, {meta.get('rounds', 1)} interview(s) each; camera "
        f"{meta['fps']:g} fps; language {meta['language']}; "
        f"Whisper `{meta['whisper']}`; interviewer: {meta['llm']}; answers per interview: "
        f"{meta['answers']} (ended by: {', '.join(meta['ends'])}; Done {done_after_s:g} s "
        f"after the last word; the silence rule {meta['silence_end_s']:g} s).",
        "",
        *room_table(variants),
        "",
    ]
    for v in variants:
        answers = v.answers
        late = sum(1 for a in answers if a.late)
        failed = [a.error for a in answers if a.error] + [c.error for c in v.candidates if c.error]
        lines.append(
            f"- {v.buffer}: {v.seconds:.0f} s, load average {v.load_start:.1f} → "
            f"{v.load_end:.1f}, {sum(c.results for c in v.candidates)} emotion results, "
            f"{len(answers)} answers ({late} late, {len(failed)} failed"
            + (f": {'; '.join(failed[:3])}" if failed else "")
            + ")"
            + snapshot_note(v.speech_counts)
        )
    note = speech_note(variants, meta.get("voice"))
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------- the stack


@contextlib.asynccontextmanager
async def started_stack(
    variant: str, workdir: Path, env_overrides: dict[str, str], timeout_s: float = 300.0
) -> AsyncIterator[str]:
    """A fresh `intervue up` of `variant` (`VARIANTS`), on free ports; yields the room
    link its banner printed, and stops it (Ctrl-C, as a person would) afterwards."""
    from stream.ports import free_port

    buffer, variant_env = VARIANTS[variant]
    data = workdir / f"up-{variant}"
    data.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k != "INTERVUE_NATS_URL"}
    env.update(
        {
            "INTERVUE_UP_DATA_DIR": str(data),
            "INTERVUE_UP_NATS_PORT": str(free_port()),
            "INTERVUE_UP_DASHBOARD_PORT": str(free_port()),
            "INTERVUE_GATEWAY_PORT": str(free_port()),
            "INTERVUE_GATEWAY_JITTER_BUFFER": buffer,
            # every candidate comes from this one address
            "INTERVUE_GATEWAY_SESSION_BURST": "100",
            "PYTHONUNBUFFERED": "1",
            **env_overrides,
            **variant_env,
        }
    )
    log_path = data / "up.log"
    with log_path.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "deploy.cli",
            "up",
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            text = log_path.read_text(errors="replace")
            found = re.search(r"intervue is up\s+room\s+(\S+)", text)
            if found:
                break
            if proc.returncode is not None or time.monotonic() > deadline:
                raise RoomBenchError(
                    f"`intervue up` ({variant}) did not come up; its log ends:\n{text[-2000:]}"
                )
            await asyncio.sleep(0.5)
        log.info("%s: intervue up is ready (%s)", variant, found.group(1).split("?")[0])
        yield found.group(1)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            await asyncio.wait_for(proc.wait(), 60)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()


# --------------------------------------------------------------------------- a candidate


_CARD_FIELDS = (
    "({askedAt: c.askedAt ?? null, spokenAt: c.spokenAt ?? null, speechError: "
    "c.speechError ?? null, doneAt: c.doneAt ?? null, endedAt: c.endedAt ?? null, "
    "answeredAt: c.answeredAt ?? null, evaluatedAt: c.evaluatedAt ?? null, "
    "reason: c.reason ?? null, evaluated: !!c.evaluated, lastCaption: Object.values("
    "c.transcripts || {}).filter((x) => x.receivedAt).reduce((a, x) => (!a || "
    "x.receivedAt > a.receivedAt ? x : a), null)})"
)


async def _card(page: Any, key: str) -> dict[str, Any] | None:
    return await page.evaluate(
        f"(() => {{ const c = window.intervue.interview.cards[{key!r}]; "
        f"return c ? {_CARD_FIELDS} : null; }})()"
    )


async def _until(page: Any, key: str, test: Any, timeout_s: float, what: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        card = await _card(page, key)
        if card is not None and test(card):
            return card
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


class _GlassReader:
    """Copies the page's new glass-to-emotion latencies (the page keeps its last ≤ 1000;
    read every few seconds, none is lost)."""

    def __init__(self) -> None:
        self.seen = 0
        self.values: list[float] = []

    async def read(self, page: Any) -> None:
        count, values = await page.evaluate(
            "[window.intervue.glassCount, window.intervue.glass.slice(-1000)]"
        )
        new = count - self.seen
        if new > 0:
            self.values += values[-new:] if new <= len(values) else values
            self.seen = count


async def run_candidate(
    number: int,
    url: str,
    media: InterviewMedia,
    language: str,
    ends: Sequence[str],
    step_timeout_s: float,
    done_after_s: float = DONE_AFTER_S,
    speech: PrivateSpeechDispatcher | None = None,
) -> CandidateRun:
    """One candidate's whole interview in its own Chromium; never raises (the error is
    in the result)."""
    from deploy.browser import launch_browser, logged_page

    run = CandidateRun(number)
    script = SCRIPTS[language]
    glass = _GlassReader()
    try:
        async with (
            launch_browser(
                video=media.video, audio=media.audio, loop_audio=False, speech=speech
            ) as browser,
            logged_page(browser, url) as lp,
        ):
            page = lp.page

            async def poll_glass() -> None:
                while True:
                    await asyncio.sleep(3.0)
                    with contextlib.suppress(Exception):
                        await glass.read(page)

            poller = asyncio.create_task(poll_glass())
            try:
                if speech is not None:
                    await _voices_listed(page)
                await page.select_option("#language", language)
                await page.fill("#job_title", script["job"])
                await page.fill("#self_intro", script["intro"])
                await page.click("#start")
                media_at = None
                for _ in range(600):
                    media_at = await page.evaluate("window.intervue.mediaAt || null")
                    if media_at:
                        break
                    await asyncio.sleep(0.05)
                if not media_at:
                    raise TimeoutError("the camera and microphone never opened")
                for index, clip in enumerate(media.answers):
                    run.answers.append(
                        await _one_answer(
                            page, number, index, clip, media_at, ends, step_timeout_s, done_after_s
                        )
                    )
                await glass.read(page)
                run.results = await page.evaluate("window.intervue.results")
            finally:
                poller.cancel()
                await asyncio.gather(poller, return_exceptions=True)
    except Exception as exc:  # a candidate's failure is a row, not the end of the bench
        run.error = f"candidate {number}: {type(exc).__name__}: {exc}"
        log.warning("%s", run.error)
    run.glass_ms = glass.values
    return run


async def _voices_listed(page: Any, timeout_s: float = 15.0) -> None:
    """Wait (at most `timeout_s`) until the page's speech synthesis lists its voices.

    The room asks for them at page load, and the browser's first connection to
    speech-dispatcher takes ~2 s here; a person typing a self-introduction takes longer
    than that, the bench does not. Without this wait the first question of every interview
    would be timed with the connection in it (1.3–1.8 s instead of ~0.15 s)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await page.evaluate("window.speechSynthesis?.getVoices().length || 0"):
            return
        await asyncio.sleep(0.1)
    log.warning("the page's speech synthesis listed no voice in %.0f s", timeout_s)


async def _one_answer(
    page: Any,
    number: int,
    index: int,
    clip: AnswerClip,
    media_at: float,
    ends: Sequence[str],
    step_timeout_s: float,
    done_after_s: float = DONE_AFTER_S,
) -> AnswerTiming:
    key = f"{index}-1"
    end = ends[index % len(ends)]
    timing = AnswerTiming(number, index, end, last_word_ms=media_at + clip.last_word_ms)
    try:
        if index:
            await _until(page, f"{index - 1}-1", lambda c: c["evaluated"], step_timeout_s,
                         f"evaluation of answer {index}")  # fmt: skip
            await page.click("#next")
        card = await _until(page, key, lambda c: c["askedAt"], step_timeout_s, "question")
        timing.late = card["askedAt"] > media_at + clip.start_ms
        if end == "done":
            press_at = (media_at + clip.last_word_ms) / 1000.0 + done_after_s
            await asyncio.sleep(max(0.0, press_at - time.time()))
            await page.keyboard.press("Control+Enter")
        card = await _until(page, key, lambda c: c["evaluated"], step_timeout_s, "evaluation")
    except Exception as exc:
        timing.error = f"answer {index + 1}: {type(exc).__name__}: {exc}"
        card = await _card(page, key) or {}
    timing.reason = card.get("reason")
    timing.asked_ms = card.get("askedAt")
    timing.spoken_ms = card.get("spokenAt")
    timing.speech_error = card.get("speechError")
    timing.done_ms = card.get("doneAt")
    timing.ended_ms = card.get("endedAt")
    timing.answered_ms = card.get("answeredAt")
    timing.evaluated_ms = card.get("evaluatedAt")
    caption = card.get("lastCaption") or {}
    timing.caption_ms = caption.get("receivedAt")
    timing.caption_whisper_ms = caption.get("latency_ms")
    if end == "done" and timing.reason not in (None, "done"):
        timing.error = timing.error or f"answer {index + 1} ended by {timing.reason}, not Done"
    return timing


# --------------------------------------------------------------------------- the run


def _load() -> float:
    return os.getloadavg()[0]


async def run_variant(
    buffer: str,
    url: str,
    media: InterviewMedia,
    *,
    candidates: int,
    language: str,
    ends: Sequence[str],
    step_timeout_s: float,
    rounds: int = 1,
    stagger_s: float = 1.0,
    done_after_s: float = DONE_AFTER_S,
    speech: PrivateSpeechDispatcher | None = None,
) -> VariantRun:
    """`candidates` at once, `rounds` times over (each a new session: an interview has
    three questions, so more answers need more interviews)."""
    started, load_start = time.monotonic(), _load()

    async def candidate(number: int) -> CandidateRun:
        await asyncio.sleep((number % candidates) * stagger_s)
        return await run_candidate(
            number + 1, url, media, language, ends, step_timeout_s, done_after_s, speech
        )

    runs: list[CandidateRun] = []
    for round_ in range(rounds):
        first = round_ * candidates
        runs += await asyncio.gather(*(candidate(first + n) for n in range(candidates)))
    return VariantRun(buffer, runs, time.monotonic() - started, load_start, _load())


async def run_room_bench_async(
    *,
    candidates: int = 1,
    rounds: int = 1,
    fps: float = 15.0,
    language: str = "en",
    answers: int = 3,
    ends: Sequence[str] = END_MODES,
    buffers: Sequence[str] = ("marker", "stock"),
    whisper: str = "base",
    llm: str = "offline",
    url: str | None = None,
    step_timeout_s: float = 120.0,
    workdir: Path | None = None,
    done_after_s: float = DONE_AFTER_S,
) -> tuple[str, dict[str, Any]]:
    """Run the room bench; returns the Markdown report and every figure as JSON data."""
    import platform

    from stream.turns import TurnSettings

    if language not in SCRIPTS:
        raise ValueError(f"language: one of {', '.join(SCRIPTS)}")
    if unknown := [e for e in ends if e not in END_MODES]:
        raise ValueError(f"end modes: {', '.join(END_MODES)} (not {', '.join(unknown)})")
    if unknown := [b for b in buffers if b not in VARIANTS]:
        raise ValueError(f"variants: {', '.join(VARIANTS)} (not {', '.join(unknown)})")
    if candidates < 1 or rounds < 1:
        raise ValueError("candidates and rounds: at least 1")
    silence_end_s = TurnSettings().silence_end_s
    if not 0 <= done_after_s < min(silence_end_s, GAP_S - 4):
        # later, and the silence rule (or the next answer) ends the answer first
        raise ValueError(
            f"done after: 0 to under {min(silence_end_s, GAP_S - 4):g} s after the last word"
        )
    if "silence" in ends and not 0 < silence_end_s < GAP_S - 4:
        raise ValueError(
            f"the silence rule ({silence_end_s:g} s) must end an answer within the "
            f"{GAP_S:g} s gap the bench leaves after it"
        )
    own = workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="intervue-bench-room-")) if own else workdir
    media = await asyncio.to_thread(make_interview_media, workdir, language, answers, fps)
    variants: list[VariantRun] = []
    # The questions are read aloud by the browser: give headless Chromium a voice.
    voice_problem = missing()
    speech = None if voice_problem else PrivateSpeechDispatcher(workdir)
    if voice_problem:
        log.warning("question shown → spoken will be empty: %s", voice_problem)
    else:  # starting and stopping it waits on a process: not on the event loop
        await asyncio.to_thread(speech.start)
    env = {
        "INTERVUE_SPEECH_MODEL": whisper,
        "INTERVUE_LLM_ENGINE": llm,
        # Every candidate opens the one room link the banner printed: it must hold them all
        # at once (the gateway's default is 2 live sessions per invitation) and every round.
        "INTERVUE_GATEWAY_MAX_SESSIONS_PER_INVITATION": str(max(2, candidates)),
        "INTERVUE_UP_INVITE_USES": str(min(1000, max(20, candidates * rounds))),
    }
    common = dict(candidates=candidates, rounds=rounds, language=language, ends=ends,
                  step_timeout_s=step_timeout_s, done_after_s=done_after_s,
                  speech=speech)  # fmt: skip
    try:
        if url is not None:
            variants.append(await run_variant("running", url, media, **common))
        else:
            for buffer in buffers:
                async with started_stack(buffer, workdir, env) as room:
                    variants.append(await run_variant(buffer, room, media, **common))
                up_log = workdir / f"up-{buffer}" / "up.log"
                variants[-1].speech_counts = speech_worker_counts(
                    up_log.read_text(errors="replace")
                )
    finally:
        if speech is not None:
            await asyncio.to_thread(speech.stop)
    meta = {
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, "
        f"Python {platform.python_version()}",
        "candidates": candidates,
        "rounds": rounds,
        "fps": fps,
        "language": language,
        "answers": answers,
        "ends": list(ends),
        "whisper": whisper if url is None else "(the running stack's)",
        "llm": f"{llm} engine" if url is None else "(the running stack's)",
        "silence_end_s": silence_end_s,
        "done_after_s": done_after_s,
        "audio_s": media.seconds,
        "voice": voice_problem or "speech-dispatcher (espeak-ng), deploy/speech_synthesis.py",
    }
    report = render_report(variants, meta)
    data = {
        "meta": meta,
        "variants": [
            {
                "buffer": v.buffer,
                "seconds": v.seconds,
                "speech_counts": v.speech_counts,
                "load": [v.load_start, v.load_end],
                "summary": {
                    label: {
                        "unit": unit,
                        "n": len(values := metric_values(v, getter)),
                        "p50": percentile(values, 50) if values else None,
                        "p95": percentile(values, 95) if values else None,
                    }
                    for label, unit, getter in METRICS
                },
                "candidates": [asdict(c) for c in v.candidates],
            }
            for v in variants
        ],
    }
    return report, data


def run_room_bench(**kwargs: Any) -> tuple[str, dict[str, Any]]:
    """`run_room_bench_async` from synchronous code (the CLI)."""
    return asyncio.run(run_room_bench_async(**kwargs))


def write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
