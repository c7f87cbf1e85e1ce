"""Shared helpers for the model tests, and the detector/pipeline benchmark.

Test frames are built from real images that scikit-image ships (no downloads):
``astronaut()`` (Eileen Collins; her face box annotated by hand below) placed into
640×480 frames at several sizes, positions and brightness levels, the 100 faces of
``lfw_subset.npy`` (25×25 crops) upscaled into frames, and faceless frames (coffee, rocket,
the Chelsea cat, textures, and the 100 non-face patches of ``lfw_subset.npy``).

Run the benchmark (prints markdown tables; numbers go to docs/face-detector.md)::

    .venv/bin/python tests/_models.py detectors
    .venv/bin/python tests/_models.py pipeline
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

FRAME_W, FRAME_H = 640, 480
#: Eileen Collins' face in skimage.data.astronaut() (512×512): hairline to chin, cheek
#: to cheek, annotated by hand.
ASTRONAUT_FACE = (175.0, 65.0, 275.0, 170.0)


def astronaut_bgr() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[:, :, ::-1])


def astronaut_frame(
    face_width: float = 160.0,
    centre: tuple[float, float] = (320.0, 220.0),
    brightness: float = 1.0,
    angle: float = 0.0,
    background: int = 110,
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A 640×480 BGR frame holding the astronaut image scaled so her face is
    `face_width` px wide, its centre at `centre`, rotated by `angle` degrees (in-plane),
    pixel values times `brightness`. Returns (frame, true face box in frame pixels)."""
    src = astronaut_bgr()
    fx1, fy1, fx2, fy2 = ASTRONAUT_FACE
    scale = face_width / (fx2 - fx1)
    fcx, fcy = (fx1 + fx2) / 2, (fy1 + fy2) / 2
    matrix = cv2.getRotationMatrix2D((fcx, fcy), angle, scale)
    matrix[0, 2] += centre[0] - fcx
    matrix[1, 2] += centre[1] - fcy
    frame = cv2.warpAffine(
        src,
        matrix,
        (FRAME_W, FRAME_H),
        flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=(background,) * 3,
    )
    if brightness != 1.0:
        frame = np.clip(frame.astype(np.float32) * brightness, 0, 255).astype(np.uint8)
    corners = np.array([[fx1, fy1, 1], [fx2, fy1, 1], [fx1, fy2, 1], [fx2, fy2, 1]])
    mapped = corners @ matrix.T
    box = (mapped[:, 0].min(), mapped[:, 1].min(), mapped[:, 0].max(), mapped[:, 1].max())
    return frame, tuple(float(v) for v in box)


def lfw_subset() -> tuple[np.ndarray, np.ndarray]:
    """(faces, non_faces): two (100, 25, 25) float arrays in [0, 1]."""
    import skimage

    data = np.load(Path(skimage.__file__).parent / "data" / "lfw_subset.npy")
    return data[:100], data[100:]


