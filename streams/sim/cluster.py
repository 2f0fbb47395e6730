"""An hour of realistic Kubernetes cluster DNS, as v1 events, from ``shared/data``.

What a healthy cluster sends, and what detection must stay quiet about:

* **search-path expansions**: every pod resolves with ``ndots:5`` and the
  search list ``<ns>.svc.<cluster domain>``, ``svc.<cluster domain>``,
  ``<cluster domain>``, so a name with fewer than five dots is first tried
  under each suffix, for A and AAAA, each answered NXDOMAIN, before the name
  itself;
* **internal names**: services of the pod's own namespace (short names),
  of other namespaces (``svc.other``), the API server, pod records, reverse
  lookups;
* **external names** by habit: browsers and crawlers walk a popularity
  ranking (heavy-tailed, with subdomains); API clients call a handful of
  dependencies again and again; batch jobs fetch from object storage and
  package registries in bursts;
* **cloud and CDN hostnames** whose first label is random by design
  (CloudFront distributions, S3 buckets, Azure blob accounts, Akamai edge
  hosts), answered with short TTLs;
* **typos** (answered NXDOMAIN) and **punycode** names (answered);
* **infected pods**: a DGA family's names sent in bursts, each answered
  NXDOMAIN but the last one, which resolves (the C2); the pod keeps its
  normal workload besides.

Every name comes from the shared data (the benign ranking, the DGA families)
or is built from it; nothing else is read. ``generate`` is deterministic for
a seed. The ground truth (which pods are infected, with which family, which
names resolved as C2) comes with the events.
"""

from __future__ import annotations

import bisect
import csv
import heapq
import json
import random
import string
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

WORDLIST_FAMILIES = frozenset({"suppobox", "rovnix"})
NAMESPACES = ("shop", "payments", "analytics", "search", "media", "auth", "legacy", "batch")
SERVICES = ("api", "web", "cart", "checkout", "auth", "users", "orders", "search", "redis",
            "postgres", "kafka", "cache", "gateway", "catalog", "inventory", "billing", "mailer",
            "reports", "metrics", "config")  # fmt: skip
SUBDOMAINS = ("", "", "", "www.", "www.", "api.", "cdn.", "static.", "img.", "m.", "login.",
              "accounts.", "assets.", "media.", "s.", "app.")  # fmt: skip
REGIONS = ("us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-1")
PACKAGE_HOSTS = ("pypi.org", "files.pythonhosted.org", "registry.npmjs.org", "repo.maven.apache.org",
                 "proxy.golang.org", "index.docker.io", "production.cloudflare.docker.com",
                 "github.com", "objects.githubusercontent.com", "dl.google.com")  # fmt: skip
ACCENTS = {"a": "ä", "o": "ö", "u": "ü", "e": "é", "n": "ñ", "c": "ç"}


@dataclass(frozen=True, slots=True)
class ClusterSpec:
    seed: int = 1
    duration_s: float = 3600.0
    pods: int = 200
    namespaces: int = 8
    infected: int = 12  # infected pods; a third of them with word-list families
    # DGA families for the infected pods (None: every family of the data, in turn)
    families: tuple[str, ...] | None = None
    cluster_domain: str = "cluster.local"
    ndots: int = 5
    # queries per second of a busy browser-like pod; other kinds are scaled from it
    rate: float = 0.25
    burst_every_s: tuple[float, float] = (300.0, 900.0)  # between an infected pod's bursts
    burst_size: tuple[int, int] = (15, 60)  # DGA names per burst, the last one resolves
    typo_rate: float = 0.015  # of a browser's external lookups
    dead_rate: float = 0.05  # of a crawler's external lookups: sites that no longer exist
    # draw ranked names only from positions ``i % 2 == benign_fold`` of the list
    # (None: all), to test a model that never saw them (``models.train_dga.fit_without``)
    benign_fold: int | None = None


@dataclass(frozen=True, slots=True)
class PodTruth:
    namespace: str
    pod: str
    kind: str  # browser, api, batch, internal, crawler
    family: str | None = None  # the DGA family of an infected pod
    wordlist: bool = False


