"""Models shipped inside the package (``emotion/weights/*.safetensors``), with their spec in the metadata."""

from __future__ import annotations

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
# name → file; "default" is the best shipped model (see README: which experiment produced it).
SHIPPED = {"default": "emotion_cnn.safetensors", "emotion_cnn": "emotion_cnn.safetensors"}


def weights_path(name: str = "default") -> Path:
    if name not in SHIPPED:
        raise ValueError(f"unknown pretrained model {name!r}; shipped: {', '.join(sorted(SHIPPED))}")
    path = WEIGHTS_DIR / SHIPPED[name]
    if not path.is_file():
        raise FileNotFoundError(
            f"the pretrained model {name!r} ({path}) is not in this installation; pass a checkpoint "
            "(--model PATH / ckpt_path=PATH) from `python -m emotion.train`"
        )
    return path


def load_pretrained(name: str = "default"):
    """The shipped network, in eval mode, with its class names and preprocessing."""
    from emotion.checkpoint import load_net

    return load_net(weights_path(name))
