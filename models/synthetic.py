"""Generic synthetic DGA-style names, used to augment training.

Supervised models learn the families they are shown; a family with a new
style is missed. These generators describe the *styles* DGAs use, not any
family: uniformly random letters, random alphanumerics, hex digests,
consonant-vowel syllables, and concatenations of random dictionary words (the
word-list style). They are drawn from a seeded generator and use only the
English dictionary, so leave-family-out evaluation stays honest.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

LETTERS = np.array(list("abcdefghijklmnopqrstuvwxyz"))
ALNUM = np.array(list("abcdefghijklmnopqrstuvwxyz0123456789"))
HEX = np.array(list("0123456789abcdef"))
CONSONANTS = np.array(list("bcdfghjklmnpqrstvwxyz"))
VOWELS = np.array(list("aeiou"))
SUFFIXES = ("com", "net", "org", "info", "biz", "ru", "top", "xyz", "cc", "in", "co", "me")


def _random_string(rng: np.random.Generator, alphabet: np.ndarray, lo: int, hi: int) -> str:
    return "".join(rng.choice(alphabet, size=int(rng.integers(lo, hi + 1))))


def _syllables(rng: np.random.Generator) -> str:
    parts = []
    for _ in range(int(rng.integers(3, 8))):
        parts.append(str(rng.choice(CONSONANTS)) + str(rng.choice(VOWELS)))
        if rng.random() < 0.25:
            parts.append(str(rng.choice(CONSONANTS)))
    return "".join(parts)


def _words(rng: np.random.Generator, words: Sequence[str]) -> str:
    count = int(rng.choice([2, 2, 3, 3, 4, 5]))
    return "".join(words[int(i)] for i in rng.integers(0, len(words), size=count))


def synthetic_dga(n: int, words: Sequence[str], seed: int) -> list[str]:
    """``n`` names, an equal share of each style, with common DGA suffixes."""
    rng = np.random.default_rng(seed)
    styles = (
        lambda: _random_string(rng, LETTERS, 8, 20),
        lambda: _random_string(rng, ALNUM, 8, 24),
        lambda: _random_string(rng, HEX, 12, 32),
        lambda: _syllables(rng),
        lambda: _words(rng, words),
    )
    out = []
    for i in range(n):
        label = styles[i % len(styles)]()
        out.append(f"{label}.{SUFFIXES[int(rng.integers(0, len(SUFFIXES)))]}")
    return out
