"""The one image → model input definition (`inference.preprocess`) and the one export
verification (`inference.onnx_io`): runtime, exporter and training read the same rules."""

from __future__ import annotations

import numpy as np
import pytest

from inference.bundle import Preprocess
from inference.importer import ImportModelError
from inference.onnx_io import (
    Agreement,
    ExportError,
    VerificationError,
    check_agreement,
    export_torch,
)
from inference.preprocess import (
    YOLO_LETTERBOX_PAD,
    Normalizer,
    detect_extra,
    letterbox,
    resize,
    torchvision_classify_preprocess,
    ultralytics_classify_preprocess,
    ultralytics_detect_preprocess,
)
from training.bundles import classify_meta, detect_meta


def test_letterbox_keeps_aspect_and_reports_geometry() -> None:
    image = np.full((100, 200, 3), 7, np.uint8)
    out, scale, (left, top) = letterbox(image, (64, 64))
    assert out.shape == (64, 64, 3) and scale == pytest.approx(0.32)
    assert (left, top) == (0, 16)
    assert (out[0] == YOLO_LETTERBOX_PAD).all() and (out[32] == 7).all()


@pytest.mark.parametrize("mode", ["stretch", "letterbox", "center_crop"])
def test_resize_modes_give_the_input_size(mode: str) -> None:
    gray = np.arange(50 * 80, dtype=np.uint32).reshape(50, 80).astype(np.uint8)
    assert resize(gray, (32, 48), mode).shape == (32, 48)


def test_normalizer_is_the_sidecar_formula() -> None:
    pre = Preprocess(scale=1 / 255, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.5))
    images = [np.random.default_rng(i).integers(0, 256, (8, 6, 3), np.uint8) for i in range(3)]
    got = Normalizer(pre, 3)(images)
    want = (np.stack(images) / 255 - np.array(pre.mean)) / np.array(pre.std)
    assert got.shape == (3, 3, 8, 6) and got.dtype == np.float32
    np.testing.assert_allclose(got, want.transpose(0, 3, 1, 2), atol=1e-5)


def test_training_bundles_carry_the_shared_metadata() -> None:
    det = detect_meta("d", ["happy", "sad"], 64)
    assert det.preprocess == ultralytics_detect_preprocess()
    assert det.extra == detect_extra()
    cls = classify_meta(
        "c",
        ["happy", "sad"],
        (32, 32),
        preprocess=ultralytics_classify_preprocess(0.1, True),
        output="probabilities",
    )
    assert cls.preprocess.resize == "center_crop" and cls.preprocess.crop_margin == 0.1
    assert torchvision_classify_preprocess().mean == (0.485, 0.456, 0.406)


def test_one_error_type_and_one_tolerance() -> None:
    assert issubclass(ImportModelError, ExportError) and issubclass(ImportModelError, ValueError)
    good = Agreement(n=8, top1=1.0, max_abs_error=1e-6, reference="ref", candidate="cand")
    assert check_agreement(good) is good
    bad = Agreement(n=8, top1=1.0, max_abs_error=2e-3, reference="ref", candidate="cand")
    with pytest.raises(VerificationError, match=r"disagrees with ref.*allowed ≤ 0.001") as info:
        check_agreement(bad, "fp32", what="ONNX export")
    assert isinstance(info.value, ExportError) and info.value.agreement is bad
    assert check_agreement(bad, "fp16") is bad  # fp16's own row allows it
    nan = Agreement(n=8, top1=1.0, max_abs_error=float("nan"), reference="r", candidate="c")
    with pytest.raises(VerificationError):
        check_agreement(nan)


def test_export_torch_writes_and_verifies(tmp_path) -> None:
    import torch  # a pinned dependency: missing is a failure, not a skip

    module = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
    )
    x = np.random.default_rng(0).random((4, 3, 16, 16), dtype=np.float32)
    path, result = export_torch(module, tmp_path / "m.onnx", 3, (16, 16), x)
    assert path.is_file() and result.n == 4 and result.top1 == 1.0
    assert result.max_abs_error < 1e-4 and result.candidate == "onnxruntime-cpu"
