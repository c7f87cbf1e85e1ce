"""``intervue train evaluate``: metrics computed from a run's bundle's own predictions.

The bundle is run the way the vision worker runs it, on the validation images of the
prepared dataset:

* classifiers: `inference.emotion.EmotionClassifier` crops the annotated (averaged) face
  box with the bundle's crop geometry and classifies it (whole-image models get the whole
  image as their box);
* detectors: `training.bundles.DetectRunner` letterboxes the image; the prediction is the
  class of the single highest-scoring box (every image holds one face), and its IoU with
  the annotated box is reported beside the class metrics.

Written into ``<run>/eval/`` (or ``--out``)::

    metrics.json        everything below, machine-readable
    metrics.md          summary, per-class table, confusion matrix (true labels on rows)
    per_class.csv       precision, recall, F1, support per class
    confusion_matrix.csv / .png
    predictions.csv     one row per image: true, predicted, confidence (, IoU)
    curves.png          loss and accuracy per epoch from the run's history.csv

Macro averages are over the classes that occur in the ground truth or the predictions
(as scikit-learn does without an explicit label list); a class never predicted has
precision 0.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from inference.bundle import load_bundle
from training.dataset import PreparedDataset, load_image, load_prepared
from training.runs import read_history, read_run

log = logging.getLogger(__name__)


def classification_metrics(
    y_true: Sequence[str], y_pred: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy, macro/weighted precision, recall, F1, per-class figures and the confusion
    matrix (rows: true label, columns: predicted label, both in `labels` order; labels
    outside `labels` are appended)."""
    if len(y_true) != len(y_pred):
        raise ValueError("y_true and y_pred differ in length")
    order = list(labels) + sorted({*y_true, *y_pred} - set(labels))
    index = {name: i for i, name in enumerate(order)}
    cm = np.zeros((len(order), len(order)), dtype=np.int64)
    for t, p in zip(y_true, y_pred, strict=True):
        cm[index[t], index[p]] += 1
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    present = (support > 0) | (predicted > 0)
    total = float(cm.sum())
    per_class = [
        {
            "class": name,
            "precision": float(precision[i]),
            "recall": float(recall[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "predicted": int(predicted[i]),
        }
        for i, name in enumerate(order)
    ]
    weights = support / total if total else np.zeros_like(support)
    return {
        "n": int(total),
        "accuracy": float(tp.sum() / total) if total else 0.0,
        "macro_precision": float(precision[present].mean()) if present.any() else 0.0,
        "macro_recall": float(recall[present].mean()) if present.any() else 0.0,
        "macro_f1": float(f1[present].mean()) if present.any() else 0.0,
        "weighted_f1": float((f1 * weights).sum()),
        "labels": order,
        "per_class": per_class,
        "confusion_matrix": cm.tolist(),
    }


def _items(prepared: PreparedDataset, split: str) -> list[tuple[Path, str, tuple[float, ...]]]:
    """(image, true class, normalised box cx, cy, w, h) of a split's detection images."""
    names = prepared.detect_classes
    items = []
    for image, label in prepared.detect_items(split):
        parts = label.read_text(encoding="utf-8").split()
        if len(parts) < 5:
            continue
        items.append((image, names[int(parts[0])], tuple(float(v) for v in parts[1:5])))
    if not items:
        raise ValueError(f"{prepared.root}: no {split} images to evaluate on")
    return items


def _box_px(norm: tuple[float, ...], width: int, height: int) -> tuple[float, ...]:
    cx, cy, w, h = norm
    return (
        (cx - w / 2) * width,
        (cy - h / 2) * height,
        (cx + w / 2) * width,
        (cy + h / 2) * height,
    )


def _iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def predict(
    bundle_path: Path | str,
    prepared: PreparedDataset,
    split: str = "val",
    variant: str = "crop",
    batch: int = 32,
) -> list[dict[str, Any]]:
    """Run a bundle on a split; one row per image (path, true, pred, confidence, …)."""
    bundle = load_bundle(bundle_path)
    items = _items(prepared, split)
    rows: list[dict[str, Any]] = []
    if bundle.meta.task == "classify":
        from inference.emotion import EmotionClassifier

        clf = EmotionClassifier(bundle, threads=0)
        labels = list(bundle.meta.labels)
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            crops = []
            for path, _true, norm in chunk:
                image = load_image(path)
                h, w = image.shape[:2]
                box = _box_px(norm, w, h) if variant == "crop" else (0, 0, w, h)
                crops.append(clf.crop_face(image, box))
            probs = clf.predict_raw(crops)
            for (path, true, _norm), p in zip(chunk, probs, strict=True):
                k = int(np.argmax(p))
                rows.append(
                    {
                        "image": path.name,
                        "true": true,
                        "pred": labels[k],
                        "confidence": round(float(p[k]), 6),
                        **{
                            f"p_{name}": round(float(v), 6)
                            for name, v in zip(labels, p, strict=True)
                        },
                    }
                )
    else:
        from training.bundles import DetectRunner

        runner = DetectRunner(bundle, threads=0)
        for start in range(0, len(items), batch):
            chunk = items[start : start + batch]
            images = [load_image(path) for path, _t, _n in chunk]
            for (path, true, norm), image, top in zip(
                chunk, images, runner.top(images), strict=True
            ):
                label, score, _scores, box = top
                h, w = image.shape[:2]
                rows.append(
                    {
                        "image": path.name,
                        "true": true,
                        "pred": label,
                        "confidence": round(score, 6),
                        "iou": round(_iou(box, _box_px(norm, w, h)), 4),
                    }
                )
    return rows


def evaluate(
    run_dir: Path | str,
    data: Path | str | None = None,
    split: str = "val",
    out: Path | str | None = None,
) -> dict[str, Any]:
    """Evaluate a finished run's bundle; writes the files in the module doc and returns
    the metrics dict."""
    run_dir = Path(run_dir)
    run = read_run(run_dir)
    if "bundle" not in run:
        raise ValueError(f"{run_dir}: the run has no bundle yet (status {run.get('status')})")
    prepared = load_prepared(data or run["dataset"])
    out = Path(out) if out else run_dir / "eval"
    out.mkdir(parents=True, exist_ok=True)
    variant = run["config"].get("variant", "crop")
    bundle_path = run_dir / run["bundle"]
    rows = predict(bundle_path, prepared, split, variant)
    labels = list(load_bundle(bundle_path, verify=False).meta.labels)
    metrics = classification_metrics([r["true"] for r in rows], [r["pred"] for r in rows], labels)
    metrics.update(
        {
            "model": run["model"],
            "display": run.get("display", run["model"]),
            "task": run["task"],
            "split": split,
            "variant": variant if run["task"] == "classify" else "detect",
            "dataset": str(prepared.root.resolve()),
            "bundle": str(bundle_path),
            "train_time_s": run.get("train_time_s"),
            "epochs": run.get("epochs_done"),
            "imgsz": run.get("imgsz"),
            "parameters": run.get("parameters"),
        }
    )
    if run["task"] == "detect":
        ious = np.array([r["iou"] for r in rows], dtype=float)
        metrics["mean_iou"] = float(ious.mean())
        metrics["localised_accuracy"] = float(
            np.mean([(r["true"] == r["pred"]) and r["iou"] >= 0.5 for r in rows])
        )
        history = read_history(run_dir / "history.csv")
        if history:
            metrics["map50_last_epoch"] = history[-1].get("map50")
    _write_csv(out / "predictions.csv", rows)
    _write_csv(
        out / "per_class.csv",
        [
            {k: (round(v, 6) if isinstance(v, float) else v) for k, v in r.items()}
            for r in metrics["per_class"]
        ],
    )
    with open(out / "confusion_matrix.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["true \\ predicted", *metrics["labels"]])
        for name, row in zip(metrics["labels"], metrics["confusion_matrix"], strict=True):
            writer.writerow([name, *row])
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2), encoding="utf-8")
    (out / "metrics.md").write_text(render_metrics(metrics), encoding="utf-8")
    plot_confusion(metrics, out / "confusion_matrix.png")
    plot_curves(read_history(run_dir / "history.csv"), out / "curves.png", metrics["display"])
    log.info(
        "%s: accuracy %.4f, macro F1 %.4f", run["model"], metrics["accuracy"], metrics["macro_f1"]
    )
    return metrics


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    columns: list[str] = []
    for r in rows:
        columns.extend(k for k in r if k not in columns)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def render_metrics(m: dict[str, Any]) -> str:
    lines = [
        f"# {m['display']} — evaluation",
        "",
        f"- task: {m['task']} ({m['variant']}); split: {m['split']}, {m['n']} images",
        f"- bundle: `{m['bundle']}`",
        "",
        "| accuracy | macro precision | macro recall | macro F1 | weighted F1 "
        "| training time (s) |",
        "|---:|---:|---:|---:|---:|---:|",
        f"| {m['accuracy']:.4f} | {m['macro_precision']:.4f} | {m['macro_recall']:.4f} "
        f"| {m['macro_f1']:.4f} | {m['weighted_f1']:.4f} | {_fmt(m.get('train_time_s'))} |",
    ]
    if m["task"] == "detect":
        lines += [
            "",
            "Detector scored as a classifier of the single face per image (class of the "
            f"top-scoring box). Mean IoU of that box with the annotation: {m['mean_iou']:.3f}; "
            f"class right and IoU ≥ 0.5: {m['localised_accuracy']:.4f}; "
            f"mAP50 (ultralytics, last epoch): {_fmt(m.get('map50_last_epoch'))}.",
        ]
    lines += [
        "",
        "## Per class",
        "",
        "| class | precision | recall | F1 | support | predicted |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in m["per_class"]:
        lines.append(
            f"| {r['class']} | {r['precision']:.4f} | {r['recall']:.4f} | {r['f1']:.4f} "
            f"| {r['support']} | {r['predicted']} |"
        )
    lines += [
        "",
        "## Confusion matrix (rows: true label, columns: predicted label)",
        "",
        "| true \\ predicted | " + " | ".join(m["labels"]) + " |",
        "|---|" + "---:|" * len(m["labels"]),
    ]
    for name, row in zip(m["labels"], m["confusion_matrix"], strict=True):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if abs(value) < 100 else f"{value:.1f}"
    return str(value)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_confusion(m: dict[str, Any], path: Path) -> None:
    """Counts in each cell, colour by the row-normalised share (true labels on rows)."""
    plt = _pyplot()
    cm = np.asarray(m["confusion_matrix"], dtype=float)
    rows = cm.sum(axis=1, keepdims=True)
    share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
    n = len(m["labels"])
    fig, ax = plt.subplots(figsize=(1.0 + 0.8 * n, 0.8 + 0.7 * n), dpi=100)
    ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(n), m["labels"], rotation=45, ha="right")
    ax.set_yticks(range(n), m["labels"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{m['display']}: accuracy {m['accuracy']:.3f}")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                int(cm[i, j]),
                ha="center",
                va="center",
                color="white" if share[i, j] > 0.5 else "black",
                fontsize=8,
            )
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Loss (train/val) and accuracy (train/val, or mAP50 for detectors) per epoch."""
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4), dpi=100)
    epochs = [h["epoch"] for h in history]

    def series(key: str) -> list[float]:
        return [np.nan if h.get(key) is None else h[key] for h in history]

    for key, label in (("train_loss", "train"), ("val_loss", "validation")):
        if any(h.get(key) is not None for h in history):
            ax1.plot(epochs, series(key), marker="o", label=label)
    ax1.set_title("loss")
    ax1.set_xlabel("epoch")
    for key, label in (
        ("train_acc", "train accuracy"),
        ("val_acc", "validation accuracy"),
        ("map50", "validation mAP50"),
    ):
        if any(h.get(key) is not None for h in history):
            ax2.plot(epochs, series(key), marker="o", label=label)
    ax2.set_title("accuracy")
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1.02)
    from matplotlib.ticker import MaxNLocator

    for ax in (ax1, ax2):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
