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
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import numpy.typing as npt

from detectors.names import PublicSuffixList, default_psl

FEATURE_VERSION = "dga-features/2"

MAX_LABEL = 63
PAD, OTHER, BOUNDARY = 0, 39, 40
ALPHABET = 41  # PAD, a-z, 0-9, '-', '_', OTHER, BOUNDARY
NGRAM_ORDERS = (2, 3, 4, 5)
NGRAM_BITS = 18
NGRAM_BUCKETS = 1 << NGRAM_BITS
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
WORD_MIN, WORD_MAX = 3, 11  # 41**11 < 2**64: word codes are exact
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
    table = np.full(129, OTHER, dtype=np.uint8)  # NUL too: PAD is only ever padding
    for i, ch in enumerate("abcdefghijklmnopqrstuvwxyz"):
        table[ord(ch)] = 1 + i
        table[ord(ch.upper())] = 1 + i
    for i, ch in enumerate("0123456789"):
        table[ord(ch)] = 27 + i
    table[ord("-")] = 37
    table[ord("_")] = 38
    return table


_CHAR_TABLE = _char_table()
_VOWEL_CODES = [1 + ord(c) - ord("a") for c in "aeiou"]
_IS_VOWEL = np.zeros(ALPHABET, dtype=bool)
_IS_VOWEL[_VOWEL_CODES] = True
_IS_LETTER = np.zeros(ALPHABET, dtype=bool)
_IS_LETTER[1:27] = True
_IS_DIGIT = np.zeros(ALPHABET, dtype=bool)
_IS_DIGIT[27:37] = True
_IS_CONSONANT = _IS_LETTER & ~_IS_VOWEL
_LETTER_OR_DIGIT = _IS_LETTER.astype(np.uint8) + 2 * _IS_DIGIT.astype(np.uint8)


def _plogp_table() -> FloatArray:
    """``p * log2(p)`` for ``p = count / length``, flat ``[length * 64 + count]``."""
    count = np.arange(MAX_LABEL + 1, dtype=np.float64)[None, :]
    length = np.maximum(np.arange(MAX_LABEL + 1, dtype=np.float64), 1.0)[:, None]
    p = count / length
    with np.errstate(divide="ignore", invalid="ignore"):
        table: FloatArray = np.where(p > 0, p * np.log2(p), 0.0).reshape(-1)
    return table


_PLOGP = _plogp_table()


@dataclass(frozen=True, slots=True)
class EncodedLabels:
    """A batch of labels as codes: ``codes[:, 0]`` and ``codes[i, len+1]`` are BOUNDARY."""

    codes: U8Array  # (n, width + 2)
    lengths: IntArray  # (n,)

    def take(self, idx: IntArray) -> EncodedLabels:
        """The labels ``idx``, as narrow as the longest of them (as ``encode_labels`` would)."""
        lengths = self.lengths[idx]
        width = max(1, int(lengths.max(initial=0)))
        return EncodedLabels(self.codes[idx, : width + 2], lengths)


def encode_labels(labels: Sequence[str]) -> EncodedLabels:
    """Codes of ``labels``, each cut to ``MAX_LABEL`` characters.

    The labels are joined and encoded in one call, and their characters
    scattered into the rows of the code matrix.
    """
    n = len(labels)
    lengths = np.fromiter(map(len, labels), dtype=np.int64, count=n)
    if n and int(lengths.max()) > MAX_LABEL:
        labels = [s[:MAX_LABEL] for s in labels]
        np.minimum(lengths, MAX_LABEL, out=lengths)
    width = max(1, int(lengths.max(initial=0)))
    joined = "".join(labels)
    if joined.isascii():
        chars = _CHAR_TABLE[np.frombuffer(joined.encode("ascii"), dtype=np.uint8)]
    else:
        points = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        chars = _CHAR_TABLE[np.minimum(points, 128)]
    codes = np.zeros((n, width + 2), dtype=np.uint8)
    codes[:, 0] = BOUNDARY
    # character c of label i goes to column 1 + c of row i
    row_start = np.arange(1, n * (width + 2), width + 2, dtype=np.int64) - (
        np.cumsum(lengths) - lengths
    )
    codes.reshape(-1)[np.repeat(row_start, lengths) + np.arange(chars.size)] = chars
    codes[np.arange(n), lengths + 1] = BOUNDARY
    return EncodedLabels(codes, lengths)


