"""Trajectory and intrinsics modes: targets on real / synthetic data and every bad-input path."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scale_data import evo_data, read_tum, visp_data

from mde_ros.config import scale_config
from mde_ros.scale.base import HOLDING, METRIC, RELATIVE, ScaleInput
from mde_ros.scale.evaluate import (
    TRUE_SCALE,
    TRUE_SHIFT,
    ground_scene,
    jitter,
    run_sequence,
    simulate_relative,
)
from mde_ros.scale.factory import create_estimator
from mde_ros.scale.trajectory import PoseBuffer
from mde_ros.scale.transforms import invert, matrix_to_quat, quat_to_matrix

IDENTITY_Q = np.array([0.0, 0.0, 0.0, 1.0])


@pytest.fixture(scope="module")
def castle_simu():
    return visp_data().castle_simu_frames(indices=list(range(1, 17)))


def test_pose_buffer_rejects_bad_poses():
    buffer = PoseBuffer(max_gap=0.1)
    assert buffer.add(1.0, np.zeros(3), IDENTITY_Q) is None
    assert buffer.add(1.05, np.array([np.nan, 0, 0]), IDENTITY_Q) == "nan_pose"
    assert buffer.add(1.05, np.zeros(3), np.array([0, 0, 0, 2.0])) == "non_unit_quaternion"
    assert buffer.add(1.0, np.zeros(3), IDENTITY_Q) == "duplicate_stamp"
    assert buffer.add(0.9, np.zeros(3), IDENTITY_Q) == "out_of_order"
    assert buffer.add(1.5, np.ones(3), IDENTITY_Q) is None
    pose, why = buffer.lookup(1.2)
    assert pose is None and "max_pose_gap" in why  # 0.5 s between the bracketing poses
    assert buffer.lookup(2.0)[0] is None and buffer.lookup(0.5)[0] is None


def test_pose_interpolation_on_real_tum_trajectory():
    """TUM fr1/xyz ground truth (~100 Hz, from the evo sdist): keep every 3rd pose, predict the rest."""
    gt = read_tum(evo_data() / "freiburg1_xyz-groundtruth.txt")[:900]
    buffer = PoseBuffer(max_gap=0.1)
    for row in gt[::3]:
        assert buffer.add(row[0], row[1:4], row[4:8]) is None
    position_err, angle_err = [], []
    for row in gt[1:-3:3]:
        pose, _ = buffer.lookup(row[0])
        position_err.append(np.linalg.norm(pose[:3, 3] - row[1:4]))
        rel = pose[:3, :3].T @ quat_to_matrix(row[4:8])
        angle_err.append(math.degrees(math.acos(min(1.0, (np.trace(rel) - 1) / 2))))
    assert np.median(position_err) < 1e-3 and np.max(position_err) < 5e-3
    assert np.median(angle_err) < 0.1


def test_trajectory_target_on_castle_simu(castle_simu):
    rng = np.random.default_rng(5)
    estimator = create_estimator(scale_config({"mode": "trajectory"}))
    result = run_sequence(estimator, castle_simu, rng)
    metric = [s for s in result.states if s.is_metric]
    assert len(metric) >= 5, [s.message for s in result.states]
    assert abs(metric[4].scale / TRUE_SCALE - 1) <= 0.05, metric[4]
    assert abs(metric[-1].scale / TRUE_SCALE - 1) <= 0.05 and result.summary()["delta1"] > 0.95
    assert result.states[0].status == RELATIVE and result.states[1].counters.get("zero_baseline")


def test_up_to_scale_trajectory_gives_depth_in_its_units(castle_simu):
    """A monocular SLAM trajectory has its own unit: depth comes out in that unit, consistently.

    The unit factor is measured on the real ORB-SLAM monocular keyframes of TUM fr1/xyz against
    their ground truth, then applied to Castle-simu's poses.
    """
    folder = evo_data()
    gt = read_tum(folder / "freiburg1_xyz-groundtruth.txt")
    orb = read_tum(folder / "freiburg1_xyz-ORB_kf_mono.txt")
    buffer = PoseBuffer(max_gap=0.1)
    for row in gt:
        buffer.add(row[0], row[1:4], row[4:8])
    gt_at_kf = np.array([buffer.lookup(t)[0][:3, 3] for t in orb[:, 0]])
    unit = float(np.median(np.linalg.norm(np.diff(orb[:, 1:4], axis=0), axis=1)) /
                 np.median(np.linalg.norm(np.diff(gt_at_kf, axis=0), axis=1)))  # fmt: skip
    assert abs(unit - 1.0) > 0.05  # genuinely not metres (ORB-SLAM picks its own unit)
    estimator = create_estimator(scale_config({"mode": "trajectory", "min_baseline": 0.05 * unit}))
    for i, frame in enumerate(castle_simu):
        pose = invert(frame.pose_cam_obj)
        estimator.add_pose(i / 30, pose[:3, 3] * unit, matrix_to_quat(pose[:3, :3]))
    rng = np.random.default_rng(5)
    for i, frame in enumerate(castle_simu):
        state = estimator.update(
            ScaleInput(simulate_relative(frame.depth, rng), frame.rgb, frame.intrinsics, i / 30, "disparity")
        )
    depth = state.disparity_to_depth(simulate_relative(castle_simu[-1].depth, rng, 0.0))
    assert state.is_metric
    assert np.nanmedian(depth / castle_simu[-1].depth) == pytest.approx(unit, rel=0.05)


def test_trajectory_bad_input_holds_last_good_scale(castle_simu):
    rng = np.random.default_rng(5)
    estimator = create_estimator(scale_config({"mode": "trajectory"}))
    good = run_sequence(estimator, castle_simu, rng).states[-1]
    assert good.status == METRIC
    frame, stamp = castle_simu[-1], 10.0
    pose = invert(frame.pose_cam_obj)
    q = matrix_to_quat(pose[:3, :3])
    assert not estimator.add_pose(0.1, pose[:3, 3], q)  # out of order
    assert not estimator.add_pose(stamp, pose[:3, 3] * np.nan, q)
    assert not estimator.add_pose(stamp, pose[:3, 3], q * 3)
    estimator.add_pose(stamp, pose[:3, 3], q)
    assert not estimator.add_pose(stamp, pose[:3, 3], q)  # duplicate
    blank = np.zeros_like(frame.rgb)  # no features: too few matches
    estimator.add_pose(stamp + 1 / 30, pose[:3, 3] + [0.2, 0, 0], q)
    disparity = simulate_relative(frame.depth, rng)
    states = [
        estimator.update(ScaleInput(disparity, frame.rgb, frame.intrinsics, stamp, "disparity")),
        estimator.update(ScaleInput(disparity, blank, frame.intrinsics, stamp + 1 / 30, "disparity")),
        estimator.update(ScaleInput(disparity, frame.rgb, frame.intrinsics, stamp + 5.0, "disparity")),
    ]
    counters = states[-1].counters
    for reason in (
        "out_of_order",
        "nan_pose",
        "non_unit_quaternion",
        "duplicate_stamp",
        "few_matches",
        "pose_gap",
    ):
        assert counters.get(reason), (reason, counters)
    assert all(s.status == HOLDING and s.scale == pytest.approx(good.scale, rel=0.05) for s in states[1:])
    assert "holding last good scale" in states[-1].message and states[-1].age_s > 4


def test_trajectory_zero_baseline_never_gives_a_scale(castle_simu):
    rng = np.random.default_rng(1)
    estimator = create_estimator(scale_config({"mode": "trajectory"}))
    pose = invert(castle_simu[0].pose_cam_obj)
    for i, frame in enumerate(castle_simu[:6]):  # the camera "does not move" while the images do
        estimator.add_pose(i / 30, pose[:3, 3], matrix_to_quat(pose[:3, :3]))
        state = estimator.update(
            ScaleInput(simulate_relative(frame.depth, rng), frame.rgb, frame.intrinsics, i / 30, "disparity")
        )
    assert state.status == RELATIVE and state.counters["zero_baseline"] == 5


def _ground_input(rng, stamp, frame=None, noise=0.01):
    frame = frame or ground_scene()
    return ScaleInput(
        simulate_relative(frame.depth, rng, noise), frame.rgb, frame.intrinsics, stamp, "disparity"
    )


def test_intrinsics_target_and_jitter():
    rng = np.random.default_rng(2)
    estimator = create_estimator(
        scale_config({"mode": "intrinsics", "camera_height": 1.2, "camera_pitch": 10.0})
    )
    states = [estimator.update(_ground_input(rng, i / 30)) for i in range(60)]
    assert states[0].status == METRIC and states[0].inlier_ratio > 0.9
    assert all(abs(s.scale / TRUE_SCALE - 1) <= 0.05 for s in states)
    assert jitter(s.scale for s in states[10:]) <= 0.01
    # A pitch prior 8 degrees off still gives the scale within 5 % (s depends on cos(pitch)).
    off = create_estimator(scale_config({"mode": "intrinsics", "camera_height": 1.2, "camera_pitch": 2.0}))
    assert abs(off.update(_ground_input(rng, 0.0)).scale / TRUE_SCALE - 1) <= 0.05


def test_intrinsics_wall_and_missing_ground_hold_last_scale():
    rng = np.random.default_rng(3)
    estimator = create_estimator(
        scale_config({"mode": "intrinsics", "camera_height": 1.2, "camera_pitch": 10.0})
    )
    good = estimator.update(_ground_input(rng, 0.0))
    wall = ground_scene(wall=1.5)  # a wall 1.5 m ahead fills the whole image
    wall.depth[:] = 1.5 + 0.2 * np.linspace(0, 1, wall.depth.shape[1])[None, :]  # slightly turned
    state = estimator.update(_ground_input(rng, 0.1, wall))
    assert state.status == HOLDING and state.counters["wall_not_ground"] == 1 and "wall" in state.message
    cluttered = ground_scene()
    cluttered.depth[:] = rng.uniform(0.5, 10.0, cluttered.depth.shape)  # no plane anywhere
    state = estimator.update(_ground_input(rng, 0.2, cluttered))
    assert state.status == HOLDING and state.counters["ground_not_visible"] == 1
    assert state.scale == good.scale and "holding last good scale" in state.message


def test_intrinsics_metric_model_ground_check():
    frame = ground_scene(height=1.2)
    estimator = create_estimator(
        scale_config({"mode": "intrinsics", "camera_height": 1.2, "camera_pitch": 10.0})
    )
    short = frame.depth * np.float32(0.8)  # a metric model that is 20 % short on this camera
    state = estimator.update(ScaleInput(short, frame.rgb, frame.intrinsics, 0.0, "metric", short))
    assert state.status == METRIC and state.shift == 0.0
    assert state.scale == pytest.approx(1 / 0.8, rel=0.01)


def test_eval_scale_runs_the_network_next_to_perfect_depth_and_the_oracle(tiny_onnx, capsys):
    """`mde-ros eval-scale --model` on real castel frames through ONNX Runtime: three rows per mode."""
    from mde_ros.cli import main

    visp_data()  # fails with the reason when the sample data cannot be had
    args = ["eval-scale", "--model", tiny_onnx, "--sequence", "castel", "--frames", "4", "--input-size", "56"]
    assert main(args) == 0
    lines = capsys.readouterr().out.splitlines()
    rows = {tuple(line.split()[:3]) for line in lines[1:]}
    assert {
        ("castel", "sparse", "simulated"),
        ("castel", "sparse", "network"),
        ("castel", "-", "oracle"),
    } == rows
    assert (
        "jitter" in lines[0] and "to metric" in lines[0] and "depth err" in lines[0] and "log err" in lines[0]
    )


def test_eval_scale_trajectory_rows_fit_scored_pixels_and_all_features(tiny_onnx, capsys):
    """Trajectory mode with --model: the network row fits the features on pixels with ground truth
    (where the oracle fits and the depth is scored); `net, all px` uses every feature, like the node."""
    from mde_ros.cli import main

    visp_data()
    args = ["eval-scale", "--model", tiny_onnx, "--sequence", "castle-simu", "--mode", "trajectory"]
    assert main([*args, "--frames", "12", "--input-size", "56"]) == 0
    rows = {tuple(line.split()[:3]): line for line in capsys.readouterr().out.splitlines()[1:]}
    assert {"simulated", "network", "net,", "oracle"} <= {key[2] for key in rows}, rows
    assert ("castle-simu", "trajectory", "net,") in rows


def test_trajectory_follows_the_network_while_the_camera_stands_still(castle_simu):
    """No baseline to triangulate: the last triangulated points, moved with the pose, keep the scale
    following the network's drifting affine map instead of holding a stale pair."""
    rng = np.random.default_rng(5)
    estimator = create_estimator(scale_config({"mode": "trajectory"}))
    assert run_sequence(estimator, castle_simu, rng).states[-1].status == METRIC
    # the camera goes back to where the current keyframe was taken and stands there
    poses = [invert(f.pose_cam_obj) for f in castle_simu]
    k = int(np.argmin([np.linalg.norm(p[:3, 3] - estimator.keyframe.pose[:3, 3]) for p in poses]))
    frame, pose = castle_simu[k], poses[k]
    start = len(castle_simu)
    for i in range(15):  # the network's affine map grows 1 %/frame meanwhile
        stamp = (start + i) / 30
        estimator.add_pose(stamp, pose[:3, 3], matrix_to_quat(pose[:3, :3]))
        drift = math.exp(0.01 * (i + 1))
        disparity = simulate_relative(frame.depth, rng, 0.01, TRUE_SCALE * drift, TRUE_SHIFT * drift)
        state = estimator.update(ScaleInput(disparity, frame.rgb, frame.intrinsics, stamp, "disparity"))
        assert state.status == METRIC and "tracked landmarks" in state.message, state.message
    assert np.nanmedian(state.disparity_to_depth(disparity) / frame.depth) == pytest.approx(1.0, abs=0.02)