@dataclass
class Truth:
    pods: dict[str, PodTruth] = field(default_factory=dict)  # client identity -> pod
    dga_names: dict[str, set[str]] = field(default_factory=dict)  # client -> DGA names it asked
    c2_names: dict[str, set[str]] = field(default_factory=dict)  # client -> names that resolved
    # per infected client, the time of each DGA name it asked, in order
    dga_times: dict[str, list[float]] = field(default_factory=dict)
    benign_names: set[str] = field(default_factory=set)  # every name a healthy pod asked

    def infected(self) -> list[str]:
        return [c for c, p in self.pods.items() if p.family is not None]

    def as_dict(self) -> dict[str, Any]:
        return {
            "pods": {
                c: {
                    "namespace": p.namespace,
                    "kind": p.kind,
                    "family": p.family,
                    "wordlist": p.wordlist,
                }
                for c, p in self.pods.items()
            },
            "c2": {c: sorted(n) for c, n in self.c2_names.items()},
        }


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _read(path: Path, col: str, where: str | None = None) -> dict[str, list[str]] | list[str]:
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        c = header.index(col)
        if where is None:
            return [row[c] for row in reader]
        w = header.index(where)
        out: dict[str, list[str]] = {}
        for row in reader:
            out.setdefault(row[w], []).append(row[c])
        return out


class _Names:
    """Name makers shared by every pod of one run."""

    def __init__(self, data_dir: Path, rng: random.Random, benign_fold: int | None) -> None:
        ranked = _read(data_dir / "benign_top.csv", "domain")
        assert isinstance(ranked, list)
        if benign_fold is not None:
            ranked = ranked[benign_fold::2]
        self.ranked = ranked
        families = _read(data_dir / "dga_train.csv", "domain", "family")
        assert isinstance(families, dict)
        self.families = families
        self.rng = rng
        # a heavy-tailed popularity: rank r with weight 1 / r^0.9
        weights = [1.0 / (r + 1) ** 0.9 for r in range(len(ranked))]
        self.cum = []
        total = 0.0
        for w in weights:
            total += w
            self.cum.append(total)
        self.total = total

    def popular(self, rng: random.Random) -> str:
        i = bisect.bisect_left(self.cum, rng.random() * self.total)
        return self.ranked[min(i, len(self.ranked) - 1)]

    def page(self, rng: random.Random) -> str:
        return rng.choice(SUBDOMAINS) + self.popular(rng)

    @staticmethod
    def _rand(rng: random.Random, alphabet: str, n: int) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    def cdn(self, rng: random.Random) -> tuple[str, int]:
        """A cloud or CDN hostname with a random label, and its (short) TTL."""
        lower, alnum = string.ascii_lowercase, string.ascii_lowercase + string.digits
        pick = rng.randrange(8)
        if pick == 0:
            name = f"d{self._rand(rng, alnum, 13)}.cloudfront.net"
        elif pick == 1:
            name = f"{self._rand(rng, lower + string.digits, rng.randint(8, 20))}.s3.amazonaws.com"
        elif pick == 2:
            name = f"{self._rand(rng, alnum, rng.randint(10, 24))}.blob.core.windows.net"
        elif pick == 3:
            name = f"e{rng.randint(1000, 99999)}.{rng.choice('abcdx')}.akamaiedge.net"
        elif pick == 4:
            name = f"{self._rand(rng, alnum, 10)}.execute-api.{rng.choice(REGIONS)}.amazonaws.com"
        elif pick == 5:
            name = f"{self._rand(rng, alnum, rng.randint(8, 16))}.azureedge.net"
        elif pick == 6:
            name = (
                f"{self._rand(rng, lower, rng.randint(6, 14))}-{rng.randint(1, 999)}.herokuapp.com"
            )
        else:
            name = f"r{rng.randint(1, 9)}---sn-{self._rand(rng, alnum, 8)}.googlevideo.com"
        return name, rng.choice((20, 30, 60, 60, 120))

    def typo(self, rng: random.Random) -> str:
        """A popular name with one letter deleted, doubled, swapped or changed."""
        name = self.popular(rng)
        label, _, rest = name.partition(".")
        if len(label) < 3 or not rest:
            return "gooogle.com"
        i = rng.randrange(len(label) - 1)
        op = rng.randrange(4)
        if op == 0:
            label = label[:i] + label[i + 1 :]
        elif op == 1:
            label = label[:i] + label[i] + label[i:]
        elif op == 2:
            label = label[:i] + label[i + 1] + label[i] + label[i + 2 :]
        else:
            label = label[:i] + rng.choice(string.ascii_lowercase) + label[i + 1 :]
        return f"{label}.{rest}"

    def dead(self, rng: random.Random) -> str:
        """A site that no longer exists: a real name's label with a word or year
        added, or under another top-level domain."""
        label, _, rest = self.popular(rng).partition(".")
        other = self.popular(rng).partition(".")[0]
        pick = rng.randrange(3)
        if pick == 0:
            return f"{label}{other[:6]}.{rest}"
        if pick == 1:
            return f"{label}{rng.randint(1998, 2019)}.{rest}"
        return f"{label}.{rng.choice(('info', 'biz', 'net', 'org', 'co', 'us'))}"

    def punycode(self, rng: random.Random) -> str:
        """A popular name with accents on its first label, in punycode."""
        name = self.popular(rng)
        label, _, rest = name.partition(".")
        accented = "".join(ACCENTS.get(c, c) if rng.random() < 0.5 else c for c in label)
        if accented == label:
            accented = label + "ä"
        try:
            return accented.encode("idna").decode("ascii") + "." + rest
        except UnicodeError:
            return name


