"""The ROS 2 depth node: `image` + `camera_info` -> depth/image, depth/points (metres only, REP 118),
depth/relative (unit-less), depth/colorized, depth/camera_info and /diagnostics (see ros/outputs.py).
A thin adapter around `mde_ros.pipeline.DepthPipeline`.

Threading: the image callback only stores the newest message (an older one still waiting is
dropped and counted); ONE worker thread runs the pipeline on the newest frame and publishes. So
latency stays bounded (one frame of queueing at most) when the model is slower than the camera.
Settings: parameters become one immutable `mde_ros.config.NodeConfig`; a parameter change is
validated in the on-set callback and applied by swapping that object under a lock, and the
worker takes it once per frame, so a frame never mixes old and new values.

Run: `depth_node --ros-args --params-file config/depth.yaml -p model:=model.onnx`
"""

from __future__ import annotations

import sys
import threading
import time
import traceback
from dataclasses import replace
from typing import Any

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image

from ..config import NodeConfig, ScaleConfig, with_values
from ..errors import InvalidInputError, MdeRosError
from ..geometry.intrinsics import CameraIntrinsics
from ..pipeline import Frame
from ..pipeline_factory import build_pipeline
from ..scale.base import ScaleEstimator
from ..scale.factory import create_estimator
from ..scale.timeline import ScaleTimelines, StampGaps, current_counters
from . import diagnostics as diag
from .camera_info import check_image_size, intrinsics_from_info
from .image_conversion import rgb_from_msg
from .inputs import subscribe_image
from .log_bridge import LogBridge
from .node_help import help_text, wants_help
from .outputs import DepthOutputs, MetricNotice
from .parameters import PARAMETERS, declare_all, node_config, validate
from .qos import endpoint_qos, overridable
from .runtime import GuardedSpin, StartupError, check_engine_dir, init_ros
from .scale_topics import attach_scale_inputs, stamp_seconds

NODE_NAME = "depth_node"
LOG_PERIOD_S = 5.0  # throttle for repeated warnings, per reason
# Scale modes whose estimator learns from every frame: never skip inference for them.
PASSIVE_SCALE_MODES = ("none", "fixed")
DYNAMIC = tuple(p.name for p in PARAMETERS if not p.read_only)


class Throttle:
    """At most one log line per reason per period (rclpy throttles per call site, not per reason)."""

    def __init__(self, logger: Any, period_s: float = LOG_PERIOD_S) -> None:
        self.logger = logger
        self.period_s = period_s
        self._last: dict[str, float] = {}

    def warn(self, reason: str, message: str) -> None:
        now = time.monotonic()
        if now - self._last.get(reason, -1e9) >= self.period_s:
            self._last[reason] = now
            self.logger.warning(message)


def create_scale_estimator(config: ScaleConfig) -> ScaleEstimator:
    try:
        return create_estimator(config)
    except ValueError as exc:  # the factory names the bad parameter
        raise StartupError(f"invalid scale parameters: {exc}") from exc


