"""Annotate frames: a box, the label and a confidence bar per face, and optionally the FPS."""

from __future__ import annotations

import cv2
import numpy as np

from emotion.serve.predictor import Face

GREEN, GREY, WHITE, BLACK = (80, 200, 60), (160, 160, 160), (255, 255, 255), (0, 0, 0)


def face_text(face: Face, uncertain_below: float = 0.0) -> str:
    """``happy 83%``, or ``uncertain (sad? 31%)`` when the top probability is below ``uncertain_below``; a face
    of a video track is prefixed with its id (``#2 happy 83%``)."""
    track = f"#{face.track} " if face.track is not None else ""
    if face.confidence < uncertain_below:
        return f"{track}uncertain ({face.label}? {face.confidence:.0%})"
    return f"{track}{face.label} {face.confidence:.0%}"


def draw_faces(
    frame: np.ndarray, faces: list[Face], fps: float | None = None, uncertain_below: float = 0.0
) -> np.ndarray:
    out = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    for face in faces:
        x, y, w, h = face.box
        colour = GREY if face.confidence < uncertain_below else GREEN
        cv2.rectangle(out, (x, y), (x + w, y + h), colour, 2)
        text = face_text(face, uncertain_below)
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.6, 2)
        ty = max(th + 4, y - 6)
        cv2.rectangle(out, (x, ty - th - 4), (x + tw + 4, ty + 2), colour, -1)
        cv2.putText(out, text, (x + 2, ty - 2), cv2.FONT_HERSHEY_SIMPLEX, 0.6, BLACK, 2, cv2.LINE_AA)
        bar_y = min(out.shape[0] - 6, y + h + 4)  # confidence bar under the box
        cv2.rectangle(out, (x, bar_y), (x + w, bar_y + 5), WHITE, 1)
        cv2.rectangle(out, (x, bar_y), (x + int(w * face.confidence), bar_y + 5), colour, -1)
    if fps is not None:
        cv2.putText(out, f"{fps:.0f} FPS", (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, WHITE, 2, cv2.LINE_AA)
    return out
