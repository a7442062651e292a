"""The ROS 2 depth node: `image` + `camera_info` -> depth/image, depth/camera_info, depth/points,
depth/colorized and /diagnostics. A thin adapter around `mde_ros.pipeline.DepthPipeline`.

Threading: the image callback only stores the newest message (an older one still waiting is
dropped and counted); ONE worker thread runs the pipeline on the newest frame and publishes. So
latency stays bounded (one frame of queueing at most) when the model is slower than the camera.

Run: `depth_node --ros-args --params-file config/depth.yaml -p model:=model.onnx`
"""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import replace
from typing import Any

import rclpy
from rcl_interfaces.msg import SetParametersResult
from rclpy.exceptions import ParameterException
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from ..errors import InvalidInputError, MdeRosError
from ..geometry.intrinsics import CameraIntrinsics
from ..pipeline import DepthPipeline, Frame
from ..processing import colorize
from ..scale.base import ScaleEstimator
from ..scale.factory import create_estimator
from ..scale.timeline import ScaleTimelines, StampGaps, current_counters
from . import diagnostics as diag
from .image_conversion import ImageInputError, ImageWriter, rgb_from_msg
from .parameters import PARAMETERS, declare_all, scale_config, validate
from .pointcloud import CloudPacker
from .qos import input_qos, output_qos
from .runtime import GuardedSpin, StartupError, check_engine_dir, init_ros
from .scale_topics import attach_scale_inputs

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


def create_scale_estimator(config: dict[str, Any]) -> ScaleEstimator:
    try:
        return create_estimator(config)
    except ValueError as exc:  # the factory names the bad parameter
        raise StartupError(f"invalid scale parameters: {exc}") from exc


def build_pipeline(params: dict[str, Any], scale: ScaleEstimator) -> DepthPipeline:
    from ..inference.factory import create_backend
    from ..models.resolve import resolve_onnx

    check_engine_dir(params["engine_dir"])
    engine_dir = params["engine_dir"] or None
    onnx_path = resolve_onnx(params["model"], engine_dir)
    backend = create_backend(
        params["backend"],
        onnx_path,
        threads=params["threads"],
        engine_dir=engine_dir,
        input_size=params["input_size"] or None,
    )
    return DepthPipeline(backend, params["input_size"] or None, scale=scale, depth_max=params["depth.max"])


class DepthNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        self.params = declare_all(self)
        problems = validate(self.params)
        if problems:
            raise StartupError("invalid parameters: " + "; ".join(problems))
        config = scale_config(self.params)
        self.scale_mode = config["mode"]
        self.estimator = create_scale_estimator(config)
        self.pipeline = build_pipeline(self.params, self.estimator)
        self.stats = diag.NodeStats()
        self.throttle = Throttle(self.get_logger())
        self._pending: tuple[Image, float] | None = None
        self._camera_info: CameraInfo | None = None
        self._intrinsics_cache: tuple[CameraInfo, CameraIntrinsics] | None = None
        self._condition = threading.Condition()
        self._stop = False
        # Reused output buffers (worker thread only).
        self._depth_writer, self._color_writer = ImageWriter("32FC1"), ImageWriter("bgr8")
        self._cloud_packer = CloudPacker()

        qos_in, qos_out = input_qos(self.params), output_qos(self.params)
        self.pub_depth = self.create_publisher(Image, "depth/image", qos_out)
        self.pub_info = self.create_publisher(CameraInfo, "depth/camera_info", qos_out)
        self.pub_points = self.create_publisher(PointCloud2, "depth/points", qos_out)
        self.pub_color = self.create_publisher(Image, "depth/colorized", qos_out)
        from diagnostic_msgs.msg import DiagnosticArray

        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.timelines = ScaleTimelines(self.estimator, self.throttle.warn)
        self._gaps = StampGaps()  # images DDS lost before our callback (keep-last 1 input QoS)
        attach_scale_inputs(self, self.estimator, config, qos_in, self.timelines)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.add_post_set_parameters_callback(self._after_set_parameters)
        self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, qos_in)
        self.create_subscription(Image, "image", self._on_image, qos_in)
        self.create_timer(1.0, self._publish_diagnostics)
        self._worker = threading.Thread(target=self._run_worker, name="depth_worker", daemon=True)
        self._worker.start()
        backend = self.pipeline.backend
        self.get_logger().info(
            f"model {self.pipeline.spec.name} ({self.pipeline.spec.convention}) on {backend.describe()}, "
            f"input size {self.pipeline.input_size}, scale {self.scale_mode}; waiting for "
            f"{self.resolve_topic_name('image')} and {self.resolve_topic_name('camera_info')}"
        )

    # --- callbacks (executor thread) ----------------------------------------------------------

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self._camera_info = msg

    def _on_image(self, msg: Image) -> None:
        with self._condition:
            replaced = self._pending is not None
            self._pending = (msg, time.monotonic())
            self._condition.notify()
        self.stats.on_received(replaced)
        self._gaps.observe(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        problems = validate({p.name: p.value for p in parameters})
        if any(not p.name for p in parameters):  # rclpy would take '' as a declared name
            problems.append("a parameter name must not be empty")
        return SetParametersResult(successful=not problems, reason="; ".join(problems))

    def _after_set_parameters(self, parameters: list[Any]) -> None:
        for param in parameters:
            if param.name in DYNAMIC:
                self.params[param.name] = param.value
        self.pipeline.depth_max = self.params["depth.max"]

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
            except Exception as exc:  # never let one frame kill the worker
                if self._stop:  # shutting down: the context may already be gone
                    return
                self.stats.on_bad_input("processing_error")
                self.throttle.warn("processing_error", f"frame skipped, processing failed: {exc!r}")

    def _process(self, msg: Image, received_at: float) -> None:
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
        intrinsics = self._intrinsics(info, msg.width, msg.height)
        want = self._wanted_outputs()
        if not any(want.values()) and self.scale_mode in PASSIVE_SCALE_MODES:
            self.stats.on_skipped()
            return
        p = self.params
        stamp = msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9
        self.timelines.observe("image", stamp)  # candidate images are still processed
        self.timelines.apply_pending_reset()
        result = self.pipeline.process(
            Frame(rgb, intrinsics, stamp), want["points"], p["points.stride"], p["points.max_range"]
        )
        if not result.metric and not p["relative.publish"]:
            self.throttle.warn(
                "relative", "no metric scale yet and relative.publish is false: nothing published"
            )
            return
        self._publish(msg, info, rgb, result, want, received_at)

    def _intrinsics(self, info: CameraInfo, width: int, height: int) -> CameraIntrinsics:
        cached = self._intrinsics_cache
        if cached is None or cached[0] is not info:
            try:
                intrinsics = CameraIntrinsics.from_k(info.k, info.width, info.height).validate()
            except InvalidInputError as exc:
                raise ImageInputError("camera_info_invalid", f"CameraInfo is unusable: {exc}") from exc
            self._intrinsics_cache = cached = (info, intrinsics)
        if not cached[1].matches(width, height):
            raise ImageInputError(
                "camera_info_size_mismatch",
                f"CameraInfo is {info.width}x{info.height} but the image is {width}x{height}",
            )
        return cached[1]

    def _wanted_outputs(self) -> dict[str, bool]:
        p = self.params
        return {
            "depth": self.pub_depth.get_subscription_count() > 0,
            "info": self.pub_info.get_subscription_count() > 0,
            "points": p["points.enabled"] and self.pub_points.get_subscription_count() > 0,
            "color": p["colorized.enabled"] and self.pub_color.get_subscription_count() > 0,
        }

    def _publish(
        self, msg: Image, info: CameraInfo, rgb: Any, result: Any, want: dict, received_at: float
    ) -> None:
        timings = result.timings_ms
        mark = time.perf_counter()
        if want["depth"]:
            self.pub_depth.publish(self._depth_writer.write(result.depth, msg.header))
        if want["info"]:
            info.header = msg.header
            self.pub_info.publish(info)
        timings["publish depth"] = _lap(mark)
        if want["color"]:
            mark = time.perf_counter()
            colored = colorize(result.depth, self.params["depth.max"] or None)
            self.pub_color.publish(self._color_writer.write(colored, msg.header))
            timings["publish colorized"] = _lap(mark)
        if want["points"] and result.points is not None:
            mark = time.perf_counter()
            stride = self.params["points.stride"]
            cloud = self._cloud_packer.pack(result.points, rgb[::stride, ::stride], msg.header)
            self.pub_points.publish(cloud)
            timings["publish points"] = _lap(mark)
        self.stats.on_published((time.monotonic() - received_at) * 1000.0, timings)

    # --- diagnostics --------------------------------------------------------------------------

    def _publish_diagnostics(self) -> None:
        snap = self.stats.snapshot()
        waiting = ""
        if snap.received == 0:
            waiting = f"waiting for images on {self.resolve_topic_name('image')}"
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

    def close(self) -> None:
        with self._condition:
            self._stop = True
            self._condition.notify()
        self._worker.join(timeout=5.0)
        self.pipeline.close()


def _lap(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0


def main(args: list[str] | None = None) -> int:
    try:
        init_ros(args)
        node = DepthNode()
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
