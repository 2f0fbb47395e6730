"""The operator policy: file validation, categories, precedence, scopes, expiry,
default-deny; and property tests that the compiled matchers (the Python index
and the filter's own ``dnspolicy`` crate) agree with a direct evaluation of
the rules."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from detectors.operator_policy import (
    Category,
    CompiledPolicy,
    OperatorPolicy,
    Rule,
    Scope,
    ScopeMode,
    compile_policy,
    evaluate_directly,
    verdict_entry,
)
from streams.policy.feed import render_snapshot
from streams.policy.file import PolicyError, load_category, parse_policy

pytestmark = pytest.mark.unit
FILTER = Path(__file__).resolve().parents[2] / "filter"

POLICY = """\
categories:
  gambling:
    files: [gambling.txt]
scopes:
  - namespace: payments
    mode: default-deny
    action: refused
rules:
  - scope: {namespace: payments}
    suffix: stripe.com
    action: allow
    comment: card payments
  - scope: {namespace: payments}
    exact: evil.stripe.com
    action: nxdomain
  - scope: {namespace: payments, workload: batch}
    suffix: pypi.org
    action: allow
  - category: gambling
    action: nxdomain
  - suffix: cdn.example
    action: allow
  - suffix: dropbox.com
    action: log
    comment: shadow IT
  - suffix: old.example
    action: nxdomain
    expires: 2001-01-01T00:00:00Z
