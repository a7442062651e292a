"""`model: llm-mde-small`: shipped weights, ONNX composed without torch, every backend, CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def engines(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("llm_engines")


@pytest.fixture(scope="module")
def llm_onnx(engines) -> Path:
    """The shipped LLM-MDE's ONNX, composed once per module (seconds, no torch)."""
    from mde_ros.models.llm_mde_onnx import ensure_llm_mde_onnx

    return ensure_llm_mde_onnx(engines)


@pytest.fixture(scope="module")
def castel():
    from mde_ros.data.visp import castel_frames

    return castel_frames(indices=[3, 25])


def _network_inputs(frames, spec, short_side: int):
    """Pre-processed pixels and APG prompt ids of real frames, as the pipeline feeds them."""
    from mde_ros.models.prompts import prompt_fn_for
    from mde_ros.processing import Preprocessor

    pre, prompt = Preprocessor(spec, short_side), prompt_fn_for(spec)
    pixels = np.concatenate([pre(f.rgb) for f in frames])
    return np.ascontiguousarray(pixels, np.float32), np.concatenate([prompt(f.rgb) for f in frames])


def test_shipped_weights_are_small_fp16_trained_parts_only():
    from safetensors import safe_open

    from mde_ros.models.default_model import shipped_spec
    from mde_ros.models.llm_mde_onnx import MAPPING, PROTOTYPES, WEIGHTS_DIR, llm_mde_weights

    path = llm_mde_weights()
    assert path.stat().st_size <= 5 * 2**20
    assert (WEIGHTS_DIR / "MODEL_CARD.md").is_file()
    spec = shipped_spec(path)
    assert spec.name == "llm-mde-small" and spec.architecture == "llm_mde" and spec.needs_prompt
    with safe_open(str(path), "np") as handle:
        keys = list(handle.keys())
        dtypes = {handle.get_tensor(k).dtype for k in keys}
    assert PROTOTYPES in keys and not any(k.startswith(MAPPING) for k in keys)
    # only trained parts: no ViT, no MiniLM base weight, LoRA adapters only
    lm = [k for k in keys if k.startswith("lm.")]
    assert lm and all("lora_" in k for k in lm) and not any(k.startswith("vit.") for k in keys)
    assert dtypes <= {np.dtype(np.float16), np.dtype(np.int64)}


def test_composition_needs_no_torch_logs_its_steps_and_is_cached(tmp_path):
    code = (
        "import logging, sys\n"
        "logging.basicConfig(level=logging.INFO, stream=sys.stdout)\n"
        "from mde_ros.models.llm_mde_onnx import ensure_llm_mde_onnx\n"
        f"path = ensure_llm_mde_onnx({str(tmp_path)!r})\n"
        "stamp = path.stat().st_mtime_ns\n"
        f"assert ensure_llm_mde_onnx({str(tmp_path)!r}) == path and path.stat().st_mtime_ns == stamp\n"
        "print('TORCH', 'torch' in sys.modules, path.name)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "TORCH False mde-ros-llm-mde-small-" in result.stdout
    assert "building the llm-mde-small ONNX" in result.stdout and "done in" in result.stdout
    assert "loading MiniLM and the shipped tensors" in result.stdout + result.stderr


@pytest.mark.slow
def test_composed_onnx_matches_the_torch_export(llm_onnx, castel, tmp_path):
    """The torch-free composition computes what the torch model (transformers ViT + BERT) exported
    by torch computes, on real castel frames with their own prompts, at two sizes and batch 2."""
    pytest.importorskip("torch")
    import onnxruntime as ort

    from mde_ros.models.export import export_onnx
    from mde_ros.models.llm_mde_onnx import llm_mde_source, load_llm_mde

    model, spec = load_llm_mde()
    reference = export_onnx(model, spec, tmp_path / "torch.onnx", source=llm_mde_source().to_json())
    sessions = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (reference, llm_onnx)
    ]
    for short_side in (252, 98):
        pixels, prompt = _network_inputs(castel, spec, short_side)
        feeds = {"pixel_values": pixels, "prompt_ids": prompt}
        expected, got = (s.run(None, feeds)[0] for s in sessions)
        assert got.shape == (2, *pixels.shape[2:])
        assert np.abs(got - expected).max() < 1e-4
        assert expected.std() > 1e-3  # a real depth map, not a constant


