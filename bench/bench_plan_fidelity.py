#!/usr/bin/env python3
"""Does a learned model rank the planner's own candidates as the simulator would?

What: each model plans fixed evaluation episodes of its run's task (Baoding or cube; seeds
5000.., as ``bench_checkpoints``) with one planner variant. Every ``--every``-th step, a
random ``--subset`` of the action sequences MPPI has just scored is rolled out on the
simulator itself (``SimulatorModel`` anchored on the executing simulator's state, the
perfect-model bound's model) and scored with the same task reward. Per model: the Spearman
rank correlation between the model's and the true scores (MPPI weights samples by their
rank-ordered scores), where the model's best sample ranks among the true scores (1 = the
truly best), the weighting efficiency (the true score of MPPI's weighted mean of the subset,
from its mean (0) to that of weighting by the true scores (1)), and the episodes' own
closed-loop numbers. Beside each model's validation 7-step error (``bench_model_levers``) it
shows whether ranking the planner's queries, not predicting the recorded data, is what
separates good models from bad ones.

Run: ``.venv/bin/python bench/bench_plan_fidelity.py --models A.model,B.model
[--variant moderate_wide_beta05] [--episodes 4] [--every 5] [--subset 100]``
(writes ``bench/results/plan_fidelity.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_checkpoints import EVAL_SEED, PERFECT_RUNS, VARIANTS, controller, perfect_bound, run_task
from bench_closed_loop import episode

from mbrl_ros.core.models.evaluation import spearman
from mbrl_ros.core.planners.rollout import TrajectoryScorer
from mbrl_ros.sim.gym_env import HandEnv

import benchlib
from learning.pddm_run import evaluation_env
from learning.true_model import SimulatorModel

log = benchlib.Logger("bench_plan_fidelity")


def ranking(predicted: torch.Tensor, true: torch.Tensor, gamma: float) -> dict[str, float]:
    """How well ``predicted`` scores order candidates whose simulated scores are ``true``."""
    floor = float(true[torch.isfinite(true)].min()) - 1.0 if torch.isfinite(true).any() else -1.0
    true = torch.nan_to_num(true.double(), nan=floor, neginf=floor)
    predicted = predicted.double()
    finite = torch.isfinite(predicted)
    predicted = torch.where(finite, predicted, predicted[finite].min() - 1.0
                            if finite.any() else torch.zeros(()))
    best = int(torch.argmax(predicted))
    percentile = float((true < true[best]).double().mean())
    weights = torch.softmax(gamma * (predicted - predicted.max()), dim=0)
    ideal = torch.softmax(gamma * (true - true.max()), dim=0)
    mean = float(true.mean())
    span = float(ideal @ true) - mean
    return {"spearman": spearman(predicted, true), "best_percentile": percentile,
            "weighting_efficiency": (float(weights @ true) - mean) / span if span > 0
            else float("nan")}


def evaluate(env: HandEnv, path: Path, variant: str, episodes: int, every: int, subset: int,
             dtype: str) -> dict[str, Any]:
    mpc, values = controller(env, path, VARIANTS[variant], dtype)
    truth = SimulatorModel(env.sim)
    true_scorer = TrajectoryScorer(truth, env.task)
    pick = torch.Generator().manual_seed(0)
    rows: list[dict[str, float]] = []

    def check(t: int, state: torch.Tensor, window: torch.Tensor) -> None:
        if t % every:
            return
        planner = mpc.planner
        chosen = torch.randperm(planner.last_samples.shape[0], generator=pick)[:subset]
        truth.anchor(env.sim.get_state(), state.numpy())
        with torch.no_grad():
            true = true_scorer.scores(state, planner.last_samples[chosen].clone(), window)
        rows.append(ranking(planner.last_scores[chosen], true, float(values["gamma"])))

    try:
        per_episode = [episode(env, mpc, seed=EVAL_SEED + k, horizon=mpc.planner.horizon,
                               planned=check) for k in range(episodes)]
    finally:
        truth.close()
    out = {key: float(np.nanmean([r[key] for r in rows])) for key in rows[0]}
    out["planning_steps_checked"] = len(rows)
    for key in ("score", "tracking_error", "drop"):
        out[key] = float(np.mean([float(m[key]) for m in per_episode]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", required=True, help="comma-separated model files")
    parser.add_argument("--variant", default="moderate_wide_beta05", choices=sorted(VARIANTS))
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--every", type=int, default=5)
    parser.add_argument("--subset", type=int, default=100)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS / "plan_fidelity.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {}
    for text in args.models.split(","):
        path = Path(text)
        # a run's models live in RUN/models or RUN/levers: plan the run's task from the
        # states they learned
        task = run_task(path.parent.parent)
        bound = perfect_bound(PERFECT_RUNS, task)
        env = evaluation_env(path.parent.parent)
        result = evaluate(env, path, args.variant, args.episodes, args.every, args.subset,
                          args.dtype)
        if bound:
            result["score_ratio_to_perfect"] = bound["score"] / result["score"]
        results[str(path)] = result
        log(f"{path.name}: spearman {result['spearman']:.2f}, best sample at the "
            f"{100 * result['best_percentile']:.0f}th true percentile, weighting efficiency "
            f"{result['weighting_efficiency']:.2f}; episodes: drops {result['drop']:.2f}, "
            f"error {result['tracking_error']:.4f} (m or rad)")
        result["task"] = task
        benchlib.write_result(args.out, {
            "benchmark": "plan_fidelity", "variant": args.variant, "episodes": args.episodes,
            "every": args.every, "subset": args.subset, "inference_dtype": args.dtype,
            "models": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
