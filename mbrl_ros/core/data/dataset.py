"""Episodic transition store: in-memory batches and a crash-safe on-disk episode dataset.

On disk every finished episode is one ``episode_<id>.npz`` file, written to a temporary file
in the same directory, fsynced, atomically renamed and the directory fsynced. The index is
whatever complete files exist, so there is no separate index to get out of sync: a crash
loses at most the episode being written, and a damaged file is moved to ``quarantine/``
instead of stopping the rest from loading.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import torch
from torch import Tensor

from mbrl_ros.core.data.episode import Episode
from mbrl_ros.core.data.storage import QUARANTINE_DIR, atomic_write, quarantine

logger = logging.getLogger(__name__)

ArrayLike = npt.ArrayLike


@dataclass(frozen=True)
class TransitionBatch:
    """N transitions as tensors on one device.

    ``state``/``next_state`` ``[N, S]`` and ``action`` ``[N, A]`` float32, ``reward`` ``[N]``
    float32, ``done`` ``[N]`` bool, ``episode`` and ``step`` ``[N]`` int64, ``time`` ``[N]``
    float64 seconds (NaN when unknown).
    """

    state: Tensor
    action: Tensor
    next_state: Tensor
    reward: Tensor
    done: Tensor
    episode: Tensor
    step: Tensor
    time: Tensor

    def __post_init__(self) -> None:
        for f in fields(self):
            if not isinstance(getattr(self, f.name), Tensor):
                raise ValueError(f"TransitionBatch.{f.name} must be a torch.Tensor")
        n = self.state.shape[0]
        if self.state.dim() != 2 or self.next_state.shape != self.state.shape:
            raise ValueError(
                f"state and next_state must both be [N, S], got {tuple(self.state.shape)} "
                f"and {tuple(self.next_state.shape)}"
            )
        if self.action.dim() != 2 or self.action.shape[0] != n:
            raise ValueError(f"action must be [{n}, A], got {tuple(self.action.shape)}")
        for name in ("reward", "done", "episode", "step", "time"):
            if getattr(self, name).shape != (n,):
                raise ValueError(
                    f"{name} must have shape ({n},), got {tuple(getattr(self, name).shape)}"
                )

    @classmethod
    def from_arrays(
        cls,
        state: ArrayLike,
        action: ArrayLike,
        next_state: ArrayLike,
        reward: ArrayLike | None = None,
        done: ArrayLike | None = None,
        episode: ArrayLike | None = None,
        step: ArrayLike | None = None,
        time: ArrayLike | None = None,
        device: str | torch.device = "cpu",
    ) -> TransitionBatch:
        """Build from arrays/tensors; omitted fields default to reward 0, done False,
        episode 0, step 0..N-1 and time NaN (unknown)."""
        s = torch.as_tensor(np.asarray(state), dtype=torch.float32, device=device)
        if s.dim() != 2:
            raise ValueError(f"state must be [N, S], got shape {tuple(s.shape)}")
        n = s.shape[0]

        def opt(x: ArrayLike | None, default: Tensor, dtype: torch.dtype) -> Tensor:
            if x is None:
                return default.to(device)
            return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)

        return cls(
            state=s,
            action=torch.as_tensor(np.asarray(action), dtype=torch.float32, device=device),
            next_state=torch.as_tensor(np.asarray(next_state), dtype=torch.float32, device=device),
            reward=opt(reward, torch.zeros(n), torch.float32),
            done=opt(done, torch.zeros(n, dtype=torch.bool), torch.bool),
            episode=opt(episode, torch.zeros(n, dtype=torch.int64), torch.int64),
            step=opt(step, torch.arange(n, dtype=torch.int64), torch.int64),
            time=opt(time, torch.full((n,), float("nan"), dtype=torch.float64), torch.float64),
        )

    def __len__(self) -> int:
        return int(self.state.shape[0])

    @property
    def state_dim(self) -> int:
        return int(self.state.shape[1])

    @property
    def action_dim(self) -> int:
        return int(self.action.shape[1])

    def to(self, device: str | torch.device) -> TransitionBatch:
        """Copy to ``device`` (returns self's tensors unchanged if already there)."""
        return TransitionBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def subset(self, index: Tensor | Sequence[int] | slice) -> TransitionBatch:
        """Rows selected by an index tensor, list, boolean mask or slice."""
        if not isinstance(index, slice):
            index = torch.as_tensor(index, device=self.state.device)
        return TransitionBatch(**{f.name: getattr(self, f.name)[index] for f in fields(self)})

    @staticmethod
    def concatenate(batches: Sequence[TransitionBatch]) -> TransitionBatch:
        """Concatenate batches with equal state/action dims, on the first batch's device."""
        if not batches:
            raise ValueError("cannot concatenate zero TransitionBatches")
        first = batches[0]
        for b in batches[1:]:
            if b.state_dim != first.state_dim or b.action_dim != first.action_dim:
                raise ValueError(
                    f"cannot concatenate batches with dims (S={b.state_dim}, A={b.action_dim}) "
                    f"and (S={first.state_dim}, A={first.action_dim})"
                )
        device = first.state.device
        return TransitionBatch(
            **{
                f.name: torch.cat([getattr(b, f.name).to(device) for b in batches])
                for f in fields(TransitionBatch)
            }
        )


# --------------------------------------------------------------------------- on disk
_EPISODE_RE = re.compile(r"^episode_(\d+)\.npz$")
_TEMP_PREFIX = ".tmp_episode_"
_ARRAY_KEYS = ("state", "action", "next_state", "reward", "done", "time")


def _episode_name(episode_id: int) -> str:
    return f"episode_{episode_id:06d}.npz"


def _stable_uniform(seed: int, episode_id: int) -> float:
    """Deterministic pseudo-random number in [0, 1) for (seed, episode id)."""
    digest = hashlib.sha256(f"{seed}:{episode_id}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2.0**64


def read_episodes(root: str | Path,
                  on_error: Callable[[Path, Exception], None] | None = None
                  ) -> dict[int, Episode]:
    """The complete episode files under ``root``, in id order, read without changing anything.

    Unlike opening an ``EpisodeDataset``, nothing is deleted or moved (no clean-up of
    temporary files, no quarantine), so this is safe on a dataset a trainer is writing. A
    file that cannot be read or fails the checks goes to ``on_error(path, exc)`` (default:
    logged) and is skipped; episodes whose dims differ from the first one are skipped the
    same way.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"no dataset directory {root}")
    episodes: dict[int, Episode] = {}
    dims: tuple[int, int] | None = None
    for episode_id, path in sorted((int(m.group(1)), p) for p in root.iterdir()
                                   if p.is_file() and (m := _EPISODE_RE.match(p.name))):
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in (*_ARRAY_KEYS, "meta") if k not in npz.files]
                if missing:
                    raise ValueError(f"missing arrays {missing}")
                arrays = {k: npz[k] for k in _ARRAY_KEYS}
                if "step" in npz.files:
                    arrays["step"] = npz["step"]
                meta = json.loads(str(npz["meta"]))
            episode = Episode.checked(meta=meta, dims=dims, **arrays)
        except Exception as exc:  # whatever fails to read is reported and skipped
            if on_error is None:
                logger.warning("skipping unreadable episode file %s: %s", path, exc)
            else:
                on_error(path, exc)
            continue
        dims = dims or episode.dims
        episodes[episode_id] = episode
    return episodes


class EpisodeDataset:
    """Durable episodic transition dataset rooted at a directory.

    Opening a directory loads every complete episode file there, removes temporary files
    left by a crash and moves unreadable or inconsistent files to ``root/quarantine/``.
    Thread safe: appends and reads may come from different threads. One process owns a
    root at a time (opening it deletes temporary files, assuming they are crash leftovers).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._episodes: dict[int, Episode] = {}
        self._dims: tuple[int, int] | None = None
        self._next_id = 0
        self.quarantined: list[Path] = []  # files moved to quarantine/ by this instance
        self._load()

    # ------------------------------------------------------------------ loading
    def _load(self) -> None:
        for path in self.root.glob(_TEMP_PREFIX + "*"):
            logger.warning("removing temporary file left by an interrupted write: %s", path)
            path.unlink(missing_ok=True)
        quarantined_dir = self.root / QUARANTINE_DIR
        known_ids = [
            int(m.group(1))
            for p in (quarantined_dir.iterdir() if quarantined_dir.is_dir() else ())
            if (m := _EPISODE_RE.match(p.name.split("~")[0]))
        ]
        candidates = sorted(
            (int(m.group(1)), p)
            for p in self.root.iterdir()
            if p.is_file() and (m := _EPISODE_RE.match(p.name))
        )
        for episode_id, path in candidates:
            known_ids.append(episode_id)
            try:
                episode = self._read_file(path)
            except Exception as exc:  # whatever fails to read (zip, npy, json, checks) is untrusted
                self._quarantine(path, exc)
                continue
            self._episodes[episode_id] = episode
            if self._dims is None:
                self._dims = (episode.state.shape[1], episode.action.shape[1])
        self._next_id = max(known_ids, default=-1) + 1
        logger.info(
            "loaded %d episodes (%d transitions) from %s",
            len(self._episodes),
            self.num_transitions,
            self.root,
        )

    def _read_file(self, path: Path) -> Episode:
        with np.load(path, allow_pickle=False) as npz:
            missing = [k for k in (*_ARRAY_KEYS, "meta") if k not in npz.files]
            if missing:
                raise ValueError(f"missing arrays {missing}")
            arrays = {k: npz[k] for k in _ARRAY_KEYS}
            if "step" in npz.files:  # files written before steps were stored have none
                arrays["step"] = npz["step"]
            meta = json.loads(str(npz["meta"]))
        return Episode.checked(meta=meta, dims=self._dims, **arrays)

    def _quarantine(self, path: Path, reason: BaseException) -> None:
        target = quarantine(path, self.root)
        logger.warning("quarantined unreadable episode file %s -> %s: %s", path, target, reason)
        self.quarantined.append(target)

    # ------------------------------------------------------------------ writing
    def append_episode(
        self,
        state: ArrayLike,
        action: ArrayLike,
        next_state: ArrayLike,
        reward: ArrayLike,
        time: ArrayLike,
        done: ArrayLike | None = None,
        meta: Mapping[str, Any] | None = None,
        step: ArrayLike | None = None,
    ) -> int:
        """Validate and durably store one finished episode; returns its id.

        ``state``/``next_state`` ``[T, S]``, ``action`` ``[T, A]``, ``reward`` and ``time``
        (seconds) ``[T]``, ``done`` ``[T]`` (default all False), ``meta`` a JSON-able dict
        (e.g. iteration, source policy), ``step`` ``[T]`` each transition's step in its
        episode, increasing (default ``0..T-1``; a gap marks transitions that were not
        recorded, so no multi-step window spans it). Raises ValueError without writing anything when
        lengths differ, values are non-finite or dims differ from the stored episodes.
        """
        with self._lock:
            episode = Episode.checked(state, action, next_state, reward, time, done, meta,
                                      step, dims=self._dims)
            episode_id = self._next_id
            self._write_file(episode_id, episode)
            self._episodes[episode_id] = episode
            if self._dims is None:
                self._dims = episode.dims
            self._next_id += 1
            return episode_id

    def append(self, episode: Episode) -> int:
        """:meth:`append_episode` of an :class:`Episode` (e.g. the recorder's)."""
        return self.append_episode(episode.state, episode.action, episode.next_state,
                                   episode.reward, episode.time, episode.done, episode.meta,
                                   episode.step)

    def _write_file(self, episode_id: int, episode: Episode) -> None:
        final = self.root / _episode_name(episode_id)
        temp = self.root / f"{_TEMP_PREFIX}{episode_id:06d}_{os.getpid()}"
        def write(f: BinaryIO) -> None:
            np.savez(f, state=episode.state, action=episode.action,
                     next_state=episode.next_state, reward=episode.reward, done=episode.done,
                     time=episode.time, step=episode.step,
                     meta=np.array(json.dumps(episode.meta)))

        atomic_write(final, write, temp)

    # ------------------------------------------------------------------ reading
    @property
    def num_episodes(self) -> int:
        with self._lock:
            return len(self._episodes)

    @property
    def num_transitions(self) -> int:
        with self._lock:
            return sum(len(e) for e in self._episodes.values())

    @property
    def episode_ids(self) -> list[int]:
        with self._lock:
            return sorted(self._episodes)

    @property
    def dims(self) -> tuple[int, int] | None:
        """``(state_dim, action_dim)`` of the stored data, None while empty."""
        return self._dims

    def episode_meta(self, episode_id: int) -> dict[str, Any]:
        with self._lock:
            return dict(self._get(episode_id).meta)

    def held_steps(self, stream_episode_id: int) -> set[int]:
        """Steps of the transitions stored for the stream's episode ``stream_episode_id``
        (meta ``episode_id``), over all stored stretches of it."""
        with self._lock:
            return {int(k) for e in self._episodes.values()
                    if e.meta.get("episode_id") == stream_episode_id for k in e.step}

    def episode(self, episode_id: int) -> Episode:
        """One stored episode (KeyError if there is none of that id)."""
        return self._get(episode_id)

    def _get(self, episode_id: int) -> Episode:
        try:
            return self._episodes[episode_id]
        except KeyError:
            raise KeyError(f"no episode {episode_id} in {self.root}") from None

    def batch(
        self, episode_ids: Sequence[int] | None = None, device: str | torch.device = "cpu"
    ) -> TransitionBatch:
        """Transitions of the given episodes (default all) in id order, as one batch."""
        with self._lock:
            ids = sorted(self._episodes) if episode_ids is None else list(episode_ids)
            episodes = [(i, self._get(i)) for i in ids]
        if not episodes:
            raise ValueError("no episodes selected")
        def joined(name: str) -> Tensor:
            return torch.from_numpy(np.concatenate([getattr(e, name) for _, e in episodes])
                                    ).to(device)

        return TransitionBatch(
            state=joined("state"), action=joined("action"), next_state=joined("next_state"),
            reward=joined("reward"), done=joined("done"),
            episode=torch.from_numpy(np.concatenate(
                [np.full(len(e), i, dtype=np.int64) for i, e in episodes])).to(device),
            step=joined("step"), time=joined("time"))

    def split_ids(self, val_fraction: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
        """Episode ids for training and validation.

        Each episode gets a fixed pseudo-random key from ``(seed, id)``; the
        ``round(val_fraction * n)`` episodes with the smallest keys validate (at least one
        when ``val_fraction > 0`` and there are two or more episodes, never all). The result
        depends only on the seed, the fraction and the ids, and episodes mostly keep their
        side as the dataset grows.
        """
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
        ids = self.episode_ids
        n = len(ids)
        n_val = round(val_fraction * n)
        if val_fraction > 0.0 and n >= 2:
            n_val = min(max(n_val, 1), n - 1)
        else:
            n_val = 0
        ranked = sorted(ids, key=lambda i: (_stable_uniform(seed, i), i))
        val = sorted(ranked[:n_val])
        train = sorted(ranked[n_val:])
        return train, val

    def split(
        self,
        val_fraction: float = 0.1,
        seed: int = 0,
        augment: Callable[[TransitionBatch], TransitionBatch] | None = None,
        device: str | torch.device = "cpu",
    ) -> tuple[TransitionBatch, TransitionBatch | None]:
        """Training and validation batches split by episode (PDDM: ``val_fraction=0.1``).

        ``augment`` receives the training batch and its return value replaces it (to double
        the data, return ``TransitionBatch.concatenate([batch, transformed])``); validation
        data are never augmented. Validation is None when no episode is held out.
        """
        train_ids, val_ids = self.split_ids(val_fraction, seed)
        if not train_ids:
            raise ValueError(f"dataset at {self.root} has no episodes to train on")
        train = self.batch(train_ids, device=device)
        if augment is not None:
            train = augment(train)
            if not isinstance(train, TransitionBatch):
                raise ValueError("augment must return a TransitionBatch")
        val = self.batch(val_ids, device=device) if val_ids else None
        return train, val

    def __len__(self) -> int:
        return self.num_transitions

    def __repr__(self) -> str:
        return (
            f"EpisodeDataset(root={str(self.root)!r}, episodes={self.num_episodes}, "
            f"transitions={self.num_transitions})"
        )
