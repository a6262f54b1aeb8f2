"""The planner interface: what a planner needs from a model, what it returns, shared checks.

All planners work in the normalized action box ``[-1, 1]^A`` and return a plan of ``H``
actions plus the ensemble-mean predicted trajectory of that plan (for markers), its
predicted return and the members' disagreement along it.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

from mbrl_ros.core.planners.rollout import PlanEvaluation, TrajectoryScorer
from mbrl_ros.core.tasks.base import Task
from mbrl_ros.core.validation import check_float, check_int


@runtime_checkable
class DynamicsModel(Protocol):
    """What planners use of a model (``EnsembleDynamics`` satisfies it)."""

    num_members: int
    state_dim: int
    action_dim: int

    def predict(
        self,
        state: Tensor,
        action: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Next states ``[E, B, S]`` from states ``[E, B, S]`` or ``[B, S]`` and actions
        ``[E, B, A]`` or ``[B, A]`` (raw units), as a new tensor (planners write the goal
        fields into it in place)."""
        ...


class PlanResult:
    """One planning call's output.

    ``actions [H, A]`` in ``[-1, 1]`` and planner ``stats`` (always ``samples``,
    ``iterations``, ``time_ms``: the time to the plan) are ready at once. The rest comes
    from one more rollout of the chosen plan, done on first access (thread-safe, once) so
    the action is out before it and callers that do not need it (e.g. between marker
    updates) skip it: ``predicted_states [H + 1, S]`` (start state then the ensemble-mean
    prediction), ``predicted_return`` (mean over members and particles of the plan's
    return), ``predicted_score`` (the planner's risk-adjusted score of it) and
    ``disagreement`` (mean over steps and state dims of the std across members).
    """

    def __init__(
        self,
        actions: Tensor,
        stats: dict[str, Any],
        evaluation: PlanEvaluation | Callable[[], PlanEvaluation],
    ) -> None:
        self.actions = actions
        self.stats = stats
        self._lock = threading.Lock()
        self._evaluation: PlanEvaluation | None = None
        self._evaluate: Callable[[], PlanEvaluation] | None = None
        if isinstance(evaluation, PlanEvaluation):
            self._evaluation = evaluation
        else:
            self._evaluate = evaluation

    def evaluation(self) -> PlanEvaluation:
        """The rollout of the chosen plan (computed on the first call)."""
        with self._lock:
            if self._evaluation is None:
                assert self._evaluate is not None
                start = time.perf_counter()
                self._evaluation = self._evaluate()
                self._evaluate = None
                self.stats["evaluation_ms"] = 1e3 * (time.perf_counter() - start)
            return self._evaluation

    @property
    def predicted_states(self) -> Tensor:
        return self.evaluation().states

    @property
    def predicted_return(self) -> float:
        return self.evaluation().mean_return

    @property
    def predicted_score(self) -> float:
        return self.evaluation().score

    @property
    def disagreement(self) -> float:
        return self.evaluation().disagreement


@dataclass(frozen=True)
class Tunable:
    """How a planner config field is exposed as a stack parameter: its name there (PDDM's
    top-level names for the shared and MPPI fields, ``<planner>.<field>`` for the others),
    description, range, and whether it may change while running."""

    param: str
    description: str
    low: float
    high: float
    runtime: bool = False


def tunable(default: Any, param: str, description: str, low: float, high: float,
            runtime: bool = False) -> Any:
    """A planner config field that is also a stack parameter (see :class:`Tunable`)."""
    return field(default=default,
                 metadata={"tunable": Tunable(param, description, low, high, runtime)})


def tunables(config_class: type) -> list[tuple[str, Any, Tunable]]:
    """``(field, default, Tunable)`` of every exposed field of a planner config class."""
    return [(f.name, f.default, f.metadata["tunable"]) for f in fields(config_class)
            if "tunable" in f.metadata]


@dataclass
class PlannerConfig:
    """Settings shared by all planners.

    ``risk_lambda``: score = mean over members - risk_lambda * std over members of the
    return (0: PDDM's mean). ``particles``: rollouts per sample and member (PETS); more than
    one needs ``sample_dynamics`` (draws from a probabilistic ensemble, else copies).
    ``seed``: seeds the planner's random generator (None: nondeterministic).
    """

    horizon: int = tunable(7, "horizon", "planning horizon H in control steps (PDDM 7)", 1,
                           1000, runtime=True)
    num_samples: int = tunable(700, "num_samples", "action sequences per plan, N (PDDM "
                               "Baoding 700)", 1, 1_000_000, runtime=True)
    risk_lambda: float = tunable(0.0, "risk_lambda", "score = mean - lambda * std of the "
                                 "ensemble's returns (0: PDDM's mean)", 0.0, 1e6, runtime=True)
    particles: int = tunable(1, "particles", "PETS trajectory sampling: rollouts per "
                             "action sequence and member, each with its own draws (needs "
                             "sample_dynamics; 1: PDDM)", 1, 4096)
    sample_dynamics: bool = tunable(False, "sample_dynamics", "draw every predicted step "
                                    "from the probabilistic members' Gaussians (PETS) instead "
                                    "of taking their means; deterministic members give their "
                                    "means either way (false: PDDM)", 0, 1)
    seed: int | None = None

    def __post_init__(self) -> None:
        name = type(self).__name__
        check_int(f"{name}.horizon", self.horizon, 1)
        check_int(f"{name}.num_samples", self.num_samples, 1)
        check_float(f"{name}.risk_lambda", self.risk_lambda, 0.0)
        check_int(f"{name}.particles", self.particles, 1)
        if not isinstance(self.sample_dynamics, bool):
            raise ValueError(f"{name}.sample_dynamics must be a bool")
        if self.particles > 1 and not self.sample_dynamics:
            raise ValueError(f"{name}: particles > 1 needs sample_dynamics=True "
                             "(otherwise the particles are identical copies)")
        if self.seed is not None:
            check_int(f"{name}.seed", self.seed, 0)


