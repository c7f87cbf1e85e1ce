"""`intervue bench vision`: what one frame costs the vision worker on this machine.

Measures the default pipeline (JPEG decode → face detection → emotion classification) per
640×480 frame with one face, and — in the same process, on the same frames — a seed-style
baseline: an ultralytics YOLOv8n detector built from its yaml (no weights download; the
cost of a forward pass does not depend on the weight values) running `predict()` on each
decoded 640 frame at batch 1, as the original project did. Prints p50/p95 per stage,
frames/s, and the ratio against the baseline.

With ``--backend`` / ``--sessions`` (`run_engines_bench`) it measures the engines of
issue 6 instead, per backend, in the same process:

* the raw backend call on real face crops at each batch size — crops/s and p50/p95 per
  call, batch 1 as the baseline;
* the worker's engine (`inference.batching.BatchingAnalyzer`, no NATS) with N sessions in
  a closed loop (each session sends its next frame as soon as its result is back, so the
  worker is always saturated): the per-frame loop (batching off, the baseline) against
  cross-session batching — frames/s, crops/s, p50/p95 frame latency, mean batch and
  batch fill.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from deploy.bench.media import face_frames, multi_face_frames
from deploy.bench.tables import loadavg, machine, p50_p95, render
from stream.stats import percentile

log = logging.getLogger(__name__)


def _measure(
    label: str, frames: list[bytes], run: Callable[[bytes], dict[str, float]], warmup: int = 10
) -> dict[str, list[float]]:
    for jpeg in frames[:warmup]:
        run(jpeg)
    stages: dict[str, list[float]] = {}
    for jpeg in tqdm(frames, desc=label, unit="frame", leave=False):
        for stage, ms in run(jpeg).items():
            stages.setdefault(stage, []).append(ms)
    return stages


def _baseline_runner() -> Callable[[bytes], dict[str, float]]:
    os.environ.setdefault("YOLO_OFFLINE", "1")  # no hub, no telemetry, no font fetch
    from ultralytics import YOLO

    model = YOLO("yolov8n.yaml", task="detect")  # built from yaml: nothing downloaded

    def run(jpeg: bytes) -> dict[str, float]:
        t0 = time.perf_counter()
        image = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
        t1 = time.perf_counter()
        model.predict(image, imgsz=640, verbose=False, device="cpu")
        t2 = time.perf_counter()
        return {"decode": (t1 - t0) * 1e3, "detect": (t2 - t1) * 1e3, "total": (t2 - t0) * 1e3}

    return run


def run_vision_bench(
    frames: int = 200, baseline: bool = True, models_dir: Path | None = None
) -> str:
    """Run the benchmark and return the Markdown report."""
    from inference.pipeline import VisionPipeline
    from inference.prepare import default_models_dir, prepare_models

    models_dir = models_dir or default_models_dir()
    prepare_models(models_dir)
    pipeline = VisionPipeline.load(models_dir)
    jpegs = face_frames(frames)

    def ours(jpeg: bytes) -> dict[str, float]:
        analysis = pipeline.analyse_jpeg(jpeg)
        if not analysis.faces:
            raise RuntimeError("the benchmark frame should hold one face; the detector missed it")
        return analysis.timings_ms

    results = {f"intervue ({pipeline.model_name})": _measure("intervue", jpegs, ours)}
    if baseline:
        results["baseline (YOLOv8n predict, batch 1)"] = _measure(
            "baseline", jpegs[: max(20, frames // 4)], _baseline_runner(), warmup=3
        )

    lines = [
        f"### Vision worker, per 640×480 frame with one face ({frames} frames)",
        "",
        f"Machine: {machine()}, Python {platform.python_version()}, OpenCV {cv2.__version__}.",
        "",
        "| pipeline | stage | p50 ms | p95 ms | mean ms |",
        "|---|---|---:|---:|---:|",
    ]
    throughput: dict[str, float] = {}
    for name, stages in results.items():
        for stage, values in stages.items():
            lines.append(
                f"| {name} | {stage} | {p50_p95(values)} | {statistics.fmean(values):.2f} |"
            )
        throughput[name] = 1000.0 / statistics.fmean(stages["total"])
    lines += ["", "| pipeline | frames/s (one thread of work) | × baseline |", "|---|---:|---:|"]
    base = next((v for k, v in throughput.items() if k.startswith("baseline")), None)
    for name, fps in throughput.items():
        ratio = f"{fps / base:.1f}×" if base else "-"
        lines.append(f"| {name} | {fps:.1f} | {ratio} |")
    return render(lines)


# ------------------------------------------------------------------------------ engines


def _backend_rows(pipeline, crops_input, batch_sizes: Sequence[int], calls: int) -> list[dict]:
    """Raw backend calls on real preprocessed face crops."""
    rows = []
    backend = pipeline.backend
    for size in batch_sizes:
        reps = int(np.ceil(size / len(crops_input)))
        x = np.concatenate([crops_input] * reps)[:size]
        for _ in range(3):
            backend.infer(x)
        times = []
        n = max(5, calls // max(1, size // 8))
        for _ in range(n):
            t0 = time.perf_counter()
            backend.infer(x)
            times.append((time.perf_counter() - t0) * 1e3)
        rows.append(
            {
                "batch": size,
                "p50": percentile(times, 50),
                "p95": percentile(times, 95),
                "crops_s": size * 1000.0 / statistics.fmean(times),
            }
        )
    return rows


async def _closed_loop(
    pipeline, jpegs: list[bytes], sessions: int, frames: int, batching: bool, **kw
) -> dict:
    import asyncio

    from inference.batching import BatchingAnalyzer

    latencies: list[float] = []
    sent: dict[str, float] = {}
    counter = {"n": 0, "faces": 0}
    done = asyncio.Event()
    analyzer: BatchingAnalyzer

    def send(session: str) -> None:
        i = counter["n"] + len(sent)
        sent[session] = time.perf_counter()
        analyzer.submit(session, i, jpegs[i % len(jpegs)])

    async def on_result(session, token, analysis, error) -> None:
        latencies.append((time.perf_counter() - sent.pop(session)) * 1e3)
        if error is not None:
            raise error
        counter["n"] += 1
        counter["faces"] += len(analysis.faces)
        if counter["n"] + len(sent) < frames:
            send(session)
        elif not sent:
            done.set()

    analyzer = BatchingAnalyzer(pipeline, on_result, batching=batching, **kw)
    analyzer.start()
    try:
        t0 = time.perf_counter()
        for i in range(sessions):
            send(f"s{i}")
        await asyncio.wait_for(done.wait(), 600)
        wall = time.perf_counter() - t0
    finally:
        await analyzer.stop()
    stats = analyzer.stats
    sizes = stats.batch_sizes
    return {
        "frames_s": counter["n"] / wall,
        "crops_s": counter["faces"] / wall,
        "frames": counter["n"],
        "faces": counter["faces"],
        "wall": wall,
        "latencies": latencies,
        "sizes": sizes,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "mean_batch": statistics.fmean(sizes) if sizes else 1.0,
        "fill": stats.fill(analyzer.max_batch) if sizes else 1.0 / analyzer.max_batch,
        "solo": stats.solo,
        "batches": stats.batches,
    }


def run_engines_bench(
    backends: Sequence[str] = ("auto",),
    sessions: Sequence[int] = (1, 4, 8),
    batch_sizes: Sequence[int] = (1, 8, 32, 64),
    frames: int = 300,
    models_dir: Path | None = None,
    classifier: str = "fer-mini-xception",
    window_ms: float = 2.0,
    max_batch: int = 32,
    concurrency: int = 1,
    faces_per_frame: int = 1,
    rounds: int = 3,
) -> str:
    """Backends × batch sizes (raw calls) and backends × sessions × batching on/off
    (the worker's engine, closed loop). Returns the Markdown report."""
    import asyncio

    from inference.pipeline import VisionPipeline
    from inference.prepare import default_models_dir, prepare_models

    models_dir = models_dir or default_models_dir()
    if classifier == "fer-mini-xception":
        prepare_models(models_dir)
    jpegs = face_frames(max(40, frames // 4)) if faces_per_frame == 1 else multi_face_frames(frames)
    lines = [
        f"### Engines: backends, batch sizes, cross-session batching ({classifier})",
        "",
        f"Machine: {machine()}"
        f"{_gpu_name()}, Python {platform.python_version()}. Worker engine: batch window "
        f"{window_ms:g} ms, max batch {max_batch}, {concurrency} preparing thread(s), "
        f"{'one face' if faces_per_frame == 1 else 'four faces per frame (2×2 tiles)'} "
        f"per 640×480 frame, {frames} frames per row in {rounds} alternating rounds, "
        f"closed loop. Load average at start: {loadavg()}.",
        "",
    ]
    raw_lines = [
        "| backend | batch | p50 ms/call | p95 ms/call | crops/s | × batch 1 |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    worker_lines = [
        "| backend | sessions | mode | frames/s | crops/s | p50 ms | p95 ms | mean batch "
        "| fill | one hop | × per-frame |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name in backends:
        pipeline = VisionPipeline.load(
            models_dir, classifier=classifier, backend=name, max_batch=max(max_batch, *batch_sizes)
        )
        label = pipeline.backend.label + (
            "" if name in ("auto", pipeline.backend.label) else f" (asked {name})"
        )
        prepared = [pipeline.prepare_jpeg(j) for j in jpegs[:16]]
        crops = np.concatenate([p.inputs for p in prepared if p.size])
        if not len(crops):
            raise RuntimeError("the benchmark frames should hold faces; none was found")
        rows = _backend_rows(pipeline, crops, batch_sizes, calls=max(20, frames // 4))
        base = rows[0]["crops_s"] if rows and rows[0]["batch"] == 1 else None
        for r in rows:
            ratio = f"{r['crops_s'] / base:.1f}×" if base else "-"
            raw_lines.append(
                f"| {label} | {r['batch']} | {r['p50']:.3f} | {r['p95']:.3f} "
                f"| {r['crops_s']:.0f} | {ratio} |"
            )
        # the engine runs at the worker's max batch
        pipeline = VisionPipeline.load(
            models_dir, classifier=classifier, backend=name, max_batch=max_batch
        )
        for n in sessions:
            # the two modes alternate in `rounds` short runs, so a change in the machine's
            # load during the run hits both alike; figures are pooled over the rounds
            runs: dict[str, list[dict]] = {"per-frame": [], "batched": []}
            for batching in (False, True):  # warm-up (threads, detectors, caches): not kept
                asyncio.run(_closed_loop(pipeline, jpegs, n, 4 * n, batching, max_batch=max_batch))
            for _ in range(rounds):
                for mode, batching in (("per-frame", False), ("batched", True)):
                    runs[mode].append(
                        asyncio.run(
                            _closed_loop(
                                pipeline,
                                jpegs,
                                n,
                                max(n, frames // rounds),
                                batching,
                                max_batch=max_batch,
                                window_ms=window_ms,
                                prepare_workers=concurrency,
                            )
                        )
                    )
            results = {mode: _pool(rs) for mode, rs in runs.items()}
            per = results["per-frame"]["frames_s"]
            for mode, r in results.items():
                batched = mode == "batched" and r["solo"] < 1.0
                mean_batch = f"{r['mean_batch']:.1f}" if batched else "-"
                fill = f"{r['fill'] * 100:.0f}%" if batched else "-"
                one_hop = f"{r['solo'] * 100:.0f}%" if mode == "batched" else "-"
                worker_lines.append(
                    f"| {label} | {n} | {mode} | {r['frames_s']:.1f} | {r['crops_s']:.1f} "
                    f"| {r['p50']:.2f} | {r['p95']:.2f} | {mean_batch} | {fill} | {one_hop} "
                    f"| {r['frames_s'] / per:.2f}× |"
                )
    lines += ["#### Raw backend call on face crops", "", *raw_lines, ""]
    lines += ["#### Worker engine, N sessions (closed loop)", "", *worker_lines, ""]
    lines.append(
        "mean batch = model inputs per batched inference call; fill = mean batch / max "
        "batch; one hop = frames analysed at once because nothing else was waiting (the "
        "unbatched path); frames/s and latency are pooled over the rounds."
    )
    return render(lines)


def _pool(runs: list[dict]) -> dict:
    """Figures of several runs of one configuration taken together."""
    wall = sum(r["wall"] for r in runs)
    latencies = [v for r in runs for v in r["latencies"]]
    sizes = [v for r in runs for v in r["sizes"]]
    return {
        "frames_s": sum(r["frames"] for r in runs) / wall,
        "crops_s": sum(r["faces"] for r in runs) / wall,
        "p50": percentile(latencies, 50),
        "p95": percentile(latencies, 95),
        "mean_batch": statistics.fmean(sizes) if sizes else 1.0,
        "fill": statistics.fmean(r["fill"] for r in runs),
        "solo": sum(r["solo"] for r in runs) / max(1, sum(r["frames"] for r in runs)),
    }


def _gpu_name() -> str:
    from inference.backends.base import torch_cuda_reason

    if torch_cuda_reason() is not None:
        return ", no GPU"
    import torch

    return f", GPU {torch.cuda.get_device_name(0)}"
