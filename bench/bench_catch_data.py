#!/usr/bin/env python3
"""Does data of a goal the loop never reaches teach the learned model to reach it?

Why: every cube model of the learning runs drops every "down" episode (the cube rolled
towards the fingertips), and the loop's own data holds no episode in which the cube is
caught there. If the missing data were the cause, the lever would be collection (reach the
catch, then learn it); if not, it is the model or the planner.

What: a learned run's snapshot at ``--iteration`` (its episodes before it, as
``learning/fork_run.py`` forks it), plus ``--episodes`` perfect-model MPC episodes of
``--goal`` (the simulator as the planner's model, as the learning bench's bound plans:
N 200), added ``c`` times for each ``c`` of ``--copies`` (0: the snapshot alone, the
control for retraining noise). Each dataset is retrained with the run's own settings for
that amount of data, and each model is judged three ways:
- its 7-step open-loop prediction of the added episodes (each member driven by the
  recorded actions from every start, then the mean of the members; mean / 90th percentile
  absolute error of the cube's height and of its Euler angle about x). The added episodes
  are in the training data of every model but the control: how well the model *fits* the
  catch;
- closed loop (``bench_checkpoints.evaluate``: the fixed evaluation episodes, figures per
  goal) with the ``--variant`` planner: whether it can *do* the catch;
- handed over (``--handover K``): each added episode replayed from its seed for its first
  K actions (the perfect model's roll and catch), then the learned planner takes over:
  whether it can at least *hold* a caught cube (``handover_hold_still``: the same with the
  hand holding still after the handover, the reference).
A model already trained by an earlier run of the bench (same work folder) is reused.

Run: ``.venv/bin/python bench/bench_catch_data.py --run runs/bench_learning/pddm_late_wide/
cube_mppi_learned_seed0 --iteration 55`` (about 25 min alone on 2 cores: the perfect-model
episodes take about a minute each). Writes ``bench/results/catch_data.json``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_checkpoints import VARIANTS, controller, evaluate, perfect_bound, run_task
from bench_closed_loop import episode, episode_means

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.experiment import Budget
from mbrl_ros.core.models.evaluation import open_loop_predictions
from mbrl_ros.core.models.retraining import retrain
from mbrl_ros.core.models.serialization import load_model, save_model
from mbrl_ros.sim.gym_env import HandEnv
from mbrl_ros.sim.rollout import roll_out

import benchlib
from learning.fork_run import fork
from learning.pddm_run import PDDMRun, RunSpec, perfect_controller
from learning.true_model import mpc_policy

log = benchlib.Logger("bench_catch_data")

#: perfect-model episodes use seeds from here on (outside the runs' and evaluations' seeds)
EXPERT_SEED = 2_000_000


def height_index(task: Any) -> int:
    """Column of the cube's height (its z offset from the start pose) in a task state."""
    return task.layout.start("cube_pos") + 2


def goal_seeds(task: Any, goal: str, count: int) -> list[int]:
    """The first ``count`` seeds from ``EXPERT_SEED`` whose episode has ``goal``."""
    seeds, seed = [], EXPERT_SEED
    while len(seeds) < count:
        if task.goal_name(seed) == goal:
            seeds.append(seed)
        seed += 1
    return seeds


def record_perfect_episodes(task_name: str, goal: str, count: int, out: Path,
                            threads: int) -> EpisodeDataset:
    """``count`` perfect-model MPC episodes of ``goal`` into the dataset at ``out``
    (resumable: episodes already there are kept)."""
    dataset = EpisodeDataset(out)
    env = HandEnv(task_name)
    mpc, model = perfect_controller(env, threads)
    for seed in goal_seeds(env.task, goal, count)[len(dataset.episode_ids):]:
        obs, info = env.reset(seed=seed)
        goals = torch.as_tensor(info["goals"], dtype=torch.float32)
        mpc.reset()
        tic = time.monotonic()
        ep = roll_out(env, obs, mpc_policy(env, mpc, goals, model), goals.shape[0] - 1)
        dataset.append_episode(**ep.transitions(env.sim.control_dt),
                               meta={"policy": "perfect_model", "seed": seed, "goal": goal})
        log(f"perfect-model {goal} episode (seed {seed}): {ep.steps} steps, dropped "
            f"{bool(ep.terminated[-1])}, in {time.monotonic() - tic:.0f} s")
    model.close()
    return dataset


def open_loop_error(model_path: Path, dataset: EpisodeDataset, task: Any, steps: int = 7
                    ) -> dict[str, float]:
    """``steps``-step open-loop errors on ``dataset``'s episodes of the mean of the members'
    own predictions (``open_loop_predictions``, as the trainer's validation rolls them):
    cube height (m) and Euler angle about x (rad), mean and 90th percentile."""
    model, _ = load_model(model_path)
    rollouts = open_loop_predictions(model, dataset.batch(), steps)
    error = (rollouts.predicted[-1].mean(0) - rollouts.truth[-1]).abs()
    out = {}
    for name, column in (("z", height_index(task)), ("rx", task.layout.start("cube_euler"))):
        values = error[:, column].numpy()
        out[f"{name}_mean"] = float(values.mean())
        out[f"{name}_p90"] = float(np.quantile(values, 0.9))
    return out


