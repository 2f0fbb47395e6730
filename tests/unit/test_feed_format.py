"""The feed body and signature as the feed server writes them (the filter's
``dnspolicy`` crate parses and verifies the same format; its tests pin the
same RFC 8032 vector), and what the feed refuses to write."""

from __future__ import annotations

import base64

import pytest

from streams.errors import ConfigError
from streams.policy.feed import render_delta, render_snapshot, rule_line
from streams.policy.signing import SigningError, SigningKey, verify
from streams.settings import load_feed_settings

pytestmark = pytest.mark.unit

# RFC 8032 section 7.1, TEST 1
RFC8032_SEED = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
RFC8032_PUBLIC = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
RFC8032_SIG = (
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46b"
    "d25bf5f0595bbe24655141438e7a100b"
)
TOKEN = "feed-token-0123456789"


def b64(hex_text: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_text)).decode()


def entry(
    name: str,
    scope: str = "*",
    match: str = "suffix",
    action: str = "nxdomain",
    expires: float = 2e9,
) -> dict:
    return {"scope": scope, "name": name, "match": match, "action": action, "expires": expires}


def test_signature_is_ed25519_in_the_filters_header_form() -> None:
    key = SigningKey.parse("t:" + b64(RFC8032_SEED))
    assert key.public_b64 == b64(RFC8032_PUBLIC)
    header = key.sign(b"")
    sig = base64.urlsafe_b64encode(bytes.fromhex(RFC8032_SIG)).rstrip(b"=").decode()
    assert header == f"keyid=t,alg=ed25519,sig={sig}"
    assert verify(header, b"", {"t": key.public_b64}) == "t"


def test_signatures_reject_tampering_other_keys_and_garbage() -> None:
    key, _ = SigningKey.generate("k1")
    other, _ = SigningKey.generate("k1")
    body = b"dnsguard-policy/1\tsnapshot\t1\t0\t0\n"
    good = key.sign(body)
    keys = {"k1": key.public_b64}
    assert verify(good, body, keys) == "k1"
    for header, text in (
        (good, body + b"+\td\t*\ts\tnxdomain\t0\t.\n"),  # tampered
        (other.sign(body), body),  # another private key under the same id
        (good.replace("k1", "k2"), body),  # unknown key id
        (None, body),
        ("keyid=k1,sig=AAAA", body),
        (good + ",keyid=k2", body),
    ):
        with pytest.raises(SigningError):
            verify(header, text, keys)


def test_rule_lines_carry_origin_scope_match_action_expiry_name() -> None:
    assert rule_line(entry("a.example.net", expires=1234.9)) == (
        "+\td\t*\ts\tnxdomain\t1234\ta.example.net"
    )
    assert rule_line(entry("b.example.net", "ns:shop", "exact", "refused", 0), "o") == (
        "+\to\tns:shop\te\trefused\t0\tb.example.net"
    )
    # a stored verdict of the old spelling of the global scope
    assert rule_line(entry("c.example.net", "global")).split("\t")[2] == "*"


def test_snapshot_groups_rules_sorts_names_and_leaves_out_expired_entries() -> None:
    body = render_snapshot(
        7,
        [entry("z.example.net"), entry("a.example.net"), entry("old.example.net", expires=50),
         entry("r.example.net", "ns:shop", "exact", "refused", 0)],
        now=100,
    )  # fmt: skip
    assert body.decode().splitlines() == [
        "dnsguard-policy/1\tsnapshot\t7\t0\t100",
        "@\td\t*\ts\tnxdomain\t2000000000",
        "\ta.example.net",
        "\tz.example.net",
        "@\td\tns:shop\te\trefused\t0",
        "\tr.example.net",
    ]


def test_delta_removes_then_re_adds_each_changed_key() -> None:
    body = render_delta(
        3,
        5,
        {
            "*|a.example.net": entry("a.example.net"),
            "ns:shop|gone.example.net": None,
            "*|exp.example.net": entry("exp.example.net", expires=50),
        },
        now=100,
    )
    assert body.decode().splitlines() == [
        "dnsguard-policy/1\tdelta\t5\t3\t100",
        "-\td\t*\ta.example.net",
        "+\td\t*\ts\tnxdomain\t2000000000\ta.example.net",
        "-\td\t*\texp.example.net",
        "-\td\tns:shop\tgone.example.net",
    ]


