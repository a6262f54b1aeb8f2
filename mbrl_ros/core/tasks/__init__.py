"""Tasks: state layouts, vectorized rewards/termination, goal schedules and episode metrics."""

from __future__ import annotations

from typing import Any

from mbrl_ros.core.tasks.baoding import (
    BAODING_LAYOUT,
    BaodingTask,
    double_by_ball_swap,
    swap_balls,
    swap_balls_batch,
)
from mbrl_ros.core.tasks.base import StateLayout, Task
from mbrl_ros.core.tasks.cube import CUBE_LAYOUT, DEFAULT_CUBE_GOALS, CubeTask

TASKS: dict[str, type[Task]] = {"baoding": BaodingTask, "cube": CubeTask}


def make_task(name: str, **overrides: Any) -> Task:
    """Build a registered task; ``overrides`` are constructor arguments (PDDM defaults)."""
    try:
        cls = TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; known tasks: {sorted(TASKS)}") from None
    try:
        return cls(**overrides)
    except TypeError as exc:
        raise ValueError(f"bad parameters for task {name!r}: {exc}") from exc


__all__ = [
    "BAODING_LAYOUT",
    "CUBE_LAYOUT",
    "DEFAULT_CUBE_GOALS",
    "TASKS",
    "BaodingTask",
    "CubeTask",
    "StateLayout",
    "Task",
    "double_by_ball_swap",
    "make_task",
    "swap_balls",
    "swap_balls_batch",
]
