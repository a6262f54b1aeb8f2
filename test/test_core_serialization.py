"""Model bytes: exact round trip, stable checksum, every corruption rejected clearly."""

from __future__ import annotations

import hashlib
import json
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from mbrl_ros.core.models.ensemble import EnsembleConfig, EnsembleDynamics
from mbrl_ros.core.models.serialization import (
    FORMAT_VERSION,
    MAGIC,
    ModelFormatError,
    checksum,
    load_model,
    model_from_bytes,
    model_to_bytes,
    save_model,
)

PREFIX = struct.Struct("<8sIQ")  # documented layout: magic, version, header length


def make_model(probabilistic: bool = True, dtype: torch.dtype = torch.float32) -> EnsembleDynamics:
    torch.manual_seed(0)
    cfg = EnsembleConfig(6, 2, num_members=3, hidden_sizes=(16, 16), probabilistic=probabilistic)
    model = EnsembleDynamics(cfg, dtype=dtype)
    g = torch.Generator().manual_seed(1)
    s, a = torch.randn(100, 6, generator=g), torch.randn(100, 2, generator=g)
    model.fit_normalizer(s, a, s + 0.1 * torch.randn(100, 6, generator=g))
    return model


def split(data: bytes) -> tuple[int, dict[str, Any], bytes]:
    _, version, header_len = PREFIX.unpack_from(data)
    header = json.loads(data[PREFIX.size : PREFIX.size + header_len])
    return version, header, data[PREFIX.size + header_len :]


def join(header: dict[str, Any], payload: bytes, version: int = FORMAT_VERSION) -> bytes:
    """Re-assemble a well-formed file (payload checksum recomputed) around edited parts."""
    header = {**header, "payload_sha256": hashlib.sha256(payload).hexdigest()}
    header_bytes = json.dumps(header).encode()
    return PREFIX.pack(MAGIC, version, len(header_bytes)) + header_bytes + payload


def tensor_entry(header: dict[str, Any], name: str) -> dict[str, Any]:
    return next(e for e in header["tensors"] if e["name"] == name)


@pytest.mark.parametrize("probabilistic", [False, True])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_round_trip_is_exact(probabilistic: bool, dtype: torch.dtype):
    model = make_model(probabilistic, dtype)
    meta = {"iteration": 3, "task": "baoding", "val_mse": 0.25, "tags": ["a", "b"]}
    data = model_to_bytes(model, meta)
    assert data[:8] == MAGIC
    loaded, loaded_meta = model_from_bytes(data)
    assert loaded_meta == meta
    assert loaded.config == model.config and loaded.dtype == dtype
    original, restored = model.state_dict(), loaded.state_dict()
    assert list(original) == list(restored)
    for name, tensor in original.items():
        assert torch.equal(tensor, restored[name]), name
    state, action = torch.randn(20, 6, dtype=dtype), torch.randn(20, 2, dtype=dtype)
    with torch.no_grad():
        assert torch.equal(model.predict(state, action), loaded.predict(state, action))
        draws = [
            m.predict(state, action, sample=True, generator=torch.Generator().manual_seed(4))
            for m in (model, loaded)
        ]
    assert torch.equal(*draws)
    # Deterministic bytes: re-serializing gives the same bytes and checksum.
    assert model_to_bytes(loaded, loaded_meta) == data
    assert checksum(data) == checksum(model_to_bytes(model, meta))
    assert len(checksum(data)) == 64 and checksum(data) == hashlib.sha256(data).hexdigest()


def test_metadata_changes_the_checksum():
    model = make_model()
    assert checksum(model_to_bytes(model, {"a": 1})) != checksum(model_to_bytes(model, {"a": 2}))


def test_save_and_load_file(tmp_path: Path):
    model = make_model()
    path = tmp_path / "model.mbrl"
    digest = save_model(path, model, {"note": "x"})
    assert digest == checksum(path.read_bytes())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.mbrl"]  # no temp file left
    loaded, meta = load_model(path)
    assert meta == {"note": "x"}
    assert model_to_bytes(loaded, meta) == path.read_bytes()


