"""How many of a label_issues verdict's faces the recipe's teacher already doubts (recipe v15's card).

    python experiments/recipe/teacher_doubt.py ../shared/data/fer2013 \
        experiments/recipe/label_issues_cnn_folds_half.json

The teacher (emotion_vgg_v8_v9 + emotion_vgg, as ``experiment=recipe`` distils from) scores every unaugmented training
face; printed per verdict: the faces it lists, the labels the teacher gives < 0.2 (``drop_labels_below``) overall and
among the listed faces, the median probability of the given label, and how often the teacher's argmax agrees.
"""

import json
import sys

import numpy as np
import torch

from emotion.data.datamodule import FER2013DataModule
from emotion.labels import FER2013_CLASSES
from emotion.models.distill import Distillation

dm = FER2013DataModule(sys.argv[1], cache_dir=".cache/emotion", download=False)
dm.setup()
x, y = dm.arrays("train")
sources = dm.raw.sources[dm.splits.train]
teacher = Distillation(teacher=["emotion_vgg_v8_v9", "emotion_vgg"]).load_teacher(tuple(FER2013_CLASSES))
with torch.no_grad():
    batches = [torch.from_numpy(x[i : i + 512]).unsqueeze(1) for i in range(0, len(x), 512)]
    p = torch.cat([torch.softmax(teacher(b).float(), 1) for b in batches]).numpy()
given = p[np.arange(len(y)), y]
doubt = given < 0.2
for verdict in sys.argv[2:]:
    with open(verdict) as fh:
        listed = np.isin(sources, json.load(fh)["exclude"])
    print(
        f"{verdict}: listed {listed.sum()}; teacher < 0.2 overall {doubt.sum()}, "
        f"among the listed {(doubt & listed).sum()}; median given-label probability listed "
        f"{np.median(given[listed]):.3f}, others {np.median(given[~listed]):.3f}; "
        f"teacher argmax = label on the listed {(p[listed].argmax(1) == y[listed]).mean():.3f}"
    )
