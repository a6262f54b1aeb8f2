"""SAC's learning curves beside PDDM's, kept where a fresh checkout finds them.

A SAC run's directory (replay buffer, checkpoints) is scratch under ``runs/``; its
evaluation CSV is what the comparison needs. ``--store`` copies each run's ``sac_eval.csv``
to ``bench/results/sac/<task>_seed<s>.csv``; the summary is computed from those copies only,
so it can be rebuilt from the repository alone. It writes ``summary.<task>.sac`` and
``tasks.<task>.sac`` (the curve over seeds) into ``learning.json`` and draws SAC's score ratio
and drop rate against real transitions beside the learned MPPI checkpoints'
(``checkpoints_*.json``, one judged variant).

Run:  .venv/bin/python bench/learning/sac_summary.py --task baoding \\
          --store runs/bench_learning/pddm_late_wide/baoding_sac_seed1 \\
          --learned bench/results/checkpoints_beta05_pddm_late_wide_seed2.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

_BENCH = Path(__file__).resolve().parents[1]
if str(_BENCH) not in sys.path:  # run as a script: make ``import benchlib`` work
    sys.path.insert(0, str(_BENCH))

import benchlib  # noqa: E402
from learning import curves  # noqa: E402
from learning.checkpoint_summary import DROP_BAR, RATIO_BAR, meets_bar  # noqa: E402
from learning.sac_baseline import CSV_NAME, STATE_NAME, EvalLog  # noqa: E402

STORE = benchlib.RESULTS / "sac"


def store(run_dir: Path, store_dir: Path = STORE) -> Path:
    """Copy a SAC run's evaluation CSV to ``<task>_seed<s>.csv`` (its state names both)."""
    config = json.loads((run_dir / STATE_NAME).read_text())["config"]
    store_dir.mkdir(parents=True, exist_ok=True)
    target = store_dir / f"{config['task']}_seed{config['seed']}.csv"
    shutil.copyfile(run_dir / CSV_NAME, target)
    benchlib.write_result(target.with_suffix(".json"), {"config": config,
                                                        "source": str(run_dir)})
    return target


def stored_runs(task: str, store_dir: Path = STORE) -> dict[int, list[dict[str, float]]]:
    """Seed -> evaluation rows of every stored CSV of ``task``."""
    runs = {}
    for path in sorted(store_dir.glob(f"{task}_seed*.csv")):
        if rows := EvalLog(path).rows():
            runs[int(path.stem.rsplit("seed", 1)[1])] = rows
    return runs


def curve(runs: Mapping[int, Sequence[Mapping[str, float]]]) -> dict[str, Any] | None:
    """The aggregate over seeds of SAC's evaluation rows (None without rows)."""
    points = [curves.sac_points(rows) for rows in runs.values() if rows]
    return curves.aggregate(points, "transitions") if points else None


def ratio(score: float, perfect: float) -> float | None:
    """perfect / learned score (both negative): 1 = as good as the perfect model."""
    return perfect / score if score < 0 and perfect < 0 else None


def seed_block(rows: Sequence[Mapping[str, float]], perfect: float) -> dict[str, Any]:
    """One seed: where it got to, its best evaluation and the first that met the bar."""
    ratios = [ratio(r["score"], perfect) for r in rows]
    met = [r["transitions"] for r, q in zip(rows, ratios, strict=True)
           if meets_bar({"score_ratio_to_perfect": q, "drop_rate": r["drop_rate"]})]
    best = max(range(len(rows)), key=lambda i: ratios[i] or 0.0)
    last = rows[-1]
    return {"transitions": int(last["transitions"]), "evaluations": len(rows),
            "eval_episodes": int(last["eval_episodes"]), "drop_rate": last["drop_rate"],
            "success_rate": last["success_rate"], "score": last["score"],
            "tracking_error": last["tracking_error"], "score_ratio_to_perfect": ratios[-1],
            "best": {"transitions": int(rows[best]["transitions"]),
                     "score_ratio_to_perfect": ratios[best],
                     "drop_rate": rows[best]["drop_rate"]},
            "transitions_to_criterion": int(met[0]) if met else None,
            "train_tps_median": statistics.median(r["train_tps"] for r in rows[1:])
            if len(rows) > 1 else None}


def sac_summary(runs: Mapping[int, Sequence[Mapping[str, float]]], perfect: float,
                learned_criterion: Mapping[str, int | None] | None = None) -> dict[str, Any]:
    """``summary.<task>.sac``: the seeds' last common evaluation (means), each seed's block,
    and the learned loop's transitions to the same bar for the data ratio."""
    per_seed = {f"seed{s}": seed_block(rows, perfect) for s, rows in sorted(runs.items())}
    common = min(len(rows) for rows in runs.values())
    at = [rows[common - 1] for rows in runs.values()]

    def mean(key: str) -> float:
        return float(sum(r[key] for r in at) / len(at))

    reached = [b["transitions_to_criterion"] for b in per_seed.values()]
    learned = [t for t in (learned_criterion or {}).values() if t is not None]
    return {"seeds": len(runs), "transitions": int(at[0]["transitions"]),
            "drop_rate": mean("drop_rate"), "success_rate": mean("success_rate"),
            "score": mean("score"), "score_ratio_to_perfect": ratio(mean("score"), perfect),
            "transitions_to_criterion": {k: b["transitions_to_criterion"]
                                         for k, b in per_seed.items()},
            "seeds_reached": sum(t is not None for t in reached),
            "learned_mppi_transitions_to_criterion": dict(learned_criterion or {}),
            "data_ratio_to_learned_mppi": (max(reached) / max(learned)
                                           if learned and reached and None not in reached
                                           else None),
            "per_seed": per_seed, "bar": {"score_ratio_to_perfect": RATIO_BAR,
                                          "drop_rate": DROP_BAR}}


