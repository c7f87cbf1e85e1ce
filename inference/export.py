"""``intervue export``: a model bundle → ONNX (dynamic batch) or a TensorRT engine.

Formats are declared in one table (`EXPORT_FORMATS`, like ultralytics' exporter): what
each needs, whether it needs a GPU, which arguments apply. Every export

1. finds the PyTorch module the bundle came from (`load_torch_module`: a ``torch``
   bundle, a ``.pt`` companion written by ``intervue models import``, the FER rebuild);
   with none, an ONNX bundle itself is the reference (run by ONNX Runtime on the CPU) and
   the export says so;
2. writes ONNX (opset 17, TorchScript exporter, dynamic batch axis named ``batch``),
   simplified with onnxslim or onnxsim when one is installed, otherwise only checked and
   shape-inferred with onnx's own tools (recorded in the metadata as ``simplifier``);
3. for ``engine``: builds a serialized TensorRT engine from that ONNX with the
   ``tensorrt`` Python API (builder + ONNX parser, one optimisation profile with
   min/opt/max batch, fp16, int8, a workspace limit). INT8 on TensorRT ≤ 10: an entropy
   calibrator over an image folder with a calibration cache; on TensorRT 11+ (strongly
   typed, no implicit calibration): an explicitly quantized ONNX (`quantize_qdq`: Q/DQ
   nodes from ONNX Runtime's static quantizer, entropy calibration over the same images),
   which ``--format onnx --int8`` also writes on its own;
4. verifies the exported file against the reference on generated inputs (half noise,
   half smooth patterns, run through the bundle's own preprocessing) and prints the
   agreement: top-1 % and max abs error. An export that disagrees beyond `TOLERANCES`
   fails and writes nothing;
5. writes a bundle: the weights beside a JSON sidecar (`inference.bundle`; metadata is in
   the sidecar, not a header inside the weights file) with the source bundle's task,
   labels, input size and preprocessing, plus ``extra.export``: source bundle (name, path,
   sha256), precision, batch profile, opset, simplifier, the verification figures, and for
   engines the TensorRT version, GPU name and compute capability — engines only run on
   the TensorRT version and GPU architecture that built them, and the TensorRT backend
   refuses any other (`check_engine_compat`).

Output name: ``<source>-onnx-<precision>`` / ``<source>-trt-<precision>`` in the source
bundle's directory unless told otherwise, so the worker's ``--backend auto`` finds the
variants of a bundle beside it.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inference.backends import BackendUnavailable, load_torch_module
from inference.backends.base import export_info, torch_cuda_reason
from inference.backends.tensorrt_backend import gpu_facts, tensorrt_reason
from inference.bundle import Bundle, BundleError, BundleMeta, load_bundle, save_bundle
from inference.onnx_io import (
    ONNX_OPSET,
    TOLERANCES,
    Agreement,
    ExportError,
    check_agreement,
    compare_outputs,
    make_batch_dynamic,
    run_onnx,
    run_torch,
    simplify_onnx,
    torch_to_onnx,
)
from inference.preprocess import letterbox, letterbox_pad, to_color

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class ExportFormat:
    """One row of the export table (`EXPORT_FORMATS`)."""

    name: str
    format: str  # the --format value and the bundle's `format`
    suffix: str
    requires: tuple[str, ...]  # Python modules it imports
    gpu: bool  # needs an NVIDIA GPU
    args: tuple[str, ...]  # export() arguments that apply
    tag: str  # in the default output name: <source>-<tag>-<precision>
    precision: str  # without --half / --int8
    writer: Callable[[_Job], _Written]  # verified ONNX (in a temp dir) → this format's file


def export_table() -> str:
    """The format table as Markdown (``intervue export --help`` shows it)."""
    lines = [
        "| format | --format | suffix | needs | GPU | arguments | default precision |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in EXPORT_FORMATS:
        lines.append(
            f"| {f.name} | {f.format} | {f.suffix} | {', '.join(f.requires)} | "
            f"{'yes' if f.gpu else 'no'} | {', '.join(f.args)} | {f.precision} |"
        )
    return "\n".join(lines)


def _format(name: str) -> ExportFormat:
    for f in EXPORT_FORMATS:
        if f.format == name.lower():
            return f
    raise ExportError(
        f"unknown export format {name!r}; known: {[f.format for f in EXPORT_FORMATS]}"
    )


# ------------------------------------------------------------------------------ results


@dataclass
class ExportResult:
    """What `export` wrote and how well it agrees with its reference."""

    format: str
    bundle: Bundle
    precision: str
    agreement: Agreement
    simplifier: str
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.bundle.weights_path

    @property
    def sidecar(self) -> Path:
        return self.bundle.meta_path

    def summary(self) -> str:
        info = export_info(self.bundle)
        lines = [
            f"exported {info.get('source_name')} → {self.path} ({self.format}, {self.precision}, "
            f"batch {info.get('batch', {})}) in {self.seconds:.1f} s",
            f"metadata: {self.sidecar} (sidecar JSON)",
            self.agreement.line(),
            f"simplifier: {self.simplifier}",
        ]
        if self.format == "engine":
            lines.append(
                f"engine tied to TensorRT {info.get('tensorrt_version')} on "
                f"{info.get('gpu_name')} (compute capability {info.get('compute_capability')}): "
                "other TensorRT versions or GPU architectures refuse to load it"
            )
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {
            "format": self.format,
            "weights": str(self.path),
            "sidecar": str(self.sidecar),
            "precision": self.precision,
            "agreement": self.agreement.as_dict(),
            "simplifier": self.simplifier,
            "seconds": round(self.seconds, 3),
            "notes": list(self.notes),
            "export": export_info(self.bundle),
        }


# ------------------------------------------------------------------------------ inputs


def _generated_images(meta: BundleMeta, n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` uint8 images at the model's input size in the model's colour: half uniform
    noise, half smooth sinusoid patterns (noise alone barely moves a face model)."""
    rng = np.random.default_rng(seed)
    height, width = meta.input_size
    yy, xx = np.mgrid[0:height, 0:width]
    images = []
    for i in range(n):
        if i % 2 == 0:
            img = rng.integers(0, 256, size=(height, width, meta.channels), dtype=np.uint8)
        else:
            chans = []
            for _ in range(meta.channels):
                fx, fy, ph = rng.uniform(0.5, 4.0), rng.uniform(0.5, 4.0), rng.uniform(0, 6.3)
                wave = np.sin(2 * np.pi * (fx * xx / width + fy * yy / height) + ph)
                chans.append(127.5 + 127.5 * wave * rng.uniform(0.3, 1.0))
            img = np.clip(np.stack(chans, axis=-1), 0, 255).astype(np.uint8)
        images.append(img[:, :, 0] if meta.channels == 1 else img)
    return images


