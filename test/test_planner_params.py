"""The planner node's parameters are generated from the planners' config dataclasses:
adding a planner is one module plus one registry line (no node code names planners)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

pytest.importorskip("rclpy")

from mbrl_ros.core.planners import PLANNERS
from mbrl_ros.core.planners.base import Planner, PlannerConfig, tunable
from mbrl_ros.nodes.planner_params import (
    PARAMS,
    planner_params,
    planner_settings,
    sampling_note,
)

pytestmark = pytest.mark.ros


def defaults() -> dict:
    return {p.name: p.default for p in PARAMS}


def test_pddm_names_and_values_are_the_parameters():
    by_name = {p.name: p for p in PARAMS}
    for name, value in (("gamma", 20.0), ("beta", 0.6), ("sigma", 0.9), ("horizon", 7),
                        ("num_samples", 700), ("cem.iterations", 5), ("gradient.restarts", 8)):
        assert by_name[name].default == value, name
    assert not by_name["gamma"].read_only and by_name["cem.iterations"].read_only
    values = defaults()
    settings = planner_settings(values)
    assert settings.name == "mppi" and settings.problem() is None
    options = dict(settings.options)
    assert [options[k] for k in ("gamma", "beta", "sigma", "horizon")] == [20.0, 0.6, 0.9, 7]
    gradient = planner_settings({**values, "planner": "gradient", "gradient.restarts": 3})
    assert dict(gradient.options)["num_samples"] == 3  # its restarts are its samples


def test_a_new_planner_is_one_class_and_one_registry_line(monkeypatch):
    @dataclass
    class ZeroConfig(PlannerConfig):
        scale: float = tunable(0.5, "zero.scale", "how far from zero", 0.0, 1.0)

    class ZeroPlanner(Planner):
        config_class = ZeroConfig

        def _optimize(self, state, goals, prev_plan, prev_action):
            return torch.zeros(self.config.horizon, self.task.action_dim), {}

    monkeypatch.setitem(PLANNERS, "zero", ZeroPlanner)
    params = {p.name: p for p in planner_params()}
    assert params["zero.scale"].description == "how far from zero"
    settings = planner_settings({**defaults(), "planner": "zero", "zero.scale": 0.25})
    assert dict(settings.options)["scale"] == 0.25 and settings.problem() is None


def test_pets_trajectory_sampling_is_a_parameter_of_every_planner():
    """particles / sample_dynamics (PETS) are declared read-only with PDDM's values (1,
    false), reach the planner's scorer, and the cross-check refuses particles without
    sampling (identical copies) before a planner is built."""
    from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
    from mbrl_ros.core.tasks import make_task

    by_name = {p.name: p for p in PARAMS}
    assert (by_name["particles"].default, by_name["sample_dynamics"].default) == (1, False)
    assert by_name["particles"].read_only and by_name["sample_dynamics"].read_only
    values = {**defaults(), "particles": 4, "sample_dynamics": True, "num_samples": 60,
              "horizon": 2}
    task = make_task("baoding")
    model = EnsembleDynamics(EnsembleConfig(task.state_dim, task.action_dim, 2, (8,),
                                            probabilistic=True))
    for planner in ("mppi", "cem", "random"):
        settings = planner_settings({**values, "planner": planner})
        assert settings.problem() is None, planner
        scorer = settings.build(model, task).scorer
        assert (scorer.particles, scorer.sample_dynamics) == (4, True), planner
    refused = planner_settings({**values, "sample_dynamics": False}).problem()
    assert refused is not None and "sample_dynamics" in refused
    # deterministic members have nothing to sample: the planner node warns (sampling_note)
    plain = EnsembleDynamics(EnsembleConfig(task.state_dim, task.action_dim, 2, (8,)))
    assert sampling_note(values, model) is None
    assert "deterministic" in sampling_note(values, plain)
    assert sampling_note({**values, "sample_dynamics": False, "particles": 1}, plain) is None
