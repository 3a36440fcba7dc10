"""int8 ONNX models: static post-training quantization with ONNX Runtime, calibrated on training faces.

Only the network's own convolutions and fully connected layers are quantized (per-channel int8 weights, uint8
activations); the preprocessing in the graph — normalisation (and input pooling) — stays float32, so the int8
model reads raw pixels exactly like the float one. Its class names and preprocessing travel in the same metadata.
experiments/throughput/ measures its latency and PublicTest accuracy next to the float model's.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

#: Faces to calibrate activation ranges on, and faces (others) to check top-1 agreement with the float model on.
CALIBRATION_FACES = 512
CHECK_FACES = 512
#: An int8 export must give the float model's top-1 class on at least this share of the check faces.
MIN_AGREEMENT = 0.95


def layer_weights(net: torch.nn.Module, prefix: str = "net.") -> set[str]:
    """Initializer names, in an ``emotion.export`` graph, of the weights of the network's Conv2d/Linear layers."""
    return {f"{prefix}{name}.weight" for name, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


def network_nodes(model, weights: set[str]) -> list[str]:
    """Names of the Conv/Gemm nodes that use one of ``weights`` (the network's layers, not preprocessing)."""
    return [
        n.name for n in model.graph.node if n.op_type in ("Conv", "Gemm") and len(n.input) > 1 and n.input[1] in weights
    ]


def training_faces(root: str | Path, n: int, size: int = 48, seed: int = 0) -> np.ndarray:
    """``n`` training faces (uint8 ``n×size×size``) drawn at random from a FER2013 root, via the data module."""
    from emotion.data.datamodule import FER2013DataModule

    dm = FER2013DataModule(root=str(root), image_size=size, download=False)
    dm.setup("fit")
    images, _ = dm.arrays("train")
    if len(images) == 0:
        raise ValueError(f"{root} has no training faces to calibrate on")
    pick = np.random.default_rng(seed).permutation(len(images))[:n]
    return images[pick]


def quantize_onnx(
    fp32_path: str | Path, out: str | Path, faces: np.ndarray, weights: set[str], batch: int = 64
) -> Path:
    """Quantize the layers using ``weights`` (see :func:`layer_weights`) of an ``emotion.export`` ONNX model to int8,
    with ``faces`` (uint8 ``N×S×S``) as calibration data."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    if len(faces) == 0:
        raise ValueError("int8 quantization needs calibration faces, got none")
    model = onnx.load(str(fp32_path))
    nodes = network_nodes(model, weights)
    if not nodes:
        raise ValueError(f"{fp32_path}: no network Conv/Gemm nodes found; was it written by emotion.export?")
    pixels = (faces.astype(np.float32) / 255.0)[:, None]  # what emotion.serve.predictor feeds an ONNX export

    class Faces(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(pixels[i : i + batch] for i in range(0, len(pixels), batch))

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.batches, None)
            return None if chunk is None else {"pixels": chunk}

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(
        str(fp32_path),
        str(out),
        Faces(),
        quant_format=QuantFormat.QDQ,
        nodes_to_quantize=nodes,
        per_channel=True,
        reduce_range=True,  # 7-bit weights: without VNNI, u8×s8 pairs saturate int16 (experiments/throughput/)
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    quantized = onnx.load(str(out))  # quantize_static does not keep the model's metadata: copy it over
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(model.metadata_props)
    entry = quantized.metadata_props.add()
    entry.key, entry.value = (
        "quantization",
        f"int8 static, QDQ per-channel, reduce_range, {len(faces)} calibration faces",
    )
    onnx.save(quantized, str(out))
    return out


def top1_agreement(fp32_path: str | Path, int8_path: str | Path, faces: np.ndarray) -> float:
    """Share of ``faces`` (uint8 ``N×S×S``) on which the two models predict the same class."""
    from emotion.serve.predictor import Predictor

    fp32, int8 = (Predictor(str(p), detector=None).classify(faces).argmax(1) for p in (fp32_path, int8_path))
    return float((fp32 == int8).mean())
