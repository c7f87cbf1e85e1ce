"""`intervue bench load`: N synthetic candidates (the harness, `deploy.load`) against a
running stack.

What is measured, in windows of ``report_every_s`` seconds and over the whole run:

* **analysed fps** per session: emotion results received on the data channel per second;
* **glass-to-result**: the time a result reaches the candidate minus the frame's
  ``capture_ms`` in the result. The gateway maps the frame's RTP timestamp through the
  candidate's RTCP sender reports onto the candidate's clock (`stream.capture_clock`), so
  ``capture_ms`` is on this process's clock, the same formula the room page uses (results
  whose capture time is the gateway's receive time, before the first sender report, are
  counted but left out). aiortc stamps a sender report's NTP time when the packet leaves,
  after VP8 encoding, so that mapping places a capture later by the encoder's hand-off
  delay; the harness measures that delay per frame (its own capture time vs the moment
  the frame's last packet left, read from the sender) and reports it (``enc``): add it to
  the glass figures for the camera-to-result time;
* **dropped frames**: the gateway's counters (sampled frames replaced by a newer one
  before they went on the bus, and in-flight frames whose result never came), from the
  ``stats`` messages the gateway sends every 2 s; plus camera frames the harness itself
  skipped because its own loop was late (a sign the harness, not the stack, is starved);
* **CPU and memory per role**: ``/proc`` of the stack's processes (``python -m deploy.cli
  <role>`` / ``intervue <role>`` and ``nats-server``; with ``stack_pid`` only that
  process's descendants, e.g. `intervue up`), the harness itself, and everything else
  on the machine (other work sharing the cores);
* **transcripts received vs utterances sent**: after the measured time the candidates stop
  speaking and the run waits up to ``drain_s`` for the transcripts still in the speech
  queue; word recall is the fraction of the sentence's words found in the transcripts.

Everything stays bounded: sessions, windows, waits and retries all end by a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import random
import re
import statistics
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import typer

from deploy.bench.tables import fmt
from deploy.load import (
    SPEECH_TEXT,
    Candidate,
    LoadError,
    ResultSample,
    camera_frames,
    force_loopback_ice,
    make_camera,
    make_microphone,
    speech_clip,
)
from stream import tokens
from stream.stats import percentile

log = logging.getLogger(__name__)

#: The analysed rate per session the run must hold to meet its goal.
GOAL_FPS = 5.0


# ---------------------------------------------------------------------------------------
# CPU and memory per role, from /proc

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _read_proc(pid: int) -> tuple[int, list[str], int, int] | None:
    """(ppid, argv, cpu ticks, rss kB) of a process, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ppid, ticks = int(fields[1]), int(fields[11]) + int(fields[12])
    rss = 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1])
            break
    return ppid, [a.decode(errors="replace") for a in argv if a], ticks, rss


def role_of(argv: list[str]) -> str | None:
    """`python -m deploy.cli worker vision` → "vision"; nats-server → "nats"."""
    if not argv:
        return None
    if os.path.basename(argv[0]) == "nats-server":
        return "nats"
    if "llama_cpp.server" in argv:  # the local language model `up` runs (its llm role)
        return "llm"
    for i, arg in enumerate(argv):
        if (
            arg == "deploy.cli"
            or arg.endswith("/deploy/cli.py")
            or os.path.basename(arg) in ("intervue",)
        ):
            rest = [a for a in argv[i + 1 :] if not a.startswith("-")]
            if not rest:
                return None
            if rest[0] == "worker" and len(rest) > 1:
                return rest[1]
            if rest[0] == "bench":
                return None  # a harness, reported separately
            return rest[0]
    return None


def _loadavg() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


@dataclass
class ResourceSample:
    at: float
    ticks: dict[str, int]  # per role (cumulative over the processes seen now)
    rss_kb: dict[str, int]
    machine_busy: int
    machine_total: int
    pids: dict[str, int]


