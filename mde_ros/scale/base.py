"""The contract between the pipeline and scale estimators.

Relative models output affine-invariant disparity d. Metric depth is recovered in inverse-depth
space, 1/depth = s * d + t, never as depth = a * d + b. Metric models output metres already; an
estimator may still correct them (focal length) with s != 1 in depth space (`applies_to_metric`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..geometry.intrinsics import CameraIntrinsics

RELATIVE = "relative"  # no metric estimate yet: published depth is unit-less (median 1)
METRIC = "metric"  # a current metric estimate is applied
HOLDING = "holding"  # latest data was rejected; the last good estimate is applied


@dataclass
class ScaleState:
    status: str = RELATIVE
    scale: float = 1.0  # s
    shift: float = 0.0  # t
    uncertainty: float = float("inf")  # std of log(s)
    age_s: float = float("inf")  # seconds since the estimate was last updated
    message: str = "no scale estimate yet"
    counters: dict[str, int] = field(default_factory=dict)  # rejections by reason, cumulative
    inlier_ratio: float = float("nan")  # of the latest fit (ground plane, matches, sparse points)
    points: int = 0  # points used by the latest fit
    mode: str = "none"

    @property
    def is_metric(self) -> bool:
        return self.status in (METRIC, HOLDING)

    def disparity_to_depth(self, disparity: np.ndarray) -> np.ndarray:
        """Metric depth from disparity with 1/depth = s d + t; NaN where that is not positive."""
        inverse = disparity * np.float32(self.scale) + np.float32(self.shift)
        depth = np.full(disparity.shape, np.nan, np.float32)
        np.divide(1.0, inverse, out=depth, where=inverse > 1e-6)
        return depth


@dataclass
class ScaleInput:
    """What an estimator sees for one frame (all at the original image resolution)."""

    prediction: np.ndarray  # model output resized to the image: disparity or metres
    rgb: np.ndarray
    intrinsics: CameraIntrinsics | None
    stamp: float  # seconds
    convention: str
    # Metric models: the depth in metres the pipeline will multiply by `scale` (focal correction of
    # canonical-focal models applied). None for relative models.
    depth: np.ndarray | None = None
    # Pixels whose metric points the fit may use (bool image; None: all). `eval-scale` passes the
    # ground truth's valid pixels, so that the estimator fits the scene the ground truth scores.
    support: np.ndarray | None = None


class ScaleEstimator:
    """Base estimator: never metric. Subclasses implement `update`."""

    mode = "none"

    def __init__(self) -> None:
        self.state = ScaleState()

    def update(self, item: ScaleInput) -> ScaleState:
        return self.state

    def stabilise(self, depth: np.ndarray, intrinsics: CameraIntrinsics | None, stamp: float) -> np.ndarray:
        """The metric depth the node publishes for this frame (trajectory mode may blend in the
        previous one along the odometry: `scale.stabilise`); here unchanged."""
        return depth

    def reset(self) -> None:
        self.state = ScaleState()


class FixedScale(ScaleEstimator):
    """A user-given (s, t): for calibrated set-ups and tests."""

    mode = "fixed"

    def __init__(self, scale: float, shift: float = 0.0) -> None:
        super().__init__()
        if not (np.isfinite(scale) and scale > 0 and np.isfinite(shift)):
            raise ValueError(f"fixed scale must be positive and finite (scale={scale}, shift={shift})")
        self.state = ScaleState(METRIC, scale, shift, 0.0, 0.0, "fixed scale from parameters", mode="fixed")

    def update(self, item: ScaleInput) -> ScaleState:
        self.state.age_s = 0.0
        return self.state
