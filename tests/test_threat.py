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


@pytest.mark.parametrize("text,needle", [
    ("", "is empty"), ("   ", "is empty"), ("linf:", "has no radius"), ("l2: ", "has no radius"),
    ("linf:0.3:0.1", "write norm:eps"), (":0.3", "unknown norm"), ("linf:abc", "epsilon"),
])
def test_malformed_threats_name_the_flag_they_came_from(text, needle):
    """Every parse error names where the text came from (``what``): one sentence, never the default."""
    with pytest.raises(BenchError) as info:
        ThreatModel.parse(text, what="--threat")
    msg = str(info.value)
    assert needle in msg and "--threat" in msg and "\n" not in msg


@pytest.mark.parametrize("eps,text", [
    (8 / 255, "8/255"), (5 / 255, "5/255"), (10 / 255, "10/255"), (100 / 255, "100/255"), (0.2, "0.2"),
    (1.0, "1"), (0.3, "0.3"), (0.031, "0.031"), (0.0, "0"), (2.0, "2"),
])
def test_format_eps_keeps_k_over_255_and_exact_decimals(eps, text):
    """5/255 reduces to 1/51: it still reads 5/255; a short exact decimal stays a decimal."""
    from robustbench_lite.threat import format_eps

    assert format_eps(eps) == text
    assert parse_eps(text) == pytest.approx(eps, rel=1e-12)
