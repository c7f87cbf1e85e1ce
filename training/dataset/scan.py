"""The labelled emotion image set: scanning, checking, box averaging, sampling, writing.

Source layout (DESIGN.md, "Training data layout")::

    <root>/<emotion>/{labeled,raw}/{train,validation}/...

``<emotion>`` is one of the product's seven classes (`stream.contract.EMOTIONS`) or its
Korean name in the original data set (분노, 불안, 당황, 기쁨, 중립, 상처, 슬픔). Images and
JSON annotations may sit anywhere under ``labeled/`` and ``raw/`` of a split (the original
keeps images in ``raw`` and annotations in ``labeled``; both are searched, recursively).
A JSON file holds either one annotation object or a list of them; an object names its image
with ``filename`` (else the JSON file's stem is the image's stem). Each object carries up to
three annotators' boxes::

    {"filename": "x.jpg", "annot_A": {"boxes": {"minX": .., "minY": .., "maxX": .., "maxY": ..}},
     "annot_B": {...}, "annot_C": {...}}

The face box of an image is the mean of its annotators' valid boxes, clipped to the image.

`scan_dataset` finds everything, decodes every image fully (a truncated JPEG decodes with
grey filler in OpenCV, so Pillow decodes it with truncation as an error, and a JPEG must
end with its EOI marker) and returns the usable `Sample` s plus every `Exclusion` with its
path and reason. `select` draws a stratified, seeded sample per class and split (nested:
the first 200 of a class are the first 200 of its 1000). `write_prepared` writes the
classification datasets (face crops and whole images), the YOLO detection dataset and the
report into a temporary folder that is renamed into place only when complete
(`training.preprocess` drives it).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import math
import re
import shutil
import unicodedata
import uuid
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.crop import crop_region
from inference.labels import ALPHABETICAL_LABELS, KOREAN_CLASS_NAMES, ORIGINAL_DETECTION_LABELS
from stream.contract import EMOTIONS

log = logging.getLogger(__name__)

#: Version of the prepared-dataset format (``dataset.json``).
PREPARED_FORMAT_VERSION = 1
#: The file that marks a complete prepared dataset; written last, inside the temp folder.
PREPARED_MARKER = "dataset.json"

SOURCE_SPLITS: tuple[str, ...] = ("train", "validation")
#: Source split → split folder name in the outputs (the name ultralytics expects).
OUTPUT_SPLITS: dict[str, str] = {"train": "train", "validation": "val"}
KINDS: tuple[str, ...] = ("labeled", "raw")
ANNOTATORS: tuple[str, ...] = ("annot_A", "annot_B", "annot_C")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
JSON_SUFFIX = ".json"

#: Korean class names of the original data set → product classes.
CLASS_ALIASES: dict[str, str] = KOREAN_CLASS_NAMES

#: Per-class sample sizes (train, validation) of the original project.
PRESETS: dict[str, tuple[int, int]] = {
    "200/100": (200, 100),
    "1000/300": (1000, 300),
    "4000/1000": (4000, 1000),
}

#: Class orders a detection dataset may use. Classification datasets are always
#: alphabetical: folder-per-class loaders (ultralytics, torchvision) sort folder names.
DETECTION_ORDERS: dict[str, tuple[str, ...]] = {
    "original": ORIGINAL_DETECTION_LABELS,
    "alphabetical": ALPHABETICAL_LABELS,
    "product": EMOTIONS,
}

#: Exclusion reasons (the report explains each).
REASONS: dict[str, str] = {
    "not_image": "not an image or annotation file",
    "corrupt": "image cannot be decoded",
    "truncated": "image file is truncated",
    "bad_json": "annotation file is not valid JSON / not an annotation object",
    "missing_annotation": "image has no annotation",
    "missing_image": "annotation names an image that does not exist",
    "no_boxes": "annotation holds no valid annotator box",
    "box_outside_image": "averaged box lies (almost) entirely outside the image",
    "duplicate": "another image with the same name in the same class and split",
    "unknown_class": "class folder is not one of the seven classes",
}


class DatasetError(ValueError):
    """Input that cannot be turned into a dataset at all (nothing usable, wrong root, …)."""


# ---------------------------------------------------------------------------- boxes


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixels: (x1, y1) top-left, (x2, y2) bottom-right."""

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

    def clip(self, width: int, height: int) -> Box:
        return Box(
            min(max(self.x1, 0.0), float(width)),
            min(max(self.y1, 0.0), float(height)),
            min(max(self.x2, 0.0), float(width)),
            min(max(self.y2, 0.0), float(height)),
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


# ---------------------------------------------------------------------------- images


def read_image_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def decode_image(data: bytes) -> np.ndarray:
    """Fully decode image bytes into a BGR uint8 array, EXIF orientation applied.

    Raises `ValueError` (message starting ``truncated:`` or ``corrupt:``) on a file that
    does not decode completely: Pillow is told not to accept truncated data, and a JPEG
    must end with its EOI marker (a cut-off JPEG otherwise decodes with grey filler).
    """
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        raise ValueError("truncated: JPEG without its end-of-image marker")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            transposed = ImageOps.exif_transpose(im)
            rgb = transposed.convert("RGB")
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise ValueError(f"corrupt: {exc}") from exc
    except OSError as exc:
        kind = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ValueError(f"{kind}: {exc}") from exc
    except Exception as exc:  # Pillow raises a zoo of types on hostile files
        raise ValueError(f"corrupt: {type(exc).__name__}: {exc}") from exc
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError("corrupt: empty image")
    return np.ascontiguousarray(arr[:, :, ::-1])


def load_image(path: Path) -> np.ndarray:
    """Decode the image at `path` (any file name, Korean included) as BGR uint8."""
    return decode_image(read_image_bytes(path))


def has_exif_rotation(data: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.getexif().get(0x0112, 1) not in (1, None)
    except Exception:
        return False


def write_image(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Encode `image` (BGR) by the suffix of `path` and write it (non-ASCII paths work)."""
    ok, buf = cv2.imencode(path.suffix, image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise ValueError(f"cannot encode image for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())


def crop_box(image: np.ndarray, box: Box, margin: float = 0.0, square: bool = False) -> np.ndarray:
    """The pixels of `box` in `image`, grown by `margin` of its side on every side and
    made square around its centre with `square` (`inference.crop.crop_region`: the
    vision worker cuts its faces by the same rule)."""
    return crop_region(image, box.as_tuple(), margin, square)


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(
        image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )


# ---------------------------------------------------------------------------- scanning


@dataclass
class Sample:
    """One usable image: its class, split, files, real size and boxes."""

    emotion: str
    split: str  # source split: "train" | "validation"
    image: Path
    annotation: Path
    width: int
    height: int
    annotators: dict[str, Box]
    box: Box  # averaged, clipped to the image
    clipped: bool = False
    exif_rotated: bool = False

    def relpath(self, root: Path) -> str:
        try:
            return self.image.relative_to(root).as_posix()
        except ValueError:
            return self.image.as_posix()

    def agreement(self) -> float:
        """Mean IoU of the annotators' boxes with the averaged box."""
        if not self.annotators:
            return float("nan")
        return float(np.mean([b.iou(self.box) for b in self.annotators.values()]))


@dataclass(frozen=True)
class Exclusion:
    """A file left out, and why."""

    path: Path
    reason: str
    emotion: str = ""
    split: str = ""
    detail: str = ""

    def to_row(self, root: Path) -> dict[str, str]:
        try:
            rel = self.path.relative_to(root).as_posix()
        except ValueError:
            rel = self.path.as_posix()
        return {
            "path": rel,
            "class": self.emotion,
            "split": self.split,
            "reason": self.reason,
            "detail": self.detail,
        }


@dataclass
class ScanResult:
    root: Path
    samples: list[Sample]
    exclusions: list[Exclusion]
    warnings: list[str]
    #: per class and source split: images / annotations found (before any check)
    found_images: dict[str, dict[str, int]]
    found_annotations: dict[str, dict[str, int]]
    #: class folders found on disk → product class (unknown ones are not listed)
    class_folders: dict[str, str]

    def usable(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {e: dict.fromkeys(SOURCE_SPLITS, 0) for e in EMOTIONS}
        for s in self.samples:
            counts[s.emotion][s.split] += 1
        return counts

    def excluded_images(self) -> dict[str, dict[str, int]]:
        counts: dict[str, dict[str, int]] = {e: dict.fromkeys(SOURCE_SPLITS, 0) for e in EMOTIONS}
        for x in self.exclusions:
            if x.emotion in counts and x.split in SOURCE_SPLITS and _is_image(x.path):
                counts[x.emotion][x.split] += 1
        return counts


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def _nfc(text: str) -> str:
    # Korean names from macOS archives are often NFD on disk and NFC inside the JSON
    return unicodedata.normalize("NFC", text)


def class_of_folder(name: str) -> str | None:
    """Product class for a class folder name (English or the original Korean), or None."""
    key = _nfc(name).strip()
    if key.lower() in EMOTIONS:
        return key.lower()
    return CLASS_ALIASES.get(key)


def _check_image(path: Path) -> tuple[int, int, bool] | str:
    """(width, height, exif_rotated) of a fully decoded image, or the error message."""
    try:
        data = read_image_bytes(path)
        image = decode_image(data)
    except (OSError, ValueError) as exc:
        return str(exc)
    h, w = image.shape[:2]
    return (w, h, has_exif_rotation(data))


def _records_of(data: Any) -> list[dict[str, Any]] | None:
    if isinstance(data, dict):
        # some exports wrap the list: {"annotations": [...]} / {"data": [...]}
        for key in ("annotations", "data", "images"):
            if isinstance(data.get(key), list) and not any(k in data for k in ANNOTATORS):
                return [r for r in data[key] if isinstance(r, dict)]
        return [data]
    if isinstance(data, list) and all(isinstance(r, dict) for r in data):
        return list(data)
    return None


def scan_dataset(
    root: Path | str, workers: int = 0, progress: bool = False, min_visible: float = 0.05
) -> ScanResult:
    """Find, pair and check every image and annotation under `root` (see the module doc).

    `workers` > 0 decodes images in that many processes. A box whose clipped area is less
    than `min_visible` of its own area is "outside the image". Raises `DatasetError` when
    `root` is not a folder or holds no class folder at all; everything else is reported.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"dataset root {root} is not a folder")
    exclusions: list[Exclusion] = []
    warnings: list[str] = []
    found_images = {e: dict.fromkeys(SOURCE_SPLITS, 0) for e in EMOTIONS}
    found_annotations = {e: dict.fromkeys(SOURCE_SPLITS, 0) for e in EMOTIONS}
    class_folders: dict[str, str] = {}

    for child in sorted(root.iterdir()):
        if not child.is_dir():
            if child.name.startswith("."):
                continue
            exclusions.append(Exclusion(child, "not_image", detail="file at the dataset root"))
            continue
        emotion = class_of_folder(child.name)
        if emotion is None:
            n_files = sum(1 for p in child.rglob("*") if p.is_file())
            exclusions.append(
                Exclusion(
                    child,
                    "unknown_class",
                    detail=f"{n_files} files skipped; classes are {', '.join(EMOTIONS)}",
                )
            )
            warnings.append(
                f"class folder {child.name!r} is not one of the seven classes "
                f"({', '.join(EMOTIONS)}); its {n_files} files were skipped"
            )
            continue
        if emotion in class_folders.values():
            warnings.append(f"class folder {child.name!r} is a second folder for {emotion!r}")
        class_folders[child.name] = emotion
    if not class_folders:
        raise DatasetError(
            f"{root} holds no class folder ({', '.join(EMOTIONS)}, or the Korean names); "
            "expected <root>/<emotion>/{labeled,raw}/{train,validation}"
        )
    for emotion in EMOTIONS:
        if emotion not in class_folders.values():
            warnings.append(f"class {emotion!r} has no folder in {root}")

    # ---- pair images with annotations, per class folder and split
    pending: list[tuple[str, str, Path, Path, dict[str, Any]]] = []
    for folder, emotion in class_folders.items():
        class_dir = root / folder
        all_files = [p for p in class_dir.rglob("*") if p.is_file() and not p.name.startswith(".")]
        if not all_files:
            warnings.append(f"class folder {folder!r} ({emotion}) is empty")
            continue
        placed: set[Path] = set()
        for split in SOURCE_SPLITS:
            images: dict[str, Path] = {}
            stems: dict[str, Path] = {}
            records: dict[str, tuple[Path, dict[str, Any]]] = {}
            bad_json_stems: dict[str, Path] = {}
            for kind in KINDS:
                split_dir = class_dir / kind / split
                if not split_dir.is_dir():
                    continue
                for path in sorted(split_dir.rglob("*")):
                    if not path.is_file() or path.name.startswith("."):
                        continue
                    placed.add(path)
                    suffix = path.suffix.lower()
                    if suffix in IMAGE_SUFFIXES:
                        found_images[emotion][split] += 1
                        key = _nfc(path.name)
                        if key in images:
                            exclusions.append(
                                Exclusion(path, "duplicate", emotion, split, f"see {images[key]}")
                            )
                            continue
                        images[key] = path
                        stems.setdefault(_nfc(path.stem), path)
                    elif suffix == JSON_SUFFIX:
                        found_annotations[emotion][split] += 1
                        try:
                            parsed = _records_of(json.loads(path.read_text(encoding="utf-8")))
                        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                            parsed = None
                            detail = str(exc)
                        else:
                            detail = "not an object or a list of objects"
                        if parsed is None:
                            bad_json_stems[_nfc(path.stem)] = path
                            exclusions.append(Exclusion(path, "bad_json", emotion, split, detail))
                            continue
                        for i, rec in enumerate(parsed):
                            name = rec.get("filename") or rec.get("file_name")
                            key = _nfc(Path(str(name)).name) if name else _nfc(path.stem)
                            if key in records:
                                exclusions.append(
                                    Exclusion(
                                        path,
                                        "duplicate",
                                        emotion,
                                        split,
                                        f"second annotation (entry {i}) for {key}",
                                    )
                                )
                                continue
                            records[key] = (path, rec)
                    else:
                        exclusions.append(
                            Exclusion(path, "not_image", emotion, split, f"suffix {suffix!r}")
                        )
            used_keys: set[str] = set()
            for key, img in images.items():
                stem = _nfc(Path(key).stem)
                match = records.get(key) or records.get(stem)
                if match is None:
                    bad = bad_json_stems.get(stem)
                    detail = f"its annotation {bad.name} is unreadable" if bad else ""
                    exclusions.append(Exclusion(img, "missing_annotation", emotion, split, detail))
                    continue
                used_keys.add(key if key in records else stem)
                pending.append((emotion, split, img, match[0], match[1]))
            for key, (ann, _rec) in records.items():
                if key not in used_keys and key not in stems:
                    exclusions.append(
                        Exclusion(ann, "missing_image", emotion, split, f"no image {key}")
                    )
        for path in all_files:
            if path not in placed:
                exclusions.append(
                    Exclusion(
                        path,
                        "not_image" if not _is_image(path) else "missing_annotation",
                        emotion,
                        "",
                        "outside {labeled,raw}/{train,validation}",
                    )
                )

    # ---- boxes first (cheap), then decode the images that still qualify
    boxed: list[tuple[str, str, Path, Path, dict[str, Box]]] = []
    for emotion, split, img, ann, rec in pending:
        boxes = annotator_boxes(rec)
        if not boxes:
            exclusions.append(Exclusion(img, "no_boxes", emotion, split, f"annotation {ann.name}"))
            continue
        boxed.append((emotion, split, img, ann, boxes))

    paths = [b[2] for b in boxed]
    checks = _map_checks(paths, workers, progress)
    samples: list[Sample] = []
    for (emotion, split, img, ann, boxes), checked in zip(boxed, checks, strict=True):
        if isinstance(checked, str):
            reason = "truncated" if checked.startswith("truncated") else "corrupt"
            exclusions.append(Exclusion(img, reason, emotion, split, checked))
            continue
        width, height, rotated = checked
        mean = average_boxes(boxes.values())
        clipped_box = mean.clip(width, height)
        if (
            clipped_box.area < min_visible * mean.area
            or min(clipped_box.width, clipped_box.height) < 1.0
        ):
            exclusions.append(
                Exclusion(
                    img,
                    "box_outside_image",
                    emotion,
                    split,
                    f"box {tuple(round(v, 1) for v in mean.as_tuple())} "
                    f"in a {width}×{height} image",
                )
            )
            continue
        samples.append(
            Sample(
                emotion=emotion,
                split=split,
                image=img,
                annotation=ann,
                width=width,
                height=height,
                annotators=boxes,
                box=clipped_box,
                clipped=clipped_box != mean,
                exif_rotated=rotated,
            )
        )
    return ScanResult(
        root=root,
        samples=samples,
        exclusions=exclusions,
        warnings=warnings,
        found_images=found_images,
        found_annotations=found_annotations,
        class_folders=class_folders,
    )


def _map_checks(
    paths: Sequence[Path], workers: int, progress: bool
) -> list[tuple[int, int, bool] | str]:
    from tqdm import tqdm

    bar = dict(total=len(paths), desc="checking images", unit="img", disable=not progress)
    if workers and workers > 0 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            return list(tqdm(pool.map(_check_image, paths, chunksize=16), **bar))
    return [_check_image(p) for p in tqdm(paths, **bar)]


# ---------------------------------------------------------------------------- sampling


def _order_key(seed: int, sample: Sample, root: Path) -> str:
    text = f"{seed}\0{sample.emotion}\0{sample.split}\0{_nfc(sample.relpath(root))}"
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def select(
    samples: Sequence[Sample],
    root: Path,
    train_per_class: int | None,
    val_per_class: int | None,
    seed: int = 0,
) -> tuple[list[Sample], list[str]]:
    """A stratified, seeded sample: up to the requested count per class and split (None:
    all). The order is a hash of (seed, class, split, relative path), so the draw does not
    depend on listing order and a smaller draw is a prefix of a larger one. Returns the
    chosen samples and warnings for classes with fewer images than asked."""
    wanted = {"train": train_per_class, "validation": val_per_class}
    groups: dict[tuple[str, str], list[Sample]] = defaultdict(list)
    for s in samples:
        groups[(s.emotion, s.split)].append(s)
    chosen: list[Sample] = []
    short: dict[str, list[str]] = defaultdict(list)
    for (emotion, split), group in sorted(groups.items()):
        group.sort(key=lambda s: _order_key(seed, s, root))
        n = wanted[split]
        if n is not None and len(group) < n:
            short[split].append(f"{emotion} {len(group)}")
        chosen.extend(group if n is None else group[:n])
    warnings = [
        f"{split}: fewer than the {wanted[split]} asked for per class, all usable images "
        f"taken: {', '.join(items)}"
        for split, items in short.items()
    ]
    return chosen, warnings


def resolve_counts(
    preset: str | None, train_per_class: int | None, val_per_class: int | None
) -> tuple[int | None, int | None]:
    """Per-class counts from a preset name (``200/100``, …, ``all``) and/or explicit counts
    (explicit counts win)."""
    train_n = val_n = None
    if preset and preset != "all":
        if preset not in PRESETS:
            raise DatasetError(f"unknown preset {preset!r}; choose from {[*PRESETS, 'all']}")
        train_n, val_n = PRESETS[preset]
    if train_per_class is not None:
        train_n = train_per_class
    if val_per_class is not None:
        val_n = val_per_class
    for n in (train_n, val_n):
        if n is not None and n < 1:
            raise DatasetError("per-class counts must be at least 1")
    return train_n, val_n


# ---------------------------------------------------------------------------- writing


@dataclass
class PrepareOptions:
    train_per_class: int | None = None
    val_per_class: int | None = None
    seed: int = 0
    crop_margin: float = 0.0
    square_crop: bool = True
    crop_size: int | None = 224
    max_side: int | None = None
    squash: int | None = None
    detection_order: str = "original"
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.crop_margin < 0:
            raise DatasetError("crop margin may not be negative")
        if self.detection_order not in DETECTION_ORDERS:
            raise DatasetError(
                f"detection order {self.detection_order!r} not in {list(DETECTION_ORDERS)}"
            )
        for name in ("crop_size", "max_side", "squash"):
            value = getattr(self, name)
            if value is not None and value < 8:
                raise DatasetError(f"{name} must be at least 8 pixels")


@dataclass
class PreparedDataset:
    """A prepared dataset on disk (``dataset.json`` of `write_prepared`)."""

    root: Path
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def classes(self) -> list[str]:
        """Class order of the classification datasets (alphabetical)."""
        return list(self.meta["classify"]["classes"])

    @property
    def detect_classes(self) -> list[str]:
        return list(self.meta["detect"]["classes"])

    @property
    def detect_yaml(self) -> Path:
        return self.root / self.meta["detect"]["yaml"]

    def classify_dir(self, variant: str = "crop") -> Path:
        if variant not in self.meta["classify"]["variants"]:
            raise DatasetError(
                f"classification variant {variant!r} not in {self.meta['classify']['variants']}"
            )
        return self.root / "classify" / variant

    def classify_items(self, variant: str, split: str) -> list[tuple[Path, int]]:
        """(image, class index) of one classification split, indices in `classes` order."""
        base = self.classify_dir(variant) / split
        items: list[tuple[Path, int]] = []
        for index, name in enumerate(self.classes):
            folder = base / name
            if folder.is_dir():
                items.extend(
                    (p, index)
                    for p in sorted(folder.iterdir())
                    if p.suffix.lower() in IMAGE_SUFFIXES
                )
        return items

    def detect_items(self, split: str) -> list[tuple[Path, Path]]:
        """(image, YOLO label file) pairs of one detection split."""
        images = self.root / "detect" / "images" / split
        labels = self.root / "detect" / "labels" / split
        return [
            (p, labels / f"{p.stem}.txt")
            for p in sorted(images.iterdir())
            if p.suffix.lower() in IMAGE_SUFFIXES
        ]


def load_prepared(path: Path | str) -> PreparedDataset:
    """Open a prepared dataset; a folder without its completion marker is refused."""
    root = Path(path)
    marker = root / PREPARED_MARKER
    if not marker.is_file():
        raise DatasetError(
            f"{root} is not a complete prepared dataset (no {PREPARED_MARKER}); run "
            "`intervue train preprocess` first"
        )
    meta = json.loads(marker.read_text(encoding="utf-8"))
    if meta.get("format_version") != PREPARED_FORMAT_VERSION:
        raise DatasetError(
            f"{marker}: format_version {meta.get('format_version')} is not "
            f"{PREPARED_FORMAT_VERSION}; preprocess again"
        )
    return PreparedDataset(root=root, meta=meta)


_UNSAFE = re.compile(r'[\\/:*?"<>|\s]+')


def _safe_stem(stem: str, limit: int = 80) -> str:
    cleaned = _UNSAFE.sub("_", _nfc(stem)).strip("._") or "image"
    return cleaned[:limit]


def write_prepared(
    scan: ScanResult,
    out: Path | str,
    options: PrepareOptions,
    overwrite: bool = False,
    progress: bool = False,
) -> PreparedDataset:
    """Sample `scan` and write every output into `out` (see docs/training.md).

    Everything is written into a hidden temporary folder beside `out` and renamed into
    place at the end, with ``dataset.json`` (the completion marker) written last: an
    interrupted run leaves no folder that looks complete. `out` must not exist unless
    `overwrite`.
    """
    out = Path(out)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} exists; pass overwrite (--overwrite) to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        meta = _write_all(scan, tmp, options, progress)
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
            out.rename(old)
        tmp.rename(out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PreparedDataset(root=out, meta=meta)


def _write_all(
    scan: ScanResult, tmp: Path, options: PrepareOptions, progress: bool
) -> dict[str, Any]:
    from tqdm import tqdm

    warnings = list(scan.warnings)
    chosen, shortfalls = select(
        scan.samples, scan.root, options.train_per_class, options.val_per_class, options.seed
    )
    warnings.extend(shortfalls)
    # a class needs images in both splits: folder-per-class loaders refuse an empty one
    have = {(s.emotion, s.split) for s in chosen}
    classes = [e for e in ALPHABETICAL_LABELS if all((e, sp) in have for sp in SOURCE_SPLITS)]
    for e in ALPHABETICAL_LABELS:
        if e not in classes:
            missing = [sp for sp in SOURCE_SPLITS if (e, sp) not in have]
            warnings.append(
                f"class {e!r} left out of the outputs: no usable images in {' or '.join(missing)}"
            )
    if len(classes) < 2:
        raise DatasetError(
            f"only {len(classes)} class(es) with usable images in both splits "
            f"({', '.join(classes) or 'none'}); need at least 2. See the exclusions: "
            + "; ".join(sorted({x.reason for x in scan.exclusions}))
        )
    chosen = [s for s in chosen if s.emotion in classes]
    detect_classes = [e for e in DETECTION_ORDERS[options.detection_order] if e in classes]

    variants = ("crop", "full")
    for variant in variants:
        for split in OUTPUT_SPLITS.values():
            for e in classes:
                (tmp / "classify" / variant / split / e).mkdir(parents=True, exist_ok=True)
    for split in OUTPUT_SPLITS.values():
        (tmp / "detect" / "images" / split).mkdir(parents=True, exist_ok=True)
        (tmp / "detect" / "labels" / split).mkdir(parents=True, exist_ok=True)

    manifest: list[dict[str, Any]] = []
    used_names: set[tuple[str, str]] = set()
    for s in tqdm(chosen, desc="writing datasets", unit="img", disable=not progress):
        split = OUTPUT_SPLITS[s.split]
        base = f"{s.emotion}_{_safe_stem(s.image.stem)}"
        name, n = base, 1
        while (split, name) in used_names:
            n += 1
            name = f"{base}_{n}"
        used_names.add((split, name))
        data = read_image_bytes(s.image)
        image = decode_image(data)
        if image.shape[1] != s.width or image.shape[0] != s.height:
            raise DatasetError(f"{s.image} changed while preprocessing")
        # the face crop, from the full-resolution image
        crop = crop_box(image, s.box, options.crop_margin, options.square_crop)
        if options.crop_size:
            h, w = crop.shape[:2]
            scale = options.crop_size / max(h, w)
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            crop = cv2.resize(
                crop, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            )
        crop_path = tmp / "classify" / "crop" / split / s.emotion / f"{name}.jpg"
        write_image(crop_path, crop, options.jpeg_quality)
        # the whole image: copied as is unless it must change
        suffix = s.image.suffix.lower()
        full = image
        if options.squash:
            full = cv2.resize(image, (options.squash, options.squash), interpolation=cv2.INTER_AREA)
        elif options.max_side:
            full = resize_max_side(image, options.max_side)
        out_suffix = ".png" if suffix == ".png" else ".jpg"
        detect_image = tmp / "detect" / "images" / split / f"{name}{out_suffix}"
        if full is image and not s.exif_rotated and suffix in (".jpg", ".jpeg", ".png"):
            detect_image.write_bytes(data)
        else:
            write_image(detect_image, full, options.jpeg_quality)
        full_path = tmp / "classify" / "full" / split / s.emotion / detect_image.name
        shutil.copyfile(detect_image, full_path)
        # the YOLO label: normalised by the real size, so any aspect-keeping resize (or an
        # asked-for squash) leaves it valid
        label = yolo_label_line(detect_classes.index(s.emotion), s.box, s.width, s.height)
        label_path = tmp / "detect" / "labels" / split / f"{name}.txt"
        label_path.write_text(label + "\n", encoding="utf-8")
        manifest.append(
            {
                "split": split,
                "class": s.emotion,
                "class_index": classes.index(s.emotion),
                "detect_class_index": detect_classes.index(s.emotion),
                "source": s.relpath(scan.root),
                "annotation": _rel(s.annotation, scan.root),
                "width": s.width,
                "height": s.height,
                "annotators": len(s.annotators),
                **{
                    f"{k}_{c}": (
                        round(s.annotators[k].as_tuple()[i], 2) if k in s.annotators else ""
                    )
                    for k in ANNOTATORS
                    for i, c in enumerate(("x1", "y1", "x2", "y2"))
                },
                "box_x1": round(s.box.x1, 2),
                "box_y1": round(s.box.y1, 2),
                "box_x2": round(s.box.x2, 2),
                "box_y2": round(s.box.y2, 2),
                "clipped": int(s.clipped),
                "agreement_iou": round(s.agreement(), 4),
                "crop": crop_path.relative_to(tmp).as_posix(),
                "image": detect_image.relative_to(tmp).as_posix(),
                "label": label_path.relative_to(tmp).as_posix(),
                "yolo": label,
            }
        )

    # class order, recorded in every output
    for variant in variants:
        (tmp / "classify" / variant / "classes.txt").write_text(
            "\n".join(classes) + "\n", encoding="utf-8"
        )
    (tmp / "detect" / "classes.txt").write_text("\n".join(detect_classes) + "\n", "utf-8")
    _write_yaml(
        tmp / "detect" / "data.yaml",
        {"train": "images/train", "val": "images/val"},
        detect_classes,
    )
    _write_csv(tmp / "manifest.csv", manifest)
    _write_csv(
        tmp / "exclusions.csv",
        [x.to_row(scan.root) for x in scan.exclusions],
        ["path", "class", "split", "reason", "detail"],
    )

    written = {e: dict.fromkeys(OUTPUT_SPLITS.values(), 0) for e in classes}
    for row in manifest:
        written[row["class"]][row["split"]] += 1
    report = build_report(scan, options, classes, detect_classes, written, warnings)
    (tmp / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False), "utf-8")
    (tmp / "report.md").write_text(render_report(report), encoding="utf-8")
    meta = {
        "format_version": PREPARED_FORMAT_VERSION,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": str(scan.root.resolve()),
        "options": asdict(options),
        "classify": {
            "classes": classes,
            "order": "alphabetical",
            "variants": list(variants),
            "splits": list(OUTPUT_SPLITS.values()),
            "crop_margin": options.crop_margin,
            "square_crop": options.square_crop,
            "crop_size": options.crop_size,
        },
        "detect": {
            "classes": detect_classes,
            "order": options.detection_order,
            "yaml": "detect/data.yaml",
            "squashed": options.squash is not None,
        },
        "counts": written,
        "report": "report.md",
    }
    # the completion marker: written last
    (tmp / PREPARED_MARKER).write_text(json.dumps(meta, indent=2, ensure_ascii=False), "utf-8")
    return meta


def _rel(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _write_yaml(path: Path, fields: dict[str, str], names: Sequence[str]) -> None:
    """A YOLO data yaml. No ``path`` key: ultralytics then resolves the splits relative to
    the yaml's own folder, so the dataset folder can move."""
    lines = [
        "# written by intervue train preprocess; the class order below is the label order",
        "# (no 'path' key: train/val are relative to this file's folder)",
    ]
    lines += [f"{k}: {v}" for k, v in fields.items()]
    lines.append(f"nc: {len(names)}")
    lines.append("names:")
    lines += [f"  {i}: {n}" for i, n in enumerate(names)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _write_csv(
    path: Path, rows: list[dict[str, Any]], columns: Sequence[str] | None = None
) -> None:
    columns = list(columns or (rows[0].keys() if rows else []))
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# ---------------------------------------------------------------------------- report


def build_report(
    scan: ScanResult,
    options: PrepareOptions,
    classes: Sequence[str],
    detect_classes: Sequence[str],
    written: dict[str, dict[str, int]],
    warnings: Sequence[str],
) -> dict[str, Any]:
    usable = scan.usable()
    excluded = scan.excluded_images()
    per_class = []
    for e in EMOTIONS:
        for split in SOURCE_SPLITS:
            per_class.append(
                {
                    "class": e,
                    "split": split,
                    "images_found": scan.found_images[e][split],
                    "annotations_found": scan.found_annotations[e][split],
                    "images_excluded": excluded[e][split],
                    "usable": usable[e][split],
                    "written": written.get(e, {}).get(OUTPUT_SPLITS[split], 0),
                }
            )
    reasons = Counter(x.reason for x in scan.exclusions)
    annot_counts = Counter(len(s.annotators) for s in scan.samples)
    agreements = [s.agreement() for s in scan.samples if s.annotators]
    return {
        "source": str(scan.root.resolve()),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "options": asdict(options),
        "classes": list(classes),
        "detect_classes": list(detect_classes),
        "class_folders": scan.class_folders,
        "per_class": per_class,
        "totals": {
            "images_found": sum(r["images_found"] for r in per_class),
            "annotations_found": sum(r["annotations_found"] for r in per_class),
            "usable": len(scan.samples),
            "written": sum(r["written"] for r in per_class),
            "excluded_files": len(scan.exclusions),
        },
        "exclusions_by_reason": dict(sorted(reasons.items())),
        "exclusions": [x.to_row(scan.root) for x in scan.exclusions],
        "boxes": {
            "averaged": len(scan.samples),
            "by_annotator_count": {str(k): v for k, v in sorted(annot_counts.items())},
            "clipped_to_image": sum(s.clipped for s in scan.samples),
            "mean_agreement_iou": round(float(np.mean(agreements)), 4) if agreements else None,
            "exif_rotated": sum(s.exif_rotated for s in scan.samples),
        },
        "warnings": list(warnings),
    }


def render_report(report: dict[str, Any], max_listed: int = 200) -> str:
    """The report as Markdown."""
    o = report["options"]
    lines = [
        "# Preprocessing report",
        "",
        f"- source: `{report['source']}`",
        f"- created: {report['created']}",
        f"- per class: train {o['train_per_class'] or 'all'}, "
        f"validation {o['val_per_class'] or 'all'} (seed {o['seed']})",
        f"- classification classes (alphabetical): {', '.join(report['classes'])}",
        f"- detection classes ({o['detection_order']} order): "
        f"{', '.join(report['detect_classes'])}",
        "",
        "## Images per class and split",
        "",
        "| class | split | images found | annotations found | excluded | usable | written |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in report["per_class"]:
        lines.append(
            f"| {r['class']} | {r['split']} | {r['images_found']} | {r['annotations_found']} "
            f"| {r['images_excluded']} | {r['usable']} | {r['written']} |"
        )
    t = report["totals"]
    lines += [
        f"| **total** | | {t['images_found']} | {t['annotations_found']} | | {t['usable']} "
        f"| {t['written']} |",
        "",
        "## Boxes",
        "",
        f"- averaged from the annotators' boxes: {report['boxes']['averaged']} images "
        f"(annotators per image: {report['boxes']['by_annotator_count']})",
        f"- clipped to the image: {report['boxes']['clipped_to_image']}",
        f"- mean IoU of an annotator's box with the average: "
        f"{report['boxes']['mean_agreement_iou']}",
        f"- EXIF-rotated images (boxes taken in the rotated frame): "
        f"{report['boxes']['exif_rotated']}",
        "",
        "## Excluded files",
        "",
    ]
    if not report["exclusions"]:
        lines.append("None.")
    else:
        lines += ["| reason | count | meaning |", "|---|---:|---|"]
        for reason, n in report["exclusions_by_reason"].items():
            lines.append(f"| {reason} | {n} | {REASONS.get(reason, '')} |")
        lines += ["", "| path | class | split | reason | detail |", "|---|---|---|---|---|"]
        for x in report["exclusions"][:max_listed]:
            detail = x["detail"].replace("|", "\\|").replace("\n", " ")
            lines.append(
                f"| `{x['path']}` | {x['class']} | {x['split']} | {x['reason']} | {detail} |"
            )
        if len(report["exclusions"]) > max_listed:
            lines.append(f"\n… {len(report['exclusions']) - max_listed} more in exclusions.csv")
    lines += ["", "## Warnings", ""]
    lines += [f"- {w}" for w in report["warnings"]] or ["None."]
    return "\n".join(lines) + "\n"
