"""Model bundles for trained models (on top of `inference.bundle`, which is unchanged).

Every model `training.fit` trains ends as an ONNX bundle (``<name>.onnx`` + ``<name>.json``
+ ``<name>.md`` card) written with `inference.bundle.save_bundle`:

* classifiers (YOLOv8-cls and the torchvision baselines): task ``classify``, the labels in
  the model's output order, the input size, ``rgb``, scale/mean/std and the resize mode of
  the model's own validation transform, and the face-crop geometry the training crops used
  (``crop_margin``, ``square_crop``), so `inference.emotion.EmotionClassifier` loads and runs
  them exactly like the shipped FER bundle;
* detectors (YOLOv8 detect): task ``detect``, the labels are the detector's classes, input
  ``[imgsz, imgsz]``, ``letterbox`` resize. `BundleMeta` has no field for a detector's raw
  output or its letterbox padding value, so they go in ``extra`` (backwards compatible:
  ``extra`` is free-form and old readers ignore it)::

      extra.detect_output = {"layout": "yolov8", "shape": "batch, 4 + classes, anchors",
                             "boxes": "cx, cy, w, h in input pixels",
                             "scores": "per-class sigmoid", "nms": false}
      extra.letterbox_pad = 114     # ultralytics pads with grey 114, not 0

  ``output`` is ``probabilities`` (the class scores are sigmoid probabilities).
  `DetectRunner` runs such a bundle with ONNX Runtime (top-scoring box, no NMS needed for
  one face per image; `detections` applies NMS for several).

Export is the exporter's PyTorch → verified ONNX step (`inference.onnx_io.export_torch`:
TorchScript exporter, opset 17, a dynamic batch axis, checked against the PyTorch model
with ONNX Runtime within the one fp32 tolerance, ``TOLERANCES["fp32"]``) before the bundle
is written. The preprocessing each kind of model is written with comes from
`inference.preprocess` (the definitions the runtime reads it back with).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.bundle import Bundle, BundleError, BundleMeta, Preprocess, load_bundle, save_bundle
from inference.onnx_io import export_torch
from inference.preprocess import detect_extra, ultralytics_detect_preprocess
from inference.yolo import YoloEmotionDetector

log = logging.getLogger(__name__)


def export_onnx(
    module: Any,
    path: Path | str,
    input_size: tuple[int, int],
    channels: int = 3,
    output_name: str = "output",
    check_batch: int = 2,
    seed: int = 0,
    task: str = "classify",
) -> float:
    """Export `module` (eval mode, CPU) to ONNX at `path` with a dynamic batch axis and
    check it on one seeded random batch (`inference.onnx_io.export_torch`); returns the
    max abs difference (raises `inference.onnx_io.VerificationError`, an `ExportError`,
    beyond the fp32 tolerance)."""
    import torch

    module = module.eval().cpu()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(check_batch, channels, *input_size, generator=gen).numpy()
    _, result = export_torch(
        module,
        path,
        channels,
        input_size,
        x,
        output_name=output_name,
        reference=f"PyTorch ({Path(path).name})",
        task=task,
    )
    return result.max_abs_error


def classify_meta(
    name: str,
    labels: Sequence[str],
    input_size: tuple[int, int],
    *,
    preprocess: Preprocess,
    output: str,
    source: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    license: str = "see the training data's terms",
) -> BundleMeta:
    """Metadata of an RGB NCHW classifier bundle (weights/sha256 filled when saved);
    `preprocess` from `inference.preprocess` (ultralytics' or torchvision's)."""
    return BundleMeta(
        name=name,
        task="classify",
        format="onnx",
        labels=tuple(labels),
        input_size=tuple(input_size),
        channels=3,
        color="rgb",
        layout="nchw",
        output=output,
        preprocess=preprocess,
        source=dict(source or {}),
        extra=dict(extra or {}),
        license=license,
    )


def detect_meta(
    name: str,
    labels: Sequence[str],
    imgsz: int,
    *,
    source: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    license: str = "see the training data's terms (AGPL-3.0 for ultralytics YOLOv8 code)",
) -> BundleMeta:
    """Metadata of a YOLOv8 detection bundle (see the module doc for ``extra``)."""
    return BundleMeta(
        name=name,
        task="detect",
        format="onnx",
        labels=tuple(labels),
        input_size=(imgsz, imgsz),
        channels=3,
        color="rgb",
        layout="nchw",
        output="probabilities",
        preprocess=ultralytics_detect_preprocess(),
        source=dict(source or {}),
        extra={**detect_extra(), **(extra or {})},
        license=license,
    )


def write_bundle(meta: BundleMeta, onnx_path: Path, directory: Path, card_text: str) -> Bundle:
    """Save the bundle (the weights copied next to the sidecar unless already there as
    ``<name>.onnx``; the card written; the sidecar last) and read it back, so a bundle
    that cannot be read never counts as written."""
    directory.mkdir(parents=True, exist_ok=True)
    card = directory / f"{meta.name}.md"
    card.write_text(card_text, encoding="utf-8")
    bundle = save_bundle(meta, onnx_path, directory, card=card)
    return load_bundle(bundle.meta_path, verify=False)  # readable; sha256 just computed


# ---------------------------------------------------------------------------- detect runner


class DetectRunner:
    """The single best box per image of a YOLOv8 ``detect`` ONNX bundle (evaluation: one
    face per image, no NMS needed). Preparing and running the model is the worker's own
    detector's (`inference.yolo.YoloEmotionDetector`: letterbox, colour order, scaling,
    the onnxruntime backend), so evaluation sees what the product sees."""

    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        meta = bundle.meta
        if meta.task != "detect" or meta.format != "onnx":
            raise BundleError(f"bundle {meta.name} is not an ONNX detect bundle")
        self.meta = meta
        self._detector = YoloEmotionDetector(bundle, backend="onnxruntime", threads=threads)

    @classmethod
    def load(cls, path: Path | str, threads: int = 1) -> DetectRunner:
        return cls(load_bundle(path), threads=threads)

    def raw(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, list[tuple[float, int, int]]]:
        """(batch, 4 + classes, anchors) outputs and each image's (scale, left, top)."""
        prepared = [self._detector.prepare(image) for image in images]
        x = np.concatenate([p[0] for p in prepared])
        out = self._detector.backend.infer(x)
        return np.asarray(out, dtype=np.float32), [p[1] for p in prepared]

    def top(self, images: Sequence[np.ndarray]) -> list[tuple[str, float, np.ndarray, tuple]]:
        """Per image: (label, score, all class scores of that box, box x1, y1, x2, y2 in
        the image's pixels) of the single highest-scoring box."""
        if not images:
            return []
        out, geometry = self.raw(images)
        results = []
        for pred, (s, left, top) in zip(out, geometry, strict=True):
            scores = pred[4:]  # (classes, anchors)
            anchor = int(np.argmax(scores.max(axis=0)))
            cls = int(np.argmax(scores[:, anchor]))
            cx, cy, w, h = pred[:4, anchor]
            box = (
                float((cx - w / 2 - left) / s),
                float((cy - h / 2 - top) / s),
                float((cx + w / 2 - left) / s),
                float((cy + h / 2 - top) / s),
            )
            results.append(
                (self.meta.labels[cls], float(scores[cls, anchor]), scores[:, anchor].copy(), box)
            )
        return results

    def detections(
        self, image: np.ndarray, conf: float = 0.25, iou: float = 0.45
    ) -> list[tuple[str, float, tuple[float, float, float, float]]]:
        """All boxes above `conf` after class-agnostic NMS: (label, score, box)."""
        out, geometry = self.raw([image])
        pred, (s, left, top) = out[0], geometry[0]
        scores = pred[4:].max(axis=0)
        keep = scores >= conf
        if not np.any(keep):
            return []
        cls = pred[4:, keep].argmax(axis=0)
        cx, cy, w, h = pred[:4, keep]
        boxes = np.stack([(cx - w / 2 - left) / s, (cy - h / 2 - top) / s, w / s, h / s], axis=1)
        idx = cv2.dnn.NMSBoxes(boxes.tolist(), scores[keep].tolist(), conf, iou)
        result = []
        for i in np.asarray(idx).reshape(-1):
            x, y, bw, bh = boxes[i]
            result.append(
                (self.meta.labels[int(cls[i])], float(scores[keep][i]), (x, y, x + bw, y + bh))
            )
        return result
