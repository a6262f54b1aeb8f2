"""A retraining job on a known system (accept / reject) and the model checkpoint store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.models.model_store import ModelStore
from mbrl_ros.core.models.retraining import (
    RetrainSettings,
    acceptance_problem,
    non_finite_tensors,
    retrain,
)
from mbrl_ros.core.models.serialization import checksum, model_from_bytes
from mbrl_ros.core.models.training import TrainConfig

S, A = 3, 2
A_MAT = np.array([[0.9, 0.1, 0.0], [-0.1, 0.95, 0.05], [0.0, 0.2, 0.8]])
B_MAT = np.array([[0.5, 0.0], [0.0, 0.3], [0.2, -0.1]])


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def linear_episode(rng: np.random.Generator, length: int
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(states, actions, next states) of one random-action episode of the linear system."""
    s = rng.normal(size=S)
    states, actions, nexts = [], [], []
    for _ in range(length):
        a = rng.uniform(-1, 1, A)
        n = A_MAT @ s + B_MAT @ a
        states.append(s)
        actions.append(a)
        nexts.append(n)
        s = n
    return np.array(states), np.array(actions), np.array(nexts)


def linear_dataset(root, episodes: int, length: int = 20) -> EpisodeDataset:
    dataset = EpisodeDataset(root)
    rng = np.random.default_rng(0)
    for _ in range(episodes):
        dataset.append_episode(*linear_episode(rng, length), np.zeros(length),
                               0.1 * np.arange(length))
    return dataset


def settings(**overrides) -> RetrainSettings:
    base = {
        "architecture": EnsembleConfig(S, A, num_members=2, hidden_sizes=(32, 32)),
        "train": TrainConfig(epochs=60, batch_size=64, num_threads=1),
        "val_fraction": 0.2, "eval_horizon": 5, "max_val_mse": 1.0,
    }
    return RetrainSettings(**{**base, **overrides})


def test_a_model_of_a_linear_system_is_accepted_with_finite_metrics(tmp_path):
    dataset = linear_dataset(tmp_path, episodes=10)
    outcome = retrain(dataset, settings())
    assert outcome.accepted, outcome.message
    m = outcome.metrics
    assert m["num_transitions"] == 200 and m["num_episodes"] == 10 and m["epochs"] == 60
    assert m["val_mse_norm"] < 0.2 < 0.5 < m["val_mean_predictor_mse"]
    assert len(m["val_multi_step_mse"]) == 5
    assert all(math.isfinite(v) for v in m["val_multi_step_mse"])
    assert m["val_multi_step_mse"][-1] >= m["val_multi_step_mse"][0] * 0.5
    assert m["val_disagreement"] >= 0.0 and isinstance(outcome.model, EnsembleDynamics)


def test_rejected_above_the_sanity_bound_or_without_validation(tmp_path):
    dataset = linear_dataset(tmp_path / "a", episodes=4)
    outcome = retrain(dataset, settings(max_val_mse=1e-9, train=TrainConfig(epochs=2)))
    assert not outcome.accepted and outcome.model is None
    assert "sanity bound" in outcome.message
    single = linear_dataset(tmp_path / "b", episodes=1)
    outcome = retrain(single, settings())
    assert not outcome.accepted and "validation" in outcome.message
    assert acceptance_problem({"val_mse_norm": 0.1, "val_loss": float("nan")}, 1.0)


def test_the_open_loop_curve_stops_at_the_longest_validation_segment(tmp_path):
    dataset = linear_dataset(tmp_path, episodes=4, length=3)
    outcome = retrain(dataset, settings(eval_horizon=7, max_val_mse=1e6,
                                        train=TrainConfig(epochs=2)))
    assert len(outcome.metrics["val_multi_step_mse"]) == 3


def test_warm_start_continues_from_the_previous_model(tmp_path):
    dataset = linear_dataset(tmp_path, episodes=6)
    first = retrain(dataset, settings())
    assert first.accepted
    before = first.model.layers[0].weight.detach().clone()
    warm = retrain(dataset, settings(train=TrainConfig(epochs=1, from_scratch=False)),
                   previous=first.model)
    assert "warm-started" in warm.message and warm.model is first.model
    change = (warm.model.layers[0].weight - before).abs().max()
    assert 0 < change < 0.05


