"""Loading Depth Anything weights from local files (never from a hub).

Two formats are accepted:
  * a transformers folder: `config.json` + `model.safetensors` (or `pytorch_model.bin`), as
    published in the `*-hf` repositories;
  * the original release's `.pth` state dict (`depth_anything_v2_vits.pth`,
    `depth_anything_v2_metric_hypersim_vits.pth`, V1 `depth_anything_vits14.pth`, ...): DINOv2
    keys under `pretrained.*` and the DPT head under `depth_head.*`, converted here to the
    transformers layout by `original_to_hf` (and back by `hf_to_original`, used by the tests).

Every load is strict: a checkpoint whose keys or shapes do not match the architecture raises
`CheckpointMismatchError` listing the first missing / unexpected / mis-shaped keys.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import InvalidModelError, ModelNotFoundError
from .da3_layout import DA3_VARIANTS
from .registry import HF_FOLDER_REPOS, REGISTRY, get_spec
from .spec import DISPARITY, METRIC, ModelSpec

HF_CONFIG = "config.json"
HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
PTH_SUFFIXES = (".pth", ".pt")
_SHOW = 5  # keys listed per category in mismatch errors

# Original file name -> registry name (V2 relative/metric and V1).
_PTH_PATTERNS = (
    (re.compile(r"depth_anything_v2_metric_hypersim_vit([sbl])"), "depth-anything-v2-metric-indoor-{}"),
    (re.compile(r"depth_anything_v2_metric_vkitti_vit([sbl])"), "depth-anything-v2-metric-outdoor-{}"),
    (re.compile(r"depth_anything_v2_vit([sbl])"), "depth-anything-v2-{}"),
    (re.compile(r"depth_anything_vit([sbl])14"), "depth-anything-v1-{}"),
)
_SIZES = {"s": "small", "b": "base", "l": "large"}
# `model_name` in a DA3 folder's config.json (upstream PyTorchModelHubMixin) -> registry name.
DA3_HUB_CONFIGS = {v.name: v.name for v in DA3_VARIANTS}


class CheckpointMismatchError(InvalidModelError):
    """The checkpoint's tensors do not fit the architecture."""


@dataclass(frozen=True)
class Checkpoint:
    """Where a model's weights came from (stored in the exported ONNX as `mde_ros.source`)."""

    kind: str  # "pth" | "hf_folder" | "random" | "default" (the embedded default model's weights)
    path: str = ""
    sha256: str = ""
    seed: int | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Checkpoint:
        data = json.loads(text)
        return cls(**{k: data.get(k) for k in ("kind", "path", "sha256", "seed") if k in data})


# ----------------------------------------------------------------------------------------------
# Key mapping original <-> transformers


# transformers 5 renamed DINOv2's attention tensors; the published `*-hf` files (and transformers 4)
# use the legacy names. The mapping below is written with the legacy names; `match_model_naming`
# converts a state dict to whichever naming the installed transformers builds.
_NEW_TO_LEGACY = (
    (".attention.q_proj.", ".attention.attention.query."),
    (".attention.k_proj.", ".attention.attention.key."),
    (".attention.v_proj.", ".attention.attention.value."),
    (".attention.o_proj.", ".attention.output.dense."),
)


