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


def test_each_part_of_the_rendering_switches_off_alone_and_leaves_the_scenes_otherwise_the_same() -> None:
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (6, 48, 48), dtype=np.uint8)  # textured faces: corners and brightness show

    def draw(**parts) -> list:
        rendering = scenes.Rendering(**parts)
        return list(scenes.scenes(faces, np.zeros(6, np.int64), seed=3, n=6, rendering=rendering))

    full, quiet, flat, square = draw(), draw(noise=False), draw(brightness=False), draw(feather=False)
    for variant in (quiet, flat, square):  # the same faces at the same places: only the rendering differs
        assert [[f["matrix"].tolist() for f in s.faces] for s in variant] == [
            [f["matrix"].tolist() for f in s.faces] for s in full
        ]
    noise = np.concatenate([(a.frame.astype(int) - b.frame).ravel() for a, b in zip(full, quiet, strict=True)])
    assert 2.0 < noise.std() < 4.0  # σ = 3, clipped at 0 and 255
    one = full[0].faces[0]
    x, y = (int(round(v)) for v in one["centre"])
    inner = (slice(y - 5, y + 5), slice(x - 5, x + 5))  # the face's middle: not feathered
    assert np.array_equal(draw(noise=False, feather=False)[0].frame[inner], quiet[0].frame[inner])
    assert one["tilt"] == 0  # the first scene's face is upright (cells cycle from 80 px, 0°)
    h = one["size"] // 2 - 2  # the face's corner: background when feathered, the face pasted whole when not
    corner = (slice(y - h, y - h + 3), slice(x - h, x - h + 3))
    assert not np.array_equal(draw(noise=False, feather=False)[0].frame[corner], quiet[0].frame[corner])
    assert any(not np.array_equal(a.frame, b.frame) for a, b in zip(full, flat, strict=True))


def test_each_named_rendering_switches_off_exactly_the_parts_its_name_says() -> None:
    parts = ("feather", "brightness", "noise")
    named = {"no-feather": {"feather"}, "no-brightness": {"brightness"}, "no-noise": {"noise"}, "none": set(parts)}
    assert scenes.RENDERINGS["full"] == scenes.Rendering() and set(scenes.RENDERINGS) == {"full", *named}
    for name, off in named.items():
        assert {p for p in parts if not getattr(scenes.RENDERINGS[name], p)} == off, name


def test_every_listed_photo_loads_as_a_colour_image() -> None:
    for name in scenes.PHOTOS:
        img = scenes.photo(name)
        assert img.ndim == 3 and img.shape[2] == 3 and img.dtype == np.uint8 and img.std() > 5, name


def test_an_unknown_background_family_is_refused_with_the_choices() -> None:
    with pytest.raises(ValueError, match="procedural, photos"):
        scenes.background(np.random.default_rng(0), "beach")


def test_bench_set_reads_numbers_and_angle_lists_and_names_what_is_wrong(capsys) -> None:
    import argparse

    import bench

    parser = argparse.ArgumentParser()
    settings = bench.detector_settings(["recheck=5", "score_threshold=0.75", "recheck_rotations=0,-45,45"], parser)
    assert settings == {"recheck": 5, "score_threshold": 0.75, "recheck_rotations": (0.0, -45.0, 45.0)}
    wrong = (("recheck=many", "is not an integer"), ("rotation=30", "NAME=VALUE"), ("rotations=0,up", "angles"))
    for bad, says in wrong:
        with pytest.raises(SystemExit):
            bench.detector_settings([bad], parser)
        assert says in capsys.readouterr().err


def test_candidate_rates_count_a_face_once_and_a_frame_with_any_kept_false_box() -> None:
    import candidates

    # frame 0 (procedural, 1 face): the face twice (as detected and by a closer look), a texture box kept
    # frame 1 (photos, 1 face): the face only weakly, its closer look finds it; frame 2 (photos, no face): a weak box
    frames = np.array([[0, 0, 1], [1, 1, 1], [2, 1, 0]])
    table = np.array([[0, 0.9, 80, 1, 0], [0, 0.3, 80, 1, -1], [0, 0.8, 60, 3, -1], [1, 0.3, 80, 1, 0]])
    table = np.vstack([table, [2, 0.5, 60, 3, -1]])
    looks = len(candidates.LOOK_SIZES) * len(candidates.LOOK_ANGLES)
    table = np.hstack([table, np.tile([0.0, -1], (len(table), looks))])
    at = len(candidates.COLUMNS) + 2 * (candidates.LOOK_SIZES.index(160) * len(candidates.LOOK_ANGLES) + 1)  # -15°
    table[[1, 3], at : at + 2] = [0.85, 0]
    closer, closer_face = candidates.looked(table, (160,), (0.0, -15.0))
    assert closer.tolist() == [0, 0.85, 0, 0.85, 0] and closer_face.tolist() == [-1, 0, -1, 0, -1]
    assert candidates.looked(table, (160,), (0.0, 15.0))[0].max() == 0  # that look is not in the set
    by_score = table[:, 1] >= 0.75
    assert candidates.rates(table, frames, by_score, ~by_score & (closer >= 0.8), closer_face) == {
        "procedural": (1.0, 1.0),
        "photos": (1.0, 0.0),
    }
    by_score = table[:, 1] >= 0.45
    assert candidates.rates(table, frames, by_score, np.zeros(5, bool), closer_face) == {
        "procedural": (1.0, 1.0),
        "photos": (0.0, 0.5),
    }