class Planner(ABC):
    """Base class: input checks, timing and evaluation of the chosen plan.

    Subclasses implement :meth:`_optimize`, which runs under ``torch.no_grad()`` (a
    gradient planner re-enables grad locally).
    """

    config_class: type[PlannerConfig] = PlannerConfig

    def __init__(
        self,
        model: DynamicsModel,
        task: Task,
        config: PlannerConfig | None = None,
        device: str | torch.device | None = None,
    ) -> None:
        config = self.config_class() if config is None else config
        if not isinstance(config, self.config_class):
            raise TypeError(f"{type(self).__name__} needs a {self.config_class.__name__}, "
                            f"got {type(config).__name__}")
        self.config = config
        self.task = task
        if device is None:
            device = getattr(model, "device", "cpu")
        self.device = torch.device(device)
        self.dtype = torch.float32
        self.generator = torch.Generator(device=self.device)
        if config.seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(config.seed))
        self.scorer = TrajectoryScorer(
            model,
            task,
            risk_lambda=config.risk_lambda,
            particles=config.particles,
            sample_dynamics=config.sample_dynamics,
            generator=self.generator,
        )
        self.set_model(model)

    @property
    def model(self) -> DynamicsModel:
        return self.scorer.model

    @property
    def horizon(self) -> int:
        return self.config.horizon

    @property
    def action_dim(self) -> int:
        return self.task.action_dim

    def set_model(self, model: DynamicsModel) -> None:
        """Plan on ``model`` from the next call on (e.g. freshly trained weights)."""
        for attr in ("num_members", "state_dim", "action_dim", "predict"):
            if not hasattr(model, attr):
                raise TypeError(f"model lacks {attr!r}; it must follow the DynamicsModel protocol")
        if model.state_dim != self.task.state_dim or model.action_dim != self.task.action_dim:
            raise ValueError(
                f"model dims (state {model.state_dim}, action {model.action_dim}) do not match "
                f"task {self.task.name!r} (state {self.task.state_dim}, "
                f"action {self.task.action_dim})"
            )
        if model.num_members < 1:
            raise ValueError(f"model must have >= 1 member, got {model.num_members}")
        self.scorer.model = model

    def _tensor(self, name: str, x: Any, shape: tuple[int, ...]) -> Tensor:
        t = torch.as_tensor(x, dtype=self.dtype, device=self.device)
        if tuple(t.shape) != shape:
            raise ValueError(f"{name} must have shape {list(shape)}, got {list(t.shape)}")
        if not bool(torch.isfinite(t).all()):
            raise ValueError(f"{name} contains non-finite values")
        return t

    def _action_box(self, name: str, x: Tensor) -> Tensor:
        if bool((x.abs() > 1.0 + 1e-5).any()):
            raise ValueError(f"{name} must lie in the normalized action box [-1, 1]")
        return x.clamp(-1.0, 1.0)

    def plan(
        self,
        state: Tensor,
        goals: Tensor,
        prev_plan: Tensor | None = None,
        prev_action: Tensor | None = None,
    ) -> PlanResult:
        """Plan ``H`` actions from ``state [S]`` for ``goals [H, G]``.

        ``goals[i]`` is the goal of the state reached after plan action ``i``.
        ``prev_plan [H, A]`` warm-starts the search (already shifted by the caller);
        ``prev_action [A]`` is the action executed last (MPPI's filter uses it).
        """
        start = time.perf_counter()
        h, a = self.horizon, self.action_dim
        state = self._tensor("state", state, (self.task.state_dim,))
        goals = self._tensor("goals", goals, (h, self.task.goal_dim))
        if prev_plan is not None:
            prev_plan = self._action_box("prev_plan", self._tensor("prev_plan", prev_plan, (h, a)))
        if prev_action is not None:
            prev_action = self._action_box(
                "prev_action", self._tensor("prev_action", prev_action, (a,))
            )
        with torch.no_grad():
            actions, stats = self._optimize(state, goals, prev_plan, prev_action)
            actions = actions.detach().clamp(-1.0, 1.0)
        # The evaluation may run later (another thread, another model loaded by then): it
        # gets its own copies of the inputs and a scorer frozen on the current model.
        scorer = self.scorer.snapshot()
        state, goals = state.clone(), goals.clone()
        stats.setdefault("samples", self.config.num_samples)
        stats.setdefault("iterations", 1)
        stats["time_ms"] = 1e3 * (time.perf_counter() - start)
        return PlanResult(actions, stats, lambda: scorer.evaluate(state, actions, goals))

    @abstractmethod
    def _optimize(
        self,
        state: Tensor,
        goals: Tensor,
        prev_plan: Tensor | None,
        prev_action: Tensor | None,
    ) -> tuple[Tensor, dict[str, Any]]:
        """Return the chosen plan ``[H, A]`` and planner-specific stats."""
