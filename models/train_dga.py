"""Train and evaluate the DGA model from the labelled data in ``shared/data``.

``train`` fits the production artifact and calibrates its two score levels on
benign names the model did not see (two-fold cross-fitting over the whole
benign list). ``evaluate`` holds each DGA family out of training in turn, so
its figures describe families the model never saw, and measures a naive
baseline (character 2-4-grams of the name without its TLD, same learner)
side by side on the same splits. All randomness is seeded; the artifact
records data hashes, library versions, the feature version, the seed and the
thresholds.
"""

from __future__ import annotations

import csv
import hashlib
import os
import platform
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TypeAlias

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
import sklearn
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from detectors.dga import DgaModel
from detectors.features import (
    FEATURE_VERSION,
    NGRAM_BUCKETS,
    Dictionary,
    encode_labels,
    ngram_buckets,
    ngram_scale,
    split_batch,
    suffix_buckets,
)
from models.synthetic import synthetic_dga

SEED = 20261125
WORDLIST_FAMILIES = ("suppobox", "rovnix")
DICTIONARY_SIZE = 40_000
C_REG = 1.0
BENIGN_WEIGHT = 2.0  # benign names weigh twice the DGA names in total
SYNTHETIC_NAMES = 40_000
EVIDENCE_FPR = 1e-2  # one benign name in a hundred counts as DGA-like evidence
BLOCK_MARGIN = 1.0  # logits above the highest benign name's
TOP_BENIGN_SHOWN = 25
HEAD_RANK = 20_000  # the ranking's head: names a cluster asks most

# a scipy.sparse CSR matrix (scipy ships no type information)
Matrix: TypeAlias = Any
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Dataset:
    benign: list[str]
    benign_rank: npt.NDArray[np.int64]
    dga: list[str]
    family: npt.NDArray[np.str_]
    sha256: dict[str, str]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def load_dataset(data_dir: Path) -> Dataset:
    benign_path = data_dir / "benign_top.csv"
    dga_path = data_dir / "dga_train.csv"
    with benign_path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with dga_path.open(newline="") as fh:
        drows = list(csv.DictReader(fh))
    return Dataset(
        benign=[r["domain"] for r in rows],
        benign_rank=np.array([int(r["rank"]) for r in rows], dtype=np.int64),
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


def design_matrix(names: Sequence[str], chunk: int = 20_000) -> Matrix:
    """The model's features as a sparse matrix: the same buckets and weights
    ``DgaModel.logits_of`` gathers, so ``X @ w + b`` is its logit."""
    parts = []
    for start in range(0, len(names), chunk):
        batch = split_batch(names[start : start + chunk])
        ids, valid = ngram_buckets(encode_labels(batch.labels))
        scale = ngram_scale(valid)
        rows, cols = np.nonzero(valid)
        n = len(batch.labels)
        suffix = suffix_buckets(batch.suffixes)
        private = np.flatnonzero(suffix < NGRAM_BUCKETS)  # ICANN suffixes have no feature
        m = sp.csr_matrix(
            (
                np.r_[scale[rows].astype(np.float64), np.ones(private.size)],
                (np.r_[rows, private], np.r_[ids[rows, cols], suffix[private]]),
            ),
            shape=(n, NGRAM_BUCKETS),
        )
        m.sum_duplicates()
        parts.append(m)
    if not parts:
        return sp.csr_matrix((0, NGRAM_BUCKETS))
    return sp.vstack(parts, format="csr")


def baseline_matrix(names: Sequence[str]) -> Matrix:
    """The naive baseline's features: character 2-4-grams of the name without its TLD."""
    hv = HashingVectorizer(
        analyzer="char", ngram_range=(2, 4), n_features=1 << 20, alternate_sign=False, norm="l2"
    )
    out: Matrix = hv.transform([n.lower().rstrip(".").rsplit(".", 1)[0] for n in names])
    return out


def fit_linear(x: Matrix, y: npt.NDArray[np.int64], seed: int = SEED) -> LogisticRegression:
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    clf = LogisticRegression(
        C=C_REG,
        solver="liblinear",
        class_weight={0: BENIGN_WEIGHT * n_pos / max(n_neg, 1), 1: 1.0},
        max_iter=300,
        random_state=seed,
    )
    clf.fit(x, y)
    return clf


def _labels(n_benign: int, n_dga: int) -> npt.NDArray[np.int64]:
    out: npt.NDArray[np.int64] = np.r_[
        np.zeros(n_benign, dtype=np.int64), np.ones(n_dga, dtype=np.int64)
    ]
    return out


def threshold_at_fpr(benign_scores: FloatArray, fpr: float) -> float:
    """Smallest threshold whose false-positive rate on ``benign_scores`` is <= fpr."""
    s = np.sort(benign_scores)[::-1]
    allowed = int(np.floor(fpr * len(s)))
    return float(np.nextafter(s[allowed], np.inf)) if allowed < len(s) else float(s[-1])


def sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))
    return out


