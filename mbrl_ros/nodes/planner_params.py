"""The ``mpc_planner`` node's parameters: schema, cross-checks, and the core settings they
describe (planner, exploration). The planners' own parameters are generated from their
config dataclasses (``tunable`` fields: name, description, range, runtime-changeable), so
adding a planner is one module and one registry line. Runtime-changeable: policy, planner,
num_samples, horizon, gamma, beta, sigma, risk_lambda, control_rate_hz, state_timeout_s; the
rest is read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from rcl_interfaces.msg import ParameterDescriptor

from mbrl_ros.core.planners import PLANNERS
from mbrl_ros.core.planners.base import tunables
from mbrl_ros.core.planning.exploration import INITIAL_ACTIONS, ExplorationConfig
from mbrl_ros.core.planning.loop_io import POLICIES, PlannerSettings
from mbrl_ros.core.robot.spec import load_robot
from mbrl_ros.nodes.parameters import Param, ParameterSet
from mbrl_ros.nodes.task_params import TASK_PARAMS, check_task_params

#: ``inference_dtype`` values -> torch dtypes (EnsembleDynamics.set_inference_dtype).
INFERENCE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class _ListParam(Param):
    """A list parameter whose default is empty: declared with dynamic typing, because an
    empty default would otherwise fix its type to a byte array and refuse a list of doubles."""

    def descriptor(self) -> ParameterDescriptor:
        desc = super().descriptor()
        desc.dynamic_typing = True
        return desc


def planner_params() -> list[Param]:
    """One parameter per tunable config field of every registered planner (the planners
    declare them: ``core.planners.base.tunable``); a field several planners share once."""
    out: dict[str, Param] = {}
    for cls in PLANNERS.values():
        for _, default, t in tunables(cls.config_class):
            out.setdefault(t.param, Param(t.param, default, t.description, t.low, t.high,
                                          read_only=not t.runtime))
    return list(out.values())


PARAMS = [
    *TASK_PARAMS,
    Param("mode", "lockstep", "lockstep: plan on each new state and answer at once; realtime: "
          "publish at control_rate_hz with a one-period planning budget",
          choices=("lockstep", "realtime"), read_only=True),
    Param("control_rate_hz", 10.0, "realtime: commands per second (PDDM: 10)", 0.1, 1000.0),
    Param("policy", "auto", "auto: plan once a model arrived, explore before; explore: PDDM's "
          "random policy; plan: plan (explores, saying so, until a model arrives)",
          choices=POLICIES),
    Param("planner", "mppi", "core planner: mppi (PDDM), cem, random (shooting), gradient",
          choices=tuple(PLANNERS)),
    *planner_params(),
    Param("exploration.vel_min", 0.05, "random policy: smallest per-step action velocity "
          "(PDDM 0.05)", 0.0, 2.0, read_only=True),
    Param("exploration.vel_max", 0.15, "random policy: largest per-step action velocity "
          "(PDDM 0.15)", 0.0, 2.0, read_only=True),
    Param("exploration.hold_steps", 2, "random policy: steps each velocity is held (PDDM 2)",
          1, 1000, read_only=True),
    Param("exploration.initial_action", "zero", "random policy: first action of an "
          "episode, zero (the keyframe pose; a robot starts where it is) or uniform in "
          "[-1, 1] (PDDM's code: a jump of all joints that drops the balls at once)",
          choices=INITIAL_ACTIONS, read_only=True),
    Param("act_without_schedule", False, "act on states of an episode without a "
          "goal_schedule (episode 0 of an estimator that never got one: the planner then "
          "drives the robot on the task's default goals); false: wait for a schedule",
          read_only=True),
    Param("state_timeout_s", 0.5, "realtime: hold the last command when the newest state is "
          "older than this (s; 0 = only the estimator's stale flag)", 0.0, 60.0),
    Param("torch_threads", 1, "torch intra-op threads (the cores are shared with the trainer)",
          1, 256, read_only=True),
    Param("device", "cpu", "torch device of the model and the planner",
          choices=("cpu", "cuda"), read_only=True),
    Param("inference_dtype", "float32", "precision of the model's forward pass while planning "
          "(bfloat16: about 2x faster on CPUs with AVX512-BF16/AMX and on GPUs)",
          choices=tuple(INFERENCE_DTYPES), read_only=True),
    Param("seed", 0, "seed of the planner's sampling and of the exploration (per episode: "
          "with the episode id)", 0, 2**31 - 1, read_only=True),
    Param("frame_id", "world", "frame of planned_action and plan markers", read_only=True),
    Param("joints", list(load_robot().joints), "joint order of joint_commands and "
          "planned_action: a permutation of the robot's joints", read_only=True),
    _ListParam("action_map.mid", [], "action 0 pose (rad, joints order); empty: the robot's "
               "pose for the task", read_only=True),
    _ListParam("action_map.low", [], "lower joint command limits (rad, joints order); empty: "
               "the robot's", read_only=True),
    _ListParam("action_map.high", [], "upper joint command limits (rad, joints order); empty: "
               "the robot's", read_only=True),
    Param("action_map.scale", 0.0, "fraction of the range reached at |a| = 1; 0: the robot's "
          "for the task (PDDM: Baoding 0.9, cube 1.0)", 0.0, 1.0, read_only=True),
]


def planner_settings(values: dict[str, Any]) -> PlannerSettings:
    """The core planner settings the parameters describe: the chosen planner's tunable
    config fields from their parameters (see :func:`planner_params`)."""
    name = values["planner"]
    options: dict[str, Any] = {"seed": values["seed"]}
    if name in PLANNERS:
        options.update({field: values[t.param]
                        for field, _, t in tunables(PLANNERS[name].config_class)})
    return PlannerSettings(name, options, values["device"])


def sampling_note(values: Mapping[str, Any] | ParameterSet, model: Any) -> str | None:
    """Why PETS sampling does nothing with ``model``, or None: ``sample_dynamics`` draws from
    each member's Gaussian, and deterministic members have none (every particle then
    repeats the member's mean), which the parameters alone cannot tell. ``values``: the
    planner's parameters (a dict or the node's parameter set)."""
    if not values["sample_dynamics"] or getattr(model, "probabilistic", True):
        return None
    return (f"sample_dynamics is true (particles {values['particles']}) but the model's "
            "members are deterministic: every particle repeats its member's mean; train "
            "probabilistic members (trainer ensemble.probabilistic) for PETS sampling")


def exploration_config(values: dict[str, Any]) -> ExplorationConfig:
    return ExplorationConfig(values["exploration.vel_min"], values["exploration.vel_max"],
                             values["exploration.hold_steps"],
                             values["exploration.initial_action"])


def _check_planner(values: dict[str, Any]) -> str | None:
    return planner_settings(values).problem()


def _check_exploration(values: dict[str, Any]) -> str | None:
    try:
        exploration_config(values)
    except ValueError as exc:
        return str(exc)
    return None


def _check_joints(values: dict[str, Any]) -> str | None:
    joints = values["joints"]
    try:
        load_robot(values["robot"]).order_of(joints)
    except ValueError as exc:
        return str(exc)
    for key in ("action_map.mid", "action_map.low", "action_map.high"):
        if len(values[key]) not in (0, len(joints)):
            return f"{key} needs {len(joints)} values (joints order) or none, got " \
                   f"{len(values[key])}"
    low, high = values["action_map.low"], values["action_map.high"]
    if low and high and not all(lo < hi for lo, hi in zip(low, high, strict=True)):
        return "action_map.low must be below action_map.high for every joint"
    return None


PARAM_CHECKS = [check_task_params, _check_planner, _check_exploration, _check_joints]
