"""PDDM's MPPI-style planner: one reward-weighted update of a filtered-noise mean per step.

Per call: mean ``mu [H, A]`` = the (shifted) previous plan, or zeros. Noise
``eps ~ N(0, sigma^2)`` (a ``low_noise_fraction`` of the samples, the last ones, use
``low_noise_scale * sigma``). Samples are low-pass filtered along the horizon,
``u_0 = beta (mu_0 + eps_0) + (1 - beta) a_prev`` and
``u_i = beta (mu_i + eps_i) + (1 - beta) u_(i-1)``, then clipped to ``[-1, 1]``
(the recurrence runs on unclipped values). Weights ``exp(gamma (R - max R))`` over all
samples; the new mean (the returned plan) is the weighted mean of the clipped samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from mbrl_ros.core.planners.base import Planner, PlannerConfig, tunable
from mbrl_ros.core.validation import check_float


@dataclass
class MPPIConfig(PlannerConfig):
    """PDDM's Baoding values are the defaults (H 7, N 700, gamma 20, beta 0.6, sigma 0.9)."""

    gamma: float = tunable(20.0, "gamma", "MPPI reward-weighting temperature (PDDM Baoding "
                           "20)", 0.0, 1e6, runtime=True)
    beta: float = tunable(0.6, "beta", "MPPI action filter coefficient in (0, 1] (PDDM 0.6)",
                          0.0, 1.0, runtime=True)
    sigma: float = tunable(0.9, "sigma", "MPPI sampling noise std (PDDM 0.9)", 0.0, 100.0,
                           runtime=True)
    low_noise_fraction: float = 0.1
    low_noise_scale: float = 0.3

    def __post_init__(self) -> None:
        super().__post_init__()
        name = type(self).__name__
        check_float(f"{name}.gamma", self.gamma, 0.0)
        check_float(f"{name}.beta", self.beta, 0.0, 1.0, low_open=True)
        check_float(f"{name}.sigma", self.sigma, 0.0)
        check_float(f"{name}.low_noise_fraction", self.low_noise_fraction, 0.0, 1.0)
        check_float(f"{name}.low_noise_scale", self.low_noise_scale, 0.0)


def filter_matrix(horizon: int, beta: float, device: torch.device | str = "cpu") -> tuple[
    Tensor, Tensor
]:
    """``(L [H, H], c [H])`` with ``u = L @ x + c * a_prev`` solving the filter recurrence.

    ``L[i, j] = beta (1 - beta)^(i - j)`` for ``j <= i`` (else 0), ``c[i] = (1 - beta)^(i + 1)``.
    """
    i = torch.arange(horizon, dtype=torch.float64)
    lag = i[:, None] - i[None, :]
    keep = 1.0 - beta
    lower = torch.where(lag >= 0, beta * keep ** lag.clamp(min=0), torch.zeros(()))
    carry = keep ** (i + 1.0)
    return lower.to(device, torch.float32), carry.to(device, torch.float32)


def filter_actions(noisy: Tensor, prev_action: Tensor, beta: float) -> Tensor:
    """Apply PDDM's smoothing filter to ``noisy = mu + eps`` of shape ``[N, H, A]``."""
    lower, carry = filter_matrix(noisy.shape[1], beta, noisy.device)
    return torch.matmul(lower, noisy).add_(carry[:, None] * prev_action)


class MPPIPlanner(Planner):
    """One PDDM MPPI update per call; see the module docstring.

    After a call, ``last_samples [N, H, A]`` and ``last_scores [N]`` hold what was scored
    (until the next call, which reuses their memory).
    """

    config_class = MPPIConfig
    config: MPPIConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config
        n = cfg.num_samples
        self._filter = filter_matrix(cfg.horizon, cfg.beta, self.device)
        low = round(cfg.low_noise_fraction * n)
        scale = torch.full((n, 1, 1), cfg.sigma, device=self.device)
        if low > 0:
            scale[n - low:] = cfg.sigma * cfg.low_noise_scale
        self._noise_scale = scale
        self._noise = torch.empty(n, cfg.horizon, self.action_dim, device=self.device)
        self._samples = torch.empty_like(self._noise)
        self.last_samples: Tensor | None = None
        self.last_scores: Tensor | None = None

    def sample_actions(self, mean: Tensor, prev_action: Tensor) -> Tensor:
        """Filtered, clipped samples ``[N, H, A]`` around ``mean`` (fresh noise).

        The result lives in a buffer reused by the next call.
        """
        noise = torch.randn(self._noise.shape, generator=self.generator, device=self.device,
                            out=self._noise)
        noisy = noise.mul_(self._noise_scale).add_(mean)
        lower, carry = self._filter
        if torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            samples = torch.matmul(lower, noisy)
        else:
            samples = torch.matmul(lower, noisy, out=self._samples)
        return samples.add_(carry[:, None] * prev_action).clamp_(-1.0, 1.0)

    def _optimize(
        self,
        state: Tensor,
        goals: Tensor,
        prev_plan: Tensor | None,
        prev_action: Tensor | None,
    ) -> tuple[Tensor, dict[str, Any]]:
        n, h, a = self.config.num_samples, self.horizon, self.action_dim
        mean = prev_plan if prev_plan is not None else torch.zeros(h, a, device=self.device)
        if prev_action is None:
            prev_action = torch.zeros(a, device=self.device)
        samples = self.sample_actions(mean, prev_action)
        scores = self.scorer.scores(state, samples, goals)
        self.last_samples, self.last_scores = samples, scores
        best = torch.max(scores)
        if not bool(torch.isfinite(best)):
            return mean.clone(), {"iterations": 1, "best_score": float(best), "ess": 0.0}
        weights = torch.exp((scores - best).mul_(self.config.gamma))
        total = weights.sum()
        new_mean = (weights @ samples.view(n, h * a)).div_(total).view(h, a)
        ess = float(total * total / (weights * weights).sum())
        return new_mean, {
            "iterations": 1,
            "best_score": float(best),
            "mean_score": float(scores[torch.isfinite(scores)].mean()),
            "ess": ess,
        }
