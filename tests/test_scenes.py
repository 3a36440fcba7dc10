"""The faces-in-scenes benchmark's scene generator (experiments/faces_in_the_field/scenes.py): its background
families."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "faces_in_the_field"))
pytest.importorskip("skimage.data")
import scenes  # noqa: E402


def _frames(backgrounds: str, seed: int = 0) -> list[np.ndarray]:
    faces = np.full((4, 48, 48), 128, np.uint8)
    return [s.frame for s in scenes.scenes(faces, np.zeros(4, np.int64), seed=seed, n=4, backgrounds=backgrounds)]


def test_photo_backgrounds_are_reproducible_frames_unlike_the_procedural_family() -> None:
    photos = _frames("photos")
    assert all(f.shape == (scenes.H, scenes.W, 3) and f.dtype == np.uint8 for f in photos)
    assert all(np.array_equal(a, b) for a, b in zip(photos, _frames("photos"), strict=True))  # seeded
    assert not np.array_equal(photos[0], _frames("photos", seed=1)[0])
    procedural = _frames("procedural")
    assert all(np.abs(a.astype(int) - b).mean() > 10 for a, b in zip(photos, procedural, strict=True))


def test_every_listed_photo_loads_as_a_colour_image() -> None:
    for name in scenes.PHOTOS:
        img = scenes._photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.std() > 5, name


def test_an_unknown_background_family_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="procedural, photos"):
        scenes.background(np.random.default_rng(0), "beach")
