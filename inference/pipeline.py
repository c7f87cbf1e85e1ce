"""The vision worker's per-frame work: JPEG → faces → emotion per face.

`VisionPipeline.analyse_jpeg` validates and decodes one JPEG frame, finds the faces with a
`FaceDetector`, classifies every face crop in one batch with an `EmotionClassifier`, and
returns a `FrameAnalysis` whose boxes are in pixels of the original frame, with
per-stage timings. A frame that is not a complete JPEG raises `CorruptFrameError`
(never retryable: the same bytes fail again); a frame without a face is a normal result
with ``faces == []``.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inference.bundle import BundleError, load_bundle
from inference.emotion import EmotionClassifier
from inference.face import FaceDetector, create_detector
from inference.labels import top_label

log = logging.getLogger(__name__)

#: The classify bundle `VisionPipeline.load` uses unless told otherwise.
DEFAULT_CLASSIFIER = "fer-mini-xception"

#: Larger frames are refused before decoding (a 640×480 stream never comes near it; a
#: crafted header could otherwise make the decoder allocate gigabytes).
MAX_FRAME_PIXELS = 4096 * 4096

_REDUCED_FLAGS = {
    (1, True): cv2.IMREAD_COLOR,
    (2, True): cv2.IMREAD_REDUCED_COLOR_2,
    (4, True): cv2.IMREAD_REDUCED_COLOR_4,
    (1, False): cv2.IMREAD_GRAYSCALE,
    (2, False): cv2.IMREAD_REDUCED_GRAYSCALE_2,
    (4, False): cv2.IMREAD_REDUCED_GRAYSCALE_4,
}


class CorruptFrameError(ValueError):
    """A frame payload that is not a complete, decodable JPEG (or is absurdly large)."""

    retryable = False


@dataclass
class FaceAnalysis:
    """One face in a frame."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in pixels of the ORIGINAL frame
    detector_score: float
    probs: dict[str, float]  # the seven product classes, sums to 1
    label: str  # argmax product class
    confidence: float  # probs[label]


@dataclass
class FrameAnalysis:
    """The verdict on one frame."""

    width: int  # of the decoded original frame
    height: int
    faces: list[FaceAnalysis] = field(default_factory=list)  # empty = no face
    timings_ms: dict[str, float] = field(default_factory=dict)  # decode, detect, classify, total


def jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a JPEG's SOF header, checking that the payload is a whole JPEG
    (SOI at the start, EOI at the end). Raises `CorruptFrameError` otherwise.

    Done before decoding because libjpeg decodes a truncated file "successfully" (the
    missing rows come out grey, with only a warning), and a cut-off frame must not be
    scored as if it were a face half-covered in grey.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CorruptFrameError(f"frame payload is {type(data).__name__}, not bytes")
    data = bytes(data)
    if len(data) < 4 or data[:2] != b"\xff\xd8":
        raise CorruptFrameError(f"not a JPEG ({len(data)} bytes, no SOI marker)")
    # encoders may pad after EOI; allow zero padding only
    if data.rstrip(b"\x00")[-2:] != b"\xff\xd9":
        raise CorruptFrameError(f"truncated JPEG ({len(data)} bytes, no EOI marker)")
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise CorruptFrameError(f"corrupt JPEG: expected a marker at byte {pos}")
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:  # standalone markers
            pos += 2
            continue
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if length < 2 or pos + 2 + length > len(data):
            raise CorruptFrameError(f"corrupt JPEG: segment at byte {pos} overruns the data")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if length < 7:
                raise CorruptFrameError("corrupt JPEG: short SOF segment")
            height, width = struct.unpack(">HH", data[pos + 5 : pos + 9])
            if width == 0 or height == 0:
                raise CorruptFrameError("corrupt JPEG: zero-sized frame")
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            break
        pos += 2 + length
    raise CorruptFrameError("corrupt JPEG: no frame header (SOF) found")