def ngram_buckets(enc: EncodedLabels) -> tuple[IntArray, npt.NDArray[np.bool_]]:
    """Bucket ids ``(n, positions)`` of every n-gram and a mask of the valid ones."""
    codes = enc.codes.astype(np.uint64)
    n, w = codes.shape
    orders = [k for k in NGRAM_ORDERS if k <= w]
    widths = [w - k + 1 for k in orders]
    grams = np.empty((n, sum(widths)), dtype=np.uint64)
    order_of = np.repeat(np.array(orders, dtype=np.uint64), widths)
    # the column of each gram's last character: column len+1 is the closing boundary
    last = np.concatenate([np.arange(p) + k - 1 for k, p in zip(orders, widths, strict=True)])
    base = np.uint64(ALPHABET)
    # the k-grams from the (k-1)-grams: gram[j] covers columns j..j+k-1
    gram = codes
    col = 0
    for k in range(2, max(orders) + 1):
        gram = gram[:, : w - k + 1] * base + codes[:, k - 1 :]
        if k in orders:
            grams[:, col : col + gram.shape[1]] = gram
            col += gram.shape[1]
    grams *= _HASH_MULT
    grams += order_of
    grams >>= np.uint64(64 - NGRAM_BITS)
    return grams.view(np.int64), last[None, :] <= (enc.lengths + 1)[:, None]


@dataclass(frozen=True, slots=True)
class TrigramLM:
    """Add-one smoothed benign character-trigram model over the code alphabet."""

    logp: FloatArray  # (ALPHABET**3,) log P(c | a b)
    # logp with 0 for every trigram ending in PAD: those are exactly the
    # positions past a label's closing marker, so scoring needs no mask
    padded: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        padded = self.logp.reshape(ALPHABET, ALPHABET, ALPHABET).copy()
        padded[:, :, PAD] = 0.0
        object.__setattr__(self, "padded", padded.reshape(-1))

    @classmethod
    def fit(cls, enc: EncodedLabels) -> TrigramLM:
        idx = _trigram_ids(enc)
        valid = np.arange(idx.shape[1])[None, :] < enc.lengths[:, None]
        counts = np.bincount(idx[valid], minlength=ALPHABET**3).astype(np.float64)
        ctx = counts.reshape(ALPHABET * ALPHABET, ALPHABET)
        logp = np.log((ctx + 1.0) / (ctx.sum(axis=1, keepdims=True) + ALPHABET))
        return cls(logp.reshape(-1))


