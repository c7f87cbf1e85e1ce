"""Cross-session batching for the vision worker.

Two parts:

`BatchScheduler` — pure, synchronous, no models, no asyncio, a clock passed in: it holds
at most ONE prepared frame per session (a newer frame of the same session replaces the
waiting one, which is returned so the caller counts it as dropped: latest frame wins, a
slow model never builds a queue) and says when to run a batch:

* ``full``   — the waiting frames hold at least `max_batch` model inputs;
* ``window`` — the oldest waiting frame has waited `window_s`;
* ``idle``   — nothing else is on its way (the caller says so: no frame waiting to be
  prepared, none being prepared), so waiting longer would only add latency. This is what
  keeps one session as fast as without batching.

`take` builds one batch of whole frames (a frame's face crops are never split), least
recently served sessions first, so with more sessions than fit in a batch every session
gets its turn (fairness), up to `max_batch` inputs (a single frame larger than that goes
alone; the backend splits it).

`BatchingAnalyzer` — the asyncio engine the worker (and the benchmark) runs: per-session
latest-frame-wins intake → a pool of preparing threads (decode, detect, crop) →
`BatchScheduler` → one inference thread running one backend call per batch → results
routed back per session through a callback. With one session and nothing else queued, a
frame skips the scheduler and is analysed in one hop (exactly the unbatched path).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Pending(Generic[T]):
    """One session's waiting frame."""

    session: str
    item: T
    size: int  # model input rows it brings (face crops, or 1 for a single-stage frame)
    arrived: float


@dataclass
class Batch(Generic[T]):
    """Frames to run in one inference call."""

    entries: list[Pending[T]]
    reason: str  # "full" | "window" | "idle"
    opened: float  # arrival of its oldest frame
    closed: float

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    @property
    def sessions(self) -> list[str]:
        return [e.session for e in self.entries]


