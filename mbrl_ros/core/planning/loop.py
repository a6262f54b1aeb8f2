"""The planner's control loop without ROS: what to command at each tick or state, and when.

:class:`PlanningLoop` wraps a :class:`ModelPredictiveController` and PDDM's exploration
policy and runs the planning in its own thread. Two modes:

- **realtime** (tick-driven, one control period of budget): at tick ``k`` it returns the
  first action of the plan started at tick ``k - 1`` if that plan has finished within one
  period of its start (a tick that comes early, after a late one, waits for the rest of
  that period); otherwise the controller's
  :meth:`~ModelPredictiveController.fallback_action` (the next action of the previous plan)
  and a counted deadline miss. A plan that finishes late is used at the next tick, advanced
  by the ticks it missed. Then, if the planning thread is idle, it starts a plan from the
  newest state. A tick that holds or explores drops the plans in progress.
- **lockstep** (state-driven): every new ``(episode, step)`` state is planned at once and
  the command is handed to ``on_plan`` as soon as it is ready; the same ``(episode, step)``
  again re-sends the last command (a lost message must not stall a lockstep loop).

In both modes a stale state makes the loop hold (``source`` "hold"), states at or past the
episode length get no command, a new episode resets the controller and the exploration,
and without a model (or with ``policy`` "explore") the loop explores. New models and new
planner settings are picked up by the planning thread at the start of its next plan.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mbrl_ros.core.planners import DynamicsModel, PlanResult
from mbrl_ros.core.planning.exploration import ExplorationConfig, RandomVelocityExploration
from mbrl_ros.core.planning.loop_io import (
    EXPLORATION,
    HOLD,
    POLICIES,
    Command,
    PlannerSettings,
    StateInput,
)
from mbrl_ros.core.planning.mpc import ModelPredictiveController, shift_plan
from mbrl_ros.core.tasks.base import Task

__all__ = ["EXPLORATION", "HOLD", "POLICIES", "Command", "PlannerSettings", "PlanningLoop",
           "StateInput"]


@dataclass
class _Job:
    obs: StateInput
    tick: int | None


@dataclass
class _Done:
    job: _Job
    result: PlanResult
    model_version: int
    settings: PlannerSettings


class PlanningLoop:
    """Planning thread + tick/state logic around one MPC; thread-safe.

    ``on_plan(command)`` (lockstep) is called from the planning thread when a plan is ready;
    ``on_error(message)`` when a plan or a model/settings swap fails (the loop keeps going).
    """

    def __init__(
        self,
        task: Task,
        settings: PlannerSettings,
        exploration: ExplorationConfig | None = None,
        *,
        seed: int = 0,
        policy: str = "auto",
        lockstep: bool = True,
        state_timeout: float = 0.0,
        period: float = 0.1,
        on_plan: Callable[[Command], None] | None = None,
        on_error: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        latency_window: int = 200,
    ) -> None:
        problem = settings.problem()
        if problem:
            raise ValueError(problem)
        self.task = task
        self.lockstep = bool(lockstep)
        self.state_timeout = float(state_timeout)
        self.period = float(period)  # realtime: the planning budget (one control period)
        self._on_plan = on_plan
        self._on_error = on_error
        self._clock = clock
        self._cond = threading.Condition()
        self._settings = settings
        self._pending_settings: PlannerSettings | None = None
        self._pending_model: tuple[DynamicsModel, int] | None = None
        self._mpc: ModelPredictiveController | None = None
        self._model_version = 0  # in use by the planner
        self.accepted_version = 0  # newest model handed to set_model
        self.policy = "auto"
        self.set_policy(policy)
        self.exploration = RandomVelocityExploration(task.action_dim, exploration, seed)
        self._episode: int | None = None
        self._newest: StateInput | None = None  # realtime: newest state
        self._last_key: tuple[int, int] | None = None  # lockstep: newest state handled
        self._last: Command | None = None
        self._acting = False  # the newest state gets commands (step < episode length)
        self._plan: np.ndarray | None = None  # mirror of the MPC's buffer (remaining plan)
        self._job: _Job | None = None
        self._job_started = 0.0  # clock() when the newest realtime job was submitted
        self._busy = False
        self._running: _Job | None = None
        self._drop_running = False  # the running plan's result is not wanted any more
        self._done: _Done | None = None
        self._tick = 0
        self.ticks = 0
        self.deadline_misses = 0
        self.plans = 0
        self.latencies: deque[float] = deque(maxlen=latency_window)
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="planning", daemon=True)
        self._thread.start()

    # ----- configuration (any thread) -----------------------------------------------------
    def set_model(self, model: DynamicsModel, version: int) -> None:
        """Plan on ``model`` from the next plan on (swapped by the planning thread)."""
        with self._cond:
            self._pending_model = (model, int(version))
            self.accepted_version = int(version)

    def set_settings(self, settings: PlannerSettings) -> None:
        """Rebuild the planner with ``settings`` before the next plan; ValueError if bad."""
        problem = settings.problem()
        if problem:
            raise ValueError(problem)
        with self._cond:
            self._pending_settings = settings

    def set_policy(self, policy: str) -> None:
        if policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {policy!r}")
        with self._cond:
            self.policy = policy

    @property
    def settings(self) -> PlannerSettings:
        with self._cond:
            return self._pending_settings or self._settings

    @property
    def model_version(self) -> int:
        """Version of the model the planner uses now (0: none yet)."""
        with self._cond:
            return self._model_version

    def close(self, timeout: float = 5.0) -> None:
        """Stop the planning thread (waits for a plan in progress up to ``timeout``)."""
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout)

    # ----- realtime -----------------------------------------------------------------------
    def observe(self, obs: StateInput) -> None:
        """Realtime: remember ``obs`` as the newest state."""
        with self._cond:
            self._newest = obs
            self._acting = obs.acts
            self._enter_episode(obs.episode_id)

    def tick(self) -> Command | None:
        """Realtime: the command for this tick (None: nothing to send), then plan ahead."""
        with self._cond:
            k = self._tick
            self._tick += 1
            obs = self._newest
            if obs is None or not obs.acts:
                self._drop_plans()
                return None
            age = self._clock() - obs.received
            if obs.stale or (self.state_timeout > 0 and age > self.state_timeout):
                why = ("state marked stale" if obs.stale
                       else f"no new state for more than {self.state_timeout:g} s")
                self._drop_plans()
                return self._emit(self._hold(obs, why))
            if not self._wants_plan():
                self._drop_plans()
                return self._emit(self._explore(obs))
            self._wait_for_plan(k - 1)
            done, self._done = self._done, None
            if done is not None and done.job.obs.episode_id != obs.episode_id:
                done = None
            if done is not None and done.job.tick == k - 1:
                command = self._from_result(obs, done, advance=0, fallback=False)
            else:
                late = done is not None or self._busy or self._job is not None
                if late:
                    self.deadline_misses += 1
                if done is not None:
                    command = self._from_result(obs, done, advance=k - done.job.tick - 1,
                                                fallback=True)
                else:
                    command = self._fallback(obs, late)
            if not self._busy and self._job is None:
                self._job = _Job(obs, k)
                self._job_started = self._clock()
                self._cond.notify_all()
            return self._emit(command)

    # ----- lockstep -----------------------------------------------------------------------
    def on_state(self, obs: StateInput) -> Command | None:
        """Lockstep: a command to send now (exploration, hold, or the re-sent last command),
        or None (a plan was queued and goes to ``on_plan``, or the state gets no command)."""
        with self._cond:
            last = self._last
            answered = last if last is not None and last.key == obs.key else None
            if obs.key == self._last_key:
                # The same state again: re-send its command; a stale repeat (the estimator
                # lost its inputs) turns it into a hold, unless it is one already.
                if not obs.stale or (answered is not None and answered.source == HOLD):
                    return answered
            else:
                self._last_key = obs.key
                self._acting = obs.acts
                self._enter_episode(obs.episode_id)
            if not obs.acts:
                return None
            if obs.stale:
                return self._emit(self._hold(obs, "state marked stale"))
            if not self._wants_plan():
                return self._emit(self._explore(obs))
            self._job = _Job(obs, None)
            self._cond.notify_all()
            return None

    # ----- status -------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Plain numbers and names for status services and diagnostics."""
        with self._cond:
            last = self._last
            latencies = np.asarray(self.latencies, dtype=np.float64)
            if last is None or not self._acting:
                state = "idle"
            elif last.source == HOLD:
                state = "holding"
            elif last.source == EXPLORATION:
                state = "exploring"
            else:
                state = "planning"
            return {
                "state": state,
                "policy": self.policy,
                "planner": (self._pending_settings or self._settings).stats_name,
                "model_version": self._model_version,
                "accepted_model_version": self.accepted_version,
                "episode": -1 if self._episode is None else self._episode,
                "step": -1 if last is None else last.step,
                "ticks": self.ticks,
                "deadline_misses": self.deadline_misses,
                "plans": self.plans,
                "latency_p50_ms": float(np.percentile(latencies, 50)) if latencies.size else 0.0,
                "latency_p99_ms": float(np.percentile(latencies, 99)) if latencies.size else 0.0,
                "note": "" if last is None else last.note,
            }

    # ----- internals (lock held unless said otherwise) ------------------------------------
    def _drop_plans(self) -> None:
        """A tick that does not plan: plans queued, running or finished are not used."""
        self._done = None
        self._job = None
        self._drop_running = self._busy

    def _wait_for_plan(self, tick: int) -> None:
        """Wait (lock released) for the plan submitted at ``tick`` until its budget ends."""
        in_flight = self._busy or self._job is not None
        if not in_flight or self._inflight_tick() != tick:
            return
        deadline = self._job_started + self.period
        while self._done is None and (self._busy or self._job is not None):
            remaining = deadline - self._clock()
            if remaining <= 0 or self._stop:
                return
            self._cond.wait(remaining)

    def _inflight_tick(self) -> int | None:
        job = self._job if self._job is not None else self._running
        return None if job is None else job.tick

    def _wants_plan(self) -> bool:
        has_model = self._mpc is not None or self._pending_model is not None
        return self.policy != "explore" and has_model

    def _enter_episode(self, episode_id: int) -> None:
        if episode_id == self._episode:
            return
        self._episode = episode_id
        if self._mpc is not None:
            self._mpc.reset()
        self._plan = None
        self._done = None
        self.exploration.reset(episode_id)

    def _emit(self, command: Command) -> Command:
        self.ticks += 1
        command.ticks = self.ticks
        command.deadline_misses = self.deadline_misses
        self._last = command
        return command

    def _base(self, obs: StateInput, action: np.ndarray | None, plan: np.ndarray, source: str,
              **extra: Any) -> Command:
        return Command(episode_id=obs.episode_id, step=obs.step, action=action, plan=plan,
                       source=source, model_version=self.accepted_version, plan_latency_ms=0.0,
                       fallback=False, deadline_misses=self.deadline_misses, ticks=self.ticks,
                       num_samples=0, horizon=int(plan.shape[0]), **extra)

    def _last_action(self, obs: StateInput) -> np.ndarray | None:
        last = self._last
        if last is None or last.episode_id != obs.episode_id or last.action is None:
            return None
        return last.action.copy()

    def _hold(self, obs: StateInput, why: str) -> Command:
        action = self._last_action(obs)
        plan = np.zeros((1, self.task.action_dim)) if action is None else action[None]
        return self._base(obs, action, plan, HOLD, note=f"holding: {why}")

    def _explore(self, obs: StateInput) -> Command:
        action = self.exploration.act()
        note = ""
        if self.policy == "plan":
            note = "policy 'plan' but no model has arrived yet: exploring"
        return self._base(obs, action, action[None].copy(), EXPLORATION, note=note)

    def _fallback(self, obs: StateInput, late: bool) -> Command:
        """Next action of the kept plan; before any plan the last action (or zero)."""
        settings = self._settings
        latency = 0.0
        kept = None if self._mpc is None else self._mpc.last_result
        if kept is not None and self._plan is not None:
            action = self._mpc.fallback_action().detach().cpu().numpy().astype(np.float64)
            self._plan = shift_plan(torch.from_numpy(self._plan)).numpy()
            plan = self._plan.copy()
            latency = float(kept.stats.get("time_ms", 0.0))
        else:
            action = self._last_action(obs)
            if action is None:
                action = np.zeros(self.task.action_dim)
            plan = action[None].copy()
        return Command(episode_id=obs.episode_id, step=obs.step, action=action, plan=plan,
                       source=settings.stats_name, model_version=self._model_version,
                       plan_latency_ms=latency, fallback=True, deadline_misses=self.deadline_misses,
                       ticks=self.ticks, num_samples=int(settings.options.get("num_samples", 0)),
                       horizon=int(plan.shape[0]),
                       note="plan late: next action of the previous plan" if late
                       else "no plan yet")

    def _from_result(self, obs: StateInput, done: _Done, advance: int,
                     fallback: bool) -> Command:
        """Commit ``done``'s plan and take its action ``advance`` steps in."""
        assert self._mpc is not None
        result = done.result
        action_t = self._mpc.commit(result)
        plan_t = result.actions
        for _ in range(min(advance, plan_t.shape[0])):
            action_t = self._mpc.fallback_action()
            plan_t = shift_plan(plan_t)
        self._plan = plan_t.detach().cpu().numpy().astype(np.float64)
        note = f"plan late by {advance} tick(s)" if fallback else ""
        return Command(episode_id=obs.episode_id, step=obs.step,
                       action=action_t.detach().cpu().numpy().astype(np.float64),
                       plan=self._plan.copy(), source=done.settings.stats_name,
                       model_version=done.model_version,
                       plan_latency_ms=float(result.stats.get("time_ms", 0.0)),
                       fallback=fallback, deadline_misses=self.deadline_misses,
                       ticks=self.ticks, num_samples=int(result.stats.get("samples", 0)),
                       horizon=int(plan_t.shape[0]), result=result, note=note)

    def _error(self, message: str) -> None:
        """Report without the lock held."""
        if self._on_error is not None:
            self._on_error(message)

    def _swap(self) -> list[str]:
        """Apply a pending model and settings (planning thread, lock held); returns errors."""
        errors: list[str] = []
        settings = self._pending_settings or self._settings
        model = self._pending_model
        rebuild = self._pending_settings is not None or (model is not None and self._mpc is None)
        self._pending_settings = None
        self._pending_model = None
        if not rebuild and model is not None and self._mpc is not None:
            try:
                self._mpc.set_model(model[0])
                self._model_version = model[1]
            except (TypeError, ValueError) as exc:
                errors.append(f"model version {model[1]} not usable: {exc}")
            return errors
        if not rebuild:
            return errors
        current = None if self._mpc is None else self._mpc.planner.model
        use = model[0] if model is not None else current
        if use is None:  # settings only, no model yet: build when the model comes
            self._settings = settings
            return errors
        try:
            planner = settings.build(use, self.task)
        except (TypeError, ValueError) as exc:
            errors.append(f"cannot build planner {settings.name!r}: {exc}")
            return errors
        if self._mpc is not None and self._mpc.horizon == planner.horizon:
            self._mpc.planner = planner  # same horizon: the kept plan stays a valid warm start
        else:
            self._mpc = ModelPredictiveController(planner, self.task)
            self._plan = None
        self._settings = settings
        if model is not None:
            self._model_version = model[1]
        return errors

    def _run(self) -> None:
        while True:
            with self._cond:
                while self._job is None and not self._stop:
                    self._cond.wait()
                if self._stop:
                    return
                job, self._job = self._job, None
                self._busy = True
                self._running = job
                errors = self._swap()
                mpc, settings, version = self._mpc, self._settings, self._model_version
                warm = mpc.warm_start() if mpc is not None else (None, None)
            for message in errors:
                self._error(message)
            result, failure = None, ""
            if mpc is not None:
                try:
                    goals = self.task.goal_window(torch.as_tensor(job.obs.goals,
                                                                  dtype=torch.float32),
                                                  job.obs.goal_start, mpc.horizon)
                    result = mpc.planner.plan(job.obs.state, goals, *warm)
                    if not self.lockstep:
                        # The command waits for the next tick anyway: predict the plan's
                        # trajectory now, so the tick itself runs no torch at all.
                        result.evaluation()
                except (ValueError, RuntimeError) as exc:
                    failure = f"planning failed: {exc}"
            else:
                failure = "no planner could be built"
            command = None
            with self._cond:
                self._busy = False
                self._running = None
                self._cond.notify_all()
                if result is not None:
                    self.plans += 1
                    self.latencies.append(float(result.stats.get("time_ms", 0.0)))
                command = self._finish(job, result, version, settings, failure)
            if failure:
                self._error(failure)
            if command is not None and self._on_plan is not None:
                try:
                    self._on_plan(command)
                except Exception as exc:  # the planning thread must outlive a failed send
                    self._error(f"sending the command failed: {exc!r}")

    def _finish(self, job: _Job, result: PlanResult | None, version: int,
                settings: PlannerSettings, failure: str) -> Command | None:
        """Hand a finished plan over (lock held); returns a lockstep command to send."""
        dropped, self._drop_running = self._drop_running, False
        if dropped or job.obs.episode_id != self._episode:
            return None  # not wanted any more, or the episode ended while planning
        if not self.lockstep:
            if result is not None:
                self._done = _Done(job, result, version, settings)
            return None
        if job.obs.key != self._last_key:
            return None  # a newer state arrived meanwhile; it is queued
        if self._last is not None and self._last.key == job.obs.key:
            return None  # answered meanwhile (a hold on a stale repeat of the state)
        if result is None:
            return self._emit(self._hold(job.obs, failure))
        return self._emit(self._from_result(job.obs, _Done(job, result, version, settings),
                                            advance=0, fallback=False))
