"""ONNX I/O shared by every export path: the opset, the PyTorch → ONNX step, batch-axis
and simplification passes, and the one error type and tolerance table of a verified export.

The bottom layer of exporting: it imports no other module of this project, so the
backends (whose torch backend rebuilds the FER model), `inference.fer_port`,
`inference.prepare`, `inference.export` and `training.bundles` can all use it without an
import cycle (`fer_port` used to reach `torch_to_onnx` through `inference.export`, which
imports the backends).
"""

from __future__ import annotations

import dataclasses
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: The ONNX opset of every model this project writes (`models prepare`, `export`, training).
ONNX_OPSET = 17

#: precision → (min top-1 agreement, max abs error or None): beyond these an export fails.
#: int8 has no error bound: its outputs move by the quantisation step, top-1 is what counts.
TOLERANCES: dict[str, tuple[float, float | None]] = {
    "fp32": (0.99, 1e-3),
    "fp16": (0.97, 5e-2),
    "int8": (0.80, None),
}


class ExportError(RuntimeError):
    """An export cannot be done here, or its output disagrees with its reference: the one
    error type of every export path (`models prepare`, `models import`, `export`, training's
    bundles). Subclasses say which: `VerificationError` (the output disagrees; carries the
    `Agreement`), `inference.importer.ImportModelError` (not a model this product runs)."""


class VerificationError(ExportError):
    """An exported model disagrees with its reference beyond `TOLERANCES`; nothing written."""

    def __init__(self, message: str, agreement: Agreement, precision: str) -> None:
        super().__init__(message)
        self.agreement = agreement
        self.precision = precision


@dataclass
class Agreement:
    """How an exported model agrees with its reference on the same inputs: the one
    verification result of every export path."""

    n: int
    top1: float  # fraction of inputs with the same top class
    max_abs_error: float
    reference: str  # what the reference was ("torch fer_port rebuild …", "onnxruntime …")
    candidate: str  # what ran the export ("onnxruntime-cpu", "tensorrt")

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def line(self) -> str:
        return (
            f"agreement with {self.reference}: top-1 {self.top1 * 100:.2f}% over {self.n} "
            f"inputs, max abs error {self.max_abs_error:.3g} ({self.candidate})"
        )


def compare_outputs(
    reference: Any,
    candidate: Any,
    reference_name: str,
    candidate_name: str,
    task: str = "classify",
) -> Agreement:
    """Top-1 agreement and max abs error of two outputs of the same inputs. Classifiers:
    argmax per row. Detectors ((N, 4 + classes, anchors)): the class of the reference's
    best-scoring anchor, read in both outputs."""
    import numpy as np

    reference = np.asarray(reference, np.float64)
    candidate = np.asarray(candidate, np.float64)
    if reference.shape != candidate.shape:
        raise ExportError(f"output shapes differ: {reference.shape} vs {candidate.shape}")
    err = float(np.max(np.abs(reference - candidate)))
    if task == "detect":
        scores_r, scores_c = reference[:, 4:, :], candidate[:, 4:, :]
        anchor = scores_r.max(axis=1).argmax(axis=1)
        rows = np.arange(reference.shape[0])
        top_r = scores_r[rows, :, anchor].argmax(axis=1)
        top_c = scores_c[rows, :, anchor].argmax(axis=1)
    else:
        flat_r = reference.reshape(reference.shape[0], -1)
        flat_c = candidate.reshape(candidate.shape[0], -1)
        top_r, top_c = flat_r.argmax(axis=1), flat_c.argmax(axis=1)
    return Agreement(
        n=int(reference.shape[0]),
        top1=float(np.mean(top_r == top_c)),
        max_abs_error=err,
        reference=reference_name,
        candidate=candidate_name,
    )


def within_tolerance(precision: str, top1: float, max_abs_error: float) -> bool:
    """Whether a verification's figures pass `TOLERANCES[precision]` (a NaN error fails)."""
    min_top1, max_err = TOLERANCES[precision]
    return top1 >= min_top1 and (max_err is None or max_abs_error <= max_err)


def check_agreement(result: Agreement, precision: str = "fp32", what: str = "export") -> Agreement:
    """`result` if it is within `TOLERANCES[precision]`; otherwise `VerificationError`
    saying what disagreed with what, by how much, and what was allowed."""
    if within_tolerance(precision, result.top1, result.max_abs_error):
        return result
    min_top1, max_err = TOLERANCES[precision]
    raise VerificationError(
        f"the {what} disagrees with {result.reference}: top-1 {result.top1 * 100:.2f}% "
        f"(needs ≥ {min_top1 * 100:.0f}%), max abs error {result.max_abs_error:.3g}"
        + (f" (allowed ≤ {max_err:g})" if max_err is not None else "")
        + "; nothing written",
        result,
        precision,
    )


