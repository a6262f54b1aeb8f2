"""Training of an :class:`EnsembleDynamics` on transitions, all members stepping at once.

Each optimizer step draws an ``[E, batch]`` index tensor (one row of minibatch indices per
member), gathers ``[E, batch, features]`` inputs and takes one Adam step on the summed
per-member losses, so the members train independently but in one batched pass.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from mbrl_ros.core.data.dataset import TransitionBatch
from mbrl_ros.core.models.ensemble import EnsembleDynamics
from mbrl_ros.core.models.evaluation import open_loop_starts

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
_EVAL_CHUNK = 16384
#: how the Adam step size moves over one training call
LR_SCHEDULES = ("constant", "cosine")
#: precisions of the training matmuls (the weights, the optimizer and the losses stay in
#: the model's dtype)
TRAIN_PRECISIONS = ("float32", "bfloat16")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training call (defaults: PDDM's released configs).

    - ``patience``: stop when the validation loss has not improved for this many epochs and
      restore the best epoch's weights; None trains all ``epochs``.
    - ``from_scratch``: re-initialize the weights each call (PDDM); False warm-starts.
    - ``bootstrap``: each member trains on its own resample (with replacement) of the data.
    - ``input_noise``: std of Gaussian noise added, fresh for every minibatch, to the
      z-scored inputs *and* the z-scored delta targets. In z-score units 0.01 is 1% of each
      feature's standard deviation: our reading of PDDM's 1% noise-to-signal augmentation
      (PDDM scaled noise by the data; we scale by the per-feature std). 0 disables it.
    - ``logvar_bound_coef``: weight of the PETS penalty on learnable log-variance bounds.
    - ``divergence_mse``: a minibatch MSE (z-scored units, where predicting the mean scores
      about 1) above this also counts as divergence: a learning rate that is far too large
      can leave the loss huge but finite.
    - ``num_threads``: cap on torch CPU threads during the call (restored afterwards).
    - ``lr_schedule``: ``"constant"`` (PDDM) or ``"cosine"``: the step size falls from ``lr``
      to 0 over the call's minibatch steps (half a cosine), so the last epochs settle the
      weights instead of leaving them where the last noisy steps put them.
    - ``average_last_epochs``: 0 (PDDM) keeps the last step's weights; k > 0 returns the
      mean of the weights at the end of each of the last k epochs (stochastic weight
      averaging at a constant step size): one retraining is then less of a draw from where
      the last noisy steps happened to leave it. Not combined with ``patience``.
    - ``rollout_steps``: 1 (PDDM) fits one-step predictions; k > 1 also rolls each member out
      open loop from every minibatch transition that has k - 1 recorded successors in its
      episode (same episode, consecutive steps) and the member's loss is the sum over the
      k steps of its error against the recorded states (so is the reported train loss): the
      planner chains 7 predictions, and this trains the chain, not only its first link.
      Deterministic members only.
    - ``output_weights``: None (PDDM) weighs every predicted state dimension alike; a
      positive weight per state dimension scales its share of the loss (rescaled to mean 1,
      so the loss keeps its size): the planner's reward reads some dimensions (Baoding's
      balls) far more than the others (24 joint angles that follow their commands).
    - ``precision``: ``"float32"`` (PDDM) or ``"bfloat16"``: the members' matmuls run under
      torch autocast in bfloat16 (weights, Adam and the losses stay float32, mixed-precision
      training). Several times faster on CPUs with bfloat16 units (avx512_bf16, AMX) and
      GPUs; slow where the CPU emulates it.
    """

    lr: float = 1e-3
    batch_size: int = 512
    epochs: int = 40
    weight_decay: float = 0.0
    patience: int | None = None
    from_scratch: bool = True
    bootstrap: bool = False
    input_noise: float = 0.01
    logvar_bound_coef: float = 0.01
    divergence_mse: float = 1e6
    seed: int | None = 0
    device: str = "cpu"
    num_threads: int | None = None
    lr_schedule: str = "constant"
    average_last_epochs: int = 0
    rollout_steps: int = 1
    output_weights: tuple[float, ...] | None = None
    precision: str = "float32"

    def __post_init__(self) -> None:
        if self.precision not in TRAIN_PRECISIONS:
            raise ValueError(f"TrainConfig.precision must be one of {TRAIN_PRECISIONS}, "
                             f"got {self.precision!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"TrainConfig.lr_schedule must be one of {LR_SCHEDULES}, "
                             f"got {self.lr_schedule!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig.lr must be finite and > 0, got {self.lr}")
        for name in ("batch_size", "epochs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive int, got {value!r}")
        for name in ("weight_decay", "input_noise", "logvar_bound_coef"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"TrainConfig.{name} must be finite and >= 0, got {value}")
        if not self.divergence_mse > 0:
            raise ValueError(f"TrainConfig.divergence_mse must be > 0, got {self.divergence_mse}")
        if (isinstance(self.average_last_epochs, bool)
                or not isinstance(self.average_last_epochs, int)
                or not 0 <= self.average_last_epochs <= self.epochs):
            raise ValueError("TrainConfig.average_last_epochs must be an int in [0, epochs="
                             f"{self.epochs}], got {self.average_last_epochs!r}")
        if (isinstance(self.rollout_steps, bool) or not isinstance(self.rollout_steps, int)
                or self.rollout_steps < 1):
            raise ValueError(f"TrainConfig.rollout_steps must be an int >= 1, "
                             f"got {self.rollout_steps!r}")
        if self.output_weights is not None and not (
                len(self.output_weights) > 0
                and all(math.isfinite(w) and w > 0 for w in self.output_weights)):
            raise ValueError("TrainConfig.output_weights must be None or finite weights > 0, "
                             f"got {self.output_weights!r}")
        if self.average_last_epochs and self.patience is not None:
            raise ValueError("TrainConfig.average_last_epochs and patience do not combine "
                             "(which epochs would be averaged is not known in advance)")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            raise ValueError(f"TrainConfig.patience must be None or >= 1, got {self.patience!r}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(
                f"TrainConfig.num_threads must be None or >= 1, got {self.num_threads}"
            )


