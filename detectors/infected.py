"""Client-level DGA detection: the infected pod is the finding.

A bot walks its DGA's list: many names in a short time, nearly all
nonexistent, none asked for by any other client, of one shape (one or a few
suffixes; random characters, or dictionary words glued together), until one
resolves: its command-and-control server. No per-name model separates a
word-list DGA's ``longshadowbright.net`` from a benign name, but a client that
asks for twenty such names in a burst, each of them nonexistent and unknown
to every other client, is not browsing.

Per client, over a sliding window, the detector keeps the distinct
registrable domains that were answered NXDOMAIN and that no other client
asked for (search-path expansions, internal zones and popular names never
count: the pipeline classifies names first; nor do typos of popular names).
It names the client infected when ``min_burst`` of them came within
``burst_s`` and were nearly all the names nobody else asked for that the
client asked for in that span (a bot's burst, not a crawler meeting dead
links among live ones), and the set has one of three shapes:

* **random-character**: at least ``min_dga_like`` names the per-name model
  scores as DGA-like (at its evidence threshold), making up at least
  ``min_dga_share`` of the set;
* **word-list**: at least ``min_wordy`` names made entirely of dictionary
  words, at least ``min_wordy_share`` of the set, mostly under one suffix;
* **volume**: at least ``min_names`` names, mostly under one suffix, with a
  burst of ``min_volume_burst``.

**The C2.** A burst ends with the name that resolves. A name that resolves
soon after the burst's last nonexistent name (within three of the burst's own
steps, at most ``c2_gap_s``), that no other client asked for, and that has
the shape of the burst's core (its DGA-like names, else its dictionary-word
names, else its names under the main suffix: one of their suffixes when they
keep to a few, and never a provider's suffix when they are top-level domains;
a label length within their range, the alphabet most of them use; made of
dictionary words when they are, else DGA-like enough) is held as the candidate (of two such names after the
same burst, the one shaped more like it); if the burst goes on (another name of its shape fails to
resolve) the candidate was not its end and is dropped; once ``c2_confirm_s`` pass
without that, it is the C2. A named client's C2 is a finding with that name,
so the verdict policy blocks it in the client's namespace; C2s confirmed
before the client was named are reported when it is. Memory per client is
bounded (``max_entries`` names, a few C2s).

**Time order.** The evidence is a sequence in time (a burst, then the name
that ends it), but events do not reach the worker in time order: each of an
Envoy's worker threads ships its own batches, so one client's events come in
interleaved records, a batch or more apart. The detector therefore holds the
events it is given and takes each client's up in time order once the newest
event time seen is ``reorder_s`` past them (a watermark with bounded
lateness; later stragglers are taken as they come). Its findings come that
much event time later; the per-name detectors are not held. Held events are
part of the client's snapshot, and :meth:`InfectedClient.advance` with
``final`` takes all of them up at the end of an input. A live input that goes
quiet is moved on by the clock (``clock_slack_s``: the worker's clock and the
filters' agree to within that).

**Query-only events** (DNS over UDP through the Envoy module, which sees
queries but not the resolver's answers): a name nobody else asked for whose
outcome was not seen counts as a name of the burst, but only the
random-character and word-list shapes name a client on such names (the volume
shape rests on NXDOMAIN alone), names under hosting suffixes never count, and
the finding says how many outcomes were not observed. No C2 is found on them:
it is the name that *resolves*.
"""

from __future__ import annotations

import functools
import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from detectors.events import Answer, DnsEvent
from detectors.findings import Finding
from detectors.window import BoundedStates

NAME = "infected_client"


