"""The export formats (ONNX, int8 ONNX, ``torch.export`` programs, safetensors) with a parity check against
PyTorch for each. The command line is :mod:`emotion.export`."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from emotion.atomic import atomic_path, unwritable_reason
from emotion.models.base import EmotionNet
from emotion.models.checkpoint import load_net, save_safetensors
from emotion.models.ensemble import EmotionEnsemble, weight_average

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


COMBINE = ("ensemble", "average")


def export(
    model: str | Path | Sequence[str | Path],
    fmt: str = "onnx",
    out: str | Path | None = None,
    calib: str | None = None,
    combine: str = "ensemble",
) -> tuple[Path, float]:
    """Write the export of a model file; of several, their ``ensemble`` (probabilities averaged) or their
    ``average`` (weights averaged: one network, see :func:`weight_average`). Returns its path and its parity
    figure: the max abs probability difference from PyTorch, or for ``onnx-int8`` the share of held-out training
    faces whose top-1 class differs from the float model's."""
    if combine not in COMBINE:
        raise ValueError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
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
    wanted = suffix[fmt].rsplit(".", 1)[-1]  # an int8 export is an .onnx file too
    if out and Path(out).suffix.lower() != f".{wanted}":
        raise ValueError(
            f"out={out}: format={fmt} writes a .{wanted} file, and every reader goes by the name; "
            f"name it {Path(out).with_suffix(suffix[fmt])} or give the format that matches the name"
        )
    paths = [str(model)] if isinstance(model, (str, Path)) else [str(p) for p in model]
    if any(p.endswith(".onnx") for p in paths):
        raise ValueError("export reads .ckpt or .safetensors files; an .onnx file is already an export")
    if len(paths) == 1 and combine == "average":
        raise ValueError("combine=average averages the weights of several files: give ckpt_path=[A,B,…]")
    out_path = Path(out) if out else Path(paths[0]).with_suffix(suffix[fmt])
    if why := unwritable_reason(out_path.parent):  # before any work, whatever the file system answers
        raise ValueError(f"{out_path.parent}: cannot write there ({why}); write elsewhere (out=PATH)")
    # written beside out_path and moved there once checked: a refused export leaves no file behind, and an earlier
    # file of that name as it was
    with atomic_path(out_path) as staged:
        if len(paths) == 1:
            net = load_net(paths[0])
        else:
            nets = [load_net(p) for p in paths]
            net = EmotionEnsemble.of(nets) if combine == "ensemble" else weight_average(nets)
        if fmt == "onnx-int8":
            diff = export_int8(net, staged, calib)
        else:
            {"onnx": export_onnx, "pt2": export_pt2, "safetensors": save_safetensors}[fmt](net, staged)
            diff = parity(net, staged, fmt)
            if diff > PARITY_TOL:
                raise RuntimeError(
                    f"parity check failed: the {fmt} export differs from PyTorch by {diff:.2e} > {PARITY_TOL}; "
                    "not written"
                )
    return out_path, diff


def export_int8(net: EmotionNet, out: Path, calib: str | Path) -> float:
    """Write ``net`` quantized to int8 (calibrated on ``calib``'s training faces) to ``out``; returns the share of
    other training faces whose top-1 class differs from the float model's, and raises above 5%."""
    import tempfile

    from emotion.serve import quantize

    faces = quantize.training_faces(calib, quantize.CALIBRATION_FACES + quantize.CHECK_FACES, net.input_size)
    n_cal = min(quantize.CALIBRATION_FACES, len(faces) // 2)  # small data sets: half calibrates, half checks
    calibration, check = faces[:n_cal], faces[n_cal:]
    if n_cal == 0:
        raise ValueError(f"calib={calib}: need at least 2 training faces to calibrate and check int8, got {len(faces)}")
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(net, Path(tmp) / "fp32.onnx")
        quantize.quantize_onnx(fp32, out, calibration, quantize.layer_weights(net))
        agreement = quantize.top1_agreement(fp32, out, check)
    if agreement < quantize.MIN_AGREEMENT:  # the caller removes ``out``
        raise RuntimeError(
            f"int8 model agrees with the float model on only {agreement:.1%} of {len(check)} held-out training "
            f"faces (< {quantize.MIN_AGREEMENT:.0%}); not written. Use format=onnx."
        )
    return 1.0 - agreement
