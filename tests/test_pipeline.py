"""The vision pipeline end to end on real images: prepared bundle, real detectors.

`models_dir` is the session fixture of tests/conftest.py (bundles prepared once)."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from inference.emotion import EmotionClassifier
from inference.face import (
    DETECTORS,
    DetectorUnavailable,
    FaceDetector,
    HaarFaceDetector,
    available_detectors,
    create_detector,
    iou,
)
from inference.pipeline import (
    CorruptFrameError,
    FaceAnalysis,
    FrameAnalysis,
    VisionPipeline,
    jpeg_size,
)
from inference.prepare import FER_BUNDLE_NAME, default_models_dir, prepare_models
from stream.contract import EMOTIONS
from tests._models import astronaut_frame, faceless_frames, jpeg


@pytest.fixture(scope="module")
def pipeline(models_dir):
    return VisionPipeline.load(models_dir)


@pytest.fixture(scope="module")
def face_frame():
    return astronaut_frame(face_width=150, centre=(300, 210))


def _check_face(face: FaceAnalysis, truth) -> None:
    assert iou(face.box, truth) > 0.4, (face.box, truth)
    assert set(face.probs) == set(EMOTIONS)
    assert sum(face.probs.values()) == pytest.approx(1.0)
    assert face.label == max(face.probs, key=face.probs.get)
    assert face.confidence == face.probs[face.label]
    assert 0.0 < face.detector_score <= 1.0


def test_astronaut_face_in_jpeg_frame(pipeline, face_frame):
    frame, truth = face_frame
    result = pipeline.analyse_jpeg(jpeg(frame))
    assert isinstance(result, FrameAnalysis)
    assert (result.width, result.height) == (640, 480)
    assert len(result.faces) == 1
    _check_face(result.faces[0], truth)
    assert result.faces[0].label == "happy"  # a broad smile
    assert set(result.timings_ms) == {"decode", "detect", "classify", "total"}
    assert all(v >= 0 for v in result.timings_ms.values())
    assert pipeline.model_name == f"{FER_BUNDLE_NAME}+{pipeline.detector.name}"


def test_analyse_bgr_matches_jpeg_path(pipeline, face_frame):
    frame, truth = face_frame
    result = pipeline.analyse_bgr(frame)
    assert len(result.faces) == 1
    _check_face(result.faces[0], truth)
    assert result.timings_ms["decode"] == 0.0


@pytest.mark.parametrize("detector", ["blazeface", "haar", "mtcnn"])
def test_each_detector_finds_the_face(models_dir, face_frame, detector):
    # scripts/setup.sh installs all three: one that cannot load is a broken install
    assert available_detectors()[detector] is None, available_detectors()[detector]
    pipe = VisionPipeline.load(models_dir, detector=detector)
    frame, truth = face_frame
    result = pipe.analyse_jpeg(jpeg(frame))
    assert len(result.faces) == 1
    _check_face(result.faces[0], truth)


def test_reduced_decode_maps_boxes_to_the_original_frame(models_dir, face_frame):
    frame, truth = face_frame
    pipe = VisionPipeline.load(models_dir, decode_reduction=2)
    result = pipe.analyse_jpeg(jpeg(frame))
    assert (result.width, result.height) == (640, 480)
    assert len(result.faces) == 1
    _check_face(result.faces[0], truth)


def test_faceless_frames_have_no_face(pipeline):
    frames = dict(faceless_frames())
    for name in ("coffee", "rocket", "brick"):
        result = pipeline.analyse_jpeg(jpeg(frames[name]))
        assert result.faces == [], name
        assert (result.width, result.height) == (640, 480)
    blank = pipeline.analyse_bgr(np.zeros((480, 640, 3), np.uint8))
    assert blank.faces == []


def test_corrupt_jpeg_raises(pipeline, face_frame):
    good = jpeg(face_frame[0])
    bad_payloads = {
        "empty": b"",
        "text": b"definitely not a jpeg",
        "png": b"\x89PNG\r\n\x1a\n" + b"\x00" * 64,
        "garbage between markers": b"\xff\xd8" + b"\x13" * 200 + b"\xff\xd9",
        "no frame header": b"\xff\xd8\xff\xd9",
        "header only": good[:600] + b"\xff\xd9",
    }
    for name, payload in bad_payloads.items():
        with pytest.raises(CorruptFrameError) as info:
            pipeline.analyse_jpeg(payload)
        assert info.value.retryable is False, name
    assert not CorruptFrameError.retryable
    assert issubclass(CorruptFrameError, ValueError)


def test_truncated_jpeg_raises(pipeline, face_frame):
    good = jpeg(face_frame[0])
    for cut in (len(good) // 3, len(good) // 2, len(good) - 10):
        with pytest.raises(CorruptFrameError, match="truncated"):
            pipeline.analyse_jpeg(good[:cut])
    # the pipeline still works afterwards
    assert len(pipeline.analyse_jpeg(good).faces) == 1


def test_jpeg_size_reads_the_header(face_frame):
    assert jpeg_size(jpeg(face_frame[0])) == (640, 480)
    assert jpeg_size(jpeg(np.zeros((37, 53, 3), np.uint8))) == (53, 37)
    assert jpeg_size(jpeg(face_frame[0]) + b"\x00\x00") == (640, 480)  # zero padding


def test_missing_models_dir_tells_the_user_what_to_run(tmp_path):
    with pytest.raises(FileNotFoundError, match="intervue models prepare"):
        VisionPipeline.load(tmp_path / "empty")


def test_prepare_is_cached_and_forced(models_dir):
    again = prepare_models(models_dir)
    summary = again["bundles"][FER_BUNDLE_NAME]
    assert summary["skipped"] is True
    verification = summary["verification"]
    assert verification["torch_vs_keras_reference"]["max_abs_error"] < 1e-5
    assert verification["torch_vs_keras_reference"]["top1_agreement"] == 1.0
    assert verification["onnx_vs_torch"]["top1_agreement"] == 1.0
    assert len(summary["source_sha256"]) == 64
    assert summary["card"] and summary["card"].endswith(".md")


def test_prepare_rebuilds_a_damaged_bundle(tmp_path, models_dir):
    import shutil

    copy = tmp_path / "models"
    shutil.copytree(models_dir, copy)
    (copy / f"{FER_BUNDLE_NAME}.onnx").write_bytes(b"damaged")
    summary = prepare_models(copy)["bundles"][FER_BUNDLE_NAME]
    assert summary["skipped"] is False
    EmotionClassifier.load(copy / f"{FER_BUNDLE_NAME}.json")  # valid again


def test_default_models_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("INTERVUE_MODELS_DIR", str(tmp_path / "m"))
    assert default_models_dir() == tmp_path / "m"
    monkeypatch.delenv("INTERVUE_MODELS_DIR")
    assert default_models_dir().parts[-3:] == (".cache", "intervue", "models")


def test_classifier_batches_several_faces(models_dir, face_frame):
    classifier = EmotionClassifier.load(models_dir / f"{FER_BUNDLE_NAME}.json")
    frame, truth = face_frame
    boxes = [truth, (0, 0, 40, 40), (600, 440, 700, 520)]  # the last one leaves the frame
    probs = classifier.classify_faces(frame, boxes)
    assert len(probs) == 3
    assert all(sum(p.values()) == pytest.approx(1.0) for p in probs)
    assert max(probs[0], key=probs[0].get) == "happy"
    assert classifier.classify_faces(frame, []) == []


def test_detector_registry_and_fallback(monkeypatch, caplog):
    assert {"haar", "mtcnn", "blazeface"} <= set(DETECTORS)
    with pytest.raises(ValueError, match="unknown face detector"):
        create_detector("nope")

    class Missing(FaceDetector):
        name = "missing"

        @classmethod
        def unavailable_reason(cls):
            return "weights not installed"

        def __init__(self):
            raise DetectorUnavailable(self.unavailable_reason())

        def _detect(self, image):  # pragma: no cover
            return []

    import inference.face as face

    monkeypatch.setattr(face, "DETECTORS", {**face.DETECTORS, "missing": Missing})
    monkeypatch.setattr(face, "DEFAULT_ORDER", ("missing", "haar"))
    with caplog.at_level(logging.WARNING, logger="inference.face"):
        detector = face.create_detector("auto")
    assert isinstance(detector, HaarFaceDetector)
    assert "'missing' unavailable" in caplog.text
    assert "weights not installed" in caplog.text


def test_detector_rejects_bad_images():
    detector = create_detector("haar")
    with pytest.raises(ValueError):
        detector.detect(np.zeros((480, 640), np.float32))
    with pytest.raises(ValueError):
        detector.detect(np.zeros((4, 4, 3), np.uint8))
    assert detector.detect(np.zeros((480, 640), np.uint8)) == []


def test_the_benchmarks_four_face_frames_hold_four_faces_the_detector_finds(pipeline):
    # `intervue bench vision --faces 4` is the crop-heavy case only if all four are found
    from deploy.bench.media import multi_face_frames

    frames = multi_face_frames(64)
    assert len(frames) == 8
    assert [len(pipeline.analyse_jpeg(f).faces) for f in frames] == [4] * 8