def calibrate(oof_logits: FloatArray) -> dict[str, float]:
    """The two score levels from out-of-fold benign logits: ``evidence`` at
    ``EVIDENCE_FPR``, ``block`` ``BLOCK_MARGIN`` logits above the highest."""
    top = float(oof_logits.max()) + BLOCK_MARGIN
    return {
        "evidence": threshold_at_fpr(sigmoid(oof_logits), EVIDENCE_FPR),
        "block": float(sigmoid(np.array([top]))[0]),
    }


def library_versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "scikit-learn": sklearn.__version__,
    }


def benign_folds(n: int) -> npt.NDArray[np.int64]:
    """Two folds of the benign list, alternating by rank (so both span every band)."""
    return np.arange(n, dtype=np.int64) % 2


def train(
    data_dir: Path, seed: int = SEED, log: Callable[[str], Any] = print
) -> tuple[DgaModel, dict[str, Any]]:
    """Fit the production model on every benign name, every DGA family and the
    synthetic names; calibrate its thresholds on cross-fitted benign scores."""
    t0 = time.perf_counter()
    ds = load_dataset(data_dir)
    synthetic = synthetic_dga(SYNTHETIC_NAMES, english_words(20_000), seed)
    xb, xd = design_matrix(ds.benign), design_matrix(ds.dga + synthetic)
    log(f"features in {time.perf_counter() - t0:.0f}s")
    fold = benign_folds(len(ds.benign))
    oof = np.empty(len(ds.benign))
    for k in (0, 1):
        train_rows = np.flatnonzero(fold != k)
        clf = fit_linear(sp.vstack([xb[train_rows], xd], format="csr"),
                         _labels(train_rows.size, xd.shape[0]), seed)  # fmt: skip
        oof[fold == k] = clf.decision_function(xb[np.flatnonzero(fold == k)])
        log(f"cross-fit {k + 1}/2 in {time.perf_counter() - t0:.0f}s")
    clf = fit_linear(sp.vstack([xb, xd], format="csr"), _labels(xb.shape[0], xd.shape[0]), seed)
    thresholds = calibrate(oof)
    model = DgaModel(
        feature_version=FEATURE_VERSION,
        dictionary=Dictionary.from_words(english_words()),
        ngram_weights=clf.coef_.ravel().astype(np.float32),
        bias=float(clf.intercept_[0]),
        thresholds=thresholds,
    )
    meta = {
        "seed": seed,
        "data_sha256": ds.sha256,
        "library_versions": library_versions(),
        "training": {
            "benign": len(ds.benign),
            "dga": len(ds.dga),
            "synthetic_dga": len(synthetic),
            "families": sorted(set(ds.family.tolist())),
            "seconds": round(time.perf_counter() - t0, 1),
            "C": C_REG,
            "benign_weight": BENIGN_WEIGHT,
            "dictionary_words": int(model.dictionary.words.size),
        },
        "calibration": {
            "evidence_fpr": EVIDENCE_FPR,
            "block_margin_logits": BLOCK_MARGIN,
            "highest_benign": ds.benign[int(np.argmax(oof))],
        },
    }
    return model, meta


def fit_without(data_dir: Path, families: Sequence[str], seed: int = SEED) -> DgaModel:
    """A model that has never seen ``families`` nor the odd-ranked benign names.

    It trains on a quarter of the benign list (positions ``0 mod 4``), every
    other family and the synthetic names, and is calibrated on another quarter
    (``2 mod 4``); the odd positions (``benign_folds == 1``) stay unseen, for
    traffic that tests it (``dnsguard eval cluster --unseen``).
    """
    ds = load_dataset(data_dir)
    position = np.arange(len(ds.benign)) % 4
    keep = ~np.isin(ds.family, list(families))
    dga = [n for n, k in zip(ds.dga, keep, strict=True) if k]
    positives = design_matrix(dga + synthetic_dga(SYNTHETIC_NAMES, english_words(20_000), seed))
    xb = design_matrix([n for n, p in zip(ds.benign, position, strict=True) if p == 0])
    clf = fit_linear(sp.vstack([xb, positives], format="csr"),
                     _labels(xb.shape[0], positives.shape[0]), seed)  # fmt: skip
    calib = design_matrix([n for n, p in zip(ds.benign, position, strict=True) if p == 2])
    return DgaModel(
        feature_version=FEATURE_VERSION,
        dictionary=Dictionary.from_words(english_words()),
        ngram_weights=clf.coef_.ravel().astype(np.float32),
        bias=float(clf.intercept_[0]),
        thresholds=calibrate(clf.decision_function(calib)),
    )


