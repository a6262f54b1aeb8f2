#!/usr/bin/env python3
"""Where each cube turn takes the cube: its height and error per step, per goal.

Why: the learned loop never turns the cube "down" (towards the fingertips). This bench
shows what that turn asks of a model. For each goal (PDDM's four and its half turns,
``cube.goal_set: pddm_with_halves``) one episode is planned on the simulator itself (the
perfect model: PDDM's cube planner with N 200, as the perfect-model bound) and, with
``--model``, one on a learned checkpoint; per step it records the cube's z offset from its
start (PDDM's drop test: below -0.1 m) and the L2 Euler error. A goal whose perfect-model
episode lowers the cube towards the drop line needs a model precise about that fall.
Episodes are deterministic (the keyframe start, the planner's seed), so one per goal.

Run: ``.venv/bin/python bench/bench_cube_turns.py [--goals down,half_down]
[--model runs/.../models/iteration_0042.model]`` (writes
``bench/results/cube_turns.{json,png}``). Goals run one per process (``--jobs``).
"""

from __future__ import annotations

import argparse
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_catch_data import height_index
from bench_checkpoints import controller

from mbrl_ros.core.tasks.cube import CUBE_GOAL_SETS, CubeSettings
from mbrl_ros.sim.gym_env import HandEnv
from mbrl_ros.sim.rollout import roll_out

import benchlib
from learning.pddm_run import perfect_controller, perfect_model_samples
from learning.true_model import mpc_policy

log = benchlib.Logger("bench_cube_turns")
GOALS = tuple(CUBE_GOAL_SETS["pddm_with_halves"])
PERFECT_SAMPLES = perfect_model_samples("cube")
DROP_HEIGHT = CubeSettings().drop_height  # PDDM's, the line drawn in the picture


def turn_episode(goal: str, model: str | None = None, episode_length: int | None = None,
                 num_samples: int = PERFECT_SAMPLES) -> dict[str, Any]:
    """One episode towards ``goal``: on the simulator (``model`` None) or on the learned
    checkpoint at ``model`` (PDDM's cube planner either way); the cube's z offset (m) and
    the orientation error (rad) of every state, and whether it dropped."""
    torch.set_num_threads(1)
    params = {"cube.goal_set": "pddm_with_halves", "cube.goal": goal}
    env = HandEnv("cube", episode_length=episode_length, task_params=params)
    true_model = None
    if model is None:
        mpc, true_model = perfect_controller(env, num_samples=num_samples)
    else:
        mpc, _ = controller(env, Path(model), {}, "bfloat16")
    obs, info = env.reset(seed=0)
    goals = torch.as_tensor(info["goals"], dtype=torch.float32)
    mpc.reset()
    episode = roll_out(env, obs, mpc_policy(env, mpc, goals, true_model), goals.shape[0] - 1)
    if true_model is not None:
        true_model.close()
    states = torch.as_tensor(np.asarray(episode.states), dtype=torch.float32)
    z = states[:, height_index(env.task)]
    error = env.task.step_error(states, goals[: states.shape[0]])
    held_from = min(env.task.success_from_step, states.shape[0] - 1)
    return {"goal": goal, "planned_on": "simulator" if model is None else str(model),
            "steps": int(states.shape[0] - 1), "dropped": bool(z.min() < env.task.drop_height),
            "lowest_z": float(z.min()), "mean_error_from_10": float(error[held_from:].mean()),
            "z": z.tolist(), "error": error.tolist()}


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 7), sharex=True)
    colours = plt.get_cmap("tab10")
    for ep in result["episodes"]:
        simulated = ep["planned_on"] == "simulator"
        style = {"color": colours(GOALS.index(ep["goal"])), "ls": "-" if simulated else ":",
                 "lw": 1.6 if simulated else 1.2}
        label = ep["goal"] + ("" if simulated else " (learned)")
        top.plot(100 * np.asarray(ep["z"]), label=label, **style)
        bottom.plot(ep["error"], **style)
    top.axhline(100 * DROP_HEIGHT, color="k", ls="--", label="drop line")
    top.set_ylabel("cube z offset from its start (cm)")
    bottom.set_ylabel("orientation error (rad)")
    bottom.set_xlabel("control step")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    top.legend(fontsize=7, ncol=3)
    fig.suptitle("each cube turn planned on the simulator (solid) and a learned model (dotted)")
    fig.tight_layout(rect=(0, 0.03, 1, 1))
    benchlib.save_figure(fig, path, result.get("command"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--goals", default=",".join(GOALS))
    parser.add_argument("--model", default=None, help="also plan on this learned checkpoint")
    parser.add_argument("--episode-length", type=int, default=None)
    parser.add_argument("--num-samples", type=int, default=PERFECT_SAMPLES)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS / "cube_turns.json")
    args = parser.parse_args(argv)
    goals = [g for g in args.goals.split(",") if g]
    unknown = set(goals) - set(GOALS)
    if unknown or not goals or args.jobs < 1:
        parser.error(f"goals must be among {GOALS} (unknown: {sorted(unknown)}), jobs >= 1")
    jobs = [(g, None) for g in goals] + [(g, args.model) for g in goals if args.model]
    with ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(turn_episode, g, m, args.episode_length, args.num_samples)
                   for g, m in jobs]
        episodes = []
        for future in futures:
            ep = future.result()
            log(f"{ep['goal']} on {ep['planned_on']}: {ep['steps']} steps, lowest z "
                f"{100 * ep['lowest_z']:.1f} cm, dropped {ep['dropped']}, mean error from "
                f"step 10 {ep['mean_error_from_10']:.3f} rad")
            episodes.append(ep)
    result = {"benchmark": "cube_turns", "date": benchlib.now_iso(),
              "machine": benchlib.cpu_model(), "command": benchlib.command_line(),
              "perfect_model_samples": args.num_samples, "drop_height": DROP_HEIGHT,
              "episodes": episodes}
    benchlib.write_result(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    log(f"{args.out} and {args.out.with_suffix('.png')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
