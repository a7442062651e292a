"""The runtime install (requirements.txt + requirements-nodeps.txt, no torch) runs the node end to end.

A fresh venv (no system site-packages) gets only the runtime requirements, exactly as the README's
pip path installs them; the pip cache keeps this fast after the first run. In that venv the node
composes the default model's ONNX itself (no torch) and serves a real castel frame over DDS; the
shipped LLM-MDE is composed and run there too.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import venv
from pathlib import Path

import numpy as np
import pytest
from ros_helpers import (
    PARAMS_FILE,
    REPO,
    NodeProcess,
    RosClient,
    header,
    random_domain_id,
    unique_namespace,
)

pytestmark = [pytest.mark.slow, pytest.mark.ros]
HEAVY = ("torch", "transformers", "peft", "sentence_transformers")


def _pip(python: Path, *args: str) -> None:
    cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"


@pytest.fixture(scope="module")
def runtime_python(tmp_path_factory) -> Path:
    """Python of a venv holding the runtime requirements only."""
    root = tmp_path_factory.mktemp("runtime") / "venv"
    venv.EnvBuilder(with_pip=True, system_site_packages=False).create(root)
    python = root / "bin" / "python"
    _pip(python, "-r", str(REPO / "requirements.txt"))
    _pip(python, "--no-deps", "-r", str(REPO / "requirements-nodeps.txt"))
    _pip(python, "--no-deps", str(REPO))  # the package itself: console scripts + share/mde_ros
    return python


def test_runtime_venv_has_no_torch(runtime_python):
    for module in HEAVY:
        result = subprocess.run(
            [str(runtime_python), "-c", f"import {module}"], capture_output=True, text=True, timeout=60
        )
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, module
    # and the runtime's modules import there (the CLI too), none pulling torch in
    modules = "mde_ros.ros.depth_node, mde_ros.cli, mde_ros.commands.infer, mde_ros.commands.bench"
    probe = f"import sys, {modules}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [str(runtime_python), "-c", probe], capture_output=True, text=True, env=env, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_node_serves_the_default_model_from_the_runtime_venv(runtime_python, tmp_path, monkeypatch):
    from mde_ros.data.visp import castel_frames
    from mde_ros.ros.image_conversion import array_from_msg, image_msg
    from mde_ros.ros.sample_player import camera_info_msg

    frame = castel_frames(indices=[25])[0]
    monkeypatch.setenv("MDE_ROS_ENGINE_DIR", str(tmp_path / "engines"))  # composed afresh, in the venv
    domain, namespace = random_domain_id(), unique_namespace()
    cmd = [str(runtime_python), "-m", "mde_ros.ros.depth_node", "--ros-args"]
    cmd += ["--params-file", str(PARAMS_FILE), "-r", f"__ns:={namespace}"]
    cmd += ["-p", "model:=default", "-p", "scale.mode:=fixed"]
    node = NodeProcess(cmd, domain, tmp_path / "node.log")
    client = RosClient(domain, namespace, outputs=("depth/image",))
    try:
        assert client.wait_connected(180), f"node did not come up:\n{node.output()}"
        depth = None
        for attempt in range(20):  # best-effort input: resend until one frame is through
            hdr = header(100.0 + attempt, "camera_optical_frame")
            client.info_pub.publish(camera_info_msg(frame.intrinsics, hdr))
            time.sleep(0.05)
            client.image_pub.publish(image_msg(frame.rgb, "rgb8", hdr))
            depth = client.wait_for("depth/image", timeout=15)
            if depth is not None:
                break
        assert depth is not None, f"no depth from the runtime venv's node:\n{node.output()}"
        values = array_from_msg(depth)
        assert values.shape == frame.rgb.shape[:2]
        finite = values[np.isfinite(values)]
        assert finite.size > 0.9 * values.size and finite.std() > 0
        assert list((tmp_path / "engines").glob("mde-ros-default-*.onnx")), "default ONNX not built"
    finally:
        client.close()
        rc = node.stop(signal.SIGINT)
    assert rc == 0, f"depth_node exited {rc}:\n{node.output()}"
    assert "Traceback" not in node.output()


def test_runtime_venv_runs_llm_mde_without_torch(runtime_python, tmp_path):
    """`model: llm-mde-small` in the runtime venv: ONNX composed there (no torch), prompt tokenised
    there, a castel frame through the pipeline on ONNX Runtime."""
    code = (
        "import sys\n"
        "from mde_ros.data.visp import castel_frames\n"
        "from mde_ros.inference.factory import create_backend\n"
        "from mde_ros.models.resolve import resolve_onnx\n"
        "from mde_ros.pipeline import DepthPipeline, Frame\n"
        f"path = resolve_onnx('llm-mde-small', {str(tmp_path)!r})\n"
        "frame = castel_frames(indices=[25])[0]\n"
        "pipeline = DepthPipeline(create_backend('onnxruntime', path))\n"
        "result = pipeline.process(Frame(frame.rgb, frame.intrinsics))\n"
        "print(path.name, result.prediction.shape, float(result.prediction.std()) > 0)\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO))
    result = subprocess.run(
        [str(runtime_python), "-c", code], capture_output=True, text=True, env=env, cwd=REPO, timeout=600
    )
    assert result.returncode == 0, result.stderr[-3000:]
    first, heavy = result.stdout.strip().splitlines()[-2:]
    assert first.startswith("mde-ros-llm-mde-small-") and first.endswith("(480, 640) True")
    assert heavy == "[]"


def test_installed_copy_finds_its_share_files_without_ament(runtime_python, tmp_path):
    """pip puts config/ under <venv>/share/mde_ros; found there with no AMENT_PREFIX_PATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("AMENT_PREFIX_PATH", "PYTHONPATH")}
    probe = "from mde_ros.paths import config_file; print(config_file('depth.yaml'))"
    result = subprocess.run(
        [str(runtime_python), "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=60
    )
    assert result.returncode == 0, result.stderr
    venv_root = runtime_python.parents[1]
    assert Path(result.stdout.strip()) == venv_root / "share" / "mde_ros" / "config" / "depth.yaml"
    node_help = subprocess.run(
        [str(venv_root / "bin" / "depth_node"), "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert node_help.returncode == 0 and node_help.stdout.startswith("usage: depth_node"), node_help.stderr
