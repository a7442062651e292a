"""Full ROS 2 message definitions (`ros2msg` schema text) for MCAP files.

A ROS 2 MCAP schema is the type's .msg text followed by every nested type's text, each after a
line of 80 '=' and `MSG: pkg/Type` — the layout rosbag2 writes and Foxglove reads.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

_PRIMITIVES = {
    "bool", "byte", "char", "float32", "float64", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64", "string", "wstring",
}  # fmt: skip
_SEPARATOR = "=" * 80


def _share_dirs() -> list[Path]:
    prefixes = [p for p in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    prefixes.append(sys.prefix)
    return [Path(p) / "share" for p in prefixes]


def _msg_file(type_name: str) -> Path:
    package, _, name = type_name.replace("/msg/", "/").partition("/")
    for share in _share_dirs():
        candidate = share / package / "msg" / f"{name}.msg"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no .msg file for {type_name} under {[str(s) for s in _share_dirs()]}")


def _dependencies(package: str, text: str) -> list[str]:
    found = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line or "=" in line.split()[0]:
            continue
        field_type = re.sub(r"\[.*\]$", "", line.split()[0])
        field_type = re.sub(r"<=\d+$", "", field_type)
        if field_type in _PRIMITIVES:
            continue
        if "/" not in field_type:
            field_type = "std_msgs/Header" if field_type == "Header" else f"{package}/{field_type}"
        found.append(field_type)
    return found


def message_definition(type_name: str) -> str:
    """`sensor_msgs/msg/Image` -> the full concatenated definition text."""
    root = type_name.replace("/msg/", "/")
    main_text = _msg_file(root).read_text()
    parts, seen = [main_text.strip()], {root}
    queue = _dependencies(root.split("/")[0], main_text)
    while queue:
        dep = queue.pop(0)
        if dep in seen:
            continue
        seen.add(dep)
        text = _msg_file(dep).read_text()
        parts.append(f"{_SEPARATOR}\nMSG: {dep}\n{text.strip()}")
        queue.extend(_dependencies(dep.split("/")[0], text))
    return "\n".join(parts) + "\n"