def patch_frame(
    patch: np.ndarray, side: int, centre: tuple[int, int], background: int = 110
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A gray 25×25 patch in [0, 1] upscaled to `side` px and pasted into a 640×480 BGR
    frame; returns (frame, pasted box)."""
    big = cv2.resize((patch * 255).astype(np.uint8), (side, side), interpolation=cv2.INTER_CUBIC)
    frame = np.full((FRAME_H, FRAME_W), background, np.uint8)
    x1, y1 = centre[0] - side // 2, centre[1] - side // 2
    frame[y1 : y1 + side, x1 : x1 + side] = big
    return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR), (x1, y1, x1 + side, y1 + side)


def faceless_frames() -> Iterator[tuple[str, np.ndarray]]:
    """Named 640×480 BGR frames with no human face in them."""
    from skimage import data

    for name in (
        "coffee",
        "rocket",
        "chelsea",
        "brick",
        "grass",
        "gravel",
        "hubble_deep_field",
        "coins",
        "text",
    ):
        img = getattr(data, name)()
        if img.ndim == 2:
            img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
        yield (
            name,
            cv2.resize(
                np.ascontiguousarray(img[:, :, ::-1]),
                (FRAME_W, FRAME_H),
                interpolation=cv2.INTER_AREA,
            ),
        )
    _, non_faces = lfw_subset()
    rng = np.random.default_rng(1)
    for i, patch in enumerate(non_faces):
        side = int(rng.choice([100, 160]))
        cx, cy = int(rng.integers(120, 520)), int(rng.integers(100, 380))
        yield f"lfw-nonface-{i}", patch_frame(patch, side, (cx, cy))[0]


def astronaut_scenes() -> Iterator[tuple[str, np.ndarray, tuple[float, float, float, float]]]:
    """Named face frames: 5 sizes × 3 positions × 3 brightness levels, plus rotations."""
    positions = {"centre": (320, 220), "top-left": (150, 130), "bottom-right": (500, 360)}
    for width in (50, 80, 120, 180, 260):
        for pos_name, centre in positions.items():
            if width >= 180 and pos_name != "centre":
                centre = (320 + (centre[0] - 320) // 3, 240 + (centre[1] - 240) // 3)
            for brightness in (0.45, 1.0, 1.5):
                frame, box = astronaut_frame(width, centre, brightness)
                yield f"w{width}-{pos_name}-b{brightness}", frame, box
    for angle in (-25, -12, 12, 25):
        frame, box = astronaut_frame(140, (320, 220), 1.0, angle)
        yield f"w140-rot{angle}", frame, box


def lfw_scenes() -> Iterator[tuple[str, np.ndarray, tuple[float, float, float, float]]]:
    faces, _ = lfw_subset()
    rng = np.random.default_rng(0)
    for i, patch in enumerate(faces):
        side = int(rng.choice([100, 160]))
        cx, cy = int(rng.integers(120, 520)), int(rng.integers(100, 380))
        frame, box = patch_frame(patch, side, (cx, cy))
        yield f"lfw-{i}", frame, box


def jpeg(frame: np.ndarray, quality: int = 80) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return buf.tobytes()


# ------------------------------------------------------------------ benchmark


@dataclass
class DetectorScore:
    name: str
    astro_hits: int
    astro_total: int
    lfw_hits: int
    lfw_total: int
    fp_frames: int
    faceless_total: int
    extra_boxes: int
    p50: float
    p95: float
    by_width: dict[str, str]


def _hit(boxes, truth, threshold: float = 0.3) -> tuple[bool, int]:
    from inference.face import iou

    matched = [b for b in boxes if iou(b, truth) >= threshold]
    return bool(matched), len(boxes) - min(len(matched), 1)


def score_detector(label: str, detector, repeats: int = 2) -> DetectorScore:
    astro = list(astronaut_scenes())
    lfw = list(lfw_scenes())
    faceless = list(faceless_frames())
    detector.detect(astro[0][1])  # warm-up
    times: list[float] = []
    astro_hits = lfw_hits = extra = fp = 0
    by_width: dict[str, list[int]] = {}
    for name, frame, box in astro:
        for _ in range(repeats):
            t = time.perf_counter()
            boxes = detector.detect(frame)
            times.append((time.perf_counter() - t) * 1000)
        hit, more = _hit(boxes, box)
        astro_hits += hit
        extra += more
        counts = by_width.setdefault(name.split("-")[0], [0, 0])
        counts[0] += hit
        counts[1] += 1
    for _, frame, box in lfw:
        hit, more = _hit(detector.detect(frame), box)
        lfw_hits += hit
        extra += more
    for _, frame in faceless:
        fp += bool(detector.detect(frame))
    q = statistics.quantiles(times, n=20)
    return DetectorScore(
        label,
        astro_hits,
        len(astro),
        lfw_hits,
        len(lfw),
        fp,
        len(faceless),
        extra,
        statistics.median(times),
        q[18],
        {width: f"{h}/{n}" for width, (h, n) in by_width.items()},
    )


def bench_detectors(threads: int) -> None:
    from inference.face import (
        BlazeFaceDetector,
        BlazeFaceFullDetector,
        HaarFaceDetector,
        MtcnnFaceDetector,
    )

    cv2.setNumThreads(threads)
    import torch

    torch.set_num_threads(threads)
    candidates = [
        ("blazeface (short range, 128²)", lambda: BlazeFaceDetector(threads=threads)),
        ("blazeface-full (192²)", lambda: BlazeFaceFullDetector(threads=threads)),
        ("haar @320 px wide, min face 60", lambda: HaarFaceDetector(detect_width=320, min_face=60)),
        ("haar @160 px wide, min face 60", lambda: HaarFaceDetector(detect_width=160, min_face=60)),
        ("haar @640 (full), min face 40", lambda: HaarFaceDetector(detect_width=640, min_face=40)),
        (
            "mtcnn @320 px wide, min face 40",
            lambda: MtcnnFaceDetector(min_face=40, detect_width=320),
        ),
    ]
    print(f"threads={threads}, cores={os.cpu_count()}, load={os.getloadavg()[0]:.2f}")
    print(
        "| detector | astronaut recall | LFW recall | faceless frames with a box "
        "| extra boxes on face frames | p50 ms | p95 ms |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    scores = []
    for label, make in candidates:
        s = score_detector(label, make())
        scores.append(s)
        print(
            f"| {s.name} | {s.astro_hits}/{s.astro_total} ({s.astro_hits / s.astro_total:.0%}) "
            f"| {s.lfw_hits}/{s.lfw_total} ({s.lfw_hits / s.lfw_total:.0%}) "
            f"| {s.fp_frames}/{s.faceless_total} | {s.extra_boxes} | {s.p50:.2f} | {s.p95:.2f} |",
            flush=True,
        )
    widths = list(scores[0].by_width)
    print("\nastronaut recall by face width (px in the 640×480 frame; w140 = rotated ±12°/±25°)")
    print("| detector | " + " | ".join(widths) + " |")
    print("| --- " * (len(widths) + 1) + "|")
    for s in scores:
        print(f"| {s.name} | " + " | ".join(s.by_width[w] for w in widths) + " |")


def bench_pipeline(threads: int, iterations: int = 300) -> None:
    import tempfile

    from inference.pipeline import VisionPipeline
    from inference.prepare import prepare_models

    frame, _ = astronaut_frame(160, (320, 220))
    data = jpeg(frame)
    print(
        f"640×480 JPEG q80 ({len(data)} bytes), one face 160 px wide; threads={threads}; "
        f"cores={os.cpu_count()}, load={os.getloadavg()[0]:.2f}; {iterations} frames"
    )
    print(
        "| detector | decode_reduction | decode p50/p95 | detect p50/p95 "
        "| classify p50/p95 | total p50/p95 |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        prepare_models(Path(tmp))
        for detector in ("blazeface", "haar"):
            for reduction in (1, 2):
                pipe = VisionPipeline.load(
                    Path(tmp), detector, threads=threads, decode_reduction=reduction
                )
                for _ in range(10):
                    pipe.analyse_jpeg(data)
                rows = [pipe.analyse_jpeg(data) for _ in range(iterations)]
                assert all(len(r.faces) == 1 for r in rows), "face lost"
                cells = []
                for key in ("decode", "detect", "classify", "total"):
                    values = [r.timings_ms[key] for r in rows]
                    p50 = statistics.median(values)
                    p95 = statistics.quantiles(values, n=20)[18]
                    cells.append(f"{p50:.2f} / {p95:.2f}")
                print(
                    f"| {pipe.model_name} | {reduction} | " + " | ".join(cells) + " |", flush=True
                )


def main(argv: list[str] | None = None) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["detectors", "pipeline"])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    if args.what == "detectors":
        bench_detectors(args.threads)
    else:
        bench_pipeline(args.threads)


if __name__ == "__main__":
    main()