def normalise(meta: BundleMeta, images: list[np.ndarray]) -> np.ndarray:
    """Model-sized uint8 images (in the model's colour) → the float32 input batch."""
    from inference.emotion import CropPreprocessor

    return CropPreprocessor(meta).preprocess(images)


def sample_inputs(meta: BundleMeta, n: int = 64, seed: int = 0) -> np.ndarray:
    """Generated verification inputs, preprocessed exactly as the worker would."""
    return normalise(meta, _generated_images(meta, n, seed))


def calibration_images(calib_dir: Path | str, meta: BundleMeta, limit: int = 512) -> np.ndarray:
    """INT8 calibration inputs: every image under `calib_dir` (recursively, at most
    `limit`), made into model inputs the way the worker makes them — a classifier gets
    the whole image as its face crop (so give it face crops), a detector a letterboxed
    frame. Raises `ExportError` when the folder holds no readable image."""
    from inference.emotion import CropPreprocessor

    root = Path(calib_dir)
    if not root.is_dir():
        raise ExportError(f"calibration folder {root} does not exist")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)[:limit]
    pre = CropPreprocessor(meta)
    images = []
    for path in paths:
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            log.warning("calibration: skipped unreadable %s", path)
            continue
        if meta.task == "detect":
            boxed, _, _ = letterbox(img, meta.input_size, letterbox_pad(meta.extra))
            images.append(to_color(boxed, meta.color))
        else:
            images.append(pre.fit_image(img))
    if not images:
        raise ExportError(f"no readable images ({', '.join(IMAGE_SUFFIXES)}) in {root}")
    return pre.preprocess(images)


# ------------------------------------------------------------------------------ agreement


