"""The GPU pre/post-processing path, run on CPU torch: the same code a GPU backend runs, compared
with the numpy/OpenCV pipeline on real castel frames (mde_ros/data/visp.py)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mde_ros.data.visp import castel_frames  # noqa: E402
from mde_ros.errors import InvalidInputError  # noqa: E402
from mde_ros.geometry.pointcloud import backproject  # noqa: E402
from mde_ros.inference.device_processing import TorchProcessing  # noqa: E402
from mde_ros.inference.onnxruntime_backend import OnnxRuntimeBackend  # noqa: E402
from mde_ros.inference.torch_backend import TorchBackend  # noqa: E402
from mde_ros.models.checkpoints import Checkpoint  # noqa: E402
from mde_ros.models.export import export_onnx  # noqa: E402
from mde_ros.models.fp16 import convert_file  # noqa: E402
from mde_ros.models.testing import tiny_depth_anything_spec  # noqa: E402
from mde_ros.models.torch_models import build_depth_anything  # noqa: E402
from mde_ros.pipeline import DepthPipeline, Frame  # noqa: E402
from mde_ros.processing import Preprocessor, resize_prediction  # noqa: E402
from mde_ros.scale.base import ScaleEstimator  # noqa: E402

SHORT = 56  # small network input: the tiny model on 640x480 castel frames


@pytest.fixture(scope="module")
def frames():
    return castel_frames(indices=[0, 12, 25])


@pytest.fixture(scope="module")
def onnx_pair(tmp_path_factory):
    """fp32 ONNX with outputs of order 1 (random-weight source, so the torch backend can run it)
    and the fp16 converter's ONNX of it (what TensorRT 11 builds from)."""
    spec = tiny_depth_anything_spec("metric", name="random-tiny-device", initializer_range=0.15)
    folder = tmp_path_factory.mktemp("device")
    source = Checkpoint(kind="random", seed=5).to_json()
    fp32 = export_onnx(build_depth_anything(spec, seed=5), spec, folder / "fp32.onnx", source=source)
    return fp32, convert_file(fp32, folder / "fp16.onnx")


def _rel(got: np.ndarray, expected: np.ndarray) -> float:
    """Relative L1 (the engine self-check's measure) and max error relative to the range."""
    return float(np.abs(got - expected).sum() / np.abs(expected).sum())


def test_preprocess_on_torch_matches_opencv_on_castel(frames):
    spec = tiny_depth_anything_spec()
    level = 1 / (255 * min(spec.std))  # one uint8 step in normalised units
    for short in (252, 518):  # shrinking and enlarging the 640x480 frame
        cpu, dev = Preprocessor(spec, short), TorchProcessing(spec, short)
        for frame in frames:
            expected, got = cpu(frame.rgb), dev.preprocess(dev.upload(frame.rgb)).numpy()
            assert got.shape == expected.shape
            diff = np.abs(got - expected)
            # OpenCV's fixed-point uint8 cubic rounds a handful of pixels the other way
            assert diff.max() <= level * 1.01 and (diff > 1e-4).mean() < 1e-3


def test_output_resize_and_backprojection_on_torch_match_numpy(frames):
    spec = tiny_depth_anything_spec()
    dev = TorchProcessing(spec, 252)
    raw = np.random.default_rng(0).uniform(0.5, 4.0, (1, 252, 336)).astype(np.float32)
    expected = resize_prediction(raw[0], 480, 640)
    got = dev.postprocess(torch.from_numpy(raw), 480, 640).numpy()
    assert np.abs(got - expected).max() <= 1e-4 * np.abs(expected).max()
    depth = expected.copy()
    depth[10:20, 30:40] = np.nan
    depth[100, 100] = -1
    intrinsics = frames[0].intrinsics
    for stride, max_range in ((1, 0.0), (4, 3.0)):
        ref = backproject(depth, intrinsics, stride, max_range)
        out = dev.backproject(torch.from_numpy(depth), intrinsics, stride, max_range).numpy()
        assert out.shape == ref.shape
        assert np.array_equal(np.isnan(out), np.isnan(ref))
        np.testing.assert_allclose(out, ref, rtol=1e-6, equal_nan=True)


def test_device_path_matches_the_cpu_pipeline_fp32(onnx_pair, frames):
    """TorchBackend with device processing (the GPU code path, here on CPU) vs ORT + numpy."""
    fp32, _ = onnx_pair
    gpu_path = DepthPipeline(TorchBackend(fp32, threads=1, device_processing=True), SHORT)
    cpu_path = DepthPipeline(OnnxRuntimeBackend(fp32, threads=1), SHORT)
    with gpu_path.backend, cpu_path.backend:
        for frame in frames:
            got = gpu_path.process(Frame(frame.rgb, frame.intrinsics))
            expected = cpu_path.process(Frame(frame.rgb, frame.intrinsics))
            assert "preprocess" not in got.timings_ms  # it really took the device path
            assert got.network_size == expected.network_size == (56, 70)
            assert np.abs(expected.prediction).mean() > 0.1
            assert _rel(got.prediction, expected.prediction) <= 1e-3
            assert _rel(got.depth, expected.depth) <= 1e-3