class DepthNode(Node):
    MANAGED = False  # the lifecycle node (ros/lifecycle_node.py) configures in its transition

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self._log_bridge = LogBridge(self.get_logger())  # the library's log lines reach /rosout
        self.params = declare_all(self)
        self._settings_lock = threading.Lock()
        self.stats = diag.NodeStats()  # before configure(): the spin loop counts into it
        self.throttle = Throttle(self.get_logger())
        self.active = not self.MANAGED  # frames are taken only while active
        if not self.MANAGED:
            self.configure()

    def configure(self) -> None:
        """Check parameters, load the model, create publishers, subscriptions and the worker."""
        problems = validate(self.params)
        if problems:
            raise StartupError("invalid parameters: " + "; ".join(problems))
        self._settings = node_config(self.params)
        s = self._settings
        self.scale_mode = s.scale.mode
        self.estimator = create_scale_estimator(s.scale)
        check_engine_dir(s.model.engine_dir)
        self.pipeline = build_pipeline(s, self.estimator)
        self._pending: tuple[Image, float] | None = None
        self._camera_info: CameraInfo | None = None
        self._intrinsics_cache: tuple[CameraInfo, CameraIntrinsics] | None = None
        self._condition = threading.Condition()
        self._stop = False
        self.relative_model = self.pipeline.spec.convention == "disparity"
        qos_in, qos_out = endpoint_qos(s.qos.input), endpoint_qos(s.qos.output)
        self.outputs = DepthOutputs(self, qos_out, **overridable())
        self.notice = MetricNotice(
            self.get_logger(), self.relative_model, self.scale_mode, self.resolve_topic_name
        )
        from diagnostic_msgs.msg import DiagnosticArray

        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timelines = ScaleTimelines(self.estimator, self.throttle.warn)
        self._gaps = StampGaps()  # images DDS lost before our callback (keep-last 1 input QoS)
        attach_scale_inputs(self, self.estimator, s.scale, qos_in, self.timelines, **overridable())
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_in, **overridable())
        transport = s.input.image_transport
        _, self.image_topic = subscribe_image(self, transport, self._on_image, qos_in, **overridable())
        self.create_timer(1.0, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._run_worker, name="depth_worker", daemon=True)
        self._worker.start()
        backend = self.pipeline.backend
        self.get_logger().info(
            f"model {self.pipeline.spec.name} ({self.pipeline.spec.convention}) on {backend.describe()}, "
            f"input size {self.pipeline.input_size}, scale {self.scale_mode}; waiting for "
            f"{self.image_topic} and {self.resolve_topic_name('camera_info')}"
        )
        self.notice.startup()

    # --- callbacks (executor thread) ----------------------------------------------------------

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_image(self, msg: Image) -> None:
        if not self.active:
            return
        with self._condition:
            replaced = self._pending is not None
            self._pending = (msg, time.monotonic())
            self._condition.notify()
        self.stats.on_received(replaced)
        self._gaps.observe(stamp_seconds(msg.header.stamp))

    @property
    def settings(self) -> NodeConfig:
        """The current settings: one immutable object (take it once, use it for a whole frame)."""
        with self._settings_lock:
            return self._settings

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        problems = validate(changes)
        if not problems:
            try:  # the typed settings must accept the values too (nothing is applied here)
                with_values(self.settings, _dynamic(changes))
            except (TypeError, ValueError) as exc:
                problems = [str(exc)]
        if any(not p.name for p in parameters):  # rclpy would take '' as a declared name
            problems.append("a parameter name must not be empty")
        return SetParametersResult(successful=not problems, reason="; ".join(problems))

    def _after_set_parameters(self, parameters: list[Any]) -> None:
        changes = _dynamic({p.name: p.value for p in parameters})
        with self._settings_lock:  # one swap: the worker sees all of this change or none of it
            self._settings = with_values(self._settings, changes)

    # --- worker thread ------------------------------------------------------------------------

    def _run_worker(self) -> None:
        while True:
            with self._condition:
                while self._pending is None and not self._stop:
                    self._condition.wait(0.5)
                if self._stop:
                    return
                msg, received_at = self._pending
                self._pending = None
            try:
                self._process(msg, received_at)
            except InvalidInputError as exc:
                reason = getattr(exc, "reason", "invalid_input")
                self.stats.on_bad_input(reason)
                self.throttle.warn(reason, f"frame skipped ({reason}): {exc}")
            except MdeRosError as exc:  # a known failure with a message (e.g. the backend refused)
                self.stats.on_bad_input("processing_error")
                self.throttle.warn("processing_error", f"frame skipped, processing failed: {exc}")
            except Exception as exc:  # a bug: make it visible, count it, keep serving
                if self._stop:  # shutting down: the context may already be gone
                    return
                self._on_internal_error(exc)

    def _on_internal_error(self, exc: Exception) -> None:
        key = diag.internal_error_key(exc)
        if self.stats.on_internal_error(key) == 1:  # the first of its type: full traceback
            self.get_logger().error(
                f"frame skipped: internal error (a bug in mde_ros, please report it); later ones are "
                f"counted as {key} in /diagnostics:\n" + "".join(traceback.format_exception(exc))
            )

    def _process(self, msg: Image, received_at: float) -> None:
        s = self.settings  # once per frame
        rgb = rgb_from_msg(msg)
        info = self._camera_info
        if info is None:
            self.stats.on_bad_input("no_camera_info")
            self.throttle.warn(
                "no_camera_info",
                f"no CameraInfo received on {self.resolve_topic_name('camera_info')} yet; "
                "frames are skipped until one arrives",
            )
            return
        intrinsics = self._intrinsics(info, rgb.shape[1], rgb.shape[0])  # CompressedImage has no size
        never_metric = self.relative_model and self.scale_mode == "none"
        want = self.outputs.wanted(
            s.points.enabled, s.colorized.enabled, s.relative.publish, not never_metric
        )
        if not any(want.values()) and self.scale_mode in PASSIVE_SCALE_MODES:
            self.stats.on_skipped()
            return
        self.pipeline.depth_max = s.depth.max
        stamp = stamp_seconds(msg.header.stamp)
        self.timelines.observe("image", stamp)  # candidate images are still processed
        self.timelines.apply_pending_reset()
        frame = Frame(rgb, intrinsics, stamp)
        result = self.pipeline.process(frame, want["depth/points"], s.points.stride, s.points.max_range)
        self.notice.frame(result.metric, result.scale.message)
        args = (s.points.stride, s.depth.max, self.relative_model)
        timings = self.outputs.publish(msg.header, info, rgb, result, want, *args)
        self.stats.on_published((time.monotonic() - received_at) * 1000.0, {**result.timings_ms, **timings})

    def _intrinsics(self, info: CameraInfo, width: int, height: int) -> CameraIntrinsics:
        cached = self._intrinsics_cache
        if cached is None or cached[0] is not info:
            self._intrinsics_cache = cached = (info, intrinsics_from_info(info))
        return check_image_size(cached[1], width, height)

    # --- diagnostics --------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        waiting = ""
        if snap.received == 0:
            waiting = f"waiting for images on {self.image_topic}"
        elif self._camera_info is None:
            waiting = f"waiting for CameraInfo on {self.resolve_topic_name('camera_info')}"
        backend = self.pipeline.backend
        spec = self.pipeline.spec
        info = {
            "backend": backend.name,
            "device": backend.device,
            "model": spec.name,
            "model convention": spec.convention,
            "input size": str(self.pipeline.input_size),
            "frames lost before the node (stamp gaps, estimate)": str(self._gaps.missed),
        }
        name = self.get_fully_qualified_name()
        statuses = [
            diag.pipeline_status(name, backend.describe(), snap, info, waiting),
            diag.scale_status(
                name, backend.describe(), self.pipeline.scale_status, self.scale_mode, self._scale_state()
            ),
        ]
        self.pub_diag.publish(diag.diagnostic_array(self.get_clock().now().to_msg(), statuses))

    def _scale_state(self) -> Any:
        """The last frame's scale state with the rejection counters as of now."""
        return replace(self.estimator.state, counters=current_counters(self.estimator, self.timelines))

    def release(self) -> None:
        """Stop the worker and free the model (undoes configure() but for its ROS entities)."""
        with self._condition:
            self._stop = True
            self._condition.notify()
        self._worker.join(timeout=5.0)
        self.pipeline.close()

    def close(self) -> None:
        if hasattr(self, "_worker"):
            self.release()
        self._log_bridge.close()


def _dynamic(values: dict[str, Any]) -> dict[str, Any]:
    """The changes the node applies live (read-only parameters never change after start-up)."""
    return {name: value for name, value in values.items() if name in DYNAMIC}


def main(args: list[str] | None = None, node_class: type[DepthNode] | None = None) -> int:
    if wants_help(sys.argv if args is None else args):  # usage + parameter table, no ROS started
        print(help_text())
        return 0
    try:
        init_ros(args)
        node = (node_class or DepthNode)()
    except (MdeRosError, ParameterException, OSError) as exc:
        print(f"{NODE_NAME}: error: {exc}", file=sys.stderr, flush=True)
        rclpy.try_shutdown()
        return 2
    except KeyboardInterrupt:  # Ctrl-C while the model loads or exports: not an error
        rclpy.try_shutdown()
        return 130
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    # Our signal handlers only stop the loop: the worker is stopped before the context goes.
    spinner = GuardedSpin(executor, node.get_logger(), node.stats.on_bad_input)
    spinner.install_signal_handlers()
    try:
        spinner.spin(rclpy.ok)
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
