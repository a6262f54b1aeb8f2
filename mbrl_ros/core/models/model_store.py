"""Checkpoints of accepted models, so a restarted trainer republishes its newest one.

Each accepted model is one ``model_<version>.mbrl`` file in the safe serialization format
(``mbrl_ros.core.models.serialization``: tensors and JSON, never pickle), written atomically; its
metadata holds the version, task, state fields and validation metrics. Only the newest
``keep`` files are kept. A file that fails to load (truncated, corrupted, not a model at
all) is moved to ``quarantine/`` and listed in ``quarantined``, and the next older one is
used. Version numbers of quarantined files are never reused.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbrl_ros.core.data.storage import QUARANTINE_DIR, quarantine
from mbrl_ros.core.models.ensemble import EnsembleDynamics
from mbrl_ros.core.models.serialization import checksum, model_from_bytes, save_model

logger = logging.getLogger(__name__)

_MODEL_RE = re.compile(r"^model_(\d+)\.mbrl$")
# save_model's temporary files (".model_000001.mbrl.tmp<pid>"): left behind only by a crash.
_TEMP_RE = re.compile(r"^\.model_\d+\.mbrl\.tmp\d+$")


@dataclass(frozen=True)
class StoredModel:
    """A checkpoint as bytes (exactly what travels in a ModelUpdate) and its metadata."""

    version: int
    data: bytes
    checksum: str
    metadata: dict[str, Any]
    path: Path


@dataclass(frozen=True)
class QuarantinedFile:
    """An unusable checkpoint moved out of the way: where it was, where it is, why."""

    original: Path
    path: Path
    reason: str


def _version_of(name: str) -> int | None:
    """The version in a checkpoint's name (also ``model_<v>.mbrl~<n>`` in quarantine)."""
    match = _MODEL_RE.match(name.split("~")[0])
    return int(match.group(1)) if match else None


class ModelStore:
    """Directory of versioned model checkpoints (newest ``keep`` retained).

    One process owns a directory at a time: opening it removes temporary files, assuming
    they are left over from a crash mid-write.
    """

    def __init__(self, root: str | Path, keep: int = 5) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.keep = int(keep)
        self.quarantined: list[QuarantinedFile] = []
        for path in self.root.iterdir():
            if _TEMP_RE.match(path.name):
                logger.warning("removing a checkpoint left half-written by a crash: %s", path)
                path.unlink(missing_ok=True)

    def _versions(self) -> list[tuple[int, Path]]:
        found = ((m, p) for p in self.root.iterdir() if (m := _MODEL_RE.match(p.name)))
        return sorted((int(m.group(1)), p) for m, p in found)

    @property
    def newest_version(self) -> int:
        """Highest version on disk (0 when empty), loadable or quarantined: never reused."""
        quarantined_dir = self.root / QUARANTINE_DIR
        versions = [v for v, _ in self._versions()]
        if quarantined_dir.is_dir():
            versions += [v for p in quarantined_dir.iterdir()
                         if (v := _version_of(p.name)) is not None]
        return max(versions, default=0)

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
        """The newest checkpoint that loads and checks out, or None. Unusable newer files
        are quarantined on the way (see ``quarantined``)."""
        for version, path in reversed(self._versions()):
            try:
                data = path.read_bytes()
                _, metadata = model_from_bytes(data)
            except Exception as exc:  # whatever fails to load is untrusted
                self._quarantine(path, exc)
                continue
            return StoredModel(version, data, checksum(data), metadata, path)
        return None

    def _quarantine(self, path: Path, reason: BaseException) -> None:
        try:
            target = quarantine(path, self.root)
        except OSError as exc:
            logger.warning("unusable model checkpoint %s (%s) could not be quarantined: %s",
                           path, reason, exc)
            target = path
        else:
            logger.warning("quarantined unusable model checkpoint %s -> %s: %s", path, target,
                           reason)
        self.quarantined.append(QuarantinedFile(path, target, str(reason)))