def _rename_parts(state: dict[str, Any], pairs: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        for old, new in pairs:
            if old in key:
                key = key.replace(old, new, 1)
                break
        out[key] = value
    return out


def match_model_naming(state: dict[str, Any], model_keys: Any) -> dict[str, Any]:
    """Rename DINOv2 attention keys (legacy <-> transformers 5) to the naming of `model_keys`."""
    modern = any(".attention.q_proj." in k for k in model_keys)
    pairs = tuple((b, a) for a, b in _NEW_TO_LEGACY) if modern else _NEW_TO_LEGACY
    return _rename_parts(state, pairs)


def _rename_table(num_layers: int) -> list[tuple[str, str]]:
    """(original key, legacy transformers key) pairs for every tensor except the fused qkv."""
    pairs = [
        ("pretrained.cls_token", "backbone.embeddings.cls_token"),
        ("pretrained.mask_token", "backbone.embeddings.mask_token"),
        ("pretrained.pos_embed", "backbone.embeddings.position_embeddings"),
    ]
    wb = ("weight", "bias")
    pairs += [
        (f"pretrained.patch_embed.proj.{p}", f"backbone.embeddings.patch_embeddings.projection.{p}")
        for p in wb
    ]
    block_parts = {
        "norm1": "norm1",
        "norm2": "norm2",
        "mlp.fc1": "mlp.fc1",
        "mlp.fc2": "mlp.fc2",
        "attn.proj": "attention.output.dense",
    }
    for i in range(num_layers):
        src, dst = f"pretrained.blocks.{i}", f"backbone.encoder.layer.{i}"
        pairs += [
            (f"{src}.ls1.gamma", f"{dst}.layer_scale1.lambda1"),
            (f"{src}.ls2.gamma", f"{dst}.layer_scale2.lambda1"),
        ]
        pairs += [(f"{src}.{o}.{p}", f"{dst}.{h}.{p}") for o, h in block_parts.items() for p in wb]
    pairs += [(f"pretrained.norm.{p}", f"backbone.layernorm.{p}") for p in wb]
    for i in range(4):
        pairs += [
            (f"depth_head.projects.{i}.{p}", f"neck.reassemble_stage.layers.{i}.projection.{p}") for p in wb
        ]
        if i != 2:  # reassemble factor 1 is an Identity: no resize weights
            pairs += [
                (f"depth_head.resize_layers.{i}.{p}", f"neck.reassemble_stage.layers.{i}.resize.{p}")
                for p in wb
            ]
        pairs.append((f"depth_head.scratch.layer{i + 1}_rn.weight", f"neck.convs.{i}.weight"))
    # The original fuses deepest-first with refinenet4 ... refinenet1; transformers' fusion stage
    # reverses the feature list, so refinenet{k} is fusion layer 4 - k.
    units = {"out_conv": "projection", "resConfUnit1": "residual_layer1", "resConfUnit2": "residual_layer2"}
    for k in range(1, 5):
        src, dst = f"depth_head.scratch.refinenet{k}", f"neck.fusion_stage.layers.{4 - k}"
        for o, h in units.items():
            if o == "out_conv":
                pairs += [(f"{src}.out_conv.{p}", f"{dst}.projection.{p}") for p in wb]
            else:
                pairs += [
                    (f"{src}.{o}.conv{c}.{p}", f"{dst}.{h}.convolution{c}.{p}") for c in (1, 2) for p in wb
                ]
    head = {"output_conv1": "conv1", "output_conv2.0": "conv2", "output_conv2.2": "conv3"}
    pairs += [(f"depth_head.scratch.{o}.{p}", f"head.{h}.{p}") for o, h in head.items() for p in wb]
    return pairs


def _qkv_keys(i: int) -> tuple[str, str]:
    return f"pretrained.blocks.{i}.attn.qkv", f"backbone.encoder.layer.{i}.attention.attention"


def original_to_hf(state_dict: dict[str, Any], num_layers: int) -> dict[str, Any]:
    """Original Depth Anything state dict -> transformers keys (qkv split into query/key/value)."""
    state = dict(state_dict)
    out: dict[str, Any] = {}
    for src, dst in _rename_table(num_layers):
        if src in state:
            out[dst] = state.pop(src)
    for i in range(num_layers):
        src, dst = _qkv_keys(i)
        for part in ("weight", "bias"):
            fused = state.pop(f"{src}.{part}", None)
            if fused is None:
                continue
            if fused.shape[0] % 3:
                raise CheckpointMismatchError(f"{src}.{part} has {fused.shape[0]} rows, not a multiple of 3")
            query, key, value = fused.chunk(3, dim=0)  # the original packs q, k, v in that order
            out[f"{dst}.query.{part}"], out[f"{dst}.key.{part}"], out[f"{dst}.value.{part}"] = (
                query,
                key,
                value,
            )
    out.update(state)  # leftovers are reported as unexpected by the strict load
    return out


def hf_to_original(state_dict: dict[str, Any], num_layers: int) -> dict[str, Any]:
    """Inverse of `original_to_hf`: writes an original-layout state dict (tests, interchange)."""
    import torch

    state = _rename_parts(dict(state_dict), _NEW_TO_LEGACY)
    out: dict[str, Any] = {}
    for src, dst in _rename_table(num_layers):
        if dst in state:
            out[src] = state.pop(dst)
    for i in range(num_layers):
        src, dst = _qkv_keys(i)
        for part in ("weight", "bias"):
            names = [f"{dst}.{q}.{part}" for q in ("query", "key", "value")]
            if all(n in state for n in names):
                out[f"{src}.{part}"] = torch.cat([state.pop(n) for n in names], dim=0)
    out.update(state)
    return out


def is_original_layout(keys: Any) -> bool:
    return any(str(k).startswith(("pretrained.", "depth_head.")) for k in keys)


# ----------------------------------------------------------------------------------------------
# Loading


def load_state_dict_strict(model: Any, state_dict: dict[str, Any], source: str | Path) -> None:
    """Copy `state_dict` into `model`; a clear error with the first offending keys if they differ."""
    expected = model.state_dict()
    state_dict = match_model_naming(state_dict, expected)
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in set(expected) & set(state_dict)
        if tuple(state_dict[k].shape) != tuple(expected[k].shape)
    )
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
            if items:
                more = f" (+{len(items) - _SHOW} more)" if len(items) > _SHOW else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:_SHOW])}{more}")
        raise CheckpointMismatchError(
            f"{source} does not match the architecture: " + "; ".join(parts) + ". Check that the "
            "checkpoint is the one for this model name (size small/base/large, V1/V2, relative/metric)."
        )
    model.load_state_dict(state_dict, strict=True)


