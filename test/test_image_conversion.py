"""sensor_msgs/Image <-> numpy and PointCloud2 packing, without a running ROS graph."""

from __future__ import annotations

import array
import math

import numpy as np
import pytest

from mde_ros.errors import InvalidInputError
from mde_ros.geometry import POINT_DTYPE, CameraIntrinsics, backproject, pack_points
from mde_ros.ros.image_conversion import (
    array_from_msg,
    bgr_msg,
    depth_msg,
    image_array,
    image_msg,
    rgb_from_image,
    rgb_from_msg,
)
from mde_ros.ros.pointcloud import cloud_array, cloud_msg, unpack_rgb, xyz_from_cloud


@pytest.fixture
def rgb(rng) -> np.ndarray:
    return rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def raw(values: np.ndarray, pad: int = 0, big_endian: bool = False) -> tuple[int, bytes]:
    """(step, bytes) of an image with `pad` bytes of row padding, in the given byte order."""
    if values.dtype.itemsize > 1:
        values = values.astype(values.dtype.newbyteorder(">" if big_endian else "<"))
    rows = values.reshape(values.shape[0], -1).view(np.uint8)
    padded = np.concatenate([rows, np.full((rows.shape[0], pad), 0xAB, np.uint8)], axis=1)
    return padded.shape[1], padded.tobytes()


@pytest.mark.parametrize("pad", [0, 3])
@pytest.mark.parametrize(
    "encoding, make",
    [
        ("rgb8", lambda c: c),
        ("bgr8", lambda c: c[..., ::-1]),
        ("rgba8", lambda c: np.dstack([c, np.full(c.shape[:2], 9, np.uint8)])),
        ("bgra8", lambda c: np.dstack([c[..., ::-1], np.full(c.shape[:2], 9, np.uint8)])),
    ],
)
def test_colour_encodings_give_rgb(rgb, encoding, make, pad):
    step, data = raw(np.ascontiguousarray(make(rgb)), pad)
    out = rgb_from_image(encoding, 5, 7, step, False, array.array("B", data))
    assert out.shape == (5, 7, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, rgb)


def test_rgb8_is_a_zero_copy_view(rgb):
    step, data = raw(rgb, pad=4)
    buffer = array.array("B", data)
    out = rgb_from_image("rgb8", 5, 7, step, False, buffer)
    assert np.shares_memory(out, np.frombuffer(buffer, np.uint8))
    assert not out.flags.writeable


@pytest.mark.parametrize("pad", [0, 1])
def test_mono8_replicated(rgb, pad):
    gray = rgb[..., 0].copy()
    step, data = raw(gray, pad)
    out = rgb_from_image("mono8", 5, 7, step, False, data)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], gray)


@pytest.mark.parametrize("big_endian", [False, True])
@pytest.mark.parametrize("pad", [0, 2])
def test_mono16_stretch_and_byte_order(big_endian, pad):
    values = np.array([[1000, 2000, 3000], [4000, 5000, 4095]], np.uint16)
    step, data = raw(values, pad, big_endian)
    native = image_array("mono16", 2, 3, step, big_endian, data)
    np.testing.assert_array_equal(native, values)  # byte order honoured
    out = rgb_from_image("mono16", 2, 3, step, big_endian, data)
    expected = np.round((values.astype(np.float64) - 1000) * 255 / 4000).astype(np.uint8)
    np.testing.assert_allclose(out[..., 0], expected, atol=1)
    assert out[0, 0, 0] == 0 and out[1, 1, 1] == 255


def test_mono16_constant_image_does_not_divide_by_zero():
    out = rgb_from_image("mono16", 2, 2, 4, False, np.full((2, 2), 7, np.uint16).tobytes())
    assert out.shape == (2, 2, 3) and np.all(out == 0)


@pytest.mark.parametrize("big_endian", [False, True])
def test_float_depth_roundtrip_and_big_endian(rng, big_endian):
    depth = rng.random((4, 6)).astype(np.float32)
    depth[1, 2] = np.nan
    step, data = raw(depth, pad=4, big_endian=big_endian)
    out = image_array("32FC1", 4, 6, step, big_endian, data)
    np.testing.assert_array_equal(out, depth)
    msg = depth_msg(depth)
    assert (msg.encoding, msg.height, msg.width, msg.step) == ("32FC1", 4, 6, 24)
    np.testing.assert_array_equal(array_from_msg(msg), depth)


def test_output_messages_keep_header_and_layout(rng):
    from std_msgs.msg import Header

    hdr = Header(frame_id="cam_optical")
    hdr.stamp.sec, hdr.stamp.nanosec = 12, 345
    bgr = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    msg = bgr_msg(bgr, hdr)
    assert msg.header.frame_id == "cam_optical" and msg.header.stamp.nanosec == 345
    assert (msg.encoding, msg.step, len(msg.data)) == ("bgr8", 12, 36)
    np.testing.assert_array_equal(array_from_msg(msg), bgr)
    np.testing.assert_array_equal(rgb_from_msg(msg), bgr[..., ::-1])


@pytest.mark.parametrize(
    "fields, reason, text",
    [
        (("yuv422", 2, 2, 4, 8), "unsupported_encoding", "unsupported image encoding 'yuv422'"),
        (("32FC1", 2, 2, 8, 16), "unsupported_encoding", "unsupported image encoding '32FC1'"),
        (("rgb8", 0, 2, 6, 0), "empty_image", "empty"),
        (("rgb8", 2, 0, 0, 0), "empty_image", "empty"),
        (("rgb8", 2, 2, 5, 12), "bad_step", "step 5 is smaller than width*bytes per pixel = 2*3"),
        (("mono16", 2, 2, 3, 12), "bad_step", "step 3"),
        (("rgb8", 2, 2, 6, 11), "truncated_data", "has 11 bytes but step*height = 6*2 = 12"),
        (("rgb8", 4, 4, 12, 0), "truncated_data", "has 0 bytes"),
    ],
)
def test_bad_input_raises_specific_errors(fields, reason, text):
    encoding, height, width, step, size = fields
    with pytest.raises(InvalidInputError, match=text.replace("*", r"\*").replace("(", r"\(")) as info:
        rgb_from_image(encoding, height, width, step, False, bytes(size))
    assert info.value.reason == reason


