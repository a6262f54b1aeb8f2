"""The one outer loop (core.experiment.run_experiment) with a backend written here: the
order of trainings and episodes, the rows, the resume rule, the per-iteration summary."""

from __future__ import annotations

import math

import numpy as np

from mbrl_ros.core.experiment import (
    Budget,
    EpisodeOutcome,
    Step,
    episode_line,
    episode_row,
    iteration_summary,
    pddm_plan,
    run_experiment,
)
from mbrl_ros.core.tasks import make_task

TASK = make_task("baoding", episode_length=5)


class ScriptedBackend:
    """Episodes of ``steps`` steps that keep the balls where the task starts them."""

    def __init__(self, steps: int = 5) -> None:
        self.calls: list[tuple] = []
        self.steps = steps
        self.transitions = 0

    def train(self, iteration: int) -> None:
        self.calls.append(("train", iteration))

    def run_episode(self, step: Step, index: int) -> EpisodeOutcome:
        self.calls.append(("episode", index, step.iteration, step.policy))
        self.transitions += self.steps
        goals = TASK.episode_goals(index, self.steps + 1).numpy()
        states = np.zeros((self.steps + 1, TASK.state_dim))
        for obj in TASK.tracked_objects:  # objects at rest well above the drop height
            states[:, TASK.layout.slice(obj.position_field)] = (0.0, 0.0, 0.16)
        return EpisodeOutcome(episode_id=index + 1, seed=100 + index, policy=step.policy,
                              states=states, actions=np.zeros((self.steps, TASK.action_dim)),
                              goals=goals, transitions=self.transitions,
                              model_version=step.iteration, plan_ms=[2.0, 4.0],
                              wall_s=0.5)

    def end_iteration(self, iteration, rows, last_mpc) -> None:
        self.calls.append(("end", iteration, len(rows), last_mpc.episode_id))


BUDGET = Budget(random_rollouts=2, iterations=2, rollouts_per_iteration=2,
                random_rollouts_per_iteration=1)


def test_the_loop_trains_before_each_iteration_and_ends_each_one():
    backend, written, lines = ScriptedBackend(), [], []
    rows = run_experiment(pddm_plan(BUDGET), backend, TASK, written.append, lines.append)
    assert [c[0] for c in backend.calls] == (
        ["episode"] * 2 + ["train"] + ["episode"] * 3 + ["end", "train"] + ["episode"] * 3
        + ["end"])
    assert backend.calls[5] == ("episode", 4, 1, "random")
    assert backend.calls[6] == ("end", 1, 5, 4)  # last MPC episode of iteration 1: id 4
    assert rows == written and len(rows) == BUDGET.episodes
    assert [r["transitions"] for r in rows] == [5 * (i + 1) for i in range(8)]
    assert lines[0].startswith("[1/8] it 0 episode 1 random ")
    assert any(line.startswith("iteration 2/2 done: MPC mean score") for line in lines)


def test_a_resumed_run_skips_its_episodes_and_the_trainings_they_no_longer_need():
    first = run_experiment(pddm_plan(BUDGET), ScriptedBackend(), TASK, lambda r: None,
                           lambda s: None)
    backend = ScriptedBackend()
    rows = run_experiment(pddm_plan(BUDGET), backend, TASK, lambda r: None, lambda s: None,
                          rows=first[:6])  # iteration 1 complete, one of iteration 2 run
    assert backend.calls[0] == ("train", 2)
    assert [c[1] for c in backend.calls if c[0] == "episode"] == [6, 7]
    assert backend.calls[-1] == ("end", 2, 8, 7)
    assert len(rows) == 8 and rows[:6] == first[:6]
    backend = ScriptedBackend()
    run_experiment(pddm_plan(BUDGET), backend, TASK, lambda r: None, lambda s: None,
                   rows=first)
    assert backend.calls == []  # nothing left: no training either


def test_a_row_holds_the_task_metrics_and_the_planning_latency():
    outcome = ScriptedBackend(steps=3).run_episode(Step("episode", 1, "mpc"), 0)
    row = episode_row(TASK, 1, outcome)
    assert row["steps"] == 3 and row["drop"] is False and row["policy"] == "mpc"
    assert row["plan_p50_ms"] == 3.0 and math.isclose(row["plan_p99_ms"], 3.98)
    assert row["tracking_error"] > 0 and row["score"] < 0
    assert " plan p50 3 ms p99 4 ms misses 0 model v1 " in episode_line(row, 0, 1)
    assert iteration_summary([row], 2, 2) is None  # no MPC episode in iteration 2
    assert "drops 0/1, steps kept 3.0" in iteration_summary([row], 1, 2)
