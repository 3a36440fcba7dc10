"""What the song recommender needs of serving, in one place: a *mood* (class names and probabilities) from a photo
or from a camera or video. :mod:`emotion.songs` imports nothing else of :mod:`emotion.serve`, and serving never
imports songs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Mood:
    class_names: tuple[str, ...]
    probs: np.ndarray
    whose: str = ""  # whose mood it is, where a photo held several faces

    @property
    def label(self) -> str:
        whose = f", {self.whose}" if self.whose else ""
        return f"{self.class_names[int(np.argmax(self.probs))]} ({float(np.max(self.probs)):.0%}{whose})"


def mood_of_image(path: str | Path, model: str | None = None, all_faces: bool = False) -> Mood:
    """The largest face of a photo, or with ``all_faces`` the mean of every face's probabilities (a group's mood).
    ValueError for an unreadable image or one without a face."""
    from emotion.serve.images import read_image
    from emotion.serve.predictor import Predictor

    try:
        image = read_image(path)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None
    predictor = Predictor.from_pretrained(model or "default")
    faces = predictor.predict(image)
    if not faces:
        raise ValueError(f"no face detected in {path}")
    if len(faces) == 1:
        return Mood(predictor.class_names, faces[0].probs)
    if all_faces:
        return Mood(predictor.class_names, np.mean([f.probs for f in faces], axis=0), f"{len(faces)} faces averaged")
    return Mood(predictor.class_names, faces[0].probs, f"the largest of {len(faces)} faces; --all-faces: all")


def mood_of_stream(
    source: str, model: str | None = None, frames: int | None = 75, on_key: Callable[[Mood], None] | None = None
) -> Mood:
    """The mean probabilities of the largest face over the last seconds of a camera or video (``frames`` of it, or
    all of it with None). With ``on_key`` the cam's window opens and the ``s`` key hands it the mood of that moment;
    without, no window. ValueError when no face was seen; :class:`~emotion.serve.cam.SourceError` for a source that
    cannot be opened."""
    from emotion.serve.cam import run
    from emotion.serve.predictor import Predictor

    predictor = Predictor.from_pretrained(model or "default", detector=None)
    names = predictor.class_names
    hook = None if on_key is None else (lambda probs: on_key(Mood(names, probs)))
    _, probs = run(predictor, source, headless=on_key is None, max_frames=frames, draw=on_key is not None, on_mood=hook)
    if probs is None:
        raise ValueError(f"no face seen in {f'the first {frames} frames' if frames else 'any frame'} of {source}")
    return Mood(names, probs)
