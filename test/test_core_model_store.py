"""ModelStore: damaged or hostile checkpoints are quarantined, never unpickled; older ones load."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from helpers.untrusted import flipped, pickle_bomb, truncated

from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.models.model_store import QUARANTINE_DIR, ModelStore
from mbrl_ros.core.models.serialization import checksum, model_from_bytes

S, A = 6, 2


def _store_with_versions(root: Path, versions=(1, 2, 3)) -> ModelStore:
    store = ModelStore(root, keep=10)
    for version in versions:
        model = EnsembleDynamics(EnsembleConfig(S, A, num_members=2, hidden_sizes=(8,)))
        store.save(version, model, {"task": "linear"})
    return store


def _path(root: Path, version: int) -> Path:
    return root / f"model_{version:06d}.mbrl"


def test_the_pickle_bomb_is_live(tmp_path: Path):
    """Control: the payload used below really does run code when unpickled."""
    marker = tmp_path / "control_marker"
    pickle.loads(pickle_bomb(marker))
    assert marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "flipped", "pickle", "empty", "directory"])
def test_an_unusable_newest_checkpoint_is_quarantined_and_the_next_older_loads(
        tmp_path: Path, damage: str):
    root, marker = tmp_path / "models", tmp_path / "marker"
    store = _store_with_versions(root)
    good = _path(root, 2).read_bytes()
    newest = _path(root, 3)
    if damage == "truncated":
        newest.write_bytes(truncated(newest.read_bytes()))
    elif damage == "flipped":
        newest.write_bytes(flipped(newest.read_bytes()))
    elif damage == "pickle":
        newest.write_bytes(pickle_bomb(marker))
    elif damage == "empty":
        newest.write_bytes(b"")
    else:
        newest.unlink()
        newest.mkdir()

    latest = ModelStore(root).latest()  # a restarted trainer opening the directory

    assert latest is not None and latest.version == 2
    assert latest.data == good and latest.checksum == checksum(good)
    assert model_from_bytes(latest.data)[1]["version"] == 2
    assert not newest.exists() and (root / QUARANTINE_DIR / newest.name).exists()
    assert not marker.exists(), "the checkpoint was unpickled"
    assert store.newest_version == 3  # the damaged version number is never reused


def test_quarantined_files_are_listed_with_their_reasons_and_names_never_collide(
        tmp_path: Path):
    root, marker = tmp_path / "models", tmp_path / "marker"
    _store_with_versions(root)
    _path(root, 3).write_bytes(pickle_bomb(marker))
    _path(root, 2).write_bytes(truncated(_path(root, 2).read_bytes()))
    store = ModelStore(root)
    assert store.latest().version == 1
    assert [(q.original.name, q.path.parent.name) for q in store.quarantined] == [
        ("model_000003.mbrl", QUARANTINE_DIR), ("model_000002.mbrl", QUARANTINE_DIR)]
    assert "bad magic" in store.quarantined[0].reason
    assert "truncated" in store.quarantined[1].reason

    # the same version damaged again later: quarantined beside the first, not over it
    _path(root, 3).write_bytes(b"garbage")
    again = ModelStore(root)
    assert again.latest().version == 1
    assert again.quarantined[0].path.name == "model_000003.mbrl~1"
    assert sorted(p.name for p in (root / QUARANTINE_DIR).iterdir()) == [
        "model_000002.mbrl", "model_000003.mbrl", "model_000003.mbrl~1"]
    assert again.newest_version == 3
    assert not marker.exists()


def test_all_checkpoints_unusable_gives_none_and_quarantines_them_all(tmp_path: Path):
    root, marker = tmp_path / "models", tmp_path / "marker"
    _store_with_versions(root, versions=(1, 2))
    _path(root, 1).write_bytes(flipped(_path(root, 1).read_bytes(), at=0.9))
    _path(root, 2).write_bytes(pickle_bomb(marker))
    store = ModelStore(root)
    assert store.latest() is None
    assert len(store.quarantined) == 2 and not list(root.glob("model_*.mbrl"))
    assert store.newest_version == 2 and not marker.exists()


def test_temporary_files_of_a_crashed_write_are_removed_at_open(tmp_path: Path):
    root = tmp_path / "models"
    _store_with_versions(root, versions=(1,))
    leftover = root / ".model_000002.mbrl.tmp4242"
    leftover.write_bytes(b"half a model")
    store = ModelStore(root)
    assert not leftover.exists() and store.latest().version == 1 and not store.quarantined
