"""``model.distill.reuse_outputs``: the frozen teacher's outputs on training batches, kept on disk by the batch's
content, so that a later run which shows the teacher the same batches reads them instead of running it again.

Runs with one seed and one data pipeline see the same augmented batches in the same order (the augmentation is seeded
per batch), whatever the loss, optimizer, schedule length or weight averaging: an ablation of those after a first run
costs the student alone — on this CPU the recipe's teacher is nearly half a training step. A batch is found by a hash
of its bytes, so any change of the input (another seed, augmentation, mixing) simply finds nothing and runs the
teacher; the values read are the ones the teacher gave, so a run reading them trains exactly as one running it.
One SQLite file (the standard library's) per teacher, precision and device type, in the data cache's folder.
"""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from emotion.models.distill import teacher_key

FORMAT = 1  # bump when what is stored changes: older files are never read again
COMMIT_EVERY = 64  # batches; an interrupted run loses at most these, which a later run computes again


def store_path(cache_dir: str | Path, files: tuple[str, ...], precision: str, device_type: str) -> Path:
    """The store for this teacher (its files, by content), training precision and device type."""
    key = teacher_key(f"v{FORMAT}|{precision}|{device_type}|", files)
    return Path(cache_dir) / f"teacher-outputs-{key.hexdigest()[:20]}.sqlite"


class TeacherOutputs:
    """The teacher's outputs by batch content (see the module docstring); counts the batches read and computed."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS outputs (key BLOB PRIMARY KEY, dtype TEXT, data BLOB)")
        self._pending = 0
        self.read = self.computed = 0

    @staticmethod
    def key(x: torch.Tensor) -> bytes:
        raw = x.detach().cpu().contiguous().view(torch.uint8).numpy()
        return hashlib.blake2b(f"{x.dtype}|{tuple(x.shape)}|".encode() + raw.tobytes(), digest_size=20).digest()

    def __call__(self, teacher: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """``teacher(x)``, read from the store when a run showed the teacher these exact inputs before."""
        key = self.key(x)
        row = self._db.execute("SELECT dtype, data FROM outputs WHERE key = ?", (key,)).fetchone()
        if row is not None:
            self.read += 1
            values = np.frombuffer(row[1], dtype=np.float32).reshape(len(x), -1)
            return torch.from_numpy(values.copy()).to(device=x.device, dtype=getattr(torch, row[0]))
        out = teacher(x)
        self.computed += 1
        data = out.detach().float().cpu().numpy().tobytes()  # float32 holds bf16 and float16 values exactly
        self._db.execute(
            "INSERT OR REPLACE INTO outputs VALUES (?, ?, ?)", (key, str(out.dtype).removeprefix("torch."), data)
        )
        self._pending += 1
        if self._pending >= COMMIT_EVERY:
            self.flush()
        return out

    def flush(self) -> None:
        self._db.commit()
        self._pending = 0

    def close(self) -> None:
        self.flush()
        self._db.close()
