"""Backend configuration: one pydantic model per backend, discriminated by ``kind``.

    {"kind": "onnxruntime", "device": "cpu", "threads": 1}
    {"kind": "torch", "device": "cuda", "half": true}
    {"kind": "tensorrt", "device_index": 0}
    {"kind": "auto"}

`parse_backend` also takes the short strings the CLI and settings use: ``auto``,
``onnxruntime`` (= onnxruntime on CPU), ``onnxruntime-cuda``, ``torch``, ``torch-cuda``,
``tensorrt``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

Device = Literal["cpu", "cuda"]

#: What ``auto`` tries, fastest first (one clear log line says what it picked and why).
AUTO_ORDER: tuple[str, ...] = (
    "tensorrt",
    "onnxruntime-cuda",
    "torch-cuda",
    "onnxruntime-cpu",
    "torch-cpu",
)


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: The largest batch one native call takes (TensorRT: capped by the engine's profile).
    max_batch: int = Field(64, ge=1, le=4096)
    #: CPU threads for the runtime (0 = the runtime's default).
    threads: int = Field(1, ge=0, le=256)
    #: Which GPU (CUDA configs only).
    device_index: int = Field(0, ge=0)


class OnnxRuntimeConfig(_Base):
    kind: Literal["onnxruntime"] = "onnxruntime"
    device: Device = "cpu"


class TorchConfig(_Base):
    kind: Literal["torch"] = "torch"
    device: Device = "cpu"
    #: fp16 weights and inputs on CUDA (ignored on CPU, where fp16 is slower).
    half: bool = True


class TensorRTConfig(_Base):
    kind: Literal["tensorrt"] = "tensorrt"
    device: Literal["cuda"] = "cuda"
    max_batch: int = Field(4096, ge=1, le=4096)  # the engine's profile caps it


class AutoConfig(_Base):
    kind: Literal["auto"] = "auto"
    order: tuple[str, ...] = AUTO_ORDER
    half: bool = True


BackendConfig = Annotated[
    OnnxRuntimeConfig | TorchConfig | TensorRTConfig | AutoConfig, Field(discriminator="kind")
]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(BackendConfig)

#: Short names accepted by `parse_backend` (and ``--backend``).
SHORT_NAMES: dict[str, dict[str, Any]] = {
    "auto": {"kind": "auto"},
    "onnxruntime": {"kind": "onnxruntime", "device": "cpu"},
    "onnxruntime-cpu": {"kind": "onnxruntime", "device": "cpu"},
    "onnxruntime-cuda": {"kind": "onnxruntime", "device": "cuda"},
    "torch": {"kind": "torch", "device": "cpu"},
    "torch-cpu": {"kind": "torch", "device": "cpu"},
    "torch-cuda": {"kind": "torch", "device": "cuda"},
    "tensorrt": {"kind": "tensorrt"},
}


def parse_backend(value: Any, **overrides: Any) -> Any:
    """A backend config from a short name, a dict or a config; `overrides` (threads,
    max_batch, …) fill fields the value does not set."""
    if isinstance(value, BaseModel):
        data = value.model_dump()
    elif isinstance(value, str):
        key = value.strip().lower()
        if key not in SHORT_NAMES:
            raise ValueError(f"unknown backend {value!r}; known: {', '.join(SHORT_NAMES)}")
        data = dict(SHORT_NAMES[key])
    elif isinstance(value, dict):
        data = dict(value)
    else:
        raise TypeError(f"cannot make a backend config from {type(value).__name__}")
    for key, val in overrides.items():
        if val is not None:
            data.setdefault(key, val)
    kind = data.get("kind")
    allowed = {
        "onnxruntime": OnnxRuntimeConfig,
        "torch": TorchConfig,
        "tensorrt": TensorRTConfig,
        "auto": AutoConfig,
    }.get(kind)
    if allowed is not None:  # drop overrides the kind has no field for
        data = {k: v for k, v in data.items() if k in allowed.model_fields}
    return _ADAPTER.validate_python(data)


def short_name(config: Any) -> str:
    """``onnxruntime-cpu``, ``torch-cuda``, ``tensorrt``, ``auto``."""
    if config.kind in ("auto", "tensorrt"):
        return config.kind
    return f"{config.kind}-{config.device}"
