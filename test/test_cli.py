"""`mde-ros` as a user runs it: real files in, real files out."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest

from mde_ros.geometry.ply import read_ply


def run_cli(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mde_ros.cli", *args], capture_output=True, text=True, timeout=timeout
    )


def test_help_lists_every_subcommand():
    result = run_cli("--help")
    assert result.returncode == 0, result.stderr
    for name in (
        "infer",
        "export",
        "build-engine",
        "bench",
        "demo",
        "train",
        "eval",
        "eval-scale",
        "models",
        "doctor",
    ):
        assert name in result.stdout


def test_infer_writes_depth_colorized_and_cloud(tmp_path, tiny_onnx, rng):
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), rng.integers(0, 256, (120, 160, 3), dtype=np.uint8))
    out = tmp_path / "out"
    result = run_cli(
        "infer", str(image), "--output", str(out), "--model", tiny_onnx, "--backend", "onnxruntime",
        "--input-size", "112", "--intrinsics", "150", "150", "79.5", "59.5",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    depth = np.load(out / "frame_depth_relative.npy")  # a relative model never writes metres
    assert depth.shape == (120, 160) and depth.dtype == np.float32
    assert cv2.imread(str(out / "frame_depth.png")).shape == (120, 160, 3)
    xyz, _ = read_ply(out / "frame.ply")
    assert len(xyz) == np.isfinite(depth).sum()
    assert "frame.ply" in result.stdout


def test_infer_fixed_scale_writes_metres(tmp_path, tiny_onnx, rng):
    image = tmp_path / "f.png"
    cv2.imwrite(str(image), rng.integers(0, 256, (64, 80, 3), dtype=np.uint8))
    options = ["--model", tiny_onnx, "--input-size", "56", "--scale", "0.5", "0.2"]
    result = run_cli("infer", str(image), "-o", str(tmp_path), *options)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "f_depth_m.npy").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "/nonexistent/model.onnx"], "not found"),
        (["--backend", "warp-drive"], "invalid choice"),
    ],
)
def test_infer_errors_name_the_remedy(tmp_path, tiny_onnx, args, message):
    image = tmp_path / "f.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    base = ["infer", str(image), "-o", str(tmp_path), "--model", tiny_onnx]
    result = run_cli(*base, *args)
    assert result.returncode == 2
    assert message in result.stderr


def test_corrupt_onnx_is_refused_with_remedy(tmp_path, tiny_onnx):
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(open(tiny_onnx, "rb").read()[:5000])
    image = tmp_path / "f.png"
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    result = run_cli(
        "infer", str(image), "-o", str(tmp_path), "--model", str(corrupt), "--backend", "onnxruntime"
    )
    assert result.returncode == 2
    assert "mde-ros export" in result.stderr
