"""Scale recovery: transforms, robust fits, filter, sparse mode, factory (ROS-free)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scale_data import visp_data

from mde_ros.config import FilterConfig, scale_config
from mde_ros.geometry import CameraIntrinsics
from mde_ros.scale.base import HOLDING, METRIC, RELATIVE, ScaleInput, ScaleState
from mde_ros.scale.evaluate import (
    TRUE_SCALE,
    TRUE_SHIFT,
    depth_ratio,
    jitter,
    run_sequence,
    simulate_relative,
    sparse_from_depth,
)
from mde_ros.scale.factory import create_estimator
from mde_ros.scale.filter import ScaleFilter
from mde_ros.scale.robust import ransac_affine, robust_scale
from mde_ros.scale.sparse import fit_measurement, project_points
from mde_ros.scale.transforms import extrinsic, invert, matrix_to_quat, quat_to_matrix, slerp

K = CameraIntrinsics(300.0, 300.0, 159.5, 119.5, 320, 240)


def _scene_depth() -> np.ndarray:
    v, u = np.mgrid[0:240, 0:320].astype(np.float32)
    return 1.0 + 3.0 * u / 320 + 2.0 * v / 240  # 1..6 m, a slanted surface


def _points(
    depth: np.ndarray, rng: np.random.Generator, count: int = 200, outliers: float = 0.1
) -> np.ndarray:
    return sparse_from_depth(depth, K, rng, count, outliers)


def test_quaternion_round_trip_and_slerp(rng):
    for _ in range(20):
        q = rng.standard_normal(4)
        q /= np.linalg.norm(q)
        q = q if q[3] >= 0 else -q
        np.testing.assert_allclose(matrix_to_quat(quat_to_matrix(q)), q, atol=1e-9)
    about_z = [np.array([0, 0, math.sin(a / 2), math.cos(a / 2)]) for a in (0.0, 1.0)]
    half = slerp(about_z[0], about_z[1], 0.5)
    np.testing.assert_allclose(half, [0, 0, math.sin(0.25), math.cos(0.25)], atol=1e-12)
    with pytest.raises(ValueError, match="unit quaternion"):
        extrinsic([0, 0, 0], [0, 0, 0, 2])
    t = extrinsic([1, 2, 3], matrix_to_quat(quat_to_matrix([0.1, 0.2, 0.3, 0.9])))
    np.testing.assert_allclose(invert(t) @ t, np.eye(4), atol=1e-12)


def test_ransac_affine_recovers_inverse_depth_map(rng):
    z = rng.uniform(0.5, 8.0, 300)
    d = (1 / z - 0.07) / 0.4 * (1 + 0.01 * rng.standard_normal(300))
    z[:30] *= 2.5  # 10 % gross outliers
    fit = ransac_affine(d, z, rng)
    assert abs(fit.scale / 0.4 - 1) < 0.02 and abs(fit.shift - 0.07) < 0.01
    assert not fit.inliers[:30].any() and fit.inlier_ratio > 0.8
    assert ransac_affine(d[:3], z[:3], rng) is None  # too few points: no fit, never a guess
    k = robust_scale(z[30:] / 1.7, z[30:])
    assert abs(k.scale - 1.7) < 1e-6 and k.shift == 0.0


def test_sparse_target_200_points_10_percent_outliers():
    rng = np.random.default_rng(7)
    depth = _scene_depth()
    estimator = create_estimator(scale_config({"mode": "sparse"}))
    estimator.add_sparse_points(0.0, _points(depth, rng))
    state = estimator.update(ScaleInput(simulate_relative(depth, rng), None, K, 0.0, "disparity"))
    assert state.status == METRIC and state.points >= 150
    assert abs(state.scale / TRUE_SCALE - 1) <= 0.02, state
    recovered = state.disparity_to_depth(simulate_relative(depth, rng, 0.0))
    assert np.nanmedian(np.abs(recovered / depth - 1)) < 0.02


def test_sparse_on_real_castel_depth():
    """Real SR300 depth: sparse points from it, an affine-in-inverse-depth 'model', recovery."""
    visp = visp_data()
    frames = visp.castel_frames(indices=[0, 5, 10, 15, 20])
    rng = np.random.default_rng(3)
    result = run_sequence(create_estimator(scale_config({"mode": "sparse"})), frames, rng)
    summary = result.summary()
    assert summary["metric_frames"] == len(frames)
    assert summary["final_scale_error"] <= 0.03, summary
    assert summary["abs_rel"] < 0.03 and summary["delta1"] > 0.99, summary


def test_sparse_bad_points_are_counted_and_scale_held(rng):
    depth = _scene_depth()
    estimator = create_estimator(scale_config({"mode": "sparse", "sparse.min_points": 20}))
    estimator.add_sparse_points(0.0, _points(depth, rng))
    good = estimator.update(ScaleInput(simulate_relative(depth, rng), None, K, 0.0, "disparity"))
    assert good.status == METRIC
    behind = _points(depth, rng, 50, 0.0) * np.array([1, 1, -1])  # mirrored behind the camera
    outside = _points(depth, rng, 50, 0.0) + np.array([50.0, 0, 0])  # far to the right
    estimator.add_sparse_points(0.1, np.concatenate([behind, outside, _points(depth, rng, 5, 0.0)]))
    state = estimator.update(ScaleInput(simulate_relative(depth, rng), None, K, 0.1, "disparity"))
    assert state.status == HOLDING and state.scale == pytest.approx(good.scale)
    assert state.counters["behind_camera"] == 50 and state.counters["outside_image"] == 50
    assert state.counters["few_points"] == 1 and "holding last good scale" in state.message
    estimator.add_sparse_points(0.05, _points(depth, rng))  # older than the last cloud
    assert (
        estimator.update(ScaleInput(simulate_relative(depth, rng), None, K, 0.2, "disparity")).counters[
            "out_of_order"
        ]
        == 1
    )


def test_sparse_extrinsic_and_metric_model(rng):
    """Points in a LiDAR-like frame (camera 0.2 m ahead, rotated); a metric model 10 % short."""
    depth = _scene_depth()
    cam_in_lidar = extrinsic([0.2, 0.0, 0.1], matrix_to_quat(quat_to_matrix([0.5, -0.5, 0.5, -0.5])))
    points_lidar = _points(depth, rng, 300, 0.0) @ cam_in_lidar[:3, :3].T + cam_in_lidar[:3, 3]
    estimator = create_estimator(
        scale_config(
            {"mode": "sparse", "sparse": {"translation": [0.2, 0.0, 0.1], "rotation": list(cam_in_lidar_q())}}
        )
    )
    estimator.add_sparse_points(1.0, points_lidar)
    metric = (depth * 0.9).astype(np.float32)
    state = estimator.update(ScaleInput(metric, None, K, 1.0, "metric", metric))
    assert state.status == METRIC and state.shift == 0.0
    assert state.scale == pytest.approx(1 / 0.9, rel=0.01)


def cam_in_lidar_q() -> np.ndarray:
    return matrix_to_quat(quat_to_matrix([0.5, -0.5, 0.5, -0.5]))


def test_before_first_estimate_status_is_relative(rng):
    estimator = create_estimator(scale_config({"mode": "sparse"}))
    state = estimator.update(ScaleInput(simulate_relative(_scene_depth(), rng), None, K, 0.0, "disparity"))
    assert state.status == RELATIVE and not state.is_metric and "relative" in state.message


def test_filter_jitter_jump_rejection_and_relock():
    rng = np.random.default_rng(11)
    f = ScaleFilter(time_constant=2.0, max_jump=0.3)
    scales = []
    for i in range(90):  # 3 s static stretch, 3 % noise per measurement
        assert f.update(i / 30, 2.0 * math.exp(0.03 * rng.standard_normal()), 0.1, 0.03) is None
        scales.append(f.scale)
    assert jitter(scales[30:]) <= 0.01 and abs(f.scale / 2 - 1) < 0.02
    assert f.update(3.0, 4.0, 0.2, 0.03) == "jump_rejected" and f.scale == pytest.approx(scales[-1])
    assert f.update(3.1, float("nan"), 0.0, 0.03) == "invalid_fit"
    for i in range(4):  # the scale really changed: after 5 agreeing measurements, re-lock
        f.update(3.2 + i / 30, 4.0, 0.2, 0.03)
    assert abs(f.scale / 4 - 1) < 1e-6 and f.uncertainty < 0.1 and f.age(3.4) > 0


def test_factory_modes_and_errors():
    assert create_estimator(scale_config({})).mode == "none"
    fixed = create_estimator(scale_config({"mode": "fixed", "fixed_scale": 0.5, "fixed_shift": 0.1}))
    assert fixed.state.status == METRIC and fixed.state.scale == 0.5
    for mode in ("intrinsics", "trajectory", "sparse"):
        config = {"mode": mode, "camera_height": 1.0, "filter.time_constant": 0.5}
        assert create_estimator(scale_config(config)).mode == mode
    with pytest.raises(ValueError, match=r"scale\.mode"):
        create_estimator(scale_config({"mode": "lidar"}))
    with pytest.raises(ValueError, match="camera_height"):
        create_estimator(scale_config({"mode": "intrinsics"}))
    with pytest.raises(ValueError, match="pose_type"):
        create_estimator(scale_config({"mode": "trajectory", "pose_type": "tf"}))
    with pytest.raises(ValueError, match="unit quaternion"):
        create_estimator(scale_config({"mode": "sparse", "sparse.rotation": [0, 0, 0, 0]}))


def test_pipeline_applies_sparse_scale(tiny_onnx, rng):
    """Real ONNX Runtime pipeline: the published depth is 1/(s d + t) with the reported (s, t)."""
    from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from mde_ros.pipeline import DepthPipeline, Frame

    estimator = create_estimator(scale_config({"mode": "sparse", "min_inlier_ratio": 0.0}))
    pipeline = DepthPipeline(OnnxRuntimeBackend(tiny_onnx), input_size=56, scale=estimator)
    frame = Frame(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8), K.scaled(80, 60), 0.0)
    first = pipeline.process(frame)
    assert not first.metric and first.scale.status == RELATIVE
    # Points placed where 1/z = s d + 0.1 for the model's own prediction d (s: whatever makes z sane).
    s_true = 2.0 / float(np.median(first.prediction[first.prediction > 0]))
    v, u = np.mgrid[0:60:2, 0:80:2].reshape(2, -1)
    inverse = s_true * first.prediction[v, u] + 0.1
    v, u, z = v[inverse > 0.05], u[inverse > 0.05], 1.0 / inverse[inverse > 0.05]
    assert z.size >= 50, "the tiny model's output should be mostly usable"
    intr = frame.intrinsics
    points = np.stack([(u - intr.cx) * z / intr.fx, (v - intr.cy) * z / intr.fy, z], 1)
    estimator.add_sparse_points(0.0, points)
    result = pipeline.process(frame)
    assert result.metric and result.scale.status == METRIC, result.scale.message
    assert result.scale.scale == pytest.approx(s_true, rel=1e-3) and result.scale.shift == pytest.approx(
        0.1, rel=1e-2
    )
    expected = 1.0 / (result.scale.scale * result.prediction + result.scale.shift)
    np.testing.assert_allclose(result.depth, expected, rtol=1e-5)


def test_inverse_depth_convention_not_depth_affine(rng):
    """A shifted inverse-depth map must not be fitted as depth = a d + b: check the fit form."""
    depth = _scene_depth()
    disparity = simulate_relative(depth, rng, 0.0, TRUE_SCALE, TRUE_SHIFT)
    fit = ransac_affine(disparity[::7, ::7], depth[::7, ::7], rng)
    assert fit.scale == pytest.approx(TRUE_SCALE, rel=1e-4) and fit.shift == pytest.approx(
        TRUE_SHIFT, abs=1e-4
    )


def node_default_filter() -> ScaleFilter:
    defaults = FilterConfig()
    return ScaleFilter(defaults.time_constant, defaults.max_jump)


def test_filter_follows_a_drifting_network():
    """A relative network's affine map moves 1 %/frame; precise fits of it are followed, not averaged away."""
    rng = np.random.default_rng(4)
    f = node_default_filter()  # time constant 2 s
    for i in range(40):
        true = 2.0 * math.exp(0.01 * i)
        assert f.update(i / 30, true * math.exp(0.004 * rng.standard_normal()), 0.1 * true, 0.004) is None
    assert abs(f.scale / true - 1) < 0.02 and f.uncertainty < 0.02
    steady = node_default_filter()  # a steady network with noisy fits is still smoothed
    scales = []
    for i in range(90):
        steady.update(i / 30, 2.0 * math.exp(0.03 * rng.standard_normal()), 0.2, 0.03)
        scales.append(steady.scale)
    assert jitter(scales[30:]) <= 0.01


