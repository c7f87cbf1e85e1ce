"""``intervue train …``: the Typer app for preprocessing, training, evaluation, comparison.

`train_app` is mounted by ``deploy/cli.py`` (``app.add_typer(train_app, name="train")``).
Heavy imports (torch, ultralytics) happen inside the commands, so ``intervue --help``
stays fast. Input that cannot be used ends with a one-line error and exit code 2.
"""

from __future__ import annotations

from pathlib import Path

import typer

train_app = typer.Typer(
    help="Emotion models: preprocess the labelled image set, train, evaluate, compare.",
    no_args_is_help=True,
)


def _fail(exc: Exception) -> None:
    typer.echo(f"error: {exc}", err=True)
    raise typer.Exit(2) from exc


def _errors() -> tuple[type[BaseException], ...]:
    from inference.bundle import BundleError
    from inference.onnx_io import ExportError
    from training.dataset import DatasetError
    from training.fit import FitError

    return (DatasetError, FitError, BundleError, ExportError, FileNotFoundError, ValueError)


@train_app.command()
def preprocess(
    source: Path = typer.Argument(
        ..., help="dataset root: <root>/<emotion>/{labeled,raw}/{train,validation}"
    ),
    out: Path = typer.Argument(..., help="output folder (written atomically)"),
    preset: str = typer.Option(
        "all", help="per-class sizes train/validation: 200/100, 1000/300, 4000/1000 or all"
    ),
    train_per_class: int | None = typer.Option(
        None, help="train images per class (overrides the preset)"
    ),
    val_per_class: int | None = typer.Option(
        None, help="validation images per class (overrides the preset)"
    ),
    seed: int = typer.Option(0, help="sampling seed"),
    crop_margin: float = typer.Option(
        0.0, help="face crop: grow the box by this share of its side per side"
    ),
    square_crop: bool = typer.Option(True, help="face crop: square around the box centre"),
    crop_size: int = typer.Option(
        224, help="face crops resized to this long side (0: native size)"
    ),
    max_side: int | None = typer.Option(
        None, help="shrink whole images to this long side (aspect kept)"
    ),
    squash: int | None = typer.Option(
        None, help="resize whole images to SQUASH×SQUASH (aspect NOT kept)"
    ),
    detection_order: str = typer.Option(
        "original",
        help="detection class order: original (anger, normal, happy, …), alphabetical, product",
    ),
    workers: int = typer.Option(0, help="processes decoding images (0: in this process)"),
    overwrite: bool = typer.Option(False, help="replace OUT if it exists"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Scan, check and sample the original dataset; write the report, the classification
    datasets (face crops and whole images) and the YOLO detection dataset."""
    from training.preprocess import preprocess as run_preprocess
    from training.preprocess import summary_lines

    try:
        prepared = run_preprocess(
            source,
            out,
            preset=preset,
            train_per_class=train_per_class,
            val_per_class=val_per_class,
            seed=seed,
            crop_margin=crop_margin,
            square_crop=square_crop,
            crop_size=crop_size or None,
            max_side=max_side,
            squash=squash,
            detection_order=detection_order,
            workers=workers,
            overwrite=overwrite,
            progress=not quiet,
        )
    except _errors() as exc:
        _fail(exc)
    for line in summary_lines(prepared):
        typer.echo(line)


@train_app.command()
def fit(
    model: str | None = typer.Option(
        None,
        help="yolov8n-cls, yolov8s-cls, yolov8m-cls, yolov8n, yolov8s, yolov8m, vgg16, resnet50, "
        "resnext50, vit_b_16",
    ),
    data: Path | None = typer.Option(None, help="prepared dataset (from `train preprocess`)"),
    out: Path = typer.Option(..., help="run folder (checkpoints, history, bundle, eval)"),
    variant: str = typer.Option(
        "crop", help="classifiers: crop (face crops) or full (whole images)"
    ),
    epochs: int | None = typer.Option(
        None, help="epochs (default 30); with --resume: the new total"
    ),
    batch: int = typer.Option(16, help="batch size"),
    imgsz: int | None = typer.Option(None, help="input size (default 224; detectors 640)"),
    lr: float | None = typer.Option(
        None, help="learning rate (default 1e-3 from scratch, 1e-4 with --weights)"
    ),
    optimizer: str = typer.Option("auto", help="auto, adamw or sgd"),
    weight_decay: float = typer.Option(1e-4, help="weight decay"),
    warmup_epochs: float | None = typer.Option(
        None, help="warm-up epochs (default: ultralytics 3, torchvision 0)"
    ),
    seed: int = typer.Option(0, help="random seed"),
    device: str = typer.Option("auto", help="auto (CUDA when present), cpu, cuda, cuda:N"),
    weights: Path | None = typer.Option(
        None, help="local weights file to fine-tune from (never downloaded)"
    ),
    workers: int = typer.Option(2, help="data loader worker processes"),
    amp: bool = typer.Option(True, help="mixed precision on CUDA"),
    max_steps: int | None = typer.Option(
        None, help="torchvision: at most this many batches per epoch"
    ),
    fraction: float = typer.Option(1.0, help="share of the training split to use"),
    name: str | None = typer.Option(None, help="bundle name (default emotion-MODEL)"),
    resume: bool = typer.Option(False, help="continue the run in --out from its last checkpoint"),
    evaluate: bool = typer.Option(True, help="evaluate the bundle after training"),
    quiet: bool = typer.Option(False, help="no progress bars"),
) -> None:
    """Train one model, save checkpoints, write its model bundle and evaluate it."""
    from training.fit import FitConfig, resume_config
    from training.fit import fit as run_fit

    try:
        if resume:
            config = resume_config(out, epochs=epochs)
            config.progress = not quiet
        else:
            if model is None or data is None:
                raise ValueError("--model and --data are required (unless --resume)")
            config = FitConfig(
                model=model,
                data=str(data),
                out=str(out),
                variant=variant,
                epochs=epochs or 30,
                batch=batch,
                imgsz=imgsz,
                lr=lr,
                optimizer=optimizer,
                weight_decay=weight_decay,
                warmup_epochs=warmup_epochs,
                seed=seed,
                device=device,
                weights=str(weights) if weights else None,
                workers=workers,
                amp=amp,
                max_steps=max_steps,
                fraction=fraction,
                name=name,
                evaluate=evaluate,
                progress=not quiet,
            )
        result = run_fit(config, resume=resume)
    except _errors() as exc:
        _fail(exc)
    typer.echo(f"run: {result.run_dir}")
    typer.echo(f"  labels: {', '.join(result.labels)}")
    typer.echo(f"  epochs: {result.epochs_done}, training time {result.train_time_s:.1f} s")
    typer.echo(f"  bundle: {result.bundle_path}")
    m = result.extra.get("metrics")
    if m:
        typer.echo(
            f"  validation: accuracy {m['accuracy']:.4f}, macro P {m['macro_precision']:.4f} "
            f"R {m['macro_recall']:.4f} F1 {m['macro_f1']:.4f} ({result.run_dir / 'eval'})"
        )


@train_app.command()
def evaluate(
    run: Path = typer.Argument(..., help="run folder (from `train fit`)"),
    data: Path | None = typer.Option(
        None, help="prepared dataset (default: the one the run trained on)"
    ),
    split: str = typer.Option("val", help="split to evaluate on: val or train"),
    out: Path | None = typer.Option(None, help="output folder (default RUN/eval)"),
) -> None:
    """Metrics from the run's bundle's predictions: Markdown, CSV, confusion matrix and
    loss/accuracy curves as PNG."""
    from training.evaluate import evaluate as run_evaluate

    try:
        m = run_evaluate(run, data=data, split=split, out=out)
    except _errors() as exc:
        _fail(exc)
    typer.echo(
        f"{m['display']}: accuracy {m['accuracy']:.4f}, macro precision "
        f"{m['macro_precision']:.4f}, recall {m['macro_recall']:.4f}, F1 {m['macro_f1']:.4f} "
        f"({m['n']} images) → {out or run / 'eval'}"
    )


@train_app.command()
def compare(
    runs: list[Path] = typer.Argument(..., help="run folders, or folders holding runs"),
    out: Path = typer.Option(Path("comparison"), help="output folder"),
) -> None:
    """The comparison table (accuracy, macro precision/recall/F1, training time) as
    Markdown, CSV and PNG; runs without an evaluation are evaluated first."""
    from training.compare import compare as run_compare
    from training.compare import render_comparison

    try:
        rows = run_compare(runs, out)
    except _errors() as exc:
        _fail(exc)
    typer.echo(render_comparison(rows))
    typer.echo(f"written: {out / 'comparison.md'}, comparison.csv, comparison.png")
