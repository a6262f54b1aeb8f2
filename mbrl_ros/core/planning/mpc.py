"""Model-predictive control around a planner: warm starts, plan buffer and late-plan fallback.

Each :meth:`ModelPredictiveController.step` plans from the current state with the previous
plan shifted by one step (last action repeated) as warm start, executes the first action
and keeps the plan. When a caller's plan is late it takes :meth:`fallback_action`: the next
action of the kept plan, which advances the buffer exactly as one executed step would.

Goals: ``goals_window[i]`` is the goal of the state reached after action ``i``; with an
episode schedule whose entry ``k`` belongs to state ``s_k``, the window for ``s_t`` is
``task.goal_window(goals, t + 1, horizon)``.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
from torch import Tensor

from mbrl_ros.core.planners.base import DynamicsModel, Planner, PlanResult
from mbrl_ros.core.tasks.base import Task


def shift_plan(plan: Tensor) -> Tensor:
    """``[a_1, ..., a_(H-1), a_(H-1)]`` from ``[a_0, ..., a_(H-1)]`` (new tensor)."""
    if plan.dim() != 2 or plan.shape[0] < 1:
        raise ValueError(f"plan must be [H >= 1, A], got {tuple(plan.shape)}")
    return torch.cat((plan[1:], plan[-1:]), dim=0)


class ModelPredictiveController:
    """Receding-horizon control with one planner; thread-safe buffer updates.

    The buffer's first row is always the action executed last; the warm start of the next
    plan is the buffer shifted by one.
    """

    def __init__(self, planner: Planner, task: Task, horizon: int | None = None) -> None:
        horizon = planner.horizon if horizon is None else int(horizon)
        if horizon != planner.horizon:
            raise ValueError(f"MPC horizon {horizon} differs from the planner's {planner.horizon}")
        if task.action_dim != planner.action_dim or task.state_dim != planner.task.state_dim:
            raise ValueError(f"task {task.name!r} does not match the planner's task "
                             f"{planner.task.name!r}")
        self.planner = planner
        self.task = task
        self.horizon = horizon
        self._lock = threading.Lock()
        self._buffer: Tensor | None = None
        self._prev_action: Tensor | None = None
        self.last_result: PlanResult | None = None

    @staticmethod
    def shift_plan(plan: Tensor) -> Tensor:
        """See :func:`shift_plan`."""
        return shift_plan(plan)

    def reset(self) -> None:
        """Forget the plan, the warm start and the previous action (episode start)."""
        with self._lock:
            self._buffer = None
            self._prev_action = None
            self.last_result = None

    def set_model(self, model: DynamicsModel) -> None:
        """Plan on ``model`` from the next step on; the kept plan stays as warm start."""
        self.planner.set_model(model)

    def warm_start(self) -> tuple[Tensor | None, Tensor | None]:
        """``(shifted plan, previous action)`` the next plan would start from."""
        with self._lock:
            if self._buffer is None:
                return None, self._prev_action
            return shift_plan(self._buffer), self._prev_action

    def step(self, state: Any, goals_window: Any) -> Tensor:
        """Plan from ``state [S]`` for ``goals_window [H, G]``; return the first action ``[A]``."""
        prev_plan, prev_action = self.warm_start()
        result = self.planner.plan(state, goals_window, prev_plan, prev_action)
        return self.commit(result)

    def commit(self, result: PlanResult) -> Tensor:
        """Keep ``result``'s plan as the buffer and return its first action (to execute)."""
        with self._lock:
            self.last_result = result
            self._buffer = result.actions
            self._prev_action = result.actions[0]
            return self._prev_action

    def fallback_action(self) -> Tensor:
        """Next action of the kept plan (advances the buffer); zeros before any plan.

        Past the end of the plan its last action is repeated.
        """
        with self._lock:
            if self._buffer is None:
                action = (
                    self._prev_action
                    if self._prev_action is not None
                    else torch.zeros(self.planner.action_dim, device=self.planner.device)
                )
                self._prev_action = action
                return action
            self._buffer = shift_plan(self._buffer)
            self._prev_action = self._buffer[0]
            return self._prev_action
