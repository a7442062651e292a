"""Building torch modules for registry specs (needed for export, training and the torch backend).

torch and transformers are imported lazily: the node running an ONNX file needs neither.
"""

from __future__ import annotations

from .spec import ModelSpec


def build_depth_anything(spec: ModelSpec, seed: int | None = None):
    """A `DepthAnythingForDepthEstimation` with the spec's architecture (random weights)."""
    import torch
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation

    if seed is not None:
        torch.manual_seed(seed)
    config = DepthAnythingConfig(**spec.config)
    config._attn_implementation = "eager"
    model = DepthAnythingForDepthEstimation(config)
    return model.eval()


def build_torch_model(spec: ModelSpec, seed: int | None = None):
    """Random-weight torch model for any registry architecture."""
    if spec.architecture == "depth_anything":
        return build_depth_anything(spec, seed)
    if spec.architecture == "llm_mde":
        from .llm_mde import build_llm_mde

        return build_llm_mde(spec, seed)
    if spec.architecture == "da3":
        from .da3 import build_da3

        return build_da3(spec, seed)
    raise ValueError(f"unknown architecture {spec.architecture!r}")


def depth_module(model):
    """An nn.Module computing the ONNX contract (pixel_values[, prompt_ids]) -> predicted_depth [B,H,W].

    For Depth Anything it rewrites the head's output size without `int()` casts, so that the
    exported graph's output size follows the input size instead of being frozen at trace time.
    """
    import torch
    from torch import nn

    if hasattr(model, "onnx_forward"):  # LLM-MDE and DA3 provide their own contract-level forward
        return model

    class DepthAnythingContract(nn.Module):
        def __init__(self, inner) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
            inner = self.inner
            patch = inner.config.patch_size
            height, width = pixel_values.shape[-2:]
            features = inner.backbone.forward_with_filtered_kwargs(pixel_values).feature_maps
            patch_h, patch_w = height // patch, width // patch
            hidden = inner.neck(features, patch_h, patch_w)
            head = inner.head
            x = head.conv1(hidden[head.head_in_index])
            x = nn.functional.interpolate(
                x, (patch_h * patch, patch_w * patch), mode="bilinear", align_corners=True
            )
            x = head.activation1(head.conv2(x))
            x = head.activation2(head.conv3(x)) * head.max_depth
            return x.squeeze(1)

    return DepthAnythingContract(model).eval()
