"""The model registry is one static table: complete in a fresh process, whatever was imported first."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "mde_ros" / "models"


def _fresh(code: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_fresh_process_lookup_needs_no_prior_import_and_no_torch():
    out = _fresh(
        "import sys\n"
        "from mde_ros.models.registry import get_spec, names\n"
        "print(get_spec('llm-mde-small').architecture, get_spec('default').name, len(names()))\n"
        "print('torch' in sys.modules)\n"
    )
    first, torch_loaded = out.splitlines()
    assert first.startswith("llm_mde default ")
    assert torch_loaded == "False"


def test_resolve_in_a_fresh_process_knows_llm_mde():
    """Before: `resolve_onnx('llm-mde-small')` said 'not a registry name' in a fresh process.
    `llm-mde-small` now has shipped weights (test_llm_mde_shipped); `-lora` is an architecture."""
    out = _fresh(
        "from mde_ros.models.resolve import resolve_onnx\n"
        "try:\n    resolve_onnx('llm-mde-small-lora')\nexcept Exception as exc:\n    print(exc)\n"
    )
    assert "not a registry name" not in out and "llm-mde-small-lora" in out
    assert "without published weights" in out


def test_models_command_lists_every_accepted_name():
    names = _fresh("from mde_ros.models.registry import names; print('\\n'.join(names()))").split()
    listing = subprocess.run(
        [sys.executable, "-m", "mde_ros.cli", "models"], capture_output=True, text=True, timeout=120, cwd=REPO
    )
    assert listing.returncode == 0, listing.stderr
    listed = {line.split()[0] for line in listing.stdout.splitlines() if line and not line[0].isspace()}
    assert {"default", "llm-mde-small", "llm-mde-small-lora", "da3-small", "da3metric-large"} <= set(names)
    assert set(names) <= listed
    da3 = next(line for line in listing.stdout.splitlines() if line.startswith("da3metric-large "))
    assert "metric_canonical" in da3 and "Apache-2.0" in da3 and "mde-ros download da3metric-large" in da3
    lines = listing.stdout.splitlines()
    v2_large = next(line for line in lines if line.startswith("depth-anything-v2-large "))
    assert "CC-BY-NC-4.0" in v2_large


def test_no_module_of_models_imports_the_registry_back():
    """registry imports default_model, llm_mde(_onnx), da3_layout and spec; none may import registry."""
    for name in ("default_model", "llm_mde", "llm_mde_onnx", "da3_layout", "spec"):
        tree = ast.parse((MODELS / f"{name}.py").read_text())
        imported = {
            node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
        }
        assert not any(m.endswith("registry") for m in imported), name
    source = (MODELS / "registry.py").read_text()
    assert "def register(" not in source
