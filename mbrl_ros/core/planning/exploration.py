"""PDDM's random exploration policy for a position-controlled hand.

Instead of independent uniform actions (which make a position-controlled hand jerk), PDDM
samples a random *velocity* per joint, magnitude uniform in ``[vel_min, vel_max]`` with a
random sign, holds it for ``hold_steps`` steps and integrates it into the normalized action:
``a_t = clip(a_(t-1) + v, -1, 1)``. When a new velocity is drawn, a joint whose action sits
at a limit is sent back inward. The first action of an episode is uniform in ``[-1, 1]``
(PDDM) or zero (the task keyframe pose). Each episode has its own seed derived from the
base seed and the episode id, so an episode's exploration is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

INITIAL_ACTIONS = ("uniform", "zero")


@dataclass(frozen=True)
class ExplorationConfig:
    """PDDM's values are the defaults (velocities 0.05-0.15 per step, held 2 steps)."""

    vel_min: float = 0.05
    vel_max: float = 0.15
    hold_steps: int = 2
    initial_action: str = "uniform"

    def __post_init__(self) -> None:
        lo, hi = float(self.vel_min), float(self.vel_max)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0.0 <= lo <= hi <= 2.0):
            raise ValueError(f"exploration velocities need 0 <= vel_min <= vel_max <= 2, got "
                             f"{self.vel_min} and {self.vel_max}")
        if isinstance(self.hold_steps, bool) or int(self.hold_steps) != self.hold_steps \
                or self.hold_steps < 1:
            raise ValueError(f"exploration hold_steps must be an int >= 1, got "
                             f"{self.hold_steps!r}")
        if self.initial_action not in INITIAL_ACTIONS:
            raise ValueError(f"exploration initial_action must be one of {INITIAL_ACTIONS}, "
                             f"got {self.initial_action!r}")


def episode_seed(seed: int, episode_id: int) -> np.random.SeedSequence:
    """The seed of one episode's exploration: a function of (base seed, episode id)."""
    if seed < 0 or episode_id < 0:
        raise ValueError(f"seed and episode_id must be >= 0, got {seed} and {episode_id}")
    return np.random.SeedSequence([int(seed), int(episode_id)])


class RandomVelocityExploration:
    """Stateful per-episode random-velocity policy; call :meth:`reset` at episode start."""

    def __init__(self, action_dim: int, config: ExplorationConfig | None = None,
                 seed: int = 0) -> None:
        if action_dim < 1:
            raise ValueError(f"action_dim must be >= 1, got {action_dim}")
        self.action_dim = int(action_dim)
        self.config = ExplorationConfig() if config is None else config
        self.seed = int(seed)
        self.episode_id = 0
        self.reset(0)

    def reset(self, episode_id: int) -> None:
        """Start an episode: fresh generator seeded from (seed, episode_id), no action yet."""
        self.episode_id = int(episode_id)
        self._rng = np.random.default_rng(episode_seed(self.seed, self.episode_id))
        self._action: np.ndarray | None = None
        self._velocity = np.zeros(self.action_dim)
        self.steps = 0

    @property
    def last_action(self) -> np.ndarray | None:
        """The action returned by the last :meth:`act` of this episode (a copy)."""
        return None if self._action is None else self._action.copy()

    def _draw_velocity(self) -> np.ndarray:
        cfg = self.config
        speed = self._rng.uniform(cfg.vel_min, cfg.vel_max, self.action_dim)
        sign = np.where(self._rng.integers(0, 2, self.action_dim) == 0, -1.0, 1.0)
        return speed * sign

    def act(self) -> np.ndarray:
        """The next action ``[A]`` in ``[-1, 1]`` (one call per control step)."""
        cfg = self.config
        if self._action is None:
            if cfg.initial_action == "uniform":
                action = self._rng.uniform(-1.0, 1.0, self.action_dim)
            else:
                action = np.zeros(self.action_dim)
            self._velocity = self._draw_velocity()
        else:
            if self.steps % cfg.hold_steps == 0:
                velocity = self._draw_velocity()
                # A joint sitting at a limit turns back inward.
                velocity = np.where(self._action <= -1.0, np.abs(velocity), velocity)
                self._velocity = np.where(self._action >= 1.0, -np.abs(velocity), velocity)
            action = np.clip(self._action + self._velocity, -1.0, 1.0)
        self._action = action
        self.steps += 1
        return action.copy()