@dataclass(slots=True)
class _Lookup:
    ts: float
    name: str
    outcome: str  # "ok", "nx", "c2"
    ttl: int = 300


class _Pod:
    def __init__(self, truth: PodTruth, ip: str, services: dict[str, list[str]], spec: ClusterSpec,
                 names: _Names, rng: random.Random) -> None:  # fmt: skip
        self.t = truth
        self.ip = ip
        self.services = services
        self.spec = spec
        self.names = names
        self.rng = rng
        # an API client's dependencies, a browser's favourites
        self.deps = [names.popular(rng) for _ in range(rng.randint(3, 12))]
        self.dead = self.deps[0].replace(".", "-old.", 1) if rng.random() < 0.2 else None
        workload = truth.pod.rsplit("-", 2)[0]
        self.node_json = json.dumps(
            {
                "id": f"sidecar~{ip}~{truth.pod}.{truth.namespace}",
                "cluster": workload,
                "namespace": truth.namespace,
                "workload": workload,
                "pod": truth.pod,
                "service_account": workload,
            },
            separators=(",", ":"),
        )

    def _internal(self) -> _Lookup:
        rng, ns = self.rng, self.t.namespace
        cd = self.spec.cluster_domain
        pick = rng.random()
        if pick < 0.55:
            return _Lookup(0, rng.choice(self.services[ns]), "ok", 30)
        if pick < 0.8:
            other = rng.choice(list(self.services))
            return _Lookup(0, f"{rng.choice(self.services[other])}.{other}", "ok", 30)
        if pick < 0.9:
            other = rng.choice(list(self.services))
            return _Lookup(0, f"{rng.choice(self.services[other])}.{other}.svc.{cd}", "ok", 30)
        if pick < 0.95:
            return _Lookup(0, f"kubernetes.default.svc.{cd}", "ok", 30)
        if pick < 0.98:
            ip = "-".join(str(rng.randrange(256)) for _ in range(4))
            return _Lookup(0, f"{ip}.{ns}.pod.{cd}", "ok", 30)
        octets = [str(rng.randrange(256)) for _ in range(4)]
        return _Lookup(0, ".".join(reversed(octets)) + ".in-addr.arpa", "nx", 30)

    def _external(self) -> _Lookup:
        rng, kind, names = self.rng, self.t.kind, self.names
        if self.dead is not None and rng.random() < 0.02:
            return _Lookup(0, self.dead, "nx")  # a retired dependency, asked again and again
        if kind == "crawler" and rng.random() < self.spec.dead_rate:
            return _Lookup(0, names.dead(rng), "nx")
        if kind in ("browser", "crawler"):
            pick = rng.random()
            if pick < self.spec.typo_rate:
                return _Lookup(0, names.typo(rng), "nx")
            if pick < 0.025:
                return _Lookup(0, names.punycode(rng), "ok")
            if pick < 0.2:
                name, ttl = names.cdn(rng)
                return _Lookup(0, name, "ok", ttl)
            if kind == "browser" and pick < 0.5:
                return _Lookup(0, rng.choice(SUBDOMAINS) + rng.choice(self.deps), "ok")
            return _Lookup(0, names.page(rng), "ok")
        if kind == "batch":
            if rng.random() < 0.5:
                return _Lookup(0, rng.choice(PACKAGE_HOSTS), "ok")
            name, ttl = names.cdn(rng)
            return _Lookup(0, name, "ok", ttl)
        # api clients: the same few dependencies, now and then a CDN or a new name
        pick = rng.random()
        if pick < 0.05:
            name, ttl = names.cdn(rng)
            return _Lookup(0, name, "ok", ttl)
        if pick < 0.08:
            return _Lookup(0, names.page(rng), "ok")
        if pick < 0.085:
            return _Lookup(0, names.typo(rng), "nx")
        return _Lookup(0, rng.choice(self.deps), "ok")

    def lookups(self, start: float) -> list[_Lookup]:
        """The pod's lookups over the run, in time order."""
        rng, spec = self.rng, self.spec
        rate = spec.rate * {"browser": 1.0, "crawler": 1.6, "api": 0.6, "batch": 0.5,
                            "internal": 0.4}[self.t.kind] * rng.uniform(0.5, 1.5)  # fmt: skip
        external_share = {"browser": 0.85, "crawler": 0.95, "api": 0.35, "batch": 0.6,
                          "internal": 0.0}[self.t.kind]  # fmt: skip
        out: list[_Lookup] = []
        t = start + rng.uniform(0, 10)
        end = start + spec.duration_s
        while t < end:
            if self.t.kind == "batch" and rng.random() < 0.002:
                t += rng.uniform(60, 300)  # batch jobs idle between runs
                continue
            lk = self._external() if rng.random() < external_share else self._internal()
            lk.ts = t
            out.append(lk)
            t += rng.expovariate(rate)
        if self.t.family is not None:
            out += self._bursts(start, end)
            out.sort(key=lambda lk: lk.ts)
        return out

    def _bursts(self, start: float, end: float) -> list[_Lookup]:
        rng, spec = self.rng, self.spec
        family = self.names.families[self.t.family or ""]
        offset = rng.randrange(len(family))
        out: list[_Lookup] = []
        t = start + rng.uniform(30, spec.burst_every_s[0])
        i = 0
        while t < end:
            n = rng.randint(*spec.burst_size)
            for k in range(n):
                name = family[(offset + i) % len(family)]
                i += 1
                out.append(_Lookup(t, name, "c2" if k == n - 1 else "nx"))
                t += rng.uniform(0.05, 0.5)
            t += rng.uniform(*spec.burst_every_s)
        return out


