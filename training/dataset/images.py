"""Image files: full decoding with truncation as an error (`decode_image`), writing by
suffix (`write_image`), face crops (`crop_box`: the vision worker's rule) and resizing.
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np

from inference.crop import crop_region
from inference.face import Box


def read_image_bytes(path: Path) -> bytes:
    return Path(path).read_bytes()


def decode_image(data: bytes) -> np.ndarray:
    """Fully decode image bytes into a BGR uint8 array, EXIF orientation applied.

    Raises `ValueError` (message starting ``truncated:`` or ``corrupt:``) on a file that
    does not decode completely: Pillow is told not to accept truncated data, and a JPEG
    must end with its EOI marker (a cut-off JPEG otherwise decodes with grey filler).
    """
    from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

    ImageFile.LOAD_TRUNCATED_IMAGES = False
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-1024:]:
        raise ValueError("truncated: JPEG without its end-of-image marker")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            transposed = ImageOps.exif_transpose(im)
            rgb = transposed.convert("RGB")
    except (UnidentifiedImageError, SyntaxError) as exc:
        raise ValueError(f"corrupt: {exc}") from exc
    except OSError as exc:
        kind = "truncated" if "truncated" in str(exc).lower() else "corrupt"
        raise ValueError(f"{kind}: {exc}") from exc
    except Exception as exc:  # Pillow raises a zoo of types on hostile files
        raise ValueError(f"corrupt: {type(exc).__name__}: {exc}") from exc
    arr = np.asarray(rgb)
    if arr.ndim != 3 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError("corrupt: empty image")
    return np.ascontiguousarray(arr[:, :, ::-1])


def load_image(path: Path) -> np.ndarray:
    """Decode the image at `path` (any file name, Korean included) as BGR uint8."""
    return decode_image(read_image_bytes(path))


def has_exif_rotation(data: bytes) -> bool:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.getexif().get(0x0112, 1) not in (1, None)
    except Exception:
        return False


def write_image(path: Path, image: np.ndarray, quality: int = 95) -> None:
    """Encode `image` (BGR) by the suffix of `path` and write it (non-ASCII paths work)."""
    ok, buf = cv2.imencode(path.suffix, image, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    if not ok:
        raise ValueError(f"cannot encode image for {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.tobytes())


def crop_box(image: np.ndarray, box: Box, margin: float = 0.0, square: bool = False) -> np.ndarray:
    """The pixels of `box` in `image`, grown by `margin` of its side on every side and
    made square around its centre with `square` (`inference.crop.crop_region`: the
    vision worker cuts its faces by the same rule)."""
    return crop_region(image, box.as_tuple(), margin, square)


def resize_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    h, w = image.shape[:2]
    if max(h, w) <= max_side:
        return image
    s = max_side / max(h, w)
    return cv2.resize(
        image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA
    )
