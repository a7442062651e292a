"""The depth node's parameters: mde_ros.config's settings as ROS parameter declarations.

Names, defaults (which fix the types) and choice lists come from mde_ros.config (add a field there
to add a parameter, and its words here in DOCS). Each row adds a description, an optional range (enforced by
rclpy through the ParameterDescriptor) and an optional extra check run both at start-up and in
the on-set-parameters callback, so a bad value is rejected with a reason a person can act on.
`read_only` marks parameters that need a restart (model, backend, sizes, QoS).
config/depth.yaml holds the same defaults; a test keeps it in sync with mde_ros.config.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import config

Check = Callable[[Any], str | None]  # value -> rejection reason, or None when fine


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


def device_value(value: Any) -> str | None:
    from ..inference.cuda_probe import parse_device

    try:
        parse_device(value)
    except ValueError as exc:
        return str(exc)
    return None


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


@dataclass(frozen=True)
class Doc:
    """What a person reads and rclpy enforces for one setting of mde_ros.config."""

    description: str
    read_only: bool = False
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None
    check: Check | None = None


_R = True  # read_only: needs a restart
# Names, defaults, types and choices come from mde_ros.config; this adds the words and the ranges.
DOCS: dict[str, Doc] = {
    "model": Doc(
        "Model: `default` (embedded, offline), a registry name, or a path to .onnx / .pth / HF folder.",
        _R,
        check=not_empty,
    ),
    "backend": Doc("Inference backend.", _R),
    "device": Doc(
        "Where inference runs, for every backend: auto (first CUDA GPU if one is usable, else CPU) | "
        "cpu | cuda | cuda:N.",
        _R,
        check=device_value,
    ),
    "engine_dir": Doc("Where exported ONNX files and TensorRT engines are cached ('' = default cache).", _R),
    "threads": Doc("CPU threads for inference (0 = runtime default).", _R, int_range=(0, 256)),
    "input_size": Doc(
        "Short side of the network input in pixels, rounded to the model's multiple "
        "(0 = the model's default).",
        _R,
        int_range=(0, 4096),
    ),
    "preprocess": Doc(
        "Input resize: fast (nearest multiple of the patch, uint8 cubic) or reference (Depth Anything's "
        "recipe: lower_bound rounding, float cubic resize, align_corners output resize).",
        _R,
    ),
    "precision": Doc(
        "TensorRT engine and torch-on-CUDA precision (CPU backends run fp32). fp32 where an fp16 "
        "engine is refused by its self-check (TensorRT 10.3 / JetPack 6).",
        _R,
    ),
    "engine_profile": Doc(
        "TensorRT profile: static (engine built or loaded at the first frame for its network input, "
        "min = opt = max: fastest, least memory; another size later gets its own engine) or dynamic "
        "(one engine around input_size for any frame size, built at start-up).",
        _R,
    ),
    "points.enabled": Doc("Publish depth/points."),
    "points.stride": Doc(
        "Keep every N-th row and column of the cloud (1 = full, organized).", int_range=(1, 64)
    ),
    "points.max_range": Doc(
        "Points farther than this are +Inf (REP 118 'too far'), metres (0 = no limit).",
        float_range=(0.0, 1000.0),
    ),
    "colorized.enabled": Doc("Publish depth/colorized (bgr8, for people)."),
    "depth.max": Doc(
        "Metric depth above this is +Inf (REP 118 'too far') in every output, metres (0 = no limit).",
        float_range=(0.0, 1000.0),
    ),
    "relative.publish": Doc(
        "Publish depth/relative (32FC1, unit-less, median 1; relative models only). "
        "depth/image and depth/points carry metres only, whatever this says."
    ),
    "image_transport": Doc(
        "raw: sensor_msgs/Image on `image`; compressed: sensor_msgs/CompressedImage (jpeg/png) on "
        "`<image>/compressed` (image_transport's naming).",
        _R,
    ),
    "qos.input.reliability": Doc("image/camera_info reliability.", _R),
    "qos.input.depth": Doc("image/camera_info history depth.", _R, int_range=(1, 100)),
    "qos.output.reliability": Doc("Output reliability (rviz needs reliable).", _R),
    "qos.output.depth": Doc("Output history depth.", _R, int_range=(1, 100)),
    # Metric scale (semantics: mde_ros.scale, see the scale section of the README).
    "scale.mode": Doc("Metric scale source.", _R),
    "scale.fixed_scale": Doc("fixed mode: s in 1/depth = s*d + t.", _R, float_range=(1e-9, 1e9)),
    "scale.fixed_shift": Doc("fixed mode: t in 1/depth = s*d + t.", _R, float_range=(-1e9, 1e9)),
    "scale.camera_height": Doc(
        "intrinsics mode: camera height above the ground, metres (0 = unknown).", _R, float_range=(0.0, 100.0)
    ),
    "scale.camera_pitch": Doc(
        "intrinsics mode: prior camera pitch, degrees (down positive).", _R, float_range=(-90.0, 90.0)
    ),
    "scale.ground_region": Doc(
        "intrinsics mode: bottom fraction of the image searched for the ground.", _R, float_range=(0.05, 1.0)
    ),
    "scale.min_inlier_ratio": Doc(
        "intrinsics mode: minimum ground-plane inlier ratio.", _R, float_range=(0.0, 1.0)
    ),
    "scale.pose_type": Doc(
        "trajectory mode: odom = nav_msgs/Odometry on `odom`, pose = geometry_msgs/PoseStamped on `pose`.", _R
    ),
    "scale.max_pose_gap": Doc(
        "trajectory mode: max time between a frame and its pose, s.", _R, float_range=(0.0, 10.0)
    ),
    "scale.min_baseline": Doc(
        "trajectory mode: minimum camera motion between frames, m.", _R, float_range=(0.0, 100.0)
    ),
    "scale.min_matches": Doc("trajectory mode: minimum feature matches.", _R, int_range=(1, 100000)),
    "scale.extrinsic.translation": Doc(
        "Pose frame -> camera optical frame translation [x, y, z], m.", _R, check=vector(3)
    ),
    "scale.extrinsic.rotation": Doc(
        "Pose frame -> camera optical frame rotation quaternion [x, y, z, w].",
        _R,
        check=vector(4, unit_norm=True),
    ),
    "scale.extrinsic.frame": Doc(
        "trajectory mode: expected Odometry child_frame_id (the frame the extrinsic starts from); "
        "other frames are refused and counted ('' = accept any).",
        _R,
    ),
    "scale.sparse.translation": Doc(
        "sparse mode: points frame -> camera optical frame translation [x, y, z], m.", _R, check=vector(3)
    ),
    "scale.sparse.rotation": Doc(
        "sparse mode: points frame -> camera optical frame rotation [x, y, z, w].",
        _R,
        check=vector(4, unit_norm=True),
    ),
    "scale.sparse.frame": Doc(
        "sparse mode: expected sparse_points header.frame_id; other frames are refused and counted "
        "('' = accept any).",
        _R,
    ),
    "scale.sparse.min_points": Doc("sparse mode: minimum points in the image.", _R, int_range=(1, 1000000)),
    "scale.sparse.max_age": Doc(
        "sparse mode: ignore sparse points older than this relative to the frame, s.",
        _R,
        float_range=(0.0, 60.0),
    ),
    "scale.filter.time_constant": Doc("Scale smoothing time constant, s.", _R, float_range=(0.0, 3600.0)),
    "scale.filter.max_jump": Doc(
        "Largest accepted relative scale change per update.", _R, float_range=(0.0, 100.0)
    ),
    "scale.stabilise": Doc(
        "trajectory mode: blend the previous metric depth, moved into the view with the odometry, "
        "into the new one with this weight where the two agree within 10 % (0 = off).",
        _R,
        float_range=(0.0, 0.95),
    ),
}


def _row(setting: config.Setting) -> ParamDef:
    doc = DOCS[setting.name]  # KeyError here: a config field without its words in DOCS
    default = list(setting.default) if isinstance(setting.default, tuple) else setting.default
    description = doc.description
    if setting.choices:
        description += " One of: " + " | ".join(setting.choices) + "."
    fields = {k: v for k, v in vars(doc).items() if k != "description"}
    return ParamDef(setting.name, default, description, choices=setting.choices, **fields)


PARAMETERS: tuple[ParamDef, ...] = tuple(_row(s) for s in config.settings())
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
    from rclpy.exceptions import InvalidParameterTypeException

    try:
        node.declare_parameters("", [(p.name, p.default, descriptor(p)) for p in PARAMETERS])
    except InvalidParameterTypeException as exc:  # e.g. `-p depth.max:=5`: say to write 5.0
        from .node_help import ParameterTypeError, type_error_message

        raise ParameterTypeError(type_error_message(exc)) from None
    return read_all(node)


def read_all(node: Any) -> dict[str, Any]:
    """name -> current value of every (declared) parameter."""
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


def node_config(values: dict[str, Any]) -> config.NodeConfig:
    """The typed, immutable settings for parameter values (name -> value, as declare_all returns)."""
    return config.from_flat(config.NodeConfig, values)


def _plain(value: Any) -> Any:
    """rclpy returns arrays as array.array; hand out lists."""
    return list(value) if hasattr(value, "tolist") or type(value).__name__ == "array" else value
