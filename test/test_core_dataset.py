"""EpisodeDataset durability, reload, validation and splits; TransitionBatch basics."""

from __future__ import annotations

import importlib.util
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from mbrl_ros.core.data.dataset import EpisodeDataset, TransitionBatch

S, A = 5, 2
HELPER = Path(__file__).parent / "helpers" / "append_episodes_forever.py"


def episode(length: int, seed: int, state_dim: int = S) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    state = rng.standard_normal((length, state_dim))
    return {
        "state": state,
        "action": rng.uniform(-1, 1, (length, A)),
        "next_state": state + rng.standard_normal((length, state_dim)) * 0.1,
        "reward": rng.standard_normal(length),
        "time": 0.1 * np.arange(length),
    }


def files(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_file())


# ------------------------------------------------------------------------ TransitionBatch
def test_transition_batch_basics():
    b1 = TransitionBatch.from_arrays(np.zeros((3, S)), np.zeros((3, A)), np.ones((3, S)))
    b2 = TransitionBatch.from_arrays(
        np.ones((2, S)), np.ones((2, A)), np.ones((2, S)), episode=[7, 7], time=[1.0, 1.1]
    )
    both = TransitionBatch.concatenate([b1, b2])
    assert len(both) == 5 and both.state_dim == S and both.action_dim == A
    assert both.episode.tolist() == [0, 0, 0, 7, 7]
    assert both.step.tolist() == [0, 1, 2, 0, 1]
    assert both.time.dtype == torch.float64 and torch.isnan(both.time[:3]).all()
    assert both.done.dtype == torch.bool and not both.done.any()
    assert torch.equal(both.subset([3, 4]).state, b2.state)
    assert both.to("cpu").state.device.type == "cpu"
    with pytest.raises(ValueError, match="action"):
        TransitionBatch.from_arrays(np.zeros((3, S)), np.zeros((4, A)), np.zeros((3, S)))
    with pytest.raises(ValueError, match="concatenate"):
        TransitionBatch.concatenate(
            [b1, TransitionBatch.from_arrays(np.zeros((1, 4)), np.zeros((1, A)), np.zeros((1, 4)))]
        )


# ------------------------------------------------------------------------ append / reload
def test_append_reload_and_count(tmp_path: Path):
    ds = EpisodeDataset(tmp_path)
    assert ds.num_episodes == 0 and ds.num_transitions == 0 and ds.dims is None
    lengths = [4, 7, 5]
    for i, length in enumerate(lengths):
        assert ds.append_episode(**episode(length, seed=i), meta={"iteration": i}) == i
    ds.append_episode(**episode(3, seed=9), done=[0, 0, 1])
    assert ds.num_episodes == 4 and ds.num_transitions == sum(lengths) + 3
    assert files(tmp_path) == [f"episode_{i:06d}.npz" for i in range(4)]

    reopened = EpisodeDataset(tmp_path)
    assert reopened.num_episodes == 4 and reopened.num_transitions == 19
    assert reopened.dims == (S, A)
    assert reopened.episode_meta(2) == {"iteration": 2}
    original = episode(7, seed=1)
    np.testing.assert_array_equal(reopened.episode(1).action,
                                  original["action"].astype(np.float32))
    with pytest.raises(KeyError, match="no episode 7"):
        reopened.episode(7)
    batch = reopened.batch([1])
    np.testing.assert_array_equal(batch.state.numpy(), original["state"].astype(np.float32))
    np.testing.assert_array_equal(batch.action.numpy(), original["action"].astype(np.float32))
    np.testing.assert_array_equal(batch.time.numpy(), original["time"])  # float64 kept
    assert batch.episode.tolist() == [1] * 7 and batch.step.tolist() == list(range(7))
    assert reopened.batch([3]).done.tolist() == [False, False, True]
    # Resuming appends continues the ids.
    assert reopened.append_episode(**episode(2, seed=10)) == 4
    assert len(reopened.batch()) == 21