def agreement(
    meta: BundleMeta, reference: np.ndarray, candidate: np.ndarray, ref_name: str, cand_name: str
) -> Agreement:
    """`onnx_io.compare_outputs` with the bundle's task (a detector is compared by the
    class of the reference's best anchor)."""
    return compare_outputs(reference, candidate, ref_name, cand_name, task=meta.task)


# ------------------------------------------------------------------------------ INT8 Q/DQ

#: Ops given Q/DQ nodes: the compute-heavy ones. Quantizing every tensor breaks on models
#: whose padding tensors hold -inf (the FER port's "same" max-pooling), and TensorRT fuses
#: the rest around these.
QDQ_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")


def quantize_qdq(onnx_path: Path, out_path: Path, calib: np.ndarray) -> dict[str, Any]:
    """Explicit INT8 quantization: `onnx_path` with QuantizeLinear/DequantizeLinear pairs
    (symmetric int8, weights per channel, as TensorRT's explicit quantization requires)
    around `QDQ_OPS`, activation ranges from entropy calibration over `calib` (inputs
    preprocessed like the worker's). Runs on the CPU; returns what it did."""
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    if calib is None or not len(calib):
        raise ExportError("--int8 needs calibration images (--calib DIR)")
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    del session

    class Batches(CalibrationDataReader):
        # one image per run: the entropy calibrator stacks every run's tensors, so they
        # must all have the same shape (a short last batch would not)
        def __init__(self) -> None:
            self.chunks = iter(np.ascontiguousarray(calib[i : i + 1]) for i in range(len(calib)))

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.chunks, None)
            return None if chunk is None else {name: chunk}

    quantize_static(
        str(onnx_path),
        str(out_path),
        Batches(),
        quant_format=QuantFormat.QDQ,
        activation_type=QuantType.QInt8,
        weight_type=QuantType.QInt8,
        per_channel=True,
        calibrate_method=CalibrationMethod.Entropy,
        op_types_to_quantize=list(QDQ_OPS),
        extra_options={"ActivationSymmetric": True, "WeightSymmetric": True},
    )
    import onnx

    nodes = onnx.load(str(out_path)).graph.node
    quantized = sum(1 for n in nodes if n.op_type == "QuantizeLinear")
    if not quantized:
        raise ExportError(f"the model has none of {', '.join(QDQ_OPS)} to quantize")
    return {
        "method": "Q/DQ (onnxruntime static quantizer, entropy calibration)",
        "images": len(calib),
        "quantize_nodes": quantized,
        "ops": list(QDQ_OPS),
    }


# ------------------------------------------------------------------------------ TensorRT


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    input_shape: tuple[int, int, int],
    batch: tuple[int, int, int],
    half: bool = False,
    int8: bool = False,
    calib: np.ndarray | None = None,
    calib_cache: Path | None = None,
    workspace_gb: float = 4.0,
    trt: Any = None,
    calib_device: str = "cuda",
    explicit_int8: bool = False,
) -> dict[str, Any]:
    """Build and write a serialized TensorRT engine from `onnx_path`.

    `input_shape` is (C, H, W); `batch` the (min, opt, max) of the optimisation profile;
    `calib` the preprocessed INT8 calibration inputs (with `int8`), `calib_cache` where
    the calibration cache is read from / written to; `explicit_int8`: the ONNX already
    holds Q/DQ nodes (`quantize_qdq`), the only INT8 a strongly typed TensorRT (11+)
    builds. `trt` is the tensorrt module (given by tests to check the build's structure
    without a GPU). Returns build facts.
    """
    if trt is None:
        import tensorrt as trt
    typing_mode = tensorrt_typing(trt)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if _tensorrt_major(trt) < 10:  # explicit batch became the only mode (flag ignored) in 10
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError("TensorRT's ONNX parser failed: " + "; ".join(errors))
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * (1 << 30)))
    precision = "fp32"
    if half:
        precision = "fp16"
        if typing_mode == "weak":
            if not getattr(builder, "platform_has_fast_fp16", True):
                log.warning("this GPU has no fast fp16; building fp16 anyway")
            config.set_flag(trt.BuilderFlag.FP16)
        # strongly typed (TensorRT 11+): the layers run in the ONNX's own types, so the
        # caller hands in an fp16 ONNX (`export` traces the model in fp16 for this)
    calibrator = None
    if int8 and explicit_int8:
        precision = "int8"  # the Q/DQ nodes say where; the flag too where one exists
        if typing_mode == "weak":
            config.set_flag(trt.BuilderFlag.INT8)
    elif int8:
        if typing_mode != "weak":
            raise ExportError(
                f"TensorRT {getattr(trt, '__version__', '?')} has no implicit INT8 "
                "calibration (IInt8EntropyCalibrator2 and BuilderFlag.INT8 were removed in "
                "TensorRT 11; it takes only explicitly quantized Q/DQ ONNX): pass a Q/DQ "
                "ONNX (explicit_int8), or build with TensorRT 10 (tensorrt>=10,<11)"
            )
        if calib is None or not len(calib):
            raise ExportError("--int8 needs calibration images (--calib DIR)")
        if not getattr(builder, "platform_has_fast_int8", True):
            log.warning("this GPU has no fast int8; building int8 anyway")
        config.set_flag(trt.BuilderFlag.INT8)
        if half:  # let layers INT8 cannot take fall back to fp16, not fp32
            config.set_flag(trt.BuilderFlag.FP16)
        calibrator = make_calibrator(trt, calib, batch[2], calib_cache, calib_device)
        config.int8_calibrator = calibrator
        precision = "int8"
    profile = builder.create_optimization_profile()
    name = network.get_input(0).name
    c, h, w = input_shape
    profile.set_shape(name, (batch[0], c, h, w), (batch[1], c, h, w), (batch[2], c, h, w))
    config.add_optimization_profile(profile)
    if calibrator is not None and hasattr(config, "set_calibration_profile"):
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT could not build the engine (see its log above)")
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    engine_path.write_bytes(bytes(serialized))
    return {
        "precision": precision,
        "typing": typing_mode,
        "input": name,
        "profile": {"min": batch[0], "opt": batch[1], "max": batch[2]},
        "workspace_gb": workspace_gb,
    }


