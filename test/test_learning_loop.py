"""The whole stack as real processes through the launcher: PDDM's loop on a tiny budget.

Simulator, estimator, trainer, planner and experiment manager are started by
``mbrl-ros launch mbrl_ros baoding.launch.yaml`` exactly as ``make demo`` does, with an
overrides file that shrinks the budget (short episodes, small ensemble and sample count)
and makes the task easy: Baoding targets that stand still next to the resting balls.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from mbrl_ros.results import read_metrics

pytestmark = pytest.mark.ros

EPISODE_LENGTH = 25
RANDOM, ITERATIONS, MPC_PER_ITERATION, RANDOM_PER_ITERATION = 8, 2, 3, 1

OVERRIDES = f"""
/**:
  ros__parameters:
    episode_length: {EPISODE_LENGTH}
    baoding:
      period: 100000                    # the easy setting: targets that (almost) stand still
/**/dynamics_trainer:
  ros__parameters:
    ensemble:
      members: 2
      hidden: [128, 128]
    train:
      epochs: 60
      batch_size: 64
    max_val_loss: 10.0                  # 7 episodes overfit (val 1.3-2.2): a bound for
                                        # broken models, not for this tiny budget
/**/mpc_planner:
  ros__parameters:
    num_samples: 200
    sigma: 0.3                          # gentle sampling around the (still young) plan
/**/experiment:
  ros__parameters:
    random_rollouts: {RANDOM}
    iterations: {ITERATIONS}
    rollouts_per_iteration: {MPC_PER_ITERATION}
    random_rollouts_per_iteration: {RANDOM_PER_ITERATION}
    render_frames: 4
"""


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("loop")
    overrides = tmp / "overrides.yaml"
    overrides.write_text(textwrap.dedent(OVERRIDES))
    env_log = tmp / "log"
    cmd = [sys.executable, "-m", "mbrl_ros.launch.cli", "launch", "mbrl_ros",
           "baoding.launch.yaml", f"overrides:={overrides}", f"runs_dir:={tmp / 'runs'}",
           "run_name:=loop"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                            cwd=Path(__file__).parent, env={**os.environ,
                                                            "ROS_LOG_DIR": str(env_log)})
    print(result.stdout[-20000:], result.stderr[-5000:])
    return result, tmp / "runs" / "loop"


def test_the_loop_finishes_and_writes_its_results(run):
    result, run_dir = run
    assert result.returncode == 0, result.stdout[-3000:]
    assert "died" not in result.stdout and "Traceback" not in result.stdout, (
        "a node crashed (and was respawned) during the run")
    for name in ("metrics.csv", "learning_curve.png", "config.yaml"):
        assert (run_dir / name).is_file(), name
    assert list(run_dir.glob("rollout_latest.*"))
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert config["mpc_planner"]["num_samples"] == 200
    assert config["experiment"]["iterations"] == ITERATIONS
    assert "iteration 2/2 done" in result.stdout


def test_every_executed_step_is_one_stored_transition(run):
    _, run_dir = run
    rows = read_metrics(run_dir / "metrics.csv")
    assert len(rows) == RANDOM + ITERATIONS * (MPC_PER_ITERATION + RANDOM_PER_ITERATION)
    # a drop ends an episode at that state (PDDM): it stores the transitions up to it
    assert all(r["steps"] < EPISODE_LENGTH if r["drop"] else r["steps"] == EPISODE_LENGTH
               for r in rows)
    assert any(r["drop"] for r in rows)
    assert [r["transitions"] for r in rows] == [
        sum(r["steps"] for r in rows[: i + 1]) for i in range(len(rows))]
    assert {r["policy"] for r in rows} == {"random", "mpc"}
    mpc = [r for r in rows if r["policy"] == "mpc"]
    assert [r["model_version"] for r in mpc] == [1] * 3 + [2] * 3


def test_mpc_episodes_do_better_than_random_ones(run):
    _, run_dir = run
    rows = read_metrics(run_dir / "metrics.csv")

    def mean(policy: str, key: str) -> float:
        values = [r[key] for r in rows if r["policy"] == policy]
        return sum(values) / len(values)

    assert mean("mpc", "return") > mean("random", "return")
    assert mean("mpc", "score") > mean("random", "score")
