"""Load and save trained networks safely: no file can run code when loaded.

Lightning checkpoints are read with ``torch.load(weights_only=True)``; shipped weights are safetensors with the
network's spec (class names, input size, normalisation) in their metadata.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save

from emotion.atomic import atomic_open
from emotion.errors import ModelFileError
from emotion.models.base import EmotionNet
from emotion.models.input_norm import input_norm_of
from emotion.models.registry import build_from_spec

#: The entry of a Lightning checkpoint that holds the network's spec (class names, preprocessing, architecture).
CHECKPOINT_SPEC_KEY = "emotion_model"


def check_compatible(saved: dict[str, Any] | None, current: dict[str, Any], what: str, same_input: bool = True) -> None:
    """Refuse, naming the mismatch, to load weights of another architecture or class list — or, unless
    ``same_input`` is False (a fine-tune may change it), trained on inputs scaled another way (``input_norm``)."""
    if saved is None:
        raise ModelFileError(f"the {what} carries no '{CHECKPOINT_SPEC_KEY}' entry: it was not written by emotion")
    for key in ("arch", "class_names"):  # dropout rates may differ between runs; shapes may not
        if saved.get(key) != current.get(key):
            raise ModelFileError(
                f"{what} mismatch: {key} is {saved.get(key)!r} in the file but {current.get(key)!r} in the "
                "configured model; choose the matching model config (model=...) or another checkpoint"
            )
    norm = input_norm_of(saved)
    if same_input and norm != input_norm_of(current):
        raise ModelFileError(
            f"{what} mismatch: input_norm is {norm!r} in the file but {input_norm_of(current)!r} in the "
            f"configured model; continue it with model.net.input_norm={norm}"
        )


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """``torch.load`` restricted to tensors and plain containers: a pickled object that would run code is refused."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    if not zipfile.is_zipfile(path):  # torch.save and Lightning write zip archives
        raise ModelFileError(
            f"{path} is not a PyTorch checkpoint (not the zip archive that Lightning / torch.save write); is the file "
            "complete? Model files are .ckpt (from python -m emotion.train), .safetensors or .onnx"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # PyTorch's own text suggests weights_only=False: advice that must not reach a user holding an untrusted file.
        reason = next((line for line in str(exc).splitlines() if "GLOBAL" in line or "Unsupported" in line), "")
        raise ModelFileError(
            f"refused to load {path}: it contains pickled Python objects that are not plain weights and could run "
            f"code when loaded{f' ({reason.strip()})' if reason else ''}. Do not load it; get the model as "
            ".safetensors or re-export it from a trusted checkpoint with `python -m emotion.export`."
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise ModelFileError(f"{path} is not a readable PyTorch checkpoint ({exc}); is the file complete?") from None


def net_from_state(spec: dict[str, Any], state: dict[str, torch.Tensor], source: str) -> EmotionNet:
    try:
        net = build_from_spec(spec)
    except (TypeError, ValueError, KeyError) as exc:
        raise ModelFileError(f"{source}: cannot rebuild the network from its spec ({exc})") from None
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{source}: weights do not match architecture {spec.get('arch')!r}: {exc}") from None
    return net.eval()


def load_checkpoint_net(path: str | Path) -> EmotionNet:
    ckpt = read_checkpoint(path)
    spec = ckpt.get(CHECKPOINT_SPEC_KEY)
    if spec is None or "state_dict" not in ckpt:
        raise ModelFileError(f"{path} is not an emotion checkpoint (no '{CHECKPOINT_SPEC_KEY}' entry)")
    state = {k.removeprefix("net."): v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
    state = {k.replace("_orig_mod.", ""): v for k, v in state.items()}
    return net_from_state(spec, state, str(path))


def save_safetensors(net: EmotionNet, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    path = Path(path)
    meta = {"emotion_spec": json.dumps(net.spec()), "extra": json.dumps(extra or {})}
    data = save({k: v.detach().contiguous().cpu() for k, v in net.state_dict().items()}, metadata=meta)
    with atomic_open(path) as fh:  # safetensors' own save_file leaves the file private (0600)
        fh.write(data)
    return path


def load_safetensors_net(path: str | Path) -> EmotionNet:
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model file not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 (not a dict)
    except Exception as exc:  # safetensors raises its own error types for damaged headers
        raise ModelFileError(f"{path} is not a readable safetensors file ({exc})") from None
    if "emotion_spec" not in meta:
        raise ModelFileError(f"{path} has no 'emotion_spec' metadata: it was not written by emotion")
    return net_from_state(json.loads(meta["emotion_spec"]), state, str(path))


def load_net(path: str | Path) -> EmotionNet:
    """A network in eval mode from a Lightning checkpoint (``.ckpt``/``.pt``), a ``.safetensors`` file or an ``.onnx``
    export (run by ONNX Runtime; for evaluation)."""
    if str(path).endswith(".onnx"):
        if not Path(path).is_file():
            raise ModelFileError(f"model file not found: {path}")
        from emotion.models.onnx_net import OnnxNet

        return OnnxNet(path).eval()
    if str(path).endswith(".safetensors"):
        return load_safetensors_net(path)
    return load_checkpoint_net(path)
