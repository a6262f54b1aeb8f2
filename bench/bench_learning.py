#!/usr/bin/env python3
"""Learning benchmark: PDDM with three planners on learned models, the true-model upper
bound and a SAC baseline, per task, over seeds. Long (hours), resumable, one core.

Runs (each its own directory under ``--runs``, by default ``runs/bench_learning/<budget>``;
an interrupted benchmark picks up where it stopped, run by run and episode by episode):
- ``<task>_<planner>_learned_seed<s>``: PDDM's loop in-process (``learning/pddm_run.py``)
  with the stack's settings (config/*.yaml: PDDM's N, H, gamma, beta, ensemble, training),
  planners mppi (PDDM), cem, random shooting; the budget below.
- ``<task>_<planner>_true_seed0``: the same planner and per-step budget planning on the
  simulator itself (``learning/true_model.py``): what a perfect model reaches.
- ``<task>_<planner>_true_state_seed<s>`` (``--parts true_state``): the same, planning from
  only what a task state holds (no joint velocities, no ball spin; the estimator's object
  states): what any model of the task state could reach.
- ``<task>_sac_seed<s>``: stable-baselines3 SAC on the same simulator and task
  (``learning/sac_baseline.py``), for ``sac_factor`` times the PDDM runs' transitions.
Results: ``bench/results/learning.json`` (curves, true-model levels, SAC curve, the
data-efficiency ratio) and ``bench/results/learning_<task>.png``; both are rewritten after
every run, so a partial benchmark still reports what it has.

Budgets (``--budget``): ``pddm`` (the default of ``make bench-learning``: 40 random
episodes, then 96 iterations of 10 MPC + 1 random, at most 109,600 transitions, the
"within 100,000 real transitions" bar), ``standard``, ``short`` (what fits in about an hour
here) and ``smoke`` (seconds, for tests). Perfect-model runs: one episode per seed at
PDDM's perfect-model N (``PERFECT_MODEL_SAMPLES``). PDDM itself used 150
random + 200 x 40 MPC rollouts per task: out of reach on a 2-core CPU machine.

    .venv/bin/python bench/bench_learning.py [--budget short] [--tasks baoding]
        [--planners mppi,cem,random] [--seeds 0,1,2] [--parts learned,true,sac]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from mbrl_ros.core.experiment import Budget
from mbrl_ros.core.tasks.from_values import stack_task
from mbrl_ros.results.metrics_log import read_metrics

import benchlib
from learning import curves
from learning.checkpoint_summary import checkpoint_summary, headline
from learning.pddm_run import RunSpec, perfect_model_samples
from learning.pddm_run import run as run_pddm

log = benchlib.Logger("bench_learning")


@dataclass(frozen=True)
class BudgetPreset:
    """Episode counts of the learned runs, true-model episodes, SAC's share."""

    learned: Budget
    true_episodes: int
    sac_factor: float
    sac_eval_points: int
    sac_eval_episodes: int
    episode_length: int | None = None
    planner_overrides: tuple[tuple[str, Any], ...] = ()
    trainer_overrides: tuple[tuple[str, Any], ...] = ()
    env_options: tuple[tuple[str, Any], ...] = ()
    mpc_action_noise: float = 0.0
    #: retrainings of a dataset of at least ``late_trainer_from`` transitions also take
    #: ``late_trainer_overrides`` (``RunSpec``)
    late_trainer_from: int | None = None
    late_trainer_overrides: tuple[tuple[str, Any], ...] = ()
    #: a learned drop hazard in the planner's score (``RunSpec.drop_hazard``; () : none)
    drop_hazard: tuple[tuple[str, Any], ...] = ()


