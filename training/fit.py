"""``intervue train fit``: train one of the ten models on a prepared dataset.

Models (`MODELS`): YOLOv8n/s/m-cls and YOLOv8n/s/m detection (ultralytics, built from the
model yaml, optionally fine-tuned from a local ``--weights`` file; never a download, no
Arial.ttf fetch, no hub, AMP check off) and the torchvision baselines VGG16, ResNet-50,
ResNeXt-50 (32x4d) and ViT-B/16 (architecture from torchvision with ``weights=None``,
optionally a local ImageNet or own weights file; ImageNet normalisation, standard
augmentation). CUDA is used when present, else the CPU.

A run folder (``--out``) holds::

    run.json                     config, model, labels, status, training time, bundle path
    history.csv                  one row per epoch: losses, accuracy, learning rate, seconds
    checkpoints/last.pt, best.pt torchvision runs (last.pt resumes)
    ultralytics/                 ultralytics runs (weights/last.pt resumes, results.csv)
    bundle/<name>.onnx|json|md   the model bundle the vision worker loads
    eval/                        `training.evaluate` outputs (written after training)

``fit(..., resume=True)`` continues an interrupted run from its last checkpoint (the
stored config is used; a torchvision run may be given more epochs).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import os
import platform
import random
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from inference.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    torchvision_classify_preprocess,
    ultralytics_classify_preprocess,
)
from training.bundles import classify_meta, detect_meta, export_onnx, write_bundle
from training.dataset import PreparedDataset, load_prepared
from training.runs import (
    FitError,
    read_history,
    read_run,
    write_history,
)

log = logging.getLogger(__name__)

RUN_FORMAT_VERSION = 1


@dataclass(frozen=True)
class ModelSpec:
    name: str
    family: str  # "yolo-cls" | "yolo-detect" | "torchvision"
    task: str  # "classify" | "detect"
    display: str
    yaml: str | None = None
    default_imgsz: int = 224


MODELS: dict[str, ModelSpec] = {
    **{
        f"yolov8{s}-cls": ModelSpec(
            f"yolov8{s}-cls", "yolo-cls", "classify", f"YOLOv8{s}-cls", f"yolov8{s}-cls.yaml", 224
        )
        for s in "nsm"
    },
    **{
        f"yolov8{s}": ModelSpec(
            f"yolov8{s}", "yolo-detect", "detect", f"YOLOv8{s}", f"yolov8{s}.yaml", 640
        )
        for s in "nsm"
    },
    "vgg16": ModelSpec("vgg16", "torchvision", "classify", "VGG16"),
    "resnet50": ModelSpec("resnet50", "torchvision", "classify", "ResNet-50"),
    "resnext50": ModelSpec("resnext50", "torchvision", "classify", "ResNeXt-50 (32x4d)"),
    "vit_b_16": ModelSpec("vit_b_16", "torchvision", "classify", "ViT-B/16"),
}


def _key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


_ALIASES: dict[str, str] = {_key(k): k for k in MODELS}
_ALIASES.update(
    {
        "vgg": "vgg16",
        "resnet": "resnet50",
        "resnext": "resnext50",
        "resnext5032x4d": "resnext50",
        "vit": "vit_b_16",
        "vitb16": "vit_b_16",
        "yolov8ncls": "yolov8n-cls",
    }
)


def resolve_model(name: str) -> ModelSpec:
    """The spec for a model name (case, dashes and underscores do not matter)."""
    canonical = _ALIASES.get(_key(name))
    if canonical is None:
        raise FitError(f"unknown model {name!r}; choose from {', '.join(MODELS)}")
    return MODELS[canonical]


@dataclass
class FitConfig:
    """Everything a run depends on (stored in run.json)."""

    model: str
    data: str
    out: str
    variant: str = "crop"  # classification dataset: face crops or whole images
    epochs: int = 30
    batch: int = 16
    imgsz: int | None = None  # default: the model's (224 classifiers, 640 detectors)
    lr: float | None = None  # default: 1e-3 from scratch, 1e-4 from weights (ultralytics: auto)
    optimizer: str = "auto"  # auto | adamw | sgd
    weight_decay: float = 1e-4
    warmup_epochs: float | None = None  # default: ultralytics 3, torchvision 0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    weights: str | None = None  # local weights file to start from
    workers: int = 2
    amp: bool = True  # mixed precision on CUDA (never on the CPU)
    max_steps: int | None = None  # torchvision: at most this many batches per epoch
    fraction: float = 1.0  # share of the training split to use
    name: str | None = None  # bundle name; default emotion-<model>
    license: str = "see the training data's terms"
    evaluate: bool = True
    progress: bool = True

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FitConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class FitResult:
    run_dir: Path
    bundle_path: Path
    labels: list[str]
    history: list[dict[str, Any]]
    train_time_s: float
    epochs_done: int
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------- helpers


def resolve_device(device: str) -> str:
    """``auto`` → ``cuda:0`` when CUDA is available, else ``cpu``; others are checked."""
    import torch

    device = (device or "auto").lower()
    if device == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if device.isdigit():
        device = f"cuda:{device}"
    if device == "cuda":
        device = "cuda:0"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FitError(f"device {device} asked for, but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise FitError(f"device {device!r}: use auto, cpu, cuda or cuda:N")
    return device


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False, default=str), "utf-8")
    tmp.replace(path)


def _check_imgsz(spec: ModelSpec, imgsz: int) -> None:
    if spec.family.startswith("yolo") and imgsz % 32:
        raise FitError(f"{spec.display}: imgsz must be a multiple of 32 (the model's stride)")
    if spec.name == "vit_b_16" and imgsz % 16:
        raise FitError("ViT-B/16: imgsz must be a multiple of 16 (its patch size)")
    if imgsz < 32:
        raise FitError("imgsz must be at least 32")


# ---------------------------------------------------------------------------- entry point


def fit(config: FitConfig, resume: bool = False) -> FitResult:
    """Train, save checkpoints, export the bundle and (by default) evaluate it.

    With `resume`, `config` may be the stored one (`resume_config`); the run folder must
    hold an unfinished run's checkpoint. Raises `FitError` on a config that cannot run.
    """
    spec = resolve_model(config.model)
    config.model = spec.name
    run_dir = Path(config.out)
    prepared = load_prepared(config.data)
    imgsz = config.imgsz or spec.default_imgsz
    config.imgsz = imgsz
    _check_imgsz(spec, imgsz)
    if config.variant not in ("crop", "full"):
        raise FitError("variant must be 'crop' or 'full'")
    if config.weights and not Path(config.weights).is_file():
        raise FitError(f"weights file {config.weights} not found (nothing is downloaded)")
    if not 0 < config.fraction <= 1:
        raise FitError("fraction must be in (0, 1]")
    device = resolve_device(config.device)
    run_json = run_dir / "run.json"
    previous: dict[str, Any] = {}
    if resume:
        previous = read_run(run_dir)
    elif run_json.exists():
        raise FitError(
            f"{run_dir} already holds a run; pass --resume to continue it or choose a new --out"
        )
    run_dir.mkdir(parents=True, exist_ok=True)
    name = config.name or f"emotion-{spec.name}".replace("_", "-")
    config.name = name
    import torch

    run: dict[str, Any] = {
        "format_version": RUN_FORMAT_VERSION,
        "model": spec.name,
        "display": spec.display,
        "family": spec.family,
        "task": spec.task,
        "config": asdict(config),
        "dataset": str(prepared.root.resolve()),
        "device": device,
        "status": "running",
        "started": previous.get("started", _now()),
        "train_time_s": float(previous.get("train_time_s", 0.0)),
        "versions": _versions(),
        "host": {"platform": platform.platform(), "cuda": torch.cuda.is_available()},
    }
    _write_json(run_json, run)
    trainer = _train_ultralytics if spec.family.startswith("yolo") else _train_torchvision
    t0 = time.perf_counter()
    outcome = trainer(config, spec, prepared, run_dir, device, resume)
    run["train_time_s"] += outcome.pop("train_time_s")
    log.info(
        "%s trained in %.1f s (this session %.1f s)",
        spec.name,
        run["train_time_s"],
        time.perf_counter() - t0,
    )
    run.update(outcome)
    bundle = outcome["bundle"]
    run["status"] = "complete"
    run["finished"] = _now()
    _write_json(run_json, run)
    history = read_history(run_dir / "history.csv")
    result = FitResult(
        run_dir=run_dir,
        bundle_path=run_dir / bundle,
        labels=list(run["labels"]),
        history=history,
        train_time_s=run["train_time_s"],
        epochs_done=int(run["epochs_done"]),
    )
    if config.evaluate:
        from training.evaluate import evaluate

        result.extra["metrics"] = evaluate(run_dir)
    return result


def resume_config(run_dir: Path | str, epochs: int | None = None) -> FitConfig:
    """The stored config of a run, with `epochs` raised if given."""
    run = read_run(run_dir)
    config = FitConfig.from_dict(run["config"])
    config.out = str(run_dir)
    if epochs is not None:
        config.epochs = epochs
    return config


def _versions() -> dict[str, str]:
    out = {}
    for mod in ("torch", "torchvision", "ultralytics", "onnx", "onnxruntime"):
        try:
            out[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            out[mod] = "missing"
    return out


def _source(config: FitConfig, spec: ModelSpec, prepared: PreparedDataset) -> dict[str, Any]:
    return {
        "trained_by": "intervue train fit",
        "architecture": spec.display,
        "framework": "ultralytics" if spec.family.startswith("yolo") else "torchvision",
        "init": f"local weights {Path(config.weights).name}" if config.weights else "random",
        "dataset": str(prepared.root.resolve()),
        "dataset_source": prepared.meta.get("source"),
        "variant": config.variant if spec.task == "classify" else "detect",
        "seed": config.seed,
    }


def _card(
    spec: ModelSpec, config: FitConfig, labels: list[str], prepared: PreparedDataset, extra: str
) -> str:
    return "\n".join(
        [
            f"# {config.name}",
            "",
            f"{spec.display} ({spec.task}) trained by `intervue train fit` on the prepared "
            f"dataset `{prepared.root}` (source `{prepared.meta.get('source')}`).",
            "",
            f"- labels, in the model's output order: {', '.join(labels)}",
            f"- input: {config.imgsz}×{config.imgsz} RGB; "
            + (
                "face crops (the averaged annotated box"
                f", margin {prepared.meta['classify']['crop_margin']}, "
                f"square {prepared.meta['classify']['square_crop']})"
                if spec.task == "classify" and config.variant == "crop"
                else "whole images"
            ),
            f"- initial weights: {config.weights or 'none (random initialisation)'}",
            f"- epochs {config.epochs}, batch {config.batch}, seed {config.seed}",
            "",
            "Emotion estimates from a face are noisy and biased by the training data; they say",
            "nothing about a candidate's competence. Metrics: the run's `eval/metrics.md`.",
            "",
            extra,
        ]
    )


# ---------------------------------------------------------------------------- ultralytics


def _ultralytics_done(last: Path) -> bool:
    """An ultralytics last.pt without optimizer state is a finished run."""
    import torch

    ckpt = torch.load(last, map_location="cpu", weights_only=False)
    return ckpt.get("optimizer") is None or int(ckpt.get("epoch", -1)) < 0


def _train_ultralytics(
    config: FitConfig,
    spec: ModelSpec,
    prepared: PreparedDataset,
    run_dir: Path,
    device: str,
    resume: bool,
) -> dict[str, Any]:
    os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported
    import ultralytics.engine.trainer as ul_trainer
    from ultralytics import YOLO

    if spec.task == "classify":
        data = str(prepared.classify_dir(config.variant).resolve())
    else:
        data = str(prepared.detect_yaml.resolve())
    ul_dir = run_dir / "ultralytics"
    last = ul_dir / "weights" / "last.pt"
    best = ul_dir / "weights" / "best.pt"
    cuda = device.startswith("cuda")
    kwargs: dict[str, Any] = dict(
        data=data,
        epochs=config.epochs,
        imgsz=config.imgsz,
        batch=config.batch,
        device=device.split(":")[1] if cuda else "cpu",
        workers=config.workers,
        seed=config.seed,
        deterministic=True,
        project=str(run_dir.resolve()),
        name="ultralytics",
        exist_ok=True,
        plots=False,  # plotting fetches Arial.ttf
        amp=bool(config.amp and cuda),
        fraction=config.fraction,
        verbose=config.progress,
        weight_decay=config.weight_decay if config.optimizer != "auto" else 0.0005,
    )
    if config.optimizer != "auto":
        kwargs["optimizer"] = {"adamw": "AdamW", "sgd": "SGD"}.get(config.optimizer.lower())
        if kwargs["optimizer"] is None:
            raise FitError("optimizer must be auto, adamw or sgd")
        kwargs["lr0"] = config.lr or 1e-3
    elif config.lr:
        raise FitError("--lr needs --optimizer adamw or sgd for ultralytics models")
    if config.warmup_epochs is not None:
        kwargs["warmup_epochs"] = config.warmup_epochs

    import torch

    train_time = 0.0
    threads = torch.get_num_threads()  # ultralytics sets its own for CPU training
    saved_check_amp = ul_trainer.check_amp
    # ultralytics' AMP check loads a model file it would download; on CUDA trust AMP
    ul_trainer.check_amp = lambda model: bool(cuda)
    try:
        if resume and last.is_file() and not _ultralytics_done(last):
            model = YOLO(str(last))
            t0 = time.perf_counter()
            model.train(resume=True, **{k: v for k, v in kwargs.items() if k in ("workers",)})
            train_time += time.perf_counter() - t0
        elif resume and best.is_file():
            log.info("%s: training already finished; re-exporting the bundle", run_dir)
        else:
            if resume:
                raise FitError(f"{run_dir}: no ultralytics checkpoint to resume from")
            model = YOLO(spec.yaml, task=spec.task)
            if config.weights:
                model.load(config.weights)
            t0 = time.perf_counter()
            model.train(**kwargs)
            train_time += time.perf_counter() - t0
    finally:
        ul_trainer.check_amp = saved_check_amp
        torch.set_num_threads(threads)

    weights = best if best.is_file() else last
    from ultralytics.nn.tasks import load_checkpoint

    net, _ckpt = load_checkpoint(str(weights))
    names = net.names
    labels = [names[i] for i in range(len(names))] if isinstance(names, dict) else list(names)
    expected = prepared.classes if spec.task == "classify" else prepared.detect_classes
    if sorted(labels) != sorted(expected):
        raise FitError(f"trained labels {labels} do not match the dataset's {expected}")
    history = _ultralytics_history(ul_dir / "results.csv", spec.task)
    write_history(run_dir / "history.csv", history)
    n_params = sum(p.numel() for p in net.parameters())

    # export

    from inference.backends.torch_backend import prepare_ultralytics

    export_net = prepare_ultralytics(net)
    onnx_path = run_dir / "bundle" / f"{config.name}.onnx"
    (run_dir / "bundle" / f"{config.name}.json").unlink(missing_ok=True)
    err = export_onnx(
        export_net,
        onnx_path,
        (config.imgsz, config.imgsz),
        output_name="probs" if spec.task == "classify" else "output0",
        task=spec.task,
    )
    source = _source(config, spec, prepared)
    extra = {"onnx_max_abs_error": err, "parameters": n_params, "run": str(run_dir.resolve())}
    if spec.task == "classify":
        cls_meta = prepared.meta["classify"]
        crop = config.variant == "crop"
        meta = classify_meta(
            config.name,
            labels,
            (config.imgsz, config.imgsz),
            # ultralytics' val transform: short side, centre crop
            preprocess=ultralytics_classify_preprocess(
                cls_meta["crop_margin"] if crop else 0.0,
                bool(cls_meta["square_crop"]) if crop else False,
            ),
            output="probabilities",
            source=source,
            extra=extra,
            license=config.license,
        )
    else:
        meta = detect_meta(config.name, labels, config.imgsz, source=source, extra=extra)
    card = _card(spec, config, labels, prepared, f"ONNX max abs error vs PyTorch: {err:.2e}")
    bundle = write_bundle(meta, onnx_path, run_dir / "bundle", card)
    return {
        "labels": labels,
        "train_time_s": train_time,
        "epochs_done": len(history),
        "parameters": n_params,
        "bundle": str(bundle.meta_path.relative_to(run_dir)),
        "checkpoint": str(weights.relative_to(run_dir)),
        "imgsz": config.imgsz,
    }


def _ultralytics_history(path: Path, task: str) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with open(path, newline="", encoding="utf-8") as fh:
        rows = [{k.strip(): v for k, v in r.items()} for r in csv.DictReader(fh)]

    def num(row: dict[str, str], key: str) -> float | None:
        value = row.get(key)
        try:
            return float(value) if value not in (None, "") else None
        except ValueError:
            return None

    history, previous_time = [], 0.0
    for r in rows:
        if task == "classify":
            train_loss, val_loss = num(r, "train/loss"), num(r, "val/loss")
        else:
            parts = ("box_loss", "cls_loss", "dfl_loss")
            t = [num(r, f"train/{p}") for p in parts]
            v = [num(r, f"val/{p}") for p in parts]
            train_loss = (
                sum(x for x in t if x is not None) if any(x is not None for x in t) else None
            )
            val_loss = sum(x for x in v if x is not None) if any(x is not None for x in v) else None
        elapsed = num(r, "time")
        history.append(
            {
                "epoch": int(float(r["epoch"])),
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_acc": num(r, "metrics/accuracy_top1"),
                "map50": num(r, "metrics/mAP50(B)"),
                "map50_95": num(r, "metrics/mAP50-95(B)"),
                "lr": num(r, "lr/pg0"),
                "seconds": None if elapsed is None else round(elapsed - previous_time, 3),
            }
        )
        previous_time = elapsed or previous_time
    return history


# ---------------------------------------------------------------------------- torchvision


class ImageListDataset:
    """(image path, class index) pairs read with Pillow (any file name works)."""

    def __init__(self, items: list[tuple[Path, int]], transform: Callable) -> None:
        self.items = items
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int):
        from PIL import Image

        path, label = self.items[index]
        with Image.open(path) as im:
            image = im.convert("RGB")
        return self.transform(image), label


def build_torchvision(name: str, num_classes: int, imgsz: int, weights: str | None = None):
    """A torchvision architecture (``weights=None``: nothing downloaded) with a new
    `num_classes` head, optionally initialised from a local weights file (a state dict,
    or a checkpoint dict holding one under ``state_dict`` / ``model``). Tensors whose
    shapes do not fit (the 1000-class ImageNet head) are skipped; ViT position embeddings
    are interpolated to `imgsz`. Returns (model, load report)."""
    import torch
    import torchvision.models as tvm
    from torch import nn

    if name == "vgg16":
        model = tvm.vgg16(weights=None)
        model.classifier[6] = nn.Linear(model.classifier[6].in_features, num_classes)
    elif name == "resnet50":
        model = tvm.resnet50(weights=None)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif name == "resnext50":
        model = tvm.resnext50_32x4d(weights=None)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
    elif name == "vit_b_16":
        model = tvm.vit_b_16(weights=None, image_size=imgsz)
        model.heads.head = nn.Linear(model.heads.head.in_features, num_classes)
    else:
        raise FitError(f"{name} is not a torchvision model here")
    report: dict[str, Any] = {"weights": None}
    if weights:
        state = torch.load(weights, map_location="cpu", weights_only=False)
        if isinstance(state, dict):
            for key in ("state_dict", "model", "model_state"):
                if isinstance(state.get(key), dict):
                    state = state[key]
                    break
        if not isinstance(state, dict):
            raise FitError(f"{weights}: not a state dict or a checkpoint holding one")
        state = {k.removeprefix("module."): v for k, v in state.items()}
        own = model.state_dict()
        if name == "vit_b_16" and "encoder.pos_embedding" in state:
            pos = state["encoder.pos_embedding"]
            if pos.shape != own["encoder.pos_embedding"].shape:
                from torchvision.models.vision_transformer import interpolate_embeddings

                state = interpolate_embeddings(imgsz, 16, state)
        loaded = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
        skipped = sorted(set(state) - set(loaded))
        if len(loaded) < 0.5 * len(own):
            raise FitError(
                f"{weights} fits only {len(loaded)} of {len(own)} tensors of {name}: wrong file?"
            )
        model.load_state_dict(loaded, strict=False)
        report = {
            "weights": str(weights),
            "loaded": len(loaded),
            "skipped": skipped[:20],
            "missing": sorted(set(own) - set(loaded))[:20],
        }
        log.info("%s: loaded %d tensors from %s, skipped %s", name, len(loaded), weights, skipped)
    return model, report


def adaptive_pool_as_matmul(in_size: int, out_size: int):
    """An exact, ONNX-exportable stand-in for ``nn.AdaptiveAvgPool2d(out_size)`` on
    ``in_size``×``in_size`` inputs. The ONNX exporter only handles adaptive pooling whose
    input is a multiple of its output, so VGG16 (7×7 pool) below 224 px would not export;
    adaptive average pooling is linear, so P @ x @ Pᵀ with PyTorch's bin rule is the same."""
    import torch
    from torch import nn

    matrix = torch.zeros(out_size, in_size)
    for i in range(out_size):
        start = (i * in_size) // out_size
        end = -((-(i + 1) * in_size) // out_size)  # ceil
        matrix[i, start:end] = 1.0 / (end - start)

    class MatmulPool(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("p", matrix)

        def forward(self, x):
            return torch.matmul(torch.matmul(self.p, x), self.p.t())

    return MatmulPool()


def exportable(model, name: str, imgsz: int):
    """`model` ready for ONNX export at `imgsz` (VGG16's pool replaced where needed)."""
    if name == "vgg16":
        feature = imgsz // 32
        if feature % 7:
            model.avgpool = adaptive_pool_as_matmul(feature, 7)
    return model


def torchvision_transforms(imgsz: int):
    """(train, eval) transforms: standard augmentation + ImageNet normalisation; eval
    stretches to imgsz×imgsz like the bundle's ``stretch`` resize."""
    from torchvision import transforms as T

    normalize = T.Normalize(IMAGENET_MEAN, IMAGENET_STD)
    train = T.Compose(
        [
            T.RandomResizedCrop(imgsz, scale=(0.7, 1.0), ratio=(0.85, 1.18), antialias=True),
            T.RandomHorizontalFlip(),
            T.ColorJitter(0.2, 0.2, 0.2, 0.02),
            T.ToTensor(),
            normalize,
        ]
    )
    evaluate = T.Compose([T.Resize((imgsz, imgsz), antialias=True), T.ToTensor(), normalize])
    return train, evaluate


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    tmp.replace(path)


def _train_torchvision(
    config: FitConfig,
    spec: ModelSpec,
    prepared: PreparedDataset,
    run_dir: Path,
    device: str,
    resume: bool,
) -> dict[str, Any]:
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    labels = prepared.classes
    train_items = prepared.classify_items(config.variant, "train")
    val_items = prepared.classify_items(config.variant, "val")
    if not train_items or not val_items:
        raise FitError(f"{prepared.root}: the {config.variant} dataset has an empty split")
    if config.fraction < 1.0:
        rng = random.Random(config.seed)
        train_items = rng.sample(train_items, max(1, round(len(train_items) * config.fraction)))
    seed_everything(config.seed)
    model, load_report = build_torchvision(spec.name, len(labels), config.imgsz, config.weights)
    model.to(device)
    train_tf, eval_tf = torchvision_transforms(config.imgsz)
    gen = torch.Generator().manual_seed(config.seed)
    batch = max(1, config.batch)
    train_loader = DataLoader(
        ImageListDataset(train_items, train_tf),
        batch_size=batch,
        shuffle=True,
        generator=gen,
        num_workers=config.workers,
        drop_last=len(train_items) > batch,  # a batch of one breaks BatchNorm
        pin_memory=device.startswith("cuda"),
        persistent_workers=config.workers > 0,
    )
    val_loader = DataLoader(
        ImageListDataset(val_items, eval_tf),
        batch_size=batch,
        shuffle=False,
        num_workers=config.workers,
    )
    steps = len(train_loader)
    if config.max_steps:
        steps = min(steps, config.max_steps)
    lr = config.lr or (1e-4 if config.weights else 1e-3)
    params = [p for p in model.parameters() if p.requires_grad]
    opt_name = "adamw" if config.optimizer == "auto" else config.optimizer.lower()
    if opt_name == "adamw":
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=config.weight_decay)
    elif opt_name == "sgd":
        optimizer = torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=config.weight_decay
        )
    else:
        raise FitError("optimizer must be auto, adamw or sgd")
    total = max(1, config.epochs * steps)
    warmup = round((config.warmup_epochs or 0.0) * steps)

    def schedule(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    cuda = device.startswith("cuda")
    use_amp = bool(config.amp and cuda)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    criterion = nn.CrossEntropyLoss()

    ckpt_dir = run_dir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    last_path, best_path = ckpt_dir / "last.pt", ckpt_dir / "best.pt"
    history: list[dict[str, Any]] = []
    start_epoch, best_acc, best_epoch = 0, -1.0, 0
    if resume:
        if not last_path.is_file():
            raise FitError(f"{run_dir}: no checkpoints/last.pt to resume from")
        state = torch.load(last_path, map_location="cpu", weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        start_epoch, best_acc = int(state["epoch"]), float(state["best_acc"])
        best_epoch = int(state.get("best_epoch", 0))
        history = list(state["history"])
        if best_epoch == start_epoch and start_epoch < config.epochs:
            # the best weights so far live only in last.pt, which training will overwrite
            _atomic_save(
                {
                    "model": state["model"],
                    "labels": labels,
                    "epoch": best_epoch,
                    "val_acc": best_acc,
                    "config": asdict(config),
                },
                best_path,
            )
        torch.set_rng_state(state["rng"]["torch"])
        np.random.set_state(state["rng"]["numpy"])
        random.setstate(state["rng"]["python"])
        gen.set_state(state["rng"]["loader"])
        log.info("resuming %s at epoch %d of %d", run_dir, start_epoch + 1, config.epochs)

    train_time = 0.0
    for epoch in range(start_epoch, config.epochs):
        t0 = time.perf_counter()
        model.train()
        seen = correct = 0
        loss_sum = 0.0
        bar = tqdm(
            train_loader,
            total=steps,
            desc=f"{spec.name} epoch {epoch + 1}/{config.epochs}",
            unit="batch",
            disable=not config.progress,
            leave=False,
        )
        for step, (x, y) in enumerate(bar):
            if step >= steps:
                break
            x = x.to(device, non_blocking=True)
            y = y.to(device, non_blocking=True)
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(device_type="cuda" if cuda else "cpu", enabled=use_amp):
                logits = model(x)
                loss = criterion(logits, y)
            if not torch.isfinite(loss):
                raise FitError(f"{spec.name}: loss became {loss.item()} at epoch {epoch + 1}")
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            n = y.numel()
            seen += n
            loss_sum += float(loss.item()) * n
            correct += int((logits.argmax(1) == y).sum().item())
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        bar.close()
        val_loss, val_acc = _validate(model, val_loader, criterion, device, use_amp)
        seconds = time.perf_counter() - t0
        train_time += seconds
        row = {
            "epoch": epoch + 1,
            "train_loss": loss_sum / max(1, seen),
            "val_loss": val_loss,
            "train_acc": correct / max(1, seen),
            "val_acc": val_acc,
            "lr": optimizer.param_groups[0]["lr"],
            "seconds": round(seconds, 3),
        }
        history.append(row)
        write_history(run_dir / "history.csv", history)
        if config.progress:
            print(
                f"{spec.name} epoch {epoch + 1}/{config.epochs}: train loss "
                f"{row['train_loss']:.4f} acc {row['train_acc']:.3f} | val loss {val_loss:.4f} "
                f"acc {val_acc:.3f} | {seconds:.1f} s",
                flush=True,
            )
        if val_acc > best_acc:
            best_acc, best_epoch = val_acc, epoch + 1
            if epoch + 1 < config.epochs:
                _atomic_save(
                    {
                        "model": model.state_dict(),
                        "labels": labels,
                        "epoch": epoch + 1,
                        "val_acc": val_acc,
                        "config": asdict(config),
                    },
                    best_path,
                )
            else:  # the final epoch is the best: last.pt holds it, spare the big write
                best_path.unlink(missing_ok=True)
        _atomic_save(
            {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "scaler": scaler.state_dict(),
                "epoch": epoch + 1,
                "best_acc": best_acc,
                "best_epoch": best_epoch,
                "history": history,
                "labels": labels,
                "config": asdict(config),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state(),
                    "python": random.getstate(),
                    "loader": gen.get_state(),
                },
            },
            last_path,
        )

    # export the best epoch (still in `model` when it was the last one)
    last_epoch = len(history)
    if best_epoch != last_epoch:
        best = torch.load(best_path, map_location="cpu", weights_only=False)
        model.load_state_dict(best["model"])
    best_val = best_acc
    model = exportable(model.cpu().eval(), spec.name, config.imgsz)
    (run_dir / "bundle" / f"{config.name}.json").unlink(missing_ok=True)
    n_params = sum(p.numel() for p in model.parameters())
    onnx_path = run_dir / "bundle" / f"{config.name}.onnx"
    err = export_onnx(model, onnx_path, (config.imgsz, config.imgsz), output_name="logits")
    cls_meta = prepared.meta["classify"]
    crop = config.variant == "crop"
    meta = classify_meta(
        config.name,
        labels,
        (config.imgsz, config.imgsz),
        preprocess=torchvision_classify_preprocess(
            cls_meta["crop_margin"] if crop else 0.0,
            bool(cls_meta["square_crop"]) if crop else False,
        ),
        output="logits",
        source=_source(config, spec, prepared),
        extra={
            "onnx_max_abs_error": err,
            "parameters": n_params,
            "best_epoch": best_epoch,
            "best_val_acc_torch": best_val,
            "run": str(run_dir.resolve()),
            "init": load_report,
        },
        license=config.license,
    )
    card = _card(
        spec,
        config,
        labels,
        prepared,
        f"Best epoch {best_epoch} (PyTorch validation accuracy {best_val:.4f}); "
        f"ONNX max abs error vs PyTorch: {err:.2e}.",
    )
    bundle = write_bundle(meta, onnx_path, run_dir / "bundle", card)
    return {
        "labels": labels,
        "train_time_s": train_time,
        "epochs_done": len(history),
        "parameters": n_params,
        "bundle": str(bundle.meta_path.relative_to(run_dir)),
        "checkpoint": str(
            (best_path if best_epoch != last_epoch else last_path).relative_to(run_dir)
        ),
        "best_epoch": best_epoch,
        "imgsz": config.imgsz,
        "init": load_report,
    }


def _validate(model, loader, criterion, device: str, use_amp: bool) -> tuple[float, float]:
    import torch

    model.eval()
    seen = correct = 0
    loss_sum = 0.0
    with torch.no_grad():
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            with torch.autocast(device_type="cuda" if use_amp else "cpu", enabled=use_amp):
                logits = model(x)
                loss = criterion(logits, y)
            seen += y.numel()
            loss_sum += float(loss.item()) * y.numel()
            correct += int((logits.argmax(1) == y).sum().item())
    return loss_sum / max(1, seen), correct / max(1, seen)
