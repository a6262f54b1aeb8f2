"""One PDDM learning run in-process: simulator + core, no ROS, resumable.

The same loop the experiment node drives through the stack (``core.experiment``:
random rollouts, then per iteration retrain -> MPC rollouts -> random rollouts), with the
same settings (the stack's config files, :mod:`stack_config`), but in one process so that
a benchmark of many runs is reproducible and cheap. Episodes follow PDDM: they end at a
drop (the terminal transition is stored) or after the task's episode length.

``model="learned"`` plans on the ensemble retrained from scratch each iteration;
``model="true"`` plans on the simulator itself (:class:`true_model.SimulatorModel`): the
same planner and budget per step with a perfect model, i.e. the upper bound of the learned
runs. A true-model run has no data to learn from, so it only runs its MPC episodes.
``model="hold"`` runs those episodes with the zero action (the hand holds its keyframe
pose): the reference a learned controller has to beat, since PDDM's score is averaged
until a drop and a still hand keeps the balls.

Resuming: everything lands in ``out_dir`` (``metrics.csv`` one row per episode, the episode
dataset, one model per iteration); a restarted run skips the episodes its ``metrics.csv``
holds and reloads the model of the iteration it is in.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbrl_ros.core.data.dataset import EpisodeDataset
from mbrl_ros.core.experiment import (
    Budget,
    EpisodeOutcome,
    Step,
    pddm_plan,
    run_experiment,
)
from mbrl_ros.core.models.ensemble import EnsembleDynamics
from mbrl_ros.core.models.retraining import RetrainSettings, retrain
from mbrl_ros.core.models.serialization import load_model, save_model
from mbrl_ros.core.planners import DynamicsModel
from mbrl_ros.core.planning.exploration import RandomVelocityExploration
from mbrl_ros.core.planning.mpc import ModelPredictiveController
from mbrl_ros.core.tasks.base import Task
from mbrl_ros.core.tasks.from_values import collection_only_settings, stack_task
from mbrl_ros.nodes.planner_params import INFERENCE_DTYPES, exploration_config, planner_settings
from mbrl_ros.nodes.planner_params import PARAMS as PLANNER_PARAMS
from mbrl_ros.nodes.trainer_params import PARAMS as TRAINER_PARAMS
from mbrl_ros.nodes.trainer_params import retrain_settings
from mbrl_ros.results.learning_curve import plot_learning_curve
from mbrl_ros.results.metrics_log import MetricsLog, read_metrics
from mbrl_ros.sim.gym_env import HandEnv
from mbrl_ros.sim.rollout import roll_out

import benchlib
from .drop_hazard import (
    DropHazard,
    labelled_states,
    load_hazard,
    train_hazard,
    with_hazard_cost,
)
from .stack_config import node_values
from .true_model import SimulatorModel, mpc_policy

Log = Callable[[str], None]
MODELS = ("learned", "true", "hold")
#: Samples per step of the perfect-model runs: PDDM's own perfect-model checks (its README:
#: Baoding N 300, cube N 200; H, gamma, beta, sigma as in the task's config). At PDDM's
#: learned-model N (700 / 1000) one simulated step costs 2-5x more and changes nothing.
PERFECT_MODEL_SAMPLES = {"baoding": 300, "cube": 200}
HAZARD_DEFAULTS = {"k": 3, "weight": 30.0, "epochs": 10}


def perfect_model_samples(task: str) -> int:
    """The perfect model's N for ``task`` (``PERFECT_MODEL_SAMPLES``; 300 for another task)."""
    return PERFECT_MODEL_SAMPLES.get(task, 300)


