"""Atomic checkpoint writes: a crash while saving never leaves a damaged ``last.ckpt`` in place.

Lightning's own save goes through an fsspec transaction whose temporary file lives in the system temp folder;
when that is another filesystem (a Modal Volume, a network disk) the final move is a copy that a crash can cut
short. Here the checkpoint is written to a temporary file beside its target, flushed to disk, then renamed over
it with ``os.replace`` — atomic on POSIX filesystems.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from emotion.atomic import atomic_open


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    with atomic_open(path, "wb") as fh:
        torch.save(obj, fh)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoint IO (``trainer.plugins``) that writes local checkpoints atomically."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        if "://" in str(path):  # remote URLs: Lightning's fsspec transaction
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, path)
