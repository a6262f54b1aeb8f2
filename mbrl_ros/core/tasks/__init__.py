"""Tasks: state layouts, vectorized rewards/termination, goal schedules and episode metrics.

The names below load on first use, so that ``mbrl_ros.core.tasks.layouts`` (numpy only)
can be imported by the torch-free simulator without pulling in the torch task modules.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "BAODING_LAYOUT": "layouts",
    "CUBE_LAYOUT": "layouts",
    "StateLayout": "layouts",
    "Task": "base",
    "BaodingTask": "baoding",
    "double_by_ball_swap": "baoding",
    "swap_balls": "baoding",
    "swap_balls_batch": "baoding",
    "CubeTask": "cube",
    "DEFAULT_CUBE_GOALS": "cube",
    "TASKS": "registry",
    "make_task": "registry",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_WHERE))


__all__ = sorted(_WHERE)
