"""The ``mpc_planner``'s joint side: the robot and the ``joints`` order of its messages,
PDDM's action map in that order (built from the ``action_map.*`` parameters and the robot),
and the joint targets a command stands for, including what a hold keeps commanding."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from mbrl_ros.core.planning.loop_io import HOLD, Command, StateInput
from mbrl_ros.core.robot.action_map import ActionMap
from mbrl_ros.core.robot.spec import RobotSpec, load_robot
from mbrl_ros.core.tasks import Task


def joint_action_map(values: Mapping[str, Any], robot: RobotSpec, task_name: str,
                     perm: np.ndarray) -> ActionMap:
    """PDDM's action map in ``joints`` order (``perm``: joints order -> robot order index);
    the pieces the parameter ``values`` do not set come from the robot."""
    mid, low, high = (np.asarray(values[f"action_map.{k}"], dtype=np.float64)
                      for k in ("mid", "low", "high"))
    scale = float(values["action_map.scale"])
    robot_map = robot.action_map(task_name)
    mid = mid if mid.size else robot_map.mid[perm]
    low = low if low.size else robot_map.low[perm]
    high = high if high.size else robot_map.high[perm]
    scale = scale if scale > 0 else robot_map.scale
    return ActionMap(mid, np.stack([low, high], axis=-1), scale)


class JointTargets:
    """Commands as joint targets in ``joints`` order, and what a hold keeps commanding (the
    episode's last targets, else its measured pose). Callers serialize ``for_command`` and
    setting ``last_targets`` (the node's publishing lock)."""

    def __init__(self, values: Mapping[str, Any], task: Task) -> None:
        self.robot = load_robot(values["robot"])
        if self.robot.num_joints != task.action_dim:
            raise ValueError(f"robot {self.robot.name!r} has {self.robot.num_joints} joints, "
                             f"task {task.name!r} acts on {task.action_dim}")
        self.joints = list(values["joints"])
        self.perm = self.robot.order_of(self.joints)  # joints order -> robot order index
        self.action_map = joint_action_map(values, self.robot, task.name, self.perm)
        self._joint_slice = (task.layout.slice("joints")
                             if "joints" in task.layout.names else None)
        self.last_targets: tuple[int, np.ndarray] | None = None
        self._newest_joints: tuple[int, np.ndarray | None] = (-1, None)  # joints order

    def observe(self, obs: StateInput) -> None:
        """Keep the measured joint positions of the newest state (what a hold starts from)."""
        self._newest_joints = (obs.episode_id, None if self._joint_slice is None
                               else obs.state[self._joint_slice][self.perm])

    def for_command(self, cmd: Command) -> tuple[np.ndarray, np.ndarray]:
        """(joint targets, normalized action), both in ``joints`` order."""
        if cmd.source == HOLD:
            held = self.last_targets
            if held is not None and held[0] == cmd.episode_id:
                targets = held[1]
            else:  # nothing commanded yet this episode: hold the measured pose
                episode, joints = self._newest_joints
                if episode != cmd.episode_id:
                    joints = None
                targets = (self.action_map.mid.copy() if joints is None
                           else np.clip(joints, self.action_map.low, self.action_map.high))
            return targets, self.action_map.to_normalized(targets)
        action = np.asarray(cmd.action, dtype=np.float64)[self.perm]
        return self.action_map.to_joint_targets(action), action