def _tensorrt_major(trt: Any) -> int:
    try:
        return int(str(trt.__version__).split(".")[0])
    except (AttributeError, ValueError):
        return 10


def tensorrt_typing(trt: Any) -> str:
    """ "weak" where precision is chosen by builder flags (TensorRT ≤ 10: FP16/INT8 flags,
    implicit INT8 calibration; deprecated in 10.x), "strong" where the network's own types
    decide (TensorRT 11 removed the flags and the calibrators)."""
    return "weak" if hasattr(trt.BuilderFlag, "FP16") else "strong"


def make_calibrator(
    trt: Any, calib: np.ndarray, batch: int, cache: Path | None, device: str = "cuda"
) -> Any:
    """An `IInt8EntropyCalibrator2` feeding `calib` (preprocessed inputs) in batches of
    `batch` from a torch buffer on `device` (CUDA for TensorRT); reads/writes the
    calibration cache at `cache`."""

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            super().__init__()
            import torch

            self.batch = max(1, min(batch, len(calib)))
            self.index = 0
            self.device_input = torch.empty(
                (self.batch, *calib.shape[1:]), dtype=torch.float32, device=device
            )

        def get_batch_size(self) -> int:
            return self.batch

        def get_batch(self, names: list[str]) -> list[int] | None:
            import torch

            if self.index + self.batch > len(calib):
                return None
            chunk = calib[self.index : self.index + self.batch]
            self.device_input.copy_(torch.from_numpy(np.ascontiguousarray(chunk)))
            self.index += self.batch
            return [int(self.device_input.data_ptr())]

        def read_calibration_cache(self) -> bytes | None:
            if cache is not None and Path(cache).is_file():
                log.info("int8: reusing calibration cache %s", cache)
                return Path(cache).read_bytes()
            return None

        def write_calibration_cache(self, data: Any) -> None:
            if cache is not None:
                Path(cache).write_bytes(bytes(data))
                log.info("int8: wrote calibration cache %s", cache)

    return EntropyCalibrator()


# ------------------------------------------------------------------------------ export


