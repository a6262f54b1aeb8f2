"""PDDM's mapping between normalized actions in [-1, 1] and joint position targets (rad).

Positive and negative actions scale separately around a centre pose ``mid`` (the task
keyframe), so a = 0 holds the keyframe and a = +-1 reaches ``scale`` of the way to the
control limits:  q = mid + a * upper  (a > 0),  q = mid + a * lower  (a <= 0), with
upper = scale * (hi - mid), lower = scale * (mid - lo). PDDM uses scale 0.9 for Baoding
and 1.0 (full range) for the cube. ``mid``, ``upper`` and ``lower`` are public so the torch
side can apply the same map to whole batches.
"""

from __future__ import annotations

import numpy as np


class ActionMap:
    """Vectorized two-sided affine map between actions and joint targets (any batch shape).

    ``mid`` is clamped into [lo, hi]: PDDM's cube keyframe has two thumb joints a few mrad
    outside their control range, which would give a negative half-range and a map that is
    not invertible.
    """

    def __init__(self, mid: np.ndarray, ctrl_range: np.ndarray, scale: float = 0.9) -> None:
        mid = np.asarray(mid, dtype=np.float64)
        ctrl_range = np.asarray(ctrl_range, dtype=np.float64)
        if mid.ndim != 1 or ctrl_range.shape != (mid.size, 2):
            raise ValueError(f"need mid (n,) and ctrl_range (n, 2), got {mid.shape} and "
                             f"{ctrl_range.shape}")
        if not (np.all(np.isfinite(mid)) and np.all(np.isfinite(ctrl_range))):
            raise ValueError("mid and ctrl_range must be finite")
        if np.any(ctrl_range[:, 0] >= ctrl_range[:, 1]):
            raise ValueError(f"ctrl_range rows must be (lo, hi) with lo < hi: {ctrl_range}")
        if not (0.0 < scale <= 1.0):
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        self.low = ctrl_range[:, 0].copy()
        self.high = ctrl_range[:, 1].copy()
        self.mid = np.clip(mid, self.low, self.high)
        self.scale = float(scale)
        self.upper = self.scale * (self.high - self.mid)
        self.lower = self.scale * (self.mid - self.low)
        for arr in (self.low, self.high, self.mid, self.upper, self.lower):
            arr.flags.writeable = False

    @property
    def size(self) -> int:
        return self.mid.size

    def to_joint_targets(self, action: np.ndarray) -> np.ndarray:
        """Joint position targets (rad) for actions (..., n); actions are clipped to [-1, 1]."""
        a = np.clip(self._check(action, "action"), -1.0, 1.0)
        return np.where(a > 0.0, self.mid + a * self.upper, self.mid + a * self.lower)

    def to_normalized(self, joint_targets: np.ndarray) -> np.ndarray:
        """Actions (..., n) in [-1, 1] for joint targets (rad); exact inverse of
        ``to_joint_targets`` on [mid - lower, mid + upper], clipped to +-1 beyond."""
        q = self._check(joint_targets, "joint_targets")
        dq = q - self.mid
        scale = np.where(dq > 0.0, self.upper, self.lower)
        a = np.divide(dq, scale, out=np.zeros_like(dq), where=scale > 0.0)
        return np.clip(a, -1.0, 1.0)

    def reachable_range(self) -> np.ndarray:
        """(n, 2) joint targets reachable with |a| <= 1."""
        return np.stack([self.mid - self.lower, self.mid + self.upper], axis=-1)

    def as_dict(self) -> dict[str, list[float] | float]:
        """Plain lists, e.g. to hand the map to the torch side or put it in a message."""
        return {"mid": self.mid.tolist(), "upper": self.upper.tolist(),
                "lower": self.lower.tolist(), "low": self.low.tolist(),
                "high": self.high.tolist(), "scale": self.scale}

    def _check(self, x: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float64)
        if arr.shape[-1:] != (self.size,):
            raise ValueError(f"{what} must have last dimension {self.size}, got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{what} has non-finite values")
        return arr