class ResourceWatcher:
    """Samples CPU ticks and RSS per role. CPU is computed between two samples per pid,
    so a process that appears (a restart) or disappears does not distort the figure."""

    def __init__(self, stack_pid: int | None = None) -> None:
        self.stack_pid = stack_pid
        self.own_pid = os.getpid()
        self._last_ticks: dict[int, tuple[str, int]] = {}

    def _processes(self) -> dict[int, tuple[int, list[str], int, int]]:
        found = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                info = _read_proc(int(entry.name))
                if info is not None:
                    found[int(entry.name)] = info
        return found

    def _roles(self, procs: dict[int, tuple[int, list[str], int, int]]) -> dict[int, str]:
        roles: dict[int, str] = {}

        def resolve(pid: int, depth: int = 0) -> str | None:
            if pid in roles:
                return roles[pid]
            if pid not in procs or depth > 32:
                return None
            ppid, argv, _, _ = procs[pid]
            role = role_of(argv)
            if self.stack_pid is not None:
                if pid == self.stack_pid:
                    return role or "launcher"
                parent = resolve(ppid, depth + 1)
                if parent is None:
                    return None  # not under the stack
                return role or parent
            return role or resolve(ppid, depth + 1)

        for pid in procs:
            if pid == self.own_pid:
                roles[pid] = "harness"
                continue
            role = resolve(pid)
            if role is not None:
                roles[pid] = role
        return roles

    def sample(self) -> ResourceSample:
        procs = self._processes()
        roles = self._roles(procs)
        ticks: dict[str, int] = {}
        rss: dict[str, int] = {}
        pids: dict[str, int] = {}
        current: dict[int, tuple[str, int]] = {}
        for pid, role in roles.items():
            _, _, cpu, kb = procs[pid]
            current[pid] = (role, cpu)
            previous = self._last_ticks.get(pid)
            delta = cpu - previous[1] if previous is not None else 0
            ticks[role] = ticks.get(role, 0) + max(0, delta)
            rss[role] = rss.get(role, 0) + kb
            pids[role] = pids.get(role, 0) + 1
        self._last_ticks = current
        busy, total = _machine_ticks()
        return ResourceSample(time.monotonic(), ticks, rss, busy, total, pids)


# ---------------------------------------------------------------------------------------
# the run


@dataclass
class Window:
    start_s: float
    end_s: float
    live: int
    results: int
    fps_per_session: float
    min_session_fps: float
    glass_p50: float | None
    glass_p95: float | None
    glass_n: int
    dropped: float
    timed_out: float
    sampled: float
    camera_skipped: int
    loop_lag_p95_ms: float | None
    cpu: dict[str, float]
    rss_mb: dict[str, float]
    machine_cpu: float
    other_cpu: float


@dataclass
class LoadReport:
    url: str
    sessions: int
    connected: int
    duration_s: float
    fps: float
    report_every_s: float
    started_at: str
    loadavg_before: str
    loadavg_after: str
    cpus: int
    windows: list[Window]
    per_session: list[dict[str, Any]]
    summary: dict[str, Any]
    errors: list[str]

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, default=str)

    def markdown(self) -> str:
        return render_markdown(self)


def _word_recall(texts: Iterable[str], expected: str = SPEECH_TEXT) -> float | None:
    words = re.findall(r"[a-z]+", expected.lower())
    texts = list(texts)
    if not texts:
        return None
    scores = []
    for text in texts:
        heard = set(re.findall(r"[a-z0-9]+", text.lower()))
        scores.append(sum(w in heard for w in words) / len(words))
    return statistics.mean(scores)