class VisionPipeline:
    """Face detection + emotion classification for one frame at a time.

    Calls are serialised by a lock, so one instance may be used from any single worker
    thread (or, slowly, from several); run one instance per thread for parallelism.
    """

    def __init__(
        self,
        detector: FaceDetector,
        classifier: EmotionClassifier,
        decode_reduction: int = 1,
        max_faces: int = 4,
    ) -> None:
        """`decode_reduction` (1, 2 or 4) decodes JPEGs at 1/n size via libjpeg's scaled
        IDCT (faster) and maps boxes back to the original frame; `max_faces` caps the
        faces classified per frame (highest detector scores first)."""
        if decode_reduction not in (1, 2, 4):
            raise ValueError("decode_reduction must be 1, 2 or 4")
        self.detector = detector
        self.classifier = classifier
        self.decode_reduction = decode_reduction
        self.max_faces = max_faces
        self.model_name = f"{classifier.name}+{detector.name}"
        self._color = detector.wants_color or classifier.wants_color
        self._lock = threading.Lock()

    @classmethod
    def load(
        cls,
        models_dir: Path,
        detector: str = "auto",
        classifier: str = DEFAULT_CLASSIFIER,
        threads: int = 1,
        decode_reduction: int = 1,
    ) -> VisionPipeline:
        """Build from bundles prepared by `inference.prepare.prepare_models`.

        `threads` is given to ONNX Runtime and set as OpenCV's process-wide thread count
        (the vision worker owns its process; one thread per frame measured fastest on a
        2-core machine, see docs/face-detector.md). Raises `FileNotFoundError` telling
        the user to run ``intervue models prepare`` when the bundle is missing.
        """
        models_dir = Path(models_dir).expanduser()
        sidecar = models_dir / f"{classifier}.json"
        if not sidecar.is_file():
            raise FileNotFoundError(
                f"emotion model bundle {classifier!r} not found in {models_dir}: run "
                f"`intervue models prepare` (models dir: $INTERVUE_MODELS_DIR or "
                f"~/.cache/intervue/models)"
            )
        try:
            bundle = load_bundle(sidecar)
        except BundleError as exc:
            raise BundleError(
                f"{exc}; run `intervue models prepare --force` to rebuild it"
            ) from exc
        cv2.setNumThreads(threads)
        return cls(
            create_detector(detector, threads=threads),
            EmotionClassifier(bundle, threads=threads),
            decode_reduction=decode_reduction,
        )

    def decode(self, jpeg: bytes) -> tuple[np.ndarray, int, int]:
        """(image, original width, original height); the image is BGR or gray (whichever
        the models need) at 1/`decode_reduction` size. Raises `CorruptFrameError`."""
        width, height = jpeg_size(jpeg)
        if width * height > MAX_FRAME_PIXELS:
            raise CorruptFrameError(f"frame of {width}×{height} pixels is too large")
        # frames come from a video track, never with EXIF rotation: ignoring it keeps the
        # decoded image in the same orientation as the SOF size the boxes are scaled to
        flag = _REDUCED_FLAGS[(self.decode_reduction, self._color)] | cv2.IMREAD_IGNORE_ORIENTATION
        image = cv2.imdecode(np.frombuffer(jpeg, dtype=np.uint8), flag)
        if image is None or image.size == 0:
            raise CorruptFrameError(f"undecodable JPEG ({len(jpeg)} bytes)")
        return image, width, height

    def analyse_jpeg(self, jpeg: bytes) -> FrameAnalysis:
        """Analyse one JPEG frame; raises `CorruptFrameError` for a bad payload."""
        with self._lock:
            start = time.perf_counter()
            image, width, height = self.decode(jpeg)
            decoded = time.perf_counter()
            # the decoded image may be 1/n of the frame: boxes scale back by the ratio
            factor = width / image.shape[1]
            result = self._analyse(image, width, height, factor)
            result.timings_ms["decode"] = (decoded - start) * 1000.0
            result.timings_ms["total"] = (time.perf_counter() - start) * 1000.0
            return result

    def analyse_bgr(self, image: np.ndarray) -> FrameAnalysis:
        """Analyse one decoded BGR (or gray) uint8 frame."""
        with self._lock:
            start = time.perf_counter()
            h, w = image.shape[:2]
            result = self._analyse(image, w, h, 1.0)
            result.timings_ms["decode"] = 0.0
            result.timings_ms["total"] = (time.perf_counter() - start) * 1000.0
            return result

    def _analyse(self, image: np.ndarray, width: int, height: int, factor: float) -> FrameAnalysis:
        t0 = time.perf_counter()
        boxes = self.detector.detect(image)[: self.max_faces]
        t1 = time.perf_counter()
        probs = self.classifier.classify_faces(image, [b.as_tuple() for b in boxes])
        t2 = time.perf_counter()
        faces = []
        for box, p in zip(boxes, probs, strict=True):
            label, confidence = top_label(p)
            scaled = box.scaled(factor).clipped(width, height)
            faces.append(
                FaceAnalysis(
                    box=scaled.as_tuple(),
                    detector_score=float(box.score),
                    probs=p,
                    label=label,
                    confidence=confidence,
                )
            )
        return FrameAnalysis(
            width=width,
            height=height,
            faces=faces,
            timings_ms={"detect": (t1 - t0) * 1000.0, "classify": (t2 - t1) * 1000.0},
        )
