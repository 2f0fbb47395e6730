"""The feed body and signature as the feed server writes them (the filter's
``dnspolicy`` crate parses and verifies the same format; its tests pin the
same HMAC vector)."""

from __future__ import annotations

import pytest

from streams.errors import ConfigError
from streams.feed import render_delta, render_snapshot, rule_line, sign
from streams.settings import load_feed_settings

pytestmark = pytest.mark.unit


def entry(
    name: str,
    scope: str = "global",
    match: str = "suffix",
    action: str = "nxdomain",
    expires: float = 2e9,
) -> dict:
    return {"scope": scope, "name": name, "match": match, "action": action, "expires": expires}


def test_signature_is_hmac_sha256_in_the_filters_header_form() -> None:
    # RFC 4231 test case 2, the same vector dnspolicy's sign.rs checks
    assert sign("t", b"Jefe", b"what do ya want for nothing?") == (
        "keyid=t,sig=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    )


def test_rule_lines_carry_origin_scope_match_action_expiry_name() -> None:
    assert rule_line(entry("a.example", expires=1234.9)) == "+\td\t*\ts\tnxdomain\t1234\ta.example"
    assert rule_line(entry("b.example", "ns:shop", "exact", "refused", 0), "o") == (
        "+\to\tns:shop\te\trefused\t0\tb.example"
    )


def test_snapshot_groups_rules_sorts_names_and_leaves_out_expired_entries() -> None:
    body = render_snapshot(
        7,
        [entry("z.example"), entry("a.example"), entry("old.example", expires=50),
         entry("r.example", "ns:shop", "exact", "refused", 0)],
        now=100,
    )  # fmt: skip
    assert body.decode().splitlines() == [
        "dnsguard-policy/1\tsnapshot\t7\t0\t100",
        "@\td\t*\ts\tnxdomain\t2000000000",
        "\ta.example",
        "\tz.example",
        "@\td\tns:shop\te\trefused\t0",
        "\tr.example",
    ]


def test_delta_removes_then_re_adds_each_changed_key() -> None:
    body = render_delta(
        3,
        5,
        {
            "global|a.example": entry("a.example"),
            "ns:shop|gone.example": None,
            "global|exp.example": entry("exp.example", expires=50),
        },
        now=100,
    )
    assert body.decode().splitlines() == [
        "dnsguard-policy/1\tdelta\t5\t3\t100",
        "-\td\t*\ta.example",
        "+\td\t*\ts\tnxdomain\t2000000000\ta.example",
        "-\td\t*\texp.example",
        "-\td\tns:shop\tgone.example",
    ]


def test_feed_settings_need_keys_of_useful_length() -> None:
    with pytest.raises(ConfigError, match="FEED_KEYS is required"):
        load_feed_settings({})
    with pytest.raises(ConfigError, match="16 characters"):
        load_feed_settings({"DNSGUARD_FEED_KEYS": "k1:short"})
    with pytest.raises(ConfigError, match="id:secret"):
        load_feed_settings({"DNSGUARD_FEED_KEYS": "nocolon"})
    s = load_feed_settings({"DNSGUARD_FEED_KEYS": "new:0123456789abcdef0,old:fedcba98765432100"})
    assert [k for k, _ in s.keys] == ["new", "old"]
    assert "0123456789abcdef0" not in repr(s)