def _events_of(pod: _Pod, lk: _Lookup, qid: int, spec: ClusterSpec) -> Iterator[bytes]:
    """The v1 events one lookup makes: with fewer dots than ``ndots`` the name is
    first tried under each search suffix (A and AAAA, NXDOMAIN unless it names a
    cluster service), then as it is."""
    rng, t = pod.rng, lk.ts
    ns, cd = pod.t.namespace, spec.cluster_domain
    if lk.name.count(".") < spec.ndots:
        for suffix in (f"{ns}.svc.{cd}", f"svc.{cd}", cd):
            expanded = f"{lk.name}.{suffix}"
            svc, _, rest = expanded.partition(".")
            other = rest.partition(".")[0]
            if rest == f"{other}.svc.{cd}" and svc in pod.services.get(other, ()):
                yield from _pair(pod, t, expanded, "ok", 30, qid)  # a cluster service: found
                return
            yield from _pair(pod, t, expanded, "nx", 0, qid)
            t += rng.uniform(0.0002, 0.002)
    yield from _pair(pod, t, lk.name, lk.outcome, lk.ttl, qid)


_TS_CACHE: dict[int, str] = {}


def _ts(t: float) -> str:
    """``rfc3339(t)``, with the second's text cached (events of a second share it)."""
    sec = int(t)
    prefix = _TS_CACHE.get(sec)
    if prefix is None:
        if len(_TS_CACHE) > 100_000:
            _TS_CACHE.clear()
        prefix = _TS_CACHE[sec] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{prefix}.{int((t - sec) * 1_000_000):06d}Z"


def _pair(pod: _Pod, t: float, name: str, outcome: str, ttl: int, qid: int) -> Iterator[bytes]:
    """A and AAAA for one name (glibc asks both, a hair apart), as v1 JSON lines."""
    rnd = pod.rng.random
    rcode = "NXDOMAIN" if outcome == "nx" else "NOERROR"
    for k, qtype in enumerate(("A", "AAAA")):
        if rcode == "NOERROR" and qtype == "A":
            addr = f"{int(rnd() * 223) + 1}.{int(rnd() * 256)}.{int(rnd() * 256)}.{int(rnd() * 254) + 1}"
            answers = f'[{{"name":"{name}","type":"A","ttl":{ttl},"data":"{addr}"}}]'
            min_ttl = str(ttl)
        else:
            answers, min_ttl = "[]", "null"
        n = qid * 2 + k
        yield (
            f'{{"v":1,"ts":"{_ts(t + k * 0.0001)}","node":{pod.node_json},'
            f'"client":{{"ip":"{pod.ip}","port":{40000 + n % 20000}}},"transport":"udp",'
            f'"query":{{"id":{n % 65536},"name":"{name}","type":"{qtype}","class":"IN",'
            f'"rd":true,"cd":false,"do":false}},"response":{{"rcode":"{rcode}","aa":false,'
            f'"tc":false,"ra":true,"ad":false,"answers":{answers},"min_ttl":{min_ttl}}},'
            f'"latency_us":{300 + int(rnd() * 3000)},"action":"allowed","policy_version":0}}'
        ).encode()


