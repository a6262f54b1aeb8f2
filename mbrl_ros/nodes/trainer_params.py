"""The ``dynamics_trainer`` node's parameters: schema, cross-checks, and the core
retraining settings they describe (:func:`retrain_settings`, also what the learning
benchmarks train with).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mbrl_ros.core.models.ensemble import ACTIVATIONS, EnsembleConfig
from mbrl_ros.core.models.retraining import RetrainSettings
from mbrl_ros.core.models.training import LR_SCHEDULES, TRAIN_PRECISIONS, TrainConfig
from mbrl_ros.core.tasks import Task
from mbrl_ros.nodes.parameters import Param
from mbrl_ros.nodes.task_params import TASK_PARAMS, check_task_params

PARAMS = [
    *TASK_PARAMS,
    Param("dataset_dir", "~/.ros/mbrl_ros/dataset", "directory of the durable episode "
          "dataset (one file per episode; loaded again on start)", read_only=True),
    Param("models_dir", "", "directory of accepted model checkpoints; empty = 'models' "
          "beside dataset_dir", read_only=True),
    Param("keep_models", 5, "newest checkpoints kept in models_dir", 1, 100000,
          read_only=True),
    Param("ensemble.members", 3, "ensemble size (PDDM 3)", 1, 100),
    # Start-up only: an integer array set at run time arrives as array.array, which the
    # parameter schema refuses.
    Param("ensemble.hidden", [250, 250], "hidden layer widths (PDDM 2 x 250)", read_only=True),
    Param("ensemble.activation", "relu", "hidden activation (PDDM relu)",
          choices=tuple(sorted(ACTIVATIONS))),
    Param("ensemble.probabilistic", False, "Gaussian members trained with NLL (PETS) "
          "instead of MSE (PDDM)"),
    Param("ensemble.goal_inputs", True, "feed the task's goal fields (Baoding's target xy, "
          "the cube's desired angles) to the members as inputs (PDDM); false holds them at 0, "
          "since physics does not depend on them"),
    Param("train.epochs", 40, "epochs per job when the request says 0 (PDDM 40)", 1, 100000),
    Param("train.batch_size", 512, "minibatch size (PDDM 512)", 1, 1000000),
    Param("train.lr", 1e-3, "Adam learning rate (PDDM 1e-3)", 1e-7, 1.0),
    Param("train.lr_schedule", "constant", "step size over a job: constant (PDDM) or "
          "cosine (falls from train.lr to 0 over the job's steps)", choices=LR_SCHEDULES),
    Param("train.precision", "float32", "precision of the training matmuls: float32 "
          "(PDDM) or bfloat16 (mixed precision: weights, optimizer and losses stay float32; "
          "several times faster where the CPU has bfloat16 units, e.g. avx512_bf16)",
          choices=TRAIN_PRECISIONS),
    Param("train.average_last_epochs", 0, "0 keeps the last step's weights (PDDM); k > 0 "
          "publishes the mean of the weights at the end of the job's last k epochs "
          "(weight averaging; a shorter job averages all its epochs)", 0, 100000),
    Param("train.rollout_steps", 1, "1 fits one-step predictions (PDDM); k > 1 also fits "
          "each member's own k-step open-loop chain within an episode (deterministic "
          "members)", 1, 100),
    Param("train.object_loss_weight", 1.0, "loss weight of the tracked objects' state "
          "fields (Baoding's balls, the cube) against the other fields' 1 (PDDM: 1, all "
          "alike); the planner's reward reads the objects", 0.01, 100.0),
    Param("train.bootstrap", False, "each member trains on its own resample (with "
          "replacement) of the training transitions, so members disagree where data is thin "
          "(PDDM: false, all members see all data)"),
    Param("train.input_noise", 0.01, "std of Gaussian noise on z-scored inputs and targets "
          "(PDDM 1%)", 0.0, 10.0),
    Param("train.val_fraction", 0.1, "fraction of episodes held out for validation "
          "(PDDM 90/10)", 0.01, 0.9),
    Param("train.from_scratch", True, "re-initialize the weights each job (PDDM); false "
          "warm-starts from the newest model unless the request asks for scratch"),
    Param("train.ball_swap", True, "multiply the training data by the task's symmetries "
          "(Task.augmentation; Baoding: swap the identical balls, PDDM; cube: "
          "cube.symmetry_copies)"),
    Param("train.seed", 0, "seed of the episode split and the weight initialization",
          0, 2**31 - 1),
    Param("train.log_every", 10, "a progress log line every this many epochs", 1, 100000),
    Param("train_threads", 1, "torch CPU threads of a training job (the planner needs the "
          "other cores)", 1, 256),
    Param("niceness", 10, "nice value of the training thread (higher = lower priority "
          "than the planner)", 0, 19),
    Param("device", "cpu", "where to train", choices=("cpu", "cuda")),
    Param("max_val_loss", 2.0, "sanity bound on the validation MSE in z-scored units "
          "(predicting the mean change scores about 1; models on a few episodes score 1-2); "
          "a worse model is not published",
          1e-12, 1e12),
    Param("eval_horizon", 7, "open-loop validation horizon (PDDM plans 7 steps)", 1, 1000),
    Param("min_transitions", 100, "stored transitions needed before a job is accepted",
          1, 1000000000),
    Param("skip_stale_states", True, "do not record states the estimator flags stale "
          "(their objects are predictions, not measurements)"),
    Param("action_grace_s", 3.5, "wait this long (wall s) for an episode's missing action "
          "before storing it without that transition (a sample lost on a busy machine is "
          "resent within Fast DDS's 3 s heartbeat period)", 0.0, 60.0, read_only=True),
]


def retrain_settings(task: Task, p: Mapping[str, Any], epochs: int = 0,
                     from_scratch: bool = False) -> RetrainSettings:
    """The core retraining settings the trainer's parameter values ``p`` describe
    (``epochs`` 0: the ``train.epochs`` parameter; ``from_scratch`` or ``train.from_scratch``)."""
    architecture = EnsembleConfig(
        state_dim=task.state_dim, action_dim=task.action_dim,
        num_members=p["ensemble.members"], hidden_sizes=tuple(p["ensemble.hidden"]),
        activation=p["ensemble.activation"], probabilistic=p["ensemble.probabilistic"],
        ignored_state_inputs=() if p["ensemble.goal_inputs"] else task.goal_state_dims)
    train = TrainConfig(
        lr=p["train.lr"], batch_size=p["train.batch_size"],
        epochs=epochs or p["train.epochs"], input_noise=p["train.input_noise"],
        lr_schedule=p["train.lr_schedule"], precision=p["train.precision"],
        average_last_epochs=min(p["train.average_last_epochs"], epochs or p["train.epochs"]),
        rollout_steps=p["train.rollout_steps"], bootstrap=p["train.bootstrap"],
        output_weights=object_loss_weights(task, p["train.object_loss_weight"]),
        from_scratch=from_scratch or p["train.from_scratch"],
        seed=p["train.seed"], device=p["device"], num_threads=p["train_threads"])
    augment = task.augmentation if p["train.ball_swap"] else None
    return RetrainSettings(
        architecture=architecture, train=train, val_fraction=p["train.val_fraction"],
        split_seed=p["train.seed"], augment=augment, eval_horizon=p["eval_horizon"],
        max_val_mse=p["max_val_loss"])


def object_loss_weights(task: Task, weight: float) -> tuple[float, ...] | None:
    """Per state dimension loss weights: ``weight`` on the task's objects, 1 elsewhere
    (None when all are 1: PDDM's loss)."""
    objects = set(task.object_state_dims)
    if weight == 1.0 or not objects:
        return None
    return tuple(float(weight) if d in objects else 1.0 for d in range(task.state_dim))


def _hidden_check(values: dict[str, Any]) -> str | None:
    hidden = values["ensemble.hidden"]
    if not hidden or not all(isinstance(h, int) and 1 <= h <= 100000 for h in hidden):
        return f"ensemble.hidden must be a non-empty list of widths in [1, 100000], got {hidden}"
    return None


def _rollout_check(values: dict[str, Any]) -> str | None:
    if values["train.rollout_steps"] > 1 and values["ensemble.probabilistic"]:
        return "train.rollout_steps > 1 needs deterministic members (ensemble.probabilistic false)"
    return None


PARAM_CHECKS = [check_task_params, _hidden_check, _rollout_check]
