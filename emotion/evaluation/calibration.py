"""Temperature scaling (Guo et al. 2017) and its report: fit on one half of a split, ECE / NLL / reliability on the
other. The command line is :mod:`emotion.calibrate`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import hydra
import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig
from torchmetrics.functional.classification import multiclass_calibration_error

from emotion.atomic import save_figure, unwritable_reason, write_json
from emotion.cli import model_path
from emotion.errors import UserError
from emotion.models.base import EmotionNet
from emotion.models.checkpoint import load_net, save_safetensors
from emotion.models.pretrained import WEIGHTS_DIR

log = logging.getLogger(__name__)
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


@torch.no_grad()
def logits_of(net: EmotionNet, images: np.ndarray, batch: int = 512) -> torch.Tensor:
    x = torch.from_numpy(images).unsqueeze(1)
    return torch.cat([net(x[i : i + batch]) for i in range(0, len(x), batch)])


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The temperature minimising the negative log-likelihood (L-BFGS on its logarithm: it stays positive)."""
    log_t = torch.zeros(1, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels)
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def calibration(logits: torch.Tensor, labels: torch.Tensor, temperature: float, bins: int) -> dict[str, Any]:
    """ECE (L1, equal-width bins), NLL, accuracy and the reliability-diagram bins at one temperature."""
    probs = torch.softmax(logits / temperature, dim=1)
    conf, pred = probs.max(1)
    correct = (pred == labels).float()
    edges = torch.linspace(0, 1, bins + 1)
    idx = torch.bucketize(conf, edges[1:-1])
    diagram = [
        {
            "bin": [round(float(edges[b]), 3), round(float(edges[b + 1]), 3)],
            "n": int((idx == b).sum()),
            "confidence": float(conf[idx == b].mean()) if (idx == b).any() else None,
            "accuracy": float(correct[idx == b].mean()) if (idx == b).any() else None,
        }
        for b in range(bins)
    ]
    k = logits.shape[1]
    return {
        "temperature": temperature,
        "ece": float(multiclass_calibration_error(probs, labels, k, n_bins=bins, norm="l1")),
        "ece_reference": ece_reference(conf.numpy(), correct.numpy(), bins),
        "nll": float(F.nll_loss(probs.clamp_min(1e-12).log(), labels)),
        "accuracy": float(correct.mean()),
        "reliability": diagram,
    }


def binned_ece(conf: np.ndarray, correct: np.ndarray, bins: int) -> np.ndarray:
    """L1 ECE with torchmetrics' equal-width bins, vectorised over a leading axis of draws in ``correct`` (what
    :func:`ece_reference` needs: torchmetrics measures one set of predictions per call)."""
    idx = np.clip(np.searchsorted(np.linspace(0, 1, bins + 1), conf, side="right") - 1, 0, bins - 1)
    return np.abs((correct - conf) @ np.eye(bins)[idx]).sum(-1) / len(conf)


def ece_reference(
    conf: np.ndarray, correct: np.ndarray, bins: int, draws: int = 2000, seed: int = 0
) -> dict[str, float]:
    """The ECE a *perfectly calibrated* model with these confidences would measure on this many faces.

    Binned ECE is biased upwards on small sets: each draw makes every prediction correct with probability equal to
    its confidence (calibrated by construction) and measures it. ``p_value``: the share of those draws at or above
    the measured ECE — a large one means the measurement cannot tell this model from a perfectly calibrated one.
    """
    rng = np.random.default_rng(seed)
    conf, correct = conf.astype(np.float64), correct.astype(np.float64)
    perfect = binned_ece(conf, (rng.random((draws, len(conf))) < conf).astype(np.float64), bins)
    measured = binned_ece(conf, correct, bins)
    return {
        "perfect_mean": float(perfect.mean()),
        "perfect_p95": float(np.quantile(perfect, 0.95)),
        "p_value": float((perfect >= measured - 1e-12).mean()),
    }


def threshold_table(logits: torch.Tensor, labels: torch.Tensor, temperature: float) -> list[dict[str, float]]:
    """For each confidence threshold: the share of faces below it and the accuracy below and at-or-above it."""
    conf, pred = torch.softmax(logits / temperature, dim=1).max(1)
    correct = (pred == labels).float()
    rows = []
    for t in THRESHOLDS:
        low = conf < t
        rows.append(
            {
                "threshold": t,
                "share_below": float(low.float().mean()),
                "accuracy_below": float(correct[low].mean()) if low.any() else float("nan"),
                "accuracy_at_or_above": float(correct[~low].mean()) if (~low).any() else float("nan"),
            }
        )
    return rows


