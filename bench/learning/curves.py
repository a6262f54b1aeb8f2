"""Learning curves across seeds and methods: numbers for learning.json and the pictures.

A learned run contributes one point per iteration: the amount of real data collected by the
end of that iteration and the mean of its MPC episodes (iteration 0: the random policy on
the initial data). Seeds are aggregated per iteration (mean, min and max over the seeds
that got there, at their mean transition count). A true-model run is one number per
metric (mean over its episodes): the perfect-model level. SAC contributes its evaluation
rows, aggregated per evaluation point over seeds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

# metric key -> (label, higher is better)
CURVE_METRICS = {
    "return": ("return (PDDM reward, drop penalty included)", True),
    "score": ("PDDM score (mean per step until a drop)", True),
    "tracking_error": ("tracking error (m or rad)", False),
    "drop": ("drop rate", False),
    "success": ("success rate (no drop, small tracking error)", True),
    "steps": ("steps kept", True),
}

Rows = Sequence[Mapping[str, Any]]


def run_points(rows: Rows) -> list[dict[str, float]]:
    """Per iteration of one learned run: transitions and the mean of each curve metric.

    The last iteration of a run stopped part-way (fewer MPC episodes than its other
    iterations) is left out: a few episodes are not the iteration's result.
    """
    by_iteration: dict[int, list[Mapping[str, Any]]] = {}
    for r in rows:
        it = int(r["iteration"])
        if r["policy"] == ("random" if it == 0 else "mpc"):
            by_iteration.setdefault(it, []).append(r)
    last = max(by_iteration, default=0)
    full = max((len(sel) for it, sel in by_iteration.items() if it > 0), default=0)
    points = []
    for it, sel in sorted(by_iteration.items()):
        if it > 0 and it == last and len(sel) < full:
            continue
        point = {"iteration": float(it), "transitions": float(max(r["transitions"] for r in sel))}
        for key in CURVE_METRICS:
            point[key] = float(np.mean([float(r[key]) for r in sel]))
        points.append(point)
    return points


def sac_points(rows: Rows) -> list[dict[str, float]]:
    """SAC's evaluation rows (``sac_eval.csv``) under the curve metrics' names."""
    names = {"return": "return", "score": "score", "tracking_error": "tracking_error",
             "drop": "drop_rate", "success": "success_rate", "steps": "steps_kept"}
    return [{"transitions": float(r["transitions"]),
             **{key: float(r[column]) for key, column in names.items()}} for r in rows]


def aggregate(curves: Sequence[Sequence[Mapping[str, float]]], x_key: str
              ) -> dict[str, list[float]]:
    """Mean/min/max over seeds at each index; a seed still running counts where it has got
    to (``seeds[i]``: how many seeds point ``i`` averages)."""
    n = max((len(c) for c in curves), default=0)
    out: dict[str, list[float]] = {"seeds": []}
    if n == 0:
        return out
    at = [[c[i] for c in curves if len(c) > i] for i in range(n)]
    out["seeds"] = [float(len(points)) for points in at]
    out[x_key] = [float(np.mean([p[x_key] for p in points])) for points in at]
    for key in CURVE_METRICS:
        values = [np.array([p[key] for p in points], dtype=float) for points in at]
        out[key] = [float(v.mean()) for v in values]
        out[f"{key}_min"] = [float(v.min()) for v in values]
        out[f"{key}_max"] = [float(v.max()) for v in values]
    return out


def level(rows: Rows) -> dict[str, float]:
    """Mean of each curve metric over a run's episodes (true-model or hold levels)."""
    sel = [r for r in rows if r["policy"] in ("mpc", "hold")]
    out = {"episodes": float(len(sel))}
    for key in CURVE_METRICS:
        out[key] = float(np.mean([float(r[key]) for r in sel])) if sel else float("nan")
    return out