def verify(
    reference: Any,
    candidate: Any,
    reference_name: str,
    candidate_name: str,
    precision: str = "fp32",
    task: str = "classify",
    what: str = "export",
) -> Agreement:
    """`compare_outputs` then `check_agreement`: the one verification of every export."""
    result = compare_outputs(reference, candidate, reference_name, candidate_name, task=task)
    return check_agreement(result, precision, what)


def run_torch(module: Any, x: Any, batch: int = 0) -> Any:
    """`module`'s first output on the NCHW float32 batch `x` (in chunks of `batch`; 0: one
    call), as float32 NumPy."""
    import numpy as np
    import torch

    batch = batch or max(1, len(x))
    outs = []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            y = module(torch.from_numpy(np.ascontiguousarray(x[i : i + batch], np.float32)))
            if isinstance(y, (tuple, list)):
                y = y[0]
            outs.append(y.float().cpu().numpy())
    return np.concatenate(outs)


def run_onnx(path: Path | str, x: Any, batch: int = 0, threads: int = 0) -> Any:
    """ONNX Runtime's (CPU) first output of the model at `path` on `x` (in chunks of
    `batch`; 0: one call; `threads` 0: ONNX Runtime's default), as float32 NumPy."""
    import numpy as np
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    batch = batch or max(1, len(x))
    outs = [
        session.run(None, {name: np.ascontiguousarray(x[i : i + batch], np.float32)})[0]
        for i in range(0, len(x), batch)
    ]
    return np.concatenate(outs).astype(np.float32)


def export_torch(
    module: Any,
    path: Path | str,
    channels: int,
    input_size: tuple[int, int],
    inputs: Any,
    *,
    output_name: str = "output",
    reference: str = "PyTorch",
    task: str = "classify",
    opset: int = ONNX_OPSET,
    batch: int = 0,
    threads: int = 0,
) -> tuple[Path, Agreement]:
    """The PyTorch → verified fp32 ONNX step of every export path: `torch_to_onnx`, then
    the module and ONNX Runtime on the same `inputs` (NCHW float32), compared within
    ``TOLERANCES["fp32"]`` (`VerificationError` beyond it). Returns the path and the
    `Agreement`."""
    path = torch_to_onnx(module, path, channels, input_size, opset=opset, output_name=output_name)
    result = verify(
        run_torch(module, inputs, batch),
        run_onnx(path, inputs, batch, threads),
        reference,
        "onnxruntime-cpu",
        task=task,
        what="ONNX export",
    )
    return path, result


def torch_to_onnx(
    module: Any,
    path: Path | str,
    channels: int,
    input_size: tuple[int, int],
    opset: int = ONNX_OPSET,
    half: bool = False,
    device: str = "cpu",
    output_name: str = "output",
) -> Path:
    """Export `module` to ONNX with a dynamic batch axis (input ``input``, output
    `output_name`), with the TorchScript exporter (no onnxscript needed)."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.to(device).eval()
    dtype = torch.float16 if half else torch.float32
    if half:
        module = module.half()
    dummy = torch.zeros(1, channels, *input_size, dtype=dtype, device=device)
    # Not under no_grad: there nn.MultiheadAttention (ViT) takes its fused fast path,
    # which has no ONNX export.
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of the dynamo one, which would
        # pull in onnxscript; these graphs export fine with it.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            (dummy,),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["input"],
            output_names=[output_name],
            dynamic_axes={"input": {0: "batch"}, output_name: {0: "batch"}},
            do_constant_folding=True,
        )
    onnx.checker.check_model(str(path))
    return path


def make_batch_dynamic(src: Path, dst: Path) -> Path:
    """Copy an ONNX model with the first axis of every graph input and output renamed to
    the symbolic ``batch`` (for bundles without PyTorch weights)."""
    import onnx

    model = onnx.load(str(src))
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "batch"
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


def simplify_onnx(path: Path) -> str:
    """Simplify in place with onnxslim or onnxsim when installed; otherwise run onnx's
    shape inference and checker only. Returns what was done (goes in the metadata)."""
    import onnx

    try:
        import onnxslim

        onnx.save(onnxslim.slim(str(path)), str(path))
        return f"onnxslim {getattr(onnxslim, '__version__', '')}".strip()
    except ImportError:
        pass
    except Exception as exc:  # a simplifier bug must not lose the export
        log.warning("onnxslim failed (%s); keeping the unsimplified model", exc)
    try:
        import onnxsim

        model, ok = onnxsim.simplify(onnx.load(str(path)))
        if ok:
            onnx.save(model, str(path))
            return f"onnxsim {getattr(onnxsim, '__version__', '')}".strip()
        log.warning("onnxsim could not validate its simplification; keeping the original")
    except ImportError:
        pass
    except Exception as exc:
        log.warning("onnxsim failed (%s); keeping the unsimplified model", exc)
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return (
        f"onnx {onnx.__version__} shape inference + checker only (onnxslim/onnxsim not "
        "installed; torch's constant folding ran at export)"
    )
