"""sensor_msgs/Image <-> numpy, written with numpy (ROS 2's cv_bridge is not on PyPI).

The core functions take the raw Image fields (encoding, height, width, step, is_bigendian, data)
and never import rclpy, so they are testable and usable without ROS; `rgb_from_msg`,
`array_from_msg` and the `*_msg` builders are thin wrappers around them.

Zero copy: `image_array` returns a strided *view* of the message buffer (rclpy hands us an
`array.array('B')`), honouring row padding (`step`). `rgb_from_image` then copies at most once:
rgb8 is returned as that view, the other encodings through a single cv2.cvtColor.

mono16 (IR cameras, raw 10/12/16-bit sensors) is mapped to 8 bits by a per-frame linear stretch
of its [min, max] range to [0, 255], then replicated to three channels: the depth networks are
trained on 8-bit images with normal contrast, and a fixed >> 8 would make 10/12-bit images black.
"""

from __future__ import annotations

import array
import sys
from typing import Any

import cv2
import numpy as np

from ..errors import InvalidInputError

# encoding -> (element dtype, channels)
ENCODINGS: dict[str, tuple[np.dtype, int]] = {
    "rgb8": (np.dtype(np.uint8), 3),
    "bgr8": (np.dtype(np.uint8), 3),
    "rgba8": (np.dtype(np.uint8), 4),
    "bgra8": (np.dtype(np.uint8), 4),
    "mono8": (np.dtype(np.uint8), 1),
    "8UC1": (np.dtype(np.uint8), 1),
    "8UC3": (np.dtype(np.uint8), 3),
    "mono16": (np.dtype(np.uint16), 1),
    "16UC1": (np.dtype(np.uint16), 1),
    "32FC1": (np.dtype(np.float32), 1),
}
# What the depth node accepts as camera input.
INPUT_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "mono16")
HOST_IS_BIGENDIAN = sys.byteorder == "big"

_TO_RGB = {
    "bgr8": cv2.COLOR_BGR2RGB,
    "rgba8": cv2.COLOR_RGBA2RGB,
    "bgra8": cv2.COLOR_BGRA2RGB,
    "mono8": cv2.COLOR_GRAY2RGB,
}


