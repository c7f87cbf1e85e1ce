"""Preprocessing the labelled emotion set: report, exclusions, Korean names, YOLO labels,
class orders, seeded stratified sampling, atomic outputs. No training here."""

from __future__ import annotations

import csv
import json
import unicodedata
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from inference.labels import ORIGINAL_DETECTION_LABELS
from stream.contract import EMOTIONS
from tests._toy_dataset import KOREAN_NAME, make_toy_dataset
from training import dataset as ds
from training.cli import train_app
from training.dataset import (
    Box,
    DatasetError,
    average_boxes,
    decode_image,
    load_prepared,
    resolve_counts,
    scan_dataset,
    select,
    yolo_label_line,
)
from training.dataset import writing as writer  # the module whose write_prepared writes images
from training.preprocess import preprocess

TRAIN, VAL = 24, 8


@pytest.fixture(scope="module")
def toy(tmp_path_factory: pytest.TempPathFactory):
    return make_toy_dataset(tmp_path_factory.mktemp("toy") / "data", TRAIN, VAL, empty_class="pain")


@pytest.fixture(scope="module")
def prepared(toy, tmp_path_factory: pytest.TempPathFactory):
    return preprocess(toy.root, tmp_path_factory.mktemp("prep") / "out", crop_size=48)


def _report(prepared) -> dict:
    return json.loads((prepared.root / "report.json").read_text(encoding="utf-8"))


