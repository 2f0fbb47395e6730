"""Golden vectors pin the DGA features: a change here must bump FEATURE_VERSION."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from detectors.features import (
    ALPHABET,
    BOUNDARY,
    FEATURE_VERSION,
    MAX_LABEL,
    NGRAM_BITS,
    NGRAM_BUCKETS,
    NGRAM_ORDERS,
    OTHER,
    PAD,
    Dictionary,
    dictionary_segmentation,
    encode_labels,
    ngram_buckets,
    ngram_scale,
    split_batch,
    suffix_bucket,
    suffix_buckets,
    words_cover,
)

pytestmark = pytest.mark.unit

NAMES = [
    "www.facebook.com",
    "xjwqkzpvhr.biz",
    "bestbuy.com",
    "a1b2-c3.org",
    "theoriginal.co.uk",
    "com",
    "a.wreczn.mooo.com",  # a dynamic-DNS parent: the customer's label is the one scored
]
# the first buckets of 'facebook' (orders 1..5 in turn), pinned: changing the
# hash or the encoding changes every model's meaning and must bump FEATURE_VERSION
GOLDEN_FIRST_NGRAMS = [
    756400, 742605, 648055, 895590, 94550, 247535, 283650, 283650, 837155, 756400, 297738,
    686183,
]  # fmt: skip


def test_feature_version_is_named() -> None:
    assert FEATURE_VERSION == "dga-features/4"


def reference_buckets(label: str) -> list[int]:
    """The n-gram buckets of one label, by the definition: every k-gram (k in
    NGRAM_ORDERS) of BOUNDARY + codes + BOUNDARY, read as a base-ALPHABET
    number, times the multiplier plus k (mod 2**64), top NGRAM_BITS bits."""
    codes = [BOUNDARY] + [_code(c) for c in label[:MAX_LABEL]] + [BOUNDARY]
    out = []
    for k in NGRAM_ORDERS:
        for j in range(len(codes) - k + 1):
            value = 0
            for c in codes[j : j + k]:
                value = value * ALPHABET + c
            h = (value * 0x9E3779B97F4A7C15 + k) % 2**64
            out.append(h >> (64 - NGRAM_BITS))
    return out


def test_ngram_buckets_match_golden_vectors() -> None:
    batch = split_batch(NAMES)
    assert batch.labels == ["facebook", "xjwqkzpvhr", "bestbuy", "a1b2-c3", "theoriginal", "",
                            "wreczn"]  # fmt: skip
    ids, valid = ngram_buckets(encode_labels(batch.labels))
    assert ids[0][valid[0]][:12].tolist() == GOLDEN_FIRST_NGRAMS
    assert int(valid.sum()) == sum(len(reference_buckets(lb)) for lb in batch.labels)
    assert ids.min() >= 0
    assert ids.max() < NGRAM_BUCKETS


@given(st.lists(st.text(alphabet="abz09-_\xe9.", max_size=70), min_size=1, max_size=12))
def test_ngram_buckets_match_their_definition(labels: list[str]) -> None:
    ids, valid = ngram_buckets(encode_labels(labels))
    for row, ok, label in zip(ids.tolist(), valid.tolist(), labels, strict=True):
        got = sorted(b for b, v in zip(row, ok, strict=True) if v)
        assert got == sorted(reference_buckets(label))


def test_suffix_buckets_match_their_definition() -> None:
    import zlib

    for suffix in ("com", "co.uk", "duckdns.org", "", "xn--p1ai"):
        code = zlib.crc32(suffix.encode())
        expected = ((code * 0x9E3779B97F4A7C15) % 2**64) >> (64 - NGRAM_BITS)
        assert suffix_bucket(suffix) == expected
    assert suffix_buckets(["com", "net", "com"]).tolist() == [
        suffix_bucket("com"), suffix_bucket("net"), suffix_bucket("com")
    ]  # fmt: skip
    assert suffix_bucket("com") == 55654  # pinned: a change must bump FEATURE_VERSION


def test_ngram_scale_gives_unit_length_to_distinct_grams() -> None:
    _, valid = ngram_buckets(encode_labels(["abc", "abcdefgh"]))
    scale = ngram_scale(valid)
    counts = valid.sum(axis=1)
    np.testing.assert_allclose(scale * np.sqrt(counts), 1.0, rtol=1e-6)


def test_ngram_count_per_label_is_exact() -> None:
    # a label of length L with boundaries has (L + 2 - k + 1) grams of order k
    enc = encode_labels(["abc", "abcdefgh"])
    _, valid = ngram_buckets(enc)
    expected = [sum(max(0, L + 3 - k) for k in NGRAM_ORDERS) for L in (3, 8)]
    assert valid.sum(axis=1).tolist() == expected


def test_words_cover_needs_two_words_and_every_letter() -> None:
    d = Dictionary.from_words(["face", "book", "stone", "river", "the", "original"])
    labels = ["facebook", "stoneriver", "theoriginal", "stoneriverx", "river", "face9book"]
    got = words_cover(encode_labels(labels), labels, d).tolist()
    assert got == [True, True, True, False, False, False]


def test_segmentation_prefers_full_cover_then_fewer_words() -> None:
    d = Dictionary.from_words(["face", "book", "facebook", "the", "original"])
    enc = encode_labels(["facebook", "theoriginal", "xqzv", "thebook9"])
    covered, words = dictionary_segmentation(enc, d)
    assert covered.tolist() == [8, 11, 0, 7]
    assert words.tolist() == [1, 2, 0, 2]


def test_dictionary_rejects_non_words() -> None:
    d = Dictionary.from_words(["alpha", "beta"])
    enc = encode_labels(["alphabeta", "alphabet"])
    covered, _ = dictionary_segmentation(enc, d)
    assert covered.tolist() == [9, 5]


@given(st.lists(st.text(min_size=0, max_size=70), min_size=1, max_size=20))
def test_features_never_fail_on_arbitrary_text(labels: list[str]) -> None:
    batch = split_batch(labels)
    enc = encode_labels(batch.labels)
    ids, valid = ngram_buckets(enc)
    assert ids.shape == valid.shape
    assert np.isfinite(ngram_scale(valid)).all()
    assert words_cover(enc, batch.labels, Dictionary.from_words(["alpha"])).shape == (len(labels),)


def _code(ch: str) -> int:
    """A character's code, by the definition: letters 1-26, digits 27-36, '-' 37,
    '_' 38, anything else (NUL and non-ASCII included) OTHER."""
    lower = "abcdefghijklmnopqrstuvwxyz"
    if ch.lower() in lower and ch.isascii():
        return 1 + lower.index(ch.lower())
    if ch in "0123456789":
        return 27 + int(ch)
    return {"-": 37, "_": 38}.get(ch, OTHER)


@example(["x" * 70, "ab"])  # cut to MAX_LABEL characters
@example(["\xe9" * 64 + "a"])
@given(st.lists(st.text(max_size=70) | st.text(alphabet="aZ9-_.\x00\xe9\ud800", max_size=8)))
def test_encoding_matches_its_definition(labels: list[str]) -> None:
    enc = encode_labels(labels)
    width = max([1] + [min(len(s), MAX_LABEL) for s in labels])
    assert enc.codes.shape == (len(labels), width + 2)
    for row, lab, label in zip(enc.codes.tolist(), enc.lengths.tolist(), labels, strict=True):
        cut = label[:MAX_LABEL]
        assert lab == len(cut)
        expected = [BOUNDARY] + [_code(c) for c in cut] + [BOUNDARY]
        assert row == expected + [PAD] * (width + 2 - len(expected))


WORDS = ["face", "book", "facebook", "the", "original", "ore", "origin", "alp", "alpha",
         "bet", "beta", "abet", "elephant", "ant", "antelope", "tel", "hop", "ephant"]  # fmt: skip
SEG_DICT = Dictionary.from_words(WORDS)


def reference_segmentation(label: str) -> tuple[int, int]:
    """The definition, directly: best (covered letters, then fewer words) over all covers."""
    best = [(0, 0)] * (len(label) + 1)  # (covered, -words) per prefix length
    for p in range(1, len(label) + 1):
        best[p] = best[p - 1]
        for w in WORDS:
            if p >= len(w) and label[p - len(w) : p] == w:
                c, neg = best[p - len(w)]
                best[p] = max(best[p], (c + len(w), neg - 1))
    covered, neg_words = best[-1]
    return covered, -neg_words


@given(
    st.lists(
        st.lists(st.sampled_from([*WORDS, "x", "q", "9", "-", "zz", "e", "a"]), max_size=12).map(
            "".join
        ),
        min_size=1,
        max_size=30,
    )
)
def test_segmentation_equals_its_definition(labels: list[str]) -> None:
    """Growing spans only while they are word prefixes, and the position-indexed
    programme, find the same best cover as trying every word at every end."""
    labels = [label[:63] for label in labels]
    covered, words = dictionary_segmentation(encode_labels(labels), SEG_DICT)
    assert [(int(c), int(w)) for c, w in zip(covered, words, strict=True)] == [
        reference_segmentation(label) for label in labels
    ]