BUDGETS = {
    "smoke": BudgetPreset(Budget(4, 1, 1, 0), 1, 2.0, 2, 1, episode_length=10,
                          planner_overrides=(("num_samples", 16),)),
    "short": BudgetPreset(Budget(60, 12, 5, 2), 1, 10.0, 10, 3),
    "standard": BudgetPreset(Budget(40, 30, 5, 1), 3, 10.0, 20, 5),
    # the bar: at most 100k real transitions (1096 episodes of <= 100 steps)
    "pddm": BudgetPreset(Budget(40, 96, 10, 1), 1, 10.0, 20, 5),
    # the same with the planner tuned for learned models: a softer MPPI weighting (gamma 5
    # instead of PDDM's 20) and narrower sampling (sigma 0.5 instead of 0.9); what its runs
    # did: docs/learning_study.md (``pddm_gentle``)
    "pddm_gentle": BudgetPreset(Budget(40, 96, 10, 1), 1, 10.0, 20, 5,
                                planner_overrides=(("gamma", 5.0), ("sigma", 0.5))),
    # data that teaches the model the balls' motion, with fewer drops than PDDM's settings:
    # gamma 10 and sigma 0.5 (PDDM: 20 and 0.9); each iteration warm-starts training from
    # the last model for 10 epochs instead of 40 from scratch (bench_warm_start: the same
    # validation error, about 4x less time); plans in bfloat16 where the CPU has it
    # (bench_closed_loop: 1.5x faster, the same closed-loop result); 150 iterations
    "pddm_moderate": BudgetPreset(Budget(40, 150, 10, 1), 1, 10.0, 20, 5,
                                  planner_overrides=(("gamma", 10.0), ("sigma", 0.5),
                                                     ("inference_dtype", "bfloat16")),
                                  trainer_overrides=(("train.from_scratch", False),
                                                     ("train.epochs", 10))),
    # the same retraining from scratch each iteration (PDDM) for 20 epochs: warm-started
    # models fit the data as well but predicted the perfect-model runs' motions worse
    # (7-step ball error 3.0-3.3 cm against 2.4-2.6 cm from scratch, on 22k transitions)
    # PDDM's own iteration size (40 MPC rollouts) and planner settings, whose data taught the
    # models the balls' motion best (7-step ball error on perfect-model runs 3.7 -> 2.2 ->
    # 1.4 cm at 4.5k / 14k / 31k transitions; gentler planners' data: no better than 3 cm),
    # retrained from scratch for 20 epochs, bf16 planning; 75 iterations, about 120k
    # transitions if no episode dropped. Judge it with bench_closed_loop on its checkpoints.
    "pddm_explore": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                 planner_overrides=(("inference_dtype", "bfloat16"),),
                                 trainer_overrides=(("train.epochs", 20),)),
    # pddm_explore with PDDM's own 40 epochs per retraining: on the same 48k transitions of a
    # pddm_explore run, a 40-epoch model dropped 2 of 8 evaluation episodes with PDDM's
    # planner (1.5 cm), the 20-epoch one 8 of 8 (2.6 cm) (bench_model_levers); the
    # pddm_explore runs were continued under this budget from about 56k transitions
    "pddm_explore40": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                   planner_overrides=(("inference_dtype", "bfloat16"),),
                                   trainer_overrides=(("train.epochs", 40),)),
    # pddm_explore40 forked at about 60k transitions (``learning/fork_run.py``) and collecting
    # from there on with the planner settings for a matured model (config/act_learned.yaml:
    # gamma 10, sigma 0.7): does data gathered by the planner that acts best teach more?
    "pddm_explore40_act": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                       planner_overrides=(("inference_dtype", "bfloat16"),
                                                          ("gamma", 10.0), ("sigma", 0.7)),
                                       trainer_overrides=(("train.epochs", 40),)),
    # pddm_explore40_act with the acting filter that tracked best on the matured models
    # (beta 0.5) and minibatches of 256 (bench_model_levers on a 98,906-transition snapshot:
    # mean ratio over three training seeds 0.57 -> 0.65, fewer drops, no slower)
    "pddm_explore40_act_b256": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                            planner_overrides=(("inference_dtype", "bfloat16"),
                                                               ("gamma", 10.0), ("sigma", 0.7),
                                                               ("beta", 0.5)),
                                            trainer_overrides=(("train.epochs", 40),
                                                               ("train.batch_size", 256))),
    # pddm_explore40_act_b256's settings from the first iteration, and each retraining
    # returns the mean of its last 10 epochs' weights (train.average_last_epochs): on one
    # snapshot, retrainings that differ only by their seed or by rounding gave controllers
    # 0.07-0.18 apart in score ratio; averaging the weights should narrow that draw
    "pddm_act_b256_swa": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                      planner_overrides=(("inference_dtype", "bfloat16"),
                                                         ("gamma", 10.0), ("sigma", 0.7),
                                                         ("beta", 0.5)),
                                      trainer_overrides=(("train.epochs", 40),
                                                         ("train.batch_size", 256),
                                                         ("train.average_last_epochs", 10))),
    # pddm_explore40 with 10% noise on the z-scored training inputs and targets instead of
    # PDDM's 1% (bench_model_levers on a 49,754-transition snapshot: ranking fidelity 0.40 ->
    # 0.45, closed-loop ratio 0.42 -> 0.51 over three training seeds); forked from a
    # pddm_explore40 run (learning/fork_run.py) to compare the loop at equal data
    "pddm_explore40_noise10": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                           planner_overrides=(("inference_dtype", "bfloat16"),),
                                           trainer_overrides=(("train.epochs", 40),
                                                              ("train.input_noise", 0.1))),
    # pddm_explore40 where the simulated tracker reports the balls' velocities as well as
    # their poses (HandEnv / the stack's sim: tracker_reports_velocity), as PDDM's
    # simulated Baoding state had the true velocities: poses 10 times a second give the
    # balls' velocity 60% off, and one-step models of the same motions predicted the balls'
    # moves 12% better (RMSE) from the measured velocity; forked from a pddm_explore40 run
    # with its episodes replayed under the new states (learning/fork_run.py --env)
    "pddm_explore40_vel": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                       planner_overrides=(("inference_dtype", "bfloat16"),),
                                       trainer_overrides=(("train.epochs", 40),),
                                       env_options=(("tracker_reports_velocity", True),)),
    # pddm_explore40 with Gaussian noise (std 0.1 of the normalized range) on each executed
    # MPC action: MPPI executes the weighted mean of its candidates, smoother than the
    # candidates the model is asked to rank; noisier collection widens the actions' effects
    # in the data (PDDM's greedier planner taught the models more than cautious ones did)
    "pddm_explore40_actnoise10": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                              planner_overrides=(("inference_dtype",
                                                                  "bfloat16"),),
                                              trainer_overrides=(("train.epochs", 40),),
                                              mpc_action_noise=0.1),
    # pddm_explore40 retraining members of 2 x 500 for 80 epochs (config/train_wide.yaml):
    # on a pddm_explore40 run's own 100,945 transitions three such retrainings scored 0.89 /
    # 0.73 / 0.87 of the perfect model with 0-6% drops (PDDM's 250 x 40 epochs: 0.62-0.67,
    # 25-38%); fork a pddm_explore40 run into it (learning/fork_run.py --trainer ...) to
    # see the loop itself reach the bar
    "pddm_explore40_wide": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                        planner_overrides=(("inference_dtype", "bfloat16"),),
                                        trainer_overrides=(("train.epochs", 80),
                                                           ("ensemble.hidden", [500, 500]))),
    # pddm_explore40_wide training its members' matmuls in bfloat16 (train.precision): half
    # the time per epoch on this AMD EPYC, and on the same 100,945 transitions three such
    # retrainings scored 0.83 / 0.83 / 0.73 of the perfect model (float32: 0.89 / 0.73 / 0.87)
    "pddm_explore40_wide_bf16": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                             planner_overrides=(("inference_dtype", "bfloat16"),),
                                             trainer_overrides=(("train.epochs", 80),
                                                                ("ensemble.hidden", [500, 500]),
                                                                ("train.precision", "bfloat16"))),
    # pddm_explore40_wide_bf16 where each retraining continues the last model for 20 epochs
    # (train.from_scratch false) instead of 80 from new weights: a quarter of the training
    # time; fork a wide run at an iteration whose model met the bar to see whether the warm
    # starts keep it there (PDDM retrains from scratch)
    "pddm_explore40_wide_warm": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                             planner_overrides=(("inference_dtype", "bfloat16"),),
                                             trainer_overrides=(("train.epochs", 20),
                                                                ("ensemble.hidden", [500, 500]),
                                                                ("train.precision", "bfloat16"),
                                                                ("train.from_scratch", False))),
    # the budget that fits: pddm_explore40 (PDDM's members, cheap to retrain) until the
    # dataset holds 78,000 transitions, then pddm_explore40_wide_bf16's members (forked
    # there, two seeds met the bar at 84,223 and 87,388 transitions), every retraining on
    # both cores (``train_threads`` 2: the loop collects and trains in turn, so a run alone
    # on this 2-core machine leaves the second core idle during training otherwise)
    "pddm_late_wide": BudgetPreset(Budget(40, 75, 40, 1), 1, 10.0, 20, 5,
                                   planner_overrides=(("inference_dtype", "bfloat16"),),
                                   trainer_overrides=(("train.epochs", 40),
                                                      ("train_threads", 2)),
                                   late_trainer_from=78_000,
                                   late_trainer_overrides=(("train.epochs", 80),
                                                           ("ensemble.hidden", [500, 500]),
                                                           ("train.precision", "bfloat16"))),
    "pddm_moderate_scratch": BudgetPreset(Budget(40, 150, 10, 1), 1, 10.0, 20, 5,
                                          planner_overrides=(("gamma", 10.0), ("sigma", 0.5),
                                                             ("inference_dtype", "bfloat16")),
                                          trainer_overrides=(("train.epochs", 20),)),
}
# pddm_late_wide collecting with the planner that dropped the cube least on its wide models
# (gamma 10, sigma 0.5, H 10; kept 2 of 4 "down" episodes, which no other setting kept): fork
# a cube run into it (learning/fork_run.py) to see whether data in which the cube survives
# the roll towards the fingertips teaches the model to catch it
_LATE_WIDE = BUDGETS["pddm_late_wide"]
BUDGETS["pddm_late_wide_h10"] = replace(
    _LATE_WIDE, planner_overrides=(*_LATE_WIDE.planner_overrides, ("gamma", 10.0),
                                   ("sigma", 0.5), ("horizon", 10)))
