"""The ROS-free core: sizes, preprocessing, conventions, back-projection, the pipeline end to end."""

from __future__ import annotations

import numpy as np
import pytest

from mde_ros.errors import InvalidInputError
from mde_ros.geometry import CameraIntrinsics, backproject, pack_points
from mde_ros.geometry.ply import read_ply, write_ply
from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
from mde_ros.models.spec import METRIC_CANONICAL, ModelSpec
from mde_ros.pipeline import DepthPipeline, Frame
from mde_ros.processing import (
    Preprocessor,
    colorize,
    metric_depth,
    network_size,
    relative_depth_from_disparity,
)
from mde_ros.scale.base import FixedScale

INTR = CameraIntrinsics(520.0, 515.0, 319.5, 241.0, 640, 480)


@pytest.mark.parametrize(
    ("height", "width", "short", "expected"),
    [
        (480, 640, 252, (252, 336)),
        (640, 480, 252, (336, 252)),
        (480, 640, 518, (518, 686)),
        (100, 100, 250, (252, 252)),
    ],
)
def test_network_size_keeps_aspect_and_multiple(height, width, short, expected):
    size = network_size(height, width, short, 14)
    assert size == expected
    assert size[0] % 14 == 0 and size[1] % 14 == 0


def test_preprocess_normalises_like_imagenet(rng):
    spec = ModelSpec("x", "depth_anything", "disparity")
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    pixels = Preprocessor(spec, 252)(rgb)
    assert pixels.shape == (1, 3, 252, 336) and pixels.dtype == np.float32
    flat = np.full((480, 640, 3), 128, np.uint8)
    constant = Preprocessor(spec, 252)(flat)
    expected = (128 / 255 - np.asarray(spec.mean)) / np.asarray(spec.std)
    np.testing.assert_allclose(constant[0, :, 10, 10], expected, rtol=1e-5)


@pytest.mark.parametrize("short", [252, 518])
def test_preprocess_is_cubic_resize_then_per_channel_normalise(rng, short):
    """Depth Anything's transform: bicubic on the image (also when shrinking), then ImageNet
    normalisation, laid out NCHW; the per-channel path gives the same values as a per-pixel one."""
    import cv2

    spec = ModelSpec("x", "depth_anything", "disparity")
    rgb = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (9, 9), 3)
    pre = Preprocessor(spec, short)
    pixels = pre(rgb)
    h, w = pre.input_size(480, 640)
    resized = cv2.resize(rgb, (w, h), interpolation=cv2.INTER_CUBIC).astype(np.float64)
    expected = ((resized / 255 - np.asarray(spec.mean)) / np.asarray(spec.std)).transpose(2, 0, 1)[None]
    assert np.abs(pixels - expected).max() <= 1e-5
    assert pre(rgb) is pixels  # one buffer reused per size


def test_backproject_matches_pinhole_formula(rng):
    depth = rng.uniform(0.5, 5.0, (480, 640)).astype(np.float32)
    depth[10, 20] = np.nan
    depth[30, 40] = -1.0
    points = backproject(depth, INTR)
    v, u = 200, 500
    z = depth[v, u]
    np.testing.assert_allclose(
        points[v, u], [(u - INTR.cx) * z / INTR.fx, (v - INTR.cy) * z / INTR.fy, z], rtol=1e-6
    )
    assert np.isnan(points[10, 20]).all() and np.isnan(points[30, 40]).all()


def test_backproject_stride_and_max_range(rng):
    depth = rng.uniform(0.5, 5.0, (480, 640)).astype(np.float32)
    depth[28, 36] = 2.0
    points = backproject(depth, INTR, stride=4, max_range=3.0)
    assert points.shape == (120, 160, 3)
    np.testing.assert_allclose(
        points[7, 9], [(36 - INTR.cx) * 2 / INTR.fx, (28 - INTR.cy) * 2 / INTR.fy, 2], rtol=1e-6
    )
    z = points[..., 2]
    far = depth[::4, ::4] > 3.0
    assert far.any() and z[~far].max() <= 3.0
    assert np.isposinf(points[far]).all()  # REP 118: beyond range is +Inf, not "no measurement"


