"""The vision worker's per-frame work: JPEG → faces → emotion per face.

`VisionPipeline.analyse_jpeg` validates and decodes one JPEG frame, finds the faces with a
`FaceDetector`, classifies every face crop in one batch with an `EmotionClassifier`, and
returns a `FrameAnalysis` whose boxes are in pixels of the original frame, with
per-stage timings. A frame that is not a complete JPEG raises `CorruptFrameError`
(never retryable: the same bytes fail again); a frame without a face is a normal result
with ``faces == []``.

Two kinds of emotion model (chosen by the bundle's task):

* ``classify`` (two-stage): a face detector finds the faces, the classifier runs on the
  crops — the default FER bundle, YOLOv8-cls and torchvision classifiers;
* ``detect`` (single-stage, `inference.yolo`): a YOLOv8 detector whose boxes are the faces
  and whose classes are the emotions; no separate face detector runs.

The work is split in three stages so the vision worker can batch model inputs across
sessions (`inference.batching`): `prepare_jpeg` (decode, detect, crop, preprocess →
`PreparedFrame` with 0..k model input rows), `infer` (one backend call on the rows of many
frames), `finish` (map the outputs back into a `FrameAnalysis`). `analyse_jpeg` runs the
three in a row. Preparation and inference hold separate locks, so one thread can prepare
the next frame while another runs the model.
"""

from __future__ import annotations

import logging
import struct
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from inference.bundle import Bundle, BundleError, load_bundle
from inference.emotion import EmotionClassifier
from inference.face import FaceBox, FaceDetector, create_detector
from inference.labels import top_label
from inference.yolo import YoloEmotionDetector

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


@dataclass
class PreparedFrame:
    """A frame after decoding, face detection and preprocessing, before the model runs.

    `inputs` holds this frame's model input rows: one per face crop for a classifier, one
    letterboxed frame for a single-stage detector, none when a classifier found no face.
    """

    width: int
    height: int
    factor: float  # decoded pixels → original frame pixels
    inputs: np.ndarray
    boxes: list[FaceBox] = field(default_factory=list)  # two-stage: the detector's faces
    geometry: tuple[float, int, int] | None = None  # single-stage: letterbox scale, left, top
    timings_ms: dict[str, float] = field(default_factory=dict)
    started: float = 0.0  # perf_counter() when preparation began

    @property
    def size(self) -> int:
        return int(self.inputs.shape[0])


def resolve_bundle(models_dir: Path, classifier: str | Path) -> Bundle:
    """The emotion bundle named `classifier`: a bundle name in `models_dir`, or a path to
    a sidecar / weights file / single-bundle directory. Raises `FileNotFoundError` that
    tells the user what to run, or `BundleError`."""
    text = str(classifier)
    as_path = Path(text).expanduser()
    looks_like_path = (
        "/" in text or "\\" in text or as_path.suffix in (".json", ".onnx", ".engine", ".pt")
    )
    if looks_like_path:
        if not (as_path.exists() or as_path.with_suffix(".json").exists()):
            raise FileNotFoundError(f"emotion model bundle {as_path} not found")
        return load_bundle(as_path)
    sidecar = Path(models_dir) / f"{text}.json"
    if not sidecar.is_file():
        raise FileNotFoundError(
            f"emotion model bundle {text!r} not found in {models_dir}: run "
            f"`intervue models prepare` (models dir: $INTERVUE_MODELS_DIR or "
            f"~/.cache/intervue/models), or `intervue models import best.pt` for a YOLOv8 model"
        )
    try:
        return load_bundle(sidecar)
    except BundleError as exc:
        raise BundleError(f"{exc}; run `intervue models prepare --force` to rebuild it") from exc


