"""The task every node of the stack agrees on, declared as ROS parameters.

The planner scores plans with the task's reward, the estimator lays out the state, the
trainer augments data and the experiment manager writes goal schedules and metrics; all of
them build the same :class:`mbrl_ros.core.tasks.Task` from these parameters (set once for
all nodes under ``/**`` in ``config/<task>.yaml``). Defaults and the builder live in the
ROS-free ``mbrl_ros.core.tasks.stack_values`` (why the defaults are what they are is there);
on a real hand set them in the tracker's frame.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mbrl_ros.core.tasks import DEFAULT_CUBE_GOALS, Task
from mbrl_ros.core.tasks.cube import SEEDED_GOAL
from mbrl_ros.core.tasks.stack_values import TASK_DEFAULTS, TASK_NAMES, task_from_values
from mbrl_ros.nodes.parameters import Param


def _param(name: str, description: str, *limits: float, choices: tuple[str, ...] | None = None
           ) -> Param:
    return Param(name, TASK_DEFAULTS[name], description, *limits, choices=choices,
                 read_only=True)


TASK_PARAMS = [
    _param("task", "manipulation task", choices=TASK_NAMES),
    _param("episode_length", "control steps (actions) per episode; 0 = the task's own "
           "(PDDM: Baoding 100, cube 70)", 0, 100000),
    _param("end_at_drop", "a dropped object ends the episode at that state (PDDM): the "
           "planner sends no command for it, the experiment manager shortens the schedule"),
    _param("baoding.target_frame", "frame the target ellipse is fixed in: palm (PDDM; the "
           "targets move with the wrist) or world", choices=("palm", "world")),
    _param("baoding.target_centre", "centre of the targets' ellipse (m): palm (x, z) or "
           "world (x, y)"),
    _param("baoding.target_radii", "radii of the targets' ellipse along the same two axes (m)"),
    _param("baoding.plane_offset", "the ellipse's plane: palm y (palm frame) or world z "
           "(world frame, only where the targets are drawn) (m)", -10.0, 10.0),
    _param("baoding.start_angles", "angles of target 1 and 2 at step 0 (rad)"),
    _param("baoding.period", "control steps per turn of the targets", 2, 100000),
    _param("baoding.direction", "+1 counter-clockwise, -1 clockwise (seen from above)", -1, 1),
    _param("baoding.drop_height", "a ball below this world z (m) is dropped: -500 per step, "
           "episode over", -10.0, 10.0),
    _param("cube.goal", "goal orientation held for the whole episode: left / right "
           "(-/+1.5 rad about the cube's z), up / down (+/-1.5 rad about x), or seeded "
           "(episode seed s picks goal s mod 4 of left, right, up, down)",
           choices=(SEEDED_GOAL, *DEFAULT_CUBE_GOALS)),
    _param("cube.drop_height", "a cube whose z offset from its start position (m, the "
           "state's cube_pos, as PDDM) is below this is dropped", -10.0, 10.0),
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
