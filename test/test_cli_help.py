"""`mde-ros` explains itself: every option has help and shows its default, every command an example.

Iterates over the parser as built, so commands added later are held to the same rule.
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

import pytest

from mde_ros.cli import build_parser


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


COMMANDS = subcommands()


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_option_has_help(name):
    missing = [
        "/".join(a.option_strings) or a.dest
        for a in COMMANDS[name]._actions
        if not (a.help and a.help.strip())
    ]
    assert not missing, f"mde-ros {name}: options without help text: {missing}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_optional_option_shows_its_default(name):
    from mde_ros.cli import HelpFormatter

    formatter = HelpFormatter(f"mde-ros {name}")
    silent = [
        "/".join(a.option_strings)
        for a in COMMANDS[name]._actions
        if a.option_strings and not a.required and a.default != argparse.SUPPRESS
        if "default" not in formatter._get_help_string(a).lower()
    ]
    assert not silent, f"mde-ros {name}: options whose help shows no default: {silent}"


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_every_command_has_examples_that_parse(name):
    epilog = COMMANDS[name].epilog or ""
    lines = [line.split("#")[0].strip() for line in epilog.splitlines()[1:]]
    lines = [line for line in lines if line]
    assert epilog.startswith("examples:") and lines, f"mde-ros {name} has no example"
    for line in lines:
        words = shlex.split(line)
        assert words[:2] == ["mde-ros", name], line
        build_parser().parse_args(words[1:])  # an example that does not parse exits here


def test_shared_options_have_one_default_everywhere():
    from mde_ros.ros.parameters import BY_NAME

    for dest, node_default in (("backend", BY_NAME["backend"].default), ("model", BY_NAME["model"].default)):
        defaults = {
            name: action.default
            for name, parser in COMMANDS.items()
            for action in parser._actions
            # None / "": no model of its own (`bag` layers the option on a node params file whose
            # default is the node's; `eval-scale` simulates the network unless --model is given)
            if action.dest == dest and not action.required and action.default
        }
        assert set(defaults.values()) == {node_default}, f"--{dest} defaults differ: {defaults}"


def test_help_shows_defaults_and_examples():
    result = subprocess.run(
        [sys.executable, "-m", "mde_ros.cli", "bench", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    text = " ".join(result.stdout.split())  # argparse wraps lines
    assert "(default: auto)" in text and "(default: 640x480)" in text
    assert "examples: mde-ros bench" in text
