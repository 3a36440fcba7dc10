"""Figures and the run's ``metrics.json``: confusion matrix, misclassified faces, training curves."""

from __future__ import annotations

import platform
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from emotion.training.precision import cpu_has_native_bf16  # noqa: E402


def confusion_matrix_figure(cm: list[list[int]], class_names: tuple[str, ...] | list[str], title: str = ""):
    cm_arr = np.asarray(cm, dtype=float)
    norm = cm_arr / np.clip(cm_arr.sum(1, keepdims=True), 1, None)
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    k = len(class_names)
    ax.set(
        xticks=range(k),
        yticks=range(k),
        xticklabels=class_names,
        yticklabels=class_names,
        xlabel="predicted",
        ylabel="true",
        title=title or "confusion matrix (row-normalised; counts)",
    )
    plt.setp(ax.get_xticklabels(), rotation=45, ha="right")
    for i in range(k):
        for j in range(k):
            ax.text(
                j,
                i,
                f"{norm[i, j]:.2f}\n{int(cm_arr[i, j])}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if norm[i, j] > 0.5 else "black",
            )
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def misclassified_figure(images: torch.Tensor, true: torch.Tensor, pred: torch.Tensor, class_names) -> Any:
    n = len(images)
    cols = min(8, max(n, 1))
    rows = max(1, -(-n // cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, img, t, p in zip(axes.flat, images, true, pred):
        ax.imshow(img.squeeze().float().cpu().numpy(), cmap="gray")
        ax.set_title(f"{class_names[int(t)]}→{class_names[int(p)]}", fontsize=7)
    fig.tight_layout()
    return fig


def curves_figure(history: list[dict[str, Any]], target: float | None = None):
    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(10, 4))
    epochs = [h["epoch"] for h in history]
    for key, ax in (("val/acc", ax_acc), ("train/acc", ax_acc), ("val/loss", ax_loss), ("train/loss", ax_loss)):
        ys = [h.get(key) for h in history]
        if any(y is not None for y in ys):
            ax.plot(epochs, ys, marker="o", label=key)
    if target is not None:
        ax_acc.axhline(target, ls="--", c="gray", label=f"{target:.1%}")
    ax_acc.set(xlabel="epoch", ylabel="accuracy")
    ax_loss.set(xlabel="epoch", ylabel="loss")
    ax_acc.legend()
    ax_loss.legend()
    fig.tight_layout()
    return fig


def hardware() -> dict[str, Any]:
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu": _cpu_name(),
        # "AMD EPYC" alone names several machines here: the instruction set decides fp32 and bf16 speed
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_native_bf16": cpu_has_native_bf16(),
        # AMX tiles speed bf16 up again over AVX512-BF16 alone: the pace differs by machine (experiments/throughput/)
        "cpu_amx_bf16": bool(torch.cpu.get_capabilities().get("amx_bf16", False)),
        "cpu_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"