# --- leave-family-out evaluation ---------------------------------------------

# Filled in the parent before the worker pool forks, so workers share the
# matrices instead of receiving copies: {"model"|"baseline": (benign, dga, synthetic)}.
_SHARED: dict[str, tuple[Matrix, Matrix, Matrix | None]] = {}
_FAMILY: npt.NDArray[np.str_] = np.array([])


def _fit_and_score(
    variant: str, train: npt.NDArray[np.bool_], seed: int
) -> tuple[FloatArray, FloatArray]:
    """Train ``variant`` on benign fold 0, the DGA names ``train`` marks and (the
    model only) the synthetic names; score benign fold 1 and the other DGA names."""
    xb, xd, xs = _SHARED[variant]
    fold = benign_folds(xb.shape[0])
    parts = [xb[np.flatnonzero(fold == 0)], xd[np.flatnonzero(train)]]
    if xs is not None:
        parts.append(xs)
    n_pos = sum(p.shape[0] for p in parts[1:])
    clf = fit_linear(sp.vstack(parts, format="csr"), _labels(parts[0].shape[0], n_pos), seed)
    benign = clf.decision_function(xb[np.flatnonzero(fold == 1)])
    return benign, clf.decision_function(xd[np.flatnonzero(~train)])


def _held_out(args: tuple[str, str, int]) -> tuple[str, str, FloatArray, FloatArray]:
    """Train without ``family``; score benign fold 1 and the family."""
    variant, family, seed = args
    return variant, family, *_fit_and_score(variant, np.not_equal(_FAMILY, family), seed)


def family_halves(family: npt.NDArray[np.str_]) -> npt.NDArray[np.int64]:
    """0 or 1 for each DGA name: every other name of its family, in the data's order."""
    half = np.zeros(len(family), dtype=np.int64)
    for f in np.unique(family):
        rows = np.flatnonzero(family == f)
        half[rows] = np.arange(rows.size) % 2
    return half


def _seen(args: tuple[str, int]) -> tuple[str, FloatArray, FloatArray]:
    """Train on half of every family's names; score benign fold 1 and the other halves."""
    variant, seed = args
    return variant, *_fit_and_score(variant, family_halves(_FAMILY) == 0, seed)


def _rates(benign: FloatArray, fam: FloatArray, head: npt.NDArray[np.bool_]) -> dict[str, float]:
    auc = roc_auc_score(_labels(len(benign), len(fam)), np.r_[benign, fam])
    row = {"auc": float(auc)}
    for fpr in (1e-2, 1e-3):
        row[f"tpr_at_{fpr:g}"] = float((fam >= threshold_at_fpr(benign, fpr)).mean())
    row["tpr_at_0.001_head"] = float((fam >= threshold_at_fpr(benign[head], 1e-3)).mean())
    row["tpr_above_all_benign"] = float((fam > benign.max() + BLOCK_MARGIN).mean())
    return row


def ensemble(model: tuple[FloatArray, FloatArray],
             baseline: tuple[FloatArray, FloatArray]) -> tuple[FloatArray, FloatArray]:  # fmt: skip
    """The sum of the model's and the baseline's logits, each standardised by
    its own scores on the benign calibration fold: (benign, family) scores of
    an equal-weight ensemble of the two views (one linear model over both
    feature sets, with each view's weights scaled)."""

    def z(benign: FloatArray, x: FloatArray) -> FloatArray:
        out: FloatArray = (x - benign.mean()) / max(float(benign.std()), 1e-12)
        return out

    (bm, fm), (bb, fb) = model, baseline
    return z(bm, bm) + z(bb, bb), z(bm, fm) + z(bb, fb)


