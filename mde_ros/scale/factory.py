"""Build the scale estimator named by the node's `scale.*` parameters (the `scale.` prefix stripped)."""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import ScaleEstimator

MODES = ("none", "fixed", "intrinsics", "trajectory", "sparse")

DEFAULTS: dict[str, Any] = {
    "mode": "none",
    "fixed_scale": 1.0,
    "fixed_shift": 0.0,
    "camera_height": 0.0,
    "camera_pitch": 0.0,
    "ground_region": 0.4,
    "min_inlier_ratio": 0.3,
    "pose_type": "odom",
    "max_pose_gap": 0.1,
    "min_baseline": 0.05,
    "min_matches": 30,
    "extrinsic.translation": [0.0, 0.0, 0.0],
    "extrinsic.rotation": [0.0, 0.0, 0.0, 1.0],
    "sparse.translation": [0.0, 0.0, 0.0],
    "sparse.rotation": [0.0, 0.0, 0.0, 1.0],
    "sparse.min_points": 20,
    "sparse.max_age": 0.5,
    "filter.time_constant": 2.0,
    "filter.max_jump": 0.3,
}


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"filter": {"max_jump": 0.3}} and {"filter.max_jump": 0.3} both give the dotted form."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def create_estimator(config: dict[str, Any]) -> ScaleEstimator:
    """ScaleEstimator for `config` (missing keys take DEFAULTS); ValueError names a bad parameter."""
    from .filter import FilteredEstimator
    from .transforms import extrinsic

    c = {**DEFAULTS, **flatten(config)}
    mode = str(c["mode"]).strip().lower()
    smoothing = {"time_constant": float(c["filter.time_constant"]), "max_jump": float(c["filter.max_jump"])}
    estimator: ScaleEstimator
    if mode == "none":
        estimator = ScaleEstimator()
    elif mode == "fixed":
        from .base import FixedScale

        estimator = FixedScale(float(c["fixed_scale"]), float(c["fixed_shift"]))
    elif mode == "intrinsics":
        from .intrinsics import IntrinsicsScale

        estimator = IntrinsicsScale(
            float(c["camera_height"]),
            float(c["camera_pitch"]),
            float(c["ground_region"]),
            float(c["min_inlier_ratio"]),
            **smoothing,
        )
    elif mode == "trajectory":
        from .trajectory import TrajectoryScale

        if str(c["pose_type"]) not in ("odom", "pose"):
            raise ValueError(f"scale.pose_type must be odom or pose, got {c['pose_type']!r}")
        estimator = TrajectoryScale(
            extrinsic(c["extrinsic.translation"], c["extrinsic.rotation"]),
            float(c["max_pose_gap"]),
            float(c["min_baseline"]),
            int(c["min_matches"]),
            float(c["min_inlier_ratio"]),
            **smoothing,
        )
    elif mode == "sparse":
        from .sparse import SparseScale

        estimator = SparseScale(
            extrinsic(c["sparse.translation"], c["sparse.rotation"]),
            int(c["sparse.min_points"]),
            float(c["min_inlier_ratio"]),
            float(c["sparse.max_age"]),
            **smoothing,
        )
    else:
        raise ValueError(f"scale.mode must be one of {', '.join(MODES)}, got {mode!r}")
    if isinstance(estimator, FilteredEstimator):
        _check_not_negative(smoothing)
    return estimator


def _check_not_negative(values: dict[str, float]) -> None:
    for name, value in values.items():
        if not (np.isfinite(value) and value >= 0):
            raise ValueError(f"scale.filter.{name} must be >= 0, got {value}")
