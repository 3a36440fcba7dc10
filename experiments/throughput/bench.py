"""Throughput benchmark: training images/s vs a naive pipeline and the hardware bound, data start-up, peak RSS,
inference latency per face (eager / TorchScript / ONNX Runtime), webcam-pipeline frames/s and its false faces on
textured backgrounds (photographs).

    python experiments/throughput/bench.py --data ../shared/data/fer2013 --out experiments/throughput/results.json

Every figure is the median of ``--reps`` repetitions; run it on an otherwise idle machine. Without FER2013
(``--data`` missing) the training rows use generated faces of the same shape. ``--quick`` runs each row briefly
(the smoke test uses it); its figures are not meant to be quoted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from emotion.data import FER2013DataModule  # noqa: E402
from emotion.data.augment import BatchAugment  # noqa: E402
from emotion.data.cache import load_raw  # noqa: E402
from emotion.data.synthetic import ensure_dataset  # noqa: E402
from emotion.models import EmotionCNN  # noqa: E402
from emotion.models.module import EmotionModule  # noqa: E402
from emotion.training.precision import bf16_where_native, cpu_has_native_bf16  # noqa: E402
from emotion.training.reports import hardware  # noqa: E402

BATCH = 64
BENCH_MODEL = "emotion_cnn"  # the seed network, shipped always: the figures do not move when the default model does


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# ----------------------------------------------------------------------------------------------- training
class StepClock(L.Callback):
    """Wall time between consecutive training-batch ends: the full step, data fetch included."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def on_train_batch_end(self, *args: Any) -> None:
        self.stamps.append(time.perf_counter())

    def step_seconds(self, warmup: int) -> list[float]:
        s = self.stamps
        return [b - a for a, b in zip(s[warmup:], s[warmup + 1 :])]


def ours_images_per_s(
    root: Path,
    batches: int,
    warmup: int,
    cache_dir: Path,
    precision: str = "32-true",
    distill: dict | None = None,
    optimizer: type[torch.optim.Optimizer] = torch.optim.Adam,
) -> float:
    """Our pipeline through Lightning: in-memory uint8 batches, on-device augmentation, channels_last, a fused
    ``optimizer`` (Adam as ``conf/model/emotion_cnn.yaml``), at the trainer's ``precision``; ``distill``:
    ``model.distill``'s settings."""
    dm = FER2013DataModule(
        root=str(root),
        batch_size=BATCH,
        cache_dir=str(cache_dir),
        download=False,
        augment=BatchAugment(hflip=True, rotate_deg=10.0, scale=(0.8, 1.0), ratio=(0.9, 1.1), translate=0.05),
    )
    module = EmotionModule(
        EmotionCNN(),
        optimizer=lambda params: optimizer(params, lr=1e-3, fused=True),
        channels_last=True,
        distill=distill,
    )
    clock = StepClock()
    trainer = L.Trainer(
        accelerator="cpu",
        precision=precision,
        max_epochs=1,
        limit_train_batches=warmup + batches + 1,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=dm)
    return BATCH / median(clock.step_seconds(warmup))


def naive_images_per_s(root: Path, batches: int, warmup: int) -> float:
    """The seed project's pipeline: ImageFolder + per-sample PIL transforms + DataLoader(2 workers), and the seed's
    eager network (same weights and layers, its own layer order: ReLU before pool, NCHW)."""
    from torchvision import datasets, transforms

    from emotion.models.emotion_cnn import seed_order_logits

    tf = transforms.Compose(
        [
            transforms.Grayscale(1),
            transforms.Resize(48),
            transforms.RandomHorizontalFlip(),
            transforms.RandomRotation(10),
            transforms.RandomResizedCrop(48, scale=(0.8, 1.0)),
            transforms.ToTensor(),
            transforms.Normalize([0.5077], [0.2550]),
        ]
    )
    ds = datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=BATCH, shuffle=True, num_workers=2, drop_last=True)
    net = EmotionCNN().train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    stamps = []
    for i, (x, y) in enumerate(loader):
        loss = torch.nn.functional.cross_entropy(seed_order_logits(net, x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        stamps.append(time.perf_counter())
        if i >= warmup + batches:
            break
    steps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1 :])]
    return BATCH / median(steps)


