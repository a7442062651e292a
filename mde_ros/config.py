"""The node's configuration, ROS-free and typed: the ONE place each default and each choice list lives.

One frozen dataclass per area. A field's dotted path is its ROS parameter name (`points.stride`,
`scale.filter.max_jump`); the `model` area is flat (`model`, `backend`, ...). `ros/parameters.py`
derives its declarations (names, defaults, types, choices) from these classes and adds descriptions
and ranges; config/depth.yaml holds the same defaults (a test keeps it in sync); `scale/factory.py`
builds the estimator from `ScaleConfig`. Settings are immutable: a change is a new object
(`with_values`), so a reader holding one sees one consistent set of values.
"""

from __future__ import annotations

import array
import dataclasses
import typing
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

BACKENDS = ("auto", "onnxruntime", "tensorrt", "torch")
RELIABILITIES = ("best_effort", "reliable", "system_default")
SCALE_MODES = ("none", "fixed", "intrinsics", "trajectory", "sparse")
POSE_TYPES = ("odom", "pose")
IMAGE_TRANSPORTS = ("raw", "compressed")
PREPROCESS_MODES = ("fast", "reference")
PRECISIONS = ("fp16", "fp32")  # TensorRT engines and torch on CUDA (CPU backends run fp32)
# static: the TensorRT engine's profile is min = opt = max = the network input of the first frame
# (a fixed camera: fastest kernels, least memory); dynamic: one profile around input_size for any size.
ENGINE_PROFILES = ("static", "dynamic")

IDENTITY_TRANSLATION = (0.0, 0.0, 0.0)
IDENTITY_ROTATION = (0.0, 0.0, 0.0, 1.0)  # quaternion x, y, z, w

FLAT = {"flat": True}  # metadata: the area's fields are top-level names (no prefix)


def _choice(default: str, choices: tuple[str, ...]) -> Any:
    return field(default=default, metadata={"choices": choices})


@dataclass(frozen=True)
class ModelConfig:
    model: str = "default"
    backend: str = _choice("auto", BACKENDS)
    device: str = "auto"  # auto | cpu | cuda | cuda:N (checked by inference.cuda_probe.parse_device)
    engine_dir: str = ""  # "" = the default cache folder
    threads: int = 0  # 0 = runtime default
    input_size: int = 0  # 0 = the model's default
    preprocess: str = _choice("fast", PREPROCESS_MODES)
    precision: str = _choice("fp16", PRECISIONS)
    engine_profile: str = _choice("static", ENGINE_PROFILES)


@dataclass(frozen=True)
class InputConfig:
    image_transport: str = _choice("raw", IMAGE_TRANSPORTS)


@dataclass(frozen=True)
class PointsConfig:
    enabled: bool = True
    stride: int = 1
    max_range: float = 0.0  # 0 = no limit


@dataclass(frozen=True)
class ColorizedConfig:
    enabled: bool = True


@dataclass(frozen=True)
class DepthConfig:
    max: float = 0.0  # 0 = no limit


@dataclass(frozen=True)
class RelativeConfig:
    publish: bool = True


@dataclass(frozen=True)
class QosEndpointConfig:
    reliability: str = _choice("best_effort", RELIABILITIES)
    depth: int = 1


@dataclass(frozen=True)
class QosConfig:
    # Inputs: best effort matches every camera driver. Outputs: reliable (rviz subscribes reliable).
    input: QosEndpointConfig = QosEndpointConfig()
    output: QosEndpointConfig = QosEndpointConfig(reliability="reliable")


@dataclass(frozen=True)
class TransformConfig:
    translation: tuple[float, ...] = IDENTITY_TRANSLATION
    rotation: tuple[float, ...] = IDENTITY_ROTATION
    frame: str = ""  # expected Odometry child_frame_id; "" = accept any


