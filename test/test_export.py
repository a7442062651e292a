"""Export: ONNX checker, ONNX Runtime vs torch parity at non-square sizes, dynamic batch, int8, resolve."""

from __future__ import annotations

import os

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from mde_ros.errors import ModelNotFoundError
from mde_ros.models.checkpoints import hf_to_original
from mde_ros.models.export import compare_onnx, export_onnx, quantize_int8, read_metadata
from mde_ros.models.onnx_contract import read_spec
from mde_ros.models.registry import REGISTRY
from mde_ros.models.resolve import resolve_onnx
from mde_ros.models.testing import tiny_depth_anything_spec
from mde_ros.models.torch_models import build_depth_anything, depth_module


def _session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


@pytest.mark.parametrize(("opset", "convention"), [(17, "disparity"), (18, "metric")])
def test_export_parity_at_two_non_square_sizes_and_batch(tmp_path, opset, convention):
    spec = tiny_depth_anything_spec(convention)
    model = build_depth_anything(spec, seed=7)
    path = export_onnx(model, spec, tmp_path / "m.onnx", opset=opset)
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph, full_check=True)
    assert graph.opset_import[0].version == opset
    assert read_spec(path).convention == convention
    session = _session(path)
    reference = depth_module(model)
    rng = np.random.default_rng(0)
    # Neither size is the trace size (98x140); batch 2 checks the dynamic batch axis.
    for batch, height, width in ((1, 70, 126), (2, 154, 84)):
        pixels = rng.standard_normal((batch, 3, height, width), dtype=np.float32)
        (onnx_out,) = session.run(None, {"pixel_values": pixels})
        with torch.no_grad():
            torch_out = reference(torch.from_numpy(pixels)).numpy()
        assert onnx_out.shape == (batch, height, width)
        assert _rel_error(onnx_out, torch_out) <= 1e-4
        # the transformers forward (with its int() casts) agrees too when run eagerly
        with torch.no_grad():
            eager = model(torch.from_numpy(pixels)).predicted_depth.numpy()
        assert _rel_error(onnx_out, eager) <= 1e-4


def test_int8_quantizes_matmul_only_and_keeps_metadata(tmp_path, tiny_onnx):
    int8 = quantize_int8(tiny_onnx, tmp_path / "m.int8.onnx")
    ops = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} <= ops
    assert "ConvInteger" not in ops
    assert read_metadata(tiny_onnx).keys() <= read_metadata(int8).keys()
    assert read_spec(int8) == read_spec(tiny_onnx)
    error = compare_onnx(tiny_onnx, int8, [(56, 84)])
    assert 0 < error["rel_l1"] < 0.2


def _tiny_registered(monkeypatch, name="tiny-resolve-test"):
    spec = tiny_depth_anything_spec()
    spec = type(spec)(**{**spec.__dict__, "name": name, "checkpoint_files": ("tiny.pth",)})
    monkeypatch.setitem(REGISTRY, name, spec)  # a test-only entry, gone after the test
    model = build_depth_anything(spec, seed=2)
    original = hf_to_original(model.state_dict(), spec.config["backbone_config"]["num_hidden_layers"])
    return spec, model, original


def test_resolve_registry_name_exports_once(tmp_path, monkeypatch):
    spec, model, original = _tiny_registered(monkeypatch)
    monkeypatch.setenv("MDE_ROS_WEIGHTS", str(tmp_path / "weights"))
    with pytest.raises(ModelNotFoundError, match=r"tiny\.pth.*Download once"):
        resolve_onnx(spec.name, tmp_path / "engines")
    (tmp_path / "weights" / spec.name).mkdir(parents=True)
    torch.save(original, tmp_path / "weights" / spec.name / "tiny.pth")
    first = resolve_onnx(spec.name, tmp_path / "engines")
    assert first.parent == tmp_path / "engines" and first.name.startswith(f"{spec.name}-")
    mtime = first.stat().st_mtime_ns
    assert resolve_onnx(spec.name, tmp_path / "engines") == first
    assert first.stat().st_mtime_ns == mtime  # cached, not re-exported
    # `name:path` form, same checkpoint -> same cached file
    assert resolve_onnx(f"{spec.name}:{tmp_path}/weights/{spec.name}/tiny.pth", tmp_path / "engines") == first
    assert "mde_ros.source" in read_metadata(first)
    (out,) = _session(first).run(None, {"pixel_values": np.zeros((1, 3, 28, 42), np.float32)})
    with torch.no_grad():
        expected = depth_module(model)(torch.zeros(1, 3, 28, 42)).numpy()
    assert _rel_error(out, expected) <= 1e-4


def test_resolve_errors(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        resolve_onnx(str(tmp_path / "missing.onnx"))
    with pytest.raises(ModelNotFoundError, match="mde-ros models"):
        resolve_onnx("no-such-model")
    with pytest.raises(ModelNotFoundError, match="registry name"):
        resolve_onnx(str(tmp_path / "weights.pth"))  # missing file: neither path nor name


def test_resolve_default_routes_to_default_model(tmp_path, monkeypatch):
    import sys
    import types

    calls = []
    module = types.ModuleType("mde_ros.models.default_model")
    module.ensure_default_onnx = lambda engine_dir: calls.append(engine_dir) or tmp_path / "default.onnx"
    monkeypatch.setitem(sys.modules, "mde_ros.models.default_model", module)
    assert resolve_onnx("default", tmp_path) == tmp_path / "default.onnx"
    assert calls == [tmp_path]
    monkeypatch.setitem(sys.modules, "mde_ros.models.default_model", None)  # import fails
    with pytest.raises(ModelNotFoundError, match="default model is not available"):
        resolve_onnx("default", tmp_path)


def _run_export(argv: list[str]) -> int:
    import argparse

    from mde_ros.commands import export as command

    parser = argparse.ArgumentParser()
    command.configure(parser)
    return command.run(parser.parse_args(argv))


def test_cli_export_random_weights_with_int8(tmp_path, capsys):
    out = tmp_path / "cli.onnx"
    code = _run_export(
        [
            "--model",
            "random-tiny-depth-anything-disparity",
            "--random-weights",
            "--output",
            str(out),
            "--int8",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "relative L1" in printed and "random weights" in printed
    assert out.is_file() and out.with_suffix(".int8.onnx").is_file()
    assert os.path.getsize(out.with_suffix(".int8.onnx")) > 0


def test_cli_export_missing_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFoundError, match="not found"):
        _run_export(
            ["--model", "depth-anything-v2-small:/nonexistent/x.pth", "--output", str(tmp_path / "x.onnx")]
        )
