"""One retraining job: split the dataset, train the ensemble, validate, accept or reject.

The sanity bound is on the validation MSE in z-scored delta units, where always predicting
the mean state change scores about 1: a model above ``max_val_mse`` predicts no better than
that constant and would only mislead a planner, so it is not published.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from mbrl_ros.core.data.dataset import EpisodeDataset, TransitionBatch
from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.models.evaluation import (
    disagreement,
    one_step_errors,
    open_loop_errors,
    open_loop_starts,
)
from mbrl_ros.core.models.training import ProgressFn, TrainConfig, TrainResult, train_ensemble

Augment = Callable[[TransitionBatch], TransitionBatch]


@dataclass(frozen=True)
class RetrainSettings:
    """What one job does (defaults: PDDM; ``eval_horizon`` = PDDM's planning horizon)."""

    architecture: EnsembleConfig
    train: TrainConfig = field(default_factory=TrainConfig)
    val_fraction: float = 0.1
    split_seed: int = 0
    augment: Augment | None = None
    eval_horizon: int = 7
    max_val_mse: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        if self.eval_horizon < 1:
            raise ValueError(f"eval_horizon must be >= 1, got {self.eval_horizon}")
        if not self.max_val_mse > 0:
            raise ValueError(f"max_val_mse must be > 0, got {self.max_val_mse}")


@dataclass
class RetrainOutcome:
    """Result of :func:`retrain`. ``metrics`` keys match ``TrainingMetrics`` fields."""

    accepted: bool
    message: str
    model: EnsembleDynamics | None
    metrics: dict[str, Any]
    result: TrainResult | None = None


def _longest_horizon(batch: TransitionBatch, horizon: int) -> int:
    """The largest ``h <= horizon`` for which the batch holds an ``h``-step segment."""
    for h in range(horizon, 0, -1):
        if open_loop_starts(batch, h).numel() > 0:
            return h
    return 0


@torch.no_grad()
def validation_metrics(model: EnsembleDynamics, val: TransitionBatch, horizon: int
                       ) -> dict[str, Any]:
    """One-step MSE and open-loop MSE for H = 1..horizon (raw units, ensemble mean), the
    mean member disagreement (std in z-scored delta units) on validation data, and what
    always predicting the training mean change scores there (z-scored MSE, the baseline
    the sanity bound is about).

    The open-loop curve stops at the longest segment the validation episodes hold.
    """
    one_step = one_step_errors(model, val)
    h = _longest_horizon(val, horizon)
    curve = open_loop_errors(model, val, h).ensemble_mse.tolist() if h else []
    state = val.state.to(device=model.device, dtype=model.dtype)
    action = val.action.to(device=model.device, dtype=model.dtype)
    next_state = val.next_state.to(device=model.device, dtype=model.dtype)
    baseline = model.normalized_delta(state, next_state).pow(2).mean()
    return {
        "val_mean_predictor_mse": float(baseline),
        "val_one_step_mse": float(one_step.ensemble_mse),
        "val_one_step_mse_norm": float(one_step.ensemble_mse_norm),
        "val_multi_step_mse": [float(v) for v in curve],
        "val_disagreement": float(disagreement(model, state, action).mean()),
    }


def non_finite_tensors(model: EnsembleDynamics) -> list[str]:
    """Names of the model's weights and normalizer statistics holding NaN or inf (the last
    line of defence: such a model must never be published)."""
    return [name for name, t in model.state_dict().items()
            if t.is_floating_point() and not bool(torch.isfinite(t).all())]


def acceptance_problem(metrics: dict[str, Any], max_val_mse: float) -> str | None:
    """Why a trained model must not be used, or None: non-finite metrics or a validation
    MSE (z-scored) above the sanity bound."""
    bad = [k for k, v in metrics.items() if isinstance(v, float) and not math.isfinite(v)]
    bad += [k for k, v in metrics.items()
            if isinstance(v, list) and not all(math.isfinite(x) for x in v)]
    if bad:
        return f"non-finite validation metrics: {sorted(bad)}"
    if metrics["val_mse_norm"] > max_val_mse:
        return (f"validation MSE {metrics['val_mse_norm']:.4g} (z-scored) exceeds the sanity "
                f"bound max_val_loss={max_val_mse:g}")
    return None


def retrain(
    dataset: EpisodeDataset,
    settings: RetrainSettings,
    previous: EnsembleDynamics | None = None,
    progress: ProgressFn | None = None,
) -> RetrainOutcome:
    """Train on a snapshot of ``dataset`` and validate on held-out episodes.

    ``previous`` (trained in place) is the warm start when ``settings.train.from_scratch``
    is False and its architecture matches; otherwise a new ensemble is built. Exceptions
    raised by ``progress`` (e.g. a cancellation) propagate.
    """
    train, val = dataset.split(settings.val_fraction, settings.split_seed,
                               augment=settings.augment)
    metrics: dict[str, Any] = {
        "num_transitions": recorded_size(train) + (0 if val is None else recorded_size(val)),
        "num_episodes": int(train.episode.unique().numel()) + (
            0 if val is None else int(val.episode.unique().numel())),
        "epochs": 0, "duration_s": 0.0,
    }
    if val is None:
        return RetrainOutcome(False, "no validation episode: need at least 2 episodes", None,
                              metrics)
    warm = (previous is not None and not settings.train.from_scratch
            and previous.config == settings.architecture)
    model = previous if warm else EnsembleDynamics(settings.architecture)
    assert model is not None
    config = settings.train
    if not warm and not config.from_scratch:
        config = dataclasses.replace(config, from_scratch=True)
    result = train_ensemble(model, train, val, config, progress=progress)
    metrics.update(epochs=result.epochs_run, duration_s=result.duration_s)
    if result.diverged:
        metrics.update(result.diverged_losses)  # e.g. train_loss NaN: what the metrics show
        return RetrainOutcome(False, f"training diverged: {result.message}", None, metrics,
                              result)
    final = result.final_metrics
    metrics.update(train_loss=float(final["train_loss"]), val_loss=float(final["val_loss"]),
                   val_mse_norm=float(final["val_mse_norm"]))
    metrics.update(validation_metrics(model, val, settings.eval_horizon))
    problem = acceptance_problem(metrics, settings.max_val_mse)
    bad_tensors = non_finite_tensors(model)
    if bad_tensors and not problem:
        problem = f"non-finite weights or statistics after training: {bad_tensors[:5]}"
    if problem:
        return RetrainOutcome(False, problem, None, metrics, result)
    start = "warm-started" if warm else "from scratch"
    return RetrainOutcome(True, f"accepted ({start}, {result.epochs_run} epochs)", model,
                          metrics, result)


def recorded_size(batch: TransitionBatch) -> int:
    """Distinct recorded transitions (episode, step) in a batch: an augmented copy of a
    transition (e.g. the ball-swapped twin) is not counted again."""
    key = batch.episode * (int(batch.step.max()) + 1) + batch.step
    return int(key.unique().numel())
