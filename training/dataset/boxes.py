"""Annotation boxes: each annotator's box in an annotation object (`annotator_boxes`),
their mean (`average_boxes`) and its YOLO label line. The box type is
`inference.face.Box`, the one the vision worker's faces are made of too.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from inference.face import Box
from training.dataset.layout import ANNOTATORS


def average_boxes(boxes: Iterable[Box]) -> Box:
    """The coordinate-wise mean of the boxes (raises `ValueError` on none)."""
    boxes = list(boxes)
    if not boxes:
        raise ValueError("no boxes to average")
    return Box(*(float(np.mean([b.as_tuple()[i] for b in boxes])) for i in range(4)))


def yolo_label_line(class_index: int, box: Box, width: int, height: int) -> str:
    cx, cy, bw, bh = box.to_yolo(width, height)
    return f"{class_index} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}"


def _parse_box(raw: Any) -> Box | None:
    """One annotator's ``boxes`` value → `Box`, or None when missing / malformed."""
    if isinstance(raw, list):  # a list of boxes: the first is the face
        raw = raw[0] if raw else None
    if not isinstance(raw, dict):
        return None
    try:
        box = Box(*(float(raw[k]) for k in ("minX", "minY", "maxX", "maxY")))
    except (KeyError, TypeError, ValueError):
        return None
    return box if box.valid() else None


def annotator_boxes(record: dict[str, Any]) -> dict[str, Box]:
    """The valid boxes of annot_A/B/C in one annotation object, by annotator."""
    boxes: dict[str, Box] = {}
    for key in ANNOTATORS:
        entry = record.get(key)
        if isinstance(entry, dict):
            box = _parse_box(entry.get("boxes"))
            if box is not None:
                boxes[key] = box
    return boxes
