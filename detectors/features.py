"""DGA features, shared by training (models/) and scoring (detectors.dga).

Everything is vectorised over a batch: the registrable labels are encoded
into one ``(n, width)`` matrix of small integer codes, and every feature is a
handful of numpy operations on that matrix. ``FEATURE_VERSION`` names this
exact computation; a model artifact records it and loading refuses a model
trained on another version. ``tests/unit/test_dga_features.py`` pins the
output on golden vectors, so any change here must bump the version.

Three feature groups:

* **hashed character n-grams** (orders 2-5, with label-boundary markers),
  ``NGRAM_BUCKETS`` buckets, each gram weighted ``1 / n_grams``;
* **statistics** (``STAT_NAMES``): length, digits, hyphens, vowels,
  character entropy, consonant runs, letter/digit switches, likelihood under
  a benign character-trigram language model, dictionary-word segmentation
  coverage (to catch word-list DGAs that glue English words together), label
  structure and how common the suffix is among benign names;
* statistics are discretised into quantile bins (``StatBinner``) so that a
  linear model over them is a generalised additive model.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.names import PublicSuffixList, default_psl

FEATURE_VERSION = "dga-features/1"

MAX_LABEL = 63
PAD, OTHER, BOUNDARY = 0, 39, 40
ALPHABET = 41  # PAD, a-z, 0-9, '-', '_', OTHER, BOUNDARY
NGRAM_ORDERS = (2, 3, 4, 5)
NGRAM_BITS = 18
NGRAM_BUCKETS = 1 << NGRAM_BITS
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
WORD_MIN, WORD_MAX = 3, 11  # 41**11 < 2**64: word codes are exact
WORD_BITS = 24
SHORT = 4  # words and prefixes this short are looked up in a direct table (41**4 bytes)

STAT_NAMES: tuple[str, ...] = (
    "length",
    "digit_ratio",
    "hyphens",
    "vowel_ratio",
    "unique_ratio",
    "entropy",
    "max_consonant_run",
    "letter_digit_switches",
    "lm_mean_logp",
    "lm_min_logp",
    "dict_coverage",
    "dict_words",
    "dict_full_words",
    "dict_mean_word_len",
    "subdomain_labels",
    "suffix_benign_log_freq",
)

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
U8Array = npt.NDArray[np.uint8]


def _char_table() -> U8Array:
    table = np.full(129, OTHER, dtype=np.uint8)
    table[0] = PAD
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz"):
        table[ord(ch)] = 1 + i
        table[ord(ch.upper())] = 1 + i
    for i, ch in enumerate("0123456789"):
        table[ord(ch)] = 27 + i
    table[ord("-")] = 37
    table[ord("_")] = 38
    return table


_CHAR_TABLE = _char_table()
_IS_VOWEL = np.zeros(ALPHABET, dtype=bool)
_IS_VOWEL[[1 + ord(c) - ord("a") for c in "aeiou"]] = True
_IS_LETTER = np.zeros(ALPHABET, dtype=bool)
_IS_LETTER[1:27] = True
_IS_DIGIT = np.zeros(ALPHABET, dtype=bool)
_IS_DIGIT[27:37] = True
_IS_CONSONANT = _IS_LETTER & ~_IS_VOWEL


@dataclass(frozen=True, slots=True)
class EncodedLabels:
    """A batch of labels as codes: ``codes[:, 0]`` and ``codes[i, len+1]`` are BOUNDARY."""

    codes: U8Array  # (n, width + 2)
    lengths: IntArray  # (n,)


def encode_labels(labels: Sequence[str]) -> EncodedLabels:
    n = len(labels)
    width = max((len(s) for s in labels), default=0)
    width = max(1, min(width, MAX_LABEL))
    points = np.array(labels, dtype=f"<U{width}").view(np.uint32).reshape(n, width)
    inner = _CHAR_TABLE[np.minimum(points, 128)]
    lengths = np.count_nonzero(points, axis=1).astype(np.int64)
    codes = np.zeros((n, width + 2), dtype=np.uint8)
    codes[:, 0] = BOUNDARY
    codes[:, 1 : width + 1] = inner
    codes[np.arange(n), lengths + 1] = BOUNDARY
    return EncodedLabels(codes, lengths)


def ngram_buckets(enc: EncodedLabels) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Bucket ids ``(n, positions)`` of every n-gram and a mask of the valid ones."""
    codes = enc.codes.astype(np.uint64)
    n, w = codes.shape
    out_ids = []
    out_valid = []
    for k in NGRAM_ORDERS:
        positions = w - k + 1
        if positions <= 0:
            continue
        gram = np.zeros((n, positions), dtype=np.uint64)
        for i in range(k):
            gram = gram * np.uint64(ALPHABET) + codes[:, i : i + positions]
        hashed = (gram * _HASH_MULT + np.uint64(k)) >> np.uint64(64 - NGRAM_BITS)
        out_ids.append(hashed.astype(np.int64))
        # gram j spans columns j..j+k-1; column len+1 is the closing boundary
        out_valid.append(np.arange(positions)[None, :] + k - 1 <= (enc.lengths + 1)[:, None])
    return np.concatenate(out_ids, axis=1), np.concatenate(out_valid, axis=1)


