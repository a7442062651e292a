"""`mde-ros demo` end to end: node process, real sequence over DDS, MCAP + PNG + PLY outputs."""

from __future__ import annotations

import os
import random
import subprocess
import sys

import numpy as np
import pytest
from mcap.reader import make_reader

from mde_ros.geometry.ply import read_ply

pytestmark = [pytest.mark.ros, pytest.mark.slow]


def test_demo_records_what_the_node_publishes(tmp_path, tiny_metric_onnx):
    """A metric model (random weights cannot find a sparse scale): metres from the first frame."""
    tiny_onnx = tiny_metric_onnx
    out = tmp_path / "demo"
    domain = random.randint(1, 101)  # the demo must not use it: it picks a domain of its own
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "mde_ros.cli", "demo", "--output", str(out), "--model", tiny_onnx,
         "--backend", "onnxruntime", "--rate", "5", "--startup-timeout", "120"],
        capture_output=True, text=True, timeout=400, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "=== mde_ros demo ===" in result.stdout
    # the summary keeps metres and unit-less depth apart (a metric model publishes no depth/relative)
    assert "metric depth (depth/image, " in result.stdout and " m, median " in result.stdout
    assert "relative depth (depth/relative, unit-less, median 1): 0 frames" in result.stdout
    counts: dict[str, int] = {}
    depth_schema = diagnostics = None
    # A rosbag2 bag: metadata.yaml and the publisher's QoS profile per channel.
    metadata = (out / "bag" / "metadata.yaml").read_text()
    assert "offered_qos_profiles" in metadata and "/depth/image" in metadata
    with open(out / "bag" / "bag.mcap", "rb") as handle:
        reader = make_reader(handle)
        for schema, channel, message in reader.iter_messages():
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
            assert "offered_qos_profiles" in channel.metadata
            if channel.topic == "/depth/image":
                depth_schema, depth_bytes = schema, message.data
            elif channel.topic == "/diagnostics":
                diagnostics = message.data
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.serialization import deserialize_message

    (pipeline,) = [
        s for s in deserialize_message(diagnostics, DiagnosticArray).status if "pipeline" in s.name
    ]
    frames = {kv.key: int(kv.value) for kv in pipeline.values if kv.key.startswith(("frames", "bad input"))}
    # Behaviour, not throughput: every frame reached the node, and each one was either answered
    # or declared dropped (newest-frame hand-off when the model is slower than the camera).
    assert counts.get("/image", 0) == 30 and frames["frames received"] == 30, (counts, frames)
    declared = frames["frames dropped"] + frames["bad input total"]  # e.g. no CameraInfo yet
    assert frames["frames processed"] + declared == 30, frames
    answered = frames["frames processed"]
    assert answered >= 1 and counts.get("/depth/image", 0) == answered, (counts, frames)
    assert counts.get("/depth/points", 0) == answered, (counts, frames)
    assert counts.get("/camera_info", 0) >= 1 and f"ROS domain {domain} (" not in result.stdout
    assert depth_schema.encoding == "ros2msg" and "MSG: std_msgs/Header" in depth_schema.data.decode()
    from sensor_msgs.msg import Image

    depth = deserialize_message(depth_bytes, Image)
    assert (depth.encoding, depth.width, depth.height) == ("32FC1", 640, 480)
    assert len(list((out / "colorized").glob("*.png"))) == answered
    xyz, _ = read_ply(out / "last_cloud.ply")
    assert len(xyz) > 1000 and np.isfinite(xyz).all()
