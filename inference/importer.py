"""``intervue models import best.pt``: any ultralytics YOLOv8 checkpoint → a model bundle.

Reads the checkpoint offline (``ultralytics.nn.tasks.load_checkpoint``; no hub, no
download), takes the task from its head (``classify`` or ``detect``; segment / pose / OBB
models are refused), the labels from its ``names`` dict in index order (any order — the
bundle's label map carries them onto the product's classes), the input size from its
training arguments, exports ONNX with a dynamic batch axis and checks it against the
PyTorch model with ONNX Runtime, then writes the bundle into the models directory::

    <name>.onnx   the exported model
    <name>.pt     the checkpoint, unchanged (the torch backend and later exports use it;
                  recorded as extra.torch = {file, kind: "ultralytics", sha256})
    <name>.json   the sidecar: task, labels, label_map, input size, preprocessing, source

Labels that are not product classes are mapped through `LABEL_SYNONYMS` (FER2013 names,
English variants, the original dataset's Korean class names) and then the caller's
`label_map`; anything else is refused with a message naming the label.

Preprocessing written to the sidecar follows ultralytics' own inference transforms:
classifiers — RGB, 1/255, no mean/std, short side resized then centre crop (fed face crops
grown by `crop_margin` and made square); detectors — RGB, 1/255, letterbox padded with
grey 114, boxes/classes decoded by `inference.yolo`. Checkpoints are pickles: import only
files you trust.
"""

from __future__ import annotations

import logging
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from inference.backends.torch_backend import load_ultralytics_checkpoint, prepare_ultralytics
from inference.bundle import Bundle, BundleError, BundleMeta, save_bundle, sha256_file
from inference.labels import FER_TO_PRODUCT, KOREAN_CLASS_NAMES, LabelMapError, resolve_label_map
from inference.onnx_io import ExportError, VerificationError, export_torch
from inference.preprocess import (
    detect_extra,
    ultralytics_classify_preprocess,
    ultralytics_detect_preprocess,
)
from stream.contract import EMOTIONS

log = logging.getLogger(__name__)

#: Other names of the product's classes (lower-case) seen in emotion datasets.
LABEL_SYNONYMS: dict[str, str] = {
    **FER_TO_PRODUCT,
    "angry": "anger",
    "anxious": "anxiety",
    "embarrassed": "embarrass",
    "embarrassment": "embarrass",
    "happiness": "happy",
    "neutral": "normal",
    "hurt": "pain",
    "sadness": "sad",
    # the original project's dataset (Korean class names)
    **KOREAN_CLASS_NAMES,
}


class ImportModelError(ExportError, ValueError):
    """The checkpoint is not a model this product can run, its labels do not map, or its
    ONNX export disagrees with it (an `ExportError`, and a `ValueError` as it always was)."""


def infer_label_map(labels: list[str], label_map: dict[str, str] | None = None) -> dict[str, str]:
    """Model label → product class for every label that is not already a product class
    (exact name); raises `ImportModelError` naming labels nothing maps."""
    user = dict(label_map or {})
    result: dict[str, str] = {}
    unknown = []
    for label in labels:
        if label in user:
            result[label] = user[label]
        elif label in EMOTIONS:
            continue
        else:
            key = label.strip().lower()
            if key in EMOTIONS:
                result[label] = key
            elif key in LABEL_SYNONYMS:
                result[label] = LABEL_SYNONYMS[key]
            else:
                unknown.append(label)
    if unknown:
        raise ImportModelError(
            f"labels {unknown} map to no product class ({', '.join(EMOTIONS)}); pass "
            "--label-map LABEL=CLASS for each"
        )
    try:
        resolve_label_map(labels, result)
    except LabelMapError as exc:
        raise ImportModelError(str(exc)) from exc
    return result


def _task_of(net: Any) -> str:
    from ultralytics.nn.modules.head import Classify, Detect

    heads = [m for m in net.modules() if isinstance(m, (Classify, Detect))]
    if not heads:
        raise ImportModelError("the checkpoint has neither a Classify nor a Detect head")
    head = heads[-1]
    if isinstance(head, Classify):
        return "classify"
    if type(head) is not Detect:
        raise ImportModelError(
            f"{type(head).__name__} models are not supported (classify or detect only)"
        )
    if getattr(head, "end2end", False):
        raise ImportModelError("end-to-end (NMS-free) detect heads are not supported")
    return "detect"


def _labels_of(net: Any) -> list[str]:
    names = getattr(net, "names", None)
    if isinstance(names, dict):
        return [str(names[i]) for i in sorted(names)]
    if isinstance(names, (list, tuple)):
        return [str(n) for n in names]
    raise ImportModelError("the checkpoint has no class names")


def _imgsz_of(ckpt: dict[str, Any], net: Any, task: str) -> int:
    for args in (ckpt.get("train_args"), getattr(net, "args", None)):
        if isinstance(args, dict) and args.get("imgsz"):
            value = args["imgsz"]
            return int(value[0] if isinstance(value, (list, tuple)) else value)
    return 224 if task == "classify" else 640


