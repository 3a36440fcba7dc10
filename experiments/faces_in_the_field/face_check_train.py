"""``face_check.py train``: the face/non-face network, its training (Lightning) and its ONNX export."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from face_check import texture_windows
from torch import nn
from torch.utils.data import DataLoader, TensorDataset
from torchmetrics.functional.classification import binary_auroc

from emotion.serve.faces import CHECK_SCORE

#: a rate of true faces turned away on held-out scene crops (all scores): the spec records the P(face) threshold
#: at it, for reference; the detectors use their own ``CHECK_SCORE`` (``emotion/serve/faces.py``), chosen on scenes
FACE_LOSS = 0.005


class FaceCheckNet(nn.Module):
    """48x48 pixels in [0, 1] → P(face). Each crop is standardised first (brightness and contrast do not tell a face
    from a texture); four 3x3 conv blocks, global average pooling, one logit."""

    def __init__(self, widths: tuple[int, ...] = (16, 32, 64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c = 1
        for k, w in enumerate(widths):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(inplace=True)]
            if k < len(widths) - 1:
                layers.append(nn.MaxPool2d(2))
            c = w
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(c, 1)

    def logits(self, pixels: torch.Tensor) -> torch.Tensor:
        mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
        std = pixels.std(dim=(1, 2, 3), keepdim=True)
        x = (pixels - mean) / (std + 0.02)
        return self.head(self.features(x).mean(dim=(2, 3))).squeeze(1)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(pixels))


class FaceCheckModule(L.LightningModule):
    def __init__(self, lr: float = 3e-3) -> None:
        super().__init__()
        self.net = FaceCheckNet()
        self.lr = lr

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
        x, y = batch
        x = x.float() / 255.0
        flip = torch.rand(len(x)) < 0.5
        x[flip] = x[flip].flip(-1)
        x = (x * torch.empty(len(x), 1, 1, 1).uniform_(0.6, 1.3)).clamp(0, 1)  # brightness
        loss = F.binary_cross_entropy_with_logits(self.net.logits(x), y.float())
        self.log("train/loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self):  # noqa: ANN201 (Lightning's union of return types)
        opt = torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=1e-4)
        steps = int(self.trainer.estimated_stepping_batches)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=self.lr, total_steps=steps, pct_start=0.15)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def held_out(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Which crops belong to the tenth of the scenes held out of training (drawn first from ``rng``)."""
    frames = np.unique(frame)
    return np.isin(frame, rng.choice(frames, len(frames) // 10, replace=False))


def report(p: np.ndarray, face: np.ndarray, score: np.ndarray, family: np.ndarray, names: list[str], t: float) -> None:
    """Held-out crops at P(face) ≥ ``t``: AUROC, then faces and non-faces kept by YuNet's score band and family."""
    auroc = float(binary_auroc(torch.from_numpy(p), torch.from_numpy(face))) if face.any() else float("nan")
    keen = (score >= 0.45) & face
    print(
        f"at P(face) >= {t:.4f} (held-out AUROC {auroc:.4f}): {np.sum(p[keen] < t)} of {keen.sum()} faces YuNet "
        f"scores >= 0.45 turned away, {np.sum(p[(score >= 0.45) & ~face] >= t)} of {np.sum((score >= 0.45) & ~face)} "
        "such non-faces kept"
    )
    for lo, hi in ((0.1, 0.45), (0.45, 0.75), (0.75, 1.01)):
        for k, name in enumerate(names):
            here = (score >= lo) & (score < hi) & (family == k)
            if here.any():
                kept_faces = f"{np.mean(p[here & face] >= t):.3f}" if (here & face).any() else "-"
                kept_other = f"{np.mean(p[here & ~face] >= t):.3f}" if (here & ~face).any() else "-"
                print(
                    f"  score {lo}-{hi} {name:10s}: faces kept {kept_faces} of {(here & face).sum()}, "
                    f"non-faces kept {kept_other} of {(here & ~face).sum()}"
                )


def jittered(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Training faces' own crops as the aligned crop may frame them: turned ±8°, scaled 0.9-1.1, shifted ±2 px."""
    out = np.empty_like(images)
    for k, img in enumerate(images):
        m = cv2.getRotationMatrix2D((24.0, 24.0), float(rng.uniform(-8, 8)), float(rng.uniform(0.9, 1.1)))
        m[:, 2] += rng.uniform(-2, 2, 2)
        out[k] = cv2.warpAffine(img, m, (48, 48), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return out


def export(net: FaceCheckNet, out: Path, spec: dict) -> None:
    import onnx

    out.parent.mkdir(parents=True, exist_ok=True)
    program = torch.onnx.export(
        net.eval(),
        (torch.rand(2, 1, 48, 48),),
        dynamo=True,
        input_names=["pixels"],
        output_names=["face"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=18,
    )
    program.save(str(out))
    model = onnx.load(str(out))
    entry = model.metadata_props.add()
    entry.key, entry.value = "face_check_spec", json.dumps(spec)
    onnx.save(model, str(out))


def train(a: argparse.Namespace) -> None:
    from emotion.data.datamodule import FER2013DataModule

    L.seed_everything(a.seed, workers=True)
    torch.set_num_threads(2)
    z = np.load(a.crops)
    crops, face, score, family, frame = (z[k] for k in ("crops", "face", "score", "family", "frame"))
    families = [str(f) for f in z["families"]]
    rng = np.random.default_rng(a.seed)
    held = held_out(frame, rng)
    dm = FER2013DataModule(a.data, download=False)
    dm.setup()
    own = dm.raw.images[rng.choice(dm.splits.train, min(a.own, len(dm.splits.train)), replace=False)]
    windows = texture_windows(a.windows, a.seed + 1)
    x = np.concatenate([crops[~held], jittered(own, rng), windows])
    y = np.concatenate([face[~held], np.ones(len(own), bool), np.zeros(len(windows), bool)])
    print(
        f"training: {len(x)} crops ({y.sum()} faces: {face[~held].sum()} from scenes, {len(own)} own crops; "
        f"{len(windows)} random texture windows); "
        f"held out: {held.sum()} scene crops of {len(np.unique(frame[held]))} frames ({face[held].sum()} faces)"
    )
    loader = DataLoader(TensorDataset(torch.from_numpy(x[:, None]), torch.from_numpy(y)), batch_size=128, shuffle=True)
    module = FaceCheckModule()
    t0 = time.perf_counter()
    trainer = L.Trainer(
        max_epochs=a.epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        deterministic=True,
    )
    trainer.fit(module, loader)
    seconds = time.perf_counter() - t0
    net = module.net.eval()
    with torch.no_grad():
        p = torch.cat([net(torch.from_numpy(c[:, None]).float() / 255) for c in np.array_split(crops[held], 20)])
    p = p.numpy()
    threshold = float(np.quantile(p[face[held]], FACE_LOSS)) if face[held].any() else float("nan")  # tiny trials
    print(f"trained {a.epochs} epochs in {seconds:.0f} s; {FACE_LOSS:.1%} of held-out faces under {threshold:.4f}")
    for t in (threshold, CHECK_SCORE):
        report(p, face[held], score[held], family[held], families, t)
    spec = {
        "input_size": 48,
        "crop": "aligned onto FER2013's landmark template (emotion.serve.faces.aligned_crop)",
        "threshold": None if np.isnan(threshold) else round(threshold, 4),
        "face_loss": FACE_LOSS,
        "trained_on": f"{a.crops.name}: {len(x)} crops, seed {a.seed}, {a.epochs} epochs",
    }
    export(net, a.out, spec)
    print(f"-> {a.out} ({a.out.stat().st_size} bytes), spec {spec}")
