"""Log lines for long first-use steps (default ONNX build, TensorRT engine build): start, a
"still ..." line every `every_s` while it runs, and the end with its duration, so a node that
works for a minute before its first frame never looks hung. ROS-free (plain `logging`)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def long_step(
    log: logging.Logger, what: str, detail: str = "", every_s: float = 10.0, announce: bool = True
) -> Iterator[None]:
    """`with long_step(log, "building the default ONNX"): ...` (announce=False: the caller logs
    the start itself). The end line says "done" or "failed" with the elapsed seconds."""
    if announce:
        log.info("%s%s", what, f" ({detail})" if detail else "")
    start = time.monotonic()
    stop = threading.Event()

    def heartbeat() -> None:
        while not stop.wait(every_s):
            log.info("still %s (%.0f s so far)", what, time.monotonic() - start)

    thread = threading.Thread(target=heartbeat, name="long_step", daemon=True)
    thread.start()
    failed = True
    try:
        yield
        failed = False
    finally:
        stop.set()
        thread.join()  # no "still ..." line after the end line
        if failed:
            log.error("%s failed after %.1f s", what, time.monotonic() - start)
    log.info("%s: done in %.1f s", what, time.monotonic() - start)
