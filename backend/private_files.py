"""Files only the operator's account may read: the data directory (0700) and what it holds, the
ledger, logs and agent configurations (0600). They carry usage, client names and host tokens."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import IO, Any

DIR_MODE = 0o700
FILE_MODE = 0o600


def private_dir(path: Path, *, tighten: bool = False) -> Path:
    """Create `path` and its missing parents as 0700 (as XDG asks of data directories). With
    `tighten`, an existing one that others may enter becomes 0700 too: only for directories
    that are tokenmill's own, never for one an operator chose to share, such as a log directory."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(mode=DIR_MODE, exist_ok=True)
    if tighten and stat.S_IMODE(path.stat().st_mode) & 0o077:
        with contextlib.suppress(PermissionError):  # not ours to change: leave it as its owner set it
            path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create `path` empty as 0600 if it is missing, or make it 0600 (before anything else, such as
    SQLite, creates it with the usual 0644)."""
    os.close(_opener(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND))
    return path


def _opener(path: str, flags: int) -> int:
    fd = os.open(path, flags, FILE_MODE)
    with contextlib.suppress(PermissionError):  # another owner's file: leave it as they set it
        os.fchmod(fd, FILE_MODE)  # an existing file keeps its mode otherwise
    return fd


def open_private(path: Path | str, mode: str = "a", **kwargs: Any) -> IO[Any]:
    """`open()`, with the file created, or made, 0600."""
    return open(path, mode, opener=_opener, **kwargs)
