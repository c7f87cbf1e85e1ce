"""The vision worker: frames from the bus in, one emotion result per frame out.

Stateless apart from one waiting frame per session: workers share the load through a
NATS queue group, and a frame that arrives while an older one of the same session still
waits replaces it (latest frame wins; the replaced one is counted as dropped). Model work
runs in a thread pool, never on the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream import bus, contract
from stream.settings import BusSettings

log = logging.getLogger(__name__)


class VisionSettings(BaseSettings):
    """The vision worker (env prefix ``INTERVUE_VISION_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_VISION_", extra="forbid")

    #: Where `intervue models prepare` put the bundles (default: INTERVUE_MODELS_DIR or
    #: ~/.cache/intervue/models).
    models_dir: Path | None = None
    detector: str = "auto"
    #: Frames analysed at once by this worker (each analysis uses its own threads too).
    concurrency: int = Field(1, ge=1, le=32)
    #: Serve Prometheus metrics on this port (0 = off).
    metrics_port: int = Field(0, ge=0, le=65535)
    name: str = Field(default_factory=lambda: f"vision-{socket.gethostname()}-{os.getpid()}")


class WorkerMetrics:
    """Prometheus metrics of one worker, in their own registry (no module globals)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.frames = Counter(
            "intervue_vision_frames", "Frames received", ["outcome"], registry=self.registry
        )
        self.stage_ms = Histogram(
            "intervue_vision_stage_ms",
            "Per-stage analysis time (ms)",
            ["stage"],
            buckets=(1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 250),
            registry=self.registry,
        )
        self.sessions = Gauge(
            "intervue_vision_sessions", "Sessions with a waiting frame", registry=self.registry
        )


class VisionWorker:
    """Subscribes to every session's frames in a queue group and publishes results."""

    def __init__(
        self,
        nc: NATS,
        pipeline: object,
        bus_settings: BusSettings,
        settings: VisionSettings,
        metrics: WorkerMetrics | None = None,
    ) -> None:
        self.nc = nc
        self.js: JetStreamContext = nc.jetstream()
        self.pipeline = pipeline
        self.bus_settings = bus_settings
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        # session → newest waiting frame; OrderedDict gives round-robin fairness.
        self._waiting: OrderedDict[str, contract.Frame] = OrderedDict()
        self._wakeup = asyncio.Event()
        self._pool = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="vision")
        self._tasks: list[asyncio.Task] = []
        self._sub = None
        self.counts = {"received": 0, "analysed": 0, "dropped": 0, "rejected": 0, "failed": 0}

    async def start(self) -> None:
        await bus.ensure_events_stream(self.js, self.bus_settings)
        self._sub = await self.nc.subscribe(
            contract.frames_wildcard(), queue=contract.VISION_QUEUE_GROUP, cb=self._on_frame
        )
        self._tasks = [
            asyncio.create_task(self._analyse_loop(), name=f"analyse-{i}")
            for i in range(self.settings.concurrency)
        ]
        log.info(
            "vision worker %s serving %s in queue group %s (model %s)",
            self.settings.name,
            contract.frames_wildcard(),
            contract.VISION_QUEUE_GROUP,
            getattr(self.pipeline, "model_name", "?"),
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _reject(self, reason: str, subject: str, detail: str = "") -> None:
        self.counts["rejected"] += 1
        self.metrics.frames.labels(outcome=f"rejected_{reason}").inc()
        log.warning("skipped a frame on %s: %s %s", subject, reason, detail)

    async def _on_frame(self, msg: Msg) -> None:
        self.counts["received"] += 1
        if len(msg.data) > self.bus_settings.frame_max_bytes:
            self._reject("oversized", msg.subject, f"({len(msg.data)} bytes)")
            return
        try:
            frame = contract.decode(msg.data, contract.Frame)
        except contract.ContractError as exc:
            self._reject("undecodable", msg.subject, str(exc))
            return
        if frame.session != contract.session_from_subject(msg.subject):
            self._reject("session_mismatch", msg.subject)
            return
        if frame.session in self._waiting:
            self.counts["dropped"] += 1
            self.metrics.frames.labels(outcome="dropped").inc()
            del self._waiting[frame.session]  # re-insert at the end: fair round robin
        self._waiting[frame.session] = frame
        self.metrics.sessions.set(len(self._waiting))
        self._wakeup.set()

    async def _analyse_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._waiting:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            _, frame = self._waiting.popitem(last=False)
            self.metrics.sessions.set(len(self._waiting))
            try:
                analysis = await loop.run_in_executor(
                    self._pool, self.pipeline.analyse_jpeg, frame.jpeg
                )
            except ValueError as exc:  # CorruptFrameError and other bad payloads
                self.counts["failed"] += 1
                self.metrics.frames.labels(outcome="corrupt").inc()
                log.warning("corrupt frame %s/%d: %s", frame.session, frame.seq, exc)
                continue
            except Exception:
                self.counts["failed"] += 1
                self.metrics.frames.labels(outcome="error").inc()
                log.exception("analysis failed for %s/%d", frame.session, frame.seq)
                continue
            result = self._result(frame, analysis)
            try:
                await bus.publish_event(self.js, result, "emotion")
            except Exception as exc:  # JetStream down: the frame is lost, keep serving
                self.metrics.frames.labels(outcome="publish_failed").inc()
                log.warning("could not publish result %s/%d: %s", frame.session, frame.seq, exc)
                continue
            self.counts["analysed"] += 1
            self.metrics.frames.labels(outcome="analysed").inc()
            for stage, ms in analysis.timings_ms.items():
                self.metrics.stage_ms.labels(stage=stage).observe(ms)

    def _result(self, frame: contract.Frame, analysis: object) -> contract.EmotionResult:
        faces = [
            contract.Face(
                box=tuple(round(v, 1) for v in face.box),
                detector_score=round(float(face.detector_score), 4),
                probs={k: round(float(p), 4) for k, p in face.probs.items()},
                label=face.label,
                confidence=round(float(face.confidence), 4),
                valence="positive" if face.label in contract.POSITIVE_EMOTIONS else "negative",
            )
            for face in analysis.faces
        ]
        return contract.EmotionResult(
            session=frame.session,
            seq=frame.seq,
            capture_ms=frame.capture_ms,
            capture_source=frame.capture_source,
            frame_sent_ms=frame.sent_ms,
            done_ms=contract.now_ms(),
            width=analysis.width,
            height=analysis.height,
            faces=faces,
            timings={k: round(v, 3) for k, v in analysis.timings_ms.items()},
            worker=self.settings.name,
            model=getattr(self.pipeline, "model_name", ""),
        )


async def run_vision_worker(bus_settings: BusSettings, settings: VisionSettings) -> None:
    """Entry point of `intervue worker vision`: load models, serve until cancelled."""
    from inference.pipeline import VisionPipeline
    from inference.prepare import default_models_dir

    models_dir = settings.models_dir or default_models_dir()
    pipeline = await asyncio.to_thread(VisionPipeline.load, models_dir, settings.detector)
    metrics = WorkerMetrics()
    await bus.serve(
        bus_settings,
        settings.name,
        lambda nc: VisionWorker(nc, pipeline, bus_settings, settings, metrics),
        registry=metrics.registry,
        metrics_port=settings.metrics_port,
    )
