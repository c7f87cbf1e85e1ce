"""Synthetic camera frames of a real face (scikit-image's astronaut photo) that the vision
benchmark, the load harness (`deploy.load`) and the tests play."""

from __future__ import annotations

import cv2
import numpy as np


def face_frames(count: int, size: tuple[int, int] = (640, 480), quality: int = 80) -> list[bytes]:
    """`count` JPEG frames with one real face (scikit-image's astronaut photo), drifting a
    few pixels per frame so no two frames are identical."""
    try:
        from skimage import data
    except ImportError as exc:  # the dev extra brings it
        raise RuntimeError("the benchmark needs scikit-image (pip install intervue[dev])") from exc
    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    crop = astronaut[0:300, 100:380]  # head and shoulders
    width, height = size
    scale = 400 / crop.shape[0]
    face = cv2.resize(crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(count):
        canvas = np.full((height, width, 3), 90, np.uint8)
        dx = 100 + (i * 3) % 40
        dy = 40 + (i * 2) % 30
        fh, fw = min(face.shape[0], height - dy), min(face.shape[1], width - dx)
        canvas[dy : dy + fh, dx : dx + fw] = face[:fh, :fw]
        ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, quality])
        assert ok
        frames.append(buf.tobytes())
    return frames


def multi_face_frames(count: int) -> list[bytes]:
    """640×480 frames with four faces each (2×2 tiles, each face filling its 320×240 tile,
    drifting a few pixels per frame) for crop-heavy runs: the face detector finds all four
    (smaller faces in the tiles were found only ~1 time in 4)."""
    from skimage import data

    astronaut = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    face = astronaut[20:220, 140:320]  # the face with a little margin
    height = 230
    face = cv2.resize(face, (face.shape[1] * height // face.shape[0], height))
    frames = []
    for i in range(max(8, count // 8)):
        tiles = []
        for k in range(4):
            tile = np.full((240, 320, 3), 90, np.uint8)
            x = (320 - face.shape[1]) // 2 + ((i + k) % 3) * 4 - 4
            tile[5 : 5 + height, x : x + face.shape[1]] = face
            tiles.append(tile)
        canvas = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:])])
        _ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 80])
        frames.append(buf.tobytes())
    return frames
