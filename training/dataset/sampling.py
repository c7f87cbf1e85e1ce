"""Sampling: `select` draws a stratified, seeded sample per class and split (nested: the
first 200 of a class are the first 200 of its 1000); `resolve_counts` reads the presets.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from training.dataset.layout import PRESETS, DatasetError, nfc
from training.dataset.scan import Sample


def _order_key(seed: int, sample: Sample, root: Path) -> str:
    text = f"{seed}\0{sample.emotion}\0{sample.split}\0{nfc(sample.relpath(root))}"
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