def test_backproject_rep118_nan_is_no_measurement_inf_is_too_far():
    intr = CameraIntrinsics(100.0, 100.0, 8.0, 6.0, 16, 12)
    depth = np.full((12, 16), 2.0, np.float32)
    depth[5, 5], depth[6, 6], depth[7, 7] = np.nan, 0.0, np.inf
    depth[:, 8] = np.inf  # on the principal column: inf * 0 must not turn into NaN
    points = backproject(depth, intr)
    assert np.isnan(points[5, 5]).all() and np.isnan(points[6, 6]).all()
    assert np.isposinf(points[7, 7]).all() and np.isposinf(points[:, 8]).all()
    assert np.isfinite(points[9, 9]).all()


def test_pack_points_layout_and_ply_round_trip(tmp_path, rng):
    points = rng.normal(size=(4, 5, 3)).astype(np.float32)
    points[0, 0] = np.nan
    colors = rng.integers(0, 256, (4, 5, 3), dtype=np.uint8)
    packed = pack_points(points, colors)
    assert packed.dtype.itemsize == 16
    bits = packed["rgb"].view(np.uint32)
    assert bits[1, 2] == (int(colors[1, 2, 0]) << 16) | (int(colors[1, 2, 1]) << 8) | int(colors[1, 2, 2])
    count = write_ply(tmp_path / "c.ply", points, colors)
    xyz, rgb = read_ply(tmp_path / "c.ply")
    assert count == 19 and xyz.shape == (19, 3)
    np.testing.assert_array_equal(xyz[0], points[0, 1])
    np.testing.assert_array_equal(rgb[-1], colors[3, 4])


def test_relative_depth_is_inverse_disparity_normalised(rng):
    disparity = rng.uniform(0.5, 4.0, (240, 320)).astype(np.float32)
    disparity[0, 0] = 0.0
    disparity[0, 1] = -1.0
    depth = relative_depth_from_disparity(disparity)
    assert np.isnan(depth[0, 0]) and np.isnan(depth[0, 1])  # no infinite or negative depth
    np.testing.assert_allclose(depth[5, 5] / depth[6, 7], disparity[6, 7] / disparity[5, 5], rtol=1e-5)
    assert np.nanmedian(depth) == pytest.approx(1.0, rel=0.03)


def test_canonical_focal_correction_uses_network_focal():
    spec = ModelSpec("c", "depth_anything", METRIC_CANONICAL, canonical_focal=1000.0)
    out = metric_depth(np.full((2, 2), 2.0, np.float32), spec, fx_network=500.0)
    np.testing.assert_allclose(out, 1.0)
    with pytest.raises(ValueError):
        metric_depth(np.ones((2, 2), np.float32), spec, None)


def test_colorize_marks_invalid_black(rng):
    depth = rng.uniform(1, 3, (20, 30)).astype(np.float32)
    depth[0, 0] = np.nan
    image = colorize(depth)
    assert image.shape == (20, 30, 3) and image.dtype == np.uint8
    assert (image[0, 0] == 0).all() and image[5:].any()


def test_pipeline_relative_model_end_to_end(tiny_onnx, rng):
    backend = OnnxRuntimeBackend(tiny_onnx, threads=1)
    pipeline = DepthPipeline(backend, input_size=112)
    rgb = rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)
    result = pipeline.process(Frame(rgb, INTR, 1.0), want_points=True, points_stride=2)
    assert result.depth.shape == (480, 640) and result.depth.dtype == np.float32
    assert not result.metric and result.scale.status == "relative"
    assert result.network_size == (112, 154)
    assert result.points.shape == (240, 320, 3)
    finite = np.isfinite(result.depth)
    np.testing.assert_allclose(
        result.points[..., 2][finite[::2, ::2]], result.depth[::2, ::2][finite[::2, ::2]]
    )
    assert {"preprocess", "inference", "postprocess", "points", "total"} <= set(result.timings_ms)