class ImageInputError(InvalidInputError):
    """A bad image message; `reason` is a short counter key for diagnostics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def image_array(
    encoding: str,
    height: int,
    width: int,
    step: int,
    is_bigendian: bool | int,
    data: Any,
    allowed: tuple[str, ...] | None = None,
) -> np.ndarray:
    """The image as a read-only [H, W] or [H, W, C] view of `data` (no copy), in native values.

    Multi-byte elements are read in the message's byte order (a non-native dtype view: numpy
    swaps on use), so big-endian publishers give the same values as little-endian ones.
    """
    if encoding not in ENCODINGS or (allowed is not None and encoding not in allowed):
        supported = ", ".join(allowed or tuple(ENCODINGS))
        raise ImageInputError(
            "unsupported_encoding", f"unsupported image encoding {encoding!r}; supported: {supported}"
        )
    if height <= 0 or width <= 0:
        raise ImageInputError("empty_image", f"image is empty ({width}x{height})")
    dtype, channels = ENCODINGS[encoding]
    pixel_bytes = dtype.itemsize * channels
    if step < width * pixel_bytes:
        raise ImageInputError(
            "bad_step",
            f"image step {step} is smaller than width*bytes per pixel = {width}*{pixel_bytes} for {encoding}",
        )
    flat = np.frombuffer(data, np.uint8)  # a view of array.array / bytes / numpy, no copy
    if flat.size < step * height:
        raise ImageInputError(
            "truncated_data",
            f"image data has {flat.size} bytes but step*height = {step}*{height} = {step * height} "
            "(truncated)",
        )
    if dtype.itemsize > 1:
        dtype = dtype.newbyteorder(">" if is_bigendian else "<")
    view = np.ndarray(
        shape=(height, width, channels),
        dtype=dtype,
        buffer=flat,
        strides=(step, pixel_bytes, dtype.itemsize),
    )
    view.flags.writeable = False
    return view[..., 0] if channels == 1 else view


def rgb_from_image(
    encoding: str, height: int, width: int, step: int, is_bigendian: bool | int, data: Any
) -> np.ndarray:
    """HxWx3 uint8 RGB for the pipeline from one of INPUT_ENCODINGS (at most one copy)."""
    image = image_array(encoding, height, width, step, is_bigendian, data, INPUT_ENCODINGS)
    if encoding == "rgb8":
        return image  # row padding is fine: OpenCV and numpy take a row stride
    if encoding == "mono16":
        return mono16_to_rgb(image)
    return cv2.cvtColor(_row_contiguous(image), _TO_RGB[encoding])


def mono16_to_rgb(image: np.ndarray) -> np.ndarray:
    """Per-frame linear stretch of [min, max] to [0, 255], replicated to 3 channels."""
    low, high = int(image.min()), int(image.max())
    gain = 255.0 / max(high - low, 1)
    gray = cv2.convertScaleAbs(image.astype(np.float32), alpha=gain, beta=-low * gain)
    return cv2.cvtColor(gray, cv2.COLOR_GRAY2RGB)


def _row_contiguous(image: np.ndarray) -> np.ndarray:
    """OpenCV needs contiguous pixels within a row; padded rows are fine, odd strides are not."""
    if image.strides[-1] == image.itemsize and (image.ndim == 2 or image.strides[1] == image.shape[2]):
        return image
    return np.ascontiguousarray(image)


# sensor_msgs/CompressedImage `format` values name the codec ("jpeg", "png") and, as written by
# image_transport, the source encoding ("rgb8; jpeg compressed bgr8"). OpenCV sniffs the codec
# from the bytes, so the format string is only used for the error message.
MAX_COMPRESSED_BYTES = 64 * 1024 * 1024


def rgb_from_compressed(fmt: str, data: Any) -> np.ndarray:
    """CompressedImage (jpeg / png, colour or grey, 8 or 16 bit) -> HxWx3 uint8 RGB.

    Undecodable or empty data raises ImageInputError("undecodable_image"), never a cv2 error.
    """
    buffer = np.frombuffer(data, np.uint8)
    if buffer.size == 0:
        raise ImageInputError("undecodable_image", "CompressedImage has no data")
    if buffer.size > MAX_COMPRESSED_BYTES:
        raise ImageInputError("undecodable_image", f"CompressedImage of {buffer.size} bytes is too large")
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error:
        image = None
    if image is None or image.size == 0:
        raise ImageInputError(
            "undecodable_image", f"CompressedImage ({fmt or 'no format'}) could not be decoded as jpeg/png"
        )
    if image.dtype == np.uint16:
        if image.ndim == 2:
            return mono16_to_rgb(image)
        image = (image >> 8).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --- message wrappers -------------------------------------------------------------------------


def array_from_msg(msg: Any, allowed: tuple[str, ...] | None = None) -> np.ndarray:
    """Any supported sensor_msgs/Image as a numpy view (e.g. 32FC1 depth in tests and tools)."""
    return image_array(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data, allowed)


def rgb_from_msg(msg: Any) -> np.ndarray:
    """sensor_msgs/Image (rgb8, bgr8, rgba8, bgra8, mono8, mono16) or CompressedImage -> HxWx3 RGB.

    Duck-typed (rclpy and rosbags messages alike): a message with `format` is a CompressedImage.
    """
    if hasattr(msg, "format") and not hasattr(msg, "encoding"):
        return rgb_from_compressed(msg.format, msg.data)
    return rgb_from_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian, msg.data)


def to_byte_array(values: np.ndarray) -> array.array:
    """One copy of a numpy array into the array.array('B') that rclpy messages store."""
    out = array.array("B")
    out.frombytes(np.ascontiguousarray(values).data.cast("B"))
    return out


def image_msg(values: np.ndarray, encoding: str, header: Any = None) -> Any:
    """numpy [H, W] / [H, W, C] -> sensor_msgs/Image in host byte order, no row padding (one-shot)."""
    return ImageWriter(encoding).write(values, header)


class ImageWriter:
    """Builds Image messages of one encoding into a reused buffer (no fresh pages per frame).

    rclpy serialises during publish(), so the buffer may be refilled once publish() returned.
    One writer per publisher, used from one thread.
    """

    def __init__(self, encoding: str) -> None:
        self.encoding = encoding
        self._buffer: array.array | None = None
        self._view: np.ndarray | None = None

    def write(self, values: np.ndarray, header: Any = None) -> Any:
        """[H, W] / [H, W, C] values of the encoding's dtype -> Image (host byte order, no padding)."""
        dtype, channels = ENCODINGS[self.encoding]
        if channels == 1 and values.ndim == 3 and values.shape[2] == 1:
            values = values[..., 0]
        shape = values.shape[:2] + ((channels,) if channels > 1 else ())
        if values.shape != shape or values.dtype != dtype:
            raise ValueError(
                f"{self.encoding} needs {channels} channel(s) of {dtype} ({shape}), "
                f"got {values.shape} {values.dtype}"
            )
        if self._view is None or self._view.shape != shape:
            self._buffer = array.array("B", bytes(values.nbytes))
            self._view = np.frombuffer(self._buffer, dtype).reshape(shape)
        self._view[...] = values
        return _image_message(
            self._buffer, self.encoding, shape[0], shape[1], shape[1] * channels * dtype.itemsize, header
        )


def _image_message(data: array.array, encoding: str, height: int, width: int, step: int, header: Any) -> Any:
    from sensor_msgs.msg import Image

    # check_fields=True: the data setter then keeps our array.array instead of copying it.
    msg = Image(check_fields=True)
    if header is not None:
        msg.header = header
    msg.height, msg.width, msg.step = int(height), int(width), int(step)
    msg.encoding = encoding
    msg.is_bigendian = HOST_IS_BIGENDIAN
    msg.data = data
    return msg


def depth_msg(depth: np.ndarray, header: Any = None) -> Any:
    """HxW float32 metres (NaN invalid) -> 32FC1 Image (REP 118)."""
    return image_msg(np.asarray(depth, np.float32), "32FC1", header)


def bgr_msg(bgr: np.ndarray, header: Any = None) -> Any:
    """HxWx3 uint8 BGR -> bgr8 Image."""
    return image_msg(bgr, "bgr8", header)
