"""The name -> factory registry: register, look up, and unregister (a test's temporary entries)."""
from __future__ import annotations

import pytest

from robustbench_lite.errors import BenchError
from robustbench_lite.registry import Registry


def test_unregister_removes_the_name_and_returns_the_object():
    reg: Registry[object] = Registry("thing")
    a, b = object(), object()
    reg.register("a")(a)
    reg.register("b")(b)
    assert reg.unregister("a") is a
    assert "a" not in reg and reg.names() == ["b"] and list(reg) == ["b"]
    with pytest.raises(BenchError, match="unknown thing 'a'; known: b"):
        reg.get("a")
    reg.register("a")(b)  # the name is free again
    assert reg.get("a") is b


def test_unregister_an_unknown_name_is_a_clear_error_and_changes_nothing():
    reg: Registry[int] = Registry("thing")
    reg.register("x")(1)
    with pytest.raises(BenchError, match="unknown thing 'y'; known: x"):
        reg.unregister("y")
    assert reg.names() == ["x"]


def test_register_twice_is_refused():
    reg: Registry[int] = Registry("thing")
    reg.register("x")(1)
    with pytest.raises(RuntimeError, match="registered twice"):
        reg.register("x")(2)
    assert reg.get("x") == 1
