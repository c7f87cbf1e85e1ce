"""A YOLOv8 ``detect`` bundle as a single-stage emotion model: its boxes are the faces,
its classes the emotions (as the original project's ``best.pt`` did).

The bundle (from ``training/`` or `intervue models import`) says everything needed:
``input_size`` (square, a multiple of 32), ``letterbox`` resize, ``rgb``, scale 1/255,
``extra.letterbox_pad`` (ultralytics pads with grey 114) and ``extra.detect_output``
(``layout: yolov8`` — one (N, 4 + classes, anchors) output: cx, cy, w, h in input pixels,
then per-class sigmoid scores; no NMS in the graph). The labels are the detector's class
names in its own order, mapped onto the product's seven classes through the bundle's label
map — never assumed.

Per frame: letterbox → backend (batched with other frames by the worker) → decode →
class-agnostic NMS (one face is one box whatever its emotion) → the `max_faces` best boxes,
in pixels of the original frame. A box's product-class probabilities are its class scores
normalised to sum to 1 (YOLOv8 scores are independent sigmoids) and mapped like a
classifier's.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from inference.backends import Backend, create_backend
from inference.bundle import Bundle, BundleError
from inference.labels import mapping_matrix, to_product_probs_batch
from inference.preprocess import Normalizer, letterbox, letterbox_pad

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Detection:
    """One detected face: box (x1, y1, x2, y2) in the original image, the best class
    score, and all class scores (model order) of that box."""

    box: tuple[float, float, float, float]
    score: float
    class_scores: np.ndarray


class YoloEmotionDetector:
    """Runs one YOLOv8 detect bundle on whole frames."""

    wants_color = True

    def __init__(
        self,
        bundle: Bundle,
        backend: Backend | str | dict | None = "onnxruntime",
        threads: int = 1,
        conf: float = 0.25,
        iou: float = 0.45,
        max_faces: int = 4,
        max_batch: int = 64,
    ) -> None:
        meta = bundle.meta
        if meta.task != "detect":
            raise BundleError(f"bundle {meta.name} is a {meta.task} model, not a detector")
        layout = meta.extra.get("detect_output", {}).get("layout", "yolov8")
        if layout != "yolov8":
            raise BundleError(f"bundle {meta.name}: unknown detector output layout {layout!r}")
        if meta.channels != 3 or meta.layout != "nchw":
            raise BundleError(f"bundle {meta.name}: a YOLOv8 detector takes 3-channel NCHW input")
        self.bundle = bundle
        self.meta = meta
        self.conf = conf
        self.iou = iou
        self.max_faces = max_faces
        self.pad = letterbox_pad(meta.extra)
        self._matrix = mapping_matrix(meta.labels, meta.label_map)
        if not isinstance(backend, Backend):
            backend = create_backend(
                backend or "onnxruntime", bundle, threads=threads, max_batch=max_batch
            )
        self.backend = backend
        self._normalize = Normalizer(meta.preprocess, meta.channels, meta.layout)

    @property
    def name(self) -> str:
        return self.meta.name

    def prepare(self, image: np.ndarray) -> tuple[np.ndarray, tuple[float, int, int]]:
        """(1, 3, H, W) float32 input and the (scale, left, top) geometry of one BGR or
        gray frame."""
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        boxed, s, (left, top) = letterbox(image, self.meta.input_size, self.pad)
        if self.meta.color == "rgb":
            boxed = cv2.cvtColor(boxed, cv2.COLOR_BGR2RGB)
        return self._normalize([boxed]), (s, left, top)

    def decode(
        self,
        pred: np.ndarray,
        geometry: tuple[float, int, int],
        width: int,
        height: int,
        factor: float = 1.0,
    ) -> list[Detection]:
        """Faces from one image's (4 + classes, anchors) output; boxes in pixels of the
        original frame (`factor` maps a reduced decode back), best first."""
        n_cls = len(self.meta.labels)
        if pred.ndim != 2 or pred.shape[0] != 4 + n_cls:
            raise BundleError(
                f"bundle {self.meta.name}: output {pred.shape} is not (4 + {n_cls}, anchors)"
            )
        scores = pred[4:]
        best = scores.max(axis=0)
        keep = np.flatnonzero(best >= self.conf)
        if keep.size == 0:
            return []
        s, left, top = geometry
        cx, cy, w, h = pred[:4, keep]
        x1 = (cx - w / 2 - left) / s
        y1 = (cy - h / 2 - top) / s
        bw, bh = w / s, h / s
        boxes = np.stack([x1, y1, bw, bh], axis=1)
        idx = cv2.dnn.NMSBoxes(boxes.tolist(), best[keep].tolist(), self.conf, self.iou)
        idx = np.asarray(idx, dtype=int).reshape(-1)[: self.max_faces]
        out = []
        for i in idx:
            bx, by, ww, hh = (float(v) * factor for v in boxes[i])
            box = (
                min(max(bx, 0.0), float(width)),
                min(max(by, 0.0), float(height)),
                min(max(bx + ww, 0.0), float(width)),
                min(max(by + hh, 0.0), float(height)),
            )
            if box[2] - box[0] < 2 or box[3] - box[1] < 2:
                continue
            out.append(Detection(box, float(best[keep][i]), scores[:, keep[i]].copy()))
        return out

    def to_product(self, detections: list[Detection]) -> list[dict[str, float]]:
        """Product-class probabilities of each detection (class scores renormalised)."""
        if not detections:
            return []
        probs = np.stack([d.class_scores for d in detections]).astype(np.float64)
        probs = np.clip(probs, 1e-9, None)
        probs /= probs.sum(axis=1, keepdims=True)
        return to_product_probs_batch(probs, self.meta.labels, matrix=self._matrix)

    def detect(self, image: np.ndarray) -> list[tuple[Detection, dict[str, float]]]:
        """All faces of one BGR frame with their product-class probabilities."""
        x, geometry = self.prepare(image)
        pred = self.backend.infer(x)[0]
        h, w = image.shape[:2]
        dets = self.decode(pred, geometry, w, h)
        return list(zip(dets, self.to_product(dets), strict=True))
