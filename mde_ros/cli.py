"""`mde-ros` command line. Each subcommand lives in `mde_ros.commands.<module>` and defines
`configure(parser)` and `run(args) -> int`; modules are imported only when their command runs,
so `mde-ros infer` never pays for torch.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .errors import MdeRosError

# command name -> (module, one-line help)
COMMANDS = {
    "infer": ("infer", "depth for image files: .npy, colorized PNG, .ply"),
    "export": ("export", "export a checkpoint to ONNX (the source of truth for every backend)"),
    "build-engine": ("build_engine", "build and cache a TensorRT engine offline"),
    "bench": ("bench", "latency / throughput / memory of a backend and of the pipeline"),
    "demo": ("demo", "run the node on the bundled sample sequence and record its output"),
    "train": ("train", "few-shot LoRA fine-tuning of LLM-MDE / DPT heads"),
    "eval": ("evaluate", "AbsRel, RMSE, delta accuracies against ground truth"),
    "eval-scale": ("eval_scale", "metric scale recovery accuracy and jitter"),
    "models": ("models", "list registry models and where their weights go"),
    "download": ("download", "fetch a registry model's official weights (licence shown first)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mde-ros", description="Monocular depth for ROS 2.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(_module=module)
        _command_module(module).configure(sub)
    return parser


def _command_module(module: str):
    return importlib.import_module(f"mde_ros.commands.{module}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return int(_command_module(args._module).run(args) or 0)
    except MdeRosError as exc:
        print(f"mde-ros {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
