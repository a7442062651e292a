"""`mde-ros bag` on real recorded bags: castel (Intel SR300) written as rosbag2 MCAP and sqlite3 bags,
as sensor_msgs/Image and as CompressedImage; the output read back with rosbags and with the mcap
reader, compared with the node's own pipeline path, and with the node itself over DDS."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from bag_helpers import record_castel
from ros_helpers import REPO

from mde_ros.bags.writer import typestore
from mde_ros.ros.image_conversion import array_from_msg

FRAMES = 8
NAMESPACE = "/camera"


@pytest.fixture(scope="module")
def castel():
    from mde_ros.data.visp import castel_frames

    return castel_frames(indices=list(range(FRAMES)))


def run_bag(*args: str, timeout: float = 300, cwd=REPO) -> subprocess.CompletedProcess:
    """The command line a user types (module form of the `mde-ros` console script)."""
    import os

    command = [sys.executable, "-m", "mde_ros.cli", "bag", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env)


def read_bag(path) -> dict[str, list[tuple[int, object]]]:
    """topic -> [(bag timestamp, deserialised message)] read with rosbags."""
    from rosbags.rosbag2 import Reader

    out: dict[str, list[tuple[int, object]]] = {}
    with Reader(path) as reader:
        for connection, timestamp, raw in reader.messages():
            msg = typestore().deserialize_cdr(raw, connection.msgtype)
            out.setdefault(connection.topic, []).append((timestamp, msg))
    return out


def stamp_ns(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


def pipeline_depths(input_bag, model: str, params: dict) -> dict[int, tuple[np.ndarray, bool]]:
    """The node's pipeline path, frame by frame in recording order: build_pipeline from the node's
    parameters, rgb_from_msg, the node's CameraInfo checks, DepthPipeline.process."""
    from mde_ros.bags.settings import node_parameters
    from mde_ros.pipeline import Frame
    from mde_ros.pipeline_factory import build_pipeline
    from mde_ros.ros.camera_info import check_image_size, intrinsics_from_info
    from mde_ros.ros.image_conversion import rgb_from_msg
    from mde_ros.ros.parameters import node_config
    from mde_ros.scale.factory import create_estimator

    values = node_parameters(
        REPO / "config" / "depth.yaml", [f"{k}:={v}" for k, v in {"model": model, **params}.items()]
    )
    settings = node_config(values)
    pipeline = build_pipeline(settings, create_estimator(settings.scale))
    depths, info = {}, None
    for topic, items in sorted(read_bag(input_bag).items(), key=lambda kv: "image" in kv[0]):
        for _, msg in items:
            if topic.endswith("camera_info"):
                info = msg
                continue
            rgb = rgb_from_msg(msg)
            intrinsics = check_image_size(intrinsics_from_info(info), rgb.shape[1], rgb.shape[0])
            result = pipeline.process(Frame(rgb, intrinsics, stamp_ns(msg) * 1e-9))
            depths[stamp_ns(msg)] = (result.depth, result.metric)
    pipeline.close()
    return depths


CASES = [  # input storage, CompressedImage?, output storage
    ("mcap", False, "mcap"),
    ("mcap", True, "sqlite3"),
    ("sqlite3", False, "sqlite3"),
    ("sqlite3", True, "mcap"),
]


@pytest.mark.parametrize("in_storage,compressed,out_storage", CASES)
def test_bag_gives_every_frame_its_depth(castel, tiny_onnx, tmp_path, in_storage, compressed, out_storage):
    source, output = tmp_path / "in", tmp_path / "out"
    stamps = record_castel(source, castel, in_storage, compressed)
    image_topic = "/camera/image_raw/compressed" if compressed else "/camera/image_raw"
    result = run_bag(source, "-o", output, "--model", tiny_onnx, "--backend", "onnxruntime",
                     "--storage", out_storage, "--copy", image_topic, "--colorized")  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"frames: {FRAMES} read, {FRAMES} with depth (0 metric, {FRAMES} relative)" in result.stdout
    assert "frame/s" in result.stderr  # the progress bar (rate and ETA)

    bag = read_bag(output)
    # Relative depth (scale.mode none) goes to depth/relative, never to the metres topic.
    assert f"{NAMESPACE}/depth/image" not in bag
    depth = bag[f"{NAMESPACE}/depth/relative"]
    assert [stamp_ns(m) for _, m in depth] == stamps  # every frame, its own stamp
    assert [t for t, _ in depth] == stamps  # and its bag timestamp
    assert [stamp_ns(m) for _, m in bag[f"{NAMESPACE}/depth/camera_info"]] == stamps
    assert [stamp_ns(m) for _, m in bag[f"{NAMESPACE}/depth/colorized"]] == stamps
    assert len(bag[image_topic]) == FRAMES  # the copied input topic
    expected = pipeline_depths(source, tiny_onnx, {"backend": "onnxruntime"})
    for _, msg in depth:
        assert (msg.encoding, msg.width, msg.height, msg.header.frame_id) == (
            "32FC1",
            640,
            480,
            "camera_optical_frame",
        )
        want, metric = expected[stamp_ns(msg)]
        assert not metric
        np.testing.assert_allclose(array_from_msg(msg), want, atol=1e-5, rtol=0)

    check_metadata(output, out_storage, image_topic)
    assert not list(tmp_path.glob(".*partial*"))  # the temporary folder is gone
    if out_storage == "mcap":
        check_with_mcap_reader(output / "out.mcap", stamps)


