"""What goes in and out of the planner's control loop: settings, states, commands.

:class:`PlannerSettings` names a core planner and its config fields; :class:`StateInput` is
one task state with its goal window and episode bounds; :class:`Command` is what the loop
decides to send for a state or tick, with the plan and statistics behind it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from mbrl_ros.core.planners import PLANNERS, DynamicsModel, Planner, PlanResult, make_planner
from mbrl_ros.core.tasks.base import Task

POLICIES = ("auto", "explore", "plan")
EXPLORATION, HOLD = "exploration", "hold"
# What PlannerStats calls the core's planners.
_STATS_NAMES = {"random": "random_shooting"}


@dataclass(frozen=True)
class PlannerSettings:
    """Which core planner to build and with what config fields (``horizon``, ``gamma``...)."""

    name: str = "mppi"
    options: Mapping[str, Any] = field(default_factory=dict)
    device: str = "cpu"

    def problem(self) -> str | None:
        """Why these settings cannot build a planner, or None."""
        if self.name not in PLANNERS:
            return f"unknown planner {self.name!r}; known: {sorted(PLANNERS)}"
        try:
            PLANNERS[self.name].config_class(**dict(self.options))
        except (TypeError, ValueError) as exc:
            return f"bad settings for planner {self.name!r}: {exc}"
        return None

    @property
    def horizon(self) -> int:
        return int(dict(self.options).get("horizon", PLANNERS[self.name].config_class.horizon))

    @property
    def stats_name(self) -> str:
        return _STATS_NAMES.get(self.name, self.name)

    def build(self, model: DynamicsModel, task: Task) -> Planner:
        return make_planner(self.name, model, task, device=self.device, **dict(self.options))


@dataclass(frozen=True)
class StateInput:
    """One task state as the loop sees it.

    ``goals [R, G]`` are goal rows; the plan from this state uses rows ``goal_start ..
    goal_start + H - 1`` (the last row repeated), i.e. schedule rows ``k+1 .. k+H`` of an
    episode schedule, or one row repeated without a schedule. ``episode_length`` 0 means
    open-ended. ``received``: monotonic seconds at receipt (for the realtime state timeout).
    """

    episode_id: int
    step: int
    state: np.ndarray
    goals: np.ndarray
    goal_start: int = 0
    episode_length: int = 0
    stale: bool = False
    received: float = 0.0

    @property
    def key(self) -> tuple[int, int]:
        return self.episode_id, self.step

    @property
    def acts(self) -> bool:
        """Whether this state gets a command (step < episode length, or open-ended)."""
        return self.episode_length == 0 or self.step < self.episode_length


@dataclass
class Command:
    """What to send for one state/tick. ``action`` is ``None`` only for a hold with nothing
    commanded yet in this episode (the caller then holds the measured pose).

    ``plan [rows, A]``: the remaining planned actions (the action itself for exploration and
    hold). ``result``: the plan behind it, for lazy predictions (None unless a fresh plan).
    """

    episode_id: int
    step: int
    action: np.ndarray | None
    plan: np.ndarray
    source: str
    model_version: int
    plan_latency_ms: float
    fallback: bool
    deadline_misses: int
    ticks: int
    num_samples: int
    horizon: int
    result: PlanResult | None = None
    note: str = ""

    @property
    def key(self) -> tuple[int, int]:
        return self.episode_id, self.step
