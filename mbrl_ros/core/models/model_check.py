"""Checks a received model before a planner may use it.

A model travels between machines as serialized bytes plus a little metadata (format
version, checksum, task, state layout). :func:`load_checked_model` turns that into an
``EnsembleDynamics`` only when everything matches the receiving planner's task; otherwise
it raises :class:`ModelRejected` saying why, so the caller keeps its current model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mbrl_ros.core.models.ensemble import EnsembleDynamics
from mbrl_ros.core.models.serialization import ModelFormatError, checksum, model_from_bytes
from mbrl_ros.core.tasks.base import Task


class ModelRejected(ValueError):
    """A received model is unusable here (the message says why)."""


def load_checked_model(
    weights: bytes,
    *,
    format_version: int,
    supported_format: int,
    expected_checksum: str,
    task_name: str,
    state_fields: Sequence[str],
    task: Task,
    device: str | torch.device = "cpu",
) -> EnsembleDynamics:
    """Validate and deserialize a received model for ``task``; raises :class:`ModelRejected`.

    Checked in order: payload format version, sha256 checksum of ``weights``, task name,
    state layout (field names in order), the serialized data itself (structure, internal
    checksum, finite tensors), state and action dimensions, finite parameters.
    """
    if format_version > supported_format:
        raise ModelRejected(f"format_version {format_version} is newer than supported "
                            f"({supported_format}); update mbrl_ros")
    if format_version < 1:
        raise ModelRejected(f"invalid format_version {format_version}")
    actual = checksum(bytes(weights))
    if actual != str(expected_checksum).strip().lower():
        raise ModelRejected(f"checksum mismatch: weights hash to {actual[:12]}..., message "
                            f"says {str(expected_checksum)[:12]}...")
    if task_name != task.name:
        raise ModelRejected(f"model is for task {task_name!r}, this planner runs {task.name!r}")
    if tuple(state_fields) != task.layout.names:
        raise ModelRejected(f"model state fields {list(state_fields)} differ from the task "
                            f"layout {list(task.layout.names)}")
    try:
        model, _ = model_from_bytes(bytes(weights), device=device)
    except ModelFormatError as exc:
        raise ModelRejected(f"cannot load the weights: {exc}") from exc
    if model.state_dim != task.state_dim or model.action_dim != task.action_dim:
        raise ModelRejected(f"model dims (state {model.state_dim}, action {model.action_dim}) "
                            f"differ from the task's (state {task.state_dim}, action "
                            f"{task.action_dim})")
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelRejected(f"tensor {name!r} has non-finite values")
    model.eval()
    return model
