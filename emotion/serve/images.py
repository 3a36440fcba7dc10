"""Images as users give them — a file path, a PIL image, an array in BGR or RGB order — turned into the BGR (or gray)
uint8 arrays the detectors and crops take, upright as their EXIF orientation says."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import cv2
import numpy as np

from emotion.data.decode import IMAGE_EXTENSIONS, decode, to_8bit

COLOUR_ORDERS = ("bgr", "rgb")
#: videos' extensions: not read as images, but pointed to the cam, which reads them frame by frame
VIDEO_EXTENSIONS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".wmv", ".mpg", ".mpeg", ".3gp"}
URL_SCHEMES = ("http://", "https://")
MAX_DOWNLOAD_MB = 50  # a photo, not a data set
DOWNLOAD_TIMEOUT_S = 30.0


def video_hint(path: Path | str) -> str:
    return f"a video: python -m emotion.cam --source {path} --headless --table faces.csv reads it frame by frame"


def images_in(folder: Path, recursive: bool = True) -> tuple[list[Path], list[Path]]:
    """A folder's image files (by extension; sorted) and its other files, which are not read (hidden ones such as
    ``.DS_Store`` left out of both)."""
    images: list[Path] = []
    others: list[Path] = []
    for f in sorted(folder.rglob("*") if recursive else folder.iterdir()):
        if f.name.startswith(".") or not f.is_file():
            continue
        (images if f.suffix.lower() in IMAGE_EXTENSIONS else others).append(f)
    return images, others


def not_read_note(others: list[Path], shown: int = 5) -> str:
    """One line naming a folder's files that were not read (no image's extension); a video is pointed to the cam."""
    names = [f"{f} ({video_hint(f)})" if f.suffix.lower() in VIDEO_EXTENSIONS else str(f) for f in others[:shown]]
    more = f" and {len(others) - shown} more" if len(others) > shown else ""
    count = f"{len(others)} file" + ("s" if len(others) > 1 else "")
    return f"not read: {count} without an image's extension: {', '.join(names)}{more}"


def is_url(source: object) -> bool:
    return isinstance(source, str) and source.lower().startswith(URL_SCHEMES)


def source_stem(source: Path | str) -> str:
    """A file's stem, or the last part of a URL's path (``…/photos/me.jpg?s=1`` → ``me``)."""
    return Path(urlsplit(source).path if is_url(source) else source).stem or "image"


def download(url: str, timeout: float = DOWNLOAD_TIMEOUT_S) -> bytes:
    """An http(s) URL's bytes (at most :data:`MAX_DOWNLOAD_MB`); ValueError saying why not: offline, no such host,
    an HTTP error, too large."""
    import http.client
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "emotion-predict (urllib)"})
    limit = MAX_DOWNLOAD_MB * 2**20
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            data = response.read(limit + 1)
    except urllib.error.HTTPError as exc:
        raise ValueError(f"download failed: HTTP {exc.code} {exc.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:  # offline, no such host, timed out
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise ValueError(
            f"could not download it ({reason}): check the address and the network, or download the image and give "
            "its file"
        ) from None
    if len(data) > limit:
        raise ValueError(f"larger than {MAX_DOWNLOAD_MB} MB: download it and give its file")
    return data


def read_image(source: Path | str) -> np.ndarray:
    """A colour or grayscale image file, or an http(s) URL's image, as uint8, turned upright as its EXIF orientation
    says (a phone's portrait photo is stored sideways with a tag); ValueError with the reason for a missing, empty
    or undecodable file or a failed download."""
    if is_url(source):
        try:
            url_path = urlsplit(source).path
        except ValueError as exc:  # "Invalid IPv6 URL"
            raise ValueError(f"not a valid URL ({exc})") from None
        if Path(url_path).suffix.lower() in VIDEO_EXTENSIONS:
            raise ValueError(video_hint(source))
        return decode_image(download(source))
    path = Path(source)
    if not path.exists():
        raise ValueError("no such file")
    if not path.is_file():
        raise ValueError("not a file")
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        raise ValueError(video_hint(path))
    return decode_image(path.read_bytes())


def decode_image(data: bytes) -> np.ndarray:
    """An image file's bytes → uint8 gray or BGR (alpha dropped), upright; ValueError if empty or undecodable."""
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


def float_to_8bit(array: np.ndarray) -> np.ndarray:
    """A float image in 0..1 (matplotlib's ``imread`` of a PNG, scikit-image) → uint8; other ranges are refused
    rather than guessed (0..255 floats would otherwise come out white)."""
    if array.size and not (np.isfinite(array).all() and array.min() >= 0 and array.max() <= 1):
        low, high = np.nanmin(array), np.nanmax(array)
        raise ValueError(
            f"a float image array must hold values in 0..1 (matplotlib, scikit-image); got {low:g}..{high:g}"
            + (" or NaN/inf" if not np.isfinite(array).all() else "")
            + ": divide by its maximum (255 for 8-bit values), or give uint8"
        )
    return (array * 255 + 0.5).astype(np.uint8)


def as_frame(image: Any, colour: str = "bgr") -> np.ndarray:
    """A path or http(s) URL, an image file's bytes or a binary file object, a PIL image or an array (``H×W`` gray,
    ``H×W×3`` in ``colour`` order, ``H×W×4`` with alpha; uint8, uint16 or float in 0..1) → a BGR or gray uint8 array.
    ``colour`` says how an array's channels are ordered: OpenCV gives BGR, PIL/matplotlib/imageio give RGB."""
    if colour not in COLOUR_ORDERS:
        raise ValueError(f"colour={colour!r}: give 'bgr' (OpenCV) or 'rgb' (PIL, matplotlib, imageio)")
    if isinstance(image, (str, Path)):
        try:
            return read_image(image)
        except ValueError as exc:  # the caller's file, named: it may be one of many
            raise ValueError(f"{image}: {exc}") from None
    if isinstance(image, io.TextIOBase):
        raise ValueError("a file opened in text mode: open it with 'rb'")
    if hasattr(image, "read"):  # a binary file: open(…, "rb"), BytesIO, a web upload
        image = image.read()
    if isinstance(image, (bytes, bytearray, memoryview)):  # an encoded image file's bytes (JPEG, PNG, HEIC, …)
        try:
            return decode_image(bytes(image))
        except ValueError as exc:
            raise ValueError(f"image bytes: {exc}") from None
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image: its own mode says what it holds
        from PIL import ImageOps

        image = ImageOps.exif_transpose(image)  # upright, as a file path is read (no tag: unchanged)
        rgb = np.asarray(image.convert("L" if image.mode in ("L", "I;16", "I") else "RGB"))
        return rgb if rgb.ndim == 2 else cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if image is None:  # cv2.imread's answer for a file it could not read
        raise ValueError("got None instead of an image (cv2.imread returns None for a file it cannot read)")
    array = np.asarray(image)
    if array.dtype == np.uint16:
        array = to_8bit(array)
    elif array.dtype.kind == "f":
        array = float_to_8bit(array)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise ValueError(
            "an image array must be uint8 (or uint16, or float in 0..1) H×W, H×W×3 or H×W×4; got "
            f"{array.dtype} {array.shape}"
        )
    if not array.size:
        raise ValueError(f"an empty image array (shape {array.shape})")
    if array.ndim == 3 and array.shape[2] == 1:
        return array[:, :, 0]
    if array.ndim == 3 and array.shape[2] == 4:
        array = cv2.cvtColor(array, cv2.COLOR_RGBA2BGR if colour == "rgb" else cv2.COLOR_BGRA2BGR)
    elif array.ndim == 3 and colour == "rgb":
        array = cv2.cvtColor(array, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(array)
