"""The learning-curve picture: score and return per episode against collected data."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np


def _iteration_means(rows: Sequence[dict[str, Any]], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(transitions at the end of each iteration, mean ``key`` of its MPC episodes)."""
    xs, ys = [], []
    for it in sorted({r["iteration"] for r in rows if r["policy"] == "mpc"}):
        sel = [r for r in rows if r["iteration"] == it and r["policy"] == "mpc"]
        xs.append(max(r["transitions"] for r in sel))
        ys.append(float(np.mean([r[key] for r in sel])))
    return np.asarray(xs), np.asarray(ys)


def plot_learning_curve(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Save a three-panel PNG (score, return, steps kept) of ``metrics.csv`` rows.

    Dots: single episodes (grey: random policy, blue: MPC); line: mean of the MPC episodes
    of each iteration, at the amount of data collected by then; dashed: random mean.
    Returns its path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    random_rows = [r for r in rows if r["policy"] == "random"]
    mpc_rows = [r for r in rows if r["policy"] == "mpc"]
    panels = ((axes[0], "score", "score (PDDM's, mean per step until a drop)"),
              (axes[1], "return", "return (sum of rewards)"),
              (axes[2], "steps", "steps before the episode ended (drop)"))
    for ax, key, label in panels:
        for sel, colour, name in ((random_rows, "0.6", "random policy"),
                                  (mpc_rows, "tab:blue", "MPC episode")):
            if sel:
                ax.scatter([r["transitions"] for r in sel], [r[key] for r in sel], s=10,
                           color=colour, alpha=0.6, label=name)
        xs, ys = _iteration_means(rows, key)
        if len(xs):
            ax.plot(xs, ys, "-o", color="tab:blue", ms=4, label="MPC mean per iteration")
        if random_rows:
            ax.axhline(float(np.mean([r[key] for r in random_rows])), color="0.4", ls="--",
                       lw=1, label="random mean")
        ax.set_xlabel("transitions collected")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    if axes[0].get_legend_handles_labels()[0]:  # runs of only hold/true-model episodes: none
        axes[0].legend(fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
