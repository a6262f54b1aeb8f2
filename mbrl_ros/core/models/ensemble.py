"""Ensemble of MLP dynamics models evaluated in one batched pass.

Each of the K members maps a z-scored (state, action) to a z-scored state delta; the next
state is ``state + delta`` in raw units. Members are deterministic (MSE, as PDDM) or
Gaussian with a bounded log-variance (NLL, as PETS). The weights of all members are stacked
into ``[K, in, out]`` tensors so one ``baddbmm`` per layer evaluates every member on every
sample. Normalization statistics are buffers of the module and travel with it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from itertools import pairwise
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mbrl_ros.core.models.normalization import Normalizer
from mbrl_ros.core.validation import check_int

ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": F.relu,
    "tanh": torch.tanh,
    "silu": F.silu,
    "elu": F.elu,
}
# In-place twins for the no-grad path (planning), which saves an allocation per layer.
ACTIVATIONS_INPLACE: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu_,
    "tanh": torch.tanh_,
    "silu": lambda x: F.silu(x, inplace=True),
    "elu": lambda x: F.elu(x, inplace=True),
}


@dataclass(frozen=True)
class EnsembleConfig:
    """Architecture of an ensemble; JSON-able through :meth:`to_dict` / :meth:`from_dict`.

    ``min_logvar``/``max_logvar`` bound the log-variance of probabilistic members (in
    z-scored delta units) by soft clamping; ``learn_logvar_bounds`` makes the bounds
    parameters trained with the NLL (PETS) instead of fixed constants.
    """

    state_dim: int
    action_dim: int
    num_members: int = 3
    hidden_sizes: tuple[int, ...] = (250, 250)
    activation: str = "relu"
    probabilistic: bool = False
    min_logvar: float = -10.0
    max_logvar: float = 0.5
    learn_logvar_bounds: bool = True
    #: state dimensions the members do not see (their z-scored input is held at 0): a
    #: task's goal fields, which the task writes and physics does not move
    ignored_state_inputs: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_int("EnsembleConfig.state_dim", self.state_dim, 1)
        check_int("EnsembleConfig.action_dim", self.action_dim, 1)
        check_int("EnsembleConfig.num_members", self.num_members, 1)
        hidden = tuple(self.hidden_sizes)
        for width in hidden:
            check_int("EnsembleConfig.hidden_sizes[i]", width, 1)
        object.__setattr__(self, "hidden_sizes", hidden)
        if self.activation not in ACTIVATIONS:
            raise ValueError(
                f"EnsembleConfig.activation must be one of {sorted(ACTIVATIONS)}, "
                f"got {self.activation!r}"
            )
        for name in ("probabilistic", "learn_logvar_bounds"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"EnsembleConfig.{name} must be a bool")
        lo, hi = float(self.min_logvar), float(self.max_logvar)
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(
                f"EnsembleConfig needs finite min_logvar < max_logvar, got {lo} and {hi}"
            )
        object.__setattr__(self, "min_logvar", lo)
        object.__setattr__(self, "max_logvar", hi)
        ignored = tuple(self.ignored_state_inputs)
        for index in ignored:
            check_int("EnsembleConfig.ignored_state_inputs[i]", index, 0)
            if index >= self.state_dim:
                raise ValueError(f"EnsembleConfig.ignored_state_inputs: {index} is not a state "
                                 f"dimension (state_dim {self.state_dim})")
        if len(set(ignored)) != len(ignored) or len(ignored) >= self.state_dim:
            raise ValueError("EnsembleConfig.ignored_state_inputs must be distinct and leave "
                             f"some state dimension seen, got {list(ignored)}")
        object.__setattr__(self, "ignored_state_inputs", ignored)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        d = asdict(self)
        d["hidden_sizes"] = list(self.hidden_sizes)
        d["ignored_state_inputs"] = list(self.ignored_state_inputs)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> EnsembleConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error (not silently dropped)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"EnsembleConfig.from_dict needs a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown EnsembleConfig keys: {unknown}")
        kwargs = dict(d)
        if "hidden_sizes" in kwargs:
            if not isinstance(kwargs["hidden_sizes"], list | tuple):
                raise ValueError("EnsembleConfig.hidden_sizes must be a list of ints")
            kwargs["hidden_sizes"] = tuple(kwargs["hidden_sizes"])
        if "ignored_state_inputs" in kwargs:
            if not isinstance(kwargs["ignored_state_inputs"], list | tuple):
                raise ValueError("EnsembleConfig.ignored_state_inputs must be a list of ints")
            kwargs["ignored_state_inputs"] = tuple(kwargs["ignored_state_inputs"])
        try:
            return cls(**kwargs)
        except TypeError as exc:
            raise ValueError(f"bad EnsembleConfig: {exc}") from exc


class EnsembleLinear(nn.Module):
    """K independent affine maps: ``[K, B, in] -> [K, B, out]`` in one ``baddbmm``."""

    def __init__(
        self,
        num_members: int,
        in_features: int,
        out_features: int,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(
            torch.empty(num_members, in_features, out_features, device=device, dtype=dtype)
        )
        self.bias = nn.Parameter(
            torch.empty(num_members, 1, out_features, device=device, dtype=dtype)
        )
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Glorot-uniform weights (each member drawn independently) and zero biases."""
        bound = math.sqrt(6.0 / (self.in_features + self.out_features))
        with torch.no_grad():
            self.weight.uniform_(-bound, bound, generator=generator)
            self.bias.zero_()

    def forward(self, x: Tensor) -> Tensor:
        return torch.baddbmm(self.bias, x, self.weight)

    def extra_repr(self) -> str:
        return f"members={self.weight.shape[0]}, in={self.in_features}, out={self.out_features}"


