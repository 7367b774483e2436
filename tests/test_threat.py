import pytest

from robustbench_lite.errors import BenchError
from robustbench_lite.threat import ThreatModel, parse_eps


@pytest.mark.parametrize("text,norm,eps", [
    ("8/255", "linf", 8 / 255), ("0.3", "linf", 0.3), ("linf:8/255", "linf", 8 / 255),
    ("l2:0.5", "l2", 0.5), ("L1:12", "l1", 12.0), ("inf:2e-3", "linf", 0.002), ("  l2 : 1/2 ", "l2", 0.5),
])
def test_parse(text, norm, eps):
    t = ThreatModel.parse(text)
    assert t.norm == norm and t.eps == pytest.approx(eps, abs=1e-12)


@pytest.mark.parametrize("text", ["", "abc", "l3:0.3", "linf:-1", "1/0", "linf:", "nan", "8//255", "0.3x"])
def test_nonsense_is_a_clear_error(text):
    with pytest.raises(BenchError):
        ThreatModel.parse(text)


def test_str_roundtrip():
    for s in ["linf:8/255", "l2:0.5", "linf:0.3"]:
        t = ThreatModel.parse(s)
        assert ThreatModel.parse(str(t)) == t
    assert str(ThreatModel.parse("8/255")) == "linf:8/255"
    assert parse_eps(0.25) == 0.25
