"""State layouts: the class and every task's layout, in one torch-free module.

A task's state vector is its named fields in order. The core plans on it and the simulator
builds its task observation from the same definition, so the simulator (which stays
torch-free) imports it from here rather than writing it again.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

#: The actuated joints of the Adroit ShadowHand, the first field of every hand task's state.
HAND_JOINTS = 24


@dataclass(frozen=True)
class StateLayout:
    """Ordered named fields of a flat state vector (e.g. ``("joints", 24)``)."""

    fields: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        fields = tuple((str(name), int(size)) for name, size in self.fields)
        if not fields:
            raise ValueError("StateLayout needs at least one field")
        names = [name for name, _ in fields]
        if len(set(names)) != len(names):
            raise ValueError(f"StateLayout field names must be unique, got {names}")
        for name, size in fields:
            if size < 1:
                raise ValueError(f"StateLayout field {name!r} must have size >= 1, got {size}")
        object.__setattr__(self, "fields", fields)
        offsets, start = {}, 0
        for name, size in fields:
            offsets[name] = (start, size)
            start += size
        # (start, size) of each field, computed once: layouts are frozen
        object.__setattr__(self, "_offsets", offsets)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.fields)

    @property
    def dim(self) -> int:
        """Total length of the state vector."""
        return sum(size for _, size in self.fields)

    def start(self, name: str) -> int:
        """Index of the first element of field ``name``."""
        return self._offsets_of(name)[0]

    def size(self, name: str) -> int:
        """Number of elements of field ``name``."""
        return self._offsets_of(name)[1]

    def _offsets_of(self, name: str) -> tuple[int, int]:
        try:
            return self._offsets[name]
        except KeyError:
            raise KeyError(f"no state field {name!r}; fields are {list(self.names)}") from None

    def slice(self, name: str) -> slice:
        """Slice of field ``name`` in the state vector."""
        start = self.start(name)
        return slice(start, start + self.size(name))

    def span(self, names: Sequence[str]) -> slice:
        """One slice covering consecutive fields ``names`` (in layout order, no gaps)."""
        if not names:
            raise ValueError("span needs at least one field name")
        slices = [self.slice(n) for n in names]
        for before, after in itertools.pairwise(slices):
            if before.stop != after.start:
                raise ValueError(f"fields {list(names)} are not consecutive in the layout")
        return slice(slices[0].start, slices[-1].stop)

    def to_msg_fields(self) -> list[tuple[str, int, int]]:
        """``[(name, start, size), ...]`` for describing the layout in a ROS message."""
        return [(name, *self._offsets[name]) for name in self.names]

    def __getitem__(self, name: str) -> slice:
        """``layout["ball1_pos"]``: the slice of a field, for numpy and torch alike."""
        return self.slice(name)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Views of each field of ``vector`` (any leading batch shape, last axis ``dim``)."""
        vector = np.asarray(vector)
        if vector.shape[-1:] != (self.dim,):
            raise ValueError(f"expected last dimension {self.dim}, got shape {vector.shape}")
        return {name: vector[..., self.slice(name)] for name in self.names}

    def compose(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenate per-field arrays (any leading batch shape) into flat vectors."""
        missing = [n for n in self.names if n not in parts]
        extra = [n for n in parts if n not in self.names]
        if missing or extra:
            raise ValueError(f"compose needs exactly {list(self.names)}; missing {missing}, "
                             f"unknown {extra}")
        blocks = []
        for name, size in self.fields:
            block = np.asarray(parts[name], dtype=np.float64)
            if block.shape[-1:] != (size,):
                raise ValueError(f"field {name!r} needs {size} entries, got {block.shape}")
            blocks.append(block)
        return np.concatenate(blocks, axis=-1)

    def to_dict(self) -> dict[str, list[int]]:
        """``{name: [start, stop]}`` for messages, YAML and JSON."""
        return {name: [start, start + size] for name, start, size in self.to_msg_fields()}


#: Baoding (PDDM's order): hand joints, each ball's position and velocity, each target's
#: world xy.
BAODING_LAYOUT = StateLayout(
    (
        ("joints", HAND_JOINTS),
        ("ball1_pos", 3),
        ("ball1_vel", 3),
        ("ball2_pos", 3),
        ("ball2_vel", 3),
        ("target1_xy", 2),
        ("target2_xy", 2),
    )
)

#: Cube (PDDM's order): hand joints, the cube's slide offsets and hinge angles and their
#: velocities, the desired hinge angles.
CUBE_LAYOUT = StateLayout(
    (
        ("joints", HAND_JOINTS),
        ("cube_pos", 3),
        ("cube_euler", 3),
        ("cube_linvel", 3),
        ("cube_angvel", 3),
        ("desired_euler", 3),
    )
)
