"""The learning benchmark's summary of ``bench_checkpoints`` results: the learned runs'
saved models evaluated closed loop with several planner settings.

A learned run's own per-iteration numbers mix what the model knows with how the run's
(data-collecting) planner acts on it; the checkpoint evaluations hold the data fixed and vary
the planner. This turns every ``checkpoints_*.json`` of one budget into, per planner variant:
the newest evaluated checkpoint of each seed (the evaluation with the most episodes), their
mean, and the fewest transitions at which a checkpoint met PDDM's bar (score ratio to the
perfect model >= 0.8 with at most 20% drops).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

RATIO_BAR, DROP_BAR = 0.8, 0.2
FIELDS = ("drop_rate", "success_rate", "steps", "tracking_error", "score_ratio_to_perfect")


def evaluations(results: Path, budget: str, task: str) -> dict[str, dict[int, dict[str, Any]]]:
    """{run name: {iteration: {transitions, by_variant}}} from every checkpoints file of
    ``budget``'s ``task`` runs; where two files evaluated one checkpoint and variant, the one
    with more episodes wins."""
    return evaluations_by_budget(results, task).get(budget, {})


def evaluations_by_budget(results: Path, task: str
                          ) -> dict[str, dict[str, dict[int, dict[str, Any]]]]:
    """``evaluations`` of every budget of ``task`` at once, each checkpoints file read once."""
    budgets: dict[str, dict[str, dict[int, dict[str, Any]]]] = {}
    for path in sorted(results.glob("checkpoints_*.json")):
        data = json.loads(path.read_text())
        run = Path(data.get("run", ""))
        if not run.name.startswith(f"{task}_"):
            continue
        rows = budgets.setdefault(run.parent.name, {}).setdefault(run.name, {})
        for row in data.get("checkpoints", []):
            it = rows.setdefault(int(row["iteration"]),
                                 {"transitions": int(row["transitions"]), "by_variant": {}})
            for variant, res in row["by_variant"].items():
                # bfloat16 is how the runs plan and bench_checkpoints' default; other
                # precisions are variants of their own (e.g. "pddm_float32")
                dtype = data.get("inference_dtype", "bfloat16")
                name = variant if dtype == "bfloat16" else f"{variant}_{dtype}"
                old = it["by_variant"].get(name)
                if old is None or res["episodes"] > old["episodes"]:
                    it["by_variant"][name] = dict(res, inference_dtype=dtype,
                                                  settings=data["variants"].get(variant, {}))
    return budgets


def meets_bar(res: dict[str, Any]) -> bool:
    ratio = res.get("score_ratio_to_perfect")
    return ratio is not None and ratio >= RATIO_BAR and res["drop_rate"] <= DROP_BAR


def checkpoint_summary(results: Path, budget: str, task: str) -> dict[str, Any] | None:
    """``summary.<task>.learned_mppi_checkpoints``: per variant, the newest checkpoint of
    each seed, their mean and the transitions to the bar per seed (None: not reached)."""
    runs = evaluations(results, budget, task)
    if not runs:
        return None
    names = sorted({n for rows in runs.values() for it in rows.values() for n in it["by_variant"]})
    variants: dict[str, Any] = {}
    for name in names:
        newest, reached = {}, {}
        for run, rows in sorted(runs.items()):
            evaluated = [(i, rows[i]) for i in sorted(rows) if name in rows[i]["by_variant"]]
            if not evaluated:
                continue
            iteration, row = evaluated[-1]
            res = row["by_variant"][name]
            newest[run] = {"iteration": iteration, "transitions": row["transitions"],
                           "episodes": res["episodes"], **{k: res.get(k) for k in FIELDS}}
            if "by_goal" in res:  # a task with named goals: where it falls short
                newest[run]["by_goal"] = res["by_goal"]
            hits = [r["transitions"] for _, r in evaluated if meets_bar(r["by_variant"][name])]
            reached[run] = min(hits) if hits else None
        settings = next(r[i]["by_variant"][name]["settings"] for r in runs.values() for i in r
                        if name in r[i]["by_variant"])
        mean = {k: float(np.mean([v[k] for v in newest.values()]))
                for k in FIELDS if all(v.get(k) is not None for v in newest.values())}
        variants[name] = {"settings": settings, "newest": newest, "mean_newest": mean,
                          "transitions_to_criterion": reached}
    return {"budget": budget, "bar": {"score_ratio_to_perfect": RATIO_BAR,
                                      "drop_rate": DROP_BAR}, "variants": variants}


def headline(results: Path, task: str, task_summary: dict[str, Any]) -> dict[str, Any] | None:
    """``summary.<task>.learned_mppi`` when ``learned_mppi_bar`` exists: the loop judged as
    the bar is (its saved models with the bar's planner variant, not the collecting
    planner's own episodes). Per seed, the first model at the bar (from the recorded
    ``checkpoints_*.json``); the means over the seeds that reached it; ``transitions`` and
    ``transitions_to_criterion``: by when every seed had (None while one has not)."""
    bar = task_summary.get("learned_mppi_bar")
    if not bar:
        return None
    variant = bar["variant"]
    per_seed: dict[str, dict[str, Any] | None] = {s: None for s in bar["transitions_to_criterion"]}
    by_budget = evaluations_by_budget(results, task)
    for name, reached in bar["from"].items():
        folder = (task_summary.get(f"learned_mppi_{name}") or {}).get("runs")
        if not reached or folder is None:
            continue
        budget = Path(folder).name
        runs = by_budget.get(budget, {})
        for run, transitions in reached.items():
            seed = run.rsplit("_", 1)[-1]
            if transitions is None or transitions != bar["transitions_to_criterion"].get(seed):
                continue
            found = [(i, r) for i, r in sorted(runs.get(run, {}).items())
                     if r["transitions"] == transitions and variant in r["by_variant"]]
            if not found:  # its checkpoints file is not among the results
                continue
            iteration, row = found[0]
            res = row["by_variant"][variant]
            per_seed[seed] = {"budget": budget, "iteration": iteration,
                              "transitions": transitions, "episodes": res["episodes"],
                              "score": res.get("score"), **{k: res.get(k) for k in FIELDS}}
    at = [v for v in per_seed.values() if v is not None]

    def mean(key: str) -> float | None:
        values = [v[key] for v in at if v[key] is not None]
        return float(np.mean(values)) if values else None

    return {"source": "learned_mppi_bar", "judged_with": variant, "seeds": len(per_seed),
            "seeds_reached": len(at), "transitions": bar["all_seeds_by"],
            "drop_rate": mean("drop_rate"), "success_rate": mean("success_rate"),
            "score": mean("score"), "score_ratio_to_perfect": mean("score_ratio_to_perfect"),
            "tracking_error": mean("tracking_error"),
            "transitions_to_criterion": bar["all_seeds_by"], "per_seed": per_seed}
