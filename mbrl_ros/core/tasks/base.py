"""What every task shares: a named state layout and a vectorized reward/metrics interface.

A task turns predicted or observed states into rewards, termination flags and episode
metrics. Everything works in torch on any leading batch dimensions so a planner can score
``[horizon, members, samples]`` predicted states in one call.

Goal timing (used by every task and by the planners): ``episode_goals(seed, T)[k]`` is the
goal in force at control step ``k``. The state ``s_k`` observed at step ``k`` carries
``goals[k]`` in its goal fields (when the layout holds the goal) and the reward of the
transition ``s_k --a_k--> s_{k+1}`` is scored on ``s_{k+1}`` against ``goals[k + 1]``. A
planner starting from ``s_t`` therefore needs ``goal_window(goals, t + 1, H)``.
"""

from __future__ import annotations

import dataclasses
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import Field, dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from mbrl_ros.core.tasks.layouts import StateLayout
from mbrl_ros.core.validation import check_finite, check_last_dim

if TYPE_CHECKING:
    from mbrl_ros.core.robot.spec import RobotSpec


@dataclass(frozen=True)
class TrackedObject:
    """An object a tracker reports (by this name) and where it goes in the task's state:
    position/velocity fields, and for an object whose orientation matters, its Euler angle
    and Euler rate fields."""

    name: str
    position_field: str
    velocity_field: str
    euler_field: str | None = None
    euler_rate_field: str | None = None

    @property
    def oriented(self) -> bool:
        return self.euler_field is not None

    @property
    def fields(self) -> tuple[str, ...]:
        extra = (self.euler_field, self.euler_rate_field) if self.oriented else ()
        return (self.position_field, self.velocity_field, *extra)


def setting(default: Any, description: str, low: float | None = None,
            high: float | None = None, choices: Sequence[str] | None = None,
            collection_only: bool = False) -> Any:
    """A field of a task's settings dataclass: one stack parameter ``<task>.<field>`` with
    its PDDM default, the description ``ros2 param describe`` shows, and its range.
    ``collection_only``: it shapes how data are collected (e.g. extra goals as a
    curriculum), not the task a run's models are judged on, so judging drops it."""
    limits = () if low is None else (low, high)
    meta = {"description": description, "limits": limits,
            "choices": None if choices is None else tuple(choices),
            "collection_only": collection_only}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class SettingSpec:
    """One declared task setting, as the parameter generators read it."""

    name: str
    default: Any
    description: str
    limits: tuple[float, ...]
    choices: tuple[str, ...] | None
    collection_only: bool = False


def setting_specs(settings_type: type | None) -> list[SettingSpec]:
    """The declared settings of a task's settings dataclass (none for ``None``)."""
    if settings_type is None:
        return []
    out = []
    for f in fields(settings_type):
        assert isinstance(f, Field)
        meta = f.metadata
        out.append(SettingSpec(f.name, f.default, meta.get("description", f.name),
                               tuple(meta.get("limits", ())), meta.get("choices"),
                               bool(meta.get("collection_only", False))))
    return out


