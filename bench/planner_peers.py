"""Peer MPPI planners (pytorch-mppi, torchrl) wrapped around our ensemble for the planner bench.

Both peers plan over an "ensemble state": the E members' predicted states side by side
(``E * S`` numbers), so members never share a trajectory, exactly as our scorer rolls them.
Each horizon step is one ``EnsembleDynamics.predict`` call for all samples and members (our
call), the scheduled goal of that step is written into the predicted states (as we do) and
the step's reward is the members' mean Baoding reward. So a peer plan costs the same
``N x E x H`` network passes and the same reward arithmetic as ours; what differs is each
library's own sampling, weighting and bookkeeping, which is what a user of it gets.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from mbrl_ros.core.models.ensemble import EnsembleDynamics
from mbrl_ros.core.tasks import BaodingTask


def member_major(ensemble_state: Tensor, members: int, state_dim: int) -> Tensor:
    """``[K, E * S]`` side-by-side member states -> ``[E, K, S]`` (what ``predict`` takes)."""
    k = ensemble_state.shape[0]
    return ensemble_state.view(k, members, state_dim).transpose(0, 1)


def side_by_side(states: Tensor) -> Tensor:
    """``[E, K, S]`` -> ``[K, E * S]`` (inverse of :func:`member_major`)."""
    e, k, s = states.shape
    return states.transpose(0, 1).reshape(k, e * s)


class PytorchMPPIPeer:
    """pytorch-mppi's ``MPPI`` on our ensemble: lambda = 1 / gamma, noise N(0, sigma^2).

    ``command`` returns the first action (pytorch-mppi keeps and shifts its own plan).
    """

    def __init__(self, model: EnsembleDynamics, task: BaodingTask, goals: Tensor,
                 num_samples: int, horizon: int, gamma: float, sigma: float = 0.9,
                 device: str | torch.device = "cpu") -> None:
        from pytorch_mppi import MPPI

        e, s, a = model.num_members, model.state_dim, model.action_dim
        self.members = e

        def dynamics(state: Tensor, action: Tensor, t: int) -> Tensor:
            nxt = model.predict(member_major(state, e, s), action)
            task.insert_goal_(nxt, goals[t])
            return side_by_side(nxt)

        def running_cost(state: Tensor, action: Tensor, t: int) -> Tensor:
            reward, _ = task.reward(state.view(state.shape[0], e, s), action[:, None], goals[t])
            return -reward.mean(dim=1)

        self.mppi = MPPI(
            dynamics,
            running_cost,
            nx=e * s,
            noise_sigma=torch.eye(a, device=device) * sigma**2,
            num_samples=num_samples,
            horizon=horizon,
            lambda_=1.0 / gamma,
            u_min=-torch.ones(a, device=device),
            u_max=torch.ones(a, device=device),
            step_dependent_dynamics=True,
            device=device,
        )

    def command(self, state: Tensor) -> Tensor:
        with torch.no_grad():
            return self.mppi.command(state.repeat(self.members))


class _EnsembleStep(nn.Module):
    """One model step for torchrl: (ensemble state, step index, action) -> next ones + reward."""

    def __init__(self, model: EnsembleDynamics, task: BaodingTask, goals: Tensor) -> None:
        super().__init__()
        self.model, self.task, self.goals = model, task, goals
        self.last = goals.shape[0] - 1

    def forward(self, ensemble_state: Tensor, step: Tensor,
                action: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        e, s = self.model.num_members, self.model.state_dim
        nxt = self.model.predict(member_major(ensemble_state, e, s), action)
        # All candidates are at the same step: index with a 0-d tensor (no host sync on CUDA).
        goal = self.goals[step.reshape(-1)[0].clamp(max=self.last)]
        self.task.insert_goal_(nxt, goal)
        reward, _ = self.task.reward(nxt, action, goal)
        return side_by_side(nxt), step + 1, reward.mean(dim=0).unsqueeze(-1)


class _ReturnAdvantage(nn.Module):
    """MPPI's weight input: the horizon return minus the best return over the candidates.

    Subtracting the maximum only keeps ``exp(temperature * advantage)`` from underflowing to
    0/0 when every candidate's return is large and negative (e.g. a predicted drop); the
    normalized weights are the same as with the raw return.
    """

    def forward(self, tensordict: Any) -> Any:
        reward = tensordict.get(("next", "reward"))  # [..., K, H, 1]
        total = reward.sum(dim=-2, keepdim=True)
        total = total - total.amax(dim=-3, keepdim=True)
        tensordict.set("advantage", total.expand_as(reward))
        return tensordict


class TorchRLMPPIPeer:
    """torchrl's ``MPPIPlanner`` on a ``ModelBasedEnvBase`` wrapping our ensemble.

    One optimization step over all candidates (``top_k = N``, temperature = gamma), like
    PDDM's single MPPI update. torchrl samples around a zero mean with unit std each call
    (no warm start) and refits the std as well as the mean.
    """

    def __init__(self, model: EnsembleDynamics, task: BaodingTask, goals: Tensor,
                 num_samples: int, horizon: int, gamma: float,
                 device: str | torch.device = "cpu") -> None:
        from tensordict import TensorDict
        from tensordict.nn import TensorDictModule
        from torchrl.data import Bounded, Composite, Unbounded
        from torchrl.envs.model_based import ModelBasedEnvBase
        from torchrl.modules.planners import MPPIPlanner

        e, s, a = model.num_members, model.state_dim, model.action_dim
        self.members = e
        self.device = torch.device(device)
        world_model = TensorDictModule(
            _EnsembleStep(model, task, goals),
            in_keys=["ensemble_state", "plan_step", "action"],
            out_keys=["ensemble_state", "plan_step", "reward"],
        )

        class EnsembleEnv(ModelBasedEnvBase):
            def __init__(self) -> None:
                super().__init__(world_model, device=device)
                fields = {
                    "ensemble_state": Unbounded((e * s,), device=device),
                    "plan_step": Unbounded((1,), dtype=torch.int64, device=device),
                }
                self.observation_spec = Composite(**fields, device=device)
                self.state_spec = Composite(**fields, device=device)
                self.action_spec = Bounded(-1.0, 1.0, (a,), device=device)
                self.reward_spec = Unbounded((1,), device=device)

            def _reset(self, tensordict: Any, **kwargs: Any) -> Any:
                return tensordict

        self.env = EnsembleEnv()
        self.planner = MPPIPlanner(
            self.env,
            _ReturnAdvantage(),
            temperature=gamma,
            planning_horizon=horizon,
            optim_steps=1,
            num_candidates=num_samples,
            top_k=num_samples,
        )
        self._tensordict = TensorDict
        self._step0 = torch.zeros(1, dtype=torch.int64, device=device)

    def command(self, state: Tensor) -> Tensor:
        td = self._tensordict(
            {"ensemble_state": state.repeat(self.members), "plan_step": self._step0.clone()},
            batch_size=[],
            device=self.device,
        )
        with torch.no_grad():
            return self.planner(td).get("action")
