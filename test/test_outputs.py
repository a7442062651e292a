"""The no-metres notice (ros/outputs.MetricNotice) with a real Python logger: what it says, when."""

from __future__ import annotations

import logging

from mde_ros.ros.outputs import MetricNotice


def _notice(mode: str, relative_model: bool = True, period_s: float = 3600.0) -> MetricNotice:
    return MetricNotice(
        logging.getLogger("mde_ros.test_notice"), relative_model, mode, "/cam/".__add__, period_s
    )


def _lines(caplog) -> list[tuple[int, str]]:
    lines = [(r.levelno, r.getMessage()) for r in caplog.records]
    caplog.clear()
    return lines


def test_notice_names_the_silent_topics_the_reason_and_the_fix(caplog):
    with caplog.at_level(logging.INFO, logger="mde_ros.test_notice"):
        _notice("none").startup()
        ((level, text),) = _lines(caplog)
        assert level == logging.WARNING
        assert text.startswith("/cam/depth/image and /cam/depth/points are silent (REP 118: metres only)")
        assert "scale.mode is none" in text and "/cam/depth/relative" in text
        for mode in ("intrinsics", "trajectory", "sparse", "fixed"):
            assert f"scale.mode to {mode}" in text or f"{mode} (" in text, mode
        _notice("sparse").startup()
        ((_, text),) = _lines(caplog)
        assert "scale.mode sparse has no metric scale yet" in text and "sparse_points" in text
        _notice("fixed").startup()  # metric from the first frame: nothing to say
        _notice("none", relative_model=False).startup()  # metric model: nothing to say
        assert _lines(caplog) == []


def test_notice_repeats_while_relative_and_reports_each_change(caplog):
    with caplog.at_level(logging.INFO, logger="mde_ros.test_notice"):
        notice = _notice("sparse")
        notice.startup()
        notice.frame(False, "no points yet")  # within the period: throttled
        assert [level for level, _ in _lines(caplog)] == [logging.WARNING]
        notice.frame(True, "sparse: 250/300 inliers")
        notice.frame(True, "sparse: 251/300 inliers")  # still metric: said once
        ((level, text),) = _lines(caplog)
        assert level == logging.INFO and text.startswith("metric scale established (sparse: 250/300")
        notice.frame(False, "scale lost")  # metric -> relative: at once, whatever the throttle
        ((level, text),) = _lines(caplog)
        assert level == logging.WARNING and "(scale lost)" in text
        repeating = _notice("none", period_s=0.0)
        repeating.frame(False)
        repeating.frame(False)
        assert [level for level, _ in _lines(caplog)] == [logging.WARNING, logging.WARNING]
