"""Bundle metadata round trip and the model-label → product-class mapping."""

from __future__ import annotations

import json

import numpy as np
import pytest

from inference.bundle import (
    Bundle,
    BundleError,
    BundleMeta,
    Preprocess,
    load_bundle,
    save_bundle,
    sha256_file,
)
from inference.labels import (
    ALPHABETICAL_LABELS,
    FER_LABELS,
    FER_TO_PRODUCT,
    ORIGINAL_DETECTION_LABELS,
    LabelMapError,
    mapping_matrix,
    to_product_probs,
    to_product_probs_batch,
    top_label,
    valence,
)
from stream.contract import EMOTIONS


def _meta(**overrides) -> BundleMeta:
    fields = dict(
        name="tiny",
        task="classify",
        format="onnx",
        labels=FER_LABELS,
        label_map=dict(FER_TO_PRODUCT),
        input_size=(64, 64),
        channels=1,
        color="gray",
        preprocess=Preprocess(
            scale=1 / 255, mean=(0.5,), std=(0.5,), crop_margin=0.1, square_crop=True
        ),
        license="MIT",
        source={"package": "test"},
        extra={"note": "round trip"},
    )
    fields.update(overrides)
    return BundleMeta(**fields)


@pytest.fixture
def weights(tmp_path):
    path = tmp_path / "src" / "weights.onnx"
    path.parent.mkdir()
    path.write_bytes(b"not really onnx, but bytes to hash")
    return path


# ------------------------------------------------------------------ bundle


def test_save_load_round_trip(tmp_path, weights):
    card = tmp_path / "card.md"
    card.write_text("# card\n")
    saved = save_bundle(_meta(), weights, tmp_path / "models", card=card)
    assert saved.meta_path == tmp_path / "models" / "tiny.json"
    assert saved.weights_path.read_bytes() == weights.read_bytes()
    assert saved.card_path.read_text() == "# card\n"
    assert saved.meta.sha256 == sha256_file(weights)

    for path in (saved.meta_path, saved.weights_path, tmp_path / "models"):
        loaded = load_bundle(path)
        assert isinstance(loaded, Bundle)
        assert loaded.meta == saved.meta
    meta = loaded.meta
    assert meta.labels == FER_LABELS
    assert meta.input_size == (64, 64)
    assert meta.preprocess.mean == (0.5,)
    assert meta.preprocess.square_crop is True
    assert meta.label_map == FER_TO_PRODUCT
    assert meta.extra == {"note": "round trip"}
    assert meta.created.endswith("Z")


def test_detect_bundle_keeps_its_own_labels(tmp_path, weights):
    meta = _meta(
        name="yolov8n-emotion",
        task="detect",
        labels=ORIGINAL_DETECTION_LABELS,
        label_map={},
        input_size=(640, 640),
        channels=3,
        color="rgb",
        preprocess=Preprocess(scale=1 / 255, resize="letterbox"),
        extra={"iou_threshold": 0.7},
    )
    loaded = load_bundle(save_bundle(meta, weights, tmp_path).meta_path)
    assert loaded.meta.task == "detect"
    assert loaded.meta.labels == ORIGINAL_DETECTION_LABELS
    assert loaded.meta.input_size == (640, 640)


def test_tampered_weights_are_refused(tmp_path, weights):
    saved = save_bundle(_meta(), weights, tmp_path)
    saved.weights_path.write_bytes(b"something else")
    with pytest.raises(BundleError, match="sha256"):
        load_bundle(saved.meta_path)
    assert load_bundle(saved.meta_path, verify=False).meta.name == "tiny"


def test_missing_and_malformed_sidecars(tmp_path, weights):
    with pytest.raises(FileNotFoundError):
        load_bundle(tmp_path / "nothing.json")
    saved = save_bundle(_meta(), weights, tmp_path)
    data = json.loads(saved.meta_path.read_text())
    data["colour"] = "gray"  # a typo must not pass silently
    saved.meta_path.write_text(json.dumps(data))
    with pytest.raises(BundleError, match="unknown bundle metadata keys"):
        load_bundle(saved.meta_path)
    saved.meta_path.write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(saved.meta_path)


@pytest.mark.parametrize(
    "overrides",
    [
        {"task": "segment"},
        {"format": "tflite"},
        {"labels": ()},
        {"labels": ("happy", "happy")},
        {"channels": 3},  # gray needs 1 channel
        {"input_size": (0, 64)},
        {"name": "../escape"},
        {"format_version": 99},
    ],
)
def test_invalid_metadata_is_refused(overrides):
    with pytest.raises(BundleError):
        _meta(**overrides)


