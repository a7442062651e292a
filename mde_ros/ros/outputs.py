"""What the depth node publishes, and the notice while it has no metres (REP 118 honesty).

- `depth/image` (32FC1) and `depth/points`: metres only. REP 118 defines 32FC1 depth as metres, so a
  unit-less frame there would read as "every obstacle ~1 m away" to a costmap. While the scale is
  unknown these two topics are silent. NaN = no measurement, +Inf = beyond depth.max /
  points.max_range.
- `depth/relative` (32FC1, unit-less, median 1): the relative model's depth, every frame, metric
  or not (relative models only; `relative.publish` switches it off).
- `depth/colorized` (bgr8): for people; from metres when metric, else from the relative depth.
- `depth/camera_info`: with every processed frame (it describes depth/image and depth/relative).
"""

from __future__ import annotations

import copy
import time
from typing import Any

from ..pipeline import lap_ms
from ..processing import colorize, relative_depth_from_disparity
from .image_conversion import ImageWriter
from .pointcloud import CloudPacker

DEPTH, INFO, POINTS, COLOR, RELATIVE = (
    "depth/image",
    "depth/camera_info",
    "depth/points",
    "depth/colorized",
    "depth/relative",
)
METRIC_TOPICS = (DEPTH, POINTS)
NOTICE_PERIOD_S = 30.0  # the "no metres" WARN repeats at most this often while it holds

# scale.mode -> what it needs before depth/image carries metres (the notice names it).
NEEDS = {
    "intrinsics": "scale.camera_height > 0 and a visible ground plane in the lower image",
    "trajectory": "metric poses on the odom/pose topic and enough camera motion (scale.min_baseline)",
    "sparse": "metric points on sparse_points (LiDAR, stereo, SLAM map) in the image",
    "fixed": "nothing (fixed scale is metric from the first frame)",
}
FIX = (
    "set scale.mode to intrinsics (with scale.camera_height), trajectory (metric odom/pose), "
    "sparse (sparse_points in metres) or fixed (known scale.fixed_scale/fixed_shift), "
    "or use a metric model"
)


class DepthOutputs:
    """The five output publishers and the per-frame publishing (worker thread only)."""

    def __init__(self, node: Any, qos: Any, **publisher_kwargs: Any) -> None:
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        types = {DEPTH: Image, INFO: CameraInfo, POINTS: PointCloud2, COLOR: Image, RELATIVE: Image}
        self.pubs = {
            topic: node.create_publisher(kind, topic, qos, **publisher_kwargs)
            for topic, kind in types.items()
        }
        self._writers = {
            DEPTH: ImageWriter("32FC1"),
            RELATIVE: ImageWriter("32FC1"),
            COLOR: ImageWriter("bgr8"),
        }
        self._packer = CloudPacker()

    def wanted(self, points: bool, colorized: bool, relative: bool, metric: bool = True) -> dict[str, bool]:
        """Topics with subscribers (and enabled): the worker skips work nobody reads. `metric`:
        False when the metres topics can never be published (relative model, scale.mode none)."""
        enabled = {DEPTH: metric, INFO: True, POINTS: points and metric, COLOR: colorized, RELATIVE: relative}
        return {t: enabled[t] and self.pubs[t].get_subscription_count() > 0 for t in self.pubs}

    def publish(
        self,
        header: Any,
        info: Any,
        rgb: Any,
        result: Any,
        want: dict[str, bool],
        stride: int,
        depth_max: float,
        relative_model: bool,
    ) -> dict[str, float]:
        """Publish one frame's outputs; returns publishing timings (ms) by stage."""
        timings = {}
        mark = time.perf_counter()
        if result.metric and want[DEPTH]:
            self.pubs[DEPTH].publish(self._writers[DEPTH].write(result.depth, header))
        if relative_model and want[RELATIVE]:
            relative = result.depth if not result.metric else relative_depth_from_disparity(result.prediction)
            self.pubs[RELATIVE].publish(self._writers[RELATIVE].write(relative, header))
        if want[INFO]:
            stamped = copy.copy(info)  # the node's cached CameraInfo keeps the camera's own header
            stamped.header = header
            self.pubs[INFO].publish(stamped)
        timings["publish depth"] = lap_ms(mark)
        if want[COLOR]:
            mark = time.perf_counter()
            colored = colorize(result.depth, (depth_max or None) if result.metric else None)
            self.pubs[COLOR].publish(self._writers[COLOR].write(colored, header))
            timings["publish colorized"] = lap_ms(mark)
        if result.metric and want[POINTS] and result.points is not None:
            mark = time.perf_counter()
            self.pubs[POINTS].publish(self._packer.pack(result.points, rgb[::stride, ::stride], header))
            timings["publish points"] = lap_ms(mark)
        return timings


class MetricNotice:
    """The WARN that says, at start-up and (throttled) while it holds, why depth/image is silent."""

    def __init__(
        self,
        logger: Any,
        relative_model: bool,
        scale_mode: str,
        topic: Any,
        period_s: float = NOTICE_PERIOD_S,
    ) -> None:
        self.logger = logger
        self.relative_model = relative_model
        self.scale_mode = scale_mode
        self.topic = topic  # relative name -> resolved name
        self.period_s = period_s
        self._last = -1e9
        self._metric: bool | None = None

    def message(self, detail: str = "") -> str:
        silent = " and ".join(self.topic(t) for t in METRIC_TOPICS)
        where = f"relative depth (unit-less, median 1) is on {self.topic(RELATIVE)} and {self.topic(COLOR)}"
        if self.scale_mode == "none":
            why = "the model gives relative (unit-less) depth and scale.mode is none"
            fix = f"For metres, {FIX}."
        else:
            why = f"scale.mode {self.scale_mode} has no metric scale yet" + (f" ({detail})" if detail else "")
            fix = f"It needs {NEEDS.get(self.scale_mode, 'its input')}."
        return f"{silent} are silent (REP 118: metres only): {why}; {where}. {fix}"

    def startup(self) -> None:
        if self.relative_model and self.scale_mode != "fixed":
            self.logger.warning(self.message("waiting for the first frame"))
            self._last = time.monotonic()

    def frame(self, metric: bool, detail: str = "") -> None:
        """Call once per processed frame: WARN (throttled) while not metric, INFO on each change."""
        if metric and self._metric is not True and self.relative_model:
            self.logger.info(f"metric scale established ({detail}): publishing metres on "
                             + " and ".join(self.topic(t) for t in METRIC_TOPICS))  # fmt: skip
        now = time.monotonic()
        became_relative = not metric and self._metric is True
        if not metric and (became_relative or now - self._last >= self.period_s):
            self._last = now
            self.logger.warning(self.message(detail))
        self._metric = metric
