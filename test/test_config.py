"""mde_ros.config is the one place each default and choice list lives; the rest derives from it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mde_ros import config
from mde_ros.config import NodeConfig, ScaleConfig, flat, from_flat, scale_config, settings, with_values

PACKAGE = Path(__file__).resolve().parents[1] / "mde_ros"


def test_parameter_table_is_derived_from_the_config():
    from mde_ros.ros.parameters import DOCS, PARAMETERS

    rows = [(p.name, p.default, p.choices) for p in PARAMETERS]
    expected = [
        (s.name, list(s.default) if isinstance(s.default, tuple) else s.default, s.choices)
        for s in settings()
    ]
    assert rows == expected
    assert set(DOCS) == {s.name for s in settings()}  # no words for a setting that does not exist
    by_name = {p.name: p for p in PARAMETERS}
    assert by_name["backend"].choices == config.BACKENDS
    assert "onnxruntime" in by_name["backend"].description  # choices shown, written once
    assert by_name["scale.mode"].reason("lidar").startswith("must be one of none, fixed")


def test_choice_lists_are_shared_not_copied():
    from mde_ros.inference import factory as backends
    from mde_ros.ros import qos

    assert backends.BACKENDS is config.BACKENDS
    assert qos.RELIABILITIES is config.RELIABILITIES
    for name in config.RELIABILITIES:  # every choice maps onto an rclpy policy
        assert qos.qos_profile(name, 1).reliability.name.lower() == name


def test_each_scale_default_is_written_once():
    """A scale default as a keyword default, annotation default or dict entry: only in config.py."""
    hits = {}
    for s in settings(ScaleConfig, "scale."):
        if not isinstance(s.default, float | int) or isinstance(s.default, bool):
            continue
        leaf = s.name.rsplit(".", 1)[1]
        # `leaf: float = 0.4`, `leaf=0.4`, `"leaf": 0.4`, `getattr(x, "leaf", 0.4)`
        value = re.escape(repr(s.default))
        pattern = re.compile(rf"\b{leaf}\b[\"']?\s*(:\s*[\w\[\], |]+)?\s*[=:,]\s*{value}(?![\d.])")
        for path in PACKAGE.rglob("*.py"):
            for line in path.read_text().splitlines():
                if pattern.search(line):
                    hits.setdefault(s.name, []).append(path.relative_to(PACKAGE).as_posix())
    assert all(places == ["config.py"] for places in hits.values()), hits
    assert "scale.ground_region" in hits and "scale.filter.max_jump" in hits  # the pattern does match


def test_from_flat_nested_and_dotted_and_unknown_names():
    nested = scale_config({"mode": "sparse", "sparse": {"min_points": 7}, "filter.max_jump": 0.5})
    assert nested.mode == "sparse" and nested.sparse.min_points == 7 and nested.filter.max_jump == 0.5
    assert nested.sparse.rotation == config.IDENTITY_ROTATION  # untouched names keep their defaults
    with pytest.raises(ValueError, match=r"scale\.filter\.max_jmp"):
        scale_config({"filter.max_jmp": 0.5})
    node = from_flat(
        NodeConfig, {"model": "x.onnx", "points.stride": 2, "scale.sparse.rotation": [0, 0, 1, 0]}
    )
    assert node.model.model == "x.onnx" and node.points.stride == 2
    assert node.scale.sparse.rotation == (0, 0, 1, 0)  # lists become tuples: hashable, immutable
    assert flat(node)["model"] == "x.onnx" and flat(node)["scale.sparse.rotation"] == (0, 0, 1, 0)


def test_with_values_makes_a_new_object_and_keeps_the_old():
    before = NodeConfig()
    after = with_values(before, {"points.stride": 4, "depth.max": 5.0})
    assert (before.points.stride, before.depth.max) == (1, 0.0)
    assert (after.points.stride, after.depth.max) == (4, 5.0)
    assert after.scale is before.scale or after.scale == before.scale
    with pytest.raises(AttributeError):
        after.points.stride = 2  # frozen


def test_factory_takes_the_typed_config():
    from mde_ros.scale.factory import create_estimator

    assert create_estimator(ScaleConfig()).mode == "none"
    estimator = create_estimator(scale_config({"mode": "sparse", "sparse.min_points": 40}))
    assert estimator.mode == "sparse" and estimator.min_points == 40
