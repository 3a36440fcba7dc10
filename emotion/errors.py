"""Errors whose message is the whole story, and the one convention every command follows to report them.

Exit status: **0** done; **2** nothing was done because of something the user can fix (a bad argument, setting,
data set, model file or output path), reported as one line ``error: …`` on stderr — argparse's status for bad
arguments; **1** the command ran but some inputs failed (``predict``'s unreadable images, each named and counted)
or a bug (a traceback). Every entry point reports through :func:`report` / :func:`fail`.
"""

from __future__ import annotations

import errno
import functools
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, NoReturn, ParamSpec

if TYPE_CHECKING:
    from rich.console import Console

P = ParamSpec("P")

EXIT_USAGE = 2


class UserError(Exception):
    """Something the user can fix; the message says what was wrong, where, and what to do."""


class DatasetError(UserError, ValueError):
    """The data set cannot be read as FER2013."""


class ModelFileError(UserError, ValueError):
    """A model file that cannot (or must not) be loaded, or does not fit the configured model."""


#: What an output path or a full disk raises: the user's to fix (another place, free space), not a bug.
FILE_SYSTEM_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EISDIR}


def file_system_message(exc: BaseException, where: str = "paths.log_dir=DIR / out=PATH") -> str | None:
    """The one line for an OSError of :data:`FILE_SYSTEM_ERRNOS` (None for any other error); ``where`` names the
    setting that moves the output."""
    if not isinstance(exc, OSError) or exc.errno not in FILE_SYSTEM_ERRNOS:
        return None
    what = f"{exc.filename}: " if exc.filename else ""
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    return f"{what}{exc.strerror}; {'free disk space, or ' if full else ''}write elsewhere ({where})"


def report(error: BaseException | str) -> int:
    """Print ``error: …`` on one line of stderr; returns :data:`EXIT_USAGE` (``return report(exc)`` in a main)."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    return EXIT_USAGE


def fail(error: BaseException | str) -> NoReturn:
    """:func:`report`, then exit with :data:`EXIT_USAGE`."""
    raise SystemExit(report(error))


def reader_gone() -> int:
    """Exit status 0 when the reader of stdout stopped early (``| head``): nothing more to say and no traceback;
    stdout now goes nowhere, so that the interpreter's own flush at exit does not fail too."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def keep_going_when_reader_gone() -> None:
    """rich — the commands' tables, Lightning's progress bars — stops a command with status 1 when the reader of its
    output stops early (``| head``), even before a run's files are written. From this call on, its output goes
    nowhere instead (:func:`reader_gone`) and the command finishes its work. Call it where rich is imported anyway
    (the Hydra apps, ``predict``'s table): it costs a serving command ~45 ms of start-up otherwise."""
    from rich.console import Console

    Console.on_broken_pipe = _console_reader_gone  # rich documents this hook for overriding (in a subclass)


def _console_reader_gone(console: Console) -> None:
    console.quiet = True
    reader_gone()


def quiet_if_reader_gone(main: Callable[P, int]) -> Callable[P, int]:
    """A command's ``main`` that ends with :func:`reader_gone` when its output's reader stopped early."""

    @functools.wraps(main)
    def wrapped(*args: P.args, **kwargs: P.kwargs) -> int:
        try:
            status = main(*args, **kwargs)
            sys.stdout.flush()
            return status
        except BrokenPipeError:
            return reader_gone()

    return wrapped
