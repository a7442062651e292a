"""`mde-ros build-engine`: build and cache a TensorRT engine offline (progress + build time)."""

from __future__ import annotations

import argparse

EXAMPLES = """\
  mde-ros build-engine --model default            # TensorRT + NVIDIA GPU ([gpu] extra)
  mde-ros build-engine --model default --frame-size 640x480   # the engine the node loads for that camera
  mde-ros build-engine --model model.onnx --input-size 364 --precision fp32
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", default="default", help="registry name, .onnx, .pth or transformers folder"
    )
    parser.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="engine precision")
    parser.add_argument("--input-size", type=int, default=0, help="short side the profile is built around")
    parser.add_argument(
        "--frame-size",
        default="",
        help="camera frame WxH, e.g. 640x480: a static profile (min = opt = max) for that camera only; "
        "the node (engine_profile: static) loads this engine for frames of that size",
    )
    parser.add_argument("--min-shape", default="", help="profile min BxHxW (default: 1xSxS)")
    parser.add_argument(
        "--opt-shape", default="", help="profile opt BxHxW (default: the network size of a 640x480 frame)"
    )
    parser.add_argument(
        "--max-shape", default="", help="profile max BxHxW (default: 2:1 landscape and 3:4 portrait frames)"
    )
    parser.add_argument("--device", default="cuda", help="cuda | cuda:N")
    parser.add_argument("--engine-dir", default="", help="cache folder (default: engines/ or ~/.cache)")
    parser.add_argument("--fidelity-threshold", type=float, default=None, help="max relative L1 vs ORT fp32")


def run(args: argparse.Namespace) -> int:
    import time

    from ..inference.factory import create_backend
    from ..models.resolve import resolve_onnx

    onnx_path = resolve_onnx(args.model, args.engine_dir or None)
    frame = None
    if args.frame_size:
        width, height = (int(v) for v in args.frame_size.lower().split("x"))
        frame = (height, width)
    start = time.perf_counter()
    backend = create_backend(
        "tensorrt",
        onnx_path,
        engine_dir=args.engine_dir or None,
        precision=args.precision,
        input_size=args.input_size or None,
        min_shape=args.min_shape,
        opt_shape=args.opt_shape,
        max_shape=args.max_shape,
        frame_size=frame,
        device=args.device,
        fidelity_threshold=args.fidelity_threshold,
        show_progress=True,
    )
    elapsed = time.perf_counter() - start
    state = f"built in {backend.build_seconds:.1f} s" if backend.build_seconds else "already cached, valid"
    print(f"engine {backend.engine_path} ({state}; total {elapsed:.1f} s)")
    print(f"profile {backend.profile.describe()}, device {backend.device}")
    backend.close()
    return 0
