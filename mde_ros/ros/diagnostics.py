"""Node health for /diagnostics (diagnostic_msgs/DiagnosticArray, ~1 Hz).

`NodeStats` is ROS-free and thread-safe: the image callback and the worker thread record into it,
the diagnostics timer reads a snapshot. diagnostic_updater is not on PyPI; this is the small part
of it the node needs.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..scale.base import ScaleState

OK, WARN, ERROR = 0, 1, 2  # DiagnosticStatus levels (bytes in the message)


class RateMeter:
    """Events per second over a sliding window."""

    def __init__(self, window_s: float = 5.0) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()

    def tick(self, now: float) -> None:
        self._times.append(now)
        self._trim(now)

    def rate(self, now: float) -> float:
        self._trim(now)
        if len(self._times) < 2:
            return 0.0
        span = max(now - self._times[0], 1e-6)
        return (len(self._times) - 1) / span if span < self.window_s else len(self._times) / self.window_s

    def _trim(self, now: float) -> None:
        while self._times and now - self._times[0] > self.window_s:
            self._times.popleft()


@dataclass
class Snapshot:
    input_hz: float
    output_hz: float
    latency_p50_ms: float
    latency_p99_ms: float
    received: int
    processed: int
    dropped: int
    skipped_no_subscribers: int
    bad_input: dict[str, int]
    timings_ms: dict[str, float] = field(default_factory=dict)
    internal_errors: dict[str, int] = field(default_factory=dict)  # internal_error_key -> count


def internal_error_key(exc: BaseException) -> str:
    """Diagnostics key of a programming error, one per exception type."""
    return f"internal_error:{type(exc).__name__}"


class NodeStats:
    """Counters, rates and a bounded latency window (memory stays flat)."""

    def __init__(self, latency_window: int = 300) -> None:
        self._lock = threading.Lock()
        self._input = RateMeter()
        self._output = RateMeter()
        self._latency_ms: deque[float] = deque(maxlen=latency_window)
        self.received = 0
        self.processed = 0
        self.dropped = 0
        self.skipped_no_subscribers = 0
        self.bad_input: Counter[str] = Counter()
        self.internal_errors: Counter[str] = Counter()
        self._timings: dict[str, float] = {}

    def on_received(self, replaced_pending: bool) -> None:
        with self._lock:
            self.received += 1
            self.dropped += int(replaced_pending)
            self._input.tick(time.monotonic())

    def on_published(self, latency_ms: float, timings_ms: dict[str, float]) -> None:
        with self._lock:
            self.processed += 1
            self._latency_ms.append(latency_ms)
            self._output.tick(time.monotonic())
            self._timings = dict(timings_ms)

    def on_bad_input(self, reason: str) -> None:
        with self._lock:
            self.bad_input[reason] += 1

    def on_internal_error(self, key: str) -> int:
        """Count one; returns how many of this key so far (1 = the first: log it in full)."""
        with self._lock:
            self.internal_errors[key] += 1
            return self.internal_errors[key]

    def on_skipped(self) -> None:
        with self._lock:
            self.skipped_no_subscribers += 1

    def snapshot(self) -> Snapshot:
        now = time.monotonic()
        with self._lock:
            lat = np.asarray(self._latency_ms, np.float64)
            p50, p99 = np.percentile(lat, [50, 99]) if lat.size else (float("nan"), float("nan"))
            return Snapshot(
                self._input.rate(now),
                self._output.rate(now),
                float(p50),
                float(p99),
                self.received,
                self.processed,
                self.dropped,
                self.skipped_no_subscribers,
                dict(self.bad_input),
                dict(self._timings),
                dict(self.internal_errors),
            )


def _kv(key: str, value: Any) -> Any:
    from diagnostic_msgs.msg import KeyValue

    if isinstance(value, float):
        value = f"{value:.6g}" if abs(value) < 1e4 or not np.isfinite(value) else f"{value:.1f}"
    return KeyValue(key=key, value=str(value))


def pipeline_status(name: str, hardware_id: str, snap: Snapshot, info: dict[str, str], waiting: str) -> Any:
    """Throughput, latency, drops, bad input; WARN while waiting or on bad input, ERROR on a bug."""
    from diagnostic_msgs.msg import DiagnosticStatus

    bad_total = sum(snap.bad_input.values())
    level, message = OK, "running"
    if waiting:
        level, message = WARN, waiting
    elif bad_total:
        level, message = WARN, f"{bad_total} bad input(s): " + ", ".join(sorted(snap.bad_input))
    if snap.internal_errors:
        level, message = ERROR, "internal error(s), see the log: " + ", ".join(sorted(snap.internal_errors))
    values = [
        _kv("input rate (Hz)", snap.input_hz),
        _kv("output rate (Hz)", snap.output_hz),
        _kv("latency p50 (ms)", snap.latency_p50_ms),
        _kv("latency p99 (ms)", snap.latency_p99_ms),
        _kv("frames received", snap.received),
        _kv("frames processed", snap.processed),
        _kv("frames dropped", snap.dropped),
        _kv("frames skipped (no subscribers)", snap.skipped_no_subscribers),
        _kv("bad input total", bad_total),
    ]
    values += [_kv(f"bad input: {reason}", count) for reason, count in sorted(snap.bad_input.items())]
    values += [_kv(key, count) for key, count in sorted(snap.internal_errors.items())]
    values += [_kv(key, value) for key, value in info.items()]
    values += [_kv(f"time {stage} (ms)", ms) for stage, ms in snap.timings_ms.items()]
    return DiagnosticStatus(
        level=bytes([level]),
        name=f"{name}: pipeline",
        message=message,
        hardware_id=hardware_id,
        values=values,
    )


def scale_status(name: str, hardware_id: str, status: str, mode: str, state: ScaleState) -> Any:
    """Scale estimate; WARN whenever published depth is not metric ("scale: relative")."""
    from diagnostic_msgs.msg import DiagnosticStatus

    metric = status != "relative"
    level = OK if metric else WARN
    message = f"scale: {status}" + ("" if metric else " (depth is unit-less, median 1; not metres)")
    values = [
        _kv("status", status),
        _kv("mode", mode),
        _kv("scale", float(state.scale)),
        _kv("shift", float(state.shift)),
        _kv("uncertainty", float(state.uncertainty)),
        _kv("age (s)", float(state.age_s)),
        _kv("inlier ratio", float(state.inlier_ratio)),  # of the latest fit (NaN: no fit this frame)
        _kv("points", int(state.points)),  # points / pixels used by the latest fit
        _kv("detail", state.message),
    ]
    values += [_kv(f"counter: {key}", count) for key, count in sorted(state.counters.items())]
    return DiagnosticStatus(
        level=bytes([level]), name=f"{name}: scale", message=message, hardware_id=hardware_id, values=values
    )


def diagnostic_array(stamp: Any, statuses: list[Any]) -> Any:
    from diagnostic_msgs.msg import DiagnosticArray

    msg = DiagnosticArray()
    msg.header.stamp = stamp
    msg.status = statuses
    return msg
