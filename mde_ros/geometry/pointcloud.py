"""Vectorised back-projection and the x, y, z, rgb point layout used for PointCloud2."""

from __future__ import annotations

import numpy as np

from .intrinsics import CameraIntrinsics

# 16-byte point: float32 x, y, z and the PCL-style packed colour (uint32 0x00RRGGBB read as float32).
POINT_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("rgb", "<f4")])

_RAY_CACHE: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _rays(intr: CameraIntrinsics, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(u - cx)/fx per column and (v - cy)/fy per row, cached: they only change with CameraInfo."""
    key = (intr, stride)
    rays = _RAY_CACHE.get(key)
    if rays is None:
        u = np.arange(0, intr.width, stride, dtype=np.float32)
        v = np.arange(0, intr.height, stride, dtype=np.float32)
        rays = (
            (u - np.float32(intr.cx)) / np.float32(intr.fx),
            (v - np.float32(intr.cy)) / np.float32(intr.fy),
        )
        if len(_RAY_CACHE) > 16:
            _RAY_CACHE.clear()
        _RAY_CACHE[key] = rays
    return rays


def backproject(
    depth: np.ndarray, intr: CameraIntrinsics, stride: int = 1, max_range: float = 0.0
) -> np.ndarray:
    """Depth (HxW, metres along the optical axis) -> organised [H', W', 3] float32 x, y, z.

    x = (u - cx) z / fx, y = (v - cy) z / fy in the camera optical frame (REP 103: x right,
    y down, z forward). REP 118 semantics: no measurement (NaN, <= 0) gives NaN points; too far
    (+Inf depth, or beyond `max_range` when > 0) gives x = y = z = +Inf.
    """
    if depth.shape != (intr.height, intr.width):
        raise ValueError(f"depth {depth.shape[::-1]} does not match intrinsics {intr.width}x{intr.height}")
    z = depth[::stride, ::stride].astype(np.float32, copy=True)
    invalid = ~(z > 0)  # catches NaN too
    far = z > max_range if max_range > 0 else np.isposinf(z)
    z[invalid] = np.nan
    ray_x, ray_y = _rays(intr, stride)
    points = np.empty(z.shape + (3,), np.float32)
    with np.errstate(invalid="ignore"):  # inf * 0 on the principal ray: overwritten below
        np.multiply(z, ray_x[None, :], out=points[..., 0])
        np.multiply(z, ray_y[:, None], out=points[..., 1])
    points[..., 2] = z
    points[far] = np.inf
    return points


def pack_rgb(colors: np.ndarray) -> np.ndarray:
    """uint8 [..., 3] RGB -> float32 [...] holding 0x00RRGGBB bit patterns."""
    c = colors.astype(np.uint32)
    packed = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    return packed.view(np.float32)


def pack_points(
    points: np.ndarray, colors: np.ndarray | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """[H, W, 3] xyz (+ [H, W, 3] uint8 RGB) -> structured [H, W] array of POINT_DTYPE.

    `out`: an [H, W] POINT_DTYPE array to fill (e.g. a view of a reused message buffer).
    """
    if out is None:
        out = np.empty(points.shape[:2], POINT_DTYPE)
    out["x"] = points[..., 0]
    out["y"] = points[..., 1]
    out["z"] = points[..., 2]
    if colors is None:
        out["rgb"] = np.float32(0)
        return out
    # Write the colour bytes straight into the little-endian rgb field (B, G, R, 0): ~6x faster
    # than building uint32s with shifts, and the same bits as `pack_rgb`.
    raw = out.view(np.uint8).reshape(out.shape + (POINT_DTYPE.itemsize,))
    offset = POINT_DTYPE.fields["rgb"][1]
    for byte, channel in enumerate((2, 1, 0)):
        raw[..., offset + byte] = colors[..., channel]
    raw[..., offset + 3] = 0
    return out