def test_filter_gates_jumps_of_the_published_depth_not_of_s():
    """s and t trade off: s 40 % up with t down to match is no jump of the depth at the points."""
    f = ScaleFilter(FilterConfig().time_constant, max_jump=0.3)
    assert f.update(0.0, 2.0, 0.2, 0.01, anchor=1.0) is None  # b = 0.1: 1/z = 2.2 at d = 1
    s = 2.8
    t = 2.2 - s  # 1/z = s d + t is still 2.2 at d = 1
    assert f.update(1 / 30, s, t, 0.01) == "jump_rejected"  # judged on s alone
    assert f.update(2 / 30, s, t, 0.01, anchor=1.0) is None
    assert f.scale * 1.0 + f.shift == pytest.approx(2.2, rel=1e-6)


def test_sparse_follows_the_scale_with_the_shift_held_when_points_span_one_depth(rng):
    """Points on a fronto-parallel wall cannot separate s from t: s is re-fitted with b held, not held."""
    depth = _scene_depth()
    estimator = create_estimator(scale_config({"mode": "sparse"}))
    estimator.add_sparse_points(0.0, _points(depth, rng))
    first = estimator.update(ScaleInput(simulate_relative(depth, rng), None, K, 0.0, "disparity"))
    assert first.status == METRIC
    wall = np.full_like(depth, 2.5)
    for i in range(1, 31):  # the network's map grows 1 %/frame (b = t/s unchanged), on the wall
        drift = math.exp(0.01 * i)
        estimator.add_sparse_points(i / 30, _points(wall, rng))
        disparity = simulate_relative(wall, rng, 0.01, TRUE_SCALE * drift, TRUE_SHIFT * drift)
        state = estimator.update(ScaleInput(disparity, None, K, i / 30, "disparity"))
        assert state.status == METRIC, state.message
    assert "shift held" in state.message and "s old" in state.message and state.age_s == 0.0
    assert abs(state.scale / (TRUE_SCALE * drift) - 1) < 0.03, state
    assert np.nanmedian(state.disparity_to_depth(disparity) / wall) == pytest.approx(1.0, abs=0.03)


