"""One process per run folder: two commands given the same ``run_name`` (or started in the same second) would
write checkpoints, TensorBoard events and reports into one folder. The first holds an advisory lock on
``RUN_DIR/.lock`` (``flock``) for its lifetime; the second is refused in one line. The kernel drops the lock when the
holder exits, however it exits, so a crashed run leaves nothing stuck."""

from __future__ import annotations

import errno
import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from emotion.errors import UserError

log = logging.getLogger(__name__)
_held: dict[Path, IO[str]] = {}


def hold(run_dir: str | Path) -> None:
    """Take ``run_dir``'s lock for the rest of this process (again from this process: nothing to do). The other
    ranks of a multi-GPU training (Lightning starts them as copies of the command, ``LOCAL_RANK`` > 0) share their
    first rank's folder, and its lock."""
    if os.environ.get("LOCAL_RANK", "0") != "0":
        return
    run_dir = Path(run_dir).resolve()
    if run_dir in _held:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    fh = open(run_dir / ".lock", "a+")  # noqa: SIM115 (held open on purpose: closing it would drop the lock)
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        if exc.errno not in (errno.EAGAIN, errno.EACCES):  # a file system without flock: run unguarded
            log.warning("cannot lock %s (%s); not guarded against a second run with the same run_name", run_dir, exc)
            fh.close()
            return
        fh.seek(0)
        holder = fh.read().strip() or "another process"
        fh.close()
        raise UserError(
            f"{run_dir} is in use by a run that is still going ({holder}); wait for it to finish, or give this one "
            "another run_name"
        ) from None
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}")
    fh.flush()
    _held[run_dir] = fh