def test_steps_are_stored_and_no_multi_step_window_spans_a_gap(tmp_path: Path):
    from mbrl_ros.core.models.evaluation import open_loop_starts

    ds = EpisodeDataset(tmp_path)
    ds.append_episode(**episode(5, seed=0), step=[0, 1, 2, 5, 6])  # steps 3 and 4 missing
    ds.append_episode(**episode(3, seed=1))  # no steps given: 0, 1, 2
    # A file written before steps were stored loads as steps 0..T-1.
    path = tmp_path / "episode_000001.npz"
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files if k != "step"}
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    batch = EpisodeDataset(tmp_path).batch()
    assert batch.step.tolist() == [0, 1, 2, 5, 6, 0, 1, 2]
    assert open_loop_starts(batch, 2).tolist() == [0, 1, 3, 5, 6]
    assert open_loop_starts(batch, 3).tolist() == [0, 5]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"action": np.zeros((5, A))}, "action"),
        ({"reward": np.zeros(3)}, "reward"),
        ({"next_state": np.zeros((4, S + 1))}, "next_state"),
        ({"state": np.full((4, S), np.nan)}, "non-finite"),
        ({"time": np.array([0.0, np.inf, 0.2, 0.3])}, "non-finite"),
        ({"done": [0, 2, 0, 0]}, "done"),
        ({"meta": {"x": object()}}, "meta"),
        ({"step": [0, 2, 2, 3]}, "increasing"),
        ({"step": [-1, 0, 1, 2]}, "increasing"),
        ({"step": [0.0, 1.0, 2.0, 3.0]}, "integers"),
        ({"step": [0, 1, 2]}, "step"),
    ],
)
def test_invalid_episodes_raise_and_write_nothing(tmp_path: Path, change: dict, message: str):
    ds = EpisodeDataset(tmp_path)
    ds.append_episode(**episode(4, seed=0))
    before = files(tmp_path)
    with pytest.raises(ValueError, match=message):
        ds.append_episode(**{**episode(4, seed=1), **change})
    assert files(tmp_path) == before
    assert ds.num_episodes == 1


def test_dims_must_match_existing_data(tmp_path: Path):
    ds = EpisodeDataset(tmp_path)
    ds.append_episode(**episode(4, seed=0))
    with pytest.raises(ValueError, match="dims"):
        ds.append_episode(**episode(4, seed=1, state_dim=S + 1))
    assert EpisodeDataset(tmp_path).num_episodes == 1


# ------------------------------------------------------------------------ damage on disk
def test_corrupt_files_are_quarantined_and_temp_files_removed(tmp_path: Path, caplog):
    ds = EpisodeDataset(tmp_path)
    for i in range(4):
        ds.append_episode(**episode(6, seed=i))
    truncated = tmp_path / "episode_000001.npz"
    truncated.write_bytes(truncated.read_bytes()[:150])
    (tmp_path / "episode_000002.npz").write_bytes(b"definitely not a zip file")
    (tmp_path / ".tmp_episode_000004_12345").write_bytes(b"half an episode")

    with caplog.at_level(logging.WARNING, logger="mbrl_ros.core.data.dataset"):
        reopened = EpisodeDataset(tmp_path)
    assert reopened.episode_ids == [0, 3]
    assert reopened.num_transitions == 12
    assert sorted(p.name for p in (tmp_path / "quarantine").iterdir()) == [
        "episode_000001.npz",
        "episode_000002.npz",
    ]
    assert files(tmp_path) == ["episode_000000.npz", "episode_000003.npz"]
    warnings = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "quarantined" in warnings and "episode_000001.npz" in warnings
    assert "temporary" in warnings
    # Quarantined ids are not reused, and the rest still works.
    assert reopened.append_episode(**episode(3, seed=7)) == 4
    np.testing.assert_array_equal(
        reopened.batch([3]).state.numpy(), episode(6, seed=3)["state"].astype(np.float32)
    )


def test_file_with_wrong_dims_is_quarantined(tmp_path: Path):
    ds = EpisodeDataset(tmp_path / "a")
    ds.append_episode(**episode(3, seed=0))
    odd = EpisodeDataset(tmp_path / "c")
    odd.append_episode(**episode(3, seed=2, state_dim=S + 2))
    os.replace(tmp_path / "c" / "episode_000000.npz", tmp_path / "a" / "episode_000001.npz")
    reopened = EpisodeDataset(tmp_path / "a")
    assert reopened.episode_ids == [0]
    assert (tmp_path / "a" / "quarantine" / "episode_000001.npz").exists()