def test_weak_face_rules_keep_what_the_face_check_is_sure_of_and_count_false_frames() -> None:
    import weak_faces

    # columns: frame, score, side, face, check, rank, look, look_face, look_check
    frames = np.array([[0, 0, 1], [1, 0, 1], [2, 1, 1], [3, 1, 0]])
    table = np.array(
        [
            [0, 0.9, 80, 0, 0.99, -1, 0, -1, 0],  # frame 0: a strong face the check passes
            [1, 0.5, 80, 0, 0.995, 0, 0.77, 0, 0.995],  # frame 1: weak; its closer look 0.77, sure
            [2, 0.4, 80, 0, 0.3, 0, 0.5, 0, 0.2],  # frame 2: weak, unsure everywhere
            [3, 0.6, 60, -1, 0.999, 0, 0.1, -1, 0.1],  # frame 3 (no face): a texture the check is sure of
            [3, 0.8, 60, -1, 0.2, -1, 0, -1, 0],  # ... and one YuNet is sure of that the check turns away
        ]
    )
    base = weak_faces.rates(table, frames, {})
    assert base["procedural"] == {"found": 0.5, "false": 0.0, "false_frames": 0}
    assert base["photos"] == {"found": 0.0, "false": 0.0, "false_frames": 0}
    by_look = weak_faces.rates(table, frames, {"look2": 0.75, "check2": 0.99})
    assert by_look["procedural"]["found"] == 1.0 and by_look["photos"]["false_frames"] == 0
    by_own = weak_faces.rates(table, frames, {"own2": 0.45, "own_check": 0.99})
    assert by_own["procedural"]["found"] == 1.0  # frame 1's own box (0.5, sure)
    assert by_own["photos"] == {"found": 0.0, "false": 0.5, "false_frames": 1}  # the sure texture
    assert weak_faces.rates(table, frames, {"own2": 0.45, "own_check": 0.9991})["photos"]["false_frames"] == 0


def test_landmark_fit_is_zero_on_the_template_and_large_for_a_scramble() -> None:
    import candidates

    from emotion.serve.faces import FER_LANDMARKS

    turned = FER_LANDMARKS @ np.array([[0.8, 0.6], [-0.6, 0.8]], np.float32) * 3 + 40  # same face, moved
    assert candidates.fit(turned) == pytest.approx(0.0, abs=1e-3)
    assert candidates.fit(turned[[2, 0, 4, 1, 3]]) > 3.0


def test_bench_detections_replay_without_the_detector_and_refuse_other_scenes(tmp_path) -> None:
    import bench

    faces = np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8)
    made = list(scenes.scenes(faces, np.zeros(3, np.int64), seed=2, n=3))
    calls = []

    class Found:  # a stand-in detector: one box per frame, from the frame's pixels
        rotations = (0.0,)

        def __repr__(self) -> str:
            return "Found()"

        def detect(self, frame):
            calls.append(1)
            v = int(frame[0, 0, 0])
            return np.array([[v, 1, 2, 3]]), np.full((1, 5, 2), v / 2)

    path = tmp_path / "kept" / "dets"  # a new folder, a name without .npz: kept under exactly that name
    first = bench.RecordedDetector(path, Found(), made)
    kept = [first.detect(s.frame) for s in made]
    first.save()
    assert len(calls) == len(made) and first.rotations == (0.0,)
    again = bench.RecordedDetector(path, Found(), made)
    replayed = [again.detect(s.frame) for s in reversed(made)][::-1]
    assert len(calls) == len(made)  # nothing detected again
    for (b1, m1), (b2, m2) in zip(kept, replayed, strict=True):
        assert np.array_equal(b1, b2) and np.allclose(m1, m2)
    other = list(scenes.scenes(faces, np.zeros(3, np.int64), seed=5, n=3))
    with pytest.raises(SystemExit, match="other scenes or another detector"):
        bench.RecordedDetector(path, Found(), other)
