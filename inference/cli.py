"""Typer commands of issue 6, for `deploy.cli` to mount (it sets up logging before each:
logging is configured by the entry point, and this module stays below `deploy`).

    intervue export BUNDLE --format onnx|engine [--half] [--int8 --calib DIR] [--batch N]
                    [--imgsz S]
    intervue models import best.pt [--name N] [--label-map a=b,...]

`engines_app` holds ``export`` and ``import`` for mounting as a group; the functions
(`export_command`, `models_import_command`) can also be registered one by one. The engines
benchmark (``intervue bench vision``) lives with the other benchmarks in `deploy.bench`.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

engines_app = typer.Typer(help="Model export and import (ONNX, TensorRT, YOLOv8).")


def _csv(text: str, cast=str) -> list:  # type: ignore[no-untyped-def]
    return [cast(v.strip()) for v in text.split(",") if v.strip()]


def export_command(
    bundle: Path = typer.Argument(..., help="Bundle sidecar (.json), weights file or folder"),
    format: str = typer.Option("onnx", "--format", "-f", help="onnx | engine"),
    half: bool = typer.Option(False, "--half", help="fp16 (engine; ONNX needs a CUDA device)"),
    int8: bool = typer.Option(
        False, "--int8", help="INT8 (needs --calib): an engine, or a Q/DQ ONNX for TensorRT"
    ),
    calib: Path = typer.Option(None, "--calib", help="Folder of calibration images (int8)"),
    batch: int = typer.Option(32, "--batch", min=1, help="Largest batch (TensorRT profile max)"),
    imgsz: int = typer.Option(None, "--imgsz", help="Square input size (needs PyTorch weights)"),
    output_dir: Path = typer.Option(None, "--output-dir", "-o", help="Default: beside BUNDLE"),
    name: str = typer.Option(None, "--name", help="Default: <source>-onnx|trt-<precision>"),
    workspace: float = typer.Option(4.0, "--workspace", help="TensorRT workspace limit, GiB"),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON"),
) -> None:
    """Export a model bundle to ONNX (dynamic batch) or a TensorRT engine, verified
    against the PyTorch model (top-1 agreement and max abs error are printed)."""
    from inference.bundle import BundleError
    from inference.export import ExportError, export

    try:
        result = export(
            bundle,
            format,
            half=half,
            int8=int8,
            calib_dir=calib,
            batch=batch,
            imgsz=imgsz,
            output_dir=output_dir,
            name=name,
            workspace_gb=workspace,
        )
    except (ExportError, BundleError, FileNotFoundError) as exc:
        typer.echo(f"export failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(result.as_dict(), indent=2) if as_json else result.summary())


def models_import_command(
    weights: Path = typer.Argument(..., help="An ultralytics YOLOv8 .pt (classify or detect)"),
    models_dir: Path = typer.Option(
        None, "--models-dir", help="Default: INTERVUE_MODELS_DIR or ~/.cache/intervue/models"
    ),
    name: str = typer.Option(None, "--name", help="Bundle name (default from the file name)"),
    imgsz: int = typer.Option(None, "--imgsz", help="Input size (default: the training size)"),
    label_map: str = typer.Option(
        "", "--label-map", help="LABEL=CLASS,… for labels that are not product classes"
    ),
    crop_margin: float = typer.Option(0.1, help="Classifiers: margin added around face boxes"),
    force: bool = typer.Option(False, "--force", help="Replace a bundle of the same name"),
) -> None:
    """Turn a YOLOv8 checkpoint into a model bundle the vision worker runs
    (INTERVUE_VISION_CLASSIFIER=<name>)."""
    from inference.bundle import BundleError
    from inference.importer import ImportModelError, import_ultralytics
    from inference.onnx_io import ExportError

    mapping = {}
    for pair in _csv(label_map):
        if "=" not in pair:
            typer.echo(f"--label-map wants LABEL=CLASS pairs, got {pair!r}", err=True)
            raise typer.Exit(2)
        key, value = pair.split("=", 1)
        mapping[key.strip()] = value.strip()
    try:
        bundle = import_ultralytics(
            weights,
            models_dir,
            name=name,
            imgsz=imgsz,
            label_map=mapping,
            crop_margin=crop_margin,
            force=force,
        )
    except (ImportModelError, ExportError, BundleError, FileNotFoundError, FileExistsError) as exc:
        typer.echo(f"import failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    meta = bundle.meta
    typer.echo(
        json.dumps(
            {
                "name": meta.name,
                "task": meta.task,
                "sidecar": str(bundle.meta_path),
                "labels": list(meta.labels),
                "label_map": meta.label_map,
                "input_size": list(meta.input_size),
                "verification": meta.extra.get("import", {}).get("verification"),
                "use": f"INTERVUE_VISION_CLASSIFIER={meta.name}",
            },
            indent=2,
            ensure_ascii=False,
        )
    )


engines_app.command("export")(export_command)
engines_app.command("import")(models_import_command)