def _flatness(windows: list[Window]) -> tuple[str, float | None, float | None, float | None]:
    """(verdict, first-third p95, last-third p95, slope ms/min) over the windows after
    the first (warm-up) one."""
    usable = [w for w in windows[1:] if w.glass_p95 is not None]
    if len(usable) < 3:
        return "too short to tell", None, None, None
    third = max(1, len(usable) // 3)
    first = statistics.median(w.glass_p95 for w in usable[:third])
    last = statistics.median(w.glass_p95 for w in usable[-third:])
    xs = [(w.start_s + w.end_s) / 2 / 60.0 for w in usable]
    ys = [w.glass_p95 for w in usable]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    denominator = sum((x - mx) ** 2 for x in xs) or 1.0
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / denominator
    flat = last <= 1.25 * first + 20.0
    return ("flat" if flat else "rising"), first, last, slope


async def _loop_lag(lags: list[tuple[float, float]], stop: asyncio.Event) -> None:
    """How late this process's event loop wakes up (a starved harness inflates latency)."""
    while not stop.is_set():
        t = time.monotonic()
        await asyncio.sleep(0.1)
        lags.append((time.monotonic(), (time.monotonic() - t - 0.1) * 1000.0))
        if len(lags) > 20_000:
            del lags[:10_000]


def _parse_url(url: str, room: str, token: str) -> tuple[str, str, str]:
    try:
        base, link_room, link_token = tokens.split_invite_url(url)
    except ValueError as exc:
        raise LoadError(str(exc)) from exc
    return base, room or link_room, token or link_token


def candidate_tokens(
    sessions: int, room: str, token: str, invitation_key: bytes | None, ttl_s: float
) -> list[str]:
    """Each candidate's invitation: with the gateway's signing key at hand, a single-use one
    of its own (a gateway holds only a few live sessions per invitation,
    INTERVUE_GATEWAY_MAX_SESSIONS_PER_INVITATION, 2 by default); otherwise `token` for all."""
    if invitation_key is None:
        return [token] * sessions
    if not room:
        raise LoadError("a room is needed to invite the candidates: --room, or a room link")
    now = time.time()
    return [tokens.issue(invitation_key, room, ttl_s, now, uses=1) for _ in range(sessions)]


async def run_load_async(
    url: str,
    sessions: int,
    duration_s: float,
    *,
    room: str = "",
    token: str = "",
    fps: float = 15.0,
    report_every_s: float = 10.0,
    speech_every_s: float = 12.0,
    drain_s: float = 45.0,
    stack_pid: int | None = None,
    ramp_s: float = 0.25,
    connect_timeout_s: float = 120.0,
    loopback_ice: bool = False,
    language: str = "en",
    progress: Any = None,
    invitation_key: bytes | None = None,
) -> LoadReport:
    """Run the load and return the report (see the module docstring). With
    `invitation_key` (the gateway's signing key) each candidate gets its own invitation to
    `room`; without it they all share `token`."""
    import aiohttp

    if sessions < 1 or duration_s <= 0 or fps <= 0 or report_every_s <= 0:
        raise LoadError("sessions, duration, fps and report interval must be positive")
    if loopback_ice:
        force_loopback_ice()
    base, room, token = _parse_url(url, room, token)
    # Valid for the whole run: connecting, measuring, draining, and a margin.
    ttl_s = connect_timeout_s + duration_s + drain_s + 3600.0
    invitations = candidate_tokens(sessions, room, token, invitation_key, ttl_s)
    say = progress or (lambda text: log.info("%s", text))
    clip = await asyncio.to_thread(speech_clip)
    frames = await asyncio.to_thread(camera_frames)
    watcher = ResourceWatcher(stack_pid)
    loadavg_before = _loadavg()
    started_at = time.strftime("%Y-%m-%d %H:%M:%S")
    rng = random.Random(1234)
    errors: list[str] = []
    lags: list[tuple[float, float]] = []
    stop_lag = asyncio.Event()
    lag_task = asyncio.create_task(_loop_lag(lags, stop_lag))
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        try:
            async with http.get(base + "/healthz") as response:
                if response.status != 200:
                    raise LoadError(f"{base}/healthz answered {response.status}: is NATS up?")
        except aiohttp.ClientError as exc:
            raise LoadError(f"cannot reach the gateway at {base}: {exc}") from exc
        candidates = [
            Candidate(
                i,
                http,
                base,
                room,
                invitations[i],
                make_camera(frames, fps),
                make_microphone(clip, speech_every_s, rng.uniform(1.0, speech_every_s)),
                language=language,
            )
            for i in range(sessions)
        ]
        deadline = time.monotonic() + connect_timeout_s

        async def start(candidate: Candidate) -> None:
            await asyncio.sleep(candidate.index * ramp_s)
            try:
                await candidate.create(deadline)
                await candidate.connect(max(5.0, deadline - time.monotonic()))
            except Exception as exc:
                candidate.out.error = f"{type(exc).__name__}: {exc}"
                errors.append(f"candidate {candidate.index}: {candidate.out.error}")

        say(f"starting {sessions} synthetic candidates against {base} …")
        await asyncio.gather(*(start(c) for c in candidates))
        live = [c for c in candidates if c.out.connected_at is not None]
        say(f"{len(live)}/{sessions} connected; measuring for {duration_s:g} s")
        windows: list[Window] = []
        t0_ms = time.time() * 1000.0
        try:
            if live:
                t0_ms = time.time() * 1000.0
                windows = await _measure(live, duration_s, report_every_s, watcher, lags, say)
                # Stop speaking, then wait for the transcripts still queued.
                for c in live:
                    c.microphone.quiet()
                drain_deadline = time.monotonic() + drain_s
                while time.monotonic() < drain_deadline:
                    await asyncio.sleep(1.0)
                    pending = [
                        c for c in live
                        if c.microphone.clips_done > len(c.out.transcripts)
                        or c.microphone.clips_started > c.microphone.clips_done
                    ]  # fmt: skip
                    if not pending:
                        break
        finally:
            stop_lag.set()
            await asyncio.gather(*(c.close() for c in candidates), return_exceptions=True)
            lag_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await lag_task
    span = (t0_ms, t0_ms + duration_s * 1000.0)
    per_session = [_session_row(c, span, duration_s, windows) for c in candidates]
    summary = _summary(windows, per_session, live, span)
    return LoadReport(
        url=base,
        sessions=sessions,
        connected=len(live),
        duration_s=duration_s,
        fps=fps,
        report_every_s=report_every_s,
        started_at=started_at,
        loadavg_before=loadavg_before,
        loadavg_after=_loadavg(),
        cpus=os.cpu_count() or 0,
        windows=windows,
        per_session=per_session,
        summary=summary,
        errors=errors,
    )


async def _measure(
    live: list[Candidate],
    duration_s: float,
    every_s: float,
    watcher: ResourceWatcher,
    lags: list[tuple[float, float]],
    say: Any,
) -> list[Window]:
    windows: list[Window] = []
    t0 = time.monotonic()
    t0_ms = time.time() * 1000.0
    previous = watcher.sample()
    previous_stats = {c.index: dict(c.out.stats) for c in live}
    previous_skipped = {c.index: c.camera.frames_skipped for c in live}
    n_windows = max(1, math.ceil(duration_s / every_s))
    for k in range(n_windows):
        end_s = min(duration_s, (k + 1) * every_s)
        await asyncio.sleep(max(0.0, t0 + end_s - time.monotonic()))
        start_s = k * every_s
        lo, hi = t0_ms + start_s * 1000.0, t0_ms + end_s * 1000.0
        sample = watcher.sample()
        span = max(1e-6, sample.at - previous.at)
        glass: list[float] = []
        counts = []
        for c in live:
            in_window = [r for r in c.out.results if lo <= r.arrival_ms < hi]
            counts.append(len(in_window))
            glass += [r.glass_ms for r in in_window if r.glass_ms is not None]
        dropped = timed_out = sampled = 0.0
        for c in live:
            now, before = c.out.stats, previous_stats.get(c.index, {})
            dropped += now.get("frames_dropped", 0) - before.get("frames_dropped", 0)
            timed_out += now.get("frames_timed_out", 0) - before.get("frames_timed_out", 0)
            sampled += now.get("frames_sampled", 0) - before.get("frames_sampled", 0)
            previous_stats[c.index] = dict(now)
        skipped = sum(c.camera.frames_skipped - previous_skipped[c.index] for c in live)
        previous_skipped = {c.index: c.camera.frames_skipped for c in live}
        cpu = {role: 100.0 * t / _CLK_TCK / span for role, t in sorted(sample.ticks.items())}
        machine = (
            100.0
            * (sample.machine_busy - previous.machine_busy)
            / max(1, sample.machine_total - previous.machine_total)
            * (os.cpu_count() or 1)
        )
        window_lags = [lag for at, lag in lags if t0 + start_s <= at < t0 + end_s]
        length = end_s - start_s
        live_now = sum(1 for c in live if not c.out.ended)
        window = Window(
            start_s=start_s,
            end_s=end_s,
            live=live_now,
            results=sum(counts),
            fps_per_session=sum(counts) / length / len(live),
            min_session_fps=min(counts) / length,
            glass_p50=percentile(glass, 50),
            glass_p95=percentile(glass, 95),
            glass_n=len(glass),
            dropped=dropped,
            timed_out=timed_out,
            sampled=sampled,
            camera_skipped=skipped,
            loop_lag_p95_ms=percentile(window_lags, 95),
            cpu=cpu,
            rss_mb={role: kb / 1024.0 for role, kb in sorted(sample.rss_kb.items())},
            machine_cpu=machine,
            other_cpu=max(0.0, machine - sum(cpu.values())),
        )
        windows.append(window)
        previous = sample
        say(
            f"[{start_s:5.0f}–{end_s:4.0f} s] {window.fps_per_session:4.1f} fps/session "
            f"(min {window.min_session_fps:.1f}), glass p50 {fmt(window.glass_p50)} "
            f"p95 {fmt(window.glass_p95)} ms, dropped {dropped:.0f}, "
            f"machine CPU {machine:.0f}% (other {window.other_cpu:.0f}%)"
        )
    return windows


def _measured(c: Candidate, span: tuple[float, float]) -> list[ResultSample]:
    return [r for r in c.out.results if span[0] <= r.arrival_ms < span[1]]


def _session_row(
    c: Candidate, span: tuple[float, float], duration_s: float, windows: list[Window]
) -> dict[str, Any]:
    out = c.out
    if out.connected_at is None or not windows:
        return {"index": out.index, "session": out.session, "error": out.error or "not connected"}
    results = _measured(c, span)  # inside the measured windows only
    glass = [r.glass_ms for r in results if r.glass_ms is not None]
    faces = sum(r.face for r in results)
    enc = c.camera.encode_delay_ms
    return {
        "index": out.index,
        "session": out.session,
        "results": len(results),
        "fps": len(results) / duration_s,
        "face_fraction": faces / len(results) if results else 0.0,
        "glass_p50": percentile(glass, 50),
        "glass_p95": percentile(glass, 95),
        "gateway_clock_results": sum(r.glass_ms is None for r in results),
        "enc_p50": percentile(enc, 50),
        "enc_p95": percentile(enc, 95),
        "frames_sampled": out.stats.get("frames_sampled", 0),
        "frames_dropped": out.stats.get("frames_dropped", 0),
        "frames_timed_out": out.stats.get("frames_timed_out", 0),
        "camera_frames": c.camera.frames_sent,
        "camera_skipped": c.camera.frames_skipped,
        "utterances_sent": c.microphone.clips_done,
        "transcripts": len(out.transcripts),
        "word_recall": _word_recall(out.transcripts),
        "transcript_sample": out.transcripts[-1] if out.transcripts else "",
        "questions_asked": out.steps.get("asked", 0),
        "evaluated": out.steps.get("evaluated", 0),
        "rate_limited": out.rate_limited,
        "ended": out.ended,
        "error": out.error,
    }


def _summary(
    windows: list[Window], rows: list[dict[str, Any]], live: list[Candidate], span: tuple
) -> dict[str, Any]:
    ok = [r for r in rows if "fps" in r]
    glass = [r.glass_ms for c in live for r in _measured(c, span) if r.glass_ms is not None]
    back = [r.back_ms for c in live for r in _measured(c, span) if r.back_ms is not None]
    steady = windows[1:] or windows
    verdict, first, last, slope = _flatness(windows)
    cpu_roles = sorted({role for w in steady for role in w.cpu})
    mean_cpu = {role: statistics.mean(w.cpu.get(role, 0.0) for w in steady) for role in cpu_roles}
    max_rss = {role: max(w.rss_mb.get(role, 0.0) for w in steady) for role in cpu_roles}
    enc = [d for c in live for d in c.camera.encode_delay_ms]
    fps_values = [w.fps_per_session for w in steady]
    min_fps = min((w.min_session_fps for w in steady), default=0.0)
    utterances = sum(r.get("utterances_sent", 0) for r in ok)
    transcripts = sum(r.get("transcripts", 0) for r in ok)
    sampled = sum(w.sampled for w in steady)
    dropped = sum(w.dropped for w in steady)
    timed_out = sum(w.timed_out for w in steady)
    return {
        "fps_per_session": statistics.mean(fps_values) if fps_values else 0.0,
        "min_window_session_fps": min_fps,
        "glass_p50": percentile(glass, 50),
        "glass_p95": percentile(glass, 95),
        "steady_glass_p95_first": first,
        "steady_glass_p95_last": last,
        "glass_p95_slope_ms_per_min": slope,
        "flat": verdict,
        "enc_p50": percentile(enc, 50),
        "enc_p95": percentile(enc, 95),
        "back_p50": percentile(back, 50),
        "back_p95": percentile(back, 95),
        "sampled": sampled,
        "dropped": dropped,
        "timed_out": timed_out,
        "dropped_fraction": dropped / sampled if sampled else 0.0,
        "camera_skipped": sum(w.camera_skipped for w in steady),
        "camera_frames": sum(c.camera.frames_sent for c in live),
        "camera_skipped_total": sum(c.camera.frames_skipped for c in live),
        "cpu": mean_cpu,
        "rss_mb": max_rss,
        "machine_cpu": statistics.mean(w.machine_cpu for w in steady) if steady else 0.0,
        "other_cpu": statistics.mean(w.other_cpu for w in steady) if steady else 0.0,
        "loop_lag_p95_ms": max((w.loop_lag_p95_ms or 0.0 for w in steady), default=0.0),
        "utterances_sent": utterances,
        "transcripts": transcripts,
        "word_recall": _word_recall(t for c in live for t in c.out.transcripts),
        "evaluated": sum(r.get("evaluated", 0) for r in ok),
        "goal_met": bool(len(ok) == len(rows) and min_fps >= GOAL_FPS and verdict == "flat"),
    }


ROLE_ORDER = (
    "gateway",
    "vision",
    "speech",
    "interviewer",
    "llm",
    "dashboard",
    "nats",
    "up",
    "harness",
)


def _roles(roles: Iterable[str]) -> list[str]:
    roles = set(roles)
    return [r for r in ROLE_ORDER if r in roles] + sorted(roles - set(ROLE_ORDER))


def render_markdown(report: LoadReport) -> str:
    s = report.summary
    due = s["camera_frames"] + s["camera_skipped_total"]
    roles = _roles(s["cpu"])
    lines = [
        f"## Load: {report.sessions} sessions × {report.duration_s:g} s "
        f"({report.fps:g} fps camera) — {report.started_at}",
        "",
        f"Gateway {report.url}; {report.connected}/{report.sessions} connected; "
        f"{report.cpus} CPUs; load average {report.loadavg_before} before, "
        f"{report.loadavg_after} after.",
        "",
        "| analysed fps/session (mean) | lowest session fps in a window | glass p50 ms | "
        "glass p95 ms | p95 first → last third | enc p50/p95 ms | dropped / sampled | "
        "timed out | transcripts / utterances | word recall | goal (≥ 5 fps, flat) |",
        "|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
        f"| {s['fps_per_session']:.2f} | {s['min_window_session_fps']:.1f} | "
        f"{fmt(s['glass_p50'])} | {fmt(s['glass_p95'])} | "
        f"{fmt(s['steady_glass_p95_first'])} → {fmt(s['steady_glass_p95_last'])} "
        f"({s['flat']}) | {fmt(s['enc_p50'])}/{fmt(s['enc_p95'])} | "
        f"{s['dropped']:.0f} / {s['sampled']:.0f} ({100 * s['dropped_fraction']:.0f}%) | "
        f"{s['timed_out']:.0f} | {s['transcripts']} / {s['utterances_sent']} | "
        f"{fmt(s['word_recall'] and 100 * s['word_recall'])}% | "
        f"{'met' if s['goal_met'] else 'not met'} |",
        "",
        "Where the time goes: encoder hand-off in the harness (`enc`, not in the glass "
        f"figures) p50 {fmt(s['enc_p50'])} / p95 {fmt(s['enc_p95'])} ms; result at the "
        f"gateway → on the candidate's data channel p50 {fmt(s['back_p50'])} / p95 "
        f"{fmt(s['back_p95'])} ms (the rest of the glass figure is capture → result at "
        "the gateway: RTP, jitter buffer, VP8 decode, sampling, JPEG, NATS, the worker).",
        "",
        f"Harness health: {s['camera_skipped_total']} camera frames skipped of "
        f"{due} due ({100 * s['camera_skipped_total'] / max(1, due):.0f}%), "
        f"event-loop lag p95 up to {s['loop_lag_p95_ms']:.0f} ms (high values: the harness, "
        "not the stack, is short of CPU, and its latency figures include that).",
        "",
        "CPU (% of one core, mean) and memory (RSS MB, max) per role:",
        "",
        "| " + " | ".join(roles) + " | other work | machine |",
        "|" + "---:|" * (len(roles) + 2),
        "| "
        + " | ".join(f"{s['cpu'][r]:.0f}% / {s['rss_mb'][r]:.0f} MB" for r in roles)
        + f" | {s['other_cpu']:.0f}% | {s['machine_cpu']:.0f}% of {100 * report.cpus}% |",
        "",
        "Over time (all sessions together):",
        "",
        "| window s | results | fps/session | min | glass p50 | glass p95 | dropped | "
        "timed out | harness lag p95 ms | "
        + " | ".join(f"{r} CPU" for r in roles)
        + " | other CPU |",
        "|---|" + "---:|" * (8 + len(roles) + 1),
    ]
    for w in report.windows:
        lines.append(
            f"| {w.start_s:.0f}–{w.end_s:.0f} | {w.results} | {w.fps_per_session:.2f} | "
            f"{w.min_session_fps:.1f} | {fmt(w.glass_p50)} | {fmt(w.glass_p95)} | "
            f"{w.dropped:.0f} | {w.timed_out:.0f} | {fmt(w.loop_lag_p95_ms)} | "
            + " | ".join(f"{w.cpu.get(r, 0.0):.0f}%" for r in roles)
            + f" | {w.other_cpu:.0f}% |"
        )
    lines += [
        "",
        "Per session:",
        "",
        "| # | session | results | fps | faces | glass p50 | glass p95 | enc p50 | "
        "dropped / sampled | camera skipped | transcripts / utterances | evaluated | error |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in report.per_session:
        if "fps" not in r:
            lines.append(f"| {r['index']} | {r['session']} | | | | | | | | | | | {r['error']} |")
            continue
        lines.append(
            f"| {r['index']} | {r['session']} | {r['results']} | {r['fps']:.2f} | "
            f"{100 * r['face_fraction']:.0f}% | {fmt(r['glass_p50'])} | "
            f"{fmt(r['glass_p95'])} | {fmt(r['enc_p50'])} | "
            f"{r['frames_dropped']:.0f} / {r['frames_sampled']:.0f} | {r['camera_skipped']} | "
            f"{r['transcripts']} / {r['utterances_sent']} | {r['evaluated']} | "
            f"{r['error'] or r['ended']} |"
        )
    if report.errors:
        lines += ["", "Errors:", ""] + [f"- {e}" for e in report.errors]
    return "\n".join(lines) + "\n"


def run_load(
    url: str,
    sessions: int,
    duration_s: float,
    *,
    room: str = "",
    token: str = "",
    fps: float = 15.0,
    report_every_s: float = 10.0,
    **options: Any,
) -> str:
    """Run N synthetic candidates against the stack at `url` for `duration_s` measured
    seconds; return the Markdown report. `room`/`token` (or ``?room=&token=`` in `url`)
    are the invitation; leave them empty for a gateway in dev mode. Further options:
    see `run_load_async`."""
    report = asyncio.run(
        run_load_async(
            url,
            sessions,
            duration_s,
            room=room,
            token=token,
            fps=fps,
            report_every_s=report_every_s,
            **options,
        )
    )
    return report.markdown()


def local_invitation_key() -> bytes | None:
    """The gateway's signing key when this machine has it (configured, or the one
    `intervue up` made), else None (dev mode, or a gateway elsewhere)."""
    from deploy.up import local_invitation_settings, up_data_dir
    from stream.settings import GatewaySettings

    try:
        return local_invitation_settings(GatewaySettings(), up_data_dir()).secret()
    except (ValueError, OSError):  # pydantic's ValidationError is a ValueError
        return None


def bench_load(
    sessions: int = typer.Option(8, "--sessions", "-n", help="Synthetic candidates"),
    duration: float = typer.Option(60.0, "--duration", "-d", help="Measured seconds"),
    url: str = typer.Option(
        "http://127.0.0.1:8080/",
        help="The gateway; a room link (…/?room=R&token=T) carries the invitation",
    ),
    room: str = typer.Option("", help="Room of the invitation (default: from --url)"),
    token: str = typer.Option(
        "", help="Invitation token (default: from --url; none in dev mode)", show_default=False
    ),
    output: Path | None = typer.Option(None, help="Also write the Markdown report here"),
    fps: float = typer.Option(15.0, help="Camera frames per second of each candidate"),
    report_every: float = typer.Option(10.0, help="Window length of the report (s)"),
    speech_every: float = typer.Option(12.0, help="Each candidate speaks once per this (s)"),
    drain: float = typer.Option(45.0, help="Wait at most this long for late transcripts (s)"),
    stack_pid: int = typer.Option(
        0, help="Count CPU/memory only under this process (e.g. `intervue up`'s pid)"
    ),
    json_output: Path | None = typer.Option(None, "--json", help="Also write raw figures"),
    own_invitations: bool = typer.Option(
        True,
        "--own-invitations/--shared-invitation",
        help="Sign one invitation per candidate with the gateway's key when this machine has "
        "it (configured, or `intervue up`'s); else all use the link's",
    ),
) -> None:
    """N synthetic candidates (aiortc: face video + espeak-ng speech) against a running
    stack: analysed fps, glass-to-result over time, drops, CPU/memory per role,
    transcripts."""
    from deploy.log_setup import setup_logging

    setup_logging()
    key = local_invitation_key() if own_invitations else None
    if key is not None and not room and "room=" not in url:
        from deploy.up import UpSettings

        with contextlib.suppress(ValueError):  # an invalid INTERVUE_UP_ setting
            room = UpSettings().room
    if key is not None:
        typer.echo(
            "each candidate gets its own single-use invitation (signing key found)", err=True
        )
    elif sessions > 2:
        typer.echo(
            "all candidates share one invitation (no signing key here): a gateway holds "
            "2 live sessions per invitation unless INTERVUE_GATEWAY_MAX_SESSIONS_PER_INVITATION "
            "says more",
            err=True,
        )
    try:
        report = asyncio.run(
            run_load_async(
                url,
                sessions,
                duration,
                room=room,
                token=token,
                invitation_key=key,
                fps=fps,
                report_every_s=report_every,
                speech_every_s=speech_every,
                drain_s=drain,
                stack_pid=stack_pid or None,
                progress=lambda text: typer.echo(text, err=True),
            )
        )
    except LoadError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    text = report.markdown()
    typer.echo(text)
    if output:
        output.write_text(text, encoding="utf-8")
    if json_output:
        json_output.write_text(report.to_json(), encoding="utf-8")


if __name__ == "__main__":  # python -m deploy.bench.load --sessions 8 …
    typer.run(bench_load)