"""


def verdict(name: str, scope: str = "global", action: str = "nxdomain") -> dict:
    return {"scope": scope, "name": name, "match": "suffix", "action": action, "detector": "dga",
            "score": 0.99, "reason": "DGA-like", "created": 0, "expires": 2e9}  # fmt: skip


@pytest.fixture
def policy(tmp_path: Path) -> OperatorPolicy:
    (tmp_path / "gambling.txt").write_text("# a plain list\ncasino.example\nbets.example.\n")
    return parse_policy(POLICY, tmp_path, "policy.yaml")


def decide(
    policy: OperatorPolicy, name: str, ns: str, wl: str = "web", verdicts: list | None = None
) -> str:
    entries = compile_policy(policy) + [verdict_entry(v) for v in verdicts or []]
    d = CompiledPolicy(entries).decide(name, ns, wl, time.time())
    direct = evaluate_directly(policy, verdicts or [], name, ns, wl, time.time())
    assert (d.action, d.matched) == (direct.action, direct.matched)
    return d.action


def test_precedence_scopes_default_deny_and_expiry(policy: OperatorPolicy) -> None:
    cdn = [verdict("cdn.example"), verdict("api.stripe.com"), verdict("mal.dropbox.com")]
    assert (
        decide(policy, "api.stripe.com", "payments", verdicts=cdn) == "allow"
    )  # operator allow beats detector
    assert (
        decide(policy, "evil.stripe.com", "payments") == "nxdomain"
    )  # longer name beats the allow
    assert decide(policy, "example.org", "payments") == "refused"  # default-deny answers its action
    assert decide(policy, "pypi.org", "payments") == "refused"
    assert decide(policy, "files.pypi.org", "payments", "batch") == "allow"  # workload scope
    assert decide(policy, "example.org", "shop") == "allow"  # default-allow elsewhere
    assert (
        decide(policy, "api.stripe.com", "shop", verdicts=cdn) == "nxdomain"
    )  # detector fills the rest
    assert decide(policy, "www.casino.example", "shop") == "nxdomain"  # category, everywhere
    # in payments the namespace's default-deny is the more specific scope: it answers, still a block
    assert decide(policy, "bets.example", "payments") == "refused"
    assert decide(policy, "x.cdn.example", "shop", verdicts=cdn) == "allow"
    assert decide(policy, "app.dropbox.com", "shop") == "log"
    assert (
        decide(policy, "mal.dropbox.com", "shop", verdicts=cdn) == "nxdomain"
    )  # a log mark yields to a block
    assert decide(policy, "old.example", "shop") == "allow"  # expired


def test_explain_names_the_rule_and_its_line(policy: OperatorPolicy) -> None:
    d = CompiledPolicy(compile_policy(policy)).decide("api.stripe.com", "payments", "web")
    assert d.explain() == (
        "allow (matched on stripe.com): operator rule (line 9): allow suffix stripe.com in namespace payments: card payments"
    )
    d = CompiledPolicy(compile_policy(policy)).decide("example.org", "payments", "web")
    assert "default-deny namespace payments (line 5)" in d.explain()
    d = CompiledPolicy([verdict_entry(verdict("bad.example"))]).decide("x.bad.example", "shop")
    assert d.explain().startswith(
        "nxdomain (matched on bad.example): dga verdict (score 0.990): DGA-like"
    )
    assert (
        CompiledPolicy([]).decide("a.example", "x").explain().startswith("allow: no operator rule")
    )


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("rules:\n  - suffix: a.example\n    action: drop\n", "line 2: action must be one of"),
        (
            "rules:\n  - suffix: a.example\n    exact: b.example\n    action: allow\n",
            "line 2: a rule needs exactly one",
        ),
        ("rules:\n  - category: nope\n    action: nxdomain\n", "line 2: unknown category 'nope'"),
        (
            "rules:\n  - suffix: 'bad name!'\n    action: allow\n",
            "line 2: 'bad name!' is not a domain name",
        ),
        (
            "rules:\n- suffix: a.example\n  action: allow\n  scope: {workload: x}\n",
            "line 2: scope needs a namespace",
        ),
        (
            "rules:\n  - suffix: a.example\n    action: allow\n    expires: soon\n",
            "line 2: expires must be",
        ),
        ("scopes:\n  - namespace: a\n    mode: deny-all\n", "line 2: mode must be"),
        (
            "scopes:\n  - namespace: a\n    mode: default-deny\n  - namespace: a\n    mode: default-allow\n",
            "line 4: namespace a has a mode",
        ),
        ("rulez: []\n", "line 1: unknown top-level key"),
        ("rules: [\n", "not valid YAML"),
        ("categories:\n  c:\n    files: [missing.txt]\n", "line 3: category 'c': cannot read"),
    ],
)
def test_invalid_files_get_errors_that_point_at_the_line(
    tmp_path: Path, text: str, error: str
) -> None:
    with pytest.raises(PolicyError, match=error.replace("(", r"\(").replace("[", r"\[")) as exc:
        parse_policy(text, tmp_path, "p.yaml")
    assert str(exc.value).startswith("p.yaml: ")


@pytest.mark.parametrize(
    ("fmt", "content", "expected"),
    [
        (
            "hosts",
            "# hosts\n0.0.0.0 ads.example tracker.example\n127.0.0.1 localhost\n::1 v6.example\n",
            {"ads.example", "tracker.example", "v6.example"},
        ),
        (
            "adblock",
            "! title\n||ads.example^\n||x.example^$third-party\n@@||ok.example^\nexample.com##.banner\n",
            {"ads.example", "x.example"},
        ),
        (
            "rpz",
            "$ORIGIN rpz.test.\n@ SOA a. b. 1 2 3 4 5\nbad.example CNAME .\n*.bad.example CNAME .\nworse.example.rpz.test. CNAME .\n",
            {"bad.example", "worse.example"},
        ),
        ("plain", "# list\nA.Example\nb.example.\nnot a domain!\n", {"a.example", "b.example"}),
    ],
)
def test_category_formats_are_detected_and_read(
    tmp_path: Path, fmt: str, content: str, expected: set[str]
) -> None:
    (tmp_path / "list.txt").write_text(content)
    for given_fmt in ("auto", fmt):
        cat = load_category("c", {"files": ["list.txt"], "format": given_fmt}, tmp_path, 3)
        assert set(cat.domains) == expected


def test_categories_are_bounded(tmp_path: Path) -> None:
    (tmp_path / "big.txt").write_text("".join(f"d{i}.example\n" for i in range(11)))
    with pytest.raises(PolicyError, match="more than max_entries=10"):
        load_category("big", {"files": ["big.txt"], "max_entries": 10}, tmp_path, 7)


# -- property tests -------------------------------------------------------------------

LABELS = st.sampled_from(["a", "b", "cdn", "x"])
NAMES = st.lists(LABELS, min_size=1, max_size=3).map(lambda ls: ".".join(ls) + ".example.net")
SCOPES = st.sampled_from([Scope(), Scope("ns1"), Scope("ns2"), Scope("ns1", "w1")])
ACTIONS = st.sampled_from(["allow", "nxdomain", "refused", "log", "sinkhole"])


@st.composite
def policies(draw: st.DrawFn) -> tuple[OperatorPolicy, list[dict]]:
    cat = Category(
        "c",
        frozenset(draw(st.lists(NAMES, max_size=4))),
        draw(st.sampled_from(["exact", "suffix"])),
    )
    rules = []
    for i in range(draw(st.integers(0, 8))):
        kind = draw(st.sampled_from(["exact", "suffix", "category"]))
        value = "c" if kind == "category" else draw(NAMES)
        expires = draw(st.sampled_from([0.0, 500.0, 2000.0]))
        rules.append(Rule(draw(SCOPES), kind, value, draw(ACTIONS), expires, "", i + 1))
    modes = [ScopeMode(s, "default-deny", draw(st.sampled_from(["nxdomain", "refused"])))
             for s in draw(st.lists(SCOPES, max_size=2, unique=True))]  # fmt: skip
    verdicts = [
        {"scope": draw(st.sampled_from(["*", "ns:ns1", "ns:ns2"])), "name": n, "match": draw(st.sampled_from(["exact", "suffix"])),
         "action": draw(st.sampled_from(["nxdomain", "shadow"])), "expires": draw(st.sampled_from([0, 500, 2000]))}
        for n in draw(st.lists(NAMES, max_size=3, unique=True))
    ]  # fmt: skip
    return OperatorPolicy(tuple(rules), tuple(modes), {"c": cat}), verdicts


QUERIES = st.lists(
    st.tuples(NAMES, st.sampled_from(["ns1", "ns2", "ns3"]), st.sampled_from(["w1", "w2"])),
    min_size=1,
    max_size=6,
)


@settings(max_examples=300, deadline=None)
@given(policies(), QUERIES, st.sampled_from([100.0, 1000.0, 3000.0]))
def test_compiled_index_agrees_with_direct_evaluation(
    pv: tuple[OperatorPolicy, list[dict]], queries: list, now: float
) -> None:
    policy, verdicts = pv
    compiled = CompiledPolicy(compile_policy(policy) + [verdict_entry(v) for v in verdicts])
    for name, ns, wl in queries:
        a = compiled.decide(name, ns, wl, now)
        b = evaluate_directly(policy, verdicts, name, ns, wl, now)
        assert (a.action, a.matched) == (b.action, b.matched), (name, ns, wl)


@pytest.fixture(scope="module")
def policy_decide() -> Path:
    subprocess.run(["/usr/bin/cargo", "build", "-q", "-p", "dnspolicy", "--bin", "policy-decide"],
                   cwd=FILTER, check=True, env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home())})  # fmt: skip
    return FILTER / "target" / "debug" / "policy-decide"


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(policies(), QUERIES, st.sampled_from([100, 1000, 3000]))
def test_the_filters_matcher_agrees_with_direct_evaluation(
    policy_decide: Path,
    tmp_path_factory: pytest.TempPathFactory,
    pv: tuple[OperatorPolicy, list[dict]],
    queries: list,
    now: int,
) -> None:
    """Compile, render the feed snapshot exactly as the feed server does, load it
    into the filter's Rust matcher, and compare every decision."""
    policy, verdicts = pv
    entries = [e.as_dict() for e in compile_policy(policy)] + verdicts
    snap = tmp_path_factory.mktemp("snap") / "policy"
    snap.write_bytes(render_snapshot(1, entries, now=0))
    stdin = "".join(f"{n}\t{ns}\t{wl}\t{now}\n" for n, ns, wl in queries)
    out = subprocess.run(
        [str(policy_decide), str(snap)], input=stdin, capture_output=True, text=True, check=True
    )
    for (name, ns, wl), line in zip(queries, out.stdout.splitlines(), strict=True):
        d = evaluate_directly(policy, verdicts, name, ns, wl, now)
        expected = f"{d.action}\t{'-' if d.matched is None else d.matched or '.'}"
        assert line == expected, (name, ns, wl, snap.read_text())


