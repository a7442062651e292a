"""Long first-use steps log start, progress and end (mde_ros.logsteps), with no timing assumptions:
the body waits until the first progress line has been logged."""

from __future__ import annotations

import logging
import threading

import pytest

from mde_ros.logsteps import long_step


class _Progress(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("still "):
            self.seen.set()


def test_long_step_logs_start_progress_and_end(caplog):
    log = logging.getLogger("mde_ros.test_logsteps")
    progress = _Progress()
    log.addHandler(progress)
    try:
        with caplog.at_level(logging.INFO, logger=log.name):
            with long_step(log, "building the thing", "once", every_s=0.01):
                assert progress.seen.wait(60)
            with pytest.raises(RuntimeError), long_step(log, "breaking the thing", every_s=60):
                raise RuntimeError("boom")
    finally:
        log.removeHandler(progress)
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert lines[0] == (logging.INFO, "building the thing (once)")
    assert any(m.startswith("still building the thing (") for _, m in lines)
    done = [m for level, m in lines if level == logging.INFO and m.startswith("building the thing: done in ")]
    assert len(done) == 1 and lines.index((logging.INFO, done[0])) > 1
    assert lines[-1][0] == logging.ERROR and lines[-1][1].startswith("breaking the thing failed after ")
