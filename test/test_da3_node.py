"""depth_node over real DDS running a Depth Anything 3 ONNX of the official metric layout.

DA3METRIC-LARGE with every width exact and 4 of its 24 blocks (random weights, a sky area forced
through the sky head's bias): the node must publish what the in-process pipeline computes for the
same frame and CameraInfo (metres = output x f_network / 300), with sky as +Inf (REP 118).
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
    make_image,
    node_command,
    random_domain_id,
    unique_namespace,
)
from test_da3 import _pixels, _with_half_sky

from mde_ros.geometry.intrinsics import CameraIntrinsics
from mde_ros.inference.factory import create_backend
from mde_ros.models.da3 import build_da3
from mde_ros.models.export import export_onnx
from mde_ros.models.testing import reduced_da3_spec
from mde_ros.pipeline import DepthPipeline, Frame
from mde_ros.ros.image_conversion import array_from_msg, image_msg

H, W, FX, FY, CX, CY = 120, 160, 150.0, 150.0, 79.5, 59.5
INPUT_SIZE = 112


@pytest.mark.ros
@pytest.mark.slow
def test_node_publishes_da3_metric_depth_with_sky_as_inf(tmp_path):
    spec = reduced_da3_spec("da3metric-large", 4)
    model = build_da3(spec, seed=1)
    _with_half_sky(model, _pixels(112, 154))
    onnx_path = export_onnx(model, spec, tmp_path / "da3metric.onnx")
    rgb = make_image(H, W, seed=4)
    pipeline = DepthPipeline(create_backend("onnxruntime", onnx_path), INPUT_SIZE)
    expected = pipeline.process(Frame(rgb, CameraIntrinsics(FX, FY, CX, CY, W, H))).depth
    pipeline.close()
    assert np.isinf(expected).any() and np.isfinite(expected).any()

    domain, namespace = random_domain_id(), unique_namespace()
    node = NodeProcess(
        node_command(str(onnx_path), namespace, {"input_size": INPUT_SIZE}), domain, tmp_path / "node.log"
    )
    client = RosClient(domain, namespace)
    try:
        assert client.wait_connected(120), f"node did not come up:\n{node.output()}"
        hdr = header(2000.5, "camera_optical_frame")
        info = camera_info(W, H, FX, FY, CX, CY, hdr)
        msg = client.publish_until(
            image_msg(rgb, "rgb8", hdr), info, "depth/image", lambda m: m.header.stamp.sec == 2000, 120
        )
        assert msg is not None, node.output()
        depth = array_from_msg(msg)
    finally:
        client.close()
        node.stop(signal.SIGINT)
    sky = np.isinf(expected)
    np.testing.assert_array_equal(np.isposinf(depth), sky)
    np.testing.assert_allclose(depth[~sky], expected[~sky], rtol=1e-5)
