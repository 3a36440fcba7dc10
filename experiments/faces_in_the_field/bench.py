"""Faces in the field: the whole pipeline (detector → crop → model) on PublicTest faces placed into scenes.

    python experiments/faces_in_the_field/bench.py [--data DIR] [--n 1500] [--model emotion_vgg]
        [--config yunet-aligned ...] [--backgrounds procedural|photos] [--out results.json]
        [--detections logs/dets.npz] [--rendering full|no-feather|...]

Prints, for each pipeline configuration (each runs through ``Predictor.predict``, as ``python -m emotion.predict``
does), the found rate, end-to-end accuracy and accuracy given found per face size
and tilt, frames with a false box, and ms per frame, next to the crop accuracy of the same faces (the model on
their 48x48 originals). Configurations: ``haar-box`` (the Haar cascade, a square around its box: the pipeline up to
2026-12-02), ``yunet-upright-aligned`` (YuNet on the frame alone), ``yunet-box`` (YuNet also on the frame turned by
±30°, a square around its box), ``yunet-aligned`` (the same detector, faces aligned onto FER2013's framing: the
default since 2026-12-02).
Run it on an idle machine: ms per frame is measured.

``--detections FILE`` keeps the detector's boxes and landmarks of every frame (the slow part; they do not depend on
the model or the zoom) and replays them on later runs with the same scenes and detector, so that models can be
compared in seconds; a file made for other scenes or another detector is refused. Replayed runs' ms per frame
counts the classifier only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
from dataclasses import fields, replace
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import BACKGROUNDS, RENDERINGS, SIZES, TILTS, scenes, score  # noqa: E402

from emotion.atomic import atomic_open  # noqa: E402
from emotion.data.datamodule import FER2013DataModule  # noqa: E402
from emotion.evaluation.paired import paired_comparison  # noqa: E402
from emotion.models.tta import TTA_MODES  # noqa: E402
from emotion.serve.face_check import FACE_CHECK  # noqa: E402
from emotion.serve.faces import (  # noqa: E402
    CROP_ZOOM,
    FER_LANDMARKS,
    YUNET,
    FaceDetector,
    YuNetDetector,
    photo_detector,
)
from emotion.serve.predictor import Predictor  # noqa: E402

CONFIGS = ("haar-box", "yunet-upright-aligned", "yunet-box", "yunet-aligned", "oracle-aligned")


def configured_detector(settings: dict | None = None, rotations: tuple[float, ...] | None = None) -> YuNetDetector:
    """The shipped photo detector with ``--set`` settings and ``--rotations`` applied."""
    turns = {} if rotations is None else {"rotations": rotations}
    return replace(photo_detector(), **dict(settings or {}) | turns)


def pipeline(
    config: str,
    model: str,
    all_scenes: list | None = None,
    rotations: tuple[float, ...] | None = None,
    tta: str = "none",
    detector_settings: dict | None = None,
    detector=None,
    zoom: float = CROP_ZOOM,
):
    """Each configuration through the product's own path, ``Predictor.predict``. ``oracle-aligned`` is no
    detector: each face's true landmarks (FER_LANDMARKS carried through its placement) align its crop, so its
    accuracy is what the scene's rendering (resampling, tilt, brightness, noise) alone leaves of the crop accuracy."""
    if config == "oracle-aligned":
        predictor = Predictor.from_pretrained(model, detector=None, tta=tta, zoom=1.0)  # the face's own framing
        truth = {id(s.frame): s.faces for s in all_scenes or []}

        def oracle(frame):
            faces = truth[id(frame)]
            boxes = np.array(
                [[f["centre"][0] - f["size"] / 2, f["centre"][1] - f["size"] / 2, f["size"], f["size"]] for f in faces],
                np.int32,
            ).reshape(-1, 4)
            marks = np.array([cv2.transform(FER_LANDMARKS[None], f["matrix"])[0] for f in faces]).reshape(-1, 5, 2)
            found = predictor.predict(frame, boxes, landmarks=marks)
            probs = np.array([f.probs for f in found]).reshape(len(found), len(predictor.class_names))
            return boxes, probs

        return oracle
    if config == "haar-box":
        predictor = Predictor.from_pretrained(model, detector=FaceDetector(), tta=tta)
    elif config == "yunet-upright-aligned":
        upright = replace(photo_detector(), rotations=(0.0,))
        predictor = Predictor.from_pretrained(model, detector=upright, tta=tta, zoom=zoom)
    elif detector is not None:  # a detector built elsewhere (experiments/faces_in_the_field/detectors.py)
        predictor = Predictor.from_pretrained(model, detector=detector, tta=tta, zoom=zoom)
    else:
        detector = configured_detector(detector_settings, rotations)
        predictor = Predictor.from_pretrained(model, detector=detector, tta=tta, zoom=zoom)
    detector = predictor.detector

    def run(frame):
        boxes = detector(frame) if config == "yunet-box" else None  # given boxes: a square crop of each
        faces = predictor.predict(frame, boxes)
        probs = np.array([f.probs for f in faces]).reshape(len(faces), len(predictor.class_names))
        return np.array([f.box for f in faces], np.int32).reshape(-1, 4), probs

    return run


