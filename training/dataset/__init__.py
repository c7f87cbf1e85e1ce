"""The labelled emotion image set: scanning, checking, box averaging, sampling, writing.

Source layout (DESIGN.md, "Training data layout")::

    <root>/<emotion>/{labeled,raw}/{train,validation}/...

``<emotion>`` is one of the product's seven classes (`stream.contract.EMOTIONS`) or its
Korean name in the original data set (분노, 불안, 당황, 기쁨, 중립, 상처, 슬픔). Images and
JSON annotations may sit anywhere under ``labeled/`` and ``raw/`` of a split (the original
keeps images in ``raw`` and annotations in ``labeled``; both are searched, recursively).
A JSON file holds either one annotation object or a list of them; an object names its image
with ``filename`` (else the JSON file's stem is the image's stem). Each object carries up to
three annotators' boxes::

    {"filename": "x.jpg", "annot_A": {"boxes": {"minX": .., "minY": .., "maxX": .., "maxY": ..}},
     "annot_B": {...}, "annot_C": {...}}

The face box of an image is the mean of its annotators' valid boxes, clipped to the image.

`scan_dataset` finds everything, decodes every image fully (a truncated JPEG decodes with
grey filler in OpenCV, so Pillow decodes it with truncation as an error, and a JPEG must
end with its EOI marker) and returns the usable `Sample` s plus every `Exclusion` with its
path and reason. `select` draws a stratified, seeded sample per class and split (nested:
the first 200 of a class are the first 200 of its 1000). `write_prepared` writes the
classification datasets (face crops and whole images), the YOLO detection dataset and the
report into a temporary folder that is renamed into place only when complete
(`training.preprocess` drives it).

The package, by stage: `layout` (the names they share, `DatasetError`), `boxes`,
`images`, `scan`, `sampling`, `prepared` (the options and the dataset on disk), `writing`
and `report`. The box type is `inference.face.Box`. This module exports the names the
rest of the project uses.
"""

from inference.face import Box
from training.dataset.boxes import average_boxes, yolo_label_line
from training.dataset.images import crop_box, decode_image, load_image, write_image
from training.dataset.layout import DatasetError
from training.dataset.prepared import PreparedDataset, PrepareOptions, load_prepared
from training.dataset.sampling import resolve_counts, select
from training.dataset.scan import scan_dataset
from training.dataset.writing import write_prepared

__all__ = [
    "Box",
    "DatasetError",
    "PrepareOptions",
    "PreparedDataset",
    "average_boxes",
    "crop_box",
    "decode_image",
    "load_image",
    "load_prepared",
    "resolve_counts",
    "scan_dataset",
    "select",
    "write_image",
    "write_prepared",
    "yolo_label_line",
]