def pick_families(spec: ClusterSpec, families: list[str]) -> list[str]:
    """The DGA family of each infected pod: a third word-list families (if any
    are given), the rest random-character ones, each family once before any
    repeats. Drawn from a generator of its own, so it can be known beforehand."""
    rng = random.Random(f"{spec.seed}/families")
    families = list(spec.families or families)
    random_fams = [f for f in families if f not in WORDLIST_FAMILIES]
    word_fams = [f for f in families if f in WORDLIST_FAMILIES]
    rng.shuffle(random_fams)
    n_word = (
        spec.infected // 3 if word_fams and random_fams else (spec.infected if word_fams else 0)
    )
    out = [word_fams[i % len(word_fams)] for i in range(n_word)] + [
        random_fams[i % len(random_fams)] for i in range(spec.infected - n_word)
    ]
    rng.shuffle(out)
    return out


def infected_families(spec: ClusterSpec, data_dir: Path) -> list[str]:
    """``pick_families`` over the families of ``data_dir``."""
    families = _read(data_dir / "dga_train.csv", "domain", "family")
    assert isinstance(families, dict)
    return pick_families(spec, sorted(families))


def generate(
    spec: ClusterSpec, data_dir: Path, start: float = 1_795_000_000.0
) -> tuple[list[bytes], Truth]:
    """The events of one run (v1 JSON, one per element) in time order, and its ground truth."""
    rng = random.Random(spec.seed)
    names = _Names(data_dir, rng, spec.benign_fold)
    namespaces = (
        NAMESPACES[: spec.namespaces]
        if spec.namespaces <= len(NAMESPACES)
        else tuple(f"ns{i}" for i in range(spec.namespaces))
    )
    services = {ns: rng.sample(SERVICES, rng.randint(5, 12)) for ns in namespaces}
    infected_families = pick_families(spec, sorted(names.families))
    kinds = ["browser"] * 30 + ["crawler"] * 5 + ["api"] * 40 + ["batch"] * 10 + ["internal"] * 15
    truth = Truth()
    pods: list[_Pod] = []
    infected_at = set(rng.sample(range(spec.pods), min(spec.infected, spec.pods)))
    families_iter = iter(infected_families)
    for i in range(spec.pods):
        ns = namespaces[i % len(namespaces)]
        kind = rng.choice(kinds)
        if i in infected_at and kind == "internal":
            kind = "api"  # an infected pod still has a workload with some egress
        workload = f"{rng.choice(services[ns])}-{kind}"
        pod_name = f"{workload}-{rng.randrange(16**9):09x}-{''.join(rng.choices(string.ascii_lowercase + string.digits, k=5))}"
        family = next(families_iter, None) if i in infected_at else None
        pt = PodTruth(ns, pod_name, kind, family, family in WORDLIST_FAMILIES)
        client = f"{ns}/{pod_name}"
        truth.pods[client] = pt
        pods.append(_Pod(pt, f"10.{i // 250}.{i % 250}.{rng.randint(2, 250)}", services, spec, names,
                         random.Random(rng.getrandbits(64))))  # fmt: skip
    streams = []
    for pod in pods:
        client = f"{pod.t.namespace}/{pod.t.pod}"
        events: list[bytes] = []
        family_names: set[str] = (
            set(pod.names.families[pod.t.family]) if pod.t.family is not None else set()
        )
        for qid, lk in enumerate(pod.lookups(start)):
            if lk.outcome in ("nx", "c2") and lk.name in family_names:
                truth.dga_names.setdefault(client, set()).add(lk.name)
                truth.dga_times.setdefault(client, []).append(lk.ts)
                if lk.outcome == "c2":
                    truth.c2_names.setdefault(client, set()).add(lk.name)
            else:
                truth.benign_names.add(lk.name)
            events.extend(_events_of(pod, lk, qid, spec))
        streams.append(events)
    # every line starts '{"v":1,"ts":"<fixed-width timestamp>"': bytes order is time order
    merged = list(heapq.merge(*streams))
    return merged, truth
