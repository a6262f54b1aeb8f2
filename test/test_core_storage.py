"""Crash-safe writes and the quarantine every stored file shares (core/data/storage.py)."""

from __future__ import annotations

import pytest

from mbrl_ros.core.data.storage import (
    QUARANTINE_DIR,
    atomic_write,
    atomic_write_bytes,
    atomic_write_text,
    quarantine,
)


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "episode.npz"
    atomic_write_bytes(path, b"old")

    def half_then_crash(f):
        f.write(b"new but incompl")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_crash)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["episode.npz"]
    atomic_write_text(path, "new")
    assert path.read_text() == "new"


def test_quarantine_never_overwrites_an_earlier_quarantined_file(tmp_path):
    moved = []
    for content in ("first", "second", "third"):
        bad = tmp_path / "model_000003.mbrl"
        bad.write_text(content)
        moved.append(quarantine(bad))
        assert not bad.exists()
    folder = tmp_path / QUARANTINE_DIR
    assert moved == [folder / "model_000003.mbrl", folder / "model_000003.mbrl~1",
                     folder / "model_000003.mbrl~2"]
    assert [p.read_text() for p in moved] == ["first", "second", "third"]
    with pytest.raises(OSError):
        quarantine(tmp_path / "missing.npz")
