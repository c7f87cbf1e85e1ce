"""A prepared dataset: the options it is written with (`PrepareOptions`) and the dataset
on disk (`PreparedDataset`, opened by `load_prepared`, which refuses an incomplete one).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from training.dataset.layout import (
    DETECTION_ORDERS,
    IMAGE_SUFFIXES,
    PREPARED_FORMAT_VERSION,
    PREPARED_MARKER,
    DatasetError,
)


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
