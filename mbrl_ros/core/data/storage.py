"""Crash-safe files: atomic replacement and a quarantine for files that cannot be read.

Every file the stack keeps (episodes, model checkpoints, results) is written the same way:
into a temporary file beside its final name, flushed and fsynced, renamed over the final
name, and the directory fsynced, so a crash leaves the old file or the new one, never half
of one. A file that turns out unreadable is not deleted but moved to ``quarantine/`` beside
it (``name~n`` when that name is taken), so nothing recorded is silently lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

QUARANTINE_DIR = "quarantine"


def fsync_dir(path: str | Path) -> None:
    """Make a directory's entries (a rename, a new file) durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None],
                 temp: str | Path | None = None) -> None:
    """Replace ``path`` with what ``write(file)`` writes, atomically and durably.

    ``temp``: the temporary file (default ``.<name>.tmp<pid>`` beside ``path``); it is
    removed if writing fails.
    """
    path = Path(path)
    temp = Path(temp) if temp is not None else path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(temp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """:func:`atomic_write` of ``data``."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """:func:`atomic_write` of ``text`` (UTF-8)."""
    atomic_write(path, lambda f: f.write(text.encode()))


def quarantine(path: str | Path, root: str | Path | None = None) -> Path:
    """Move ``path`` into ``<root>/quarantine/`` (default root: its directory) under a name
    not taken yet; returns where it went. OSError propagates (the caller decides)."""
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    folder = root / QUARANTINE_DIR
    folder.mkdir(exist_ok=True)
    target = folder / path.name
    n = 1
    while target.exists():
        target = folder / f"{path.name}~{n}"
        n += 1
    os.replace(path, target)
    fsync_dir(root)
    return target
