"""The vision worker: frames from the bus in, one emotion result per frame out.

Stateless apart from one waiting frame per session: workers share the load through a
NATS queue group, and a frame that arrives while an older one of the same session still
waits replaces it (latest frame wins; the replaced one is counted as dropped). Model work
runs in threads, never on the event loop.

With ``batching`` on (the default) the worker batches the model inputs (face crops, or
whole letterboxed frames for a single-stage YOLOv8 detector) of all sessions: frames are
decoded and their faces found by `concurrency` preparing threads, and one inference thread
runs one backend call per batch — when `max_batch` inputs are waiting, when the oldest has
waited `batch_window_ms`, or at once when nothing else is on its way (so a lone session
is never slowed down). Results are routed back per session; at most one frame per session
waits at any stage (`inference.batching`). With ``batching`` off every frame is analysed
on its own, as before.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from pathlib import Path
from typing import Literal

from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from inference.batching import Batch, BatchingAnalyzer
from stream import bus, contract
from stream.settings import BusSettings

log = logging.getLogger(__name__)

#: Forget a session's per-session metric labels after this long without a frame.
SESSION_IDLE_S = 120.0


class VisionSettings(BaseSettings):
    """The vision worker (env prefix ``INTERVUE_VISION_``)."""

    model_config = SettingsConfigDict(env_prefix="INTERVUE_VISION_", extra="forbid")

    #: Where `intervue models prepare` put the bundles (default: INTERVUE_MODELS_DIR or
    #: ~/.cache/intervue/models).
    models_dir: Path | None = None
    detector: str = "auto"
    #: The emotion model: a bundle name in `models_dir` or a path to a bundle sidecar /
    #: weights file. A ``classify`` bundle runs on the face detector's crops; a ``detect``
    #: bundle (YOLOv8) runs single-stage and `detector` is not used.
    classifier: str = "fer-mini-xception"
    #: Which runtime runs the emotion model: auto picks the fastest that works here
    #: (tensorrt > onnxruntime-cuda > torch-cuda > onnxruntime-cpu).
    backend: Literal[
        "auto", "onnxruntime", "onnxruntime-cuda", "torch", "torch-cuda", "tensorrt"
    ] = "auto"
    #: Threads per runtime call (ONNX Runtime intra-op, OpenCV).
    threads: int = Field(1, ge=0, le=64)
    #: Frames prepared at once (decode + face detection), each in its own thread.
    concurrency: int = Field(1, ge=1, le=32)
    #: Batch model inputs across sessions (off: every frame on its own).
    batching: bool = True
    #: Longest a prepared frame waits for others to join its batch (ms).
    batch_window_ms: float = Field(2.0, ge=0.0, le=50.0)
    #: Most model inputs (face crops / frames) in one inference call.
    max_batch: int = Field(32, ge=1, le=1024)
    #: Single-stage detectors: score and NMS IoU thresholds.
    conf: float = Field(0.25, gt=0.0, lt=1.0)
    iou: float = Field(0.45, gt=0.0, lt=1.0)
    #: Faces analysed per frame at most (highest scores first).
    max_faces: int = Field(4, ge=1, le=64)
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
            "Per-stage analysis time (ms): decode, detect, classify, wait, total, infer",
            ["stage"],
            buckets=(0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 100, 250),
            registry=self.registry,
        )
        self.sessions = Gauge(
            "intervue_vision_sessions", "Sessions with a waiting frame", registry=self.registry
        )
        self.batch_size = Histogram(
            "intervue_vision_batch_size",
            "Model inputs (face crops or frames) per inference call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
            registry=self.registry,
        )
        self.batch_frames = Histogram(
            "intervue_vision_batch_frames",
            "Frames (sessions) per inference call",
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.dropped = Counter(
            "intervue_vision_dropped_frames",
            "Frames replaced by a newer one of the same session before analysis",
            ["session"],
            registry=self.registry,
        )
        self.sessions_served = Gauge(
            "intervue_vision_sessions_served",
            f"Sessions that sent a frame in the last {SESSION_IDLE_S:.0f} s",
            registry=self.registry,
        )
        self.sessions_total = Counter(
            "intervue_vision_sessions_seen", "Distinct sessions served", registry=self.registry
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
        self.analyzer = BatchingAnalyzer(
            pipeline,
            self._on_result,
            batching=settings.batching,
            max_batch=settings.max_batch,
            window_ms=settings.batch_window_ms,
            prepare_workers=settings.concurrency,
            on_drop=self._on_drop,
            on_batch=self._on_batch,
        )
        self._sub = None
        self._last_seen: dict[str, float] = {}
        self._pruned = time.monotonic()
        self.counts = {"received": 0, "analysed": 0, "dropped": 0, "rejected": 0, "failed": 0}

    async def start(self) -> None:
        await bus.ensure_events_stream(self.js, self.bus_settings)
        self.analyzer.start()
        self._sub = await self.nc.subscribe(
            contract.frames_wildcard(), queue=contract.VISION_QUEUE_GROUP, cb=self._on_frame
        )
        try:  # the server knows the subscription before start() returns
            await self.nc.flush(timeout=2)
        except Exception as exc:
            log.warning("could not flush the frame subscription: %s", exc)
        backend = getattr(self.pipeline, "backend", None)
        log.info(
            "vision worker %s serving %s in queue group %s (model %s, backend %s, %s)",
            self.settings.name,
            contract.frames_wildcard(),
            contract.VISION_QUEUE_GROUP,
            getattr(self.pipeline, "model_name", "?"),
            getattr(backend, "label", "?"),
            f"batching ≤{self.analyzer.max_batch} inputs / {self.settings.batch_window_ms:g} ms"
            if self.analyzer.batching
            else "no batching",
        )

    async def stop(self) -> None:
        if self._sub is not None:
            await self._sub.unsubscribe()
            self._sub = None
        await self.analyzer.stop()

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
        self._seen(frame.session)
        self.analyzer.submit(frame.session, frame, frame.jpeg)
        self.metrics.sessions.set(self.analyzer.waiting_sessions)

    def _seen(self, session: str) -> None:
        now = time.monotonic()
        if session not in self._last_seen:
            self.metrics.sessions_total.inc()
        self._last_seen[session] = now
        if now - self._pruned > 10.0:  # forget idle sessions' labels, at most every 10 s
            self._pruned = now
            for old in [s for s, t in self._last_seen.items() if now - t > SESSION_IDLE_S]:
                del self._last_seen[old]
                self.analyzer.scheduler.forget(old)
                self.analyzer.stats.dropped.pop(old, None)
                try:
                    self.metrics.dropped.remove(old)
                except KeyError:
                    pass
        self.metrics.sessions_served.set(len(self._last_seen))

    def _on_drop(self, session: str, frame: contract.Frame) -> None:
        self.counts["dropped"] += 1
        self.metrics.frames.labels(outcome="dropped").inc()
        self.metrics.dropped.labels(session=session).inc()

    def _on_batch(self, batch: Batch, infer_ms: float) -> None:
        # called from the inference thread; prometheus_client metrics are thread-safe
        self.metrics.batch_size.observe(batch.size)
        self.metrics.batch_frames.observe(len(batch.entries))
        self.metrics.stage_ms.labels(stage="infer").observe(infer_ms)

    async def _on_result(
        self,
        session: str,
        frame: contract.Frame,
        analysis: object,
        error: BaseException | None,
    ) -> None:
        self.metrics.sessions.set(self.analyzer.waiting_sessions)
        if error is not None:
            self.counts["failed"] += 1
            if isinstance(error, ValueError):  # CorruptFrameError and other bad payloads
                self.metrics.frames.labels(outcome="corrupt").inc()
                log.warning("corrupt frame %s/%d: %s", frame.session, frame.seq, error)
            else:
                self.metrics.frames.labels(outcome="error").inc()
                log.error(
                    "analysis failed for %s/%d",
                    frame.session,
                    frame.seq,
                    exc_info=(type(error), error, error.__traceback__),
                )
            return
        result = self._result(frame, analysis)
        try:
            await bus.publish_event(self.js, result, "emotion")
        except Exception as exc:  # JetStream down: the frame is lost, keep serving
            self.metrics.frames.labels(outcome="publish_failed").inc()
            log.warning("could not publish result %s/%d: %s", frame.session, frame.seq, exc)
            return
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
    pipeline = await asyncio.to_thread(
        VisionPipeline.load,
        models_dir,
        settings.detector,
        classifier=settings.classifier,
        threads=settings.threads,
        backend=settings.backend,
        max_batch=settings.max_batch,
        conf=settings.conf,
        iou=settings.iou,
        max_faces=settings.max_faces,
    )
    metrics = WorkerMetrics()
    await bus.serve(
        bus_settings,
        settings.name,
        lambda nc: VisionWorker(nc, pipeline, bus_settings, settings, metrics),
        registry=metrics.registry,
        metrics_port=settings.metrics_port,
    )
