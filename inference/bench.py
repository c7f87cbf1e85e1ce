"""`intervue bench vision`: what one frame costs the vision worker on this machine.

Measures the default pipeline (JPEG decode → face detection → emotion classification) per
640×480 frame with one face, and — in the same process, on the same frames — a seed-style
baseline: an ultralytics YOLOv8n detector built from its yaml (no weights download; the
cost of a forward pass does not depend on the weight values) running `predict()` on each
decoded 640 frame at batch 1, as the original project did. Prints p50/p95 per stage,
frames/s, and the ratio against the baseline.
"""

from __future__ import annotations

import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

log = logging.getLogger(__name__)


def face_frames(count: int, size: tuple[int, int] = (640, 480), quality: int = 80) -> list[bytes]:
    """`count` JPEG frames with one real face (scikit-image's astronaut photo), drifting a
    few pixels per frame so no two frames are identical."""
    try:
        from skimage import data
    except ImportError as exc:  # the dev extra brings it
        raise RuntimeError("the benchmark needs scikit-image (pip install intervue[dev])") from exc
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    crop = astronaut[0:300, 100:380]  # head and shoulders
    width, height = size
    scale = 400 / crop.shape[0]
    face = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(count):
        canvas = np.full((height, width, 3), 90, np.uint8)
        dx = 100 + (i * 3) % 40
        dy = 40 + (i * 2) % 30
        fh, fw = min(face.shape[0], height - dy), min(face.shape[1], width - dx)
        canvas[dy : dy + fh, dx : dx + fw] = face[:fh, :fw]
        ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        frames.append(buf.tobytes())
    return frames


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


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
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, OpenCV {cv2.__version__}.",
        "",
        "| pipeline | stage | p50 ms | p95 ms | mean ms |",
        "|---|---|---:|---:|---:|",
    ]
    throughput: dict[str, float] = {}
    for name, stages in results.items():
        for stage, values in stages.items():
            lines.append(
                f"| {name} | {stage} | {_pct(values, 50):.2f} | {_pct(values, 95):.2f} "
                f"| {statistics.fmean(values):.2f} |"
            )
        throughput[name] = 1000.0 / statistics.fmean(stages["total"])
    lines += ["", "| pipeline | frames/s (one thread of work) | × baseline |", "|---|---:|---:|"]
    base = next((v for k, v in throughput.items() if k.startswith("baseline")), None)
    for name, fps in throughput.items():
        ratio = f"{fps / base:.1f}×" if base else "-"
        lines.append(f"| {name} | {fps:.1f} | {ratio} |")
    return "\n".join(lines) + "\n"
