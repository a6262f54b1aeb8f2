"""The one episode type: what the recorder emits, the dataset stores and reads back.

An :class:`Episode` is a finished (stretch of an) episode as transitions: ``state`` and
``next_state`` ``[T, S]``, ``action`` ``[T, A]`` float32, ``reward`` ``[T]`` float32,
``done`` ``[T]`` bool (the task's termination flag on the reached state, e.g. a dropped
ball), ``time`` ``[T]`` float64 (the stamp, s, of each transition's first state), ``step``
``[T]`` int64 (each transition's step in its episode, strictly increasing; a gap is a
transition left out for a missing state or action, so no multi-step window spans it) and
``meta``, a JSON-able dict (the stream's ``episode_id``, the step range, whether it was cut
short, the policy that acted and its ``model_version``, or whatever a script records).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class Episode:
    """One episode's transitions (see the module docstring); build checked ones with
    :meth:`checked`."""

    state: np.ndarray
    action: np.ndarray
    next_state: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    time: np.ndarray
    step: np.ndarray
    meta: dict[str, Any]

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def dims(self) -> tuple[int, int]:
        """``(state_dim, action_dim)``."""
        return int(self.state.shape[1]), int(self.action.shape[1])

    @classmethod
    def checked(cls, state: ArrayLike, action: ArrayLike, next_state: ArrayLike,
                reward: ArrayLike, time: ArrayLike, done: ArrayLike | None = None,
                meta: Mapping[str, Any] | None = None, step: ArrayLike | None = None,
                dims: tuple[int, int] | None = None) -> Episode:
        """Canonical dtypes, shapes, finiteness, JSON-able meta and (when given) ``dims``
        checked; ``done`` defaults to all False, ``step`` to ``0..T-1``. ValueError if bad."""
        arrays = {
            "state": np.asarray(state, dtype=np.float32),
            "action": np.asarray(action, dtype=np.float32),
            "next_state": np.asarray(next_state, dtype=np.float32),
            "reward": np.asarray(reward, dtype=np.float32),
            "time": np.asarray(time, dtype=np.float64),
        }
        s, a = arrays["state"], arrays["action"]
        if s.ndim != 2 or s.shape[0] < 1 or s.shape[1] < 1:
            raise ValueError(f"state must be [T, S] with T, S >= 1, got shape {s.shape}")
        t = s.shape[0]
        done_arr = _checked_done(done, t)
        if arrays["next_state"].shape != s.shape:
            raise ValueError(f"next_state shape {arrays['next_state'].shape} != state shape "
                             f"{s.shape}")
        if a.ndim != 2 or a.shape[0] != t or a.shape[1] < 1:
            raise ValueError(f"action must be [{t}, A], got shape {a.shape}")
        for name, arr in (("reward", arrays["reward"]), ("done", done_arr),
                          ("time", arrays["time"])):
            if arr.shape != (t,):
                raise ValueError(f"{name} must have shape ({t},), got {arr.shape}")
        for name, arr in arrays.items():
            if not np.isfinite(arr).all():
                raise ValueError(f"{name} contains non-finite values")
        if dims is not None and (s.shape[1], a.shape[1]) != dims:
            raise ValueError(
                f"episode dims (S={s.shape[1]}, A={a.shape[1]}) do not match the dataset's "
                f"(S={dims[0]}, A={dims[1]})")
        return cls(done=done_arr, step=_checked_steps(step, t), meta=_checked_meta(meta),
                   **arrays)


def _checked_done(done: ArrayLike | None, t: int) -> np.ndarray:
    done_arr = np.zeros(t, dtype=np.bool_) if done is None else np.asarray(done)
    if done_arr.dtype != np.bool_:
        if not np.isin(done_arr, (0, 1)).all():
            raise ValueError("done must be boolean (or 0/1)")
        done_arr = done_arr.astype(np.bool_)
    return done_arr


def _checked_steps(step: ArrayLike | None, t: int) -> np.ndarray:
    """Steps ``[T]`` as int64, >= 0 and strictly increasing (default ``0..T-1``)."""
    if step is None:
        return np.arange(t, dtype=np.int64)
    raw = np.asarray(step)
    if raw.shape != (t,):
        raise ValueError(f"step must have shape ({t},), got {raw.shape}")
    if raw.dtype.kind not in "iu":
        raise ValueError(f"step must be integers, got {raw.dtype}")
    steps = raw.astype(np.int64)
    if t and (steps[0] < 0 or np.any(np.diff(steps) <= 0)):
        raise ValueError("step must be >= 0 and strictly increasing")
    return steps


def _checked_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    if meta is None:
        return {}
    if not isinstance(meta, Mapping):
        raise ValueError("episode meta must be a mapping")
    try:
        json.dumps(dict(meta), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"episode meta is not JSON-serializable: {exc}") from exc
    return dict(meta)
