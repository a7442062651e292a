"""End-to-end latency and memory of depth_node, measured by a client over real ROS 2.

Starts `python -m mde_ros.ros.depth_node` in a subprocess (random ROS_DOMAIN_ID, localhost
discovery, the 32 MB shared-memory Fast DDS profile), publishes image + camera_info closed-loop
(the next frame once the previous depth/image arrived, so latency has no queueing in it), and
reports publish -> depth/image latency, the node's own stage timings, raw ONNX Runtime
`session.run` time for the same network size, and the node's RSS over the run (flat = no leak).

    python benchmarks/node_latency.py --model model.onnx --frames 2000
    python benchmarks/node_latency.py --tiny --frames 300      # random-weight tiny model
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
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


def node_env(domain: int) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        FASTDDS_DEFAULT_PROFILES_FILE=str(REPO / "config" / "fastdds_shm.xml"),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        HF_HUB_OFFLINE="1",
    )
    return env


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


class Client:
    def __init__(self, domain: int, namespace: str, outputs: list[str]) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.context import Context
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        self.context = Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("bench_client", namespace=namespace, context=self.context)
        qos = QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, "image", qos)
        self.info_pub = self.node.create_publisher(CameraInfo, "camera_info", qos)
        self.arrived = threading.Event()
        self.waiting_for = None
        self.received_at = 0.0
        self.diagnostics = None
        self.subs = [self.node.create_subscription(Image, "depth/image", self._on_depth, qos)]
        types = {"depth/points": PointCloud2, "depth/colorized": Image, "depth/camera_info": CameraInfo}
        self.subs += [
            self.node.create_subscription(types[t], t, lambda m: None, qos) for t in outputs if t in types
        ]
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, 10)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        threading.Thread(target=self._spin, daemon=True).start()

    def _spin(self) -> None:
        try:
            self.executor.spin()
        except Exception:  # shutdown
            pass

    def _on_depth(self, msg) -> None:
        if (msg.header.stamp.sec, msg.header.stamp.nanosec) == self.waiting_for:
            self.received_at = time.perf_counter()
            self.arrived.set()

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            if status.name.endswith("depth_node: pipeline"):
                self.diagnostics = {kv.key: kv.value for kv in status.values}

    def connected(self) -> bool:
        return bool(self.image_pub.get_subscription_count()) and all(
            s.get_publisher_count() for s in self.subs
        )

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=2.0)
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def main() -> int:
    args = parse_args()
    import psutil

    from mde_ros.ros.image_conversion import image_msg

    workdir = Path(tempfile.mkdtemp(prefix="mde_bench_"))
    onnx = args.model
    if args.tiny:
        from mde_ros.models.testing import export_tiny_depth_anything

        onnx = str(export_tiny_depth_anything(workdir / "tiny.onnx"))
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(REPO / "config" / "fastdds_shm.xml"))
    domain, namespace = random.SystemRandom().randint(1, 100), f"/bench_{os.getpid()}"
    cmd = [sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args", "--params-file",
           str(REPO / "config" / "depth.yaml"), "-r", f"__ns:={namespace}", "-p", f"model:={onnx}",
           "-p", f"input_size:={args.input_size}", "-p", f"threads:={args.threads}"]  # fmt: skip
    log = open(workdir / "node.log", "wb")
    node = subprocess.Popen(cmd, env=node_env(domain), stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
    client = Client(domain, namespace, args.outputs.split(","))
    try:
        deadline = time.monotonic() + 120
        while not client.connected():
            if node.poll() is not None or time.monotonic() > deadline:
                print((workdir / "node.log").read_text(), file=sys.stderr)
                return 1
            time.sleep(0.05)
        time.sleep(0.5)
        return run(args, client, node, onnx, image_msg, psutil.Process(node.pid))
    finally:
        client.close()
        node.send_signal(signal.SIGINT)
        node.wait(15)
        log.close()


def run(args, client: Client, node, onnx: str, image_msg, proc) -> int:
    from sensor_msgs.msg import CameraInfo
    from std_msgs.msg import Header

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (args.height, args.width, 3), dtype=np.uint8)
    info = CameraInfo(width=args.width, height=args.height)
    f = 0.8 * args.width
    info.k = [f, 0.0, args.width / 2 - 0.5, 0.0, f, args.height / 2 - 0.5, 0.0, 0.0, 1.0]
    latencies, rss = [], []
    bare = BareRun(onnx, args.height, args.width, args.input_size, args.threads)
    for index in range(args.warmup + args.frames):
        header = Header(frame_id="bench_optical")
        header.stamp.sec, header.stamp.nanosec = 1000 + index, 0
        info.header = header
        msg = image_msg(rgb, "rgb8", header)
        client.waiting_for = (header.stamp.sec, 0)
        client.arrived.clear()
        client.info_pub.publish(info)
        start = time.perf_counter()
        client.image_pub.publish(msg)
        if not client.arrived.wait(args.timeout):
            print(f"frame {index}: no depth/image within {args.timeout} s", file=sys.stderr)
            return 1
        if index >= args.warmup:
            latencies.append((client.received_at - start) * 1000.0)
            bare.time_once()  # the node waits for the next frame: same machine state, same loop
            if index % 10 == 0:
                rss.append(proc.memory_info().rss / 2**20)
    time.sleep(1.2)  # one more diagnostics message
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
    for key, value in sorted((client.diagnostics or {}).items()):
        if key.startswith("time ") or key in ("input size", "frames dropped"):
            rows.append((f"node {key}", value))
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
