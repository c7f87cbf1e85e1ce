"""Face-box crop geometry: the one rule training and the vision worker both cut by.

A model learns from the pixels `training.dataset` cut around each labelled box and, at
run time, sees the pixels `inference.emotion.CropPreprocessor` cuts around each detected
box; if the two cuts differed, the model would be judged on crops unlike its training
data. Both call `crop_region` (tests/test_training_dataset.py checks they agree).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def crop_region(
    image: np.ndarray, box: Sequence[float], margin: float = 0.0, square: bool = False
) -> np.ndarray:
    """The pixels of `box` (x1, y1, x2, y2 in pixels) in `image`, grown by `margin` of its
    side on every side and made square around its centre with `square`. Parts outside
    the image repeat the edge, so a face at the border is not squashed when resized."""
    x1, y1, x2, y2 = (float(v) for v in box[:4])
    bw, bh = x2 - x1, y2 - y1
    if not bw > 0 or not bh > 0:  # also refuses NaN
        raise ValueError(f"empty face box {tuple(box)}")
    if square:
        bw = bh = max(bw, bh)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    bw *= 1.0 + 2.0 * margin
    bh *= 1.0 + 2.0 * margin
    left, top = round(cx - bw / 2.0), round(cy - bh / 2.0)
    right, bottom = left + max(1, round(bw)), top + max(1, round(bh))
    h, w = image.shape[:2]
    crop = image[max(top, 0) : min(bottom, h), max(left, 0) : min(right, w)]
    if crop.size == 0:
        raise ValueError(f"face box {tuple(box)} lies outside the {w}×{h} image")
    pads = (max(0, -top), max(0, bottom - h), max(0, -left), max(0, right - w))
    if any(pads):
        crop = cv2.copyMakeBorder(crop, *pads, borderType=cv2.BORDER_REPLICATE)
    return crop
