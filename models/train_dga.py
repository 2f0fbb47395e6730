"""Train and evaluate the DGA model from the labelled data in ``shared/data``.

``train`` fits the production artifact; ``evaluate`` runs leave-family-out
cross-validation (each DGA family held out in turn, so its figures describe a
family the model never saw) plus a benign hold-out by rank band, and renders
``models/MODEL_CARD.md``. All randomness is seeded; the artifact records data
hashes, library versions, the feature version, the seed and the metrics.
"""

from __future__ import annotations

import csv
import hashlib
import platform
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import sklearn
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from detectors.dga import DgaModel
from detectors.features import (
    FEATURE_VERSION,
    NGRAM_BUCKETS,
    Dictionary,
    FeatureContext,
    StatBinner,
    TrigramLM,
    encode_labels,
    ngram_buckets,
    split_batch,
    statistics,
)
from models.synthetic import synthetic_dga

SEED = 20261125
HOLDOUT_EVERY = 5  # every 5th benign name by rank is held out (stratified over ranks)
WORDLIST_FAMILIES = ("suppobox", "rovnix")
RANK_BANDS = ((1, 1_000), (1_001, 10_000), (10_001, 50_000), (50_001, 100_000))
DICTIONARY_SIZE = 40_000
C_REG = 1.0
SYNTHETIC_NAMES = 40_000
TOP_BENIGN_SHOWN = 15


@dataclass(frozen=True, slots=True)
class Dataset:
    benign: list[str]
    benign_rank: np.ndarray
    dga: list[str]
    family: np.ndarray
    sha256: dict[str, str]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_dataset(data_dir: Path) -> Dataset:
    benign_path = data_dir / "benign_top.csv"
    dga_path = data_dir / "dga_train.csv"
    with benign_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    benign = [r["domain"] for r in rows]
    ranks = np.array([int(r["rank"]) for r in rows])
    with dga_path.open(newline="") as fh:
        drows = list(csv.DictReader(fh))
    return Dataset(
        benign=benign,
        benign_rank=ranks,
        dga=[r["domain"] for r in drows],
        family=np.array([r["family"] for r in drows]),
        sha256={benign_path.name: _sha256(benign_path), dga_path.name: _sha256(dga_path)},
    )


def english_words(limit: int = DICTIONARY_SIZE) -> list[str]:
    """The most frequent English words (wordsegment's web unigram counts)."""
    text = resources.files("wordsegment").joinpath("unigrams.txt").read_text("utf-8")
    words: list[str] = []
    for line in text.splitlines():
        word = line.split("\t", 1)[0]
        if len(word) >= 3 and word.isalpha() and word.isascii():
            words.append(word)
            if len(words) >= limit:
                break
    return words


def build_context(benign_train: Sequence[str]) -> FeatureContext:
    batch = split_batch(benign_train)
    lm = TrigramLM.fit(encode_labels(batch.labels))
    counts = Counter(batch.suffixes)
    top = np.log1p(max(counts.values()))
    suffix_log_freq = {s: float(np.log1p(c) / top) for s, c in counts.items() if c >= 3}
    return FeatureContext(lm, Dictionary.from_words(english_words()), suffix_log_freq)


@dataclass(frozen=True, slots=True)
class Features:
    ids: np.ndarray
    valid: np.ndarray
    stats: np.ndarray
    lengths: np.ndarray

    def take(self, idx: np.ndarray) -> Features:
        return Features(self.ids[idx], self.valid[idx], self.stats[idx], self.lengths[idx])

    def scores(self, model: DgaModel) -> np.ndarray:
        z = model.combine(self.ids, self.valid, self.stats, self.lengths)
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


def featurize(names: Sequence[str], ctx: FeatureContext, chunk: int = 20_000) -> Features:
    parts = []
    width = 0
    for start in range(0, len(names), chunk):
        batch = split_batch(names[start : start + chunk])
        enc = encode_labels(batch.labels)
        ids, valid = ngram_buckets(enc)
        parts.append((ids, valid, statistics(batch, enc, ctx), enc.lengths))
        width = max(width, ids.shape[1])

    def pad(a: np.ndarray, fill: Any) -> np.ndarray:
        out = np.full((a.shape[0], width), fill, dtype=a.dtype)
        out[:, : a.shape[1]] = a
        return out

    return Features(
        np.concatenate([pad(p[0], 0) for p in parts]),
        np.concatenate([pad(p[1], False) for p in parts]),
        np.concatenate([p[2] for p in parts]),
        np.concatenate([p[3] for p in parts]),
    )


def design_matrix(f: Features, binner: StatBinner) -> sp.csr_matrix:
    n = f.ids.shape[0]
    counts = np.maximum(f.valid.sum(axis=1), 1)
    rows, cols = np.nonzero(f.valid)
    ngram = sp.csr_matrix((1.0 / counts[rows], (rows, f.ids[rows, cols])), shape=(n, NGRAM_BUCKETS))
    ngram.sum_duplicates()
    bins = binner.transform(f.stats)
    onehot = sp.csr_matrix(
        (np.ones(bins.size), (np.repeat(np.arange(n), bins.shape[1]), bins.reshape(-1))),
        shape=(n, binner.total_bins),
    )
    return sp.hstack([ngram, onehot], format="csr")


