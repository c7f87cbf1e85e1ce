"""Writing a prepared dataset (`write_prepared`): the classification datasets (face crops
and whole images), the YOLO detection dataset and the report, into a temporary folder
that is renamed into place only when complete.
"""

from __future__ import annotations

import csv
import json
import re
import shutil
import uuid
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cv2

from inference.labels import ALPHABETICAL_LABELS
from training.dataset.boxes import yolo_label_line
from training.dataset.images import (
    crop_box,
    decode_image,
    read_image_bytes,
    resize_max_side,
    write_image,
)
from training.dataset.layout import (
    ANNOTATORS,
    DETECTION_ORDERS,
    OUTPUT_SPLITS,
    PREPARED_FORMAT_VERSION,
    PREPARED_MARKER,
    SOURCE_SPLITS,
    DatasetError,
    nfc,
)
from training.dataset.prepared import PreparedDataset, PrepareOptions
from training.dataset.report import build_report, render_report
from training.dataset.sampling import select
from training.dataset.scan import ScanResult

_UNSAFE = re.compile(r'[\\/:*?"<>|\s]+')


def _safe_stem(stem: str, limit: int = 80) -> str:
    cleaned = _UNSAFE.sub("_", nfc(stem)).strip("._") or "image"
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