def handover(env: HandEnv, model_path: Path | None, extra: EpisodeDataset, steps: int,
             overrides: dict[str, Any]) -> dict[str, Any]:
    """Each of ``extra``'s episodes replayed from its seed for its first ``steps`` actions,
    then planned by the model at ``model_path`` to the episode's end (None: the hand holds
    still, the zero action): drop rate, steps kept, tracking error (``episode_means``)."""
    mpc = controller(env, model_path, overrides, "bfloat16")[0] if model_path else None
    horizon = mpc.planner.horizon if mpc is not None else 1
    return {"after_steps": steps, **episode_means([
        episode(env, mpc, seed=int(ep.meta["seed"]), horizon=horizon, prefix=ep.action[:steps])
        for ep in map(extra.episode, extra.episode_ids)])}


def dataset_with_copies(run: Path, iteration: int, extra: EpisodeDataset, copies: int,
                        out: Path) -> PDDMRun:
    """The run's snapshot at ``iteration`` plus ``copies`` copies of ``extra``'s episodes."""
    if out.exists():
        shutil.rmtree(out)
    fork(run, out, iteration, {})
    spec = json.loads((out / "spec.json").read_text())
    pddm = PDDMRun(RunSpec(**{**spec, "budget": Budget(**spec["budget"])}), out, log)
    for c in range(copies):
        for e in extra.episode_ids:
            ep = extra.episode(e)
            pddm.dataset.append(replace(ep, meta={**ep.meta, "copy": c}))
    return pddm


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--iteration", type=int, required=True,
                        help="the snapshot: the run's episodes before this iteration")
    parser.add_argument("--goal", default="down")
    parser.add_argument("--episodes", type=int, default=12,
                        help="perfect-model episodes of --goal")
    parser.add_argument("--copies", default="0,1,8")
    parser.add_argument("--variant", default="moderate", choices=sorted(VARIANTS))
    parser.add_argument("--eval-episodes", type=int, default=16)
    parser.add_argument("--handover", type=int, default=10,
                        help="perfect-model actions before the learned planner takes over")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("runs/bench_catch_data"))
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS / "catch_data.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    task_name = run_task(args.run)
    copies = [int(c) for c in args.copies.split(",")]
    extra = record_perfect_episodes(task_name, args.goal, args.episodes,
                                    args.work / f"perfect_{args.goal}", args.threads)
    env = HandEnv(task_name)
    perfect = perfect_bound(args.run.parent, task_name)
    mins = [float(extra.episode(e).next_state[:, height_index(env.task)].min())
            for e in extra.episode_ids]
    result: dict[str, Any] = {
        "benchmark": "catch_data", "run": str(args.run), "iteration": args.iteration,
        "goal": args.goal, "perfect_episodes": len(extra.episode_ids),
        "perfect_min_height": {"mean": float(np.mean(mins)), "lowest": min(mins),
                               "highest": max(mins)},
        "variant": args.variant, "planner": VARIANTS[args.variant],
        "eval_episodes": args.eval_episodes,
        "handover_hold_still": handover(env, None, extra, args.handover, {}), "results": []}
    earlier = (json.loads(args.out.read_text()).get("results", []) if args.out.exists()
               else [])
    train_seconds = {r["copies"]: r.get("train_s") for r in earlier}
    for c in copies:
        work = args.work / f"copies{c}"
        path = work / "models" / "catch_data.model"
        if path.exists():  # trained by an earlier run of the bench on the same data
            n = EpisodeDataset(work / "dataset").num_transitions
            train_s = train_seconds.get(c)
            log(f"{c} copies: reusing {path}")
        else:
            pddm = dataset_with_copies(args.run, args.iteration, extra, c, work)
            n = pddm.dataset.num_transitions
            tic = time.monotonic()
            outcome = retrain(pddm.dataset, pddm.settings_for(n), previous=None)
            train_s = time.monotonic() - tic
            if not outcome.accepted or outcome.model is None:
                raise RuntimeError(f"retraining with {c} copies was rejected: "
                                   f"{outcome.message}")
            save_model(path, outcome.model, {"task": task_name, "copies": c})
        fit = open_loop_error(path, extra, env.task)
        closed = evaluate(env, path, VARIANTS[args.variant], "bfloat16", args.eval_episodes)
        if perfect is not None:
            closed["score_ratio_to_perfect"] = perfect["score"] / closed["score"]
        held = handover(env, path, extra, args.handover, VARIANTS[args.variant])
        row = {"copies": c, "transitions": n, "added": c * extra.num_transitions,
               "train_s": train_s, "fit": fit, "closed_loop": closed, "handover": held}
        result["results"].append(row)
        benchlib.write_result(args.out, result)  # after every dataset: a partial result
        goal = closed.get("by_goal", {}).get(args.goal, {})
        log(f"{c} copies ({n} transitions): {args.goal} 7-step height error "
            f"{100 * fit['z_mean']:.2f} cm (p90 {100 * fit['z_p90']:.2f}); closed loop "
            f"drops {closed['drop_rate']:.0%}, {args.goal} drops {goal.get('drop_rate', 0):.0%}, "
            f"error {closed['tracking_error']:.3f}; handed over after {args.handover} steps: "
            f"drops {held['drop_rate']:.0%}, error {held['tracking_error']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