@pytest.mark.slow
def test_torch_backend_agrees_with_onnxruntime_on_castel(llm_onnx, castel):
    """backend: torch runs the prompted ONNX (rebuilt from the weights its metadata names)."""
    pytest.importorskip("torch")
    from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from mde_ros.inference.torch_backend import TorchBackend
    from mde_ros.models.export import SOURCE_METADATA_KEY, read_metadata

    assert '"kind": "llm-mde"' in read_metadata(llm_onnx)[SOURCE_METADATA_KEY]
    with TorchBackend(llm_onnx, threads=1) as backend, OnnxRuntimeBackend(llm_onnx) as reference:
        pixels, prompt = _network_inputs(castel, backend.spec, 252)
        got, expected = backend.infer(pixels, prompt), reference.infer(pixels, prompt)
        with pytest.raises(ValueError, match="prompt_ids"):
            backend.infer(pixels)
    assert got.shape == expected.shape == (2, *pixels.shape[2:])
    assert np.abs(got - expected).max() <= 1e-4


def test_the_prompt_changes_the_output(llm_onnx, castel):
    """The prompt is a real input of the graph: another prompt, another depth map."""
    from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from mde_ros.models.prompts import tokenize

    with OnnxRuntimeBackend(llm_onnx) as backend:
        pixels, prompt = _network_inputs(castel[:1], backend.spec, 98)
        other = tokenize("image: colour, bright, high contrast, cluttered.", backend.spec.prompt_length)
        a, b = backend.infer(pixels, prompt), backend.infer(pixels, other)
    assert np.abs(a - b).max() > 1e-5


def test_tensorrt_profile_covers_prompt_ids(llm_onnx):
    """The TensorRT profile logic on the real LLM-MDE ONNX inputs (no TensorRT needed)."""
    import onnx

    from mde_ros.errors import InvalidModelError
    from mde_ros.inference.engine_cache import Profile
    from mde_ros.inference.tensorrt_backend import profile_shapes

    graph = onnx.load(str(llm_onnx), load_external_data=False).graph
    inputs = {i.name: tuple(d.dim_value or -1 for d in i.type.tensor_type.shape.dim) for i in graph.input}
    assert inputs == {"pixel_values": (-1, 3, -1, -1), "prompt_ids": (-1, 32)}
    profile = Profile((1, 252, 252), (1, 252, 336), (2, 336, 504))
    shapes = profile_shapes(profile, inputs)
    assert shapes["pixel_values"] == ((1, 3, 252, 252), (1, 3, 252, 336), (2, 3, 336, 504))
    assert shapes["prompt_ids"] == ((1, 32), (1, 32), (2, 32))  # batch follows pixels, length fixed
    assert set(profile_shapes(profile, {"pixel_values": (-1, 3, -1, -1)})) == {"pixel_values"}
    with pytest.raises(InvalidModelError, match="fixed prompt length"):
        profile_shapes(profile, {**inputs, "prompt_ids": (-1, -1)})
    with pytest.raises(InvalidModelError, match="not in the mde_ros contract"):
        profile_shapes(profile, {**inputs, "mask": (-1, 32)})


def test_registry_resolves_to_the_shipped_weights(llm_onnx, engines):
    from mde_ros.models.registry import get_entry
    from mde_ros.models.resolve import resolve_onnx

    assert get_entry("llm-mde-small").shipped
    assert resolve_onnx("llm-mde-small", engines) == llm_onnx
    listing = subprocess.run(
        [sys.executable, "-m", "mde_ros.cli", "models"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    line = next(x for x in listing.stdout.splitlines() if x.startswith("llm-mde-small "))
    assert " yes " in line and "shipped with mde_ros" in line


def _cli(*args: str, engines: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, MDE_ROS_ENGINE_DIR=str(engines), OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "mde_ros.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO, env=env)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_cli_infer_eval_bench(backend, llm_onnx, engines, castel, tmp_path):
    import cv2

    if backend == "torch":
        pytest.importorskip("torch")
    image = tmp_path / "castel.png"
    cv2.imwrite(str(image), cv2.cvtColor(castel[0].rgb, cv2.COLOR_RGB2BGR))
    common = ["--model", "llm-mde-small", "--backend", backend]
    result = _cli("infer", str(image), "-o", str(tmp_path / "out"), *common, engines=engines)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert list((tmp_path / "out").glob("*.png"))
    result = _cli("eval", *common, "--data", "visp:castel", "--frames", "0-1", engines=engines)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "AbsRel" in result.stdout or "abs_rel" in result.stdout
    result = _cli("bench", *common, "--frames", "2", "--warmup", "1", "--no-pipeline", engines=engines)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


def test_readme_shows_the_prompts_the_code_writes():
    """The README's APG examples are what `prompts.py` writes for castel frame 0 and Motorcycle."""
    from mde_ros.data.middlebury import motorcycle_frames
    from mde_ros.data.visp import castel_frames
    from mde_ros.models.prompts import image_statistics, prompt_text

    readme = (REPO / "README.md").read_text()
    for frame in (castel_frames(indices=[0])[0], motorcycle_frames()[0]):
        assert f"`{prompt_text(image_statistics(frame.rgb))}`" in readme
