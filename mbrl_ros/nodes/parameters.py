"""ROS parameters declared from a schema: description, range or choices, validation.

Every node lists its parameters as ``Param`` entries. ``ParameterSet`` declares them with
proper descriptors (so ``ros2 param describe`` and rqt show ranges), rejects out-of-range or
wrong-type values given at start-up (logged; the default is kept and the node starts) and
at run time (the set request fails with a reason; the node keeps its current value), and
keeps a plain-dict snapshot that the node's own code reads.
"""

from __future__ import annotations

import array
import math
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.exceptions import InvalidParameterTypeException, InvalidParameterValueException
from rclpy.node import Node
from rclpy.parameter import Parameter

Check = Callable[[Mapping[str, Any]], str | None]


@dataclass(frozen=True)
class Param:
    """One declared parameter. ``low``/``high`` bound numbers (inclusive); ``choices``
    restricts strings; ``read_only`` ones can only be set at start-up."""

    name: str
    default: Any
    description: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    read_only: bool = False

    def descriptor(self) -> ParameterDescriptor:
        desc = ParameterDescriptor(description=self.description, read_only=self.read_only)
        if self.low is not None and self.high is not None and not isinstance(self.default, bool):
            if isinstance(self.default, int):
                desc.integer_range = [IntegerRange(
                    from_value=int(self.low), to_value=int(self.high), step=0)]
            elif isinstance(self.default, float):
                desc.floating_point_range = [FloatingPointRange(
                    from_value=float(self.low), to_value=float(self.high), step=0.0)]
        if self.choices:
            desc.additional_constraints = "one of: " + ", ".join(self.choices)
        return desc

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is unacceptable, or None. (rcl checks types and ranges as well;
        this also covers NaN, choices and the start-up path.)"""
        value = plain(value)
        if isinstance(self.default, float) and isinstance(value, (int, float)):
            if isinstance(value, bool) or not math.isfinite(float(value)):
                return f"{self.name} must be a finite number, got {value!r}"
        elif type(value) is not type(self.default):
            return (f"{self.name} must be of type {type(self.default).__name__}, "
                    f"got {type(value).__name__} {value!r}")
        if self.low is not None and isinstance(value, (int, float)) and value < self.low:
            return f"{self.name}={value!r} is below its minimum {self.low}"
        if self.high is not None and isinstance(value, (int, float)) and value > self.high:
            return f"{self.name}={value!r} is above its maximum {self.high}"
        if self.choices and value not in self.choices:
            return f"{self.name}={value!r} is not one of {list(self.choices)}"
        if isinstance(value, list) and any(
            isinstance(v, float) and not math.isfinite(v) for v in value
        ):
            return f"{self.name} has non-finite entries"
        return None


def plain(value: Any) -> Any:
    """rclpy hands numeric arrays over as ``array.array``; the schema speaks lists."""
    return value.tolist() if isinstance(value, array.array) else value


class ParameterSet:
    """Declares ``params`` on ``node`` and tracks accepted values in ``values``."""

    def __init__(self, node: Node, params: Iterable[Param], checks: Iterable[Check] = (),
                 on_change: Callable[[dict[str, Any]], None] | None = None) -> None:
        self._node = node
        self._schema = {p.name: p for p in params}
        self._checks = list(checks)
        self._on_change = on_change
        self._lock = threading.Lock()
        self.values: dict[str, Any] = {}
        for p in self._schema.values():
            self.values[p.name] = self._declare(p)
        problem = self._cross_check(self.values)
        if problem:
            self._reject(f"start-up parameters inconsistent: {problem}; using defaults")
            for p in self._schema.values():
                node.set_parameters([Parameter(p.name, value=p.default)])
                self.values[p.name] = p.default
        node.add_on_set_parameters_callback(self._validate)

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return self.values[name]

    def snapshot(self) -> dict[str, Any]:
        """A consistent copy of all values (read once per plan/tick)."""
        with self._lock:
            return dict(self.values)

    def _declare(self, p: Param) -> Any:
        try:
            value = plain(self._node.declare_parameter(p.name, p.default, p.descriptor()).value)
        except (InvalidParameterValueException, InvalidParameterTypeException) as exc:
            self._reject(f"parameter {p.name} rejected at start-up ({exc}); using default "
                         f"{p.default!r}")
            return self._node.declare_parameter(
                p.name, p.default, p.descriptor(), ignore_override=True).value
        problem = p.problem(value)
        if problem:
            self._reject(f"parameter rejected at start-up: {problem}; using default "
                         f"{p.default!r}")
            self._node.set_parameters([Parameter(p.name, value=p.default)])
            return p.default
        return value

    def _cross_check(self, values: Mapping[str, Any]) -> str | None:
        for check in self._checks:
            problem = check(values)
            if problem:
                return problem
        return None

    def _validate(self, params: list[Parameter]) -> SetParametersResult:
        proposed = dict(self.values)
        for param in params:
            spec = self._schema.get(param.name)
            if spec is None:
                continue
            problem = spec.problem(param.value)
            if problem:
                return self._refuse(problem)
            proposed[param.name] = plain(param.value)
        problem = self._cross_check(proposed)
        if problem:
            return self._refuse(problem)
        with self._lock:
            self.values = proposed
        if self._on_change is not None:
            self._on_change(dict(proposed))
        return SetParametersResult(successful=True)

    def _refuse(self, reason: str) -> SetParametersResult:
        self._reject(f"parameter change rejected: {reason}")
        return SetParametersResult(successful=False, reason=reason)

    def _reject(self, message: str) -> None:
        self._node.get_logger().error(message)
