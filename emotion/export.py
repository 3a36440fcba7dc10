"""Export a trained model: ``python -m emotion.export ckpt_path=… format=onnx|onnx-int8|pt2|safetensors``.

``ckpt_path=A,B,…`` (several model files) exports their ensemble (:mod:`emotion.models.ensemble`): one model that
averages their probabilities. ``format=onnx-int8`` also needs ``calib=DIR`` (a FER2013 root: its training faces
calibrate the quantization, see :mod:`emotion.quantize`); ``out=PATH`` sets the file name.

The exported graph takes raw pixels (float32 in [0, 1], ``N×1×48×48``, dynamic batch) and outputs softmax
probabilities; class names and preprocessing travel in the ONNX metadata (``emotion_spec``). A parity check
against PyTorch runs as part of every export.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotion.checkpoint import load_net, save_safetensors
from emotion.models import EmotionEnsemble, EmotionNet

log = logging.getLogger(__name__)
PARITY_TOL = 1e-4


class ProbabilityHead(nn.Module):
    """Raw pixels → probabilities: the network plus the (temperature-calibrated) softmax that inference applies."""

    def __init__(self, net: EmotionNet) -> None:
        super().__init__()
        self.net = net.eval()

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.net.probabilities(self.net(pixels))


def _example(net: EmotionNet, n: int = 4) -> torch.Tensor:
    return torch.rand(n, 1, net.input_size, net.input_size, generator=torch.Generator().manual_seed(0))


def export_onnx(net: EmotionNet, out: str | Path, opset: int = 18) -> Path:
    import onnx

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    head = ProbabilityHead(net).eval()
    program = torch.onnx.export(
        head,
        (_example(net, 2),),
        dynamo=True,
        input_names=["pixels"],
        output_names=["probabilities"],
        dynamic_shapes=({0: torch.export.Dim("batch")},),
        opset_version=opset,
    )
    program.save(str(out))
    model = onnx.load(str(out))
    for key, value in {
        "emotion_spec": json.dumps(net.spec()),
        "class_names": json.dumps(list(net.class_names)),
    }.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(out))
    return out


def export_pt2(net: EmotionNet, out: str | Path) -> Path:
    """A ``torch.export`` program (``.pt2``, dynamic batch): PyTorch's successor of TorchScript, which torch 2.14
    deprecates. Load it with ``torch.export.load(path).module()``; the spec travels in its extra files."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    program = torch.export.export(
        ProbabilityHead(net).eval(), (_example(net, 2),), dynamic_shapes=({0: torch.export.Dim("batch")},)
    )
    torch.export.save(program, str(out), extra_files={"emotion_spec.json": json.dumps(net.spec())})
    return out


def parity(net: EmotionNet, path: Path, fmt: str) -> float:
    """Max absolute difference of the exported model's probabilities from PyTorch's, on batches of 1 and 7."""
    head = ProbabilityHead(net)
    worst = 0.0
    for n in (1, 7):
        x = _example(net, n)
        with torch.no_grad():
            ref = head(x).numpy()
        if fmt == "onnx":
            import onnxruntime as ort

            got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"pixels": x.numpy()})[
                0
            ]
        elif fmt == "pt2":
            got = torch.export.load(str(path)).module()(x).detach().numpy()
        else:
            got = ProbabilityHead(load_net(path))(x).detach().numpy()
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


