"""experiments/faces_in_the_field/field_views.py run as `experiment=field` needs it, on the real FER2013: the views it
writes are the training faces it names, framed by the pipeline, and the data module takes them."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import fer2013_root

ROOT = Path(__file__).resolve().parents[1]
FER = fer2013_root()
pytestmark = [pytest.mark.slow, pytest.mark.skipif(FER is None, reason="FER2013 not found (set FER2013_ROOT)")]


def test_field_views_are_the_named_training_faces_as_the_pipeline_frames_them(tmp_path: Path) -> None:
    from emotion.data.datamodule import FER2013DataModule

    out = tmp_path / "views.npz"
    script = ROOT / "experiments" / "faces_in_the_field" / "field_views.py"
    args = [sys.executable, str(script), "--data", str(FER), "--limit", "24", "--workers", "1", "--out", str(out)]
    run = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert "training faces found and framed" in run.stdout
    with np.load(out) as z:
        sources, views = z["sources"], z["images"]
    assert 20 <= len(sources) <= 24 and views.shape == (len(sources), 48, 48) and views.dtype == np.uint8

    dm = FER2013DataModule(str(FER), download=False, views=str(out))
    dm.setup()
    assert dm.info["views"]["training_faces_with_view"] == len(sources)
    originals = dm.raw.images[[np.flatnonzero(dm.raw.sources == s)[0] for s in sources]]

    def match(view: np.ndarray, original: np.ndarray) -> float:
        """The view's middle found in the original: best normalised correlation over small turns, scales, shifts."""
        best = -1.0
        for angle in (-15.0, -7.5, 0.0, 7.5, 15.0):
            for scale in (0.8, 0.9, 1.0, 1.1, 1.25):
                turned = cv2.warpAffine(view, cv2.getRotationMatrix2D((24, 24), angle, scale), (48, 48))
                best = max(best, float(cv2.matchTemplate(original, turned[12:36, 12:36], cv2.TM_CCOEFF_NORMED).max()))
        return best

    # each view is its own face re-framed (within ±15° and 0.8-1.25x): found in its original, not in the others
    similarity = np.array([[match(v, o) for o in originals] for v in views])
    assert (similarity.argmax(1) == np.arange(len(sources))).mean() >= 0.8
    assert np.median(np.diag(similarity)) > 0.8 > np.median(similarity[~np.eye(len(sources), dtype=bool)])
