"""Safe binary format for :class:`EnsembleDynamics`: tensors and JSON only, no pickle.

Layout (all integers little-endian)::

    magic        8 bytes   b"MBRLENS\\x00"
    version      uint32    FORMAT_VERSION
    header_len   uint64    length of the JSON header in bytes
    header       UTF-8 JSON {"architecture": EnsembleConfig.to_dict(), "dtype": "float32",
                             "tensors": [{"name", "dtype", "shape", "offset", "nbytes"}],
                             "payload_nbytes": int, "payload_sha256": hex, "metadata": {...}}
    payload      raw little-endian tensor bytes; offsets are relative to the payload start
                 and aligned to 64 bytes

The same model and metadata always give the same bytes, so :func:`checksum` identifies a
model. These bytes travel inside ROS messages (``uint8[]``) to planners on other machines,
so loading validates everything and raises :class:`ModelFormatError` on any mismatch.
"""

from __future__ import annotations

import hashlib
import json
import math
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mbrl_ros.core.data.storage import atomic_write_bytes
from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics

MAGIC = b"MBRLENS\x00"
FORMAT_VERSION = 1
_PREFIX = struct.Struct("<8sIQ")
_ALIGN = 64
_DTYPES: dict[str, tuple[torch.dtype, np.dtype]] = {
    "float16": (torch.float16, np.dtype("<f2")),
    "float32": (torch.float32, np.dtype("<f4")),
    "float64": (torch.float64, np.dtype("<f8")),
}
_DTYPE_NAMES = {torch_dtype: name for name, (torch_dtype, _) in _DTYPES.items()}


class ModelFormatError(ValueError):
    """The bytes are not a valid serialized model (message says what is wrong)."""


def checksum(data: bytes) -> str:
    """sha256 hex digest of serialized model bytes."""
    return hashlib.sha256(data).hexdigest()


def _dtype_name(dtype: torch.dtype) -> str:
    try:
        return _DTYPE_NAMES[dtype]
    except KeyError:
        raise ValueError(f"cannot serialize tensors of dtype {dtype}") from None


def model_to_bytes(model: EnsembleDynamics, metadata: Mapping[str, Any] | None = None) -> bytes:
    """Serialize architecture, all parameters and buffers (incl. normalizer stats) and a
    JSON-able ``metadata`` dict. Raises ValueError for non-finite weights."""
    if not isinstance(model, EnsembleDynamics):
        raise ValueError(f"model must be an EnsembleDynamics, got {type(model).__name__}")
    metadata = {} if metadata is None else dict(metadata)
    index: list[dict[str, Any]] = []
    chunks: list[bytes] = []
    offset = 0
    for name, tensor in model.state_dict().items():
        dtype_name = _dtype_name(tensor.dtype)
        if not bool(torch.isfinite(tensor).all()):
            raise ValueError(f"cannot serialize model: tensor {name!r} has non-finite values")
        raw = tensor.detach().cpu().contiguous().numpy().astype(_DTYPES[dtype_name][1]).tobytes()
        padding = -offset % _ALIGN
        chunks.append(b"\x00" * padding)
        offset += padding
        index.append(
            {
                "name": name,
                "dtype": dtype_name,
                "shape": list(tensor.shape),
                "offset": offset,
                "nbytes": len(raw),
            }
        )
        chunks.append(raw)
        offset += len(raw)
    payload = b"".join(chunks)
    header = {
        "architecture": model.config.to_dict(),
        "dtype": _dtype_name(model.dtype),
        "tensors": index,
        "payload_nbytes": len(payload),
        "payload_sha256": checksum(payload),
        "metadata": metadata,
    }
    try:
        header_bytes = json.dumps(header, sort_keys=True, allow_nan=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"metadata is not JSON-serializable: {exc}") from exc
    return _PREFIX.pack(MAGIC, FORMAT_VERSION, len(header_bytes)) + header_bytes + payload


