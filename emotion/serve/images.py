"""Images as users give them — a file path, a PIL image, an array in BGR or RGB order — turned into the BGR (or gray)
uint8 arrays the detectors and crops take, upright as their EXIF orientation says."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np

from emotion.data.decode import decode, to_8bit

COLOUR_ORDERS = ("bgr", "rgb")


def read_image(path: Path) -> np.ndarray:
    """A colour or grayscale image as uint8, turned upright as its EXIF orientation says (a phone's portrait photo is
    stored sideways with a tag); ValueError with the reason for a missing, empty or undecodable file."""
    if not path.exists():
        raise ValueError("no such file")
    if not path.is_file():
        raise ValueError("not a file")
    data = path.read_bytes()
    if not data:
        raise ValueError("empty file (0 bytes)")
    try:
        img = decode(data)
    except cv2.error:
        img = None
    if img is None:
        raise ValueError("not a readable image (damaged, or not an image format OpenCV or pillow-heif reads)")
    img = to_8bit(img)
    if img.ndim == 3 and img.shape[2] == 4:
        img = cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img


def as_frame(image: Any, colour: str = "bgr") -> np.ndarray:
    """A path, a PIL image or an array (``H×W`` gray, ``H×W×3`` in ``colour`` order, ``H×W×4`` with alpha; uint8 or
    uint16) → a BGR or gray uint8 array. ``colour`` says how an array's channels are ordered: OpenCV gives BGR,
    PIL/matplotlib/imageio give RGB."""
    if colour not in COLOUR_ORDERS:
        raise ValueError(f"colour={colour!r}: give 'bgr' (OpenCV) or 'rgb' (PIL, matplotlib, imageio)")
    if isinstance(image, (str, Path)):
        return read_image(Path(image))
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image: its own mode says what it holds
        from PIL import ImageOps

        image = ImageOps.exif_transpose(image)  # upright, as a file path is read (no tag: unchanged)
        rgb = np.asarray(image.convert("L" if image.mode in ("L", "I;16", "I") else "RGB"))
        return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    array = np.asarray(image)
    if array.dtype == np.uint16:
        array = to_8bit(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(
            f"an image array must be uint8 (or uint16) H×W, H×W×3 or H×W×4; got {array.dtype} {array.shape}"
        )
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGR if colour == "rgb" else cv2.COLOR_BGRA2BGR)
    elif array.ndim == 3 and colour == "rgb":
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(array)
