"""Training: the labelled emotion image set → preprocessed datasets → trained, compared
models saved as model bundles (`inference.bundle`). See docs/training.md.

Modules: `dataset` (scan, checks, boxes, sampling, outputs), `preprocess`, `fit` (YOLOv8
cls/detect + torchvision baselines), `evaluate`, `compare`, `bundles`, `cli` (`train_app`).
Nothing heavy is imported here.
"""
