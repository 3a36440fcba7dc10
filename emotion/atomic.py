"""Atomic file writes: a temporary file beside the target, flushed to disk, then renamed over it (``os.replace``,
atomic on POSIX). A reader — or a Modal Volume commit — never sees half a file, and a crash leaves the old one."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "wb") -> Iterator[IO]:
    """``with atomic_open(p) as fh: …`` writes ``p`` in one step when the block ends without an error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, _mode_for(path))
        with os.fdopen(fd, mode) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """For writers that take a path (ONNX, ``torch.export``): ``with atomic_path(p) as tmp: write(tmp); check(tmp)``.
    ``tmp`` lies beside ``p`` with its suffix (readers go by it) and becomes ``p`` when the block ends without an
    error; an error — a failed check included — leaves no new file, no folder made for it, and ``p``'s earlier content
    as it was."""
    path = Path(path)
    made = [folder for folder in path.parents if not folder.exists()]  # deepest first
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode_for(path))
        os.replace(tmp, path)
        made = []
    finally:
        Path(tmp).unlink(missing_ok=True)
        for folder in made:
            with contextlib.suppress(OSError):  # not empty (something else wrote there meanwhile): kept
                folder.rmdir()


def writable_folder(folder: str | Path) -> Path:
    """Make ``folder`` and write a probe file into it: an OSError now, before any work, if it cannot be used."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, "is a file, not a folder", str(folder))
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=folder):
        pass
    return folder


def unwritable_reason(folder: str | Path) -> str | None:
    """None if files can be written in ``folder`` — or, while it does not exist, in the nearest folder above it that
    does, where the writers will make it — else why not, in the system's words. Makes nothing: a command checks its
    output places before the work whose results they keep, and work that then fails leaves no empty folder behind."""
    here = Path(folder).absolute()
    try:
        while not here.exists():
            here = here.parent
        if not here.is_dir():
            return "is a file, not a folder" if here == Path(folder).absolute() else f"{here} is a file, not a folder"
        with tempfile.TemporaryFile(dir=here):
            pass
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _mode_for(path: Path) -> int:
    """The mode a temporary file (mkstemp: private, 0600) takes before it replaces ``path``: ``path``'s own, or the one
    any new file would get (0644 under umask 022)."""
    return path.stat().st_mode & 0o7777 if path.exists() else 0o666 & ~_umask()


def _umask() -> int:
    mask = os.umask(0o22)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(data: dict[str, Any], path: str | Path) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, default=float))


def save_figure(fig: Any, path: str | Path, dpi: int = 120) -> Path:
    """A matplotlib figure as an image file (written atomically), then closed."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(fig)
    return path
