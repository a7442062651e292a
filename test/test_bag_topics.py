"""`mde-ros bag`'s choices without a bag: topic auto-detection and the node's parameters offline."""

from __future__ import annotations

import pytest

from mde_ros.bags.offline import BagOptions, choose_topics
from mde_ros.bags.settings import node_parameters
from mde_ros.bags.writer import BagError

IMAGE, COMPRESSED = "sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"
INFO, CLOUD, ODOM = "sensor_msgs/msg/CameraInfo", "sensor_msgs/msg/PointCloud2", "nav_msgs/msg/Odometry"


def options(**params) -> BagOptions:
    return BagOptions(params=node_parameters(None, [f"{k}:={v}" for k, v in params.items()]))


def test_the_raw_camera_beside_its_compressed_copy_and_its_camera_info():
    types = {
        "/cam/image_raw": IMAGE,
        "/cam/image_raw/compressed": COMPRESSED,
        "/cam/camera_info": INFO,
        "/other/camera_info": INFO,
        "/cam/depth/image": IMAGE,  # a depth node's output is never an input
        "/cam/depth/camera_info": INFO,
    }
    assert choose_topics(types, options()) == {"image": "/cam/image_raw", "camera_info": "/cam/camera_info"}


def test_compressed_only_and_the_only_camera_info():
    types = {"/a/image/compressed": COMPRESSED, "/calib": INFO}
    assert choose_topics(types, options()) == {"image": "/a/image/compressed", "camera_info": "/calib"}


def test_ambiguous_or_missing_topics_name_the_candidates_and_the_flag():
    types = {"/left/image_raw": IMAGE, "/right/image_raw": IMAGE, "/left/camera_info": INFO}
    with pytest.raises(
        BagError, match=r"several camera image.*/left/image_raw, /right/image_raw.*--image-topic"
    ):
        choose_topics(types, options())
    chosen = choose_topics(types, BagOptions(options().params, image_topic="/right/image_raw"))
    assert chosen["image"] == "/right/image_raw"
    with pytest.raises(BagError, match=r"no sensor_msgs/CameraInfo topic.*--camera-info-topic"):
        choose_topics({"/image": IMAGE}, options())
    with pytest.raises(BagError, match="--image-topic /nope: no such topic"):
        choose_topics(types, BagOptions(options().params, image_topic="/nope"))
    with pytest.raises(BagError, match="is sensor_msgs/msg/CameraInfo, expected"):
        choose_topics(types, BagOptions(options().params, image_topic="/left/camera_info"))


def test_scale_inputs_by_mode():
    types = {"/image": IMAGE, "/camera_info": INFO, "/odom": ODOM, "/lidar": CLOUD, "/sparse_points": CLOUD}
    assert choose_topics(types, options(**{"scale.mode": "trajectory"}))["pose"] == "/odom"
    assert choose_topics(types, options(**{"scale.mode": "sparse"}))["sparse_points"] == "/sparse_points"
    with pytest.raises(BagError, match="geometry_msgs/msg/PoseStamped"):
        choose_topics(types, options(**{"scale.mode": "trajectory", "scale.pose_type": "pose"}))


def test_node_parameters_offline(tmp_path):
    from mde_ros.ros.parameters import PARAMETERS

    repo_file = node_parameters("config/depth.yaml")
    assert repo_file == {p.name: p.default for p in PARAMETERS}
    values = node_parameters(
        None, ["scale.mode:=sparse", "depth.max:=5", "scale.sparse.rotation:=[0, 0, 0, 1]"]
    )
    assert values["scale.mode"] == "sparse" and values["depth.max"] == 5.0
    assert values["scale.sparse.rotation"] == [0.0, 0.0, 0.0, 1.0]
    with pytest.raises(BagError, match=r"unknown parameter.*scale.nope"):
        node_parameters(None, ["scale.nope:=1"])
    with pytest.raises(BagError, match=r"depth\.max must be a float"):
        node_parameters(None, ["depth.max:=far"])
    with pytest.raises(BagError, match=r"scale\.mode"):
        node_parameters(None, ["scale.mode:=magic"])
    with pytest.raises(BagError, match="name:=value"):
        node_parameters(None, ["scale.mode=sparse"])
