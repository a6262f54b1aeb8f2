"""PDDM's in-hand cube reorientation task: turn the cube to one goal orientation and hold it.

State (39): 24 joint angles, cube position (3, its offset from the start pose: the readings
of the cube's slide joints), cube Euler angles (3, the readings of its hinges about x, then
y, then z: ``R = Rx(rx) Ry(ry) Rz(rz)``, so index 2 is the hinge about the cube's own z
axis, vertical at the start pose), cube linear velocity (3), cube Euler-angle rates (3),
desired Euler angles (3).

As in PDDM (``same_goals``), an episode holds a single goal for all its steps. The goals
are PDDM's: "left" / "right" turn the cube by -1.5 / +1.5 rad about z, "up" / "down" by
+1.5 / -1.5 rad about x.

Reward per step: ``-7 ||euler - desired||_2 - 1000 [cube z < -0.1]``: the L2 norm of the
Euler-angle difference (no wrapping, as PDDM) and PDDM's drop test on the cube's z offset
from its start position; a drop terminates the episode.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from mbrl_ros.core.tasks.base import Task, TrackedObject, setting
from mbrl_ros.core.tasks.cube_symmetry import multiply_by_cube_symmetry
from mbrl_ros.core.tasks.layouts import CUBE_LAYOUT, HAND_JOINTS
from mbrl_ros.core.validation import check_last_dim, check_positive

if TYPE_CHECKING:
    from mbrl_ros.core.robot.spec import RobotSpec


#: PDDM's goal orientations: desired Euler angles (rx, ry, rz) in rad. "left"/"right" turn
#: the cube about its z hinge, "up"/"down" about its x hinge. The order fixes which goal a
#: seed picks (see :meth:`CubeTask.goal_name`).
DEFAULT_CUBE_GOALS: dict[str, tuple[float, float, float]] = {
    "left": (0.0, 0.0, -1.5),
    "right": (0.0, 0.0, 1.5),
    "up": (1.5, 0.0, 0.0),
    "down": (-1.5, 0.0, 0.0),
}

#: PDDM's half turns (+-0.7 rad), among the goal options its cube environment lists: a
#: goal set that adds them gives the loop's data cubes held part-turned (a curriculum).
HALF_CUBE_GOALS: dict[str, tuple[float, float, float]] = {
    "half_left": (0.0, 0.0, -0.7),
    "half_right": (0.0, 0.0, 0.7),
    "half_up": (0.7, 0.0, 0.0),
    "half_down": (-0.7, 0.0, 0.0),
}

#: The goal sets ``cube.goal_set`` chooses from: PDDM's four turns (the default), or those
#: and the half turns (the seeded episodes visit the eight in turn).
CUBE_GOAL_SETS: dict[str, dict[str, tuple[float, float, float]]] = {
    "pddm": DEFAULT_CUBE_GOALS,
    "pddm_with_halves": {**DEFAULT_CUBE_GOALS, **HALF_CUBE_GOALS},
}

#: ``goal`` value choosing the goal from the episode seed.
SEEDED_GOAL = "seeded"


@dataclass(frozen=True)
class CubeSettings:
    """What the stack configures of the task (parameters ``cube.<field>``): PDDM's goal
    held for the whole episode, and its drop criterion on the cube's z offset from its
    start position (PDDM's slide joints), so PDDM's -0.1 m holds."""

    goal: str = setting(SEEDED_GOAL, "goal orientation held for the whole episode: left / "
                        "right (-/+1.5 rad about the cube's z), up / down (+/-1.5 rad about "
                        "x), a half turn of goal_set pddm_with_halves, or seeded (episode seed s "
                        "picks goal s mod n of the goal set's n, in order: left, right, up, "
                        "down, then the half turns)",
                        choices=(SEEDED_GOAL, *CUBE_GOAL_SETS["pddm_with_halves"]))
    goal_set: str = setting("pddm", "the goals a seeded episode draws from: pddm (left, "
                            "right, up, down) or pddm_with_halves (also PDDM's half turns, "
                            "+-0.7 rad: half_left, half_right, half_up, half_down; a fixed "
                            "goal must be in the set)", choices=tuple(CUBE_GOAL_SETS),
                            collection_only=True)
    drop_height: float = setting(-0.1, "a cube whose z offset from its start position (m, "
                                 "the state's cube_pos, as PDDM) is below this is dropped",
                                 -10.0, 10.0)
    symmetry_copies: int = setting(0, "training data: copies of each transition with the "
                                   "cube's axes relabelled by one of its 24 symmetry rotations "
                                   "(0: none, PDDM)", 0, 23)


class CubeTask(Task):
    """Cube reorientation (PDDM): one goal held for the whole episode (70 steps).

    ``goal`` is a goal name (every episode uses that goal) or ``"seeded"`` (default): the
    episode with seed ``s`` uses goal ``s mod len(goals)`` in the order of ``goals`` (left,
    right, up, down), so any run of consecutive seeds visits the goals in turn, equally
    often. PDDM draws the goal uniformly at random per episode; the seeded rotation has the
    same distribution over a run and needs no random draw.

    ``tracking_error`` is the mean per-step L2 orientation error (rad). PDDM states no
    success criterion for the cube; here an episode succeeds if the cube is not dropped and
    its mean error over the states reached by control steps ``success_from_step`` (10)
    onwards (``errors[success_from_step:]``) is below ``success_error`` (0.2 rad). An episode
    of at most ``success_from_step`` steps is judged on its last step.
    """

    settings_type = CubeSettings
    tracked_objects = (TrackedObject("cube", "cube_pos", "cube_linvel", "cube_euler",
                                     "cube_angvel"),)

    @classmethod
    def from_settings(cls, settings: CubeSettings, episode_length: int | None = None,
                      robot: RobotSpec | None = None) -> CubeTask:
        del robot  # the cube's origin on the robot is the estimator's (robot.object_origins)
        extra = {} if episode_length is None else {"episode_length": int(episode_length)}
        if settings.goal_set not in CUBE_GOAL_SETS:
            raise ValueError(f"cube goal_set must be one of {list(CUBE_GOAL_SETS)}, got "
                             f"{settings.goal_set!r}")
        return cls(goals=CUBE_GOAL_SETS[str(settings.goal_set)], goal=str(settings.goal),
                   drop_height=float(settings.drop_height),
                   symmetry_copies=int(settings.symmetry_copies), **extra)

    def __init__(
        self,
        goals: Mapping[str, Sequence[float]] | None = None,
        goal: str = SEEDED_GOAL,
        episode_length: int = 70,
        drop_height: float = -0.1,
        orientation_weight: float = 7.0,
        drop_penalty: float = 1000.0,
        success_error: float = 0.2,
        success_from_step: int = 10,
        symmetry_copies: int = 0,
    ) -> None:
        super().__init__(
            name="cube",
            layout=CUBE_LAYOUT,
            action_dim=HAND_JOINTS,
            goal_dim=3,
            episode_length=episode_length,
            goal_fields=("desired_euler",),
            termination_reward=-float(drop_penalty),
        )
        goals = dict(DEFAULT_CUBE_GOALS if goals is None else goals)
        if not goals:
            raise ValueError("CubeTask needs at least one goal orientation")
        if SEEDED_GOAL in goals:
            raise ValueError(f"{SEEDED_GOAL!r} cannot name a cube goal")
        for name, value in goals.items():
            if len(value) != 3 or not all(math.isfinite(float(v)) for v in value):
                raise ValueError(f"cube goal {name!r} must be 3 finite Euler angles, got {value}")
        if goal != SEEDED_GOAL and goal not in goals:
            raise ValueError(f"cube goal must be {SEEDED_GOAL!r} or one of {list(goals)}, "
                             f"got {goal!r}")
        if isinstance(success_from_step, bool) or int(success_from_step) != success_from_step \
                or success_from_step < 0:
            raise ValueError(f"success_from_step must be an int >= 0, got {success_from_step!r}")
        check_positive("success_error", float(success_error))
        if isinstance(symmetry_copies, bool) or int(symmetry_copies) != symmetry_copies \
                or not 0 <= symmetry_copies <= 23:
            raise ValueError(f"symmetry_copies must be an int in [0, 23], got {symmetry_copies!r}")
        for name, value in (("orientation_weight", orientation_weight),
                            ("drop_penalty", drop_penalty)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        self.goal_names = tuple(goals)
        self.goal_table = torch.tensor([list(map(float, goals[n])) for n in self.goal_names],
                                       dtype=torch.float32)
        self.goal = goal
        self.drop_height = float(drop_height)
        self.orientation_weight = float(orientation_weight)
        self.drop_penalty = float(drop_penalty)
        self.success_error = float(success_error)
        self.success_from_step = int(success_from_step)
        self.symmetry_copies = int(symmetry_copies)
        self._euler = self.layout.slice("cube_euler")
        self._z = self.layout.start("cube_pos") + 2

    @property
    def augmentation(self) -> Callable[[Any], Any] | None:
        """Each transition again ``symmetry_copies`` times with the cube's axes relabelled
        by its symmetry rotations (``cube_symmetry``); None when 0."""
        if not self.symmetry_copies:
            return None
        desired = self.layout.slice("desired_euler")

        def reward(next_state: Tensor, action: Tensor) -> Tensor:
            return self.reward(next_state, action, next_state[..., desired])[0]

        return multiply_by_cube_symmetry(self.layout, self.symmetry_copies, reward=reward)

    def goal_name(self, seed: int) -> str:
        """Name of the goal of the episode with ``seed`` (see the class docstring)."""
        if self.goal != SEEDED_GOAL:
            return self.goal
        return self.goal_names[int(seed) % len(self.goal_names)]

    def episode_goals(self, seed: int, length: int | None = None) -> Tensor:
        length = self._episode_length_arg(length)
        row = self.goal_table[self.goal_names.index(self.goal_name(seed))]
        return row.expand(length, self.goal_dim).clone()

    def step_error(self, states: Tensor, goals: Tensor) -> Tensor:
        """L2 orientation error ``||euler - desired||_2`` over the three Euler angles (rad)."""
        return torch.linalg.vector_norm(states[..., self._euler] - goals, dim=-1)

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
        held = errors[min(self.success_from_step, errors.shape[0] - 1):]
        return float(held.mean()) < self.success_error
