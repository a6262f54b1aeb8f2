"""PDDM's Baoding-balls task: two balls tracking targets that circle an ellipse in the palm.

State (40): 24 joint angles, ball 1 position (3) and velocity (3), ball 2 position (3) and
velocity (3), target 1 xy (2), target 2 xy (2).
Reward per step: ``-5 d1 - 5 d2 - 500 [a ball's z < 0.06] - 10 [wrist angle state[1] > 0.15]``
with ``d_i`` the xy distance of ball i to target i; a drop terminates the episode.
PDDM's score per step is ``-(d1 + d2)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

import torch
from torch import Tensor

from mbrl_ros.core.tasks.base import StateLayout, Task, check_last_dim, check_positive

NUM_JOINTS = 24

BAODING_LAYOUT = StateLayout(
    (
        ("joints", NUM_JOINTS),
        ("ball1_pos", 3),
        ("ball1_vel", 3),
        ("ball2_pos", 3),
        ("ball2_vel", 3),
        ("target1_xy", 2),
        ("target2_xy", 2),
    )
)

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


class BaodingTask(Task):
    """Baoding balls (PDDM). Defaults are PDDM's; geometry is configurable.

    Targets: target i sits at ``centre + R(rotation) (x_radius cos θ_i, y_radius sin θ_i)``
    with ``θ_i(k) = start_angles[i] + direction 2π k / period`` at step ``k``
    (``direction`` +1 counter-clockwise, -1 clockwise), expressed in ``frame``.
    The schedule is the same for every seed.

    Success: no drop and the mean over steps of ``(d1 + d2) / 2`` is below
    ``success_distance`` (default 0.02 m), i.e. each ball stays on average within 2 cm of
    its moving target. ``tracking_error`` is that mean in metres.
    """

    def __init__(
        self,
        centre: tuple[float, float] = (0.005, 0.055),
        x_radius: float = 0.02,
        y_radius: float = 0.036,
        period: int = 60,
        direction: int = 1,
        start_angles: tuple[float, float] = (3.0 * math.pi / 4.0, -math.pi / 4.0),
        rotation: float = 0.0,
        frame: str = "world",
        drop_height: float = 0.06,
        wrist_index: int = 1,
        wrist_limit: float = 0.15,
        distance_weight: float = 5.0,
        drop_penalty: float = 500.0,
        wrist_penalty: float = 10.0,
        success_distance: float = 0.02,
        episode_length: int = 100,
    ) -> None:
        super().__init__(
            name="baoding",
            layout=BAODING_LAYOUT,
            action_dim=NUM_JOINTS,
            goal_dim=4,
            episode_length=episode_length,
            goal_fields=("target1_xy", "target2_xy"),
            termination_reward=-float(drop_penalty),
        )
        if len(centre) != 2 or len(start_angles) != 2:
            raise ValueError("centre and start_angles must each have two entries")
        for name, value in (
            ("x_radius", x_radius),
            ("y_radius", y_radius),
            ("period", period),
            ("success_distance", success_distance),
        ):
            check_positive(name, float(value))
        if direction not in (1, -1):
            raise ValueError(f"direction must be 1 (counter-clockwise) or -1, got {direction!r}")
        if not 0 <= wrist_index < NUM_JOINTS:
            raise ValueError(f"wrist_index must index a joint (0..23), got {wrist_index}")
        for name, value in (("drop_penalty", drop_penalty), ("wrist_penalty", wrist_penalty),
                            ("distance_weight", distance_weight)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be finite and >= 0, got {value!r}")
        self.centre = (float(centre[0]), float(centre[1]))
        self.x_radius = float(x_radius)
        self.y_radius = float(y_radius)
        self.period = float(period)
        self.direction = int(direction)
        self.start_angles = (float(start_angles[0]), float(start_angles[1]))
        self.rotation = float(rotation)
        self.frame = str(frame)
        self.drop_height = float(drop_height)
        self.wrist_index = int(wrist_index)
        self.wrist_limit = float(wrist_limit)
        self.distance_weight = float(distance_weight)
        self.drop_penalty = float(drop_penalty)
        self.wrist_penalty = float(wrist_penalty)
        self.success_distance = float(success_distance)
        lay = self.layout
        self._ball1_xy = slice(lay.start("ball1_pos"), lay.start("ball1_pos") + 2)
        self._ball2_xy = slice(lay.start("ball2_pos"), lay.start("ball2_pos") + 2)
        self._ball1_z = lay.start("ball1_pos") + 2
        self._ball2_z = lay.start("ball2_pos") + 2

    def swap_balls(self, states: Tensor) -> Tensor:
        """See :func:`swap_balls`."""
        return swap_balls(states)

    def target_positions(self, steps: Tensor) -> Tensor:
        """Targets ``[..., 4]`` (target 1 xy, target 2 xy) at (possibly fractional) steps."""
        steps = steps.to(torch.float64)
        phase = self.direction * 2.0 * math.pi * steps / self.period
        out = []
        c, s = math.cos(self.rotation), math.sin(self.rotation)
        for start in self.start_angles:
            ex = self.x_radius * torch.cos(phase + start)
            ey = self.y_radius * torch.sin(phase + start)
            out.append(self.centre[0] + c * ex - s * ey)
            out.append(self.centre[1] + s * ex + c * ey)
        return torch.stack(out, dim=-1).to(torch.float32)

    def episode_goals(self, seed: int, length: int | None = None) -> Tensor:
        length = self._episode_length_arg(length)
        return self.target_positions(torch.arange(length))

    def _distances(self, states: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        d1 = torch.linalg.vector_norm(states[..., self._ball1_xy] - goals[..., 0:2], dim=-1)
        d2 = torch.linalg.vector_norm(states[..., self._ball2_xy] - goals[..., 2:4], dim=-1)
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
            "x_radius": self.x_radius,
            "y_radius": self.y_radius,
            "period": self.period,
            "direction": self.direction,
            "start_angles": list(self.start_angles),
            "rotation": self.rotation,
            "drop_height": self.drop_height,
            "success_distance": self.success_distance,
        }
