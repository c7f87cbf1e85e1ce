"""Model bundles: a weights file plus a JSON sidecar that says what the model is.

On disk a bundle is two files side by side in one directory::

    <name>.onnx     the weights (or <name>.pt for torch, <name>.engine for TensorRT)
    <name>.json     the metadata below (`BundleMeta`), UTF-8 JSON, one object

and, optionally, ``<name>.md``, the model card. The sidecar is the single source of truth
about the model: code that runs a bundle reads the input size, colour, preprocessing and —
above all — the label order from it, and never assumes any of them. The same format serves
the emotion classifiers (task ``classify``) and the YOLOv8 detectors from ``training/``
(task ``detect``: the labels are the detector's classes, the input size e.g. 640×640).

Sidecar fields (all required unless a default is given)::

    format_version  int, this module's BUNDLE_FORMAT_VERSION (1)
    name            str, also the file stem, e.g. "fer-mini-xception"
    task            "classify" | "detect"
    format          "onnx" | "torch" | "engine"
    weights         str, the weights file name, relative to the sidecar's directory
    sha256          str, hex SHA-256 of the weights file (checked by `Bundle.verify`)
    labels          [str], the model's output order
    label_map       {model label: product class}, default {} (labels that are already
                    product classes map to themselves; see inference.labels)
    input_size      [height, width] in pixels
    channels        1 | 3
    color           "gray" | "rgb" | "bgr"
    layout          "nchw" | "nhwc", default "nchw"
    output          "probabilities" | "logits", default "probabilities"
    preprocess      {scale, mean, std, resize, crop_margin, square_crop}: the input tensor is
                    ((pixel * scale) - mean) / std per channel after resizing; resize is
                    "stretch" | "letterbox" | "center_crop"; crop_margin is the fraction of
                    a face box's side added on each side before cropping (classify models
                    fed face crops); square_crop makes the crop square around the box centre
    source          {free-form: package, file, sha256 of the original, url, paper, …}
    license         str, e.g. "MIT"
    card            str | null, model card file name beside the sidecar
    created         str, ISO-8601 UTC time the bundle was written
    extra           {free-form: verification figures, training run, …}, default {}
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

BUNDLE_FORMAT_VERSION = 1

Task = Literal["classify", "detect"]
WeightsFormat = Literal["onnx", "torch", "engine"]
Color = Literal["gray", "rgb", "bgr"]
ResizeMode = Literal["stretch", "letterbox", "center_crop"]

TASKS: tuple[str, ...] = ("classify", "detect")
FORMATS: dict[str, str] = {"onnx": ".onnx", "torch": ".pt", "engine": ".engine"}
COLORS: tuple[str, ...] = ("gray", "rgb", "bgr")
RESIZE_MODES: tuple[str, ...] = ("stretch", "letterbox", "center_crop")
LAYOUTS: tuple[str, ...] = ("nchw", "nhwc")
OUTPUTS: tuple[str, ...] = ("probabilities", "logits")


class BundleError(ValueError):
    """A bundle whose sidecar is missing, malformed, or does not match its weights."""


@dataclass(frozen=True)
class Preprocess:
    """How an image becomes the model's input tensor (see the module docstring)."""

    scale: float = 1.0 / 255.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    resize: ResizeMode = "stretch"
    crop_margin: float = 0.0
    square_crop: bool = False

    def __post_init__(self) -> None:
        if self.resize not in RESIZE_MODES:
            raise BundleError(f"preprocess.resize {self.resize!r} not in {RESIZE_MODES}")
        if not self.mean or not self.std or len(self.mean) != len(self.std):
            raise BundleError("preprocess.mean and .std must be non-empty and equally long")
        if any(s == 0 for s in self.std):
            raise BundleError("preprocess.std may not contain 0")
        if self.crop_margin < 0:
            raise BundleError("preprocess.crop_margin may not be negative")