def transitions_to_reach(curve: Mapping[str, list[float]], key: str, target: float,
                         higher_is_better: bool = True) -> float | None:
    """First x of an aggregated curve whose mean ``key`` reaches ``target`` (None: never)."""
    for x, y in zip(curve.get("transitions", []), curve.get(key, []), strict=False):
        if (y >= target) if higher_is_better else (y <= target):
            return float(x)
    return None


def data_efficiency(learned: Mapping[str, Mapping[str, list[float]]],
                    sac: Mapping[str, list[float]] | None, key: str = "return"
                    ) -> dict[str, Any]:
    """How many transitions SAC needs for the best learned planner's final ``key``.

    ``ratio``: SAC's transitions / the planner's; a lower bound (``reached`` False) when SAC
    never gets there within its budget.
    """
    finals = {name: c for name, c in learned.items() if c.get(key)}
    if not finals or not sac or not sac.get(key):
        return {"status": "missing runs"}
    best = max(finals, key=lambda name: finals[name][key][-1])
    target = finals[best][key][-1]
    ours = finals[best]["transitions"][-1]
    needed = transitions_to_reach(sac, key, target)
    reached = needed is not None
    sac_x = needed if reached else sac["transitions"][-1]
    return {"metric": key, "planner": best, "target": target, "planner_transitions": ours,
            "sac_transitions": sac_x, "reached": reached,
            "ratio": sac_x / ours if ours > 0 else None}


def gap_closed(learned: float, start: float, perfect: float) -> float | None:
    """Fraction of the way from ``start`` (the random policy) to ``perfect`` (the true
    model) that ``learned`` covers: 1 = as good as a perfect model, 0 = no better than
    random. None when the two references coincide."""
    span = perfect - start
    return None if abs(span) < 1e-12 else (learned - start) / span


def plot_task(task: str, learned: Mapping[str, Mapping[str, list[float]]],
              true_levels: Mapping[str, Mapping[str, float]],
              sac: Mapping[str, list[float]] | None, path: Path, footnote: str,
              hold: Mapping[str, float] | None = None) -> Path:
    """PDDM score, tracking error, drop rate and return vs real transitions (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    keys = ("score", "success", "drop", "tracking_error", "steps", "return")
    fig, axes = plt.subplots(2, len(keys) // 2, figsize=(4.6 * len(keys) // 2, 8.0))
    axes = axes.ravel()
    colors = {"mppi": "C0", "cem": "C1", "random": "C2", "gradient": "C4"}
    for ax, key in zip(axes, keys, strict=True):
        for name, curve in learned.items():
            if not curve.get(key):
                continue
            x, c = curve["transitions"], colors.get(name, "C5")
            seeds = int(max(curve["seeds"]))
            ax.plot(x, curve[key], "-o", ms=3, color=c, label=f"{name}, learned ({seeds} seeds)")
            ax.fill_between(x, curve[f"{key}_min"], curve[f"{key}_max"], color=c, alpha=0.2)
        for name, lvl in true_levels.items():
            if np.isfinite(lvl.get(key, np.nan)):
                ax.axhline(lvl[key], color=colors.get(name, "C5"), ls="--", lw=1,
                           label=f"{name}, perfect model ({int(lvl['episodes'])} ep.)")
        if hold and np.isfinite(hold.get(key, np.nan)):
            ax.axhline(hold[key], color="0.3", ls=":", lw=1.2, label="hold still (zero action)")
        if sac and sac.get(key):
            seeds = int(max(sac["seeds"]))
            ax.plot(sac["transitions"], sac[key], "-", color="C3", label=f"SAC ({seeds} seeds)")
            ax.fill_between(sac["transitions"], sac[f"{key}_min"], sac[f"{key}_max"],
                            color="C3", alpha=0.15)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("real transitions collected")
        ax.set_ylabel(CURVE_METRICS[key][0])
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"{task}: learning curves (bands: min-max over seeds)")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.text(0.01, 0.005, footnote, fontsize=7, color="0.35")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