@dataclass(frozen=True)
class RunSpec:
    """What one run is: task, planner, seed, model kind, budget, planner overrides, and the
    ``HandEnv`` options of its states (``env_options``, e.g. ``tracker_reports_velocity``)."""

    task: str
    planner: str = "mppi"
    seed: int = 0
    model: str = "learned"
    budget: Budget = field(default_factory=Budget)
    planner_overrides: dict[str, Any] = field(default_factory=dict)
    episode_length: int | None = None
    trainer_overrides: dict[str, Any] = field(default_factory=dict)
    true_model_threads: int = 1
    env_options: dict[str, Any] = field(default_factory=dict)
    true_model_sees: str = "full"
    #: std of Gaussian noise on each executed MPC action of a learned run's data-collecting
    #: episodes (normalized units, clipped to [-1, 1]; 0: PDDM): a collection lever that
    #: puts action effects the planner asks about into the data
    mpc_action_noise: float = 0.0
    #: from the retraining whose dataset holds this many transitions on, the trainer also
    #: takes ``late_trainer_overrides`` (None: never): members that are cheap to retrain
    #: while the data is scarce, the costly ones that meet the bar once it is not
    late_trainer_from: int | None = None
    late_trainer_overrides: dict[str, Any] = field(default_factory=dict)
    #: a learned drop hazard in the planner's score (``learning.drop_hazard``; empty: none,
    #: PDDM): ``{"k": steps, "weight": cost per step, "epochs": fit}``, refitted on the
    #: whole dataset with each model and stored beside it (``models/hazard_NNNN.pt``)
    drop_hazard: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.model not in MODELS:
            raise ValueError(f"model must be one of {MODELS}, got {self.model!r}")
        if not (np.isfinite(self.mpc_action_noise) and 0.0 <= self.mpc_action_noise <= 1.0):
            raise ValueError(f"mpc_action_noise must be in [0, 1], got {self.mpc_action_noise}")
        if self.late_trainer_from is not None and self.late_trainer_from < 0:
            raise ValueError(f"late_trainer_from must be None or >= 0, "
                             f"got {self.late_trainer_from}")
        unknown = set(self.drop_hazard) - set(HAZARD_DEFAULTS)
        if unknown or any(float(v) < 0 for v in self.drop_hazard.values()):
            raise ValueError(f"drop_hazard takes non-negative {sorted(HAZARD_DEFAULTS)}, got "
                             f"{self.drop_hazard}")

    @property
    def name(self) -> str:
        return f"{self.task}_{self.planner}_{self.model}_seed{self.seed}"

    def describe(self) -> dict[str, Any]:
        out = asdict(self)
        out["budget"] = asdict(self.budget)
        return out


def stored_spec(run_dir: str | Path) -> dict[str, Any]:
    """A stored run's ``spec.json`` (a directory without one: Baoding, no options)."""
    path = Path(run_dir) / "spec.json"
    return json.loads(path.read_text()) if path.exists() else {"task": "baoding"}


def run_env_options(run_dir: str | Path) -> dict[str, Any]:
    """The ``HandEnv`` options a stored run's states were made with (its ``spec.json``; none
    for a directory without one): evaluations of its models must see the same states."""
    return dict(stored_spec(run_dir).get("env_options", {}))


def evaluation_env_options(run_dir: str | Path) -> dict[str, Any]:
    """``run_env_options`` for judging a stored run's models: the same states, but without
    the task settings that shape only the collection (``collection_only_settings``): a run
    that collected with another goal set, e.g. ``cube.goal_set`` with half turns, is judged
    on PDDM's goals."""
    options = run_env_options(run_dir)
    collection_only = collection_only_settings()
    params = {k: v for k, v in options.pop("task_params", {}).items()
              if k not in collection_only}
    if params:
        options["task_params"] = params
    return options


def evaluation_env(run_dir: str | Path) -> HandEnv:
    """The environment a stored run's models are judged in: its task and states
    (``evaluation_env_options``)."""
    return HandEnv(stored_spec(run_dir)["task"], **evaluation_env_options(run_dir))


def hazard_settings(given: dict[str, Any] | None) -> dict[str, Any] | None:
    """``RunSpec.drop_hazard`` with the defaults filled in; None when it is empty (no hazard)."""
    return {**HAZARD_DEFAULTS, **given} if given else None


def hazard_options(run_dir: str | Path) -> dict[str, Any] | None:
    """A stored run's drop hazard settings (defaults filled in), None for a run without one."""
    return hazard_settings(stored_spec(run_dir).get("drop_hazard"))


