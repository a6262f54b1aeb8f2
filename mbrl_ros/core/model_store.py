"""Checkpoints of accepted models, so a restarted trainer republishes its newest one.

Each accepted model is one ``model_<version>.mbrl`` file in the safe serialization format
(``mbrl_ros.core.serialization``), written atomically; its metadata holds the version,
task, state fields and validation metrics. Only the newest ``keep`` files are kept. A file
that fails to load is skipped (logged) and the next older one is used.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbrl_ros.core.ensemble import EnsembleDynamics
from mbrl_ros.core.serialization import ModelFormatError, checksum, model_from_bytes, save_model

logger = logging.getLogger(__name__)

_MODEL_RE = re.compile(r"^model_(\d+)\.mbrl$")


@dataclass(frozen=True)
class StoredModel:
    """A checkpoint as bytes (exactly what travels in a ModelUpdate) and its metadata."""

    version: int
    data: bytes
    checksum: str
    metadata: dict[str, Any]
    path: Path


class ModelStore:
    """Directory of versioned model checkpoints (newest ``keep`` retained)."""

    def __init__(self, root: str | Path, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = int(keep)

    def _versions(self) -> list[tuple[int, Path]]:
        found = ((m, p) for p in self.root.iterdir() if (m := _MODEL_RE.match(p.name)))
        return sorted((int(m.group(1)), p) for m, p in found)

    @property
    def newest_version(self) -> int:
        """Highest version on disk (0 when empty), loadable or not: never reused."""
        versions = self._versions()
        return versions[-1][0] if versions else 0

    def save(self, version: int, model: EnsembleDynamics, metadata: Mapping[str, Any]
             ) -> StoredModel:
        """Write ``model`` as ``version`` (metadata gets ``version``) and prune old files."""
        if version < 1:
            raise ValueError(f"model version must be >= 1, got {version}")
        meta = {**metadata, "version": int(version)}
        path = self.root / f"model_{version:06d}.mbrl"
        digest = save_model(path, model, meta)
        data = path.read_bytes()
        for _, old in self._versions()[: -self.keep]:
            old.unlink(missing_ok=True)
        return StoredModel(int(version), data, digest, meta, path)

    def latest(self) -> StoredModel | None:
        """The newest checkpoint that loads and checks out, or None."""
        for version, path in reversed(self._versions()):
            try:
                data = path.read_bytes()
                _, metadata = model_from_bytes(data)
            except (OSError, ModelFormatError) as exc:
                logger.warning("skipping unusable model checkpoint %s: %s", path, exc)
                continue
            return StoredModel(version, data, checksum(data), metadata, path)
        return None