def test_temporal_alignment_error_on_castle_simu_poses(castle_simu):
    """Ground truth warped with the ground-truth poses agrees with itself; a scale flicker shows."""
    from mde_ros.scale.temporal import TemporalMeter

    steady, flicker = TemporalMeter(), TemporalMeter()
    for i, frame in enumerate(castle_simu[:6]):
        steady.add(frame, frame.depth)
        flicker.add(frame, frame.depth * (1.05 if i % 2 else 1.0))
    assert len(steady.errors) == 5 and steady.summary()["temporal_error"] < 0.003
    assert flicker.summary()["temporal_error"] == pytest.approx(0.05, abs=0.006)
    assert flicker.summary()["temporal_floor"] == steady.summary()["temporal_error"]


def test_depth_stabiliser_damps_flicker_along_the_odometry(castle_simu):
    """Depth whose scale flickers ±3 % frame to frame: blended along the real poses, the temporal
    alignment error drops and the depth gets closer to the ground truth, not further."""
    from mde_ros.scale.evaluate import abs_rel
    from mde_ros.scale.stabiliser import DepthStabiliser
    from mde_ros.scale.temporal import TemporalMeter

    stabiliser = DepthStabiliser(0.7)
    raw, stable = TemporalMeter(), TemporalMeter()
    raw_err, stable_err = [], []
    for i, frame in enumerate(castle_simu[:8]):
        depth = (frame.depth * (1.03 if i % 2 else 0.97)).astype(np.float32)
        out = stabiliser.apply(depth, frame.intrinsics, invert(frame.pose_cam_obj))
        raw.add(frame, depth)
        stable.add(frame, out)
        raw_err.append(abs_rel(depth, frame.depth))
        stable_err.append(abs_rel(out, frame.depth))
    assert stable.summary()["temporal_error"] < 0.5 * raw.summary()["temporal_error"]
    assert np.mean(stable_err[1:]) < np.mean(raw_err[1:])
    assert stabiliser.apply(depth, castle_simu[0].intrinsics, None) is depth  # no odometry: as is


