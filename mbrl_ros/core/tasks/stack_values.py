"""The task as the stack configures it: flat parameter values -> a :class:`Task`.

Every node declares these values as ROS parameters (``mbrl_ros.nodes.task_params``) and
ROS-free tools (the gymnasium env, benchmarks) use the same defaults and the same builder,
so all of them agree on one task. Defaults are PDDM's task definitions: Baoding targets on
PDDM's ellipse in the palm frame (they move with the wrist), a ball dropped below world
z 0.06 m (our scene's world is PDDM's: the hand is mounted where PDDM mounts it); the cube's
position is its offset from the start pose, as in PDDM, so PDDM's -0.1 m holds.
``config/baoding_world_targets.yaml`` is the world-fixed alternative.
The cube holds one of PDDM's four goals for a whole episode; ``cube.goal: seeded`` picks
it from the episode seed (``CubeTask.goal_name``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mbrl_ros.core.tasks import Task, make_task
from mbrl_ros.core.tasks.cube import SEEDED_GOAL

TASK_NAMES = ("baoding", "cube")

#: name -> default value (the ``config/<task>.yaml`` files repeat them).
TASK_DEFAULTS: dict[str, Any] = {
    "task": "baoding",
    "episode_length": 0,
    "end_at_drop": True,
    "baoding.target_frame": "palm",
    "baoding.target_centre": [0.005, 0.055],
    "baoding.target_radii": [0.02, 0.036],
    "baoding.plane_offset": -0.07,
    "baoding.start_angles": [3.0 * math.pi / 4.0, -math.pi / 4.0],
    "baoding.period": 60,
    "baoding.direction": 1,
    "baoding.drop_height": 0.06,
    "cube.goal": SEEDED_GOAL,
    "cube.drop_height": -0.1,
}


def _pair(values: Mapping[str, Any], name: str) -> tuple[float, float]:
    value = [float(v) for v in values[name]]
    if len(value) != 2:
        raise ValueError(f"{name} needs 2 numbers, got {values[name]}")
    return value[0], value[1]


def task_from_values(values: Mapping[str, Any]) -> Task:
    """Build the task named by ``values["task"]`` from ``TASK_DEFAULTS``-style values."""
    name = values["task"]
    overrides: dict[str, Any] = {}
    if values.get("episode_length", 0):
        overrides["episode_length"] = int(values["episode_length"])
    if name == "baoding":
        if int(values["baoding.direction"]) not in (-1, 1):
            raise ValueError("baoding.direction must be +1 or -1")
        overrides.update(
            frame=str(values["baoding.target_frame"]),
            centre=_pair(values, "baoding.target_centre"),
            radii=_pair(values, "baoding.target_radii"),
            plane_offset=float(values["baoding.plane_offset"]),
            start_angles=_pair(values, "baoding.start_angles"),
            period=int(values["baoding.period"]), direction=int(values["baoding.direction"]),
            drop_height=float(values["baoding.drop_height"]))
    elif name == "cube":
        overrides.update(goal=str(values["cube.goal"]),
                         drop_height=float(values["cube.drop_height"]))
    return make_task(name, **overrides)


def stack_task(task: str, episode_length: int | None = None,
               values: Mapping[str, Any] | None = None) -> Task:
    """The task the stack's nodes build by default (``values`` override the defaults)."""
    if task not in TASK_NAMES:
        raise ValueError(f"task must be one of {TASK_NAMES}, got {task!r}")
    merged = dict(TASK_DEFAULTS)
    merged.update(values or {})
    merged["task"] = task
    if episode_length is not None:
        if isinstance(episode_length, bool) or int(episode_length) != episode_length or (
                episode_length < 1):
            raise ValueError(f"episode_length must be a positive integer, got {episode_length}")
        merged["episode_length"] = int(episode_length)
    return task_from_values(merged)
