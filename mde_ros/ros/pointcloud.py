"""sensor_msgs/PointCloud2 <-> structured numpy, vectorised (no per-point Python loops).

Writer: the [H, W] POINT_DTYPE array of `mde_ros.geometry.pack_points` (16-byte points: float32
x, y, z and the PCL-packed float32 `rgb`) becomes an *organized* cloud (height = H rows, width = W
columns, the image layout after `points.stride`), NaN for invalid points, `is_dense = False`.

Reader: any PointCloud2 (any field order, offsets, point_step padding, byte order) -> a
structured array with one field per PointField, [height, width] when organized, else [N].
"""

from __future__ import annotations

import array
from typing import Any

import numpy as np

from ..geometry.pointcloud import POINT_DTYPE, pack_points
from .image_conversion import to_byte_array

# sensor_msgs/PointField datatype constants -> numpy kind and size.
_DATATYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
_FLOAT32 = 7


def point_fields(field_type: Any = None) -> list[Any]:
    """PointFields describing POINT_DTYPE (x, y, z, rgb as float32 at offsets 0, 4, 8, 12);
    `field_type` is another PointField class (e.g. rosbags') instead of rclpy's."""
    if field_type is None:
        from sensor_msgs.msg import PointField as field_type

    return [
        field_type(name=name, offset=POINT_DTYPE.fields[name][1], datatype=_FLOAT32, count=1)
        for name in POINT_DTYPE.names
    ]


def cloud_msg(packed: np.ndarray, header: Any = None) -> Any:
    """[H, W] (organized) or [N] POINT_DTYPE array -> sensor_msgs/PointCloud2 (one copy)."""
    if packed.dtype != POINT_DTYPE:
        raise ValueError(f"expected POINT_DTYPE points, got {packed.dtype}")
    if packed.ndim == 1:
        packed = packed[None, :]
    return _cloud_message(to_byte_array(packed), int(packed.shape[0]), int(packed.shape[1]), header)


class CloudPacker:
    """Builds depth/points messages into one reused buffer (per output size).

    A fresh 5 MB buffer per frame costs more in page faults than the packing itself (the kernel
    zeroes every new page); rclpy serialises during publish(), so the buffer is free again
    as soon as publish() returns. Use one packer per publisher, from one thread.
    """

    def __init__(self) -> None:
        self._buffer: array.array | None = None
        self._view: np.ndarray | None = None

    def pack(self, points: np.ndarray, colors: np.ndarray | None, header: Any = None) -> Any:
        """[H, W, 3] float32 xyz (+ [H, W, 3] uint8 RGB) -> PointCloud2 (written by pack_points)."""
        height, width = points.shape[:2]
        if self._view is None or self._view.shape != (height, width):
            self._buffer = array.array("B", bytes(height * width * POINT_DTYPE.itemsize))
            self._view = np.frombuffer(self._buffer, POINT_DTYPE).reshape(height, width)
        pack_points(points, colors, out=self._view)
        return _cloud_message(self._buffer, height, width, header)


def _cloud_message(data: array.array, height: int, width: int, header: Any) -> Any:
    from sensor_msgs.msg import PointCloud2

    # check_fields=True: the data setter then keeps our array.array instead of copying it.
    msg = PointCloud2(check_fields=True)
    if header is not None:
        msg.header = header
    msg.height, msg.width = height, width
    msg.fields = point_fields()
    msg.is_bigendian = False  # POINT_DTYPE is little-endian on every host
    msg.point_step = POINT_DTYPE.itemsize
    msg.row_step = msg.point_step * width
    msg.data = data
    msg.is_dense = False  # NaN points mark invalid depth
    return msg


def cloud_dtype(fields: list[Any], point_step: int, is_bigendian: bool) -> np.dtype:
    """numpy dtype of one point as the PointFields describe it (padding kept by `itemsize`)."""
    order = ">" if is_bigendian else "<"
    names, formats, offsets = [], [], []
    for field in fields:
        if field.datatype not in _DATATYPES:
            raise ValueError(f"PointField {field.name!r} has unknown datatype {field.datatype}")
        kind = order + _DATATYPES[field.datatype]
        names.append(field.name)
        formats.append((kind, (field.count,)) if field.count > 1 else kind)
        offsets.append(field.offset)
    return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": point_step})


def cloud_array(msg: Any) -> np.ndarray:
    """PointCloud2 -> structured numpy view ([height, width] when organized, [width] otherwise)."""
    dtype = cloud_dtype(list(msg.fields), msg.point_step, bool(msg.is_bigendian))
    data = np.frombuffer(msg.data, np.uint8)
    if msg.row_step < msg.width * msg.point_step or data.size < msg.row_step * msg.height:
        raise ValueError(
            f"PointCloud2 is inconsistent: {data.size} bytes for {msg.height} rows of "
            f"row_step {msg.row_step} (width {msg.width} x point_step {msg.point_step})"
        )
    points = np.ndarray(
        shape=(msg.height, msg.width),
        dtype=dtype,
        buffer=data,
        strides=(msg.row_step, msg.point_step),
    )
    return points if msg.height > 1 else points.reshape(-1)  # height 0: an empty cloud


def xyz_from_cloud(msg: Any) -> np.ndarray:
    """float32 [..., 3] x, y, z of a cloud (a copy), e.g. for sparse metric points."""
    points = cloud_array(msg)
    return np.stack([points[name].astype(np.float32) for name in ("x", "y", "z")], axis=-1)


def unpack_rgb(packed_rgb: np.ndarray) -> np.ndarray:
    """float32 PCL-packed colours -> uint8 [..., 3] RGB."""
    bits = np.ascontiguousarray(packed_rgb, dtype=np.float32).view(np.uint32)
    return np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=-1).astype(np.uint8)
