"""Emotion classification of face crops with an ONNX classify bundle.

`EmotionClassifier` reads everything about its model from the bundle's metadata
(`inference.bundle`): input size, gray or colour, scale/mean/std, resize mode, how much
margin to take around a face box, the label order and the label map. It crops every face
of a frame, stacks the crops into one batch, runs its backend once (`inference.backends`:
ONNX Runtime on the CPU by default, or torch / TensorRT), and returns one dict over the
product's seven classes per face (`inference.labels`). The vision worker's cross-session
batching uses the pieces separately: `crop_face` + `preprocess` per frame, one
`backend.infer` for many frames, `outputs_to_probs` + `to_product` per frame.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.backends import Backend, create_backend
from inference.bundle import Bundle, BundleError, BundleMeta, load_bundle
from inference.crop import crop_region
from inference.labels import mapping_matrix, to_product_probs_batch
from inference.preprocess import Normalizer, resize, to_color

log = logging.getLogger(__name__)


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class CropPreprocessor:
    """Face box → model-sized crop → normalised input tensor, as a bundle's metadata says
    (the pixel steps are `inference.preprocess`'s). No model: the export's calibration and
    verification inputs use it too."""

    def __init__(self, meta: BundleMeta) -> None:
        self.meta = meta
        self._normalize = Normalizer(meta.preprocess, meta.channels, meta.layout)

    def fit_image(self, image: np.ndarray) -> np.ndarray:
        """A whole image (BGR or gray) resized and converted as if it were one face crop."""
        return to_color(
            resize(image, self.meta.input_size, self.meta.preprocess.resize), self.meta.color
        )

    # ---------------------------------------------------------------- cropping

    def crop_face(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The model-sized uint8 crop (H, W) or (H, W, 3) of one face box, in the bundle's
        colour: `face_pixels`, resized and converted."""
        return self.fit_image(self.face_pixels(image, box))

    def face_pixels(self, image: np.ndarray, box: Sequence[float]) -> np.ndarray:
        """The pixels around one face box at the image's resolution, cut as training cut
        its crops (`inference.crop.crop_region` with the bundle's ``crop_margin`` and
        ``square_crop``)."""
        pre = self.meta.preprocess
        return crop_region(image, box, pre.crop_margin, pre.square_crop)

    def preprocess(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """Stack model-sized uint8 crops into the float32 input tensor."""
        return self._normalize(crops)


class EmotionClassifier(CropPreprocessor):
    """Runs one classify bundle on face crops through a `Backend` (ONNX Runtime on the
    CPU unless told otherwise). One instance per worker thread: the backend is not
    thread-safe (the vision pipeline serialises `predict_raw` with a lock)."""

    def __init__(
        self,
        bundle: Bundle,
        threads: int = 1,
        backend: Backend | str | dict | None = None,
        max_batch: int = 64,
    ) -> None:
        """`backend`: a loaded `Backend`, or a config for `create_backend` (``"auto"``,
        ``"onnxruntime"``, ``"torch-cuda"``, …). None keeps the original behaviour: ONNX
        Runtime on the CPU with `threads` threads, and an error if that cannot run."""
        meta = bundle.meta
        if meta.task != "classify":
            raise BundleError(f"bundle {meta.name} is a {meta.task} model, not a classifier")
        CropPreprocessor.__init__(self, meta)
        self.bundle = bundle
        # resolve the label map now, so a bundle with an unmappable label fails at load
        self._matrix = mapping_matrix(meta.labels, meta.label_map)
        if backend is None:
            if meta.format != "onnx":
                raise BundleError(
                    f"bundle {meta.name} is in {meta.format} format; name a backend that "
                    "runs it (backend='torch' or 'tensorrt')"
                )
            backend = create_backend(
                "onnxruntime", bundle, strict=True, threads=threads, max_batch=max_batch
            )
        elif not isinstance(backend, Backend):
            backend = create_backend(backend, bundle, threads=threads, max_batch=max_batch)
        self.backend = backend

    @classmethod
    def load(
        cls, path: Path | str, threads: int = 1, backend: Backend | str | dict | None = None
    ) -> EmotionClassifier:
        """Load the bundle at `path` (sidecar, weights or single-bundle directory)."""
        return cls(load_bundle(path), threads=threads, backend=backend)

    @property
    def name(self) -> str:
        return self.meta.name

    @property
    def wants_color(self) -> bool:
        return self.meta.color != "gray"

    def predict_raw(self, crops: Sequence[np.ndarray]) -> np.ndarray:
        """(N, len(labels)) probabilities in the model's own label order."""
        if not crops:
            return np.zeros((0, len(self.meta.labels)), dtype=np.float32)
        return self.outputs_to_probs(self.backend.infer(self.preprocess(crops)))

    def outputs_to_probs(self, out: np.ndarray) -> np.ndarray:
        """(N, len(labels)) probabilities in the model's order from raw backend output."""
        out = np.asarray(out, dtype=np.float32).reshape(out.shape[0], -1)
        if self.meta.output == "logits":
            out = _softmax(out)
        return out

    def to_product(self, probs: np.ndarray) -> list[dict[str, float]]:
        """Product-class dicts for (N, len(labels)) probabilities in the model's order."""
        if len(probs) == 0:
            return []
        return to_product_probs_batch(probs, self.meta.labels, matrix=self._matrix)

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
