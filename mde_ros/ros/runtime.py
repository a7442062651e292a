"""The depth node's process life: ROS start-up errors, a spin loop no callback can break, shutdown.

- `init_ros` turns rcl's argument errors (`-p name` without a value, a missing or malformed
  `--params-file`) into a StartupError, so `main()` prints one `depth_node: error: ...` line.
- rclpy's own SIGINT/SIGTERM handlers shut the context down at once, while the worker may still
  publish; `GuardedSpin` installs handlers that only ask the spin loop to stop, so the node stops
  its worker first and the context goes last.
- An exception out of ANY callback (ours or rclpy's, e.g. its parameter service given a parameter
  type code 99) is logged once per exception type and place with its traceback, counted, and
  the loop keeps spinning: one bad request from any client must not take the node down.
"""

from __future__ import annotations

import signal
import threading
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import MdeRosError

SPIN_PERIOD_S = 0.1  # how often the loop looks at the stop flag


class StartupError(MdeRosError):
    """Bad parameters or arguments at start-up: one line for a person, exit 2."""


def init_ros(args: list[str] | None) -> None:
    """rclpy.init without rclpy's signal handlers; rcl argument errors become a StartupError."""
    import rclpy
    from rclpy._rclpy_pybind11 import RCLError
    from rclpy.signals import SignalHandlerOptions

    try:
        rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    except RCLError as exc:
        raise StartupError(f"invalid ROS arguments: {rcl_message(exc)}") from None


def rcl_message(exc: Exception) -> str:
    """rcl's message without the C source locations (", at /path/file.c:123") and the prefix."""
    text = str(exc).strip().removeprefix("failed to initialize rcl: ")
    return " ".join(text.split(", at /")[0].split())


def check_engine_dir(path: str) -> None:
    """engine_dir must be a folder (created if missing); a file or an impossible path is an error."""
    if not path:
        return
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "is a file, not a folder" if folder.is_file() else f"cannot be created ({exc.strerror})"
        raise StartupError(f"engine_dir {str(folder)!r} {why}; pass a writable folder or ''") from None


class GuardedSpin:
    """`executor.spin_once` in a loop that survives callback exceptions and stops on SIGINT/SIGTERM."""

    def __init__(self, executor: Any, logger: Any, count: Callable[[str], None]) -> None:
        self.executor = executor
        self.logger = logger
        self.count = count  # called with "callback_exception" per caught exception
        self.stop = threading.Event()
        self._logged: dict[tuple[str, str], int] = {}

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: self.stop.set())

    def spin(self, ok: Callable[[], bool]) -> None:
        """Until a signal arrives or `ok()` turns false (context shut down from elsewhere)."""
        from rclpy.executors import ExternalShutdownException, ShutdownException

        while not self.stop.is_set() and ok():
            try:
                self.executor.spin_once(timeout_sec=SPIN_PERIOD_S)
            except (KeyboardInterrupt, ExternalShutdownException, ShutdownException):
                return
            except Exception as exc:  # a broken callback or request: never the node's end
                if not ok():
                    return
                self.on_exception(exc)

    def on_exception(self, exc: BaseException) -> None:
        self.count("callback_exception")
        frames = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else "?"
        key = (type(exc).__name__, where)
        seen = self._logged.get(key, 0)
        self._logged[key] = seen + 1
        if seen == 0:  # once with the traceback, then every 100th as a one-line reminder
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
            self.logger.error(f"a callback raised {exc!r} (counted, node keeps running):\n{text}")
        elif seen % 100 == 0:
            self.logger.error(f"a callback raised {type(exc).__name__} at {where} {seen + 1} times")