def test_sparse_level_is_the_published_depths_median_not_the_inliers(rng):
    """A real network is off by 20-40 % on some surfaces, mostly one way: the inlier band drops that
    tail, so a fit of the inliers alone publishes depth with a biased scale; the level is set by the
    median over all points but the gross outliers, i.e. median(depth / truth) = 1 where users read it."""
    depth = _scene_depth()
    v, u = np.mgrid[0:240, 0:320]
    tail = (u // 40 + v // 40) % 4 == 0  # a quarter of the image: the network puts it 35 % too near
    disparity = simulate_relative(depth, rng, 0.03)
    disparity = np.where(tail, disparity * 1.35, disparity).astype(np.float32)
    points = _points(depth, rng, 1000)  # 10 % gross outliers
    estimator = create_estimator(scale_config({"mode": "sparse"}))
    estimator.add_sparse_points(0.0, points)
    state = estimator.update(ScaleInput(disparity, None, K, 0.0, "disparity"))
    assert state.status == METRIC
    assert abs(depth_ratio(state.disparity_to_depth(disparity), depth) - 1) < 0.008
    projection = project_points(points, K)
    inliers_only = ransac_affine(
        disparity[projection.v, projection.u], projection.z, np.random.default_rng(0)
    )
    biased = 1.0 / (inliers_only.scale * disparity + inliers_only.shift)
    assert depth_ratio(biased, depth) - 1 < -0.012  # what the level correction removes


def test_clustered_points_count_by_the_image_area_they_stand_for(rng):
    """Features cluster on texture: 70 % of them on one patch where the network is 15 % off must not
    set the scale of the whole image (trajectory mode balances them; sparse sensors sample evenly)."""
    depth = _scene_depth()
    v, u = np.mgrid[0:240, 0:320]
    patch = (u < 120) & (v < 100)
    disparity = simulate_relative(depth, np.random.default_rng(1), 0.01)
    disparity = np.where(patch, disparity / 1.15, disparity).astype(np.float32)
    pick = np.random.default_rng(1)
    pu, pv = pick.integers(0, 120, 350), pick.integers(0, 100, 350)
    ru, rv = pick.integers(0, 320, 150), pick.integers(0, 240, 150)
    rest = ~patch[rv, ru]
    u_pts, v_pts = np.concatenate([pu, ru[rest]]), np.concatenate([pv, rv[rest]])
    item = ScaleInput(disparity, None, K, 0.0, "disparity")
    errors = []
    for balance in (False, True):
        estimator = create_estimator(scale_config({"mode": "sparse"}))
        fit = fit_measurement(estimator, item, u_pts, v_pts, depth[v_pts, u_pts], "points", balance=balance)
        published = ScaleState(METRIC, fit.scale, fit.shift).disparity_to_depth(disparity)
        errors.append(depth_ratio(published, depth) - 1)
    assert errors[0] < -0.05 and abs(errors[1]) < 0.03, errors


def test_a_few_lone_points_do_not_count_like_crowded_regions(rng):
    """The crowd cap is not an area weighting: 400 points on the left half and 8 lone points on the
    right, where the network is 15 % off, must not pull the level by half the image's weight (an
    area weighting moves it 2.5 % with a network's 5 % per-pixel error)."""
    depth = _scene_depth()
    disparity = simulate_relative(depth, np.random.default_rng(1), 0.05)
    right = np.mgrid[0:240, 0:320][1] >= 160
    disparity = np.where(right, disparity / 1.15, disparity).astype(np.float32)
    pick = np.random.default_rng(2)
    u = np.concatenate([pick.integers(0, 160, 400), np.arange(8) * 20 + 165])
    v = np.concatenate([pick.integers(0, 240, 400), np.arange(8) * 28 + 10])
    estimator = create_estimator(scale_config({"mode": "sparse"}))
    item = ScaleInput(disparity, None, K, 0.0, "disparity")
    fit = fit_measurement(estimator, item, u, v, depth[v, u], "points", balance=True)
    published = ScaleState(METRIC, fit.scale, fit.shift).disparity_to_depth(disparity)
    assert abs(depth_ratio(published[:, :160], depth[:, :160]) - 1) < 0.008


def test_points_outside_the_support_are_not_fitted(rng):
    """`ScaleInput.support` (eval-scale: the pixels with ground truth) drops the points elsewhere."""
    depth = _scene_depth()
    disparity = simulate_relative(depth, rng, 0.01)
    v, u = np.mgrid[0:240:8, 0:320:8].reshape(2, -1)
    z = depth[v, u] * np.where(u < 160, 1.0, 1.5)  # the right half's points are 50 % too far
    support = np.zeros(depth.shape, bool)
    support[:, :160] = True
    item = ScaleInput(disparity, None, K, 0.0, "disparity", support=support)
    fit = fit_measurement(create_estimator(scale_config({"mode": "sparse"})), item, u, v, z, "points")
    assert fit.points <= (u < 160).sum()
    published = ScaleState(METRIC, fit.scale, fit.shift).disparity_to_depth(disparity)
    assert abs(depth_ratio(published, depth) - 1) < 0.01