def spec_for_pth(path: str | Path) -> ModelSpec:
    """Registry spec of an original `.pth` file, inferred from its official file name."""
    stem = Path(path).name
    for pattern, template in _PTH_PATTERNS:
        match = pattern.search(stem)
        if match:
            return get_spec(template.format(_SIZES[match.group(1)]))
    raise ModelNotFoundError(
        f"cannot tell the architecture of {path} from its name; prefix it with the registry name, "
        "e.g. `model: depth-anything-v2-small:/path/to/file.pth` (see `mde-ros models`)"
    )


def read_torch_file(path: str | Path) -> dict[str, Any]:
    """A state dict from a .pth/.bin/.safetensors file (tensors only: `weights_only=True`)."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"checkpoint file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise InvalidModelError(
            f"cannot read checkpoint {path} ({exc.__class__.__name__}: {exc}); is the download complete?"
        ) from exc
    for wrapper in ("model", "state_dict"):  # training checkpoints wrap the weights
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
    if not isinstance(state, dict):
        raise InvalidModelError(f"{path} does not hold a state dict (got {type(state).__name__})")
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_da3(path: str | Path, spec: ModelSpec):
    """A Depth Anything 3 model with the weights of the official `model.safetensors` (or a .pth)."""
    from .da3 import build_da3, from_official

    model = build_da3(spec)
    load_state_dict_strict(model, from_official(read_torch_file(path)), path)
    return model.eval()


def load_pth(path: str | Path, spec: ModelSpec | None = None):
    """A `DepthAnythingForDepthEstimation` with the weights of an original `.pth` file."""
    from .torch_models import build_depth_anything

    spec = spec or spec_for_pth(path)
    if spec.architecture == "da3":
        return load_da3(path, spec)
    state = read_torch_file(path)
    model = build_depth_anything(spec)
    layers = spec.config["backbone_config"]["num_hidden_layers"]
    if is_original_layout(state):
        state = original_to_hf(state, layers)
    load_state_dict_strict(model, state, path)
    return model.eval()


def hf_folder_files(folder: str | Path) -> tuple[Path, Path]:
    """(config.json, weights file) of a transformers folder, or an error naming what is missing."""
    folder = Path(folder)
    config = folder / HF_CONFIG
    weights = next((folder / w for w in HF_WEIGHTS if (folder / w).is_file()), None)
    if not folder.is_dir() or not config.is_file() or weights is None:
        raise ModelNotFoundError(
            f"{folder} is not a transformers model folder: expected {HF_CONFIG} and one of "
            f"{', '.join(HF_WEIGHTS)} in it (download the whole `*-hf` repository, e.g. "
            "https://huggingface.co/depth-anything/Depth-Anything-V2-Small-hf)"
        )
    return config, weights


def spec_for_hf_folder(folder: str | Path) -> ModelSpec:
    """The registry spec whose architecture matches a transformers folder's config.json."""
    config_path, _ = hf_folder_files(folder)
    try:
        config = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidModelError(f"{config_path} is not valid JSON: {exc}") from exc
    if config.get("model_name") in DA3_HUB_CONFIGS:  # DA3 folders: {"model_name": "da3-small"}
        return get_spec(DA3_HUB_CONFIGS[config["model_name"]])
    if config.get("model_type") != "depth_anything":
        raise InvalidModelError(
            f"{config_path}: model_type is {config.get('model_type')!r}, expected 'depth_anything'"
        )
    fingerprint = _architecture_fingerprint(config)
    for spec in REGISTRY.values():
        if spec.architecture == "depth_anything" and _architecture_fingerprint(spec.config) == fingerprint:
            return spec
    # An unknown but valid Depth Anything variant: run it under its own name and config.
    kwargs = {
        k: v for k, v in config.items() if k not in ("architectures", "transformers_version", "model_type")
    }
    metric = config.get("depth_estimation_type") == "metric"
    return ModelSpec(
        name=Path(folder).resolve().name,
        architecture="depth_anything",
        convention=METRIC if metric else DISPARITY,
        max_depth=config.get("max_depth") if metric else None,
        config=kwargs,
        description=f"transformers folder {folder}",
    )