def _manifest(prepared) -> list[dict[str, str]]:
    with open(prepared.root / "manifest.csv", encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def test_report_counts_per_class_and_split(prepared) -> None:
    report = _report(prepared)
    rows = {(r["class"], r["split"]): r for r in report["per_class"]}
    # every seven-class row is there, the empty class with zeros
    assert {c for c, _ in rows} == set(EMOTIONS)
    assert rows[("pain", "train")]["images_found"] == 0
    # the planted extras: anger +1 (broken JSON), anxiety +1 (box outside),
    # embarrass +1 (clipped, kept), happy +2 (Korean name replaces one; truncated +1),
    # normal +1 (no boxes), sad +1 (no JSON) — and readme.txt is not counted as an image
    extra = {"anger": 1, "anxiety": 1, "embarrass": 1, "happy": 1, "normal": 1, "sad": 1}
    for emotion, n in extra.items():
        assert rows[(emotion, "train")]["images_found"] == TRAIN + n, emotion
        assert rows[(emotion, "validation")]["images_found"] == VAL
        assert rows[(emotion, "validation")]["usable"] == VAL
    assert rows[("embarrass", "train")]["usable"] == TRAIN + 1  # the clipped box is kept
    for emotion in ("anger", "anxiety", "happy", "normal", "sad"):
        assert rows[(emotion, "train")]["usable"] == TRAIN, emotion
        assert rows[(emotion, "train")]["images_excluded"] == 1, emotion
    assert report["totals"]["written"] == report["totals"]["usable"] == 6 * (TRAIN + VAL) + 1
    # every usable image was averaged from three annotators; one box clipped
    assert report["boxes"]["averaged"] == report["totals"]["usable"]
    assert report["boxes"]["by_annotator_count"] == {"3": report["totals"]["usable"]}
    assert report["boxes"]["clipped_to_image"] == 1
    assert 0.7 < report["boxes"]["mean_agreement_iou"] <= 1.0


def test_exclusions_reported_with_paths(toy, prepared) -> None:
    report = _report(prepared)
    assert report["exclusions_by_reason"] == {
        "bad_json": 1,
        "box_outside_image": 1,
        "missing_annotation": 2,
        "no_boxes": 1,
        "not_image": 1,
        "truncated": 1,
        "unknown_class": 1,
    }
    by_path = {x["path"]: x["reason"] for x in report["exclusions"]}

    def rel(key: str) -> str:
        return toy.planted[key].relative_to(toy.root).as_posix()

    assert by_path[rel("truncated")] == "truncated"
    assert by_path[rel("broken_json")] == "bad_json"
    assert by_path[rel("broken_json_image")] == "missing_annotation"
    assert by_path[rel("missing_json")] == "missing_annotation"
    assert by_path[rel("not_image")] == "not_image"
    assert by_path[rel("no_boxes")] == "no_boxes"
    assert by_path[rel("box_outside")] == "box_outside_image"
    assert by_path[rel("unknown_class")] == "unknown_class"
    # the same list, as CSV and in the Markdown report
    with open(prepared.root / "exclusions.csv", encoding="utf-8", newline="") as fh:
        assert {r["path"] for r in csv.DictReader(fh)} == set(by_path)
    md = (prepared.root / "report.md").read_text(encoding="utf-8")
    assert f"`{rel('truncated')}`" in md and "truncated" in md
    warnings = " ".join(report["warnings"])
    assert "'surprise'" in warnings and "'pain'" in warnings
    # no excluded image reached any output
    outputs = {Path(r["source"]).name for r in _manifest(prepared)}
    for key in ("truncated", "broken_json_image", "missing_json", "no_boxes", "box_outside"):
        assert toy.planted[key].name not in outputs, key


def test_korean_file_name_is_used(toy, prepared) -> None:
    rows = [r for r in _manifest(prepared) if KOREAN_NAME in r["source"]]
    assert len(rows) == 1
    row = rows[0]
    for key in ("crop", "image", "label"):
        path = prepared.root / row[key]
        assert path.is_file() and KOREAN_NAME in path.name
    crop = decode_image((prepared.root / row["crop"]).read_bytes())
    assert crop.shape == (48, 48, 3)  # square crop, long side 48
    # the yellow ring of "happy" is in the crop
    assert crop[..., 2].mean() > 100 and crop[..., 0].mean() < crop[..., 2].mean()


def test_yolo_labels_from_averaged_box_in_real_size(toy, prepared) -> None:
    rows = _manifest(prepared)
    detect_classes = prepared.detect_classes
    assert len(rows) > 100
    for row in rows:
        ann = json.loads((toy.root / row["annotation"]).read_text(encoding="utf-8"))
        boxes = [
            Box(*(float(ann[k]["boxes"][c]) for c in ("minX", "minY", "maxX", "maxY")))
            for k in ("annot_A", "annot_B", "annot_C")
        ]
        w, h = int(row["width"]), int(row["height"])
        src = cv2.imdecode(np.fromfile(toy.root / row["source"], np.uint8), cv2.IMREAD_COLOR)
        assert (w, h) == (src.shape[1], src.shape[0])
        mean = average_boxes(boxes).clipped(w, h)
        parts = (prepared.root / row["label"]).read_text(encoding="utf-8").split()
        assert detect_classes[int(parts[0])] == row["class"]
        expected = (
            (mean.x1 + mean.x2) / 2 / w,
            (mean.y1 + mean.y2) / 2 / h,
            mean.width / w,
            mean.height / h,
        )
        assert [float(v) for v in parts[1:]] == pytest.approx(expected, abs=2e-6)
        # the detection image is the source, unsquashed
        out = cv2.imdecode(np.fromfile(prepared.root / row["image"], np.uint8), cv2.IMREAD_COLOR)
        assert out.shape[:2] == (h, w)
    # the clipped box: (70, 20, 110, 60) in a 100×80 image → x2 clipped to 100
    clipped = next(r for r in rows if "embarrass_clipped" in r["source"])
    line = (prepared.root / clipped["label"]).read_text(encoding="utf-8").split()
    assert [float(v) for v in line[1:]] == pytest.approx([0.85, 0.5, 0.3, 0.5], abs=1e-6)


def test_yolo_label_line_math() -> None:
    # a non-square 200×100 image: normalised by each side, no squash
    line = yolo_label_line(3, Box(10, 20, 50, 60), 200, 100)
    assert line == "3 0.150000 0.400000 0.200000 0.400000"
    avg = average_boxes([Box(0, 0, 10, 10), Box(2, 2, 12, 12), Box(1, 4, 11, 14)])
    assert avg.as_tuple() == pytest.approx((1, 2, 11, 12))


def test_class_order_recorded_in_every_output(prepared) -> None:
    classes = sorted(e for e in EMOTIONS if e != "pain")
    detect = [e for e in ORIGINAL_DETECTION_LABELS if e != "pain"]
    meta = json.loads((prepared.root / "dataset.json").read_text(encoding="utf-8"))
    assert meta["classify"]["classes"] == classes and meta["classify"]["order"] == "alphabetical"
    assert meta["detect"]["classes"] == detect and meta["detect"]["order"] == "original"
    for variant in ("crop", "full"):
        text = (prepared.root / "classify" / variant / "classes.txt").read_text("utf-8")
        assert text.split() == classes
        for split in ("train", "val"):
            assert (
                sorted(p.name for p in (prepared.root / "classify" / variant / split).iterdir())
                == classes
            )
    assert (prepared.root / "detect" / "classes.txt").read_text("utf-8").split() == detect
    yaml_text = (prepared.root / "detect" / "data.yaml").read_text("utf-8")
    assert f"nc: {len(detect)}" in yaml_text
    for i, name in enumerate(detect):
        assert f"  {i}: {name}\n" in yaml_text
    report = _report(prepared)
    assert report["classes"] == classes and report["detect_classes"] == detect
    for row in _manifest(prepared):
        assert classes[int(row["class_index"])] == row["class"]
        assert detect[int(row["detect_class_index"])] == row["class"]


def test_detection_order_can_be_chosen(toy, tmp_path: Path) -> None:
    prepared = preprocess(
        toy.root,
        tmp_path / "out",
        detection_order="alphabetical",
        train_per_class=2,
        val_per_class=1,
        crop_size=32,
    )
    assert prepared.detect_classes == prepared.classes
    with pytest.raises(DatasetError, match="detection order"):
        preprocess(toy.root, tmp_path / "out2", detection_order="random")


def test_stratified_seeded_nested_sampling(toy, tmp_path: Path) -> None:
    scan = scan_dataset(toy.root)
    small, _ = select(scan.samples, toy.root, 5, 3, seed=7)
    large, _ = select(scan.samples, toy.root, 12, 6, seed=7)
    other, _ = select(scan.samples, toy.root, 5, 3, seed=8)
    again, _ = select(list(reversed(scan.samples)), toy.root, 5, 3, seed=7)
    for emotion in ("anger", "happy", "sad"):
        for split, n in (("train", 5), ("validation", 3)):
            pick = [s.image for s in small if (s.emotion, s.split) == (emotion, split)]
            assert len(pick) == n
            bigger = [s.image for s in large if (s.emotion, s.split) == (emotion, split)]
            assert bigger[:n] == pick  # a smaller draw is a prefix of a larger one
    assert [s.image for s in again] == [s.image for s in small]  # listing order is irrelevant
    assert {s.image for s in other} != {s.image for s in small}
    # asking for more than there is: everything, with a warning
    everything, warnings = select(scan.samples, toy.root, 1000, 300, seed=0)
    assert len(everything) == len(scan.samples)
    assert any("fewer than the 1000 asked for" in w for w in warnings)
    # written counts follow the request
    prepared = preprocess(
        toy.root, tmp_path / "out", train_per_class=5, val_per_class=3, seed=7, crop_size=32
    )
    assert all(c == {"train": 5, "val": 3} for c in prepared.meta["counts"].values())


def test_presets() -> None:
    assert resolve_counts("200/100", None, None) == (200, 100)
    assert resolve_counts("1000/300", None, None) == (1000, 300)
    assert resolve_counts("4000/1000", None, None) == (4000, 1000)
    assert resolve_counts("all", None, None) == (None, None)
    assert resolve_counts("200/100", 50, None) == (50, 100)
    with pytest.raises(DatasetError, match="unknown preset"):
        resolve_counts("10/10", None, None)


def test_truncated_jpeg_is_caught_by_full_decode(toy) -> None:
    with pytest.raises(ValueError, match="truncated"):
        decode_image(toy.planted["truncated"].read_bytes())
    whole = next(iter(toy.truth)).read_bytes()
    assert decode_image(whole).ndim == 3
    for cut in (len(whole) // 3, len(whole) - 2):
        with pytest.raises(ValueError, match="truncated"):
            decode_image(whole[:cut])
    with pytest.raises(ValueError, match="corrupt"):
        decode_image(b"not an image at all")
    png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))[1].tobytes()
    with pytest.raises(ValueError):
        decode_image(png[: len(png) // 2])


def test_interrupted_run_leaves_no_complete_looking_output(
    toy, tmp_path: Path, monkeypatch
) -> None:
    calls = {"n": 0}
    real = ds.write_image

    def flaky(path, image, quality=95):
        calls["n"] += 1
        if calls["n"] > 20:
            raise OSError("disk full")
        real(path, image, quality)

    monkeypatch.setattr(writer, "write_image", flaky)
    out = tmp_path / "out"
    with pytest.raises(OSError, match="disk full"):
        preprocess(toy.root, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary folder is gone too
    with pytest.raises(DatasetError, match=r"no dataset\.json"):
        load_prepared(out)
    monkeypatch.setattr(writer, "write_image", real)
    # an existing output is kept unless asked to overwrite
    preprocess(toy.root, out, train_per_class=2, val_per_class=1, crop_size=32)
    with pytest.raises(DatasetError, match="exists"):
        preprocess(toy.root, out)
    replaced = preprocess(
        toy.root, out, train_per_class=3, val_per_class=1, crop_size=32, overwrite=True
    )
    assert all(c["train"] == 3 for c in replaced.meta["counts"].values())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_unusable_inputs_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        scan_dataset(tmp_path / "missing")
    (tmp_path / "only_unknown" / "surprise" / "raw" / "train").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no class folder"):
        scan_dataset(tmp_path / "only_unknown")
    # a single class: no dataset to train on
    single = tmp_path / "single"
    toy = make_toy_dataset(single, 3, 2)
    for emotion in EMOTIONS:
        if emotion != "sad":
            for kind in ("labeled", "raw"):
                for p in sorted((toy.root / emotion / kind).rglob("*"), reverse=True):
                    p.unlink() if p.is_file() else p.rmdir()
    with pytest.raises(DatasetError, match="need at least 2"):
        preprocess(single, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_list_json_korean_folders_and_nfd_names(tmp_path: Path) -> None:
    """One JSON per split holding a list, Korean class folders, NFD file names on disk."""
    toy = make_toy_dataset(tmp_path / "src", 4, 2)
    root = tmp_path / "korean"
    for emotion, korean in (("happy", "기쁨"), ("sad", "슬픔")):
        for split in ("train", "validation"):
            records = []
            for ann in sorted((toy.root / emotion / "labeled" / split).glob("*.json")):
                try:
                    records.append(json.loads(ann.read_text("utf-8")))
                except json.JSONDecodeError:
                    continue
            dest = root / korean / "raw" / split
            dest.mkdir(parents=True)
            for img in sorted((toy.root / emotion / "raw" / split).glob("*.jpg")):
                nfd = unicodedata.normalize("NFD", f"{korean}_{img.name}")
                (dest / nfd).write_bytes(img.read_bytes())
            for r in records:
                r["filename"] = unicodedata.normalize("NFC", f"{korean}_{r['filename']}")
            lab = root / korean / "labeled" / split
            lab.mkdir(parents=True)
            (lab / f"{split}.json").write_text(json.dumps(records, ensure_ascii=False), "utf-8")
    scan = scan_dataset(root)
    assert scan.class_folders == {"기쁨": "happy", "슬픔": "sad"}
    counts = scan.usable()
    assert counts["happy"] == {"train": 4, "validation": 2}  # the truncated one is excluded
    assert counts["sad"] == {"train": 4, "validation": 2}


def test_cli_preprocess(toy, tmp_path: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(
        train_app,
        [
            "preprocess",
            str(toy.root),
            str(tmp_path / "out"),
            "--preset",
            "200/100",
            "--crop-size",
            "32",
            "--quiet",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "excluded truncated: 1" in result.output
    assert "fewer than the 200 asked for" in result.output
    bad = runner.invoke(train_app, ["preprocess", str(tmp_path / "nope"), str(tmp_path / "o2")])
    assert bad.exit_code == 2
    assert "error:" in bad.output and "not a folder" in bad.output


# ---------------------------------------------------------------------------- crop geometry


@pytest.mark.parametrize("square", [False, True])
@pytest.mark.parametrize("margin", [0.0, 0.15, 0.4])
@pytest.mark.parametrize(
    "box",
    [
        (120.0, 80.0, 260.0, 250.0),  # inside, taller than wide
        (0.0, 0.0, 90.5, 60.25),  # at the corner, fractional edges
        (-30.0, 300.0, 70.0, 520.0),  # partly outside (left and bottom)
        (560.0, 10.0, 700.0, 100.0),  # partly outside (right), wider than tall
    ],
)
def test_training_and_inference_cut_the_same_face_pixels(box, margin, square):
    from inference.bundle import BundleMeta, Preprocess
    from inference.emotion import CropPreprocessor

    rng = np.random.default_rng(3)
    frame = rng.integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    meta = BundleMeta(
        name="crop-check",
        task="classify",
        format="onnx",
        labels=tuple(EMOTIONS),
        input_size=(64, 64),
        channels=1,
        color="gray",
        preprocess=Preprocess(crop_margin=margin, square_crop=square),
        license="test",
    )
    runtime = CropPreprocessor(meta)
    trained_on = ds.crop_box(frame, ds.Box(*box), margin, square)
    assert np.array_equal(trained_on, runtime.face_pixels(frame, box))
    # and the model-sized input is exactly those pixels, resized and converted
    assert np.array_equal(runtime.crop_face(frame, box), runtime.fit_image(trained_on))
