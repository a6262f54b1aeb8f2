"""The one PDDM outer loop: walk the plan, train before each iteration, run each episode,
turn it into one metrics row, summarise each iteration.

What runs an episode or a training is a backend (``ExperimentBackend``): the learning
bench runs the simulator module and the core in one process
(``bench/learning/pddm_run.py``), the experiment node drives the ROS stack
(``mbrl_ros/nodes/experiment_node.py``). Both get the same rows, the same log lines and the
same resume rule from here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from mbrl_ros.core.experiment.plan import Step
from mbrl_ros.core.tasks.base import Task

Log = Callable[[str], None]


@dataclass
class EpisodeOutcome:
    """What one executed episode left: its states ``[T+1, S]``, actions ``[T, A]`` and goals
    ``[T+1, G]`` (T < the episode length after a drop), and how it ran."""

    episode_id: int
    seed: int
    policy: str  # what acted: "random", "mpc" or "hold" (an MPC step without a model explores)
    states: np.ndarray
    actions: np.ndarray
    goals: np.ndarray
    transitions: int  # real transitions recorded once it was stored
    model_version: int = 0
    plan_ms: Sequence[float] = field(default_factory=list)  # latency of each planned step
    misses: int = 0  # steps whose plan missed its deadline (a fallback action was sent)
    wall_s: float = 0.0


class ExperimentBackend(Protocol):
    """Runs what the loop asks for."""

    def train(self, iteration: int) -> None:
        """Train (or load) the model of ``iteration`` and make the planner use it; a
        rejected or impossible training keeps the previous model."""

    def run_episode(self, step: Step, index: int) -> EpisodeOutcome:
        """Run episode ``index`` of the plan (0-based over its episodes) with ``step.policy``
        and record its transitions."""

    def end_iteration(self, iteration: int, rows: list[dict[str, Any]],
                      last_mpc: EpisodeOutcome | None) -> None:
        """After the last episode of ``iteration`` (pictures, logs); ``rows`` are every row
        of the run so far."""


def episode_row(task: Task, iteration: int, outcome: EpisodeOutcome) -> dict[str, Any]:
    """The metrics row of one episode (the columns of ``results.METRIC_COLUMNS``)."""
    steps = outcome.actions.shape[0]
    metrics = task.episode_metrics(torch.as_tensor(outcome.states, dtype=torch.float64),
                                   torch.as_tensor(outcome.actions, dtype=torch.float64),
                                   torch.as_tensor(outcome.goals[: steps + 1],
                                                   dtype=torch.float64))
    plan = np.asarray(outcome.plan_ms, dtype=np.float64)
    return {
        "episode": outcome.episode_id, "iteration": iteration, "policy": outcome.policy,
        "seed": outcome.seed, "steps": metrics["steps"], "transitions": outcome.transitions,
        "return": metrics["return"], "score": metrics["score"],
        "tracking_error": metrics["tracking_error"], "drop": metrics["drop"],
        "success": metrics["success"],
        "plan_p50_ms": float(np.percentile(plan, 50)) if plan.size else float("nan"),
        "plan_p99_ms": float(np.percentile(plan, 99)) if plan.size else float("nan"),
        "misses": outcome.misses, "model_version": outcome.model_version,
        "wall_s": outcome.wall_s,
    }


def episode_line(row: dict[str, Any], index: int, total: int) -> str:
    """One log line per episode: ``[k/total] it I episode E policy score ... drop ...``."""
    plan = ""
    if row["policy"] == "mpc":
        plan = (f" plan p50 {row['plan_p50_ms']:.0f} ms p99 {row['plan_p99_ms']:.0f} ms "
                f"misses {row['misses']} model v{row['model_version']}")
    return (f"[{index + 1}/{total}] it {row['iteration']} episode {row['episode']} "
            f"{row['policy']:6s} score {row['score']:.4f} return {row['return']:.1f} "
            f"drop {'yes' if row['drop'] else 'no '} success "
            f"{'yes' if row['success'] else 'no '}{plan} | {row['transitions']} transitions, "
            f"{row['wall_s']:.1f} s")


def iteration_summary(rows: list[dict[str, Any]], iteration: int, iterations: int) -> str | None:
    """``iteration i/n done: MPC mean score ..., drops d/k; random policy ...`` or None when
    the iteration ran no MPC episode."""
    mpc = [r for r in rows if r["policy"] == "mpc" and r["iteration"] == iteration]
    rand = [r for r in rows if r["policy"] == "random"]
    if not mpc:
        return None
    text = (f"iteration {iteration}/{iterations} done: MPC mean score "
            f"{np.mean([r['score'] for r in mpc]):.4f}, return "
            f"{np.mean([r['return'] for r in mpc]):.1f}, drops "
            f"{sum(bool(r['drop']) for r in mpc)}/{len(mpc)}, steps kept "
            f"{np.mean([r['steps'] for r in mpc]):.1f}")
    if rand:
        text += (f"; random policy mean score {np.mean([r['score'] for r in rand]):.4f}, "
                 f"return {np.mean([r['return'] for r in rand]):.1f}")
    return text


def run_experiment(plan: list[Step], backend: ExperimentBackend, task: Task,
                   append_row: Callable[[dict[str, Any]], None], log: Log,
                   rows: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Walk ``plan`` with ``backend``. ``rows`` are the episodes a resumed run already has
    (its first ``len(rows)`` episodes are skipped, and so is the training of an iteration
    whose episodes are all done). Every new row goes to ``append_row`` (e.g.
    ``MetricsLog.append``) before the next step. Returns all rows."""
    rows = list(rows or [])
    done = len(rows)
    total = sum(1 for s in plan if s.kind == "episode")
    iterations = max((s.iteration for s in plan), default=0)
    episode, current, last_mpc = 0, None, None
    for index, step in enumerate(plan):
        if step.kind == "train":
            if episode + _episodes_until_training(plan, index + 1) > done:  # some still run
                if current is not None and current > 0:
                    _end(backend, rows, current, iterations, last_mpc, log)
                backend.train(step.iteration)
                current = step.iteration
            continue
        if episode >= done:
            current = step.iteration
            outcome = backend.run_episode(step, episode)
            row = episode_row(task, step.iteration, outcome)
            append_row(row)
            rows.append(row)
            log(episode_line(row, episode, total))
            if outcome.policy == "mpc":
                last_mpc = outcome
        episode += 1
    if current is not None:  # the last iteration (or only the random episodes) ran
        _end(backend, rows, current, iterations, last_mpc, log)
    return rows


def _episodes_until_training(plan: list[Step], start: int) -> int:
    """Episodes from ``plan[start]`` up to the next training."""
    count = 0
    for step in plan[start:]:
        if step.kind == "train":
            break
        count += 1
    return count


def _end(backend: ExperimentBackend, rows: list[dict[str, Any]], iteration: int,
         iterations: int, last_mpc: EpisodeOutcome | None, log: Log) -> None:
    if (text := iteration_summary(rows, iteration, iterations)) is not None:
        log(text)
    backend.end_iteration(iteration, rows, last_mpc)