def export(ckpt_path: str, fmt: str = "onnx", out: str | None = None, calib: str | None = None) -> tuple[Path, float]:
    """Write the export; returns its path and its parity figure (max abs probability difference from PyTorch, or
    for ``onnx-int8`` the share of held-out training faces whose top-1 class differs from the float model's)."""
    suffix = {
        "onnx": ".onnx",
        "onnx-int8": ".int8.onnx",
        "pt2": ".pt2",
        "safetensors": ".safetensors",
    }
    if fmt == "torchscript":
        raise ValueError("format=torchscript was replaced by format=pt2 (torch.export; TorchScript is deprecated)")
    if fmt not in suffix:
        raise ValueError(f"format must be one of {', '.join(suffix)}, got {fmt!r}")
    if fmt == "onnx-int8" and not calib:
        raise ValueError("format=onnx-int8 needs calib=DIR: a FER2013 root whose training faces calibrate int8")
    paths = [p for p in ckpt_path.split(",") if p] or [ckpt_path]  # "" → load_net's "model file not found"
    if any(p.endswith(".onnx") for p in paths):
        raise ValueError("export reads .ckpt or .safetensors files; an .onnx file is already an export")
    net = load_net(paths[0]) if len(paths) == 1 else EmotionEnsemble.of([load_net(p) for p in paths])
    out_path = Path(out) if out else Path(paths[0]).with_suffix(suffix[fmt])
    if fmt == "onnx-int8":
        return export_int8(net, out_path, calib)
    if fmt == "onnx":
        export_onnx(net, out_path)
    elif fmt == "pt2":
        export_pt2(net, out_path)
    else:
        save_safetensors(net, out_path)
    diff = parity(net, out_path, fmt)
    if diff > PARITY_TOL:
        raise RuntimeError(f"parity check failed: {fmt} export differs from PyTorch by {diff:.2e} > {PARITY_TOL}")
    return out_path, diff


def export_int8(net: EmotionNet, out: Path, calib: str | Path) -> tuple[Path, float]:
    import tempfile

    from emotion import quantize

    faces = quantize.training_faces(calib, quantize.CALIBRATION_FACES + quantize.CHECK_FACES)
    n_cal = min(quantize.CALIBRATION_FACES, len(faces) // 2)  # small data sets: half calibrates, half checks
    calibration, check = faces[:n_cal], faces[n_cal:]
    if n_cal == 0:
        raise ValueError(f"calib={calib}: need at least 2 training faces to calibrate and check int8, got {len(faces)}")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(net, Path(tmp) / "fp32.onnx")
        quantize.quantize_onnx(fp32, out, calibration, quantize.layer_weights(net))
        agreement = quantize.top1_agreement(fp32, out, check)
    if agreement < quantize.MIN_AGREEMENT:
        out.unlink()
        raise RuntimeError(
            f"int8 model agrees with the float model on only {agreement:.1%} of {len(check)} held-out training "
            f"faces (< {quantize.MIN_AGREEMENT:.0%}); not written. Use format=onnx."
        )
    return out, 1.0 - agreement


def main(argv: list[str] | None = None) -> int:
    """Accepts Hydra-style ``key=value`` arguments, like the other entry points."""
    from emotion.errors import UserError

    args = dict(a.split("=", 1) for a in (argv if argv is not None else sys.argv[1:]) if "=" in a)
    unknown = set(args) - {"ckpt_path", "pretrained", "format", "out", "calib"}
    if ("ckpt_path" in args) == ("pretrained" in args) or unknown:
        print(
            "usage: python -m emotion.export ckpt_path=PATH[,PATH…]|pretrained=true|NAME "
            "[format=onnx|onnx-int8|pt2|safetensors] [out=PATH] [calib=FER2013_ROOT (onnx-int8)]"
            + (f"\nunknown arguments: {', '.join(sorted(unknown))}" if unknown else ""),
            file=sys.stderr,
        )
        return 2
    if "pretrained" in args:
        from emotion.pretrained import model_file

        try:
            args["ckpt_path"] = str(model_file(args["pretrained"]))
        except FileNotFoundError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        if "out" not in args:
            print(
                "error: with pretrained=…, give out=PATH (the shipped weights folder is not written to)",
                file=sys.stderr,
            )
            return 2
    try:
        path, diff = export(args["ckpt_path"], args.get("format", "onnx"), args.get("out"), args.get("calib"))
    except (UserError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.get("format") == "onnx-int8":
        print(f"wrote {path} (top-1 class differs from the float model on {diff:.1%} of held-out training faces)")
    else:
        print(f"wrote {path} (parity with PyTorch: max abs diff {diff:.2e})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
