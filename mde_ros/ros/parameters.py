"""The depth node's parameters: ONE table of declarations (add a row to add a parameter).

Each row gives the default (which fixes the type), a description, an optional range (enforced by
rclpy through the ParameterDescriptor) and an optional extra check run both at start-up and in
the on-set-parameters callback, so a bad value is rejected with a reason a person can act on.
`read_only` marks parameters that need a restart (model, backend, sizes, QoS).
config/depth.yaml holds the same defaults; a test keeps the two in sync.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Check = Callable[[Any], str | None]  # value -> rejection reason, or None when fine

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
RELIABILITY = ("best_effort", "reliable", "system_default")
SCALE_MODES = ("none", "fixed", "intrinsics", "trajectory", "sparse")
POSE_TYPES = ("odom", "pose")


def vector(length: int, unit_norm: bool = False) -> Check:
    def check(value: Any) -> str | None:
        values = list(value)
        if len(values) != length:
            return f"needs {length} numbers (got {len(values)})"
        if not all(math.isfinite(v) for v in values):
            return "must be finite numbers"
        if unit_norm and abs(math.sqrt(sum(v * v for v in values)) - 1.0) > 1e-3:
            return "must be a unit quaternion [x, y, z, w]"
        return None

    return check


def not_empty(value: Any) -> str | None:
    return None if str(value).strip() else "must not be empty"


@dataclass(frozen=True)
class ParamDef:
    name: str
    default: Any
    description: str
    read_only: bool = False
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    check: Check | None = None

    def reason(self, value: Any) -> str | None:
        """Why `value` is not acceptable (range included, for start-up values), or None."""
        bounds = self.int_range or self.float_range
        if bounds is not None and not bounds[0] <= value <= bounds[1]:
            return f"must be in [{bounds[0]}, {bounds[1]}] (got {value})"
        if self.choices is not None and value not in self.choices:
            return f"must be one of {', '.join(self.choices)} (got {value!r})"
        return self.check(value) if self.check else None


_R = True  # read_only: needs a restart
PARAMETERS: tuple[ParamDef, ...] = (
    ParamDef(
        "model",
        "default",
        "Model: `default` (embedded, offline), a registry name, or a path to .onnx / .pth / HF folder.",
        _R,
        check=not_empty,
    ),
    ParamDef(
        "backend", "auto", "Inference backend: auto | onnxruntime | tensorrt | torch.", _R, choices=BACKENDS
    ),
    ParamDef(
        "engine_dir",
        "",
        "Where exported ONNX files and TensorRT engines are cached ('' = default cache).",
        _R,
    ),
    ParamDef("threads", 0, "CPU threads for inference (0 = runtime default).", _R, int_range=(0, 256)),
    ParamDef(
        "input_size",
        0,
        "Short side of the network input in pixels, rounded to the model's "
        "multiple (0 = the model's default).",
        _R,
        int_range=(0, 4096),
    ),
    ParamDef(
        "preprocess",
        "fast",
        "Input resize: fast (nearest multiple, uint8) | reference (Depth Anything's recipe: "
        "lower_bound rounding, float cubic resize, align_corners output resize).",
        _R,
        choices=("fast", "reference"),
    ),
    ParamDef("points.enabled", True, "Publish depth/points."),
    ParamDef(
        "points.stride",
        1,
        "Keep every N-th row and column of the cloud (1 = full, organized).",
        int_range=(1, 64),
    ),
    ParamDef(
        "points.max_range",
        0.0,
        "Drop (NaN) points farther than this, metres (0 = no limit).",
        float_range=(0.0, 1000.0),
    ),
    ParamDef("colorized.enabled", True, "Publish depth/colorized (bgr8, for people)."),
    ParamDef(
        "depth.max",
        0.0,
        "Depth above this is invalid (NaN) in every output, metres (0 = no limit).",
        float_range=(0.0, 1000.0),
    ),
    ParamDef(
        "relative.publish",
        True,
        "Publish unit-less depth (median 1) while no metric scale "
        "exists; false = publish nothing until metric.",
    ),
    ParamDef(
        "qos.input.reliability",
        "best_effort",
        "image/camera_info reliability: best_effort | reliable | system_default.",
        _R,
        choices=RELIABILITY,
    ),
    ParamDef("qos.input.depth", 1, "image/camera_info history depth.", _R, int_range=(1, 100)),
    ParamDef(
        "qos.output.reliability",
        "reliable",
        "Output reliability (rviz needs reliable).",
        _R,
        choices=RELIABILITY,
    ),
    ParamDef("qos.output.depth", 1, "Output history depth.", _R, int_range=(1, 100)),
    # Metric scale (semantics: mde_ros.scale, see the scale section of the README).
    ParamDef(
        "scale.mode",
        "none",
        "Metric scale source: none | fixed | intrinsics | trajectory | sparse.",
        _R,
        choices=SCALE_MODES,
    ),
    ParamDef("scale.fixed_scale", 1.0, "fixed mode: s in 1/depth = s*d + t.", _R, float_range=(1e-9, 1e9)),
    ParamDef("scale.fixed_shift", 0.0, "fixed mode: t in 1/depth = s*d + t.", _R, float_range=(-1e9, 1e9)),
    ParamDef(
        "scale.camera_height",
        0.0,
        "intrinsics mode: camera height above the ground, metres (0 = unknown).",
        _R,
        float_range=(0.0, 100.0),
    ),
    ParamDef(
        "scale.camera_pitch",
        0.0,
        "intrinsics mode: prior camera pitch, degrees (down positive).",
        _R,
        float_range=(-90.0, 90.0),
    ),
    ParamDef(
        "scale.ground_region",
        0.4,
        "intrinsics mode: bottom fraction of the image searched for the ground.",
        _R,
        float_range=(0.05, 1.0),
    ),
    ParamDef(
        "scale.min_inlier_ratio",
        0.3,
        "intrinsics mode: minimum ground-plane inlier ratio.",
        _R,
        float_range=(0.0, 1.0),
    ),
    ParamDef(
        "scale.pose_type",
        "odom",
        "trajectory mode: odom (nav_msgs/Odometry) | pose (geometry_msgs/PoseStamped).",
        _R,
        choices=POSE_TYPES,
    ),
    ParamDef(
        "scale.max_pose_gap",
        0.1,
        "trajectory mode: max time between a frame and its pose, s.",
        _R,
        float_range=(0.0, 10.0),
    ),
    ParamDef(
        "scale.min_baseline",
        0.05,
        "trajectory mode: minimum camera motion between frames, m.",
        _R,
        float_range=(0.0, 100.0),
    ),
    ParamDef("scale.min_matches", 30, "trajectory mode: minimum feature matches.", _R, int_range=(1, 100000)),
    ParamDef(
        "scale.extrinsic.translation",
        [0.0, 0.0, 0.0],
        "Pose frame -> camera optical frame translation [x, y, z], m.",
        _R,
        check=vector(3),
    ),
    ParamDef(
        "scale.extrinsic.rotation",
        [0.0, 0.0, 0.0, 1.0],
        "Pose frame -> camera optical frame rotation quaternion [x, y, z, w].",
        _R,
        check=vector(4, unit_norm=True),
    ),
    ParamDef(
        "scale.sparse.translation",
        [0.0, 0.0, 0.0],
        "sparse mode: points frame -> camera optical frame translation [x, y, z], m.",
        _R,
        check=vector(3),
    ),
    ParamDef(
        "scale.sparse.rotation",
        [0.0, 0.0, 0.0, 1.0],
        "sparse mode: points frame -> camera optical frame rotation [x, y, z, w].",
        _R,
        check=vector(4, unit_norm=True),
    ),
    ParamDef(
        "scale.sparse.min_points", 20, "sparse mode: minimum points in the image.", _R, int_range=(1, 1000000)
    ),
    ParamDef(
        "scale.sparse.max_age",
        0.5,
        "sparse mode: ignore sparse points older than this relative to the frame, s.",
        _R,
        float_range=(0.0, 60.0),
    ),
    ParamDef(
        "scale.filter.time_constant", 2.0, "Scale smoothing time constant, s.", _R, float_range=(0.0, 3600.0)
    ),
    ParamDef(
        "scale.filter.max_jump",
        0.3,
        "Largest accepted relative scale change per update.",
        _R,
        float_range=(0.0, 100.0),
    ),
)
BY_NAME = {p.name: p for p in PARAMETERS}


def descriptor(param: ParamDef) -> Any:
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor

    desc = ParameterDescriptor(description=param.description, read_only=param.read_only)
    if param.int_range:
        desc.integer_range = [
            IntegerRange(from_value=param.int_range[0], to_value=param.int_range[1], step=1)
        ]
    if param.float_range:
        low, high = param.float_range
        desc.floating_point_range = [FloatingPointRange(from_value=low, to_value=high, step=0.0)]
    if param.choices:
        desc.additional_constraints = "one of: " + ", ".join(param.choices)
    return desc


def declare_all(node: Any) -> dict[str, Any]:
    """Declare every parameter on `node`; returns name -> value (from the params file / -p)."""
    node.declare_parameters("", [(p.name, p.default, descriptor(p)) for p in PARAMETERS])
    return {p.name: _plain(node.get_parameter(p.name).value) for p in PARAMETERS}


def validate(values: dict[str, Any]) -> list[str]:
    """Rejection reasons ("name: reason") for the given values; empty when all are fine."""
    problems = []
    for name, value in values.items():
        param = BY_NAME.get(name)
        if param is None:
            continue
        reason = param.reason(_plain(value))
        if reason:
            problems.append(f"{name}: {reason}")
    return problems


def scale_config(values: dict[str, Any]) -> dict[str, Any]:
    """The scale.* parameters with the prefix stripped (what mde_ros.scale.factory expects)."""
    return {name[len("scale.") :]: value for name, value in values.items() if name.startswith("scale.")}


def _plain(value: Any) -> Any:
    """rclpy returns arrays as array.array; hand out lists."""
    return list(value) if hasattr(value, "tolist") or type(value).__name__ == "array" else value
