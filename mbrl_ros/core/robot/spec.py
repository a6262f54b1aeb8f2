"""A robot as configuration: joints, command limits, each task's start pose, the action map.

The nodes that plan, estimate and train need a few facts about the hand and nothing of its
simulation: the joint names in the order of the state and the actions, the joint command
range, the pose action 0 stands for in each task, how far |action| = 1 reaches, where the
tracker's objects are measured from, and (Baoding) the wrist chain that places the palm.
:class:`RobotSpec` holds them, loaded from a YAML file (:func:`load_robot`); the built-in
one is the Adroit ShadowHand as PDDM used it (``mbrl_ros/robots/adroit_hand.yaml``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mbrl_ros.core.robot.action_map import ActionMap
from mbrl_ros.core.validation import finite_vector

#: The built-in robot: the Adroit ShadowHand of PDDM's scenes.
DEFAULT_ROBOT_FILE = Path(__file__).resolve().parents[2] / "robots" / "adroit_hand.yaml"


@dataclass(frozen=True)
class RobotSpec:
    """What the stack knows about the robot (see the module docstring)."""

    name: str
    joints: tuple[str, ...]
    command_low: np.ndarray
    command_high: np.ndarray
    poses: Mapping[str, np.ndarray] = field(default_factory=dict)
    action_scale: Mapping[str, float] = field(default_factory=dict)
    object_origins: Mapping[str, np.ndarray] = field(default_factory=dict)
    wrist_chain: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        n = len(self.joints)
        if n < 1 or len(set(self.joints)) != n:
            raise ValueError(f"robot {self.name!r}: joints must be distinct names, got "
                             f"{list(self.joints)}")
        low = finite_vector(self.command_low, n, f"robot {self.name!r} command_low")
        high = finite_vector(self.command_high, n, f"robot {self.name!r} command_high")
        if np.any(low >= high):
            raise ValueError(f"robot {self.name!r}: command_low must be below command_high "
                             f"for every joint")
        poses = {task: finite_vector(pose, n, f"robot {self.name!r} pose {task!r}")
                 for task, pose in self.poses.items()}
        scales = {task: float(s) for task, s in self.action_scale.items()}
        bad = {task: s for task, s in scales.items() if not 0.0 < s <= 1.0}
        if bad:
            raise ValueError(f"robot {self.name!r}: action_scale must be in (0, 1], got {bad}")
        origins = {name: finite_vector(o, 3, f"robot {self.name!r} origin of {name!r}")
                   for name, o in self.object_origins.items()}
        for arr in (low, high, *poses.values(), *origins.values()):
            arr.flags.writeable = False  # one spec is shared by everything that loads it
        object.__setattr__(self, "joints", tuple(str(j) for j in self.joints))
        object.__setattr__(self, "command_low", low)
        object.__setattr__(self, "command_high", high)
        object.__setattr__(self, "poses", poses)
        object.__setattr__(self, "action_scale", scales)
        object.__setattr__(self, "object_origins", origins)

    @property
    def num_joints(self) -> int:
        return len(self.joints)

    def pose(self, task: str) -> np.ndarray:
        """The pose action 0 stands for in ``task`` (default: mid-range)."""
        if task in self.poses:
            return self.poses[task].copy()
        return 0.5 * (self.command_low + self.command_high)

    def action_map(self, task: str) -> ActionMap:
        """The task's map between actions in [-1, 1] and joint targets, in ``joints`` order."""
        return ActionMap(self.pose(task), np.stack([self.command_low, self.command_high], -1),
                         self.action_scale.get(task, 1.0))

    def origins_of(self, objects: Iterable[str]) -> dict[str, np.ndarray]:
        """Where the tracker measures each of ``objects`` from, for those this robot's file
        names (the others: the world origin)."""
        return {n: self.object_origins[n].copy() for n in objects if n in self.object_origins}

    def order_of(self, names: Sequence[str]) -> np.ndarray:
        """For a permutation ``names`` of the joints: index into ``joints`` of each name.
        ValueError naming the unknown and missing joints otherwise."""
        names = list(names)
        unknown = sorted(set(names) - set(self.joints))
        missing = sorted(set(self.joints) - set(names))
        if unknown or missing or len(names) != len(set(names)):
            raise ValueError(f"joints must be a permutation of robot {self.name!r}'s "
                             f"{self.num_joints} joints: unknown {unknown}, missing {missing}")
        index = {name: i for i, name in enumerate(self.joints)}
        return np.array([index[name] for name in names])


def robot_from_dict(data: Mapping[str, Any]) -> RobotSpec:
    """A :class:`RobotSpec` from the YAML layout of ``robots/adroit_hand.yaml``."""
    known = {"name", "joints", "command_low", "command_high", "poses", "action_scale",
             "object_origins", "wrist_chain"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"unknown robot keys {unknown}; known: {sorted(known)}")
    missing = sorted({"name", "joints", "command_low", "command_high"} - set(data))
    if missing:
        raise ValueError(f"robot description lacks {missing}")
    return RobotSpec(name=str(data["name"]), joints=tuple(data["joints"]),
                     command_low=np.asarray(data["command_low"], dtype=np.float64),
                     command_high=np.asarray(data["command_high"], dtype=np.float64),
                     poses=dict(data.get("poses") or {}),
                     action_scale=dict(data.get("action_scale") or {}),
                     object_origins=dict(data.get("object_origins") or {}),
                     wrist_chain=data.get("wrist_chain"))


def load_robot(path: str | Path = "") -> RobotSpec:
    """The robot described in the YAML file ``path`` ("" = the built-in Adroit hand)."""
    return _load(str(Path(path).expanduser().resolve()) if path else str(DEFAULT_ROBOT_FILE))


@lru_cache(maxsize=8)
def _load(path: str) -> RobotSpec:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read robot description {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"robot description {path} is not a YAML mapping")
    return robot_from_dict(data)
