"""Scale-recovery metrics and the sequences `mde-ros eval-scale` and the tests run.

A relative model is simulated from ground-truth depth by an unknown affine map in inverse depth,
d = (1/z - t) / s, plus multiplicative noise: the estimator must find (s, t) again. With a real
network (`predictions`), there is no true (s, t); what the user sees is judged instead: the scale
of the published depth, median(depth / GT) per frame (its error and its jitter over frames), next
to the per-frame oracle alignment (s, t fitted to the full ground truth of each frame).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from ..geometry.intrinsics import CameraIntrinsics
from .base import METRIC, ScaleEstimator, ScaleInput, ScaleState
from .temporal import TemporalMeter
from .transforms import invert, matrix_to_quat

TRUE_SCALE, TRUE_SHIFT = 2.3, -0.2  # the "unknown" affine map of the simulated relative output


def scale_error(estimated: float, true: float) -> float:
    return abs(estimated / true - 1.0)


def abs_rel(depth: np.ndarray, truth: np.ndarray) -> float:
    valid = np.isfinite(depth) & np.isfinite(truth) & (truth > 0) & (depth > 0)
    return float(np.mean(np.abs(depth[valid] - truth[valid]) / truth[valid])) if valid.any() else math.nan


def delta1(depth: np.ndarray, truth: np.ndarray) -> float:
    valid = np.isfinite(depth) & np.isfinite(truth) & (truth > 0) & (depth > 0)
    if not valid.any():
        return math.nan
    ratio = np.maximum(depth[valid] / truth[valid], truth[valid] / depth[valid])
    return float(np.mean(ratio < 1.25))


def depth_ratio(depth: np.ndarray, truth: np.ndarray) -> float:
    """Scale of a published depth image: median(depth / GT) over pixels valid in both."""
    valid = np.isfinite(depth) & np.isfinite(truth) & (truth > 0) & (depth > 0)
    return float(np.median(depth[valid] / truth[valid])) if valid.any() else math.nan


def log_ratio(depth: np.ndarray, truth: np.ndarray) -> float:
    """Scale of a published depth image in the scale-invariant log sense: mean log(depth / GT)."""
    valid = np.isfinite(depth) & np.isfinite(truth) & (truth > 0) & (depth > 0)
    return float(np.mean(np.log(depth[valid] / truth[valid]))) if valid.any() else math.nan


def jitter(scales: Iterable[float]) -> float:
    """Frame-to-frame jitter: std of log(s) over a stretch."""
    values = np.asarray(list(scales), np.float64)
    if values.size < 2 or not np.all(values > 0):  # e.g. an oracle's per-frame s of a poor frame
        return math.nan
    return float(np.std(np.log(values)))


def simulate_relative(
    depth: np.ndarray,
    rng: np.random.Generator,
    noise: float = 0.01,
    scale: float = TRUE_SCALE,
    shift: float = TRUE_SHIFT,
) -> np.ndarray:
    """Disparity a relative model could output for `depth`: (1/z - t)/s times (1 + noise·N(0,1))."""
    with np.errstate(divide="ignore", invalid="ignore"):
        disparity = (1.0 / depth - shift) / scale
    disparity *= 1.0 + noise * rng.standard_normal(depth.shape)
    return disparity.astype(np.float32)


@dataclass
class SequenceResult:
    mode: str
    states: list[ScaleState] = field(default_factory=list)
    abs_rel: list[float] = field(default_factory=list)
    delta1: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)  # median(depth / GT) per metric frame
    log_ratios: list[float] = field(default_factory=list)  # mean log(depth / GT) per metric frame
    true_scale: float = TRUE_SCALE
    temporal: TemporalMeter = field(default_factory=TemporalMeter)

    def record(self, state: ScaleState, depth: np.ndarray, frame) -> None:
        """Score one published frame (metric states only) of `frame` (depth = ground truth)."""
        self.states.append(state)
        if state.is_metric:
            self.abs_rel.append(abs_rel(depth, frame.depth))
            self.delta1.append(delta1(depth, frame.depth))
            self.ratios.append(depth_ratio(depth, frame.depth))
            self.log_ratios.append(log_ratio(depth, frame.depth))
        if getattr(frame, "pose_cam_obj", None) is not None:
            self.temporal.add(frame, depth if state.is_metric else None)

    def metric_scales(self) -> list[float]:
        return [s.scale for s in self.states if s.is_metric]

    def summary(self) -> dict[str, float]:
        scales = self.metric_scales()
        errors = [scale_error(s, self.true_scale) for s in scales]
        return {
            "frames": len(self.states),
            "metric_frames": len(scales),
            "scale_error": float(np.median(errors)) if errors else math.nan,
            "final_scale_error": errors[-1] if errors else math.nan,
            "abs_rel": float(np.nanmedian(self.abs_rel)) if self.abs_rel else math.nan,
            "delta1": float(np.nanmedian(self.delta1)) if self.delta1 else math.nan,
            "jitter": jitter(scales[len(scales) // 2 :]) if len(scales) > 2 else math.nan,
            **self.depth_summary(),
        }

    def depth_summary(self) -> dict[str, float]:
        """What the user sees: error and frame-to-frame spread of the published depth's scale."""
        ratios = np.asarray(self.ratios, np.float64)
        first = next((i for i, s in enumerate(self.states) if s.is_metric), -1)
        return {
            "frames_to_metric": first if first >= 0 else math.nan,
            "depth_scale_error": float(np.median(np.abs(ratios - 1.0))) if ratios.size else math.nan,
            "log_scale_error": float(np.median(np.abs(self.log_ratios))) if self.log_ratios else math.nan,
            "depth_jitter": jitter(ratios) if ratios.size > 2 else math.nan,
            **self.temporal.summary(),
        }


