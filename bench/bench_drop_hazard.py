#!/usr/bin/env python3
"""Does a learned drop hazard keep the object where the dynamics model does not foresee it?

Why: the cube's learned models foresee a roll off the fingertips only 1-2 steps ahead
(``bench_drop_foresight``), too late for a 7-step plan, so the planner walks into drops the
loop has recorded a thousand times. A classifier trained directly on those episodes,
``hazard(s) = P(the object is dropped within k steps of state s)``, needs no composition of
one-step predictions to see a drop coming.

What: on a learned run's data before the model of ``--iteration`` (the episodes that model
trained on), train the hazard (an MLP on the state without its goal fields, each state
labelled 1 when the episode ended in a drop at most ``--k`` steps later); report how well it
foresees the drops of the episodes collected after that model (held out: recall ``k``
steps ahead per goal, false alarms on kept episodes); then run the model closed loop on the
fixed evaluation episodes (``bench_checkpoints``' seeds) with the planner scoring
``reward - weight * hazard(predicted state)`` for each ``--weights`` value (0: the task's
own reward, the control). The probe changes only the planner's score; the simulator and the
task's metrics are untouched.

Run: ``.venv/bin/python bench/bench_drop_hazard.py --run runs/bench_learning/<budget>/<run>
--iteration 102 [--k 3] [--weights 0,30,100] [--variants moderate] [--episodes 16]``
(writes ``bench/results/drop_hazard_<run>_<iteration>.json``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from bench_checkpoints import VARIANTS, evaluate, perfect_bound
from bench_drop_foresight import held_out_episodes, run_episodes

from mbrl_ros.core.data.dataset import EpisodeDataset

import benchlib
from learning.drop_hazard import DropHazard, labelled_states, train_hazard, with_hazard_cost
from learning.pddm_run import evaluation_env, stored_run_task

log = benchlib.Logger("bench_drop_hazard")


def foresight(hazard: DropHazard, dataset: EpisodeDataset, episodes: list[tuple[int, int]],
              name_of: Any, k: int) -> dict[str, dict[str, Any]]:
    """Per goal on held-out episodes: ``recall`` (dropped episodes whose state ``k`` steps
    before the drop has hazard > 0.5), ``false_alarm`` (mean fraction of a kept episode's
    states with hazard > 0.5)."""
    rows: dict[str, dict[str, list[float]]] = {}
    with torch.no_grad():
        for episode_id, seed in episodes:
            ep = dataset.batch([episode_id])
            p = hazard(ep.next_state)
            row = rows.setdefault(name_of(seed), {"recall": [], "false_alarm": []})
            if bool(ep.done[-1]):
                row["recall"].append(float(p[max(0, len(p) - 1 - k)] > 0.5))
            else:
                row["false_alarm"].append(float((p > 0.5).float().mean()))
    return {goal: {"dropped": len(r["recall"]), "kept": len(r["false_alarm"]),
                   **{key: float(np.mean(v)) if v else None for key, v in r.items()}}
            for goal, r in rows.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--iteration", type=int, required=True)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--held-out", type=int, default=3)
    parser.add_argument("--weights", default="0,30,100")
    parser.add_argument("--variants", default="moderate")
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--dtype", default="bfloat16", choices=("float32", "bfloat16"))
    parser.add_argument("--perfect-runs", type=Path, default=Path("runs/bench_learning/pddm"))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",") if w]
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS) or args.k < 0 or any(w < 0 for w in weights):
        parser.error(f"variants from {sorted(VARIANTS)}, k >= 0, weights >= 0")
    torch.set_num_threads(1)
    path = args.run / "models" / f"iteration_{args.iteration:04d}.model"
    task = stored_run_task(args.run)
    dataset = EpisodeDataset(args.run / "dataset")
    name_of = getattr(task, "goal_name", lambda seed: "all")
    trained = [e for e, _ in run_episodes(args.run, 0, args.iteration)]
    held = held_out_episodes(args.run, args.iteration, args.held_out)
    states, labels = labelled_states(dataset, trained, args.k)
    log(f"hazard k={args.k}: {len(labels)} states of {len(trained)} episodes, "
        f"{int(labels.sum())} labelled")
    tic = time.perf_counter()
    hazard = train_hazard(task, states, labels, args.epochs, log=log)
    seen = foresight(hazard, dataset, held, name_of, args.k)
    for goal, row in seen.items():
        log(f"held out {goal}: recall {args.k} steps ahead {row['recall']} of {row['dropped']}"
            f" drops, false alarms {row['false_alarm']} on {row['kept']} kept")
    bound = perfect_bound(args.perfect_runs, task.name)
    perfect = None if bound is None else bound["score"]
    env = evaluation_env(args.run)
    out = args.out or benchlib.RESULTS / f"drop_hazard_{args.run.name}_{args.iteration}.json"
    result: dict[str, Any] = {
        "benchmark": "drop_hazard", "run": str(args.run), "iteration": args.iteration,
        "model": str(path), "k": args.k, "epochs": args.epochs,
        "train_states": len(labels), "train_positive": int(labels.sum()),
        "train_seconds": time.perf_counter() - tic, "held_out_iterations": args.held_out,
        "held_out_foresight": seen, "episodes": args.episodes, "inference_dtype": args.dtype,
        "perfect_score": perfect, "by_weight": {}}
    for weight in weights:
        planning = env.task if weight == 0 else with_hazard_cost(env.task, hazard, weight)
        for variant in variants:
            res = evaluate(env, path, VARIANTS[variant], args.dtype, args.episodes, planning)
            if perfect is not None and res["score"] < 0:
                res["score_ratio_to_perfect"] = perfect / res["score"]
            result["by_weight"].setdefault(str(weight), {})[variant] = res
            goals = ", ".join(f"{g} {b['drop_rate']:.0%} drops {b['tracking_error']:.2f}"
                              for g, b in res.get("by_goal", {}).items())
            log(f"weight {weight:g} / {variant}: drops {res['drop_rate']:.0%}, error "
                f"{res['tracking_error']:.3f}, ratio "
                f"{res.get('score_ratio_to_perfect', float('nan')):.2f} ({goals})")
            benchlib.write_result(out, result)
    log(f"{out}; cpu {benchlib.cpu_model()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
