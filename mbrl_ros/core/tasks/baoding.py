"""PDDM's Baoding-balls task: two balls tracking targets that circle an ellipse in the palm.

State (40): 24 joint angles, ball 1 position (3) and velocity (3), ball 2 position (3) and
velocity (3), target 1 xy (2), target 2 xy (2), all in the world frame (targets: world xy of
the palm-attached target points).
Reward per step: ``-5 d1 - 5 d2 - 500 [a ball's z < 0.06] - 10 [wrist angle state[1] > 0.15]``
with ``d_i`` the xy distance of ball i to target i; a drop terminates the episode.
PDDM's score per step is ``-(d1 + d2)``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import Tensor

from mbrl_ros.core.tasks.base import Task, TrackedObject, setting
from mbrl_ros.core.tasks.layouts import BAODING_LAYOUT, HAND_JOINTS, StateLayout
from mbrl_ros.core.tasks.palm_kinematics import ADROIT_WRIST_CHAIN, WristChain
from mbrl_ros.core.validation import check_last_dim, check_positive

if TYPE_CHECKING:
    from mbrl_ros.core.robot.spec import RobotSpec


# State indices that exchange places when the two (identical) balls swap labels.
_SWAP_PAIRS = (("ball1_pos", "ball2_pos"), ("ball1_vel", "ball2_vel"), ("target1_xy", "target2_xy"))


def _ball_swap_permutation(layout: StateLayout) -> list[int]:
    perm = list(range(layout.dim))
    for a, b in _SWAP_PAIRS:
        sa, sb = layout.slice(a), layout.slice(b)
        ia, ib = list(range(sa.start, sa.stop)), list(range(sb.start, sb.stop))
        for i, j in zip(ia, ib, strict=True):
            perm[i], perm[j] = j, i
    return perm


_BALL_SWAP_PERM = _ball_swap_permutation(BAODING_LAYOUT)


def swap_balls(states: Tensor) -> Tensor:
    """Relabel the two balls: exchange their positions, velocities and targets.

    The balls are identical, so the swapped state is an equally valid state and a swapped
    transition an equally valid transition (PDDM doubles its Baoding data this way).
    Works on ``[..., 40]``; an involution.
    """
    check_last_dim("states", states, BAODING_LAYOUT.dim)
    index = torch.tensor(_BALL_SWAP_PERM, device=states.device)
    return states.index_select(-1, index)


Batch = TypeVar("Batch")


def swap_balls_batch(batch: Batch) -> Batch:
    """Copy of a transition batch with ``state`` and ``next_state`` ball-swapped.

    ``batch`` is a dataclass or a namedtuple with ``state`` and ``next_state`` fields; all
    other fields are copied unchanged.
    """
    is_dataclass = dataclasses.is_dataclass(batch) and not isinstance(batch, type)
    if not (is_dataclass or hasattr(batch, "_replace")):
        raise TypeError(f"cannot copy a {type(batch).__name__}: need a dataclass or a namedtuple")
    swapped = {"state": swap_balls(batch.state), "next_state": swap_balls(batch.next_state)}
    if is_dataclass:
        return dataclasses.replace(batch, **swapped)
    return batch._replace(**swapped)


def double_by_ball_swap(batch: Batch) -> Batch:
    """Dataset augment hook: the batch followed by its ball-swapped copy (twice the data).

    Uses ``type(batch).concatenate([a, b])`` (as ``TransitionBatch`` provides).
    """
    concatenate = getattr(type(batch), "concatenate", None)
    if concatenate is None:
        raise TypeError(f"{type(batch).__name__} has no concatenate(); cannot double it")
    return concatenate([batch, swap_balls_batch(batch)])


TARGET_FRAMES = ("palm", "world")


@dataclass(frozen=True)
class BaodingSettings:
    """What the stack configures of the task (parameters ``baoding.<field>``), PDDM's
    defaults: the targets on PDDM's ellipse in the palm frame, a ball below world z 0.06 m
    dropped (our scene's world is PDDM's: the hand is mounted where PDDM mounts it)."""

    target_frame: str = setting("palm", "frame the target ellipse is fixed in: palm (PDDM; "
                                "the targets move with the wrist) or world",
                                choices=TARGET_FRAMES)
    target_centre: tuple[float, float] = setting(
        (0.005, 0.055), "centre of the targets' ellipse (m): palm (x, z) or world (x, y)")
    target_radii: tuple[float, float] = setting(
        (0.02, 0.036), "radii of the targets' ellipse along the same two axes (m)")
    plane_offset: float = setting(-0.07, "the ellipse's plane: palm y (palm frame) or world z "
                                  "(world frame, only where the targets are drawn) (m)",
                                  -10.0, 10.0)
    start_angles: tuple[float, float] = setting(
        (3.0 * math.pi / 4.0, -math.pi / 4.0), "angles of target 1 and 2 at step 0 (rad)")
    period: int = setting(60, "control steps per turn of the targets", 2, 100000)
    direction: int = setting(1, "+1 counter-clockwise, -1 clockwise (seen from above)", -1, 1)
    drop_height: float = setting(0.06, "a ball below this world z (m) is dropped: -500 per "
                                 "step, episode over", -10.0, 10.0)


def _pair(name: str, value: Any) -> tuple[float, float]:
    pair = [float(v) for v in value]
    if len(pair) != 2:
        raise ValueError(f"baoding.{name} needs 2 numbers, got {value}")
    return pair[0], pair[1]


class BaodingTask(Task):
    """Baoding balls (PDDM). Defaults are PDDM's, targets attached to the palm.

    Target ellipse: target i at step ``k`` has angle ``θ_i = start_angles[i] + direction
    2π k / period`` and sits at ``centre + (radii[0] cos θ_i, radii[1] sin θ_i)`` in the
    ellipse's plane. ``frame="palm"`` (PDDM): the plane is the palm body's x-z plane at
    palm y ``plane_offset``; the targets move with the wrist, and their world xy is computed
    from each state's wrist angles by ``wrist_chain`` (batched forward kinematics).
    ``frame="world"``: a world-fixed ellipse in the world x-y plane at height
    ``plane_offset`` (only drawn there; the reward uses xy).

    Goals: ``goal_dim`` 6, the two targets' 3-D positions in ``frame``
    ``(x1, y1, z1, x2, y2, z2)``. The state's goal fields ``target1_xy, target2_xy`` hold
    the targets' world xy (PDDM's observation); :meth:`goal_field_values` computes them from
    a state's joints and the goal, so the recorded states and goals are enough to recompute
    them. The schedule is the same for every seed (PDDM).

    Reward: ``-5 d1 - 5 d2 - 500 [a ball's world z < drop_height] - 10 [wrist > 0.15]``
    with ``d_i`` the world-xy distance of ball i to target i. Success: no drop and the mean
    over steps of ``(d1 + d2) / 2`` below ``success_distance`` (2 cm).
    """

    settings_type = BaodingSettings
    tracked_objects = (TrackedObject("ball1", "ball1_pos", "ball1_vel"),
                       TrackedObject("ball2", "ball2_pos", "ball2_vel"))

    @classmethod
    def from_settings(cls, settings: BaodingSettings, episode_length: int | None = None,
                      robot: RobotSpec | None = None) -> BaodingTask:
        """The task from its settings on ``robot``: its ``wrist_chain`` places the palm (the
        targets' frame); None: the built-in Adroit hand."""
        if int(settings.direction) not in (-1, 1):
            raise ValueError("baoding.direction must be +1 or -1")
        extra: dict[str, Any] = ({} if episode_length is None
                                 else {"episode_length": int(episode_length)})
        if robot is not None:
            if len(robot.joints) != HAND_JOINTS:
                raise ValueError(f"baoding needs a {HAND_JOINTS}-joint hand; robot "
                                 f"{robot.name!r} has {len(robot.joints)} joints")
            if robot.wrist_chain is None:
                raise ValueError(f"robot {robot.name!r} has no wrist_chain: Baoding's "
                                 "targets are on the palm")
            extra["wrist_chain"] = WristChain.from_mapping(robot.wrist_chain)
        return cls(frame=str(settings.target_frame),
                   centre=_pair("target_centre", settings.target_centre),
                   radii=_pair("target_radii", settings.target_radii),
                   plane_offset=float(settings.plane_offset),
                   start_angles=_pair("start_angles", settings.start_angles),
                   period=int(settings.period), direction=int(settings.direction),
                   drop_height=float(settings.drop_height), **extra)

    @property
    def augmentation(self) -> Callable[[Any], Any]:
        """PDDM's: every transition again with the two (identical) balls' labels swapped."""
        return double_by_ball_swap

    def __init__(
        self,
        frame: str = "palm",
        centre: tuple[float, float] = (0.005, 0.055),
        radii: tuple[float, float] = (0.02, 0.036),
        plane_offset: float = -0.07,
        period: int = 60,
        direction: int = 1,
        start_angles: tuple[float, float] = (3.0 * math.pi / 4.0, -math.pi / 4.0),
        wrist_chain: WristChain = ADROIT_WRIST_CHAIN,
        drop_height: float = 0.06,
        wrist_index: int = 1,
        wrist_limit: float = 0.15,
        distance_weight: float = 5.0,
        drop_penalty: float = 500.0,
        wrist_penalty: float = 10.0,
        success_distance: float = 0.02,
        episode_length: int = 100,
    ) -> None:
        if frame not in TARGET_FRAMES:
            raise ValueError(f"frame must be one of {TARGET_FRAMES}, got {frame!r}")
        super().__init__(
            name="baoding",
            layout=BAODING_LAYOUT,
            action_dim=HAND_JOINTS,
            goal_dim=6,
            episode_length=episode_length,
            goal_fields=("target1_xy", "target2_xy"),
            goal_field_dim=4,
            goal_frame=frame,
            termination_reward=-float(drop_penalty),
        )
        if len(centre) != 2 or len(radii) != 2 or len(start_angles) != 2:
            raise ValueError("centre, radii and start_angles must each have two entries")
        for name, value in (("x radius", radii[0]), ("y radius", radii[1]),
                            ("period", period), ("success_distance", success_distance)):
            check_positive(name, float(value))
        for name, value in (("centre", centre[0]), ("centre", centre[1]),
                            ("plane_offset", plane_offset), ("drop_height", drop_height),
                            ("start_angles", start_angles[0]), ("start_angles", start_angles[1])):
            if not math.isfinite(float(value)):
                raise ValueError(f"{name} must be finite, got {value!r}")
        if direction not in (1, -1):
            raise ValueError(f"direction must be 1 (counter-clockwise) or -1, got {direction!r}")
        if not 0 <= wrist_index < HAND_JOINTS:
            raise ValueError(f"wrist_index must index a joint (0..23), got {wrist_index}")
        if max(wrist_chain.joint_indices) >= HAND_JOINTS:
            raise ValueError(f"wrist_chain joint_indices {wrist_chain.joint_indices} are not "
                             f"among the {HAND_JOINTS} joints")
        for name, value in (("drop_penalty", drop_penalty), ("wrist_penalty", wrist_penalty),
                            ("distance_weight", distance_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        self.frame = frame
        self.centre = (float(centre[0]), float(centre[1]))
        self.radii = (float(radii[0]), float(radii[1]))
        self.plane_offset = float(plane_offset)
        self.period = float(period)
        self.direction = int(direction)
        self.start_angles = (float(start_angles[0]), float(start_angles[1]))
        self.wrist_chain = wrist_chain
        self.drop_height = float(drop_height)
        self.wrist_index = int(wrist_index)
        self.wrist_limit = float(wrist_limit)
        self.distance_weight = float(distance_weight)
        self.drop_penalty = float(drop_penalty)
        self.wrist_penalty = float(wrist_penalty)
        self.success_distance = float(success_distance)
        lay = self.layout
        self._joints = lay.slice("joints")
        self._ball1_xy = slice(lay.start("ball1_pos"), lay.start("ball1_pos") + 2)
        self._ball2_xy = slice(lay.start("ball2_pos"), lay.start("ball2_pos") + 2)
        self._ball1_z = lay.start("ball1_pos") + 2
        self._ball2_z = lay.start("ball2_pos") + 2

    def swap_balls(self, states: Tensor) -> Tensor:
        """See :func:`swap_balls`."""
        return swap_balls(states)

    def target_positions(self, steps: Tensor) -> Tensor:
        """Targets ``[..., 6]`` (target 1 xyz, target 2 xyz in ``frame``) at steps."""
        steps = steps.to(torch.float64)
        phase = self.direction * 2.0 * math.pi * steps / self.period
        offset = torch.full_like(phase, self.plane_offset)
        out = []
        for start in self.start_angles:
            a = self.centre[0] + self.radii[0] * torch.cos(phase + start)
            b = self.centre[1] + self.radii[1] * torch.sin(phase + start)
            # palm: the ellipse is in the palm's x-z plane; world: in the x-y plane
            out.extend((a, offset, b) if self.frame == "palm" else (a, b, offset))
        return torch.stack(out, dim=-1).to(torch.float32)

    def episode_goals(self, seed: int, length: int | None = None) -> Tensor:
        length = self._episode_length_arg(length)
        return self.target_positions(torch.arange(length))

    def target_world_xy(self, states: Tensor, goals: Tensor) -> Tensor:
        """World xy of both targets ``[..., 2, 2]`` for ``states [..., S]``, ``goals [..., 6]``.

        Palm frame: the goal points carried into the world by each state's wrist angles.
        """
        points = goals.reshape(*goals.shape[:-1], 2, 3)
        if self.frame == "world":
            return points[..., :2].to(states.dtype)
        world = self.wrist_chain.palm_points_to_world(states[..., self._joints], points)
        return world[..., :2]

    def goal_field_values(self, states: Tensor, goals: Tensor) -> Tensor:
        """``(target1_xy, target2_xy)`` in world xy ``[..., 4]``."""
        xy = self.target_world_xy(states, goals)
        return xy.reshape(*xy.shape[:-2], 4)

    def _distances(self, states: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        targets = self.target_world_xy(states, goals)
        d1 = torch.linalg.vector_norm(states[..., self._ball1_xy] - targets[..., 0, :], dim=-1)
        d2 = torch.linalg.vector_norm(states[..., self._ball2_xy] - targets[..., 1, :], dim=-1)
        return d1, d2

    def reward(self, states: Tensor, actions: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        check_last_dim("states", states, self.state_dim)
        check_last_dim("actions", actions, self.action_dim)
        check_last_dim("goals", goals, self.goal_dim)
        d1, d2 = self._distances(states, goals)
        dropped = (states[..., self._ball1_z] < self.drop_height) | (
            states[..., self._ball2_z] < self.drop_height
        )
        wrist_high = states[..., self.wrist_index] > self.wrist_limit
        reward = (
            (d1 + d2) * -self.distance_weight
            - self.drop_penalty * dropped.to(d1.dtype)
            - self.wrist_penalty * wrist_high.to(d1.dtype)
        )
        return reward, dropped

    def step_error(self, states: Tensor, goals: Tensor) -> Tensor:
        """Mean ball-to-target xy distance ``(d1 + d2) / 2`` in metres."""
        d1, d2 = self._distances(states, goals)
        return 0.5 * (d1 + d2)

    def step_score(self, states: Tensor, goals: Tensor) -> Tensor:
        """PDDM's score ``-(d1 + d2)``."""
        d1, d2 = self._distances(states, goals)
        return -(d1 + d2)

    def episode_success(self, errors: Tensor, dropped: bool) -> bool:
        return (not dropped) and float(errors.mean()) < self.success_distance

    def describe(self) -> dict[str, Any]:
        """Geometry and thresholds as a JSON-able dict (for logs and results folders)."""
        return {
            "name": self.name,
            "frame": self.frame,
            "centre": list(self.centre),
            "radii": list(self.radii),
            "plane_offset": self.plane_offset,
            "period": self.period,
            "direction": self.direction,
            "start_angles": list(self.start_angles),
            "drop_height": self.drop_height,
            "success_distance": self.success_distance,
        }
