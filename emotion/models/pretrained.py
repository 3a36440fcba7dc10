"""Models shipped inside the package (``emotion/weights/*.safetensors``, spec in their metadata).

``emotion/weights/models.json`` is the one record of what is shipped: file, the run that produced it, and its
measured PublicTest accuracy (on FER2013's crops and, for some, on its faces inside scenes). ``default`` names the
one every app uses: the best on faces found in photos and video. A model with an ``onnx`` entry also ships as an
ONNX export of the same weights (same spec, same calibrated probabilities): the serving apps run that one in ONNX
Runtime, so a serving install needs no torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
REGISTRY = WEIGHTS_DIR / "models.json"


def registry() -> dict[str, Any]:
    return json.loads(REGISTRY.read_text())


def model_names() -> list[str]:
    return ["default", *sorted(registry()["models"])]


def model_card(name: str | bool = "default") -> dict[str, Any]:
    """Provenance and measured accuracy of a shipped model (``true``, as in ``pretrained=true``, means the default)."""
    reg = registry()
    key = reg["default"] if name is True or str(name).lower() in ("default", "true") else str(name)
    if key not in reg["models"]:
        raise ValueError(f"unknown pretrained model {name!r}; shipped: {', '.join(model_names())}")
    return {"name": key, **reg["models"][key]}


def weights_path(name: str | bool = "default") -> Path:
    path = WEIGHTS_DIR / model_card(name)["file"]
    if not path.is_file():
        raise FileNotFoundError(
            f"the pretrained model {name!r} ({path}) is not in this installation; pass a checkpoint "
            "(--model PATH / ckpt_path=PATH) from `python -m emotion.train`"
        )
    return path


def onnx_path(name: str | bool = "default") -> Path | None:
    """The shipped ONNX export of a shipped model, or None when it has none (or this installation lacks it)."""
    card = model_card(name)
    path = WEIGHTS_DIR / card["onnx"] if "onnx" in card else None
    return path if path is not None and path.is_file() else None


def model_file(name_or_path: str, serving: bool = False) -> Path:
    """The one resolver of every tool's model argument: a model file's path, or a shipped model's name
    (``default``/``true``, ``emotion_cnn``, …) → the file (``serving``: its ONNX export where one is shipped).
    FileNotFoundError says which names exist."""
    if Path(name_or_path).is_file():
        return Path(name_or_path)
    if name_or_path in model_names() or name_or_path.lower() == "true":
        return (serving and onnx_path(name_or_path)) or weights_path(name_or_path)
    raise FileNotFoundError(
        f"{name_or_path!r} is neither a model file nor a shipped model ({', '.join(model_names())}); "
        "give the path of a .ckpt/.safetensors file or one of those names"
    )


def load_pretrained(name: str = "default"):
    """The shipped network, in eval mode, with its class names and preprocessing."""
    from emotion.models.checkpoint import load_net

    return load_net(weights_path(name))
