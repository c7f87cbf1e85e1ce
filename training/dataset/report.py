"""The preprocessing report: what was found, excluded (with the reason) and written
(`build_report`), and the same as Markdown (`render_report`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import numpy as np

from stream.contract import EMOTIONS
from training.dataset.layout import OUTPUT_SPLITS, REASONS, SOURCE_SPLITS
from training.dataset.prepared import PrepareOptions
from training.dataset.scan import ScanResult


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