def learned_points(path: Path, variant: str) -> list[tuple[float, float, float]]:
    """(transitions, score ratio, drop rate) of each checkpoint judged with ``variant``."""
    data = json.loads(path.read_text())
    return [(c["transitions"], c["by_variant"][variant]["score_ratio_to_perfect"],
             c["by_variant"][variant]["drop_rate"])
            for c in data["checkpoints"] if variant in c["by_variant"]]


def plot(task: str, runs: Mapping[int, Sequence[Mapping[str, float]]], perfect: float,
         learned: Mapping[str, list[tuple[float, float, float]]], path: Path) -> Path:
    """Score ratio to the perfect model and drop rate vs real transitions (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for i, (seed, rows) in enumerate(sorted(runs.items())):
        shown = [r for r in rows if r["transitions"] > 0]  # log x: the untrained policy left out
        x = [r["transitions"] for r in shown]
        q = [ratio(r["score"], perfect) or 0.0 for r in shown]
        axes[0].plot(x, q, "-o", ms=2, color=f"C{3 + i}", label=f"SAC seed {seed}")
        axes[1].plot(x, [r["drop_rate"] for r in shown], "-o", ms=2, color=f"C{3 + i}")
    for i, (name, points) in enumerate(sorted(learned.items())):
        x, q, d = zip(*points, strict=True) if points else ((), (), ())
        label = f"learned MPPI, {name.removeprefix('beta05_pddm_')}"
        axes[0].plot(x, q, ".", ms=4, color=f"C{i}", label=label)
        axes[1].plot(x, d, ".", ms=4, color=f"C{i}")
    axes[0].axhline(RATIO_BAR, color="0.3", ls="--", lw=1, label="bar: 80% of perfect model")
    axes[1].axhline(DROP_BAR, color="0.3", ls="--", lw=1, label="bar: 20% drops")
    for ax, label in zip(axes, ("score / perfect model's score", "drop rate"), strict=True):
        ax.set_xscale("log")
        ax.set_xlim(left=1e4)
        ax.set_xlabel("real transitions collected")
        ax.set_ylabel(label)
        ax.set_ylim(-0.02, 1.05)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right", bbox_to_anchor=(1.0, 0.27))
    fig.suptitle(f"{task}: SAC beside learned MPPI (each SAC point: one evaluation of its "
                 f"sampled policy)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    benchlib.save_figure(fig, path)
    return path


def update_learning_json(path: Path, task: str, runs: Mapping[int, Sequence[Mapping]],
                         picture: Path, store_dir: Path = STORE
                         ) -> tuple[dict[str, Any], float]:
    """Write the SAC blocks of ``task`` into ``learning.json`` (judged by its perfect-model
    bound and compared with its learned loop's ``learned_mppi_bar``); returns the
    ``summary.<task>.sac`` block and the perfect model's score it was judged by."""
    result = json.loads(path.read_text())
    summary = result["summary"][task]
    perfect = summary["perfect_model"]["score"]
    criterion = (summary.get("learned_mppi_bar") or {}).get("transitions_to_criterion")
    block = sac_summary(runs, perfect, criterion)
    block.update(machine=benchlib.cpu_model(), measured=benchlib.now_iso(),
                 csv=[_shown(store_dir / f"{task}_seed{s}.csv") for s in sorted(runs)],
                 picture=_shown(picture))
    summary["sac"] = block
    result["tasks"][task]["sac"] = curve(runs)
    benchlib.write_result(path, result)
    return block, perfect


def _shown(path: Path) -> str:
    """``path`` relative to the repository when it is inside it."""
    root = benchlib.RESULTS.parents[1]
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--task", choices=("baoding", "cube"), default="baoding")
    parser.add_argument("--store", type=Path, nargs="*", default=[],
                        help="SAC run directories whose CSV to copy into bench/results/sac")
    parser.add_argument("--learned", type=Path, nargs="*", default=[],
                        help="checkpoints_*.json of learned MPPI runs to draw beside")
    parser.add_argument("--variant", default="moderate_wide_beta05",
                        help="the planner variant the learned checkpoints were judged with")
    parser.add_argument("--learning-json", type=Path, default=benchlib.RESULTS / "learning.json")
    parser.add_argument("--store-dir", type=Path, default=STORE,
                        help="where the CSV copies live (default bench/results/sac)")
    args = parser.parse_args(argv)
    for run_dir in args.store:
        print(f"stored {store(run_dir, args.store_dir)}", flush=True)
    runs = stored_runs(args.task, args.store_dir)
    if not runs:
        parser.error(f"no stored SAC runs of {args.task} in {args.store_dir}")
    picture = args.learning_json.parent / f"sac_{args.task}.png"
    block, perfect = update_learning_json(args.learning_json, args.task, runs, picture,
                                          args.store_dir)
    learned = {p.stem.removeprefix("checkpoints_"): learned_points(p, args.variant)
               for p in args.learned}
    plot(args.task, runs, perfect, learned, picture)
    print(json.dumps({k: v for k, v in block.items() if k != "per_seed"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
