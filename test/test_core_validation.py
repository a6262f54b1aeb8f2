"""The one set of input checks (core/validation.py): sizes, finiteness, ranges, types."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mbrl_ros.core.validation import (
    check_finite,
    check_float,
    check_int,
    check_last_dim,
    check_positive,
    finite_vector,
)


def test_finite_vector_sizes_nonfinite_minimum_and_broadcast():
    out = finite_vector([1, 2, 3], 3, "goal")
    assert out.dtype == np.float64 and out.tolist() == [1.0, 2.0, 3.0]
    with pytest.raises(ValueError, match="goal has 2 values, expected 3"):
        finite_vector([1, 2], 3, "goal")
    with pytest.raises(ValueError, match=r"non-finite values at indices \[1\]"):
        finite_vector([1, np.nan, 3], 3, "goal")
    assert finite_vector(0.5, 4, "std", minimum=0.0, broadcast=True).tolist() == [0.5] * 4
    with pytest.raises(ValueError, match=r"std must be >= 0\.0"):
        finite_vector([-1.0, 1.0], 2, "std", minimum=0.0)
    with pytest.raises(ValueError, match="has 2 values, expected 3"):
        finite_vector([1.0, 2.0], 3, "std", broadcast=True)
    source = np.zeros(3)
    finite_vector(source, 3, "x")[0] = 1.0  # a copy: the caller's array is not aliased
    assert source[0] == 0.0


def test_scalar_checks_refuse_bools_nonfinite_and_out_of_range():
    check_int("n", 3, 1)
    for bad in (0, True, 2.0, "3"):
        with pytest.raises(ValueError, match="n must be an int >= 1"):
            check_int("n", bad, 1)
    check_float("beta", 1.0, 0.0, 1.0, low_open=True)
    for bad in (0.0, 1.5, float("nan"), False):
        with pytest.raises(ValueError, match=r"beta must be a finite number in \(0.0, 1.0\]"):
            check_float("beta", bad, 0.0, 1.0, low_open=True)
    check_positive("period", 0.1)
    for bad in (0.0, -1.0, float("inf")):
        with pytest.raises(ValueError, match="period must be a finite number > 0"):
            check_positive("period", bad)


def test_tensor_checks():
    check_last_dim("states", torch.zeros(2, 5), 5)
    with pytest.raises(ValueError, match="last dimension 4"):
        check_last_dim("states", torch.zeros(2, 5), 4)
    with pytest.raises(ValueError, match=r"must be a torch\.Tensor"):
        check_last_dim("states", np.zeros(5), 5)
    with pytest.raises(ValueError, match="non-finite"):
        check_finite("goals", torch.tensor([0.0, float("nan")]))
