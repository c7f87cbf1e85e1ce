"""Scanning the source (`scan_dataset`): every image and annotation found, every image
decoded fully, the usable `Sample` s returned with every `Exclusion` (path and reason).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from inference.face import Box
from stream.contract import EMOTIONS
from training.dataset.boxes import annotator_boxes, average_boxes
from training.dataset.images import decode_image, has_exif_rotation, read_image_bytes
from training.dataset.layout import (
    ANNOTATORS,
    CLASS_ALIASES,
    IMAGE_SUFFIXES,
    JSON_SUFFIX,
    KINDS,
    SOURCE_SPLITS,
    DatasetError,
    nfc,
)


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


def class_of_folder(name: str) -> str | None:
    """Product class for a class folder name (English or the original Korean), or None."""
    key = nfc(name).strip()
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
                        key = nfc(path.name)
                        if key in images:
                            exclusions.append(
                                Exclusion(path, "duplicate", emotion, split, f"see {images[key]}")
                            )
                            continue
                        images[key] = path
                        stems.setdefault(nfc(path.stem), path)
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
                            bad_json_stems[nfc(path.stem)] = path
                            exclusions.append(Exclusion(path, "bad_json", emotion, split, detail))
                            continue
                        for i, rec in enumerate(parsed):
                            name = rec.get("filename") or rec.get("file_name")
                            key = nfc(Path(str(name)).name) if name else nfc(path.stem)
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
                stem = nfc(Path(key).stem)
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
        clipped_box = mean.clipped(width, height)
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
