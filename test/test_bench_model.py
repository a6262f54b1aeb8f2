"""Smoke test of the model-quality benchmark: ``--quick`` builds the fixed dataset, trains
the two ensembles and writes the compounding-error and rank-correlation curves.

No timing assertions; only that every number the README and the picture use is there and
sane (a trained model's error compounds with the horizon, correlations lie in [-1, 1]).
"""

from __future__ import annotations

import math

import pytest
from helpers.bench import finite_positive, run_quick

GROUPS = ("overall", "overall_z", "joints", "ball_pos", "ball_vel")
QUICK_EPISODES = 16


@pytest.fixture(scope="module")
def result(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return run_quick("bench_model.py", tmp_path_factory.mktemp("bench") / "model.json",
                     "model.png")


def correlation(value: float) -> bool:
    return math.isnan(value) or -1.0 <= value <= 1.0


def test_dataset_is_the_fixed_one(result: dict) -> None:
    for key in ("date", "machine", "command"):
        assert result[key], key
    ds = result["dataset"]
    assert ds["episodes"] == QUICK_EPISODES and ds["episode_length"] == 100
    assert ds["transitions"] == QUICK_EPISODES * 100
    assert ds["train_episodes"] + ds["val_episodes"] == QUICK_EPISODES
    assert ds["val_episodes"] >= 1
    assert 0 < ds["states_in_hand_fraction"] < 1
    assert result["horizons"] == list(range(1, 21))


def test_errors_compound_and_correlations_are_correlations(result: dict) -> None:
    sizes = result["sizes"]
    assert set(sizes) == {"25pct", "100pct"}
    for name, size in sizes.items():
        one = size["one_step"]
        assert finite_positive(one["ensemble_mse"]) and finite_positive(one["member_mse"])
        assert len(one["member_mse"]) == 3
        assert correlation(one["rank_correlation"]) and math.isfinite(one["rank_correlation"])
        for group in GROUPS:
            curve = size["open_loop"][group]
            assert len(curve["ensemble_mse"]) == 20, (name, group)
            assert finite_positive(curve["ensemble_mse"]), (name, group)
            assert finite_positive(curve["member_mean_mse"]), (name, group)
            assert curve["ensemble_mse"][-1] > curve["ensemble_mse"][0], (name, group)
        assert len(size["open_loop"]["overall_z"]["member_mse"]) == 3
        assert len(size["rank_correlation"]) == 20
        assert all(math.isfinite(r) and correlation(r) for r in size["rank_correlation"])
        assert all(correlation(r) for r in size["in_hand"]["rank_correlation"])
        assert size["num_windows"] > size["num_windows_in_hand"] >= 0
        summary = result["summary"][name]
        assert summary == size["summary"]
        for key in ("one_step_mse", "error_z_h1", "error_z_h7", "error_z_h20",
                    "ball_pos_rmse_mm_h1", "ball_pos_rmse_mm_h7"):
            assert finite_positive(summary[key]), (name, key)
        assert summary["growth_h20_over_h1"] > 1


def test_more_data_predicts_better(result: dict) -> None:
    """Deterministic (fixed data, seeds, one thread): four times the data must help."""
    small, full = result["sizes"]["25pct"], result["sizes"]["100pct"]
    assert full["train_transitions"] > small["train_transitions"]
    assert full["summary"]["error_z_h7"] < small["summary"]["error_z_h7"]