def training_flops_per_image() -> int:
    """Forward + backward FLOPs of one training image (torch.utils.flop_counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = EmotionCNN().train()
    x = torch.rand(BATCH, 1, 48, 48)
    with FlopCounterMode(display=False) as counter:
        net(x).sum().backward()
    return counter.get_total_flops() // BATCH


def matmul_flops_per_s(n: int = 2048, reps: int = 5) -> float:
    """Dense fp32 matmul FLOP/s with PyTorch's threads: the hardware bound."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - t)
    return 2 * n**3 / median(times)


# ----------------------------------------------------------------------------------------------- data, memory
def data_startup(root: Path) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        raw, cached = load_raw(root, 48, tmp)
        first = time.perf_counter() - t
        assert not cached
        t = time.perf_counter()
        raw, cached = load_raw(root, 48, tmp)
        again = time.perf_counter() - t
        assert cached
    return {"images": int(len(raw.labels)), "first_load_s": first, "cached_load_s": again}


def training_peak_rss_mb(root: Path, batches: int) -> float:
    """Peak RSS of a real ``python -m emotion.train`` process on the full data (a few batches)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [
            sys.executable,
            "-m",
            "emotion.train",
            "experiment=recipe",
            f"data.root={root}",
            f"paths.root_dir={tmp}",
            f"paths.cache_dir={ROOT / '.cache' / 'emotion'}",
            "trainer.max_epochs=1",
            f"trainer.limit_train_batches={batches}",
            "trainer.limit_val_batches=2",
            "trainer.limit_test_batches=2",
            "logger=csv",
            "callbacks.progress_bar.log_refresh_rate=1000",
        ]
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True)
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        raise RuntimeError("peak RSS of the training process was not measurable (an earlier child was larger)")
    return peak / 1024  # Linux reports KiB


# ----------------------------------------------------------------------------------------------- inference
def inference_ms_per_face(root: Path, reps: int, iters: int, model: str) -> dict[str, Any]:
    """Per-face latency of the shipped model in every runtime, and (int8 being lossy) the test-split accuracy of
    the float and int8 ONNX models. int8 is calibrated on training faces of ``root``."""
    import onnxruntime as ort

    from emotion import load_pretrained
    from emotion.serve import quantize
    from emotion.serve.exporters import ProbabilityHead, export_onnx, export_pt2
    from emotion.serve.predictor import Predictor

    net = load_pretrained(model).eval()
    head = ProbabilityHead(net).eval()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        pt2 = torch.export.load(str(export_pt2(net, Path(tmp) / "m.pt2"))).module()
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = torch.get_num_threads()
        fp32 = export_onnx(net, Path(tmp) / "m.onnx")
        int8 = quantize.quantize_onnx(
            fp32,
            Path(tmp) / "m.int8.onnx",
            quantize.training_faces(root, 512, net.input_size),
            quantize.layer_weights(net),
        )
        sessions = {
            name: ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            for name, path in (("onnxruntime", fp32), ("onnxruntime_int8", int8))
        }
        for n in (1, 32):
            x = torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
            xf = x.float().div(255)
            runners = {
                "eager": lambda xf=xf: head(xf),
                "pt2": lambda xf=xf: pt2(xf),
                **{name: lambda xn=xf.numpy(), s=sess: s.run(None, {"pixels": xn}) for name, sess in sessions.items()},
            }
            for name, fn in runners.items():
                with torch.inference_mode():
                    for _ in range(10):
                        fn()
                    per_rep = []
                    for _ in range(reps):
                        t = time.perf_counter()
                        for _ in range(iters):
                            fn()
                        per_rep.append((time.perf_counter() - t) / iters / n * 1e3)
                results.setdefault(name, {})[f"batch{n}_ms_per_face"] = median(per_rep)
        dm = FER2013DataModule(root=str(root), image_size=net.input_size, download=False)
        dm.setup("test")
        images, labels = dm.arrays("test")
        for name, path in (("onnxruntime", fp32), ("onnxruntime_int8", int8)):
            pred = Predictor(str(path), detector=None).classify(images).argmax(1)
            results[name]["test_accuracy"] = float((pred == labels).mean())
            results[name]["test_images"] = len(labels)
    return results


def recipe_model() -> Any:
    """``experiment=recipe``'s ``model`` settings, as its config file gives them."""
    from omegaconf import OmegaConf

    return OmegaConf.load(ROOT / "conf" / "experiment" / "recipe.yaml").model


