"""Imported first by the training entry points (train, evaluate, calibrate, export): in a serving install
(``pip install emotion``: no torch, Lightning or Hydra) they stop with one line that says what to install, not a
ModuleNotFoundError traceback from deep inside an import."""

from __future__ import annotations

import importlib.util
import sys

TRAINING_STACK = ("torch", "lightning", "torchmetrics", "hydra", "omegaconf")


def missing(modules: tuple[str, ...] = TRAINING_STACK) -> list[str]:
    """Which of ``modules`` this environment cannot import."""
    absent = []
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):  # ValueError: a module blocked by sys.modules[name] = None
            found = False
        if not found:
            absent.append(name)
    return absent


if absent := missing():
    main = sys.modules.get("__main__")
    name = getattr(getattr(main, "__spec__", None), "name", None)
    app = f"python -m {name}" if name else "this command"
    from emotion.errors import fail

    fail(
        f"{app} needs the training stack, which this installation lacks ({', '.join(absent)}): "
        "make install in a clone of the project (pip install -e '.[train]': the training commands read its conf/). "
        "A serving install runs predict, cam, songs and the Python API."
    )
