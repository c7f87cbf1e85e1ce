"""A tiny emotion data set in the original layout, drawn so that the classes separate.

``<root>/<emotion>/raw/{train,validation}/*.jpg`` and one JSON per image in
``<root>/<emotion>/labeled/{train,validation}/`` with three annotators' boxes (each the
true box jittered by a pixel or two). Every image is a noisy grey background with one
"face": a shape of the class's own colour and form inside the box, so both a whole-image
and a crop classifier can tell the classes apart.

Bad input, on purpose (`ToyDataset` records where each one is):

* a truncated JPEG (with a valid annotation)             → excluded, truncated
* a broken JSON (next to a good image)                   → image excluded, JSON reported
* an image with a Korean file name (기쁨_한국어_01.jpg)      → used
* a non-image file (readme.txt)                          → excluded, not_image
* a JSON whose annotators hold no boxes                  → excluded, no_boxes
* a box outside its image                                → excluded, box_outside_image
* a box partly outside its image                         → used, clipped
* an image without any JSON                              → excluded, missing_annotation
* a class folder not among the seven (surprise/)         → skipped, unknown_class
* optionally an empty class folder (`empty_class`)       → reported, class left out
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from stream.contract import EMOTIONS

#: BGR colour and shape per class.
STYLE: dict[str, tuple[tuple[int, int, int], str]] = {
    "anger": ((30, 30, 230), "disc"),
    "anxiety": ((40, 200, 40), "triangle"),
    "embarrass": ((220, 60, 40), "square"),
    "happy": ((30, 220, 240), "ring"),
    "normal": ((240, 240, 240), "cross"),
    "pain": ((200, 40, 200), "diamond"),
    "sad": ((200, 200, 30), "bar"),
}

KOREAN_NAME = "기쁨_한국어_01"


@dataclass
class ToyDataset:
    root: Path
    classes: tuple[str, ...]
    train_per_class: int
    val_per_class: int
    #: name → path of each planted bad input
    planted: dict[str, Path] = field(default_factory=dict)
    #: image path → (true box (x1, y1, x2, y2), image width, height) for every good image
    truth: dict[Path, tuple[tuple[float, float, float, float], int, int]] = field(
        default_factory=dict
    )


def draw_face(image: np.ndarray, box: tuple[int, int, int, int], emotion: str) -> None:
    colour, shape = STYLE[emotion]
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) // 2, (y1 + y2) // 2
    r = max(4, min(x2 - x1, y2 - y1) // 2 - 1)
    if shape == "disc":
        cv2.circle(image, (cx, cy), r, colour, -1)
    elif shape == "ring":
        cv2.circle(image, (cx, cy), r, colour, max(2, r // 3))
    elif shape == "square":
        cv2.rectangle(image, (cx - r, cy - r), (cx + r, cy + r), colour, -1)
    elif shape == "triangle":
        pts = np.array([[cx, cy - r], [cx - r, cy + r], [cx + r, cy + r]], np.int32)
        cv2.fillPoly(image, [pts], colour)
    elif shape == "diamond":
        pts = np.array([[cx, cy - r], [cx + r, cy], [cx, cy + r], [cx - r, cy]], np.int32)
        cv2.fillPoly(image, [pts], colour)
    elif shape == "cross":
        t = max(2, r // 3)
        cv2.rectangle(image, (cx - r, cy - t), (cx + r, cy + t), colour, -1)
        cv2.rectangle(image, (cx - t, cy - r), (cx + t, cy + r), colour, -1)
    elif shape == "bar":
        cv2.rectangle(image, (cx - r, cy - r // 3), (cx + r, cy + r // 3), colour, -1)


def _jpeg(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [int(cv2.IMWRITE_JPEG_QUALITY), 92])
    assert ok
    return buf.tobytes()


def _annotation(
    filename: str, box: tuple[float, float, float, float], rng: random.Random, jitter: float = 2.0
) -> dict:
    x1, y1, x2, y2 = box
    record: dict = {"filename": filename, "faceExp_uploader": "", "bg_uploader": ""}
    for key in ("annot_A", "annot_B", "annot_C"):
        d = [rng.uniform(-jitter, jitter) for _ in range(4)]
        record[key] = {
            "boxes": {
                "minX": round(x1 + d[0], 2),
                "minY": round(y1 + d[1], 2),
                "maxX": round(x2 + d[2], 2),
                "maxY": round(y2 + d[3], 2),
            },
            "faceExp": "",
        }
    return record


def make_toy_dataset(
    root: Path,
    train_per_class: int = 24,
    val_per_class: int = 8,
    seed: int = 0,
    empty_class: str | None = None,
) -> ToyDataset:
    """Write the toy data set under `root` (see the module doc) and describe it."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    root = Path(root)
    classes = tuple(e for e in EMOTIONS if e != empty_class)
    toy = ToyDataset(root, classes, train_per_class, val_per_class)

    def write(emotion: str, split: str, stem: str, box=None, size=None, annotate=True):
        width, height = size or (rng.randint(84, 120), rng.randint(64, 96))
        image = nprng.integers(60, 110, size=(height, width, 3), dtype=np.uint8)
        if box is None:
            side = rng.randint(30, 44)
            x1 = rng.randint(2, width - side - 2)
            y1 = rng.randint(2, height - side - 2)
            box = (x1, y1, x1 + side, y1 + side)
        draw_face(image, tuple(int(v) for v in box), emotion)
        img_path = root / emotion / "raw" / split / f"{stem}.jpg"
        img_path.parent.mkdir(parents=True, exist_ok=True)
        img_path.write_bytes(_jpeg(image))
        if annotate:
            ann_path = root / emotion / "labeled" / split / f"{stem}.json"
            ann_path.parent.mkdir(parents=True, exist_ok=True)
            ann_path.write_text(
                json.dumps(_annotation(img_path.name, box, rng), ensure_ascii=False), "utf-8"
            )
        return img_path, box, width, height

    for emotion in classes:
        for split, n in (("train", train_per_class), ("validation", val_per_class)):
            for i in range(n):
                stem = f"{emotion}_{split}_{i:03d}"
                if emotion == "happy" and split == "train" and i == 0:
                    stem = KOREAN_NAME
                path, box, w, h = write(emotion, split, stem)
                toy.truth[path] = (tuple(float(v) for v in box), w, h)
    if "happy" in classes:
        toy.planted["korean"] = root / "happy" / "raw" / "train" / f"{KOREAN_NAME}.jpg"

    # a truncated JPEG with a valid annotation
    path, *_ = write("happy", "train", "happy_truncated")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    toy.planted["truncated"] = path
    # a broken JSON beside a good image
    path, *_ = write("anger", "train", "anger_broken_json")
    broken = root / "anger" / "labeled" / "train" / "anger_broken_json.json"
    broken.write_text('{"filename": "anger_broken_json.jpg", "annot_A": {"boxes": ', "utf-8")
    toy.planted["broken_json"] = broken
    toy.planted["broken_json_image"] = path
    # a non-image file
    note = root / "sad" / "raw" / "train" / "readme.txt"
    note.write_text("not an image\n", "utf-8")
    toy.planted["not_image"] = note
    # a JSON whose annotators hold no boxes
    path, *_ = write("normal", "train", "normal_no_boxes")
    ann = root / "normal" / "labeled" / "train" / "normal_no_boxes.json"
    ann.write_text(
        json.dumps({"filename": path.name, "annot_A": {"faceExp": ""}, "annot_B": {}}), "utf-8"
    )
    toy.planted["no_boxes"] = path
    # a box entirely outside its image (width 100)
    path, *_ = write("anxiety", "train", "anxiety_box_outside", size=(100, 80))
    ann = root / "anxiety" / "labeled" / "train" / "anxiety_box_outside.json"
    rec = _annotation(path.name, (130.0, 10.0, 170.0, 50.0), rng)
    ann.write_text(json.dumps(rec), "utf-8")
    toy.planted["box_outside"] = path
    # a box partly outside its image: kept, clipped
    path, *_ = write(
        "embarrass", "train", "embarrass_clipped", box=(70, 20, 110, 60), size=(100, 80)
    )
    ann = root / "embarrass" / "labeled" / "train" / "embarrass_clipped.json"
    rec = _annotation(path.name, (70.0, 20.0, 110.0, 60.0), rng, jitter=0.0)
    ann.write_text(json.dumps(rec), "utf-8")
    toy.planted["clipped"] = path
    # an image without a JSON
    path, *_ = write("sad", "train", "sad_no_json", annotate=False)
    toy.planted["missing_json"] = path
    # a class folder that is not one of the seven
    path, *_ = write("sad", "train", "surprise_000")
    target = root / "surprise" / "raw" / "train" / path.name
    target.parent.mkdir(parents=True, exist_ok=True)
    path.rename(target)
    (root / "sad" / "labeled" / "train" / "surprise_000.json").rename(
        root / "surprise" / "raw" / "train" / "surprise_000.json"
    )
    toy.planted["unknown_class"] = root / "surprise"
    if empty_class is not None:
        for kind in ("labeled", "raw"):
            for split in ("train", "validation"):
                (root / empty_class / kind / split).mkdir(parents=True, exist_ok=True)
        toy.planted["empty_class"] = root / empty_class
    return toy
