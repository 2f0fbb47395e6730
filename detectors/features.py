"""DGA features, shared by training (models/) and scoring (detectors.dga).

Everything is vectorised over a batch: the registrable labels are encoded
into one ``(n, width)`` matrix of small integer codes (with a boundary
marker at both ends), and every feature is a handful of numpy operations on
that matrix. ``FEATURE_VERSION`` names this exact computation; a model
artifact records it and loading refuses a model trained on another version.
``tests/unit/test_dga_features.py`` pins the output on golden vectors, so any
change here must bump the version.

The features are **hashed character n-grams** of the label, orders 1 to 5
(boundary markers included, so prefixes and suffixes are n-grams of their
own), in ``NGRAM_BUCKETS`` buckets, each counted with weight ``1/sqrt(n)``
for a label of ``n`` n-grams (so a label's vector has about unit length).
Besides, one bucket for the **public suffix** itself (``com``, ``co.uk``,
``duckdns.org``; the label's n-grams never see it), weight 1: a name's suffix
is evidence of its own (dynamic-DNS parents host generated labels far more
often than ``com`` does). Leaving top-level domains out (private-section
suffixes only) halved the median detection rate of held-out families at FPR
1e-3 (0.13 against 0.33, ``models/MODEL_CARD.md``), so every suffix counts. Nothing else: the statistics a model was given
before (length bins, a benign language model, how common the suffix is among
benign names) made rare benign names score extreme and the false-positive tail
longer than plain n-grams', measured on families held out of training
(``models/MODEL_CARD.md``).

The **dictionary segmentation** (the most letters of a label covered by
dictionary words, in the fewest words) is not a model feature; it tells the
client-level detector which names are made of words, the shape of word-list
DGAs.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.names import PublicSuffixList, default_psl

FEATURE_VERSION = "dga-features/4"

MAX_LABEL = 63
PAD, OTHER, BOUNDARY = 0, 39, 40
ALPHABET = 41  # PAD, a-z, 0-9, '-', '_', OTHER, BOUNDARY
NGRAM_ORDERS = (1, 2, 3, 4, 5)
NGRAM_BITS = 20
NGRAM_BUCKETS = 1 << NGRAM_BITS
_HASH_MULT = np.uint64(0x9E3779B97F4A7C15)
WORD_MIN, WORD_MAX = 3, 11  # 41**11 < 2**64: word codes are exact
SHORT = 4  # words and prefixes this short are looked up in a direct table (41**4 bytes)


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
    for k in range(1, max(orders) + 1):
        if k > 1:
            gram = gram[:, : w - k + 1] * base + codes[:, k - 1 :]
        if k in orders:
            grams[:, col : col + gram.shape[1]] = gram
            col += gram.shape[1]
    grams *= _HASH_MULT
    grams += order_of
    grams >>= np.uint64(64 - NGRAM_BITS)
    return grams.view(np.int64), last[None, :] <= (enc.lengths + 1)[:, None]


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
class Batch:
    labels: list[str]
    suffixes: list[str]
    subdomain_labels: IntArray


def split_batch(names: Sequence[str], psl: PublicSuffixList | None = None) -> Batch:
    psl = psl if psl is not None else default_psl()
    labels, suffixes, depths = psl.label_and_suffix_many(names)
    return Batch(labels, suffixes, np.array(depths, dtype=np.int64))


SUFFIX_TAG = 0  # a suffix's bucket is tagged apart from every n-gram order (1..5)
_SUFFIX_BUCKETS: dict[str, int] = {}
_SUFFIX_CACHE_MAX = 50_000


def suffix_bucket(suffix: str) -> int:
    """The bucket of a public suffix: CRC-32 of its text, spread like an n-gram's
    code (times the multiplier plus ``SUFFIX_TAG``, mod 2**64, top bits)."""
    bucket = _SUFFIX_BUCKETS.get(suffix)
    if bucket is None:
        code = zlib.crc32(suffix.encode("utf-8", "surrogatepass"))
        bucket = ((code * 0x9E3779B97F4A7C15 + SUFFIX_TAG) % (1 << 64)) >> (64 - NGRAM_BITS)
        if len(_SUFFIX_BUCKETS) >= _SUFFIX_CACHE_MAX:
            _SUFFIX_BUCKETS.clear()
        _SUFFIX_BUCKETS[suffix] = bucket
    return bucket


def suffix_buckets(suffixes: Sequence[str]) -> IntArray:
    get = _SUFFIX_BUCKETS.get
    out = [get(s) for s in suffixes]
    if None in out:
        out = [suffix_bucket(s) for s in suffixes]
    return np.array(out, dtype=np.int64)


def ngram_scale(valid: npt.NDArray[np.bool_]) -> npt.NDArray[np.float32]:
    """Each label's n-gram weight, ``1/sqrt(n)`` for its ``n`` valid n-grams."""
    count = valid.sum(axis=1).astype(np.float32)
    scale: npt.NDArray[np.float32] = 1.0 / np.sqrt(np.maximum(count, 1.0))
    return scale


def words_cover(
    enc: EncodedLabels, labels: Sequence[str], dictionary: Dictionary
) -> npt.NDArray[np.bool_]:
    """Whether each label is made entirely of two or more dictionary words
    (letters only, at least eight of them)."""
    covered, words = dictionary_segmentation(enc, dictionary)
    letters = np.fromiter(
        (lb.isascii() and lb.isalpha() for lb in labels), dtype=bool, count=len(labels)
    )
    out: npt.NDArray[np.bool_] = (
        letters & (enc.lengths >= 8) & (covered >= enc.lengths) & (words >= 2)
    )
    return out
