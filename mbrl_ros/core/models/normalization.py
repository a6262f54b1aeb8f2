"""Per-feature z-score normalization whose statistics are module buffers.

Keeping mean and std as buffers makes them part of a model's ``state_dict``: they move with
``.to(device)`` and are saved and loaded with the weights, so a model shipped to another
machine normalizes exactly as it did when trained.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

#: Features whose standard deviation is below this are treated as constant.
DEFAULT_MIN_STD = 1e-6


class Normalizer(nn.Module):
    """z-score ``(x - mean) / std`` over the last dimension of its inputs.

    A constant feature (std below ``min_std``, e.g. a fixed goal) gets std 1 instead of
    ``min_std``: it is centred but not scaled, so a later value that differs from the
    training constant gives a moderate input rather than one blown up by ``1 / min_std``.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        dim: int,
        min_std: float = DEFAULT_MIN_STD,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        if dim < 1:
            raise ValueError(f"Normalizer dim must be >= 1, got {dim}")
        if not min_std > 0.0:
            raise ValueError(f"Normalizer min_std must be > 0, got {min_std}")
        self.dim = dim
        self.min_std = float(min_std)
        self.register_buffer("mean", torch.zeros(dim, device=device, dtype=dtype))
        self.register_buffer("std", torch.ones(dim, device=device, dtype=dtype))

    def fit(self, data: Tensor) -> None:
        """Set mean and std from ``data`` of shape ``[..., dim]`` (all leading dims pooled).

        Non-finite data give non-finite statistics; callers check with :meth:`is_finite`.
        """
        if data.shape[-1] != self.dim:
            raise ValueError(
                f"Normalizer expects last dim {self.dim}, got shape {tuple(data.shape)}"
            )
        flat = data.reshape(-1, self.dim).to(device=self.mean.device, dtype=torch.float64)
        if flat.shape[0] == 0:
            raise ValueError("cannot fit a Normalizer on empty data")
        mean = flat.mean(dim=0)
        std = flat.std(dim=0, correction=0)
        self.set_stats(mean, std)

    def set_stats(self, mean: Tensor, std: Tensor) -> None:
        """Set the statistics directly; std below ``min_std`` becomes 1 (constant feature)."""
        mean = torch.as_tensor(mean, device=self.mean.device, dtype=torch.float64)
        std = torch.as_tensor(std, device=self.mean.device, dtype=torch.float64)
        if mean.shape != (self.dim,) or std.shape != (self.dim,):
            raise ValueError(
                f"Normalizer stats must have shape ({self.dim},), "
                f"got mean {tuple(mean.shape)} and std {tuple(std.shape)}"
            )
        if bool((std < 0).any()):
            raise ValueError("Normalizer std must be non-negative")
        std = torch.where(std < self.min_std, torch.ones_like(std), std)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.to(self.std.dtype))

    def is_finite(self) -> bool:
        """True when both statistics are finite."""
        return bool(torch.isfinite(self.mean).all() and torch.isfinite(self.std).all())

    def normalize(self, x: Tensor) -> Tensor:
        """Map raw values to z-scores."""
        return (x - self.mean) / self.std

    def denormalize(self, z: Tensor) -> Tensor:
        """Map z-scores back to raw values."""
        return z * self.std + self.mean

    def extra_repr(self) -> str:
        return f"dim={self.dim}, min_std={self.min_std:g}"