def reliability_figure(before: dict[str, Any], after: dict[str, Any], title: str):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2), sharey=True)
    for ax, r, name in ((axes[0], before, "before"), (axes[1], after, "after")):
        bins = [b for b in r["reliability"] if b["n"]]
        centers = [(b["bin"][0] + b["bin"][1]) / 2 for b in bins]
        width = bins[0]["bin"][1] - bins[0]["bin"][0] if bins else 0.1
        ax.bar(centers, [b["accuracy"] for b in bins], width=width * 0.9, color="#4C72B0", label="accuracy")
        ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect calibration")
        ax.set(
            xlim=(0, 1),
            ylim=(0, 1),
            xlabel="confidence (top probability)",
            title=f"{name}: T={r['temperature']:.3f}, ECE {r['ece']:.3f}",
        )
        ax.legend(loc="upper left", fontsize=8)
    axes[0].set_ylabel("accuracy")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def calibrated_path(cfg: DictConfig, path: str) -> Path:
    """Where the calibrated model goes: ``out=`` (a .safetensors name: readers go by it), else beside the input as
    ``*.calibrated.safetensors`` — for a shipped model, in the run's folder (the package's weights are not written)."""
    if cfg.get("out"):
        out = Path(cfg.out)
        if out.suffix.lower() != ".safetensors":
            raise UserError(
                f"out={out}: calibrate writes a .safetensors model file, and every reader goes by the name; name it "
                f"{out.with_suffix('.safetensors')} (an ONNX file: python -m emotion.export ckpt_path=THAT "
                "format=onnx out=…)"
            )
        return out
    name = Path(path).with_suffix(".calibrated.safetensors").name
    shipped = Path(path).resolve().parent == WEIGHTS_DIR
    return Path(cfg.paths.output_dir) / name if shipped else Path(path).with_name(name)


def calibrate(cfg: DictConfig) -> dict[str, Any]:
    path = model_path(cfg)
    if path.endswith(".onnx"):
        raise UserError(f"{path}: calibrate the .ckpt or .safetensors it was exported from, then export it again")
    out = calibrated_path(cfg, path)  # before any work
    if why := unwritable_reason(out.parent):
        raise UserError(f"out={out}: cannot write in {out.parent} ({why}); give out=PATH in a folder you can write to")
    if cfg.split not in ("train", "val", "test"):
        raise UserError(f"split must be train, val or test, got {cfg.split!r}")
    net = load_net(path)
    # the faces at the size the model was trained on: its spec, not data.image_size, is the fact
    datamodule = hydra.utils.instantiate(cfg.data, augment=None, image_size=net.input_size)
    datamodule.setup("test")
    images, labels = datamodule.arrays(cfg.split)
    if len(labels) < 20:
        raise UserError(f"the {cfg.split} split of {datamodule.root} has {len(labels)} faces; calibration needs >= 20")
    if tuple(datamodule.class_names) != net.class_names:
        raise UserError(f"model classes {net.class_names} differ from the data's {datamodule.class_names}")
    previous = net.temperature
    logits = logits_of(net, images)  # raw logits: the network's forward never applies its temperature
    y = torch.from_numpy(labels).long()
    order = np.random.default_rng(cfg.seed).permutation(len(y))
    fit, report = torch.from_numpy(order[::2]), torch.from_numpy(order[1::2])
    temperature = fit_temperature(logits[fit], y[fit])
    before = calibration(logits[report], y[report], 1.0, cfg.bins)
    after = calibration(logits[report], y[report], temperature, cfg.bins)
    net.temperature = temperature
    save_safetensors(net, out)
    result = {
        "model": path,
        "calibrated_model": str(out),
        "data_root": str(datamodule.root),
        "split": cfg.split,
        "fit_faces": len(fit),
        "report_faces": len(report),
        "previous_temperature": previous,
        "temperature": temperature,
        "before": before,
        "after": after,
        "thresholds_after": threshold_table(logits[report], y[report], temperature),
    }
    out_dir = Path(cfg.paths.output_dir)
    write_json(result, out_dir / "calibration.json")
    title = f"{Path(path).name}, {cfg.split} report half ({len(report)} faces)"
    save_figure(reliability_figure(before, after, title), out_dir / "reliability.png")
    print(
        f"temperature {temperature:.3f} (fitted on {len(fit)} faces); on the other {len(report)}: ECE "
        f"{before['ece']:.4f} -> {after['ece']:.4f}, NLL {before['nll']:.4f} -> {after['nll']:.4f}, accuracy "
        f"{after['accuracy']:.4f} (unchanged)\nwrote {out} and {out_dir}/calibration.json, reliability.png"
    )
    ref = after["ece_reference"]
    print(
        f"  a perfectly calibrated model with these confidences would measure ECE {ref['perfect_mean']:.4f} on "
        f"average on {len(report)} faces (95th percentile {ref['perfect_p95']:.4f}); {ref['p_value']:.0%} of such "
        f"draws measure {after['ece']:.4f} or more"
    )
    for row in result["thresholds_after"]:
        print(
            f"  top probability < {row['threshold']:.1f}: {row['share_below']:.1%} of faces, accuracy "
            f"{row['accuracy_below']:.3f} (at or above: {row['accuracy_at_or_above']:.3f})"
        )
    return result
