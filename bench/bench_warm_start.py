#!/usr/bin/env python3
"""Warm-started training vs PDDM's retraining from scratch, on the same data.

What: on the dataset of a learned Baoding run (default: the learning benchmark's
``runs/bench_learning/pddm`` MPPI run), train the ensemble (a) from scratch for PDDM's 40
epochs and (b) starting from the model of ``--back`` iterations earlier (trained on less of
the same data) for ``--warm-epochs`` epochs, with the trainer's settings (one thread, the
same validation split). Reported: wall time and the validation errors each reaches (one
step and 7-step open loop, z-scored), so the time a warm start saves can be weighed
against the model it gives.

Run: ``.venv/bin/python bench/bench_warm_start.py [--run DIR] [--back 10] [--warm-epochs 10]``
(writes ``bench/results/warm_start.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import torch

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.models.retraining import retrain
from mbrl_ros.core.models.serialization import load_model
from mbrl_ros.core.tasks.from_values import stack_task
from mbrl_ros.nodes.trainer_params import retrain_settings

import benchlib
from learning.pddm_run import RunSpec, trainer_values

DEFAULT_RUN = Path("runs/bench_learning/pddm/baoding_mppi_learned_seed0")
log = benchlib.Logger("bench_warm_start")


def outcome_row(label: str, outcome: Any, seconds: float) -> dict[str, Any]:
    m = outcome.metrics
    multi = list(m.get("val_multi_step_mse", []))
    return {"label": label, "seconds": seconds, "epochs": m["epochs"],
            "val_one_step_mse": m["val_one_step_mse"],
            "val_7_step_mse": multi[-1] if multi else None,
            "num_transitions": m["num_transitions"], "accepted": outcome.accepted}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=DEFAULT_RUN)
    parser.add_argument("--back", type=int, default=10)
    parser.add_argument("--warm-epochs", type=int, default=10)
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS / "warm_start.json")
    args = parser.parse_args(argv)
    models = sorted((args.run / "models").glob("iteration_*.model"))
    if len(models) <= args.back:
        log(f"need more than {args.back} models in {args.run / 'models'}: run "
            "`make bench-learning BUDGET=pddm` first")
        return 2
    torch.set_num_threads(1)
    task = stack_task("baoding")
    values = trainer_values(RunSpec(task="baoding"))
    scratch = retrain_settings(task, values)
    dataset = EpisodeDataset(args.run / "dataset")
    log(f"{dataset.num_transitions} transitions; warm start from {models[-1 - args.back].name}")
    rows = []
    tic = time.monotonic()
    rows.append(outcome_row("from scratch, 40 epochs (PDDM)", retrain(dataset, scratch),
                            time.monotonic() - tic))
    log(f"from scratch: {rows[-1]}")
    previous, _ = load_model(models[-1 - args.back])
    warm = dataclasses.replace(scratch, train=dataclasses.replace(
        scratch.train, from_scratch=False, epochs=args.warm_epochs))
    tic = time.monotonic()
    rows.append(outcome_row(f"warm start, {args.warm_epochs} epochs",
                            retrain(dataset, warm, previous=previous), time.monotonic() - tic))
    log(f"warm start: {rows[-1]}")
    result = {"benchmark": "warm_start", "machine": benchlib.machine_info(),
              "dataset_transitions": dataset.num_transitions,
              "warm_start_model": models[-1 - args.back].name, "runs": rows,
              "time_ratio": rows[0]["seconds"] / rows[1]["seconds"]}
    benchlib.write_result(args.out, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
