"""Planners over a learned ensemble: random shooting, CEM, PDDM's MPPI, gradient refinement."""

from __future__ import annotations

from typing import Any

import torch

from mbrl_ros.core.planners.base import DynamicsModel, Planner, PlannerConfig, PlanResult
from mbrl_ros.core.planners.cem import CEMConfig, CEMPlanner
from mbrl_ros.core.planners.gradient import GradientConfig, GradientPlanner
from mbrl_ros.core.planners.memory import tune_malloc_for_planning
from mbrl_ros.core.planners.mppi import MPPIConfig, MPPIPlanner, filter_actions, filter_matrix
from mbrl_ros.core.planners.random_shooting import RandomShootingConfig, RandomShootingPlanner
from mbrl_ros.core.planners.rollout import (
    PlanEvaluation,
    TrajectoryScorer,
    mask_after_termination,
)
from mbrl_ros.core.tasks.base import Task

PLANNERS: dict[str, type[Planner]] = {
    "random": RandomShootingPlanner,
    "cem": CEMPlanner,
    "mppi": MPPIPlanner,
    "gradient": GradientPlanner,
}


def make_planner(
    name: str,
    model: DynamicsModel,
    task: Task,
    device: str | torch.device | None = None,
    **config: Any,
) -> Planner:
    """Build a registered planner; ``config`` holds its config fields (e.g. ``gamma=10``)."""
    try:
        cls = PLANNERS[name]
    except KeyError:
        raise ValueError(f"unknown planner {name!r}; known planners: {sorted(PLANNERS)}") from None
    try:
        cfg = cls.config_class(**config)
    except TypeError as exc:
        raise ValueError(f"bad parameters for planner {name!r}: {exc}") from exc
    return cls(model, task, cfg, device=device)


__all__ = [
    "PLANNERS",
    "CEMConfig",
    "CEMPlanner",
    "DynamicsModel",
    "GradientConfig",
    "GradientPlanner",
    "MPPIConfig",
    "MPPIPlanner",
    "PlanEvaluation",
    "PlanResult",
    "Planner",
    "PlannerConfig",
    "RandomShootingConfig",
    "RandomShootingPlanner",
    "TrajectoryScorer",
    "filter_actions",
    "filter_matrix",
    "make_planner",
    "mask_after_termination",
    "tune_malloc_for_planning",
]
