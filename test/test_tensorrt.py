"""TensorRT backend: the TensorRT-free helpers always; the engine itself only where TensorRT + a GPU exist."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from typing import ClassVar

import cv2
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from mde_ros.errors import BackendUnavailableError
from mde_ros.inference.cuda_probe import CudaReport, GpuInfo
from mde_ros.inference.deferred import DeferredEngine
from mde_ros.inference.engine_cache import (
    EngineFidelityError,
    EngineKey,
    Profile,
    ProfileError,
    check_fidelity,
    default_profile,
    fidelity_report,
    input_profile,
    make_profile,
    parse_shape,
    sidecar_path,
    static_profile,
    validate_cached_engine,
    write_engine,
)
from mde_ros.inference.factory import create_backend, tensorrt_importable
from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend
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
    sm_count=128,
    total_memory_mb=24564,
)


# --- profiles -----------------------------------------------------------------------------------


def test_default_profile_covers_landscape_and_portrait():
    profile = default_profile(250)  # rounded to 252
    assert profile.min == (1, 252, 252) and profile.opt == (1, 252, 336) and profile.max == (1, 336, 504)
    profile.check((1, 3, 252, 336))
    profile.check((1, 3, 336, 252))
    profile.check((1, 3, 252, 504))  # 2:1 landscape


def test_profile_opt_is_the_shape_frames_really_get():
    """opt rounds like frames (nearest multiple: 518x686 for 640x480), not up (518x700)."""
    from mde_ros.processing import network_size

    profile = default_profile(518)
    assert profile.opt == (1, *network_size(480, 640, 518, 14)) == (1, 518, 686)
    assert profile.max == (1, 686, 1036)  # not 1036x1036: memory sized for real frames
    assert profile.max[1] * profile.max[2] < (2 * 518) ** 2 * 0.7
    for height, width in ((480, 640), (720, 1280), (640, 480), (480, 960)):
        profile.check((1, 3, *network_size(height, width, 518, 14)))


def test_static_profile_from_the_camera():
    from mde_ros.inference.engine_cache import static_profile

    profile = static_profile(480, 640, 518)
    assert profile.min == profile.opt == profile.max == (1, 518, 686)
    assert make_profile(518, frame_size=(720, 1280)).opt == (1, 518, 924)
    assert make_profile(518, frame_size=(480, 640), max_shape="1x518x700").max == (1, 518, 700)


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
    assert name.endswith("1x252x252-1x252x336-1x336x504.engine")
    assert replace(KEY, trt_version="11.0.0").file_name() != name
    assert replace(KEY, precision="fp32").file_name() != name


def test_engine_key_tells_jetson_orin_modules_apart():
    """AGX Orin, Orin NX and Orin Nano all report "Orin", sm_87: SMs and memory differ."""
    agx = replace(KEY, gpu_name="Orin", compute_capability="8.7", sm_count=16, total_memory_mb=62800)
    nx = replace(agx, sm_count=8, total_memory_mb=15388)
    nano = replace(agx, sm_count=8, total_memory_mb=7620)
    names = {k.file_name() for k in (agx, nx, nano)}
    assert len(names) == 3
    assert "-orin-sm87-16sms-62800mb-" in agx.file_name()


def test_timing_cache_and_converted_onnx_paths(tmp_path):
    from mde_ros.inference.engine_cache import converted_onnx_path, timing_cache_path

    timing = timing_cache_path(tmp_path, KEY)
    assert timing.parent == tmp_path and "trt10.13.0.35" in timing.name and "sm89-128sms" in timing.name
    # one timing cache per TensorRT + device kind, shared by every model and profile
    assert timing_cache_path(tmp_path, replace(KEY, onnx_sha256="cd" * 32, profile="x")) == timing
    assert timing_cache_path(tmp_path, replace(KEY, sm_count=64)) != timing
    a = converted_onnx_path(tmp_path, "m", "ab" * 32, 2)
    assert a.parent == tmp_path and a.name == "m-abababababababab-fp16v2.onnx"
    assert converted_onnx_path(tmp_path, "m", "cd" * 32, 2) != a  # content, not path or mtime
    assert converted_onnx_path(tmp_path, "m", "ab" * 32, 3) != a


def test_refused_engine_is_remembered_until_the_threshold_accepts_it(tmp_path):
    from mde_ros.inference.engine_cache import refusal_path, remember_refusal, remembered_refusal

    path = tmp_path / KEY.file_name()
    assert remembered_refusal(path, KEY, 5e-3) == ""
    reports = [{"shape": [1, 252, 336], "rel_l1": 2e-4}, {"shape": [1, 504, 504], "rel_l1": 0.31}]
    remember_refusal(path, KEY, reports, 5e-3)
    why = remembered_refusal(path, KEY, 5e-3)
    assert "refused by its self-check before" in why and "0.31" in why and str(refusal_path(path)) in why
    assert remembered_refusal(path, replace(KEY, trt_version="10.16.0"), 5e-3) == ""  # a new TensorRT retries
    assert remembered_refusal(path, KEY, 0.5) == ""  # the user raised the threshold on purpose
    write_engine(path, b"engine", KEY, 1.0, reports, {"precision": "fp16"})  # a later good build
    assert not refusal_path(path).exists()


def test_fidelity_inputs_are_image_like_at_every_profile_shape():
    from mde_ros.inference.engine_cache import fidelity_cases, fidelity_inputs, fidelity_shapes

    spec = tiny_depth_anything_spec()
    profile = default_profile(252)
    shapes = fidelity_shapes(profile)
    assert shapes == [(1, 252, 336), (1, 252, 252), (1, 336, 504)]
    static = Profile((1, 252, 336), (1, 252, 336), (1, 252, 336))
    assert fidelity_shapes(static) == [(1, 252, 336)]
    # a static profile has one shape: the self-check still runs two different image-like inputs
    assert fidelity_cases(static) == [((1, 252, 336), 0), ((1, 252, 336), 1)]
    assert fidelity_cases(profile) == [(shape, 0) for shape in shapes]
    assert not np.array_equal(fidelity_inputs(shapes[0], spec, 0), fidelity_inputs(shapes[0], spec, 1))
    pixels = fidelity_inputs(shapes[0], spec)
    assert pixels.shape == (1, 3, 252, 336) and pixels.dtype == np.float32
    raw = pixels[0].transpose(1, 2, 0) * np.asarray(spec.std) * 255 + np.asarray(spec.mean) * 255
    assert raw.min() >= -1e-3 and raw.max() <= 255 + 1e-3  # a real uint8 range, normalised
    edges = np.abs(np.diff(raw, axis=1)).max()
    assert edges > 50  # hard edges, not only smooth shading


def test_sidecar_accepts_a_sound_engine_and_rejects_bad_ones(tmp_path):
    path = tmp_path / KEY.file_name()
    data = bytes(range(256)) * 64
    recipe = {"precision": "fp16", "mode": "BuilderFlag.FP16", "profile": "p", "converter_version": 2}
    write_engine(path, data, KEY, 12.3, [{"rel_l1": 1e-3}], recipe)
    assert validate_cached_engine(path, KEY) == (data, "")
    meta = json.loads(sidecar_path(path).read_text())
    assert meta["build_seconds"] == 12.3 and meta["recipe"] == recipe
    assert meta["sm_count"] == 128 and meta["total_memory_mb"] == 24564
    assert not list(tmp_path.glob(".*tmp"))  # atomic writes leave no temporary files
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
    # fp16 LayerNorm/Softmax (TensorRT normalises in fp32 internally; casts would block fused attention)
    assert by_op["LayerNormalization"] == {FLOAT16} and by_op["Softmax"] == {FLOAT16}
    assert by_op["MatMul"] == {FLOAT16} and by_op["Conv"] == {FLOAT16}
    producers = {o: n for n in graph.node for o in n.output}
    for node in graph.node:  # MatMul -> Softmax -> MatMul, no Cast or Mul in between
        if node.op_type == "Softmax":
            assert producers[node.input[0]].op_type == "MatMul"
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


def test_fp16_conversion_is_cached_by_content_atomically(fp32_onnx, tmp_path):
    import os
    import shutil

    from mde_ros.models.fp16 import CONVERTER_VERSION, ensure_converted

    source_dir = tmp_path / "readonly"
    source_dir.mkdir()
    src = source_dir / "model.onnx"
    shutil.copy(fp32_onnx, src)
    os.chmod(source_dir, 0o555)  # the fp16 file must not be written next to the source
    try:
        cache = tmp_path / "engines"
        first = ensure_converted(src, cache)
        assert first.parent == cache and f"fp16v{CONVERTER_VERSION}" in first.name
        assert sorted(p.name for p in cache.iterdir()) == [first.name]  # no temporary left behind
        stamp = first.stat().st_mtime_ns
        os.utime(src)  # a touched source with the same content is not reconverted
        assert ensure_converted(src, cache) == first and first.stat().st_mtime_ns == stamp
        assert list(source_dir.iterdir()) == [src]
    finally:
        os.chmod(source_dir, 0o755)
    session = ort.InferenceSession(str(first), providers=["CPUExecutionProvider"])
    assert session.run(None, {"pixel_values": smooth_pixels(np.random.default_rng(0), 42, 56)})[0].shape == (
        1,
        42,
        56,
    )


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


# --- static profile from the first frame (the node's `engine_profile: static`) -------------------
# The factory's TensorRT path with the GPU probes and the engine class replaced: everything but
# TensorRT itself (the profile chosen, when the engine is made, fallbacks, start-up errors) is real.

ORIN = GpuInfo(0, "Orin", "8.7", 8, 15388 << 20)
SHORT = 56


class FakeEngine(OnnxRuntimeBackend):
    """Stands in for TensorRTBackend: records its profile, refuses inputs outside it like an engine."""

    name = "tensorrt"
    made: ClassVar[list] = []
    failure: Exception | None = None

    def __init__(self, onnx_path, *, profile, gpu, **kwargs):
        FakeEngine.made.append(profile)
        if FakeEngine.failure is not None:
            raise FakeEngine.failure
        super().__init__(onnx_path, providers="cpu", threads=1)
        self.profile, self.gpu = profile, gpu

    def infer(self, pixel_values, prompt_ids=None):
        self.profile.check(pixel_values.shape)
        return super().infer(pixel_values, prompt_ids)


@pytest.fixture
def fake_gpu(monkeypatch):
    from mde_ros.inference import factory, tensorrt_backend

    report = CudaReport([ORIN], "cuda-python", [])
    monkeypatch.setattr(factory, "cuda_report", lambda: report)
    monkeypatch.setattr(factory, "tensorrt_importable", lambda: True)
    monkeypatch.setattr(tensorrt_backend, "import_tensorrt", lambda: None)
    monkeypatch.setattr(tensorrt_backend, "TensorRTBackend", FakeEngine)
    monkeypatch.setattr(FakeEngine, "made", [])
    monkeypatch.setattr(FakeEngine, "failure", None)
    return factory


@pytest.fixture(scope="module")
def castel():
    from mde_ros.data.visp import castel_frames

    return castel_frames(indices=[0, 12])


def test_static_profile_is_chosen_from_the_first_frame(fake_gpu, tiny_onnx, castel, caplog):
    from mde_ros.pipeline import DepthPipeline, Frame

    backend = fake_gpu.create_backend("tensorrt", tiny_onnx, input_size=SHORT, static_from_first_input=True)
    assert isinstance(backend, DeferredEngine) and FakeEngine.made == []  # nothing built at start-up
    assert backend.name == "tensorrt" and "first frame" in backend.describe()
    with DepthPipeline(backend, SHORT) as pipeline:
        for frame in castel:  # 640x480
            pipeline.process(Frame(frame.rgb, frame.intrinsics))
        expected = static_profile(480, 640, SHORT)
        assert FakeEngine.made == [expected] and expected.min == expected.max == (1, 56, 70)
        assert backend.inner.profile == expected and backend.device == "CPUExecutionProvider"
        # 320x240 becomes the same network input: same engine
        small = cv2.resize(castel[0].rgb, (320, 240), interpolation=cv2.INTER_AREA)
        assert pipeline.process(Frame(small)).depth.shape == (240, 320) and len(FakeEngine.made) == 1
        # another aspect ratio: its own engine, logged
        caplog.set_level(logging.WARNING, logger="mde_ros.inference.deferred")
        wide = np.ascontiguousarray(castel[0].rgb[60:420])  # 640x360
        assert pipeline.process(Frame(wide)).network_size == (56, 98)
        assert FakeEngine.made[1:] == [static_profile(360, 640, SHORT)]
        assert "network input changed from 1x56x70 to 1x56x98" in caplog.text


def test_static_profile_follows_the_reference_preprocessing(fake_gpu, tiny_onnx, castel):
    """`preprocess: reference` rounds the network size down: the profile is what the network gets."""
    from mde_ros.pipeline import DepthPipeline, Frame

    backend = fake_gpu.create_backend("auto", tiny_onnx, input_size=60, static_from_first_input=True)
    with DepthPipeline(backend, 60, preprocess="reference") as pipeline:
        result = pipeline.process(Frame(castel[0].rgb, castel[0].intrinsics))
    assert FakeEngine.made == [input_profile((1, *result.network_size))]
    assert result.network_size != static_profile(480, 640, 60).opt[1:]  # not the fast rounding


def test_dynamic_profile_and_known_frame_size_build_at_start_up(fake_gpu, tiny_onnx):
    kwargs = dict(input_size=SHORT, static_from_first_input=True)
    with fake_gpu.create_backend("tensorrt", tiny_onnx, input_size=SHORT) as backend:
        assert isinstance(backend, FakeEngine) and backend.profile == default_profile(SHORT)
    with fake_gpu.create_backend("tensorrt", tiny_onnx, frame_size=(480, 640), **kwargs) as backend:
        assert isinstance(backend, FakeEngine) and backend.profile == static_profile(480, 640, SHORT)
    with fake_gpu.create_backend("tensorrt", tiny_onnx, max_shape="1x112x112", **kwargs) as backend:
        assert isinstance(backend, FakeEngine) and backend.profile.max == (1, 112, 112)
    assert len(FakeEngine.made) == 3


def test_other_backends_are_created_as_before(fake_gpu, tiny_onnx):
    with fake_gpu.create_backend("onnxruntime", tiny_onnx, static_from_first_input=True) as backend:
        assert type(backend) is OnnxRuntimeBackend
    with fake_gpu.create_backend("auto", tiny_onnx, device="cpu", static_from_first_input=True) as backend:
        assert type(backend) is OnnxRuntimeBackend
    assert FakeEngine.made == []


def test_auto_falls_back_when_the_first_frame_engine_fails(fake_gpu, tiny_onnx, castel, caplog):
    from mde_ros.pipeline import DepthPipeline, Frame

    FakeEngine.failure = RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    caplog.set_level(logging.INFO)
    backend = fake_gpu.create_backend("auto", tiny_onnx, input_size=SHORT, static_from_first_input=True)
    assert backend.name == "tensorrt"
    with DepthPipeline(backend, SHORT) as pipeline:
        for frame in castel:
            assert pipeline.process(Frame(frame.rgb, frame.intrinsics)).depth.shape == (480, 640)
        assert backend.name == "onnxruntime" and len(FakeEngine.made) == 1  # not retried per frame
    assert "not made (RuntimeError: CUDA out of memory" in caplog.text and "falling back" in caplog.text
    assert "backend auto -> onnxruntime CPU" in caplog.text


def test_explicit_tensorrt_first_frame_failure_is_clear_and_not_retried(fake_gpu, tiny_onnx, castel):
    from mde_ros.pipeline import DepthPipeline, Frame

    FakeEngine.failure = EngineFidelityError("relative L1 error 0.3 (threshold 0.002)")
    backend = fake_gpu.create_backend("tensorrt", tiny_onnx, input_size=SHORT, static_from_first_input=True)
    with DepthPipeline(backend, SHORT) as pipeline:
        for frame in castel:
            with pytest.raises(BackendUnavailableError, match=r"1x56x70 not made \(EngineFidelityError: rel"):
                pipeline.process(Frame(frame.rgb, frame.intrinsics))
    assert len(FakeEngine.made) == 1


def test_start_up_errors_stay_at_start_up(fake_gpu, tiny_onnx, monkeypatch):
    """What can be checked without the frame is checked by the factory, deferred or not."""
    kwargs = dict(static_from_first_input=True)
    with pytest.raises(BackendUnavailableError, match="does not exist: 1 CUDA device"):
        fake_gpu.create_backend("tensorrt", tiny_onnx, device="cuda:1", **kwargs)
    with pytest.raises(BackendUnavailableError, match="runs on a CUDA device; device is cpu"):
        fake_gpu.create_backend("tensorrt", tiny_onnx, device="cpu", **kwargs)
    with pytest.raises(BackendUnavailableError, match="precision 'int8'"):
        fake_gpu.create_backend("tensorrt", tiny_onnx, precision="int8", **kwargs)
    monkeypatch.setattr(fake_gpu, "cuda_report", lambda: CudaReport([], "", []))
    with pytest.raises(BackendUnavailableError, match="TensorRT needs an NVIDIA GPU"):
        fake_gpu.create_backend("tensorrt", tiny_onnx, **kwargs)
    assert FakeEngine.made == []


def test_start_up_error_without_tensorrt_is_unchanged(tiny_onnx):
    if tensorrt_importable():
        pytest.skip("TensorRT is installed here")
    with pytest.raises(BackendUnavailableError, match="TensorRT is not installed"):
        create_backend("tensorrt", tiny_onnx, static_from_first_input=True)


def test_node_settings_choose_the_profile(fake_gpu, tiny_onnx):
    from mde_ros.config import NodeConfig, with_values
    from mde_ros.pipeline_factory import build_pipeline
    from mde_ros.scale.base import ScaleEstimator

    base = {"model": tiny_onnx, "backend": "tensorrt", "input_size": SHORT}
    static = with_values(NodeConfig(), base)
    assert static.model.engine_profile == "static" and static.model.precision == "fp16"
    with build_pipeline(static, ScaleEstimator()) as pipeline:
        assert isinstance(pipeline.backend, DeferredEngine)
    dynamic = with_values(NodeConfig(), {**base, "engine_profile": "dynamic"})
    with build_pipeline(dynamic, ScaleEstimator()) as pipeline:
        assert pipeline.backend.profile == default_profile(SHORT)
