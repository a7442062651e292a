"""`mde-ros infer IMAGE... --output DIR`: the same core as the node, on image files."""

from __future__ import annotations

import argparse

from .options import add_backend

EXAMPLES = """\
  mde-ros infer photo.jpg -o out/
  mde-ros infer a.png b.png -o out/ --intrinsics 525 525 319.5 239.5   # + coloured .ply clouds
  mde-ros infer frame.png -o out/ --model model.onnx --scale 0.8 0.02   # known scale: metres
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, PGM, ...)")
    parser.add_argument("--output", "-o", required=True, help="output folder")
    parser.add_argument("--model", default="default", help="registry name, .onnx, HF folder or .pth")
    add_backend(parser)
    parser.add_argument("--input-size", type=int, default=0, help="network short side (0: model default)")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: all)")
    parser.add_argument(
        "--intrinsics",
        nargs=4,
        type=float,
        metavar=("FX", "FY", "CX", "CY"),
        help="pinhole intrinsics; enables .ply",
    )
    parser.add_argument("--points-stride", type=int, default=1, help="keep every N-th point in the .ply")
    parser.add_argument("--max-range", type=float, default=0.0, help="clip points beyond this depth (0: off)")
    parser.add_argument(
        "--scale", nargs=2, type=float, metavar=("S", "T"), help="known 1/depth = S*d + T for relative models"
    )


def check_inputs(args: argparse.Namespace) -> None:
    """Refuse missing or unreadable images and impossible options with one message."""
    from pathlib import Path

    import cv2

    from ..errors import InvalidInputError

    missing = [name for name in args.images if not Path(name).is_file()]
    if missing:
        raise InvalidInputError(f"image not found: {', '.join(missing)}")
    unreadable = [name for name in args.images if not cv2.haveImageReader(name)]
    if unreadable:
        raise InvalidInputError(f"not an image OpenCV can read: {', '.join(unreadable)}")
    if args.points_stride < 1:
        raise InvalidInputError(f"--points-stride must be >= 1 (got {args.points_stride})")
    if args.intrinsics and min(args.intrinsics[:2]) <= 0:
        raise InvalidInputError(f"--intrinsics: FX and FY must be > 0 (got {args.intrinsics[:2]})")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import cv2
    import numpy as np

    from ..errors import InvalidInputError
    from ..geometry.intrinsics import CameraIntrinsics
    from ..geometry.ply import write_ply
    from ..inference.factory import create_backend
    from ..models.resolve import resolve_onnx
    from ..paths import engine_dir
    from ..pipeline import DepthPipeline, Frame
    from ..processing import colorize
    from ..scale.base import FixedScale

    check_inputs(args)  # before the model loads: a typo costs a second, not a model build
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    backend = create_backend(args.backend, resolve_onnx(args.model, engine_dir()), threads=args.threads)
    scale = FixedScale(*args.scale) if args.scale else None
    pipeline = DepthPipeline(backend, args.input_size or None, scale=scale)
    print(f"model {pipeline.spec.name} ({pipeline.spec.convention}) on {backend.describe()}")
    for name in args.images:
        bgr = cv2.imread(name, cv2.IMREAD_COLOR)
        if bgr is None:
            raise InvalidInputError(f"cannot read image {name}")
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        height, width = rgb.shape[:2]
        intrinsics = CameraIntrinsics(*args.intrinsics, width, height).validate() if args.intrinsics else None
        result = pipeline.process(
            Frame(rgb, intrinsics), intrinsics is not None, args.points_stride, args.max_range
        )
        stem = output / Path(name).stem
        unit = "m" if result.metric else "relative"
        np.save(f"{stem}_depth_{unit}.npy", result.depth)
        cv2.imwrite(f"{stem}_depth.png", colorize(result.depth))
        line = f"{name}: {width}x{height} -> {stem}_depth_{unit}.npy"
        if result.points is not None:
            colors = rgb[:: args.points_stride, :: args.points_stride]
            count = write_ply(f"{stem}.ply", result.points, colors)
            line += f", {stem}.ply ({count} points)"
        finite = result.depth[np.isfinite(result.depth)]
        if finite.size:
            line += (
                f"; depth {finite.min():.3f}..{finite.max():.3f} {unit}, {result.timings_ms['total']:.0f} ms"
            )
        print(line)
    pipeline.close()
    return 0
