"""The cube's orientation as three hinge angles about x, then y, then z (numpy, batched).

The cube's task coordinates (PDDM's OBJRx, OBJRy, OBJRz) are the angles ``(a, b, c)`` of
three hinges, each turning about the axis already turned by the previous ones: the rotation
``R = Rx(a) Ry(b) Rz(c)``. An orientation names two angle triples, ``(a, b, c)`` and
``(a + pi, pi - b, c + pi)``, each up to whole turns; the principal one has ``b`` in
``[-pi/2, pi/2]``. The rates of the angles relate to the world angular velocity by
``w = a' e_x + b' Rx(a) e_y + c' Rx(a) Ry(b) e_z``, undefined at ``cos b = 0``.

One implementation for the state estimator (one orientation per measurement) and the cube's
symmetry augmentation (whole batches): every function takes ``[..., 3]`` angles (or
rates), ``[..., 3, 3]`` matrices or ``[..., 4]`` quaternions, float64.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike

TWO_PI = 2.0 * math.pi


def wrap_to_nearest(angle: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """``angle`` plus the multiple of 2 pi that brings it closest to ``reference``."""
    angle = np.asarray(angle, dtype=np.float64)
    return angle + TWO_PI * np.round((np.asarray(reference, dtype=np.float64) - angle) / TWO_PI)


def rotation_xyz(angles: ArrayLike) -> np.ndarray:
    """``Rx(a) Ry(b) Rz(c)`` for hinge angles ``[..., 3]`` -> ``[..., 3, 3]``."""
    a, b, c = np.moveaxis(np.asarray(angles, dtype=np.float64), -1, 0)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rows = [
        [cb * cc, -cb * sc, sb],
        [sa * sb * cc + ca * sc, -sa * sb * sc + ca * cc, -sa * cb],
        [-ca * sb * cc + sa * sc, ca * sb * sc + sa * cc, ca * cb],
    ]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def euler_xyz(rot: ArrayLike) -> np.ndarray:
    """Principal hinge angles of rotations ``[..., 3, 3]``: b in [-pi/2, pi/2], a and c in
    (-pi, pi]."""
    rot = np.asarray(rot, dtype=np.float64)
    a = np.arctan2(-rot[..., 1, 2], rot[..., 2, 2])
    b = np.arcsin(np.clip(rot[..., 0, 2], -1.0, 1.0))
    c = np.arctan2(-rot[..., 0, 1], rot[..., 0, 0])
    return np.stack([a, b, c], -1)


def euler_xyz_from_quat(quat_wxyz: ArrayLike) -> np.ndarray:
    """Principal hinge angles ``[..., 3]`` of orientations ``quat_wxyz`` ``[..., 4]`` (w
    first; normalized here). ValueError for a non-finite or zero quaternion."""
    q = np.asarray(quat_wxyz, dtype=np.float64)
    norm = np.linalg.norm(q, axis=-1, keepdims=True) if q.shape[-1:] == (4,) else None
    if norm is None or not np.all(np.isfinite(norm)) or np.any(norm < 1e-9):
        raise ValueError(f"not a usable quaternion: {quat_wxyz}")
    w, x, y, z = np.moveaxis(q / norm, -1, 0)
    # the entries of the rotation matrix that euler_xyz reads
    r00, r01 = 1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z)
    r02, r12 = 2.0 * (x * z + w * y), 2.0 * (y * z - w * x)
    r22 = 1.0 - 2.0 * (x * x + y * y)
    return np.stack([np.arctan2(-r12, r22), np.arcsin(np.clip(r02, -1.0, 1.0)),
                     np.arctan2(-r01, r00)], -1)


def quat_from_euler_xyz(angles: ArrayLike) -> np.ndarray:
    """Orientations ``[..., 4]`` (w first) of hinge angles ``[..., 3]``: the product of the
    half-angle quaternions about x, then y, then z (``Rx(a) Ry(b) Rz(c)``)."""
    a, b, c = np.moveaxis(np.asarray(angles, dtype=np.float64) / 2.0, -1, 0)
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    return np.stack([ca * cb * cc - sa * sb * sc, sa * cb * cc + ca * sb * sc,
                     ca * sb * cc - sa * cb * sc, ca * cb * sc + sa * sb * cc], -1)


def nearest_branch(angles: ArrayLike, reference: ArrayLike) -> np.ndarray:
    """Of the two angle triples naming the orientation of ``angles``, each up to whole
    turns, the one nearest ``reference`` (L1), e.g. a filter's prediction or the previous
    state: the angles stay continuous through +-pi and through b = +-pi/2."""
    angles = np.asarray(angles, dtype=np.float64)
    reference = np.asarray(reference, dtype=np.float64)
    a, b, c = np.moveaxis(angles, -1, 0)
    other = np.stack([a + math.pi, math.pi - b, c + math.pi], -1)
    candidates = wrap_to_nearest(np.stack([angles, other]), reference)
    first = (np.abs(candidates[0] - reference).sum(-1)
             <= np.abs(candidates[1] - reference).sum(-1))
    return np.where(first[..., None], candidates[0], candidates[1])


def nearest_euler_xyz(quat_wxyz: ArrayLike, reference: ArrayLike | None = None) -> np.ndarray:
    """The hinge angles of ``quat_wxyz`` nearest ``reference`` (None: the principal ones)."""
    principal = euler_xyz_from_quat(quat_wxyz)
    return principal if reference is None else nearest_branch(principal, reference)


def rate_jacobian(angles: ArrayLike) -> np.ndarray:
    """``J`` with world angular velocity ``w = J @ rates`` at hinge angles ``[..., 3]``
    -> ``[..., 3, 3]``."""
    a, b, _ = np.moveaxis(np.asarray(angles, dtype=np.float64), -1, 0)
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    one, zero = np.ones_like(a), np.zeros_like(a)
    rows = [[one, zero, sb], [zero, ca, -sa * cb], [zero, sa, ca * cb]]
    return np.stack([np.stack(r, -1) for r in rows], -2)


def euler_xyz_rates(angles: ArrayLike, angular_velocity: ArrayLike,
                    min_cos: float = 1e-3) -> np.ndarray:
    """Rates ``[..., 3]`` of hinge angles ``angles`` for world angular velocities
    ``angular_velocity``; NaN where ``|cos b| < min_cos`` (gimbal lock: undefined).
    ``rate_jacobian`` solved in closed form (its determinant is ``cos b``)."""
    a, b, _ = np.moveaxis(np.asarray(angles, dtype=np.float64), -1, 0)
    w0, w1, w2 = np.moveaxis(np.asarray(angular_velocity, dtype=np.float64), -1, 0)
    ca, sa, cb, sb = np.cos(a), np.sin(a), np.cos(b), np.sin(b)
    locked = np.abs(cb) < min_cos
    rate_c = (ca * w2 - sa * w1) / np.where(locked, 1.0, cb)
    rates = np.stack(np.broadcast_arrays(w0 - sb * rate_c, ca * w1 + sa * w2, rate_c), -1)
    return np.where(locked[..., None], np.nan, rates)


def rates_for(angles: ArrayLike, rates: ArrayLike, new_angles: ArrayLike) -> np.ndarray:
    """Hinge rates at ``new_angles`` giving the world angular velocity that ``rates`` give
    at ``angles`` (all ``[..., 3]``)."""
    omega = rate_jacobian(angles) @ np.asarray(rates, dtype=np.float64)[..., None]
    return euler_xyz_rates(new_angles, omega[..., 0])
