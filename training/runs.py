"""A training run's folder on disk: ``run.json`` and ``history.csv``, read and written.

Its own module so that `training.fit` (which writes runs) and `training.evaluate` /
`training.compare` (which read them) both sit above it; evaluate importing fit and fit
calling evaluate made an import cycle.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any


class FitError(ValueError):
    """A fit that cannot start: unknown model, bad size, run folder in the way, …"""


def read_run(run_dir: Path | str) -> dict[str, Any]:
    path = Path(run_dir) / "run.json"
    if not path.is_file():
        raise FitError(f"{run_dir} is not a training run (no run.json)")
    return json.loads(path.read_text(encoding="utf-8"))


HISTORY_COLUMNS = (
    "epoch",
    "train_loss",
    "val_loss",
    "train_acc",
    "val_acc",
    "map50",
    "map50_95",
    "lr",
    "seconds",
)


def write_history(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: row.get(k, "") for k in HISTORY_COLUMNS})


def read_history(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [{k: (float(v) if v not in ("", None) else None) for k, v in r.items()} for r in rows]
