"""Input checks shared by the core, the simulator and the nodes: one wording everywhere.

Each raises ValueError naming what is wrong (which value, the expected size or range), the
message a node puts in its log line and diagnostics when it rejects an input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from numpy.typing import ArrayLike
from torch import Tensor


def finite_vector(values: ArrayLike, size: int, what: str, minimum: float | None = None,
                  broadcast: bool = False) -> np.ndarray:
    """``values`` as a new float64 vector of length ``size`` (a scalar or shorter shape is
    repeated if ``broadcast``); every entry finite and, with ``minimum``, >= it."""
    arr = np.asarray(values, dtype=np.float64)
    if broadcast:
        try:
            arr = np.broadcast_to(arr, (size,))
        except ValueError:
            raise ValueError(f"{what} has {arr.size} values, expected {size}") from None
    arr = arr.reshape(-1).copy() if arr.ndim <= 1 else arr
    if arr.shape != (size,):
        raise ValueError(f"{what} has {arr.size} values, expected {size}")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise ValueError(f"{what} has non-finite values at indices {bad.tolist()}")
    if minimum is not None and np.any(arr < minimum):
        raise ValueError(f"{what} must be >= {minimum}, got {arr.tolist()}")
    return arr


def check_int(name: str, value: Any, minimum: int) -> None:
    """An int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


def check_float(name: str, value: Any, low: float = -math.inf, high: float = math.inf,
                low_open: bool = False, high_open: bool = False) -> None:
    """A finite real number (not a bool) in the interval ``[low, high]`` (or open ends)."""
    ok = isinstance(value, int | float | np.floating) and not isinstance(value, bool)
    if ok:
        v = float(value)
        ok = math.isfinite(v) and (v > low if low_open else v >= low)
        ok = ok and (v < high if high_open else v <= high)
    if not ok:
        lo = "(" if low_open else "["
        hi = ")" if high_open else "]"
        raise ValueError(f"{name} must be a finite number in {lo}{low}, {high}{hi}, "
                         f"got {value!r}")


def check_positive(name: str, value: float) -> None:
    """A finite number > 0."""
    if not (isinstance(value, int | float | np.floating) and math.isfinite(value)
            and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")


def check_last_dim(name: str, x: Tensor, dim: int) -> None:
    """A tensor whose last dimension is ``dim``."""
    if not isinstance(x, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[-1] != dim:
        raise ValueError(f"{name} must have last dimension {dim}, got shape {tuple(x.shape)}")


def check_finite(name: str, x: Tensor) -> None:
    """A tensor without NaN or infinite values."""
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains non-finite values")
