"""Scoring of candidate action sequences on an ensemble: the one place planners share.

``N`` sequences ``[N, H, A]`` are rolled through all ``E`` members at once: each horizon
step is one ``model.predict`` call on ``[E, P * N, S]`` states (``P`` particles per sample),
so members never share a trajectory. The scheduled goal is written into every predicted
state (the model predicts the physics, the schedule fixes the goal fields), the task
rewards every step, and returns are summed over the horizon.

Termination (PDDM): once a member's rollout terminated (e.g. a ball fell) at step ``k``,
step ``k`` keeps its own reward (which includes the drop penalty) and every later step of
that rollout is booked at ``task.termination_reward`` (Baoding: -500), whatever its
predicted state. Scores: the return is averaged over particles, then
``score = mean over members - risk_lambda * std over members`` (population std).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from mbrl_ros.core.tasks.base import Task

if TYPE_CHECKING:
    from mbrl_ros.core.planners.base import DynamicsModel


def mask_after_termination(rewards: Tensor, terminated: Tensor, value: float) -> Tensor:
    """Replace rewards ``[H, ...]`` of steps strictly after the first termination by ``value``."""
    ended = torch.cumsum(terminated, dim=0, dtype=torch.int32) > 0
    ended_before = torch.zeros_like(ended)
    ended_before[1:] = ended[:-1]
    return torch.where(ended_before, torch.as_tensor(value, dtype=rewards.dtype), rewards)


@dataclass
class PlanEvaluation:
    """The rollout of one plan: ensemble-mean states ``[H + 1, S]`` and summary numbers."""

    states: Tensor
    mean_return: float
    score: float
    disagreement: float


class TrajectoryScorer:
    """Rolls candidate action sequences through an ensemble and scores them."""

    def __init__(
        self,
        model: DynamicsModel,
        task: Task,
        risk_lambda: float = 0.0,
        particles: int = 1,
        sample_dynamics: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        if risk_lambda < 0 or particles < 1:
            raise ValueError(f"need risk_lambda >= 0 and particles >= 1, got "
                             f"{risk_lambda} and {particles}")
        self.model = model
        self.task = task
        self.risk_lambda = float(risk_lambda)
        self.particles = int(particles)
        self.sample_dynamics = bool(sample_dynamics)
        self.generator = generator
        self._states_buffer: Tensor | None = None  # reused by no-grad rollouts

    def snapshot(self) -> TrajectoryScorer:
        """A scorer on the current model and settings with its own random generator.

        For evaluations that may run later or in another thread than the planner.
        """
        generator = None
        if self.sample_dynamics:
            source = self.generator
            seed = int(torch.randint(0, 2**62, (1,), generator=source,
                                     device=source.device if source is not None else "cpu"))
            device = source.device if source is not None else torch.device("cpu")
            generator = torch.Generator(device=device).manual_seed(seed)
        return TrajectoryScorer(self.model, self.task, self.risk_lambda, self.particles,
                                self.sample_dynamics, generator)

    def rollout(self, state: Tensor, actions: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        """Predicted states ``[H, E, P * N, S]`` and returns ``[E, P, N]``.

        ``state [S]``, ``actions [N, H, A]``, ``goals [H, G]``. Differentiable when grad is
        enabled (then goals are inserted out of place).
        """
        n, h, _ = actions.shape
        e, p = self.model.num_members, self.particles
        per_step = actions.transpose(0, 1)  # [H, N, A]
        if p > 1:
            per_step = per_step.repeat(1, p, 1)  # particle-major: index = particle * N + sample
        insert = self.task.insert_goal if torch.is_grad_enabled() else self.task.insert_goal_
        current = state.expand(n * p, state.shape[-1])
        predicted = []
        for k in range(h):
            current = self.model.predict(
                current, per_step[k], sample=self.sample_dynamics, generator=self.generator
            )
            current = insert(current, goals[k])
            predicted.append(current)
        states = self._stack(predicted)
        rewards, terminated = self.task.reward(states, per_step.unsqueeze(1), goals[:, None, None])
        rewards = mask_after_termination(rewards, terminated, self.task.termination_reward)
        return states, rewards.sum(dim=0).view(e, p, n)

    def _stack(self, predicted: list[Tensor]) -> Tensor:
        """``torch.stack``; under plain no_grad into a reused buffer (no allocation per call).

        The returned tensor is overwritten by the next no-grad rollout of the same size.
        """
        if torch.is_grad_enabled() or torch.is_inference_mode_enabled():
            return torch.stack(predicted)
        shape = (len(predicted), *predicted[0].shape)
        buf = self._states_buffer
        first = predicted[0]
        if buf is None or buf.shape != shape or buf.dtype != first.dtype or (
            buf.device != first.device
        ):
            buf = torch.empty(shape, dtype=first.dtype, device=first.device)
            self._states_buffer = buf
        return torch.stack(predicted, out=buf)

    def member_returns(self, returns: Tensor) -> Tensor:
        """Per-member returns ``[E, N]`` (mean over particles) from ``[E, P, N]``."""
        return returns.mean(dim=1) if returns.shape[1] > 1 else returns[:, 0]

    def score_returns(self, returns: Tensor) -> Tensor:
        """Scores ``[N]`` from returns ``[E, P, N]``: mean - risk_lambda * std over members."""
        per_member = self.member_returns(returns)
        score = per_member.mean(dim=0)
        if self.risk_lambda > 0.0 and per_member.shape[0] > 1:
            score = score - self.risk_lambda * per_member.std(dim=0, correction=0)
        return score

    def scores(self, state: Tensor, actions: Tensor, goals: Tensor) -> Tensor:
        """Scores ``[N]`` of action sequences ``[N, H, A]``; non-finite scores become -inf."""
        _, returns = self.rollout(state, actions, goals)
        score = self.score_returns(returns)
        if torch.is_grad_enabled():
            return score
        return torch.nan_to_num_(score, nan=-torch.inf, posinf=-torch.inf)

    def evaluate(self, state: Tensor, plan: Tensor, goals: Tensor) -> PlanEvaluation:
        """Roll one plan ``[H, A]`` out: mean trajectory, return, score and disagreement."""
        with torch.inference_mode():
            states, returns = self.rollout(state, plan.unsqueeze(0), goals)
            h, e = states.shape[0], states.shape[1]
            per_member = states.view(h, e, self.particles, -1).mean(dim=2)  # [H, E, S]
            mean_states = torch.cat((state.unsqueeze(0), per_member.mean(dim=1)), dim=0)
            disagreement = float(per_member.std(dim=1, correction=0).mean()) if e > 1 else 0.0
            mean_return = float(self.member_returns(returns).mean())
            score = float(self.score_returns(returns)[0])
        return PlanEvaluation(
            states=mean_states.clone(),  # a normal tensor (not an inference tensor)
            mean_return=mean_return,
            score=score,
            disagreement=disagreement,
        )
