"""Gradient-based planning: Adam on the action sequence through the differentiable ensemble.

Bounds are kept by projection: after every Adam step the actions are clamped back into
``[-1, 1]`` (projected gradient ascent; no tanh, so the optimizer can reach the bounds).
Several restarts are optimized together as one batch: restart 0 starts from the seed plan
(the ``init_planner``'s plan if one is given, else the warm-start plan, else zeros), the
others from the seed plan plus Gaussian noise of ``init_std``. The best sequence seen over
all restarts and iterations (scored without noise) is returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mbrl_ros.core.planners.base import Planner, PlannerConfig, tunable
from mbrl_ros.core.validation import check_float, check_int


@dataclass
class GradientConfig(PlannerConfig):
    """``num_samples`` is the number of restarts optimized in parallel."""

    num_samples: int = tunable(8, "gradient.restarts", "gradient planner: sequences optimized "
                               "in parallel (it ignores num_samples)", 1, 100_000)
    iterations: int = tunable(20, "gradient.iterations", "gradient planner: Adam steps per "
                              "plan", 1, 100_000)
    learning_rate: float = tunable(0.05, "gradient.learning_rate", "gradient planner: Adam "
                                   "step size", 1e-9, 10.0)
    init_std: float = tunable(0.3, "gradient.init_std", "gradient planner: noise of the "
                              "restarts around the warm start", 0.0, 10.0)

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        check_int(f"{name}.iterations", self.iterations, 1)
        check_float(f"{name}.learning_rate", self.learning_rate, 0.0, low_open=True)
        check_float(f"{name}.init_std", self.init_std, 0.0)


class GradientPlanner(Planner):
    """Projected Adam over ``[restarts, H, A]``; optionally refines another planner's plan."""

    config_class = GradientConfig
    config: GradientConfig

    def __init__(self, *args: Any, init_planner: Planner | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if init_planner is not None and init_planner.horizon != self.horizon:
            raise ValueError(f"init_planner horizon {init_planner.horizon} differs from "
                             f"{self.horizon}")
        self.init_planner = init_planner

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        init_planner = getattr(self, "init_planner", None)
        if init_planner is not None:
            init_planner.set_model(model)

    def _optimize(
        self,
        state: Tensor,
        goals: Tensor,
        prev_plan: Tensor | None,
        prev_action: Tensor | None,
    ) -> tuple[Tensor, dict[str, Any]]:
        cfg = self.config
        r, h, a = cfg.num_samples, self.horizon, self.action_dim
        stats: dict[str, Any] = {"iterations": cfg.iterations, "samples": r}
        if self.init_planner is not None:
            seeded = self.init_planner.plan(state, goals, prev_plan, prev_action)
            seed_plan = seeded.actions
            stats["init_time_ms"] = seeded.stats["time_ms"]
        elif prev_plan is not None:
            seed_plan = prev_plan
        else:
            seed_plan = torch.zeros(h, a, device=self.device)
        start = seed_plan.expand(r, h, a).clone()
        if r > 1 and cfg.init_std > 0:
            noise = torch.randn(r - 1, h, a, generator=self.generator, device=self.device)
            start[1:].add_(noise.mul_(cfg.init_std)).clamp_(-1.0, 1.0)

        best_scores = torch.full((r,), -torch.inf, device=self.device)
        best_plans = start.clone()
        with torch.inference_mode(False), torch.enable_grad():
            state = state.clone()
            goals = goals.clone()
            actions = start.clone().requires_grad_(True)
            optimizer = torch.optim.Adam([actions], lr=cfg.learning_rate, maximize=True)
            for _ in range(cfg.iterations):
                scores = self.scorer.scores(state, actions, goals)
                (grad,) = torch.autograd.grad(scores.sum(), actions)
                self._keep_best(scores.detach(), actions.detach(), best_scores, best_plans)
                if not bool(torch.isfinite(grad).all()):
                    break
                actions.grad = grad
                optimizer.step()
                with torch.no_grad():
                    actions.clamp_(-1.0, 1.0)
        with torch.no_grad():
            final = actions.detach()
            self._keep_best(self.scorer.scores(state, final, goals), final, best_scores, best_plans)
        best = int(torch.argmax(best_scores))
        stats["best_score"] = float(best_scores[best])
        return best_plans[best], stats

    @staticmethod
    def _keep_best(scores: Tensor, plans: Tensor, best_scores: Tensor, best_plans: Tensor) -> None:
        scores = torch.nan_to_num(scores, nan=-torch.inf)
        better = scores > best_scores
        best_scores.copy_(torch.where(better, scores, best_scores))
        best_plans.copy_(torch.where(better[:, None, None], plans, best_plans))
