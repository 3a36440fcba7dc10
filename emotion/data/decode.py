"""Image bytes → pixels, upright as the photo's EXIF orientation says: OpenCV for every common format, pillow-heif for
the HEIC/HEIF photos of phones (iPhones save them by default; OpenCV cannot read them), Pillow for GIFs where the
installed OpenCV was built without its GIF reader (before 4.12). Training and serving both
decode here, so a face looks the same to both."""

from __future__ import annotations

import functools
import io
from typing import Any

import cv2
import numpy as np

#: extensions of the images this module reads (OpenCV's formats, and HEIC/HEIF)
IMAGE_EXTENSIONS = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".pgm",
    ".ppm",
    ".tif",
    ".tiff",
    ".webp",
    ".gif",
    ".avif",
    ".heic",
    ".heif",
}
_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"hevm", b"hevs", b"mif1", b"msf1"}


def is_heif(data: bytes) -> bool:
    """An ISO base media file whose brand is HEIF's (the file's own bytes, whatever its name says)."""
    return data[4:8] == b"ftyp" and data[8:12] in _HEIF_BRANDS


def decode(data: bytes) -> np.ndarray | None:
    """Gray ``H×W`` or BGR ``H×W×3`` (alpha dropped), 8- or 16-bit (or float, as stored), upright; None when the bytes
    are no image either library reads. ValueError for a HEIF photo where pillow-heif is missing."""
    if is_heif(data):
        return _decode_heif(data)
    # not IMREAD_UNCHANGED: it ignores the EXIF orientation; these flags keep 16 bits and drop an alpha channel
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_ANYCOLOR)
    if img is None and data[:4] == b"GIF8":  # an OpenCV without its GIF reader: Pillow's (an animation's 1st frame)
        return _from_pil(data)
    return img


def to_8bit(img: np.ndarray) -> np.ndarray:
    """A decoded image in 8 bits: 16-bit by its high byte, float (as stored) by its own range stretched to 0-255."""
    if img.dtype == np.uint16:
        return (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        return cv2.normalize(img.astype(np.float32), None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    return img


@functools.cache
def _heif_opener(pillow_heif: Any) -> None:
    pillow_heif.register_heif_opener()  # once: Pillow then opens HEIF files itself


def _decode_heif(data: bytes) -> np.ndarray | None:
    try:
        import pillow_heif
    except ImportError:
        raise ValueError(
            "a HEIC/HEIF photo (the iPhone's format), which needs pillow-heif: pip install pillow-heif, or convert it "
            "to JPEG"
        ) from None
    _heif_opener(pillow_heif)
    return _from_pil(data)


def _from_pil(data: bytes) -> np.ndarray | None:
    """Pillow's decoding of ``data`` as :func:`decode` returns it; None for a damaged file (as OpenCV says)."""
    from PIL import Image, ImageOps

    try:
        image = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
        if image.mode in ("L", "I;16"):
            return np.asarray(image)
        return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)
    except (OSError, ValueError, RuntimeError):
        return None
