"""Constant-velocity Kalman filtering of tracked object coordinates (numpy, no ROS).

A tracker (motion capture, cameras, the simulator standing in) reports object poses only,
sometimes not at all (dropouts), sometimes late or out of order. ``ConstantVelocityKalman``
filters a vector of independent coordinates (e.g. a ball's xyz, or a cube's xyz and Euler
angles), estimates their rates, bridges dropouts by prediction (the covariance grows with
the time since the last measurement) and rejects measurements that are not newer than the
last one it fused. Angular coordinates are unwrapped against the prediction, so an angle
crossing +-pi does not make the velocity jump.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from mbrl_ros.core.hinge_angles import wrap_to_nearest
from mbrl_ros.core.validation import finite_vector

# Floor on the innovation variance: a zero measurement noise with a zero predicted
# variance would otherwise divide by zero.
_MIN_INNOVATION_VAR = 1e-18
# Variance standing in for "this rate was not measured".
_UNMEASURED_VAR = 1e30


class ConstantVelocityKalman:
    """Independent constant-velocity Kalman filters for ``size`` coordinates, vectorized.

    Per coordinate the state is (position, rate) with the white-noise-acceleration model:
    over ``dt`` the position moves by ``rate * dt`` and the process noise covariance is
    ``q [[dt^3/3, dt^2/2], [dt^2/2, dt]]`` with ``q = accel_psd`` (the acceleration's
    spectral density, units^2 / s^3). Measurements are positions with noise std
    ``measurement_std``. The first measurement sets the position and a zero rate with std
    ``initial_rate_std``; with a large enough one the second measurement makes the rate
    the two-point difference. ``angular`` marks coordinates that are angles (radians):
    their measurements are unwrapped to the nearest turn of the prediction.

    Times are seconds on any clock (e.g. ROS time), only differences matter.
    """

    def __init__(
        self,
        size: int,
        measurement_std: ArrayLike,
        accel_psd: ArrayLike,
        initial_rate_std: ArrayLike,
        angular: ArrayLike | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.size = int(size)
        def vector(values: ArrayLike, what: str) -> np.ndarray:
            return finite_vector(values, size, what, minimum=0.0, broadcast=True)

        self.measurement_var = vector(measurement_std, "measurement_std") ** 2
        self.accel_psd = vector(accel_psd, "accel_psd")
        self.initial_rate_var = vector(initial_rate_std, "initial_rate_std") ** 2
        self.angular = (np.zeros(size, dtype=bool) if angular is None
                        else np.broadcast_to(np.asarray(angular, dtype=bool), (size,)).copy())
        self.rejected = 0  # measurements refused as out of order (not newer than the last)
        self.reset()

    def reset(self) -> None:
        """Forget everything (a new episode: objects may have jumped)."""
        self.x = np.zeros((self.size, 2))
        self.P = np.zeros((self.size, 2, 2))
        self.time: float | None = None
        self.last_measurement_time: float | None = None

    @property
    def initialized(self) -> bool:
        return self.time is not None

    @property
    def position(self) -> np.ndarray:
        return self.x[:, 0].copy()

    @property
    def rate(self) -> np.ndarray:
        return self.x[:, 1].copy()

    def predicted(self, t: float) -> tuple[np.ndarray, np.ndarray]:
        """State ``(size, 2)`` and covariance ``(size, 2, 2)`` predicted to ``t`` (no change
        to the filter). ``t`` before the filter's time is a ValueError."""
        if self.time is None:
            raise ValueError("the filter has no measurement yet")
        dt = float(t) - self.time
        if dt < 0:
            raise ValueError(f"cannot predict backwards ({dt:.6f} s)")
        x = self.x.copy()
        x[:, 0] += dt * x[:, 1]
        p00, p01, p11 = self.P[:, 0, 0], self.P[:, 0, 1], self.P[:, 1, 1]
        q = self.accel_psd
        P = np.empty_like(self.P)
        P[:, 0, 0] = p00 + 2.0 * dt * p01 + dt * dt * p11 + q * dt**3 / 3.0
        P[:, 0, 1] = P[:, 1, 0] = p01 + dt * p11 + q * dt**2 / 2.0
        P[:, 1, 1] = p11 + q * dt
        return x, P

    def predict(self, t: float) -> None:
        """Advance the filter to ``t`` without a measurement (a dropout): the estimate
        moves on at the estimated rate and its covariance grows."""
        self.x, self.P = self.predicted(t)
        self.time = float(t)

    def update(self, z: ArrayLike, t: float, rate: ArrayLike | None = None,
               rate_std: ArrayLike = 0.0) -> bool:
        """Fuse the position measurement ``z`` taken at ``t`` and, if the sensor measures
        them, the ``rate`` of the coordinates (std ``rate_std``; NaN entries: not measured).

        Returns False (and counts it in ``rejected``) if ``t`` is not newer than the newest
        measurement fused or is earlier than the filter's time. ValueError on a wrong shape
        or non-finite positions.
        """
        z = np.asarray(z, dtype=np.float64)
        if z.shape != (self.size,):
            raise ValueError(f"measurement must have shape ({self.size},), got {z.shape}")
        if not np.all(np.isfinite(z)):
            raise ValueError("measurement has non-finite values")
        rate_z, rate_var = self._rate_measurement(rate, rate_std)
        t = float(t)
        if self.time is None:
            self._initialize(z, t, rate_z, rate_var)
            return True
        if t < self.time or (self.last_measurement_time is not None
                             and t <= self.last_measurement_time):
            self.rejected += 1
            return False
        x, P = self.predicted(t)
        z = np.where(self.angular, wrap_to_nearest(z, x[:, 0]), z)
        if rate_z is None:
            s = np.maximum(P[:, 0, 0] + self.measurement_var, _MIN_INNOVATION_VAR)
            gain = P[:, :, 0] / s[:, None]  # (size, 2): Kalman gain for a position measurement
            self.x = x + gain * (z - x[:, 0])[:, None]
            self.P = P - gain[:, :, None] * P[:, 0, None, :]  # (I - K H) P
        else:
            measured = np.isfinite(rate_z)
            innovation = np.stack([z - x[:, 0], np.where(measured, rate_z - x[:, 1], 0.0)], -1)
            R = np.zeros_like(P)
            R[:, 0, 0] = self.measurement_var
            R[:, 1, 1] = np.where(measured, rate_var, _UNMEASURED_VAR)
            S = P + R + _MIN_INNOVATION_VAR * np.eye(2)
            gain = np.linalg.solve(S, P).transpose(0, 2, 1)  # P S^-1 (P, S symmetric)
            self.x = x + np.einsum("nij,nj->ni", gain, innovation)
            self.P = P - gain @ P
            self.P = 0.5 * (self.P + self.P.transpose(0, 2, 1))
        self.time = self.last_measurement_time = t
        return True

    def _rate_measurement(self, rate: ArrayLike | None,
                          rate_std: ArrayLike) -> tuple[np.ndarray | None, np.ndarray]:
        var = finite_vector(rate_std, self.size, "rate_std", minimum=0.0, broadcast=True) ** 2
        if rate is None:
            return None, var
        rate = np.asarray(rate, dtype=np.float64)
        if rate.shape != (self.size,) or np.any(np.isinf(rate)):
            raise ValueError(f"rate must have shape ({self.size},) without infinities")
        return (rate if np.any(np.isfinite(rate)) else None), var

    def _initialize(self, z: np.ndarray, t: float, rate: np.ndarray | None,
                    rate_var: np.ndarray) -> None:
        self.x[:, 0], self.x[:, 1] = z, 0.0
        self.P[:] = 0.0
        self.P[:, 0, 0] = self.measurement_var
        self.P[:, 1, 1] = self.initial_rate_var
        if rate is not None:
            measured = np.isfinite(rate)
            self.x[measured, 1] = rate[measured]
            self.P[measured, 1, 1] = np.minimum(rate_var[measured],
                                                self.initial_rate_var[measured])
        self.time = self.last_measurement_time = t