@dataclass(frozen=True)
class SparseConfig:
    translation: tuple[float, ...] = IDENTITY_TRANSLATION
    rotation: tuple[float, ...] = IDENTITY_ROTATION
    frame: str = ""  # expected sparse_points header.frame_id; "" = accept any
    min_points: int = 20
    max_age: float = 0.5


@dataclass(frozen=True)
class FilterConfig:
    time_constant: float = 2.0
    max_jump: float = 0.3


@dataclass(frozen=True)
class ScaleConfig:
    mode: str = _choice("none", SCALE_MODES)
    fixed_scale: float = 1.0
    fixed_shift: float = 0.0
    camera_height: float = 0.0  # 0 = unknown
    camera_pitch: float = 0.0
    ground_region: float = 0.4
    min_inlier_ratio: float = 0.3
    pose_type: str = _choice("odom", POSE_TYPES)
    max_pose_gap: float = 0.1
    min_baseline: float = 0.05
    min_matches: int = 30
    extrinsic: TransformConfig = TransformConfig()
    sparse: SparseConfig = SparseConfig()
    filter: FilterConfig = FilterConfig()
    # trajectory mode: blend weight of the previous depth moved into the view with the odometry
    # (mde_ros.scale.stabiliser); 0 = off
    stabilise: float = 0.0


@dataclass(frozen=True)
class NodeConfig:
    model: ModelConfig = field(default=ModelConfig(), metadata=FLAT)
    input: InputConfig = field(default=InputConfig(), metadata=FLAT)
    points: PointsConfig = PointsConfig()
    colorized: ColorizedConfig = ColorizedConfig()
    depth: DepthConfig = DepthConfig()
    relative: RelativeConfig = RelativeConfig()
    qos: QosConfig = QosConfig()
    scale: ScaleConfig = ScaleConfig()


@dataclass(frozen=True)
class Setting:
    """One leaf of a config: its dotted name, default and allowed values (None = any)."""

    name: str
    default: Any
    choices: tuple[str, ...] | None


def settings(cls: type = NodeConfig, prefix: str = "") -> Iterator[Setting]:
    """Every leaf of `cls` in declaration order, with its default."""
    yield from _walk(cls(), prefix)


def flat(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted name -> value of every leaf of a config object."""
    return {s.name: s.default for s in _walk(config, prefix)}


def _walk(obj: Any, prefix: str) -> Iterator[Setting]:
    """The leaves of `obj` (a config instance) with their current values."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            yield from _walk(value, prefix if f.metadata.get("flat") else f"{prefix}{f.name}.")
        else:
            yield Setting(f"{prefix}{f.name}", value, f.metadata.get("choices"))


def from_flat(cls: type, values: dict[str, Any], prefix: str = "") -> Any:
    """A `cls` from dotted names (nested dicts allowed); missing names take the defaults.

    A name `cls` does not have raises ValueError (a typo must not silently become a default).
    """
    values = dotted(values)
    known = {s.name for s in settings(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown setting(s): {', '.join(prefix + name for name in unknown)}")
    return _build(cls, values, "")


def with_values(config: Any, changes: dict[str, Any]) -> Any:
    """A copy of `config` with some dotted names changed (the original is immutable)."""
    return from_flat(type(config), {**flat(config), **changes})


def scale_config(values: dict[str, Any]) -> ScaleConfig:
    """ScaleConfig from names relative to `scale.` ({"mode": "sparse", "filter.max_jump": 0.5})."""
    return from_flat(ScaleConfig, values, "scale.")


def _build(cls: type, values: dict[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            sub = prefix if f.metadata.get("flat") else f"{prefix}{f.name}."
            kwargs[f.name] = _build(kind, values, sub)
        elif f"{prefix}{f.name}" in values:
            value = values[f"{prefix}{f.name}"]
            # ROS hands out arrays as lists / array.array: keep the config hashable and immutable.
            kwargs[f.name] = tuple(value) if isinstance(value, (list, tuple, array.array)) else value
    return cls(**kwargs)


def dotted(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict):
            out.update(dotted(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
