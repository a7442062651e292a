"""`mde-ros demo`: the node on the bundled real sequence (castel, Intel SR300), over real ROS 2.

Starts the depth node as its own process with config/depth.yaml, plays the sequence into it
(image + camera_info, and sparse metric points for `scale.mode: sparse`), records everything the
node publishes to an MCAP bag, PNGs and a PLY, and prints a one-screen summary.
"""

from __future__ import annotations

import argparse

from .options import add_backend

EXAMPLES = """\
  mde-ros demo                          # castel (real SR300), sparse metric scale, out/demo/
  mde-ros demo --scale none --loops 2 -o out/relative
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", "-o", default="out/demo", help="output folder")
    parser.add_argument("--model", default="default", help="model (default: the embedded default model)")
    add_backend(parser)
    parser.add_argument("--rate", type=float, default=5.0, help="camera rate, Hz")
    parser.add_argument("--loops", type=int, default=1, help="times to play the 30-frame sequence")
    parser.add_argument(
        "--scale",
        choices=("sparse", "none"),
        default="sparse",
        help="sparse: metric scale from 300 sparse depth points per frame; none: relative depth",
    )
    parser.add_argument("--startup-timeout", type=float, default=300.0, help="seconds to wait for the node")


def run(args: argparse.Namespace) -> int:
    import os
    import random

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    from ..paths import config_file

    config_file("depth.yaml")  # an install without its share files fails here, before any model loads
    try:
        os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(config_file("fastdds_shm.xml")))
    except FileNotFoundError:
        pass
    from ..ros.demo import run_demo

    return run_demo(args)
