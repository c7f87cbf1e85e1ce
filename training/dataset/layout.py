"""Names the stages share: the source layout (splits, kinds, annotators, image suffixes,
Korean class names), the output splits, sampling presets, detection class orders,
exclusion reasons, the prepared format's version and marker, and `DatasetError`.
"""

from __future__ import annotations

import unicodedata

from inference.labels import ALPHABETICAL_LABELS, KOREAN_CLASS_NAMES, ORIGINAL_DETECTION_LABELS
from stream.contract import EMOTIONS

#: Version of the prepared-dataset format (``dataset.json``).
PREPARED_FORMAT_VERSION = 1
#: The file that marks a complete prepared dataset; written last, inside the temp folder.
PREPARED_MARKER = "dataset.json"

SOURCE_SPLITS: tuple[str, ...] = ("train", "validation")
#: Source split → split folder name in the outputs (the name ultralytics expects).
OUTPUT_SPLITS: dict[str, str] = {"train": "train", "validation": "val"}
KINDS: tuple[str, ...] = ("labeled", "raw")
ANNOTATORS: tuple[str, ...] = ("annot_A", "annot_B", "annot_C")
IMAGE_SUFFIXES: frozenset[str] = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})
JSON_SUFFIX = ".json"

#: Korean class names of the original data set → product classes.
CLASS_ALIASES: dict[str, str] = KOREAN_CLASS_NAMES

#: Per-class sample sizes (train, validation) of the original project.
PRESETS: dict[str, tuple[int, int]] = {
    "200/100": (200, 100),
    "1000/300": (1000, 300),
    "4000/1000": (4000, 1000),
}

#: Class orders a detection dataset may use. Classification datasets are always
#: alphabetical: folder-per-class loaders (ultralytics, torchvision) sort folder names.
DETECTION_ORDERS: dict[str, tuple[str, ...]] = {
    "original": ORIGINAL_DETECTION_LABELS,
    "alphabetical": ALPHABETICAL_LABELS,
    "product": EMOTIONS,
}

#: Exclusion reasons (the report explains each).
REASONS: dict[str, str] = {
    "not_image": "not an image or annotation file",
    "corrupt": "image cannot be decoded",
    "truncated": "image file is truncated",
    "bad_json": "annotation file is not valid JSON / not an annotation object",
    "missing_annotation": "image has no annotation",
    "missing_image": "annotation names an image that does not exist",
    "no_boxes": "annotation holds no valid annotator box",
    "box_outside_image": "averaged box lies (almost) entirely outside the image",
    "duplicate": "another image with the same name in the same class and split",
    "unknown_class": "class folder is not one of the seven classes",
}


class DatasetError(ValueError):
    """Input that cannot be turned into a dataset at all (nothing usable, wrong root, …)."""


def nfc(text: str) -> str:
    # Korean names from macOS archives are often NFD on disk and NFC inside the JSON
    return unicodedata.normalize("NFC", text)