# ------------------------------------------------------------------ labels


def _one_hot(labels, name, p=0.7):
    rest = (1 - p) / (len(labels) - 1)
    return [p if label == name else rest for label in labels]


@pytest.mark.parametrize(
    ("labels", "label_map"),
    [
        (FER_LABELS, FER_TO_PRODUCT),
        (ORIGINAL_DETECTION_LABELS, None),
        (ALPHABETICAL_LABELS, None),
        (tuple(reversed(FER_LABELS)), FER_TO_PRODUCT),
    ],
    ids=["fer", "original-detection", "alphabetical", "fer-reversed"],
)
def test_mapping_is_independent_of_label_order(labels, label_map):
    for model_label in labels:
        probs = to_product_probs(_one_hot(labels, model_label), labels, label_map)
        assert set(probs) == set(EMOTIONS)
        assert sum(probs.values()) == pytest.approx(1.0)
        expected = (label_map or {}).get(model_label, model_label)
        assert top_label(probs) == (expected, pytest.approx(0.7))


def test_fer_mapping_values():
    probs = to_product_probs([0.1, 0.05, 0.15, 0.3, 0.2, 0.1, 0.1], FER_LABELS, FER_TO_PRODUCT)
    assert probs == pytest.approx(
        {
            "anger": 0.1,
            "pain": 0.05,
            "anxiety": 0.15,
            "happy": 0.3,
            "sad": 0.2,
            "embarrass": 0.1,
            "normal": 0.1,
        }
    )


def test_original_detection_order_maps_identically():
    values = np.array([0.05, 0.4, 0.2, 0.1, 0.1, 0.05, 0.1])
    probs = to_product_probs(values, ORIGINAL_DETECTION_LABELS)
    for label, value in zip(ORIGINAL_DETECTION_LABELS, values, strict=True):
        assert probs[label] == pytest.approx(value)
    assert mapping_matrix(ORIGINAL_DETECTION_LABELS).sum(axis=0).tolist() == [1.0] * 7


def test_many_to_one_and_unmapped_classes():
    labels = ("smile", "grin", "frown")
    probs = to_product_probs(
        [0.2, 0.3, 0.5], labels, {"smile": "happy", "grin": "happy", "frown": "anger"}
    )
    assert probs["happy"] == pytest.approx(0.5)
    assert probs["anger"] == pytest.approx(0.5)
    assert probs["sad"] == 0.0
    assert sum(probs.values()) == pytest.approx(1.0)


def test_unnormalised_input_is_renormalised():
    probs = to_product_probs([2.0, 0, 0, 6.0, 0, 0, 2.0], FER_LABELS, FER_TO_PRODUCT)
    assert sum(probs.values()) == pytest.approx(1.0)
    assert probs["happy"] == pytest.approx(0.6)


def test_batch_matches_single():
    rng = np.random.default_rng(0)
    batch = rng.dirichlet(np.ones(7), size=5)
    rows = to_product_probs_batch(batch, FER_LABELS, FER_TO_PRODUCT)
    for row, values in zip(rows, batch, strict=True):
        assert row == pytest.approx(to_product_probs(values, FER_LABELS, FER_TO_PRODUCT))


def test_unknown_label_is_a_clear_error():
    with pytest.raises(LabelMapError, match="'contempt' maps to no product class"):
        to_product_probs([0.5, 0.5], ("happy", "contempt"))
    with pytest.raises(LabelMapError, match="not product classes"):
        to_product_probs([1.0], ("joy",), {"joy": "glee"})
    with pytest.raises(LabelMapError, match="duplicate"):
        to_product_probs([0.5, 0.5], ("happy", "happy"))


def test_shape_and_value_errors():
    with pytest.raises(ValueError, match="do not match"):
        to_product_probs([0.5, 0.5], FER_LABELS, FER_TO_PRODUCT)
    with pytest.raises(ValueError, match="non-negative"):
        to_product_probs([-1, 0, 0, 2, 0, 0, 0], FER_LABELS, FER_TO_PRODUCT)
    with pytest.raises(ValueError, match="sums to 0"):
        to_product_probs([0] * 7, FER_LABELS, FER_TO_PRODUCT)


def test_valence():
    assert valence("happy") == valence("normal") == "positive"
    assert {valence(e) for e in EMOTIONS if e not in ("happy", "normal")} == {"negative"}
    with pytest.raises(LabelMapError):
        valence("angry")
