"""The task every node of the stack agrees on, declared as ROS parameters.

The planner scores plans with the task's reward, the estimator lays out the state, the
trainer augments data and the experiment manager writes goal schedules and metrics; all of
them build the same :class:`mbrl_ros.core.tasks.Task` from these parameters (set once for
all nodes under ``/**`` in ``config/<task>.yaml``). Defaults and the builder live in the
ROS-free ``mbrl_ros.core.tasks.from_values`` (why the defaults are what they are is there);
on a real hand set them in the tracker's frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mbrl_ros.core.tasks import Task
from mbrl_ros.core.tasks.from_values import (
    TASK_DEFAULTS,
    TASK_NAMES,
    task_from_values,
    task_settings,
)
from mbrl_ros.nodes.parameters import Param

TASK_PARAMS = [
    Param("task", TASK_DEFAULTS["task"], "manipulation task", choices=TASK_NAMES,
          read_only=True),
    Param("episode_length", TASK_DEFAULTS["episode_length"], "control steps (actions) per "
          "episode; 0 = the task's own (PDDM: Baoding 100, cube 70)", 0, 100000,
          read_only=True),
    Param("robot", TASK_DEFAULTS["robot"], "robot description YAML (joints, command limits, "
          "each task's pose and action scale, object origins, the wrist chain that places "
          "Baoding's palm targets; see mbrl_ros/robots/adroit_hand.yaml); empty: the built-in "
          "Adroit ShadowHand. Every node reads it: set it once under /**", read_only=True),
    Param("end_at_drop", TASK_DEFAULTS["end_at_drop"], "a dropped object ends the episode "
          "at that state (PDDM): the planner sends no command for it, the experiment manager "
          "shortens the schedule", read_only=True),
    # every registered task's declared settings, with their descriptions and ranges
    *(Param(key, TASK_DEFAULTS[key], spec.description, *spec.limits, choices=spec.choices,
            read_only=True) for key, (_, spec) in task_settings().items()),
]


def check_task_params(values: Mapping[str, Any]) -> str | None:
    """ParameterSet cross-check: None if the task can be built from ``values``."""
    try:
        task_from_params(values)
    except ValueError as exc:
        return str(exc)
    return None


def task_from_params(values: Mapping[str, Any]) -> Task:
    """Build the task named by ``values["task"]`` from the ``TASK_PARAMS`` values."""
    return task_from_values(values)


def default_task_values() -> dict[str, Any]:
    """The ``TASK_PARAMS`` defaults as a plain dict (tests, scripts)."""
    return {p.name: p.default for p in TASK_PARAMS}
