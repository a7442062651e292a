"""Real-DDS test helpers: the shared client module (mde_ros.ros.testing_client, also used by the
benchmarks) plus test-only data. Importing this sets localhost DDS before any rclpy.init."""

from __future__ import annotations

import numpy as np

from mde_ros.ros.testing_client import (
    FASTDDS_PROFILE,
    PARAMS_FILE,
    REPO,
    NodeProcess,
    RosClient,
    camera_info,
    diagnostics_dict,
    header,
    node_command,
    random_domain_id,
    ros_env,
    unique_namespace,
    use_local_dds,
    wait_until,
)

__all__ = [
    "FASTDDS_PROFILE",
    "PARAMS_FILE",
    "REPO",
    "NodeProcess",
    "RosClient",
    "camera_info",
    "diagnostics_dict",
    "header",
    "make_image",
    "node_command",
    "random_domain_id",
    "ros_env",
    "unique_namespace",
    "wait_until",
]

use_local_dds()


def make_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth colour image with structure (gradients + blobs), HxWx3 uint8 RGB."""
    rng = np.random.default_rng(seed)
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack([u / width, v / height, 0.5 + 0.5 * np.sin(u / 7.0 + v / 11.0)], axis=-1)
    noise = rng.random((height, width, 3), np.float32) * 0.1
    return np.clip((base * 0.9 + noise) * 255, 0, 255).astype(np.uint8)
