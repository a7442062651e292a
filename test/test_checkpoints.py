"""Checkpoint loading: original .pth and transformers folders, round trips on random weights."""

from __future__ import annotations

import pytest
import torch

from mde_ros.errors import InvalidModelError, ModelNotFoundError
from mde_ros.models.checkpoints import (
    CheckpointMismatchError,
    hf_to_original,
    load_checkpoint,
    load_hf_folder,
    load_pth,
    match_model_naming,
    original_to_hf,
    spec_for_hf_folder,
    spec_for_pth,
)
from mde_ros.models.registry import get_spec
from mde_ros.models.testing import tiny_depth_anything_spec
from mde_ros.models.torch_models import build_depth_anything


def _layers(spec) -> int:
    return spec.config["backbone_config"]["num_hidden_layers"]


def _assert_same_model(a, b) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key
    pixels = torch.randn(1, 3, 42, 56)
    with torch.no_grad():
        assert torch.equal(a(pixels).predicted_depth, b(pixels).predicted_depth)


@pytest.mark.parametrize("convention", ["disparity", "metric"])
def test_pth_round_trip_tiny(tmp_path, convention):
    spec = tiny_depth_anything_spec(convention)
    model = build_depth_anything(spec, seed=3)
    original = hf_to_original(model.state_dict(), _layers(spec))
    # Everything is in the original layout: nothing was left under a transformers name.
    assert all(k.startswith(("pretrained.", "depth_head.")) for k in original)
    assert original["pretrained.blocks.0.attn.qkv.weight"].shape == (3 * 48, 48)
    path = tmp_path / "weights.pth"
    torch.save(original, path)
    loaded = load_pth(path, spec)
    _assert_same_model(model, loaded)


def test_pth_in_training_wrapper_and_module_prefix(tmp_path):
    spec = tiny_depth_anything_spec()
    model = build_depth_anything(spec, seed=4)
    original = hf_to_original(model.state_dict(), _layers(spec))
    torch.save({"model": {f"module.{k}": v for k, v in original.items()}}, tmp_path / "ckpt.pth")
    _assert_same_model(model, load_pth(tmp_path / "ckpt.pth", spec))


def test_hf_folder_round_trip(tmp_path):
    spec = tiny_depth_anything_spec("metric")
    model = build_depth_anything(spec, seed=5)
    model.save_pretrained(tmp_path / "hf", safe_serialization=True)
    assert (tmp_path / "hf" / "model.safetensors").is_file()
    loaded = load_hf_folder(tmp_path / "hf", spec)
    _assert_same_model(model, loaded)
    # Without a spec: an unknown variant keeps its own config and the metric convention.
    inferred = spec_for_hf_folder(tmp_path / "hf")
    assert inferred.convention == "metric" and inferred.max_depth == spec.max_depth
    _assert_same_model(model, load_hf_folder(tmp_path / "hf"))
    _, _, source = load_checkpoint(tmp_path / "hf", spec)
    assert source.kind == "hf_folder" and len(source.sha256) == 64


def test_hf_folder_with_published_legacy_names(tmp_path):
    """The published `*-hf` files name DINOv2 attention `attention.attention.query` etc."""
    from safetensors.torch import save_file

    spec = tiny_depth_anything_spec()
    model = build_depth_anything(spec, seed=6)
    model.save_pretrained(tmp_path, safe_serialization=True)
    legacy = {}
    for key, value in model.state_dict().items():
        for new, old in (
            ("attention.q_proj", "attention.attention.query"),
            ("attention.o_proj", "attention.output.dense"),
        ):
            key = key.replace(new, old)
        legacy[
            key.replace("attention.k_proj", "attention.attention.key").replace(
                "attention.v_proj", "attention.attention.value"
            )
        ] = value.contiguous()
    assert "backbone.encoder.layer.0.attention.attention.query.weight" in legacy
    save_file(legacy, str(tmp_path / "model.safetensors"))
    _assert_same_model(model, load_hf_folder(tmp_path, spec))


# Tensors of the official depth_anything_v2_vits.pth, written down independently of the mapping.
_V2_SMALL_ORIGINAL_SHAPES = {
    "pretrained.cls_token": (1, 1, 384),
    "pretrained.mask_token": (1, 384),
    "pretrained.pos_embed": (1, 1370, 384),
    "pretrained.patch_embed.proj.weight": (384, 3, 14, 14),
    "pretrained.blocks.11.attn.qkv.weight": (1152, 384),
    "pretrained.blocks.11.attn.proj.weight": (384, 384),
    "pretrained.blocks.11.ls1.gamma": (384,),
    "pretrained.blocks.0.mlp.fc1.weight": (1536, 384),
    "pretrained.norm.weight": (384,),
    "depth_head.projects.0.weight": (48, 384, 1, 1),
    "depth_head.projects.3.weight": (384, 384, 1, 1),
    "depth_head.resize_layers.0.weight": (48, 48, 4, 4),
    "depth_head.resize_layers.1.weight": (96, 96, 2, 2),
    "depth_head.resize_layers.3.weight": (384, 384, 3, 3),
    "depth_head.scratch.layer1_rn.weight": (64, 48, 3, 3),
    "depth_head.scratch.layer4_rn.weight": (64, 384, 3, 3),
    "depth_head.scratch.refinenet1.out_conv.weight": (64, 64, 1, 1),
    "depth_head.scratch.refinenet4.resConfUnit1.conv1.weight": (64, 64, 3, 3),
    "depth_head.scratch.refinenet2.resConfUnit2.conv2.bias": (64,),
    "depth_head.scratch.output_conv1.weight": (32, 64, 3, 3),
    "depth_head.scratch.output_conv2.0.weight": (32, 32, 3, 3),
    "depth_head.scratch.output_conv2.2.weight": (1, 32, 1, 1),
}