def test_image_msg_rejects_wrong_dtype():
    with pytest.raises(ValueError, match="32FC1 needs 1 channel"):
        image_msg(np.zeros((2, 2), np.float64), "32FC1")


# --- PointCloud2 ----------------------------------------------------------------------------------


def _points(rng, stride: int = 1):
    depth = rng.uniform(0.5, 5.0, (12, 16)).astype(np.float32)
    depth[0, 0] = np.nan
    depth[2, 3] = 0.0
    intr = CameraIntrinsics(20.0, 22.0, 7.5, 5.5, 16, 12)
    colors = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    return depth, intr, backproject(depth, intr, stride, 4.0), colors[::stride, ::stride]


@pytest.mark.parametrize("stride", [1, 3])
def test_cloud_is_organized_with_nan_for_invalid(rng, stride):
    depth, intr, points, colors = _points(rng, stride)
    msg = cloud_msg(pack_points(points, colors))
    assert (
        (msg.height, msg.width)
        == points.shape[:2]
        == ((12 + stride - 1) // stride, (16 + stride - 1) // stride)
    )
    assert (msg.point_step, msg.row_step, msg.is_dense) == (16, 16 * msg.width, False)
    assert [(f.name, f.offset, f.datatype) for f in msg.fields] == [
        ("x", 0, 7),
        ("y", 4, 7),
        ("z", 8, 7),
        ("rgb", 12, 7),
    ]
    cloud = cloud_array(msg)
    z = depth[::stride, ::stride]
    valid, far = (z > 0) & (z <= 4.0), z > 4.0
    assert far.any() and np.isposinf(cloud["z"][far]).all() and np.isposinf(cloud["x"][far]).all()
    missing = ~valid & ~far
    assert np.isnan(cloud["z"][missing]).all() and np.isnan(cloud["x"][missing]).all()
    v, u = np.mgrid[0:12:stride, 0:16:stride]
    np.testing.assert_allclose(cloud["x"][valid], ((u - intr.cx) * z / intr.fx)[valid], rtol=1e-6)
    np.testing.assert_allclose(cloud["y"][valid], ((v - intr.cy) * z / intr.fy)[valid], rtol=1e-6)
    np.testing.assert_array_equal(unpack_rgb(cloud["rgb"]), colors)
    assert xyz_from_cloud(msg).shape == points.shape


def test_pack_points_colour_bits_match_pcl_layout():
    colors = np.array([[[0x12, 0x34, 0x56], [255, 0, 1]]], np.uint8)
    packed = pack_points(np.zeros((1, 2, 3), np.float32), colors)
    assert packed.dtype == POINT_DTYPE
    bits = packed["rgb"].view(np.uint32)
    assert bits.tolist() == [[0x123456, 0xFF0001]]


def test_cloud_reader_handles_padding_and_big_endian():
    from sensor_msgs.msg import PointCloud2, PointField

    values = np.array(
        [(1.0, -2.0, 3.5, 7), (math.nan, 0.0, 1.0, 9)],
        [("x", ">f4"), ("y", ">f4"), ("z", ">f4"), ("i", ">u2")],
    )
    padded = np.zeros(
        2,
        {
            "names": values.dtype.names,
            "formats": [values.dtype[n] for n in values.dtype.names],
            "offsets": [0, 4, 8, 12],
            "itemsize": 20,
        },
    )
    for name in values.dtype.names:
        padded[name] = values[name]
    msg = PointCloud2(height=1, width=2, point_step=20, row_step=40, is_bigendian=True)
    msg.fields = [
        PointField(name=n, offset=o, datatype=d, count=1)
        for n, o, d in [("x", 0, 7), ("y", 4, 7), ("z", 8, 7), ("i", 12, 4)]
    ]
    msg.data = array.array("B", padded.tobytes())
    cloud = cloud_array(msg)
    assert cloud.shape == (2,)
    np.testing.assert_array_equal(cloud["y"], [-2.0, 0.0])
    assert cloud["i"].tolist() == [7, 9]
    msg.row_step = 20
    with pytest.raises(ValueError, match="inconsistent"):
        cloud_array(msg)


def test_reused_buffers_match_the_one_shot_builders(rng):
    from mde_ros.ros.image_conversion import ImageWriter
    from mde_ros.ros.pointcloud import CloudPacker

    packer, writer = CloudPacker(), ImageWriter("32FC1")
    for stride in (1, 3, 1):  # size changes reallocate, same size reuses the buffer
        depth, _, points, colors = _points(rng, stride)
        first = packer.pack(points, colors)
        assert bytes(first.data) == bytes(cloud_msg(pack_points(points, colors)).data)
        assert (first.height, first.width, first.row_step) == (*points.shape[:2], 16 * points.shape[1])
        np.testing.assert_array_equal(array_from_msg(writer.write(depth)), depth)
    again = packer.pack(points, None)
    assert again.data is first.data and (unpack_rgb(cloud_array(again)["rgb"]) == 0).all()
    with pytest.raises(ValueError, match="32FC1 needs"):
        writer.write(depth.astype(np.float64))