@pytest.mark.parametrize("first", ["refused", "nxdomain"])
def test_equal_specificity_blocks_resolve_by_action_not_by_order(
    policy_decide: Path, tmp_path: Path, first: str
) -> None:
    """Two blocks on one name in one scope: nxdomain wins whichever is listed
    first, in Python and in the filter's matcher (found by the property test)."""
    second = "nxdomain" if first == "refused" else "refused"
    ns1 = Scope.from_key("ns:ns1")
    rules = tuple(
        Rule(ns1, "exact", "a.example.net", a, 0.0, "", i) for i, a in enumerate((first, second))
    )
    policy = OperatorPolicy(rules, (), {})
    verdicts = [{"scope": "ns:ns1", "name": "a.example.net", "match": "exact", "action": a, "expires": 0}
                for a in ("shadow", "sinkhole", "shadow")]  # fmt: skip
    for vs in ([], verdicts):
        entries = [e.as_dict() for e in compile_policy(policy)] + vs
        direct = evaluate_directly(policy, vs, "a.example.net", "ns1", "w1", 100)
        compiled = CompiledPolicy(compile_policy(policy) + [verdict_entry(v) for v in vs])
        assert (
            direct.action == compiled.decide("a.example.net", "ns1", "w1", 100).action == "nxdomain"
        )
        snap = tmp_path / "policy"
        snap.write_bytes(render_snapshot(1, entries, now=0))
        out = subprocess.run([str(policy_decide), str(snap)], input="a.example.net\tns1\tw1\t100\n",
                             capture_output=True, text=True, check=True)  # fmt: skip
        assert out.stdout.split("\t")[0] == "nxdomain"
    # detector verdicts alone: the block beats the shadow marks around it
    only = OperatorPolicy((), (), {})
    assert evaluate_directly(only, verdicts, "a.example.net", "ns1", "w1", 100).action == "sinkhole"


