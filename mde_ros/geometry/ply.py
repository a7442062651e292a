"""Binary little-endian PLY point clouds (x, y, z float32 + red, green, blue uint8)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

_VERTEX = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("red", "u1"), ("green", "u1"), ("blue", "u1")])


def write_ply(path: str | Path, points: np.ndarray, colors: np.ndarray | None = None) -> int:
    """Write the finite points of an [..., 3] array; returns how many were written."""
    xyz = points.reshape(-1, 3)
    keep = np.isfinite(xyz).all(axis=1)
    vertices = np.zeros(int(keep.sum()), _VERTEX)
    for axis, name in enumerate("xyz"):
        vertices[name] = xyz[keep, axis]
    if colors is not None:
        rgb = colors.reshape(-1, 3)[keep]
        vertices["red"], vertices["green"], vertices["blue"] = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    header = (
        "ply\nformat binary_little_endian 1.0\n"
        f"element vertex {len(vertices)}\n"
        "property float x\nproperty float y\nproperty float z\n"
        "property uchar red\nproperty uchar green\nproperty uchar blue\nend_header\n"
    )
    with open(path, "wb") as handle:
        handle.write(header.encode("ascii"))
        handle.write(vertices.tobytes())
    return len(vertices)


def read_ply(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read back what `write_ply` wrote: ([N,3] float32, [N,3] uint8)."""
    data = Path(path).read_bytes()
    end = data.index(b"end_header\n") + len(b"end_header\n")
    vertices = np.frombuffer(data, _VERTEX, offset=end)
    xyz = np.stack([vertices["x"], vertices["y"], vertices["z"]], axis=1)
    rgb = np.stack([vertices["red"], vertices["green"], vertices["blue"]], axis=1)
    return xyz, rgb