def test_pipeline_fixed_scale_gives_metric_inverse_depth(tiny_onnx, rng):
    backend = OnnxRuntimeBackend(tiny_onnx, threads=1)
    pipeline = DepthPipeline(backend, input_size=112, scale=FixedScale(0.5, 0.1))
    rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    result = pipeline.process(Frame(rgb))
    assert result.metric
    expected = 1.0 / (0.5 * result.prediction + 0.1)
    finite = np.isfinite(result.depth)
    assert finite.any()
    np.testing.assert_allclose(result.depth[finite], expected[finite], rtol=1e-5)


def test_pipeline_depth_max_is_inf_for_metres_and_ignored_for_unitless(tiny_onnx, rng):
    rgb = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    metric = DepthPipeline(OnnxRuntimeBackend(tiny_onnx, threads=1), 112, scale=FixedScale(0.5, 0.1))
    unlimited = metric.process(Frame(rgb)).depth
    limit = float(np.nanmedian(unlimited))
    metric.depth_max = limit
    limited = metric.process(Frame(rgb)).depth
    far = unlimited > limit
    assert far.any() and np.isposinf(limited[far]).all()  # REP 118: too far is +Inf
    np.testing.assert_array_equal(np.isnan(limited), np.isnan(unlimited))  # NaN stays "no measurement"
    relative = DepthPipeline(OnnxRuntimeBackend(tiny_onnx, threads=1), 112, depth_max=0.5)
    result = relative.process(Frame(rgb))
    assert not result.metric and not np.isinf(result.depth).any()  # depth.max is metres: not applied


def test_pipeline_metric_model_is_metres_within_max_depth(tiny_metric_onnx, rng):
    backend = OnnxRuntimeBackend(tiny_metric_onnx, threads=1)
    pipeline = DepthPipeline(backend, input_size=112)
    result = pipeline.process(Frame(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)))
    assert result.metric
    assert np.nanmax(result.depth) <= pipeline.spec.max_depth


def test_pipeline_rejects_bad_frames(tiny_onnx):
    pipeline = DepthPipeline(OnnxRuntimeBackend(tiny_onnx, threads=1), input_size=112)
    with pytest.raises(InvalidInputError, match="empty"):
        Frame(np.zeros((0, 10, 3), np.uint8))
    with pytest.raises(InvalidInputError, match="HxWx3 uint8"):
        Frame(np.zeros((10, 10), np.uint8))
    with pytest.raises(InvalidInputError, match="CameraInfo is 640x480"):
        pipeline.process(Frame(np.zeros((240, 320, 3), np.uint8), INTR))


def test_intrinsics_validation_and_scaling():
    with pytest.raises(InvalidInputError, match="focal"):
        CameraIntrinsics(0.0, 500.0, 320, 240, 640, 480).validate()
    half = INTR.scaled(320, 240)
    assert half.fx == pytest.approx(INTR.fx / 2) and half.cx == pytest.approx((INTR.cx + 0.5) / 2 - 0.5)


def test_intrinsics_from_camera_info_read_p_and_fall_back_to_k():
    """image_geometry semantics: P describes the rectified image; K only when P is all zero."""
    k = [430.0, 0, 320.0, 0, 431.0, 240.0, 0, 0, 1]
    p = [296.0, 0, 310.0, 0, 0, 297.0, 235.0, 0, 0, 0, 1, 0]
    from_p = CameraIntrinsics.from_camera_info(k, p, 640, 480)
    assert (from_p.fx, from_p.fy, from_p.cx, from_p.cy) == (296.0, 297.0, 310.0, 235.0)
    from_k = CameraIntrinsics.from_camera_info(k, [0.0] * 12, 640, 480)
    assert (from_k.fx, from_k.fy, from_k.cx, from_k.cy) == (430.0, 431.0, 320.0, 240.0)
    with pytest.raises(InvalidInputError, match="P must have 12"):
        CameraIntrinsics.from_camera_info(k, [1.0] * 9, 640, 480)
