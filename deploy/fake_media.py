"""Deterministic test media: fake-camera Y4M videos and fake-microphone WAV files.

The files are what headless Chromium plays through ``--use-file-for-fake-video-capture``
and ``--use-file-for-fake-audio-capture`` (see ``deploy/browser.py``):

* ``make_face_y4m``: the real face photo that scikit-image ships (``skimage.data.astronaut``),
  cropped around the face, scaled so the face is ~45 % of the frame height (216 px at 480p),
  drifting a few pixels per frame along a closed path (the clip loops without a jump).
* ``make_noface_y4m``: a faceless scene (``skimage.data.rocket``: a launch pad under a blue
  sky, on which OpenCV's Haar face cascades find nothing; ``coffee`` gives occasional false
  positives) panned the same way.
* ``make_speech_wav``: espeak-ng speech (any espeak-ng voice: ``en-us``, ``ko``, ...) converted
  by sox to 16-bit PCM at 48 kHz (Chromium's fake audio source resamples anything it can parse,
  but 16-bit PCM at 48 kHz is what it captures at anyway).
* ``make_silence_wav``: digital silence in the same format.

Every ``make_*`` function takes ``path``, either a file path or an existing directory. For a
directory the file name is derived from the arguments (``face-640x480-15fps-4s-<hash>.y4m``).
The arguments (plus a generator version) are recorded in a ``<file>.args.json`` sidecar, and a
second call with the same arguments returns the cached file without regenerating it. Files are
written to a temporary name and renamed into place, so concurrent test processes are safe.

No pytest imports here: benchmarks reuse these generators.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import cv2
import numpy as np

# Bump when the output of a generator changes for the same arguments (invalidates caches).
GENERATOR_VERSION = 1

# Where the face is in skimage.data.astronaut() (512x512): OpenCV's frontal-face Haar cascade
# finds it at x=177, y=66, w=95, h=95 (a box from the brows to below the mouth).
ASTRONAUT_FACE_BOX = (177, 66, 95, 95)

Y4M_MAGIC = b"YUV4MPEG2"


# --------------------------------------------------------------------------------------------
# caching


def _cached(
    path: str | os.PathLike[str],
    stem: str,
    suffix: str,
    params: dict[str, Any],
    write: Callable[[Path], None],
) -> Path:
    """Return ``path`` (or a derived name inside the directory ``path``), writing it with
    ``write(tmp_path)`` unless a file made from the same ``params`` is already there."""
    record = {"generator": stem, "version": GENERATOR_VERSION, **params}
    blob = json.dumps(record, sort_keys=True, ensure_ascii=False)
    key = hashlib.sha256(blob.encode()).hexdigest()[:12]
    target = Path(path)
    if target.is_dir():
        target = target / f"{_describe(stem, params)}-{key}{suffix}"
    sidecar = target.with_name(target.name + ".args.json")
    if target.is_file() and sidecar.is_file():
        try:
            if json.loads(sidecar.read_text()) == json.loads(blob):
                return target
        except (OSError, ValueError):
            pass
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    sidecar_tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}")
    sidecar_tmp.write_text(blob)
    os.replace(sidecar_tmp, sidecar)
    return target


def _describe(stem: str, params: dict[str, Any]) -> str:
    parts = [stem]
    if "size" in params:
        parts.append("{}x{}".format(*params["size"]))
    if "fps" in params:
        parts.append(f"{_num(params['fps'])}fps")
    if "seconds" in params:
        parts.append(f"{_num(params['seconds'])}s")
    if params.get("scene", "rocket") != "rocket":
        parts.append(str(params["scene"]))
    if "voice" in params:
        parts.append(re.sub(r"[^A-Za-z0-9_.-]", "_", str(params["voice"])))
    if "sample_rate" in params:
        parts.append(f"{params['sample_rate']}hz")
    return "-".join(parts)


def _num(value: float | str) -> str:
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:g}"


# --------------------------------------------------------------------------------------------
# Y4M writing and reading


def _fps_fraction(fps: float) -> Fraction:
    frac = Fraction(fps).limit_denominator(1001)
    if frac <= 0:
        raise ValueError(f"fps must be positive, got {fps!r}")
    return frac


def _check_size(size: tuple[int, int]) -> tuple[int, int]:
    width, height = int(size[0]), int(size[1])
    if width < 16 or height < 16 or width % 2 or height % 2:
        raise ValueError(f"size must be even and at least 16x16 for 4:2:0 video, got {size!r}")
    return width, height


def write_y4m(path: Path, frames: Iterator[np.ndarray], size: tuple[int, int], fps: float) -> int:
    """Write RGB uint8 frames (H, W, 3) as 4:2:0 YUV4MPEG2 (``C420jpeg``, progressive).

    The RGB -> YUV conversion is OpenCV's ``COLOR_RGB2YUV_I420`` (BT.601, limited range), which
    is how Chromium interprets frames from a fake-capture file. Returns the frame count."""
    width, height = size
    rate = _fps_fraction(fps)
    count = 0
    with open(path, "wb") as out:
        header = (
            f"YUV4MPEG2 W{width} H{height} F{rate.numerator}:{rate.denominator} Ip A1:1 C420jpeg\n"
        )
        out.write(header.encode("ascii"))
        for rgb in frames:
            if rgb.shape != (height, width, 3) or rgb.dtype != np.uint8:
                raise ValueError(
                    f"frame {count} is {rgb.shape} {rgb.dtype}, want {height}x{width}x3 uint8"
                )
            yuv = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420)
            out.write(b"FRAME\n")
            out.write(yuv.tobytes())
            count += 1
    if count == 0:
        raise ValueError("no frames to write")
    return count


@dataclass(frozen=True)
class Y4MInfo:
    width: int
    height: int
    fps: Fraction
    colorspace: str
    frames: int
    header: str

    @property
    def seconds(self) -> float:
        return self.frames / float(self.fps)


def _parse_y4m_header(line: bytes) -> tuple[int, int, Fraction, str]:
    tokens = line.decode("ascii").split()
    if not tokens or tokens[0].encode() != Y4M_MAGIC:
        raise ValueError("not a YUV4MPEG2 file")
    width = height = 0
    fps = Fraction(25)
    colorspace = "420jpeg"  # the YUV4MPEG2 default
    for token in tokens[1:]:
        tag, value = token[0], token[1:]
        if tag == "W":
            width = int(value)
        elif tag == "H":
            height = int(value)
        elif tag == "F":
            num, den = value.split(":")
            fps = Fraction(int(num), int(den))
        elif tag == "C":
            colorspace = value
    if not colorspace.startswith("420"):
        raise ValueError(f"only 4:2:0 Y4M is supported here, got C{colorspace}")
    return width, height, fps, colorspace


def read_y4m(path: str | os.PathLike[str]) -> tuple[Y4MInfo, Iterator[np.ndarray]]:
    """Parse a 4:2:0 Y4M file; returns its info and an iterator of RGB uint8 frames."""
    data = Path(path).read_bytes()
    end = data.index(b"\n")
    header = data[:end]
    width, height, fps, colorspace = _parse_y4m_header(header)
    frame_bytes = width * height * 3 // 2
    offsets = []
    pos = end + 1
    while pos < len(data):
        nl = data.index(b"\n", pos)
        if not data[pos:nl].startswith(b"FRAME"):
            raise ValueError(f"bad frame marker at byte {pos}")
        if nl + 1 + frame_bytes > len(data):
            raise ValueError(f"truncated frame at byte {pos}")
        offsets.append(nl + 1)
        pos = nl + 1 + frame_bytes
    info = Y4MInfo(width, height, fps, colorspace, len(offsets), header.decode("ascii"))

    def frames() -> Iterator[np.ndarray]:
        for off in offsets:
            yuv = np.frombuffer(data, np.uint8, frame_bytes, off).reshape(height * 3 // 2, width)
            yield cv2.cvtColor(yuv, cv2.COLOR_YUV2RGB_I420)

    return info, frames()


def y4m_info(path: str | os.PathLike[str]) -> Y4MInfo:
    return read_y4m(path)[0]


def y4m_frame(path: str | os.PathLike[str], index: int = 0) -> np.ndarray:
    """One decoded RGB frame of a Y4M file."""
    info, frames = read_y4m(path)
    if not 0 <= index < info.frames:
        raise IndexError(f"frame {index} out of range (0..{info.frames - 1})")
    for i, frame in enumerate(frames):
        if i == index:
            return frame
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# video generators


def _drift(i: int, n: int, amplitude: tuple[float, float]) -> tuple[float, float]:
    """A closed Lissajous path: frame n wraps to frame 0, so a looping clip has no jump."""
    phase = 2.0 * math.pi * i / n
    return amplitude[0] * math.sin(phase), amplitude[1] * math.sin(2.0 * phase)


def _frame_count(seconds: float, fps: float) -> int:
    n = round(seconds * float(_fps_fraction(fps)))
    if n < 1:
        raise ValueError(f"seconds={seconds!r} at fps={fps!r} gives no frames")
    return n


def face_geometry(size: tuple[int, int] = (640, 480), face_fraction: float = 0.45):
    """(scale, face centre in the output frame) used by ``make_face_y4m``."""
    width, height = size
    scale = face_fraction * height / ASTRONAUT_FACE_BOX[3]
    return scale, (width / 2.0, height * 0.45)


def make_face_y4m(
    path: str | os.PathLike[str],
    seconds: float = 4.0,
    fps: float = 15,
    size: tuple[int, int] = (640, 480),
    *,
    face_fraction: float = 0.45,
    drift_px: tuple[float, float] = (14.0, 6.0),
) -> Path:
    """A Y4M of the astronaut's face, large and frontal, drifting slightly.

    ``face_fraction`` is the face box height over the frame height (0.45 -> 216 px at 480p);
    ``drift_px`` the horizontal/vertical drift amplitude (default: up to ~3 px per frame at
    15 fps over a 4 s clip)."""
    width, height = _check_size(size)
    n = _frame_count(seconds, fps)
    params = {
        "seconds": seconds,
        "fps": fps,
        "size": [width, height],
        "face_fraction": face_fraction,
        "drift_px": list(drift_px),
    }

    def write(tmp: Path) -> None:
        from skimage import data as skdata

        src = skdata.astronaut()  # RGB uint8, 512x512
        fx, fy, fw, fh = ASTRONAUT_FACE_BOX
        cx, cy = fx + fw / 2.0, fy + fh / 2.0
        scale, (ox, oy) = face_geometry((width, height), face_fraction)

        def frames() -> Iterator[np.ndarray]:
            for i in range(n):
                dx, dy = _drift(i, n, drift_px)
                # dst = scale * (src - face_centre) + output_centre + drift
                m = np.array(
                    [[scale, 0.0, ox + dx - scale * cx], [0.0, scale, oy + dy - scale * cy]],
                    dtype=np.float64,
                )
                yield cv2.warpAffine(
                    src, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
                )

        write_y4m(tmp, frames(), (width, height), fps)

    return _cached(path, "face", ".y4m", params, write)


def make_noface_y4m(
    path: str | os.PathLike[str],
    seconds: float = 4.0,
    fps: float = 15,
    size: tuple[int, int] = (640, 480),
    *,
    drift_px: tuple[float, float] = (14.0, 6.0),
    scene: str = "rocket",
) -> Path:
    """A Y4M of a faceless scene, panning slightly.

    ``scene`` names an RGB image in ``skimage.data``: ``rocket`` (default), ``coffee``,
    ``hubble_deep_field``, ``colorwheel``..."""
    width, height = _check_size(size)
    n = _frame_count(seconds, fps)
    params = {
        "seconds": seconds,
        "fps": fps,
        "size": [width, height],
        "drift_px": list(drift_px),
        "scene": scene,
    }

    def write(tmp: Path) -> None:
        from skimage import data as skdata

        src = np.ascontiguousarray(getattr(skdata, scene)()[..., :3])
        if src.ndim != 3 or src.dtype != np.uint8:
            raise ValueError(f"skimage.data.{scene} is not an RGB uint8 image")
        sh, sw = src.shape[:2]
        # cover the frame with margin for the drift
        scale = max((width + 4 * drift_px[0]) / sw, (height + 4 * drift_px[1]) / sh)

        def frames() -> Iterator[np.ndarray]:
            for i in range(n):
                dx, dy = _drift(i, n, drift_px)
                m = np.array(
                    [
                        [scale, 0.0, width / 2.0 + dx - scale * sw / 2.0],
                        [0.0, scale, height / 2.0 + dy - scale * sh / 2.0],
                    ],
                    dtype=np.float64,
                )
                yield cv2.warpAffine(
                    src, m, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
                )

        write_y4m(tmp, frames(), (width, height), fps)

    return _cached(path, "noface", ".y4m", params, write)


# --------------------------------------------------------------------------------------------
# audio generators


@dataclass(frozen=True)
class WavInfo:
    sample_rate: int
    channels: int
    sample_width: int  # bytes
    frames: int

    @property
    def seconds(self) -> float:
        return self.frames / self.sample_rate


def wav_info(path: str | os.PathLike[str]) -> WavInfo:
    with wave.open(str(path), "rb") as w:
        return WavInfo(w.getframerate(), w.getnchannels(), w.getsampwidth(), w.getnframes())


def read_wav(path: str | os.PathLike[str]) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV -> (int16 array shaped (frames, channels), sample rate)."""
    with wave.open(str(path), "rb") as w:
        if w.getsampwidth() != 2:
            raise ValueError(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        raw = w.readframes(w.getnframes())
        return np.frombuffer(raw, "<i2").reshape(-1, w.getnchannels()), w.getframerate()


def _require(binary: str) -> str:
    exe = shutil.which(binary)
    if exe is None:
        raise RuntimeError(f"{binary} is not installed (apt-get install {binary})")
    return exe


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0 or "error" in proc.stderr.lower():
        raise RuntimeError(f"{Path(cmd[0]).name} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


_VOICES: set[str] | None = None


def espeak_voices() -> set[str]:
    """Lower-case names espeak-ng accepts for ``-v``: languages, voice names, voice files."""
    global _VOICES
    if _VOICES is None:
        names: set[str] = set()
        for line in _run([_require("espeak-ng"), "--voices"]).splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 5:
                names.update(c.lower() for c in cols[1:2] + cols[3:5])
                names.add(cols[4].rsplit("/", 1)[-1].lower())
                names.update(m.lower() for m in re.findall(r"\(([\w-]+) \d+\)", line))
        _VOICES = names
    return _VOICES


def _check_voice(voice: str) -> None:
    # espeak-ng falls back to its default voice, exit status 0, for a name it does not know
    if voice.split("+", 1)[0].lower() not in espeak_voices():
        raise ValueError(f"espeak-ng has no voice {voice!r} (see `espeak-ng --voices`)")


def _espeak_wav(raw: Path, text: str, voice: str, rate_wpm: int) -> None:
    """The one place espeak-ng runs: `text` (passed as a UTF-8 file, so Hangul survives any
    locale) spoken by `voice` into `raw`, a 22050 Hz mono 16-bit WAV."""
    _check_voice(voice)
    text_file = raw.with_suffix(".txt")
    text_file.write_text(text, encoding="utf-8")
    _run([_require("espeak-ng"), "-v", voice, "-s", str(int(rate_wpm)), "-b", "1",
          "-w", str(raw), "-f", str(text_file)])  # fmt: skip
    if wav_info(raw).frames == 0:
        raise RuntimeError(f"espeak-ng produced no audio for voice {voice!r}")


def espeak_samples(
    text: str, voice: str = "en-us", rate_wpm: int = 150, sample_rate: int = 16_000
) -> np.ndarray:
    """`text` spoken by espeak-ng as mono int16 samples at `sample_rate` (not cached; for
    harnesses that hold audio in memory rather than in a file for Chromium)."""
    from stream.audio import resample_to_16k_mono

    with tempfile.TemporaryDirectory(prefix="intervue-tts-") as work:
        raw = Path(work, "espeak.wav")
        _espeak_wav(raw, text, voice, rate_wpm)
        samples, rate = read_wav(raw)
    return resample_to_16k_mono(samples, rate, samples.shape[1], target_rate=sample_rate)


def make_speech_wav(
    path: str | os.PathLike[str],
    text: str,
    voice: str = "en-us",
    rate_wpm: int = 150,
    sample_rate: int = 48000,
    *,
    channels: int = 1,
    lead_silence: float = 0.0,
    trail_silence: float = 0.0,
) -> Path:
    """Speech from ``espeak-ng -v VOICE -s RATE`` as 16-bit PCM WAV at ``sample_rate``.

    Works for any installed espeak-ng voice, e.g. ``en-us`` or ``ko`` (text is passed as UTF-8).
    ``lead_silence``/``trail_silence`` pad the clip with digital silence (seconds)."""
    if not text.strip():
        raise ValueError("text is empty; use make_silence_wav for silence")
    if channels not in (1, 2):
        raise ValueError("channels must be 1 or 2")
    params = {
        "text": text,
        "voice": voice,
        "rate_wpm": int(rate_wpm),
        "sample_rate": int(sample_rate),
        "channels": channels,
        "lead_silence": float(lead_silence),
        "trail_silence": float(trail_silence),
    }

    _check_voice(voice)

    def write(tmp: Path) -> None:
        sox = _require("sox")
        with tempfile.TemporaryDirectory(prefix="intervue-tts-") as work:
            raw = Path(work, "espeak.wav")
            _espeak_wav(raw, text, voice, rate_wpm)
            # -D: no dither (dither is random noise; keep the output byte-for-byte repeatable)
            cmd = [sox, "-V1", "-D", str(raw), "-r", str(int(sample_rate)), "-c", str(channels),
                   "-b", "16", "-e", "signed-integer", "-t", "wav", str(tmp)]  # fmt: skip
            if lead_silence > 0 or trail_silence > 0:
                cmd += ["pad", f"{lead_silence:g}", f"{trail_silence:g}"]
            _run(cmd)

    return _cached(path, "speech", ".wav", params, write)


def make_silence_wav(
    path: str | os.PathLike[str],
    seconds: float,
    sample_rate: int = 48000,
    *,
    channels: int = 1,
) -> Path:
    """Digital silence, 16-bit PCM WAV."""
    frames = round(seconds * sample_rate)
    if frames < 1:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    params = {"seconds": seconds, "sample_rate": int(sample_rate), "channels": channels}

    def write(tmp: Path) -> None:
        with wave.open(str(tmp), "wb") as w:
            w.setnchannels(channels)
            w.setsampwidth(2)
            w.setframerate(int(sample_rate))
            w.writeframes(bytes(2 * channels * frames))

    return _cached(path, "silence", ".wav", params, write)


def make_answer_wav(
    path: str | os.PathLike[str],
    sentences: list[str],
    pauses: list[float],
    voice: str = "en-us",
    rate_wpm: int = 150,
    sample_rate: int = 48000,
    *,
    lead_silence: float = 0.0,
    trail_silence: float = 0.0,
) -> Path:
    """A spoken answer as a person gives one: espeak-ng sentences with a thinking pause
    after each (``pauses[i]`` seconds of digital silence after ``sentences[i]``; the last
    sentence is followed by ``trail_silence``), 16-bit PCM mono WAV."""
    if len(pauses) != len(sentences) - 1:
        raise ValueError("one pause between each two sentences")
    params = {
        "sentences": list(sentences),
        "pauses": [float(p) for p in pauses],
        "voice": voice,
        "rate_wpm": int(rate_wpm),
        "sample_rate": int(sample_rate),
        "lead_silence": float(lead_silence),
        "trail_silence": float(trail_silence),
    }

    def write(tmp: Path) -> None:
        with tempfile.TemporaryDirectory(prefix="intervue-answer-") as work:
            chunks = [np.zeros(round(lead_silence * sample_rate), np.int16)]
            gaps = [*pauses, trail_silence]
            for text, gap in zip(sentences, gaps, strict=True):
                clip = make_speech_wav(work, text, voice, rate_wpm, sample_rate)
                with wave.open(str(clip), "rb") as source:
                    frames = source.readframes(source.getnframes())
                chunks.append(np.frombuffer(frames, np.int16))
                chunks.append(np.zeros(round(gap * sample_rate), np.int16))
            samples = np.concatenate(chunks)
            with wave.open(str(tmp), "wb") as out:
                out.setnchannels(1)
                out.setsampwidth(2)
                out.setframerate(sample_rate)
                out.writeframes(samples.tobytes())

    return _cached(path, "answer", ".wav", params, write)
