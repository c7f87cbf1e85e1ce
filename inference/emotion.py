"""Emotion classification of face crops with an ONNX classify bundle.

`EmotionClassifier` reads everything about its model from the bundle's metadata
(`inference.bundle`): input size, gray or colour, scale/mean/std, resize mode, how much
margin to take around a face box, the label order and the label map. It crops every face
of a frame, stacks the crops into one batch, runs ONNX Runtime once (CPU), and returns one
dict over the product's seven classes per face (`inference.labels`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from inference.bundle import Bundle, BundleError, load_bundle
from inference.labels import mapping_matrix, to_product_probs_batch

log = logging.getLogger(__name__)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class EmotionClassifier:
    """Runs one classify bundle on face crops. One instance per worker thread: an ONNX
    Runtime session may be shared, but the reusable input buffer here may not."""

    def __init__(self, bundle: Bundle, threads: int = 1) -> None:
        meta = bundle.meta
        if meta.task != "classify":
            raise BundleError(f"bundle {meta.name} is a {meta.task} model, not a classifier")
        if meta.format != "onnx":
            raise BundleError(
                f"bundle {meta.name} is in {meta.format} format; EmotionClassifier runs onnx"
            )
        import onnxruntime as ort

        self.bundle = bundle
        self.meta = meta
        # resolve the label map now, so a bundle with an unmappable label fails at load
        self._matrix = mapping_matrix(meta.labels, meta.label_map)
        options = ort.SessionOptions()
        # one frame at a time on a small machine: parallelism inside a 64×64 network costs
        # more in thread hand-offs than it gains (measured in docs/face-detector.md)
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(
            str(bundle.weights_path), options, providers=["CPUExecutionProvider"]
        )
        model_input = self._session.get_inputs()[0]
        self._input_name = model_input.name
        height, width = meta.input_size
        expected = (
            [meta.channels, height, width]
            if meta.layout == "nchw"
            else [height, width, meta.channels]
        )
        declared = list(model_input.shape[1:])
        if all(isinstance(d, int) for d in declared) and declared != expected:
            raise BundleError(
                f"bundle {meta.name}: model input {model_input.shape} does not match the "
                f"metadata's {meta.layout} {expected}"
            )
        n_out = self._session.get_outputs()[0].shape[-1]
        if isinstance(n_out, int) and n_out != len(meta.labels):
            raise BundleError(
                f"bundle {meta.name}: model has {n_out} outputs but {len(meta.labels)} labels"
            )
        pre = meta.preprocess
        channels = meta.channels
        self._scale = np.float32(pre.scale)
        self._mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1)
        self._std = np.asarray(pre.std, dtype=np.float32).reshape(-1)
        if self._mean.size == 1:
            self._mean = np.repeat(self._mean, channels)
            self._std = np.repeat(self._std, channels)

    @classmethod
    def load(cls, path: Path | str, threads: int = 1) -> EmotionClassifier:
        """Load the bundle at `path` (sidecar, weights or single-bundle directory)."""
        return cls(load_bundle(path), threads=threads)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def wants_color(self) -> bool:
        return self.meta.color != "gray"

    # ---------------------------------------------------------------- cropping

    def crop_face(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The model-sized uint8 crop (H, W) or (H, W, 3) of one face box, in the bundle's
        colour. The box grows by ``crop_margin`` of its side on every side (and becomes a
        square around its centre with ``square_crop``); parts outside the image are filled
        by repeating the edge, so a face at the border is not squashed."""
        pre = self.meta.preprocess
        x1, y1, x2, y2 = (float(v) for v in box[:4])
        bw, bh = x2 - x1, y2 - y1
        if bw <= 0 or bh <= 0:
            raise ValueError(f"empty face box {tuple(box)}")
        if pre.square_crop:
            side = max(bw, bh)
            bw = bh = side
        cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
        bw *= 1.0 + 2.0 * pre.crop_margin
        bh *= 1.0 + 2.0 * pre.crop_margin
        left, top = round(cx - bw / 2.0), round(cy - bh / 2.0)
        right, bottom = left + max(1, round(bw)), top + max(1, round(bh))
        h, w = image.shape[:2]
        crop = image[max(top, 0) : min(bottom, h), max(left, 0) : min(right, w)]
        if crop.size == 0:
            raise ValueError(f"face box {tuple(box)} lies outside the {w}×{h} image")
        pads = (max(0, -top), max(0, bottom - h), max(0, -left), max(0, right - w))
        if any(pads):
            crop = cv2.copyMakeBorder(crop, *pads, borderType=cv2.BORDER_REPLICATE)
        crop = self._resize(crop)
        return self._convert_color(crop)

    def _resize(self, crop: np.ndarray) -> np.ndarray:
        height, width = self.meta.input_size
        mode = self.meta.preprocess.resize
        ch, cw = crop.shape[:2]
        if mode == "center_crop":
            # scale the short side to the target, then cut the middle
            s = max(height / ch, width / cw)
            crop = cv2.resize(
                crop,
                (max(width, round(cw * s)), max(height, round(ch * s))),
                interpolation=_interp(s),
            )
            top = (crop.shape[0] - height) // 2
            left = (crop.shape[1] - width) // 2
            return crop[top : top + height, left : left + width]
        if mode == "letterbox":
            s = min(height / ch, width / cw)
            rw, rh = max(1, round(cw * s)), max(1, round(ch * s))
            resized = cv2.resize(crop, (rw, rh), interpolation=_interp(s))
            top, left = (height - rh) // 2, (width - rw) // 2
            return cv2.copyMakeBorder(
                resized,
                top,
                height - rh - top,
                left,
                width - rw - left,
                borderType=cv2.BORDER_CONSTANT,
                value=0,
            )
        s = min(height / ch, width / cw)
        return cv2.resize(crop, (width, height), interpolation=_interp(s))

    def _convert_color(self, crop: np.ndarray) -> np.ndarray:
        color = self.meta.color
        if crop.ndim == 2:
            if color == "gray":
                return crop
            return cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB if color == "rgb" else cv2.COLOR_GRAY2BGR)
        if color == "gray":
            return cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        if color == "rgb":
            return cv2.cvtColor(crop, cv2.COLOR_BGR2RGB)
        return crop

    # ---------------------------------------------------------------- inference

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Stack model-sized uint8 crops into the float32 input tensor."""
        batch = np.stack([c if c.ndim == 3 else c[:, :, None] for c in crops]).astype(np.float32)
        batch *= self._scale
        batch -= self._mean
        batch /= self._std
        if self.meta.layout == "nchw":
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        return batch

    def predict_raw(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, len(labels)) probabilities in the model's own label order."""
        if not crops:
            return np.zeros((0, len(self.meta.labels)), dtype=np.float32)
        out = self._session.run(None, {self._input_name: self.preprocess(crops)})[0]
        out = np.asarray(out, dtype=np.float32).reshape(len(crops), -1)
        if self.meta.output == "logits":
            out = _softmax(out)
        return out

    def classify_crops(self, crops: Sequence[np.ndarray]) -> list[dict[str, float]]:
        """Product-class probabilities for model-sized crops (from `crop_face`)."""
        if not crops:
            return []
        raw = self.predict_raw(crops)
        return to_product_probs_batch(raw, self.meta.labels, matrix=self._matrix)

    def classify_faces(
        self, image: np.ndarray, boxes: Sequence[Sequence[float]]
    ) -> list[dict[str, float]]:
        """Crop every box out of `image` (BGR or gray) and classify them in one call."""
        return self.classify_crops([self.crop_face(image, box) for box in boxes])


def _interp(scale: float) -> int:
    # INTER_AREA averages when shrinking (no aliasing), INTER_LINEAR when enlarging
    return cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
