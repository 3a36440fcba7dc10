"""Face detection and face crops.

Two detectors, both offline: OpenCV's YuNet (:class:`YuNetDetector`, the default: its 232 KB ONNX weights ship in
``emotion/weights/``, MIT licence in ``YUNET_LICENSE.txt``) and the Haar cascade shipped inside opencv-python 4.x
(:class:`FaceDetector`). YuNet also gives five landmarks per face, which :func:`crop_faces` uses to cut each face
the way FER2013's faces are framed (:data:`FER_LANDMARKS`): eyes level, at the place and distance they have in the
training faces. Without landmarks (Haar) a square around the box is cut.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from emotion.data.sources import to_gray_square
from emotion.serve.face_check import FaceCheck

CASCADE = "haarcascade_frontalface_default.xml"
YUNET = Path(__file__).resolve().parents[1] / "weights" / "face_detection_yunet_2023mar.onnx"
#: Where YuNet's five landmarks (the eye on the image's left, the other eye, nose tip, mouth corners left and right)
#: lie in FER2013's 48x48 training faces: the median over training faces placed into scenes and found again
#: (``experiments/faces_in_the_field/fit_template.py``). Aligned crops map detected landmarks onto these.
FER_LANDMARKS = np.array([[15.72, 19.05], [32.15, 18.77], [24.24, 27.89], [17.52, 35.42], [30.79, 35.28]], np.float32)
#: How much closer than :data:`FER_LANDMARKS` the classifier's crops are cut (about the crop's centre). The template
#: is FER2013's median framing, but one face's own framing scatters about it (its scale by ±20%: two thirds of the
#: faces cut from their landmarks come out smaller than the original), while training shows faces only as close as
#: the original or closer (``augment.scale``: 80–100% of the area, a zoom of 1.0–1.12). Chosen on training faces
#: (``experiments/faces_in_the_field/own_framing.py``). The face check keeps the template (it was trained on it).
CROP_ZOOM = 1.1


class StreamDetector(Protocol):
    """What the cam needs of a detector: each frame's boxes ``N×4`` and landmarks (``N×5×2``, or None for a
    detector without them), frames in order, and a fresh start for a new stream."""

    def reset(self) -> None: ...

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]: ...


@dataclass
class FaceDetector:
    """Detects faces on a copy of the frame downscaled to ``detect_width`` pixels (boxes in full-frame pixels)."""

    scale_factor: float = 1.1
    min_neighbors: int = 5
    min_size: int = 24  # pixels in the downscaled frame
    detect_width: int = 320
    min_face: int = 0  # smallest face to look for, in full-frame pixels (larger = fewer scales = faster)
    track_size: int = 48  # a followed face is re-found in a window scaled so that it is about this wide

    def __post_init__(self) -> None:
        path = Path(cv2.data.haarcascades) / CASCADE
        self.cascade = cv2.CascadeClassifier(str(path))
        if self.cascade.empty():
            raise RuntimeError(f"could not load {path}; reinstall opencv-python>=4.10,<5 (5.0 dropped the cascades)")

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Boxes ``N×4`` as (x, y, w, h), largest first."""
        gray = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
        scale = min(1.0, self.detect_width / gray.shape[1]) if self.detect_width else 1.0
        small = cv2.resize(gray, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else gray
        min_size = max(self.min_size, round(self.min_face * scale))
        boxes = self.cascade.detectMultiScale(
            small, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors, minSize=(min_size, min_size)
        )
        if len(boxes) == 0:
            return np.zeros((0, 4), np.int32)
        boxes = np.round(np.asarray(boxes, np.float64) / scale).astype(np.int32)
        return boxes[np.argsort(-boxes[:, 2] * boxes[:, 3])]

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, None]:
        """Boxes, largest first, and no landmarks (the cascade has none)."""
        return self(frame), None

    def refind(
        self, frame: np.ndarray, box: np.ndarray, landmarks: None = None, search: float = 0.5
    ) -> tuple[np.ndarray, None] | None:
        """The face last seen at ``box``, searched for in a window ``search`` box widths around it, scaled so the
        face is ~``track_size`` px, over a few scales only; None when it is not there."""
        x, y, w, h = (int(v) for v in box)
        pad = int(round(search * max(w, h)))
        x0, y0 = max(0, x - pad), max(0, y - pad)
        x1, y1 = min(frame.shape[1], x + w + pad), min(frame.shape[0], y + h + pad)
        if x1 - x0 < 8 or y1 - y0 < 8:
            return None
        window = frame[y0:y1, x0:x1]
        scale = self.track_size / max(w, h)
        window = cv2.resize(
            window if window.ndim == 2 else cv2.cvtColor(window, cv2.COLOR_BGR2GRAY),
            None,
            fx=scale,
            fy=scale,
            interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR,
        )
        lo, hi = int(self.track_size * 0.7), int(self.track_size * 1.45)
        boxes = self.cascade.detectMultiScale(window, 1.1, 3, minSize=(lo, lo), maxSize=(hi, hi))
        if len(boxes) == 0:
            return None
        cx, cy = (x + w / 2 - x0) * scale, (y + h / 2 - y0) * scale
        bx, by, bw, bh = min(boxes, key=lambda b: (b[0] + b[2] / 2 - cx) ** 2 + (b[1] + b[3] / 2 - cy) ** 2)
        found = np.round(np.array([x0 + bx / scale, y0 + by / scale, bw / scale, bh / scale])).astype(np.int32)
        return found, None