def check_metadata(output, storage: str, copied_topic: str) -> None:
    """metadata.yaml as rosbag2 writes it: storage, counts, type hash and QoS profiles per topic."""
    import yaml

    info = yaml.safe_load((output / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert info["storage_identifier"] == storage and info["message_count"] > 0
    topics = {t["topic_metadata"]["name"]: t for t in info["topics_with_message_count"]}
    for name, topic in topics.items():
        meta = topic["topic_metadata"]
        assert meta["type_description_hash"].startswith("RIHS01_") and topic["message_count"] > 0, name
        assert len(meta["offered_qos_profiles"]) == 1, name
    # The copied topic keeps its recorded QoS; outputs offer the node's output QoS (reliable).
    assert topics[copied_topic]["topic_metadata"]["offered_qos_profiles"][0]["reliability"] == "best_effort"
    depth = topics[f"{NAMESPACE}/depth/relative"]["topic_metadata"]["offered_qos_profiles"][0]
    assert depth["reliability"] == "reliable" and depth["history"] == "keep_last"


def check_with_mcap_reader(path, stamps: list[int]) -> None:
    """The official MCAP reader decodes every message with the bag's own schemas (one per type)."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with open(path, "rb") as handle:
        reader = make_reader(handle, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        names = [schema.name for schema in summary.schemas.values()]
        assert sorted(names) == sorted(set(names))  # one schema per message type
        for channel in summary.channels.values():
            assert "offered_qos_profiles" in channel.metadata, channel.topic
        depth_stamps = []
        for _, channel, _, decoded in reader.iter_decoded_messages():
            if channel.topic == f"{NAMESPACE}/depth/relative":
                depth_stamps.append(decoded.header.stamp.sec * 1_000_000_000 + decoded.header.stamp.nanosec)
                values = np.frombuffer(bytes(decoded.data), np.float32)
                assert values.size == 640 * 480 and np.isfinite(values).mean() > 0.5
    assert depth_stamps == stamps


# --- the node itself, over DDS, on the same frames ------------------------------------------------

FIXED = {"scale.mode": "fixed", "scale.fixed_scale": 2.0, "scale.fixed_shift": 0.1}  # metric, stateless


@pytest.mark.ros
def test_bag_equals_the_node_over_dds(castel, tiny_onnx, tmp_path):
    """The same castel frames published to depth_node (subprocess, Fast DDS) and run through
    `mde-ros bag` with the same parameters give the same metres on depth/image (<= 1e-5)."""
    import signal

    from ros_helpers import (
        NodeProcess,
        RosClient,
        camera_info,
        node_command,
        random_domain_id,
        unique_namespace,
    )
    from std_msgs.msg import Header

    from mde_ros.ros.image_conversion import image_msg, rgb_from_msg

    source, output = tmp_path / "in", tmp_path / "out"
    record_castel(source, castel, "mcap", compressed=False)
    overrides = [item for k, v in FIXED.items() for item in ("-p", f"{k}:={v}")]
    result = run_bag(source, "-o", output, "--model", tiny_onnx, "--backend", "onnxruntime", *overrides)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"({FRAMES} metric, 0 relative)" in result.stdout and "scale over time: metric" in result.stdout
    offline = {stamp_ns(m): array_from_msg(m) for _, m in read_bag(output)[f"{NAMESPACE}/depth/image"]}
    assert len(offline) == FRAMES

    inputs = read_bag(source)
    domain, namespace = random_domain_id(), unique_namespace()
    params = {"backend": "onnxruntime", "qos.input.reliability": "reliable", "qos.input.depth": 10, **FIXED}
    node = NodeProcess(node_command(tiny_onnx, namespace, params), domain, tmp_path / "node.log")
    client = RosClient(domain, namespace, outputs=("depth/image",))
    try:
        assert client.wait_connected(60), node.output()
        infos = dict((stamp_ns(m), m) for _, m in inputs["/camera/camera_info"])
        for _, msg in inputs["/camera/image_raw"]:  # one frame at a time: the node keeps the newest only
            hdr = Header(frame_id=msg.header.frame_id)
            hdr.stamp.sec, hdr.stamp.nanosec = msg.header.stamp.sec, msg.header.stamp.nanosec
            k = infos[stamp_ns(msg)].k
            client.info_pub.publish(camera_info(msg.width, msg.height, k[0], k[4], k[2], k[5], hdr))
            client.image_pub.publish(image_msg(np.ascontiguousarray(rgb_from_msg(msg)), "rgb8", hdr))
            stamp = stamp_ns(msg)
            got = client.wait_for("depth/image", lambda m, s=stamp: stamp_ns(m) == s, timeout=60)
            assert got is not None, node.output()
            assert np.isfinite(offline[stamp]).mean() > 0.5
            np.testing.assert_allclose(offline[stamp], array_from_msg(got), atol=1e-5, rtol=0)
    finally:
        client.close()
        assert node.stop(signal.SIGINT) == 0, node.output()


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_interrupted_run_leaves_no_bag_that_looks_complete(castel, tiny_onnx, tmp_path, sig):
    """Ctrl-C removes the partial bag; even a kill -9 leaves nothing under the output name."""
    import os
    import re
    import signal

    import cv2
    from ros_helpers import wait_until

    source, output = tmp_path / "in", tmp_path / "out"
    small = [  # quarter-size frames keep a long bag small
        replace(f, rgb=cv2.resize(f.rgb, (160, 120)), intrinsics=f.intrinsics.scaled(160, 120))
        for f in castel
    ]
    record_castel(source, small * 150, "mcap")  # 1,200 frames: far more than the run gets through
    command = [sys.executable, "-m", "mde_ros.cli", "bag", str(source), "-o", str(output),
               "--model", tiny_onnx, "--backend", "onnxruntime", "--points", "--colorized"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    log = tmp_path / "stderr.log"
    with open(log, "w") as stderr_file:
        # A shell's background job (`make test &`) inherits SIGINT ignored; a user's Ctrl-C is not.
        proc = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:

            def under_way() -> bool:  # the progress bar has counted at least 10 of the 1,200 frames
                done = re.findall(r"depth:.*?\| *(\d+)/1200", log.read_text(errors="replace"))
                return bool(done) and int(done[-1]) >= 10

            assert wait_until(under_way, timeout=120), log.read_text()[-2000:]
            proc.send_signal(getattr(signal, sig))
            proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    stderr = log.read_text(errors="replace")
    assert not output.exists(), stderr[-2000:]
    if sig == "SIGINT":
        assert proc.returncode == 130, stderr[-2000:]
        assert not list(tmp_path.glob(".out.partial-*")), "the partial bag was not removed"
    else:  # killed outright: the partial folder stays hidden and has no metadata.yaml
        assert not list(tmp_path.glob(".out.partial-*/out/metadata.yaml"))


def test_bad_frames_are_skipped_with_their_reasons(castel, tiny_onnx, tmp_path):
    """An image before any CameraInfo and an undecodable CompressedImage are counted, not fatal."""
    from bag_helpers import camera_info, header, image

    from mde_ros.bags.writer import BagWriter

    source, output = tmp_path / "in", tmp_path / "out"
    frame = castel[0]
    with BagWriter(source, "sqlite3") as writer:
        writer.add_topic("/cam/image/compressed", "sensor_msgs/msg/CompressedImage")
        writer.add_topic("/cam/camera_info", "sensor_msgs/msg/CameraInfo")
        for i in range(4):
            stamp = 10_000_000_000 + i * 100_000_000
            hdr = header(stamp)
            if i > 0:  # frame 0 comes before any CameraInfo
                writer.write_message("/cam/camera_info", stamp, camera_info(frame.intrinsics, hdr))
            msg = image(frame.rgb, hdr, compressed=True)
            if i == 2:
                msg.data = msg.data[: msg.data.size // 8]  # truncated JPEG
            writer.write_message("/cam/image/compressed", stamp, msg)
    result = run_bag(source, "-o", output, "--model", tiny_onnx, "--backend", "onnxruntime")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "frames: 4 read, 2 with depth" in result.stdout, result.stdout
    assert "skipped: no_camera_info 1, undecodable_image 1" in result.stdout, result.stdout
    assert len(read_bag(output)["/cam/depth/relative"]) == 2
