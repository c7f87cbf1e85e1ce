"""`intervue export`: bundle → ONNX (dynamic batch) → ONNX Runtime agrees with PyTorch;
metadata survives; label order is never assumed; TensorRT's path checked by structure
(the real build is in the gpu-marked test, skipped without a GPU + tensorrt)."""

from __future__ import annotations

import json
import types
import warnings

import cv2
import numpy as np
import pytest

from inference.bundle import BundleMeta, Preprocess, load_bundle, save_bundle
from inference.emotion import EmotionClassifier
from inference.export import (
    EXPORT_FORMATS,
    ExportError,
    build_engine,
    calibration_images,
    export,
    export_table,
    sample_inputs,
)
from inference.labels import ALPHABETICAL_LABELS, ORIGINAL_DETECTION_LABELS
from inference.pipeline import VisionPipeline
from inference.prepare import FER_BUNDLE_NAME
from stream.contract import EMOTIONS
from tests._models import astronaut_frame, jpeg


@pytest.fixture(scope="module")
def fer_export(models_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("exported")
    return export(models_dir / f"{FER_BUNDLE_NAME}.json", "onnx", batch=16, output_dir=out)


def test_format_table_is_declared():
    assert [f.format for f in EXPORT_FORMATS] == ["onnx", "engine"]
    engine = EXPORT_FORMATS[1]
    assert engine.gpu and "tensorrt" in engine.requires and "int8" in engine.args
    assert "| TensorRT | engine | .engine |" in export_table()


def test_fer_onnx_round_trip_agrees_with_torch(fer_export, capsys):
    a = fer_export.agreement
    assert a.reference.startswith("PyTorch (fer_port rebuild")
    assert a.candidate == "onnxruntime-cpu"
    assert a.n == 64
    assert a.top1 >= 0.99
    assert a.max_abs_error < 1e-4, a.max_abs_error  # stated: ~1e-6 here
    print(f"\nFER export: {a.line()}")
    assert "top-1" in fer_export.summary() and "max abs error" in fer_export.summary()


def test_onnx_has_a_dynamic_batch_axis(fer_export):
    import onnxruntime as ort

    session = ort.InferenceSession(str(fer_export.path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape[0] == "batch"
    name = session.get_inputs()[0].name
    for n in (1, 5, 33):
        x = sample_inputs(fer_export.bundle.meta, n, seed=n)
        assert session.run(None, {name: x})[0].shape == (n, 7)


def test_metadata_survives_the_export(fer_export, models_dir):
    src = load_bundle(models_dir / f"{FER_BUNDLE_NAME}.json").meta
    out = load_bundle(fer_export.sidecar)  # sha256 verified
    meta = out.meta
    assert meta.name == f"{FER_BUNDLE_NAME}-onnx-fp32" and meta.format == "onnx"
    for key in ("task", "labels", "label_map", "input_size", "channels", "color", "layout"):
        assert getattr(meta, key) == getattr(src, key), key
    assert meta.preprocess == src.preprocess
    assert meta.source == src.source
    info = meta.extra["export"]
    assert info["source_name"] == FER_BUNDLE_NAME
    assert info["source_sha256"] == src.sha256
    assert info["precision"] == "fp32"
    assert info["batch"] == {"min": 1, "opt": 8, "max": 16, "dynamic": True}
    # onnxslim is in the models extra: the export is simplified, not only checked
    assert info["simplifier"].startswith("onnxslim"), info["simplifier"]
    assert info["verification"]["top1"] >= 0.99
    # and the raw JSON on disk says the same (the sidecar is the metadata)
    raw = json.loads(fer_export.sidecar.read_text())
    assert raw["extra"]["export"]["source_bundle"].endswith(f"{FER_BUNDLE_NAME}.json")


def test_the_worker_runs_the_exported_bundle_like_the_source(fer_export, models_dir):
    frame, _ = astronaut_frame(face_width=150, centre=(300, 210))
    data = jpeg(frame)
    source = VisionPipeline.load(models_dir, backend="onnxruntime").analyse_jpeg(data)
    exported = VisionPipeline.load(
        models_dir, classifier=str(fer_export.sidecar), backend="onnxruntime"
    ).analyse_jpeg(data)
    assert len(source.faces) == len(exported.faces) == 1
    a, b = source.faces[0].probs, exported.faces[0].probs
    assert max(abs(a[k] - b[k]) for k in EMOTIONS) < 1e-4
    assert exported.faces[0].label == "happy"


# ------------------------------------------------------------------ label order


def _tiny_classifier(seed: int = 0):
    import torch

    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(8, 7),
        torch.nn.Softmax(dim=1),
    ).eval()


def _torch_bundle(module, labels, directory, name, label_map=None):
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated, still works
        scripted = torch.jit.trace(module, torch.zeros(1, 3, 32, 32))
    path = directory / f"{name}.pt"
    scripted.save(str(path))
    meta = BundleMeta(
        name=name,
        task="classify",
        format="torch",
        labels=tuple(labels),
        label_map=dict(label_map or {}),
        input_size=(32, 32),
        channels=3,
        color="rgb",
        preprocess=Preprocess(mean=(0.5,), std=(0.25,), resize="stretch"),
        license="test",
        extra={"torch": {"kind": "torchscript"}},
    )
    return save_bundle(meta, path, directory)


def test_a_bundle_with_another_label_order_maps_to_the_same_classes(tmp_path):
    import torch

    module = _tiny_classifier()
    labels = list(ORIGINAL_DETECTION_LABELS)  # anger, normal, happy, …
    perm = [labels.index(name) for name in ALPHABETICAL_LABELS]
    permuted = _tiny_classifier()
    with torch.no_grad():  # the same network with its output rows in alphabetical order
        permuted[4].weight.copy_(module[4].weight[perm])
        permuted[4].bias.copy_(module[4].bias[perm])
    fer_names = {"anger": "angry", "normal": "neutral", "pain": "disgust"}
    renamed = [fer_names.get(n, n) for n in labels]  # labels needing a label map
    bundles = {
        "original": _torch_bundle(module, labels, tmp_path / "a", "tiny-original"),
        "alphabetical": _torch_bundle(permuted, ALPHABETICAL_LABELS, tmp_path / "b", "tiny-alpha"),
        "renamed": _torch_bundle(
            module,
            renamed,
            tmp_path / "c",
            "tiny-renamed",
            label_map={v: k for k, v in fer_names.items()},
        ),
    }
    rng = np.random.default_rng(3)
    crops = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(12)]
    results = {}
    for key, bundle in bundles.items():
        exported = export(bundle.meta_path, "onnx", batch=8)
        assert exported.agreement.top1 >= 0.99 and exported.agreement.max_abs_error < 1e-4
        assert exported.bundle.meta.labels == bundle.meta.labels
        assert exported.bundle.meta.label_map == bundle.meta.label_map
        clf = EmotionClassifier(exported.bundle, backend="onnxruntime")
        results[key] = clf.classify_crops(crops)
        raw = clf.predict_raw(crops)
        results[key + "-raw"] = raw
    assert not np.allclose(results["original-raw"], results["alphabetical-raw"])  # other order
    for key in ("alphabetical", "renamed"):
        for a, b in zip(results["original"], results[key], strict=True):
            assert max(abs(a[k] - b[k]) for k in EMOTIONS) < 1e-5, key


def test_an_onnx_only_bundle_is_verified_against_its_source_onnx(tmp_path, fer_export):
    # a bundle with no way back to PyTorch (its source says nothing the code can rebuild)
    src = fer_export.bundle
    data = src.meta.to_dict()
    data["source"] = {"package": "somewhere-else"}
    data["extra"] = {}
    data["name"] = "onnx-only"
    meta = BundleMeta.from_dict(data)
    bundle = save_bundle(meta, src.weights_path, tmp_path)
    result = export(bundle.meta_path, "onnx", batch=4, name="onnx-only-dyn")
    assert "source ONNX" in result.agreement.reference
    assert result.agreement.max_abs_error == 0.0 or result.agreement.max_abs_error < 1e-5
    assert any("no PyTorch reference" in n for n in result.notes)
    with pytest.raises(ExportError, match="imgsz"):
        export(bundle.meta_path, "onnx", imgsz=96, name="nope")


def test_bad_requests_are_refused_clearly(models_dir):
    bundle = models_dir / f"{FER_BUNDLE_NAME}.json"
    with pytest.raises(ExportError, match="--int8 needs --calib DIR"):
        export(bundle, "onnx", int8=True)
    with pytest.raises(ExportError, match="--int8 and --half together apply to TensorRT"):
        export(bundle, "onnx", int8=True, half=True)
    with pytest.raises(ExportError, match="unknown export format"):
        export(bundle, "tflite")
    with pytest.raises(ExportError, match="--half ONNX export"):
        export(bundle, "onnx", half=True)


def test_engine_export_without_gpu_says_why(models_dir):
    from inference.backends import available_backends

    if available_backends()["tensorrt"] is None:
        pytest.skip(
            "checks the refusal when TensorRT/GPU are absent; this machine can build engines"
        )
    with pytest.raises(ExportError, match="needs an NVIDIA GPU and the tensorrt package"):
        export(models_dir / f"{FER_BUNDLE_NAME}.json", "engine", half=True)


def test_calibration_images_use_the_bundles_preprocessing(tmp_path, fer_export):
    folder = tmp_path / "calib" / "sub"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 256, (80, 60, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    x = calibration_images(tmp_path / "calib", fer_export.bundle.meta)
    assert x.shape == (5, 1, 64, 64) and x.dtype == np.float32
    assert -1.0 <= x.min() and x.max() <= 1.0  # (x/255 - 0.5) / 0.5
    with pytest.raises(ExportError, match="no readable images"):
        calibration_images(tmp_path / "calib" / "sub" / "..", fer_export.bundle.meta, limit=0)


def test_int8_qdq_onnx_export_on_the_cpu(models_dir, tmp_path, capsys):
    # calibration images: real face crops at a few sizes and positions, as a team would
    # collect them from its own rooms
    folder = tmp_path / "faces"
    folder.mkdir()
    for i in range(24):
        frame, box = astronaut_frame(face_width=90 + 5 * i, centre=(260 + 4 * i, 200 + 2 * i))
        x0, y0, x1, y1 = (int(v) for v in box)
        cv2.imwrite(str(folder / f"{i}.png"), frame[y0:y1, x0:x1])
    result = export(
        models_dir / f"{FER_BUNDLE_NAME}.json",
        "onnx",
        int8=True,
        calib_dir=folder,
        batch=16,
        output_dir=tmp_path / "out",
    )
    print(f"\nFER int8 Q/DQ export: {result.agreement.line()}")
    assert result.precision == "int8" and result.bundle.meta.name.endswith("-onnx-int8")
    assert result.agreement.candidate == "onnxruntime-cpu (int8 Q/DQ)"
    assert result.agreement.top1 >= 0.80  # the int8 tolerance; printed above
    info = result.bundle.meta.extra["export"]
    assert info["precision"] == "int8" and info["quantization"]["images"] == 24
    assert info["verified_on"] == "calibration images"
    assert info["quantization"]["quantize_nodes"] > 10
    import onnx

    ops = {n.op_type for n in onnx.load(str(result.bundle.weights_path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    # the worker runs it when it is the bundle asked for
    frame, _ = astronaut_frame(face_width=150, centre=(300, 210))
    analysis = VisionPipeline.load(
        models_dir, classifier=str(result.bundle.meta_path), backend="onnxruntime"
    ).analyse_jpeg(jpeg(frame))
    assert len(analysis.faces) == 1 and analysis.faces[0].label in EMOTIONS


# ------------------------------------------------------------------ TensorRT by structure


class _FakeTrt:
    """The slice of the tensorrt API that `build_engine` uses, recording the calls."""

    def __init__(self, parse_ok: bool = True, version: str = "10.16.1.11") -> None:
        calls: dict = {"flags": [], "profile": None, "workspace": None, "calib_batches": 0}
        self.calls = calls
        self.__version__ = version
        major = int(version.split(".")[0])
        self.Logger = type("Logger", (), {"WARNING": 2, "__init__": lambda s, level: None})
        # as the real modules (checked against the 10.16 and 11.4 bindings): EXPLICIT_BATCH
        # exists (ignored) up to 10, the precision flags and the implicit INT8 calibrator
        # up to 10 (deprecated there), none of them in 11
        self.NetworkDefinitionCreationFlag = types.SimpleNamespace(
            **({"EXPLICIT_BATCH": 0} if major <= 10 else {})
        )
        self.MemoryPoolType = types.SimpleNamespace(WORKSPACE="workspace")
        self.BuilderFlag = types.SimpleNamespace(
            **({"FP16": "fp16", "INT8": "int8"} if major <= 10 else {})
        )
        if major <= 10:
            self.IInt8EntropyCalibrator2 = type("IInt8EntropyCalibrator2", (), {})

        class Profile:
            def set_shape(self, name, lo, opt, hi):
                calls["profile"] = (name, lo, opt, hi)

        class Config:
            int8_calibrator = None

            def set_memory_pool_limit(self, pool, size):
                calls["workspace"] = (pool, size)

            def set_flag(self, flag):
                calls["flags"].append(flag)

            def add_optimization_profile(self, profile):
                calls["profiles_added"] = calls.get("profiles_added", 0) + 1

        class Network:
            def get_input(self, i):
                return types.SimpleNamespace(name="input")

        class Builder:
            def __init__(self, logger):
                pass

            def create_network(self, flags):
                calls["network_flags"] = flags
                return Network()

            def create_builder_config(self):
                return Config()

            def create_optimization_profile(self):
                return Profile()

            def build_serialized_network(self, network, config):
                cal = config.int8_calibrator
                if cal is not None:  # what TensorRT does with a calibrator
                    if cal.read_calibration_cache() is None:
                        while cal.get_batch(["input"]) is not None:
                            calls["calib_batches"] += 1
                        cal.write_calibration_cache(b"calibration-table")
                return b"serialized-engine"

        class Parser:
            num_errors = 0 if parse_ok else 1

            def __init__(self, network, logger):
                pass

            def parse(self, data):
                calls["onnx_bytes"] = len(data)
                return parse_ok

            def get_error(self, i):
                return "unsupported op"

        if major <= 10:  # removed in 11
            Builder.platform_has_fast_fp16 = True
            Builder.platform_has_fast_int8 = True
        self.Builder = Builder
        self.OnnxParser = Parser


def test_tensorrt_build_structure_fp16(tmp_path, fer_export):
    trt = _FakeTrt()
    facts = build_engine(
        fer_export.path,
        tmp_path / "e.engine",
        (1, 64, 64),
        (1, 16, 32),
        half=True,
        workspace_gb=2.0,
        trt=trt,
    )
    assert (tmp_path / "e.engine").read_bytes() == b"serialized-engine"
    assert trt.calls["profile"] == ("input", (1, 1, 64, 64), (16, 1, 64, 64), (32, 1, 64, 64))
    assert trt.calls["flags"] == ["fp16"]
    assert trt.calls["workspace"] == ("workspace", 2 * (1 << 30))
    assert trt.calls["network_flags"] == 0  # explicit batch is the default since TRT 10
    assert facts["precision"] == "fp16" and facts["profile"] == {"min": 1, "opt": 16, "max": 32}


def _build(fer_export, engine, trt, **kwargs):
    """`build_engine` of the exported FER ONNX (1×64×64, profile 1/4/8) with a stand-in."""
    return build_engine(fer_export.path, engine, (1, 64, 64), (1, 4, 8), trt=trt, **kwargs)


def test_tensorrt_build_structure_int8_with_calibration_cache(tmp_path, fer_export):
    calib = sample_inputs(fer_export.bundle.meta, 20)
    cache = tmp_path / "calib.cache"
    int8 = {"int8": True, "calib": calib, "calib_cache": cache, "calib_device": "cpu"}
    trt = _FakeTrt()
    facts = _build(fer_export, tmp_path / "i.engine", trt, **int8)
    assert facts["precision"] == "int8" and "int8" in trt.calls["flags"]
    assert trt.calls["calib_batches"] == 2  # 20 images in batches of 8 (the profile max)
    assert cache.read_bytes() == b"calibration-table"
    trt2 = _FakeTrt()  # a second build reads the cache instead of calibrating again
    _build(fer_export, tmp_path / "j.engine", trt2, **int8)
    assert trt2.calls["calib_batches"] == 0
    with pytest.raises(ExportError, match="calibration images"):
        _build(fer_export, tmp_path / "k.engine", _FakeTrt(), int8=True)
    with pytest.raises(ExportError, match="ONNX parser failed: unsupported op"):
        _build(fer_export, tmp_path / "l.engine", _FakeTrt(parse_ok=False))


def test_tensorrt_build_structure_across_versions(tmp_path, fer_export):
    def build(trt, **kwargs):
        return _build(fer_export, tmp_path / "v.engine", trt, **kwargs)

    old = _FakeTrt(version="8.6.1")  # explicit batch had to be asked for
    assert build(old)["typing"] == "weak"
    assert old.calls["network_flags"] == 1
    # TensorRT 11: strongly typed. fp16 comes from the ONNX's own types, so no flag is
    # set (there is none); implicit INT8 calibration is gone and is refused clearly.
    new = _FakeTrt(version="11.4.0.106")
    facts = build(new, half=True)
    assert facts["precision"] == "fp16" and facts["typing"] == "strong"
    assert new.calls["flags"] == [] and new.calls["network_flags"] == 0
    # ... but it builds INT8 from an explicitly quantized (Q/DQ) ONNX, with no flag
    facts = build(_FakeTrt(version="11.4.0.106"), int8=True, explicit_int8=True)
    assert facts["precision"] == "int8" and facts["typing"] == "strong"
    weak = _FakeTrt()  # 10.x takes the same Q/DQ ONNX with its INT8 flag on
    assert build(weak, int8=True, explicit_int8=True)["precision"] == "int8"
    assert weak.calls["flags"] == ["int8"] and weak.calls["calib_batches"] == 0
    with pytest.raises(ExportError, match=r"no implicit INT8 calibration.*Q/DQ"):
        build(
            _FakeTrt(version="11.4.0.106"),
            int8=True,
            calib=sample_inputs(fer_export.bundle.meta, 8),
            calib_device="cpu",
        )


def _gpu_skip_reason() -> str | None:
    from inference.backends.base import torch_cuda_reason
    from inference.backends.tensorrt_backend import tensorrt_reason

    return torch_cuda_reason() or tensorrt_reason()


@pytest.mark.gpu
def test_real_tensorrt_engine_export_and_run(models_dir, tmp_path):
    reason = _gpu_skip_reason()
    if reason:
        pytest.skip(f"TensorRT engine export needs a GPU and tensorrt: {reason}")
    from inference.backends import create_backend

    result = export(
        models_dir / f"{FER_BUNDLE_NAME}.json", "engine", half=True, batch=64, output_dir=tmp_path
    )
    assert result.agreement.top1 >= 0.97
    info = result.bundle.meta.extra["export"]
    assert info["tensorrt_version"] and info["gpu_name"] and info["compute_capability"]
    backend = create_backend("tensorrt", result.bundle, strict=True)
    x = sample_inputs(result.bundle.meta, 100)
    assert backend.infer(x).shape == (100, 7)  # above the profile max: split in two calls