@dataclass(frozen=True, slots=True)
class TrigramLM:
    """Add-one smoothed benign character-trigram model over the code alphabet."""

    logp: FloatArray  # (ALPHABET**3,) log P(c | a b)

    @classmethod
    def fit(cls, enc: EncodedLabels) -> TrigramLM:
        idx, valid = _trigram_ids(enc)
        counts = np.bincount(idx[valid], minlength=ALPHABET**3).astype(np.float64)
        ctx = counts.reshape(ALPHABET * ALPHABET, ALPHABET)
        logp = np.log((ctx + 1.0) / (ctx.sum(axis=1, keepdims=True) + ALPHABET))
        return cls(logp.reshape(-1))


def _trigram_ids(enc: EncodedLabels) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    c = enc.codes.astype(np.int64)
    positions = c.shape[1] - 2
    ids = (c[:, :positions] * ALPHABET + c[:, 1 : positions + 1]) * ALPHABET + c[:, 2:]
    valid = np.arange(positions)[None, :] + 2 <= (enc.lengths + 1)[:, None]
    return ids, valid


@dataclass(frozen=True, slots=True)
class CodeSet:
    """An exact set of word codes: a bitset in front of a sorted array."""

    codes: npt.NDArray[np.uint64]  # sorted, unique
    bitset: U8Array  # 2**WORD_BITS bits

    @classmethod
    def of(cls, codes: npt.NDArray[np.uint64]) -> CodeSet:
        unique = np.unique(codes.astype(np.uint64))
        bitset = np.zeros(1 << (WORD_BITS - 3), dtype=np.uint8)
        h = _word_hash(unique)
        np.bitwise_or.at(bitset, h >> 3, (1 << (h & 7)).astype(np.uint8))
        return cls(unique, bitset)

    def contains(self, codes: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        h = _word_hash(codes)
        maybe = (self.bitset[h >> 3] >> (h & 7)) & 1 == 1
        hits = np.flatnonzero(maybe)
        if hits.size and self.codes.size:
            cand = codes.reshape(-1)[hits]
            pos = np.minimum(np.searchsorted(self.codes, cand), self.codes.size - 1)
            out = np.zeros(codes.size, dtype=bool)
            out[hits] = self.codes[pos] == cand
            return out.reshape(codes.shape)
        return np.zeros(codes.shape, dtype=bool)


def _prefix_codes(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """Codes of the proper prefixes, ``WORD_MIN`` characters or longer, of ``words``.

    A code's length is its number of base-``ALPHABET`` digits (letters are never 0).
    """
    out = [np.zeros(0, dtype=np.uint64)]
    base = np.uint64(ALPHABET)
    for length in range(WORD_MIN + 1, WORD_MAX + 1):
        lo, hi = ALPHABET ** (length - 1), ALPHABET**length
        mine = words[(words >= np.uint64(lo)) & (words < np.uint64(hi))]
        for keep in range(WORD_MIN, length):
            out.append(mine // base ** np.uint64(length - keep))
    return np.unique(np.concatenate(out))


@dataclass(frozen=True, slots=True)
class Dictionary:
    """The segmentation's words, and every prefix of them (to stop extending a
    span as soon as no word can start with it)."""

    word_set: CodeSet
    prefix_set: CodeSet
    # codes of up to SHORT characters index this table directly: bit 0 a word,
    # bit 1 a prefix (most lookups are of three or four characters)
    short: U8Array

    @property
    def words(self) -> npt.NDArray[np.uint64]:
        return self.word_set.codes

    @classmethod
    def from_words(cls, words: Sequence[str]) -> Dictionary:
        keep = sorted(
            {w for w in words if WORD_MIN <= len(w) <= WORD_MAX and w.isascii() and w.isalpha()}
        )
        enc = encode_labels(keep) if keep else encode_labels(["x"])
        code = np.zeros(len(keep), dtype=np.uint64)
        for i in range(enc.codes.shape[1] - 2):
            inside = i < enc.lengths
            code = np.where(
                inside, code * np.uint64(ALPHABET) + enc.codes[:, i + 1].astype(np.uint64), code
            )
        return cls.from_codes(np.unique(code[: len(keep)]))

    @classmethod
    def from_codes(cls, codes: npt.NDArray[np.uint64]) -> Dictionary:
        words = CodeSet.of(codes)
        prefixes = CodeSet.of(_prefix_codes(words.codes))
        short = np.zeros(ALPHABET**SHORT, dtype=np.uint8)
        for bit, group in ((1, words.codes), (2, prefixes.codes)):
            small = group[group < np.uint64(short.size)].astype(np.int64)
            short[small] |= np.uint8(bit)
        return cls(words, prefixes, short)

    def lookup(
        self, codes: npt.NDArray[np.uint64], k: int
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """(is a word, is a prefix of a longer word) for codes of ``k`` characters."""
        if k <= SHORT:
            flags = self.short[codes.astype(np.int64)]
            return (flags & 1) == 1, (flags & 2) == 2
        return self.word_set.contains(codes), self.prefix_set.contains(codes)


def _word_hash(codes: npt.NDArray[np.uint64]) -> IntArray:
    return ((codes * _HASH_MULT) >> np.uint64(64 - WORD_BITS)).astype(np.int64)


def dictionary_segmentation(
    enc: EncodedLabels, dictionary: Dictionary
) -> tuple[FloatArray, FloatArray]:
    """Best cover of each label by dictionary words: (covered chars, words used).

    Dynamic programme over end positions: ``best[p]`` is the most characters
    of the prefix of length ``p`` covered by non-overlapping words, ties broken
    by fewer words. Both are packed into one integer, ``chars * 64 - words``,
    so each step is a single maximum. Letters only; digits and hyphens are
    never covered. Arrays are position-major so every step reads contiguous rows.

    Words are found by growing every run of letters one character at a time,
    keeping only the spans that are still the start of some dictionary word:
    after three or four characters few spans of a random label survive.
    """
    n = enc.codes.shape[0]
    width = enc.codes.shape[1] - 2
    # (width, n) position-major, flattened: span (start j, label i) is j * n + i
    inner = np.ascontiguousarray(enc.codes[:, 1 : width + 1].T).reshape(-1)
    is_letter = (inner >= 1) & (inner <= 26)  # the closing marker and padding are not
    starts = np.flatnonzero(is_letter)
    code = inner[starts].astype(np.uint64)
    hits: list[tuple[int, npt.NDArray[np.int64]]] = []  # (length, starts of the words found)
    base = np.uint64(ALPHABET)
    for k in range(2, min(WORD_MAX, width) + 1):
        # spans whose last column would be past the width: starts stay sorted,
        # so they are the tail
        inside = int(np.searchsorted(starts, (width - k + 1) * n))
        starts, code = starts[:inside], code[:inside]
        nxt = starts + (k - 1) * n
        keep = is_letter[nxt]
        starts, code = starts[keep], code[keep] * base + inner[nxt[keep]].astype(np.uint64)
        if k < WORD_MIN:
            continue
        found, alive = dictionary.lookup(code, k)
        if found.any():
            hits.append((k, starts[found]))
        if k < WORD_MAX:
            starts, code = starts[alive], code[alive]
        if starts.size == 0:
            break
    best = np.zeros((width + 1, n), dtype=np.int64)
    if hits:
        # gain[p, i]: what a word of length ks[i] ending at p adds, or a large
        # negative where there is none; one gather, add and max per position.
        ks = np.array([k for k, _ in hits], dtype=np.int64)
        gain = np.full((width + 1, len(hits), n), -(1 << 40), dtype=np.int64)
        for i, (k, where) in enumerate(hits):
            j, label = np.divmod(where, n)
            gain[j + k, i, label] = k * 64 - 1
        back = np.maximum(np.arange(width + 1)[:, None] - ks[None, :], 0)  # (width + 1, len(ks))
        for p in range(1, width + 1):
            cand = (best[back[p]] + gain[p]).max(axis=0)
            np.maximum(best[p - 1], cand, out=best[p])
    lengths = enc.lengths
    final = best[lengths, np.arange(n)]
    covered = (final + 63) // 64
    words = covered * 64 - final
    return covered.astype(np.float64), words.astype(np.float64)


@dataclass(frozen=True, slots=True)
class FeatureContext:
    """Data the features depend on, trained on benign names only."""

    lm: TrigramLM
    dictionary: Dictionary
    suffix_log_freq: dict[str, float]


@dataclass(frozen=True, slots=True)
class Batch:
    labels: list[str]
    suffixes: list[str]
    subdomain_labels: IntArray

    def take(self, idx: IntArray) -> Batch:
        return Batch(
            [self.labels[i] for i in idx],
            [self.suffixes[i] for i in idx],
            self.subdomain_labels[idx],
        )


def split_batch(names: Sequence[str], psl: PublicSuffixList | None = None) -> Batch:
    psl = psl if psl is not None else default_psl()
    labels, suffixes, depths = psl.label_and_suffix_many(names)
    return Batch(labels, suffixes, np.array(depths, dtype=np.int64))


def statistics(batch: Batch, enc: EncodedLabels, ctx: FeatureContext) -> FloatArray:
    """The ``STAT_NAMES`` columns for a batch, shape ``(n, len(STAT_NAMES))``."""
    n = len(batch.labels)
    width = enc.codes.shape[1] - 2
    inner = enc.codes[:, 1 : width + 1]
    inner = np.where(inner == BOUNDARY, PAD, inner)  # the closing marker is not a character
    length = enc.lengths.astype(np.float64)
    safe_len = np.maximum(length, 1.0)
    digits = _IS_DIGIT[inner].sum(axis=1)
    letters = _IS_LETTER[inner]
    vowels = _IS_VOWEL[inner].sum(axis=1)
    hyphens = (inner == 37).sum(axis=1)

    flat = (np.arange(n, dtype=np.int64)[:, None] * ALPHABET + inner).reshape(-1)
    counts = np.bincount(flat, minlength=n * ALPHABET).reshape(n, ALPHABET)[:, 1:]
    probs = counts / safe_len[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(probs > 0, probs * np.log2(probs), 0.0).sum(axis=1)
    unique = (counts > 0).sum(axis=1)

    # longest consonant run: distance to the last non-consonant at each position
    cons = _IS_CONSONANT[inner]
    pos = np.arange(width, dtype=np.int64)[None, :]
    last_break = np.maximum.accumulate(np.where(cons, -1, pos), axis=1)
    best_run = (pos - last_break).max(axis=1) if width else np.zeros(n, dtype=np.int64)
    dig = _IS_DIGIT[inner]
    switches = ((dig[:, 1:] & letters[:, :-1]) | (letters[:, 1:] & dig[:, :-1])).sum(axis=1)

    tri_ids, tri_valid = _trigram_ids(enc)
    tri_logp = np.where(tri_valid, ctx.lm.logp[tri_ids], 0.0)
    tri_n = np.maximum(tri_valid.sum(axis=1), 1)
    lm_mean = tri_logp.sum(axis=1) / tri_n
    lm_min = np.where(tri_valid, tri_logp, 0.0).min(axis=1)

    covered, words = dictionary_segmentation(enc, ctx.dictionary)
    letter_count = np.maximum(letters.sum(axis=1), 1)
    suffix_freq = np.fromiter(
        (ctx.suffix_log_freq.get(s, 0.0) for s in batch.suffixes), dtype=np.float64, count=n
    )
    return np.column_stack(
        [
            length,
            digits / safe_len,
            hyphens,
            vowels / np.maximum(letters.sum(axis=1), 1),
            unique / safe_len,
            entropy,
            best_run,
            switches,
            lm_mean,
            lm_min,
            covered / letter_count,
            words,
            # Word-list DGAs are *entirely* made of dictionary words: an interaction
            # a per-feature model cannot form from coverage and count alone.
            np.where(covered >= letter_count, words, 0.0),
            covered / np.maximum(words, 1.0),
            batch.subdomain_labels.astype(np.float64),
            suffix_freq,
        ]
    )


@dataclass(frozen=True, slots=True)
class StatBinner:
    """Quantile bin edges per statistic; ``transform`` gives bin indices."""

    edges: tuple[FloatArray, ...]

    @classmethod
    def fit(cls, stats: FloatArray, bins: int = 16) -> StatBinner:
        qs = np.linspace(0, 1, bins + 1)[1:-1]
        return cls(tuple(np.unique(np.quantile(stats[:, j], qs)) for j in range(stats.shape[1])))

    @property
    def offsets(self) -> IntArray:
        sizes = np.array([len(e) + 1 for e in self.edges], dtype=np.int64)
        return np.concatenate([[0], np.cumsum(sizes)[:-1]])

    @property
    def total_bins(self) -> int:
        return int(sum(len(e) + 1 for e in self.edges))

    def transform(self, stats: FloatArray) -> IntArray:
        """Global bin ids ``(n, n_stats)``, already offset per statistic."""
        cols = [np.searchsorted(e, stats[:, j], side="right") for j, e in enumerate(self.edges)]
        return np.column_stack(cols).astype(np.int64) + self.offsets[None, :]