class VisionPipeline:
    """Face detection + emotion classification, one frame at a time or staged for batching.

    `detector` may be None when `classifier` is a single-stage `YoloEmotionDetector`.
    Inference is serialised by a lock. Preparation (decode/detect/crop) runs in parallel
    in several threads when the pipeline was built by `load` (each thread gets its own
    face detector); otherwise it is serialised by its own lock. One instance may be
    shared by preparing threads and an inferring thread.
    """

    def __init__(
        self,
        detector: FaceDetector | None,
        classifier: EmotionClassifier | YoloEmotionDetector,
        decode_reduction: int = 1,
        max_faces: int = 4,
    ) -> None:
        """`decode_reduction` (1, 2 or 4) decodes JPEGs at 1/n size via libjpeg's scaled
        IDCT (faster) and maps boxes back to the original frame; `max_faces` caps the
        faces classified per frame (highest detector scores first)."""
        if decode_reduction not in (1, 2, 4):
            raise ValueError("decode_reduction must be 1, 2 or 4")
        self.single_stage = isinstance(classifier, YoloEmotionDetector)
        if detector is None and not self.single_stage:
            raise ValueError("a classifier needs a face detector")
        self.detector = None if self.single_stage else detector
        self.classifier = classifier
        self.decode_reduction = decode_reduction
        self.max_faces = max_faces
        if self.single_stage:
            classifier.max_faces = max_faces
            self.model_name = classifier.name
            self._color = True
        else:
            self.model_name = f"{classifier.name}+{detector.name}"
            self._color = detector.wants_color or classifier.wants_color
        self._prep_lock = threading.Lock()
        self._infer_lock = threading.Lock()
        #: Set by `load`: builds one more face detector, so each preparing thread gets its
        #: own (detectors are not thread-safe) and frames are prepared in parallel.
        self.detector_factory: Callable[[], FaceDetector] | None = None
        self._local = threading.local()

    @property
    def backend(self):  # type: ignore[no-untyped-def]
        """The emotion model's `inference.backends.Backend`."""
        return self.classifier.backend

    @property
    def max_batch(self) -> int:
        return int(self.classifier.backend.max_batch)

    @classmethod
    def load(
        cls,
        models_dir: Path,
        detector: str = "auto",
        classifier: str | Path = DEFAULT_CLASSIFIER,
        threads: int = 1,
        decode_reduction: int = 1,
        backend: object = "auto",
        max_batch: int = 64,
        conf: float = 0.25,
        iou: float = 0.45,
        max_faces: int = 4,
    ) -> VisionPipeline:
        """Build from a bundle in `models_dir` (prepared by ``intervue models prepare`` or
        imported by ``intervue models import``) or at a path.

        `threads` is given to the backend and set as OpenCV's process-wide thread count
        (the vision worker owns its process; one thread per frame measured fastest on a
        2-core machine, see docs/face-detector.md). `backend` is ``auto`` (the fastest
        that runs here), ``onnxruntime``, ``onnxruntime-cuda``, ``torch``, ``torch-cuda``,
        ``tensorrt`` or a backend config (`inference.backends`). A ``detect`` bundle runs
        single-stage (no face detector; `conf`/`iou` are its thresholds). Raises
        `FileNotFoundError` telling the user to run ``intervue models prepare`` when the
        bundle is missing.
        """
        models_dir = Path(models_dir).expanduser()
        bundle = resolve_bundle(models_dir, classifier)
        cv2.setNumThreads(threads)
        if bundle.meta.task == "detect":
            model = YoloEmotionDetector(
                bundle,
                backend=backend,
                threads=threads,
                conf=conf,
                iou=iou,
                max_faces=max_faces,
                max_batch=max_batch,
            )
            return cls(None, model, decode_reduction=decode_reduction, max_faces=max_faces)
        face_detector = create_detector(detector, threads=threads)
        pipeline = cls(
            face_detector,
            EmotionClassifier(bundle, threads=threads, backend=backend, max_batch=max_batch),
            decode_reduction=decode_reduction,
            max_faces=max_faces,
        )
        pipeline.detector_factory = lambda: create_detector(face_detector.name, threads=threads)
        return pipeline

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

    # ------------------------------------------------------------------ one frame

    def analyse_jpeg(self, jpeg: bytes) -> FrameAnalysis:
        """Analyse one JPEG frame; raises `CorruptFrameError` for a bad payload."""
        prepared = self.prepare_jpeg(jpeg)
        return self.finish(prepared, self.infer(prepared.inputs) if prepared.size else None)

    def analyse_bgr(self, image: np.ndarray) -> FrameAnalysis:
        """Analyse one decoded BGR (or gray) uint8 frame."""
        prepared = self.prepare_bgr(image)
        result = self.finish(prepared, self.infer(prepared.inputs) if prepared.size else None)
        return result

    # ------------------------------------------------------------------ stages

    def _detector_lock(self) -> tuple[FaceDetector | None, threading.Lock | nullcontext]:
        """The face detector this thread may use, and the lock to hold while using it."""
        if self.single_stage:
            return None, nullcontext()  # letterboxing is thread-safe
        if self.detector_factory is None:
            return self.detector, self._prep_lock
        mine = getattr(self._local, "detector", None)
        if mine is None:
            mine = self._local.detector = (
                self.detector
                if threading.current_thread() is threading.main_thread()
                else self.detector_factory()
            )
        return mine, nullcontext()

    def prepare_jpeg(self, jpeg: bytes) -> PreparedFrame:
        """Decode, detect and preprocess one JPEG; raises `CorruptFrameError`."""
        detector, lock = self._detector_lock()
        with lock:
            start = time.perf_counter()
            image, width, height = self.decode(jpeg)
            decoded = time.perf_counter()
            # the decoded image may be 1/n of the frame: boxes scale back by the ratio
            prepared = self._prepare(image, width, height, width / image.shape[1], detector)
            prepared.timings_ms["decode"] = (decoded - start) * 1000.0
            prepared.started = start
            return prepared

    def prepare_bgr(self, image: np.ndarray) -> PreparedFrame:
        """Detect and preprocess one decoded BGR (or gray) uint8 frame."""
        detector, lock = self._detector_lock()
        with lock:
            start = time.perf_counter()
            h, w = image.shape[:2]
            prepared = self._prepare(image, w, h, 1.0, detector)
            prepared.timings_ms["decode"] = 0.0
            prepared.started = start
            return prepared

    def _prepare(
        self,
        image: np.ndarray,
        width: int,
        height: int,
        factor: float,
        detector: FaceDetector | None,
    ) -> PreparedFrame:
        t0 = time.perf_counter()
        if self.single_stage:
            x, geometry = self.classifier.prepare(image)
            t1 = time.perf_counter()
            return PreparedFrame(
                width, height, factor, x, geometry=geometry, timings_ms={"detect": (t1 - t0) * 1e3}
            )
        boxes = detector.detect(image)[: self.max_faces]
        t1 = time.perf_counter()
        if boxes:
            crops = [self.classifier.crop_face(image, b.as_tuple()) for b in boxes]
            inputs = self.classifier.preprocess(crops)
        else:
            c = self.classifier.meta
            inputs = np.zeros((0, c.channels, *c.input_size), np.float32)
        t2 = time.perf_counter()
        return PreparedFrame(
            width,
            height,
            factor,
            inputs,
            boxes=boxes,
            timings_ms={"detect": (t1 - t0) * 1e3, "crop": (t2 - t1) * 1e3},
        )

    def infer(self, inputs: np.ndarray) -> np.ndarray:
        """One backend call on the stacked input rows of one or many frames."""
        with self._infer_lock:
            return self.classifier.backend.infer(inputs)

    def finish(
        self,
        prepared: PreparedFrame,
        outputs: np.ndarray | None,
        infer_ms: float | None = None,
    ) -> FrameAnalysis:
        """The `FrameAnalysis` of a prepared frame from its rows of the model output.

        Timings: decode, detect, classify, total (ms). ``classify`` is crop + model +
        mapping for a classifier, and model + decode + NMS for a single-stage detector (its
        ``detect`` is the letterbox). `infer_ms` is the time of the (batched) model call
        when the caller measured it; otherwise the time since preparation ended counts.
        """
        t_finish = time.perf_counter()
        timings = dict(prepared.timings_ms)
        prep_ms = timings.get("decode", 0.0) + timings.get("detect", 0.0) + timings.pop("crop", 0.0)
        faces: list[FaceAnalysis] = []
        if self.single_stage:
            if outputs is None or len(outputs) != 1:
                raise ValueError("a single-stage frame needs exactly one output row")
            dets = self.classifier.decode(
                outputs[0], prepared.geometry, prepared.width, prepared.height, prepared.factor
            )
            for det, probs in zip(dets, self.classifier.to_product(dets), strict=True):
                label, confidence = top_label(probs)
                faces.append(FaceAnalysis(det.box, det.score, probs, label, confidence))
        elif prepared.boxes:
            if outputs is None or len(outputs) != len(prepared.boxes):
                raise ValueError("need one output row per face")
            probs_all = self.classifier.to_product(self.classifier.outputs_to_probs(outputs))
            for box, probs in zip(prepared.boxes, probs_all, strict=True):
                label, confidence = top_label(probs)
                scaled = box.scaled(prepared.factor).clipped(prepared.width, prepared.height)
                faces.append(
                    FaceAnalysis(
                        box=scaled.as_tuple(),
                        detector_score=float(box.score),
                        probs=probs,
                        label=label,
                        confidence=confidence,
                    )
                )
        done = time.perf_counter()
        total = (done - prepared.started) * 1e3 if prepared.started else 0.0
        if infer_ms is None:  # ran in a row: everything after detection is classification
            timings["classify"] = max(0.0, total - timings["decode"] - timings["detect"])
        else:  # batched: crop + the shared model call + mapping; the rest was waiting
            crop_ms = prepared.timings_ms.get("crop", 0.0)
            timings["classify"] = crop_ms + infer_ms + (done - t_finish) * 1e3
            timings["wait"] = max(0.0, total - prep_ms - infer_ms - (done - t_finish) * 1e3)
        timings["total"] = total
        return FrameAnalysis(
            width=prepared.width, height=prepared.height, faces=faces, timings_ms=timings
        )
