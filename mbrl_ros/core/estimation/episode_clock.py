"""Which episode and control step a time stamp belongs to (the episode protocol, no ROS).

An episode starts with its first observation, stamped ``t0``; a measurement stamped
``t >= t0`` belongs to it at step ``k = round((t - t0) / control_period)``; a scheduled
episode of ``T`` actions has states for steps ``0..T`` and nothing after; ``T = 0`` means
open-ended. Stamps are integer nanoseconds (ROS time), so step arithmetic is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike


@dataclass(frozen=True)
class EpisodeClock:
    """Step arithmetic and goals of one episode.

    t0_ns: stamp of the episode's first observation. period_ns: control period.
    episode_id: the episode's number. episode_length: actions per episode (states 0..T);
    0 = open-ended. goals: ``(rows, goal_dim)``, row k is the goal at step k; past the last
    row the last goal holds.
    """

    t0_ns: int
    period_ns: int
    episode_id: int = 0
    episode_length: int = 0
    goals: np.ndarray = field(default_factory=lambda: np.zeros((1, 1)))

    def __post_init__(self) -> None:
        if self.period_ns <= 0:
            raise ValueError(f"control period must be > 0 ns, got {self.period_ns}")
        if self.episode_length < 0 or self.episode_id < 0:
            raise ValueError("episode_id and episode_length must be >= 0")
        goals = np.array(self.goals, dtype=np.float64, ndmin=2)
        if goals.ndim != 2 or goals.shape[0] < 1 or goals.shape[1] < 1:
            raise ValueError(f"goals must be (rows >= 1, goal_dim >= 1), got {goals.shape}")
        if not np.all(np.isfinite(goals)):
            raise ValueError("goals have non-finite values")
        goals.setflags(write=False)
        object.__setattr__(self, "goals", goals)

    @classmethod
    def from_schedule(cls, t0_ns: int, period_s: float, episode_id: int, episode_length: int,
                      goals: ArrayLike, goal_dim: int) -> EpisodeClock:
        """From a flat goal list ``goals[t * goal_dim + k]`` (the GoalSchedule layout)."""
        flat = np.asarray(goals, dtype=np.float64).ravel()
        if goal_dim < 1 or flat.size == 0 or flat.size % goal_dim:
            raise ValueError(f"{flat.size} goal values do not make rows of goal_dim {goal_dim}")
        return cls(int(t0_ns), round(period_s * 1e9), int(episode_id), int(episode_length),
                   flat.reshape(-1, goal_dim))

    @property
    def open_ended(self) -> bool:
        return self.episode_length == 0

    @property
    def goal_dim(self) -> int:
        return int(self.goals.shape[1])

    def step_of(self, stamp_ns: int) -> int:
        """``round((stamp - t0) / period)``, halves rounded up; negative before ``t0``."""
        return (2 * (int(stamp_ns) - self.t0_ns) + self.period_ns) // (2 * self.period_ns)

    def stamp_of(self, step: int) -> int:
        """The nominal stamp of ``step``."""
        return self.t0_ns + int(step) * self.period_ns

    def belongs(self, stamp_ns: int) -> bool:
        """True if a measurement stamped ``stamp_ns`` is part of this episode's steps."""
        if int(stamp_ns) < self.t0_ns:
            return False
        return self.open_ended or self.step_of(stamp_ns) <= self.episode_length

    def is_over(self, stamp_ns: int) -> bool:
        """True for a stamp after the final step of a scheduled episode."""
        return not self.open_ended and self.step_of(stamp_ns) > self.episode_length

    def is_last(self, step: int) -> bool:
        """True for the final state of a scheduled episode (step T): nothing follows it."""
        return not self.open_ended and int(step) >= self.episode_length

    def goal_at(self, step: int) -> np.ndarray:
        """Goal row ``step`` (the last row past the end)."""
        return self.goals[min(max(int(step), 0), self.goals.shape[0] - 1)].copy()
