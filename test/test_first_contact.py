"""A new user's first mistakes end with one line that names the fix, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from ros_helpers import REPO, node_command, random_domain_id, ros_env

from mde_ros.ros.parameters import PARAMETERS


def run(cmd: list[str], timeout: float = 120, **env) -> subprocess.CompletedProcess:
    full_env = ros_env(random_domain_id()) | env
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=REPO, env=full_env)


def one_line_error(result: subprocess.CompletedProcess, prefix: str) -> str:
    """The single stderr line of a refused command (exit 2, no traceback)."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(prefix), result.stderr
    return lines[0]


def test_depth_node_help_prints_usage_and_parameters_and_exits():
    """--help answers at once (a started node would run until the timeout) and lists every parameter."""
    result = run([sys.executable, "-m", "mde_ros.ros.depth_node", "--help"], timeout=60)
    assert result.returncode == 0 and result.stderr == "", result.stderr
    assert result.stdout.startswith("usage: depth_node")
    table = result.stdout.split("parameters:\n", 1)[1].splitlines()
    for param in PARAMETERS:
        row = next((line for line in table if line.split()[0].rstrip("*") == param.name), None)
        assert row is not None, f"{param.name} missing from --help"
        assert param.description[:30] in row


def test_help_after_ros_args_is_not_ours():
    from mde_ros.ros.node_help import wants_help

    assert wants_help(["depth_node", "-h"]) and wants_help(["--help", "--ros-args", "-p", "a:=1"])
    assert not wants_help(["depth_node", "--ros-args", "-p", "model:=--help"])


@pytest.mark.ros
def test_integer_for_a_float_parameter_names_the_corrected_command(tiny_onnx):
    result = run(node_command(tiny_onnx, params={"depth.max": 5}))
    line = one_line_error(result, "depth_node: error:")
    assert "-p depth.max:=5.0" in line and "max: 5.0" in line


@pytest.mark.ros
def test_float_for_an_integer_parameter_names_an_example(tiny_onnx):
    result = run(node_command(tiny_onnx, params={"threads": 2.0}))
    line = one_line_error(result, "depth_node: error:")
    assert "threads expects an integer" in line and "-p threads:=" in line


def test_infer_checks_images_before_loading_the_model(tmp_path):
    """A missing image is reported even though the model does not exist either (it is never loaded)."""
    cmd = [sys.executable, "-m", "mde_ros.cli", "infer", str(tmp_path / "typo.png"), "-o", str(tmp_path)]
    line = one_line_error(run(cmd + ["--model", str(tmp_path / "absent.onnx")]), "mde-ros infer: error:")
    assert "image not found" in line and "typo.png" in line
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    line = one_line_error(run([*cmd[:4], str(text), *cmd[5:], "--model", "x.onnx"]), "mde-ros infer: error:")
    assert "notes.png" in line and "OpenCV" in line


def test_infer_refuses_impossible_options_before_loading(tmp_path):
    image = tmp_path / "f.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    cmd = [sys.executable, "-m", "mde_ros.cli", "infer", str(image), "-o", str(tmp_path), "--model", "x.onnx"]
    line = one_line_error(run(cmd + ["--points-stride", "0"]), "mde-ros infer: error:")
    assert "--points-stride must be >= 1" in line


def test_missing_share_file_is_one_line_with_the_remedy(tmp_path):
    """Without AMENT_PREFIX_PATH and with no installed copy, the message says what to do."""
    probe = (
        "import sys; from mde_ros import paths, cli; paths._SOURCE_ROOT = paths.Path(sys.argv[1]); "
        "paths.installed_share_dirs = lambda: []; sys.exit(cli.main(['demo', '--output', sys.argv[1]]))"
    )
    result = run([sys.executable, "-c", probe, str(tmp_path)], AMENT_PREFIX_PATH="")
    line = one_line_error(result, "mde-ros demo: error:")
    assert "config/depth.yaml not found" in line and "pip install ." in line
