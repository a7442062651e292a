"""depth_node -p model:=llm-mde-small over real DDS: shipped weights, ONNX composed on first use.

The node starts with an empty engine folder (as on a fresh clone), composes LLM-MDE's ONNX itself
(no training, no download), writes the APG prompt of each frame and publishes the relative depth
of a real castel frame on depth/relative (no scale source): the same as the in-process pipeline.
"""

from __future__ import annotations

import signal

import numpy as np
import pytest
from ros_helpers import (
    NodeProcess,
    RosClient,
    camera_info,
    header,
    node_command,
    random_domain_id,
    unique_namespace,
)

from mde_ros.inference.factory import create_backend
from mde_ros.pipeline import DepthPipeline, Frame
from mde_ros.ros.image_conversion import array_from_msg, image_msg


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_node_publishes_llm_mde_depth_for_castel(backend, tmp_path, monkeypatch):
    if backend == "torch":
        pytest.importorskip("torch")
    from mde_ros.data.visp import castel_frames
    from mde_ros.models.llm_mde_onnx import llm_mde_onnx_name

    frame = castel_frames(indices=[12])[0]
    k = frame.intrinsics
    engines = tmp_path / "engines"  # empty: the node composes the ONNX on first use
    monkeypatch.setenv("MDE_ROS_ENGINE_DIR", str(engines))
    domain, namespace = random_domain_id(), unique_namespace()
    params = {"backend": backend, "threads": 1}
    node = NodeProcess(node_command("llm-mde-small", namespace, params), domain, tmp_path / "node.log")
    client = RosClient(domain, namespace)
    try:
        assert client.wait_connected(300), f"node did not come up:\n{node.output()}"
        hdr = header(3000.25, "camera_optical_frame")
        info = camera_info(k.width, k.height, k.fx, k.fy, k.cx, k.cy, hdr)
        msg = client.publish_until(
            image_msg(frame.rgb, "rgb8", hdr),
            info,
            "depth/relative",
            lambda m: m.header.stamp.sec == 3000,
            300,
        )
        assert msg is not None, node.output()
        published = array_from_msg(msg)
        assert client.wait_for("depth/image", timeout=0.5) is None  # unit-less: never on the metres topic
    finally:
        client.close()
        node.stop(signal.SIGINT)
    log = node.output()
    onnx_path = engines / llm_mde_onnx_name()
    assert onnx_path.is_file() and "building the llm-mde-small ONNX" in log
    pipeline = DepthPipeline(create_backend("onnxruntime", onnx_path))
    expected = pipeline.process(Frame(frame.rgb, k)).depth
    pipeline.close()
    assert published.shape == expected.shape == frame.rgb.shape[:2]
    finite = np.isfinite(expected)
    assert finite.mean() > 0.99 and np.array_equal(finite, np.isfinite(published))
    np.testing.assert_allclose(published[finite], expected[finite], rtol=1e-3)


@pytest.mark.ros
@pytest.mark.slow
def test_demo_runs_llm_mde(tmp_path):
    """`mde-ros demo --model llm-mde-small`: the castel sequence through the node (newest-frame
    hand-off: LLM-MDE is slower than the 5 Hz camera here, so most frames are declared dropped)."""
    import os
    import subprocess
    import sys

    from ros_helpers import REPO

    out = tmp_path / "demo"
    env = dict(os.environ, MDE_ROS_ENGINE_DIR=str(tmp_path / "engines"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, "-m", "mde_ros.cli", "demo", "--output", str(out), "--model", "llm-mde-small",
         "--backend", "onnxruntime", "--rate", "5", "--startup-timeout", "300"],
        capture_output=True, text=True, timeout=900, env=env, cwd=REPO,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "pipeline/model: llm-mde-small" in result.stdout
    # How many frames become metric depends on how many the node gets through (load): not checked.
    assert "relative depth (depth/relative, unit-less, median 1): 0 frames" not in result.stdout
    assert list((out / "colorized").glob("*.png"))
