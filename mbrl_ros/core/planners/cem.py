"""Cross-entropy method: refit a diagonal Gaussian over action sequences to the elites."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mbrl_ros.core.planners.base import Planner, PlannerConfig, tunable
from mbrl_ros.core.validation import check_float, check_int


@dataclass
class CEMConfig(PlannerConfig):
    """CEM settings.

    Each iteration samples ``num_samples`` sequences from N(mean, std^2) clipped to the box
    (candidate 0 is the mean itself when ``include_mean``), keeps the ``num_elites`` best
    and refits ``mean = alpha * mean + (1 - alpha) * elite mean`` and likewise the std,
    floored at ``min_std``. ``warm_start``: the initial mean is the (shifted) previous plan
    instead of zeros. The returned plan is the best sequence scored in any iteration.
    """

    iterations: int = tunable(5, "cem.iterations", "CEM refits per plan", 1, 1000)
    num_elites: int = tunable(50, "cem.num_elites", "CEM elites kept per iteration (<= "
                              "num_samples)", 1, 1_000_000)
    init_std: float = tunable(0.5, "cem.init_std", "CEM initial sampling std", 1e-6, 10.0)
    min_std: float = tunable(0.05, "cem.min_std", "CEM floor of the sampling std", 0.0, 10.0)
    alpha: float = tunable(0.0, "cem.alpha", "CEM smoothing of mean/std between iterations",
                           0.0, 0.999)
    warm_start: bool = True
    include_mean: bool = True

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        check_int(f"{name}.iterations", self.iterations, 1)
        check_int(f"{name}.num_elites", self.num_elites, 1)
        if self.num_elites > self.num_samples:
            raise ValueError(f"{name}.num_elites ({self.num_elites}) must not exceed "
                             f"num_samples ({self.num_samples})")
        check_float(f"{name}.init_std", self.init_std, 0.0, low_open=True)
        check_float(f"{name}.min_std", self.min_std, 0.0)
        check_float(f"{name}.alpha", self.alpha, 0.0, 1.0, high_open=True)
        for flag in ("warm_start", "include_mean"):
            if not isinstance(getattr(self, flag), bool):
                raise ValueError(f"{name}.{flag} must be a bool")


class CEMPlanner(Planner):
    """Iterated elite refitting; see :class:`CEMConfig`."""

    config_class = CEMConfig
    config: CEMConfig

    def _optimize(
        self,
        state: Tensor,
        goals: Tensor,
        prev_plan: Tensor | None,
        prev_action: Tensor | None,
    ) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        n, h, a = cfg.num_samples, self.horizon, self.action_dim
        if prev_plan is not None and cfg.warm_start:
            mean = prev_plan.clone()
        else:
            mean = torch.zeros(h, a, device=self.device)
        std = torch.full((h, a), cfg.init_std, device=self.device)
        samples = torch.empty(n, h, a, device=self.device)
        best_plan, best_score = mean.clone(), -torch.inf
        for _ in range(cfg.iterations):
            torch.randn(n, h, a, generator=self.generator, out=samples)
            samples.mul_(std).add_(mean).clamp_(-1.0, 1.0)
            if cfg.include_mean:
                samples[0] = mean
            scores = self.scorer.scores(state, samples, goals)
            top_scores, top = torch.topk(scores, cfg.num_elites)
            if float(top_scores[0]) > best_score:
                best_score = float(top_scores[0])
                best_plan = samples[top[0]].clone()
            elites = samples.index_select(0, top)
            mean = cfg.alpha * mean + (1.0 - cfg.alpha) * elites.mean(dim=0)
            fitted = elites.std(dim=0, correction=0)
            std = (cfg.alpha * std + (1.0 - cfg.alpha) * fitted).clamp_(min=cfg.min_std)
        return best_plan, {
            "iterations": cfg.iterations,
            "samples": n * cfg.iterations,
            "best_score": best_score,
            "final_std": float(std.mean()),
        }