def fit(
    ctx: FeatureContext, f: Features, y: np.ndarray, seed: int = SEED
) -> tuple[DgaModel, float]:
    t0 = time.perf_counter()
    binner = StatBinner.fit(f.stats)
    X = design_matrix(f, binner)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    # Benign names weigh more: the operating points are at FPR 1e-3 and below.
    weights = {0: 2.0 * n_pos / max(n_neg, 1), 1: 1.0}
    clf = LogisticRegression(
        C=C_REG, solver="liblinear", class_weight=weights, max_iter=200, random_state=seed
    )
    clf.fit(X, y)
    coef = clf.coef_.ravel()
    model = DgaModel(
        feature_version=FEATURE_VERSION,
        context=ctx,
        binner=binner,
        ngram_weights=coef[:NGRAM_BUCKETS].astype(np.float32),
        bin_weights=coef[NGRAM_BUCKETS:].astype(np.float32),
        bias=float(clf.intercept_[0]),
    )
    return model, time.perf_counter() - t0


def split_benign(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(len(ds.benign))
    held = idx % HOLDOUT_EVERY == HOLDOUT_EVERY - 1
    return idx[~held], idx[held]


def threshold_at_fpr(benign_scores: np.ndarray, fpr: float) -> float:
    """Smallest threshold whose false-positive rate on ``benign_scores`` is <= fpr."""
    s = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(fpr * len(s)))
    return float(np.nextafter(s[allowed], np.inf)) if allowed < len(s) else 0.0


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def train(data_dir: Path, seed: int = SEED) -> tuple[DgaModel, dict[str, Any]]:
    """Fit the production model on all DGA families and the benign training split."""
    ds = load_dataset(data_dir)
    train_idx, hold_idx = split_benign(ds)
    benign_train = [ds.benign[i] for i in train_idx]
    benign_hold = [ds.benign[i] for i in hold_idx]
    ctx = build_context(benign_train)
    synthetic = synthetic_dga(SYNTHETIC_NAMES, english_words(20_000), seed)
    f = featurize(benign_train + ds.dga + synthetic, ctx)
    y = np.concatenate([np.zeros(len(benign_train)), np.ones(len(ds.dga) + len(synthetic))]).astype(
        int
    )
    model, secs = fit(ctx, f, y, seed)
    hold_scores = model.score_batch(benign_hold)
    thresholds = {f"fpr_{e}": threshold_at_fpr(hold_scores, float(e)) for e in ("1e-3", "1e-4")}
    meta = {
        "seed": seed,
        "data_sha256": ds.sha256,
        "library_versions": library_versions(),
        "training": {
            "benign_train": len(benign_train),
            "benign_holdout": len(benign_hold),
            "dga": len(ds.dga),
            "synthetic_dga": len(synthetic),
            "families": sorted(set(ds.family.tolist())),
            "seconds": round(secs, 1),
            "C": C_REG,
            "dictionary_words": int(model.context.dictionary.words.size),
        },
        "thresholds": thresholds,
    }
    return model, meta


def _band_fpr(scores: np.ndarray, ranks: np.ndarray, thr: float) -> list[dict[str, Any]]:
    out = []
    for lo, hi in RANK_BANDS:
        sel = (ranks >= lo) & (ranks <= hi)
        n = int(sel.sum())
        fp = int((scores[sel] >= thr).sum())
        out.append({"band": f"{lo}-{hi}", "n": n, "fp": fp, "fpr": fp / n if n else 0.0})
    return out


