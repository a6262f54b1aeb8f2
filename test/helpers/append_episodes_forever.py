"""Append deterministic episodes to an EpisodeDataset until killed (for the kill -9 test).

Usage: python append_episodes_forever.py ROOT

Episode content is a pure function of a counter stored in the episode's ``meta["k"]``, so a
reader can check every stored episode byte for byte (see ``expected_episode``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from mbrl_ros.core.data.dataset import EpisodeDataset

STATE_DIM, ACTION_DIM = 40, 24


def expected_episode(k: int) -> dict[str, np.ndarray]:
    """The arrays of the episode with counter ``k`` (lengths vary with k)."""
    rng = np.random.default_rng(k)
    length = 500 + (k * 37) % 500
    state = rng.standard_normal((length, STATE_DIM)).astype(np.float32)
    return {
        "state": state,
        "action": rng.uniform(-1, 1, (length, ACTION_DIM)).astype(np.float32),
        "next_state": state + 0.01,
        "reward": rng.standard_normal(length).astype(np.float32),
        "time": 0.1 * np.arange(length, dtype=np.float64) + k,
    }


def main() -> None:
    dataset = EpisodeDataset(Path(sys.argv[1]))
    k = dataset.num_episodes + 1000
    while True:
        dataset.append_episode(**expected_episode(k), meta={"k": k})
        k += 1


if __name__ == "__main__":
    main()