def test_model_store_keeps_the_newest_and_skips_damaged_files(tmp_path):
    store = ModelStore(tmp_path, keep=2)
    assert store.latest() is None and store.newest_version == 0
    model = EnsembleDynamics(EnsembleConfig(S, A, num_members=2, hidden_sizes=(8,)))
    for version in (1, 2, 3):
        stored = store.save(version, model, {"task": "linear"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model_000002.mbrl",
                                                          "model_000003.mbrl"]
    latest = store.latest()
    assert latest.version == 3 and latest.checksum == checksum(latest.data) == stored.checksum
    assert model_from_bytes(latest.data)[1] == {"task": "linear", "version": 3}
    (tmp_path / "model_000003.mbrl").write_bytes(latest.data[:-10])  # truncated
    assert store.latest().version == 2
    assert store.newest_version == 3  # a damaged version number is never reused


# --------------------------------------------------------------------------------------
# Divergence: real causes (no mocks), every path ends in a rejected job whose metrics
# carry the loss that went bad, and no model.

FLT_MAX = float(np.finfo(np.float32).max)


def sentinel_dataset(root, poison: dict[int, float], episodes: int = 12,
                     length: int = 20) -> EpisodeDataset:
    """Linear-system episodes; in episode ``i`` of ``poison`` state feature 2 reads
    ``poison[i]`` throughout (a tracker reporting +-FLT_MAX for a lost object: finite, so it
    passes every finiteness check, and equal in state and next state, so the deltas stay 0)."""
    dataset = EpisodeDataset(root)
    rng = np.random.default_rng(1)
    for i in range(episodes):
        states, actions, nexts = linear_episode(rng, length)
        if i in poison:
            states[:, 2] = nexts[:, 2] = poison[i]
        dataset.append_episode(states, actions, nexts, np.zeros(length),
                               0.1 * np.arange(length))
    return dataset


def split_of(tmp_path, episodes: int = 12) -> tuple[list[int], list[int]]:
    """Which episode ids train and which validate (the split depends only on the ids)."""
    return sentinel_dataset(tmp_path / "split", {}, episodes).split_ids(0.2, 0)


def test_a_nan_training_loss_rejects_the_job_and_reports_the_loss(tmp_path):
    train_ids, _ = split_of(tmp_path)
    # Centring a mix of +FLT_MAX and -FLT_MAX overflows float32: the inputs become inf and
    # the first minibatch that holds one gives a NaN loss.
    poison = {train_ids[0]: FLT_MAX, train_ids[1]: FLT_MAX, train_ids[2]: -FLT_MAX}
    dataset = sentinel_dataset(tmp_path / "d", poison)
    outcome = retrain(dataset, settings(max_val_mse=1e12))
    assert not outcome.accepted and outcome.model is None
    assert "training diverged: non-finite training loss" in outcome.message
    assert not math.isfinite(outcome.metrics["train_loss"])
    assert outcome.metrics["epochs"] == 0  # not one epoch completed


def test_a_nan_validation_loss_rejects_the_job(tmp_path):
    _, val_ids = split_of(tmp_path)
    dataset = sentinel_dataset(tmp_path / "d", {val_ids[0]: FLT_MAX})
    outcome = retrain(dataset, settings(max_val_mse=1e12))
    assert not outcome.accepted and outcome.model is None
    assert "non-finite validation loss" in outcome.message
    assert not math.isfinite(outcome.metrics["val_loss"])


def test_an_exploding_loss_is_caught_and_reported_before_it_turns_nan(tmp_path):
    dataset = linear_dataset(tmp_path, episodes=10)
    outcome = retrain(dataset, settings(max_val_mse=1e12, train=TrainConfig(
        lr=1e3, epochs=20, batch_size=64, num_threads=1)))
    assert not outcome.accepted and outcome.model is None
    assert "exceeds divergence_mse" in outcome.message
    assert 1e6 < outcome.metrics["train_loss"] < math.inf


def test_non_finite_weights_or_statistics_are_named():
    import torch

    model = EnsembleDynamics(EnsembleConfig(S, A, num_members=2, hidden_sizes=(8,)))
    assert non_finite_tensors(model) == []
    with torch.no_grad():
        model.layers[0].weight[0, 0, 0] = float("nan")
        model.delta_normalizer.std[1] = float("inf")
    assert sorted(non_finite_tensors(model)) == ["delta_normalizer.std", "layers.0.weight"]
