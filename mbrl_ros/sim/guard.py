"""Physics guard: notice when MuJoCo's state goes bad instead of passing NaNs downstream.

MuJoCo counts warnings in ``data.warning`` (bad qpos/qvel/qacc, full contact or constraint
buffers, ...) and, for non-finite values, silently resets the data to ``qpos0`` mid-step.
Either way the episode is no longer trustworthy, so the guard compares the counters before
and after a control step and also checks the state for non-finite values.
"""

from __future__ import annotations

from collections.abc import Callable

import mujoco
import numpy as np

_WARNING_NAMES = {
    int(w): name
    for name, w in mujoco.mjtWarning.__members__.items()
    if name != "mjNWARNING"
}


class PhysicsGuard:
    """Call ``arm`` before a control step and ``check`` after it."""

    def __init__(self) -> None:
        self._counts = np.zeros(len(_WARNING_NAMES), dtype=np.int64)

    def arm(self, data: mujoco.MjData) -> None:
        self._counts = _warning_counts(data)

    def check(self, data: mujoco.MjData) -> str | None:
        """Why the last control step is not trustworthy, or None if it is fine."""
        counts = _warning_counts(data)
        new = np.flatnonzero(counts > self._counts)
        reasons = []
        for i in new:
            name = _WARNING_NAMES.get(int(i), f"warning {i}")
            info = data.warning[int(i)].lastinfo
            reasons.append(f"MuJoCo {name} x{counts[i] - self._counts[i]} (info {info})")
        for field in ("qpos", "qvel", "qacc"):
            values = getattr(data, field)
            if not np.all(np.isfinite(values)):
                bad = np.flatnonzero(~np.isfinite(values))[:5].tolist()
                reasons.append(f"non-finite {field} at indices {bad}")
        self._counts = counts
        return "; ".join(reasons) if reasons else None


def _warning_counts(data: mujoco.MjData) -> np.ndarray:
    return np.array([data.warning[i].number for i in range(len(_WARNING_NAMES))],
                    dtype=np.int64)


def route_mujoco_warnings(handler: Callable[[str], None] | None) -> None:
    """Send MuJoCo's warning texts to ``handler`` (e.g. a ROS logger) instead of stdout and
    ``MUJOCO_LOG.TXT`` in the working directory; None restores MuJoCo's default.

    Process-wide (MuJoCo has one warning callback), so only an application entry point such
    as a node's main should call it. The guard does not depend on it.
    """
    mujoco.set_mju_user_warning(handler)