def _default_name(path: Path) -> str:
    stem = path.stem
    if stem in ("best", "last") and path.parent.name == "weights":
        stem = f"{path.parent.parent.name}-{stem}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-.") or "imported"


def import_ultralytics(
    weights: Path | str,
    models_dir: Path | str | None = None,
    name: str | None = None,
    imgsz: int | None = None,
    label_map: dict[str, str] | None = None,
    crop_margin: float = 0.1,
    square_crop: bool = True,
    license: str = "see the model's training data terms; ultralytics YOLOv8 code is AGPL-3.0",
    force: bool = False,
) -> Bundle:
    """Import an ultralytics YOLOv8 ``.pt`` (see the module docstring); returns the bundle.

    `crop_margin` / `square_crop` describe how the face crops a classifier was trained on
    were cut (ignored for detectors). Raises `ImportModelError` for unsupported models or
    labels, `FileExistsError` when a bundle of that name exists (unless `force`)."""
    from inference.export import sample_inputs
    from inference.prepare import default_models_dir

    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise FileNotFoundError(f"no checkpoint at {weights}")
    models_dir = Path(models_dir).expanduser() if models_dir else default_models_dir()
    name = name or _default_name(weights)
    if (models_dir / f"{name}.json").exists() and not force:
        raise FileExistsError(f"a bundle {name!r} exists in {models_dir} (use --force or --name)")
    try:
        net, ckpt = load_ultralytics_checkpoint(weights)
    except (ImportModelError, FileNotFoundError):
        raise
    except Exception as exc:
        raise ImportModelError(f"{weights} is not an ultralytics checkpoint: {exc}") from exc
    task = _task_of(net)
    labels = _labels_of(net)
    mapping = infer_label_map(labels, label_map)
    size = int(imgsz or _imgsz_of(ckpt, net, task))
    if task == "detect" and size % 32:
        raise ImportModelError(f"a detector's input size must be a multiple of 32, not {size}")
    module = prepare_ultralytics(net)
    source = {
        "framework": "ultralytics",
        "file": weights.name,
        "sha256": sha256_file(weights),
        "path_at_import": str(weights.resolve()),
        "ultralytics_version": str(ckpt.get("version", "")),
        "yaml": str(getattr(net, "yaml", {}).get("yaml_file", "")) if hasattr(net, "yaml") else "",
        "trained": str(ckpt.get("date", "")),
    }
    if task == "classify":
        preprocess = ultralytics_classify_preprocess(crop_margin, square_crop)
        extra: dict[str, Any] = {}
    else:
        preprocess = ultralytics_detect_preprocess()
        extra = detect_extra()
    meta = BundleMeta(
        name=name,
        task=task,
        format="onnx",
        labels=tuple(labels),
        label_map=mapping,
        input_size=(size, size),
        channels=3,
        color="rgb",
        layout="nchw",
        output="probabilities",
        preprocess=preprocess,
        license=license,
        source=source,
        extra=extra,
    )
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".import-") as tmp:
        try:
            onnx_path, check = export_torch(
                module,
                Path(tmp) / f"{name}.onnx",
                3,
                (size, size),
                sample_inputs(meta, 16),
                output_name="probs" if task == "classify" else "output0",
                reference="PyTorch (ultralytics checkpoint)",
                task=task,
                batch=16,
            )
        except VerificationError as exc:
            raise ImportModelError(
                f"the ONNX export disagrees with the checkpoint: {exc.agreement.line()}"
            ) from exc
        log.info("import %s: %s", name, check.line())
        companion = models_dir / f"{name}.pt"
        if weights.resolve() != companion.resolve():
            shutil.copyfile(weights, companion)
        meta = BundleMeta.from_dict(
            {
                **meta.to_dict(),
                "extra": {
                    **extra,
                    "torch": {
                        "file": companion.name,
                        "kind": "ultralytics",
                        "sha256": sha256_file(companion),
                    },
                    "import": {"verification": check.as_dict(), "imgsz": size},
                },
            }
        )
        card = Path(tmp) / f"{name}.md"
        card.write_text(_card(meta, weights, check.line()), encoding="utf-8")
        bundle = save_bundle(meta, onnx_path, models_dir, card=card)
    return bundle


def _card(meta: BundleMeta, weights: Path, check: str) -> str:
    mapped = ", ".join(f"{k} → {v}" for k, v in meta.label_map.items()) or "none needed"
    return (
        f"# {meta.name}\n\n"
        f"Imported from `{weights.name}` by `intervue models import` (ultralytics YOLOv8, "
        f"task `{meta.task}`).\n\n"
        f"- Labels (model order): {', '.join(meta.labels)}\n"
        f"- Label map onto the product's classes: {mapped}\n"
        f"- Input: {meta.input_size[0]}×{meta.input_size[1]} RGB, "
        f"{meta.preprocess.resize}\n"
        f"- ONNX export check: {check}\n"
        f"- License: {meta.license}\n\n"
        "Accuracy is whatever the checkpoint's training gave it: evaluate it on your own "
        "validation data before trusting its labels.\n"
    )


__all__ = ["LABEL_SYNONYMS", "BundleError", "ImportModelError", "import_ultralytics"]
