"""YOLOv8 in the vision worker: cls and detect models built from their yaml and trained
for one epoch on a tiny synthetic data set made here (seconds, imgsz 32/64, nothing
downloaded), imported with `intervue models import`, exported with `intervue export`,
and run by the worker over a real nats-server through each CPU backend. Labels come from
the checkpoints in a non-product order (and, for the classifier, under other names): a
checkpoint whose class outputs are permuted gives the same product-class results."""

from __future__ import annotations

import asyncio
import json
import os

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from deploy.bench.media import face_frames
from inference.bundle import load_bundle
from inference.cli import engines_app
from inference.labels import ORIGINAL_DETECTION_LABELS
from inference.pipeline import VisionPipeline
from inference.vision_worker import VisionSettings, VisionWorker
from stream import bus, contract
from stream.contract import EMOTIONS
from tests.test_vision_bus import _frame, _results

#: Classifier folder names: synonyms of the product classes, so the bundle needs a label
#: map, and ultralytics orders them alphabetically (≠ the product's order).
CLS_NAMES = ("angry", "anxious", "embarrassed", "happiness", "hurt", "neutral", "sadness")
PERM = [3, 0, 6, 1, 5, 2, 4]  # a shuffle of the 7 class outputs


def _synthetic_data(root):
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        for i, name in enumerate(CLS_NAMES):
            d = root / "cls" / split / name
            d.mkdir(parents=True)
            for k in range(3):
                img = np.full((40, 40, 3), i * 35, np.uint8)
                img += rng.integers(0, 20, img.shape, dtype=np.uint8)
                cv2.imwrite(str(d / f"{k}.png"), img)
        (root / "det" / "images" / split).mkdir(parents=True)
        (root / "det" / "labels" / split).mkdir(parents=True)
        for k in range(14):
            img = np.full((64, 64, 3), 100, np.uint8)
            c = k % 7
            x1, y1 = (int(v) for v in rng.integers(0, 30, 2))
            s = int(rng.integers(16, 32))
            img[y1 : y1 + s, x1 : x1 + s] = (c * 35, 255 - c * 30, c * 20)
            cv2.imwrite(str(root / "det" / "images" / split / f"{k}.png"), img)
            (root / "det" / "labels" / split / f"{k}.txt").write_text(
                f"{c} {(x1 + s / 2) / 64} {(y1 + s / 2) / 64} {s / 64} {s / 64}\n"
            )
    names = "".join(f"  {i}: {n}\n" for i, n in enumerate(ORIGINAL_DETECTION_LABELS))
    (root / "det.yaml").write_text(
        f"path: {root / 'det'}\ntrain: images/train\nval: images/val\nnames:\n{names}"
    )


def _train(root):
    os.environ.setdefault("YOLO_OFFLINE", "1")
    import ultralytics.engine.trainer as trainer
    from ultralytics import YOLO

    saved = trainer.check_amp
    trainer.check_amp = lambda model: False  # it would download a model to test AMP
    common = dict(
        epochs=1,
        batch=8,
        device="cpu",
        workers=0,
        project=str(root / "runs"),
        exist_ok=True,
        plots=False,
        amp=False,
        verbose=False,
        seed=0,
        deterministic=True,
    )
    try:
        YOLO("yolov8n-cls.yaml", task="classify").train(
            data=str(root / "cls"), imgsz=32, name="cls", **common
        )
        YOLO("yolov8n.yaml", task="detect").train(
            data=str(root / "det.yaml"), imgsz=64, name="det", **common
        )
    finally:
        trainer.check_amp = saved
    return (
        root / "runs" / "cls" / "weights" / "best.pt",
        root / "runs" / "det" / "weights" / "best.pt",
    )


def _permuted(src, dst, perm):
    """The same checkpoint with its class outputs (and names) in another order."""
    import torch
    from ultralytics.nn.modules.head import Classify, Detect

    ckpt = torch.load(src, map_location="cpu", weights_only=False)
    for key in ("model", "ema"):
        net = ckpt.get(key)
        if net is None:
            continue
        head = net.model[-1]
        layers = [head.linear] if isinstance(head, Classify) else [seq[-1] for seq in head.cv3]
        assert isinstance(head, (Classify, Detect))
        with torch.no_grad():
            for layer in layers:
                layer.weight.copy_(layer.weight[perm].clone())
                layer.bias.copy_(layer.bias[perm].clone())
        names = net.names
        net.names = {i: names[perm[i]] for i in range(len(perm))}
    torch.save(ckpt, dst)
    return dst


@pytest.fixture(scope="module")
def yolo(tmp_path_factory):
    root = tmp_path_factory.mktemp("yolo")
    _synthetic_data(root)
    cls_pt, det_pt = _train(root)
    return {
        "cls": cls_pt,
        "det": det_pt,
        "cls-perm": _permuted(cls_pt, root / "cls-perm.pt", PERM),
        "det-perm": _permuted(det_pt, root / "det-perm.pt", PERM),
    }


