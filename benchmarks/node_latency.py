"""End-to-end latency and memory of depth_node, measured by a client over real ROS 2.

Starts `python -m mde_ros.ros.depth_node` in a subprocess with the client of the tests
(mde_ros.ros.testing_client: random ROS_DOMAIN_ID, localhost discovery, the 32 MB shared-memory
Fast DDS profile, one OpenMP thread), publishes image + camera_info closed-loop
(the next frame once the previous depth/image arrived, so latency has no queueing in it), and
reports publish -> depth/image latency, the node's own stage timings, raw ONNX Runtime
`session.run` time for the same network size, and the node's RSS over the run (flat = no leak).

    python benchmarks/node_latency.py --model model.onnx --frames 2000
    python benchmarks/node_latency.py --tiny --frames 300      # random-weight tiny model
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    model = parser.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", help="ONNX file (or registry name) for the node")
    model.add_argument("--tiny", action="store_true", help="export and use a tiny random-weight model")
    parser.add_argument("--frames", type=int, default=200, help="frames to measure (after warm-up)")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--input-size", type=int, default=0, help="network short side (0 = model default)")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument(
        "--outputs", default="depth/image,depth/points,depth/colorized", help="subscribed outputs"
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for one frame")
    return parser.parse_args()


class BareRun:
    """ONNX Runtime `session.run` for the network size the node uses, timed one run at a time so that
    the baseline is taken between the node's frames (interleaved), not once after the run."""

    def __init__(self, onnx: str, height: int, width: int, input_size: int, threads: int) -> None:
        from mde_ros.inference.factory import create_backend
        from mde_ros.processing import Preprocessor

        self.backend = create_backend("onnxruntime", onnx, threads=threads)
        pre = Preprocessor(self.backend.spec, input_size or self.backend.spec.default_input_size)
        self.pixels = pre(np.zeros((height, width, 3), np.uint8)).copy()
        self.backend.infer(self.pixels)
        self.times: list[float] = []

    def time_once(self) -> None:
        start = time.perf_counter()
        self.backend.infer(self.pixels)
        self.times.append((time.perf_counter() - start) * 1000.0)

    def median(self) -> float:
        self.backend.close()
        return float(np.median(self.times))


def main() -> int:
    args = parse_args()
    import psutil

    from mde_ros.ros.testing_client import (
        NodeProcess,
        RosClient,
        node_command,
        random_domain_id,
        unique_namespace,
    )

    workdir = Path(tempfile.mkdtemp(prefix="mde_bench_"))
    onnx = args.model
    if args.tiny:
        from mde_ros.models.testing import export_tiny_depth_anything

        onnx = str(export_tiny_depth_anything(workdir / "tiny.onnx"))
    domain, namespace = random_domain_id(), unique_namespace()
    # depth/image carries metres only (REP 118): a fixed scale makes a relative model metric
    params = {"input_size": args.input_size, "threads": args.threads, "scale.mode": "fixed"}
    node = NodeProcess(node_command(onnx, namespace, params), domain, workdir / "node.log")
    client = RosClient(domain, namespace, outputs=tuple(args.outputs.split(",")))
    try:
        if not client.wait_connected(120) or node.proc.poll() is not None:
            print(node.output(), file=sys.stderr)
            return 1
        return run(args, client, onnx, psutil.Process(node.proc.pid))
    finally:
        client.close()
        node.stop(signal.SIGINT)


def run(args, client, onnx: str, proc) -> int:
    from mde_ros.geometry.intrinsics import CameraIntrinsics
    from mde_ros.ros.image_conversion import image_msg
    from mde_ros.ros.sample_player import camera_info_msg
    from mde_ros.ros.testing_client import header

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    f = 0.8 * args.width
    intrinsics = CameraIntrinsics(f, f, args.width / 2 - 0.5, args.height / 2 - 0.5, args.width, args.height)
    latencies, rss = [], []
    bare = BareRun(onnx, args.height, args.width, args.input_size, args.threads)
    for index in range(args.warmup + args.frames):
        hdr = header(1000 + index, "bench_optical")
        msg = image_msg(rgb, "rgb8", hdr)
        client.clear()  # keep memory flat: only this frame's outputs are looked at
        client.info_pub.publish(camera_info_msg(intrinsics, hdr))
        start = time.monotonic()
        client.image_pub.publish(msg)
        got = client.wait_for_timed("depth/image", lambda m, s=hdr.stamp: m.header.stamp == s, args.timeout)
        if got is None:
            print(f"frame {index}: no depth/image within {args.timeout} s", file=sys.stderr)
            return 1
        if index >= args.warmup:
            latencies.append((got[0] - start) * 1000.0)
            bare.time_once()  # the node waits for the next frame: same machine state, same loop
            if index % 10 == 0:
                rss.append(proc.memory_info().rss / 2**20)
    time.sleep(1.2)  # one more diagnostics message
    diagnostics = (client.fresh_diagnostics("depth_node") or {}).get("pipeline", {})
    raw = bare.median()
    lat = np.asarray(latencies)
    rss_arr = np.asarray(rss)
    half = max(len(rss_arr) // 2, 1)
    rows = [
        ("frames", f"{len(lat)} ({args.width}x{args.height}, outputs: {args.outputs})"),
        ("raw ONNX Runtime session.run, interleaved (ms, median)", f"{raw:.1f}"),
        ("end-to-end publish -> depth/image p50 (ms)", f"{np.percentile(lat, 50):.1f}"),
        ("end-to-end publish -> depth/image p99 (ms)", f"{np.percentile(lat, 99):.1f}"),
        ("end-to-end overhead beyond raw model, p50", f"{(np.percentile(lat, 50) / raw - 1) * 100:.0f} %"),
        (
            "node RSS first half / second half (MiB)",
            f"{rss_arr[:half].mean():.1f} / {rss_arr[half:].mean():.1f}",
        ),
        ("node RSS min / max (MiB)", f"{rss_arr.min():.1f} / {rss_arr.max():.1f}"),
    ]
    for key, value in sorted(diagnostics.items()):
        if key.startswith("time ") or key in ("input size", "frames dropped"):
            rows.append((f"node {key}", value))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
