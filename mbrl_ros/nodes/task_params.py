"""The task every node of the stack agrees on, declared as ROS parameters.

The planner scores plans with the task's reward, the estimator lays out the state, the
trainer augments data and the experiment manager writes goal schedules and metrics; all of
them build the same :class:`mbrl_ros.core.tasks.Task` from these parameters (set once for
all nodes under ``/**`` in ``config/<task>.yaml``).

Defaults are PDDM's task definitions placed in this stack's simulated scene: PDDM's target
ellipse (radii, period, direction) centred where the balls rest in our palm
(``mbrl_ros.sim.BAODING_TARGET_ELLIPSE``), and drop heights measured in our world frame
(balls rest at z = 0.156 m in the palm, lie at 0.028 m on the floor; PDDM's 0.06 m was in
its own frame; the cube's position is its offset from the start pose, as in PDDM, so PDDM's
-0.1 m holds). On a real hand set them in the tracker's frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from mbrl_ros.core.tasks import Task, make_task
from mbrl_ros.nodes.parameters import Param

TASK_NAMES = ("baoding", "cube")

TASK_PARAMS = [
    Param("task", "baoding", "manipulation task", choices=TASK_NAMES, read_only=True),
    Param("episode_length", 0, "control steps (actions) per episode; 0 = the task's own "
          "(PDDM: Baoding 100, cube 70)", 0, 100000, read_only=True),
    Param("baoding.target_centre", [0.005, 0.0355], "centre of the targets' ellipse, world "
          "xy (m)", read_only=True),
    Param("baoding.target_radii", [0.02, 0.0332], "x and y radii of the targets' ellipse (m)",
          read_only=True),
    Param("baoding.start_angles", [math.pi, 0.0], "angles of target 1 and 2 at step 0 (rad)",
          read_only=True),
    Param("baoding.period", 60, "control steps per turn of the targets", 2, 100000,
          read_only=True),
    Param("baoding.direction", 1, "+1 counter-clockwise, -1 clockwise (seen from above)",
          -1, 1, read_only=True),
    Param("baoding.drop_height", 0.10, "a ball below this z (m) is dropped: -500 per step, "
          "episode over", -10.0, 10.0, read_only=True),
    Param("cube.hold_steps", 35, "steps each goal orientation is held", 1, 100000,
          read_only=True),
    Param("cube.drop_height", -0.1, "a cube whose z offset from its start position (m, the "
          "state's cube_pos, as PDDM) is below this is dropped", -10.0, 10.0, read_only=True),
]


def _pair(values: Mapping[str, Any], name: str) -> tuple[float, float]:
    value = [float(v) for v in values[name]]
    if len(value) != 2:
        raise ValueError(f"{name} needs 2 numbers, got {values[name]}")
    return value[0], value[1]


def check_task_params(values: Mapping[str, Any]) -> str | None:
    """ParameterSet cross-check: None if the task can be built from ``values``."""
    try:
        task_from_params(values)
    except ValueError as exc:
        return str(exc)
    return None


def task_from_params(values: Mapping[str, Any]) -> Task:
    """Build the task named by ``values["task"]`` from the ``TASK_PARAMS`` values."""
    name = values["task"]
    overrides: dict[str, Any] = {}
    if values.get("episode_length", 0):
        overrides["episode_length"] = int(values["episode_length"])
    if name == "baoding":
        if int(values["baoding.direction"]) not in (-1, 1):
            raise ValueError("baoding.direction must be +1 or -1")
        rx, ry = _pair(values, "baoding.target_radii")
        overrides.update(
            centre=_pair(values, "baoding.target_centre"), x_radius=rx, y_radius=ry,
            start_angles=_pair(values, "baoding.start_angles"),
            period=int(values["baoding.period"]), direction=int(values["baoding.direction"]),
            drop_height=float(values["baoding.drop_height"]))
    elif name == "cube":
        overrides.update(hold_steps=int(values["cube.hold_steps"]),
                         drop_height=float(values["cube.drop_height"]))
    return make_task(name, **overrides)


def default_task_values() -> dict[str, Any]:
    """The ``TASK_PARAMS`` defaults as a plain dict (tests, scripts)."""
    return {p.name: p.default for p in TASK_PARAMS}
