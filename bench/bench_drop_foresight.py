"""Does a learned model see a drop coming? Per goal, on episodes the model never trained on.

The planner avoids a drop only if its model predicts one within the horizon. For every MPC
episode a run collected with the model of ``--iteration`` or later (``--held-out``
iterations, none of them in that model's data), each member is rolled ``k`` steps open loop
from the state ``k`` steps before the episode's end with the actions the hand executed, and
the task's own termination test is applied to its last predicted state:

- ``foresight[k]``: over the episodes that ended in a drop, the mean fraction of members
  whose rollout ends dropped (1: every member saw the drop ``k`` steps ahead);
- ``false_alarm[k]``: the same over the episodes that kept the object (their last ``k``
  steps), where the right answer is no drop;
- ``motion_ratio``: over the last 3 steps before a drop, the members' mean one-step change
  of the object's orientation (position where it has none) divided by the true change (1:
  the model moves the object as fast as the simulator did; below 1: it predicts a slower
  roll than happened).

Figures per goal (``task.goal_name``, e.g. the cube's left / right / up / down) and overall.
Usage: ``bench/bench_drop_foresight.py --run runs/bench_learning/<budget>/<run>
--iteration 90 [--model path] [--held-out 3] [--steps 1,2,3,5,7]``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbrl_ros.core.data.dataset import EpisodeDataset, TransitionBatch
from mbrl_ros.core.models.evaluation import open_loop_predictions
from mbrl_ros.core.models.serialization import load_model
from mbrl_ros.core.tasks.base import Task
from mbrl_ros.results.metrics_log import read_metrics

import benchlib
from learning.pddm_run import stored_run_task

log = benchlib.Logger("bench_drop_foresight")


def run_episodes(run: Path, first: int, stop: int, mpc_only: bool = False
                 ) -> list[tuple[int, int]]:
    """(episode id, seed) of the run's episodes of iterations ``first <= i < stop`` (only its
    MPC episodes with ``mpc_only``)."""
    return [(int(r["episode"]), int(r["seed"])) for r in read_metrics(run / "metrics.csv")
            if first <= int(r["iteration"]) < stop and (r["policy"] == "mpc" or not mpc_only)]


def held_out_episodes(run: Path, iteration: int, count: int) -> list[tuple[int, int]]:
    """(episode id, seed) of the MPC episodes of iterations ``iteration`` to
    ``iteration + count - 1``: collected after the model of ``iteration`` was trained."""
    return run_episodes(run, iteration, iteration + count, mpc_only=True)


def members_dropped(model: Any, task: Task, episode: TransitionBatch, goals: torch.Tensor,
                    k: int) -> float:
    """Fraction of members whose ``k``-step open-loop rollout of ``episode``'s last ``k``
    actions (``open_loop_predictions``, as the trainer validates) ends in the task's
    termination (the goal of the step it ends on)."""
    tail = episode.subset(slice(len(episode) - k, None))  # the one window that ends it
    last = open_loop_predictions(model, tail, k).predicted[-1][:, 0]  # [E, S]
    goal = goals[min(int(episode.step[-1]) + 1, goals.shape[0] - 1)].expand(last.shape[0], -1)
    _, terminated = task.reward(last, episode.action[-1].expand(last.shape[0], -1), goal)
    return float(terminated.float().mean())


def motion_ratio(model: Any, episode: TransitionBatch, columns: slice, steps: int = 3
                 ) -> float | None:
    """Members' mean one-step change of ``columns`` over ``episode``'s last ``steps`` steps,
    divided by the recorded change (None when nothing moved)."""
    tail = episode.subset(slice(max(0, len(episode) - steps), None))
    one_step = open_loop_predictions(model, tail, 1)
    state = tail.state[:, columns]
    moved = float((one_step.truth[0][:, columns] - state).norm(dim=-1).sum())
    if moved <= 0.0:
        return None
    predicted = one_step.predicted[0][..., columns]
    return float((predicted - state).norm(dim=-1).mean(0).sum()) / moved


def summarize(rows: list[dict[str, Any]], steps: list[int]) -> dict[str, Any]:
    """Means of the episode rows (see the module docstring)."""
    dropped = [r for r in rows if r["dropped"]]
    kept = [r for r in rows if not r["dropped"]]

    def mean(values: list[float]) -> float | None:
        return float(np.mean(values)) if values else None

    return {
        "episodes": len(rows), "dropped": len(dropped),
        "foresight": {str(k): mean([r["members"][k] for r in dropped if k in r["members"]])
                      for k in steps},
        "false_alarm": {str(k): mean([r["members"][k] for r in kept if k in r["members"]])
                        for k in steps},
        "motion_ratio": mean([r["motion"] for r in dropped if r["motion"] is not None]),
    }


def describe(block: dict[str, Any]) -> str:
    """One line of a ``summarize`` block."""
    seen = ", ".join(f"{k}: {v:.2f}" for k, v in block["foresight"].items() if v is not None)
    ratio = block["motion_ratio"]
    return (f"{block['dropped']} drops of {block['episodes']}; members predicting the drop k "
            f"steps ahead {{{seen}}}; motion ratio {'-' if ratio is None else f'{ratio:.2f}'}")


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, block in result["by_goal"].items():
        ks = [int(k) for k, v in block["foresight"].items() if v is not None]
        if ks:
            ax.plot(ks, [block["foresight"][str(k)] for k in ks], "o-",
                    label=f"{name} ({block['dropped']} drops of {block['episodes']})")
    ax.set_xlabel("steps before the drop")
    ax.set_ylabel("members predicting the drop")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"model {result['iteration']}: does it see the drop coming?", fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    benchlib.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--iteration", type=int, required=True,
                        help="the model: the run's models/iteration_NNNN.model")
    parser.add_argument("--model", type=Path, default=None,
                        help="another model trained on the same data (default: the run's)")
    parser.add_argument("--held-out", type=int, default=3,
                        help="iterations of episodes from --iteration on")
    parser.add_argument("--steps", default="1,2,3,5,7")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    steps = sorted({int(k) for k in args.steps.split(",") if k})
    if not steps or steps[0] < 1 or args.held_out < 1:
        parser.error("--steps must be positive and --held-out >= 1")
    path = args.model or args.run / "models" / f"iteration_{args.iteration:04d}.model"
    torch.set_num_threads(1)
    model, _ = load_model(path)
    task = stored_run_task(args.run)
    obj = task.tracked_objects[0]
    field = obj.euler_field or obj.position_field
    columns = task.layout.slice(field)
    dataset = EpisodeDataset(args.run / "dataset")
    name_of = getattr(task, "goal_name", lambda seed: "all")
    rows = []
    for episode_id, seed in held_out_episodes(args.run, args.iteration, args.held_out):
        episode = dataset.batch([episode_id])
        goals = task.episode_goals(seed)
        dropped = bool(episode.done[-1])
        rows.append({"goal": name_of(seed), "dropped": dropped,
                     "members": {k: members_dropped(model, task, episode, goals, k)
                                 for k in steps if k <= len(episode)},
                     "motion": motion_ratio(model, episode, columns) if dropped else None})
    if not rows:
        log(f"no MPC episodes from iteration {args.iteration} on in {args.run}")
        return 2
    result = {
        "benchmark": "drop_foresight", "run": str(args.run), "iteration": args.iteration,
        "model": str(path), "held_out_iterations": args.held_out, "steps": steps,
        "object": obj.name, "motion_field": field,
        "overall": summarize(rows, steps),
        "by_goal": {g: summarize([r for r in rows if r["goal"] == g], steps)
                    for g in dict.fromkeys(r["goal"] for r in rows)},
    }
    out = args.out or benchlib.RESULTS / f"drop_foresight_{args.run.name}_{args.iteration}.json"
    benchlib.write_result(out, result)
    plot(result, out.with_suffix(".png"))
    for name, block in result["by_goal"].items():
        log(f"{name}: {describe(block)}")
    log(f"{out} and {out.with_suffix('.png')}; cpu {benchlib.cpu_model()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
