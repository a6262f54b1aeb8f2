"""Optional sensing and actuation imperfections of a real hand; all off by default."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class RealismConfig:
    """Imperfections applied by ``HandSim`` (seeded, so runs stay reproducible).

    joint_pos_noise_std: joint encoder noise, rad (Gaussian, per reading).
    joint_vel_noise_std: joint velocity noise, rad/s.
    object_pos_noise_std: tracker position noise, m (also on slide coordinates).
    object_rot_noise_std: tracker orientation noise, rad (a random rotation of that size
        per axis; also on hinge coordinates).
    object_vel_noise_std / object_angvel_noise_std: tracker velocity noise, m/s and rad/s.
    tracker_latency_steps: the tracker reports the object state this many control steps old.
    tracker_dropout_rate: probability that a reading has no object data (reported as None).
    action_delay_steps: a command takes effect this many control steps after it is given.
    """

    joint_pos_noise_std: float = 0.0
    joint_vel_noise_std: float = 0.0
    object_pos_noise_std: float = 0.0
    object_rot_noise_std: float = 0.0
    object_vel_noise_std: float = 0.0
    object_angvel_noise_std: float = 0.0
    tracker_latency_steps: int = 0
    tracker_dropout_rate: float = 0.0
    action_delay_steps: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"{f.name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{f.name} must be finite and >= 0, got {value}")
        for name in ("tracker_latency_steps", "action_delay_steps"):
            value = getattr(self, name)
            if int(value) != value or value > 1000:
                raise ValueError(f"{name} must be an integer in [0, 1000], got {value}")
        if self.tracker_dropout_rate >= 1.0:
            raise ValueError(
                f"tracker_dropout_rate must be in [0, 1), got {self.tracker_dropout_rate}"
            )

    @property
    def enabled(self) -> bool:
        """True if any imperfection is switched on."""
        return any(getattr(self, f.name) != 0 for f in fields(self))

    @classmethod
    def from_dict(cls, values: Mapping[str, float]) -> RealismConfig:
        """Build from e.g. ROS parameters; unknown keys are an error, not silently ignored."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown realism settings {unknown}; known: {sorted(known)}")
        kwargs = dict(values)
        for name in ("tracker_latency_steps", "action_delay_steps"):
            if name in kwargs and float(kwargs[name]).is_integer():
                kwargs[name] = int(kwargs[name])
        return cls(**kwargs)

    def to_dict(self) -> dict[str, float]:
        return asdict(self)