@dataclass
class YuNetDetector:
    """OpenCV's YuNet (``cv2.FaceDetectorYN``) on a copy of the frame downscaled to ``detect_width`` pixels, and on
    copies turned by each of ``rotations`` (degrees; a face tilted by 35° is found far more often on a copy turned
    towards upright); five landmarks per face. ``min_face`` (full-frame pixels) drops smaller faces, and where the
    ``detect_width`` copy shows a face of that size narrower than :data:`FINDABLE_PX`, a finer copy is searched too
    (upright: the small faces of a large group photo).

    A small or tilted face that YuNet scores weakly on the whole frame is often scored confidently when looked at
    closer: with ``recheck`` > 0, up to that many of a frame's detections scoring from ``recheck_from`` to
    ``score_threshold`` are searched again in a window around them, enlarged so that the face is ``recheck_size`` px
    wide (at most 5x: a tinier box is no face worth a closer look) and turned by each of ``recheck_rotations``
    (default: ``rotations``); a face scoring ``recheck_score`` there is kept. Weak detections centred inside a
    confident one are parts of a face already found and are not looked at. With ``check`` > 0, a detection is
    kept only if the face check (:class:`~emotion.serve.face_check.FaceCheck`) gives its aligned crop that P(face).

    With ``sure_check`` > 0 (and the check on) the face check also lets in faces under those levels when it gives
    them P(face) ``sure_check`` (or ``check``, if higher): a whole-frame detection scoring from ``sure_score``, or a
    closer look's best detection scoring from ``sure_look`` (a face YuNet sees faintly, its crop clearly a face)."""

    score_threshold: float = 0.6
    nms_threshold: float = 0.3
    detect_width: int = 640
    min_face: int = 0
    rotations: tuple[float, ...] = (0.0,)  # also search the frame turned by these angles (for tilted faces)
    track_size: int = 64  # a followed face is re-found in a window scaled so that it is about this wide
    recheck: int = 0  # weak detections looked at again, closer, per frame (0: none)
    recheck_from: float = 0.1  # the weakest score looked at again
    recheck_size: int = 160  # face width in the closer look's window, pixels
    recheck_score: float = 0.7  # the score a face needs in the closer look
    recheck_rotations: tuple[float, ...] | None = None  # the closer look's turns (None: ``rotations``)
    check: float = 0.0  # P(face) the face check must give a detection's aligned crop (0: no check)
    sure_check: float = 0.0  # P(face) that lets in a face scoring under the levels above (0: none does)
    sure_score: float = 0.0  # ... a whole-frame detection scoring from this
    sure_look: float = 0.0  # ... a closer look's best detection scoring from this

    def __post_init__(self) -> None:
        if not YUNET.is_file():
            raise RuntimeError(f"{YUNET} is missing; reinstall the emotion package (it ships the YuNet weights)")
        if self.recheck and not 0 < self.recheck_from < self.score_threshold <= self.recheck_score:
            raise ValueError(
                f"recheck_from={self.recheck_from}, score_threshold={self.score_threshold} and recheck_score="
                f"{self.recheck_score} must rise in that order (from above 0): a closer look is for weak detections"
            )
        if not 0 <= self.check < 1:
            raise ValueError(f"check={self.check}: give the P(face) a detection needs, from 0 (no check) to under 1")
        if not 0 <= self.sure_check < 1:
            raise ValueError(f"sure_check={self.sure_check}: give a P(face) from 0 (none let in) to under 1")
        # the face check's surer level lets in weaker faces; without a check there is nothing to be sure by
        self._sure_level = max(self.sure_check, self.check) if self.sure_check and self.check else None
        if self._sure_level and not (
            0 < self.sure_score < self.score_threshold
            and (not self.recheck or self.recheck_from <= self.sure_score)
            and 0 < self.sure_look < self.recheck_score
        ):
            raise ValueError(
                f"sure_score={self.sure_score} and sure_look={self.sure_look} let in faces under the levels: give "
                f"sure_score under score_threshold={self.score_threshold} (from recheck_from={self.recheck_from} "
                f"with closer looks) and sure_look from above 0 to under recheck_score={self.recheck_score}"
            )
        self._face_check = FaceCheck() if self.check else None
        floor = self.recheck_from if self.recheck else self.sure_score if self._sure_level else self.score_threshold
        self.net = self._net(floor)
        # a second net for windows (resizing an input costs ~1 ms), down to the closer look's lowest acceptance
        self._window_net = self._net(
            min(self.score_threshold, self.sure_look) if self._sure_level else self.score_threshold
        )
        self._sizes: dict[int, tuple[int, int]] = {}

    def _net(self, threshold: float) -> cv2.FaceDetectorYN:
        return cv2.FaceDetectorYN.create(str(YUNET), "", (320, 320), threshold, self.nms_threshold)

    def reset(self) -> None:  # a detector of single frames: nothing carries over between streams
        pass

    def detect(self, frame: np.ndarray, rotations: tuple[float, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Boxes ``N×4`` (x, y, w, h) and landmarks ``N×5×2`` in frame pixels, largest face first; ``rotations``
        replaces the detector's own for this call."""
        found = self.rows(frame, rotations)
        boxes = np.round(found[:, :4]).astype(np.int32)
        order = np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")
        return boxes[order], found[order, 4:14].reshape(-1, 5, 2)

    def rows(self, frame: np.ndarray, rotations: tuple[float, ...] | None = None) -> np.ndarray:
        """YuNet's detections after merging the turned searches (and the closer looks), in frame pixels: ``N×15``
        rows of box (x, y, w, h), five landmarks (x, y) and score.

        Where ``detect_width`` shrinks a ``min_face`` face under :data:`FINDABLE_PX` (a large photo: a 120-px face of
        a 4032-px group photo is 19 px at 640), a second search, upright only, runs on a copy where it is that wide,
        of at most :data:`FINE_MAX_PIXELS` (a larger photo's smallest findable face is larger); of its faces that the
        first copy shows :data:`FINE_JUDGED_PX` wide or more, only those scoring ``score_threshold`` are added."""
        frame = _bgr(frame)
        scale = min(1.0, self.detect_width / frame.shape[1]) if self.detect_width else 1.0
        found = self._rows_at(frame, scale, self.rotations if rotations is None else rotations)
        fine = min(1.0, FINDABLE_PX / self.min_face) if self.min_face else scale
        fine = min(fine, (FINE_MAX_PIXELS / (frame.shape[0] * frame.shape[1])) ** 0.5)  # YuNet's memory grows with it
        if fine > scale * 1.2:  # the first search cannot find the smallest faces asked for
            finer = self._rows_at(frame, fine, (0.0,))
            if FINE_JUDGED_PX is not None:  # faces the first search judged (turns, closer looks): confident ones only
                judged = np.maximum(finer[:, 2], finer[:, 3]) * scale >= FINE_JUDGED_PX
                finer = finer[~judged | (finer[:, 14] >= self.score_threshold)]
            found = _nms(np.concatenate([found, finer]), self.nms_threshold)
        return found[np.maximum(found[:, 2], found[:, 3]) >= self.min_face]

    def _rows_at(self, frame: np.ndarray, scale: float, rotations: tuple[float, ...]) -> np.ndarray:
        """:meth:`rows`' search of ``frame`` scaled by ``scale``, turned by ``rotations``, in frame pixels."""
        small = cv2.resize(frame, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA) if scale < 1 else frame
        if min(small.shape[:2]) < _SMALLEST_FACE:  # no face fits (a 1-px image was now and then given one)
            return _NO_ROWS.copy()
        turns = [_turn(small.shape, angle) for angle in rotations]
        found = _nms(np.concatenate([self._rows(self.net, small, t) for t in turns] or [_NO_ROWS]), self.nms_threshold)
        if self.recheck:
            strong = found[found[:, 14] >= self.score_threshold]
            weak = found[to_look_at(found, self.score_threshold, self.recheck_size)]
            closer = [self.closer_look(small, row) for row in weak[: self.recheck]]
            found = _nms(np.concatenate([strong, *closer, self._sure(small, found)]), self.nms_threshold)
        elif self._sure_level:
            strong = found[found[:, 14] >= self.score_threshold]
            found = _nms(np.concatenate([strong, self._sure(small, found)]), self.nms_threshold)
        if self._face_check is not None and len(found):
            found = found[self.is_face(small, found)]
        found[:, :14] /= scale
        return found

    def is_face(self, image: np.ndarray, rows: np.ndarray, level: float | None = None) -> np.ndarray:
        """Which of ``rows`` (in ``image``'s pixels) the face check gives P(face) ``level`` (default ``check``;
        all rows without a check)."""
        if self._face_check is None:
            return np.ones(len(rows), bool)
        size = self._face_check.size
        crops = [aligned_crop(image, row[4:14].reshape(5, 2), size) for row in rows]
        return self._face_check(np.stack(crops) if crops else _none(size)) >= (self.check if level is None else level)

    def _sure(self, image: np.ndarray, rows: np.ndarray) -> np.ndarray:
        """The whole-frame detections under ``score_threshold`` that ``sure_score`` and ``sure_check`` let in."""
        if not self._sure_level:
            return _NO_ROWS
        weak = rows[(rows[:, 14] < self.score_threshold) & (rows[:, 14] >= self.sure_score)]
        return weak[self.is_face(image, weak, self._sure_level)]

    def closer_look(self, image: np.ndarray, row: np.ndarray) -> np.ndarray:
        """The best detection of the face weakly detected as ``row`` (in ``image``'s pixels), searched in a window
        around it enlarged to ``recheck_size`` and turned by each of ``recheck_rotations``, if it scores
        ``recheck_score`` (or ``sure_look`` with P(face) ``sure_check``): ``1×15``, or ``0×15``."""
        turns = self.rotations if self.recheck_rotations is None else self.recheck_rotations
        rows = np.concatenate([self._window_rows(image, row[:4], a, self.recheck_size, 0.5) for a in turns])
        best = rows[np.argsort(-rows[:, 14])[:1]]
        if len(best) and best[0, 14] >= self.recheck_score:
            return best
        if (
            len(best)
            and self._sure_level
            and best[0, 14] >= self.sure_look
            and self.is_face(image, best, self._sure_level)[0]
        ):
            return best
        return _NO_ROWS.copy()

    def refind(
        self, frame: np.ndarray, box: np.ndarray, landmarks: np.ndarray | None = None, search: float = 0.5
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The face last seen at ``box`` (with ``landmarks``), searched for in a square window ``search`` box
        widths around it, scaled so the face is ~``track_size`` px and turned so that its eyes are level (a face
        that tilts further between frames stays findable); None when it is not there."""
        angle = 0.0
        if landmarks is not None:
            (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
            angle = float(np.degrees(np.arctan2(ry - ly, rx - lx)))
        rows = self._window_rows(_bgr(frame), box, angle, self.track_size, search)
        if len(rows) == 0:
            return None
        x, y, w, h = (float(v) for v in box)
        centres = rows[:, 0:2] + rows[:, 2:4] / 2
        best = rows[int(np.argmin(np.hypot(*(centres - (x + w / 2, y + h / 2)).T)))]
        return np.round(best[:4]).astype(np.int32), best[4:14].reshape(5, 2)

    def _window_rows(self, frame: np.ndarray, box: np.ndarray, angle: float, face_px: int, search: float) -> np.ndarray:
        """YuNet's confident rows in a square window ``search`` box widths around ``box``, scaled so that the face
        is ~``face_px`` wide and turned by ``angle`` degrees, in ``frame``'s pixels; only faces ½–2× the box."""
        x, y, w, h = (float(v) for v in box)
        side = max(w, h)
        if side < 4:
            return _NO_ROWS
        size = int(round(face_px * (1 + 2 * search)))
        scale = face_px / side
        # area-average a large face down first (a direct warp would alias it), then turn and place it
        shrink = min(1.0, 2 * scale)
        if shrink < 1:
            r = int(np.ceil(side * (0.5 + search) * 1.5))
            cx, cy = x + w / 2, y + h / 2
            x0, y0 = max(0, int(cx - r)), max(0, int(cy - r))
            roi = frame[y0 : min(frame.shape[0], int(cy + r)), x0 : min(frame.shape[1], int(cx + r))]
            if roi.shape[0] < 2 or roi.shape[1] < 2:
                return _NO_ROWS
            frame = cv2.resize(roi, None, fx=shrink, fy=shrink, interpolation=cv2.INTER_AREA)
            to_small = np.array([[shrink, 0, -x0 * shrink], [0, shrink, -y0 * shrink]], np.float64)
        else:
            to_small = np.array([[1, 0, 0], [0, 1, 0]], np.float64)
        centre = to_small @ np.array([x + w / 2, y + h / 2, 1.0])
        place = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), angle, scale / shrink)
        place[:, 2] += size / 2 - centre
        window = cv2.warpAffine(frame, place, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        forward = np.vstack([place, [0, 0, 1]]) @ np.vstack([to_small, [0, 0, 1]])
        rows = self._rows(self._window_net, window, (None, cv2.invertAffineTransform(forward[:2]), None))
        sides = np.maximum(rows[:, 2], rows[:, 3])
        return rows[(sides > 0.5 * side) & (sides < 2 * side)]

    def _rows(
        self,
        net: cv2.FaceDetectorYN,
        image: np.ndarray,
        turn: tuple[np.ndarray | None, np.ndarray, tuple[int, int] | None],
    ) -> np.ndarray:
        """YuNet's rows (box, 5 landmarks, score) on ``image`` warped by ``turn[0]`` onto a canvas of ``turn[2]``
        (None: as it is), mapped back into the source by ``turn[1]``."""
        forward, back, canvas = turn
        if forward is not None:
            image = cv2.warpAffine(image, forward, canvas, borderMode=cv2.BORDER_REPLICATE)
        h, w = image.shape[:2]
        if self._sizes.get(id(net)) != (w, h):
            net.setInputSize((w, h))
            self._sizes[id(net)] = (w, h)
        _, rows = net.detect(np.ascontiguousarray(image))
        if rows is None:
            return np.zeros((0, 15), np.float32)
        rows = rows.astype(np.float32)
        rows[:, 4:14] = cv2.transform(rows[:, 4:14].reshape(-1, 1, 2), back).reshape(-1, 10)
        # the box keeps its shape around its mapped-back centre (an axis-aligned hull of its corners would grow)
        centre = cv2.transform((rows[:, 0:2] + rows[:, 2:4] / 2).reshape(-1, 1, 2), back).reshape(-1, 2)
        rows[:, 2:4] *= float(np.hypot(back[0, 0], back[0, 1]))
        rows[:, 0:2] = centre - rows[:, 2:4] / 2
        return rows

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.detect(frame)[0]


_NO_ROWS = np.zeros((0, 15), np.float32)
_SMALLEST_FACE = 10  # pixels: YuNet's smallest anchor
_MAX_ZOOM = 5.0  # the most a closer look enlarges a weak detection (more finds faces in noise)


def _nms(rows: np.ndarray, threshold: float) -> np.ndarray:
    """``rows`` (box, landmarks, score) left after non-maximum suppression, best first."""
    if len(rows) == 0:
        return rows
    keep = cv2.dnn.NMSBoxes(rows[:, :4].tolist(), rows[:, 14].tolist(), 0.0, threshold)
    return rows[np.asarray(keep, np.int64).reshape(-1)]


def to_look_at(rows: np.ndarray, score_threshold: float, recheck_size: int) -> np.ndarray:
    """Which of ``rows`` (best first) a closer look is for: scoring under ``score_threshold``, large enough to
    enlarge to ``recheck_size`` (at most :data:`_MAX_ZOOM`), not centred inside a face already found."""
    strong = rows[rows[:, 14] >= score_threshold]
    big = np.maximum(rows[:, 2], rows[:, 3]) * _MAX_ZOOM >= recheck_size
    return (rows[:, 14] < score_threshold) & big & ~_inside(rows, strong)


def _inside(rows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of ``rows`` have their centre inside one of ``boxes`` (both ``N×≥4``, x, y, w, h first)."""
    centres = rows[:, None, 0:2] + rows[:, None, 2:4] / 2
    lo, hi = boxes[None, :, 0:2], boxes[None, :, 0:2] + boxes[None, :, 2:4]
    return ((centres >= lo) & (centres <= hi)).all(-1).any(-1)


def _bgr(frame: np.ndarray) -> np.ndarray:
    if frame.ndim == 2:
        return cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(frame, cv2.COLOR_BGRA2BGR) if frame.shape[2] == 4 else frame


def _turn(shape: tuple[int, ...], angle: float) -> tuple[np.ndarray | None, np.ndarray, tuple[int, int] | None]:
    """The warp that turns an image of ``shape`` by ``angle`` degrees about its centre onto a canvas large enough
    to hold all of it (a face in a corner stays in the picture), the one that maps the turned image's points
    back, and the canvas size (None, identity, None for 0°)."""
    if not angle:
        return None, np.array([[1, 0, 0], [0, 1, 0]], np.float64), None
    h, w = shape[:2]
    forward = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(forward[0, 0]), abs(forward[0, 1])
    size = (int(np.ceil(w * c + h * s)), int(np.ceil(w * s + h * c)))
    forward[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2
    return forward, cv2.invertAffineTransform(forward), size


#: A detector of single frames: Haar (boxes) or YuNet (boxes and landmarks).
Detector = FaceDetector | YuNetDetector


def iou(a: np.ndarray | tuple[int, ...], b: np.ndarray | tuple[int, ...]) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = (int(v) for v in a)
    bx, by, bw, bh = (int(v) for v in b)
    ix = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    return inter / float(aw * ah + bw * bh - inter) if inter else 0.0


#: YuNet's whole-frame score that keeps a face in a photo without a closer look, and the score a closer look must
#: reach: chosen on training faces in scenes of two background families (procedural and photographs), where a lower
#: threshold (0.45 until 2026-12-04) put false faces on real textures in a quarter of the photograph frames
#: (``experiments/faces_in_the_field/``, "Telling faces from textures").
SCORE_THRESHOLD = 0.75
CLOSER_SCORE = 0.8
#: The face width (pixels of the searched copy) a finer search makes a ``min_face`` face; chosen on training faces in
#: 12-MP group photos (``experiments/faces_in_the_field/group_photos.py``, "Small faces in large photos").
FINDABLE_PX = 48
#: The finer search's copy holds at most this many pixels: YuNet needs ~70 bytes per pixel searched (a 48-MP photo at
#: full resolution: 3.7 GB), so a larger photo is searched at this size and its smallest findable face grows.
FINE_MAX_PIXELS = 16_000_000
#: A face the first (``detect_width``) search sees at least this wide was judged there, with its turns, closer looks
#: and sure faces; the finer search adds it only if it scores ``score_threshold`` itself (None: every face it keeps).
#: Its weak large faces were textures: group photos with a false box 3 → 1 of 24, no face lost on PublicTest
#: (``experiments/faces_in_the_field/group_photos.py``, "Small faces in large photos").
FINE_JUDGED_PX: int | None = 48
#: The photo detector's smallest face (pixels of the image): smaller ones are dropped, and a large photo is searched
#: finely enough to find faces of this size (``predict --min-face``).
MIN_FACE = 24
#: A closer look's window is scaled so that the face is this wide (pixels).
CLOSER_SIZE = 224
#: A video scan's threshold: a scan has no closer looks (its frame budget), so a face it sees weakly must pass here;
#: the cam's figures (``experiments/throughput/``) are measured with it.
SCAN_SCORE_THRESHOLD = 0.45
#: The P(face) the face check (:mod:`emotion.serve.face_check`) must give a detection's aligned crop, in photos and
#: in the cam's scans: it turns away textures YuNet scores as faces (a page of text at 0.77-0.80); chosen on training
#: faces in scenes (``experiments/faces_in_the_field/``, "A face check of its own").
CHECK_SCORE = 0.5
#: Faces under those levels that the face check is sure of (P(face) ``SURE_CHECK``) are let in too: a whole-frame
#: detection from ``SURE_SCORE`` or a closer look from ``SURE_LOOK`` — faint faces whose crops are clearly faces;
#: chosen on training faces in scenes with the false-box frames of photographs held within 0.1 points
#: (``experiments/faces_in_the_field/weak_faces.py``, "Faces the face check is sure of").
SURE_CHECK = 0.99
SURE_SCORE = 0.45
SURE_LOOK = 0.75


def face_check_flag_error(face_check: float | None, detector: str) -> str | None:
    """What is wrong with a ``--face-check`` flag of ``predict``/``cam`` given with ``--detector``; None if nothing."""
    if face_check is None:
        return None
    if detector == "haar":
        return "--face-check checks YuNet's faces; leave it out with --detector haar"
    if not 0 <= face_check < 1:
        return f"--face-check {face_check}: give a P(face) from 0 (no check) to under 1"
    return None


#: The photo detector's whole-frame turns, and the closer look's (tilted faces score higher turned nearer upright).
TURNS = (0.0, -30.0, 30.0)
CLOSER_TURNS = (0.0, -15.0, 15.0, -30.0, 30.0, -45.0, 45.0)


def photo_detector() -> YuNetDetector:
    """The detector for single images: YuNet at 640-px width (and, in a photo too large for that copy to show a
    :data:`MIN_FACE` face :data:`FINDABLE_PX` wide, upright on a finer copy), also searched turned by ±30° (tilted
    faces), keeping faces that score :data:`SCORE_THRESHOLD`; up to three weaker detections (from 0.1) are looked at
    again, closer (the face :data:`CLOSER_SIZE` px wide, turned by each of :data:`CLOSER_TURNS`), and kept if they
    score :data:`CLOSER_SCORE` there (small and tilted faces); every face kept must pass the face check
    (:data:`CHECK_SCORE`); a weaker face the check is sure of is let in (:data:`SURE_CHECK`). Settings chosen on
    training faces in scenes (``experiments/faces_in_the_field/``)."""
    return YuNetDetector(
        score_threshold=SCORE_THRESHOLD,
        detect_width=640,
        min_face=MIN_FACE,
        rotations=TURNS,
        recheck=3,
        recheck_size=CLOSER_SIZE,
        recheck_score=CLOSER_SCORE,
        recheck_rotations=CLOSER_TURNS,
        check=CHECK_SCORE,
        sure_check=SURE_CHECK,
        sure_score=SURE_SCORE,
        sure_look=SURE_LOOK,
    )


def stream_scanner() -> YuNetDetector:
    """The video detector's whole-frame search: YuNet at 640-px width turned as the photo detector, at the lower
    :data:`SCAN_SCORE_THRESHOLD` and without closer looks of its own (up to 21 window searches would exceed a scan
    frame's budget): :class:`VideoFaceDetector` gives a closer look, with the photo detector's settings, only to a
    new face scanned weaker than :data:`SCORE_THRESHOLD`. No smallest face (no finer search of an HD frame) unless
    asked for (``cam --min-face``)."""
    no_sure_faces = {"sure_check": 0.0, "sure_score": 0.0, "sure_look": 0.0}
    return replace(photo_detector(), score_threshold=SCAN_SCORE_THRESHOLD, recheck=0, min_face=0, **no_sure_faces)


def haar_scanner() -> FaceDetector:
    """The Haar cascade as the video detector's whole-frame search: full resolution, faces from 48 px."""
    return FaceDetector(scale_factor=1.2, detect_width=0, min_face=48)


@dataclass
class _Seen:
    box: np.ndarray  # x, y, w, h
    landmarks: np.ndarray | None  # 5×2, or None from a detector without landmarks
    missed: int = 0  # frames since it was last found


@dataclass
class VideoFaceDetector:
    """Faces of a video stream for a fraction of the cost of a whole-frame search in every frame.

    Every ``scan_every`` frames the whole frame is searched by ``scanner`` (YuNet by default; its turned searches
    take turns, one angle per scan, so a tilted face is picked up within a few scans at the cost of one). In the
    frames between, every known face is re-found in a window around its last box (``search`` box widths on each
    side; the scanner's ``refind``: YuNet turns the window so the face's eyes are level and gives fresh landmarks),
    every ``track_every`` frames. A face that is not re-found keeps its box for ``max_missed`` frames, then is
    dropped. Call once per frame, in order; :meth:`reset` before another stream.

    A scan keeps faces from the scanner's low threshold, which real textures pass too: a new face scanned weaker
    than ``confirm_below`` is followed only if the scanner's closer look (:meth:`YuNetDetector.closer_look`, seven
    turned windows) confirms it, and a place where that look found no face is not looked at again for
    ``doubt_scans`` scans (a textured wall costs one closer look now and then, not one per scan). ``confirm_below``
    0 follows every scanned face.
    """

    scanner: Detector = field(default_factory=stream_scanner)
    scan_every: int = 8
    track_every: int = 1
    search: float = 0.5
    max_missed: int = 4
    confirm_below: float = SCORE_THRESHOLD
    doubt_scans: int = 6

    def __post_init__(self) -> None:
        if self.scan_every < 1 or self.track_every < 1:
            raise ValueError("scan_every and track_every must be >= 1")
        self.reset()

    def reset(self) -> None:
        self.frame_index = 0
        self.scans = 0
        self.tracks: list[_Seen] = []
        self.doubted: list[tuple[np.ndarray, int]] = []  # boxes a closer look found no face at, and their scan

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Boxes ``N×4`` (x, y, w, h) in frame pixels, largest first, and their landmarks (None with Haar)."""
        i, self.frame_index = self.frame_index, self.frame_index + 1
        if i % self.scan_every == 0:
            self._merge(frame, self._scan(frame))
        elif i % self.track_every == 0:
            self._follow(frame, self.tracks)
        self.tracks = [t for t in self.tracks if t.missed <= self.max_missed]
        self.tracks.sort(key=lambda t: -int(t.box[2]) * int(t.box[3]))
        boxes = np.array([t.box for t in self.tracks], np.int32).reshape(-1, 4)
        if isinstance(self.scanner, FaceDetector):
            return boxes, None
        return boxes, np.array([t.landmarks for t in self.tracks], np.float32).reshape(-1, 5, 2)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        return self.detect(frame)[0]

    def _scan(self, frame: np.ndarray) -> list[tuple[_Seen, np.ndarray | None]]:
        """The whole frame's faces, largest first, each with its YuNet row (None with Haar: no scores)."""
        self.scans += 1
        if not isinstance(self.scanner, YuNetDetector):
            return [(_Seen(box, None), None) for box in self.scanner.detect(frame)[0]]
        turns = self.scanner.rotations
        rows = self.scanner.rows(frame, (turns[(self.scans - 1) % len(turns)],) if len(turns) > 1 else None)
        rows = rows[np.argsort(-rows[:, 2] * rows[:, 3], kind="stable")]
        return [(_Seen(np.round(r[:4]).astype(np.int32), r[4:14].reshape(5, 2)), r) for r in rows]

    def _confirmed(self, frame: np.ndarray, seen: _Seen, row: np.ndarray | None) -> _Seen | None:
        """A new face as it will be followed: as scanned when it scored ``confirm_below`` (or the scanner gives no
        scores), else as its closer look found it, or None (remembered as doubted) when that look found no face
        (or one the scanner's face check turns away)."""
        if row is None or row[14] >= self.confirm_below:
            return seen
        if any(iou(box, seen.box) >= 0.3 for box, _ in self.doubted):
            return None
        image = _bgr(frame)
        closer = self.scanner.closer_look(image, row)
        if len(closer) == 0 or not self.scanner.is_face(image, closer)[0]:
            self.doubted.append((seen.box, self.scans))
            return None
        return _Seen(np.round(closer[0, :4]).astype(np.int32), closer[0, 4:14].reshape(5, 2))

    def _follow(self, frame: np.ndarray, tracks: list[_Seen]) -> None:
        """Re-find each of ``tracks`` in its window; one not found ages by a frame."""
        for track in tracks:
            found = self.scanner.refind(frame, track.box, track.landmarks, self.search)
            if found is None:
                track.missed += 1
            else:
                track.box, track.landmarks, track.missed = found[0], found[1], 0
        self._dedupe()

    def _merge(self, frame: np.ndarray, scanned: list[tuple[_Seen, np.ndarray | None]]) -> None:
        """Known faces are re-found in their windows as between scans (a tilted face keeps its turned window's
        landmarks; an upright scan's would undo its tilt); the scan's faces take the place of the tracks that were
        not re-found and start new tracks where there were none, once confirmed (:meth:`_confirmed`)."""
        self._follow(frame, self.tracks)
        self.doubted = [(box, scan) for box, scan in self.doubted if self.scans - scan < self.doubt_scans]
        for seen, row in scanned:
            j = max(range(len(self.tracks)), key=lambda t: iou(self.tracks[t].box, seen.box), default=None)
            if j is None or iou(self.tracks[j].box, seen.box) <= 0.2:
                confirmed = self._confirmed(frame, seen, row)
                if confirmed is not None:
                    self.tracks.append(confirmed)
            elif self.tracks[j].missed:
                self.tracks[j] = seen
        self._dedupe()

    def _dedupe(self) -> None:
        kept: list[_Seen] = []
        for t in sorted(self.tracks, key=lambda t: t.missed):  # freshest first
            if all(iou(t.box, k.box) < 0.4 for k in kept):
                kept.append(t)
        self.tracks = kept


def crop_faces(
    frame: np.ndarray,
    boxes: np.ndarray,
    size: int = 48,
    margin: float = 0.1,
    landmarks: np.ndarray | None = None,
    zoom: float = 1.0,
) -> np.ndarray:
    """Faces of a frame → ``N×size×size`` uint8 grayscale, converted exactly as the training data was
    (:func:`emotion.data.sources.to_gray_square`). With ``landmarks`` (``N×5×2``) each face is aligned onto
    :data:`FER_LANDMARKS` zoomed by ``zoom`` (rotation, scale and shift, eyes level); without, a square around its
    box enlarged by ``margin`` per side is cut."""
    if landmarks is not None:
        return np.stack([aligned_crop(frame, m, size, zoom) for m in landmarks]) if len(landmarks) else _none(size)
    h, w = frame.shape[:2]
    crops = []
    for x, y, bw, bh in boxes:
        side = int(round(max(bw, bh) * (1 + 2 * margin)))
        cx, cy = x + bw / 2, y + bh / 2
        x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
        pad = max(0, -x0, -y0, x0 + side - w, y0 + side - h)
        src = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE) if pad else frame
        crops.append(to_gray_square(src[y0 + pad : y0 + pad + side, x0 + pad : x0 + pad + side], size))
    return np.stack(crops) if crops else _none(size)


def _none(size: int) -> np.ndarray:
    return np.zeros((0, size, size), np.uint8)


def similarity(points: np.ndarray, targets: np.ndarray) -> np.ndarray | None:
    """The 2x3 similarity (rotation, uniform scale, shift) that takes ``points`` (``N×2``) closest to ``targets`` in
    least squares; None when the points are degenerate (all in one place). With points as complex numbers,
    ``target ≈ c·point + t`` has the closed form c = Σ conj(p̃)·q̃ / Σ|p̃|² on the centred points."""
    p, q = np.asarray(points, np.float64), np.asarray(targets, np.float64)
    pz, qz = p[:, 0] + 1j * p[:, 1], q[:, 0] + 1j * q[:, 1]
    pc, qc = pz - pz.mean(), qz - qz.mean()
    norm = float(np.sum(np.abs(pc) ** 2))
    if not np.isfinite(norm) or norm < 1e-9:
        return None
    c = np.sum(np.conj(pc) * qc) / norm
    t = qz.mean() - c * pz.mean()
    return np.array([[c.real, -c.imag, t.real], [c.imag, c.real, t.imag]])


def alignment(landmarks: np.ndarray, size: int = 48, zoom: float = 1.0) -> np.ndarray | None:
    """The similarity that takes a face's five ``landmarks`` onto :data:`FER_LANDMARKS` scaled to ``size`` (and by
    ``zoom`` about the crop's centre: > 1 cuts closer), fitted on all five (:func:`similarity`). Every point counts:
    the RANSAC fit used until 2026-12-04 (``cv2.estimateAffinePartial2D``) left out points more than 3 px off the
    template (a smile's mouth corner, say) in about one fit in six (``experiments/faces_in_the_field/``)."""
    return similarity(landmarks, ((FER_LANDMARKS - 24.0) * zoom + 24.0) * (size / 48.0))


def aligned_crop(frame: np.ndarray, landmarks: np.ndarray, size: int = 48, zoom: float = 1.0) -> np.ndarray:
    """One face cut so that its five ``landmarks`` land on :data:`FER_LANDMARKS` zoomed by ``zoom``
    (:func:`alignment`). The face is first warped at an integer multiple of ``size`` and then area-averaged down, as a
    large training image would be resized, so a big face is not aliased."""
    matrix = alignment(landmarks, size, zoom)
    if matrix is None:  # degenerate landmarks (all in one point): fall back to their bounding square
        x0, y0 = landmarks.min(0)
        x1, y1 = landmarks.max(0)
        side = max(x1 - x0, y1 - y0, 1.0) * 2.5
        box = np.array([[(x0 + x1 - side) / 2, (y0 + y1 - side) / 2, side, side]], np.int32)
        return crop_faces(frame, box, size, 0.0)[0]
    scale = float(np.hypot(matrix[0, 0], matrix[0, 1]))  # output pixels per frame pixel
    k = max(1, min(8, int(round(1 / scale)))) if scale < 1 else 1
    matrix = matrix * k
    big = cv2.warpAffine(frame, matrix, (size * k, size * k), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return to_gray_square(big, size)