# pddm_late_wide for PDDM's whole schedule, 200 iterations of 40 rollouts (the cube: up to
# 560,000 transitions, about 17 h here): fork a pddm_late_wide run past its 75th iteration
# (learning/fork_run.py --spec budget=...) to keep the loop collecting and retraining
BUDGETS["pddm_late_wide_200"] = replace(_LATE_WIDE, learned=Budget(40, 200, 40, 1))
# pddm_late_wide_200 planning with a learned drop hazard in its score (learning/drop_hazard:
# P(drop within 3 steps), fitted on the loop's episodes with each model, 30 per step):
# bench_drop_hazard kept 3 of 4 "down" cube episodes with it on model 102, none without;
# fork a cube run into it to see whether the episodes it keeps teach the models the turn
BUDGETS["pddm_late_wide_200_hazard"] = replace(BUDGETS["pddm_late_wide_200"],
                                               drop_hazard=(("k", 3), ("weight", 30.0)))
# pddm_late_wide_200 collecting with PDDM's half turns (+-0.7 rad) beside its four goals
# (cube.goal_set pddm_with_halves, 5 episodes per goal and iteration instead of 10): a
# curriculum that puts part-turned cubes held in the hand into the data, where the loop's
# "down" episodes roll past the goal and drop; its models are judged on PDDM's four goals
BUDGETS["pddm_late_wide_200_halves"] = replace(
    BUDGETS["pddm_late_wide_200"],
    env_options=(("task_params", {"cube.goal_set": "pddm_with_halves"}),))