@dataclass(frozen=True, slots=True)
class InfectedSettings:
    window_s: float = 900.0
    max_entries: int = 48
    min_dga_like: int = 8
    min_dga_share: float = 0.5
    min_wordy: int = 12
    min_wordy_share: float = 0.6
    min_names: int = 24
    min_suffix_share: float = 0.5
    # a bot's burst: this many of the counted names within burst_s of each other,
    # nearly all of what the client asked for that nobody else did in that span
    min_burst: int = 6
    min_volume_burst: int = 15  # for the volume shape
    burst_s: float = 60.0
    min_burst_nx_share: float = 0.8
    resolved_bucket_s: float = 10.0  # resolved names are counted per bucket this long
    c2_gap_s: float = 5.0
    c2_confirm_s: float = 10.0
    c2_length_slack: int = 2  # label length outside the core's range by at most this
    c2_min_score: float = 0.5  # a random-character burst's C2 scores at least this
    max_c2: int = 8
    renotify_s: float = 900.0  # a named client's finding again at most this often
    max_clients: int = 100_000
    # events are taken up in time order once the newest time seen is this far past
    reorder_s: float = 5.0
    # with a quiet input, the clock less this stands for the newest time seen
    # (the filters' clocks and the worker's agree to within this)
    clock_slack_s: float = 2.0
    max_held_per_client: int = 64  # past this, a client's oldest are taken up at once
    max_held: int = 250_000  # held events, all clients: past this, all are taken up


# (ts, registrable, suffix, dga_like, wordy, score, outcome seen)
Entry = tuple[float, str, str, bool, bool, float, bool]
# an event held for time order: (ts, event, registrable, suffix, score, dga_like,
# wordy, shared, n), the arguments of InfectedClient._take; n > 1 only for the
# names other clients asked for too that resolved within one second, held as one
Held = tuple[float, DnsEvent, str, str, float, bool, bool, bool, int]
# what the pipeline gives for one event: (event, registrable, suffix, score,
# dga_like, wordy, shared: another client asked for the name too)
Item = tuple[DnsEvent, str, str, float, bool, bool, bool]
_ANSWERED = (Answer("A", 0, ""),)  # a held event's answers, restored from a snapshot


class _Client:
    __slots__ = ("c2", "client", "confirmed", "entries", "last_finding", "last_nx", "named",
                 "namespace", "pending", "resolved", "shape", "style", "version")  # fmt: skip

    def __init__(self) -> None:
        self.client = ""
        self.namespace = ""
        self.entries: list[Entry] = []
        # [bucket, count]: how many names resolved for the client, per bucket of
        # resolved_bucket_s, over the window (a bot's burst is nearly all NXDOMAIN)
        self.resolved: list[list[int]] = []
        self.pending: Entry | None = None  # the name that may have ended a burst
        self.confirmed: list[Entry] = []  # C2s confirmed before the client was named
        self.c2: list[str] = []  # C2s reported
        self.last_nx = -1e18
        self.named = -1.0
        self.last_finding = -1e18
        self.style = ""
        self.version = 0  # moves on whenever ``entries`` changes
        self.shape: tuple[tuple[int, int], _Shape] | None = None  # the last burst shape, by key


def _entry(e: list[Any]) -> Entry:
    """An entry from its JSON form (a list), checked field by field."""
    ts, registrable, suffix, dga_like, wordy, score, seen = e
    return (float(ts), str(registrable), str(suffix), bool(dga_like), bool(wordy), float(score),
            bool(seen))  # fmt: skip


# a held event's flags in its JSON form
_NX, _OBSERVED, _DGA_LIKE, _WORDY, _SHARED = 1, 2, 4, 8, 16


def _held_json(h: Held) -> list[Any]:
    """A held event as compact JSON: [ts, flags, registrable, score, n] (what
    was held is an NXDOMAIN, an answer not seen, or a name that resolved)."""
    ev = h[1]
    flags = ((ev.rcode == "NXDOMAIN") * _NX | ev.observed * _OBSERVED | h[5] * _DGA_LIKE
             | h[6] * _WORDY | h[7] * _SHARED)  # fmt: skip
    return [round(h[0], 3), flags, h[2], round(h[4], 4), h[8]]


def _held(client: str, namespace: str, h: list[Any]) -> Held:
    """A held event from its JSON form, checked field by field."""
    ts, flags, registrable, score, n = h
    flags, registrable = int(flags), str(registrable)
    observed, nx = bool(flags & _OBSERVED), bool(flags & _NX)
    rcode = "NXDOMAIN" if nx else ("NOERROR" if observed else None)
    ev = DnsEvent(float(ts), client, namespace, registrable, "A", rcode,
                  _ANSWERED if observed and not nx else (), observed=observed)  # fmt: skip
    return (ev.ts, ev, registrable, registrable.partition(".")[2], float(score),
            bool(flags & _DGA_LIKE), bool(flags & _WORDY), bool(flags & _SHARED),
            max(1, int(n)))  # fmt: skip


