"""`mde-ros export`: checkpoint (or random weights, for testing) -> contract ONNX [+ int8 copy]."""

from __future__ import annotations

import argparse

EXAMPLES = """\
  mde-ros export --model depth-anything-v2-small --output engines/da2s.onnx   # needs [export]
  mde-ros export --model depth-anything-v2-small:/path/depth_anything_v2_vits.pth --output da2s.onnx --int8
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model",
        required=True,
        help="registry name (weights from $MDE_ROS_WEIGHTS/<name>/), NAME:/path/file.pth, an original "
        ".pth, or a transformers folder",
    )
    parser.add_argument("--output", required=True, help="ONNX file to write")
    parser.add_argument("--opset", type=int, choices=(17, 18), default=17, help="ONNX opset")
    parser.add_argument(
        "--int8",
        action="store_true",
        help="also write <output>.int8.onnx (dynamic int8 MatMul weights) and print its accuracy loss",
    )
    parser.add_argument(
        "--random-weights",
        action="store_true",
        help="random weights of the registry architecture (testing/benchmarks only: NOT a depth model)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-weights")


def run(args: argparse.Namespace) -> int:
    import time
    from pathlib import Path

    from ..models.export import export_onnx
    from ..progress import stages

    output = Path(args.output)
    start = time.perf_counter()
    with stages(f"export {args.model}", 2) as stage:
        stage("loading the weights")
        model, spec, source = _load(args)
        stage("tracing to ONNX with torch (tens of seconds)")
        export_onnx(model, spec, output, opset=args.opset, source=source.to_json())
    print(f"exported {spec.name} -> {output} (opset {args.opset}, {time.perf_counter() - start:.1f} s)")
    if args.int8:
        _write_int8(output, spec, args.random_weights)
    return 0


def _load(args: argparse.Namespace):
    """(torch model, spec, Checkpoint) for --model, or random weights."""
    from ..models.checkpoints import Checkpoint, load_checkpoint

    if args.random_weights:
        spec = _random_spec(args.model)
        from ..models.torch_models import build_torch_model

        model = build_torch_model(spec, seed=args.seed)
        source = Checkpoint(kind="random", seed=args.seed)
        print(f"WARNING: random weights for {spec.name}: the output is noise, not depth")
        return model, spec, source
    return load_checkpoint(*_checkpoint_args(args.model))


def _random_spec(name: str):
    from ..models.registry import REGISTRY, get_spec
    from ..models.testing import tiny_depth_anything_spec

    tiny = {s.name: s for s in (tiny_depth_anything_spec("disparity"), tiny_depth_anything_spec("metric"))}
    if name in tiny:
        return tiny[name]
    if name not in REGISTRY:
        get_spec(name)  # raises with the list of names
    return REGISTRY[name]


def _checkpoint_args(model: str):
    from pathlib import Path

    from ..models.registry import REGISTRY
    from ..models.resolve import find_weights

    name, _, rest = model.partition(":")
    if rest and name in REGISTRY:
        return Path(rest).expanduser(), REGISTRY[name]
    if model in REGISTRY and not Path(model).exists():
        return find_weights(REGISTRY[model]), REGISTRY[model]
    return Path(model).expanduser(), None


def _write_int8(output, spec, random_weights: bool) -> None:
    from ..models.export import compare_onnx, quantize_int8
    from ..progress import stages

    int8 = output.with_suffix(".int8.onnx")
    short = spec.default_input_size
    shapes = [(short, short * 4 // 3 // 14 * 14), (short * 4 // 3 // 14 * 14, short)]
    with stages("int8", 2) as stage:
        stage("quantizing the MatMul weights")
        quantize_int8(output, int8)
        stage("measuring the accuracy loss vs fp32")
        error = compare_onnx(output, int8, shapes)
    print(
        f"int8 -> {int8}: accuracy loss vs fp32 on {len(shapes)} synthetic images {shapes}: "
        f"relative L1 {error['rel_l1'] * 100:.2f} %, max abs {error['max_abs']:.4g} "
        f"({'random weights: not representative of a trained model' if random_weights else spec.name})"
    )
