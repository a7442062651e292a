"""`mde-ros doctor`: what this machine can run, and how fast, in one report.

Sections: system (CPU, Jetson, NVIDIA driver), CUDA (each probe: cuda-python, torch), TensorRT,
ONNX Runtime providers, torch; then, for one model, the backend `auto` (or the one asked for)
really starts, its fidelity against ONNX Runtime fp32 at several shapes, and the bare network vs
the full pipeline (pre + infer + post + cloud, with a fixed metric scale so that the cloud is the
one the node publishes) on a 640x480 frame at 518 and at the model's default size: median, p90 and
their ratio, and where the cloud was computed (on the device for GPU backends, checked against the
host back-projection). The TensorRT profiles the node would build for that camera are printed
too. Missing pieces are reported with the package to install; the command exits 0 whenever the
model ran on some backend.
"""

from __future__ import annotations

import argparse

from .options import add_backend

DEFAULT_SIZES = "518,default"


EXAMPLES = """examples:
  mde-ros doctor                                   # what this machine has, default model, CPU or GPU
  mde-ros doctor --backend tensorrt --device cuda:0 --sizes 518
  mde-ros doctor --model depth-anything-v2-small --frames 50
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument(
        "--model", default="default", help="registry name, .onnx, .pth or transformers folder"
    )
    add_backend(parser)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--sizes",
        default=DEFAULT_SIZES,
        help="network short sides to benchmark, comma-separated; 'default' is the model's default",
    )
    parser.add_argument("--image-size", default="640x480", help="camera frame WxH for the pipeline timing")
    parser.add_argument("--frames", type=int, default=20, help="timed iterations per size")
    parser.add_argument("--warmup", type=int, default=2, help="untimed iterations before timing")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: library default)")
    parser.add_argument(
        "--engine-dir", default="", help="engine/ONNX cache folder (default: engines/ or ~/.cache)"
    )


def _section(title: str) -> None:
    print(f"\n== {title}")


def _item(label: str, value: str) -> None:
    print(f"  {label:22s} {value}")


def report_system() -> None:
    import os
    import platform
    import shutil
    import subprocess
    from pathlib import Path

    _section("system")
    _item("machine", f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}")
    model = Path("/proc/device-tree/model")
    tegra = Path("/etc/nv_tegra_release")
    if tegra.is_file() or (model.is_file() and "jetson" in model.read_text(errors="ignore").lower()):
        text = model.read_text(errors="ignore").strip("\x00\n ") if model.is_file() else "Jetson"
        release = tegra.read_text(errors="ignore").splitlines()[0] if tegra.is_file() else ""
        _item("jetson", f"{text} {release}".strip())
        _item(
            "",
            "TensorRT comes with JetPack (python3-libnvinfer): use a venv made with --system-site-packages",
        )
    version = Path("/proc/driver/nvidia/version")
    if version.is_file():
        _item("nvidia driver", version.read_text(errors="ignore").splitlines()[0].strip())
    elif shutil.which("nvidia-smi"):
        query = ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"]
        out = subprocess.run(query, capture_output=True, text=True, timeout=20)
        _item("nvidia-smi", (out.stdout or out.stderr).strip() or "no answer")
    else:
        _item("nvidia driver", "none found (no /proc/driver/nvidia/version, no nvidia-smi)")


def report_cuda():
    from ..inference.cuda_probe import cuda_report

    _section("CUDA")
    report = cuda_report()
    for result in report.results:
        if result.devices:
            for gpu in result.devices:
                _item(
                    result.name,
                    f"cuda:{gpu.index} {gpu.name}, sm_{gpu.compute_capability.replace('.', '')}, "
                    f"{gpu.sm_count} SMs, {gpu.memory_gib:.1f} GiB",
                )
        else:
            _item(result.name, result.problem or "no device")
    versions = _cuda_versions()
    if versions:
        _item("versions", versions)
    _item(
        "verdict",
        f"{report.count} CUDA device(s) via {report.source}" if report.devices else report.why_none(),
    )
    return report


def _cuda_versions() -> str:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        return ""
    parts = []
    for label, call in (
        ("driver API", cudart.cudaDriverGetVersion),
        ("runtime", cudart.cudaRuntimeGetVersion),
    ):
        err, value = call()
        if int(err) == 0:
            parts.append(f"{label} {value // 1000}.{value % 1000 // 10}")
    return ", ".join(parts)


def report_libraries() -> None:
    import importlib.util

    from ..inference.cuda_probe import ORT_GPU_HINT, TENSORRT_HINT, TORCH_CUDA_HINT
    from ..inference.onnxruntime_backend import available_providers

    _section("inference libraries")
    if importlib.util.find_spec("tensorrt") is None:
        _item("TensorRT", f"not installed ({TENSORRT_HINT})")
    else:
        try:
            import tensorrt

            _item("TensorRT", str(tensorrt.__version__))
        except Exception as exc:  # a broken install (missing libnvinfer) is worth reporting as such
            _item("TensorRT", f"installed but does not import: {type(exc).__name__}: {exc}")
    try:
        import onnxruntime

        providers = available_providers()
        note = "" if "CUDAExecutionProvider" in providers else f" (GPU: {ORT_GPU_HINT})"
        _item("ONNX Runtime", f"{onnxruntime.__version__}: {', '.join(providers)}{note}")
    except ImportError:
        _item("ONNX Runtime", "not installed (pip install onnxruntime)")
    if importlib.util.find_spec("torch") is None:
        _item("torch", "not installed (only the torch backend and exports need it)")
    else:
        import torch

        cuda = torch.version.cuda
        state = (
            f"CUDA {cuda}, available: {torch.cuda.is_available()}"
            if cuda
            else f"CPU-only build ({TORCH_CUDA_HINT})"
        )
        _item("torch", f"{torch.__version__}, {state}")


def _fidelity(backend, onnx_path, short: int, engine_dir) -> list[str]:
    """Backend vs ONNX Runtime fp32 on CPU at the profile corners around `short`; on the reference
    itself, the fp16 converter's ONNX (what TensorRT 11 builds from) instead."""
    from ..inference.engine_cache import (
        default_profile,
        fidelity_inputs,
        fidelity_prompt,
        fidelity_report,
        fidelity_shapes,
    )
    from ..inference.onnxruntime_backend import OnnxRuntimeBackend

    candidate = backend
    prefix = ""
    if backend.name == "onnxruntime" and backend.device == "CPUExecutionProvider":
        from ..models.fp16 import ensure_converted
        from ..paths import engine_dir as default_engine_dir

        converted = ensure_converted(onnx_path, engine_dir or default_engine_dir())
        candidate = OnnxRuntimeBackend(converted, providers="cpu")
        prefix = "fp16 converter ONNX (ORT CPU) "
    if backend.name == "tensorrt":
        from ..inference.tensorrt_backend import DEFAULT_FIDELITY_THRESHOLD

        reports = backend.fidelity or backend.self_check(DEFAULT_FIDELITY_THRESHOLD)
        return [f"{r['shape']}: rel L1 {r['rel_l1']:.2e}, max rel {r['max_rel']:.2e}" for r in reports]
    lines = []
    with OnnxRuntimeBackend(onnx_path, providers="cpu") as reference:
        for shape in fidelity_shapes(default_profile(short, backend.spec.patch_multiple)):
            pixels = fidelity_inputs(shape, backend.spec)
            prompt = fidelity_prompt(backend.spec, pixels)  # LLM-MDE: the image's own prompt
            r = fidelity_report(reference.infer(pixels, prompt), candidate.infer(pixels, prompt))
            lines.append(f"{prefix}{list(shape)}: rel L1 {r['rel_l1']:.2e}, max rel {r['max_rel']:.2e}")
    if candidate is not backend:
        candidate.close()
    return lines