def _parse_header(data: bytes) -> tuple[dict[str, Any], memoryview]:
    if len(data) < _PREFIX.size:
        raise ModelFormatError(
            f"truncated model data: {len(data)} bytes, shorter than the {_PREFIX.size}-byte prefix"
        )
    magic, version, header_len = _PREFIX.unpack_from(data)
    if magic != MAGIC:
        raise ModelFormatError(f"bad magic {magic!r}: not a serialized mbrl_ros ensemble")
    if version > FORMAT_VERSION:
        raise ModelFormatError(
            f"model format version {version} is newer than this reader supports "
            f"(<= {FORMAT_VERSION}); update mbrl_ros"
        )
    if version < 1:
        raise ModelFormatError(f"invalid model format version {version}")
    header_end = _PREFIX.size + header_len
    if header_end > len(data):
        raise ModelFormatError(
            f"truncated model data: header needs {header_len} bytes, "
            f"only {len(data) - _PREFIX.size} present"
        )
    try:
        header = json.loads(bytes(data[_PREFIX.size : header_end]).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFormatError(f"model header is not valid JSON: {exc}") from exc
    if not isinstance(header, dict):
        raise ModelFormatError("model header must be a JSON object")
    missing = [
        k
        for k in ("architecture", "dtype", "tensors", "payload_nbytes", "payload_sha256")
        if k not in header
    ]
    if missing:
        raise ModelFormatError(f"model header lacks fields {missing}")
    payload = memoryview(data)[header_end:]
    expected = header["payload_nbytes"]
    if not isinstance(expected, int) or len(payload) < expected:
        raise ModelFormatError(
            f"truncated model data: payload has {len(payload)} bytes, header says {expected}"
        )
    if len(payload) > expected:
        raise ModelFormatError(
            f"model data has {len(payload) - expected} unexpected trailing bytes"
        )
    if checksum(payload) != header["payload_sha256"]:
        raise ModelFormatError("model payload checksum mismatch: data are corrupted")
    return header, payload


def _read_tensor(entry: Any, payload: memoryview, expected_shape: torch.Size) -> torch.Tensor:
    if not isinstance(entry, dict) or not {"name", "dtype", "shape", "offset", "nbytes"} <= set(
        entry
    ):
        raise ModelFormatError(f"malformed tensor index entry: {entry!r}")
    name = entry["name"]
    if entry["dtype"] not in _DTYPES:
        raise ModelFormatError(
            f"tensor {name!r} has unknown dtype {entry['dtype']!r} (known: {sorted(_DTYPES)})"
        )
    shape = entry["shape"]
    if not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape):
        raise ModelFormatError(f"tensor {name!r} has an invalid shape {shape!r}")
    if tuple(shape) != tuple(expected_shape):
        raise ModelFormatError(
            f"tensor {name!r} has shape {shape} but the architecture expects {list(expected_shape)}"
        )
    np_dtype = _DTYPES[entry["dtype"]][1]
    offset, nbytes = entry["offset"], entry["nbytes"]
    if (
        not isinstance(offset, int)
        or not isinstance(nbytes, int)
        or nbytes != math.prod(shape) * np_dtype.itemsize
        or offset < 0
        or offset + nbytes > len(payload)
    ):
        raise ModelFormatError(
            f"tensor {name!r}: byte range offset={offset} nbytes={nbytes} is inconsistent "
            f"with its shape or outside the {len(payload)}-byte payload"
        )
    array = np.frombuffer(payload, dtype=np_dtype, count=math.prod(shape), offset=offset)
    tensor = torch.from_numpy(array.astype(np_dtype.newbyteorder("="), copy=True)).reshape(shape)
    if not bool(torch.isfinite(tensor).all()):
        raise ModelFormatError(f"tensor {name!r} contains non-finite values")
    return tensor


def model_from_bytes(
    data: bytes, device: str | torch.device = "cpu"
) -> tuple[EnsembleDynamics, dict[str, Any]]:
    """Rebuild a model on ``device`` from :func:`model_to_bytes` output; returns
    ``(model, metadata)``. Raises :class:`ModelFormatError` for anything invalid."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise ModelFormatError(f"model data must be bytes, got {type(data).__name__}")
    header, payload = _parse_header(data)
    try:
        config = EnsembleConfig.from_dict(header["architecture"])
    except (ValueError, TypeError) as exc:
        raise ModelFormatError(f"invalid architecture in model header: {exc}") from exc
    if header["dtype"] not in _DTYPES:
        raise ModelFormatError(f"unknown model dtype {header['dtype']!r}")
    metadata = header.get("metadata", {})
    if not isinstance(metadata, dict):
        raise ModelFormatError("model metadata must be a JSON object")
    entries = header["tensors"]
    if not isinstance(entries, list):
        raise ModelFormatError("model tensor index must be a list")

    dtype = _DTYPES[header["dtype"]][0]
    # Shapes come from a weightless "meta" model: no allocation before the data are checked.
    expected = EnsembleDynamics(config, device="meta", dtype=dtype).state_dict()
    names = [e.get("name") if isinstance(e, dict) else None for e in entries]
    if len(set(names)) != len(names):
        raise ModelFormatError("model tensor index has duplicate names")
    missing = sorted(set(expected) - set(names))
    unexpected = sorted(str(n) for n in set(names) - set(expected))
    if missing or unexpected:
        raise ModelFormatError(
            f"tensors do not match the architecture: missing {missing}, unexpected {unexpected}"
        )
    state = {e["name"]: _read_tensor(e, payload, expected[e["name"]].shape) for e in entries}
    model = EnsembleDynamics(config, device=device, dtype=dtype)
    model.load_state_dict(state)
    return model, metadata


def save_model(
    path: str | Path, model: EnsembleDynamics, metadata: Mapping[str, Any] | None = None
) -> str:
    """Atomically write the model to ``path`` (temp file, fsync, rename, fsync dir);
    returns the checksum of the written bytes."""
    data = model_to_bytes(model, metadata)
    atomic_write_bytes(path, data)
    return checksum(data)


def load_model(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[EnsembleDynamics, dict[str, Any]]:
    """Read a model written by :func:`save_model`; returns ``(model, metadata)``."""
    return model_from_bytes(Path(path).read_bytes(), device)
