"""Model runtimes behind one interface (`Backend`), chosen by a discriminated config.

    from inference.backends import create_backend
    backend = create_backend("auto", bundle)          # or "onnxruntime", "torch-cuda", …
    out = backend.infer(batch)                         # float32 (N, …) in the model's order

Registry (`BACKENDS`): ``tensorrt`` (serialized engine, CUDA), ``onnxruntime`` (CPU or
CUDA execution provider), ``torch`` (CPU or CUDA, fp16 on CUDA). ``auto`` tries
`AUTO_ORDER` — tensorrt > onnxruntime-cuda > torch-cuda > onnxruntime-cpu > torch-cpu — and
logs ONE line naming what it picked and why each faster one was skipped. A named backend
that cannot run here is not a crash either: one warning line says why and what runs
instead (``strict=True`` raises `BackendUnavailable` instead, for tools that must not
silently switch, like export verification).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from inference.backends.base import (
    Backend,
    BackendUnavailable,
    cuda_device_present,
    find_variants,
    torch_cuda_reason,
)
from inference.backends.config import (
    AUTO_ORDER,
    AutoConfig,
    BackendConfig,
    OnnxRuntimeConfig,
    TensorRTConfig,
    TorchConfig,
    parse_backend,
    short_name,
)
from inference.backends.onnxruntime_backend import OnnxRuntimeBackend
from inference.backends.tensorrt_backend import (
    EngineMismatchError,
    TensorRTBackend,
    check_engine_compat,
)
from inference.backends.torch_backend import TorchBackend, load_torch_module
from inference.bundle import Bundle, BundleError

log = logging.getLogger(__name__)

BACKENDS: Mapping[str, type[Backend]] = MappingProxyType(
    {"tensorrt": TensorRTBackend, "onnxruntime": OnnxRuntimeBackend, "torch": TorchBackend}
)

__all__ = [
    "AUTO_ORDER",
    "BACKENDS",
    "AutoConfig",
    "Backend",
    "BackendConfig",
    "BackendUnavailable",
    "EngineMismatchError",
    "OnnxRuntimeConfig",
    "TensorRTBackend",
    "TensorRTConfig",
    "TorchConfig",
    "available_backends",
    "check_engine_compat",
    "create_backend",
    "cuda_device_present",
    "find_variants",
    "load_torch_module",
    "parse_backend",
    "short_name",
    "torch_cuda_reason",
]


def _build(config: Any, bundle: Bundle) -> Backend:
    backend = BACKENDS[config.kind](config)
    backend.load(bundle)
    return backend


def available_backends() -> dict[str, str | None]:
    """Short name → None if its runtime (and GPU) is usable here, else why not. Says
    nothing about whether a given bundle has the weights a backend needs."""
    result = {}
    for name in AUTO_ORDER:
        config = parse_backend(name)
        result[name] = BACKENDS[config.kind].unavailable_reason(config)
    return result


def _auto(config: AutoConfig, bundle: Bundle) -> tuple[Backend | None, list[str]]:
    skipped: list[str] = []
    common = {
        "threads": config.threads,
        "max_batch": config.max_batch,
        "device_index": config.device_index,
        "half": config.half,
    }
    for name in config.order:
        candidate = parse_backend(name, **common)
        reason = BACKENDS[candidate.kind].unavailable_reason(candidate)
        if reason:
            skipped.append(f"{name}: {reason}")
            continue
        try:
            return _build(candidate, bundle), skipped
        except (BackendUnavailable, BundleError, ImportError, OSError, RuntimeError) as exc:
            skipped.append(f"{name}: {exc}")
    return None, skipped


def create_backend(
    config: Any = "auto",
    bundle: Bundle | None = None,
    *,
    strict: bool = False,
    **overrides: Any,
) -> Backend:
    """A loaded backend for `bundle`. `config` is a short name, dict or config model;
    `overrides` (threads, max_batch, device_index, half) fill what it leaves unset.

    ``auto`` picks the fastest usable backend. A named backend that cannot run raises
    `BackendUnavailable` with `strict`, and otherwise logs one warning line and falls back
    to ``auto``. Raises `BackendUnavailable` when nothing at all can run the bundle.
    """
    if bundle is None:
        raise ValueError("create_backend needs the bundle to load")
    config = parse_backend(config, **overrides)
    name = bundle.meta.name
    if config.kind == "auto":
        backend, skipped = _auto(config, bundle)
        if backend is None:
            raise BackendUnavailable(f"no backend can run {name}: " + "; ".join(skipped))
        log.info(
            "backend auto → %s for %s%s",
            backend.label,
            name,
            f" (skipped {'; '.join(skipped)})" if skipped else "",
        )
        return backend
    try:
        reason = BACKENDS[config.kind].unavailable_reason(config)
        if reason:
            raise BackendUnavailable(reason)
        return _build(config, bundle)
    except BackendUnavailable as exc:
        if strict:
            raise
        wanted = short_name(config)
        fallback = AutoConfig(
            threads=config.threads,
            max_batch=min(config.max_batch, 4096),
            device_index=config.device_index,
            order=tuple(n for n in AUTO_ORDER if n != wanted),
        )
        backend, skipped = _auto(fallback, bundle)
        if backend is None:
            raise BackendUnavailable(
                f"backend {wanted} unavailable ({exc}) and no fallback can run {name}: "
                + "; ".join(skipped)
            ) from exc
        log.warning(
            "backend %s unavailable for %s: %s — running %s instead",
            wanted,
            name,
            exc,
            backend.label,
        )
        return backend
