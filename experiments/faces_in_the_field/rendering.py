"""What the scenes' rendering costs a model, part by part: the oracle-aligned crop with each part switched off.

    python experiments/faces_in_the_field/rendering.py [--data DIR] [--n 1500] [--model default emotion_vgg]
        [--backgrounds procedural|photos] [--out rendering.json]

The benchmark's ``oracle-aligned`` configuration cuts each face with its true landmarks, so what it loses against
the crop accuracy (the same faces' 48x48 originals) is the rendering alone: resampling into the scene and back,
the tilt, feathered edges, a brightness change and the camera's noise (``scenes.py``). This runs it on the same
scenes with the feathering, the brightness change, the noise, and all three, switched off (``scenes.Rendering``;
every other draw stays the same), and compares each face by face (McNemar) with the full rendering. What is left
with all three off is resampling and tilt. No detector runs: ~10 s per rendering and model.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import pipeline  # noqa: E402
from scenes import BACKGROUNDS, RENDERINGS, scenes, score  # noqa: E402

from emotion.data.datamodule import FER2013DataModule  # noqa: E402
from emotion.evaluation.paired import paired_comparison  # noqa: E402
from emotion.serve.predictor import Predictor  # noqa: E402

LABELS = {
    "full": "full (the benchmark)",
    "no-feather": "no feathering",
    "no-brightness": "no brightness change",
    "no-noise": "no noise",
    "none": "none of the three",
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--n", type=int, default=1500, help="PublicTest faces (one scene each, as bench.py)")
    p.add_argument("--model", nargs="+", default=["default"])
    p.add_argument("--backgrounds", default="procedural", choices=BACKGROUNDS)
    p.add_argument("--seed", type=int, default=0, help="of the scenes")
    p.add_argument("--out", type=Path)
    a = p.parse_args()
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays("val")
    results: dict = {}
    for model in a.model:
        crop_probs = Predictor.from_pretrained(model, detector=None).classify(images)
        print(f"\n## {model}, oracle-aligned, {a.n} PublicTest faces, seed {a.seed}, {a.backgrounds} backgrounds\n")
        print("| rendering | oracle-aligned acc | crop acc | vs the full rendering: right only here / only there, p |")
        print("|---|---|---|---|")
        full = None
        for key, rendering in RENDERINGS.items():
            name = LABELS[key]
            drawn = scenes(images, labels, seed=a.seed, n=a.n, backgrounds=a.backgrounds, rendering=rendering)
            all_scenes = list(drawn)
            r = score(pipeline("oracle-aligned", model, all_scenes), all_scenes, crop_probs)
            c = r["cells"]["all/all"]
            if full is None:
                full, versus = r, "—"
            else:
                m = paired_comparison(torch.tensor(r["right"]), torch.tensor(full["right"]))
                versus = f"{m['only_this_right']} / {m['only_other_right']}, p = {m['mcnemar_p']:.3f}"
            print(f"| {name} | {c['accuracy']:.4f} | {c['crop_accuracy']:.4f} | {versus} |", flush=True)
            results[f"{model}, {name}"] = r
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
