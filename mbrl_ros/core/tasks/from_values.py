"""The task as the stack configures it: flat parameter values -> a :class:`Task`.

Every node declares these values as ROS parameters (``mbrl_ros.nodes.task_params``) and
ROS-free tools (the gymnasium env, benchmarks) use the same defaults and the same builder,
so all of them agree on one task. Defaults are PDDM's task definitions: Baoding targets on
PDDM's ellipse in the palm frame (they move with the wrist), a ball dropped below world
z 0.06 m (our scene's world is PDDM's: the hand is mounted where PDDM mounts it); the cube's
position is its offset from the start pose, as in PDDM, so PDDM's -0.1 m holds.
``config/baoding_world_targets.yaml`` is the world-fixed alternative.
The cube holds one of PDDM's four goals for a whole episode; ``cube.goal: seeded`` picks
it from the episode seed (``CubeTask.goal_name``). Nothing here names a task: each task's
settings dataclass (``Task.settings_type``) declares its ``<task>.<field>`` values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mbrl_ros.core.robot.spec import load_robot
from mbrl_ros.core.tasks import TASKS, Task
from mbrl_ros.core.tasks.base import SettingSpec, setting_specs

TASK_NAMES = tuple(TASKS)

#: The settings every task shares (the nodes read ``end_at_drop`` themselves).
COMMON_DEFAULTS: dict[str, Any] = {"task": "baoding", "episode_length": 0, "end_at_drop": True,
                                   "robot": ""}


def task_settings() -> dict[str, tuple[str, SettingSpec]]:
    """``<task>.<field>`` -> (task, its declared setting), every registered task's."""
    return {f"{name}.{spec.name}": (name, spec)
            for name, cls in TASKS.items() for spec in setting_specs(cls.settings_type)}


def collection_only_settings() -> set[str]:
    """The ``<task>.<field>`` settings that shape only how data are collected (a goal
    curriculum): a run's models are judged without them, on the task's own goals."""
    return {key for key, (_, spec) in task_settings().items() if spec.collection_only}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def task_defaults() -> dict[str, Any]:
    """name -> default value of every stack task setting, of the tasks registered now."""
    return {**COMMON_DEFAULTS,
            **{key: _plain(spec.default) for key, (_, spec) in task_settings().items()}}


#: The defaults of the built-in tasks (the ``config/<task>.yaml`` files repeat them).
TASK_DEFAULTS: dict[str, Any] = task_defaults()


def task_from_values(values: Mapping[str, Any]) -> Task:
    """Build the task named by ``values["task"]`` from ``TASK_DEFAULTS``-style values, on
    the robot file ``values["robot"]`` ("" or absent: the built-in hand)."""
    name = values["task"]
    if name not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {name!r}")
    cls = TASKS[name]
    length = int(values.get("episode_length", 0) or 0) or None
    robot = load_robot(values.get("robot") or "")
    if cls.settings_type is None:
        return cls.from_settings(None, length, robot=robot)
    given = {spec.name: values[f"{name}.{spec.name}"]
             for spec in setting_specs(cls.settings_type) if f"{name}.{spec.name}" in values}
    return cls.from_settings(cls.settings_type(**given), length, robot=robot)


def stack_task(task: str, episode_length: int | None = None,
               values: Mapping[str, Any] | None = None) -> Task:
    """The task the stack's nodes build by default (``values`` override the defaults)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {tuple(TASKS)}, got {task!r}")
    merged = task_defaults()
    unknown = sorted(set(values or {}) - set(merged))
    if unknown:
        raise ValueError(f"unknown task settings {unknown}; known: {sorted(merged)}")
    merged.update(values or {})
    merged["task"] = task
    if episode_length is not None:
        if isinstance(episode_length, bool) or int(episode_length) != episode_length or (
                episode_length < 1):
            raise ValueError(f"episode_length must be a positive integer, got {episode_length}")
        merged["episode_length"] = int(episode_length)
    return task_from_values(merged)
