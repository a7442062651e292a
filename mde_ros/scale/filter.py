"""Temporal stabilisation of (s, t) and the estimator base class every online mode shares.

The filter works on log(s) (scale errors are multiplicative) and on b = t / s, the shift in the
network's own disparity units (independent of the metric scale). It is an exponential filter
with time constant `time_constant` (0: no smoothing) that weights each measurement by its inverse variance (an
exponentially forgetting weighted mean: precise fits count more), a Huber clamp on the
innovation, and a jump gate: a measurement more than `max_jump` away from the current log-scale
is rejected (0: no gate); `relock_count` consecutive rejected measurements that agree with each other replace
the estimate (the scale really changed, e.g. a SLAM system re-initialised its map).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from .base import HOLDING, METRIC, RELATIVE, ScaleEstimator, ScaleInput, ScaleState

NOMINAL_FRAME_PERIOD = 1.0 / 30.0  # used when stamps do not advance (files, tests)


class ScaleFilter:
    def __init__(self, time_constant: float = 2.0, max_jump: float = 0.3, relock_count: int = 5) -> None:
        if time_constant < 0 or max_jump < 0:
            raise ValueError("filter.time_constant and filter.max_jump must not be negative")
        self.time_constant = time_constant
        self.max_jump = max_jump
        self.relock_count = relock_count
        self.reset()

    def reset(self) -> None:
        self.log_scale = 0.0
        self.shift_ratio = 0.0  # b = t / s
        self.count = 0
        self.variance = 0.0  # exponentially weighted variance of the innovations of log(s)
        self.alpha = 1.0
        self.weight_sum = 0.0  # forgetting sum of 1 / log_std² of the accepted measurements
        self.measurement_std = float("inf")
        self.stamp = float("nan")
        self._pending: list[tuple[float, float, float, float]] = []

    @property
    def ready(self) -> bool:
        return self.count > 0

    @property
    def scale(self) -> float:
        return math.exp(self.log_scale)

    @property
    def shift(self) -> float:
        return self.shift_ratio * self.scale

    @property
    def uncertainty(self) -> float:
        """Std of the filtered log(s): measurement noise through the exponential filter."""
        if not self.ready:
            return float("inf")
        spread = self.variance * self.alpha / (2.0 - self.alpha)
        return math.sqrt(max(spread, 1.0 / self.weight_sum if self.weight_sum > 0 else 0.0))

    def age(self, stamp: float) -> float:
        return max(0.0, stamp - self.stamp) if self.ready else float("inf")

    def update(self, stamp: float, scale: float, shift: float, log_std: float) -> str | None:
        """Feed one measurement; returns None when accepted, else the rejection reason."""
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
            return "invalid_fit"
        log_s, ratio = math.log(scale), shift / scale
        if not self.ready:
            self._reset_to(stamp, log_s, ratio, log_std)
            return None
        innovation = log_s - self.log_scale
        if self.max_jump > 0 and abs(innovation) > self.max_jump:
            return self._gate(stamp, log_s, ratio, log_std)
        self._pending.clear()
        dt = stamp - self.stamp if stamp > self.stamp else NOMINAL_FRAME_PERIOD
        weight = _weight(log_std)
        decay = math.exp(-dt / self.time_constant) if self.time_constant > 0 else 0.0
        self.weight_sum = self.weight_sum * decay + weight
        self.alpha = weight / self.weight_sum
        if self.count >= 5:  # Huber clamp: one odd measurement moves the estimate only so far
            limit = max(3.0 * math.sqrt(self.variance), 0.02)
            innovation = min(max(innovation, -limit), limit)
        self.log_scale += self.alpha * innovation
        self.shift_ratio += self.alpha * (ratio - self.shift_ratio)
        self.variance = (1.0 - self.alpha) * (self.variance + self.alpha * innovation**2)
        self.measurement_std = log_std if math.isfinite(log_std) else self.measurement_std
        self.stamp = max(stamp, self.stamp)
        self.count += 1
        return None

    def _gate(self, stamp: float, log_s: float, ratio: float, log_std: float) -> str | None:
        self._pending.append((stamp, log_s, ratio, log_std))
        logs = [p[1] for p in self._pending]
        if max(logs) - min(logs) > self.max_jump:
            self._pending = self._pending[-1:]  # they disagree: start collecting again
        if len(self._pending) < self.relock_count:
            return "jump_rejected"
        pending = np.array(self._pending)
        self._reset_to(stamp, float(np.median(pending[:, 1])), float(np.median(pending[:, 2])), log_std)
        self.count = len(pending)
        return None

    def _reset_to(self, stamp: float, log_s: float, ratio: float, log_std: float) -> None:
        self.reset()
        self.log_scale, self.shift_ratio, self.stamp, self.count = log_s, ratio, stamp, 1
        self.measurement_std = log_std if math.isfinite(log_std) else 0.1
        self.weight_sum = _weight(log_std)


def _weight(log_std: float) -> float:
    """Inverse variance, bounded so one over-confident fit cannot freeze the filter."""
    std = log_std if math.isfinite(log_std) else 0.1
    return 1.0 / max(std, 2e-3) ** 2


@dataclass
class Measurement:
    """One frame's raw (s, t) (or depth factor with t = 0 for metric models)."""

    scale: float
    shift: float
    log_std: float
    inlier_ratio: float
    points: int
    note: str = ""