def _trigram_ids(enc: EncodedLabels) -> npt.NDArray[np.int32]:
    """Trigram ids ``(n, width)``; trigram j ends at column j + 2, so the first
    ``len`` of them end inside the label or on its closing marker."""
    c = enc.codes.astype(np.int32)
    positions = c.shape[1] - 2
    ids: npt.NDArray[np.int32] = (
        c[:, :positions] * ALPHABET + c[:, 1 : positions + 1]
    ) * ALPHABET + c[:, 2:]
    return ids


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
    span as soon as no word can start with it).

    Each code carries two flag bits: ``IS_WORD`` and ``IS_PREFIX`` (of a longer
    word). Codes of up to ``SHORT`` characters index a direct table of flags
    (most lookups are of three or four characters); longer ones are found in
    one sorted array of every word and prefix, with their flags beside it.
    """

    words: npt.NDArray[np.uint64]  # sorted, unique
    long_codes: npt.NDArray[np.uint64]  # sorted words and prefixes longer than SHORT
    long_flags: U8Array
    short: U8Array  # ALPHABET**SHORT flags

    IS_WORD, IS_PREFIX = 1, 2

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
        return cls.from_codes(code[: len(keep)])

    @classmethod
    def from_codes(cls, codes: npt.NDArray[np.uint64]) -> Dictionary:
        words = np.unique(codes.astype(np.uint64))
        prefixes = _prefix_codes(words)
        nodes = np.union1d(words, prefixes)
        flags = np.isin(nodes, words) * np.uint8(cls.IS_WORD) | np.isin(nodes, prefixes) * np.uint8(
            cls.IS_PREFIX
        )
        flags = flags.astype(np.uint8)
        is_short = nodes < np.uint64(ALPHABET**SHORT)
        short = np.zeros(ALPHABET**SHORT, dtype=np.uint8)
        short[nodes[is_short].astype(np.int64)] = flags[is_short]
        return cls(words, nodes[~is_short], flags[~is_short], short)

    def lookup(self, codes: npt.NDArray[np.uint64], k: int) -> U8Array:
        """The flags of codes of ``k`` characters (0: neither word nor prefix)."""
        if k <= SHORT:
            return self.short[codes.astype(np.int64)]
        table = self.long_codes
        if table.size == 0:
            return np.zeros(codes.shape, dtype=np.uint8)
        pos = np.searchsorted(table, codes)
        np.minimum(pos, table.size - 1, out=pos)
        found: U8Array = self.long_flags[pos] * (table[pos] == codes)
        return found


def dictionary_segmentation(
    enc: EncodedLabels, dictionary: Dictionary
) -> tuple[FloatArray, FloatArray]:
    """Best cover of each label by dictionary words: (covered chars, words used).

    Dynamic programme over end positions: ``best[p]`` is the most characters
    of the prefix of length ``p`` covered by non-overlapping words, ties broken
    by fewer words. Both are packed into one integer, ``chars * 64 - words``,
    so each step is a single maximum. Letters only; digits and hyphens are
    never covered. Arrays are position-major so every step reads contiguous rows.

    Words are found by growing spans from every letter one character at a time,
    keeping only the spans that are still the start of some dictionary word:
    after three or four characters few spans of a random label survive. A span
    that reaches a non-letter dies there, as no word or prefix contains one.
    """
    n = enc.codes.shape[0]
    width = enc.codes.shape[1] - 2
    # (width + WORD_MAX, n) position-major, flattened: span (start j, label i)
    # is j * n + i; the rows past the width are padding, so spans never run out
    inner = np.zeros((width + WORD_MAX) * n, dtype=np.uint8)
    inner[: width * n] = enc.codes[:, 1 : width + 1].T.reshape(-1)
    starts = np.flatnonzero((inner >= 1) & (inner <= 26))
    base = np.uint64(ALPHABET)
    code = inner[starts].astype(np.uint64)
    for k in range(1, WORD_MIN - 1):
        code = code * base + inner[starts + k * n]
    hit_start: list[npt.NDArray[np.int64]] = []  # per length k, the spans that are words
    hit_k: list[int] = []
    for k in range(WORD_MIN, min(WORD_MAX, width) + 1):
        code = code * base + inner[starts + (k - 1) * n]
        flags = dictionary.lookup(code, k)
        found = (flags & Dictionary.IS_WORD) != 0
        if found.any():
            hit_start.append(starts[found])
            hit_k.append(k)
        alive = (flags & Dictionary.IS_PREFIX) != 0
        starts, code = starts[alive], code[alive]
        if starts.size == 0:
            break
    best = np.zeros((width + 1) * n, dtype=np.int64)  # row p: prefixes of length p
    if hit_start:
        begin = np.concatenate(hit_start)
        k_of = np.repeat(np.array(hit_k, dtype=np.int64), [h.size for h in hit_start])
        end = begin + k_of * n  # the row of the prefix the word ends
        gain = k_of * 64 - 1
        order = np.argsort(end, kind="stable")
        begin, end, gain = begin[order], end[order], gain[order]
        bounds = np.searchsorted(end, np.arange(width + 2) * n)
        rows = best.reshape(width + 1, n)
        # Words are WORD_MIN or more characters long, so the words ending in
        # rows p .. p + WORD_MIN - 1 all begin in rows before p, which are final:
        # their gains go in at once, then the block takes the running maximum.
        for p in range(1, width + 1, WORD_MIN):
            q = min(p + WORD_MIN, width + 1)
            lo, hi = int(bounds[p]), int(bounds[q])
            if hi > lo:
                np.maximum.at(best, end[lo:hi], best[begin[lo:hi]] + gain[lo:hi])
            for r in range(p, q):
                np.maximum(rows[r - 1], rows[r], out=rows[r])
    final = best[enc.lengths * n + np.arange(n)]
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


def split_batch(names: Sequence[str], psl: PublicSuffixList | None = None) -> Batch:
    psl = psl if psl is not None else default_psl()
    labels, suffixes, depths = psl.label_and_suffix_many(names)
    return Batch(labels, suffixes, np.array(depths, dtype=np.int64))


def statistics(batch: Batch, enc: EncodedLabels, ctx: FeatureContext) -> FloatArray:
    """The ``STAT_NAMES`` columns for a batch, shape ``(n, len(STAT_NAMES))``."""
    return np.column_stack([label_statistics(enc, ctx), name_statistics(batch, ctx)])


N_LABEL_STATS = len(STAT_NAMES) - 2  # the last two are of the name, not of its label


def name_statistics(batch: Batch, ctx: FeatureContext) -> FloatArray:
    """The last two ``STAT_NAMES`` columns: subdomain labels and the suffix's benign frequency."""
    n = len(batch.labels)
    suffix_freq = np.fromiter(
        map(ctx.suffix_log_freq.get, batch.suffixes, repeat(0.0)), dtype=np.float64, count=n
    )
    return np.column_stack([batch.subdomain_labels.astype(np.float64), suffix_freq])


