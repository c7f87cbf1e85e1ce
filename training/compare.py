"""``intervue train compare``: the original project's comparison table, computed.

One row per run: model, task, input size, epochs, accuracy, macro precision, macro recall,
macro F1 and training time (wall-clock seconds of the training loop including its
per-epoch validation, summed over resumed sessions; export and evaluation excluded), plus
parameters and the bundle. Runs without ``eval/metrics.json`` are evaluated first.

Written into ``--out``: ``comparison.md``, ``comparison.csv`` and ``comparison.png``
(metrics and training time side by side).
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training.evaluate import _fmt, _pyplot, evaluate
from training.runs import read_run

log = logging.getLogger(__name__)

COLUMNS = (
    "model",
    "task",
    "variant",
    "imgsz",
    "epochs",
    "accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "train_time_s",
    "parameters",
    "device",
    "run",
    "bundle",
)


def find_runs(paths: Iterable[Path | str]) -> list[Path]:
    """Run folders in `paths`: each path is a run (holds run.json) or a folder searched
    (two levels deep) for runs. Order kept, duplicates dropped."""
    runs: list[Path] = []
    for p in paths:
        p = Path(p)
        found = (
            [p]
            if (p / "run.json").is_file()
            else sorted(
                {q.parent for pattern in ("*/run.json", "*/*/run.json") for q in p.glob(pattern)}
            )
        )
        if not found:
            raise FileNotFoundError(f"no training run (run.json) in {p}")
        runs.extend(r for r in found if r not in runs)
    return runs


def compare(
    paths: Iterable[Path | str], out: Path | str, evaluate_missing: bool = True
) -> list[dict[str, Any]]:
    """Build the comparison of the runs in `paths`; returns the rows."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for run_dir in find_runs(paths):
        run = read_run(run_dir)
        if run.get("status") != "complete":
            log.warning("%s: run not complete (status %s); skipped", run_dir, run.get("status"))
            continue
        metrics_path = run_dir / "eval" / "metrics.json"
        if not metrics_path.is_file():
            if not evaluate_missing:
                log.warning("%s has no evaluation; skipped", run_dir)
                continue
            evaluate(run_dir)
        m = json.loads(metrics_path.read_text(encoding="utf-8"))
        rows.append(
            {
                "model": run.get("display", run["model"]),
                "task": run["task"],
                "variant": m.get("variant"),
                "imgsz": run.get("imgsz"),
                "epochs": run.get("epochs_done"),
                "accuracy": m["accuracy"],
                "macro_precision": m["macro_precision"],
                "macro_recall": m["macro_recall"],
                "macro_f1": m["macro_f1"],
                "train_time_s": run.get("train_time_s"),
                "parameters": run.get("parameters"),
                "device": run.get("device"),
                "run": str(run_dir),
                "bundle": str(run_dir / run["bundle"]),
            }
        )
    if not rows:
        raise FileNotFoundError("no complete, evaluated runs to compare")
    with open(out / "comparison.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    (out / "comparison.md").write_text(render_comparison(rows), encoding="utf-8")
    plot_comparison(rows, out / "comparison.png")
    return rows


def render_comparison(rows: list[dict[str, Any]]) -> str:
    lines = [
        "# Model comparison",
        "",
        "Metrics computed from each bundle's predictions on the validation split "
        "(macro averages over classes); training time is wall-clock seconds of the "
        "training loop on the device shown.",
        "",
        "| model | task | input | epochs | accuracy | precision (macro) | recall (macro) "
        "| F1 (macro) | training time (s) | parameters (M) | device |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        params = f"{r['parameters'] / 1e6:.1f}" if r.get("parameters") else "–"
        lines.append(
            f"| {r['model']} | {r['task']} ({r['variant']}) | {r['imgsz']} | {r['epochs']} "
            f"| {r['accuracy']:.4f} | {r['macro_precision']:.4f} | {r['macro_recall']:.4f} "
            f"| {r['macro_f1']:.4f} | {_fmt(r['train_time_s'], 1)} | {params} | {r['device']} |"
        )
    return "\n".join(lines) + "\n"


def plot_comparison(rows: list[dict[str, Any]], path: Path) -> None:
    import numpy as np

    plt = _pyplot()
    names = [r["model"] for r in rows]
    keys = ("accuracy", "macro_precision", "macro_recall", "macro_f1")
    x = np.arange(len(rows))
    width = 0.8 / len(keys)
    fig, (ax1, ax2) = plt.subplots(
        1,
        2,
        figsize=(max(8, 1.6 * len(rows) + 4), 3.8),
        dpi=100,
        gridspec_kw={"width_ratios": [2, 1]},
    )
    for i, key in enumerate(keys):
        ax1.bar(x + (i - 1.5) * width, [r[key] for r in rows], width, label=key.replace("_", " "))
    ax1.set_xticks(x, names, rotation=30, ha="right")
    ax1.set_ylim(0, 1.05)
    ax1.set_title("validation metrics")
    ax1.legend(fontsize=8)
    ax2.bar(x, [r["train_time_s"] or 0 for r in rows], color="grey")
    ax2.set_xticks(x, names, rotation=30, ha="right")
    ax2.set_title("training time (s)")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
