"""The part of the trainer's ``get_status`` answer the experiment manager relies on, typed.

``GetStatus.values`` is text for people and tools (``ros2 service call``); the fields here
are written by the trainer and read by the experiment manager through this one class, so a
renamed or missing field fails loudly on both sides instead of reading as a default.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields


@dataclass(frozen=True)
class TrainerLoopStatus:
    """What the loop needs from the trainer between episodes and during a training."""

    job_id: int  # the newest training job's id (a restarted trainer counts from 0 again)
    open_episode_id: int  # the episode it is recording now, -1: none
    max_episode_id: int  # the newest episode in its dataset, -1: none
    unsaved_episodes: int  # recorded episodes not written to disk yet
    recorder_states: int  # task states it has received (its task_state stream flows)
    action_publishers: int  # planned_action publishers its subscription matched
    train_refusal: str = ""  # why it refused the newest refused ~/train goal ("": none)

    def values(self) -> dict[str, int | str]:
        """As ``GetStatus.values`` entries (key -> value)."""
        return asdict(self)

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> TrainerLoopStatus:
        """Parsed from ``GetStatus.values``; ValueError naming a missing or bad field (an
        integer field that is not one)."""
        parsed: dict[str, int | str] = {}
        for f in fields(cls):
            if f.name not in values:
                raise ValueError(f"the trainer's status has no {f.name!r} (another version?)")
            if f.type == "str":
                parsed[f.name] = values[f.name]
                continue
            try:
                parsed[f.name] = int(values[f.name])
            except ValueError:
                raise ValueError(f"the trainer's status {f.name}={values[f.name]!r} is not an "
                                 "integer") from None
        return cls(**parsed)
