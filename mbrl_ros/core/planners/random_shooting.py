"""Random shooting: score uniform action sequences, keep the best."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mbrl_ros.core.planners.base import Planner, PlannerConfig


@dataclass
class RandomShootingConfig(PlannerConfig):
    """``include_previous``: the warm-start plan, when given, is one of the candidates."""

    include_previous: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        if not isinstance(self.include_previous, bool):
            raise ValueError("RandomShootingConfig.include_previous must be a bool")


class RandomShootingPlanner(Planner):
    """Uniform samples in ``[-1, 1]^(H x A)``; returns the highest-scoring sequence."""

    config_class = RandomShootingConfig
    config: RandomShootingConfig

    def _optimize(
        self,
        state: Tensor,
        goals: Tensor,
        prev_plan: Tensor | None,
        prev_action: Tensor | None,
    ) -> tuple[Tensor, dict[str, Any]]:
        n, h, a = self.config.num_samples, self.horizon, self.action_dim
        samples = torch.rand(n, h, a, generator=self.generator, device=self.device)
        samples.mul_(2.0).sub_(1.0)
        if prev_plan is not None and self.config.include_previous:
            samples[0] = prev_plan
        scores = self.scorer.scores(state, samples, goals)
        best = int(torch.argmax(scores))
        return samples[best], {
            "iterations": 1,
            "best_score": float(scores[best]),
            "mean_score": float(scores[torch.isfinite(scores)].mean()),
        }
