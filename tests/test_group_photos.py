"""The group-photo study of experiments/faces_in_the_field/group_photos.py: how it lays out its photos and that it
runs end to end (on generated faces, which no detector finds: the plumbing, not the numbers)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments" / "faces_in_the_field"))
pytest.importorskip("skimage.data")
import group_photos  # noqa: E402


def test_a_group_photo_holds_every_size_twice_apart_and_inside_the_frame():
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (20, 48, 48), dtype=np.uint8), rng.integers(0, 7, 20)
    (photo,) = group_photos.group_photos(images, labels, n=1, width=2400, height=1800, per_photo=12, seed=3)
    assert photo.frame.shape == (1800, 2400, 3)
    assert sorted(f["size"] for f in photo.faces) == sorted(group_photos.SIZES * 2)
    for i, a in enumerate(photo.faces):
        assert a["size"] <= a["centre"][0] <= 2400 - a["size"] and a["size"] <= a["centre"][1] <= 1800 - a["size"]
        assert a["label"] == labels[a["index"]]
        for b in photo.faces[i + 1 :]:
            assert np.hypot(a["centre"][0] - b["centre"][0], a["centre"][1] - b["centre"][1]) > a["size"] + b["size"]


def test_the_study_runs_end_to_end_and_reports_each_setting(folder_data, tmp_path, monkeypatch):
    out = tmp_path / "group.json"
    argv = ["group_photos.py", "--data", str(folder_data), "--n", "2", "--size", "1600x1200", "--min-face", "0,48"]
    monkeypatch.setattr(sys, "argv", [*argv, "--out", str(out)])
    group_photos.main()
    result = json.loads(out.read_text())
    assert result["split"] == "test" and set(result["results"]) == {"min_face=0", "min_face=48"}
    for r in result["results"].values():
        assert set(r["found_by_size"]) == {str(s) for s in group_photos.SIZES} and 0 <= r["found"] <= 1
