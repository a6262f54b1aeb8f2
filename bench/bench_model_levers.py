#!/usr/bin/env python3
"""Which model lever closes the learned controller's gap: the same data, other models.

What: on the dataset of a learned run (Baoding or cube, its ``spec.json`` says; default: the
newest Baoding ``pddm_explore`` run),
train one ensemble per lever with the run's trainer settings plus the lever's change (PDDM's
2 x 250 deterministic members as the run trained them; 40 (PDDM's) or 80 epochs instead of
the run's 20; probabilistic (Gaussian NLL, PETS) members; 5 members; 2 x 500 wide), then
run each model closed-loop on the same fixed evaluation episodes (seeds 5000.., the ones
``bench_checkpoints`` uses) with PDDM's planner settings and the moderate ones (gamma 10,
sigma 0.5). Reported per lever: training time, validation one-step and 7-step error, and per
planner variant drop rate, success rate, steps kept, tracking error and the score ratio to
the perfect model. Models are kept in ``<run>/levers/`` (a rerun only evaluates).

Run: ``.venv/bin/python bench/bench_model_levers.py --run DIR [--levers a,b] [--episodes 8]``
(writes ``bench/results/model_levers.json`` and ``.png``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
from bench_checkpoints import VARIANTS, evaluate, evaluation_panels, perfect_bound, run_task

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.models.retraining import retrain
from mbrl_ros.core.models.serialization import save_model
from mbrl_ros.core.tasks import make_task
from mbrl_ros.nodes.trainer_params import retrain_settings

import benchlib
from learning.pddm_run import RunSpec, evaluation_env, trainer_values

DEFAULT_RUN = Path("runs/bench_learning/pddm_explore/baoding_mppi_learned_seed0")


def _over_seeds(name: str, overrides: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """``name`` with training seeds 0 (the run's own), 1 and 2: one retraining is a wide
    draw, so a lever is judged over three."""
    return {name: overrides, **{f"{name}_seed_{seed}": {**overrides, "train.seed": seed}
                                for seed in (1, 2)}}


#: lever -> trainer parameter changes on top of the run's own settings
LEVERS: dict[str, dict[str, Any]] = {
    "as_run": {},
    "epochs_40": {"train.epochs": 40},
    "epochs_80": {"train.epochs": 80},
    "probabilistic": {"ensemble.probabilistic": True},
    **_over_seeds("members_5", {"ensemble.members": 5}),
    # ten members: the planner averages each candidate's score over more independent errors
    **_over_seeds("members_10", {"ensemble.members": 10}),
    **_over_seeds("wide_500", {"ensemble.hidden": [500, 500]}),
    # wider members trained twice as long: on 90,000 transitions one 500x500 member fitted
    # for 80 epochs predicts the balls' next move 10-15% better than PDDM's 250x250 for 40
    **_over_seeds("wide_500_e80", {"ensemble.hidden": [500, 500], "train.epochs": 80}),
    # the same trained with bfloat16 matmuls (train.precision): about 2x faster on a CPU
    # with avx512_bf16; does the closed loop stay as good?
    **_over_seeds("wide_500_e80_bf16", {"ensemble.hidden": [500, 500], "train.epochs": 80,
                                        "train.precision": "bfloat16"}),
    # the same training with other seeds (weight init and validation split): how much two
    # models of the same data differ in closed loop
    "seed_1": {"train.seed": 1},
    "seed_2": {"train.seed": 2},
    "lr_half": {"train.lr": 5e-4},
    **_over_seeds("batch_256", {"train.batch_size": 256}),
    "batch_128": {"train.batch_size": 128},
    # the step size falling to 0 over the job (cosine) instead of PDDM's constant 1e-3
    **_over_seeds("batch_256_cosine", {"train.batch_size": 256, "train.lr_schedule": "cosine"}),
    # the task's goal fields (Baoding's target xy) held at 0 instead of fed to the members
    **_over_seeds("batch_256_no_goal_inputs", {"train.batch_size": 256,
                                               "ensemble.goal_inputs": False}),
    # on a run that averaged the weights (pddm_act_b256_swa): the last step's weights
    **_over_seeds("last_weights", {"train.average_last_epochs": 0}),
    # each member also fitted on its own 3-step open-loop chain (train.rollout_steps)
    **_over_seeds("rollout_3", {"train.rollout_steps": 3}),
    # more noise on the z-scored inputs and targets than PDDM's 1%: smoother members, which
    # the planner queries off the recorded actions
    **_over_seeds("noise_5pct", {"train.input_noise": 0.05}),
    **_over_seeds("noise_10pct", {"train.input_noise": 0.1}),
    # the tracked objects' state fields (Baoding's balls) weigh 4x the others in the loss
    **_over_seeds("objects_x4", {"train.object_loss_weight": 4.0}),
    # the mean of the last 10 epochs' weights instead of the last step's
    **_over_seeds("batch_256_swa10", {"train.batch_size": 256,
                                      "train.average_last_epochs": 10}),
    # the goal fields not fed to the members (the cube's goal is one of four labels per
    # episode, which the data's outcomes correlate with: "down" episodes mostly drop)
    **_over_seeds("no_goal_inputs", {"ensemble.goal_inputs": False}),
    # each member on its own resample of the data (train.bootstrap): members that disagree
    # where the data are thin, e.g. the cube's rare fast rolls
    **_over_seeds("bootstrap", {"train.bootstrap": True}),
    # three hidden layers of 500 instead of two, trained as the wide members: more capacity
    # for the cube's contact-rich fall onto the fingers and its catch
    **_over_seeds("deep_500x3_e80", {"ensemble.hidden": [500, 500, 500], "train.epochs": 80,
                                     "train.precision": "bfloat16"}),
    # the cube: each transition 3 more times with the cube's axes relabelled by one of its
    # symmetry rotations ("task." changes are the task's, cube_symmetry)
    **_over_seeds("cube_symmetry_3", {"task.symmetry_copies": 3}),
}
log = benchlib.Logger("bench_model_levers")


def run_trainer_overrides(run: Path, transitions: int | None = None) -> dict[str, Any]:
    """The trainer overrides the run was made with (its ``spec.json``), with its late ones
    (``late_trainer_overrides``) when ``transitions`` reach ``late_trainer_from``."""
    spec = json.loads((run / "spec.json").read_text())
    overrides = dict(spec.get("trainer_overrides", {}))
    late_from = spec.get("late_trainer_from")
    if transitions is not None and late_from is not None and transitions >= late_from:
        overrides.update(spec.get("late_trainer_overrides", {}))
    return overrides


def split_lever(changes: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A lever's task arguments (``task.<name>``) and trainer parameters (the rest)."""
    task = {k.removeprefix("task."): v for k, v in changes.items() if k.startswith("task.")}
    return task, {k: v for k, v in changes.items() if not k.startswith("task.")}


def train_lever(run: Path, name: str, dataset: EpisodeDataset) -> dict[str, Any]:
    """Train (or reuse) the lever's model on the run's data; its training facts."""
    path = run / "levers" / f"{name}.model"
    facts_path = path.with_suffix(".json")
    if path.exists() and facts_path.exists():
        return json.loads(facts_path.read_text())
    task_name = run_task(run)
    task_args, trainer_changes = split_lever(LEVERS[name])
    task = make_task(task_name, **task_args)
    values = trainer_values(RunSpec(task=task_name, trainer_overrides={
        **run_trainer_overrides(run, dataset.num_transitions), **trainer_changes}))
    settings = retrain_settings(task, values)
    settings = dataclasses.replace(settings, max_val_mse=float("inf"))  # judge closed-loop
    tic = time.monotonic()
    outcome = retrain(dataset, settings)
    seconds = time.monotonic() - tic
    m = outcome.metrics
    multi = list(m.get("val_multi_step_mse", []))
    facts = {"train_seconds": seconds, "epochs": m["epochs"],
             "num_transitions": m["num_transitions"],
             "val_one_step_mse": m["val_one_step_mse"],
             "val_7_step_mse": multi[-1] if multi else None,
             "members": settings.architecture.num_members,
             "hidden": list(settings.architecture.hidden_sizes),
             "probabilistic": settings.architecture.probabilistic}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, outcome.model, {"lever": name, "task": task_name})
    facts_path.write_text(json.dumps(facts, indent=2) + "\n")
    return facts


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    levers = list(result["levers"])
    variants = result["variants"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    width = 0.8 / len(variants)
    x = np.arange(len(levers))
    for k, variant in enumerate(variants):
        rows = [result["levers"][n]["by_variant"][variant] for n in levers]
        for ax, key, scale in zip(axes, ("tracking_error", "drop_rate", "success_rate"),
                                  (100.0, 1.0, 1.0), strict=True):
            ax.bar(x + k * width, [scale * r[key] for r in rows], width, label=variant)
    evaluation_panels(axes, result.get("perfect_tracking_error"))
    for ax in axes:
        ax.set_xticks(x + width * (len(variants) - 1) / 2, levers, rotation=20)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{result['run']} ({result['transitions']} transitions): one model per "
                 f"lever, {result['episodes']} evaluation episodes each")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    benchlib.save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN)
    parser.add_argument("--levers", default=",".join(LEVERS))
    parser.add_argument("--variants", default="pddm,moderate")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--perfect-runs", type=Path, default=Path("runs/bench_learning/pddm"))
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS / "model_levers.json")
    args = parser.parse_args(argv)
    levers = [n for n in args.levers.split(",") if n]
    variants = [v for v in args.variants.split(",") if v]
    if set(levers) - set(LEVERS) or set(variants) - set(VARIANTS) or args.episodes < 1:
        parser.error(f"levers from {sorted(LEVERS)}, variants from {sorted(VARIANTS)}")
    if not (args.run / "dataset").is_dir():
        log(f"no dataset in {args.run}: run `make bench-learning BUDGET=pddm_explore` first")
        return 2
    torch.set_num_threads(1)
    dataset = EpisodeDataset(args.run / "dataset")
    task_name = run_task(args.run)
    bound = perfect_bound(args.perfect_runs, task_name)
    perfect = None if bound is None else bound["score"]
    old = json.loads(args.out.read_text()) if args.out.exists() else {}
    same_data = old.get("run") == str(args.run) and old.get(
        "transitions") == dataset.num_transitions
    result: dict[str, Any] = {
        "benchmark": "model_levers", "run": str(args.run),
        "transitions": dataset.num_transitions, "episodes": args.episodes,
        "variants": variants, "inference_dtype": args.dtype, "perfect_score": perfect,
        "perfect_tracking_error": None if bound is None else bound["tracking_error"],
        "lever_changes": {n: LEVERS[n] for n in levers}, "levers": {}}
    env = evaluation_env(args.run)  # the states the data have
    for name in levers:
        log(f"{name}: training on {dataset.num_transitions} transitions ({LEVERS[name]})")
        facts = train_lever(args.run, name, dataset)
        log(f"{name}: {facts['train_seconds']:.0f} s, val 7-step mse {facts['val_7_step_mse']}")
        done = old.get("levers", {}).get(name, {}).get("by_variant", {}) if same_data else {}
        entry = {**facts, "by_variant": {}}
        for variant in variants:
            res = done.get(variant)
            if res is None or res.get("episodes") != args.episodes:
                res = evaluate(env, args.run / "levers" / f"{name}.model", VARIANTS[variant],
                               args.dtype, args.episodes)
                if perfect is not None and res["score"] < 0:
                    res["score_ratio_to_perfect"] = perfect / res["score"]
            entry["by_variant"][variant] = res
            log(f"{name} / {variant}: drops {res['drop_rate']:.0%}, successes "
                f"{res['success_rate']:.0%}, steps {res['steps']:.1f}, error "
                f"{res['tracking_error']:.4f}, ratio "
                f"{res.get('score_ratio_to_perfect', float('nan')):.2f}")
        result["levers"][name] = entry
        benchlib.write_result(args.out, result)  # after every lever: resumable
    plot(result, args.out.with_suffix(".png"))
    log(f"{args.out} and {args.out.with_suffix('.png')}; cpu {benchlib.cpu_model()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