FORGED = [
    entry("zz\n+\td\t*\ts\tnxdomain\t0\tgoogle.com"),  # a record smuggled in a name
    entry("a b.example.net"),
    entry("nul\x00.example.net"),
    entry("Upper.Example.net"),  # not canonical
    entry(""),  # the root
    entry("com"),  # a public suffix
    entry("duckdns.org"),  # a private-section public suffix
    entry("kubernetes.default.svc.cluster.local"),  # an internal zone
    entry("x.corp"),  # an undelegated top-level domain
    entry("ok.example.net", scope="ns:shop\t*"),
    entry("ok.example.net", scope="ns:Shop"),
    entry("ok.example.net", action="drop-table"),
    entry("ok.example.net", match="regex"),
    {**entry("ok.example.net"), "origin": "x"},
]


def test_the_feed_never_writes_an_invalid_entry_and_the_rest_still_goes_out() -> None:
    left_out: list[str] = []
    good = entry("good.example.net", "ns:shop")
    body = render_snapshot(9, [*FORGED, good], now=100, skipped=lambda e, why: left_out.append(why))
    assert len(left_out) == len(FORGED)
    assert body.decode().splitlines() == [
        "dnsguard-policy/1\tsnapshot\t9\t0\t100",
        "@\td\tns:shop\ts\tnxdomain\t2000000000",
        "\tgood.example.net",
    ]
    left_out.clear()
    changes = {f"*|forged{i}.example.net": e for i, e in enumerate(FORGED)}
    changes["ns:shop|good.example.net"] = good
    changes["*|a\tb.example.net"] = None  # a change-log key that could break the format
    delta = render_delta(8, 9, changes, now=100, skipped=lambda e, why: left_out.append(why))
    assert len(left_out) == len(FORGED) + 1
    lines = delta.decode().splitlines()
    assert "+\td\tns:shop\ts\tnxdomain\t2000000000\tgood.example.net" in lines
    assert all(line.count("\t") <= 6 and not line.endswith("\t.") for line in lines)


def test_an_entry_with_an_unusable_expiry_is_refused() -> None:
    from detectors.verdicts import InvalidVerdict

    for expires in (float("nan"), float("inf"), "soon", 2.0**70):
        with pytest.raises(InvalidVerdict):
            rule_line(entry("ok.example.net", expires=expires))  # type: ignore[arg-type]


def test_operator_entries_keep_the_root_and_marks() -> None:
    deny = {"origin": "o", "scope": "ns:payments", "name": ".", "match": "suffix",
            "action": "nxdomain", "expires": 0}  # fmt: skip
    allow = {**deny, "name": "stripe.com", "action": "allow"}
    assert rule_line(deny, "o") == "+\to\tns:payments\ts\tnxdomain\t0\t."
    assert rule_line(allow, "o") == "+\to\tns:payments\ts\tallow\t0\tstripe.com"


def test_feed_settings_need_a_signing_key_and_a_token() -> None:
    key_text = "k1:" + b64(RFC8032_SEED)
    with pytest.raises(ConfigError, match="FEED_SIGNING_KEY"):
        load_feed_settings({"DNSGUARD_FEED_TOKEN": TOKEN})
    with pytest.raises(ConfigError, match="32 bytes"):
        load_feed_settings(
            {"DNSGUARD_FEED_SIGNING_KEY": "k1:c2hvcnQ=", "DNSGUARD_FEED_TOKEN": TOKEN}
        )
    with pytest.raises(ConfigError, match="FEED_TOKEN is required"):
        load_feed_settings({"DNSGUARD_FEED_SIGNING_KEY": key_text})
    with pytest.raises(ConfigError, match="16 characters"):
        load_feed_settings({"DNSGUARD_FEED_SIGNING_KEY": key_text, "DNSGUARD_FEED_TOKEN": "short"})
    s = load_feed_settings({"DNSGUARD_FEED_SIGNING_KEY": key_text, "DNSGUARD_FEED_TOKEN": TOKEN})
    assert s.signing_key.id == "k1"
    assert b64(RFC8032_SEED) not in repr(s)
    insecure = load_feed_settings(
        {"DNSGUARD_FEED_SIGNING_KEY": key_text, "DNSGUARD_INSECURE": "true"}
    )
    assert insecure.insecure
    assert not insecure.token