def pddm_transition_budget(preset: BudgetPreset, length: int) -> int:
    """Upper bound of a learned run's transitions (episodes that never drop)."""
    return preset.learned.episodes * (preset.episode_length or length)


def sac_transitions(task: str, preset: BudgetPreset, runs: Path, length: int) -> int:
    """SAC's budget: ``sac_factor`` x the most data a finished learned run of ``task`` used
    (episodes end at a drop, so that is far below the upper bound), else x the upper bound.
    Fixed in ``<task>_sac_budget.json`` the first time, so a resumed run keeps it."""
    path = runs / f"{task}_sac_budget.json"
    if path.exists():
        return int(json.loads(path.read_text())["transitions"])
    used = [max(r["transitions"] for r in rows)
            for metrics in runs.glob(f"{task}_*_learned_seed*/metrics.csv")
            if (rows := read_metrics(metrics)) and len(rows) == preset.learned.episodes]
    base = max(used) if used else pddm_transition_budget(preset, length)
    n = int(preset.sac_factor * base)
    runs.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"transitions": n, "learned_runs_max": base,
                                "sac_factor": preset.sac_factor}) + "\n")
    return n


def run_learned(task: str, planner: str, seed: int, preset: BudgetPreset, runs: Path) -> Path:
    spec = RunSpec(task=task, planner=planner, seed=seed, model="learned",
                   budget=preset.learned, episode_length=preset.episode_length,
                   planner_overrides=dict(preset.planner_overrides),
                   trainer_overrides=dict(preset.trainer_overrides),
                   env_options=dict(preset.env_options),
                   mpc_action_noise=preset.mpc_action_noise,
                   late_trainer_from=preset.late_trainer_from,
                   late_trainer_overrides=dict(preset.late_trainer_overrides),
                   drop_hazard=dict(preset.drop_hazard))
    return run_pddm(spec, runs / spec.name, log)


def run_true(task: str, planner: str, seed: int, preset: BudgetPreset, runs: Path,
             threads: int, sees: str = "full") -> Path:
    """A perfect-model run; ``sees="state"``: the simulator plans from only what a task
    state holds (``true_model.SimulatorModel``), into ``<task>_<planner>_true_state_seed<k>``."""
    budget = Budget(1, 1, preset.true_episodes, 0)  # only its MPC episodes run
    overrides = {"num_samples": perfect_model_samples(task),
                 **dict(preset.planner_overrides)}
    spec = RunSpec(task=task, planner=planner, seed=seed, model="true", budget=budget,
                   episode_length=preset.episode_length, true_model_threads=threads,
                   planner_overrides=overrides, true_model_sees=sees)
    return run_pddm(spec, runs / true_run_name(task, planner, seed, sees), log)


def true_run_name(task: str, planner: str, seed: int | str, sees: str = "full") -> str:
    """A perfect-model run's folder (``seed="*"``: a glob of every seed's)."""
    return f"{task}_{planner}_true{'' if sees == 'full' else '_' + sees}_seed{seed}"


def run_hold(task: str, preset: BudgetPreset, runs: Path) -> Path:
    budget = Budget(1, 1, preset.true_episodes, 0)
    spec = RunSpec(task=task, planner="mppi", seed=0, model="hold", budget=budget,
                   episode_length=preset.episode_length)
    return run_pddm(spec, runs / f"{task}_hold", log)


