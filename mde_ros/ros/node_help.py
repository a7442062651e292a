"""What `depth_node --help` prints, and parameter type errors rewritten as the command to type.

No rclpy here: `--help` must answer without starting ROS, and the table comes from the same
PARAMETERS rows that the node declares.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from ..errors import MdeRosError
from .parameters import BY_NAME, PARAMETERS

HELP_FLAGS = ("-h", "--help")
USAGE = """\
usage: depth_node [-h] [--ros-args [--params-file FILE] [-p NAME:=VALUE ...] [-r FROM:=TO ...]]

Monocular depth for ROS 2: subscribes to `image` (sensor_msgs/Image or CompressedImage) and
`camera_info`, publishes depth images, point clouds and /diagnostics (topic list: README, Node).

examples:
  depth_node --ros-args -p model:=default
  depth_node --ros-args --params-file config/depth.yaml -r __ns:=/camera -p depth.max:=5.0
  ros2 launch mde_ros depth.launch.py          # apt/colcon install; the launch file passes depth.yaml

Floats need a decimal point on the command line (-p depth.max:=5.0, not 5).
Parameters marked * are read-only (restart the node to change them); the others take
`ros2 param set` at run time."""


class ParameterTypeError(MdeRosError):
    """A parameter given with the wrong type (e.g. an integer for a float)."""


def wants_help(argv: Sequence[str]) -> bool:
    """-h/--help among the node's own arguments (those before --ros-args)."""
    own = list(argv)
    if "--ros-args" in own:
        own = own[: own.index("--ros-args")]
    return any(arg in HELP_FLAGS for arg in own)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (list, tuple)):
        return f"{_type_name(value[0]) if value else 'float'}[]"
    return {int: "int", float: "float", str: "string"}.get(type(value), type(value).__name__)


def _default_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if not value else value
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_default_text(v) for v in value) + "]"
    return str(value)


def parameter_table() -> str:
    """One line per parameter: name (* = read-only), type, default, description."""
    rows = [
        (p.name + ("*" if p.read_only else ""), _type_name(p.default), _default_text(p.default))
        for p in PARAMETERS
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = [f"  {'name':<{widths[0]}}  {'type':<{widths[1]}}  {'default':<{widths[2]}}  description"]
    for param, row in zip(PARAMETERS, rows):
        cells = "  ".join(f"{cell:<{width}}" for cell, width in zip(row, widths))
        lines.append(f"  {cells}  {param.description}")
    return "\n".join(lines)


def help_text() -> str:
    return f"{USAGE}\n\nparameters:\n{parameter_table()}"


def _article(word: str) -> str:
    return f"{'an' if word[:1] in 'aeiou' else 'a'} {word}"


_TYPE_ERROR = re.compile(r"parameter '([^']+)' to '([^']*)' of type '(\w+)', expecting type '(\w+)'")


def type_error_message(exc: Exception) -> str:
    """rclpy's InvalidParameterTypeException as one line that names the command to type instead."""
    match = _TYPE_ERROR.search(str(exc))
    if not match:
        return str(exc)
    name, value, given, expected = match.groups()
    leaf = name.rsplit(".", 1)[-1]
    if given == "INTEGER" and expected == "DOUBLE":
        fixed = f"{value}.0"
        return (
            f"parameter {name} is a float and got the integer {value}: "
            f"use -p {name}:={fixed} (in a params file: `{leaf}: {fixed}`)"
        )
    param = BY_NAME.get(name)
    example = _default_text(param.default) if param is not None else "..."
    return (
        f"parameter {name} expects {_article(expected.lower())} value and got {given.lower()} {value!r}: "
        f"e.g. -p {name}:={example}"
    )
