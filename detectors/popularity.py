"""Which registrable domains more than one client asks for, and which names
are one typo away from one of those.

A DGA walks names nobody else asks for; a typo or a dead dependency that
several pods share is something else. ``Popularity`` remembers, per
registrable domain, the first client that asked and whether another one has
asked since; it is bounded (least recently asked names are forgotten first,
and a forgotten popular name is learned again by its next two askers).

A typo (a letter dropped, doubled, swapped or changed) of a popular name is
found with a symmetric-deletion index: every label with one letter deleted,
for each shared name of five letters or more, under its suffix; two names are
one edit apart when their deletion sets meet. The index is bounded too.
"""

from __future__ import annotations

from collections import OrderedDict

_SHARED = ""


MIN_TYPO_LABEL = 5


def _deletions(label: str) -> set[str]:
    return {label} | {label[:i] + label[i + 1 :] for i in range(len(label))}


class Popularity:
    __slots__ = ("_names", "_typos", "max_names", "max_typo_keys")

    def __init__(self, max_names: int = 200_000, max_typo_keys: int = 400_000) -> None:
        if max_names < 1 or max_typo_keys < 1:
            raise ValueError("max_names and max_typo_keys must be >= 1")
        self.max_names = max_names
        self.max_typo_keys = max_typo_keys
        self._names: OrderedDict[str, str] = OrderedDict()
        self._typos: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._names)

    def observe(self, registrable: str, client: str) -> bool:
        """Record that ``client`` asked for ``registrable``; whether another
        client asked for it too (now or before)."""
        names = self._names
        first = names.get(registrable)
        if first is None:
            names[registrable] = client
            if len(names) > self.max_names:
                names.popitem(last=False)
            return False
        names.move_to_end(registrable)
        if first == _SHARED:
            return True
        if first != client:
            names[registrable] = _SHARED
            self._index(registrable)
            return True
        return False

    def _index(self, registrable: str) -> None:
        label, _, suffix = registrable.partition(".")
        if len(label) < MIN_TYPO_LABEL or not suffix:
            return
        typos = self._typos
        for d in _deletions(label):
            typos[f"{d}.{suffix}"] = None
        while len(typos) > self.max_typo_keys:
            typos.popitem(last=False)

    def typo_of_popular(self, label: str, suffix: str) -> bool:
        """Whether ``label.suffix`` is one edit away from a popular name."""
        if len(label) < MIN_TYPO_LABEL:
            return False
        typos = self._typos
        return any(f"{d}.{suffix}" in typos for d in _deletions(label))

    def shared(self, registrable: str) -> bool:
        return self._names.get(registrable) == _SHARED
