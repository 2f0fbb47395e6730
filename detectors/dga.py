"""DGA scoring: a logistic model over hashed n-grams and binned statistics.

The model is linear in two sparse parts, so scoring a batch is a gather-sum:

    z = bias + mean(w_ngram[bucket] for each n-gram) + sum(w_bin[bin] for each statistic)
    score = 1 / (1 + exp(-z))

With statistics discretised into quantile bins, the second part is a
generalised additive model (a learned step function per statistic). Training
lives in ``models/train_dga.py`` and uses the same feature code as this module.
``DgaModel`` holds only numpy arrays; ``models.artifact`` loads it from a
pickle-free ``.npz`` + JSON artifact.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.features import (
    FEATURE_VERSION,
    N_LABEL_STATS,
    NGRAM_BUCKETS,
    STAT_NAMES,
    FeatureContext,
    StatBinner,
    encode_labels,
    label_statistics,
    name_statistics,
    ngram_buckets,
    split_batch,
)
from detectors.names import PublicSuffixList, default_psl, split_name

FloatArray = npt.NDArray[np.float64]
F32Array = npt.NDArray[np.float32]
LENGTH_GROUPS = (16, 1 << 30)


@dataclass(frozen=True, slots=True)
class DgaModel:
    feature_version: str
    context: FeatureContext
    binner: StatBinner
    ngram_weights: npt.NDArray[np.float32]
    bin_weights: npt.NDArray[np.float32]
    bias: float

    def __post_init__(self) -> None:
        if self.feature_version != FEATURE_VERSION:
            raise ValueError(
                f"model was trained on features {self.feature_version!r}, "
                f"this code computes {FEATURE_VERSION!r}"
            )
        if self.ngram_weights.shape != (NGRAM_BUCKETS,):
            raise ValueError(f"ngram weights must have shape ({NGRAM_BUCKETS},)")
        if self.bin_weights.shape != (self.binner.total_bins,):
            raise ValueError("bin weights do not match the bin edges")
        if len(self.binner.edges) != len(STAT_NAMES):
            raise ValueError("bin edges do not match the statistics")

    def logits(self, names: Sequence[str], psl: PublicSuffixList | None = None) -> FloatArray:
        if not names:
            return np.zeros(0)
        batch = split_batch(names, psl if psl is not None else default_psl())
        encoded = encode_labels(batch.labels)
        lengths = encoded.lengths
        ngram_part = np.empty(len(names), dtype=np.float32)
        stats = np.empty((len(names), len(STAT_NAMES)))
        stats[:, N_LABEL_STATS:] = name_statistics(batch, self.context)
        # Features by groups of similar length: every array is as wide as its longest label.
        lo = 0
        for hi in LENGTH_GROUPS:
            sel = (
                np.flatnonzero((lengths > lo) & (lengths <= hi))
                if lo
                else np.flatnonzero(lengths <= hi)
            )
            lo = hi
            if sel.size == 0:
                continue
            enc = encoded.take(sel)
            ngram_part[sel] = self.ngram_part(*ngram_buckets(enc))
            stats[sel, :N_LABEL_STATS] = label_statistics(enc, self.context)
        return self.finish(ngram_part, stats, lengths).astype(np.float64)

    def ngram_part(
        self, ngram_ids: npt.NDArray[np.int64], ngram_valid: npt.NDArray[np.bool_]
    ) -> F32Array:
        """The mean weight of each name's n-grams (float32, as the weights)."""
        ng: F32Array = np.where(ngram_valid, self.ngram_weights[ngram_ids], 0.0).sum(axis=1)
        ng /= np.maximum(ngram_valid.sum(axis=1), 1)
        return ng

    def finish(
        self, ngram_part: F32Array, stats: FloatArray, lengths: npt.NDArray[np.int64]
    ) -> F32Array:
        """Logits (float32, as the weights) from the n-gram part and the statistics."""
        bins = self.binner.transform(stats)
        z: F32Array = self.bias + ngram_part + self.bin_weights[bins].sum(axis=1)
        # A name that is only a public suffix (or empty) has no label to judge.
        z[lengths == 0] = -20.0
        return z

    def combine(
        self,
        ngram_ids: npt.NDArray[np.int64],
        ngram_valid: npt.NDArray[np.bool_],
        stats: FloatArray,
        lengths: npt.NDArray[np.int64],
    ) -> F32Array:
        """Logits from precomputed features (shared by scoring and evaluation)."""
        return self.finish(self.ngram_part(ngram_ids, ngram_valid), stats, lengths)

    def score_batch(self, names: Sequence[str]) -> FloatArray:
        """DGA likelihood in [0, 1] for each name, higher is more DGA-like."""
        z = self.logits(names)
        out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
        return out


class CachedScorer:
    """An LRU cache of scores in front of a model; repeated names cost a dict hit.

    A name's score depends only on its registrable domain and on how many
    labels stand in front of it (the features never read the subdomain's
    text), so that pair is the key: ``a1.cdn.example.com`` and
    ``b2.cdn.example.com`` share one entry and one model call. ``max_entries``
    bounds memory (about 150 bytes per entry for typical names).
    """

    def __init__(self, model: DgaModel, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.model = model
        self.max_entries = max_entries
        self._cache: OrderedDict[tuple[str, int], float] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._cache)

    @staticmethod
    def key(name: str) -> tuple[str, int]:
        s = split_name(name)
        return s.registrable, s.subdomain_labels

    def score_batch(self, names: Iterable[str]) -> FloatArray:
        names = list(names)
        out = [0.0] * len(names)
        missing: dict[tuple[str, int], list[int]] = {}
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
