"""PDDM's in-hand cube reorientation task: turn the cube to a sequence of goal orientations.

State (39): 24 joint angles, cube position (3), cube Euler angles (3), cube linear velocity
(3), cube angular velocity (3), desired Euler angles (3).
Reward per step: ``-7 |euler - desired|_1 - 1000 [cube z < -0.1]`` (L1 over the three angles,
no wrapping, as PDDM); a drop terminates the episode.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from mbrl_ros.core.tasks.base import StateLayout, Task, check_last_dim, check_positive

NUM_JOINTS = 24

CUBE_LAYOUT = StateLayout(
    (
        ("joints", NUM_JOINTS),
        ("cube_pos", 3),
        ("cube_euler", 3),
        ("cube_linvel", 3),
        ("cube_angvel", 3),
        ("desired_euler", 3),
    )
)

#: Goal orientations (Euler x, y, z in rad). The palm faces up: "left"/"right" roll the cube
#: about the forearm (y) axis, "up"/"down" about the x axis.
DEFAULT_CUBE_GOALS: dict[str, tuple[float, float, float]] = {
    "left": (0.0, -1.5, 0.0),
    "right": (0.0, 1.5, 0.0),
    "up": (1.5, 0.0, 0.0),
    "down": (-1.5, 0.0, 0.0),
}


class CubeTask(Task):
    """Cube reorientation (PDDM). Each goal is held ``hold_steps`` steps (35); episodes of 70.

    The goal order is a seeded random permutation of ``goals`` (repeated with fresh
    permutations when an episode needs more segments than there are goals).

    ``tracking_error`` is the mean per-step L1 orientation error (rad). Success: no drop and,
    in every goal segment, the error stays below ``success_error`` (0.5 rad, L1) during
    the segment's last ``success_steps`` (5) steps. A segment shorter than that must be
    below the threshold throughout.
    """

    def __init__(
        self,
        goals: Mapping[str, Sequence[float]] | None = None,
        hold_steps: int = 35,
        episode_length: int = 70,
        drop_height: float = -0.1,
        orientation_weight: float = 7.0,
        drop_penalty: float = 1000.0,
        success_error: float = 0.5,
        success_steps: int = 5,
    ) -> None:
        super().__init__(
            name="cube",
            layout=CUBE_LAYOUT,
            action_dim=NUM_JOINTS,
            goal_dim=3,
            episode_length=episode_length,
            goal_fields=("desired_euler",),
            termination_reward=-float(drop_penalty),
        )
        goals = dict(DEFAULT_CUBE_GOALS if goals is None else goals)
        if not goals:
            raise ValueError("CubeTask needs at least one goal orientation")
        for name, value in goals.items():
            if len(value) != 3 or not all(math.isfinite(float(v)) for v in value):
                raise ValueError(f"cube goal {name!r} must be 3 finite Euler angles, got {value}")
        if hold_steps < 1 or success_steps < 1:
            raise ValueError(f"hold_steps and success_steps must be >= 1, got "
                             f"{hold_steps} and {success_steps}")
        check_positive("success_error", float(success_error))
        for name, value in (("orientation_weight", orientation_weight),
                            ("drop_penalty", drop_penalty)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        self.goal_names = tuple(goals)
        self.goal_table = torch.tensor([list(map(float, goals[n])) for n in self.goal_names],
                                       dtype=torch.float32)
        self.hold_steps = int(hold_steps)
        self.drop_height = float(drop_height)
        self.orientation_weight = float(orientation_weight)
        self.drop_penalty = float(drop_penalty)
        self.success_error = float(success_error)
        self.success_steps = int(success_steps)
        self._euler = self.layout.slice("cube_euler")
        self._z = self.layout.start("cube_pos") + 2

    def goal_sequence(self, seed: int, num_segments: int) -> list[str]:
        """Names of the goals of ``num_segments`` consecutive segments for ``seed``."""
        gen = torch.Generator().manual_seed(int(seed))
        names: list[str] = []
        while len(names) < num_segments:
            perm = torch.randperm(len(self.goal_names), generator=gen).tolist()
            names.extend(self.goal_names[i] for i in perm)
        return names[:num_segments]

    def episode_goals(self, seed: int, length: int | None = None) -> Tensor:
        length = self._episode_length_arg(length)
        num_segments = -(-length // self.hold_steps)
        order = [self.goal_names.index(n) for n in self.goal_sequence(seed, num_segments)]
        per_step = torch.tensor(order).repeat_interleave(self.hold_steps)[:length]
        return self.goal_table.index_select(0, per_step)

    def step_error(self, states: Tensor, goals: Tensor) -> Tensor:
        """L1 orientation error ``sum |euler - desired|`` over the three Euler angles (rad)."""
        return (states[..., self._euler] - goals).abs().sum(dim=-1)

    def reward(self, states: Tensor, actions: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        check_last_dim("states", states, self.state_dim)
        check_last_dim("actions", actions, self.action_dim)
        check_last_dim("goals", goals, self.goal_dim)
        error = self.step_error(states, goals)
        dropped = states[..., self._z] < self.drop_height
        reward = error * -self.orientation_weight - self.drop_penalty * dropped.to(error.dtype)
        return reward, dropped

    def episode_success(self, errors: Tensor, dropped: bool) -> bool:
        if dropped:
            return False
        below = errors < self.success_error
        for start in range(0, errors.shape[0], self.hold_steps):
            stop = min(start + self.hold_steps, errors.shape[0])
            if not bool(below[max(start, stop - self.success_steps):stop].all()):
                return False
        return True
