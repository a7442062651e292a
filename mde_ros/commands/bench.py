"""`mde-ros bench`: latency (median, p90), throughput and peak memory of a backend, against a bare
ONNX Runtime `session.run` loop and the full pipeline (pre + infer + post + cloud) on a camera-sized
frame; `--compare-torch` adds the transformers eager forward a Python user would run.
"""

from __future__ import annotations

import argparse

from .options import add_backend

EXAMPLES = """\
  mde-ros bench --model default --input-size 252 --frames 50
  mde-ros bench --model model.onnx --backend onnxruntime --threads 2 --image-size 1280x720
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="default", help="registry name, .onnx, .pth or transformers folder"
    )
    add_backend(parser)
    parser.add_argument("--input-size", type=int, default=0, help="network short side (0: model default)")
    parser.add_argument("--image-size", default="640x480", help="camera frame WxH for the pipeline timing")
    parser.add_argument("--frames", type=int, default=30, help="timed iterations per measurement")
    parser.add_argument("--warmup", type=int, default=3, help="untimed iterations first")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    parser.add_argument(
        "--compare-torch", action="store_true", help="also time the transformers eager forward"
    )
    parser.add_argument("--no-pipeline", action="store_true", help="skip the full-pipeline timing")
    parser.add_argument(
        "--preprocess-sizes",
        default="518",
        help="extra network short sides (comma-separated) at which to compare the CPU pre-processing "
        "with the pre-issue-9 one ('' for none); the run's own size is always compared",
    )


def _stats(times_ms: list[float]) -> dict[str, float]:
    import numpy as np

    values = np.asarray(times_ms)
    return {
        "median": float(np.median(values)),
        "p90": float(np.percentile(values, 90)),
        "mean": float(values.mean()),
    }


def _timeit(fn, frames: int, warmup: int) -> dict[str, float]:
    import time

    for _ in range(warmup):
        fn()
    times = []
    for _ in range(frames):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000.0)
    return _stats(times)


def _timeit_interleaved(fns: dict, frames: int, warmup: int) -> dict[str, dict[str, float]]:
    """Time several callables round-robin, so that load drift on a shared machine hits all alike."""
    import time

    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(frames):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - start) * 1000.0)
    return {name: _stats(values) for name, values in times.items()}


def _line(label: str, stats: dict[str, float], bare: dict[str, float] | None = None) -> str:
    fps = 1000 / stats["median"]
    text = f"  {label:34s} median {stats['median']:8.2f} ms  p90 {stats['p90']:8.2f} ms  {fps:6.2f} fps"
    if bare:
        text += f"  ({stats['median'] / bare['median']:.3f}x bare)"
    return text


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def run(args: argparse.Namespace) -> int:
    import os
    import platform

    import numpy as np

    from ..inference.factory import create_backend
    from ..models.export import smooth_pixels
    from ..models.resolve import resolve_onnx
    from ..processing import network_size

    width, height = (int(v) for v in args.image_size.lower().split("x"))
    onnx_path = resolve_onnx(args.model)
    backend = create_backend(
        args.backend, onnx_path, threads=args.threads, input_size=args.input_size or None
    )
    spec = backend.spec
    short = args.input_size or spec.default_input_size
    net_h, net_w = network_size(height, width, short, spec.patch_multiple)
    pixels = smooth_pixels(np.random.default_rng(0), net_h, net_w)
    print(f"model {spec.name} ({onnx_path.name}), backend {backend.describe()}")
    print(
        f"network input 1x3x{net_h}x{net_w} (frame {width}x{height}, short side {short}); "
        f"{args.frames} frames; "
        f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, "
        f"{platform.processor() or platform.machine()}"
    )
    prompt = _prompt(spec, pixels)  # LLM-MDE's second input; None for other models
    fns = {"backend": lambda: backend.infer(pixels, prompt)}
    session = None
    if backend.name == "onnxruntime":
        feed, session = {"pixel_values": pixels}, backend.session
        if prompt is not None:
            feed["prompt_ids"] = prompt
        fns["bare"] = lambda: session.run(None, feed)
    if not args.no_pipeline:
        fns["pipeline"] = _pipeline_fn(backend, short, width, height)
    results = _timeit_interleaved(fns, args.frames, args.warmup)
    bare = results.get("bare")
    if bare:
        print(_line("bare session.run", bare))
    print(_line(f"{backend.name} backend.infer", results["backend"], bare))
    if "pipeline" in results:
        print(_line(f"pipeline {width}x{height} (+cloud)", results["pipeline"], bare))
        reference = bare or results["backend"]
        overhead = results["pipeline"]["median"] / reference["median"] - 1
        print(f"  pipeline overhead beyond the raw model: {overhead * 100:+.1f} %")
    print(f"  peak RSS {_peak_rss_mb():.0f} MiB (process, so far)")
    name, median = backend.name, results["backend"]["median"]
    # Free the backend first: ONNX Runtime's idle spinning threads would slow torch down.
    backend.close()
    fns = backend = session = None  # drop every reference to the ONNX Runtime session
    import gc

    gc.collect()  # ONNX Runtime's spinning threads would distort the pre-processing timing
    extra = [int(v) for v in args.preprocess_sizes.split(",") if v.strip()]
    for side in dict.fromkeys([short, *extra]):
        print(_preprocess_line(spec, side, width, height, max(args.frames, 20), args.warmup))
    if args.compare_torch:
        torch_stats = _time_torch_eager(onnx_path, pixels, args)
        print(_line("torch eager (transformers forward)", torch_stats, bare))
        print(f"  {name} is {torch_stats['median'] / median:.2f}x faster than torch eager")
    return 0


def _prompt(spec, pixels):
    """The APG prompt ids of the benchmark image (prompted models only)."""
    if not spec.needs_prompt:
        return None
    import numpy as np

    from ..models.prompts import prompt_fn_for

    mean, std = np.asarray(spec.mean, np.float32), np.asarray(spec.std, np.float32)
    rgb = np.clip((pixels[0].transpose(1, 2, 0) * std + mean) * 255, 0, 255).astype(np.uint8)
    return prompt_fn_for(spec)(rgb)


def _legacy_preprocess(spec, short: int):
    """The pre-processing before issue 9, kept only as the bench's baseline: INTER_AREA when
    shrinking, a per-pixel normalise on an HxWx3 float copy, then a transposing copy to NCHW."""
    import cv2
    import numpy as np

    from ..processing import network_size

    std = np.asarray(spec.std, np.float32)
    gain = (1.0 / (255.0 * std)).reshape(1, 1, 3)
    bias = (-np.asarray(spec.mean, np.float32) / std).reshape(1, 1, 3)

    def run(rgb):
        net_h, net_w = network_size(*rgb.shape[:2], short, spec.patch_multiple)
        interpolation = cv2.INTER_AREA if net_h < rgb.shape[0] else cv2.INTER_CUBIC
        normalised = cv2.resize(rgb, (net_w, net_h), interpolation=interpolation).astype(np.float32)
        normalised *= gain
        normalised += bias
        out = np.empty((1, 3, net_h, net_w), np.float32)
        out[0] = normalised.transpose(2, 0, 1)
        return out

    return run


def _preprocess_line(spec, short: int, width: int, height: int, frames: int, warmup: int) -> str:
    """Today's Preprocessor vs the legacy one, interleaved, on an image-like frame; with the largest
    difference in the network input (normalised units)."""
    import numpy as np

    from ..inference.engine_cache import fidelity_inputs
    from ..processing import Preprocessor

    pixels = fidelity_inputs((1, height, width), spec, seed=2)[0].transpose(1, 2, 0)
    rgb = np.clip(pixels * np.asarray(spec.std) * 255 + np.asarray(spec.mean) * 255, 0, 255)
    rgb = np.ascontiguousarray(rgb.round().astype(np.uint8))
    now, legacy = Preprocessor(spec, short), _legacy_preprocess(spec, short)
    stats = _timeit_interleaved({"now": lambda: now(rgb), "legacy": lambda: legacy(rgb)}, frames, warmup)
    diff = float(np.abs(now(rgb) - legacy(rgb)).max())
    net_h, net_w = now.input_size(height, width)
    ratio = stats["legacy"]["median"] / stats["now"]["median"]
    return (
        f"  preprocess {width}x{height} -> {net_h}x{net_w}: median {stats['now']['median']:.2f} ms "
        f"(p90 {stats['now']['p90']:.2f}), legacy {stats['legacy']['median']:.2f} ms: {ratio:.1f}x cheaper; "
        f"max |input diff| {diff:.2e}"
    )


def _pipeline_fn(backend, short: int, width: int, height: int):
    import numpy as np

    from ..geometry.intrinsics import CameraIntrinsics
    from ..pipeline import DepthPipeline, Frame

    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    intrinsics = CameraIntrinsics(width * 0.9, width * 0.9, width / 2, height / 2, width, height)
    pipeline = DepthPipeline(backend, input_size=short)
    frame = Frame(rgb, intrinsics)
    return lambda: pipeline.process(frame, want_points=True)


def _time_torch_eager(onnx_path, pixels, args) -> dict[str, float]:
    """The transformers model's own forward (eager attention), as `pipeline("depth-estimation")` runs it."""
    import torch

    from ..inference.torch_backend import load_source_model

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    model, _ = load_source_model(onnx_path)
    model.eval()
    tensor = torch.from_numpy(pixels)

    def forward():
        with torch.inference_mode():
            return model(pixel_values=tensor).predicted_depth

    return _timeit(forward, args.frames, args.warmup)
