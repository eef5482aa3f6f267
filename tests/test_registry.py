from __future__ import annotations

import pytest

from thresher.errors import ThresherError
from thresher.registry import Registry


def test_register_create_and_suggest():
    reg: Registry = Registry("widget")

    @reg.register("round")
    def make_round(r: int = 1):
        return ("round", r)

    @reg.register("pre", prefix=True)
    def make_pre(name: str):
        return name

    assert reg.create("round", r=3) == ("round", 3)
    assert reg.create("pre:thing") == "pre:thing"
    assert "round" in reg and "pre:x" in reg and "square" not in reg
    assert reg.names() == ["round", "pre:<name>"]
    with pytest.raises(ThresherError, match=r"unknown widget 'rund'; did you mean 'round'\?"):
        reg.create("rund")
    with pytest.raises(ValueError, match="twice"):
        reg.register("round")(make_round)


def test_validate_raises_value_error_for_config_validators():
    from thresher.registry import Registry

    reg = Registry("widget")
    reg.register("spoon")(object)
    reg.validate("spoon")
    reg.validate(["spoon", "spoon"])
    with pytest.raises(ValueError, match="unknown widget 'spon'"):
        reg.validate(["spoon", "spon"])