def _check_can_export(fmt: ExportFormat, half: bool, int8: bool) -> None:
    if int8 and half and fmt.format == "onnx":
        raise ExportError("--int8 and --half together apply to TensorRT engines only")
    if fmt.format == "onnx" and half:
        reason = torch_cuda_reason()
        if reason:
            raise ExportError(
                f"--half ONNX export traces the model in fp16 on a CUDA device, and there is "
                f"none here ({reason}); export fp32 ONNX, or an fp16 TensorRT engine on a GPU"
            )
    if fmt.format == "engine":
        reasons = [r for r in (tensorrt_reason(), torch_cuda_reason()) if r]
        if reasons:
            raise ExportError(
                "TensorRT export needs an NVIDIA GPU and the tensorrt package: "
                + "; ".join(reasons)
                + ". The ONNX export (--format onnx) is what TensorRT consumes; build the "
                "engine on the machine that will run it"
            )


def export(
    bundle_path: Path | str,
    format: str = "onnx",
    half: bool = False,
    int8: bool = False,
    calib_dir: Path | str | None = None,
    batch: int = 32,
    imgsz: int | None = None,
    *,
    output_dir: Path | str | None = None,
    name: str | None = None,
    workspace_gb: float = 4.0,
    calib_cache: Path | str | None = None,
    n_verify: int = 64,
    opset: int = ONNX_OPSET,
) -> ExportResult:
    """Export the bundle at `bundle_path` (see the module docstring) and return the
    result; raises `ExportError` when it cannot be done here or fails verification.

    `batch` is the largest batch the export is built for (the TensorRT profile's max; its
    opt is half of it; ONNX always has a dynamic batch); `imgsz` overrides the input size
    (square; needs the PyTorch weights)."""
    start = time.perf_counter()
    fmt = _format(format)
    if batch < 1:
        raise ExportError("--batch must be at least 1")
    _check_can_export(fmt, half, int8)
    src = load_bundle(bundle_path)
    meta = src.meta
    notes: list[str] = []
    input_size = (imgsz, imgsz) if imgsz else tuple(meta.input_size)
    if meta.task == "detect" and (input_size[0] % 32 or input_size[1] % 32):
        raise ExportError(f"a YOLOv8 detector's input size must be a multiple of 32: {input_size}")
    try:
        module, origin = load_torch_module(src)
        reference = f"PyTorch ({origin})"
    except BackendUnavailable as exc:
        module = None
        if meta.format != "onnx":
            raise ExportError(f"no PyTorch weights and no ONNX to start from: {exc}") from exc
        if imgsz and tuple(input_size) != tuple(meta.input_size):
            raise ExportError(f"--imgsz needs the PyTorch weights, and {exc}") from exc
        reference = f"the source ONNX {meta.weights} (onnxruntime-cpu)"
        notes.append(f"no PyTorch reference ({exc}); verified against the source ONNX")
    precision = "int8" if int8 else ("fp16" if half else fmt.precision)
    out_dir = Path(output_dir) if output_dir else src.directory
    root_name = str(export_info(src).get("source_name") or meta.name)
    stem = name or f"{root_name}-{fmt.tag}-{precision}"
    new_meta_fields: dict[str, Any] = {"input_size": tuple(input_size)}
    verify_meta = dataclasses.replace(meta, **new_meta_fields)
    calib = None
    if int8:
        if calib_dir is None:
            raise ExportError("--int8 needs --calib DIR (a folder of images)")
        calib = calibration_images(calib_dir, verify_meta)
    # fp32/fp16 are checked on generated inputs (noise and patterns: every path through the
    # network); int8 on real images, the calibration folder's, since its ranges are fitted
    # to such inputs (on noise the FER model's int8 agrees ~80 %, on faces ~100 %)
    x = calib[:128] if calib is not None else sample_inputs(verify_meta, n_verify)
    # fp16 in the ONNX itself: asked for (--format onnx --half), or what a strongly typed
    # TensorRT (11+) needs to build an fp16 engine
    half_onnx = half and (fmt.format == "onnx" or _strongly_typed_tensorrt())
    # INT8 as Q/DQ nodes in the ONNX: asked for (--format onnx --int8), or the only INT8 a
    # strongly typed TensorRT (11+) builds
    qdq = int8 and (fmt.format == "onnx" or _strongly_typed_tensorrt())
    if half_onnx and module is None:
        raise ExportError(
            "an fp16 engine on this TensorRT needs an fp16 ONNX, traced from the PyTorch "
            "weights, and this bundle has none"
        )
    with tempfile.TemporaryDirectory(prefix="intervue-export-") as tmp:
        onnx_path = Path(tmp) / f"{stem}.onnx"
        if module is not None:
            torch_to_onnx(
                module,
                onnx_path,
                meta.channels,
                input_size,
                opset=opset,
                half=half_onnx,
                device="cuda" if half_onnx else "cpu",
            )
            if half_onnx:
                module = module.float().cpu()
            ref_out = run_torch(module, x, batch)
        else:
            make_batch_dynamic(src.weights_path, onnx_path)
            ref_out = run_onnx(src.weights_path, x, 1)
        simplifier = simplify_onnx(onnx_path)
        facts: dict[str, Any] = {}
        if qdq:
            float_onnx, onnx_path = onnx_path, Path(tmp) / f"{stem}.qdq.onnx"
            facts["quantization"] = quantize_qdq(float_onnx, onnx_path, calib)
            if fmt.format == "engine":  # the Q/DQ model checked here, on the CPU, first
                qdq_check = agreement(
                    verify_meta, ref_out, run_onnx(onnx_path, x, batch), reference, "Q/DQ ONNX"
                )
                print(qdq_check.line(), flush=True)
                facts["quantization"]["onnx_top1"] = qdq_check.top1
        job = _Job(
            onnx_path=onnx_path,
            tmp=Path(tmp),
            stem=stem,
            out_dir=out_dir,
            meta=verify_meta,
            x=x,
            batch=batch,
            half=half,
            int8=int8,
            qdq=qdq,
            calib=calib,
            calib_dir=calib_dir,
            calib_cache=Path(calib_cache) if calib_cache else None,
            workspace_gb=workspace_gb,
            facts=facts,
        )
        written = fmt.writer(job)
        result = agreement(verify_meta, ref_out, written.output, reference, written.candidate)
        print(result.line(), flush=True)
        check_agreement(result, precision, what=f"{fmt.name} export")
        extra = {k: v for k, v in meta.extra.items() if k not in ("export", "torch")}
        if "torch" in meta.extra and out_dir.resolve() == src.directory.resolve():
            extra["torch"] = meta.extra["torch"]  # the companion file is beside it
        import onnx

        try:
            import torch

            torch_version = torch.__version__
        except ImportError:
            torch_version = None
        extra["export"] = {
            "format": fmt.format,
            "verified_on": "calibration images" if calib is not None else "generated inputs",
            "source_name": root_name,
            "source_bundle": str(src.meta_path.resolve()),
            "source_sha256": meta.sha256,
            "source_format": meta.format,
            "precision": precision,
            "batch": written.profile,
            "opset": opset,
            "simplifier": simplifier,
            "reference": reference,
            "verification": result.as_dict(),
            "onnx_version": onnx.__version__,
            "torch_version": torch_version,
            **written.facts,
        }
        new_meta = dataclasses.replace(
            meta,
            name=stem,
            format=fmt.format,
            input_size=tuple(input_size),
            extra=extra,
            weights="",
            sha256="",
            card=None,
        )
        bundle = save_bundle(new_meta, written.weights, out_dir, card=src.card_path)
    return ExportResult(
        format=fmt.format,
        bundle=bundle,
        precision=precision,
        agreement=result,
        simplifier=simplifier,
        seconds=time.perf_counter() - start,
        notes=notes,
    )