def stored_run_task(run_dir: str | Path) -> Task:
    """The task a stored run's states, goals and drops were made with (its ``spec.json``:
    task, episode length, task parameters; Baoding's defaults without one), built without
    the simulator, for benches that only read the run's data."""
    spec = stored_spec(run_dir)
    return stack_task(spec["task"], spec.get("episode_length"),
                      run_env_options(run_dir).get("task_params"))


def planner_values(spec: RunSpec) -> dict[str, Any]:
    """The mpc_planner parameters of the stack for this run (PDDM's per-task N, gamma...)."""
    overrides = {"planner": spec.planner, "seed": spec.seed, **spec.planner_overrides}
    if spec.episode_length is not None:
        overrides["episode_length"] = spec.episode_length
    return node_values("mpc_planner", PLANNER_PARAMS, ["planner", spec.task], overrides)


def trainer_values(spec: RunSpec, late: bool = False) -> dict[str, Any]:
    """The dynamics_trainer parameters of this run; ``late``: those of its retrainings from
    ``spec.late_trainer_from`` transitions on."""
    overrides: dict[str, Any] = {"train.seed": spec.seed, **spec.trainer_overrides,
                                 **(spec.late_trainer_overrides if late else {})}
    if spec.episode_length is not None:
        overrides["episode_length"] = spec.episode_length
    return node_values("dynamics_trainer", TRAINER_PARAMS, ["trainer", spec.task], overrides)


def perfect_controller(env: HandEnv, threads: int = 1, num_samples: int | None = None
                       ) -> tuple[ModelPredictiveController, SimulatorModel]:
    """MPC planning on ``env``'s own simulator (the perfect-model bound) with the stack's
    planner for its task at PDDM's perfect-model N (``PERFECT_MODEL_SAMPLES``, or
    ``num_samples``); the caller closes the returned model."""
    model = SimulatorModel(env.sim, threads)
    n = perfect_model_samples(env.task.name) if num_samples is None else num_samples
    values = planner_values(RunSpec(task=env.task.name, planner_overrides={"num_samples": n}))
    return ModelPredictiveController(planner_settings(values).build(model, env.task),
                                     env.task), model


def episode_seed(spec: RunSpec, episode: int) -> int:
    """Seeds of different runs never overlap (run seed s, episode e)."""
    return spec.seed * 1_000_003 + episode