def _bench(backend, short: int, width: int, height: int, frames: int, warmup: int) -> dict:
    import numpy as np

    from ..geometry.intrinsics import CameraIntrinsics
    from ..inference.engine_cache import fidelity_inputs, fidelity_prompt
    from ..models.spec import DISPARITY
    from ..pipeline import DepthPipeline, Frame
    from ..scale.base import FixedScale
    from .bench import _timeit_interleaved

    # A metric scale, so that the cloud is the one the node publishes (on the device for GPU backends)
    scale = FixedScale(1.0) if backend.spec.convention == DISPARITY else None
    pipeline = DepthPipeline(backend, input_size=short, scale=scale)
    net_h, net_w = pipeline.preprocess.input_size(height, width)
    pixels = fidelity_inputs((1, net_h, net_w), backend.spec)
    prompt = fidelity_prompt(backend.spec, pixels)
    rgb = np.random.default_rng(1).integers(0, 255, (height, width, 3), dtype=np.uint8)
    intrinsics = CameraIntrinsics(width * 0.9, width * 0.9, width / 2, height / 2, width, height)
    frame = Frame(rgb, intrinsics)
    fns = {
        "bare": lambda: backend.infer(pixels, prompt),
        "pipeline": lambda: pipeline.process(frame, want_points=True),
    }
    stats = _timeit_interleaved(fns, frames, warmup)
    stats["size"] = (net_h, net_w)
    stats["cloud"] = _cloud_check(pipeline, frame)
    return stats