def detections_key(detector, images: list[np.ndarray]) -> str:
    """What a detector's kept detections depend on: its settings, the shipped weights (YuNet's, the face check's)
    and the images it ran on; a cache with another key holds someone else's detections."""
    digest = hashlib.sha256(repr(detector).encode())
    for weights in (YUNET, FACE_CHECK):
        digest.update(weights.read_bytes())
    for image in images:
        digest.update(np.ascontiguousarray(image).tobytes())
    return digest.hexdigest()


class RecordedDetector:
    """The photo detector's outputs per frame, kept in or replayed from an .npz: the scenes are made again from
    their seed, so a digest of their frames, the detector's settings and the shipped weights (YuNet's, the face
    check's) says whether a file holds this run's detections."""

    def __init__(self, path: Path, detector, all_scenes: list) -> None:
        self.path, self.detector, self.key = path, detector, detections_key(detector, [s.frame for s in all_scenes])
        self.index = {id(s.frame): i for i, s in enumerate(all_scenes)}
        self.kept: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self.replaying = path.exists()
        if self.replaying:
            with np.load(path) as z:
                if str(z["key"]) != self.key:
                    raise SystemExit(
                        f"--detections {path}: made for other scenes or another detector; "
                        "give a new file name (or delete it) to detect again"
                    )
                frames, boxes, marks = z["frame"], z["boxes"], z["landmarks"]
            for i in range(len(all_scenes)):
                pick = frames == i
                self.kept[i] = (boxes[pick], marks[pick])

    def __getattr__(self, name: str):  # the rest of the detector's face (rotations, threshold, ...)
        return getattr(self.detector, name)

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        i = self.index[id(frame)]
        if not self.replaying:
            boxes, marks = self.detector.detect(frame)
            self.kept[i] = (np.asarray(boxes, np.int32).reshape(-1, 4), np.asarray(marks, np.float32).reshape(-1, 5, 2))
        return self.kept[i]

    def save(self) -> None:
        if self.replaying:
            return
        order = sorted(self.kept)
        with atomic_open(self.path) as f:  # under exactly its name (np.savez would add .npz), whole or not at all
            np.savez_compressed(
                f,
                key=self.key,
                frame=np.concatenate([np.full(len(self.kept[i][0]), i) for i in order]),
                boxes=np.concatenate([self.kept[i][0] for i in order]),
                landmarks=np.concatenate([self.kept[i][1] for i in order]),
            )


def table(result: dict) -> str:
    lines = [
        "| size px | tilt ° | faces | found | end-to-end acc | acc given found | crop acc |",
        "|---|---|---|---|---|---|---|",
    ]
    keys = [f"{s}/{t}" for s in SIZES for t in sorted({abs(t) for t in TILTS})] + ["all/all"]
    for key in keys:
        c = result["cells"].get(key)
        if c is None:
            continue
        given = f"{c['accuracy_given_found']:.3f}" if c["accuracy_given_found"] is not None else "—"
        size, tilt = key.split("/")
        cells = [
            size,
            tilt,
            c["faces"],
            f"{c['found']:.3f}",
            f"{c['accuracy']:.3f}",
            given,
            f"{c['crop_accuracy']:.3f}",
        ]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    lines.append(
        f"frames with a false box: {result['false_box_frames']:.3f}; {result['ms_per_frame']:.1f} ms per frame"
    )
    return "\n".join(lines)


def against(result: dict, earlier: dict, config: str) -> str:
    """Face by face, end to end, this run against the same configuration of an earlier run on the same scenes."""
    if config not in earlier or len(earlier[config].get("right", [])) != len(result["right"]):
        return f"(--against: no run of {config} on the same scenes to compare with)"
    c = paired_comparison(torch.tensor(result["right"]), torch.tensor(earlier[config]["right"]))
    return f"against the earlier run, end to end: {json.dumps(c)}"