class PDDMRun:
    """The in-process backend of ``core.experiment.run_experiment``: walks
    ``pddm_plan(spec.budget)``, skipping what ``out_dir`` already holds."""

    def __init__(self, spec: RunSpec, out_dir: str | Path, log: Log = print) -> None:
        self.spec = spec
        self.out = Path(out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.log = log
        self._check_spec_file()
        p = planner_values(spec)
        self.planner_values = p
        self.env = HandEnv(spec.task, episode_length=spec.episode_length, **spec.env_options)
        self.task = self.env.task
        self.hazard: DropHazard | None = None
        self.planning_task = self.task  # the task whose reward the planner scores
        self.planner_settings = planner_settings(p)
        self.exploration = RandomVelocityExploration(self.task.action_dim,
                                                     exploration_config(p), seed=spec.seed)
        self.train_settings = retrain_settings(self.task, trainer_values(spec))
        self.late_train_settings = (retrain_settings(self.task, trainer_values(spec, late=True))
                                    if spec.late_trainer_from is not None else None)
        self.metrics = MetricsLog(self.out / "metrics.csv")
        self.dataset = EpisodeDataset(self.out / "dataset")
        self.models_dir = self.out / "models"
        self.models_dir.mkdir(exist_ok=True)
        self.mpc: ModelPredictiveController | None = None
        self.model: DynamicsModel | None = None
        self.true_model = (SimulatorModel(self.env.sim, spec.true_model_threads,
                                          spec.true_model_sees)
                           if spec.model == "true" else None)
        self.timing_path = self.out / "timing.json"
        self._active_before = (json.loads(self.timing_path.read_text())["active_s"]
                               if self.timing_path.exists() else 0.0)
        self._session_start = time.monotonic()

    def active_seconds(self) -> float:
        """Wall time this run has spent working, over all the sessions that resumed it."""
        return self._active_before + time.monotonic() - self._session_start

    def _write_timing(self) -> None:
        """Throughput facts beside ``metrics.csv`` (active time survives a resume)."""
        benchlib.atomic_text(self.timing_path, json.dumps({
            "active_s": self.active_seconds(),
            "transitions": self.dataset.num_transitions}) + "\n")

    def _check_spec_file(self) -> None:
        path = self.out / "spec.json"
        described = self.spec.describe()
        if path.exists():
            stored = json.loads(path.read_text())
            # a field added since the run started counts as its default
            stored = {**json.loads(json.dumps(RunSpec(self.spec.task).describe())), **stored}
            if stored != json.loads(json.dumps(described)):
                raise ValueError(f"{self.out} holds a different run ({stored}); use another "
                                 "directory or delete it")
        else:
            path.write_text(json.dumps(described, indent=2) + "\n")

    # ----- the loop (core.experiment.run_experiment calls these) ------------------------
    def run(self) -> Path:
        """Run (or finish) the whole budget; returns the metrics file."""
        rows = read_metrics(self.metrics.path)
        plan = pddm_plan(self.spec.budget)
        if self.spec.model != "learned":  # nothing to learn: only the MPC episodes
            plan = [s for s in plan if s.kind == "episode" and s.policy == "mpc"]
        if rows:
            total = sum(1 for s in plan if s.kind == "episode")
            self.log(f"{self.spec.name}: resuming after {len(rows)} of {total} episodes")
        rows = run_experiment(plan, self, self.task, self._append,
                              lambda text: self.log(f"{self.spec.name}: {text}"), rows)
        self._plot(rows)
        if self.true_model is not None:
            self.true_model.close()
        return self.metrics.path

    def _append(self, row: dict[str, Any]) -> None:
        self.metrics.append(row)
        self._write_timing()

    def _plot(self, rows: list[dict[str, Any]]) -> None:
        plot_learning_curve(rows, self.out / "learning_curve.png", self.spec.name)

    def end_iteration(self, iteration: int, rows: list[dict[str, Any]],
                      last_mpc: EpisodeOutcome | None) -> None:
        self._plot(rows)

    def train(self, iteration: int) -> None:
        self._model_for(iteration)

    def _model_for(self, iteration: int) -> None:
        """The model of ``iteration``: loaded if stored, else trained (and stored)."""
        if self.spec.model != "learned":
            return
        path = self.models_dir / f"iteration_{iteration:04d}.model"
        if path.exists():
            model, _ = load_model(path)
            self._use(model)
            self._hazard_for(iteration)
            return
        start = time.monotonic()
        # a warm start (trainer ``train.from_scratch: false``) trains a copy of the current
        # model: the one planning stays intact if the new one is rejected
        previous = copy.deepcopy(self.model) if self.model is not None else None
        settings = self.settings_for(self.dataset.num_transitions)
        late = " (late trainer settings)" if settings is self.late_train_settings else ""
        outcome = retrain(self.dataset, settings, previous=previous)
        m = outcome.metrics
        if outcome.accepted and outcome.model is not None:
            save_model(path, outcome.model, {"iteration": iteration, "task": self.task.name})
            self._use(outcome.model)
            self.log(f"{self.spec.name}: iteration {iteration} model on "
                     f"{m['num_transitions']} transitions{late} in "
                     f"{time.monotonic() - start:.1f} s "
                     f"({outcome.message}), "
                     f"val one-step MSE {m['val_one_step_mse']:.3g}")
        else:
            keep = ("keeping the previous one" if self.model is not None else
                    "exploring until a model is accepted, as the planner node does")
            self.log(f"{self.spec.name}: iteration {iteration} model rejected "
                     f"({outcome.message}); {keep}")
        self._hazard_for(iteration)

    def _hazard_for(self, iteration: int) -> None:
        """With ``spec.drop_hazard``: the hazard of ``iteration`` (loaded if stored, else
        fitted on every episode so far and stored) in the planner's score."""
        opts = hazard_settings(self.spec.drop_hazard)
        if opts is None or self.spec.model != "learned":
            return
        path = self.models_dir / f"hazard_{iteration:04d}.pt"
        if path.exists():
            fitted = load_hazard(path, self.task)
        else:
            start = time.monotonic()
            states, labels = labelled_states(self.dataset, self.dataset.episode_ids,
                                             int(opts["k"]))
            fitted = train_hazard(self.task, states, labels, int(opts["epochs"]),
                                  seed=self.spec.seed)
            torch.save(fitted.state_dict(), path)
            self.log(f"{self.spec.name}: iteration {iteration} drop hazard (k {opts['k']}) on "
                     f"{len(labels)} states, {int(labels.sum())} before a drop, in "
                     f"{time.monotonic() - start:.1f} s")
        if self.hazard is None:
            self.hazard = fitted.eval()
            self.planning_task = with_hazard_cost(self.task, self.hazard, float(opts["weight"]))
            self.mpc = None  # rebuilt on the planning task
            if self.model is not None:
                self._controller(self.model)
        else:
            self.hazard.load_state_dict(fitted.state_dict())

    def settings_for(self, transitions: int) -> RetrainSettings:
        """The retraining of a dataset of ``transitions``: the late one from
        ``spec.late_trainer_from`` on, else the run's own."""
        if self.late_train_settings is None or transitions < self.spec.late_trainer_from:
            return self.train_settings
        return self.late_train_settings

    def _use(self, model: EnsembleDynamics) -> None:
        model.set_inference_dtype(INFERENCE_DTYPES[self.planner_values["inference_dtype"]])
        self.model = model
        self._controller(model)

    def _controller(self, model: DynamicsModel) -> ModelPredictiveController:
        if self.mpc is None:
            planner = self.planner_settings.build(model, self.planning_task)
            self.mpc = ModelPredictiveController(planner, self.planning_task)
        else:
            self.mpc.set_model(model)
        return self.mpc

    # ----- one episode ------------------------------------------------------------------
    def run_episode(self, step: Step, index: int) -> EpisodeOutcome:
        seed = episode_seed(self.spec, index)
        obs, info = self.env.reset(seed=seed)
        goals = torch.as_tensor(info["goals"], dtype=torch.float32)
        length = goals.shape[0] - 1
        policy = step.policy or "mpc"
        if self.spec.model == "hold":
            policy = "hold"
        elif policy == "mpc" and self.mpc is None and self.true_model is None:
            policy = "random"  # no accepted model yet: the stack's planner explores too
        if policy == "random":
            self.exploration.reset(index)
        elif policy == "mpc":
            if self.true_model is not None:
                self._controller(self.true_model)
            assert self.mpc is not None
            self.mpc.reset()
        noise = np.random.default_rng(seed) if self.spec.mpc_action_noise > 0 else None
        plan_ms: list[float] = []
        plan = (mpc_policy(self.env, self.mpc, goals, self.true_model) if policy == "mpc"
                else None)

        def act(t: int, state: np.ndarray) -> np.ndarray:
            if policy == "random":
                return self.exploration.act()
            if plan is None:  # hold
                return np.zeros(self.task.action_dim)
            tic = time.perf_counter()
            action = plan(t, state)
            plan_ms.append(1e3 * (time.perf_counter() - tic))
            if noise is not None:
                action = np.clip(action + noise.normal(0.0, self.spec.mpc_action_noise,
                                                       action.shape), -1.0, 1.0)
            return action

        start = time.monotonic()
        episode = roll_out(self.env, obs, act, length)
        wall = time.monotonic() - start
        if self.spec.model == "learned":
            self.dataset.append_episode(
                **episode.transitions(self.env.sim.control_dt),
                meta={"policy": policy, "iteration": step.iteration, "seed": seed})
        return EpisodeOutcome(
            episode_id=index, seed=seed, policy=policy, states=episode.states,
            actions=episode.actions,
            goals=goals.double().numpy(), transitions=self.dataset.num_transitions,
            model_version=step.iteration, plan_ms=plan_ms, wall_s=wall)


def run(spec: RunSpec, out_dir: str | Path, log: Log = print) -> Path:
    """Run (or resume) ``spec`` into ``out_dir``; returns its ``metrics.csv``."""
    return PDDMRun(spec, out_dir, log).run()
