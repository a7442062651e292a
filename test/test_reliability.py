"""Guards that keep one message from killing or blinding the node (ROS-free parts)."""

from __future__ import annotations

import numpy as np
import pytest

from mde_ros.config import scale_config
from mde_ros.processing import (
    MAX_LONG_SIDE_FACTOR,
    FrameShapeError,
    Preprocessor,
    limit_network_size,
    network_size,
)
from mde_ros.scale.factory import create_estimator
from mde_ros.scale.sparse import MAX_SPARSE_POINTS, SparseScale
from mde_ros.scale.timeline import ACCEPT, HOLD, JUMP_AHEAD, JUMP_BACK, OUTLIER, ScaleTimelines, Timeline

YEARS = 10 * 365 * 86400.0


def test_lone_future_stamp_is_an_outlier_not_the_new_reference():
    line = Timeline()
    assert line.observe(100.0) == (ACCEPT, [])
    assert line.observe(100.1) == (ACCEPT, [])
    assert line.observe(100.1 + YEARS) == (HOLD, [])
    assert line.observe(100.2) == (ACCEPT, [OUTLIER])
    assert line.reference == pytest.approx(100.2)
    assert line.observe(100.15)[0] == ACCEPT  # small disorder is the estimator's business


def test_backwards_jump_needs_a_follower_and_then_moves_the_reference():
    line = Timeline()
    for stamp in np.arange(100.0, 105.0, 0.1):
        assert line.observe(float(stamp))[0] == ACCEPT
    assert line.observe(100.0) == (HOLD, [])  # a bag loop: the first stamp again
    assert line.observe(100.1) == (ACCEPT, [JUMP_BACK])
    assert line.reference == pytest.approx(100.1)
    assert line.observe(100.2) == (ACCEPT, [])


def test_forward_jump_confirmed_and_nan_stamps_held():
    line = Timeline()
    line.observe(10.0)
    assert line.observe(float("nan")) == (HOLD, [OUTLIER])
    assert line.observe(60.0) == (HOLD, [])
    assert line.observe(60.1) == (ACCEPT, [JUMP_AHEAD])
    assert line.observe(1.0 + YEARS) == (HOLD, [])
    assert line.observe(2.0 + YEARS * 2) == (HOLD, [OUTLIER])  # disagrees with both: a new candidate


def _sparse_with_points() -> SparseScale:
    estimator = create_estimator(scale_config({"mode": "sparse"}))  # identity extrinsic
    estimator.add_sparse_points(104.0, np.ones((30, 3)))
    return estimator


def test_scale_timelines_clear_the_buffer_at_once_and_reset_the_filter_later():
    estimator = _sparse_with_points()
    estimator.filter.update(104.0, 2.0, 0.0, 0.01)
    warnings = []
    lines = ScaleTimelines(estimator, lambda reason, message: warnings.append(reason))
    assert lines.observe("sparse_points", 104.0)
    assert not lines.observe("sparse_points", 100.0)
    assert lines.observe("sparse_points", 100.1)  # the loop is confirmed
    estimator.add_sparse_points(100.1, np.ones((30, 3)))  # not refused as out of order
    assert estimator.counters.get("out_of_order") is None
    assert estimator.filter.ready  # the worker thread resets it, before its next frame
    assert lines.apply_pending_reset() == "sparse_points_time_jump_back"
    assert not estimator.filter.ready and lines.apply_pending_reset() is None
    assert lines.snapshot() == {"sparse_points_time_jump_back": 1}
    assert warnings == ["sparse_points_time_jump_back"]


def test_reset_keeps_the_cumulative_counters():
    estimator = _sparse_with_points()
    estimator.count("bad_point_cloud")
    estimator.reset()
    assert estimator.counters == {"bad_point_cloud": 1}


def test_huge_sparse_clouds_are_subsampled_and_counted():
    estimator = create_estimator(scale_config({"mode": "sparse"}))  # identity extrinsic
    points = np.random.default_rng(0).random((MAX_SPARSE_POINTS * 5, 3), np.float32)
    estimator.add_sparse_points(1.0, points)
    assert estimator._latest[1].shape == (MAX_SPARSE_POINTS, 3)
    assert estimator.counters["points_subsampled"] == 1
    estimator.add_sparse_points(2.0, points[:100])
    assert estimator.counters["points_subsampled"] == 1