def _expected_v2_small_keys() -> set[str]:
    keys = {"pretrained.cls_token", "pretrained.mask_token", "pretrained.pos_embed"}
    keys |= {f"pretrained.patch_embed.proj.{p}" for p in ("weight", "bias")}
    keys |= {f"pretrained.norm.{p}" for p in ("weight", "bias")}
    for i in range(12):
        keys |= {f"pretrained.blocks.{i}.ls1.gamma", f"pretrained.blocks.{i}.ls2.gamma"}
        for part in ("norm1", "norm2", "attn.qkv", "attn.proj", "mlp.fc1", "mlp.fc2"):
            keys |= {f"pretrained.blocks.{i}.{part}.{p}" for p in ("weight", "bias")}
    for i in range(4):
        keys |= {f"depth_head.projects.{i}.{p}" for p in ("weight", "bias")}
        keys.add(f"depth_head.scratch.layer{i + 1}_rn.weight")
        if i != 2:
            keys |= {f"depth_head.resize_layers.{i}.{p}" for p in ("weight", "bias")}
        for part in (
            "out_conv",
            "resConfUnit1.conv1",
            "resConfUnit1.conv2",
            "resConfUnit2.conv1",
            "resConfUnit2.conv2",
        ):
            keys |= {f"depth_head.scratch.refinenet{i + 1}.{part}.{p}" for p in ("weight", "bias")}
    for part in ("output_conv1", "output_conv2.0", "output_conv2.2"):
        keys |= {f"depth_head.scratch.{part}.{p}" for p in ("weight", "bias")}
    return keys


def test_real_v2_small_key_set(tmp_path):
    """The real V2 Small layout (~25 M random weights): key set, shapes, file-name inference, load."""
    spec = get_spec("depth-anything-v2-small")
    model = build_depth_anything(spec, seed=0)
    original = hf_to_original(model.state_dict(), 12)
    assert set(original) == _expected_v2_small_keys()
    for key, shape in _V2_SMALL_ORIGINAL_SHAPES.items():
        assert tuple(original[key].shape) == shape, key
    assert 24e6 < sum(v.numel() for v in original.values()) < 26e6
    path = tmp_path / "depth_anything_v2_vits.pth"
    torch.save(original, path)
    assert spec_for_pth(path).name == "depth-anything-v2-small"
    loaded, loaded_spec, source = load_checkpoint(path)
    assert loaded_spec.name == "depth-anything-v2-small" and source.kind == "pth"
    state = loaded.state_dict()
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    # V1 small has the same original layout; only the tapped layers differ.
    v1_keys = build_depth_anything(get_spec("depth-anything-v1-small")).state_dict().keys()
    assert set(match_model_naming(original_to_hf(original, 12), v1_keys)) == set(v1_keys)
    # The same file under a different size name is refused with shape mismatches.
    with pytest.raises(CheckpointMismatchError, match="shape mismatch"):
        load_pth(path, get_spec("depth-anything-v2-base"))


@pytest.mark.parametrize(
    ("file_name", "model_name"),
    [
        ("depth_anything_v2_vitb.pth", "depth-anything-v2-base"),
        ("depth_anything_v2_metric_hypersim_vits.pth", "depth-anything-v2-metric-indoor-small"),
        ("depth_anything_v2_metric_vkitti_vitl.pth", "depth-anything-v2-metric-outdoor-large"),
        ("depth_anything_vitl14.pth", "depth-anything-v1-large"),
    ],
)
def test_spec_from_official_file_names(file_name, model_name):
    assert spec_for_pth(f"/somewhere/{file_name}").name == model_name


def test_unknown_file_name_asks_for_prefix():
    with pytest.raises(ModelNotFoundError, match="depth-anything-v2-small:/path"):
        spec_for_pth("/x/my_weights.pth")


def test_mismatched_keys_are_listed(tmp_path):
    spec = tiny_depth_anything_spec()
    original = hf_to_original(build_depth_anything(spec, seed=1).state_dict(), _layers(spec))
    del original["depth_head.scratch.output_conv1.weight"]
    original["depth_head.scratch.bogus.weight"] = torch.zeros(1)
    torch.save(original, tmp_path / "bad.pth")
    with pytest.raises(CheckpointMismatchError) as info:
        load_pth(tmp_path / "bad.pth", spec)
    message = str(info.value)
    assert "1 missing: head.conv1.weight" in message
    assert "1 unexpected: depth_head.scratch.bogus.weight" in message


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(ModelNotFoundError, match=r"config\.json.*model\.safetensors"):
        load_hf_folder(tmp_path)
    with pytest.raises(ModelNotFoundError, match="not found"):
        load_checkpoint(tmp_path / "nothing.pth")
    truncated = tmp_path / "depth_anything_v2_vits.pth"
    torch.save({"a": torch.zeros(1000)}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(InvalidModelError, match="download complete"):
        load_pth(truncated)
