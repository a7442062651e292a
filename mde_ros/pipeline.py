"""The ROS-free depth pipeline: frame -> preprocess -> backend -> postprocess -> scale -> depth + cloud.

The ROS node and the `mde-ros` CLI are thin adapters around `DepthPipeline`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .errors import InvalidInputError
from .geometry.intrinsics import CameraIntrinsics
from .geometry.pointcloud import backproject
from .inference.base import Backend, DepthMapping
from .models.spec import DISPARITY, METRIC_CANONICAL
from .processing import (
    Preprocessor,
    metric_depth,
    relative_depth_from_disparity,
    resize_mask,
    resize_prediction,
    split_sky,
)
from .scale.base import METRIC, RELATIVE, ScaleEstimator, ScaleInput, ScaleState

PromptFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Frame:
    """One camera image as the core sees it."""

    rgb: np.ndarray  # HxWx3 uint8 RGB
    intrinsics: CameraIntrinsics | None = None
    stamp: float = 0.0  # seconds

    def __post_init__(self) -> None:
        if self.rgb.ndim != 3 or self.rgb.shape[2] != 3 or self.rgb.dtype != np.uint8:
            raise InvalidInputError(f"frame must be HxWx3 uint8 RGB, got {self.rgb.shape} {self.rgb.dtype}")
        if self.rgb.shape[0] == 0 or self.rgb.shape[1] == 0:
            raise InvalidInputError("frame is empty (zero width or height)")


@dataclass
class DepthResult:
    # HxW float32: metres when `metric`, unit-less (median 1) otherwise. REP 118: NaN = no
    # measurement, +Inf = beyond `depth_max` (metric only: a unit-less depth has no range in metres).
    depth: np.ndarray
    metric: bool
    scale: ScaleState
    prediction: np.ndarray  # raw model output at image size (disparity or metres)
    network_size: tuple[int, int]  # (height, width) fed to the network
    points: np.ndarray | None = None  # [H', W', 3] float32 in the optical frame (NaN / +Inf as depth)
    timings_ms: dict[str, float] = field(default_factory=dict)


class DepthPipeline:
    """Owns one backend; call `process` from a single thread."""

    def __init__(
        self,
        backend: Backend,
        input_size: int | None = None,
        scale: ScaleEstimator | None = None,
        prompt_fn: PromptFn | None = None,
        depth_max: float = 0.0,
        preprocess: str = "fast",
    ) -> None:
        self.backend = backend
        self.spec = backend.spec
        self.input_size = input_size or self.spec.default_input_size
        self.preprocess = Preprocessor(self.spec, self.input_size, preprocess)
        self.scale = scale or ScaleEstimator()
        if self.spec.needs_prompt and prompt_fn is None:
            from .models.prompts import prompt_fn_for

            prompt_fn = prompt_fn_for(self.spec)
        self.prompt_fn = prompt_fn
        self.depth_max = depth_max

    def process(
        self, frame: Frame, want_points: bool = False, points_stride: int = 1, points_max_range: float = 0.0
    ) -> DepthResult:
        timings = {}
        start = time.perf_counter()
        height, width = frame.rgb.shape[:2]
        if frame.intrinsics is not None and not frame.intrinsics.matches(width, height):
            raise InvalidInputError(
                f"CameraInfo is {frame.intrinsics.width}x{frame.intrinsics.height} "
                f"but the image is {width}x{height}"
            )
        # GPU backends pre/post-process on their device (the frame crosses the bus once).
        # Prompted, sky-splitting and reference-preprocessing models keep the host path.
        host_only = self.prompt_fn or self.spec.sky or self.preprocess.mode == "reference"
        on_device = None if host_only else self.backend.predict_frame(frame.rgb, self.input_size)
        sky = None
        if on_device is not None:
            prediction, net_size = on_device.prediction, on_device.network_size
            timings["inference"] = lap_ms(start)  # pre + network + output resize, on the device
            mark = time.perf_counter()
        else:
            pixels = self.preprocess(frame.rgb)
            prompt = self.prompt_fn(frame.rgb) if self.prompt_fn else None
            timings["preprocess"] = lap_ms(start)

            mark = time.perf_counter()
            raw = self.backend.infer(pixels, prompt)
            timings["inference"] = lap_ms(mark)

            mark = time.perf_counter()
            network_map, sky = split_sky(raw[0], self.spec)
            reference = self.preprocess.mode == "reference"
            prediction = resize_prediction(network_map, height, width, align_corners=reference)
            net_size = pixels.shape[2:]
        base = self._metric_base(prediction, frame.intrinsics, net_size)
        state = self.scale.update(
            ScaleInput(prediction, frame.rgb, frame.intrinsics, frame.stamp, self.spec.convention, base)
        )
        depth, metric = self._to_depth(prediction, state, base)
        unstabilised = depth
        if metric:  # optional odometry stabiliser (scale.stabilise, trajectory mode)
            depth = self.scale.stabilise(depth, frame.intrinsics, frame.stamp)
        if metric and self.depth_max > 0:
            depth[depth > self.depth_max] = np.inf
        if sky is not None:  # REP 118: beyond range is +Inf, not a made-up depth
            depth[resize_mask(sky, height, width)] = np.inf
        timings["postprocess"] = lap_ms(mark)

        points = None
        if want_points and frame.intrinsics is not None:
            mark = time.perf_counter()
            # (a stabilised depth is not the device's mapping of the prediction: back-project it here)
            device_cloud = on_device is not None and on_device.points is not None
            if metric and device_cloud and depth is unstabilised:
                # GPU backends: depth + back-projection on the device; only the cloud comes back
                mapping = self._depth_mapping(state, frame.intrinsics, net_size)
                points = on_device.points(mapping, frame.intrinsics, points_stride, points_max_range)
            else:
                points = backproject(depth, frame.intrinsics, points_stride, points_max_range)
            timings["points"] = lap_ms(mark)
        timings["total"] = lap_ms(start)
        return DepthResult(depth, metric, state, prediction, net_size, points, timings)

    def _metric_base(
        self, prediction: np.ndarray, intrinsics: CameraIntrinsics | None, net_size: tuple[int, int]
    ) -> np.ndarray | None:
        """Metric models: metres before any scale correction (None for relative models)."""
        if self.spec.convention == DISPARITY:
            return None
        return metric_depth(prediction, self.spec, network_focal(intrinsics, net_size)).astype(
            np.float32, copy=True
        )

    def _to_depth(
        self, prediction: np.ndarray, state: ScaleState, base: np.ndarray | None
    ) -> tuple[np.ndarray, bool]:
        if self.spec.convention == DISPARITY:
            if state.is_metric:
                return state.disparity_to_depth(prediction), True
            return relative_depth_from_disparity(prediction), False
        depth = base.copy()
        if state.is_metric and state.scale != 1.0:
            depth *= np.float32(state.scale)
        depth[~(depth > 0)] = np.nan
        return depth, True

    def _depth_mapping(
        self, state: ScaleState, intrinsics: CameraIntrinsics | None, net_size: tuple[int, int]
    ) -> DepthMapping:
        """`_to_depth` and `depth_max` of a metric frame as per-pixel gains, for a device to apply."""
        if self.spec.convention == DISPARITY:
            return DepthMapping(True, (state.scale,), state.shift, self.depth_max)
        gains = []
        if self.spec.convention == METRIC_CANONICAL:  # as `metric_depth` (which checked the focal)
            gains.append(network_focal(intrinsics, net_size) / self.spec.canonical_focal)
        if state.is_metric and state.scale != 1.0:
            gains.append(state.scale)
        return DepthMapping(False, tuple(gains), 0.0, self.depth_max)

    @property
    def scale_status(self) -> str:
        if self.spec.convention != DISPARITY:
            return METRIC
        return self.scale.state.status if self.scale.state.is_metric else RELATIVE

    def close(self) -> None:
        self.backend.close()

    def __enter__(self) -> DepthPipeline:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def network_focal(intrinsics: CameraIntrinsics | None, net_size: tuple[int, int]) -> float | None:
    """Focal length in pixels of the image the network saw: (fx, fy) times the resize factors, averaged.

    The mean of fx and fy follows the DA3 authors' formula (README "Monocular Metric Depth": focal is
    the average of fx and fy); for square pixels it is fx * resize factor.
    """
    if intrinsics is None:
        return None
    fx = intrinsics.fx * net_size[1] / intrinsics.width
    fy = intrinsics.fy * net_size[0] / intrinsics.height
    return 0.5 * (fx + fy)


def lap_ms(start: float) -> float:
    """Milliseconds since `start` (a time.perf_counter() value)."""
    return (time.perf_counter() - start) * 1000.0
