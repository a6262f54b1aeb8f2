#!/usr/bin/env python3
"""Planner variants closed loop on one learned model: does the hand keep the balls?

What: MPPI plans on one learned Baoding ensemble in several variants, on the same episodes
(same seeds: same start, goals and planner noise stream), interleaved episode by episode so
load drifts hit all alike:
- ``pddm``: the stack's Baoding settings, PDDM's (N 700, H 7, gamma 20, beta 0.6, sigma 0.9);
- ``pddm_bf16``: the same with the model's forward pass in bfloat16 (``inference_dtype``);
- ``gentle``: gamma 5 and sigma 0.5 (a softer weighting and narrower sampling), the demo's.
Reported per variant: the plan time (p50/p99 ms, one thread) and what the hand did (PDDM's
score, steps kept, drops, tracking error).

The model is a checkpoint of a learned run (default: the newest model of the learning
benchmark's Baoding MPPI run, ``runs/bench_learning/pddm``); it needs one to exist.

Run: ``.venv/bin/python bench/bench_closed_loop.py [--model PATH] [--episodes 12]``
(writes ``bench/results/closed_loop.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from mbrl_ros.core.models.serialization import load_model
from mbrl_ros.core.planning.mpc import ModelPredictiveController
from mbrl_ros.nodes.planner_params import INFERENCE_DTYPES, planner_settings
from mbrl_ros.sim.gym_env import HandEnv
from mbrl_ros.sim.rollout import roll_out

import benchlib
from learning.pddm_run import RunSpec, planner_values

DEFAULT_RUN = Path("runs/bench_learning/pddm/baoding_mppi_learned_seed0/models")
log = benchlib.Logger("bench_closed_loop")

#: variant -> (planner parameter overrides, inference dtype)
VARIANTS = {
    "pddm": ({}, "float32"),
    "pddm_bf16": ({}, "bfloat16"),
    "gentle": ({"gamma": 5.0, "sigma": 0.5}, "float32"),
}


def newest_model(folder: Path) -> Path | None:
    models = sorted(folder.glob("iteration_*.model"))
    return models[-1] if models else None


def episode(env: HandEnv, mpc: ModelPredictiveController | None, seed: int, horizon: int,
            planned: Callable[[int, Tensor, Tensor], None] | None = None,
            prefix: np.ndarray | None = None) -> dict[str, Any]:
    """One MPC episode (ends at a drop); its metrics and plan times. ``planned(t, state,
    goals_window)`` runs after each plan, before the action is executed (the simulator still
    holds the state planned from). ``prefix [K, A]``: actions executed as given for the
    first K steps before the controller takes over; ``mpc`` None: the hand holds still
    (the zero action) instead of planning."""
    task = env.task
    obs, info = env.reset(seed=seed)
    goals = torch.as_tensor(info["goals"], dtype=torch.float32)
    if mpc is not None:
        mpc.reset()
    plan_ms: list[float] = []

    def act(t: int, obs: np.ndarray) -> np.ndarray:
        if prefix is not None and t < len(prefix):
            return prefix[t]
        if mpc is None:
            return np.zeros(task.action_dim)
        window = task.goal_window(goals, t + 1, horizon)
        state = torch.as_tensor(obs, dtype=torch.float32)
        tic = time.perf_counter()
        action = mpc.step(state, window).numpy()
        plan_ms.append(1e3 * (time.perf_counter() - tic))
        if planned is not None:
            planned(t, state, window)
        return action

    run = roll_out(env, obs, act, goals.shape[0] - 1)
    m = task.episode_metrics(torch.as_tensor(run.states), torch.as_tensor(run.actions),
                             goals[: run.steps + 1].double())
    return {**m, "plan_ms": plan_ms}


def episode_means(eps: list[dict[str, Any]]) -> dict[str, Any]:
    """Drop and success rates, steps kept, tracking error and score over ``eps``."""
    return {"episodes": len(eps),
            "drop_rate": float(np.mean([e["drop"] for e in eps])),
            "success_rate": float(np.mean([e["success"] for e in eps])),
            "steps": float(np.mean([e["steps"] for e in eps])),
            "tracking_error": float(np.mean([e["tracking_error"] for e in eps])),
            "score": float(np.mean([e["score"] for e in eps]))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--episodes", type=int, default=12)
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS / "closed_loop.json")
    args = parser.parse_args(argv)
    path = args.model or newest_model(DEFAULT_RUN)
    if path is None or not path.exists():
        log("no model: run `make bench-learning BUDGET=pddm` first or pass --model")
        return 2
    torch.set_num_threads(1)
    env = HandEnv("baoding")
    controllers, horizons, settings_of = {}, {}, {}
    for name, (overrides, dtype) in VARIANTS.items():
        values = planner_values(RunSpec(task="baoding", planner_overrides=overrides))
        settings = planner_settings(values)
        model, _ = load_model(path)
        model.set_inference_dtype(INFERENCE_DTYPES[dtype])
        controllers[name] = ModelPredictiveController(settings.build(model, env.task), env.task)
        horizons[name] = settings.horizon
        settings_of[name] = {**{k: values[k] for k in ("num_samples", "horizon", "gamma",
                                                         "beta", "sigma")},
                             "inference_dtype": dtype}
    log(f"model {path}; {args.episodes} episodes per variant, interleaved; "
        f"cpu {benchlib.cpu_model()}")
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in controllers}
    for k in range(args.episodes):
        order = list(controllers) if k % 2 == 0 else list(reversed(controllers))
        for name in order:
            result = episode(env, controllers[name], seed=1000 + k, horizon=horizons[name])
            runs[name].append(result)
            log(f"episode {k + 1}/{args.episodes} {name}: steps {result['steps']}, score "
                f"{result['score']:.4f}, plan p50 {np.percentile(result['plan_ms'], 50):.1f} ms")
    summary: dict[str, Any] = {}
    for name, eps in runs.items():
        times = [t for e in eps for t in e["plan_ms"]]
        summary[name] = {**episode_means(eps), "plan_p50_ms": float(np.percentile(times, 50)),
                         "plan_p99_ms": float(np.percentile(times, 99)),
                         "steps_each": [int(e["steps"]) for e in eps]}
    speedup = summary["pddm"]["plan_p50_ms"] / summary["pddm_bf16"]["plan_p50_ms"]
    result = {"benchmark": "closed_loop", "model": str(path), "machine": benchlib.machine_info(),
              "variants": settings_of, "by_variant": summary, "bf16_speedup_p50": speedup}
    benchlib.write_result(args.out, result)
    for name, row in summary.items():
        log(f"{name}: steps kept {row['steps']:.1f}, drops {row['drop_rate']:.0%}, tracking "
            f"error {row['tracking_error'] * 100:.2f} cm, score {row['score']:.4f}, plan p50 "
            f"{row['plan_p50_ms']:.1f} ms")
    log(f"bfloat16 plans {speedup:.2f}x faster (p50); {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