def test_refuses_to_serialize_non_finite_weights_or_bad_metadata():
    model = make_model()
    with pytest.raises(ValueError, match="metadata"):
        model_to_bytes(model, {"x": object()})
    with torch.no_grad():
        model.layers[1].weight[0, 0, 0] = float("inf")
    with pytest.raises(ValueError, match="non-finite"):
        model_to_bytes(model)


def corrupt_cases() -> dict[str, tuple[bytes, str]]:
    data = model_to_bytes(make_model(), {"k": 1})
    version, header, payload = split(data)
    cases: dict[str, tuple[bytes, str]] = {
        "empty": (b"", "truncated"),
        "bad magic": (b"PICKLE\x00\x00" + data[8:], "magic"),
        "newer version": (join(header, payload, version=FORMAT_VERSION + 1), "newer"),
        "truncated prefix": (data[:10], "truncated"),
        "truncated header": (data[: PREFIX.size + 20], "truncated"),
        "truncated payload": (data[:-1], "truncated"),
        "trailing bytes": (data + b"\x00", "trailing"),
        "flipped payload byte": (
            data[:-5] + bytes([data[-5] ^ 0xFF]) + data[-4:],
            "checksum",
        ),
        "invalid json": (
            PREFIX.pack(MAGIC, version, 5) + b"{abc}" + payload,
            "JSON",
        ),
    }

    arch = {**header, "architecture": {**header["architecture"], "hidden_sizes": [16, 32]}}
    cases["architecture vs tensor shapes"] = (join(arch, payload), "shape")

    bad_shape = json.loads(json.dumps(header))
    tensor_entry(bad_shape, "layers.0.weight")["shape"] = [3, 16, 8]
    cases["tensor shape vs architecture"] = (join(bad_shape, payload), "shape")

    bad_dtype = json.loads(json.dumps(header))
    tensor_entry(bad_dtype, "layers.1.bias")["dtype"] = "complex64"
    cases["unknown tensor dtype"] = (join(bad_dtype, payload), "dtype")

    bad_model_dtype = {**header, "dtype": "int8"}
    cases["unknown model dtype"] = (join(bad_model_dtype, payload), "dtype")

    missing = {**header, "tensors": [e for e in header["tensors"] if e["name"] != "max_logvar"]}
    cases["missing tensor"] = (join(missing, payload), "missing")

    bad_arch = {**header, "architecture": {**header["architecture"], "activation": "gelu"}}
    cases["invalid architecture"] = (join(bad_arch, payload), "architecture")

    out_of_range = json.loads(json.dumps(header))
    tensor_entry(out_of_range, "layers.2.weight")["offset"] = len(payload)
    cases["offset outside payload"] = (join(out_of_range, payload), "outside")

    # A well-formed file (valid checksum) whose weights contain NaN.
    entry = tensor_entry(header, "layers.0.weight")
    nan_payload = bytearray(payload)
    nan_payload[entry["offset"] : entry["offset"] + 4] = np.array([np.nan], "<f4").tobytes()
    cases["non-finite weights"] = (join(header, bytes(nan_payload)), "non-finite")
    return cases


CASES = corrupt_cases()


@pytest.mark.parametrize("case", sorted(CASES))
def test_corruption_raises_model_format_error(case: str):
    data, expected_words = CASES[case]
    with pytest.raises(ModelFormatError, match=expected_words):
        model_from_bytes(data)


def test_model_format_error_is_a_value_error_and_the_join_helper_is_faithful():
    assert issubclass(ModelFormatError, ValueError)
    data = model_to_bytes(make_model())
    version, header, payload = split(data)
    model, _ = model_from_bytes(join(header, payload, version))  # untouched parts load fine
    assert model.num_members == 3


def test_load_model_reports_corrupt_file(tmp_path: Path):
    path = tmp_path / "model.mbrl"
    save_model(path, make_model())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ModelFormatError, match="truncated"):
        load_model(path)
