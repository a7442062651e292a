"""TensorRT backend: the TensorRT-free helpers always; the engine itself only where TensorRT + a GPU exist."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mde_ros.inference.engine_cache import (
    EngineFidelityError,
    EngineKey,
    Profile,
    ProfileError,
    check_fidelity,
    default_profile,
    fidelity_report,
    make_profile,
    parse_shape,
    sidecar_path,
    validate_cached_engine,
    write_engine,
)
from mde_ros.models.export import export_onnx, smooth_pixels
from mde_ros.models.fp16 import FLOAT, FLOAT16, convert_to_fp16
from mde_ros.models.testing import tiny_depth_anything_spec
from mde_ros.models.torch_models import build_depth_anything

KEY = EngineKey(
    onnx_stem="depth-anything-v2-small-0123",
    onnx_sha256="ab" * 32,
    trt_version="10.13.0.35",
    gpu_name="NVIDIA GeForce RTX 4090",
    compute_capability="8.9",
    precision="fp16",
    profile=default_profile(252).slug(),
)


# --- profiles -----------------------------------------------------------------------------------


def test_default_profile_covers_landscape_and_portrait():
    profile = default_profile(250)  # rounded to 252
    assert profile.min == (1, 252, 252) and profile.opt == (1, 252, 336) and profile.max == (1, 504, 504)
    profile.check((1, 3, 252, 336))
    profile.check((1, 3, 336, 252))


def test_profile_parsing_and_validation():
    assert parse_shape("1x252x336") == (1, 252, 336)
    assert parse_shape("252x336") == (1, 252, 336)
    with pytest.raises(ProfileError, match="BxHxW"):
        parse_shape("big")
    with pytest.raises(ProfileError, match="multiples of 14"):
        Profile((1, 250, 250), (1, 252, 336), (1, 504, 504))
    with pytest.raises(ProfileError, match="min <= opt <= max"):
        Profile((1, 252, 252), (1, 518, 686), (1, 504, 504))
    assert make_profile(252, max_shape="2x518x686").max == (2, 518, 686)


def test_shape_outside_profile_names_the_remedy():
    profile = default_profile(252)
    with pytest.raises(ProfileError) as info:
        profile.check((1, 3, 518, 686))
    message = str(info.value)
    assert "1x518x686" in message and "outside the TensorRT engine profile" in message
    assert "--max-shape 1x518x686" in message and "input_size" in message
    with pytest.raises(ProfileError, match=r"\[B,3,H,W\]"):
        profile.check((1, 252, 336))


# --- cache names and sidecars -------------------------------------------------------------------


def test_engine_file_name_has_every_key_field():
    name = KEY.file_name()
    assert name.startswith("depth-anything-v2-small-0123-abababababababab-trt10.13.0.35-")
    assert "nvidia-geforce-rtx-4090" in name and "-sm89-" in name and "-fp16-" in name
    assert name.endswith("1x252x252-1x252x336-1x504x504.engine")
    assert replace(KEY, trt_version="11.0.0").file_name() != name
    assert replace(KEY, precision="fp32").file_name() != name


def test_sidecar_accepts_a_sound_engine_and_rejects_bad_ones(tmp_path):
    path = tmp_path / KEY.file_name()
    data = bytes(range(256)) * 64
    write_engine(path, data, KEY, 12.3, {"rel_l1": 1e-3})
    assert validate_cached_engine(path, KEY) == (data, "")
    assert json.loads(sidecar_path(path).read_text())["build_seconds"] == 12.3
    # stale: a TensorRT upgrade (same file name would be a bug elsewhere, the sidecar still catches it)
    loaded, why = validate_cached_engine(path, replace(KEY, trt_version="10.14.1"))
    assert loaded is None and "stale engine: trt_version" in why
    # truncated
    path.write_bytes(data[:1000])
    loaded, why = validate_cached_engine(path, KEY)
    assert loaded is None and "truncated" in why
    # same size, one byte flipped
    path.write_bytes(data[:-1] + b"\x00")
    loaded, why = validate_cached_engine(path, KEY)
    assert loaded is None and "corrupt" in why
    # sidecar missing or garbage
    sidecar_path(path).write_text("{not json")
    assert "unreadable" in validate_cached_engine(path, KEY)[1]
    sidecar_path(path).unlink()
    assert "no sidecar" in validate_cached_engine(path, KEY)[1]
    path.unlink()
    assert validate_cached_engine(path, KEY) == (None, "no cached engine")


def test_fidelity_check_reports_the_numbers():
    reference = np.linspace(1, 2, 100, dtype=np.float32).reshape(1, 10, 10)
    good = fidelity_report(reference, reference * 1.001)
    assert good["rel_l1"] == pytest.approx(1e-3, rel=1e-3)
    check_fidelity(good, 0.02, "engine")
    bad = fidelity_report(reference, reference * 1.5)
    with pytest.raises(EngineFidelityError, match=r"relative L1 error 0\.5 \(threshold 0\.02\)"):
        check_fidelity(bad, 0.02, "engine")
    overflow = reference.copy()
    overflow[0, 0, 0] = np.inf  # the fp16 overflow failure mode
    with pytest.raises(EngineFidelityError, match="non-finite outputs 1"):
        check_fidelity(fidelity_report(reference, overflow), 0.02, "engine")
    with pytest.raises(EngineFidelityError, match="shape"):
        fidelity_report(reference, reference[:, :5])


# --- fp16 ONNX conversion (what TensorRT 11 builds from) -----------------------------------------


@pytest.fixture(scope="module")
def fp32_onnx(tmp_path_factory):
    spec = tiny_depth_anything_spec("metric", initializer_range=0.15)
    path = tmp_path_factory.mktemp("fp16") / "fp32.onnx"
    return export_onnx(build_depth_anything(spec, seed=21), spec, path)


def test_fp16_conversion_runs_in_onnxruntime_and_stays_close(fp32_onnx, tmp_path):
    converted = convert_to_fp16(onnx.load(str(fp32_onnx)))
    graph = converted.graph
    assert [i.type.tensor_type.elem_type for i in graph.input] == [FLOAT]
    assert [o.type.tensor_type.elem_type for o in graph.output] == [FLOAT]
    types = {v.name: v.type.tensor_type.elem_type for v in graph.value_info}
    by_op: dict[str, set[int]] = {}
    for node in graph.node:
        by_op.setdefault(node.op_type, set()).add(types.get(node.output[0], FLOAT))
    assert by_op["LayerNormalization"] == {FLOAT} and by_op["Softmax"] == {FLOAT}
    assert by_op["MatMul"] == {FLOAT16} and by_op["Conv"] == {FLOAT16}
    original_keys = {p.key for p in onnx.load(str(fp32_onnx)).metadata_props}
    assert {p.key for p in converted.metadata_props} == original_keys
    fp16_path = tmp_path / "fp16.onnx"
    onnx.save(converted, str(fp16_path))
    cpu = ["CPUExecutionProvider"]
    sessions = [ort.InferenceSession(str(p), providers=cpu) for p in (fp32_onnx, fp16_path)]
    rng = np.random.default_rng(0)
    for height, width in ((70, 98), (84, 56)):  # dynamic shapes survive the conversion
        pixels = smooth_pixels(rng, height, width)
        reference, half = (s.run(None, {"pixel_values": pixels})[0] for s in sessions)
        assert half.dtype == np.float32 and half.shape == (1, height, width)
        report = fidelity_report(reference, half)
        assert 0 < report["rel_l1"] < 5e-3, report


# --- the engine itself (needs TensorRT and an NVIDIA GPU) ---------------------------------------


def _require_tensorrt():
    try:
        import tensorrt  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"TensorRT is not installed ({exc}): its wheels come from NVIDIA's index, need a GPU")
    from mde_ros.inference.factory import cuda_device_count

    if not cuda_device_count():
        pytest.skip("TensorRT is installed but no CUDA GPU is visible")


@pytest.mark.tensorrt
@pytest.mark.gpu
def test_engine_build_cache_and_rebuild(fp32_onnx, tmp_path):
    _require_tensorrt()
    from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
    from mde_ros.inference.tensorrt_backend import TensorRTBackend

    profile = Profile((1, 56, 56), (1, 70, 98), (2, 112, 112))
    backend = TensorRTBackend(fp32_onnx, engine_dir=tmp_path, profile=profile)
    assert backend.build_seconds > 0 and backend.engine_path.is_file()
    pixels = smooth_pixels(np.random.default_rng(3), 84, 56, batch=2)
    with OnnxRuntimeBackend(fp32_onnx) as reference:
        assert fidelity_report(reference.infer(pixels), backend.infer(pixels))["rel_l1"] < 0.02
    with pytest.raises(ProfileError, match="outside"):
        backend.infer(smooth_pixels(np.random.default_rng(3), 126, 56))
    backend.close()
    cached = TensorRTBackend(fp32_onnx, engine_dir=tmp_path, profile=profile)
    assert cached.build_seconds == 0  # reused
    cached.close()
    data = cached.engine_path.read_bytes()
    cached.engine_path.write_bytes(data[: len(data) // 2])  # truncated -> rebuilt
    rebuilt = TensorRTBackend(fp32_onnx, engine_dir=tmp_path, profile=profile)
    assert rebuilt.build_seconds > 0
    rebuilt.close()
