"""Golden vectors pin the DGA features: a change here must bump FEATURE_VERSION."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from detectors.features import (
    BOUNDARY,
    FEATURE_VERSION,
    MAX_LABEL,
    NGRAM_BUCKETS,
    OTHER,
    PAD,
    STAT_NAMES,
    Dictionary,
    FeatureContext,
    TrigramLM,
    dictionary_segmentation,
    encode_labels,
    ngram_buckets,
    split_batch,
    statistics,
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

GOLDEN_STATS = np.array(
    [
        [8, 0, 0, 0.5, 0.875, 2.75, 1, 0, -3.047464, -3.068053, 1, 2, 2, 4, 1, 1],
        [10, 0, 0, 0, 1, 3.321928, 10, 0, -3.713572, -3.713572, 0, 0, 0, 0, 0, 0],
        [7, 0, 0, 0.285714, 0.857143, 2.521641, 3, 0, -3.713572, -3.713572, 1, 2, 2, 3.5, 0, 1],
        [7, 0.428571, 1, 0.333333, 1, 2.807355, 1, 4, -3.717015, -3.73767, 0, 0, 0, 0, 0, 0.8],
        [11, 0, 0, 0.454545, 0.909091, 3.277613, 2, 0, -3.713572, -3.713572, 1, 2, 2, 5.5, 0, 0],
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        [6, 0, 0, 0.166667, 1, 2.584963, 3, 0, -3.717588, -3.73767, 0, 0, 0, 0, 1, 0],
    ]
)
GOLDEN_FIRST_NGRAMS = [
    74434,
    171545,
    50723,
    28403,
    244589,
    248852,
    94742,
    233118,
    119193,
    68104,
    179386,
    6156,
]


def _context() -> FeatureContext:
    return FeatureContext(
        lm=TrigramLM.fit(encode_labels(["google", "facebook", "wikipedia", "amazon", "netflix"])),
        dictionary=Dictionary.from_words(
            ["face", "book", "net", "flix", "best", "buy", "the", "original"]
        ),
        suffix_log_freq={"com": 1.0, "org": 0.8},
    )


def test_feature_version_is_named() -> None:
    assert FEATURE_VERSION == "dga-features/2"
    assert len(STAT_NAMES) == GOLDEN_STATS.shape[1]


def test_statistics_match_golden_vectors() -> None:
    batch = split_batch(NAMES)
    stats = statistics(batch, encode_labels(batch.labels), _context())
    np.testing.assert_allclose(stats, GOLDEN_STATS, atol=1e-5)


def test_ngram_buckets_match_golden_vectors() -> None:
    batch = split_batch(NAMES)
    ids, valid = ngram_buckets(encode_labels(batch.labels))
    assert ids[0][valid[0]][:12].tolist() == GOLDEN_FIRST_NGRAMS
    assert int(valid.sum()) == 163 + 22  # 'wreczn': 7 + 6 + 5 + 4
    assert ids.min() >= 0
    assert ids.max() < NGRAM_BUCKETS


def test_ngram_count_per_label_is_exact() -> None:
    # a label of length L with boundaries has (L + 2 - k + 1) grams of order k
    enc = encode_labels(["abc", "abcdefgh"])
    _, valid = ngram_buckets(enc)
    expected = [sum(max(0, L + 3 - k) for k in (2, 3, 4, 5)) for L in (3, 8)]
    assert valid.sum(axis=1).tolist() == expected


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
    stats = statistics(batch, enc, _context())
    ids, valid = ngram_buckets(enc)
    assert stats.shape == (len(labels), len(STAT_NAMES))
    assert np.isfinite(stats).all()
    assert ids.shape == valid.shape


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
