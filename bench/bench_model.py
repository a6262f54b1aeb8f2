#!/usr/bin/env python3
"""Model quality on a fixed dataset: one-step and H-step (compounding) prediction error of
PDDM's ensemble, and how well the ensemble's disagreement ranks its true error.

Dataset (fixed, no ROS): Baoding episodes of 100 steps generated in-process with the
simulator module and PDDM's random exploration (``RandomVelocityExploration``, velocities
0.05-0.15 held 2 steps, first action the keyframe pose as the planner's default
``exploration.initial_action: zero``; episode ``e`` seeded with (seed, e)). States are what
the planner sees: joint angles plus the balls' positions and Kalman-estimated velocities
assembled as the state estimator does it (``TaskStateSource("estimator")``: its core, default
filter settings, a tracker without velocities as in the stack) and the scheduled targets.
Like the stack's dataset, episodes run their full length even after a ball falls (in our
scene the random policy drops a ball within about 15 steps), so most transitions have the
balls lying on the floor; the ``in_hand`` numbers restrict the evaluation to windows that
start with both balls held.

Split by episode with the trainer's own split (``EpisodeDataset.split_ids``, PDDM's 90/10);
a second model trains on the first quarter of the training episodes (same validation
episodes), so the curves show the effect of data. Training is PDDM's: 3 members x 2 x 250
ReLU, Adam 1e-3, batch 512, 40 epochs, 1% noise, ball-swap doubling (``train_ensemble``,
one torch thread, seed 0).

Reported on the validation episodes (``core/models/evaluation.py``): one-step error of the ensemble
mean and of each member; H-step open-loop error for H = 1..20 from every start with 20
recorded steps ahead (the same starts for every H), the scheduled targets written into the
predicted states as the planner does; per state group (joints, ball positions, ball
velocities: raw MSE) and overall (``overall_z``: the 36 physical dimensions, each divided by
the standard deviation of its one-step change in the full training set, a scale shared by
both models); the Spearman rank correlation, per H over the windows, between the members'
disagreement (std across members, same scale) and the ensemble mean's error.
Picture: ``model.png`` beside the JSON.

Budget: about 1 minute here (3 minutes at most on a loaded 2-core machine);
``--quick`` (16 episodes) under 40 s.

    .venv/bin/python bench/bench_model.py [--quick] [--out bench/results/model.json]
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

import mbrl_ros.sim as sim  # first: picks the headless GL backend before mujoco loads
from mbrl_ros.core.data.dataset import EpisodeDataset, TransitionBatch
from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.models.evaluation import (
    disagreement,
    disagreement_error_correlation,
    one_step_errors,
    open_loop_errors,
    open_loop_predictions,
    spearman,
)
from mbrl_ros.core.models.training import TrainConfig, train_ensemble
from mbrl_ros.core.planning.exploration import ExplorationConfig, RandomVelocityExploration
from mbrl_ros.core.tasks import Task, double_by_ball_swap
from mbrl_ros.nodes.task_params import default_task_values, task_from_params
from mbrl_ros.sim.task_state import TaskStateSource

import benchlib

DEFAULT_OUT = benchlib.RESULTS / "model.json"
EPISODE_LENGTH = 100
MAX_HORIZON = 20
VAL_FRACTION = 0.1  # PDDM's 90/10 split of the rollouts
GROUPS = {"joints": ("joints",), "ball_pos": ("ball1_pos", "ball2_pos"),
          "ball_vel": ("ball1_vel", "ball2_vel")}

log = benchlib.Logger("bench_model")


# ----- the fixed dataset ---------------------------------------------------------------
def baoding_task() -> Task:
    """The task every node of the stack builds from its default parameters."""
    return task_from_params({**default_task_values(), "episode_length": EPISODE_LENGTH})


def record_episode(hand: sim.HandSim, states_of: TaskStateSource,
                   explorer: RandomVelocityExploration, task: Task, episode_id: int,
                   seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """States ``[T+1, S]`` (as the estimator assembles them), actions ``[T, A]`` and the
    goal schedule ``[T+1, G]`` of one random-exploration episode."""
    goals = task.episode_goals(seed, EPISODE_LENGTH + 1).double().numpy()
    obs = hand.reset(seed=seed)
    explorer.reset(episode_id)
    states_of.reset()
    states, actions = [states_of.state(obs, goals[0])], []
    for k in range(EPISODE_LENGTH):  # the goal shown as the sim node does
        hand.set_goal(goals[k].reshape(hand.scene.goal_shape), task.goal_frame)
        actions.append(explorer.act())
        result = hand.step(actions[-1])
        if not result.ok:
            raise RuntimeError(f"physics fault in episode {episode_id} step {k}: "
                               f"{result.fault}")
        states.append(states_of.state(result.observation, goals[k + 1]))
    return np.array(states), np.array(actions), goals


def build_dataset(root: Path, task: Task, episodes: int, seed: int) -> EpisodeDataset:
    """``episodes`` random-exploration episodes stored as the trainer stores them."""
    hand = sim.HandSim("baoding", sim.SimConfig(seed=seed))
    states_of = TaskStateSource(task, hand.control_dt, "estimator")
    explorer = RandomVelocityExploration(task.action_dim,
                                         ExplorationConfig(initial_action="zero"), seed=seed)
    dataset = EpisodeDataset(root)
    for e in range(episodes):
        states, actions, goals = record_episode(hand, states_of, explorer, task, e, seed + e)
        reward, _ = task.reward(torch.as_tensor(states[1:]), torch.as_tensor(actions),
                                torch.as_tensor(goals[1:]))
        times = hand.control_dt * np.arange(len(actions), dtype=np.float64)
        dataset.append_episode(states[:-1], actions, states[1:], reward.numpy(), times,
                               meta={"seed": seed + e})
    return dataset


# ----- evaluation ----------------------------------------------------------------------
def field_index(task: Task, names: tuple[str, ...]) -> Tensor:
    return torch.cat([torch.arange(task.layout.slice(n).start, task.layout.slice(n).stop)
                      for n in names])


def physical_index(task: Task) -> Tensor:
    """State dims the model predicts for the planner (all but the scheduled goal)."""
    keep = torch.ones(task.state_dim, dtype=torch.bool)
    if task.goal_slice is not None:
        keep[task.goal_slice] = False
    return torch.nonzero(keep).squeeze(1)


def in_hand(task: Task, states: Tensor) -> Tensor:
    """Both balls above the drop height (bool ``[M]``)."""
    z = torch.stack([states[:, task.layout.start(f) + 2] for f in ("ball1_pos", "ball2_pos")])
    return (z >= task.drop_height).all(dim=0)


def rank_correlations(spread: Tensor, error: Tensor) -> list[float]:
    """Spearman per horizon step over windows (``[H, M]`` inputs)."""
    return [spearman(s, e) if s.numel() >= 2 else math.nan
            for s, e in zip(spread, error, strict=True)]


def evaluate(model: EnsembleDynamics, val: TransitionBatch, task: Task, scale: Tensor,
             horizon: int) -> dict[str, Any]:
    """One-step and open-loop errors, disagreement and rank correlations on ``val``."""
    one = one_step_errors(model, val)
    keep = task.goal_slice
    overall = open_loop_errors(model, val, horizon, keep=keep)
    roll = open_loop_predictions(model, val, horizon, keep=keep)
    phys = physical_index(task)
    pred, truth = roll.predicted[..., phys], roll.truth[..., phys]  # [H, E, M, P], [H, M, P]
    z_err2 = ((pred - truth[:, None]) / scale).pow(2)  # [H, E, M, P]
    z_mean_err2 = ((pred.mean(dim=1) - truth) / scale).pow(2)  # [H, M, P]
    spread = (pred.std(dim=1, correction=0) / scale).mean(dim=-1)  # [H, M]
    window_error = z_mean_err2.mean(dim=-1)  # [H, M]
    held = in_hand(task, val.state[roll.starts])
    ball = field_index(task, GROUPS["ball_pos"])
    ball_err2 = (roll.predicted[..., ball].mean(dim=1) - roll.truth[..., ball]).pow(2)
    out: dict[str, Any] = {
        "one_step": {
            "ensemble_mse": one.ensemble_mse,
            "ensemble_mse_model_z": one.ensemble_mse_norm,
            "member_mse": one.member_mse.tolist(),
            "disagreement_mean": float(disagreement(model, val.state, val.action).mean()),
            "rank_correlation": disagreement_error_correlation(model, val),
        },
        "num_windows": int(roll.starts.numel()),
        "num_windows_in_hand": int(held.sum()),
        "open_loop": {
            "overall": {"ensemble_mse": overall.ensemble_mse.tolist(),
                        "member_mse": overall.member_mse.tolist(),
                        "member_mean_mse": overall.member_mean_mse.tolist()},
            "overall_z": {"ensemble_mse": z_mean_err2.mean(dim=(1, 2)).tolist(),
                          "member_mse": z_err2.mean(dim=(2, 3)).T.tolist(),
                          "member_mean_mse": z_err2.mean(dim=(1, 2, 3)).tolist()},
        },
        "rank_correlation": rank_correlations(spread, window_error),
        "in_hand": {"overall_z_ensemble_mse": window_error[:, held].mean(dim=1).tolist(),
                    "ball_pos_ensemble_mse": ball_err2[:, held].mean(dim=(1, 2)).tolist(),
                    "rank_correlation": rank_correlations(spread[:, held],
                                                          window_error[:, held])},
    }
    for group, names in GROUPS.items():
        idx = field_index(task, names)
        err2 = (roll.predicted[..., idx] - roll.truth[:, None][..., idx]).pow(2)
        mean_err2 = (roll.predicted[..., idx].mean(dim=1) - roll.truth[..., idx]).pow(2)
        out["open_loop"][group] = {"ensemble_mse": mean_err2.mean(dim=(1, 2)).tolist(),
                                   "member_mean_mse": err2.mean(dim=(1, 2, 3)).tolist()}
    return out


def summary(size: dict[str, Any]) -> dict[str, float]:
    """The numbers the README quotes for one dataset size."""
    curve = size["open_loop"]["overall_z"]["ensemble_mse"]
    members = size["open_loop"]["overall_z"]["member_mean_mse"]
    rank = size["rank_correlation"]
    ball = size["open_loop"]["ball_pos"]["ensemble_mse"]
    held_ball = size["in_hand"]["ball_pos_ensemble_mse"]
    h7 = min(7, len(curve))
    return {
        "one_step_mse": size["one_step"]["ensemble_mse"],
        "error_z_h1": curve[0], f"error_z_h{h7}": curve[h7 - 1], "error_z_h20": curve[-1],
        "growth_h20_over_h1": curve[-1] / curve[0],
        "member_over_ensemble_h20": members[-1] / curve[-1],
        "ball_pos_rmse_mm_h1": 1e3 * math.sqrt(ball[0]),
        f"ball_pos_rmse_mm_h{h7}": 1e3 * math.sqrt(ball[h7 - 1]),
        f"ball_pos_rmse_mm_in_hand_h{h7}": 1e3 * math.sqrt(held_ball[h7 - 1]),
        "rank_correlation_one_step": size["one_step"]["rank_correlation"],
        "rank_correlation_h1": rank[0], f"rank_correlation_h{h7}": rank[h7 - 1],
        "rank_correlation_h20": rank[-1],
        "rank_correlation_in_hand_h1": size["in_hand"]["rank_correlation"][0],
        f"rank_correlation_in_hand_h{h7}": size["in_hand"]["rank_correlation"][h7 - 1],
    }


# ----- picture -------------------------------------------------------------------------
def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    horizons = result["horizons"]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, size in enumerate(result["sizes"].values()):
        c = colours[i % len(colours)]
        label = f"{size['train_transitions']} transitions"
        ol = size["open_loop"]
        ax = axes[0, 0]
        ax.plot(horizons, ol["overall_z"]["ensemble_mse"], "-o", ms=3, color=c,
                label=f"{label}: ensemble mean")
        ax.plot(horizons, ol["overall_z"]["member_mean_mse"], "--", color=c,
                label=f"{label}: single members")
        ax.plot(horizons, size["in_hand"]["overall_z_ensemble_mse"], ":", color=c,
                label=f"{label}: ensemble, balls in hand at start")
        axes[0, 1].plot(horizons, 1e3 * np.sqrt(ol["ball_pos"]["ensemble_mse"]), "-o", ms=3,
                        color=c, label=f"{label}: all windows")
        axes[0, 1].plot(horizons, 1e3 * np.sqrt(size["in_hand"]["ball_pos_ensemble_mse"]), ":",
                        color=c, label=f"{label}: balls in hand at start")
        axes[1, 0].plot(horizons, np.sqrt(ol["joints"]["ensemble_mse"]), "-o", ms=3, color=c,
                        label=label)
        ax = axes[1, 1]
        ax.plot(horizons, size["rank_correlation"], "-o", ms=3, color=c,
                label=f"{label}: all windows")
        ax.plot(horizons, size["in_hand"]["rank_correlation"], ":", color=c,
                label=f"{label}: balls in hand at start")
    titles = (("Open-loop error (36 physical dims, z-scored)", "MSE (z units)"),
              ("Ball positions", "RMSE (mm)"),
              ("Joint angles", "RMSE (rad)"),
              ("Does disagreement rank the error?", "Spearman (disagreement, error)"))
    for ax, (title, ylabel) in zip(axes.flat, titles, strict=True):
        ax.set_title(title)
        ax.set_xlabel("prediction horizon H (steps of 0.1 s)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    for ax in axes.flat[:3]:
        ax.set_yscale("log")
    axes[1, 1].axhline(0.0, color="0.5", lw=0.8)
    axes[1, 1].set_ylim(-1.0, 1.0)
    ds = result["dataset"]
    fig.suptitle(f"PDDM ensemble (3 x 2 x 250) on Baoding random-exploration data: "
                 f"{ds['episodes']} episodes x {ds['episode_length']} steps, "
                 f"{ds['val_episodes']} held out")
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    benchlib.save_figure(fig, path, result["command"])


# ----- main ----------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(DEFAULT_OUT), help="result JSON (model.png "
                        "goes beside it)")
    parser.add_argument("--quick", action="store_true", help="16 episodes (smoke test)")
    parser.add_argument("--episodes", type=int, default=None,
                        help="episodes in the dataset (default 120, --quick 16)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=40, help="training epochs (PDDM 40)")
    args = parser.parse_args()
    episodes = args.episodes or (16 if args.quick else 120)
    if episodes < 8 or args.epochs < 1 or args.seed < 0:
        parser.error("need --episodes >= 8, --epochs >= 1 and --seed >= 0")
    torch.set_num_threads(1)
    task = baoding_task()
    start = time.perf_counter()
    result: dict[str, Any] = {"horizons": list(range(1, MAX_HORIZON + 1)), "sizes": {}}
    with tempfile.TemporaryDirectory(prefix="bench_model_") as tmp:
        log(f"dataset: {episodes} random-exploration episodes x {EPISODE_LENGTH} steps")
        t0 = time.perf_counter()
        dataset = build_dataset(Path(tmp) / "dataset", task, episodes, args.seed)
        train_ids, val_ids = dataset.split_ids(VAL_FRACTION, args.seed)
        val = dataset.batch(val_ids)
        full_train = dataset.batch(train_ids)
        delta = full_train.next_state - full_train.state
        scale = delta[:, physical_index(task)].std(dim=0).clamp_min(1e-8)
        held = in_hand(task, dataset.batch().state)
        result["dataset"] = {
            "task": task.name, "episodes": episodes, "episode_length": EPISODE_LENGTH,
            "transitions": dataset.num_transitions, "train_episodes": len(train_ids),
            "val_episodes": len(val_ids), "seed": args.seed,
            "states_in_hand_fraction": float(held.float().mean()),
            "generation_s": time.perf_counter() - t0,
            "policy": "PDDM random velocities 0.05-0.15 held 2 steps, first action zero",
        }
        log(f"  {dataset.num_transitions} transitions in "
            f"{result['dataset']['generation_s']:.1f} s; {len(train_ids)} train / "
            f"{len(val_ids)} validation episodes; balls in hand in "
            f"{100 * result['dataset']['states_in_hand_fraction']:.0f}% of the states")
        config = TrainConfig(epochs=args.epochs, seed=args.seed, num_threads=1)
        result["training"] = {"members": 3, "hidden": [250, 250], "epochs": config.epochs,
                              "batch_size": config.batch_size, "lr": config.lr,
                              "input_noise": config.input_noise, "ball_swap": True,
                              "torch_threads": 1}
        for fraction in (0.25, 1.0):
            ids = train_ids[:max(1, round(fraction * len(train_ids)))]
            name = f"{round(100 * fraction)}pct"
            train = dataset.batch(ids)
            log(f"train on {name} of the training episodes: {len(ids)} episodes, "
                f"{len(train)} transitions (x2 by ball swap), {config.epochs} epochs")
            model = EnsembleDynamics(EnsembleConfig(task.state_dim, task.action_dim))
            fit = train_ensemble(model, double_by_ball_swap(train), val, config)
            if fit.diverged:
                raise RuntimeError(f"training diverged: {fit.message}")
            log(f"  {fit.duration_s:.1f} s, final val MSE (model z) "
                f"{fit.final_metrics['val_mse_norm']:.4f}; evaluating H = 1..{MAX_HORIZON}")
            size = {"fraction": fraction, "train_episodes": len(ids),
                    "train_transitions": len(train), "train_s": fit.duration_s,
                    "final_val_mse_model_z": fit.final_metrics["val_mse_norm"],
                    **evaluate(model, val, task, scale, MAX_HORIZON)}
            size["summary"] = summary(size)
            result["sizes"][name] = size
            s = size["summary"]
            log(f"  one-step MSE {s['one_step_mse']:.3g}; z error H1 {s['error_z_h1']:.3g} "
                f"H7 {s['error_z_h7']:.3g} H20 {s['error_z_h20']:.3g}; rank corr. H1 "
                f"{s['rank_correlation_h1']:.2f} H7 {s['rank_correlation_h7']:.2f} H20 "
                f"{s['rank_correlation_h20']:.2f}")
    result["summary"] = {name: size["summary"] for name, size in result["sizes"].items()}
    result["wall_s"] = time.perf_counter() - start
    out = benchlib.write_result(args.out, result)
    picture = out.parent / "model.png"
    stored = {**result, "command": benchlib.command_line()}
    plot(stored, picture)
    log(f"wrote {out} and {picture} in {result['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
