"""The one task registry: a task's name -> its class (adding a task is one line here)."""

from __future__ import annotations

from typing import Any

from mbrl_ros.core.tasks.baoding import BaodingTask
from mbrl_ros.core.tasks.base import Task
from mbrl_ros.core.tasks.cube import CubeTask

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