@pytest.fixture(scope="module")
def yolo_models(yolo, models_dir, tmp_path_factory):
    """The four checkpoints imported with `intervue models import`, the two originals
    exported with `intervue export`, all in one models dir beside the FER bundle."""
    import shutil

    md = tmp_path_factory.mktemp("yolo-models")
    for path in models_dir.glob("fer-mini-xception.*"):
        shutil.copy(path, md / path.name)
    runner = CliRunner()
    imported = {}
    for key, pt in yolo.items():
        name = f"y{key}"
        result = runner.invoke(
            engines_app, ["import", str(pt), "--models-dir", str(md), "--name", name]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.output[result.output.index("{") :])
        imported[key] = summary
    for key in ("cls", "det"):
        result = runner.invoke(engines_app, ["export", str(md / f"y{key}.json"), "--batch", "8"])
        assert result.exit_code == 0, result.output
        assert "top-1 100.00%" in result.output or "top-1 9" in result.output
    return md, imported


def test_import_reads_task_labels_and_size_from_the_checkpoint(yolo_models):
    md, imported = yolo_models
    cls, det = imported["cls"], imported["det"]
    assert cls["task"] == "classify" and det["task"] == "detect"
    assert cls["labels"] == sorted(CLS_NAMES)  # ultralytics' folder order, read from the file
    assert cls["label_map"] == {
        "angry": "anger",
        "anxious": "anxiety",
        "embarrassed": "embarrass",
        "happiness": "happy",
        "hurt": "pain",
        "neutral": "normal",
        "sadness": "sad",
    }
    assert det["labels"] == list(ORIGINAL_DETECTION_LABELS) and det["label_map"] == {}
    assert cls["input_size"] == [32, 32] and det["input_size"] == [64, 64]
    assert imported["det-perm"]["labels"] == [ORIGINAL_DETECTION_LABELS[i] for i in PERM]
    for summary in imported.values():
        assert summary["verification"]["max_abs_error"] < 1e-3
    bundle = load_bundle(md / "ydet.json")
    assert bundle.meta.extra["torch"]["kind"] == "ultralytics"
    assert (md / "ydet.pt").is_file() and bundle.meta.preprocess.resize == "letterbox"
    exported = load_bundle(md / "ydet-onnx-fp32.json")
    assert exported.meta.labels == bundle.meta.labels
    assert exported.meta.extra["export"]["source_name"] == "ydet"


def test_import_refuses_what_it_cannot_run(yolo, tmp_path):
    runner = CliRunner()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    result = runner.invoke(engines_app, ["import", str(bad), "--models-dir", str(tmp_path)])
    assert result.exit_code == 1 and "import failed" in result.output
    from inference.importer import ImportModelError, infer_label_map

    with pytest.raises(ImportModelError, match="--label-map"):
        infer_label_map(["happy", "confused"])
    assert infer_label_map(["happy", "confused"], {"confused": "embarrass"}) == {
        "confused": "embarrass"
    }
    assert infer_label_map(["기쁨", "Neutral"]) == {"기쁨": "happy", "Neutral": "normal"}


@pytest.mark.parametrize("kind", ["cls", "det"])
def test_a_permuted_checkpoint_gives_the_same_emotions(yolo_models, kind):
    md, _ = yolo_models
    frames = face_frames(3)
    common = dict(backend="onnxruntime", conf=1e-4)
    a = VisionPipeline.load(md, classifier=f"y{kind}", **common)
    b = VisionPipeline.load(md, classifier=f"y{kind}-perm", **common)
    assert a.single_stage == (kind == "det")
    for jpeg in frames:
        ra, rb = a.analyse_jpeg(jpeg), b.analyse_jpeg(jpeg)
        assert len(ra.faces) == len(rb.faces) >= 1
        for fa, fb in zip(ra.faces, rb.faces, strict=True):
            assert np.allclose(fa.box, fb.box, atol=1e-3)
            assert max(abs(fa.probs[k] - fb.probs[k]) for k in EMOTIONS) < 1e-4
            assert fa.label == fb.label


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
@pytest.mark.parametrize("model", ["ycls", "ydet", "ycls-onnx-fp32", "ydet-onnx-fp32"])
async def test_the_worker_runs_yolo_bundles_on_each_cpu_backend(
    yolo_models, bus_settings, nc, backend, model
):
    md, _ = yolo_models
    settings = VisionSettings(
        name=f"yolo-{model}-{backend}",
        models_dir=md,
        classifier=model,
        backend=backend,
        conf=1e-4,
        max_batch=8,
    )
    pipeline = VisionPipeline.load(
        md, classifier=model, backend=backend, conf=settings.conf, max_batch=settings.max_batch
    )
    assert pipeline.backend.label == f"{backend}-cpu"  # no silent fallback
    client = await bus.connect(bus_settings, settings.name)
    worker = VisionWorker(client, pipeline, bus_settings, settings)
    await worker.start()
    sessions = [f"y{abs(hash((model, backend))) % 10**8}x{i}" for i in range(3)]
    try:
        jpeg = face_frames(1)[0]
        for seq in range(2):
            for session in sessions:  # three sessions at once: crops batched across them
                await nc.publish(contract.frames_subject(session), _frame(session, seq, jpeg))
            await nc.flush()
            await asyncio.sleep(0.3)
        stored = {s: await _results(nc, s, 2) for s in sessions}
    finally:
        await worker.stop()
        await client.close()
    for session, results in stored.items():
        assert [r.seq for r in results] == [0, 1], session
        for r in results:
            assert r.model == pipeline.model_name and r.faces
            for face in r.faces:
                assert set(face.probs) == set(EMOTIONS)
                assert sum(face.probs.values()) == pytest.approx(1.0, abs=1e-3)
                assert face.label in EMOTIONS
    assert worker.counts["analysed"] == 6 and worker.counts["failed"] == 0
