"""Build the scale estimator named by a `ScaleConfig` (the node's `scale.*` parameters)."""

from __future__ import annotations

import numpy as np

from ..config import POSE_TYPES, SCALE_MODES, ScaleConfig
from .base import ScaleEstimator


def create_estimator(config: ScaleConfig) -> ScaleEstimator:
    """ScaleEstimator for `config`; ValueError names a bad parameter."""
    from .filter import FilteredEstimator
    from .transforms import extrinsic

    c = config
    mode = str(c.mode).strip().lower()
    _check_stabilise(float(c.stabilise), mode)
    smoothing = {"time_constant": float(c.filter.time_constant), "max_jump": float(c.filter.max_jump)}
    estimator: ScaleEstimator
    if mode == "none":
        estimator = ScaleEstimator()
    elif mode == "fixed":
        from .base import FixedScale

        estimator = FixedScale(float(c.fixed_scale), float(c.fixed_shift))
    elif mode == "intrinsics":
        from .intrinsics import IntrinsicsScale

        estimator = IntrinsicsScale(
            float(c.camera_height),
            float(c.camera_pitch),
            float(c.ground_region),
            float(c.min_inlier_ratio),
            **smoothing,
        )
    elif mode == "trajectory":
        from .stabiliser import DepthStabiliser
        from .trajectory import TrajectoryScale

        if str(c.pose_type) not in POSE_TYPES:
            raise ValueError(f"scale.pose_type must be one of {', '.join(POSE_TYPES)}, got {c.pose_type!r}")
        estimator = TrajectoryScale(
            extrinsic(c.extrinsic.translation, c.extrinsic.rotation),
            float(c.max_pose_gap),
            float(c.min_baseline),
            int(c.min_matches),
            float(c.min_inlier_ratio),
            **smoothing,
            stabiliser=DepthStabiliser(float(c.stabilise)) if float(c.stabilise) > 0 else None,
        )
    elif mode == "sparse":
        from .sparse import SparseScale

        estimator = SparseScale(
            extrinsic(c.sparse.translation, c.sparse.rotation),
            int(c.sparse.min_points),
            float(c.min_inlier_ratio),
            float(c.sparse.max_age),
            **smoothing,
        )
    else:
        raise ValueError(f"scale.mode must be one of {', '.join(SCALE_MODES)}, got {mode!r}")
    if isinstance(estimator, FilteredEstimator):
        _check_not_negative(smoothing)
    return estimator


def _check_stabilise(weight: float, mode: str) -> None:
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"scale.stabilise must be in [0, 1), got {weight}")
    if weight > 0 and mode != "trajectory":
        raise ValueError("scale.stabilise needs the odometry of scale.mode trajectory (set it to 0)")


def _check_not_negative(values: dict[str, float]) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"scale.filter.{name} must be >= 0, got {value}")
