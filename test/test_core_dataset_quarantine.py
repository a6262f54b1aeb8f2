"""EpisodeDataset: hostile or damaged episode files are quarantined and listed, never
unpickled; the other episodes still load."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from helpers.untrusted import (
    flipped,
    flipped_npz_member,
    npz_with_object_array,
    pickle_bomb,
    truncated,
)

from mbrl_ros.core.data.dataset import QUARANTINE_DIR, EpisodeDataset

S, A, T = 5, 2, 4


def _arrays(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"state": rng.normal(size=(T, S)), "action": rng.uniform(-1, 1, (T, A)),
            "next_state": rng.normal(size=(T, S)), "reward": rng.normal(size=T),
            "done": np.arange(T) == T - 1, "time": np.arange(T) * 0.1}


def _dataset_with_two_episodes(root: Path) -> list[bytes]:
    dataset = EpisodeDataset(root)
    for seed in (0, 1):
        dataset.append_episode(**_arrays(seed), meta={"seed": seed})
    return [p.read_bytes() for p in sorted(root.glob("episode_*.npz"))]


@pytest.mark.parametrize(("damage", "reason"), [
    ("pickle", "pickled"), ("object_array", "Object arrays cannot be loaded"),
    ("truncated", "not a zip file"), ("flipped_start", "pickled"),
    ("flipped_data", "Bad CRC-32"), ("not_npz", "context manager")])
def test_a_bad_episode_file_is_quarantined_and_the_others_load(tmp_path: Path, damage: str,
                                                               reason: str, caplog):
    root, marker = tmp_path / "dataset", tmp_path / "marker"
    files = _dataset_with_two_episodes(root)
    bad = root / "episode_000002.npz"
    if damage == "pickle":
        bad.write_bytes(pickle_bomb(marker))
    elif damage == "object_array":
        arrays = _arrays(2)
        bad.write_bytes(npz_with_object_array(marker, **arrays, meta=np.array("{}")))
    elif damage == "truncated":
        bad.write_bytes(truncated(files[1]))
    elif damage == "flipped_start":  # the first member's local header
        bad.write_bytes(flipped(files[1], at=0.0))
    elif damage == "flipped_data":  # finite-looking numbers changed: only the CRC tells
        bad.write_bytes(flipped_npz_member(files[1], "state.npy"))
    else:
        np.save(bad.with_suffix(".tmp.npy"), np.zeros(3))
        bad.with_suffix(".tmp.npy").rename(bad)

    with caplog.at_level(logging.WARNING, logger="mbrl_ros.core.data.dataset"):
        dataset = EpisodeDataset(root)

    assert reason in caplog.text, caplog.text  # failed where expected, not earlier
    assert dataset.episode_ids == [0, 1] and dataset.num_transitions == 2 * T
    assert dataset.quarantined == [root / QUARANTINE_DIR / "episode_000002.npz"]
    assert dataset.quarantined[0].exists() and not bad.exists()
    assert not marker.exists(), "the episode file was unpickled"
    np.testing.assert_allclose(dataset.batch().state.numpy()[:T], _arrays(0)["state"],
                               rtol=1e-6)
    # the id of the quarantined file is not reused
    assert dataset.append_episode(**_arrays(3)) == 3


def test_a_clean_directory_quarantines_nothing(tmp_path: Path):
    _dataset_with_two_episodes(tmp_path / "dataset")
    dataset = EpisodeDataset(tmp_path / "dataset")
    assert dataset.quarantined == [] and not (tmp_path / "dataset" / QUARANTINE_DIR).exists()
