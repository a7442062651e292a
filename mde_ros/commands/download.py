"""`mde-ros download NAME`: fetch a registry model's official weights into the weights folder."""

from __future__ import annotations

import argparse
import sys

EXAMPLES = """examples:
  mde-ros download da3metric-large
  mde-ros download depth-anything-v2-large --yes          # CC-BY-NC: accept the licence up front
  mde-ros download depth-anything-v2-small                # into $MDE_ROS_WEIGHTS when it is set
"""


def configure(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXAMPLES
    parser.add_argument("name", help="registry name (see `mde-ros models`)")
    parser.add_argument(
        "--yes",
        action="store_true",
        help="accept a non-commercial (CC-BY-NC) licence without asking (default: ask)",
    )
    parser.add_argument(
        "--mirror",
        default=None,
        help="base URL that replaces https://huggingface.co (same paths), e.g. a company cache "
        "(default: the publishers' host)",
    )
    parser.add_argument(
        "--weights-dir",
        default=None,
        help="destination root; files go to <dir>/<name>/ (default: $MDE_ROS_WEIGHTS or "
        "~/.cache/mde_ros/weights)",
    )


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..models.download import download_model
    from ..models.resolve import weights_root

    root = Path(args.weights_dir).expanduser() if args.weights_dir else weights_root()
    paths = download_model(
        args.name,
        root,
        confirm=lambda q: args.yes or _ask(q),
        mirror=args.mirror,
        progress=sys.stderr.isatty(),
    )
    print(f"done: {paths[0].parent}  (use it with `model: {args.name}`)")
    return 0


def _ask(question: str) -> bool:
    if not sys.stdin.isatty():
        print(f"{question} [no: not a terminal; pass --yes to accept]")
        return False
    return input(f"{question} [y/N] ").strip().lower() in ("y", "yes")
