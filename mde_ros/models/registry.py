"""Registry of known depth models.

Each entry says how to build the network (transformers config kwargs), how to feed it and
how to read its output. Weights are never downloaded at run time: a user fetches the official
checkpoint once (see `weights_url` and the README) and points `model` at the local file or folder,
or places it under the weights folder (`MDE_ROS_WEIGHTS`, default `~/.cache/mde_ros/weights/<name>/`).
"""

from __future__ import annotations

from .spec import DISPARITY, METRIC, ModelSpec

# DINOv2 backbones (transformers Dinov2Config kwargs) and the DPT neck sizes paired with them.
_BACKBONES = {
    "small": dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6),
    "base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12),
    "large": dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16),
}
_NECKS = {
    "small": dict(neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64),
    "base": dict(neck_hidden_sizes=[96, 192, 384, 768], fusion_hidden_size=128),
    "large": dict(neck_hidden_sizes=[256, 512, 1024, 1024], fusion_hidden_size=256),
}
# Which transformer layers feed the DPT neck: V1 takes the last four, V2 spreads them out.
# transformers counts stages from 1 (stage 0 = embeddings): the original V2 `intermediate_layer_idx`
# (0-based blocks: vits/vitb [2, 5, 8, 11], vitl [4, 11, 17, 23]) is these minus one.
_OUT_INDICES = {
    ("v1", "small"): [9, 10, 11, 12],
    ("v1", "base"): [9, 10, 11, 12],
    ("v1", "large"): [21, 22, 23, 24],
    ("v2", "small"): [3, 6, 9, 12],
    ("v2", "base"): [3, 6, 9, 12],
    ("v2", "large"): [5, 12, 18, 24],
}
_SIZE_CODES = {"small": "s", "base": "b", "large": "l"}
# max_depth is cast to int for the transformers 5 config, which types it as int.
# scene -> (dataset in the original file name, dataset in the Hub repo name, max depth in metres)
_METRIC_SETS = {"indoor": ("hypersim", "Hypersim", 20.0), "outdoor": ("vkitti", "VKITTI", 80.0)}
_HUB = "https://huggingface.co"

# Transformers-format folders (config.json + model.safetensors) published for each entry: an
# alternative to the original `.pth` files, loaded with the same `model:` parameter (a folder path).
HF_FOLDER_REPOS: dict[str, str] = {}


def dinov2_backbone(size: str) -> dict:
    """transformers `Dinov2Config` kwargs of a DINOv2 ViT-{S,B,L}/14 at 518 px."""
    return dict(_BACKBONES[size], patch_size=14, image_size=518, mlp_ratio=4, layerscale_value=1.0)


def depth_anything_config(
    version: str, size: str, depth_estimation_type: str = "relative", max_depth: int = 1
) -> dict:
    """transformers `DepthAnythingConfig` kwargs for a Depth Anything V1/V2 model."""
    backbone = dict(
        dinov2_backbone(size),
        model_type="dinov2",
        out_indices=_OUT_INDICES[(version, size)],
        reshape_hidden_states=False,
        apply_layernorm=True,
    )
    config = dict(
        backbone_config=backbone,
        reassemble_hidden_size=backbone["hidden_size"],
        patch_size=14,
        head_hidden_size=32,
        depth_estimation_type=depth_estimation_type,
        max_depth=int(max_depth),
        **_NECKS[size],
    )
    return config


def _depth_anything_entries() -> list[ModelSpec]:
    entries = []
    for size, code in _SIZE_CODES.items():
        title = size.title()
        # V1: the original release is `depth_anything_vit{s,b,l}14.pth` (same `pretrained.*` /
        # `depth_head.*` layout as V2); the transformers folders are `LiheYoung/depth-anything-*-hf`.
        name = f"depth-anything-v1-{size}"
        HF_FOLDER_REPOS[name] = f"LiheYoung/depth-anything-{size}-hf"
        entries.append(
            ModelSpec(
                name=name,
                architecture="depth_anything",
                convention=DISPARITY,
                config=depth_anything_config("v1", size),
                weights_url=f"{_HUB}/spaces/LiheYoung/Depth-Anything/tree/main/checkpoints",
                checkpoint_files=(f"depth_anything_vit{code}14.pth",),
                description=f"Depth Anything V1 {size}, relative (affine-invariant disparity)",
            )
        )
        name = f"depth-anything-v2-{size}"
        HF_FOLDER_REPOS[name] = f"depth-anything/Depth-Anything-V2-{title}-hf"
        entries.append(
            ModelSpec(
                name=name,
                architecture="depth_anything",
                convention=DISPARITY,
                config=depth_anything_config("v2", size),
                weights_url=f"{_HUB}/depth-anything/Depth-Anything-V2-{title}",
                checkpoint_files=(f"depth_anything_v2_vit{code}.pth",),
                description=f"Depth Anything V2 {size}, relative (affine-invariant disparity)",
            )
        )
        for scene, (dataset, hub_dataset, max_depth) in _METRIC_SETS.items():
            name = f"depth-anything-v2-metric-{scene}-{size}"
            HF_FOLDER_REPOS[name] = f"depth-anything/Depth-Anything-V2-Metric-{scene.title()}-{title}-hf"
            entries.append(
                ModelSpec(
                    name=name,
                    architecture="depth_anything",
                    convention=METRIC,
                    max_depth=int(max_depth),
                    config=depth_anything_config("v2", size, "metric", max_depth),
                    weights_url=f"{_HUB}/depth-anything/Depth-Anything-V2-Metric-{hub_dataset}-{title}",
                    checkpoint_files=(f"depth_anything_v2_metric_{dataset}_vit{code}.pth",),
                    description=(
                        f"Depth Anything V2 {size}, metric {scene} ({dataset}, sigmoid x {max_depth:g} m)"
                    ),
                )
            )
    return entries


REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _depth_anything_entries()}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a registry entry; used by the LLM-MDE module and tests."""
    REGISTRY[spec.name] = spec
    return spec


def get_spec(name: str) -> ModelSpec:
    if name not in REGISTRY:
        _register_optional_entries()
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise KeyError(f"unknown model {name!r}; registry names: {known}") from None


def _register_optional_entries() -> None:
    """LLM-MDE entries and `default` register themselves on import (kept out of the cheap import path)."""
    from . import default_model, llm_mde  # noqa: F401
