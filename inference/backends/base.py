"""The interface every model runtime implements, and the helpers they share.

A `Backend` runs one model bundle (`inference.bundle`) on a batch of already-preprocessed
inputs: ``infer(batch)`` takes a float32 array shaped like the model's input (N, C, H, W)
for ``nchw`` bundles, (N, H, W, C) for ``nhwc``) and returns the model's first output as a
float32 NumPy array with N rows, in the model's own label order. Cropping, resizing,
normalising and mapping labels onto the product's classes stay with the callers
(`inference.emotion`, `inference.yolo`), so every backend sees exactly the same tensor.

A backend that cannot run here (runtime not installed, no GPU, no weights in the form it
needs, an engine built for another GPU) raises `BackendUnavailable` from ``load`` with a
one-line reason; `inference.backends.create_backend` turns that into a fallback.
"""

from __future__ import annotations

import logging
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from inference.bundle import Bundle, BundleError, load_bundle

log = logging.getLogger(__name__)


class BackendUnavailable(RuntimeError):
    """This backend cannot run the bundle here; the message says why, in one line."""


class Backend(ABC):
    """Runs one bundle. Not thread-safe: callers serialise `infer` (the vision pipeline
    holds a lock around it)."""

    #: Registry name: "onnxruntime", "torch", "tensorrt".
    name: ClassVar[str] = ""

    def __init__(self, config: Any) -> None:
        self.config = config
        self.bundle: Bundle | None = None
        #: "cpu" or "cuda:N", set by `load`.
        self.device: str = "cpu"
        #: The largest batch one native call takes; `infer` splits larger ones.
        self.max_batch: int = int(getattr(config, "max_batch", None) or 64)
        #: Free-form facts for logs and the benchmark (precision, provider, origin, …).
        self.details: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        return self.bundle is not None

    @property
    def label(self) -> str:
        """What logs and benchmarks call this backend, e.g. ``onnxruntime-cpu``."""
        return f"{self.name}-{self.device.split(':')[0]}"

    @classmethod
    def unavailable_reason(cls, config: Any) -> str | None:
        """None when the runtime this backend needs is importable and (for GPU configs) a
        GPU is there; otherwise why not. Cheap: never loads a model."""
        return None

    @abstractmethod
    def load(self, bundle: Bundle) -> None:
        """Prepare to run `bundle` (or a variant of it in the form this backend needs).
        Raises `BackendUnavailable` (with the reason) or `BundleError`."""

    @abstractmethod
    def _infer(self, batch: np.ndarray) -> np.ndarray:
        """One native call on at most `max_batch` rows."""

    def infer(self, batch: np.ndarray) -> np.ndarray:
        """The model's first output for `batch` (float32, one row per input row)."""
        if not self.loaded:
            raise RuntimeError(f"{self.label}: load() a bundle first")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if batch.ndim != 4:
            raise ValueError(f"{self.label}: expected a 4-d input batch, got {batch.shape}")
        n = batch.shape[0]
        if n == 0:
            raise ValueError(f"{self.label}: empty batch")
        if n <= self.max_batch:
            return np.asarray(self._infer(batch), dtype=np.float32)
        parts = [
            np.asarray(self._infer(batch[i : i + self.max_batch]), dtype=np.float32)
            for i in range(0, n, self.max_batch)
        ]
        return np.concatenate(parts)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the backend holds (sessions, GPU memory)."""

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.label,
            "device": self.device,
            "max_batch": self.max_batch,
            "bundle": self.bundle.meta.name if self.bundle else None,
            **self.details,
        }

    def __repr__(self) -> str:
        name = self.bundle.meta.name if self.bundle else "-"
        return f"<{type(self).__name__} {self.label} {name} max_batch={self.max_batch}>"


# ---------------------------------------------------------------------------- helpers


def cuda_device_present() -> str | None:
    """None when an NVIDIA GPU looks present, else why not — checked without importing
    torch (which costs a second and hundreds of MB in a worker that may never use it)."""
    if os.environ.get("CUDA_VISIBLE_DEVICES", None) in ("", "-1"):
        return "CUDA_VISIBLE_DEVICES hides every GPU"
    if not (Path("/dev/nvidiactl").exists() or Path("/dev/nvidia0").exists()):
        return "no NVIDIA GPU on this machine (/dev/nvidiactl missing)"
    return None


def torch_cuda_reason(device_index: int = 0) -> str | None:
    """None when torch can use CUDA device `device_index`, else why not."""
    reason = cuda_device_present()
    if reason:
        return reason
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install 'intervue[models]')"
    if not torch.cuda.is_available():
        return "torch.cuda.is_available() is False (CPU-only torch build or driver missing)"
    if device_index >= torch.cuda.device_count():
        return f"no CUDA device {device_index} ({torch.cuda.device_count()} visible)"
    return None


def check_input(bundle: Bundle, declared: list[Any]) -> None:
    """Raise `BundleError` when a model's declared input (without the batch axis) does not
    fit the bundle metadata; symbolic dimensions pass."""
    meta = bundle.meta
    height, width = meta.input_size
    expected = (
        [meta.channels, height, width] if meta.layout == "nchw" else [height, width, meta.channels]
    )
    if all(isinstance(d, int) and d > 0 for d in declared) and list(declared) != expected:
        raise BundleError(
            f"bundle {meta.name}: model input {declared} does not match the metadata's "
            f"{meta.layout} {expected}"
        )


def check_classes(bundle: Bundle, n_out: Any) -> None:
    """Raise `BundleError` when a classifier's output width differs from its label count."""
    meta = bundle.meta
    if meta.task == "classify" and isinstance(n_out, int) and n_out != len(meta.labels):
        raise BundleError(
            f"bundle {meta.name}: model has {n_out} outputs but {len(meta.labels)} labels"
        )


def export_info(bundle: Bundle) -> dict[str, Any]:
    """``extra.export`` of an exported bundle ({} for a bundle that was not exported)."""
    info = bundle.meta.extra.get("export")
    return dict(info) if isinstance(info, dict) else {}


def source_name(bundle: Bundle) -> str:
    """The name of the bundle this one was exported from (its own name if none)."""
    return str(export_info(bundle).get("source_name") or bundle.meta.name)


def find_variants(bundle: Bundle, fmt: str) -> list[Bundle]:
    """Bundles in `bundle`'s directory in format `fmt` that are `bundle` itself or were
    exported from the same source bundle (``extra.export.source_name``), newest first.
    Unreadable sidecars are skipped."""
    root = source_name(bundle)
    found: list[Bundle] = []
    if bundle.meta.format == fmt:
        found.append(bundle)
    for sidecar in sorted(bundle.directory.glob("*.json")):
        if sidecar.resolve() == bundle.meta_path.resolve():
            continue
        try:
            other = load_bundle(sidecar, verify=False)
        except (BundleError, OSError, ValueError):
            continue
        if other.meta.format != fmt:
            continue
        if other.meta.name == root or source_name(other) == root:
            found.append(other)
    # the bundle itself first, then exports newest first
    head, rest = found[:1], found[1:]
    if head and head[0] is not bundle:
        head, rest = [], found
    rest.sort(key=lambda b: b.meta.created, reverse=True)
    return head + rest
