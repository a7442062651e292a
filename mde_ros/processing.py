"""Pre- and post-processing shared by every backend (numpy + OpenCV, no per-pixel loops)."""

from __future__ import annotations

import cv2
import numpy as np

from .errors import InvalidInputError
from .models.spec import DISPARITY, METRIC, METRIC_CANONICAL, ModelSpec


def network_size(height: int, width: int, short_side: int, multiple: int) -> tuple[int, int]:
    """Network input (height, width): aspect ratio kept, short side ~`short_side`, multiples of `multiple`.

    Never a fixed square: stretching a 4:3 image to 518x518 distorts the geometry the depth
    network sees.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    short_side = max(multiple, round(short_side / multiple) * multiple)
    scale = short_side / min(height, width)

    def snap(value: float) -> int:
        return max(multiple, round(value / multiple) * multiple)

    if height <= width:
        return short_side, snap(width * scale)
    return snap(height * scale), short_side


# Bounds on the work per frame: the network's cost grows with its input's long side (a 640x4
# image scaled to a 518 short side asked ONNX Runtime for 6 GB in the first attention MatMul).
MAX_ASPECT_RATIO = 8.0  # images more elongated than 8:1 are refused (`extreme_aspect_ratio`)
MAX_LONG_SIDE_FACTOR = 2  # network long side <= 2 x input_size; the short side shrinks to fit


class FrameShapeError(InvalidInputError):
    reason = "extreme_aspect_ratio"


def limit_network_size(
    size: tuple[int, int], height: int, width: int, short_side: int, multiple: int
) -> tuple[int, int]:
    """`size` from network_size, bounded: refuse absurd aspect ratios, cap the long side."""
    if max(height, width) > MAX_ASPECT_RATIO * min(height, width):
        raise FrameShapeError(f"image {width}x{height} is more elongated than {MAX_ASPECT_RATIO:g}:1")
    limit = MAX_LONG_SIDE_FACTOR * max(multiple, round(short_side / multiple) * multiple)
    factor = limit / max(size)
    if factor >= 1.0:
        return size
    return tuple(max(multiple, int(side * factor) // multiple * multiple) for side in size)


class Preprocessor:
    """RGB uint8 HxWx3 -> normalised float32 [1,3,h,w], reusing one output buffer per size."""

    def __init__(self, spec: ModelSpec, short_side: int) -> None:
        self.spec = spec
        self.short_side = short_side
        std = np.asarray(spec.std, np.float32)
        # x_norm = (x/255 - mean)/std = x * gain + bias, one fused multiply-add per channel.
        self._gain = (1.0 / (255.0 * std)).reshape(1, 1, 3)
        self._bias = (-np.asarray(spec.mean, np.float32) / std).reshape(1, 1, 3)
        self._buffer: np.ndarray | None = None

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        size = network_size(height, width, self.short_side, self.spec.patch_multiple)
        return limit_network_size(size, height, width, self.short_side, self.spec.patch_multiple)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        net_h, net_w = self.input_size(*rgb.shape[:2])
        interpolation = cv2.INTER_AREA if net_h < rgb.shape[0] else cv2.INTER_CUBIC
        resized = cv2.resize(rgb, (net_w, net_h), interpolation=interpolation)
        normalised = resized.astype(np.float32)
        normalised *= self._gain
        normalised += self._bias
        if self._buffer is None or self._buffer.shape[2:] != (net_h, net_w):
            self._buffer = np.empty((1, 3, net_h, net_w), np.float32)
        self._buffer[0] = normalised.transpose(2, 0, 1)
        return self._buffer


def resize_prediction(prediction: np.ndarray, height: int, width: int) -> np.ndarray:
    """Network output [h,w] (or [1,h,w]) back to the image size, bilinear, float32."""
    prediction = np.asarray(prediction, np.float32).reshape(prediction.shape[-2:])
    if prediction.shape == (height, width):
        return prediction
    return cv2.resize(prediction, (width, height), interpolation=cv2.INTER_LINEAR)


def sample_percentiles(image: np.ndarray, percentiles: list[float], step: int = 4) -> list[float] | None:
    """Percentiles of the finite values of a strided sample (1/16 of the pixels: ~16x cheaper,
    well within the accuracy that normalisation and colour maps need); None if nothing is finite."""
    sample = image[::step, ::step]
    sample = sample[np.isfinite(sample)]
    if sample.size == 0:
        return None
    return [float(v) for v in np.percentile(sample, percentiles)]


def relative_depth_from_disparity(disparity: np.ndarray, min_fraction: float = 1e-3) -> np.ndarray:
    """Unit-less depth from affine-invariant disparity, NaN where disparity is ~0 or negative.

    Without a scale estimate, 1/disparity normalised to a median of 1 is the honest answer: its
    shape is right up to the unknown shift, its unit is not metres. Pixels whose disparity is
    below `min_fraction` of the robust maximum (sky, far background) are invalid.
    """
    depth = np.full(disparity.shape, np.nan, np.float32)
    ceiling = sample_percentiles(disparity, [99.0])
    if ceiling is None or ceiling[0] <= 0:
        return depth
    threshold = ceiling[0] * min_fraction
    valid = disparity > threshold
    # The median of 1/d over valid pixels is 1/median(d) (monotonic), so this gives median depth ~1.
    sample = disparity[::4, ::4]
    median_disparity = float(np.median(sample[sample > threshold])) if (sample > threshold).any() else 1.0
    np.divide(median_disparity, disparity, out=depth, where=valid)
    return depth


def metric_depth(prediction: np.ndarray, spec: ModelSpec, fx_network: float | None) -> np.ndarray:
    """Metres from a metric model's output; canonical-focal models are rescaled by fx/f_canonical.

    `fx_network` is the focal length in pixels of the *network input* image (CameraInfo fx times
    the resize factor), because the network saw that image, not the original.
    """
    if spec.convention == METRIC:
        return prediction
    if spec.convention == METRIC_CANONICAL:
        if not fx_network or fx_network <= 0:
            raise ValueError(f"model {spec.name} needs camera intrinsics for its canonical focal length")
        return prediction * np.float32(fx_network / spec.canonical_focal)
    raise ValueError(f"model {spec.name} has convention {spec.convention}, not metric")


def is_relative(spec: ModelSpec) -> bool:
    return spec.convention == DISPARITY


def colorize(depth: np.ndarray, max_depth: float | None = None) -> np.ndarray:
    """bgr8 colour map (near = warm, far = cool; invalid = black) for people, not for planners."""
    stats = sample_percentiles(depth, [2.0, 98.0])
    if stats is None:
        return np.zeros((*depth.shape, 3), np.uint8)
    low = stats[0]
    high = float(max_depth) if max_depth else stats[1]
    scale = 255.0 / max(high - low, 1e-6)
    # 255 at `low` (near) down to 0 at `high`; NaN becomes 0 through nan_to_num, then masked black.
    gray = np.nan_to_num((high - depth) * np.float32(scale), nan=0.0, posinf=0.0, neginf=0.0)
    gray = np.clip(gray, 0, 255).astype(np.uint8)
    colored = cv2.applyColorMap(gray, cv2.COLORMAP_TURBO)
    colored[~np.isfinite(depth)] = 0
    return colored
