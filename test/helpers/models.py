"""Serialized models for planner tests: real ensembles, and deliberately broken payloads."""

from __future__ import annotations

import hashlib
import json
import struct

import numpy as np
import torch

from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.models.serialization import model_to_bytes

_PREFIX = struct.Struct("<8sIQ")  # magic, format version, header length (serialization.py)


def ensemble(state_dim: int, action_dim: int, seed: int = 0, members: int = 3,
             hidden: tuple[int, ...] = (250, 250)) -> EnsembleDynamics:
    """A real ensemble (PDDM's size by default) with seeded weights and fitted-looking
    normalizers, so its predictions are finite and non-trivial."""
    torch.manual_seed(seed)
    model = EnsembleDynamics(EnsembleConfig(state_dim, action_dim, members, hidden))
    generator = torch.Generator().manual_seed(seed)
    states = torch.randn(256, state_dim, generator=generator)
    actions = torch.rand(256, action_dim, generator=generator) * 2 - 1
    model.state_normalizer.fit(states)
    model.action_normalizer.fit(actions)
    model.delta_normalizer.fit(0.01 * torch.randn(256, state_dim, generator=generator))
    return model


def with_nan_weight(data: bytes) -> bytes:
    """``data`` with one weight set to NaN, internally consistent (valid magic, header and
    payload checksum), so only a finiteness check can catch it."""
    magic, version, header_len = _PREFIX.unpack_from(data)
    header = json.loads(data[_PREFIX.size:_PREFIX.size + header_len])
    payload = bytearray(data[_PREFIX.size + header_len:])
    entry = next(e for e in header["tensors"] if e["dtype"] == "float32")
    np.frombuffer(payload, dtype="<f4", count=1, offset=entry["offset"])  # in range
    payload[entry["offset"]:entry["offset"] + 4] = np.array([np.nan], dtype="<f4").tobytes()
    header["payload_sha256"] = hashlib.sha256(payload).hexdigest()
    header_bytes = json.dumps(header, sort_keys=True).encode("utf-8")
    return _PREFIX.pack(magic, version, len(header_bytes)) + header_bytes + bytes(payload)


def serialized(model: EnsembleDynamics) -> bytes:
    return model_to_bytes(model, {"source": "test"})