@dataclass
class TrainResult:
    """Outcome of :func:`train_ensemble`.

    Losses are per-member means in z-scored delta units (MSE, or Gaussian NLL for
    probabilistic members). ``best_epoch`` (1-based) is the epoch with the lowest
    validation loss (None without validation data). On ``diverged`` the model has been
    restored to the weights and statistics it had before the call, and
    ``diverged_losses`` holds the value(s) that stopped it (``train_loss``: the minibatch loss
    or MSE, NaN/inf or above ``divergence_mse``; ``val_loss``: a non-finite validation loss),
    so a rejected job can report the loss that went bad.
    """

    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    best_epoch: int | None = None
    epochs_run: int = 0
    stopped_early: bool = False
    diverged: bool = False
    diverged_losses: dict[str, float] = field(default_factory=dict)
    message: str = ""
    duration_s: float = 0.0
    final_metrics: dict[str, float] = field(default_factory=dict)


ProgressFn = Callable[[int, dict[str, Any]], None]


def _member_losses(mean: Tensor, logvar: Tensor | None, y: Tensor,
                   weights: Tensor | None = None) -> Tensor:
    """Per-member loss ``[E]`` from normalized predictions and targets ``[E, B, S]``;
    ``weights`` ``[S]`` (mean 1) scale each state dimension's terms."""
    if logvar is None:
        terms = (mean - y).pow(2)
    else:
        terms = 0.5 * ((mean - y).pow(2) * torch.exp(-logvar) + logvar) + _HALF_LOG_2PI
    if weights is not None:
        terms = terms * weights
    return terms.mean(dim=(1, 2))


def _loss_weights(config: TrainConfig, model: EnsembleDynamics, device: torch.device
                  ) -> Tensor | None:
    if config.output_weights is None:
        return None
    w = torch.tensor(config.output_weights, dtype=model.dtype, device=device)
    return w / w.mean()


