from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from detectors.names import PublicSuffixList, default_psl, normalise, normalise_many, split_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("name", "sub", "label", "suffix"),
    [
        ("www.google.com", "www", "google", "com"),
        ("a.b.example.co.uk", "a.b", "example", "co.uk"),
        ("WWW.Example.COM.", "www", "example", "com"),
        ("xyz.ddns.net", "", "xyz", "ddns.net"),  # private-section suffix
        ("a.wreczn.mooo.com", "a", "wreczn", "mooo.com"),  # dynamic-DNS parent added to the PSL
        ("mooo.com", "", "", "mooo.com"),
        ("com", "", "", "com"),
        ("a.b.c.unknowntld", "a.b", "c", "unknowntld"),
        ("", "", "", ""),
    ],
)
def test_split_name(name: str, sub: str, label: str, suffix: str) -> None:
    s = split_name(name)
    assert (s.subdomain, s.label, s.suffix) == (sub, label, suffix)


def test_wildcard_and_exception_rules() -> None:
    psl = PublicSuffixList.from_text(
        "// test\nck\n*.ck\n!www.ck\njp\nkawasaki.jp\n*.kawasaki.jp\n!city.kawasaki.jp\n"
    )
    assert psl.split("foo.bar.ck").suffix == "bar.ck"
    assert psl.split("www.ck").suffix == "ck"
    assert psl.split("www.ck").label == "www"
    assert psl.split("x.y.kawasaki.jp").suffix == "y.kawasaki.jp"
    assert psl.split("city.kawasaki.jp").registrable == "city.kawasaki.jp"


def test_bundled_list_is_loaded() -> None:
    assert len(default_psl()) > 5000


@pytest.mark.parametrize(
    "name",
    ["www.google.com", "a.b.example.co.uk", "a..b.com", ".b.com", "..com", "x..y..co.uk", "com",
     "", ".", " A.B.Co.Uk ", "x.com.", "a.b.c.d.kawasaki.jp", "www.city.kawasaki.jp", "x.y.ck",
     # two labels: the wildcard, exception and whole-name rules the fast path must not take
     "foo.ck", "www.ck", "ddns.net", "blogspot.com", "kawasaki.jp", "co.uk", "Example.COM."],
)  # fmt: skip
def test_label_and_suffix_many_agrees_with_split(name: str) -> None:
    s = default_psl().split(name)
    subdomain_labels = len(s.subdomain.split(".")) if s.subdomain else 0
    labels, suffixes, depths = default_psl().label_and_suffix_many([name, "www.example.com"])
    assert (labels[0], suffixes[0], depths[0]) == (s.label, s.suffix, subdomain_labels)
    assert (labels[1], suffixes[1], depths[1]) == ("example", "com", 1)
    assert s.subdomain_labels == subdomain_labels


# labels that meet rules of every kind in the bundled list: plain TLDs, two-label
# rules, wildcards (*.ck, *.kawasaki.jp), exceptions (!www.ck, !city.kawasaki.jp)
_LABELS = ["com", "net", "uk", "co", "ck", "www", "jp", "kawasaki", "city", "ddns",
           "blogspot", "example", "x", "", "unknowntld"]  # fmt: skip


@given(st.lists(st.sampled_from(_LABELS), min_size=1, max_size=5), st.booleans())
def test_batch_split_agrees_with_split_on_rule_labels(labels: list[str], upper: bool) -> None:
    name = ".".join(labels)
    name = name.upper() if upper else name
    s = default_psl().split(name)
    got = default_psl().label_and_suffix_many([name])
    subdomain_labels = len(s.subdomain.split(".")) if s.subdomain else 0
    assert (got[0][0], got[1][0], got[2][0]) == (s.label, s.suffix, subdomain_labels)


# whitespace that strip() removes, a final sigma, a case-ignorable mark, a dotted capital I
_NAME_CHARS = "aZ.-_ \t\n\r\x0b\x0c\x1c\x1f\x85\xa0\u2028ΑΣσ'\u0345İ"


@example(["a.b", "\xa0x.com"])
@example(["x.com\u2028"])
@example(["a.", "b"])
@example(["A\tB"])
@given(st.lists(st.text(alphabet=_NAME_CHARS, max_size=6) | st.text(max_size=4), max_size=5))
def test_normalise_many_is_normalise_of_each(names: list[str]) -> None:
    assert normalise_many(names) == [normalise(name) for name in names]
