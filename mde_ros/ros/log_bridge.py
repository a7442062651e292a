"""Python `logging` of the `mde_ros` library -> the node's ROS logger (console, log file, /rosout).

The core logs with `logging.getLogger(__name__)` (no ROS there). While a node runs, one handler on
the "mde_ros" logger forwards every record to a child of the node's logger named after the
Python logger (`depth_node.mde_ros.inference.factory`), at the same level: Python's and ROS's
level numbers coincide (DEBUG 10, INFO 20, WARN 30, ERROR 40, FATAL/CRITICAL 50). Child loggers
of a node logger are published on /rosout by rcl. The Python level follows the node's
`--log-level`, so DEBUG records are only built when someone wants them.
"""

from __future__ import annotations

import logging
from typing import Any

ROOT = "mde_ros"


class RosLogHandler(logging.Handler):
    """Forwards records to `ros_logger.get_child(record.name)` at the record's level."""

    def __init__(self, ros_logger: Any) -> None:
        super().__init__()
        self.ros_logger = ros_logger
        self._children: dict[str, Any] = {}
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            logger = self._children.get(record.name)
            if logger is None:
                logger = self._children[record.name] = self.ros_logger.get_child(record.name)
            message = self.format(record)
            # One call site per severity: rclpy keys its per-call-site context on the caller's
            # line and refuses a second severity from the same line.
            if record.levelno >= logging.CRITICAL:
                logger.fatal(message)
            elif record.levelno >= logging.ERROR:
                logger.error(message)
            elif record.levelno >= logging.WARNING:
                logger.warning(message)
            elif record.levelno >= logging.INFO:
                logger.info(message)
            else:
                logger.debug(message)
        except Exception:  # never let a log line break the caller
            self.handleError(record)


class LogBridge:
    """Installed on construction, removed by `close()` (restores the logger as it was)."""

    def __init__(self, ros_logger: Any) -> None:
        self.logger = logging.getLogger(ROOT)
        self._saved = (self.logger.level, self.logger.propagate)
        self.handler = RosLogHandler(ros_logger)
        level = int(ros_logger.get_effective_level())
        self.logger.setLevel(level if level > 0 else logging.INFO)
        self.logger.propagate = False  # the ROS logger prints it; no second copy via the root logger
        self.logger.addHandler(self.handler)

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self._saved[0])
        self.logger.propagate = self._saved[1]