def test_device_path_matches_the_cpu_pipeline_with_the_fp16_converter_onnx(onnx_pair, frames):
    """The fp16 converter's ONNX (TensorRT 11's input), fed by the torch pre-processing and resized
    by the torch post-processing, vs the CPU pipeline on the same ONNX."""
    _, fp16 = onnx_pair
    with OnnxRuntimeBackend(fp16, threads=1) as backend:
        cpu_path = DepthPipeline(backend, SHORT)
        dev = TorchProcessing(backend.spec, SHORT)
        for frame in frames:
            pixels = dev.preprocess(dev.upload(frame.rgb)).numpy()
            raw = backend.infer(pixels)
            got = dev.postprocess(torch.from_numpy(raw), 480, 640).numpy()
            expected = cpu_path.process(Frame(frame.rgb, frame.intrinsics)).prediction
            assert _rel(got, expected) <= 1e-3


@pytest.fixture(scope="module")
def disparity_onnx(tmp_path_factory):
    """A relative (disparity) model with outputs of order 1, run by torch from its random source."""
    spec = tiny_depth_anything_spec("disparity", name="random-tiny-disparity", initializer_range=0.15)
    source = Checkpoint(kind="random", seed=7).to_json()
    path = tmp_path_factory.mktemp("disparity") / "disparity.onnx"
    return export_onnx(build_depth_anything(spec, seed=7), spec, path, source=source)


def _cloud_rel(got: np.ndarray, expected: np.ndarray) -> tuple[float, float]:
    """(relative L1 over points finite in both, fraction of points whose NaN/+Inf class differs)."""
    both = np.isfinite(got).all(-1) & np.isfinite(expected).all(-1)
    classes_differ = (np.isnan(got[..., 2]) != np.isnan(expected[..., 2])) | (
        np.isposinf(got[..., 2]) != np.isposinf(expected[..., 2])
    )
    return _rel(got[both], expected[both]), float(classes_differ.mean())


@pytest.mark.parametrize("model", ["metric", "disparity + fixed scale"])
def test_device_cloud_matches_the_cpu_cloud(onnx_pair, disparity_onnx, frames, monkeypatch, model):
    """GPU backends back-project on the device (here CPU torch): the host back-projection is not
    called, and the cloud equals the CPU pipeline's (OpenCV pre-processing, numpy depth and
    back-projection; same network, so that only the processing paths differ) on castel frames."""
    import mde_ros.pipeline as pipeline_module
    from mde_ros.scale import FixedScale

    onnx = onnx_pair[0] if model == "metric" else disparity_onnx
    scale = (lambda: ScaleEstimator()) if model == "metric" else (lambda: FixedScale(0.4, 0.05))
    args = dict(want_points=True, points_stride=2, points_max_range=0.0)
    gpu_path = DepthPipeline(TorchBackend(onnx, threads=1, device_processing=True), SHORT, scale())
    cpu_path = DepthPipeline(TorchBackend(onnx, threads=1, device_processing=False), SHORT, scale())
    with gpu_path, cpu_path:
        for frame in frames:
            expected = cpu_path.process(Frame(frame.rgb, frame.intrinsics), **args)
            # depth.max and points.max_range inside the depth range: +Inf points on both paths
            low, high = np.percentile(expected.depth[np.isfinite(expected.depth)], [20, 30])
            gpu_path.depth_max = cpu_path.depth_max = float(high)
            args["points_max_range"] = float(low)
            expected = cpu_path.process(Frame(frame.rgb, frame.intrinsics), **args)
            with monkeypatch.context() as patch:
                patch.setattr(pipeline_module, "backproject", _fail)  # the host path must not run
                got = gpu_path.process(Frame(frame.rgb, frame.intrinsics), **args)
            assert got.metric and got.points.shape == expected.points.shape == (240, 320, 3)
            assert np.isposinf(expected.points).any()
            # the device's depth + back-projection equal the host's on the same prediction ...
            same = backproject(got.depth, frame.intrinsics, 2, args["points_max_range"])
            assert np.array_equal(np.isnan(got.points), np.isnan(same))
            assert np.array_equal(np.isposinf(got.points), np.isposinf(same))
            np.testing.assert_allclose(got.points, same, rtol=1e-6, equal_nan=True)
            # ... and the device path's cloud equals the CPU path's
            rel, flipped = _cloud_rel(got.points, expected.points)
            assert rel <= 1e-3 and flipped <= 1e-3, (rel, flipped)


