"""Pre- and post-processing shared by every backend (numpy + OpenCV, no per-pixel loops)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from .config import PREPROCESS_MODES
from .errors import InvalidInputError
from .models.spec import DISPARITY, METRIC, METRIC_CANONICAL, ModelSpec

# `preprocess` choices: `fast` rounds each side to the nearest multiple (aspect closest to the
# image) and resizes uint8; `reference` reproduces Depth Anything's published recipe: `lower_bound`
# rounding, cubic resize of the float image, and the output resized back with align_corners=True.


def network_size(
    height: int, width: int, short_side: int, multiple: int, rounding: str = "nearest"
) -> tuple[int, int]:
    """Network input (height, width): aspect ratio kept, short side ~`short_side`, multiples of `multiple`.

    Never a fixed square: stretching a 4:3 image to 518x518 distorts the geometry the depth
    network sees. `rounding="lower_bound"` is the Depth Anything V1/V2 rule (`Resize(...,
    keep_aspect_ratio=True, ensure_multiple_of=14, resize_method="lower_bound")`): both sides at
    least `short_side`, each rounded to the nearest multiple unless that falls below it.
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if rounding == "lower_bound":
        return _lower_bound_size(height, width, short_side, multiple)
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


def _lower_bound_size(height: int, width: int, target: int, multiple: int) -> tuple[int, int]:
    scale = max(target / height, target / width)

    def constrain(value: float) -> int:
        snapped = round(value / multiple) * multiple  # Python round: half to even, like np.round
        return snapped if snapped >= target else math.ceil(value / multiple) * multiple

    return constrain(height * scale), constrain(width * scale)


class Preprocessor:
    """RGB uint8 HxWx3 -> normalised float32 [1,3,h,w], reusing one output buffer per size.

    Bicubic resize on the uint8 frame (Depth Anything's own transform uses INTER_CUBIC, also when
    shrinking; INTER_AREA cost 12x more at 252), then one multiply-add per channel written straight
    into the NCHW buffer: no HxWx3 float temporary and no transposing copy (~10x cheaper at 640x480
    -> 518x686 than a per-pixel normalise, same values to float rounding).
    """

    def __init__(self, spec: ModelSpec, short_side: int, mode: str = "fast") -> None:
        if mode not in PREPROCESS_MODES:
            raise ValueError(f"preprocess must be one of {', '.join(PREPROCESS_MODES)} (got {mode!r})")
        self.spec = spec
        self.short_side = short_side
        self.mode = mode
        std = np.asarray(spec.std, np.float32)
        # x_norm = (x/255 - mean)/std = x * gain + bias, one fused multiply-add per channel.
        self._gain = (1.0 / (255.0 * std)).astype(np.float32)
        self._bias = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32)
        self._buffer: np.ndarray | None = None

    def input_size(self, height: int, width: int) -> tuple[int, int]:
        rounding = "lower_bound" if self.mode == "reference" else "nearest"
        size = network_size(height, width, self.short_side, self.spec.patch_multiple, rounding)
        return limit_network_size(size, height, width, self.short_side, self.spec.patch_multiple)

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        if self.mode == "reference":
            return self._reference(rgb)
        net_h, net_w = self.input_size(*rgb.shape[:2])
        resized = cv2.resize(rgb, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
        if self._buffer is None or self._buffer.shape[2:] != (net_h, net_w):
            self._buffer = np.empty((1, 3, net_h, net_w), np.float32)
        for channel, plane in enumerate(cv2.split(resized)):  # contiguous planes: fast ufuncs
            out = self._buffer[0, channel]
            np.multiply(plane, self._gain[channel], out=out, dtype=np.float32)
            out += self._bias[channel]
        return self._buffer

    def _reference(self, rgb: np.ndarray) -> np.ndarray:
        """The published recipe: float image in [0, 1], cubic resize, (x - mean) / std."""
        net_h, net_w = self.input_size(*rgb.shape[:2])
        resized = cv2.resize(rgb.astype(np.float32) / 255.0, (net_w, net_h), interpolation=cv2.INTER_CUBIC)
        mean, std = np.asarray(self.spec.mean, np.float32), np.asarray(self.spec.std, np.float32)
        normalised = (resized - mean) / std
        return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None], dtype=np.float32)


def resize_prediction(
    prediction: np.ndarray, height: int, width: int, align_corners: bool = False
) -> np.ndarray:
    """Network output [h,w] (or [1,h,w]) back to the image size, bilinear, float32.

    `align_corners=True` maps corner pixel centres onto each other, as the Depth Anything
    reference does (`F.interpolate(..., mode="bilinear", align_corners=True)`).
    """
    prediction = np.asarray(prediction, np.float32).reshape(prediction.shape[-2:])
    if prediction.shape == (height, width):
        return prediction
    if align_corners:
        return _bilinear_align_corners(prediction, height, width)
    return cv2.resize(prediction, (width, height), interpolation=cv2.INTER_LINEAR)


def _bilinear_align_corners(image: np.ndarray, height: int, width: int) -> np.ndarray:
    def taps(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        position = np.linspace(0.0, n_in - 1, n_out) if n_out > 1 else np.zeros(1)
        low = np.minimum(np.floor(position).astype(np.int64), max(n_in - 2, 0))
        high = np.minimum(low + 1, n_in - 1)
        return low, high, (position - low).astype(np.float32)

    y0, y1, wy = taps(image.shape[0], height)
    x0, x1, wx = taps(image.shape[1], width)
    rows = image[y0] * (1 - wy)[:, None] + image[y1] * wy[:, None]
    return (rows[:, x0] * (1 - wx) + rows[:, x1] * wx).astype(np.float32)


def split_sky(prediction: np.ndarray, spec: ModelSpec) -> tuple[np.ndarray, np.ndarray | None]:
    """(network output safe to interpolate, sky mask at network size or None).

    Models with a sky head mark sky in their output (+Inf for metric, 0 for disparity); +Inf must
    not enter the bilinear resize, so it is replaced by the largest finite value.
    """
    prediction = np.asarray(prediction, np.float32).reshape(prediction.shape[-2:])
    if not spec.sky:
        return prediction, None
    if spec.convention == DISPARITY:
        return prediction, prediction <= 0
    sky = ~np.isfinite(prediction)
    if sky.any():
        finite = prediction[~sky]
        prediction = np.where(sky, finite.max() if finite.size else 0.0, prediction).astype(np.float32)
    return prediction, sky


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """A boolean mask at network size -> image size (nearest neighbour)."""
    if mask.shape == (height, width):
        return mask
    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


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