def _architecture_fingerprint(config: dict) -> tuple:
    backbone = config.get("backbone_config") or {}
    metric = config.get("depth_estimation_type", "relative") == "metric"
    return (
        backbone.get("hidden_size"),
        backbone.get("num_hidden_layers"),
        tuple(backbone.get("out_indices") or ()),
        tuple(config.get("neck_hidden_sizes") or ()),
        config.get("fusion_hidden_size"),
        metric,
        int(config.get("max_depth") or 1) if metric else None,
    )


def load_hf_folder(folder: str | Path, spec: ModelSpec | None = None):
    """A `DepthAnythingForDepthEstimation` from a local transformers folder (no network access)."""
    from .torch_models import build_depth_anything

    _, weights = hf_folder_files(folder)
    spec = spec or spec_for_hf_folder(folder)
    if spec.architecture == "da3":
        return load_da3(weights, spec)
    model = build_depth_anything(spec)
    load_state_dict_strict(model, read_torch_file(weights), weights)
    return model.eval()


def checkpoint_sha256(path: str | Path) -> str:
    """Content hash of a checkpoint file, or of a transformers folder's config + weights."""
    import hashlib

    from .onnx_contract import file_sha256

    path = Path(path)
    if path.is_dir():
        config, weights = hf_folder_files(path)
        return hashlib.sha256((file_sha256(config) + file_sha256(weights)).encode()).hexdigest()
    return file_sha256(path)


def load_checkpoint(path: str | Path, spec: ModelSpec | None = None):
    """(torch model, spec, Checkpoint) for a `.pth`/`.safetensors` file or a transformers folder."""
    path = Path(path).expanduser()
    if path.is_dir():
        spec = spec or spec_for_hf_folder(path)
        model, kind = load_hf_folder(path, spec), "hf_folder"
    elif path.is_file():
        spec = spec or spec_for_pth(path)
        model, kind = load_pth(path, spec), "pth"
    else:
        raise ModelNotFoundError(
            f"checkpoint not found: {path}. Expected an original file such as "
            f"{', '.join(f for s in REGISTRY.values() for f in s.checkpoint_files[:1])[:200]}..., "
            f"or a transformers folder with {HF_CONFIG} + {HF_WEIGHTS[0]}"
        )
    source = Checkpoint(kind=kind, path=str(path.resolve()), sha256=checkpoint_sha256(path))
    return model, spec, source


def hf_folder_repo(spec: ModelSpec) -> str:
    """The `*-hf` repository holding the transformers folder for a registry entry ('' if none)."""
    return HF_FOLDER_REPOS.get(spec.name, "")