# ------------------------------------------------------------------------------ writers


@dataclass
class _Job:
    """What a format's writer works on: the verified-to-be ONNX in a temporary folder and
    everything `export` was asked for."""

    onnx_path: Path
    tmp: Path
    stem: str
    out_dir: Path
    meta: BundleMeta  # the source's, at the export's input size
    x: np.ndarray  # the verification inputs
    batch: int
    half: bool
    int8: bool
    qdq: bool  # the ONNX holds Q/DQ nodes (int8)
    calib: np.ndarray | None
    calib_dir: Path | str | None
    calib_cache: Path | None
    workspace_gb: float
    facts: dict[str, Any]  # what was done so far (quantization), for extra.export


@dataclass
class _Written:
    """A writer's file, its output on the job's inputs and the facts for extra.export."""

    weights: Path
    output: np.ndarray
    candidate: str  # what ran it
    profile: dict[str, Any]  # the batch profile
    facts: dict[str, Any]


def _write_onnx(job: _Job) -> _Written:
    """The ONNX itself (fp32, fp16 or Q/DQ int8), run by ONNX Runtime."""
    x, batch = job.x, job.batch
    if job.half:
        import onnxruntime as ort

        x_run = x.astype(np.float16)
        providers = [
            p
            for p in ("CUDAExecutionProvider", "CPUExecutionProvider")
            if p in ort.get_available_providers()
        ]
        sess = ort.InferenceSession(str(job.onnx_path), providers=providers)
        in_name = sess.get_inputs()[0].name
        output = np.concatenate(
            [
                sess.run(None, {in_name: x_run[i : i + batch]})[0]
                for i in range(0, len(x_run), batch)
            ]
        ).astype(np.float32)
    else:
        output = run_onnx(job.onnx_path, x, batch)
    candidate = "onnxruntime (fp16)" if job.half else "onnxruntime-cpu"
    if job.qdq:
        candidate = "onnxruntime-cpu (int8 Q/DQ)"
    profile = {"min": 1, "opt": max(1, batch // 2), "max": batch, "dynamic": True}
    return _Written(job.onnx_path, output, candidate, profile, job.facts)


def _write_engine(job: _Job) -> _Written:
    """A serialized TensorRT engine built from the ONNX, run by the TensorRT backend."""
    import tensorrt as trt

    weights = job.tmp / f"{job.stem}.engine"
    cache = job.calib_cache
    if job.int8 and not job.qdq:
        cache = cache or job.out_dir / f"{job.stem}.calib"
    opt = max(1, job.batch // 2)
    facts = build_engine(
        job.onnx_path,
        weights,
        (job.meta.channels, *job.meta.input_size),
        (1, opt, job.batch),
        half=job.half,
        int8=job.int8,
        calib=None if job.qdq else job.calib,
        calib_cache=cache,
        workspace_gb=job.workspace_gb,
        explicit_int8=job.qdq,
    )
    facts.update(gpu_facts(0), tensorrt_version=trt.__version__)
    if job.calib is not None and not job.qdq:
        facts["calibration"] = {
            "images": len(job.calib),
            "dir": str(job.calib_dir),
            "cache": str(cache) if cache else None,
        }
    output = _engine_run(weights, job.x, job.batch)
    profile = {"min": 1, "opt": opt, "max": job.batch, "dynamic": True}
    return _Written(weights, output, "tensorrt", profile, facts)


#: The export formats: the one table every export goes through (`export`, `export_table`,
#: ``intervue export --help``). The PyTorch → ONNX step before each writer is
#: `inference.onnx_io.torch_to_onnx`, the same one `models prepare`, `models import` and
#: training's bundles run (through `inference.onnx_io.export_torch`).
EXPORT_FORMATS: tuple[ExportFormat, ...] = (
    ExportFormat(
        "ONNX",
        "onnx",
        ".onnx",
        ("torch", "onnx"),
        False,
        ("half", "int8", "calib_dir", "batch", "imgsz"),
        tag="onnx",
        precision="fp32",
        writer=_write_onnx,
    ),
    ExportFormat(
        "TensorRT",
        "engine",
        ".engine",
        ("torch", "onnx", "tensorrt"),
        True,
        ("half", "int8", "calib_dir", "batch", "imgsz", "workspace_gb"),
        tag="trt",
        precision="fp32",
        writer=_write_engine,
    ),
)


def _strongly_typed_tensorrt() -> bool:
    """Whether the installed tensorrt (checked only for engine exports, which need it)
    takes precision from the ONNX's types rather than builder flags."""
    if tensorrt_reason() is not None:
        return False
    import tensorrt as trt

    return tensorrt_typing(trt) == "strong"


def _engine_run(engine_path: Path, x: np.ndarray, batch: int) -> np.ndarray:
    """Run a freshly built engine (not yet a bundle) through the TensorRT backend."""
    from inference.backends.config import TensorRTConfig
    from inference.backends.tensorrt_backend import TensorRTBackend

    backend = TensorRTBackend(TensorRTConfig(max_batch=batch))
    backend.load_engine_file(engine_path)
    try:
        return backend.infer(x)
    finally:
        backend.close()


__all__ = [
    "EXPORT_FORMATS",
    "TOLERANCES",
    "Agreement",
    "BundleError",
    "ExportError",
    "ExportFormat",
    "ExportResult",
    "build_engine",
    "calibration_images",
    "export",
    "export_table",
    "sample_inputs",
    "simplify_onnx",
    "torch_to_onnx",
]