def detector_settings(items: list[str], parser: argparse.ArgumentParser) -> dict:
    """``--set NAME=VALUE`` items as settings of the photo detector: a number for a numeric field, comma-separated
    angles for a field of turns (``recheck_rotations=0,-30,30``)."""
    kinds = {f.name: str(f.type) for f in fields(YuNetDetector)}
    numbers = {"int": int, "float": float}
    settings: dict = {}
    for item in items:
        name, _, value = item.partition("=")
        turns = kinds.get(name, "").startswith("tuple")
        if not value or not (turns or kinds.get(name) in numbers):
            parser.error(f"--set {item}: give NAME=VALUE for a YuNetDetector setting, e.g. recheck=0 or rotations=0,30")
        try:
            settings[name] = tuple(float(v) for v in value.split(",")) if turns else numbers[kinds[name]](value)
        except ValueError:
            wanted = "a list of angles" if turns else {"int": "an integer", "float": "a number"}[kinds[name]]
            parser.error(f"--set {item}: {value!r} is not {wanted}")
    return settings


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--n", type=int, default=1500, help="faces (one scene each, plus 5%% two-face and 5%% empty)")
    p.add_argument("--model", default="default")
    p.add_argument("--config", nargs="*", default=list(CONFIGS), choices=CONFIGS)
    p.add_argument("--out", type=Path)
    p.add_argument(
        "--split",
        default="val",
        choices=("val", "train"),
        help="val = PublicTest (report); train = for choosing settings",
    )
    p.add_argument("--seed", type=int, default=0, help="of the scenes")
    p.add_argument(
        "--backgrounds",
        default="procedural",
        choices=BACKGROUNDS,
        help="procedural (the family the field model's views use) or photos (scikit-image's, never trained on)",
    )
    p.add_argument(
        "--rendering",
        default="full",
        choices=list(RENDERINGS),
        help="the faces' rendering into the scenes: full (the benchmark) or with a part switched off, e.g. "
        "no-feather (the face's whole square pasted: its own hair and neck kept around it); same draws otherwise",
    )
    p.add_argument("--against", type=Path, help="an earlier --out of the same scenes: McNemar per configuration")
    p.add_argument(
        "--tta",
        default="none",
        choices=TTA_MODES,
        help="views averaged per face, in the pipeline and in the crop accuracy alike (predict --tta)",
    )
    p.add_argument("--zoom", type=float, default=CROP_ZOOM, help="of the aligned crop (Predictor.zoom)")
    p.add_argument("--rotations", help="the detector's turned searches, e.g. 0,-15,15,-30,30 (default: the shipped)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="another setting of the photo detector (YuNetDetector) for yunet-box/yunet-aligned, e.g. recheck=3",
    )
    p.add_argument(
        "--detections",
        type=Path,
        help="an .npz of yunet-aligned's detections: written on the first run, replayed on the next (same scenes)",
    )
    a = p.parse_args()
    if a.detections and "yunet-aligned" not in a.config:
        p.error("--detections keeps yunet-aligned's detections: add yunet-aligned to --config")
    settings = detector_settings(a.set, p)  # before the slow part: a typo fails at once
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays(a.split)  # PublicTest, or training faces for choosing settings
    crop_probs = Predictor.from_pretrained(a.model, detector=None, tta=a.tta).classify(images)
    drawn = scenes(images, labels, seed=a.seed, n=a.n, backgrounds=a.backgrounds, rendering=RENDERINGS[a.rendering])
    all_scenes = list(drawn)
    results = {}
    for config in a.config:
        turns = tuple(float(r) for r in a.rotations.split(",")) if a.rotations else None
        recorded = None
        if a.detections and config == "yunet-aligned":
            recorded = RecordedDetector(a.detections, configured_detector(settings, turns), all_scenes)
        results[config] = score(
            pipeline(config, a.model, all_scenes, turns, a.tta, settings, detector=recorded, zoom=a.zoom),
            all_scenes,
            crop_probs,
        )
        if recorded is not None:
            recorded.save()
            results[config]["detections"] = f"{'replayed from' if recorded.replaying else 'kept in'} {a.detections}"
        faces = "PublicTest" if a.split == "val" else "training"
        print(
            f"\n## {config} (model {a.model}, tta {a.tta}, {len(all_scenes)} frames from {a.n} {faces} faces, "
            f"seed {a.seed}, {a.backgrounds} backgrounds, {a.rendering} rendering, zoom {a.zoom:g}"
            f"{''.join(f', {x}' for x in a.set)})\n"
        )
        print(table(results[config]))
        if a.against:
            print(against(results[config], json.loads(a.against.read_text()), config))
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