class Task(ABC):
    """Reward, termination, goals and metrics of one manipulation task.

    Subclasses implement :meth:`episode_goals`, :meth:`reward`, :meth:`step_error` and
    :meth:`episode_success`; :meth:`step_score` defaults to ``-step_error``.
    ``termination_reward`` is the per-step reward a planner books for every step after a
    predicted rollout terminated (PDDM keeps charging the drop penalty).

    A task is one unit: besides its rewards it declares what the stack needs to know about
    it (class attributes) and nothing else names it. ``settings_type``: a frozen dataclass
    of :func:`setting` fields, the stack's ``<task>.<field>`` parameters, turned into a task
    by :meth:`from_settings`. ``tracked_objects``: what the estimator filters and where in
    the state it goes. :attr:`augmentation`: how training data may be multiplied.
    """

    settings_type: ClassVar[type | None] = None
    tracked_objects: ClassVar[tuple[TrackedObject, ...]] = ()

    @classmethod
    def from_settings(cls, settings: Any, episode_length: int | None = None,
                      robot: RobotSpec | None = None) -> Task:
        """The task for a ``settings_type`` instance (``episode_length`` None: its own) on
        ``robot`` (None: the built-in hand; a task reads from it what it needs, e.g.
        Baoding the wrist chain that places its palm-attached targets)."""
        del settings, robot
        return cls() if episode_length is None else cls(episode_length=episode_length)

    @property
    def augmentation(self) -> Callable[[Any], Any] | None:
        """A function that multiplies a training batch by the task's symmetries (e.g. the
        Baoding balls' swap), or None."""
        return None

    def __init__(
        self,
        name: str,
        layout: StateLayout,
        action_dim: int,
        goal_dim: int,
        episode_length: int,
        goal_fields: Sequence[str] = (),
        termination_reward: float = 0.0,
        goal_field_dim: int | None = None,
        goal_frame: str = "world",
    ) -> None:
        if action_dim < 1 or goal_dim < 1 or episode_length < 1:
            raise ValueError(
                f"action_dim, goal_dim and episode_length must be >= 1, got "
                f"{action_dim}, {goal_dim}, {episode_length}"
            )
        if not math.isfinite(termination_reward):
            raise ValueError(f"termination_reward must be finite, got {termination_reward}")
        self.name = name
        self.layout = layout
        self.action_dim = int(action_dim)
        self.goal_dim = int(goal_dim)
        self.episode_length = int(episode_length)
        self.termination_reward = float(termination_reward)
        self.goal_fields = tuple(goal_fields)
        self.goal_frame = str(goal_frame)
        self.goal_slice: slice | None = None
        if self.goal_fields:
            span = layout.span(self.goal_fields)
            expected = goal_dim if goal_field_dim is None else int(goal_field_dim)
            if span.stop - span.start != expected:
                raise ValueError(
                    f"goal fields {list(self.goal_fields)} hold {span.stop - span.start} "
                    f"values but {expected} are written into them"
                )
            self.goal_slice = span

    @property
    def state_dim(self) -> int:
        return self.layout.dim

    @property
    def goal_state_dims(self) -> tuple[int, ...]:
        """The state dimensions the goal fields occupy (none if the state holds no goal)."""
        span = self.goal_slice
        return () if span is None else tuple(range(span.start, span.stop))

    @property
    def object_state_dims(self) -> tuple[int, ...]:
        """The state dimensions the tracked objects' fields occupy (positions, velocities
        and, for oriented objects, angles and rates)."""
        spans = (self.layout.slice(name) for obj in self.tracked_objects for name in obj.fields)
        return tuple(sorted({d for span in spans for d in range(span.start, span.stop)}))

    # ------------------------------------------------------------------ goals
    @abstractmethod
    def episode_goals(self, seed: int, length: int | None = None) -> Tensor:
        """Goal schedule ``[length, G]`` of one episode (default length: episode_length).

        Deterministic for a given seed.
        """

    def _episode_length_arg(self, length: int | None) -> int:
        length = self.episode_length if length is None else int(length)
        if length < 1:
            raise ValueError(f"episode length must be >= 1, got {length}")
        return length

    def goal_window(self, goals: Tensor, step: int, horizon: int) -> Tensor:
        """``goals[step : step + horizon]``; past the end the last goal is repeated."""
        check_last_dim("goals", goals, self.goal_dim)
        if goals.dim() != 2 or goals.shape[0] < 1:
            raise ValueError(f"goals must be [T >= 1, {self.goal_dim}], got {tuple(goals.shape)}")
        if step < 0 or horizon < 1:
            raise ValueError(f"need step >= 0 and horizon >= 1, got step={step} horizon={horizon}")
        idx = torch.arange(step, step + horizon, device=goals.device).clamp_(max=goals.shape[0] - 1)
        return goals.index_select(0, idx)

    def goal_field_values(self, states: Tensor, goals: Tensor) -> Tensor:
        """What the state's goal fields hold for ``goals`` at ``states`` (``[..., F]``).

        The goal itself by default; a task whose goal fields depend on the state (Baoding's
        palm-attached targets, seen in world xy) computes them from ``states``.
        """
        del states
        return goals

    def insert_goal_(self, states: Tensor, goals: Tensor) -> Tensor:
        """Write the goal fields of ``states`` for ``goals`` (broadcast over leading dims).

        In place; returns ``states``. A no-op for tasks whose state holds no goal.
        """
        if self.goal_slice is not None:
            states[..., self.goal_slice] = self.goal_field_values(states, goals)
        return states

    def insert_goal(self, states: Tensor, goals: Tensor) -> Tensor:
        """Out-of-place (autograd-safe) version of :meth:`insert_goal_`."""
        if self.goal_slice is None:
            return states
        values = self.goal_field_values(states, goals).to(states.dtype)
        values = values.expand(*states.shape[:-1], values.shape[-1])
        before, after = states[..., : self.goal_slice.start], states[..., self.goal_slice.stop:]
        return torch.cat([before, values, after], dim=-1)

    # ------------------------------------------------------------------ reward
    @abstractmethod
    def reward(self, states: Tensor, actions: Tensor, goals: Tensor) -> tuple[Tensor, Tensor]:
        """Per-step reward and termination flag of reaching ``states`` under ``goals``.

        ``states [..., S]``, ``actions [..., A]``, ``goals [..., G]`` broadcast together;
        returns ``(reward [...], terminated [...] bool)``.
        """

    def terminates(self, state: Tensor, goal: Tensor) -> bool:
        """Whether one state ``[S]`` ends the episode under ``goal [G]`` (PDDM: a drop)."""
        with torch.no_grad():
            action = torch.zeros(self.action_dim, dtype=state.dtype, device=state.device)
            _, terminated = self.reward(state, action, goal.to(state.dtype))
        return bool(terminated)

    @abstractmethod
    def step_error(self, states: Tensor, goals: Tensor) -> Tensor:
        """The task's tracking distance per step ``[...]`` (what tracking_error averages)."""

    def step_score(self, states: Tensor, goals: Tensor) -> Tensor:
        """PDDM's per-step score (higher is better)."""
        return -self.step_error(states, goals)

    @abstractmethod
    def episode_success(self, errors: Tensor, dropped: bool) -> bool:
        """Success of one episode from its per-step errors ``[T]`` and whether it dropped."""

    # ------------------------------------------------------------------ metrics
    def episode_metrics(self, states: Tensor, actions: Tensor, goals: Tensor) -> dict[str, Any]:
        """Metrics of one executed episode.

        ``actions [T, A]``; ``states`` either ``[T + 1, S]`` (``s_0 .. s_T``) with ``goals
        [T + 1, G]`` aligned to them (the first entry of both is dropped), or ``[T, S]``
        already holding the reached states ``s_1 .. s_T`` with ``goals [T, G]``.
        Steps after the first termination are ignored (the episode ended there).
        Returns ``return`` (sum of rewards), ``score`` (mean per-step score),
        ``tracking_error`` (mean per-step error), ``drop`` / ``success`` (bool) and
        ``steps`` (steps counted).
        """
        check_last_dim("states", states, self.state_dim)
        check_last_dim("actions", actions, self.action_dim)
        check_last_dim("goals", goals, self.goal_dim)
        if states.dim() != 2 or actions.dim() != 2 or goals.dim() != 2:
            raise ValueError("episode_metrics expects unbatched [T, .] tensors")
        t = actions.shape[0]
        if t < 1:
            raise ValueError("episode_metrics needs at least one step")
        if states.shape[0] == t + 1:
            states = states[1:]
            if goals.shape[0] == t + 1:
                goals = goals[1:]
        if states.shape[0] != t or goals.shape[0] != t:
            raise ValueError(
                f"states {tuple(states.shape)}, actions {tuple(actions.shape)} and goals "
                f"{tuple(goals.shape)} do not describe the same {t} steps"
            )
        for name, x in (("states", states), ("actions", actions), ("goals", goals)):
            check_finite(name, x)
        with torch.no_grad():
            rewards, terminated = self.reward(states, actions, goals)
            dropped = bool(terminated.any())
            steps = int(terminated.int().argmax()) + 1 if dropped else t
            errors = self.step_error(states[:steps], goals[:steps])
            scores = self.step_score(states[:steps], goals[:steps])
            return {
                "return": float(rewards[:steps].sum()),
                "score": float(scores.mean()),
                "tracking_error": float(errors.mean()),
                "drop": dropped,
                "success": bool(self.episode_success(errors, dropped)),
                "steps": steps,
            }