def _cloud_check(pipeline, frame) -> str:
    """Where the cloud was computed, and (device) how far it is from the host back-projection of
    the same depth image."""
    import numpy as np

    from ..geometry.pointcloud import backproject

    on_device = pipeline.backend.predict_frame(frame.rgb, pipeline.input_size) is not None
    result = pipeline.process(frame, want_points=True)
    if not on_device:
        return "back-projected on the host (CPU pre/post-processing)"
    host = backproject(result.depth, frame.intrinsics)
    finite = np.isfinite(host) & np.isfinite(result.points)
    same_classes = np.array_equal(np.isnan(host), np.isnan(result.points))
    err = float(np.abs(result.points - host)[finite].max() / max(np.abs(host[finite]).max(), 1e-12))
    return f"back-projected on the device; vs host: max rel {err:.1e}, NaN pattern equal: {same_classes}"


def run(args: argparse.Namespace) -> int:
    from ..inference.factory import create_backend
    from ..models.onnx_contract import read_spec
    from ..models.resolve import resolve_onnx

    print("mde-ros doctor: what this machine can run")
    report_system()
    cuda = report_cuda()
    report_libraries()
    width, height = (int(v) for v in args.image_size.lower().split("x"))
    engine_dir = args.engine_dir or None
    _section(f"model {args.model}")
    onnx_path = resolve_onnx(args.model, engine_dir)
    spec = read_spec(onnx_path)
    _item("onnx", str(onnx_path))
    sizes = [
        spec.default_input_size if s.strip() == "default" else int(s)
        for s in args.sizes.split(",")
        if s.strip()
    ]
    _report_profiles(spec, sizes, height, width)
    results = []
    failures = []
    for short in dict.fromkeys(sizes):
        try:
            backend = create_backend(
                args.backend,
                onnx_path,
                threads=args.threads,
                engine_dir=engine_dir,
                input_size=short,
                frame_size=(height, width),
                device=args.device,
            )
        except Exception as exc:  # a doctor reports what fails instead of dying on it
            _section(f"short side {short}: backend {args.backend} did not start")
            _item("error", f"{type(exc).__name__}: {exc}")
            failures.append(short)
            continue
        with backend:
            _section(f"short side {short}: {backend.describe()}")
            if getattr(backend, "engine_path", None):
                state = (
                    f"built in {backend.build_seconds:.1f} s"
                    if backend.build_seconds
                    else "loaded from cache"
                )
                _item("engine", f"{backend.engine_path.name} ({state})")
            try:
                for line in _fidelity(backend, onnx_path, short, engine_dir):
                    _item("fidelity vs ORT fp32", line)
            except Exception as exc:
                _item("fidelity vs ORT fp32", f"FAILED: {type(exc).__name__}: {exc}")
            stats = _bench(backend, short, width, height, args.frames, args.warmup)
            results.append((backend.describe(), stats))
            _print_bench(stats, width, height)
    _section("summary")
    for where, stats in results:
        net_h, net_w = stats["size"]
        ratio = stats["pipeline"]["median"] / stats["bare"]["median"]
        _item(
            f"{width}x{height} -> {net_h}x{net_w}",
            f"bare {stats['bare']['median']:.1f} ms, pipeline {stats['pipeline']['median']:.1f} ms "
            f"({ratio:.2f}x) on {where}",
        )
    on_gpu = any("cuda" in where.lower() for where, _ in results)
    if on_gpu:
        _item("verdict", "ran on the GPU")
    else:
        why = cuda.why_none() or "a GPU is visible, but no GPU backend started (see the log above)"
        _item("verdict", f"CPU figures: {why}")
    if failures:
        _item("not run", f"short side(s) {', '.join(map(str, failures))}: the backend did not start (above)")
    return 0 if results else 1


def _report_profiles(spec, sizes: list[int], height: int, width: int) -> None:
    """The TensorRT profiles the node would build for this camera (TensorRT-free: printed everywhere)."""
    from ..inference.engine_cache import default_profile, static_profile

    for short in dict.fromkeys(sizes):
        static = static_profile(height, width, short, spec.patch_multiple)
        dynamic = default_profile(short, spec.patch_multiple)
        _item(f"engine profile {short}", f"static (node default) {static.describe()}")
        _item("", f"dynamic {dynamic.describe()}")


def _print_bench(stats: dict, width: int, height: int) -> None:
    net_h, net_w = stats["size"]
    for name, label in (
        ("bare", f"bare network {net_h}x{net_w}"),
        ("pipeline", f"pipeline {width}x{height} +cloud"),
    ):
        s = stats[name]
        _item(label, f"median {s['median']:.2f} ms, p90 {s['p90']:.2f} ms")
    _item("pipeline / bare", f"{stats['pipeline']['median'] / stats['bare']['median']:.3f}")
    _item("point cloud", stats["cloud"])
