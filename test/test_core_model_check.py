"""Checking a received model before planning on it: every reason to refuse one."""

from __future__ import annotations

import pytest
import torch
from helpers.models import ensemble, serialized, with_nan_weight

from mbrl_ros.core.models.model_check import ModelRejected, load_checked_model
from mbrl_ros.core.models.serialization import checksum
from mbrl_ros.core.tasks import BaodingTask, CubeTask

TASK = BaodingTask()
FIELDS = list(TASK.layout.names)


def check(data: bytes, **overrides):
    kwargs = {"format_version": 1, "supported_format": 1, "expected_checksum": checksum(data),
              "task_name": "baoding", "state_fields": FIELDS, "task": TASK}
    kwargs.update(overrides)
    return load_checked_model(data, **kwargs)


def test_a_good_model_loads_with_its_weights():
    model = ensemble(TASK.state_dim, TASK.action_dim, hidden=(32,))
    loaded = check(serialized(model))
    state, action = torch.zeros(5, TASK.state_dim), torch.zeros(5, TASK.action_dim)
    torch.testing.assert_close(loaded.predict(state, action), model.predict(state, action))


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"format_version": 2}, "newer than supported"),
    ({"format_version": 0}, "invalid format_version"),
    ({"expected_checksum": "0" * 64}, "checksum mismatch"),
    ({"task_name": "cube"}, "for task 'cube'"),
    ({"state_fields": [*FIELDS[:-1], "target3_xy"]}, "state fields"),
    ({"state_fields": FIELDS[:-1]}, "state fields"),
])
def test_metadata_mismatches_are_rejected(overrides, reason):
    data = serialized(ensemble(TASK.state_dim, TASK.action_dim, hidden=(16,)))
    with pytest.raises(ModelRejected, match=reason):
        check(data, **overrides)


def test_corrupt_bytes_nan_weights_and_wrong_dims_are_rejected():
    data = serialized(ensemble(TASK.state_dim, TASK.action_dim, hidden=(16,)))
    truncated = data[:-10]
    with pytest.raises(ModelRejected, match="cannot load"):
        check(truncated)
    nan = with_nan_weight(data)
    with pytest.raises(ModelRejected, match="non-finite"):
        check(nan)
    cube = CubeTask()
    wrong = serialized(ensemble(cube.state_dim, cube.action_dim, hidden=(16,)))
    with pytest.raises(ModelRejected, match="dims"):
        check(wrong)  # a cube-sized model announced as a Baoding one
