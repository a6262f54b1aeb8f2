"""Hostile and damaged files for the "never unpickle, quarantine what does not load" tests.

A pickle here is live: unpickling it creates a marker file (``Touch.__reduce__`` calls
``pathlib.Path.touch``), so a test that finds no marker proves nothing unpickled it.
"""

from __future__ import annotations

import io
import pathlib
import pickle
import zipfile
from pathlib import Path

import numpy as np


class Touch:
    """Unpickling an instance creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = Path(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def pickle_bomb(marker: Path) -> bytes:
    """Pickle bytes whose unpickling creates ``marker``."""
    return pickle.dumps({"weights": Touch(marker)})


def npz_with_object_array(marker: Path, **arrays: np.ndarray) -> bytes:
    """An .npz whose ``state`` member is an object array holding a :class:`Touch` (numpy
    pickles object arrays on save; loading them needs ``allow_pickle=True``)."""
    buffer = io.BytesIO()
    np.savez(buffer, **{**arrays, "state": np.array([Touch(marker)], dtype=object)})
    return buffer.getvalue()


def truncated(data: bytes) -> bytes:
    """The first half."""
    return data[: len(data) // 2]


def flipped(data: bytes, at: float = 0.6, count: int = 8) -> bytes:
    """``count`` bytes inverted from ``at`` (a fraction of the length) on."""
    out = bytearray(data)
    start = int(len(out) * at)
    for i in range(start, min(start + count, len(out))):
        out[i] ^= 0xFF
    return bytes(out)


def flipped_npz_member(data: bytes, member: str) -> bytes:
    """An .npz with bytes of ``member``'s data inverted (inside the zip's stored data, so
    only the member's CRC can tell)."""
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        info = zf.getinfo(member)
    out = bytearray(data)
    # local header: 30 bytes + name + extra, then the (stored, uncompressed) data
    name_len = int.from_bytes(out[info.header_offset + 26:info.header_offset + 28], "little")
    extra_len = int.from_bytes(out[info.header_offset + 28:info.header_offset + 30], "little")
    start = info.header_offset + 30 + name_len + extra_len + info.compress_size - 16
    for i in range(start, start + 8):
        out[i] ^= 0xFF
    return bytes(out)