def label_statistics(enc: EncodedLabels, ctx: FeatureContext) -> FloatArray:
    """The first ``N_LABEL_STATS`` columns of ``STAT_NAMES``, computed from the labels alone."""
    n = enc.codes.shape[0]
    width = enc.codes.shape[1] - 2
    # the closing marker is in no character class, and its count is dropped below
    inner = enc.codes[:, 1 : width + 1]
    length = enc.lengths.astype(np.float64)
    safe_len = np.maximum(length, 1.0)
    # characters per code and label: counts[i, c] for code c (PAD and the marker zeroed)
    flat = (np.arange(n, dtype=np.int64)[:, None] * ALPHABET + inner).reshape(-1)
    counts = np.bincount(flat, minlength=n * ALPHABET).reshape(n, ALPHABET)
    counts[:, BOUNDARY] = 0
    digits = counts[:, 27:37].sum(axis=1)
    letter_count = counts[:, 1:27].sum(axis=1)
    vowels = counts[:, _VOWEL_CODES].sum(axis=1)
    hyphens = counts[:, 37]
    counts = counts[:, 1:]
    # -sum p log2 p with p = count / length, each term read from a table
    entropy = -_PLOGP[(safe_len.astype(np.int64) * (MAX_LABEL + 1))[:, None] + counts].sum(axis=1)
    unique = (counts > 0).sum(axis=1)

    # longest consonant run: distance to the last non-consonant at each position
    cons = _IS_CONSONANT[inner]
    pos = np.arange(width, dtype=np.int64)[None, :]
    last_break = np.maximum.accumulate(np.where(cons, -1, pos), axis=1)
    best_run = (pos - last_break).max(axis=1) if width else np.zeros(n, dtype=np.int64)
    # neighbours switch between a letter (1) and a digit (2) where their product is 2
    kind = _LETTER_OR_DIGIT[inner]
    switches = (kind[:, 1:] * kind[:, :-1] == 2).sum(axis=1)

    tri_logp = ctx.lm.padded[_trigram_ids(enc)]
    lm_mean = tri_logp.sum(axis=1) / np.maximum(enc.lengths, 1)
    lm_min = tri_logp.min(axis=1)

    covered, words = dictionary_segmentation(enc, ctx.dictionary)
    letter_count = np.maximum(letter_count, 1)
    return np.column_stack(
        [
            length,
            digits / safe_len,
            hyphens,
            vowels / letter_count,
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
