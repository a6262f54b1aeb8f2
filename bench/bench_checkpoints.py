#!/usr/bin/env python3
"""Learning curves from evaluation episodes: a learned run's checkpoints, closed loop.

What: every ``--every``-th model a learned run (Baoding or cube) saved
(``models/iteration_*.model``) plans fixed evaluation episodes (the same seeds for every
checkpoint; they add no data) with one or more planner variants:
- ``pddm``: PDDM's settings (N 700, H 7, gamma 20, beta 0.6, sigma 0.9);
- ``moderate``: gamma 10, sigma 0.5 (a softer weighting and narrower sampling);
- ``gentle``: gamma 5, sigma 0.5;
- ``narrow``: PDDM's gamma 20 with sigma 0.5; ``moderate_wide``: gamma 10, sigma 0.7;
  ``firm_wide``: gamma 15, sigma 0.7; ``moderate_wide_n1400``: gamma 10, sigma 0.7, N 1400;
  ``soft``: gamma 10 with PDDM's sigma 0.9.
Per checkpoint and variant: drop rate, success rate (no drop, mean error < 2 cm), steps kept,
tracking error and PDDM's score with its ratio to the perfect-model bound (the learning
benchmark's perfect-model runs, when they exist). This separates what the data taught the
model from how the run's own (data-collecting) planner acts on it. A task whose episodes
have named goals (the cube: left, right, up, down by seed) also gets the figures per goal
(``by_goal``): where it falls short. A run that planned with a learned drop hazard
(``RunSpec.drop_hazard``) is judged with each checkpoint's stored hazard in the score.

Resumable: results accumulate in ``--out`` (made with the same ``--episodes`` and
``--dtype``): an evaluated (checkpoint, variant) is not redone, and checkpoints evaluated
earlier but not picked this time stay in it.
Run: ``.venv/bin/python bench/bench_checkpoints.py --run runs/bench_learning/pddm_explore/
baoding_mppi_learned_seed0 [--every 5] [--episodes 6] [--variants pddm,moderate]``
(writes ``bench/results/checkpoints_<run>.json`` and ``.png``).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_closed_loop import episode, episode_means

from mbrl_ros.core.models.serialization import load_model
from mbrl_ros.core.planning.mpc import ModelPredictiveController
from mbrl_ros.core.tasks.base import Task
from mbrl_ros.nodes.planner_params import INFERENCE_DTYPES, planner_settings
from mbrl_ros.results.metrics_log import read_metrics
from mbrl_ros.sim.gym_env import HandEnv

import benchlib
from learning.drop_hazard import load_hazard, with_hazard_cost
from learning.pddm_run import (
    RunSpec,
    evaluation_env,
    hazard_options,
    planner_values,
    stored_spec,
)

log = benchlib.Logger("bench_checkpoints")

VARIANTS: dict[str, dict[str, Any]] = {
    "pddm": {},
    "moderate": {"gamma": 10.0, "sigma": 0.5},
    "gentle": {"gamma": 5.0, "sigma": 0.5},
    "narrow": {"sigma": 0.5},
    "moderate_wide": {"gamma": 10.0, "sigma": 0.7},
    "firm_wide": {"gamma": 15.0, "sigma": 0.7},
    "moderate_wide_n1400": {"gamma": 10.0, "sigma": 0.7, "num_samples": 1400},
    "soft": {"gamma": 10.0},
    # moderate_wide with pessimism over the ensemble (score = mean - lambda * std), a longer
    # horizon, or less action smoothing
    "moderate_wide_risk1": {"gamma": 10.0, "sigma": 0.7, "risk_lambda": 1.0},
    "moderate_wide_h10": {"gamma": 10.0, "sigma": 0.7, "horizon": 10},
    "moderate_wide_beta08": {"gamma": 10.0, "sigma": 0.7, "beta": 0.8},
    "moderate_wide_beta05": {"gamma": 10.0, "sigma": 0.7, "beta": 0.5},
    "moderate_wide_beta04": {"gamma": 10.0, "sigma": 0.7, "beta": 0.4},
    "moderate_wide_h5": {"gamma": 10.0, "sigma": 0.7, "horizon": 5},
    "beta05": {"beta": 0.5},
    "moderate_beta05": {"gamma": 10.0, "sigma": 0.5, "beta": 0.5},
    # the cube's best acting settings (moderate) with pessimism, a longer horizon, twice the
    # samples or narrower sampling: planner levers for the goal its models keep dropping
    "moderate_risk1": {"gamma": 10.0, "sigma": 0.5, "risk_lambda": 1.0},
    "moderate_h10": {"gamma": 10.0, "sigma": 0.5, "horizon": 10},
    "moderate_n2000": {"gamma": 10.0, "sigma": 0.5, "num_samples": 2000},
    "moderate_narrow": {"gamma": 10.0, "sigma": 0.3},
    # PETS trajectory sampling (probabilistic members): each sequence rolled 4 times per
    # member, every step drawn from the member's Gaussian
    "moderate_pets4": {"gamma": 10.0, "sigma": 0.5, "sample_dynamics": True, "particles": 4},
}
PERFECT_RUNS = Path("runs/bench_learning/pddm")
EVAL_SEED = 5000  # evaluation episodes: seeds 5000.. (the runs use s * 1_000_003 + e)


def checkpoints(run: Path, every: int, first: int = 0) -> list[tuple[int, Path]]:
    """(iteration, model path) of every ``every``-th checkpoint from iteration ``first`` on,
    and the newest."""
    found = sorted((int(m.group(1)), p) for p in (run / "models").glob("iteration_*.model")
                   if (m := re.fullmatch(r"iteration_(\d+)\.model", p.name))
                   and int(m.group(1)) >= first)
    picked = [c for c in found if c[0] % every == 0]
    if found and (not picked or picked[-1] != found[-1]):
        picked.append(found[-1])
    return picked


def transitions_before(run: Path, iteration: int) -> int:
    """Real transitions the model of ``iteration`` was trained on (all earlier episodes)."""
    rows = [r for r in read_metrics(run / "metrics.csv") if int(r["iteration"]) < iteration]
    return int(rows[-1]["transitions"]) if rows else 0


def perfect_bound(runs: Path, task: str = "baoding") -> dict[str, float] | None:
    """The perfect-model ``score`` and ``tracking_error`` of ``task``: from its runs in
    ``runs``, else the bound ``bench/results/learning.json`` recorded (run folders are not in
    the repository)."""
    rows = [r for p in sorted(runs.glob(f"{task}_mppi_true_seed*/metrics.csv"))
            for r in read_metrics(p) if r["policy"] == "mpc"]
    if rows:
        return {k: float(np.mean([r[k] for r in rows])) for k in ("score", "tracking_error")}
    recorded = benchlib.RESULTS / "learning.json"
    if recorded.exists():
        block = json.loads(recorded.read_text()).get("summary", {}).get(task, {})
        bound = block.get("perfect_model") or {}
        if "score" in bound:
            return {"score": bound["score"], "tracking_error": bound.get("tracking_error")}
    return None


def run_task(run: Path) -> str:
    """The task a learned run learned (its ``spec.json``; Baoding for a run without one)."""
    return str(stored_spec(run)["task"])


def controller(env: HandEnv, path: Path, overrides: dict[str, Any], dtype: str,
               planning_task: Task | None = None
               ) -> tuple[ModelPredictiveController, dict[str, Any]]:
    """MPC on the model at ``path`` with the run's planner plus ``overrides``, and the
    planner parameter values it uses. ``planning_task``: the task whose reward the planner
    scores (default the environment's; a probe may add cost terms to it)."""
    task = planning_task or env.task
    values = planner_values(RunSpec(task=task.name, planner_overrides=overrides))
    model, _ = load_model(path)
    model.set_inference_dtype(INFERENCE_DTYPES[dtype])
    return ModelPredictiveController(planner_settings(values).build(model, task), task), values


def planning_task(run: Path, iteration: int, task: Task) -> Task | None:
    """What the run's planner scored at ``iteration``: ``task`` with that iteration's stored
    drop hazard for a run that planned with one (``RunSpec.drop_hazard``), else None."""
    options = hazard_options(run)
    if options is None:
        return None
    hazard = load_hazard(run / "models" / f"hazard_{iteration:04d}.pt", task)
    return with_hazard_cost(task, hazard, float(options["weight"]))


def by_goal(eps: list[dict[str, Any]], goals: list[str]) -> dict[str, dict[str, Any]]:
    """``episode_means`` per goal name (``goals[i]`` is episode i's), in first-seen order:
    where a task with several goals (the cube's four turns) falls short."""
    return {name: episode_means([e for e, g in zip(eps, goals, strict=True) if g == name])
            for name in dict.fromkeys(goals)}


def evaluate(env: HandEnv, path: Path, overrides: dict[str, Any], dtype: str, episodes: int,
             planning_task: Task | None = None) -> dict[str, Any]:
    """The model at ``path`` on the fixed episodes ``EVAL_SEED + k``; a task that names its
    episodes' goals (``goal_name``) also gets the figures per goal (``by_goal``)."""
    mpc, _ = controller(env, path, overrides, dtype, planning_task)
    seeds = [EVAL_SEED + k for k in range(episodes)]
    eps = [episode(env, mpc, seed=seed, horizon=mpc.planner.horizon) for seed in seeds]
    result = episode_means(eps)
    goal_name = getattr(env.task, "goal_name", None)
    if goal_name is not None:
        result["by_goal"] = by_goal(eps, [goal_name(seed) for seed in seeds])
    return result


def evaluation_panels(axes: Any, perfect_tracking_error: float | None) -> None:
    """Titles of the three evaluation panels (error, drops, successes) and the perfect
    model's tracking error as a line in the first."""
    if perfect_tracking_error is not None:
        axes[0].axhline(perfect_tracking_error, color="k", ls="--",
                        label="perfect model")
    for ax, title in zip(axes, ("tracking error (m or rad)", "drop rate", "success rate"),
                         strict=True):
        ax.set_title(title)
        ax.grid(alpha=0.3)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    rows = result["checkpoints"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for name in result["variants"]:
        pts = [(r["transitions"], r["by_variant"][name]) for r in rows if name in r["by_variant"]]
        if not pts:
            continue
        x = [p[0] for p in pts]
        axes[0].plot(x, [p[1]["tracking_error"] for p in pts], "o-", label=name)
        axes[1].plot(x, [p[1]["drop_rate"] for p in pts], "o-", label=name)
        axes[2].plot(x, [p[1]["success_rate"] for p in pts], "o-", label=name)
    evaluation_panels(axes, result.get("perfect_tracking_error"))
    thousands = matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1000:.0f}k")
    for ax in axes:
        ax.set_xlabel("real transitions")
        ax.xaxis.set_major_formatter(thousands)
    axes[0].legend()
    fig.suptitle(f"{result['run']}: evaluation episodes per checkpoint")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    benchlib.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--first", type=int, default=0,
                        help="skip the checkpoints of earlier iterations")
    parser.add_argument("--episodes", type=int, default=6)
    parser.add_argument("--variants", default="pddm,moderate")
    parser.add_argument("--dtype", choices=sorted(INFERENCE_DTYPES), default="bfloat16")
    parser.add_argument("--perfect-runs", type=Path, default=PERFECT_RUNS)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown or args.every < 1 or args.episodes < 1:
        parser.error(f"unknown variants {sorted(unknown)} or bad --every/--episodes")
    picked = checkpoints(args.run, args.every, args.first)
    if not picked:
        log(f"no checkpoints in {args.run / 'models'}")
        return 2
    out = args.out or benchlib.RESULTS / f"checkpoints_{args.run.parent.name}_{args.run.name}.json"
    old = json.loads(out.read_text()) if out.exists() else {}
    if (old.get("episodes"), old.get("inference_dtype")) != (args.episodes, args.dtype):
        old = {}  # other episodes or another dtype: nothing in it is reused or kept
    done = {(r["iteration"], v): r["by_variant"][v] for r in old.get("checkpoints", [])
            for v in r["by_variant"]}
    picked_iterations = {iteration for iteration, _ in picked}
    earlier = [r for r in old.get("checkpoints", []) if r["iteration"] not in picked_iterations]
    torch.set_num_threads(1)
    task = run_task(args.run)
    env = evaluation_env(args.run)  # the states the models learned from, the task's goals
    bound = perfect_bound(args.perfect_runs, task)
    perfect = None if bound is None else bound["score"]
    hazard = hazard_options(args.run)  # a run that planned with a drop hazard is judged so
    result: dict[str, Any] = {
        "benchmark": "checkpoints", "run": str(args.run), "episodes": args.episodes,
        "eval_seeds": [EVAL_SEED, EVAL_SEED + args.episodes - 1], "inference_dtype": args.dtype,
        "variants": {v: VARIANTS[v] for v in variants}, "perfect_score": perfect,
        "task": task, "drop_hazard": hazard,
        "perfect_tracking_error": None if bound is None else bound["tracking_error"],
        "checkpoints": list(earlier)}  # rows of checkpoints not picked this time stay
    for iteration, path in picked:
        row = {"iteration": iteration, "transitions": transitions_before(args.run, iteration),
               "by_variant": {}}
        planning = planning_task(args.run, iteration, env.task)
        for name in variants:
            res = done.get((iteration, name))
            if res is None:
                res = evaluate(env, path, VARIANTS[name], args.dtype, args.episodes, planning)
                if perfect is not None and res["score"] < 0:
                    res["score_ratio_to_perfect"] = perfect / res["score"]
                log(f"iteration {iteration} ({row['transitions']} transitions) {name}: drops "
                    f"{res['drop_rate']:.0%}, successes {res['success_rate']:.0%}, steps "
                    f"{res['steps']:.1f}, error {res['tracking_error']:.4f} (m or rad)")
            row["by_variant"][name] = res
        result["checkpoints"].append(row)
        result["checkpoints"].sort(key=lambda r: r["iteration"])
        benchlib.write_result(out, result)  # after every checkpoint: resumable
    plot(result, out.with_suffix(".png"))
    log(f"{out} and {out.with_suffix('.png')}; cpu {benchlib.cpu_model()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
