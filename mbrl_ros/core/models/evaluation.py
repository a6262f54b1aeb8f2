"""Accuracy of a dynamics ensemble: one-step error, open-loop compounding error,
member disagreement and how well disagreement ranks the true error.

Everything is vectorized over samples (and members); the open-loop rollout loops only
over the horizon.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from mbrl_ros.core.data.dataset import TransitionBatch
from mbrl_ros.core.models.ensemble import EnsembleDynamics


def _model_tensors(model: EnsembleDynamics, batch: TransitionBatch) -> tuple[Tensor, ...]:
    if batch.state_dim != model.state_dim or batch.action_dim != model.action_dim:
        raise ValueError(
            f"batch dims (S={batch.state_dim}, A={batch.action_dim}) do not match the model "
            f"(S={model.state_dim}, A={model.action_dim})"
        )
    if len(batch) == 0:
        raise ValueError("batch is empty")
    return tuple(
        t.to(device=model.device, dtype=model.dtype)
        for t in (batch.state, batch.action, batch.next_state)
    )


@dataclass(frozen=True)
class OneStepErrors:
    """One-step mean squared errors (averaged over samples and state dims).

    ``*_norm`` values are in z-scored delta units (squared error divided by the model's
    delta variance per dim); the others in raw state units.
    """

    member_mse: Tensor  # [E]
    member_mse_norm: Tensor  # [E]
    ensemble_mse: float  # error of the mean over members' predictions
    ensemble_mse_norm: float


@torch.no_grad()
def one_step_errors(model: EnsembleDynamics, batch: TransitionBatch) -> OneStepErrors:
    """Per-member and ensemble-mean one-step prediction error on ``batch``."""
    state, action, next_state = _model_tensors(model, batch)
    pred = model.predict(state, action)  # [E, N, S]
    inv_var = model.delta_normalizer.std.pow(-2)
    err2 = (pred - next_state).pow(2)
    mean_err2 = (pred.mean(dim=0) - next_state).pow(2)
    return OneStepErrors(
        member_mse=err2.mean(dim=(1, 2)).cpu(),
        member_mse_norm=(err2 * inv_var).mean(dim=(1, 2)).cpu(),
        ensemble_mse=float(mean_err2.mean()),
        ensemble_mse_norm=float((mean_err2 * inv_var).mean()),
    )


def open_loop_starts(batch: TransitionBatch, horizon: int) -> Tensor:
    """Row indices ``i`` such that rows ``i..i+horizon-1`` are consecutive steps of one
    episode (same ``episode``, ``step`` increasing by 1), in batch order."""
    if horizon < 1:
        raise ValueError(f"horizon must be >= 1, got {horizon}")
    n = len(batch)
    if n < horizon:
        return torch.zeros(0, dtype=torch.int64, device=batch.state.device)
    linked = (batch.episode[1:] == batch.episode[:-1]) & (batch.step[1:] == batch.step[:-1] + 1)
    links = torch.cat((linked.new_zeros(1, dtype=torch.int64), linked.long().cumsum(0)))
    first = torch.arange(n - horizon + 1, device=links.device)
    ok = links[first + horizon - 1] - links[first] == horizon - 1
    return first[ok]


def _open_loop_steps(
    model: EnsembleDynamics, batch: TransitionBatch, horizon: int, keep: slice | None
) -> tuple[Tensor, Iterator[tuple[Tensor, Tensor]]]:
    """Valid starts ``[M]`` and, lazily for h = 1..horizon, each member's own h-step
    prediction ``[E, M, S]`` with the recorded state it predicts ``[M, S]``."""
    state, action, next_state = _model_tensors(model, batch)
    starts = open_loop_starts(batch, horizon).to(model.device)
    if starts.numel() == 0:
        raise ValueError(f"no episode segment in the batch is {horizon} steps long")
    rows = starts[:, None] + torch.arange(horizon, device=model.device)  # [M, H]

    def steps() -> Iterator[tuple[Tensor, Tensor]]:
        current: Tensor = state[starts]  # [M, S] first, then [E, M, S]
        for h in range(horizon):
            truth = next_state[rows[:, h]]
            current = model.predict(current, action[rows[:, h]])
            if keep is not None:
                current[..., keep] = truth[:, keep]
            yield current, truth

    return starts, steps()


@dataclass(frozen=True)
class OpenLoopErrors:
    """Compounding-error curves: entry ``h-1`` is the MSE (raw state units, or z-scored
    delta units when requested) of the ``h``-step open-loop prediction, over all starts."""

    horizons: Tensor  # [H] = 1..H
    member_mse: Tensor  # [E, H], each member rolled out on its own
    member_mean_mse: Tensor  # [H], member_mse averaged over members
    ensemble_mse: Tensor  # [H], error of the mean of the members' trajectories
    num_starts: int


@torch.no_grad()
def open_loop_errors(
    model: EnsembleDynamics,
    batch: TransitionBatch,
    horizon: int,
    normalized: bool = False,
    keep: slice | None = None,
) -> OpenLoopErrors:
    """H-step prediction error from every start that has ``horizon`` recorded steps ahead.

    From the true state at each start ``t`` the model is fed the recorded actions
    ``a_t..a_{t+h-1}``; its prediction is compared with the recorded ``next_state`` of step
    ``t+h-1``. Only starts valid for the full horizon are used, so every point of the curve
    averages over the same starts. ``batch`` must hold whole episodes in step order (as
    :meth:`EpisodeDataset.batch` returns them). ``keep``: state fields taken from the
    recorded states instead of predicted at every step (a planner writes the scheduled goal
    into its predicted states); they then count as exact.
    """
    starts, steps = _open_loop_steps(model, batch, horizon, keep)
    weight = model.delta_normalizer.std.pow(-2) if normalized else None
    member_mse = torch.empty(model.num_members, horizon, device=model.device, dtype=torch.float64)
    ensemble_mse = torch.empty(horizon, device=model.device, dtype=torch.float64)
    for h, (current, truth) in enumerate(steps):
        err2 = (current - truth).pow(2)
        mean_err2 = (current.mean(dim=0) - truth).pow(2)
        if weight is not None:
            err2, mean_err2 = err2 * weight, mean_err2 * weight
        member_mse[:, h] = err2.mean(dim=(1, 2)).double()
        ensemble_mse[h] = mean_err2.mean().double()
    member_mse = member_mse.cpu()
    return OpenLoopErrors(
        horizons=torch.arange(1, horizon + 1),
        member_mse=member_mse,
        member_mean_mse=member_mse.mean(dim=0),
        ensemble_mse=ensemble_mse.cpu(),
        num_starts=int(starts.numel()),
    )


@dataclass(frozen=True)
class OpenLoopPredictions:
    """Every member's own open-loop predictions from every valid start (for per-field or
    per-start analysis): ``predicted[h-1]`` is the state after ``h`` recorded actions."""

    starts: Tensor  # [M] batch rows where the windows start
    predicted: Tensor  # [H, E, M, S]
    truth: Tensor  # [H, M, S] the recorded states predicted


@torch.no_grad()
def open_loop_predictions(
    model: EnsembleDynamics, batch: TransitionBatch, horizon: int, keep: slice | None = None
) -> OpenLoopPredictions:
    """The rollouts :func:`open_loop_errors` scores, kept whole (``H x E x M x S`` values:
    mind the memory on large batches)."""
    starts, steps = _open_loop_steps(model, batch, horizon, keep)
    predicted, truth = zip(*steps, strict=True)
    return OpenLoopPredictions(starts=starts, predicted=torch.stack(predicted),
                               truth=torch.stack(truth))


@torch.no_grad()
def disagreement(
    model: EnsembleDynamics, state: Tensor, action: Tensor, normalized: bool = True
) -> Tensor:
    """Std across members of the predicted next state, averaged over state dims: ``[B]``.

    With ``normalized`` each dim's std is divided by the model's delta std first, so dims
    with large raw scales do not dominate.
    """
    pred = model.predict(state, action)
    std = pred.std(dim=0, correction=0)
    if normalized:
        std = std / model.delta_normalizer.std
    return std.mean(dim=-1)


def rank_data(x: npt.ArrayLike) -> np.ndarray:
    """Ranks 0..n-1 of a 1-D array; tied values share the average of their ranks."""
    values = np.asarray(x, dtype=np.float64)
    if values.ndim != 1:
        raise ValueError(f"rank_data needs a 1-D array, got shape {values.shape}")
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    first_rank = np.cumsum(counts) - counts
    return (first_rank + (counts - 1) / 2.0)[inverse]


def spearman(x: npt.ArrayLike | Tensor, y: npt.ArrayLike | Tensor) -> float:
    """Spearman rank correlation (Pearson correlation of tie-averaged ranks).

    NaN when either input is constant (the correlation is undefined).
    """
    xa = x.detach().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x)
    ya = y.detach().cpu().numpy() if isinstance(y, Tensor) else np.asarray(y)
    if xa.shape != ya.shape or xa.ndim != 1 or xa.size < 2:
        raise ValueError(
            f"spearman needs two 1-D arrays of equal length >= 2, got {xa.shape} and {ya.shape}"
        )
    if not (np.isfinite(xa).all() and np.isfinite(ya).all()):
        raise ValueError("spearman inputs contain non-finite values")
    rx = rank_data(xa) - (xa.size - 1) / 2.0
    ry = rank_data(ya) - (ya.size - 1) / 2.0
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    if denom == 0.0:
        return float("nan")
    return float((rx * ry).sum() / denom)


@torch.no_grad()
def disagreement_error_correlation(model: EnsembleDynamics, batch: TransitionBatch) -> float:
    """Spearman correlation between per-sample disagreement and the ensemble-mean one-step
    error, both in z-scored delta units: high means disagreement flags where the model is
    wrong."""
    state, action, next_state = _model_tensors(model, batch)
    pred = model.predict(state, action)
    inv_std = 1.0 / model.delta_normalizer.std
    spread = (pred.std(dim=0, correction=0) * inv_std).mean(dim=-1)
    error = ((pred.mean(dim=0) - next_state) * inv_std).pow(2).mean(dim=-1)
    return spearman(spread, error)