def recipe_teacher() -> tuple[str, ...]:
    """The teacher of ``experiment=recipe`` (a name or a list of shipped models)."""
    teacher = recipe_model().distill.teacher
    return (str(teacher),) if isinstance(teacher, str) else tuple(str(t) for t in teacher)


def teacher_ms_per_batch(reps: int, iters: int) -> dict[str, Any]:
    """The recipe's frozen teacher on a training batch, as a training step runs it (channels_last, in bf16 where
    the CPU has it natively): as loaded (batch norms folded, :mod:`emotion.models.fold`) and with its batch norms
    kept, and how far apart their probabilities are."""
    from emotion.models.checkpoint import load_net
    from emotion.models.distill import Distillation, teacher_file
    from emotion.models.ensemble import EmotionEnsemble

    names = recipe_teacher()
    folded = Distillation(teacher=names).load_teacher(load_net(teacher_file(names[0])).class_names)
    members = [load_net(teacher_file(n)) for n in names]
    kept = (members[0] if len(members) == 1 else EmotionEnsemble.of(members)).requires_grad_(False).eval()
    x = torch.randint(0, 256, (BATCH, 1, 48, 48), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = x.float().div(255).contiguous(memory_format=torch.channels_last)
    bf16 = cpu_has_native_bf16()
    results: dict[str, Any] = {"teacher": list(names), "batch": BATCH, "bf16": bf16}
    nets = {"kept": kept.to(memory_format=torch.channels_last), "folded": folded.to(memory_format=torch.channels_last)}
    times: dict[str, list[float]] = {name: [] for name in nets}
    with torch.inference_mode(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
        probs = {name: torch.softmax(net(x).float(), 1) for name, net in nets.items()}
        for _ in range(2):  # warm-up
            for net in nets.values():
                net(x)
        for rep in range(2 * reps):  # the two alternate, each first in turn: neither gets the warmer caches
            for name in sorted(nets, reverse=rep % 2 == 1):
                t = time.perf_counter()
                for _ in range(iters):
                    nets[name](x)
                times[name].append((time.perf_counter() - t) / iters * 1e3)
    for name in nets:
        results[f"{name}_ms_per_batch"] = median(times[name])
    results["speedup"] = results["kept_ms_per_batch"] / results["folded_ms_per_batch"]
    results["max_prob_difference"] = float((probs["kept"] - probs["folded"]).abs().max())
    results["same_top_class"] = float((probs["kept"].argmax(1) == probs["folded"].argmax(1)).float().mean())
    return results


def recipe_step_images_per_s(
    root: Path, batches: int, warmup: int, cache_dir: Path, fold: bool = True, reuse_outputs: bool = False
) -> float:
    """A whole recipe training step (EmotionCNN distilled from the recipe's teacher, with its optimizer, bf16 where
    native), with the teacher's batch norms folded as training loads it, or kept (the folding switched off for this
    row only); ``reuse_outputs``: ``model.distill.reuse_outputs`` (its store in ``cache_dir``)."""
    from unittest import mock

    from hydra.utils import get_class

    precision = bf16_where_native("cpu")
    distill = {"teacher": list(recipe_teacher()), "reuse_outputs": reuse_outputs}
    optimizer = get_class(recipe_model().optimizer._target_)
    unfolded = mock.patch("emotion.models.fold.fold_batch_norm", lambda net: 0)
    with unfolded if not fold else contextlib.nullcontext():
        return ours_images_per_s(root, batches, warmup, cache_dir, precision, distill, optimizer)


def recipe_step_rows(root: Path, batches: int, warmup: int, cache_dir: Path, reps: int) -> dict[str, float]:
    """Recipe steps (img/s) with the teacher's batch norms kept, folded, and with its outputs read back
    (``reuse_outputs``, from a first run that kept them: ``outputs_kept``); the three alternate, each first in turn."""
    rows = {
        "kept": lambda: recipe_step_images_per_s(root, batches, warmup, cache_dir, fold=False),
        "folded": lambda: recipe_step_images_per_s(root, batches, warmup, cache_dir),
        "outputs_read": lambda: recipe_step_images_per_s(root, batches, warmup, cache_dir, reuse_outputs=True),
    }
    out: dict[str, Any] = {"outputs_kept": rows["outputs_read"]()}  # the first run fills the store
    names = list(rows)
    for rep in range(reps):
        for name in names[rep % 3 :] + names[: rep % 3]:
            out.setdefault(name, []).append(rows[name]())
    out.update({name: median(out[name]) for name in rows})
    out["speedup"] = out["folded"] / out["kept"]
    out["read_speedup"] = out["outputs_read"] / out["folded"]
    return out


STARTUP_COMMANDS = {
    "train --help": ["emotion.train", "--help"],
    "train model.optimizer.lr=-1 (error)": ["emotion.train", "model.optimizer.lr=-1"],
    "evaluate --help": ["emotion.evaluate", "--help"],
    "calibrate --help": ["emotion.calibrate", "--help"],
    "export --help": ["emotion.export", "--help"],
    "predict --help": ["emotion.predict", "--help"],
    "cam --help": ["emotion.cam", "--help"],
    "songs --help": ["emotion.songs", "--help"],
    "audit --help": ["emotion.audit", "--help"],
    "sweep_report --help": ["emotion.sweep_report", "--help"],
}


def startup_seconds(reps: int) -> dict[str, float]:
    """Wall time of each command in :data:`STARTUP_COMMANDS` (a fresh interpreter each; median of ``reps``)."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = os.environ | {"EMOTION_ROOT": tmp}  # the failing command's log folder goes there, not into logs/
        for name, args in STARTUP_COMMANDS.items():
            times = []
            for _ in range(reps):
                t0 = time.perf_counter()
                subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, timeout=120)
                times.append(time.perf_counter() - t0)
            out[name] = median(times)
    return out


FACE_SIZES = (
    60,
    80,
    100,
    130,
    160,
    240,
    360,
    440,
)  # face widths in a 640×480 frame: ~3 m from a laptop camera to ~25 cm


#: tilted-face rows: (face width, tilt in degrees)
TILTED = ((100, 30), (240, 30))


def face_video(
    path: Path,
    frames: int,
    face_width: int,
    tilt: float = 0.0,
    background: np.ndarray | None = None,
    noise: float = 0.0,
    head_only: bool = False,
) -> np.ndarray:
    """A 640×480 MJPG video of the astronaut's face ``face_width`` px wide (the Haar box; 0: no face), tilted by
    ``tilt`` degrees, swaying ±60 px over ``background`` (default: skimage's coffee photo), with the camera's noise of
    ``noise`` grey levels drawn afresh in every frame; returns each frame's true face box (``frames×4``, x y w h;
    all zero without a face). The whole photograph is pasted (it covers most of the frame at larger faces), or with
    ``head_only`` an ellipse around the head, feathered, so that the background stays in view around the face."""
    import cv2
    from skimage import data as skdata

    from emotion.serve.faces import FaceDetector

    if background is None:
        background = cv2.resize(cv2.cvtColor(skdata.coffee(), cv2.COLOR_RGB2BGR), (640, 480))
    photo = cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR)
    x, y, w, h = FaceDetector(detect_width=0)(photo)[0]
    scale = max(face_width, 1) / w
    photo = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if tilt:
        turn = cv2.getRotationMatrix2D(((x + w / 2) * scale, (y + h / 2) * scale), tilt, 1.0)
        photo = cv2.warpAffine(photo, turn, photo.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    alpha = np.ones(photo.shape[:2] + (1,), np.float32)
    if head_only:  # the head and a little around it: an ellipse 1.6 × 2 face widths, feathered
        alpha[:] = 0
        centre = (round((x + w / 2) * scale), round((y + h / 2) * scale))
        cv2.ellipse(alpha, centre, (round(0.8 * face_width), face_width), 0, 0, 360, 1.0, -1)
        alpha = cv2.GaussianBlur(alpha, (0, 0), 0.08 * face_width + 1)[..., None]
    rng = np.random.default_rng(0)
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (640, 480))
    truth = np.zeros((frames, 4), np.int32)
    for i in range(frames):
        frame = background.copy()
        if face_width:
            cx, cy = 320 + int(60 * np.sin(i / 10)), 240
            ox, oy = int(cx - (x + w / 2) * scale), int(cy - (y + h / 2) * scale)
            x0, y0 = max(0, ox), max(0, oy)
            x1, y1 = min(640, ox + photo.shape[1]), min(480, oy + photo.shape[0])
            a = alpha[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            pasted = a * photo[y0 - oy : y1 - oy, x0 - ox : x1 - ox] + (1 - a) * frame[y0:y1, x0:x1]
            frame[y0:y1, x0:x1] = np.round(pasted).astype(np.uint8)
            truth[i] = (cx - face_width // 2, cy - face_width // 2, face_width, face_width)
        if noise:
            frame = np.clip(frame + rng.normal(0, noise, frame.shape), 0, 255).astype(np.uint8)
        vw.write(frame)
    vw.release()
    return truth


class SeedDetector:
    """The seed project's pipeline: Haar (scale 1.1, 5 neighbours, 30 px minimum) on every full frame (stateless,
    so ``reset`` has nothing to do; ``emotion.serve.faces.StreamDetector`` is what the cam needs)."""

    def __init__(self) -> None:
        from emotion.serve.faces import FaceDetector

        self.haar = FaceDetector(scale_factor=1.1, min_neighbors=5, min_size=30, detect_width=0)

    def reset(self) -> None:
        pass

    def detect(self, frame: np.ndarray) -> tuple[np.ndarray, None]:
        return self.haar.detect(frame)


def webcam_fps(frames: int, model: str) -> dict[str, Any]:
    """The cam pipeline (decode + detect + crop + classify + draw, no display) with ``emotion.serve.cam``'s default
    detector (YuNet), with its Haar option and with the seed's pipeline, per face size and for tilted faces:
    frames/s and the share of frames whose true face was found."""
    from emotion.serve.cam import run
    from emotion.serve.faces import VideoFaceDetector, haar_scanner, iou
    from emotion.serve.predictor import Predictor

    predictor = Predictor.from_pretrained(model, detector=None)
    detectors = {"ours": VideoFaceDetector, "haar": lambda: VideoFaceDetector(haar_scanner()), "seed": SeedDetector}
    out: dict[str, Any] = {"face_sizes": {}, "tilted": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for size, tilt in [*((s, 0) for s in FACE_SIZES), *TILTED]:
            video = Path(tmp) / f"face{size}_{tilt}.avi"
            truth = face_video(video, frames, size, tilt)
            row = {}
            for name, make in detectors.items():
                found = np.zeros(frames, bool)

                def score(i: int, faces: list, found: np.ndarray = found, truth: np.ndarray = truth) -> None:
                    found[i] = any(iou(f.box, truth[i]) >= 0.3 for f in faces)

                stats, _ = run(predictor, str(video), headless=True, detector=make(), draw=True, on_frame=score)
                row[f"{name}_fps"] = stats.fps
                row[f"{name}_found"] = float(found.mean())
            out["tilted" if tilt else "face_sizes"][f"{size}@{tilt}" if tilt else size] = row
    sizes = out["face_sizes"].values()
    out["ours_min_fps"] = min(r["ours_fps"] for r in sizes)
    out["ours_min_found"] = min(r["ours_found"] for r in sizes)
    return out


#: the face of the webcam rows on photographs (a face seen from about 1.5 m)
TEXTURE_FACE = 120


def webcam_textures(
    frames: int,
    model: str,
    photos: tuple[str, ...] | None = None,
    confirm_below: float | None = None,
    face_check: float | None = None,
) -> dict[str, Any]:
    """The cam pipeline (default detector) over each of the faces-in-the-field benchmark's photographs (textures,
    objects, a cat, text, a star field; no people) as the whole background, with the camera's noise (σ = 3) in
    every frame, once without a face and once with a :data:`TEXTURE_FACE`-px face swaying over it: per photograph,
    frames with a false box (a face shown where there is none), the share of frames whose face was found, FPS.
    ``confirm_below`` and ``face_check`` replace the video detector's own (``python -m emotion.cam
    --confirm-below``, ``--face-check``)."""
    import cv2

    from emotion.serve.cam import run
    from emotion.serve.faces import VideoFaceDetector, iou, stream_scanner
    from emotion.serve.predictor import Predictor

    sys.path.insert(0, str(ROOT / "experiments" / "faces_in_the_field"))
    import scenes

    predictor = Predictor.from_pretrained(model, detector=None)
    settings = {} if confirm_below is None else {"confirm_below": confirm_below}
    scanner = stream_scanner() if face_check is None else replace(stream_scanner(), check=face_check)
    out: dict[str, Any] = {
        "face": TEXTURE_FACE,
        "frames": frames,
        "photos": {},
        "detector": {**settings, "face_check": scanner.check},
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name in photos or scenes.PHOTOS:
            background = cv2.resize(scenes.photo(name), (640, 480), interpolation=cv2.INTER_AREA)
            row: dict[str, float] = {}
            for label, width in (("empty", 0), ("face", TEXTURE_FACE)):
                video = Path(tmp) / f"{name}-{label}.avi"
                truth = face_video(video, frames, width, background=background, noise=3.0, head_only=True)
                false = np.zeros(frames, bool)
                found = np.zeros(frames, bool)

                def score(i: int, faces: list, false=false, found=found, truth=truth) -> None:
                    overlaps = [iou(f.box, truth[i]) >= 0.3 for f in faces]
                    found[i], false[i] = any(overlaps), not all(overlaps)

                detector = VideoFaceDetector(scanner, **settings)
                stats, _ = run(predictor, str(video), headless=True, detector=detector, on_frame=score)
                row[f"{label}_false"] = float(false.mean())
                row[f"{label}_fps"] = stats.fps
                row[f"{label}_seconds"] = stats.seconds
                if width:
                    row["found"] = float(found.mean())
            out["photos"][name] = row
    rows = out["photos"].values()
    out["empty_false"] = float(np.mean([r["empty_false"] for r in rows]))
    out["face_false"] = float(np.mean([r["face_false"] for r in rows]))
    out["found"] = float(np.mean([r["found"] for r in rows]))
    for label in ("empty", "face"):  # over all frames: a 90-frame video's own FPS moves with its start
        out[f"{label}_fps"] = len(out["photos"]) * frames / sum(r[f"{label}_seconds"] for r in rows)
    return out


# ----------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "fer2013")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="tiny runs: check that every row works")
    p.add_argument("--out", type=Path, help="also write the figures as JSON")
    p.add_argument(
        "--only",
        choices=["training", "teacher", "data", "inference", "webcam", "textures", "startup"],
        help="run one group of rows",
    )
    p.add_argument(
        "--model",
        default=BENCH_MODEL,
        help=f"shipped model for the inference and webcam rows (default {BENCH_MODEL}; e.g. emotion_vgg)",
    )
    p.add_argument(
        "--confirm-below",
        type=float,
        help="textures rows: the cam's --confirm-below (default: the cam's own; 0 = no closer looks at new faces)",
    )
    p.add_argument(
        "--face-check",
        type=float,
        help="textures rows: the cam's --face-check (default: the cam's own; 0 = no face check)",
    )
    args = p.parse_args(argv)

    batches, warmup, iters, frames = (3, 1, 3, 12) if args.quick else (30, 5, 200, 150)
    reps = 1 if args.quick else args.reps
    tmp = Path(tempfile.mkdtemp(prefix="emotion-bench-"))
    root = args.data
    if not (root / "train").is_dir():
        print(f"{root} has no train/ folder: using generated faces of the same shape")
        root = ensure_dataset(tmp / "synthetic", n_train=BATCH * (batches + warmup + 2) // 7 + 1, n_val=8, n_test=8)
    res: dict[str, Any] = {
        "machine": {**hardware(), "cores": os.cpu_count()},  # what the run reports record, so the two compare
        "data_root": str(root),
        "reps": reps,
        "model": args.model,  # of the inference and webcam rows
    }

    def wanted(group: str) -> bool:
        return args.only in (None, group)

    if wanted("training"):
        ours = [ours_images_per_s(root, batches, warmup, tmp / "cache") for _ in range(reps)]
        bf16 = [ours_images_per_s(root, batches, warmup, tmp / "cache", "bf16-mixed") for _ in range(reps)]
        naive = [naive_images_per_s(root, batches, warmup) for _ in range(reps)]
        flops = training_flops_per_image()
        peak = median([matmul_flops_per_s() for _ in range(reps)])
        bound = peak / flops
        res["training"] = {
            "ours_images_per_s": median(ours),
            "ours_bf16_images_per_s": median(bf16),
            "bf16_speedup": median(bf16) / median(ours),
            "native_bf16": cpu_has_native_bf16(),
            "naive_images_per_s": median(naive),
            "speedup_vs_naive": median(ours) / median(naive),
            "flops_per_image_fwd_bwd": flops,
            "matmul_flops_per_s": peak,
            "bound_images_per_s": bound,
            "ours_percent_of_bound": 100 * median(ours) / bound,
        }
    if wanted("teacher"):
        res["teacher"] = teacher_ms_per_batch(reps, max(1, iters // 4))
        res["teacher"]["recipe_step_images_per_s"] = recipe_step_rows(root, batches, warmup, tmp / "cache", reps)
    if wanted("data"):
        res["data"] = data_startup(root)
        res["memory"] = {"training_peak_rss_mb": training_peak_rss_mb(root, batches)}
    if wanted("inference"):
        res["inference"] = inference_ms_per_face(root, reps, iters, args.model)
    if wanted("webcam"):
        res["webcam"] = webcam_fps(frames, args.model)
    if wanted("textures"):
        photos = ("text", "chelsea") if args.quick else None
        res["textures"] = webcam_textures(3 * frames // 5, args.model, photos, args.confirm_below, args.face_check)
    if wanted("startup"):
        res["startup"] = startup_seconds(reps)
    print_rows(res)
    if args.out:
        args.out.write_text(json.dumps(res, indent=1))
        print(f"wrote {args.out}")
    return 0


def print_rows(res: dict[str, Any]) -> None:
    rows: list[tuple[str, str]] = []
    if "training" in res:
        t = res["training"]
        rows += [
            ("training, ours (img/s)", f"{t['ours_images_per_s']:.1f}"),
            (
                f"training, ours, bf16-mixed (img/s; {'native' if t['native_bf16'] else 'emulated'} bf16)",
                f"{t['ours_bf16_images_per_s']:.1f} ({t['bf16_speedup']:.2f}x fp32)",
            ),
            ("training, naive ImageFolder+PIL+2 workers (img/s)", f"{t['naive_images_per_s']:.1f}"),
            ("speed-up vs naive", f"{t['speedup_vs_naive']:.2f}x"),
            ("FLOPs per training image (fwd+bwd)", f"{t['flops_per_image_fwd_bwd'] / 1e6:.0f} MFLOP"),
            ("dense fp32 matmul", f"{t['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s"),
            ("hardware bound (img/s)", f"{t['bound_images_per_s']:.1f}"),
            ("ours as % of bound", f"{t['ours_percent_of_bound']:.0f}%"),
        ]
    if "teacher" in res:
        t = res["teacher"]
        step = t["recipe_step_images_per_s"]
        rows += [
            (
                f"recipe teacher ({' + '.join(t['teacher'])}), batch {t['batch']}, {'bf16' if t['bf16'] else 'fp32'}"
                ": batch norms kept / folded (ms)",
                f"{t['kept_ms_per_batch']:.1f} / {t['folded_ms_per_batch']:.1f} ({t['speedup']:.2f}x)",
            ),
            (
                "  folded vs kept: largest probability difference, same top class",
                f"{t['max_prob_difference']:.4f}, {t['same_top_class']:.0%}",
            ),
            (
                "recipe training step with that teacher: batch norms kept / folded (img/s)",
                f"{step['kept']:.1f} / {step['folded']:.1f} ({step['speedup']:.2f}x)",
            ),
            (
                "  reuse_outputs: the run keeping the teacher's outputs / later runs reading them (img/s)",
                f"{step['outputs_kept']:.1f} / {step['outputs_read']:.1f} ({step['read_speedup']:.2f}x folded)",
            ),
        ]
    if "memory" in res:
        d = res["data"]
        rows += [
            (f"first load, decode {d['images']} images (s)", f"{d['first_load_s']:.2f}"),
            ("cached load (s)", f"{d['cached_load_s']:.2f}"),
            ("peak RSS of a full-data training process (MB)", f"{res['memory']['training_peak_rss_mb']:.0f}"),
        ]
    for name, r in res.get("inference", {}).items():
        rows.append((f"inference {name}, batch 1 (ms/face)", f"{r['batch1_ms_per_face']:.3f}"))
        rows.append((f"inference {name}, batch 32 (ms/face)", f"{r['batch32_ms_per_face']:.3f}"))
        if "test_accuracy" in r:
            rows.append((f"  {name} accuracy on the {r['test_images']} test-split faces", f"{r['test_accuracy']:.4f}"))
    if "webcam" in res:
        cam = res["webcam"]
        for label, group in (("face", cam["face_sizes"]), ("face tilted", cam.get("tilted", {}))):
            for size, r in group.items():
                size = str(size).replace("@", "-px, ") + ("°" if "@" in str(size) else "-px")
                rows.append(
                    (
                        f"webcam 640x480, {size} {label}: FPS / face found, ours (haar) vs seed",
                        f"{r['ours_fps']:.1f} / {r['ours_found']:.0%}"
                        + (f" ({r['haar_fps']:.1f} / {r['haar_found']:.0%})" if "haar_fps" in r else "")
                        + f"   vs {r['seed_fps']:.1f} / {r['seed_found']:.0%}",
                    )
                )
        rows.append(
            (
                "webcam, ours: lowest FPS / lowest share found over the sizes",
                f"{cam['ours_min_fps']:.1f} / {cam['ours_min_found']:.0%}",
            )
        )
    if "textures" in res:
        tex = res["textures"]
        for name, r in tex["photos"].items():
            rows.append(
                (
                    f"webcam on photograph {name}: frames with a false box, no face / {tex['face']}-px face; found",
                    f"{r['empty_false']:.0%} / {r['face_false']:.0%}; {r['found']:.0%}",
                )
            )
        rows.append(
            (
                f"webcam on {len(tex['photos'])} photographs: false-box frames, no face / face; found; FPS",
                f"{tex['empty_false']:.1%} / {tex['face_false']:.1%}; {tex['found']:.1%}; "
                f"{tex['empty_fps']:.1f} / {tex['face_fps']:.1f}",
            )
        )
    for name, seconds in res.get("startup", {}).items():
        rows.append((f"start-up: python -m {name} (s)", f"{seconds:.2f}"))
    width = max(len(r[0]) for r in rows)
    m = res["machine"]
    model = f", inference/webcam model {res['model']}" if {"inference", "webcam", "textures"} & res.keys() else ""
    isa = f"{m['cpu_capability']}, bf16 {'native' if m['cpu_native_bf16'] else 'emulated'}" + (
        ", AMX" if m["cpu_amx_bf16"] else ""
    )
    print(f"\nthroughput ({m['cpu']}: {m['cores']} cores, {isa}; torch {m['torch']}, medians of {res['reps']}{model})")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    raise SystemExit(main())
