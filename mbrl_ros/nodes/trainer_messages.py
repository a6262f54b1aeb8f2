"""What the ``dynamics_trainer`` sends about its models: the ``ModelUpdate`` carrying a
checkpoint, the ``TrainingMetrics`` of a job and the job's one-line summary for the log."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from builtin_interfaces.msg import Time

from mbrl_ros.core.models.model_store import StoredModel
from mbrl_ros.msg import ModelUpdate, TrainingMetrics

NAN = float("nan")


def model_update_message(stored: StoredModel, task_name: str, state_fields: list[str],
                         stamp: Time) -> ModelUpdate:
    """The ``ModelUpdate`` of checkpoint ``stored``: its bytes, architecture and metrics
    (as an accepted model), stamped ``stamp``."""
    msg = ModelUpdate(format_version=ModelUpdate.FORMAT_VERSION, version=stored.version,
                      task=task_name, state_fields=list(state_fields),
                      checksum=stored.checksum)
    msg.header.stamp = stamp
    msg.architecture = json.dumps(stored.metadata.get("architecture", {}), sort_keys=True)
    msg.weights = stored.data
    msg.metrics = training_metrics_message(
        {**stored.metadata.get("metrics", {}), "model_version": stored.version,
         "accepted": True})
    return msg


def training_metrics_message(m: Mapping[str, Any]) -> TrainingMetrics:
    """The ``TrainingMetrics`` of a job's metrics ``m`` (a missing or None number: NaN)."""
    def number(name: str) -> float:
        value = m.get(name, NAN)
        return float(value) if value is not None else NAN

    return TrainingMetrics(
        model_version=int(m.get("model_version", 0)),
        num_transitions=int(m.get("num_transitions", 0)),
        num_episodes=int(m.get("num_episodes", 0)), epochs=int(m.get("epochs", 0)),
        duration_s=number("duration_s"), train_loss=number("train_loss"),
        val_loss=number("val_loss"), val_one_step_mse=number("val_one_step_mse"),
        val_multi_step_mse=[float(v) for v in m.get("val_multi_step_mse", [])],
        val_disagreement=number("val_disagreement"), accepted=bool(m.get("accepted")))


def job_summary(job_id: int, version: int, message: str, m: Mapping[str, Any]) -> str:
    """The log line of a finished job: verdict (``version``: the model version now), the
    outcome's ``message`` and the job's metrics ``m``."""
    curve = ", ".join(f"{v:.3g}" for v in m.get("val_multi_step_mse", []))
    verdict = f"ACCEPTED as version {version}" if m["accepted"] else "REJECTED"
    return (f"job {job_id}: {verdict} ({message}); "
            f"{m.get('num_transitions', 0)} transitions, "
            f"{m.get('epochs', 0)} epochs in {m.get('duration_s', 0.0):.1f} s; "
            f"train {m.get('train_loss', NAN):.4g} val {m.get('val_loss', NAN):.4g} "
            f"(mean predictor {m.get('val_mean_predictor_mse', NAN):.4g}) "
            f"one-step {m.get('val_one_step_mse', NAN):.4g} multi-step [{curve}] "
            f"disagreement {m.get('val_disagreement', NAN):.4g}")