class BatchScheduler(Generic[T]):
    """Latest-frame-wins holding area + batch policy (see the module docstring)."""

    def __init__(
        self,
        max_batch: int = 32,
        window_s: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        if window_s < 0:
            raise ValueError("window_s may not be negative")
        self.max_batch = max_batch
        self.window_s = window_s
        self.clock = clock
        self._pending: dict[str, Pending[T]] = {}
        self._last_served: dict[str, int] = {}
        self._turn = itertools.count(1)
        #: per session: frames replaced while waiting, frames handed to a batch
        self.dropped: dict[str, int] = {}
        self.served: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def pending_size(self) -> int:
        return sum(p.size for p in self._pending.values())

    def submit(self, session: str, item: T, size: int, now: float | None = None) -> T | None:
        """Hold `item` as `session`'s waiting frame. Returns the frame it replaced (now
        dropped) or None. A replacing frame keeps the replaced one's arrival time, so a
        session that keeps sending cannot hold the window open forever."""
        if size < 0:
            raise ValueError("size may not be negative")
        now = self.clock() if now is None else now
        old = self._pending.get(session)
        arrived = now if old is None else old.arrived
        self._pending[session] = Pending(session, item, size, arrived)
        if old is None:
            return None
        self.dropped[session] = self.dropped.get(session, 0) + 1
        return old.item

    def due(self, now: float | None = None, upstream_idle: bool = False) -> str | None:
        """Why a batch should run now ("full", "window", "idle"), or None to wait."""
        if not self._pending:
            return None
        now = self.clock() if now is None else now
        if self.pending_size >= self.max_batch:
            return "full"
        oldest = min(p.arrived for p in self._pending.values())
        if now - oldest >= self.window_s - 1e-9:  # float slack
            return "window"
        if upstream_idle:
            return "idle"
        return None

    def wait_time(self, now: float | None = None) -> float | None:
        """Seconds until the window of the oldest waiting frame closes (None if empty)."""
        if not self._pending:
            return None
        now = self.clock() if now is None else now
        oldest = min(p.arrived for p in self._pending.values())
        return max(0.0, oldest + self.window_s - now)

    def take(self, now: float | None = None, reason: str = "forced") -> Batch[T]:
        """Remove and return one batch: least recently served sessions first (then the
        longest waiting), whole frames, at most `max_batch` inputs (at least one frame)."""
        now = self.clock() if now is None else now
        if not self._pending:
            return Batch([], reason, now, now)
        order = sorted(
            self._pending.values(),
            key=lambda p: (self._last_served.get(p.session, 0), p.arrived),
        )
        chosen: list[Pending[T]] = []
        size = 0
        for p in order:
            if chosen and size + p.size > self.max_batch:
                continue  # a smaller frame further down may still fit
            chosen.append(p)
            size += p.size
            if size >= self.max_batch:
                break
        for p in chosen:  # in serving order: an exact least-recently-served order
            del self._pending[p.session]
            self._last_served[p.session] = next(self._turn)
            self.served[p.session] = self.served.get(p.session, 0) + 1
        return Batch(chosen, reason, min(p.arrived for p in chosen), now)

    def forget(self, session: str) -> T | None:
        """Drop everything known about `session` (it ended); returns its waiting frame."""
        self._last_served.pop(session, None)
        self.dropped.pop(session, None)
        self.served.pop(session, None)
        old = self._pending.pop(session, None)
        return old.item if old else None


# ------------------------------------------------------------------------------ engine


@dataclass
class BatchStats:
    """What the analyzer did (the benchmark reads it; the worker mirrors it in Prometheus)."""

    batches: int = 0
    batch_sizes: list[int] = field(default_factory=list)  # model inputs per batch
    batch_frames: list[int] = field(default_factory=list)  # frames per batch
    reasons: dict[str, int] = field(default_factory=dict)
    solo: int = 0  # frames analysed in one hop (nothing else waiting)
    dropped: dict[str, int] = field(default_factory=dict)  # per session
    analysed: int = 0
    failed: int = 0

    def fill(self, max_batch: int) -> float:
        """Mean batch size over `max_batch` (0 when no batch ran)."""
        if not self.batch_sizes:
            return 0.0
        return float(np.mean(self.batch_sizes)) / max_batch


ResultCallback = Callable[[str, Any, Any, "BaseException | None"], Awaitable[None]]


class BatchingAnalyzer:
    """Runs a staged `VisionPipeline` for many sessions at once (see the module doc).

    ``submit(session, token, jpeg)`` hands in a frame (`token` is anything the caller
    wants back, e.g. the bus message); ``on_result(session, token, analysis, error)`` is
    awaited for every frame that is analysed or fails (never for dropped ones; those go to
    ``on_drop(session, token)``). With ``batching=False`` every frame is analysed on its
    own (`pipeline.analyse_jpeg`) by `prepare_workers` threads: the per-frame baseline.
    """

    def __init__(
        self,
        pipeline: Any,
        on_result: ResultCallback,
        *,
        batching: bool = True,
        max_batch: int = 32,
        window_ms: float = 2.0,
        prepare_workers: int = 1,
        on_drop: Callable[[str, Any], None] | None = None,
        on_batch: Callable[[Batch, float], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.on_result = on_result
        self.on_drop = on_drop
        self.on_batch = on_batch
        self.batching = batching and hasattr(pipeline, "prepare_jpeg")
        self.max_batch = max(1, min(max_batch, getattr(pipeline, "max_batch", max_batch) or 1))
        self.scheduler: BatchScheduler[Any] = BatchScheduler(self.max_batch, window_ms / 1000.0)
        self.prepare_workers = prepare_workers
        self.stats = BatchStats()
        self._waiting: OrderedDict[str, tuple[Any, bytes]] = OrderedDict()
        self._preparing = 0
        self._inferring = False
        self._solo_running = 0
        self._wake_prepare = asyncio.Event()
        self._wake_infer = asyncio.Event()
        self._prep_pool = ThreadPoolExecutor(prepare_workers, thread_name_prefix="vision-prep")
        self._infer_pool = ThreadPoolExecutor(1, thread_name_prefix="vision-infer")
        self._tasks: list[asyncio.Task] = []
        self._callbacks: set[asyncio.Task] = set()

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._prepare_loop(), name=f"vision-prepare-{i}")
            for i in range(self.prepare_workers)
        ]
        if self.batching:
            self._tasks.append(asyncio.create_task(self._infer_loop(), name="vision-infer"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        if self._callbacks:
            await asyncio.gather(*self._callbacks, return_exceptions=True)
        self._prep_pool.shutdown(wait=False, cancel_futures=True)
        self._infer_pool.shutdown(wait=False, cancel_futures=True)

    async def drain(self, limit_s: float = 10.0) -> None:
        """Wait until every submitted frame is analysed (benchmarks, tests)."""
        deadline = time.monotonic() + limit_s
        while (
            self._waiting
            or self._preparing
            or len(self.scheduler)
            or self._inferring
            or self._solo_running
            or self._callbacks
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("frames still in flight")
            await asyncio.sleep(0.001)

    @property
    def waiting_sessions(self) -> int:
        return len(self._waiting) + len(self.scheduler)

    # ------------------------------------------------------------------ intake

    def submit(self, session: str, token: Any, jpeg: bytes) -> bool:
        """Queue a frame; True if it replaced the session's waiting (dropped) frame."""
        replaced = False
        if session in self._waiting:
            old_token, _ = self._waiting.pop(session)  # re-insert at the end: round robin
            self._dropped(session, old_token)
            replaced = True
        self._waiting[session] = (token, jpeg)
        self._wake_prepare.set()
        return replaced

    def _dropped(self, session: str, token: Any) -> None:
        self.stats.dropped[session] = self.stats.dropped.get(session, 0) + 1
        if self.on_drop:
            self.on_drop(session, token)

    def _deliver(self, session: str, token: Any, analysis: Any, error: BaseException | None):
        if error is None:
            self.stats.analysed += 1
        else:
            self.stats.failed += 1
        task = asyncio.create_task(self.on_result(session, token, analysis, error))
        self._callbacks.add(task)
        task.add_done_callback(self._callbacks.discard)

    def _upstream_idle(self) -> bool:
        return not self._waiting and self._preparing == 0

    # ------------------------------------------------------------------ loops

    async def _prepare_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._wake_prepare.clear()
                await self._wake_prepare.wait()
                continue
            session, (token, jpeg) = self._waiting.popitem(last=False)
            solo = not self.batching or (
                not self._waiting
                and self._preparing == 0
                and not len(self.scheduler)
                and not self._inferring
            )
            if solo:
                self._solo_running += 1
                try:
                    analysis = await loop.run_in_executor(
                        self._prep_pool, self.pipeline.analyse_jpeg, jpeg
                    )
                except Exception as exc:
                    self._deliver(session, token, None, exc)
                else:
                    self.stats.solo += 1
                    self._deliver(session, token, analysis, None)
                finally:
                    self._solo_running -= 1
                    self._wake_infer.set()
                continue
            self._preparing += 1
            try:
                prepared = await loop.run_in_executor(
                    self._prep_pool, self.pipeline.prepare_jpeg, jpeg
                )
            except Exception as exc:
                self._deliver(session, token, None, exc)
                continue
            finally:
                self._preparing -= 1
                self._wake_infer.set()
            if prepared.size == 0:  # no face: nothing for the model to do
                try:
                    analysis = self.pipeline.finish(prepared, None, infer_ms=0.0)
                except Exception as exc:
                    self._deliver(session, token, None, exc)
                else:
                    self._deliver(session, token, analysis, None)
                continue
            replaced = self.scheduler.submit(session, (token, prepared), prepared.size)
            if replaced is not None:
                self._dropped(session, replaced[0])
            self._wake_infer.set()

    async def _infer_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            reason = self.scheduler.due(upstream_idle=self._upstream_idle())
            if reason is None:
                self._wake_infer.clear()
                timeout = self.scheduler.wait_time()
                try:
                    await asyncio.wait_for(self._wake_infer.wait(), timeout)
                except TimeoutError:
                    pass
                continue
            batch = self.scheduler.take(reason=reason)
            self._inferring = True
            try:
                results = await loop.run_in_executor(self._infer_pool, self._run_batch, batch)
            finally:
                self._inferring = False
            for (session, token), outcome in results:
                if isinstance(outcome, BaseException):
                    self._deliver(session, token, None, outcome)
                else:
                    self._deliver(session, token, outcome, None)
            self._wake_prepare.set()

    def _run_batch(self, batch: Batch) -> list[tuple[tuple[str, Any], Any]]:
        """In the inference thread: one backend call, then each frame's analysis."""
        frames = [(e.session, e.item[0], e.item[1]) for e in batch.entries]
        inputs = np.concatenate([p.inputs for _, _, p in frames])
        t0 = time.perf_counter()
        try:
            outputs = self.pipeline.infer(inputs)
        except Exception as exc:
            log.exception("batch of %d inputs failed", inputs.shape[0])
            return [((s, t), exc) for s, t, _ in frames]
        infer_ms = (time.perf_counter() - t0) * 1e3
        self.stats.batches += 1
        self.stats.batch_sizes.append(int(inputs.shape[0]))
        self.stats.batch_frames.append(len(frames))
        self.stats.reasons[batch.reason] = self.stats.reasons.get(batch.reason, 0) + 1
        if self.on_batch:
            self.on_batch(batch, infer_ms)
        results: list[tuple[tuple[str, Any], Any]] = []
        row = 0
        for session, token, prepared in frames:
            rows = outputs[row : row + prepared.size]
            row += prepared.size
            try:
                results.append(
                    ((session, token), self.pipeline.finish(prepared, rows, infer_ms=infer_ms))
                )
            except Exception as exc:
                results.append(((session, token), exc))
        return results