class EnsembleDynamics(nn.Module):
    """K-member MLP dynamics ensemble: raw (state, action) in, raw next state out."""

    max_logvar: Tensor | None
    min_logvar: Tensor | None

    def __init__(
        self,
        config: EnsembleConfig,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if not isinstance(config, EnsembleConfig):
            raise TypeError(f"config must be an EnsembleConfig, got {type(config).__name__}")
        if not dtype.is_floating_point:
            raise ValueError(f"EnsembleDynamics dtype must be floating point, got {dtype}")
        self.config = config
        self.num_members = config.num_members
        self.state_dim = config.state_dim
        self.action_dim = config.action_dim
        self.probabilistic = config.probabilistic
        s, a, k = config.state_dim, config.action_dim, config.num_members

        self.state_normalizer = Normalizer(s, device=device, dtype=dtype)
        self.action_normalizer = Normalizer(a, device=device, dtype=dtype)
        self.delta_normalizer = Normalizer(s, device=device, dtype=dtype)
        if config.ignored_state_inputs:
            mask = torch.ones(s, device=device, dtype=dtype)
            mask[list(config.ignored_state_inputs)] = 0.0
            # derived from the config, so not part of a checkpoint's weights
            self.register_buffer("state_input_mask", mask, persistent=False)
        else:
            self.register_buffer("state_input_mask", None, persistent=False)

        out_dim = 2 * s if config.probabilistic else s
        sizes = (s + a, *config.hidden_sizes, out_dim)
        self.layers = nn.ModuleList(
            EnsembleLinear(k, n_in, n_out, device=device, dtype=dtype)
            for n_in, n_out in pairwise(sizes)
        )
        self._activation = ACTIVATIONS[config.activation]

        if config.probabilistic:
            hi = torch.full((s,), config.max_logvar, device=device, dtype=dtype)
            lo = torch.full((s,), config.min_logvar, device=device, dtype=dtype)
            if config.learn_logvar_bounds:
                self.max_logvar = nn.Parameter(hi)
                self.min_logvar = nn.Parameter(lo)
            else:
                self.register_buffer("max_logvar", hi)
                self.register_buffer("min_logvar", lo)
        else:
            self.register_buffer("max_logvar", None)
            self.register_buffer("min_logvar", None)
        self._inference_dtype: torch.dtype | None = None
        self._inference_weights: tuple[tuple[int, ...], list[tuple[Tensor, Tensor]]] | None = None

    # ----------------------------------------------------------------- planning precision
    def set_inference_dtype(self, dtype: torch.dtype | None) -> None:
        """Run the network in ``dtype`` (e.g. ``torch.bfloat16``) when no gradient is taken.

        Planning only: the inputs are normalized and the outputs denormalized in the model's
        own dtype, and training and every gradient pass keep it too. ``None`` (or the
        model's dtype) turns it off. A bfloat16 forward is about twice as fast on CPUs with
        AVX512-BF16/AMX and on GPUs.
        """
        if dtype is not None and not dtype.is_floating_point:
            raise ValueError(f"inference dtype must be floating point, got {dtype}")
        self._inference_dtype = None if dtype == self.dtype else dtype
        self._inference_weights = None

    @property
    def inference_dtype(self) -> torch.dtype:
        return self._inference_dtype or self.dtype

    def _low_precision_layers(self) -> list[tuple[Tensor, Tensor]]:
        """The layers' weights and biases in the inference dtype, cast again after training."""
        assert self._inference_dtype is not None
        versions = tuple(t._version for layer in self.layers for t in (layer.weight, layer.bias))
        if self._inference_weights is None or self._inference_weights[0] != versions:
            cast = [(layer.weight.detach().to(self._inference_dtype),
                     layer.bias.detach().to(self._inference_dtype)) for layer in self.layers]
            self._inference_weights = (versions, cast)
        return self._inference_weights[1]

    @property
    def device(self) -> torch.device:
        return self.layers[0].weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.layers[0].weight.dtype

    # ----------------------------------------------------------------- normalization
    def set_normalizer(
        self,
        state_mean: Tensor,
        state_std: Tensor,
        action_mean: Tensor,
        action_std: Tensor,
        delta_mean: Tensor,
        delta_std: Tensor,
    ) -> None:
        """Set the z-score statistics of states, actions and state deltas."""
        self.state_normalizer.set_stats(state_mean, state_std)
        self.action_normalizer.set_stats(action_mean, action_std)
        self.delta_normalizer.set_stats(delta_mean, delta_std)

    def fit_normalizer(self, state: Tensor, action: Tensor, next_state: Tensor) -> None:
        """Fit all statistics on raw transitions (``[N, S]``, ``[N, A]``, ``[N, S]``)."""
        self.state_normalizer.fit(state)
        self.action_normalizer.fit(action)
        self.delta_normalizer.fit(next_state - state)

    def normalizer_is_finite(self) -> bool:
        return (
            self.state_normalizer.is_finite()
            and self.action_normalizer.is_finite()
            and self.delta_normalizer.is_finite()
        )

    def normalized_inputs(self, state: Tensor, action: Tensor) -> Tensor:
        """z-scored ``cat(state, action)`` along the last dim (shapes must already agree)."""
        return torch.cat((self._state_inputs(state), self.action_normalizer.normalize(action)),
                         dim=-1)

    def _state_inputs(self, state: Tensor) -> Tensor:
        """z-scored states with the ignored dimensions held at 0."""
        z = self.state_normalizer.normalize(state)
        return z if self.state_input_mask is None else z * self.state_input_mask

    def normalized_delta(self, state: Tensor, next_state: Tensor) -> Tensor:
        """z-scored training target ``next_state - state``."""
        return self.delta_normalizer.normalize(next_state - state)

    # ----------------------------------------------------------------- parameters
    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Re-draw all member weights and reset learnable log-variance bounds (not the stats)."""
        for layer in self.layers:
            layer.reset_parameters(generator)
        if isinstance(self.max_logvar, nn.Parameter) and isinstance(self.min_logvar, nn.Parameter):
            with torch.no_grad():
                self.max_logvar.fill_(self.config.max_logvar)
                self.min_logvar.fill_(self.config.min_logvar)

    def logvar_bound_penalty(self) -> Tensor:
        """PETS-style regularizer ``sum(max_logvar) - sum(min_logvar)`` (0 if bounds fixed)."""
        if isinstance(self.max_logvar, nn.Parameter) and isinstance(self.min_logvar, nn.Parameter):
            return self.max_logvar.sum() - self.min_logvar.sum()
        return torch.zeros((), device=self.device, dtype=self.dtype)

    # ----------------------------------------------------------------- evaluation
    def forward(self, inputs: Tensor) -> tuple[Tensor, Tensor | None]:
        """Normalized pass: ``[K, B, S+A]`` z-scores -> (delta mean, log-variance or None).

        Both outputs are ``[K, B, S]`` in z-scored delta units; the log-variance is soft
        clamped into ``[min_logvar, max_logvar]``.
        """
        h = inputs
        if torch.is_grad_enabled():
            for layer in self.layers[:-1]:
                h = self._activation(layer(h))
        else:  # planning: in-place activation; fp32: bmm + in-place bias (baddbmm copies
            # the bias first); bfloat16: baddbmm (its in-place bias add is slow on CPU, 2x a
            # hidden layer's bmm here)
            act_ = ACTIVATIONS_INPLACE[self.config.activation]
            if self._inference_dtype is not None:
                weights = self._low_precision_layers()
                h = h.to(self._inference_dtype)
                for weight, bias in weights[:-1]:
                    h = act_(torch.baddbmm(bias, h, weight))
            else:
                weights = [(layer.weight, layer.bias) for layer in self.layers]
                for weight, bias in weights[:-1]:
                    h = act_(torch.bmm(h, weight).add_(bias))
            weight, bias = weights[-1]
            out = torch.baddbmm(bias, h, weight).to(self.dtype)
            return self._split_output(out)
        return self._split_output(self.layers[-1](h))

    def _split_output(self, out: Tensor) -> tuple[Tensor, Tensor | None]:
        if not self.probabilistic:
            return out, None
        assert self.max_logvar is not None and self.min_logvar is not None
        mean, raw_logvar = out.split(self.state_dim, dim=-1)
        logvar = self.max_logvar - F.softplus(self.max_logvar - raw_logvar)
        logvar = self.min_logvar + F.softplus(logvar - self.min_logvar)
        return mean, logvar

    def _check_input(self, name: str, x: Tensor, dim: int) -> None:
        if not isinstance(x, Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() not in (2, 3) or x.shape[-1] != dim:
            raise ValueError(
                f"{name} must have shape [B, {dim}] or [{self.num_members}, B, {dim}], "
                f"got {tuple(x.shape)}"
            )
        if x.dim() == 3 and x.shape[0] != self.num_members:
            raise ValueError(
                f"{name} has {x.shape[0]} member slices but the ensemble has "
                f"{self.num_members} members"
            )

    def _members_inputs(self, state: Tensor, action: Tensor) -> Tensor:
        """Validated, normalized inputs expanded to ``[K, B, S+A]``."""
        self._check_input("state", state, self.state_dim)
        self._check_input("action", action, self.action_dim)
        if state.shape[-2] != action.shape[-2]:
            raise ValueError(
                f"state batch {state.shape[-2]} and action batch {action.shape[-2]} differ"
            )
        k, b = self.num_members, state.shape[-2]
        s_n = self._state_inputs(state).expand(k, b, self.state_dim)
        a_n = self.action_normalizer.normalize(action).expand(k, b, self.action_dim)
        return torch.cat((s_n, a_n), dim=-1)

    def predict(
        self,
        state: Tensor,
        action: Tensor,
        sample: bool = False,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Next state in raw units, ``[K, B, S]``.

        ``state`` is ``[K, B, S]`` (member k uses slice k) or ``[B, S]`` (shared by all);
        likewise ``action``. ``sample=True`` on a probabilistic ensemble draws the delta from
        each member's Gaussian (PETS particles); otherwise the mean is used. No internal
        ``no_grad``: gradients flow to inputs and weights.
        """
        mean, logvar = self(self._members_inputs(state, action))
        if sample and logvar is not None:
            noise = torch.randn(
                mean.shape, generator=generator, device=mean.device, dtype=mean.dtype
            )
            mean = mean + torch.exp(0.5 * logvar) * noise
        return state + self.delta_normalizer.denormalize(mean)

    def predict_gaussian(self, state: Tensor, action: Tensor) -> tuple[Tensor, Tensor]:
        """Mean next state and per-dimension std of the delta, both raw units ``[K, B, S]``."""
        if not self.probabilistic:
            raise ValueError("predict_gaussian needs a probabilistic ensemble")
        mean, logvar = self(self._members_inputs(state, action))
        assert logvar is not None
        std = torch.exp(0.5 * logvar) * self.delta_normalizer.std
        return state + self.delta_normalizer.denormalize(mean), std

    def extra_repr(self) -> str:
        c = self.config
        kind = "gaussian" if c.probabilistic else "deterministic"
        return f"members={c.num_members}, hidden={list(c.hidden_sizes)}, {c.activation}, {kind}"
