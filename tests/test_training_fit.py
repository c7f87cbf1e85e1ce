"""Training each of the six model families on the toy set (CPU, tiny inputs), the bundles
they write, evaluation and comparison outputs, resume, fine-tuning from local weights.

Every run builds its model from its yaml / torchvision definition: nothing is downloaded.
The heavy baselines (VGG16, ResNeXt-50, ViT-B/16) run a few batches of one epoch; YOLOv8-cls
and ResNet-50 train long enough to show that the toy classes are learnt.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

os.environ.setdefault("YOLO_OFFLINE", "1")  # before anything imports ultralytics

from inference.bundle import load_bundle
from inference.emotion import EmotionClassifier
from inference.labels import ORIGINAL_DETECTION_LABELS
from stream.contract import EMOTIONS
from tests._toy_dataset import make_toy_dataset
from training.cli import train_app
from training.dataset import DatasetError, load_image
from training.evaluate import classification_metrics
from training.fit import (
    FitConfig,
    FitError,
    build_torchvision,
    fit,
    read_run,
    resume_config,
)
from training.preprocess import preprocess

CHANCE = 1 / len(EMOTIONS)
EVAL_FILES = (
    "metrics.json",
    "metrics.md",
    "per_class.csv",
    "confusion_matrix.csv",
    "confusion_matrix.png",
    "predictions.csv",
    "curves.png",
)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fit-toy")
    toy = make_toy_dataset(root / "data", train_per_class=24, val_per_class=8)
    return preprocess(toy.root, root / "prepared", crop_size=48)


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp("runs")
    yield directory
    # pytest keeps the last runs' temp folders: leave no weights of 100+ MB behind
    for path in directory.rglob("*"):
        if path.suffix in (".pt", ".onnx") and path.stat().st_size > 10_000_000:
            path.unlink()


def _fit(prepared, runs_dir: Path, model: str, run_name: str | None = None, **kwargs):
    config = FitConfig(
        model=model,
        data=str(prepared.root),
        out=str(runs_dir / (run_name or model)),
        workers=0,
        progress=False,
        **kwargs,
    )
    return fit(config)


def _check_eval(run_dir: Path) -> dict:
    for name in EVAL_FILES:
        path = run_dir / "eval" / name
        assert path.is_file() and path.stat().st_size > 0, name
    for png in ("confusion_matrix.png", "curves.png"):
        assert (run_dir / "eval" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    metrics = json.loads((run_dir / "eval" / "metrics.json").read_text("utf-8"))
    md = (run_dir / "eval" / "metrics.md").read_text("utf-8")
    assert "rows: true label" in md and "| accuracy | macro precision" in md
    cm = np.asarray(metrics["confusion_matrix"])
    assert cm.sum() == metrics["n"] == 7 * 8
    # rows are the true labels: each row sums to that class's validation count
    assert cm.sum(axis=1)[: len(metrics["labels"])].tolist() == [8] * len(metrics["labels"])
    return metrics


def _check_classify_bundle(run_dir: Path, prepared, resize: str) -> EmotionClassifier:
    run = read_run(run_dir)
    assert run["status"] == "complete"
    bundle = load_bundle(run_dir / run["bundle"])  # verifies the sha256
    meta = bundle.meta
    assert meta.task == "classify" and meta.format == "onnx"
    assert list(meta.labels) == prepared.classes == sorted(EMOTIONS)
    assert meta.preprocess.resize == resize
    assert meta.preprocess.square_crop is True  # the training crops' geometry
    assert bundle.card_path is not None and bundle.card_path.is_file()
    # the vision worker's classifier runs it on a face box of a full image
    clf = EmotionClassifier(bundle)
    image = load_image(next((prepared.root / "detect" / "images" / "val").iterdir()))
    (probs,) = clf.classify_faces(image, [(10, 10, 40, 40)])
    assert set(probs) == set(EMOTIONS)
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
    return clf


# ---------------------------------------------------------------------------- the runs


@pytest.fixture(scope="module")
def yolo_cls_run(prepared, runs_dir):
    return _fit(
        prepared,
        runs_dir,
        "yolov8n-cls",
        imgsz=32,
        epochs=6,
        batch=16,
        optimizer="adamw",
        lr=3e-3,
        warmup_epochs=0,
    )


@pytest.fixture(scope="module")
def resnet_run(prepared, runs_dir):
    return _fit(prepared, runs_dir, "resnet50", imgsz=32, epochs=3, batch=16)


@pytest.fixture(scope="module")
def detect_run(prepared, runs_dir):
    return _fit(prepared, runs_dir, "yolov8n", imgsz=64, epochs=1, batch=16)


def _heavy(prepared, runs_dir, model: str, **kwargs):
    result = _fit(prepared, runs_dir, model, imgsz=32, epochs=1, batch=4, max_steps=3, **kwargs)
    # hundreds of MB of optimizer state: not needed past this point
    shutil.rmtree(result.run_dir / "checkpoints")
    return result


@pytest.fixture(scope="module")
def vgg_run(prepared, runs_dir):
    yield _heavy(prepared, runs_dir, "vgg16", optimizer="sgd", lr=1e-3)
    (runs_dir / "vgg16" / "bundle" / "emotion-vgg16.onnx").unlink(missing_ok=True)


@pytest.fixture(scope="module")
def resnext_run(prepared, runs_dir):
    return _heavy(prepared, runs_dir, "resnext50")


@pytest.fixture(scope="module")
def vit_run(prepared, runs_dir):
    yield _heavy(prepared, runs_dir, "vit_b_16", optimizer="sgd", lr=1e-3)
    (runs_dir / "vit_b_16" / "bundle" / "emotion-vit-b-16.onnx").unlink(missing_ok=True)


# ---------------------------------------------------------------------------- tests


@pytest.mark.slow
def test_yolov8_cls_learns_the_toy_classes(yolo_cls_run, prepared) -> None:
    run_dir = yolo_cls_run.run_dir
    _check_classify_bundle(run_dir, prepared, "center_crop")
    metrics = _check_eval(run_dir)
    assert metrics["accuracy"] >= 0.6  # chance is 1/7
    assert metrics["macro_f1"] >= 0.5
    run = read_run(run_dir)
    assert run["epochs_done"] == 6 and run["train_time_s"] > 0
    assert (run_dir / "ultralytics" / "weights" / "best.pt").is_file()
    history = (run_dir / "history.csv").read_text("utf-8").splitlines()
    assert len(history) == 7 and history[0].startswith("epoch,train_loss,val_loss")


@pytest.mark.slow
def test_resnet50_learns_and_resumes(resnet_run, prepared) -> None:
    run_dir = resnet_run.run_dir
    assert (run_dir / "checkpoints" / "last.pt").is_file()
    before = read_run(run_dir)
    assert before["epochs_done"] == 3
    # resume the finished run with one more epoch: only epoch 4 is trained
    result = fit(resume_config(run_dir, epochs=4), resume=True)
    after = read_run(run_dir)
    assert after["epochs_done"] == 4 and len(result.history) == 4
    assert [h["epoch"] for h in result.history] == [1, 2, 3, 4]
    assert after["train_time_s"] > before["train_time_s"]
    assert after["started"] == before["started"]
    _check_classify_bundle(run_dir, prepared, "stretch")
    metrics = _check_eval(run_dir)
    assert metrics["accuracy"] >= 0.6, metrics["accuracy"]  # chance is 1/7
    bundle = load_bundle(run_dir / after["bundle"])
    assert bundle.meta.preprocess.mean == pytest.approx((0.485, 0.456, 0.406))
    assert bundle.meta.output == "logits"


@pytest.mark.slow
def test_yolov8_detect_bundle(detect_run, prepared) -> None:
    from training.bundles import DetectRunner

    run_dir = detect_run.run_dir
    run = read_run(run_dir)
    bundle = load_bundle(run_dir / run["bundle"])
    assert bundle.meta.task == "detect"
    assert list(bundle.meta.labels) == list(ORIGINAL_DETECTION_LABELS)  # the data yaml's order
    assert bundle.meta.input_size == (64, 64)
    assert bundle.meta.preprocess.resize == "letterbox"
    assert bundle.meta.extra["detect_output"]["layout"] == "yolov8"
    runner = DetectRunner(bundle)
    image = load_image(next((prepared.root / "detect" / "images" / "val").iterdir()))
    ((label, score, scores, box),) = runner.top([image])
    assert label in EMOTIONS and 0.0 <= score <= 1.0 and scores.shape == (7,)
    assert len(box) == 4
    metrics = _check_eval(run_dir)
    assert 0.0 <= metrics["mean_iou"] <= 1.0
    assert "map50" in (run_dir / "history.csv").read_text("utf-8").splitlines()[0]


@pytest.mark.slow
def test_vgg16_one_short_epoch(vgg_run, prepared) -> None:
    _check_classify_bundle(vgg_run.run_dir, prepared, "stretch")
    _check_eval(vgg_run.run_dir)


@pytest.mark.slow
def test_resnext50_one_short_epoch(resnext_run, prepared) -> None:
    _check_classify_bundle(resnext_run.run_dir, prepared, "stretch")
    _check_eval(resnext_run.run_dir)


@pytest.mark.slow
def test_vit_b_16_one_short_epoch(vit_run, prepared) -> None:
    clf = _check_classify_bundle(vit_run.run_dir, prepared, "stretch")
    assert clf.meta.input_size == (32, 32)
    _check_eval(vit_run.run_dir)


@pytest.mark.slow
def test_compare_all_six(
    yolo_cls_run, resnet_run, detect_run, vgg_run, resnext_run, vit_run, runs_dir, tmp_path
) -> None:
    result = CliRunner().invoke(train_app, ["compare", str(runs_dir), "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    md = (tmp_path / "comparison.md").read_text("utf-8")
    for name in ("YOLOv8n-cls", "YOLOv8n", "VGG16", "ResNet-50", "ResNeXt-50", "ViT-B/16"):
        assert f"| {name} " in md, name
    assert "training time (s)" in md and "F1 (macro)" in md
    csv_lines = (tmp_path / "comparison.csv").read_text("utf-8").splitlines()
    assert len(csv_lines) >= 7
    assert csv_lines[0].startswith("model,task,variant,imgsz,epochs,accuracy,macro_precision")
    assert (tmp_path / "comparison.png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_cli_evaluate_and_resume_finished_yolo(yolo_cls_run, tmp_path) -> None:
    run_dir = yolo_cls_run.run_dir
    runner = CliRunner()
    result = runner.invoke(train_app, ["evaluate", str(run_dir), "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "accuracy" in result.output and (tmp_path / "ev" / "metrics.md").is_file()
    # resuming a finished ultralytics run re-exports its bundle, no training
    before = read_run(run_dir)["train_time_s"]
    result = runner.invoke(train_app, ["fit", "--out", str(run_dir), "--resume", "--quiet"])
    assert result.exit_code == 0, result.output
    assert read_run(run_dir)["train_time_s"] == pytest.approx(before)
    assert read_run(run_dir)["status"] == "complete"


@pytest.mark.slow
def test_yolo_fine_tunes_from_local_weights(yolo_cls_run, prepared, runs_dir) -> None:
    weights = yolo_cls_run.run_dir / "ultralytics" / "weights" / "best.pt"
    config = FitConfig(
        model="yolov8n-cls",
        data=str(prepared.root),
        out=str(runs_dir / "ft"),
        weights=str(weights),
        imgsz=32,
        epochs=1,
        batch=16,
        workers=0,
        progress=False,
        optimizer="adamw",
        lr=1e-4,
        warmup_epochs=0,
    )
    result = fit(config)
    # one epoch from the trained weights keeps (most of) what they knew
    assert result.extra["metrics"]["accuracy"] >= 0.5
    source = load_bundle(result.bundle_path).meta.source
    assert source["init"] == "local weights best.pt"


@pytest.mark.slow
def test_whole_image_variant(prepared, runs_dir) -> None:
    result = _fit(
        prepared,
        runs_dir,
        "yolov8n-cls",
        "full",
        variant="full",
        imgsz=32,
        epochs=1,
        name="emotion-full",
    )
    meta = load_bundle(result.bundle_path).meta
    assert meta.name == "emotion-full"
    assert meta.preprocess.crop_margin == 0.0 and meta.preprocess.square_crop is False
    assert read_run(result.run_dir)["config"]["variant"] == "full"
    metrics = _check_eval(result.run_dir)
    assert metrics["variant"] == "full"


def test_torchvision_local_weights(tmp_path) -> None:
    import torch
    import torchvision

    imagenet = torchvision.models.resnet50(weights=None)  # stands in for an ImageNet file
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(imagenet.state_dict(), path)
    model, report = build_torchvision("resnet50", 7, 32, str(path))
    path.unlink()  # 100 MB
    assert report["loaded"] == len(model.state_dict()) - 2
    assert report["skipped"] == ["fc.bias", "fc.weight"]  # the 1000-class head
    assert torch.equal(model.conv1.weight, imagenet.conv1.weight)
    assert model.fc.out_features == 7
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"x": torch.zeros(1)}}, wrong)
    with pytest.raises(FitError, match="fits only"):
        build_torchvision("resnet50", 7, 32, str(wrong))


def test_vit_weights_at_another_input_size(tmp_path) -> None:
    import torch
    import torchvision

    vit = torchvision.models.vit_b_16(weights=None, image_size=64)
    path = tmp_path / "vit.pth"
    torch.save(vit.state_dict(), path)
    model, report = build_torchvision("vit_b_16", 7, 32, str(path))
    path.unlink()  # 330 MB
    assert model.encoder.pos_embedding.shape == (1, 5, 768)  # 2×2 patches + class token
    assert report["loaded"] == len(model.state_dict()) - 2
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32)).shape == (1, 7)


def test_fit_refuses_what_cannot_run(prepared, tmp_path) -> None:
    def config(**kw):
        base = dict(model="resnet50", data=str(prepared.root), out=str(tmp_path / "r"))
        return FitConfig(**{**base, **kw})

    with pytest.raises(FitError, match="unknown model"):
        fit(config(model="resnet18"))
    with pytest.raises(FitError, match="multiple of 32"):
        fit(config(model="yolov8n", imgsz=48))
    with pytest.raises(FitError, match="multiple of 16"):
        fit(config(model="vit_b_16", imgsz=40))
    with pytest.raises(FitError, match="not found"):
        fit(config(weights=str(tmp_path / "missing.pt")))
    with pytest.raises(DatasetError, match="not a complete prepared dataset"):
        fit(config(data=str(tmp_path)))
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "run.json").write_text("{}", "utf-8")
    with pytest.raises(FitError, match="already holds a run"):
        fit(config(imgsz=32))
    result = CliRunner().invoke(
        train_app, ["fit", "--model", "resnet18", "--data", str(prepared.root), "--out", "x"]
    )
    assert result.exit_code == 2 and "unknown model" in result.output


def test_model_names() -> None:
    from training.fit import MODELS, resolve_model

    assert len(MODELS) == 10
    assert resolve_model("ResNeXt-50").name == "resnext50"
    assert resolve_model("ViT-B/16").name == "vit_b_16"
    assert resolve_model("YOLOv8s-cls").family == "yolo-cls"
    assert resolve_model("yolov8m").task == "detect"


def test_metrics_from_predictions() -> None:
    y_true = ["a", "a", "b", "b", "c", "c"]
    y_pred = ["a", "b", "b", "b", "a", "c"]
    m = classification_metrics(y_true, y_pred, ["a", "b", "c"])
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]  # rows: true
    assert m["accuracy"] == pytest.approx(4 / 6)
    per = {r["class"]: r for r in m["per_class"]}
    assert per["a"]["precision"] == pytest.approx(0.5) and per["a"]["recall"] == pytest.approx(0.5)
    assert per["b"]["precision"] == pytest.approx(2 / 3) and per["b"]["recall"] == 1.0
    assert per["c"]["precision"] == 1.0 and per["c"]["recall"] == pytest.approx(0.5)
    assert m["macro_precision"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    assert m["macro_recall"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    # a label never seen nor predicted does not dilute the macro average
    m2 = classification_metrics(y_true, y_pred, ["a", "b", "c", "d"])
    assert m2["macro_f1"] == pytest.approx(m["macro_f1"])