def evaluate(
    data_dir: Path, seed: int = SEED, families: Sequence[str] | None = None, log: Any = print
) -> dict[str, Any]:
    """Leave-family-out cross-validation and the benign hold-out by rank band."""
    ds = load_dataset(data_dir)
    train_idx, hold_idx = split_benign(ds)
    benign_train = [ds.benign[i] for i in train_idx]
    ctx = build_context(benign_train)
    t0 = time.perf_counter()
    f_benign = featurize(benign_train, ctx)
    f_hold = featurize([ds.benign[i] for i in hold_idx], ctx)
    f_dga = featurize(ds.dga, ctx)
    f_syn = featurize(synthetic_dga(SYNTHETIC_NAMES, english_words(20_000), seed), ctx)
    hold_ranks = ds.benign_rank[hold_idx]
    # Thresholds are set on one half of the hold-out and FPR measured on the other.
    calib = np.arange(len(hold_idx)) % 2 == 0
    log(f"features for {len(ds.benign) + len(ds.dga)} names in {time.perf_counter() - t0:.1f}s")

    def concat(a: Features, b: Features) -> Features:
        w = max(a.ids.shape[1], b.ids.shape[1])

        def pad(x: np.ndarray, fill: Any) -> np.ndarray:
            out = np.full((x.shape[0], w), fill, dtype=x.dtype)
            out[:, : x.shape[1]] = x
            return out

        return Features(
            np.concatenate([pad(a.ids, 0), pad(b.ids, 0)]),
            np.concatenate([pad(a.valid, False), pad(b.valid, False)]),
            np.concatenate([a.stats, b.stats]),
            np.concatenate([a.lengths, b.lengths]),
        )

    def fit_with(dga: np.ndarray) -> DgaModel:
        """A model trained on the benign training split, the DGA names where
        ``dga`` is True, and the synthetic names."""
        features = concat(concat(f_benign, f_dga.take(np.flatnonzero(dga))), f_syn)
        n_pos = int(dga.sum()) + f_syn.ids.shape[0]
        y = np.concatenate([np.zeros(len(benign_train)), np.ones(n_pos)]).astype(int)
        return fit(ctx, features, y, seed)[0]

    results: list[dict[str, Any]] = []
    names = families or sorted(set(ds.family.tolist()))
    for fam in names:
        held = ds.family == fam
        started = time.perf_counter()
        model = fit_with(~held)
        secs = time.perf_counter() - started
        hold_scores = f_hold.scores(model)
        fam_scores = f_dga.take(np.flatnonzero(held)).scores(model)
        row: dict[str, Any] = {
            "family": fam,
            "n": int(held.sum()),
            "wordlist": fam in WORDLIST_FAMILIES,
            "auc": float(
                roc_auc_score(
                    np.r_[np.zeros(len(hold_scores)), np.ones(len(fam_scores))],
                    np.r_[hold_scores, fam_scores],
                )
            ),
        }
        for e in ("1e-3", "1e-4"):
            thr = threshold_at_fpr(hold_scores[calib], float(e))
            row[f"tpr_at_{e}"] = float((fam_scores >= thr).mean())
            row[f"test_fpr_at_{e}"] = float((hold_scores[~calib] >= thr).mean())
        results.append(row)
        log(
            f"{fam:20s} n={row['n']:5d} auc={row['auc']:.5f} "
            f"tpr@1e-3={row['tpr_at_1e-3']:.4f} tpr@1e-4={row['tpr_at_1e-4']:.4f} ({secs:.0f}s)"
        )

    # The ceiling: the same operating point with every family seen in training
    # (every other name of each family trains, in generation order; the rest test).
    seen_train = np.zeros(len(ds.dga), dtype=bool)
    for fam in set(ds.family.tolist()):
        seen_train[np.flatnonzero(ds.family == fam)[::2]] = True
    model = fit_with(seen_train)
    thr = threshold_at_fpr(f_hold.scores(model)[calib], 1e-3)
    for row in results:
        test = np.flatnonzero((ds.family == row["family"]) & ~seen_train)
        row["seen_tpr_at_1e-3"] = float((f_dga.take(test).scores(model) >= thr).mean())
    log(
        "seen families: " + ", ".join(f"{r['family']} {r['seen_tpr_at_1e-3']:.3f}" for r in results)
    )

    # Benign false positives by rank band, for a model trained on every family.
    model = fit_with(np.ones(len(ds.dga), dtype=bool))
    hold_scores = f_hold.scores(model)
    bands = {}
    for e in ("1e-3", "1e-4"):
        thr = threshold_at_fpr(hold_scores[calib], float(e))
        bands[e] = {
            "threshold": thr,
            "holdout_test_half": _band_fpr(hold_scores[~calib], hold_ranks[~calib], thr),
            "all_top_100k": _band_fpr(
                np.r_[f_benign.scores(model), hold_scores],
                np.r_[ds.benign_rank[train_idx], hold_ranks],
                thr,
            ),
        }
    # the benign names that set the 1e-3 threshold: the top of the calibration half
    calib_idx = np.flatnonzero(calib)
    top = calib_idx[np.argsort(-hold_scores[calib_idx], kind="stable")[:TOP_BENIGN_SHOWN]]
    top_benign = [
        {
            "domain": ds.benign[hold_idx[i]],
            "rank": int(hold_ranks[i]),
            "score": float(hold_scores[i]),
        }
        for i in top
    ]
    random_tpr = [r["tpr_at_1e-3"] for r in results if not r["wordlist"]]
    word_tpr = [r["tpr_at_1e-3"] for r in results if r["wordlist"]]
    seen_random = [r["seen_tpr_at_1e-3"] for r in results if not r["wordlist"]]
    seen_word = [r["seen_tpr_at_1e-3"] for r in results if r["wordlist"]]
    return {
        "seed": seed,
        "synthetic_dga": SYNTHETIC_NAMES,
        "feature_version": FEATURE_VERSION,
        "data_sha256": ds.sha256,
        "library_versions": library_versions(),
        "families": results,
        "benign_bands": bands,
        "top_benign_calibration": top_benign,
        "summary": {
            "median_tpr_at_1e-3_random": float(np.median(random_tpr)) if random_tpr else None,
            "median_tpr_at_1e-3_wordlist": float(np.median(word_tpr)) if word_tpr else None,
            "seen_median_tpr_at_1e-3_random": float(np.median(seen_random))
            if seen_random
            else None,
            "seen_median_tpr_at_1e-3_wordlist": float(np.median(seen_word)) if seen_word else None,
            "median_auc": float(np.median([r["auc"] for r in results])),
        },
    }
