"""Export a trained model: ``python -m emotion.export ckpt_path=… format=onnx|onnx-int8|pt2|safetensors``.

``ckpt_path=[A,B,…]`` (several model files) exports their ensemble (:mod:`emotion.models.ensemble`): one model
that averages their probabilities; with ``combine=average``, one network whose weights are their mean (networks of
one architecture fine-tuned from one start: the cost of one). ``format=onnx-int8`` also needs ``calib=DIR`` (a
FER2013 root: its training faces calibrate the quantization, see :mod:`emotion.serve.quantize`); ``out=PATH`` sets
the file name.

The exported graph takes raw pixels (float32 in [0, 1], ``N×1×48×48``, dynamic batch) and outputs softmax
probabilities; class names and preprocessing travel in the ONNX metadata (``emotion_spec``). A parity check
against PyTorch runs as part of every export.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import emotion.stack  # noqa: F401  (first: a one-line error in a serving install)

import hydra
from omegaconf import DictConfig, ListConfig

from emotion.cli import CONF_DIR, fail_cleanly, model_path, preflight, resolve_model
from emotion.errors import UserError

log = logging.getLogger(__name__)


def model_files(cfg: DictConfig) -> list[str]:
    """The model file(s) to export: ``pretrained=NAME`` (with ``out=``), ``ckpt_path=PATH`` or ``ckpt_path=[A,B]``;
    each path may also be a shipped model's name."""
    if (cfg.get("ckpt_path") is None) == (cfg.get("pretrained") is None):
        raise UserError("give one model: ckpt_path=PATH (or [A,B] for an ensemble) or pretrained=true|NAME")
    if cfg.get("pretrained") is not None and not cfg.get("out"):
        raise UserError("with pretrained=…, give out=PATH (the shipped weights folder is not written to)")
    paths = cfg.ckpt_path if isinstance(cfg.get("ckpt_path"), ListConfig) else [cfg.get("ckpt_path")]
    if cfg.get("pretrained") is not None:
        return [model_path(cfg)]
    if len(paths) == 1 and "," in str(paths[0]):
        raise UserError(f"ckpt_path={paths[0]}: an ensemble's files go in a list, ckpt_path=[A,B]")
    return [resolve_model(str(p)) for p in paths]


def export_model(cfg: DictConfig) -> tuple[Path, float]:
    files = model_files(cfg)  # before torch is imported
    from emotion.serve.exporters import export

    try:
        return export(files, cfg.format, cfg.get("out"), cfg.get("calib"), cfg.get("combine") or "ensemble")
    except (ValueError, RuntimeError) as exc:
        raise UserError(str(exc)) from None


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    with fail_cleanly():
        path, diff = export_model(cfg)
        if cfg.format == "onnx-int8":
            print(f"wrote {path} (top-1 class differs from the float model on {diff:.1%} of held-out training faces)")
        else:
            print(f"wrote {path} (parity with PyTorch: max abs diff {diff:.2e})")


def cli() -> None:
    """``python -m emotion.export`` / ``emotion-export``: the checks Hydra cannot make, then Hydra's app."""
    preflight(sys.argv[1:], "export")
    main()


if __name__ == "__main__":
    cli()
