"""Which CUDA GPUs this process can use, and which package is missing when it can use none.

Several independent probes answer (cuda-python's `cuda.bindings`, torch, ONNX Runtime's provider
list); each is a small object so that the decision logic is tested on CPU with fake probes. A probe
that is not installed says which package would make it work, and `detect_cuda` reports that, so a
GPU machine with a CPU-only torch (the README's install order) is no longer mistaken for a CPU one.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass, field
from typing import Protocol

log = logging.getLogger(__name__)

# Install hints, written once (README: GPU machines).
CUDA_PYTHON_HINT = "pip install cuda-python (cuda-python 12.x for CUDA 12, 13.x for CUDA 13)"
TORCH_CUDA_HINT = "a CUDA build of torch: pip install torch from the pytorch.org index of your CUDA"
ORT_GPU_HINT = "pip install onnxruntime-gpu (instead of onnxruntime)"
TENSORRT_HINT = (
    "pip install tensorrt-cu12 (CUDA 12) or tensorrt-cu13 (CUDA 13); on Jetson TensorRT comes with "
    "JetPack (python3-libnvinfer): create the venv with --system-site-packages to see it"
)


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as the engine cache needs to tell it apart (Orin modules share name and SM)."""

    index: int
    name: str
    compute_capability: str  # "8.7"
    sm_count: int
    total_memory: int  # bytes

    @property
    def memory_gib(self) -> float:
        return self.total_memory / (1 << 30)


class ProbeUnavailable(Exception):
    """The probe's package is not installed or cannot reach a driver; the message says which."""


class CudaProbe(Protocol):
    name: str

    def devices(self) -> list[GpuInfo]:
        """Every visible CUDA device; raises ProbeUnavailable when the probe cannot tell."""


@dataclass
class ProbeResult:
    name: str
    devices: list[GpuInfo] = field(default_factory=list)
    problem: str = ""  # why this probe could not tell (missing package, driver error)


@dataclass
class CudaReport:
    """What the probes found: the devices of the first probe that saw any, and every probe's story."""

    devices: list[GpuInfo]
    source: str  # name of the probe the devices come from ("" when none)
    results: list[ProbeResult]

    @property
    def count(self) -> int:
        return len(self.devices)

    def why_none(self) -> str:
        """One line naming what is missing, for logs (empty when a GPU was found)."""
        if self.devices:
            return ""
        parts = [f"{r.name}: {r.problem or 'no device'}" for r in self.results]
        return "no CUDA GPU visible (" + "; ".join(parts) + ")"


class CudaBindingsProbe:
    """cuda-python's runtime bindings: the lightest probe, needs no torch."""

    name = "cuda-python"

    def devices(self) -> list[GpuInfo]:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            try:  # cuda-python < 12.6 spelled it `cuda.cudart`
                from cuda import cudart  # type: ignore[no-redef]
            except ImportError:
                raise ProbeUnavailable(f"not installed ({CUDA_PYTHON_HINT})") from None
        err, count = cudart.cudaGetDeviceCount()
        if int(err) != 0:
            raise ProbeUnavailable(f"cudaGetDeviceCount failed ({err}): no driver or no GPU")
        found = []
        for index in range(int(count)):
            err, props = cudart.cudaGetDeviceProperties(index)
            if int(err) != 0:
                raise ProbeUnavailable(f"cudaGetDeviceProperties({index}) failed ({err})")
            name = props.name.decode(errors="replace") if isinstance(props.name, bytes) else str(props.name)
            found.append(
                GpuInfo(
                    index,
                    name.rstrip("\x00"),
                    f"{props.major}.{props.minor}",
                    int(props.multiProcessorCount),
                    int(props.totalGlobalMem),
                )
            )
        return found


class TorchProbe:
    """torch.cuda: answers only with a CUDA build of torch."""

    name = "torch"

    def devices(self) -> list[GpuInfo]:
        try:
            import torch
        except ImportError:
            raise ProbeUnavailable("not installed") from None
        if torch.version.cuda is None:
            raise ProbeUnavailable(f"CPU-only build {torch.__version__} (for GPU: {TORCH_CUDA_HINT})")
        if not torch.cuda.is_available():
            raise ProbeUnavailable(f"torch {torch.__version__} sees no CUDA device")
        found = []
        for index in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(index)
            found.append(
                GpuInfo(
                    index, p.name, f"{p.major}.{p.minor}", int(p.multi_processor_count), int(p.total_memory)
                )
            )
        return found


DEFAULT_PROBES: tuple[CudaProbe, ...] = (CudaBindingsProbe(), TorchProbe())


def detect_cuda(probes: tuple[CudaProbe, ...] | None = None) -> CudaReport:
    """Ask each probe in turn; the first that lists devices answers. Never raises."""
    results = []
    for probe in DEFAULT_PROBES if probes is None else probes:
        result = ProbeResult(probe.name)
        try:
            result.devices = list(probe.devices())
        except ProbeUnavailable as exc:
            result.problem = str(exc)
        except Exception as exc:  # a broken install must not take the node down: report it
            result.problem = f"probe failed: {type(exc).__name__}: {exc}"
        results.append(result)
        if result.devices:
            return CudaReport(result.devices, probe.name, results)
    return CudaReport([], "", results)


@functools.lru_cache(maxsize=1)
def cuda_report() -> CudaReport:
    """`detect_cuda` with the default probes, once per process (importing torch is slow)."""
    report = detect_cuda()
    if report.devices:
        names = ", ".join(
            f"cuda:{g.index} {g.name} (sm_{g.compute_capability.replace('.', '')})" for g in report.devices
        )
        log.info("CUDA devices via %s: %s", report.source, names)
    else:
        log.info("%s", report.why_none())
    return report


# --- the `device` parameter ---------------------------------------------------------------------

DEVICE_CHOICES = "auto | cpu | cuda | cuda:N"
_DEVICE_RE = re.compile(r"^(auto|cpu|cuda)(?::(\d+))?$")


@dataclass(frozen=True)
class Device:
    """A parsed `device` value: kind 'auto' | 'cpu' | 'cuda' and the CUDA index."""

    kind: str
    index: int = 0

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    def __str__(self) -> str:
        return f"cuda:{self.index}" if self.kind == "cuda" else self.kind


def parse_device(text: str) -> Device:
    """'auto', 'cpu', 'cuda' (= cuda:0) or 'cuda:N'; ValueError otherwise."""
    match = _DEVICE_RE.match(str(text).strip().lower())
    if not match or (match.group(2) is not None and match.group(1) != "cuda"):
        raise ValueError(f"device must be one of {DEVICE_CHOICES}, got {text!r}")
    return Device(match.group(1), int(match.group(2) or 0))
