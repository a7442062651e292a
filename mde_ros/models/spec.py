"""What a depth model declares: preprocessing, output convention, ONNX contract.

Every ONNX file written by `mde-ros export` carries its `ModelSpec` as JSON in the
ONNX metadata (key `mde_ros.spec`), so the file alone is enough to run it on any backend.

ONNX contract (all backends):
  inputs:  `pixel_values` float32 [batch, 3, height, width], normalised RGB, height and
           width multiples of `patch_multiple`;
           `prompt_ids` int64 [batch, prompt_length] (LLM-MDE only: tokenised prompt).
  outputs: `predicted_depth` float32 [batch, height, width], same height/width as the input,
           in the model's `convention`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

INPUT_PIXELS = "pixel_values"
INPUT_PROMPT = "prompt_ids"
OUTPUT_DEPTH = "predicted_depth"
SPEC_METADATA_KEY = "mde_ros.spec"

# Output conventions.
DISPARITY = "disparity"  # affine-invariant inverse depth (relative)
METRIC = "metric"  # metres
METRIC_CANONICAL = "metric_canonical"  # metres at focal length `canonical_focal` (pixels)
CONVENTIONS = (DISPARITY, METRIC, METRIC_CANONICAL)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ModelSpec:
    """Declaration of one depth model (a registry entry or an ONNX file's metadata)."""

    name: str
    architecture: str  # "depth_anything" | "llm_mde"
    convention: str
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    patch_multiple: int = 14
    default_input_size: int = 252  # short side of the network input, pixels
    max_depth: float | None = None  # metric models: sigmoid x max_depth (metres)
    canonical_focal: float | None = None  # metric_canonical: focal length of the output, pixels
    prompt_length: int = 0  # LLM-MDE: length of `prompt_ids`
    # The graph marks sky pixels in `predicted_depth`: +Inf (metric) or 0 (disparity); the pipeline
    # publishes them as +Inf (REP 118: beyond range), never as a made-up depth.
    sky: bool = False
    # Architecture hyper-parameters (transformers config kwargs) used to build the torch model.
    config: dict[str, Any] = field(default_factory=dict)
    # Where a user gets the official weights, once, on a machine with internet.
    weights_url: str = ""
    checkpoint_files: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        if self.convention not in CONVENTIONS:
            raise ValueError(f"unknown convention {self.convention!r}; expected one of {CONVENTIONS}")
        if self.convention == METRIC_CANONICAL and not self.canonical_focal:
            raise ValueError(f"model {self.name}: metric_canonical needs canonical_focal")
        if self.patch_multiple <= 0:
            raise ValueError("patch_multiple must be positive")

    @property
    def is_metric(self) -> bool:
        return self.convention in (METRIC, METRIC_CANONICAL)

    @property
    def needs_prompt(self) -> bool:
        return self.prompt_length > 0

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> ModelSpec:
        data = json.loads(text)
        for key in ("mean", "std", "checkpoint_files"):
            if key in data and data[key] is not None:
                data[key] = tuple(data[key])
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in data.items() if k in known})
