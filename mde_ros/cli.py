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
from .progress import use_bars

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
    "bag": ("bag", "depth for recorded rosbag2 bags (MCAP, sqlite3); many bags as Ray tasks"),
    "doctor": ("doctor", "report GPU/CUDA/TensorRT/ONNX Runtime/torch, fidelity and bare vs pipeline speed"),
    "download": ("download", "fetch a registry model's official weights (licence shown first)"),
}


EXAMPLES = """\
  mde-ros infer photo.jpg -o out/   # depth of an image file (default model, offline, no torch)
  mde-ros demo                      # the node on a real recorded sequence, over ROS 2
  mde-ros models                    # every model name the node accepts
  mde-ros COMMAND --help            # every option of a command, with its default"""


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks and appends each option's default to its help."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            not action.option_strings
            or action.required
            or default == argparse.SUPPRESS
            or "default" in text.lower()  # the text already says it
        ):
            return text
        if default is None or default == "" or default == []:
            shown = "not set"
        elif isinstance(default, bool):
            shown = "on" if default else "off"
        else:
            shown = "%(default)s"
        return f"{text} (default: {shown})"


def _examples(text: str) -> str:
    return "examples:\n" + text.strip("\n")


def build_parser() -> argparse.ArgumentParser:
    """The `mde-ros` parser: every command's options with help, defaults and its EXAMPLES epilog."""
    parser = argparse.ArgumentParser(
        prog="mde-ros",
        description="Monocular depth for ROS 2.",
        epilog=_examples(EXAMPLES),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        command = _command_module(module)
        examples = getattr(command, "EXAMPLES", "")  # a module-level string of example command lines
        sub = subparsers.add_parser(
            name,
            help=help_text,
            description=help_text,
            epilog=_examples(examples) if examples else None,
            formatter_class=HelpFormatter,
        )
        sub.set_defaults(_module=module)
        command.configure(sub)
    return parser


def _command_module(module: str):
    return importlib.import_module(f"mde_ros.commands.{module}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_bars(sys.stderr.isatty())  # a terminal gets tqdm bars; logs and pipes get log lines
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