def _held_ts(h: Held) -> float:
    return h[0]


_HEX = frozenset("0123456789abcdef")


def _classes(label: str) -> str:
    """The alphabet a label is written in: letters, hex digits, letters and
    digits, or with hyphens."""
    if "-" in label:
        return "hyphenated"
    if label.isalpha():
        return "letters"
    if set(label) <= _HEX:
        return "hex"
    return "alphanumeric"


@functools.lru_cache(maxsize=1 << 16)
def _facts(registrable: str, suffix: str) -> tuple[int, str]:
    """A name's label length and alphabet, kept while the name recurs (a
    client's names are compared again with each new one)."""
    label = registrable[: len(registrable) - len(suffix) - 1]
    return len(label), _classes(label)


def _suffix_share(entries: list[Entry]) -> tuple[float, list[tuple[str, int]]]:
    counts = Counter([e[2] for e in entries])
    top = counts.most_common(3)
    return (top[0][1] / len(entries) if top else 0.0), top


def _core(entries: list[Entry]) -> tuple[list[Entry], str]:
    """The burst's core and what makes it: ``dga-like`` or ``wordy`` names, or
    the ``suffix`` most of them are under."""
    dga_like = [e for e in entries if e[3]]
    wordy = [e for e in entries if e[4]]
    # the larger of the two shapes makes the burst (a word-list burst has a few
    # names that score as DGA-like, and the other way round)
    if len(dga_like) >= 3 and len(dga_like) >= len(wordy):
        return dga_like, "dga-like"
    if len(wordy) >= 3:
        return wordy, "wordy"
    _, top = _suffix_share(entries)
    main = top[0][0] if top else ""
    return [e for e in entries if e[2] == main], "suffix"


class _Shape:
    """A burst's core (:func:`_core`) and what a name is compared with. Kept per
    client until its names change: a client with evidence that goes on resolving
    names has each one compared with the same burst."""

    __slots__ = ("classes", "core", "lengths", "made_of", "main_class", "main_count", "share",
                 "suffixes")  # fmt: skip

    def __init__(self, entries: list[Entry]) -> None:
        self.core, self.made_of = core, _ = _core(entries)
        suffixes = [x[2] for x in core]
        self.suffixes = set(suffixes)
        # the share of the most common suffix, and the most common alphabet (it
        # decides only at 80% of the core, where it is the only one)
        self.share = max(map(suffixes.count, self.suffixes)) / len(core) if core else 0.0
        facts = [_facts(x[1], x[2]) for x in core]
        self.lengths = sorted([f[0] for f in facts])
        self.classes = classes = [f[1] for f in facts]
        self.main_class = max(set(classes), key=classes.count) if classes else ""
        self.main_count = classes.count(self.main_class)


