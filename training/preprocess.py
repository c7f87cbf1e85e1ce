"""``intervue train preprocess``: the original layout → report + training datasets.

`preprocess` scans the source (`training.dataset.scan_dataset`: pairing, full decoding,
box averaging, exclusions), draws the per-class sample and writes, atomically::

    <out>/dataset.json            completion marker: classes, orders, options, counts
    <out>/report.md, report.json  images per class/split, exclusions with paths, boxes
    <out>/manifest.csv            one row per written image (source, boxes, outputs)
    <out>/exclusions.csv          every excluded file with its reason
    <out>/classify/crop/{train,val}/<class>/*.jpg   face crops (averaged box)
    <out>/classify/full/{train,val}/<class>/*       whole images
    <out>/classify/*/classes.txt                    class order (alphabetical)
    <out>/detect/images/{train,val}/*, detect/labels/{train,val}/*.txt
    <out>/detect/data.yaml, detect/classes.txt      YOLO dataset + its class order
"""

from __future__ import annotations

import logging
from pathlib import Path

from training.dataset import (
    DatasetError,
    PreparedDataset,
    PrepareOptions,
    resolve_counts,
    scan_dataset,
    write_prepared,
)

log = logging.getLogger(__name__)

__all__ = ["DatasetError", "preprocess", "summary_lines"]


def preprocess(
    source: Path | str,
    out: Path | str,
    preset: str | None = None,
    train_per_class: int | None = None,
    val_per_class: int | None = None,
    seed: int = 0,
    crop_margin: float = 0.0,
    square_crop: bool = True,
    crop_size: int | None = 224,
    max_side: int | None = None,
    squash: int | None = None,
    detection_order: str = "original",
    workers: int = 0,
    overwrite: bool = False,
    progress: bool = False,
) -> PreparedDataset:
    """Scan `source` and write the prepared dataset into `out` (see the module doc).

    Raises `DatasetError` for input that yields no dataset (no class folders, fewer than two
    classes with images in both splits, `out` already there without `overwrite`); bad
    single files are excluded and reported instead.
    """
    train_n, val_n = resolve_counts(preset, train_per_class, val_per_class)
    options = PrepareOptions(
        train_per_class=train_n,
        val_per_class=val_n,
        seed=seed,
        crop_margin=crop_margin,
        square_crop=square_crop,
        crop_size=crop_size or None,  # 0 / None: crops at their native size
        max_side=max_side,
        squash=squash,
        detection_order=detection_order,
    )
    out = Path(out)
    if out.exists() and not overwrite:
        raise DatasetError(f"{out} exists; pass --overwrite to replace it")
    scan = scan_dataset(source, workers=workers, progress=progress)
    log.info(
        "scanned %s: %d usable images, %d files excluded",
        source,
        len(scan.samples),
        len(scan.exclusions),
    )
    return write_prepared(scan, out, options, overwrite=overwrite, progress=progress)


def summary_lines(prepared: PreparedDataset) -> list[str]:
    """A short console summary of a prepared dataset's report."""
    import json

    report = json.loads((prepared.root / "report.json").read_text(encoding="utf-8"))
    t = report["totals"]
    lines = [
        f"prepared dataset: {prepared.root}",
        f"  images found {t['images_found']}, usable {t['usable']}, written {t['written']}, "
        f"files excluded {t['excluded_files']}",
        f"  classes (classification, alphabetical): {', '.join(report['classes'])}",
        f"  classes (detection): {', '.join(report['detect_classes'])}",
    ]
    for reason, n in report["exclusions_by_reason"].items():
        lines.append(f"  excluded {reason}: {n}")
    for w in report["warnings"]:
        lines.append(f"  warning: {w}")
    lines.append(f"  report: {prepared.root / 'report.md'}")
    return lines
