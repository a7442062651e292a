"""Temporal stabilisation of (s, t) and the estimator base class every online mode shares.

The filter works on log(s) (scale errors are multiplicative) and on b = t / s, the shift in the
network's own disparity units (independent of the metric scale). It is a scalar Kalman filter on
the log depth level: each measurement counts by its own variance there (the fit's) against the
filter's, which grows with the network's drift, learnt from the innovations that the measurement
noise does not explain. A relative network's affine map moves from frame to frame; a precise fit
of a drifting network is followed at once, noisy fits of a steady one are averaged. The gain never
falls below that of an exponential filter with time constant `time_constant` (0: no smoothing,
every measurement replaces the estimate), so nothing is held longer than that. A Huber clamp
limits the innovation, and a jump gate rejects a measurement more than `max_jump` away from the
current estimate (0: no gate); `relock_count` consecutive rejected measurements that agree with each other
replace the estimate (the scale really changed, e.g. a SLAM system re-initialised its map).

Innovations and the gate are measured where the user sees them: as the log change of inverse
depth at `anchor`, a typical network output (the image's median for a full fit: where the user
judges the scale), not as the change of s alone. A relative network's own affine map moves from frame to
frame, and s and t trade off against each other when the points span a narrow depth range: a
large step in s with a compensating t is no jump in the depth the node publishes. A measurement
with `shift_held` (s re-fitted with the filter's b, when s and t cannot be told apart) updates s
only, so the filter keeps following the network instead of holding a stale pair.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

import numpy as np

from .base import HOLDING, METRIC, RELATIVE, ScaleEstimator, ScaleInput, ScaleState

NOMINAL_FRAME_PERIOD = 1.0 / 30.0  # used when stamps do not advance (files, tests)
MIN_LOG_STD = 2e-3  # no fit is trusted more than this: one over-confident fit cannot freeze the filter
HUBER_AFTER = 5  # measurements before the Huber clamp: its spread estimate needs a few
DRIFT_RATE = 0.2  # weight of the newest innovation in the learnt drift of the network's affine map


class ScaleFilter:
    def __init__(self, time_constant: float, max_jump: float, relock_count: int = 5) -> None:
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
        self.variance = 0.0  # exponentially weighted mean square of the (clamped) innovations
        self.level_variance = 0.0  # P: variance of the filtered log depth level
        self.drift = 0.0  # q: variance per second the network's affine map adds to the level
        self.measurement_std = float("inf")
        self.stamp = float("nan")  # latest accepted measurement (s, or s and t)
        self.pair_stamp = float("nan")  # latest accepted measurement of both s and t
        self._pending: list[tuple[float, float, float, float, float]] = []

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
        """Std of the filtered log depth level (log s at the measured disparities)."""
        return math.sqrt(self.level_variance) if self.ready else float("inf")

    def age(self, stamp: float) -> float:
        """Seconds since the scale was last measured."""
        return max(0.0, stamp - self.stamp) if self.ready else float("inf")

    def shift_age(self, stamp: float) -> float:
        """Seconds since s and t were last measured together (the shift is that old)."""
        return max(0.0, stamp - self.pair_stamp) if self.ready else float("inf")

    def update(
        self,
        stamp: float,
        scale: float,
        shift: float,
        log_std: float,
        anchor: float = math.nan,
        shift_held: bool = False,
    ) -> str | None:
        """Feed one measurement; returns None when accepted, else the rejection reason.

        `anchor`: a typical network output, e.g. the image median (innovations are measured
        in inverse depth there); `shift_held`: the measurement re-fitted s with this filter's b.
        """
        if not (math.isfinite(scale) and scale > 0 and math.isfinite(shift)):
            return "invalid_fit"
        log_s, ratio = math.log(scale), shift / scale
        if shift_held:
            ratio = self.shift_ratio
        if not self.ready:
            if shift_held:
                return "no_shift_yet"
            self._reset_to(stamp, log_s, ratio, log_std)
            return None
        innovation = self._innovation(log_s, ratio, anchor)
        if self.max_jump > 0 and abs(innovation) > self.max_jump:
            return self._gate(stamp, log_s, ratio, log_std, anchor)
        self._pending.clear()
        dt = stamp - self.stamp if stamp > self.stamp else NOMINAL_FRAME_PERIOD
        gain, _ = self._gain(dt, innovation, log_std)
        self._move(gain, log_s, ratio, innovation, anchor)
        self.measurement_std = log_std if math.isfinite(log_std) else self.measurement_std
        self.stamp = max(stamp, self.stamp)
        if not shift_held:
            self.pair_stamp = self.stamp
        self.count += 1
        return None

    def _gain(self, dt: float, innovation: float, log_std: float) -> tuple[float, float]:
        """Kalman gain (at least the exponential filter's) of one measurement; the clamped innovation."""
        noise = _variance(log_std)
        prior = self.level_variance + max(0.0, self.drift * dt - 0.5 * (noise + self.level_variance))
        gain = prior / (prior + noise)
        if self.time_constant > 0:
            gain = max(gain, 1.0 - math.exp(-dt / self.time_constant))
        else:
            gain = 1.0
        if (
            self.count >= HUBER_AFTER and innovation != 0.0
        ):  # Huber clamp: an odd measurement moves it only so far
            limit = max(3.0 * math.sqrt(self.variance), 0.02)
            gain *= min(1.0, limit / abs(innovation))
            innovation = min(max(innovation, -limit), limit)
        # Drift: the part of the innovations that neither the measurement nor the estimate explain,
        # averaged over ~1/DRIFT_RATE frames and counted only beyond that average's own noise
        # (about half the expected innovation variance), so noise alone does not open the gain.
        expected = noise + self.level_variance
        self.drift += DRIFT_RATE * ((innovation**2 - expected) / dt - self.drift)
        self.variance += DRIFT_RATE * (innovation**2 - self.variance)
        self.level_variance = (1.0 - gain) ** 2 * prior + gain**2 * noise
        return gain, innovation

    def _move(self, gain: float, log_s: float, ratio: float, innovation: float, anchor: float) -> None:
        """Move b by `gain` towards the measurement and the depth level at `anchor` by gain x innovation."""
        ratio = self.shift_ratio + gain * (ratio - self.shift_ratio)
        old, new = anchor + self.shift_ratio, anchor + ratio
        if math.isfinite(anchor) and old > 0 and new > 0:
            self.log_scale += gain * innovation + math.log(old / new)
        else:
            self.log_scale += gain * (log_s - self.log_scale)
        self.shift_ratio = ratio

    def _innovation(self, log_s: float, ratio: float, anchor: float) -> float:
        """Log change of inverse depth s (d + b) at d = anchor (of s alone without an anchor)."""
        new, old = anchor + ratio, anchor + self.shift_ratio
        if math.isfinite(anchor) and new > 0 and old > 0:
            return log_s - self.log_scale + math.log(new / old)
        return log_s - self.log_scale

    def _gate(self, stamp: float, log_s: float, ratio: float, log_std: float, anchor: float) -> str | None:
        level = log_s + math.log(anchor + ratio) if math.isfinite(anchor) and anchor + ratio > 0 else log_s
        self._pending.append((stamp, log_s, ratio, log_std, level))
        levels = [p[4] for p in self._pending]
        if max(levels) - min(levels) > self.max_jump:
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
        self.pair_stamp = stamp
        self.measurement_std = log_std if math.isfinite(log_std) else 0.1
        self.level_variance = _variance(log_std)


def _variance(log_std: float) -> float:
    """A fit's variance of log(s), bounded below so that one over-confident fit cannot freeze the filter."""
    std = log_std if math.isfinite(log_std) else 0.1
    return max(std, MIN_LOG_STD) ** 2


@dataclass
class Measurement:
    """One frame's raw (s, t) (or depth factor with t = 0 for metric models)."""

    scale: float
    shift: float
    log_std: float
    inlier_ratio: float
    points: int
    note: str = ""
    anchor: float = math.nan  # network output where the fit is judged (image median)
    shift_held: bool = False  # s re-fitted with the filter's shift ratio (s and t not separable)
    level_std: float = math.nan  # std of the depth level at `anchor` (default: log_std)


@dataclass
class Rejection:
    reason: str  # counter key
    message: str  # for people: why, and what the node does about it


class FilteredEstimator(ScaleEstimator):
    """Per-frame measurement (`measure`, in subclasses) -> ScaleFilter -> ScaleState.

    Feeding methods of subclasses run on ROS callback threads: they take `self.lock`; `update`
    takes it only to snapshot what they filled.
    """

    def __init__(self, time_constant: float, max_jump: float) -> None:
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
            reason = self.filter.update(
                item.stamp,
                outcome.scale,
                outcome.shift,
                outcome.level_std if math.isfinite(outcome.level_std) else outcome.log_std,
                outcome.anchor,
                outcome.shift_held,
            )
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
            if f.shift_age(stamp) > 0:
                message = f"{message}; shift {f.shift_age(stamp):.2f} s old"
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
