"""PDDM's action scaling, both ways, vectorized."""

from __future__ import annotations

import numpy as np
import pytest

from mbrl_ros.core.robot.action_map import ActionMap
from mbrl_ros.sim.adroit import PDDM_CTRL_RANGE
from mbrl_ros.sim.scene_baoding import PDDM_BAODING_KEY
from mbrl_ros.sim.scene_cube import PDDM_CUBE_KEY


def _invertible_part(amap: ActionMap, a: np.ndarray) -> np.ndarray:
    """``a`` with the entries no map can recover zeroed: a joint whose centre sits on a
    limit (PDDM keyframe at or beyond it) has no room on that side."""
    dead = ((a < 0) & (amap.lower == 0)) | ((a > 0) & (amap.upper == 0))
    return np.where(dead, 0.0, a)


@pytest.fixture()
def baoding_map() -> ActionMap:
    return ActionMap(PDDM_BAODING_KEY[:24], PDDM_CTRL_RANGE, scale=0.9)


def test_known_values_follow_pddm_formula(baoding_map):
    lo, hi = PDDM_CTRL_RANGE[:, 0], PDDM_CTRL_RANGE[:, 1]
    mid = np.clip(PDDM_BAODING_KEY[:24], lo, hi)
    # PDDM's Baoding keyframe has MFJ2 = -0.136 and LFJ4 = -0.022 below their range (0);
    # every other joint's centre is the keyframe itself
    assert np.flatnonzero(mid != PDDM_BAODING_KEY[:24]).tolist() == [7, 14]
    np.testing.assert_allclose(baoding_map.to_joint_targets(np.zeros(24)), mid)
    np.testing.assert_allclose(baoding_map.to_joint_targets(np.ones(24)), mid + 0.9 * (hi - mid))
    np.testing.assert_allclose(baoding_map.to_joint_targets(-np.ones(24)),
                               mid - 0.9 * (mid - lo))
    a = np.linspace(-1, 1, 24)
    expected = np.where(a > 0, mid + a * 0.9 * (hi - mid), mid + a * 0.9 * (mid - lo))
    np.testing.assert_allclose(baoding_map.to_joint_targets(a), expected)
    np.testing.assert_allclose(baoding_map.upper, 0.9 * (hi - mid))
    np.testing.assert_allclose(baoding_map.lower, 0.9 * (mid - lo))


def test_round_trip_batches(baoding_map):
    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (7, 5, 24))
    q = baoding_map.to_joint_targets(a)
    assert q.shape == (7, 5, 24)
    np.testing.assert_allclose(baoding_map.to_normalized(q), _invertible_part(baoding_map, a),
                               atol=1e-12)
    assert np.flatnonzero(baoding_map.lower == 0).tolist() == [7, 14, 16]
    lo, hi = baoding_map.reachable_range().T
    q2 = rng.uniform(lo, hi, (100, 24))
    np.testing.assert_allclose(baoding_map.to_joint_targets(baoding_map.to_normalized(q2)), q2,
                               atol=1e-12)


def test_clipping_both_ways(baoding_map):
    np.testing.assert_allclose(baoding_map.to_joint_targets(np.full(24, 3.0)),
                               baoding_map.to_joint_targets(np.ones(24)))
    beyond = baoding_map.high + 1.0
    np.testing.assert_allclose(baoding_map.to_normalized(beyond), np.ones(24))


def test_cube_uses_full_range_and_stays_invertible():
    cube = ActionMap(PDDM_CUBE_KEY[:24], PDDM_CTRL_RANGE, scale=1.0)
    np.testing.assert_allclose(cube.to_joint_targets(np.ones(24)), PDDM_CTRL_RANGE[:, 1])
    np.testing.assert_allclose(cube.to_joint_targets(-np.ones(24)), PDDM_CTRL_RANGE[:, 0])
    # PDDM's cube keyframe puts THJ2 (-0.262) below its range (-0.26): mid is clamped
    assert cube.mid[21] == pytest.approx(-0.26)
    assert np.all(cube.lower >= 0) and np.all(cube.upper >= 0)
    a = np.random.default_rng(0).uniform(-1, 1, (50, 24))
    np.testing.assert_allclose(cube.to_normalized(cube.to_joint_targets(a)),
                               _invertible_part(cube, a), atol=1e-12)


def test_bad_input_is_rejected(baoding_map):
    with pytest.raises(ValueError, match="last dimension 24"):
        baoding_map.to_joint_targets(np.zeros(23))
    with pytest.raises(ValueError, match="non-finite"):
        baoding_map.to_normalized(np.full(24, np.nan))
    with pytest.raises(ValueError, match="scale"):
        ActionMap(np.zeros(24), PDDM_CTRL_RANGE, scale=1.5)
    with pytest.raises(ValueError, match="lo < hi"):
        ActionMap(np.zeros(2), np.array([[0.0, 1.0], [1.0, 0.0]]))


def test_arrays_are_read_only_for_safe_sharing(baoding_map):
    with pytest.raises(ValueError):
        baoding_map.mid[0] = 1.0
    assert set(baoding_map.as_dict()) >= {"mid", "upper", "lower", "scale"}
