"""Progress of work that takes seconds: a tqdm bar in the `mde-ros` CLI, log lines everywhere else.

Core code calls `track` (loops) and `stages` (a few long steps); it never prints. The CLI turns
bars on for an interactive terminal (`use_bars`); the node keeps log lines, which reach the ROS
logger through the `mde_ros` logging bridge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")
LOG_EVERY_S = 10.0  # log-line mode: a line at least this often during a long loop
_state = {"bars": False}


def use_bars(enabled: bool = True) -> None:
    """tqdm bars on stderr (CLI in a terminal) instead of log lines."""
    _state["bars"] = enabled


def bars_enabled() -> bool:
    return _state["bars"]


def track(items: Iterable[T], desc: str, total: int | None = None, unit: str = "it") -> Iterator[T]:
    """Yield `items`, showing how far the loop is."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if _state["bars"]:
        from tqdm import tqdm

        yield from tqdm(items, desc=desc, total=total, unit=unit)
        return
    start = last = time.monotonic()
    log.info("%s: started%s", desc, f" ({total} {unit})" if total else "")
    count = 0
    for item in items:
        yield item
        count += 1
        if time.monotonic() - last >= LOG_EVERY_S:
            last = time.monotonic()
            log.info("%s: %d/%s %s", desc, count, total if total else "?", unit)
    log.info("%s: %d %s in %.1f s", desc, count, unit, time.monotonic() - start)


@contextmanager
def stages(desc: str, total: int) -> Iterator[Callable[[str], None]]:
    """`with stages("export", 3) as stage: stage("tracing"); ...`: names each long step as it starts.

    In a terminal the bar's elapsed time keeps ticking during a step (refreshed once a second).
    """
    start = time.monotonic()
    if not _state["bars"]:
        done = [0]

        def stage(name: str) -> None:
            done[0] += 1
            log.info("%s [%d/%d]: %s", desc, done[0], total, name)

        yield stage
        log.info("%s: done in %.1f s", desc, time.monotonic() - start)
        return
    from tqdm import tqdm

    # elapsed time only: a rate or ETA over a handful of unequal steps would mislead
    bar = tqdm(total=total, desc=desc, bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]")
    stop = threading.Event()
    ticker = threading.Thread(target=_tick, args=(bar, stop), daemon=True)
    ticker.start()
    started = [False]

    def advance(name: str) -> None:
        if started[0]:
            bar.update(1)
        started[0] = True
        bar.set_postfix_str(name)

    try:
        yield advance
        bar.update(bar.total - bar.n)
        bar.set_postfix_str("done")
    finally:
        stop.set()
        ticker.join()
        bar.close()


def _tick(bar: Any, stop: threading.Event) -> None:
    while not stop.wait(1.0):
        bar.refresh()
