"""PDDM's outer-loop plan and the results files (metrics.csv, learning curve, replay)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mbrl_ros.core.experiment import Budget, pddm_plan
from mbrl_ros.results import METRIC_COLUMNS, MetricsLog, plot_learning_curve, read_metrics


def test_plan_is_random_rollouts_then_train_mpc_random_per_iteration():
    budget = Budget(random_rollouts=3, iterations=2, rollouts_per_iteration=2,
                    random_rollouts_per_iteration=1)
    kinds = [(s.kind, s.iteration, s.policy) for s in pddm_plan(budget)]
    assert kinds == [
        ("episode", 0, "random")] * 3 + [
        ("train", 1, None), ("episode", 1, "mpc"), ("episode", 1, "mpc"),
        ("episode", 1, "random"),
        ("train", 2, None), ("episode", 2, "mpc"), ("episode", 2, "mpc"),
        ("episode", 2, "random")]
    assert budget.episodes == 3 + 2 * 3


def test_budget_defaults_are_pddm_and_bad_budgets_are_refused():
    assert Budget().episodes == 150 + 200 * 45
    with pytest.raises(ValueError, match="random_rollouts"):
        Budget(random_rollouts=0, iterations=1)
    with pytest.raises(ValueError, match="iterations"):
        Budget(iterations=-1)


def _row(episode: int, policy: str, score: float, **extra) -> dict:
    row = dict.fromkeys(METRIC_COLUMNS, 0)
    row.update(episode=episode, iteration=0 if policy == "random" else 1, policy=policy,
               transitions=100 * episode, score=score, plan_p50_ms=math.nan, drop=True,
               success=False, **{"return": score * 100})
    row.update(extra)
    return row


def test_metrics_log_appends_reads_back_and_keeps_its_header(tmp_path):
    path = tmp_path / "run" / "metrics.csv"
    log = MetricsLog(path)
    log.append(_row(1, "random", -0.5))
    MetricsLog(path).append(_row(2, "mpc", -0.25, drop=False))  # reopened: appends
    rows = read_metrics(path)
    assert [r["episode"] for r in rows] == [1, 2]
    assert rows[1]["policy"] == "mpc" and rows[1]["score"] == -0.25
    assert rows[0]["drop"] is True and rows[1]["drop"] is False
    assert math.isnan(rows[0]["plan_p50_ms"])
    with pytest.raises(ValueError, match="missing"):
        log.append({"episode": 3})
    with pytest.raises(ValueError, match="unknown"):  # a bad row writes none of the rows
        log.extend([_row(3, "mpc", -0.2), {**_row(4, "mpc", -0.1), "extra": 1}])
    log.extend([_row(3, "mpc", -0.2), _row(4, "random", -0.6)])
    assert [r["episode"] for r in read_metrics(path)] == [1, 2, 3, 4]
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="columns"):
        MetricsLog(path)


def test_learning_curve_is_a_png(tmp_path):
    rows = [_row(i, "random", -0.5 - 0.01 * i) for i in range(1, 4)]
    rows += [_row(i, "mpc", -0.3 + 0.01 * i) for i in range(4, 8)]
    out = plot_learning_curve(rows, tmp_path / "curve.png", title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000


def test_replay_renders_recorded_states():
    from mbrl_ros.sim import HandSim
    from mbrl_ros.sim.replay import replay_frames

    sim = HandSim("baoding")
    obs = sim.reset(seed=0)
    states = np.stack([obs.task_obs, sim.step(np.full(24, 0.5)).observation.task_obs])
    frames = replay_frames("baoding", states, size=(64, 48))
    assert len(frames) == 2 and frames[0].shape == (48, 64, 3)
    assert np.abs(frames[0].astype(int) - frames[1].astype(int)).sum() > 0  # the hand moved
    with pytest.raises(ValueError, match="states must be"):
        replay_frames("baoding", states[:, :10])
