"""DGA scoring: a logistic model over hashed character n-grams of the label.

The model is linear in one sparse part, so scoring a batch is a gather-sum:

    z = bias + w[suffix bucket] + scale * sum(w[bucket] for each n-gram of the label)
    score = 1 / (1 + exp(-z))

with ``scale = 1/sqrt(n)`` for a label of ``n`` n-grams (``detectors.features``).
Training lives in ``models/train_dga.py`` and uses the same feature code as
this module. ``DgaModel`` holds only numpy arrays and numbers;
``models.artifact`` loads it from a pickle-free ``.npz`` + JSON artifact,
with the score levels calibrated in training (``thresholds``: ``evidence``,
``block``; see ``models/MODEL_CARD.md`` for what each level does).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from detectors.features import (
    FEATURE_VERSION,
    NGRAM_BUCKETS,
    Dictionary,
    EncodedLabels,
    encode_labels,
    ngram_buckets,
    ngram_scale,
    suffix_buckets,
    words_cover,
)
from detectors.names import PublicSuffixList, default_psl, split_name

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
LENGTH_GROUPS = (16, 1 << 30)


@dataclass(frozen=True, slots=True)
class DgaModel:
    feature_version: str
    dictionary: Dictionary  # for word shapes (detectors.infected), not a model feature
    ngram_weights: npt.NDArray[np.float32]
    bias: float
    # score levels calibrated with the model: "evidence" (a name counts as
    # DGA-like for the client-level detector) and "block" (one name alone)
    thresholds: Mapping[str, float] = field(default_factory=dict)

    # the weights with one zero appended: invalid n-grams gather it
    _gather: npt.NDArray[np.float32] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.feature_version != FEATURE_VERSION:
            raise ValueError(
                f"model was trained on features {self.feature_version!r}, "
                f"this code computes {FEATURE_VERSION!r}"
            )
        if self.ngram_weights.shape != (NGRAM_BUCKETS,):
            raise ValueError(f"ngram weights must have shape ({NGRAM_BUCKETS},)")
        gather = np.append(self.ngram_weights.astype(np.float32), np.float32(0.0))
        object.__setattr__(self, "_gather", gather)

    def logits(self, names: Sequence[str], psl: PublicSuffixList | None = None) -> FloatArray:
        if not names:
            return np.zeros(0)
        labels, suffixes, _ = (psl if psl is not None else default_psl()).label_and_suffix_many(
            names
        )
        return self.logits_of(encode_labels(labels), suffix_buckets(suffixes)).astype(np.float64)

    def logits_of(self, encoded: EncodedLabels, suffix_ids: npt.NDArray[np.int64]) -> F32Array:
        """Logits (float32, as the weights) of encoded labels and their suffixes' buckets."""
        lengths = encoded.lengths
        z = np.empty(len(lengths), dtype=np.float32)
        # by groups of similar length: every array is as wide as its longest label
        lo = 0
        for hi in LENGTH_GROUPS:
            sel = (
                np.flatnonzero((lengths > lo) & (lengths <= hi))
                if lo
                else np.flatnonzero(lengths <= hi)
            )
            lo = hi
            if sel.size:
                z[sel] = self.ngram_part(*ngram_buckets(encoded.take(sel)))
        z += self._gather[suffix_ids]
        z += np.float32(self.bias)
        # a name that is only a public suffix (or empty) has no label to judge
        z[lengths == 0] = -20.0
        return z

    def ngram_part(
        self, ngram_ids: npt.NDArray[np.int64], ngram_valid: npt.NDArray[np.bool_]
    ) -> F32Array:
        """Each label's scaled n-gram weight sum (float32, as the weights)."""
        ids = np.where(ngram_valid, ngram_ids, NGRAM_BUCKETS)
        ng: F32Array = self._gather[ids].sum(axis=1)
        ng *= ngram_scale(ngram_valid)
        return ng

    def score_batch(self, names: Sequence[str]) -> FloatArray:
        """DGA likelihood in [0, 1] for each name, higher is more DGA-like."""
        z = self.logits(names)
        out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        return out

    def wordy(self, names: Sequence[str]) -> npt.NDArray[np.bool_]:
        """For each name, whether its registrable label is made entirely of two
        or more dictionary words (letters only, at least eight): the shape of
        word-list DGAs, and of many benign names, so evidence only in numbers."""
        if not names:
            return np.zeros(0, dtype=bool)
        labels = default_psl().labels_many(names)
        return words_cover(encode_labels(labels), labels, self.dictionary)


class CachedScorer:
    """An LRU cache of scores in front of a model; repeated names cost a dict hit.

    A name's score depends only on its registrable domain (the features never
    read the subdomain), so that is the key: ``a1.cdn.example.com`` and
    ``b2.cdn.example.com`` share one entry and one model call. ``max_entries``
    bounds memory (about 150 bytes per entry for typical names).
    """

    def __init__(self, model: DgaModel, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.model = model
        self.max_entries = max_entries
        self._cache: OrderedDict[str, float] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    @staticmethod
    def key(name: str) -> str:
        return split_name(name).registrable

    def score_batch(self, names: Iterable[str]) -> FloatArray:
        names = list(names)
        out = [0.0] * len(names)
        missing: dict[str, list[int]] = {}
        cache = self._cache
        key = self.key
        for i, name in enumerate(names):
            k = key(name)
            value = cache.get(k)
            if value is None:
                missing.setdefault(k, []).append(i)
            else:
                cache.move_to_end(k)
                out[i] = value
        self.hits += len(names) - sum(len(v) for v in missing.values())
        self.misses += len(missing)
        if missing:
            fresh = list(missing)
            scores = self.model.score_batch([names[missing[k][0]] for k in fresh]).tolist()
            for k, score in zip(fresh, scores, strict=True):
                for i in missing[k]:
                    out[i] = score
                cache[k] = score
            while len(cache) > self.max_entries:
                cache.popitem(last=False)
        return np.array(out)


class RegistrableScorer:
    """Scores and word shapes of registrable domains, with an LRU cache: the
    pipeline scores each registrable domain once while it stays in use."""

    def __init__(self, model: DgaModel, max_entries: int = 200_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.model = model
        self.max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, bool]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    def describe(self, registrables: Sequence[str]) -> list[tuple[float, bool]]:
        """``(score, wordy)`` for each registrable domain."""
        cache = self._cache
        out: list[tuple[float, bool] | None] = [None] * len(registrables)
        missing: dict[str, list[int]] = {}
        for i, name in enumerate(registrables):
            value = cache.get(name)
            if value is None:
                missing.setdefault(name, []).append(i)
            else:
                cache.move_to_end(name)
                out[i] = value
        self.hits += len(registrables) - sum(len(v) for v in missing.values())
        self.misses += len(missing)
        if missing:
            fresh = list(missing)
            scores = self.model.score_batch(fresh).tolist()
            wordy = self.model.wordy(fresh).tolist()
            for name, score, w in zip(fresh, scores, wordy, strict=True):
                value = (score, w)
                cache[name] = value
                for i in missing[name]:
                    out[i] = value
            while len(cache) > self.max_entries:
                cache.popitem(last=False)
        return out  # type: ignore[return-value]
