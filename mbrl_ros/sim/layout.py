"""Named slices of a flat task-observation vector (PDDM's layouts), shared with the core."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ObsField:
    """One named block of a flat observation vector."""

    name: str
    start: int
    size: int

    @property
    def stop(self) -> int:
        return self.start + self.size

    @property
    def slice(self) -> slice:
        return slice(self.start, self.stop)


class ObsLayout:
    """Ordered, non-overlapping named fields covering a flat vector of ``size`` entries.

    Works on single vectors ``(D,)`` and batches ``(..., D)`` alike, so the torch side can
    take the same slices (``layout["ball1_pos"]`` is a plain ``slice``).
    """

    def __init__(self, fields: Sequence[tuple[str, int]]) -> None:
        if not fields:
            raise ValueError("an observation layout needs at least one field")
        out: list[ObsField] = []
        start = 0
        for name, size in fields:
            if size <= 0:
                raise ValueError(f"field {name!r} must have a positive size, got {size}")
            out.append(ObsField(name, start, int(size)))
            start += int(size)
        names = [f.name for f in out]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate field names in {names}")
        self._fields = tuple(out)
        self._by_name = {f.name: f for f in out}
        self.size = start

    @property
    def fields(self) -> tuple[ObsField, ...]:
        return self._fields

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self._fields)

    def __getitem__(self, name: str) -> slice:
        return self.field(name).slice

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __len__(self) -> int:
        return self.size

    def field(self, name: str) -> ObsField:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"no field {name!r}; fields are {list(self.names)}") from None

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """Views of each field of ``vector`` (last axis must be ``size`` long)."""
        vector = np.asarray(vector)
        if vector.shape[-1:] != (self.size,):
            raise ValueError(f"expected last dimension {self.size}, got shape {vector.shape}")
        return {f.name: vector[..., f.slice] for f in self._fields}

    def compose(self, parts: Mapping[str, np.ndarray]) -> np.ndarray:
        """Concatenate per-field arrays (any leading batch shape) into flat vectors."""
        missing = [n for n in self.names if n not in parts]
        extra = [n for n in parts if n not in self._by_name]
        if missing or extra:
            raise ValueError(f"compose needs exactly {list(self.names)}; missing {missing}, "
                             f"unknown {extra}")
        blocks = []
        for f in self._fields:
            block = np.asarray(parts[f.name], dtype=np.float64)
            if block.shape[-1:] != (f.size,):
                raise ValueError(f"field {f.name!r} needs {f.size} entries, got {block.shape}")
            blocks.append(block)
        return np.concatenate(blocks, axis=-1)

    def to_dict(self) -> dict[str, list[int]]:
        """``{name: [start, stop]}`` for messages, YAML and JSON."""
        return {f.name: [f.start, f.stop] for f in self._fields}

    def __repr__(self) -> str:
        inner = ", ".join(f"{f.name}[{f.start}:{f.stop}]" for f in self._fields)
        return f"ObsLayout({inner})"