# Entries as an attacker or a bug could leave them in Redis: names with TABs,
# newlines, spaces, NULs, upper case, escapes; bad scopes, matches and actions.
HOSTILE_NAMES = st.one_of(
    NAMES,
    st.sampled_from(
        [
            "",
            ".",
            "com",
            "co.uk",
            "duckdns.org",
            "x.svc.cluster.local",
            "a\\042b.example.net",
            "a\\065.example.net",
            "zz\n+\td\t*\ts\tnxdomain\t0\t.",
            "A.example.net",
        ]
    ),
    st.text(alphabet=st.sampled_from(list("ab.\t\n \x00\\-_*Z0é")), max_size=24),
)
HOSTILE_SCOPES = st.one_of(
    st.sampled_from(["*", "global", "ns:ns1", "ns:ns2", "wl:ns1/w1"]),
    st.sampled_from(["ns:", "ns:Ns1", "ns:a\tb", "wl:ns1", "wl:/w", "planet", "ns:a\n+"]),
)


@st.composite
def hostile_entries(draw: st.DrawFn) -> list[dict]:
    out = []
    for _ in range(draw(st.integers(1, 8))):
        origin = draw(st.sampled_from(["d", "o", "x"]))
        actions = ["nxdomain", "refused", "sinkhole", "shadow", "allow", "log", "drop"]
        out.append(
            {
                "origin": origin,
                "scope": draw(HOSTILE_SCOPES),
                "name": draw(HOSTILE_NAMES),
                "match": draw(st.sampled_from(["exact", "suffix", "regex"])),
                "action": draw(st.sampled_from(actions)),
                "expires": draw(st.sampled_from([0, 500, 2000])),
            }
        )
    return out


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(hostile_entries())
def test_the_filter_parses_everything_the_feed_writes_and_nothing_else(
    policy_decide: Path, tmp_path_factory: pytest.TempPathFactory, entries: list[dict]
) -> None:
    """Whatever is stored, the feed server writes only records the filter's
    parser takes (no record skipped on the Rust side), and exactly the valid
    entries arrive in the filter's table."""
    from detectors.verdicts import InvalidVerdict
    from streams.policy.store import entry_fields

    # the filter keeps one rule per (origin, scope, match, action, name), lasting
    # as long as its longest-lived copy (0: for ever)
    valid: dict[tuple[str, ...], int] = {}
    invalid = 0
    for e in entries:
        try:
            o, scope, match, action, expires, name = entry_fields(e, "d")
        except InvalidVerdict:
            invalid += 1
            continue
        key = (o, scope, match, action, name)
        old = valid.get(key)
        valid[key] = 0 if expires == 0 or old == 0 else max(expires, old or 0)
    left_out: list[str] = []
    body = render_snapshot(1, entries, now=0, skipped=lambda e, why: left_out.append(why))
    assert len(left_out) == invalid  # every invalid entry is reported, once
    snap = tmp_path_factory.mktemp("hostile") / "policy"
    snap.write_bytes(body)
    out = subprocess.run([str(policy_decide), "--dump", str(snap)], capture_output=True, check=True)
    assert out.stderr.decode().strip() == "skipped 0"
    held = set()
    group: tuple[str, ...] = ()
    for line in out.stdout.decode().splitlines()[1:]:
        if line.startswith("@"):
            group = tuple(line.split("\t")[1:])
        else:
            o, scope, match, action, expires = group
            held.add((o, scope, match, action, line[1:], int(expires)))
    assert held == {(*key, expires) for key, expires in valid.items()}


