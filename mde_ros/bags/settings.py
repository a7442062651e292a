"""The depth node's parameters for offline runs: the node's own table (ros/parameters.py, ROS-free),
its params file (config/depth.yaml layout) and `name:=value` overrides, validated like the node."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import dotted
from ..ros.parameters import BY_NAME, PARAMETERS, validate
from .writer import BagError


def node_parameters(
    params_file: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()
) -> dict[str, Any]:
    """name -> value: the node's defaults, then `params_file`, then `name:=value` overrides."""
    values = {p.name: p.default for p in PARAMETERS}
    if params_file:
        values.update(_from_params_file(Path(params_file)))
    for item in overrides:
        name, sep, text = item.partition(":=")
        if not sep:
            raise BagError(
                f"parameter override {item!r} must look like name:=value (e.g. scale.mode:=sparse)"
            )
        values[name.strip()] = yaml.safe_load(text) if text.strip() else ""
    unknown = sorted(set(values) - set(BY_NAME))
    if unknown:
        raise BagError(f"unknown parameter(s) {', '.join(unknown)}; see config/depth.yaml for the names")
    values = {name: _as_default_type(name, value) for name, value in values.items()}
    problems = validate(values)
    if problems:
        raise BagError("invalid parameters: " + "; ".join(problems))
    return values


def _from_params_file(path: Path) -> dict[str, Any]:
    """The `ros__parameters` of the first node entry (e.g. `/**/depth_node`) in a ROS 2 params file."""
    try:
        content = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise BagError(f"cannot read params file {path}: {exc}") from exc
    for entry in content.values() if isinstance(content, dict) else ():
        if isinstance(entry, dict) and isinstance(entry.get("ros__parameters"), dict):
            return dotted(entry["ros__parameters"])
    raise BagError(f"{path} has no `<node>: ros__parameters:` section")


def _as_default_type(name: str, value: Any) -> Any:
    """ROS parameters are typed by their default: an int given for a float parameter is a float."""
    default = BY_NAME[name].default
    if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (
        isinstance(default, list)
        and isinstance(value, list)
        and all(isinstance(v, int | float) for v in value)
    ):
        return [float(v) for v in value]
    if type(value) is not type(default):
        raise BagError(f"{name} must be a {type(default).__name__} like {default!r}, got {value!r}")
    return value