def run_sequence(
    estimator: ScaleEstimator,
    frames: list,  # objects with rgb, depth, intrinsics, pose_cam_obj (mde_ros.data.visp.RgbdFrame)
    rng: np.random.Generator,
    noise: float = 0.01,
    period: float = 1.0 / 30.0,
    sparse_points: int = 200,
    outliers: float = 0.1,
    predictions: list[np.ndarray] | None = None,
    stabiliser=None,
    fit_scored_pixels: bool = True,
) -> SequenceResult:
    """Feed relative output (and poses / sparse points from the ground truth) frame by frame.

    The output is a real network's disparity per frame (`predictions`) or simulated from the
    ground truth when None. `stabiliser` (a `DepthStabiliser`) post-processes the published depth
    with the ground-truth poses as odometry. `fit_scored_pixels`: the fits use only points on
    pixels with ground truth, the pixels the published depth is scored on (and the oracle fitted
    on). Sparse points are drawn there anyway; triangulated features also land on surfaces the
    ground truth lacks (Castle-simu's logo cube), which would set the scale of a scene never scored.
    """
    result = SequenceResult(estimator.mode)
    if hasattr(estimator, "add_pose"):
        for i, frame in enumerate(frames):
            pose = invert(frame.pose_cam_obj)  # the camera in the object (world) frame
            estimator.add_pose(i * period, pose[:3, 3], matrix_to_quat(pose[:3, :3]))
    for i, frame in enumerate(frames):
        if hasattr(estimator, "add_sparse_points"):
            estimator.add_sparse_points(
                i * period, sparse_from_depth(frame.depth, frame.intrinsics, rng, sparse_points, outliers)
            )
        disparity = simulate_relative(frame.depth, rng, noise) if predictions is None else predictions[i]
        support = np.isfinite(frame.depth) & (frame.depth > 0) if fit_scored_pixels else None
        item = ScaleInput(disparity, frame.rgb, frame.intrinsics, i * period, "disparity", support=support)
        state = estimator.update(item)
        depth = state.disparity_to_depth(disparity)
        if stabiliser is not None:  # odometry: the ground-truth pose, only while metric
            pose = invert(frame.pose_cam_obj) if state.is_metric and frame.pose_cam_obj is not None else None
            depth = stabiliser.apply(depth, frame.intrinsics, pose)
        result.record(state, depth, frame)
    return result


def oracle_sequence(frames: list, predictions: list[np.ndarray]) -> SequenceResult:
    """Per-frame oracle: (s, t) fitted to each frame's full ground truth (the `mde-ros eval` protocol)."""
    from ..training.metrics import align_scale_shift

    result = SequenceResult("oracle")
    for frame, disparity in zip(frames, predictions):
        valid = np.isfinite(frame.depth) & (frame.depth > 0) & np.isfinite(disparity)
        scale, shift = align_scale_shift(disparity, np.where(valid, 1.0 / frame.depth, 0.0), valid)
        state = ScaleState(METRIC, scale, shift, 0.0, 0.0, "oracle", mode="oracle")
        result.record(state, state.disparity_to_depth(disparity), frame)
    return result


def sparse_from_depth(
    depth: np.ndarray,
    intrinsics: CameraIntrinsics,
    rng: np.random.Generator,
    count: int = 200,
    outliers: float = 0.1,
    noise: float = 0.01,
) -> np.ndarray:
    """`count` metric points (camera frame) at random valid pixels, 1 % depth noise, some outliers."""
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    pick = rng.choice(v.size, size=min(count, v.size), replace=False)
    v, u = v[pick], u[pick]
    z = depth[v, u] * (1.0 + noise * rng.standard_normal(v.size))
    bad = rng.random(v.size) < outliers
    z[bad] *= rng.uniform(0.3, 3.0, bad.sum())  # gross outliers: wrong by a factor 0.3..3
    return np.stack([(u - intrinsics.cx) * z / intrinsics.fx, (v - intrinsics.cy) * z / intrinsics.fy, z], 1)


@dataclass
class GroundFrame:
    rgb: np.ndarray
    depth: np.ndarray
    intrinsics: CameraIntrinsics
    pose_cam_obj: np.ndarray | None = None


def ground_scene(
    height: float = 1.2, pitch_deg: float = 10.0, size: tuple[int, int] = (240, 320), wall: float = 8.0
) -> GroundFrame:
    """Synthetic view of a flat floor from a camera `height` above it, pitched down, a wall behind."""
    rows, cols = size
    k = CameraIntrinsics(0.8 * cols, 0.8 * cols, cols / 2 - 0.5, rows / 2 - 0.5, cols, rows)
    v = np.mgrid[0:rows, 0:cols][0].astype(np.float64)
    pitch = math.radians(pitch_deg)
    down = math.cos(pitch) * (v - k.cy) / k.fy + math.sin(pitch)  # n·r for the floor normal
    with np.errstate(divide="ignore"):
        floor = np.where(down > 1e-6, height / down, np.inf)
    depth = np.minimum(floor, wall).astype(np.float32)
    rgb = np.zeros((rows, cols, 3), np.uint8)
    return GroundFrame(rgb, depth, k)