@pytest.mark.parametrize(
    "convention, scale",
    [
        ("disparity", (0.4, 0.05)),
        ("metric", (1.0, 0.0)),
        ("metric", (1.7, 0.0)),
        ("metric_canonical", (1.3, 0.0)),
    ],
)
def test_device_depth_is_the_host_depth_for_every_convention(onnx_pair, frames, convention, scale):
    """`DepthMapping` + `TorchProcessing.depth` give the pipeline's own host depth (incl. the
    canonical-focal gain and depth.max) from the same prediction, bit for bit up to float rounding."""
    from dataclasses import replace

    from mde_ros.scale.base import METRIC, ScaleState

    with OnnxRuntimeBackend(onnx_pair[0], threads=1) as backend:
        pipeline = DepthPipeline(backend, SHORT)
    pipeline.spec = replace(pipeline.spec, convention=convention, canonical_focal=50.0)
    pipeline.depth_max = 3.0
    state = ScaleState(METRIC, *scale)
    prediction = np.random.default_rng(0).uniform(-0.2, 4.0, (480, 640)).astype(np.float32)
    intrinsics, net_size = frames[0].intrinsics, (56, 70)
    base = pipeline._metric_base(prediction, intrinsics, net_size)
    expected, metric = pipeline._to_depth(prediction, state, base)
    expected[expected > pipeline.depth_max] = np.inf
    mapping = pipeline._depth_mapping(state, intrinsics, net_size)
    got = TorchProcessing(pipeline.spec, SHORT).depth(torch.from_numpy(prediction), mapping).numpy()
    assert metric and np.isnan(expected).any() and np.isposinf(expected).any()
    assert np.array_equal(np.isnan(got), np.isnan(expected)) and np.array_equal(
        np.isinf(got), np.isinf(expected)
    )
    np.testing.assert_allclose(got, expected, rtol=1e-6, equal_nan=True)


def test_cpu_backend_cloud_is_the_host_back_projection(onnx_pair, frames):
    """CPU backends have no device path: the cloud is `backproject` of the published depth."""
    with OnnxRuntimeBackend(onnx_pair[0], threads=1) as backend:
        assert backend.predict_frame(frames[0].rgb, SHORT) is None
        result = DepthPipeline(backend, SHORT).process(Frame(frames[0].rgb, frames[0].intrinsics), True, 3)
    expected = backproject(result.depth, frames[0].intrinsics, 3)
    assert np.array_equal(result.points, expected, equal_nan=True)


def test_device_input_size_is_the_cpu_one_for_every_frame_shape():
    """Long frames are capped and extreme ones refused exactly as on the CPU path."""
    spec = tiny_depth_anything_spec()
    for height, width in ((480, 640), (360, 640), (500, 1500), (1500, 500), (120, 900)):
        assert TorchProcessing(spec, 252).input_size(height, width) == Preprocessor(spec, 252).input_size(
            height, width
        )
    with pytest.raises(InvalidInputError, match="more elongated"):
        TorchProcessing(spec, 252).input_size(50, 900)


def _fail(*args, **kwargs):
    raise AssertionError("the host back-projection ran on a device backend")


# --- the same paths on a real GPU (skipped here: no GPU was lent to this work) ------------------


def _require_torch_cuda():
    if not torch.cuda.is_available():
        pytest.skip(f"torch {torch.__version__} has no CUDA device here (CPU build or no GPU)")


@pytest.mark.gpu
def test_torch_cuda_fp16_graphs_on_the_configured_device(onnx_pair, frames):
    _require_torch_cuda()
    fp32, _ = onnx_pair
    last = torch.cuda.device_count() - 1  # not the current device when there are several
    backend = TorchBackend(fp32, device=f"cuda:{last}", precision="fp16", cuda_graphs=True)
    assert backend.device_processing and backend.torch_device == torch.device("cuda", last)
    gpu_path, cpu_path = DepthPipeline(backend, SHORT), DepthPipeline(OnnxRuntimeBackend(fp32), SHORT)
    with gpu_path.backend, cpu_path.backend:
        for frame in frames:
            result = gpu_path.process(Frame(frame.rgb, frame.intrinsics), want_points=True)
            again = gpu_path.process(Frame(frame.rgb, frame.intrinsics)).prediction  # graph replay
            expected = cpu_path.process(Frame(frame.rgb, frame.intrinsics)).prediction
            assert np.array_equal(result.prediction, again)
            assert _rel(result.prediction, expected) <= 2e-3  # fp16 weights
            cloud = backproject(result.depth, frame.intrinsics)  # the cloud came from the GPU
            np.testing.assert_allclose(result.points, cloud, rtol=1e-5, equal_nan=True)


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_tensorrt_gpu_preprocessing_matches_the_cpu_pipeline(onnx_pair, frames, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (its wheels come from NVIDIA)")
    _require_torch_cuda()
    from mde_ros.inference.engine_cache import static_profile
    from mde_ros.inference.tensorrt_backend import TensorRTBackend

    fp32, _ = onnx_pair
    profile = static_profile(480, 640, SHORT)
    engine = TensorRTBackend(fp32, engine_dir=tmp_path, profile=profile)
    assert len(engine.fidelity) == 2 and max(r["rel_l1"] for r in engine.fidelity) <= 2e-3
    gpu_path, cpu_path = DepthPipeline(engine, SHORT), DepthPipeline(OnnxRuntimeBackend(fp32), SHORT)
    with gpu_path.backend, cpu_path.backend:
        for frame in frames:
            got = gpu_path.process(Frame(frame.rgb, frame.intrinsics))
            expected = cpu_path.process(Frame(frame.rgb, frame.intrinsics))
            assert "preprocess" not in got.timings_ms  # pre/post ran on the GPU
            assert _rel(got.prediction, expected.prediction) <= 3e-3