@dataclass
class Rejection:
    reason: str  # counter key
    message: str  # for people: why, and what the node does about it


class FilteredEstimator(ScaleEstimator):
    """Per-frame measurement (`measure`, in subclasses) -> ScaleFilter -> ScaleState.

    Feeding methods of subclasses run on ROS callback threads: they take `self.lock`; `update`
    takes it only to snapshot what they filled.
    """

    def __init__(self, time_constant: float = 2.0, max_jump: float = 0.3) -> None:
        super().__init__()
        self.filter = ScaleFilter(time_constant, max_jump)
        self.lock = threading.Lock()
        self.counters: dict[str, int] = {}
        self.rng = np.random.default_rng(0)  # fixed seed: the same input gives the same estimate

    def measure(self, item: ScaleInput) -> Measurement | Rejection | str | None:
        """One frame's measurement, a rejection, a note (no estimate, nothing wrong) or None."""
        raise NotImplementedError

    def count(self, reason: str, amount: int = 1) -> None:
        with self.lock:
            self.counters[reason] = self.counters.get(reason, 0) + amount

    def update(self, item: ScaleInput) -> ScaleState:
        outcome = self.measure(item)
        fresh = False
        inlier_ratio, points = float("nan"), 0
        if isinstance(outcome, Measurement):
            inlier_ratio, points = outcome.inlier_ratio, outcome.points
            reason = self.filter.update(item.stamp, outcome.scale, outcome.shift, outcome.log_std)
            if reason is None:
                fresh = True
                message = f"{self.mode}: {outcome.note or 'estimate updated'}"
            else:
                self.count(reason)
                message = _rejected_message(reason, outcome, self.filter)
        elif isinstance(outcome, Rejection):
            self.count(outcome.reason)
            message = f"{self.mode}: {outcome.message}"
        else:
            message = f"{self.mode}: {outcome or 'waiting for data'}"
        self.state = self._state(item.stamp, fresh, message, inlier_ratio, points)
        return self.state

    def _state(self, stamp: float, fresh: bool, message: str, inlier_ratio: float, points: int) -> ScaleState:
        with self.lock:
            counters = dict(self.counters)
        f = self.filter
        if not f.ready:
            status, message = RELATIVE, f"{message}; no scale estimate yet: depth is relative (unit-less)"
        elif fresh:
            status = METRIC
        else:
            status, message = HOLDING, f"{message}: holding last good scale"
        return ScaleState(
            status=status,
            scale=f.scale if f.ready else 1.0,
            shift=f.shift if f.ready else 0.0,
            uncertainty=f.uncertainty,
            age_s=f.age(stamp),
            message=message,
            counters=counters,
            inlier_ratio=inlier_ratio,
            points=points,
            mode=self.mode,
        )

    def reset(self) -> None:
        """Forget the estimate (e.g. after a backwards time jump); the counters stay cumulative."""
        self.filter.reset()
        super().reset()


def _rejected_message(reason: str, outcome: Measurement, f: ScaleFilter) -> str:
    if reason == "jump_rejected":
        return f"scale {outcome.scale:.4g} jumps more than filter.max_jump from {f.scale:.4g} (rejected)"
    return f"fit gave an unusable scale {outcome.scale:.4g} ({reason})"
