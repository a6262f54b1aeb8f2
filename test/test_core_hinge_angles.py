"""The cube's hinge angles (``mbrl_ros.core.hinge_angles``): quaternions to angles, the
continuous branch, rates from angular velocity, one orientation or a batch."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mbrl_ros.core.hinge_angles import (
    euler_xyz,
    euler_xyz_from_quat,
    euler_xyz_rates,
    nearest_branch,
    nearest_euler_xyz,
    quat_from_euler_xyz,
    rate_jacobian,
    rates_for,
    rotation_xyz,
)


def _quat_xyz(angles) -> np.ndarray:
    """Quaternion (w, x, y, z) of Rx(a) Ry(b) Rz(c), written out independently."""
    out = np.array([1.0, 0.0, 0.0, 0.0])
    for axis, angle in enumerate(angles):
        step = np.zeros(4)
        step[0], step[1 + axis] = math.cos(angle / 2), math.sin(angle / 2)
        w1, v1, w2, v2 = out[0], out[1:], step[0], step[1:]
        out = np.concatenate([[w1 * w2 - v1 @ v2], w1 * v2 + w2 * v1 + np.cross(v1, v2)])
    return out


def test_euler_angles_from_quaternions_round_trip_and_pick_the_continuous_branch():
    rng = np.random.default_rng(1)
    for _ in range(50):
        angles = rng.uniform([-3, -1.5, -3], [3, 1.5, 3])
        np.testing.assert_allclose(euler_xyz_from_quat(_quat_xyz(angles)), angles, atol=1e-9)
    beyond = np.array([0.2, 1.9, -0.4])  # ry past pi/2: the principal triple differs
    principal = euler_xyz_from_quat(_quat_xyz(beyond))
    assert abs(principal[1]) <= math.pi / 2
    np.testing.assert_allclose(nearest_euler_xyz(_quat_xyz(beyond), beyond + 0.05), beyond,
                               atol=1e-9)
    turned = np.array([3.5, 0.1, -3.6])  # past +-pi: unwrapped to the reference's turn
    np.testing.assert_allclose(nearest_euler_xyz(_quat_xyz(turned), [3.4, 0.0, -3.5]), turned,
                               atol=1e-9)


def test_quaternions_of_hinge_angles_are_how_mujoco_turns_three_hinges_in_one_body():
    mujoco = pytest.importorskip("mujoco")
    model = mujoco.MjModel.from_xml_string(
        "<mujoco><worldbody><body name='die'>"
        "<joint type='hinge' axis='1 0 0'/><joint type='hinge' axis='0 1 0'/>"
        "<joint type='hinge' axis='0 0 1'/><geom size='0.01'/></body></worldbody></mujoco>")
    data = mujoco.MjData(model)
    angles = np.random.default_rng(2).uniform(-4.0, 4.0, (40, 3))
    quats = quat_from_euler_xyz(angles)
    for a, q in zip(angles, quats, strict=True):
        data.qpos[:] = a
        mujoco.mj_kinematics(model, data)
        body = data.xquat[1] * np.sign(data.xquat[1] @ q)  # q and -q: the same orientation
        np.testing.assert_allclose(q, body, atol=1e-12)
        np.testing.assert_allclose(q, _quat_xyz(a), atol=1e-12)
    np.testing.assert_allclose(nearest_euler_xyz(quats, angles), angles, atol=1e-9)


def test_euler_rates_match_the_angular_velocity_of_turning_hinges():
    angles = np.array([0.4, -0.7, 1.2])
    rates = np.array([0.5, -1.0, 2.0])
    h = 1e-6
    q0, q1 = _quat_xyz(angles - rates * h), _quat_xyz(angles + rates * h)
    # world angular velocity from the quaternion derivative: w = 2 dq/dt * conj(q)
    dq = (q1 - q0) / (2 * h)
    q = _quat_xyz(angles)
    conj = q * np.array([1, -1, -1, -1])
    wv = dq[0] * conj[1:] + conj[0] * dq[1:] + np.cross(dq[1:], conj[1:])
    np.testing.assert_allclose(euler_xyz_rates(angles, 2 * wv), rates, atol=1e-6)
    assert np.all(np.isnan(euler_xyz_rates([0.0, math.pi / 2, 0.0], [1.0, 0.0, 0.0])))


def test_hinge_angles_round_trip_and_the_jacobian_gives_the_angular_velocity():
    rng = np.random.default_rng(0)
    angles = rng.uniform(-1.0, 1.0, (200, 3))
    np.testing.assert_allclose(euler_xyz(rotation_xyz(angles)), angles, atol=1e-12)
    # w = J rates: compare with the finite difference of R, w^ = dR R^T
    rates = rng.normal(size=(200, 3))
    dt = 1e-6
    dr = (rotation_xyz(angles + dt * rates) - rotation_xyz(angles - dt * rates)) / (2 * dt)
    skew = dr @ np.swapaxes(rotation_xyz(angles), 1, 2)
    omega = np.stack([skew[:, 2, 1], skew[:, 0, 2], skew[:, 1, 0]], -1)
    np.testing.assert_allclose((rate_jacobian(angles) @ rates[..., None])[..., 0], omega,
                               atol=1e-6)
    np.testing.assert_allclose(euler_xyz_rates(angles, omega), rates, atol=1e-5)
    # rates_for: the same world angular velocity at other angles
    other = rng.uniform(-1.0, 1.0, (200, 3))
    moved = rates_for(angles, rates, other)
    np.testing.assert_allclose((rate_jacobian(other) @ moved[..., None])[..., 0], omega,
                               atol=1e-6)


def test_nearest_branch_names_the_same_orientation_closest_to_the_reference():
    angles = np.array([[0.3, 1.4, -0.2]])
    other = np.array([[0.3 + math.pi - 2 * math.pi, math.pi - 1.4, -0.2 + math.pi]])
    picked = nearest_branch(angles, other + 0.01)
    np.testing.assert_allclose(picked, other)
    np.testing.assert_allclose(rotation_xyz(picked), rotation_xyz(angles), atol=1e-12)
    np.testing.assert_allclose(nearest_branch(angles, angles - 0.01), angles)


def test_a_batch_gives_what_each_orientation_gives_alone():
    rng = np.random.default_rng(2)
    angles = rng.uniform([-3, -1.5, -3], [3, 1.5, 3], (20, 3))
    quats = np.stack([_quat_xyz(a) for a in angles])
    turns = rng.integers(-1, 2, (20, 3))
    refs = angles + rng.uniform(-0.2, 0.2, angles.shape) + 2 * math.pi * turns
    omega = rng.normal(size=(20, 3))
    angles[3, 1] = math.pi / 2  # one at gimbal lock: NaN rates there only
    batched = euler_xyz_rates(angles, omega)
    for k in range(20):
        np.testing.assert_allclose(nearest_euler_xyz(quats, refs)[k],
                                   nearest_euler_xyz(quats[k], refs[k]))
        np.testing.assert_allclose(batched[k], euler_xyz_rates(angles[k], omega[k]))
    assert np.isnan(batched[3]).all() and np.isfinite(np.delete(batched, 3, 0)).all()


@pytest.mark.parametrize("bad", [[0.0, 0.0, 0.0, 0.0], [np.nan, 1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])
def test_an_unusable_quaternion_is_rejected(bad):
    with pytest.raises(ValueError, match="quaternion"):
        euler_xyz_from_quat(bad)
