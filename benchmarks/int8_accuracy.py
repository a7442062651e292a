"""CPU int8 vs fp32 for one ONNX model: accuracy on real data and speed, interleaved.

Accuracy: AbsRel (relative models: scale and shift aligned in inverse depth, as Depth Anything
scores) on castel frames (visp-images-data, SR300 depth) and on Middlebury Motorcycle from the
scikit-image wheel (quarter resolution: depth mm = 193.001 * 3979.911 / (4 d + 124.343)).
Speed: bare `session.run` fp32 and int8 on the same input, round-robin in one loop.

    python benchmarks/int8_accuracy.py --model default [--frames 10] [--input-size 252]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the checkout's mde_ros, not an installed copy


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--input-size", type=int, default=0)
    parser.add_argument("--frames", type=int, default=10, help="castel frames (of 20-29) to score")
    parser.add_argument("--timing", type=int, default=10, help="timed round-robin iterations")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    import onnxruntime as ort

    from mde_ros.data.middlebury import motorcycle_frames
    from mde_ros.data.visp import castel_frames
    from mde_ros.models.export import quantize_int8
    from mde_ros.models.onnx_contract import read_spec
    from mde_ros.models.resolve import resolve_onnx
    from mde_ros.processing import Preprocessor, resize_prediction
    from mde_ros.training.metrics import score

    fp32 = resolve_onnx(args.model)
    int8 = fp32.with_name(fp32.stem + ".int8.onnx")
    if not int8.is_file():
        quantize_int8(fp32, int8)
    spec = read_spec(fp32)
    options = ort.SessionOptions()
    if args.threads:
        options.intra_op_num_threads = args.threads
    sessions = {
        name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for name, path in (("fp32", fp32), ("int8", int8))
    }
    pre = Preprocessor(spec, args.input_size or spec.default_input_size)
    relative = spec.convention == "disparity"

    def predict(name: str, rgb: np.ndarray) -> np.ndarray:
        raw = sessions[name].run(None, {"pixel_values": pre(rgb)})[0]
        return resize_prediction(raw[0], *rgb.shape[:2])

    # castel frames 20-29: the default model (v2) trained on frames 0-9
    data = [("castel", f.rgb, f.depth) for f in castel_frames(indices=list(range(20, 30))[: args.frames])]
    (bike,) = motorcycle_frames()
    data.append(("motorcycle", bike.rgb, bike.depth))
    scores: dict[tuple[str, str], list[float]] = {}
    for dataset, rgb, depth in data:
        for name in sessions:
            scores.setdefault((dataset, name), []).append(
                score(predict(name, rgb), depth, relative)["abs_rel"]
            )
    print(f"model {spec.name} ({fp32.name}), network short side {pre.short_side}")
    for dataset in ("castel", "motorcycle"):
        a, b = (float(np.mean(scores[(dataset, n)])) for n in ("fp32", "int8"))
        count = len(scores[(dataset, "fp32")])
        print(
            f"  {dataset:10s} ({count} frames) AbsRel fp32 {a:.4f}  int8 {b:.4f}  "
            f"change {100 * (b - a) / a:+.2f} %"
        )

    rgb = data[0][1]
    pixels = pre(rgb).copy()
    feeds = {"pixel_values": pixels}
    times: dict[str, list[float]] = {n: [] for n in sessions}
    for session in sessions.values():
        session.run(None, feeds)
    for _ in range(args.timing):
        for name, session in sessions.items():
            start = time.perf_counter()
            session.run(None, feeds)
            times[name].append((time.perf_counter() - start) * 1000)
    med = {n: float(np.median(t)) for n, t in times.items()}
    p90 = {n: float(np.percentile(t, 90)) for n, t in times.items()}
    print(
        f"  bare session.run 1x3x{pixels.shape[2]}x{pixels.shape[3]}: "
        f"fp32 {med['fp32']:.1f} ms (p90 {p90['fp32']:.1f}), "
        f"int8 {med['int8']:.1f} ms (p90 {p90['int8']:.1f}): int8/fp32 {med['int8'] / med['fp32']:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