def run_sac(task: str, seed: int, preset: BudgetPreset, runs: Path, length: int) -> Path:
    from learning.sac_baseline import run_sac as sac

    transitions = sac_transitions(task, preset, runs, length)
    log(f"SAC on {task}, seed {seed}: {transitions} transitions")
    every = max(1, transitions // preset.sac_eval_points)
    out = runs / f"{task}_sac_seed{seed}"
    options = dict(preset.env_options)
    if preset.episode_length is not None:
        options["episode_length"] = preset.episode_length
    return sac(task=task, seed=seed, transitions=every * preset.sac_eval_points,
               eval_every=every, eval_episodes=preset.sac_eval_episodes, out_dir=out,
               env_options=options, log=log)


def collect(runs: Path, tasks: list[str], planners: list[str], seeds: list[int],
            preset_name: str, pictures_dir: Path,
            extra_curves: dict[str, dict[str, Any]] | None = None,
            previous: dict[str, Any] | None = None,
            bounds: dict[str, dict[str, Any] | None] | None = None,
            picture_prefix: str = "learning", sac_store: Path | None = None) -> dict[str, Any]:
    """Aggregate whatever runs exist into the result dict and the pictures
    (``pictures_dir/<picture_prefix>_<task>.png``); ``extra_curves[task]`` adds other runs' learned
    curves to the picture (e.g. the same loop with PDDM's planner settings); ``previous``
    (an earlier result) fills in what has no runs here (``carry_over_task``); ``bounds[task]``
    is the perfect-model bound to judge a task by when ``runs`` has no perfect-model runs
    (``previous_bounds``); ``sac_store``: where a task without SAC runs here takes SAC's curve
    from (the evaluation CSVs ``learning/sac_summary.py --store`` keeps in the repository)."""
    from learning.sac_baseline import CSV_NAME, EvalLog
    from learning.sac_summary import curve as sac_curve
    from learning.sac_summary import stored_runs

    result: dict[str, Any] = {"budget": preset_name, "budgets": {
        k: {"learned": vars(v.learned), "true_episodes": v.true_episodes,
            "sac_factor": v.sac_factor, "episode_length": v.episode_length}
        for k, v in BUDGETS.items()}, "tasks": {}}
    pictures = []
    for task in tasks:
        learned, true_levels, runs_done = {}, {}, {}
        for planner in planners:
            per_seed = []
            for seed in seeds:
                path = runs / f"{task}_{planner}_learned_seed{seed}" / "metrics.csv"
                if path.exists() and (rows := read_metrics(path)):
                    per_seed.append(curves.run_points(rows))
            runs_done[planner] = len(per_seed)
            if per_seed:
                learned[planner] = curves.aggregate(per_seed, "transitions")
            rows = perfect_model_rows(runs, task, planner)
            if rows:
                true_levels[planner] = curves.level(rows)
        hold = None
        path = runs / f"{task}_hold" / "metrics.csv"
        if path.exists() and (rows := read_metrics(path)):
            hold = curves.level(rows)
        sac = sac_curve({seed: EvalLog(runs / f"{task}_sac_seed{seed}" / CSV_NAME).rows()
                         for seed in seeds})
        if sac is None and sac_store is not None:
            sac = sac_curve(stored_runs(task, sac_store))
        entry = {"learned": learned, "learned_seeds": runs_done, "true_model": true_levels,
                 "hold": hold, "sac": sac}
        old = (previous or {}).get("tasks", {}).get(task, {})
        if kept := carry_over_task(entry, old, (previous or {}).get("date", "unknown")):
            log(f"{task}: kept from the previous result (no runs here): {', '.join(kept)}")
            entry["learned_seeds"] = {**old.get("learned_seeds", {}), **runs_done}
        entry["data_efficiency"] = {key: curves.data_efficiency(learned, sac, key)
                                    for key in ("return", "score")}
        # PDDM's score (tracking until a drop) is what a perfect model improves most; the
        # return is dominated by the drop penalty.
        entry["learned_vs_true"] = {
            p: {"learned_final_score": learned[p]["score"][-1],
                "random_policy_score": learned[p]["score"][0],
                "true_model_score": true_levels[p]["score"],
                "gap_closed": curves.gap_closed(learned[p]["score"][-1],
                                                learned[p]["score"][0],
                                                true_levels[p]["score"])}
            for p in learned if p in true_levels and learned[p].get("score")}
        result["tasks"][task] = entry
        result.setdefault("summary", {})[task] = task_summary(runs, task, learned, seeds,
                                                              (bounds or {}).get(task))
        if evaluated := checkpoint_summary(benchlib.RESULTS, runs.name, task):
            result["summary"][task]["learned_mppi_checkpoints"] = evaluated
        hold = entry["hold"]
        if learned or true_levels or sac:
            png = pictures_dir / f"{picture_prefix}_{task}.png"
            shown = {**learned, **(extra_curves or {}).get(task, {})}
            curves.plot_task(task, shown, true_levels, sac, png,
                             benchlib.footnote(f"make bench-learning (budget {preset_name})"),
                             hold)
            pictures.append(str(png))
    result["pictures"] = pictures
    result.setdefault("summary", {})["throughput"] = throughput(runs, tasks, seeds)
    return result


def previous_bounds(previous: dict[str, Any] | None, tasks: list[str]
                    ) -> dict[str, dict[str, Any] | None]:
    """Each task's perfect-model block of an earlier result, marked with when it was
    measured (None where it has none)."""
    bounds: dict[str, dict[str, Any] | None] = {}
    for task in tasks:
        block = (previous or {}).get("summary", {}).get(task, {}).get("perfect_model")
        bounds[task] = dict(block, measured=block.get(
            "measured", previous.get("date", "unknown"))) if block else None
    return bounds


def perfect_model_rows(runs: Path, task: str, planner: str, sees: str = "full"
                       ) -> list[dict[str, Any]]:
    """Every perfect-model episode of ``task`` with ``planner``, over all seeds."""
    rows: list[dict[str, Any]] = []
    for path in sorted(runs.glob(f"{true_run_name(task, planner, '*', sees)}/metrics.csv")):
        rows += read_metrics(path)
    return rows


def task_summary(runs: Path, task: str, learned: dict[str, Any], seeds: list[int],
                 previous_perfect: dict[str, Any] | None = None) -> dict[str, Any]:
    """The issue's machine-readable summary of one task: the perfect-model bound over seeds
    and where learned MPPI got to (``score_ratio_to_perfect``: perfect score / learned score,
    both negative, so 1 = as good as the perfect model; ``transitions_to_criterion``: the
    first iteration reaching >= 80% of it with <= 20% drops). Without perfect-model runs
    here, ``previous_perfect`` (an earlier result's block) is the bound."""
    perfect = bound_block(perfect_model_rows(runs, task, "mppi")) or previous_perfect
    state_only = bound_block(perfect_model_rows(runs, task, "mppi", "state"))
    curve = learned.get("mppi")
    learned_summary = None
    if curve and curve.get("score"):
        def ratio(score: float) -> float | None:
            if perfect is None or score >= 0 or perfect["score"] >= 0:
                return None
            return perfect["score"] / score

        reached = [x for x, sc, dr in zip(curve["transitions"], curve["score"], curve["drop"],
                                          strict=True)
                   if (r := ratio(sc)) is not None and r >= 0.8 and dr <= 0.2]
        learned_summary = {
            "seeds": int(max(curve["seeds"])),
            "seeds_planned": len(seeds),
            "transitions": curve["transitions"][-1],
            "drop_rate": curve["drop"][-1],
            "success_rate": curve["success"][-1],
            "score": curve["score"][-1],
            "score_ratio_to_perfect": ratio(curve["score"][-1]),
            "transitions_to_criterion": reached[0] if reached else None,
            "best_iteration": {key: (max if curves.CURVE_METRICS[key][1] else min)(curve[key])
                               for key in ("score", "success", "drop", "steps")},
        }
    out = {"perfect_model": perfect, "learned_mppi": learned_summary}
    if state_only:
        out["perfect_model_state_only"] = state_only
    return out


def bound_block(rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Seeds, episodes, drop and success rate, tracking error and score of perfect-model
    MPC episodes (None without any)."""
    mpc = [r for r in rows if r["policy"] == "mpc"]
    if not mpc:
        return None
    return {
        "seeds": len({int(r["seed"]) // 1_000_003 for r in mpc}),
        "episodes": len(mpc),
        "drop_rate": float(sum(bool(r["drop"]) for r in mpc) / len(mpc)),
        "success_rate": float(sum(bool(r["success"]) for r in mpc) / len(mpc)),
        "tracking_error": float(sum(float(r["tracking_error"]) for r in mpc) / len(mpc)),
        "score": float(sum(float(r["score"]) for r in mpc) / len(mpc)),
    }


def carry_over_task(entry: dict[str, Any], old: dict[str, Any], date: str) -> list[str]:
    """Keep ``old``'s curves and levels of one task where this machine has no runs to collect
    them from (run folders are not in the repository), marked with the date measured."""
    kept = []
    for key in ("true_model", "learned"):
        for name, value in old.get(key, {}).items():
            if name not in entry[key]:
                entry[key][name] = dict(value, measured=value.get("measured", date))
                kept.append(f"{key}.{name}")
    if entry.get("hold") is None and old.get("hold"):
        entry["hold"] = dict(old["hold"], measured=old["hold"].get("measured", date))
        kept.append("hold")
    return kept


def carry_over_summary(result: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """The same for the summary blocks (e.g. a compared run's) that came out empty now."""
    kept, date = [], previous.get("date", "unknown")
    for task, summary in result.get("summary", {}).items():
        if task == "throughput":
            continue
        for name, value in previous.get("summary", {}).get(task, {}).items():
            if isinstance(value, dict) and set(value) - {"runs"} and not (
                    summary.get(name) and set(summary[name]) - {"runs"}):
                summary[name] = dict(value, measured=value.get("measured", date))
                kept.append(f"summary.{task}.{name}")
    return kept


def restate_headline(result: dict[str, Any], results: Path) -> list[str]:
    """Where a task has ``learned_mppi_bar``, ``summary.<task>.learned_mppi`` becomes the
    loop judged as the bar is (``checkpoint_summary.headline``) and the collecting planner's
    own curve moves to ``learned_mppi_collecting``. Returns the tasks restated."""
    restated = []
    for task, summary in result.get("summary", {}).items():
        if task == "throughput" or not (block := headline(results, task, summary)):
            continue
        own = summary.get("learned_mppi") or {}
        if own and own.get("source") != block["source"]:
            summary["learned_mppi_collecting"] = own
        if {k: v for k, v in own.items() if k != "measured"} != block:  # else as recorded
            summary["learned_mppi"] = dict(block, measured=benchlib.now_iso())
        restated.append(task)
    return restated


def bar_block(task_summary: dict[str, Any], names: list[str], variant: str
              ) -> dict[str, Any]:
    """``summary.<task>.learned_mppi_bar``: per seed, the fewest transitions at which a saved
    model of any of the recorded runs ``learned_mppi_<name>`` met PDDM's bar when judged with
    the planner ``variant`` (``bench_checkpoints``), and by how many transitions every seed
    had (None while one has not)."""
    per_seed: dict[str, int | None] = {}
    sources: dict[str, dict[str, int | None]] = {}
    for name in names:
        checkpoints = (task_summary.get(f"learned_mppi_{name}") or {}).get("checkpoints")
        judged = (checkpoints or {}).get("variants", {}).get(variant, {})
        reached = sources[name] = dict(judged.get("transitions_to_criterion") or {})
        for run, transitions in reached.items():
            seed = run.rsplit("_", 1)[-1]
            hits = [v for v in (per_seed.get(seed), transitions) if v is not None]
            per_seed[seed] = min(hits) if hits else None
    every = (max(per_seed.values()) if per_seed and None not in per_seed.values() else None)
    return {"variant": variant, "from": sources, "transitions_to_criterion": per_seed,
            "seeds": len(per_seed),
            "seeds_reached": sum(v is not None for v in per_seed.values()),
            "all_seeds_by": every}


def throughput(runs: Path, tasks: list[str], seeds: list[int]) -> dict[str, Any]:
    """Real transitions per hour of the learned Baoding MPPI runs (active time, resumes
    included, from each run's ``timing.json``), with the machine it was measured on."""
    transitions, seconds = 0, 0.0
    for seed in seeds:
        path = runs / f"baoding_mppi_learned_seed{seed}" / "timing.json"
        if "baoding" in tasks and path.exists():
            timing = json.loads(path.read_text())
            transitions += int(timing["transitions"])
            seconds += float(timing["active_s"])
    return {"transitions_per_hour": transitions / seconds * 3600.0 if seconds else None,
            "transitions": transitions, "active_s": seconds,
            "machine": benchlib.cpu_model()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--budget", choices=sorted(BUDGETS), default="pddm")
    parser.add_argument("--tasks", default="baoding,cube")
    parser.add_argument("--planners", default="mppi,cem,random")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--parts", default="learned,true,sac",
                        help="which runs: learned, true, sac, true_state (the perfect model "
                             "planning from only the task state; comma-separated)")
    parser.add_argument("--runs", type=Path, default=None,
                        help="run directories (resumable); default runs/bench_learning/<budget>")
    parser.add_argument("--out", type=Path, default=benchlib.RESULTS / "learning.json")
    parser.add_argument("--true-threads", type=int, default=1,
                        help="threads of the true model's mujoco.rollout")
    parser.add_argument("--collect-only", action="store_true",
                        help="run nothing: aggregate the existing runs into --out")
    parser.add_argument("--compare", action="append", default=[], metavar="NAME=DIR",
                        help="with --collect-only: also summarise the learned runs in DIR "
                             "(another budget, e.g. PDDM's planner settings) as "
                             "summary.<task>.learned_mppi_<NAME>")
    parser.add_argument("--throughput-from", default=None, metavar="NAME",
                        help="with --compare: summary.throughput becomes that compared "
                             "run's (the loop the bar is judged on); the one it replaces is "
                             "kept under summary.throughput.replaced")
    parser.add_argument("--bar-from", default="", metavar="NAME[,NAME...]",
                        help="with --collect-only: summary.<task>.learned_mppi_bar from the "
                             "recorded blocks learned_mppi_<NAME>: per seed, the first "
                             "transitions at which a checkpoint met PDDM's bar")
    parser.add_argument("--bar-variant", default="moderate_wide_beta05",
                        help="the bench_checkpoints planner variant --bar-from judges by")
    parser.add_argument("--headline-only", action="store_true",
                        help="run nothing, read no runs: restate --out's "
                             "summary.<task>.learned_mppi from its learned_mppi_bar and the "
                             "recorded checkpoints_*.json")
    parser.add_argument("--sac-store", type=Path, default=benchlib.RESULTS / "sac",
                        help="with --collect-only: where a task without SAC runs takes SAC's "
                             "curve from (the CSVs learning/sac_summary.py --store keeps)")
    parser.add_argument("--keep-own", action="store_true",
                        help="with --collect-only and --compare: keep --out's own runs as "
                             "recorded (their folders may be another machine's or replaced) "
                             "and rewrite only the compared blocks")
    args = parser.parse_args(argv)
    tasks = [t for t in args.tasks.split(",") if t]
    planners = [p for p in args.planners.split(",") if p]
    seeds = [int(s) for s in args.seeds.split(",") if s]
    parts = {p for p in args.parts.split(",") if p}
    if args.collect_only:
        parts = set()
    unknown = parts - {"learned", "true", "sac", "true_state"}
    if unknown or not tasks or not planners or not seeds:
        parser.error(f"bad --parts/--tasks/--planners/--seeds ({sorted(unknown)})")
    if args.headline_only:
        result = json.loads(args.out.read_text())
        log(f"restated summary.<task>.learned_mppi of {restate_headline(result, benchlib.RESULTS)}")
        benchlib.write_result(args.out, result)
        return 0
    preset = BUDGETS[args.budget]
    if args.runs is None:
        args.runs = Path("runs/bench_learning") / args.budget
    torch.set_num_threads(1)
    os.environ.setdefault("MUJOCO_GL", "egl")
    jobs: list[tuple[str, Any]] = []
    for seed in seeds:  # seed-major: every configuration gets its first seed early
        for task in tasks:
            if "learned" in parts:
                jobs += [(f"{task} {p} learned seed {seed}",
                          lambda t=task, p=p, s=seed: run_learned(t, p, s, preset, args.runs))
                         for p in planners]
            if "sac" in parts:
                jobs.append((f"{task} SAC seed {seed}", lambda t=task, s=seed: run_sac(
                    t, s, preset, args.runs, stack_task(t).episode_length)))
    if "true" in parts:
        jobs += [(f"{task} hold still", lambda t=task: run_hold(t, preset, args.runs))
                 for task in tasks]
        jobs += [(f"{task} {p} perfect model seed {seed}",
                  lambda t=task, p=p, s=seed: run_true(t, p, s, preset, args.runs,
                                                       args.true_threads))
                 for seed in seeds for task in tasks for p in planners]
    if "true_state" in parts:
        jobs += [(f"{task} {p} perfect model from the task state, seed {seed}",
                  lambda t=task, p=p, s=seed: run_true(t, p, s, preset, args.runs,
                                                       args.true_threads, "state"))
                 for seed in seeds for task in tasks for p in planners]
    start = time.monotonic()
    if not jobs:
        others, extra = {}, {task: {} for task in tasks}
        previous = json.loads(args.out.read_text()) if args.out.exists() else None
        # the compared runs are judged against the same perfect-model bound (and nothing
        # else of the previous result is carried into them)
        # a result of its own (another --out) is judged by the recorded bound
        recorded = benchlib.RESULTS / "learning.json"
        bounds = previous_bounds(previous, tasks)
        if not all(bounds.values()) and recorded.exists() and recorded != args.out:
            fallback = previous_bounds(json.loads(recorded.read_text()), tasks)
            bounds = {task: bounds[task] or fallback[task] for task in tasks}
        for item in args.compare:
            name, _, folder = item.partition("=")
            others[name] = (folder, other := collect(Path(folder), tasks, planners, seeds,
                                                     name, Path(folder), bounds=bounds))
            for task in tasks:
                for planner, curve in other["tasks"][task]["learned"].items():
                    extra[task][f"{planner} ({name})"] = curve
        if args.keep_own:
            if previous is None or not others:
                parser.error("--keep-own needs an existing --out and at least one --compare")
            result = {k: v for k, v in previous.items() if k != "benchmark"}
        else:
            result = collect(args.runs, tasks, planners, seeds, args.budget, args.out.parent,
                             extra, previous, bounds, picture_prefix=args.out.stem,
                             sac_store=args.sac_store)
        for name, (folder, other) in others.items():
            for task in tasks:
                summary = other["summary"][task]
                block = dict(summary["learned_mppi"] or {}, runs=folder,
                             measured=benchlib.now_iso(), machine=benchlib.cpu_model())
                # the saved models judged by bench_checkpoints (e.g. with the acting planner)
                if summary.get("learned_mppi_checkpoints"):
                    block["checkpoints"] = summary["learned_mppi_checkpoints"]
                if task == "baoding":  # its runs' own transitions per hour of active time
                    block["throughput"] = throughput(Path(folder), tasks, seeds)
                result["summary"][task][f"learned_mppi_{name}"] = block
        if bar_names := [n for n in args.bar_from.split(",") if n]:
            for task in tasks:
                result["summary"][task]["learned_mppi_bar"] = bar_block(
                    result["summary"][task], bar_names, args.bar_variant)
        if args.throughput_from is not None:
            if args.throughput_from not in others:
                parser.error(f"--throughput-from {args.throughput_from}: no such --compare")
            folder = others[args.throughput_from][0]
            old = result["summary"].get("throughput", {})
            # refreshing the same run's figure keeps what it replaced the first time
            replaced = (old.get("replaced") if old.get("runs") == folder
                        else {k: v for k, v in old.items() if k != "replaced"})
            result["summary"]["throughput"] = {**throughput(Path(folder), tasks, seeds),
                                               "runs": folder, "measured": benchlib.now_iso(),
                                               "replaced": replaced}
        if previous and not args.keep_own:
            kept = carry_over_summary(result, previous)
            if kept:
                log(f"kept from the previous {args.out} (runs not on this machine): "
                    f"{', '.join(kept)}")
        restate_headline(result, benchlib.RESULTS)  # where bench_checkpoints writes
        benchlib.write_result(args.out, {"benchmark": "learning", **result})
        log(f"collected the existing runs into {args.out}")
        return 0
    for i, (label, job) in enumerate(jobs, 1):
        log(f"run {i}/{len(jobs)}: {label} ({(time.monotonic() - start) / 60:.1f} min so far)")
        job()
        result = collect(args.runs, tasks, planners, seeds, args.budget, args.out.parent,
                         picture_prefix=args.out.stem)
        benchlib.write_result(args.out, {"benchmark": "learning", **result,
                                         "runs_completed": i, "runs_planned": len(jobs)})
    log(f"done: {len(jobs)} runs in {(time.monotonic() - start) / 60:.1f} min; {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