@dataclass(frozen=True)
class BundleMeta:
    """Everything a runner needs to know about a model besides its weights."""

    name: str
    task: Task
    format: WeightsFormat
    labels: tuple[str, ...]
    input_size: tuple[int, int]
    channels: int
    color: Color
    preprocess: Preprocess
    license: str
    source: dict[str, Any] = field(default_factory=dict)
    label_map: dict[str, str] = field(default_factory=dict)
    layout: str = "nchw"
    output: str = "probabilities"
    weights: str = ""
    sha256: str = ""
    card: str | None = None
    created: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    format_version: int = BUNDLE_FORMAT_VERSION

    def __post_init__(self) -> None:
        if not self.name or "/" in self.name or "\\" in self.name:
            raise BundleError(f"bundle name {self.name!r} must be a plain file stem")
        if self.task not in TASKS:
            raise BundleError(f"task {self.task!r} not in {TASKS}")
        if self.format not in FORMATS:
            raise BundleError(f"format {self.format!r} not in {tuple(FORMATS)}")
        if not self.labels:
            raise BundleError("a bundle needs its model's labels")
        if len(set(self.labels)) != len(self.labels):
            raise BundleError(f"duplicate labels in {self.labels!r}")
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise BundleError(f"input_size {self.input_size!r} must be [height, width] > 0")
        if self.color not in COLORS:
            raise BundleError(f"color {self.color!r} not in {COLORS}")
        if (self.color == "gray") != (self.channels == 1) or self.channels not in (1, 3):
            raise BundleError(f"channels {self.channels} does not fit color {self.color!r}")
        if len(self.preprocess.mean) not in (1, self.channels):
            raise BundleError("preprocess.mean/std need 1 value or one per channel")
        if self.layout not in LAYOUTS:
            raise BundleError(f"layout {self.layout!r} not in {LAYOUTS}")
        if self.output not in OUTPUTS:
            raise BundleError(f"output {self.output!r} not in {OUTPUTS}")
        if self.format_version != BUNDLE_FORMAT_VERSION:
            raise BundleError(
                f"bundle format_version {self.format_version} is not supported "
                f"(this build reads {BUNDLE_FORMAT_VERSION})"
            )

    @property
    def weights_suffix(self) -> str:
        return FORMATS[self.format]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["labels"] = list(self.labels)
        data["input_size"] = list(self.input_size)
        data["preprocess"]["mean"] = list(self.preprocess.mean)
        data["preprocess"]["std"] = list(self.preprocess.std)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BundleMeta:
        """Build from a parsed sidecar; unknown keys are rejected so typos do not pass."""
        data = dict(data)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise BundleError(f"unknown bundle metadata keys: {sorted(unknown)}")
        try:
            pre = dict(data.pop("preprocess"))
            pre_unknown = set(pre) - set(Preprocess.__dataclass_fields__)
            if pre_unknown:
                raise BundleError(f"unknown preprocess keys: {sorted(pre_unknown)}")
            for key in ("mean", "std"):
                if key in pre:
                    pre[key] = tuple(float(v) for v in pre[key])
            data["labels"] = tuple(str(v) for v in data["labels"])
            data["input_size"] = tuple(int(v) for v in data["input_size"])
            return cls(preprocess=Preprocess(**pre), **data)
        except (KeyError, TypeError) as exc:
            raise BundleError(f"malformed bundle metadata: {exc!r}") from exc


@dataclass(frozen=True)
class Bundle:
    """A bundle found on disk: its metadata and where its files are."""

    meta: BundleMeta
    meta_path: Path

    @property
    def directory(self) -> Path:
        return self.meta_path.parent

    @property
    def weights_path(self) -> Path:
        return self.directory / self.meta.weights

    @property
    def card_path(self) -> Path | None:
        return self.directory / self.meta.card if self.meta.card else None

    def verify(self) -> None:
        """Raise `BundleError` unless the weights file exists and matches its sha256."""
        if not self.weights_path.is_file():
            raise BundleError(f"bundle {self.meta.name}: weights {self.weights_path} missing")
        digest = sha256_file(self.weights_path)
        if digest != self.meta.sha256:
            raise BundleError(
                f"bundle {self.meta.name}: weights sha256 {digest} does not match the "
                f"sidecar's {self.meta.sha256}"
            )


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _sidecar_for(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        sidecars = sorted(path.glob("*.json"))
        if len(sidecars) != 1:
            raise BundleError(
                f"{path} holds {len(sidecars)} bundle sidecars; name the .json file instead"
            )
        return sidecars[0]
    if path.suffix == ".json":
        return path
    return path.with_suffix(".json")


def load_bundle(path: Path | str, verify: bool = True) -> Bundle:
    """Load a bundle from its sidecar, its weights file, or a directory holding one bundle.

    With `verify` (the default) the weights file's sha256 is checked against the sidecar.
    Raises `FileNotFoundError` when there is no sidecar, `BundleError` when it is wrong.
    """
    meta_path = _sidecar_for(Path(path))
    if not meta_path.is_file():
        raise FileNotFoundError(f"no model bundle sidecar at {meta_path}")
    try:
        data = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise BundleError(f"{meta_path} does not hold a JSON object")
    bundle = Bundle(meta=BundleMeta.from_dict(data), meta_path=meta_path)
    if verify:
        bundle.verify()
    return bundle


def save_bundle(
    meta: BundleMeta,
    weights: Path | str,
    directory: Path | str,
    card: Path | str | None = None,
) -> Bundle:
    """Write a bundle into `directory`: the weights as ``<name><suffix>`` (copied unless
    already there), the card as ``<name>.md`` if given, and the sidecar ``<name>.json``
    with `weights`, `sha256`, `card` and `created` filled in. Returns the loaded bundle.

    The sidecar is written last and atomically (temp file + rename), so a reader never sees
    a sidecar that points at a half-written weights file.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = Path(weights)
    target = directory / f"{meta.name}{meta.weights_suffix}"
    if weights.resolve() != target.resolve():
        shutil.copyfile(weights, target)
    card_name = None
    if card is not None:
        card_target = directory / f"{meta.name}.md"
        if Path(card).resolve() != card_target.resolve():
            shutil.copyfile(card, card_target)
        card_name = card_target.name
    data = meta.to_dict()
    data.update(
        weights=target.name,
        sha256=sha256_file(target),
        card=card_name,
        created=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    )
    final = BundleMeta.from_dict(data)  # validate what we are about to write
    meta_path = directory / f"{meta.name}.json"
    tmp = meta_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(final.to_dict(), indent=2, sort_keys=False) + "\n", "utf-8")
    tmp.replace(meta_path)
    return Bundle(meta=final, meta_path=meta_path)