# ------------------------------------------------------------------------ splits
def test_split_by_episode_is_disjoint_and_deterministic(tmp_path: Path):
    ds = EpisodeDataset(tmp_path)
    for i in range(20):
        ds.append_episode(**episode(3 + i % 4, seed=i))
    train_ids, val_ids = ds.split_ids(0.1, seed=0)
    assert len(val_ids) == 2 and len(train_ids) == 18
    assert set(train_ids).isdisjoint(val_ids) and set(train_ids) | set(val_ids) == set(range(20))
    assert ds.split_ids(0.1, seed=0) == (train_ids, val_ids)
    assert EpisodeDataset(tmp_path).split_ids(0.1, seed=0) == (train_ids, val_ids)
    assert {tuple(ds.split_ids(0.1, seed=s)[1]) for s in range(5)} != {tuple(val_ids)}
    assert len(ds.split_ids(0.5, seed=3)[1]) == 10

    train, val = ds.split(0.1, seed=0)
    assert val is not None
    assert set(train.episode.tolist()) == set(train_ids)
    assert set(val.episode.tolist()) == set(val_ids)
    assert len(train) + len(val) == ds.num_transitions
    train_only, none = ds.split(0.0)
    assert none is None and len(train_only) == ds.num_transitions
    with pytest.raises(ValueError, match="val_fraction"):
        ds.split_ids(1.0)


def test_split_keeps_one_validation_episode_when_small(tmp_path: Path):
    ds = EpisodeDataset(tmp_path)
    ds.append_episode(**episode(3, seed=0))
    assert ds.split_ids(0.1) == ([0], [])  # a single episode cannot be split
    for i in range(1, 4):
        ds.append_episode(**episode(3, seed=i))
    train_ids, val_ids = ds.split_ids(0.1)
    assert len(val_ids) == 1 and len(train_ids) == 3


def test_augment_applies_to_training_data_only(tmp_path: Path):
    ds = EpisodeDataset(tmp_path)
    for i in range(10):
        ds.append_episode(**episode(4, seed=i))

    def swap_first_two_dims(batch: TransitionBatch) -> TransitionBatch:
        perm = [1, 0, *range(2, S)]
        swapped = TransitionBatch(
            state=batch.state[:, perm],
            action=batch.action,
            next_state=batch.next_state[:, perm],
            reward=batch.reward,
            done=batch.done,
            episode=batch.episode,
            step=batch.step,
            time=batch.time,
        )
        return TransitionBatch.concatenate([batch, swapped])

    plain_train, plain_val = ds.split(0.2, seed=1)
    train, val = ds.split(0.2, seed=1, augment=swap_first_two_dims)
    assert len(train) == 2 * len(plain_train)
    assert torch.equal(train.state[: len(plain_train)], plain_train.state)
    assert torch.equal(train.state[len(plain_train) :, 0], plain_train.state[:, 1])
    assert torch.equal(train.next_state[len(plain_train) :, 1], plain_train.next_state[:, 0])
    assert val is not None and plain_val is not None
    assert torch.equal(val.state, plain_val.state)


# ------------------------------------------------------------------------ kill -9
def _load_helper():
    spec = importlib.util.spec_from_file_location("append_episodes_forever", HELPER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _wait_until(condition, proc: subprocess.Popen, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"writer exited early: {proc.stderr.read().decode()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)  # polling interval of a condition wait, not a fixed delay


@pytest.mark.timeout(120)
def test_sigkill_mid_write_loses_at_most_the_episode_in_flight(tmp_path: Path):
    helper = _load_helper()
    rng = random.Random(1234)
    root = tmp_path / "data"
    stored = 0
    killed_mid_write = 0
    for round_index in range(3):
        target = stored + rng.randint(2, 5)
        proc = subprocess.Popen(
            [sys.executable, str(HELPER), str(root)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_until(
                lambda: len(list(root.glob("episode_*.npz"))) >= target,  # noqa: B023
                proc,
                60.0,
                f"{target} episode files",
            )
            if round_index != 1:
                # Kill while an episode is being written (its temp file exists).
                _wait_until(lambda: any(root.glob(".tmp_*")), proc, 60.0, "a write in flight")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        killed_mid_write += any(root.glob(".tmp_*"))

        ds = EpisodeDataset(root)
        assert not (root / "quarantine").exists(), "a complete file was damaged"
        assert not list(root.glob(".tmp_*")), "temporary files survived the reload"
        ids = ds.episode_ids
        assert len(ids) >= target and ids == list(range(len(ids)))
        for episode_id in ids:
            k = ds.episode_meta(episode_id)["k"]
            expected = helper.expected_episode(k)
            batch = ds.batch([episode_id])
            for name in ("state", "action", "next_state", "reward", "time"):
                np.testing.assert_array_equal(getattr(batch, name).numpy(), expected[name])
        stored = len(ids)
    # At least one kill really interrupted a write (its temp file was left behind).
    assert killed_mid_write >= 1
