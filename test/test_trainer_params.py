"""What the trainer's parameters make of a task: which goal fields the model sees."""

from __future__ import annotations

import pytest

from mbrl_ros.core.tasks.layouts import BAODING_LAYOUT, CUBE_LAYOUT
from mbrl_ros.core.tasks.registry import make_task
from mbrl_ros.nodes.trainer_params import PARAMS, retrain_settings


def defaults() -> dict:
    return {p.name: p.default for p in PARAMS}


def dims(layout, *names: str) -> tuple[int, ...]:
    return tuple(i for name in names for i in range(layout.start(name),
                                                    layout.start(name) + layout.size(name)))


@pytest.mark.parametrize(("task", "goal_dims"), [
    ("baoding", dims(BAODING_LAYOUT, "target1_xy", "target2_xy")),
    ("cube", dims(CUBE_LAYOUT, "desired_euler")),
])
def test_goal_fields_are_model_inputs_unless_asked_not(task: str, goal_dims: tuple[int, ...]):
    values = defaults()  # PDDM's inputs: the whole state
    assert retrain_settings(make_task(task), values).architecture.ignored_state_inputs == ()
    values["ensemble.goal_inputs"] = False
    architecture = retrain_settings(make_task(task), values).architecture
    assert architecture.ignored_state_inputs == goal_dims and goal_dims


def test_training_levers_reach_the_train_config_and_bad_combinations_are_refused():
    from mbrl_ros.nodes.trainer_params import PARAM_CHECKS

    values = defaults()
    train = retrain_settings(make_task("baoding"), values).train
    assert (train.average_last_epochs, train.rollout_steps, train.bootstrap) == (0, 1, False)
    values.update({"train.average_last_epochs": 10, "train.rollout_steps": 3,
                   "train.bootstrap": True})
    train = retrain_settings(make_task("baoding"), values).train
    assert (train.average_last_epochs, train.rollout_steps, train.bootstrap) == (10, 3, True)
    assert train.output_weights is None  # PDDM: every state field alike
    values["train.object_loss_weight"] = 4.0
    weights = retrain_settings(make_task("baoding"), values).train.output_weights
    balls = set(make_task("baoding").object_state_dims)
    assert len(balls) == 12 and len(weights) == 40
    assert [d for d, w in enumerate(weights) if w == 4.0] == sorted(balls)
    assert all(w == 1.0 for d, w in enumerate(weights) if d not in balls)
    # a job of fewer epochs than averaged averages all of them
    assert retrain_settings(make_task("baoding"), values, epochs=4).train.average_last_epochs == 4
    assert all(check(values) is None for check in PARAM_CHECKS)
    values["ensemble.probabilistic"] = True
    problems = [p for check in PARAM_CHECKS if (p := check(values))]
    assert problems and "deterministic" in problems[0]