class InfectedClient:
    name = NAME

    def __init__(self, settings: InfectedSettings | None = None) -> None:
        self.settings = s = settings or InfectedSettings()
        self.clients: BoundedStates[str, _Client] = BoundedStates(s.max_clients, _Client)
        self._pending: dict[str, None] = {}  # clients holding a C2 candidate
        self._held: dict[str, list[Held]] = {}  # per client, events not taken up yet
        self._held_n = 0
        self._over: set[str] = set()  # clients holding more than max_held_per_client
        self._newest = -1e18  # the newest event time seen
        self._taken_to = -1e18  # events up to this time are taken up
        self._straggling = False  # an event held behind _taken_to: take it up at the next pass

    def dump(self, client: str) -> list[Any] | None:
        """The client's evidence as plain JSON (a changelog snapshot), or None."""
        st = self.clients.peek(client)
        held = self._held.get(client)
        if st is None and not held:
            return None
        if st is None:
            st = _Client()
            st.namespace = held[0][1].namespace if held else ""
        return [st.namespace, st.entries, st.resolved, st.pending, st.confirmed, st.c2,
                st.last_nx, st.named, st.last_finding, st.style,
                [_held_json(h) for h in held or ()]]  # fmt: skip

    def forget(self, client: str) -> None:
        self.clients.discard(client)
        self._pending.pop(client, None)
        self._held_n -= len(self._held.pop(client, ()))
        self._over.discard(client)

    def load(self, client: str, data: list[Any]) -> None:
        """The client's evidence from :meth:`dump`'s snapshot (one written before
        events were held has no held events)."""
        (namespace, entries, resolved, pending, confirmed, c2, last_nx, named, last_finding,
         style, *rest) = data  # fmt: skip
        s = self.settings
        kept = rest[0][: s.max_held_per_client] if rest else ()
        held = [_held(client, str(namespace), h) for h in kept]
        if held:
            self._held[client] = held
            self._held_n += len(held)
            self._straggling |= min(h[0] for h in held) <= self._taken_to
        if not entries and not resolved and pending is None and not confirmed and not c2:
            return  # held events only
        st = _Client()
        st.client, st.namespace, st.style = client, str(namespace), str(style)
        st.entries = [_entry(e) for e in entries[-s.max_entries :]]
        st.resolved = [[int(b), int(n)] for b, n in resolved]
        st.pending = None if pending is None else _entry(pending)
        st.confirmed = [_entry(e) for e in confirmed[-s.max_c2 :]]
        st.c2 = [str(n) for n in c2[-s.max_c2 :]]
        st.last_nx, st.named, st.last_finding = float(last_nx), float(named), float(last_finding)
        self.clients.put(client, st)
        if st.pending is not None:
            self._pending[client] = None

    def _burst(self, st: _Client) -> int:
        """The most names within ``burst_s`` of each other that were nearly all
        (``min_burst_nx_share``) of what the client asked for in that span and
        nobody else did: a bot's burst, not a crawler meeting dead links."""
        s = self.settings
        times = sorted(e[0] for e in st.entries)
        resolved = st.resolved
        width = s.resolved_bucket_s
        best = 0
        j = 0
        for i, start in enumerate(times):
            while j < len(times) and times[j] - start <= s.burst_s:
                j += 1
            k = j - i
            if k <= best:
                continue
            lo, hi = int(start // width), int((start + s.burst_s) // width)
            r = sum(c for b, c in resolved if lo <= b <= hi)
            if k >= s.min_burst_nx_share * (k + r):
                best = k
        return best

    def _style(self, st: _Client) -> str:
        s = self.settings
        entries = st.entries
        n = len(entries)
        burst = self._burst(st) if n >= s.min_burst else 0
        if burst < s.min_burst:
            return ""
        dga_like = sum(e[3] for e in entries)
        wordy = sum(e[4] for e in entries)
        share, _ = _suffix_share(entries)
        if dga_like >= s.min_dga_like and dga_like >= s.min_dga_share * n:
            return "random-character"
        if wordy >= s.min_wordy and wordy >= s.min_wordy_share * n and share >= s.min_suffix_share:
            return "word-list"
        if (
            n >= s.min_names
            and share >= s.min_suffix_share
            and burst >= s.min_volume_burst
            and all(e[6] for e in entries)  # volume alone needs every NXDOMAIN seen
        ):
            return "volume"
        return ""

    def _shape(self, st: _Client, now: float) -> _Shape:
        """The shape of the client's names of the last ``burst_s``: the burst a
        name would end (older names, a crawler's dead links say, do not shape it)."""
        cutoff = now - self.settings.burst_s
        entries = st.entries
        i = len(entries)
        while i and entries[i - 1][0] >= cutoff:
            i -= 1
        key = (st.version, i)
        if st.shape is None or st.shape[0] != key:
            st.shape = (key, _Shape(entries[i:]))
        return st.shape[1]

    def _matches(self, st: _Client, e: Entry) -> bool:
        """Whether a name has the shape of the burst it comes in or ends."""
        s = self.settings
        shape = self._shape(st, e[0])
        if not shape.core:
            return False
        if e[2] not in shape.suffixes:
            if shape.share >= s.min_suffix_share:
                return False  # a burst that keeps to a few suffixes: its C2 is under one of them
            if "." in e[2] and all("." not in x for x in shape.suffixes):
                return False  # a burst under top-level domains: not a name under a provider's
        lengths = shape.lengths
        length, style = _facts(e[1], e[2])
        if not lengths[0] - s.c2_length_slack <= length <= lengths[-1] + s.c2_length_slack:
            return False
        if shape.main_count >= 0.8 * len(shape.core) and style != shape.main_class:
            return False  # a burst of one alphabet (letters, hex, ...): its C2 is in it
        if shape.made_of == "wordy":
            return e[4]  # a word-list burst ends in a name of words too
        return e[5] >= s.c2_min_score

    def update(self, items: Iterable[Item]) -> None:
        """Events of names that may count (not internal, not expansions), in time
        order, each held until :meth:`advance` takes it up in its client's time
        order. What counts: an NXDOMAIN or an unseen answer of a name nobody
        else asked for; a name that resolved, only for a client with evidence
        (what a client resolved before its first one never counts)."""
        held_by = self._held
        has_state = self.clients.peek
        bound = self.settings.max_held_per_client
        for ev, registrable, suffix, score, dga_like, wordy, shared in items:
            if not registrable:
                continue
            client = ev.client
            held = held_by.get(client)
            if ev.observed and ev.rcode != "NXDOMAIN":
                if ev.rcode != "NOERROR" or not ev.answers:
                    continue
                if held is None and has_state(client) is None:
                    continue
                if shared and held and self._coalesce(held, int(ev.ts)):
                    continue  # counted only: one held entry per second
            elif shared:
                continue  # a name others asked for too is no evidence unless it resolved
            if held is None:
                held = held_by[client] = []
            if ev.ts <= self._taken_to:
                self._straggling = True  # later than its time: taken up as it comes
            held.append((ev.ts, ev, registrable, suffix, score, dga_like, wordy, shared, 1))
            self._held_n += 1
            if len(held) > bound:
                self._over.add(client)

    @staticmethod
    def _coalesce(held: list[Held], second: int) -> bool:
        """Counts a resolved name others asked for too into a held one of the
        same second among the last few, if there is one."""
        for i in range(len(held) - 1, max(-1, len(held) - 9), -1):
            h = held[i]
            if h[7] and int(h[0]) == second:  # (a held name others asked: resolved)
                held[i] = (*h[:8], h[8] + 1)
                return True
        return False

    def advance(self, newest: float, final: bool = False) -> list[Finding]:
        """Takes up the held events older than ``newest`` (the newest event time
        seen) less ``reorder_s``, each client's in time order, or all of them when
        ``final`` (the end of an input) or past ``max_held``; then confirms the C2
        candidates whose burst has been over long enough by that time."""
        s = self.settings
        self._newest = max(self._newest, newest)
        out: list[Finding] = []
        for client in self._over:  # a client's oldest, past its bound: now
            held = self._held[client]
            held.sort(key=_held_ts)
            out += self._take_up(client, held[len(held) - s.max_held_per_client - 1][0])
        self._over.clear()
        mark = self._newest - s.reorder_s
        if final or self._held_n > s.max_held:
            mark = float("inf")
        elif mark < self._taken_to + s.reorder_s / 8 and not self._straggling:
            return out  # taken up a moment ago (event time), and nothing arrived late since
        for client in list(self._held):
            self._held[client].sort(key=_held_ts)  # nearly sorted already: linear
            out += self._take_up(client, mark)
        self._taken_to = min(mark, self._newest)
        self._straggling = False
        out.extend(self.flush(self._taken_to))
        return out

    def _take_up(self, client: str, mark: float) -> list[Finding]:
        """The client's held events (sorted) up to ``mark``, in order."""
        held = self._held[client]
        out: list[Finding] = []
        take = self._take
        n = 0
        for h in held:
            if h[0] > mark:
                break
            found = take(*h[1:])
            if found:
                out.extend(found)
            n += 1
        if n == len(held):
            del self._held[client]
        elif n:
            del held[:n]
        self._held_n -= n
        return out

    @property
    def holding(self) -> bool:
        """Whether events are held or a C2 candidate waits (time alone moves them)."""
        return bool(self._held or self._pending)

    def _take(
        self, ev: DnsEvent, registrable: str, suffix: str, score: float, dga_like: bool,
        wordy: bool, shared: bool, n: int = 1,
    ) -> list[Finding]:  # fmt: skip
        """One event (``n`` resolved names others asked for too), in its client's
        time order."""
        s = self.settings
        if shared:
            if ev.rcode == "NOERROR" and ev.answers:
                st0 = self.clients.peek(ev.client)
                if st0 is not None:
                    self._resolved(st0, ev.ts, n)
            return []
        if ev.rcode == "NXDOMAIN" or not ev.observed:
            st = self.clients.get(ev.client)
            st.client, st.namespace = ev.client, ev.namespace
            out = self._confirm(st, ev.ts) if st.pending is not None else []
            entry = (ev.ts, registrable, suffix, dga_like, wordy, score, ev.observed)
            if self._matches(st, entry):  # a name of the burst (and not, say, a typo)
                if st.pending is not None and ev.ts > st.pending[0]:
                    st.pending = None  # the burst went on: that name was not its end
                    self._pending.pop(ev.client, None)
                st.last_nx = ev.ts
            elif not st.entries:
                st.last_nx = ev.ts
            entries = st.entries
            if any(e[1] == registrable for e in entries):
                return out
            if st.last_nx < ev.ts - s.window_s:
                st.last_nx = ev.ts
            cutoff = ev.ts - s.window_s
            if entries and entries[0][0] < cutoff:
                st.entries = entries = [e for e in entries if e[0] >= cutoff]
            entries.append(entry)
            if len(entries) > s.max_entries:
                del entries[0]
            st.version += 1
            if st.named >= 0:
                if ev.ts - st.last_finding >= s.renotify_s:
                    out.append(self._named_finding(ev, st))
                return out
            style = self._style(st)
            if not style:
                return out
            st.named, st.style = ev.ts, style
            out.append(self._named_finding(ev, st))
            for c in st.confirmed:  # bursts that ended before the client was named
                if c[0] >= cutoff:
                    out += self._c2(ev, st, c)
            st.confirmed = []
            return out
        st2 = self.clients.peek(ev.client)
        if st2 is None:
            return []
        out = self._confirm(st2, ev.ts) if st2.pending is not None else []
        if ev.rcode != "NOERROR" or not ev.answers:
            return out
        self._resolved(st2, ev.ts)
        if ev.ts - st2.last_nx > self._gap(st2, ev.ts) or registrable in st2.c2:
            return out
        entry = (ev.ts, registrable, suffix, dga_like, wordy, score, True)
        if self._matches(st2, entry):
            pending = st2.pending
            # two candidates after the same burst: the one shaped more like it ended it
            if pending is None or (
                pending[0] >= st2.last_nx
                and self._distance(st2, entry) < self._distance(st2, pending)
            ):
                st2.pending = entry
                self._pending[ev.client] = None
        return out

    def _resolved(self, st: _Client, ts: float, n: int = 1) -> None:
        s = self.settings
        bucket = int(ts // s.resolved_bucket_s)
        resolved = st.resolved
        if resolved and resolved[-1][0] == bucket:
            resolved[-1][1] += n
            return
        resolved.append([bucket, n])
        oldest = bucket - int(s.window_s // s.resolved_bucket_s)
        while resolved and resolved[0][0] < oldest:
            del resolved[0]

    def _distance(self, st: _Client, e: Entry) -> float:
        """How far a candidate's shape is from the burst's core (0: right in it)."""
        shape = self._shape(st, e[0])
        lengths = shape.lengths
        length, style = _facts(e[1], e[2])
        d = abs(length - lengths[len(lengths) // 2]) / 4 if lengths else 0.0
        d += sum(style != c for c in shape.classes) / max(1, len(shape.core))
        return d + (1 - e[5] if shape.made_of != "wordy" else 0.0)

    def _gap(self, st: _Client, now: float) -> float:
        """How soon after the burst's last name its C2 comes: three of the burst's
        own steps (its median gap between names), between 1 s and ``c2_gap_s``."""
        times = sorted(e[0] for e in self._shape(st, now).core[-9:])
        steps = sorted(b - a for a, b in itertools.pairwise(times))
        if not steps:
            return self.settings.c2_gap_s
        return min(self.settings.c2_gap_s, max(1.0, 3 * steps[len(steps) // 2]))

    def _confirm(self, st: _Client, now: float) -> list[Finding]:
        """The pending candidate, if the burst has stayed over for ``c2_confirm_s``."""
        e = st.pending
        if e is None or now - e[0] < self.settings.c2_confirm_s:
            return []
        st.pending = None
        if st.named >= 0:
            return self._c2_at(st, e)
        st.confirmed.append(e)
        del st.confirmed[: -self.settings.max_c2]
        return []

    def flush(self, now: float) -> list[Finding]:
        """Confirm the candidates whose burst has been over long enough by ``now``
        (the pipeline calls this with each batch's latest time)."""
        out: list[Finding] = []
        for client in list(self._pending):
            st = self.clients.peek(client)
            if st is None or st.pending is None:
                self._pending.pop(client, None)
                continue
            found = self._confirm(st, now)
            if st.pending is None:
                self._pending.pop(client, None)
            out += found
        return out

    def _named_finding(self, ev: DnsEvent, st: _Client) -> Finding:
        s = self.settings
        st.last_finding = ev.ts
        entries = st.entries
        share, top = _suffix_share(entries)
        dga_like = sum(e[3] for e in entries)
        wordy = sum(e[4] for e in entries)
        n = len(entries)
        suffixes = ", ".join(f".{x} {c}" for x, c in top)
        unseen = sum(not e[6] for e in entries)
        what = "nonexistent names" if not unseen else (
            f"names ({unseen} with their answer not observed)" if unseen < n
            else "names (answers not observed: NXDOMAIN not confirmed)"
        )  # fmt: skip
        return Finding(
            detector=NAME,
            ts=ev.ts,
            client=ev.client,
            namespace=ev.namespace,
            name=None,
            score=round(min(1.0, 0.5 + n / (4 * s.min_names)), 4),
            summary=(
                f"{ev.client} looks infected ({st.style} DGA): {n} {what} nobody "
                f"else asked for in {s.window_s:.0f}s ({dga_like} DGA-like, {wordy} dictionary "
                f"words; {suffixes})"
            ),
            evidence={
                "style": st.style,
                "nxdomain_names": n - unseen,
                "outcome_not_observed": unseen,
                "dga_like": dga_like,
                "dictionary_words": wordy,
                "suffix_share": round(share, 3),
                "suffixes": [{"suffix": x, "names": c} for x, c in top],
                "examples": [e[1] for e in entries[-5:]],
                "window_s": s.window_s,
                "named_at": st.named,
                "c2": list(st.c2),
            },
        )

    def _c2(self, ev: DnsEvent, st: _Client, e: Entry) -> list[Finding]:
        return self._c2_at(st, e, ev)

    def _c2_at(self, st: _Client, e: Entry, ev: DnsEvent | None = None) -> list[Finding]:
        if e[1] in st.c2 or len(st.c2) >= self.settings.max_c2:
            return []
        st.c2.append(e[1])
        n = len(st.entries)
        client, namespace = st.client, st.namespace
        return [
            Finding(
                detector=NAME,
                ts=max(ev.ts if ev is not None else e[0], e[0]),
                client=client,
                namespace=namespace,
                name=e[1],
                score=0.99,
                summary=(
                    f"{e[1]} resolved for {client} at the end of a burst of nonexistent "
                    f"{st.style} DGA names ({n} in the window): the bot's C2"
                ),
                evidence={
                    "style": st.style,
                    "c2": e[1],
                    "resolved_at": e[0],
                    "nxdomain_names": n,
                    "examples": [x[1] for x in st.entries[-5:]],
                },
            )
        ]
