"""TensorRT backend: a serialized engine bundle on one NVIDIA GPU.

The engine's I/O buffers are torch CUDA tensors (no pycuda / cuda-python needed), the
engine runs on its own torch CUDA stream with ``execute_async_v3``, and the input shape is
set per call inside the engine's optimisation profile (dynamic batch, min/opt/max recorded
by `inference.export`). A batch above the profile's max is split by `Backend.infer`.

An engine only runs on the TensorRT version that built it and on the same GPU architecture
(compute capability); `check_engine_compat` compares the engine bundle's metadata
(``extra.export.tensorrt_version`` / ``gpu_name`` / ``compute_capability``) with this
machine and refuses a mismatch with a message that says how to rebuild. That check is
plain Python and tested on CPU; everything below it needs a GPU with TensorRT.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from inference.backends.base import (
    Backend,
    BackendUnavailable,
    export_info,
    find_variants,
    torch_cuda_reason,
)
from inference.backends.config import TensorRTConfig
from inference.bundle import Bundle

log = logging.getLogger(__name__)


class EngineMismatchError(BackendUnavailable):
    """A TensorRT engine built by another TensorRT version or for another GPU."""


def tensorrt_reason() -> str | None:
    """None when the `tensorrt` Python package imports, else why not."""
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        return "tensorrt is not installed (pip install 'intervue[gpu]' on a machine with a GPU)"
    except Exception as exc:  # a broken install (missing libnvinfer) raises other errors
        return f"tensorrt does not import: {exc}"
    return None


def gpu_facts(device_index: int = 0) -> dict[str, str]:
    """{"gpu_name", "compute_capability"} of a CUDA device, read through torch."""
    import torch

    major, minor = torch.cuda.get_device_capability(device_index)
    return {
        "gpu_name": torch.cuda.get_device_name(device_index),
        "compute_capability": f"{major}.{minor}",
    }


def check_engine_compat(
    meta_export: dict[str, Any],
    tensorrt_version: str,
    gpu_name: str,
    compute_capability: str,
    engine_name: str = "engine",
) -> None:
    """Raise `EngineMismatchError` unless an engine described by `meta_export` (a bundle's
    ``extra.export``) can run with this TensorRT version on this GPU. A different card
    of the same architecture runs the engine (TensorRT allows it) but with tactics tuned
    for the other card: logged, not refused."""
    built_trt = str(meta_export.get("tensorrt_version", ""))
    built_cc = str(meta_export.get("compute_capability", ""))
    built_gpu = str(meta_export.get("gpu_name", ""))
    rebuild = "rebuild it here: intervue export <source bundle> --format engine"
    if not built_trt or not built_cc:
        raise EngineMismatchError(
            f"{engine_name}: the sidecar does not say which TensorRT version and GPU built "
            f"it; {rebuild}"
        )
    if built_trt != tensorrt_version:
        raise EngineMismatchError(
            f"{engine_name} was built by TensorRT {built_trt}, this machine has TensorRT "
            f"{tensorrt_version}: engines only load in the version that built them; {rebuild}"
        )
    if built_cc != compute_capability:
        raise EngineMismatchError(
            f"{engine_name} was built for {built_gpu or 'a GPU'} (compute capability "
            f"{built_cc}), this GPU is {gpu_name} ({compute_capability}); {rebuild}"
        )
    if built_gpu and built_gpu != gpu_name:
        log.warning(
            "%s was built on %s and runs on %s (same architecture %s): it works, but its "
            "kernels were tuned for the other card",
            engine_name,
            built_gpu,
            gpu_name,
            compute_capability,
        )


def _trt_logger() -> Any:
    import tensorrt as trt

    return trt.Logger(trt.Logger.WARNING)


class TensorRTBackend(Backend):
    name = "tensorrt"

    def __init__(self, config: TensorRTConfig | None = None) -> None:
        super().__init__(config or TensorRTConfig())
        self._engine: Any = None
        self._context: Any = None
        self._stream: Any = None
        self._input = ""
        self._output = ""
        self._in_dtype: Any = None
        self._out_dtype: Any = None

    @property
    def label(self) -> str:
        return "tensorrt"

    @classmethod
    def unavailable_reason(cls, config: Any) -> str | None:
        return tensorrt_reason() or torch_cuda_reason(getattr(config, "device_index", 0))

    def load(self, bundle: Bundle) -> None:
        reason = self.unavailable_reason(self.config)
        if reason:
            raise BackendUnavailable(reason)
        import tensorrt as trt

        cfg: TensorRTConfig = self.config
        engines = find_variants(bundle, "engine")
        if not engines:
            raise BackendUnavailable(
                f"no TensorRT engine for {bundle.meta.name} beside it (build one: "
                f"intervue export {bundle.meta_path} --format engine)"
            )
        facts = gpu_facts(cfg.device_index)
        errors = []
        chosen = None
        for engine_bundle in engines:
            try:
                check_engine_compat(
                    export_info(engine_bundle),
                    trt.__version__,
                    facts["gpu_name"],
                    facts["compute_capability"],
                    engine_bundle.weights_path.name,
                )
            except EngineMismatchError as exc:
                errors.append(str(exc))
                continue
            chosen = engine_bundle
            break
        if chosen is None:
            raise EngineMismatchError("; ".join(errors))
        chosen.verify()
        self.load_engine_file(chosen.weights_path)
        self.bundle = chosen
        self.details["precision"] = export_info(chosen).get("precision")

    @property
    def loaded(self) -> bool:
        return self._context is not None

    def load_engine_file(self, path: Path) -> None:
        """Deserialize an engine file and set up its context, stream and profile (no
        compatibility check: `load` does that from the bundle's metadata)."""
        import tensorrt as trt
        import torch

        cfg: TensorRTConfig = self.config
        device = torch.device(f"cuda:{cfg.device_index}")
        torch.cuda.set_device(device)
        runtime = trt.Runtime(_trt_logger())
        engine = runtime.deserialize_cuda_engine(Path(path).read_bytes())
        if engine is None:
            raise EngineMismatchError(
                f"TensorRT could not deserialize {Path(path).name} (built for another "
                "TensorRT version or GPU?)"
            )
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if len(inputs) != 1 or not outputs:
            raise BackendUnavailable(f"engine {Path(path).name}: expected 1 input, got {inputs}")
        self._input, self._output = inputs[0], outputs[0]
        p_min, p_opt, p_max = engine.get_tensor_profile_shape(self._input, 0)
        self.max_batch = max(1, min(cfg.max_batch, int(p_max[0])))
        self._in_dtype = _torch_dtype(engine.get_tensor_dtype(self._input))
        self._out_dtype = _torch_dtype(engine.get_tensor_dtype(self._output))
        self._engine = engine
        self._context = engine.create_execution_context()
        self._stream = torch.cuda.Stream(device=device)
        self._torch = torch
        self.device = f"cuda:{cfg.device_index}"
        self.details.update(
            engine=Path(path).name,
            profile={"min": int(p_min[0]), "opt": int(p_opt[0]), "max": int(p_max[0])},
            tensorrt_version=trt.__version__,
            **gpu_facts(cfg.device_index),
        )

    def _infer(self, batch: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.cuda.stream(self._stream):
            x = torch.from_numpy(batch).pin_memory().to(self.device, non_blocking=True)
            x = x.to(self._in_dtype).contiguous()
            self._context.set_input_shape(self._input, tuple(x.shape))
            shape = tuple(self._context.get_tensor_shape(self._output))
            y = torch.empty(shape, dtype=self._out_dtype, device=self.device)
            self._context.set_tensor_address(self._input, x.data_ptr())
            self._context.set_tensor_address(self._output, y.data_ptr())
            if not self._context.execute_async_v3(self._stream.cuda_stream):
                raise RuntimeError("TensorRT execute_async_v3 failed")
            out = y.float().cpu()  # synchronises the stream
        return out.numpy()

    def close(self) -> None:
        self._context = None
        self._engine = None


def _torch_dtype(trt_dtype: Any) -> Any:
    import tensorrt as trt
    import torch

    table = {
        trt.float32: torch.float32,
        trt.float16: torch.float16,
        trt.int32: torch.int32,
        trt.int8: torch.int8,
    }
    if trt_dtype not in table:
        raise BackendUnavailable(f"unsupported engine I/O dtype {trt_dtype}")
    return table[trt_dtype]
