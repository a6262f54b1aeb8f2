"""Run results on disk: the per-episode metrics table and the learning-curve picture."""

from mbrl_ros.results.learning_curve import plot_learning_curve
from mbrl_ros.results.metrics_log import METRIC_COLUMNS, MetricsLog, read_metrics

__all__ = ["METRIC_COLUMNS", "MetricsLog", "plot_learning_curve", "read_metrics"]