@torch.no_grad()
def _evaluate(model: EnsembleDynamics, x: Tensor, y: Tensor,
              weights: Tensor | None = None) -> dict[str, float]:
    """Loss (weighted as in training) and MSE (z-scored and raw delta units, unweighted)
    averaged over members, no noise."""
    k = model.num_members
    loss = torch.zeros(k, device=x.device, dtype=torch.float64)
    sq_norm = torch.zeros_like(loss)
    sq_raw = torch.zeros_like(loss)
    std2 = model.delta_normalizer.std.pow(2)
    for start in range(0, x.shape[0], _EVAL_CHUNK):
        xb = x[start : start + _EVAL_CHUNK].expand(k, -1, -1)
        yb = y[start : start + _EVAL_CHUNK].expand(k, -1, -1)
        n = xb.shape[1]
        mean, logvar = model(xb)
        loss += _member_losses(mean, logvar, yb, weights).double() * n
        err2 = (mean - yb).pow(2)
        sq_norm += err2.mean(dim=2).sum(dim=1).double()
        sq_raw += (err2 * std2).mean(dim=2).sum(dim=1).double()
    n_total = x.shape[0]
    return {
        "loss": float(loss.mean()) / n_total,
        "mse_norm": float(sq_norm.mean()) / n_total,
        "mse_raw": float(sq_raw.mean()) / n_total,
    }


class _WeightAverage:
    """Running mean of a model's parameters (buffers such as the normalizer are fixed
    within a training call and stay as they are)."""

    def __init__(self, model: EnsembleDynamics) -> None:
        self._sum = [torch.zeros_like(p, dtype=torch.float64) for p in model.parameters()]
        self._count = 0

    @torch.no_grad()
    def add(self, model: EnsembleDynamics) -> None:
        for total, p in zip(self._sum, model.parameters(), strict=True):
            total += p.detach()
        self._count += 1

    @torch.no_grad()
    def load_into(self, model: EnsembleDynamics) -> None:
        for total, p in zip(self._sum, model.parameters(), strict=True):
            p.copy_((total / self._count).to(p.dtype))


Forward = Callable[[Tensor], tuple[Tensor, Tensor | None]]


def _forward_in(model: EnsembleDynamics, precision: str, device: torch.device) -> Forward:
    """The members' training forward pass in ``precision``; outputs in the model's dtype."""
    if precision == "float32":
        return model

    def forward(inputs: Tensor) -> tuple[Tensor, Tensor | None]:
        with torch.autocast(device.type, dtype=torch.bfloat16):
            mean, logvar = model(inputs)
        return mean.to(model.dtype), None if logvar is None else logvar.to(model.dtype)

    return forward


def _rollout_losses(model: EnsembleDynamics, first_mean: Tensor, first_losses: Tensor,
                    s: Tensor, a: Tensor, ns: Tensor, batch_idx: Tensor, starts: Tensor,
                    steps: int, weights: Tensor | None = None,
                    forward: Forward | None = None) -> Tensor:
    """Per-member sum over ``steps`` open-loop steps of the z-scored delta MSE: step 1 is
    ``first_losses`` (the minibatch's own), steps 2.. chain the member's predictions from
    the transitions marked in ``starts`` (the others add only their first step). A sum, not
    a mean: without successors the loss is exactly the one-step one (Adam does not care
    about the scale). ``forward``: how the members are run (default: the model itself)."""
    forward = model if forward is None else forward
    ok = starts[batch_idx].to(first_mean.dtype)  # [E, B]
    count = ok.sum(dim=1).clamp(min=1.0)
    state = s[batch_idx] + model.delta_normalizer.denormalize(first_mean)
    total = first_losses
    last = s.shape[0] - 1
    for m in range(1, steps):
        j = (batch_idx + m).clamp(max=last)
        mean, _ = forward(model.normalized_inputs(state, a[j]))
        err2 = (mean - model.normalized_delta(state, ns[j])).pow(2)
        err = (err2 if weights is None else err2 * weights).mean(dim=2)
        total = total + (err * ok).sum(dim=1) / count
        state = state + model.delta_normalizer.denormalize(mean)
    return total


