"""The labelled emotion image set (moved to `training.dataset.scan`; split by concern next)."""

from training.dataset.scan import (
    Box,
    DatasetError,
    PreparedDataset,
    PrepareOptions,
    average_boxes,
    crop_box,
    decode_image,
    load_image,
    load_prepared,
    resolve_counts,
    scan_dataset,
    select,
    write_image,
    write_prepared,
    yolo_label_line,
)

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