def evaluate(
    data_dir: Path,
    seed: int = SEED,
    families: Sequence[str] | None = None,
    workers: int | None = None,
    log: Callable[[str], Any] = print,
) -> dict[str, Any]:
    """Leave-family-out figures of the model and the naive baseline.

    For each family, each variant trains on benign fold 0 (every other name by
    rank), every other family and (model only) the synthetic names, and is
    calibrated on benign fold 1, which it never saw: TPR at FPR 1e-2 (the
    evidence level), at 1e-3 (on all of fold 1, and on its names ranked in the
    top ``HEAD_RANK``), and above every benign name plus the block margin.
    The ``ensemble`` of the two (see :func:`ensemble`) is measured from the
    same fits; it is not the shipped model.

    The ``seen`` figures bound what these learners reach at FPR 1e-3 on this
    benign list at all: each variant trained once on half of every family's
    names (:func:`family_halves`) and tested on the other half, so every
    family is one it has seen.
    """
    global _FAMILY
    t0 = time.perf_counter()
    ds = load_dataset(data_dir)
    synthetic = synthetic_dga(SYNTHETIC_NAMES, english_words(20_000), seed)
    _SHARED["model"] = (design_matrix(ds.benign), design_matrix(ds.dga), design_matrix(synthetic))
    _SHARED["baseline"] = (baseline_matrix(ds.benign), baseline_matrix(ds.dga), None)
    _FAMILY = ds.family
    log(f"features in {time.perf_counter() - t0:.0f}s")
    names = list(families or sorted(set(ds.family.tolist())))
    jobs: list[tuple[str, str, int]] = [(v, f, seed) for f in names for v in ("model", "baseline")]
    per: dict[str, dict[str, Any]] = {
        f: {"family": f, "n": int((ds.family == f).sum()), "wordlist": f in WORDLIST_FAMILIES}
        for f in names
    }
    hold_ranks = ds.benign_rank[benign_folds(len(ds.benign)) == 1]
    head = hold_ranks <= HEAD_RANK
    scores: dict[tuple[str, str], tuple[FloatArray, FloatArray]] = {}
    top_benign: list[dict[str, Any]] = []
    n_workers = workers or max(1, min(len(jobs), os.cpu_count() or 1))
    with ProcessPoolExecutor(n_workers) as pool:
        for variant, family, benign, fam in pool.map(_held_out, jobs):
            per[family][variant] = _rates(benign, fam, head)
            scores[(family, variant)] = (benign, fam)
            if (family, "model") in scores and (family, "baseline") in scores:
                both = ensemble(scores.pop((family, "model")), scores.pop((family, "baseline")))
                per[family]["ensemble"] = _rates(*both, head)
            if variant == "model" and not top_benign:
                hold = [ds.benign[i] for i in np.flatnonzero(benign_folds(len(ds.benign)) == 1)]
                top = np.argsort(-benign, kind="stable")[:TOP_BENIGN_SHOWN]
                top_benign = [{"domain": hold[i], "rank": int(hold_ranks[i]),
                               "score": float(sigmoid(benign[i:i + 1])[0])} for i in top]  # fmt: skip
            log(f"{family:20s} {variant:8s} " + " ".join(
                f"{k}={v:.4f}" for k, v in per[family][variant].items()))  # fmt: skip
        # the ceiling: every family seen in training (half of its names)
        half = family_halves(ds.family)
        tested = ds.family[half == 1]
        for variant, benign, fam in pool.map(_seen, [("model", seed), ("baseline", seed)]):
            threshold = threshold_at_fpr(benign, 1e-3)
            for f in names:
                seen = per[f].setdefault("seen", {})
                seen[variant] = float((fam[tested == f] >= threshold).mean())
            log(f"seen families {variant}: threshold at FPR 1e-3 set")
    rows = [per[f] for f in names]

    def median(style: bool, variant: str, key: str) -> float | None:
        xs = [r[variant][key] for r in rows if r["wordlist"] == style]
        return float(np.median(xs)) if xs else None

    summary: dict[str, Any] = {}
    for variant in ("model", "baseline", "ensemble"):
        for key in ("tpr_at_0.01", "tpr_at_0.001", "tpr_at_0.001_head", "tpr_above_all_benign"):
            summary[f"{variant}_median_{key}_random"] = median(False, variant, key)
            summary[f"{variant}_median_{key}_wordlist"] = median(True, variant, key)
        summary[f"{variant}_median_auc"] = float(np.median([r[variant]["auc"] for r in rows]))
    for variant in ("model", "baseline"):
        seen = [r["seen"][variant] for r in rows if not r["wordlist"]]
        summary[f"{variant}_median_tpr_at_0.001_seen_random"] = (
            float(np.median(seen)) if seen else None
        )
        summary[f"{variant}_families_seen_at_target"] = sum(v >= 0.9 for v in seen)
    for variant, key in (("model", ""), ("ensemble", "_ensemble")):
        summary[f"families_worse_than_baseline_at_0.001{key}"] = [
            r["family"] for r in rows
            if r[variant]["tpr_at_0.001"] < r["baseline"]["tpr_at_0.001"] - 0.05
        ]  # fmt: skip
    return {
        "seed": seed,
        "synthetic_dga": SYNTHETIC_NAMES,
        "feature_version": FEATURE_VERSION,
        "data_sha256": ds.sha256,
        "library_versions": library_versions(),
        "families": rows,
        "top_benign_calibration": top_benign,
        "summary": summary,
        "seconds": round(time.perf_counter() - t0),
    }