NAME_TEXT = st.one_of(
    st.text(alphabet=st.sampled_from(list("aZ09-_.\\*é ")), max_size=12),
    st.lists(
        st.sampled_from(["a", "\\042", "\\065", "\\256", "\\04", "x" * 63, "y" * 64, "-", "_"]),
        max_size=6,
    ).map(".".join),
    st.integers(1, 5).map(lambda n: ".".join(["a" * 63] * n)),  # around the 253-octet bound
)


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(NAME_TEXT, min_size=1, max_size=10))
def test_python_and_rust_agree_on_which_names_are_canonical(
    policy_decide: Path, tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    """``detectors.dnsname.is_canonical`` and ``dnswire::presentation`` are one
    rule: a feed record naming each string is taken by the filter exactly when
    Python calls the name canonical."""
    from detectors.dnsname import is_canonical

    names = [n for n in names if n not in ("", ".") and "\t" not in n and "\n" not in n]
    body = "dnsguard-policy/1\tsnapshot\t1\t0\t0\n" + "".join(
        f"+\to\tns:a\te\tnxdomain\t0\t{n}\n" for n in names
    )
    snap = tmp_path_factory.mktemp("names") / "policy"
    snap.write_text(body, encoding="utf-8")
    out = subprocess.run([str(policy_decide), "--dump", str(snap)], capture_output=True, check=True)
    held = {line[1:] for line in out.stdout.decode().splitlines()[1:] if line.startswith("\t")}
    assert held == {n for n in names if is_canonical(n)}
    assert int(out.stderr.decode().split()[1]) == sum(1 for n in names if not is_canonical(n))
