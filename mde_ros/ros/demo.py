"""The demo's orchestration: node process + sample player + recorder (see `mde-ros demo`)."""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy
from rclpy.executors import MultiThreadedExecutor

from ..data.visp import castel_frames
from ..models.resolve import resolve_onnx
from ..paths import config_file, engine_dir
from .recorder import Recorder
from .sample_player import SamplePlayer


def run_demo(args: argparse.Namespace) -> int:
    output = Path(args.output)
    frames = castel_frames()
    height, width = frames[0].rgb.shape[:2]
    print(f"sample sequence: castel (Intel SR300), {len(frames)} frames {width}x{height}")
    # Resolve (and export once) before starting the node, so that errors are reported here.
    onnx_path = resolve_onnx(args.model, engine_dir())
    domain = _private_domain()
    print(f"ROS domain {domain} (the demo's own; watch it with ROS_DOMAIN_ID={domain})")
    node = _start_node(onnx_path, args)
    rclpy.init(domain_id=domain)
    executor = MultiThreadedExecutor(num_threads=2)
    recorder = Recorder(output)
    depths = [f.depth for f in frames] if args.scale == "sparse" else None
    player = None
    try:
        executor.add_node(recorder)
        if not _wait_for_node(recorder, executor, node, args.startup_timeout):
            return 1
        player = SamplePlayer(
            [f.rgb[:, :, 0] for f in frames], frames[0].intrinsics, args.rate, args.loops, depths=depths
        )
        executor.add_node(player)
        started = time.monotonic()
        while not player.done:
            executor.spin_once(timeout_sec=0.05)
        # Until the node's diagnostics (~1 Hz) account for every frame: answered or declared dropped.
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline and not _accounted(recorder, player.sent):
            executor.spin_once(timeout_sec=0.05)
        deadline = time.monotonic() + 5.0  # and the answers themselves are recorded
        while time.monotonic() < deadline and recorder.stats.counts["depth/image"] < _frames(recorder)[1]:
            executor.spin_once(timeout_sec=0.05)
        elapsed = time.monotonic() - started
    finally:
        _stop(node)
        ply = recorder.finish()
        executor.shutdown()
        recorder.destroy_node()
        if player is not None:
            player.destroy_node()
        rclpy.try_shutdown()
    _print_summary(recorder, player, elapsed, output, ply)
    counts = recorder.stats.counts
    return 0 if counts["depth/image"] + counts["depth/relative"] > 0 else 1


def _private_domain() -> int:
    """A ROS domain of its own, so that no other process's nodes or diagnostics mix in."""
    current = os.environ.get("ROS_DOMAIN_ID", "0")
    domain = random.SystemRandom().choice([d for d in range(1, 102) if str(d) != current])
    os.environ["ROS_DOMAIN_ID"] = str(domain)  # inherited by the node process
    return domain


def _frames(recorder: Recorder) -> tuple[int, int, int]:
    """(received, processed, declared: dropped + skipped + bad input) from the latest diagnostics."""
    diag = recorder.stats.last_diagnostics
    values = {key.rsplit("/", 1)[-1]: int(v) for key, v in diag.items() if ": pipeline/frames" in key}
    bad = sum(int(v) for key, v in diag.items() if key.endswith(": pipeline/bad input total"))
    declared = values.get("frames dropped", 0) + values.get("frames skipped (no subscribers)", 0) + bad
    return values.get("frames received", 0), values.get("frames processed", 0), declared


def _accounted(recorder: Recorder, sent: int) -> bool:
    received, processed, declared = _frames(recorder)
    return received >= sent and processed + declared >= received


def _start_node(onnx_path: Path, args: argparse.Namespace) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "mde_ros.ros.depth_node", "--ros-args",
        "--params-file", str(config_file("depth.yaml")),
        "-p", f"model:={onnx_path}", "-p", f"backend:={args.backend}",
        "-p", f"scale.mode:={args.scale}",
        # A recorder wants every message: with history 1 a reliable writer replaces a 5 MB cloud
        # that is not yet acknowledged by the next one.
        "-p", "qos.output.depth:=10",
        # ... and every camera frame must reach the node's callback, where a frame the model has
        # no time for is dropped and counted (history 1 would let DDS replace it uncounted).
        "-p", "qos.input.depth:=10",
    ]  # fmt: skip
    print("starting:", " ".join(command[2:]))
    return subprocess.Popen(command)


def _wait_for_node(recorder: Recorder, executor, node: subprocess.Popen, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node.poll() is not None:
            print(f"the depth node exited with code {node.returncode} (see its messages above)")
            return False
        if recorder.count_publishers("depth/image") > 0:
            return True
        executor.spin_once(timeout_sec=0.1)
    print(f"the depth node did not come up within {timeout:.0f} s")
    return False


def _stop(node: subprocess.Popen) -> None:
    if node.poll() is None:
        node.send_signal(signal.SIGINT)
        try:
            node.wait(timeout=10)
        except subprocess.TimeoutExpired:
            node.kill()


def _print_summary(recorder: Recorder, player, elapsed: float, output: Path, ply: Path | None) -> None:
    stats = recorder.stats
    sent = player.sent if player else 0
    received = max(stats.counts["depth/image"], stats.counts["depth/relative"])
    print("\n=== mde_ros demo ===")
    print(f"frames: {sent} published at the camera, {received} processed in {elapsed:.1f} s")
    if stats.latencies_ms:
        lat = np.asarray(stats.latencies_ms)
        print(f"latency camera stamp -> depth received: p50 {np.percentile(lat, 50):.0f} ms, "
              f"p99 {np.percentile(lat, 99):.0f} ms")  # fmt: skip
    _print_depth(stats)
    diag = stats.last_diagnostics
    for key in sorted(diag):
        if any(word in key for word in ("backend", "model", "status", "scale", "dropped", "latency")):
            print(f"  {key}: {diag[key]}")
    print(f"outputs: {', '.join(f'{t} x{n}' for t, n in stats.counts.items())}")
    written = f"{recorder.bag_path} (rosbag2, MCAP), {output / 'colorized'}/*.png"
    print(f"written: {written}" + (f", {ply}" if ply else ""))


def _print_depth(stats) -> None:
    """Metres (depth/image, REP 118) and unit-less depth (depth/relative) never share a figure."""
    metric, relative = stats.counts["depth/image"], stats.counts["depth/relative"]
    if stats.depth_ranges:
        ranges = np.asarray(stats.depth_ranges)
        print(f"metric depth (depth/image, {metric} frames): min {ranges[:, 0].min():.3f} m, "
              f"median {np.median(ranges[:, 1]):.3f} m, max {ranges[:, 2].max():.3f} m")  # fmt: skip
    else:
        print("metric depth (depth/image): none, no metric scale (see the node's WARN above)")
    print(f"relative depth (depth/relative, unit-less, median 1): {relative} frames")
