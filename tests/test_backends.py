"""Model backends: registry, discriminated config, `auto`, degrading with one log line,
torch vs ONNX Runtime agreement, TensorRT engine compatibility (by structure on CPU), and
gpu-marked tests for the CUDA paths that skip with the reason here."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from pydantic import ValidationError

from inference.backends import (
    AUTO_ORDER,
    BACKENDS,
    BackendUnavailable,
    EngineMismatchError,
    OnnxRuntimeConfig,
    TensorRTConfig,
    TorchConfig,
    available_backends,
    check_engine_compat,
    create_backend,
    find_variants,
    parse_backend,
    short_name,
)
from inference.backends.tensorrt_backend import TensorRTBackend
from inference.bundle import load_bundle
from inference.emotion import EmotionClassifier
from inference.export import sample_inputs
from inference.prepare import FER_BUNDLE_NAME
from tests._models import astronaut_frame


@pytest.fixture(scope="module")
def fer(models_dir):
    return load_bundle(models_dir / f"{FER_BUNDLE_NAME}.json")


def _backend_records(caplog):
    return [r for r in caplog.records if r.name.startswith("inference.backends")]


def test_registry_and_discriminated_config():
    assert set(BACKENDS) == {"tensorrt", "onnxruntime", "torch"}
    assert AUTO_ORDER[:4] == ("tensorrt", "onnxruntime-cuda", "torch-cuda", "onnxruntime-cpu")
    cfg = parse_backend({"kind": "torch", "device": "cuda", "half": False})
    assert isinstance(cfg, TorchConfig) and cfg.device == "cuda" and cfg.half is False
    assert isinstance(parse_backend("onnxruntime-cuda"), OnnxRuntimeConfig)
    assert isinstance(parse_backend("tensorrt"), TensorRTConfig)
    assert parse_backend("onnxruntime", threads=3).threads == 3
    assert short_name(parse_backend("torch-cuda")) == "torch-cuda"
    with pytest.raises(ValueError, match="unknown backend"):
        parse_backend("openvino")
    with pytest.raises(ValidationError):
        parse_backend({"kind": "onnxruntime", "device": "tpu"})
    with pytest.raises(ValidationError):
        parse_backend({"kind": "nope"})


def test_available_backends_say_why_not():
    reasons = available_backends()
    assert set(reasons) == set(AUTO_ORDER)
    assert reasons["onnxruntime-cpu"] is None
    assert reasons["torch-cpu"] is None
    for name, reason in reasons.items():
        assert reason is None or (isinstance(reason, str) and reason), name


def test_auto_picks_one_and_says_so_in_one_line(fer, caplog):
    caplog.set_level(logging.INFO, logger="inference.backends")
    backend = create_backend("auto", fer)
    records = _backend_records(caplog)
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert message.startswith(f"backend auto → {backend.label} for {FER_BUNDLE_NAME}")
    if available_backends()["tensorrt"] is not None:
        assert "tensorrt:" in message  # why the faster one was skipped


def test_a_missing_runtime_degrades_with_one_line(fer, caplog):
    reason = available_backends()["tensorrt"]
    if reason is None:
        pytest.skip(
            "checks the fallback when TensorRT is absent; this machine has a working TensorRT"
        )
    caplog.set_level(logging.INFO, logger="inference.backends")
    backend = create_backend("tensorrt", fer)  # no crash
    records = _backend_records(caplog)
    assert len(records) == 1 and records[0].levelno == logging.WARNING
    assert "backend tensorrt unavailable" in records[0].getMessage()
    assert f"running {backend.label} instead" in records[0].getMessage()
    with pytest.raises(BackendUnavailable, match="tensorrt"):
        create_backend("tensorrt", fer, strict=True)
    with pytest.raises(BackendUnavailable):
        TensorRTBackend().load(fer)


@pytest.mark.parametrize("name", ["onnxruntime-cuda", "torch-cuda"])
def test_cuda_configs_degrade_on_a_cpu_machine(fer, caplog, name):
    if available_backends()[name] is None:
        pytest.skip(f"{name} runs on this machine (it has a GPU): nothing degrades")
    caplog.clear()
    caplog.set_level(logging.INFO, logger="inference.backends")
    backend = create_backend(name, fer)
    assert backend.device == "cpu" or backend.label == "tensorrt"
    assert len(_backend_records(caplog)) == 1


def test_torch_backend_agrees_with_onnxruntime(fer):
    ort = create_backend("onnxruntime", fer, strict=True)
    torch_backend = create_backend("torch", fer, strict=True)
    assert ort.label == "onnxruntime-cpu" and torch_backend.label == "torch-cpu"
    assert "fer_port" in torch_backend.details["origin"]
    x = sample_inputs(fer.meta, 24)
    a, b = ort.infer(x), torch_backend.infer(x)
    assert a.shape == b.shape == (24, 7) and a.dtype == np.float32
    assert np.max(np.abs(a - b)) < 1e-4
    assert np.array_equal(a.argmax(1), b.argmax(1))


def test_infer_splits_batches_above_max_batch(fer):
    backend = create_backend("onnxruntime", fer, strict=True, max_batch=4)
    assert backend.max_batch == 4
    x = sample_inputs(fer.meta, 10)
    whole = create_backend("onnxruntime", fer, strict=True).infer(x)
    assert np.allclose(backend.infer(x), whole, atol=1e-6)
    with pytest.raises(ValueError):
        backend.infer(np.zeros((0, 1, 64, 64), np.float32))


def test_classifier_runs_on_any_backend(fer):
    frame, truth = astronaut_frame(face_width=150, centre=(300, 210))
    for name in ("onnxruntime", "torch"):
        clf = EmotionClassifier(fer, backend=name)
        probs = clf.classify_faces(frame, [truth])[0]
        assert max(probs, key=probs.get) == "happy", name


def test_engine_compatibility_is_checked_from_the_metadata(caplog):
    built = {"tensorrt_version": "10.3.0", "gpu_name": "NVIDIA H100", "compute_capability": "9.0"}
    check_engine_compat(built, "10.3.0", "NVIDIA H100", "9.0")  # same: fine
    with pytest.raises(EngineMismatchError, match=r"TensorRT 10\.3\.0.*TensorRT 10\.5\.1"):
        check_engine_compat(built, "10.5.1", "NVIDIA H100", "9.0")
    with pytest.raises(EngineMismatchError, match=r"compute capability 9\.0.*8\.6"):
        check_engine_compat(built, "10.3.0", "NVIDIA RTX A6000", "8.6")
    with pytest.raises(EngineMismatchError, match="does not say"):
        check_engine_compat({}, "10.3.0", "NVIDIA H100", "9.0")
    caplog.set_level(logging.WARNING)
    check_engine_compat(built, "10.3.0", "NVIDIA H200", "9.0")  # same architecture: runs
    assert any("tuned for the other card" in r.getMessage() for r in caplog.records)


def test_variants_of_a_bundle_are_found_beside_it(tmp_path, fer):
    import shutil

    from inference.export import export

    for path in fer.directory.glob(f"{FER_BUNDLE_NAME}.*"):
        shutil.copy(path, tmp_path / path.name)
    local = load_bundle(tmp_path / f"{FER_BUNDLE_NAME}.json")
    exported = export(local.meta_path, "onnx", batch=8)
    onnx_variants = [b.meta.name for b in find_variants(local, "onnx")]
    assert onnx_variants == [FER_BUNDLE_NAME, exported.bundle.meta.name]
    assert find_variants(local, "engine") == []
    # from the exported bundle, the source is found as a variant too
    assert FER_BUNDLE_NAME in [b.meta.name for b in find_variants(exported.bundle, "onnx")]


# ------------------------------------------------------------------ GPU paths


def _skip_unless(name: str) -> None:
    reason = available_backends()[name]
    if reason:
        pytest.skip(f"{name} cannot run here: {reason}")


@pytest.mark.gpu
def test_torch_cuda_fp16_agrees_with_cpu(fer):
    _skip_unless("torch-cuda")
    cuda = create_backend("torch-cuda", fer, strict=True)
    assert cuda.device.startswith("cuda") and cuda.details["precision"] == "fp16"
    x = sample_inputs(fer.meta, 256)
    ref = create_backend("onnxruntime", fer, strict=True).infer(x)
    out = cuda.infer(x)
    assert np.max(np.abs(out - ref)) < 2e-2
    assert np.mean(out.argmax(1) == ref.argmax(1)) >= 0.97


@pytest.mark.gpu
def test_onnxruntime_cuda_agrees_with_cpu(fer):
    _skip_unless("onnxruntime-cuda")
    cuda = create_backend("onnxruntime-cuda", fer, strict=True)
    assert cuda.details["providers"][0] == "CUDAExecutionProvider"
    x = sample_inputs(fer.meta, 256)
    ref = create_backend("onnxruntime", fer, strict=True).infer(x)
    assert np.max(np.abs(cuda.infer(x) - ref)) < 1e-3


@pytest.mark.gpu
def test_tensorrt_backend_refuses_a_foreign_engine(fer, tmp_path):
    _skip_unless("tensorrt")
    import shutil

    from inference.export import export

    for path in fer.directory.glob(f"{FER_BUNDLE_NAME}.*"):
        shutil.copy(path, tmp_path / path.name)
    result = export(tmp_path / f"{FER_BUNDLE_NAME}.json", "engine", half=True, batch=32)
    sidecar = result.sidecar
    data = sidecar.read_text().replace(
        result.bundle.meta.extra["export"]["tensorrt_version"], "0.0.1"
    )
    sidecar.write_text(data)
    with pytest.raises(EngineMismatchError, match=r"TensorRT 0\.0\.1"):
        create_backend("tensorrt", load_bundle(sidecar), strict=True)


def test_frames_are_prepared_in_parallel_threads(models_dir):
    from concurrent.futures import ThreadPoolExecutor

    from deploy.bench.media import face_frames
    from inference.pipeline import VisionPipeline

    pipeline = VisionPipeline.load(models_dir, backend="onnxruntime")
    frames = face_frames(8)
    expected = [pipeline.analyse_jpeg(f).faces[0].box for f in frames]
    with ThreadPoolExecutor(3) as pool:
        prepared = list(pool.map(pipeline.prepare_jpeg, frames))
    assert all(p.size == 1 for p in prepared)
    rows = pipeline.infer(np.concatenate([p.inputs for p in prepared]))  # one batched call
    for i, p in enumerate(prepared):
        analysis = pipeline.finish(p, rows[i : i + 1], infer_ms=0.1)
        assert np.allclose(analysis.faces[0].box, expected[i])
        assert set(analysis.timings_ms) >= {"decode", "detect", "classify", "wait", "total"}


def test_vision_settings_choose_the_model_and_backend(monkeypatch):
    from inference.vision_worker import VisionSettings

    monkeypatch.setenv("INTERVUE_VISION_BACKEND", "torch")
    monkeypatch.setenv("INTERVUE_VISION_CLASSIFIER", "ydet")
    monkeypatch.setenv("INTERVUE_VISION_BATCH_WINDOW_MS", "0")
    settings = VisionSettings()
    assert (settings.backend, settings.classifier, settings.batch_window_ms) == ("torch", "ydet", 0)
    assert settings.batching is True and settings.max_batch == 32
    with pytest.raises(ValidationError):
        VisionSettings(backend="openvino")
    with pytest.raises(ValidationError):
        VisionSettings(batch_window_ms=500)
