"""Time handling that recovers: per-input stamp time lines (ROS-free).

Each input (image, odom/pose, sparse_points) has its own reference, the newest accepted stamp.
A stamp within [reference - JUMP_BACK_S, reference + JUMP_AHEAD_S] is normal; small disorder
inside that window is left to the estimators (`out_of_order`, `duplicate_stamp`). A stamp
outside the window is a *candidate*, never the new reference on its own:

- the next message agrees with the old reference: the candidate was a lone outlier (a stamp
  from 2038, a clock glitch), counted as `<input>_stamp_outlier` and dropped;
- the next message agrees with the candidate: the time line really jumped. Backwards (a bag
  played in a loop, a simulator reset, a clock step back) is counted as `<input>_time_jump_back`
  and clears what depends on time: that input's buffer at once, the scale filter and keyframe
  before the next frame (ROS tf2 clears its buffer on a backwards jump in the same way).
  Forwards (a long pause, a clock step ahead) is counted as `<input>_time_jump_ahead`; old data
  simply ages out, nothing is cleared.

Candidate pose and point messages are not used (one message per jump is lost); candidate images
are still processed, only the scale state follows the rules above.
"""

from __future__ import annotations

import logging
import math
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

JUMP_BACK_S = 1.0  # further back than this from the newest stamp: a loop / reset, not disorder
JUMP_AHEAD_S = 10.0  # further ahead than this: an outlier until the next message agrees

ACCEPT, HOLD = "accept", "hold"
OUTLIER, JUMP_BACK, JUMP_AHEAD = "stamp_outlier", "time_jump_back", "time_jump_ahead"

log = logging.getLogger(__name__)


class Timeline:
    """One input's reference stamp and pending candidate (not thread-safe: the owner locks)."""

    def __init__(self, jump_back_s: float = JUMP_BACK_S, jump_ahead_s: float = JUMP_AHEAD_S) -> None:
        self.jump_back_s = jump_back_s
        self.jump_ahead_s = jump_ahead_s
        self.reference: float | None = None
        self.candidate: float | None = None

    def _near(self, stamp: float, reference: float) -> bool:
        return reference - self.jump_back_s <= stamp <= reference + self.jump_ahead_s

    def observe(self, stamp: float) -> tuple[str, list[str]]:
        """(ACCEPT or HOLD, events) for one message stamp; events are OUTLIER / JUMP_* names."""
        if not math.isfinite(stamp):
            return HOLD, [OUTLIER]
        events: list[str] = []
        if self.reference is None or self._near(stamp, self.reference):
            if self.candidate is not None:
                events.append(OUTLIER)  # the lone candidate never got a follower
            self.candidate = None
            self.reference = stamp if self.reference is None else max(self.reference, stamp)
            return ACCEPT, events
        if self.candidate is not None and self._near(stamp, self.candidate):
            events.append(JUMP_BACK if stamp < self.reference else JUMP_AHEAD)
            self.reference, self.candidate = stamp, None
            return ACCEPT, events
        if self.candidate is not None:
            events.append(OUTLIER)
        self.candidate = stamp
        return HOLD, events


class ScaleTimelines:
    """Time lines of every input feeding one scale estimator, with counters and deferred resets.

    `observe` runs on the thread that receives a message; input buffers are cleared there at
    once (`estimator.clear_inputs`), the filter/keyframe reset waits for `apply_pending_reset`,
    called by the thread that runs the estimator before its next frame.
    """

    def __init__(self, estimator: Any, warn: Callable[[str, str], None] | None = None) -> None:
        self.estimator = estimator
        self.warn = warn or (lambda reason, message: log.warning(message))
        self._lock = threading.Lock()
        self._lines: dict[str, Timeline] = {}
        self.counters: Counter[str] = Counter()
        self._pending_reset: str | None = None

    def observe(self, name: str, stamp: float) -> bool:
        """Whether the message of input `name` stamped `stamp` should be used."""
        with self._lock:
            line = self._lines.setdefault(name, Timeline())
            reference = line.reference
            verdict, events = line.observe(stamp)
            for event in events:
                self.counters[f"{name}_{event}"] += 1
        for event in events:
            self._report(name, event, stamp, reference)
        return verdict == ACCEPT

    def _report(self, name: str, event: str, stamp: float, reference: float | None) -> None:
        key = f"{name}_{event}"
        if event == OUTLIER:
            self.warn(key, f"{name}: a stamp far from the others (newest {reference:.3f}) was ignored")
            return
        self.warn(key, f"{name}: time jumped {'back' if event == JUMP_BACK else 'ahead'} from "
                       f"{reference:.3f} to {stamp:.3f} s")  # fmt: skip
        if event == JUMP_BACK:
            if name != "image" and hasattr(self.estimator, "clear_inputs"):
                self.estimator.clear_inputs(name)
            with self._lock:
                self._pending_reset = key

    def apply_pending_reset(self) -> str | None:
        """Reset the estimator's filter state if a jump back asked for it; returns the reason."""
        with self._lock:
            reason, self._pending_reset = self._pending_reset, None
        if reason is not None and hasattr(self.estimator, "filter"):  # fixed / none learn nothing
            self.estimator.reset()
        return reason

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.counters)


def current_counters(estimator: Any, timelines: ScaleTimelines | None = None) -> dict[str, int]:
    """The estimator's rejection counters as of now (not as of its last frame) plus time events."""
    counters: dict[str, int] = {}
    lock = getattr(estimator, "lock", None)
    if lock is not None and hasattr(estimator, "counters"):
        with lock:
            counters.update(estimator.counters)
    else:
        counters.update(estimator.state.counters)
    if timelines is not None:
        counters.update(timelines.snapshot())
    return counters


class StampGaps:
    """Estimates frames lost before a callback (e.g. DDS replaced them) from gaps in the stamps.

    The period is the median of the recent stamp intervals; an interval of n periods (n >= 2,
    rounded) means n - 1 frames never arrived. An estimate: it assumes a steady camera rate and
    counts nothing across time jumps (those are the time lines' business).
    """

    def __init__(self, window: int = 30) -> None:
        self.window = window
        self._intervals: list[float] = []
        self._last: float | None = None
        self.missed = 0

    def observe(self, stamp: float) -> int:
        """Record one received stamp; returns the frames estimated missing just before it."""
        last, self._last = self._last, stamp
        if last is None or not math.isfinite(stamp) or not 0.0 < stamp - last < JUMP_AHEAD_S:
            return 0
        interval = stamp - last
        period = sorted(self._intervals)[len(self._intervals) // 2] if len(self._intervals) >= 5 else 0.0
        self._intervals = (self._intervals + [interval])[-self.window :]
        missing = round(interval / period) - 1 if period > 0 and interval > 1.5 * period else 0
        self.missed += missing
        return missing