def _check_batch(name: str, batch: TransitionBatch, model: EnsembleDynamics) -> None:
    if not isinstance(batch, TransitionBatch):
        raise ValueError(f"{name} must be a TransitionBatch, got {type(batch).__name__}")
    if len(batch) == 0:
        raise ValueError(f"{name} data are empty")
    if batch.state_dim != model.state_dim or batch.action_dim != model.action_dim:
        raise ValueError(
            f"{name} data dims (S={batch.state_dim}, A={batch.action_dim}) do not match the "
            f"model (S={model.state_dim}, A={model.action_dim})"
        )


def train_ensemble(
    model: EnsembleDynamics,
    train: TransitionBatch,
    val: TransitionBatch | None = None,
    config: TrainConfig | None = None,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Fit the normalizer on ``train`` then train all members; returns the loss history.

    The model is moved to ``config.device`` and trained in place. Non-finite data or a
    non-finite loss (e.g. a learning rate that blows up) end training with
    ``diverged=True`` and the model restored to its state before the call.
    ``progress(epoch, metrics)`` is called after every epoch (1-based).
    """
    config = TrainConfig() if config is None else config
    _check_batch("train", train, model)
    if val is not None:
        _check_batch("val", val, model)
    if config.rollout_steps > 1 and model.probabilistic:
        raise ValueError("TrainConfig.rollout_steps > 1 needs deterministic members")
    if config.output_weights is not None and len(config.output_weights) != model.state_dim:
        raise ValueError(f"TrainConfig.output_weights has {len(config.output_weights)} "
                         f"weights for a model of state dimension {model.state_dim}")
    previous_threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    start_time = time.perf_counter()
    try:
        result = _train(model, train, val, config, progress)
    finally:
        torch.set_num_threads(previous_threads)
    result.duration_s = time.perf_counter() - start_time
    return result


def _train(
    model: EnsembleDynamics,
    train: TransitionBatch,
    val: TransitionBatch | None,
    config: TrainConfig,
    progress: ProgressFn | None,
) -> TrainResult:
    device = torch.device(config.device)
    model.to(device)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    result = TrainResult()

    def diverge(message: str, **losses: float) -> TrainResult:
        model.load_state_dict(before)
        result.diverged = True
        result.diverged_losses = {k: float(v) for k, v in losses.items()}
        result.message = message
        return result

    generator = torch.Generator(device=device)
    if config.seed is None:
        generator.seed()
    else:
        generator.manual_seed(config.seed)

    dtype = model.dtype
    s, a, ns = (
        t.to(device=device, dtype=dtype) for t in (train.state, train.action, train.next_state)
    )
    with torch.no_grad():
        model.fit_normalizer(s, a, ns)
        if not model.normalizer_is_finite():
            return diverge("training data contain non-finite values (normalizer stats not finite)")
        if config.from_scratch:
            model.reset_parameters(generator)
        x = model.normalized_inputs(s, a)
        y = model.normalized_delta(s, ns)
        if val is not None:
            vs, va, vns = (
                t.to(device=device, dtype=dtype) for t in (val.state, val.action, val.next_state)
            )
            val_x, val_y = model.normalized_inputs(vs, va), model.normalized_delta(vs, vns)

    starts = None
    if config.rollout_steps > 1:
        starts = torch.zeros(len(train), dtype=torch.bool, device=device)
        starts[open_loop_starts(train, config.rollout_steps).to(device)] = True
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    k, n = model.num_members, x.shape[0]
    bootstrap_idx = (
        torch.randint(n, (k, n), generator=generator, device=device) if config.bootstrap else None
    )
    best_val = math.inf
    best_state: dict[str, Tensor] | None = None
    epochs_since_best = 0
    total_steps = config.epochs * math.ceil(n / config.batch_size)
    step = 0
    averaged = _WeightAverage(model) if config.average_last_epochs else None
    weights = _loss_weights(config, model, device)
    forward = _forward_in(model, config.precision, device)

    for epoch in range(1, config.epochs + 1):
        order = torch.argsort(torch.rand(k, n, generator=generator, device=device), dim=1)
        idx = bootstrap_idx.gather(1, order) if bootstrap_idx is not None else order
        loss_sum = 0.0
        for start in range(0, n, config.batch_size):
            batch_idx = idx[:, start : start + config.batch_size]
            xb, yb = x[batch_idx], y[batch_idx]
            if config.input_noise > 0:
                xb = xb + config.input_noise * torch.randn(
                    xb.shape, generator=generator, device=device, dtype=dtype
                )
                yb = yb + config.input_noise * torch.randn(
                    yb.shape, generator=generator, device=device, dtype=dtype
                )
            mean, logvar = forward(xb)
            member_losses = _member_losses(mean, logvar, yb, weights)
            if starts is not None:
                member_losses = _rollout_losses(model, mean, member_losses, s, a, ns,
                                                batch_idx, starts, config.rollout_steps,
                                                weights, forward)
            loss = member_losses.sum()
            if config.logvar_bound_coef > 0:
                loss = loss + config.logvar_bound_coef * model.logvar_bound_penalty()
            if not bool(torch.isfinite(loss)):
                return diverge(
                    f"non-finite training loss ({float(loss.detach()):g}) at epoch {epoch}",
                    train_loss=float(member_losses.detach().mean()),
                )
            batch_mse = float((mean.detach() - yb).pow(2).mean())
            if batch_mse > config.divergence_mse:
                return diverge(
                    f"training MSE {batch_mse:.3g} exceeds divergence_mse "
                    f"{config.divergence_mse:g} at epoch {epoch}",
                    train_loss=batch_mse,
                )
            if config.lr_schedule == "cosine":
                for group in optimizer.param_groups:
                    group["lr"] = config.lr * 0.5 * (1.0 + math.cos(math.pi * step / total_steps))
            step += 1
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(member_losses.detach().mean()) * batch_idx.shape[1]
        if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
            return diverge(f"non-finite weights after epoch {epoch}")
        if averaged is not None and epoch > config.epochs - config.average_last_epochs:
            averaged.add(model)
        result.train_loss.append(loss_sum / n)
        result.epochs_run = epoch
        metrics: dict[str, Any] = {"train_loss": result.train_loss[-1]}

        if val is not None:
            val_metrics = _evaluate(model, val_x, val_y, weights)
            if not math.isfinite(val_metrics["loss"]):
                return diverge(
                    f"non-finite validation loss ({val_metrics['loss']:g}) at epoch {epoch}",
                    val_loss=val_metrics["loss"],
                )
            result.val_loss.append(val_metrics["loss"])
            metrics.update(val_loss=val_metrics["loss"], val_mse_norm=val_metrics["mse_norm"])
            if val_metrics["loss"] < best_val:
                best_val = val_metrics["loss"]
                result.best_epoch = epoch
                epochs_since_best = 0
                if config.patience is not None:
                    best_state = {key: v.detach().clone() for key, v in model.state_dict().items()}
            else:
                epochs_since_best += 1
        if progress is not None:
            progress(epoch, metrics)
        if config.patience is not None and epochs_since_best >= config.patience:
            result.stopped_early = True
            break

    if best_state is not None:
        model.load_state_dict(best_state)
    if averaged is not None:
        averaged.load_into(model)
    final = _evaluate(model, x, y, weights)
    result.final_metrics = {
        "train_loss": final["loss"],
        "train_mse_norm": final["mse_norm"],
        "train_mse_raw": final["mse_raw"],
    }
    if val is not None:
        final_val = _evaluate(model, val_x, val_y, weights)
        result.final_metrics.update(
            val_loss=final_val["loss"],
            val_mse_norm=final_val["mse_norm"],
            val_mse_raw=final_val["mse_raw"],
        )
    result.message = "stopped early" if result.stopped_early else "completed"
    return result