@pytest.mark.parametrize("height, width", [(4, 640), (640, 16), (1, 9)])
def test_absurd_aspect_ratios_are_refused(height, width):
    with pytest.raises(FrameShapeError) as info:
        limit_network_size((14, 14), height, width, 518, 14)
    assert info.value.reason == "extreme_aspect_ratio"


@pytest.mark.parametrize("height, width", [(480, 640), (100, 700), (700, 100), (60, 480), (2, 2)])
def test_network_long_side_is_capped(height, width):
    size = limit_network_size(network_size(height, width, 518, 14), height, width, 518, 14)
    assert max(size) <= MAX_LONG_SIDE_FACTOR * 518 and min(size) >= 14
    assert all(side % 14 == 0 for side in size)
    if max(height, width) <= 1.5 * min(height, width):  # ordinary images are untouched
        assert size == network_size(height, width, 518, 14)


def test_preprocessor_applies_the_cap(tiny_onnx):
    from mde_ros.models.onnx_contract import read_spec

    pre = Preprocessor(read_spec(tiny_onnx), 140)
    assert max(pre(np.zeros((60, 480, 3), np.uint8)).shape[2:]) <= 2 * 140
    with pytest.raises(FrameShapeError):
        pre(np.zeros((4, 640, 3), np.uint8))


def test_empty_organized_cloud_reads_as_no_points():
    from mde_ros.geometry.pointcloud import POINT_DTYPE
    from mde_ros.ros.pointcloud import cloud_msg, xyz_from_cloud

    msg = cloud_msg(np.zeros((1, 5), POINT_DTYPE))
    msg.height, msg.row_step, msg.data = 0, msg.point_step * 5, b""
    assert xyz_from_cloud(msg).reshape(-1, 3).shape == (0, 3)


def test_rcl_messages_lose_their_source_locations():
    from mde_ros.ros.runtime import rcl_message

    text = (
        "failed to initialize rcl: Couldn't parse params file: '--params-file x.yaml'. Error: "
        "Error opening YAML file, at /project/src/parser.c:271, at /project/src/rcl/arguments.c:415"
    )
    assert rcl_message(RuntimeError(text)) == (
        "Couldn't parse params file: '--params-file x.yaml'. Error: Error opening YAML file"
    )


def test_engine_dir_must_be_a_folder(tmp_path):
    from mde_ros.ros.runtime import StartupError, check_engine_dir

    check_engine_dir("")
    check_engine_dir(str(tmp_path / "new" / "engines"))
    assert (tmp_path / "new" / "engines").is_dir()
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(StartupError, match="is a file, not a folder"):
        check_engine_dir(str(a_file))
    with pytest.raises(StartupError, match="cannot be created"):
        check_engine_dir(str(a_file / "engines"))


def test_stamp_gaps_estimate_frames_lost_before_the_callback():
    from mde_ros.scale.timeline import StampGaps

    gaps = StampGaps()
    stamps = [i / 30 for i in range(20)] + [i / 30 for i in range(23, 40)] + [i / 30 for i in range(44, 50)]
    assert [gaps.observe(s) for s in stamps].count(0) == len(stamps) - 2
    assert gaps.missed == 3 + 4
    assert gaps.observe(0.0) == 0 and gaps.observe(100.0) == 0  # time jumps are not gaps
    jitter = StampGaps()
    for i in range(40):
        jitter.observe(i / 30 + (0.01 if i % 2 else -0.01))
    assert jitter.missed == 0


def test_an_image_loop_leaves_a_fixed_scale_alone():
    from mde_ros.scale.base import FixedScale

    fixed = FixedScale(2.0)
    lines = ScaleTimelines(fixed, lambda reason, message: None)
    for stamp in (10.0, 11.0, 12.0, 0.0, 0.1):
        lines.observe("image", stamp)
    assert lines.apply_pending_reset() == "image_time_jump_back"
    assert fixed.state.is_metric and fixed.state.scale == 2.0