def test_trajectory_mode_stabilises_the_published_depth_with_its_odometry(castle_simu):
    """`scale.stabilise`: the estimator blends the previous depth along the poses it buffers (what
    the pipeline calls before publishing); without a pose at the stamp, or off, the depth is as is."""
    from mde_ros.scale.temporal import TemporalMeter

    estimator = create_estimator(scale_config({"mode": "trajectory", "stabilise": 0.7}))
    plain = create_estimator(scale_config({"mode": "trajectory"}))
    for i, frame in enumerate(castle_simu[:8]):
        pose = invert(frame.pose_cam_obj)
        estimator.add_pose(i / 30, pose[:3, 3], matrix_to_quat(pose[:3, :3]))
    raw, stable = TemporalMeter(), TemporalMeter()
    for i, frame in enumerate(castle_simu[:8]):
        depth = (frame.depth * (1.03 if i % 2 else 0.97)).astype(np.float32)
        raw.add(frame, depth)
        stable.add(frame, estimator.stabilise(depth, frame.intrinsics, i / 30))
        assert plain.stabilise(depth, frame.intrinsics, i / 30) is depth
    assert stable.summary()["temporal_error"] < 0.5 * raw.summary()["temporal_error"]
    assert estimator.stabilise(depth, frame.intrinsics, 100.0) is depth  # no pose there: as is
    with pytest.raises(ValueError, match=r"scale\.stabilise"):
        create_estimator(scale_config({"mode": "sparse", "stabilise": 0.5}))
    with pytest.raises(ValueError, match=r"scale\.stabilise"):
        create_estimator(scale_config({"mode": "trajectory", "stabilise": 1.0}))
