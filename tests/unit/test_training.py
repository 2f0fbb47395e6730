"""Training is reproducible and the artifact round-trips exactly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detectors.dga import DgaModel
from detectors.features import FEATURE_VERSION, Dictionary
from models import artifact
from models.synthetic import synthetic_dga
from models.train_dga import (
    calibrate,
    design_matrix,
    english_words,
    fit_linear,
    sigmoid,
    threshold_at_fpr,
)
from tests.unit import traffic

pytestmark = pytest.mark.unit


def _small_fit(seed: int) -> DgaModel:
    benign = traffic.benign(1500)
    dga = traffic.dga("cryptolocker", 500) + traffic.dga("symmi", 500)
    y = np.r_[np.zeros(len(benign)), np.ones(len(dga))].astype(np.int64)
    clf = fit_linear(design_matrix(benign + dga), y, seed)
    return DgaModel(FEATURE_VERSION, Dictionary.from_words(["face", "book"]),
                    clf.coef_.ravel().astype(np.float32), float(clf.intercept_[0]),
                    calibrate(clf.decision_function(design_matrix(benign))))  # fmt: skip


def test_training_is_reproducible_and_roundtrips(tmp_path: Path) -> None:
    a = _small_fit(1)
    b = _small_fit(1)
    np.testing.assert_array_equal(a.ngram_weights, b.ngram_weights)
    assert a.thresholds == b.thresholds
    artifact.save(a, tmp_path / "m", {"seed": 1})
    loaded, meta = artifact.load(tmp_path / "m")
    names = ["google.com", "qzkfhwpxl.biz", "heivaxgevopofe.ddns.net"]
    np.testing.assert_allclose(loaded.score_batch(names), a.score_batch(names), rtol=1e-6)
    assert meta["seed"] == 1


def test_synthetic_names_are_seeded_and_valid() -> None:
    words = english_words(500)
    assert synthetic_dga(50, words, 3) == synthetic_dga(50, words, 3)
    assert synthetic_dga(50, words, 3) != synthetic_dga(50, words, 4)
    for name in synthetic_dga(200, words, 3):
        label = name.split(".")[0]
        assert 1 <= len(label) <= 63
        assert label.isalnum()


def test_threshold_at_fpr() -> None:
    scores = np.linspace(0, 1, 10_000)
    thr = threshold_at_fpr(scores, 1e-3)
    assert (scores >= thr).mean() <= 1e-3
    assert (scores >= np.nextafter(scores[-11], -np.inf)).mean() > 1e-3


def test_calibration_levels() -> None:
    """Evidence at FPR 1e-2 of the benign logits, block a margin above the highest."""
    logits = np.linspace(-10, 5, 1000)
    t = calibrate(logits)
    assert (sigmoid(logits) >= t["evidence"]).mean() <= 1e-2
    assert (sigmoid(logits) >= t["evidence"]).mean() >= 9e-3
    assert t["block"] == pytest.approx(float(sigmoid(np.array([6.0]))[0]))


def test_the_ensemble_sums_views_standardised_on_their_own_benign_scores() -> None:
    from models.train_dga import ensemble

    benign = np.array([0.0, 1.0, 2.0, 3.0])
    # the second view is the first scaled and shifted: standardised, they agree
    a = (benign, np.array([4.0, -1.0]))
    b = (10 * benign + 7, 10 * np.array([4.0, -1.0]) + 7)
    eb, ef = ensemble(a, b)
    z = (np.array([4.0, -1.0]) - 1.5) / benign.std()
    assert np.allclose(ef, 2 * z)
    assert np.allclose(eb, 2 * (benign - 1.5) / benign.std())
    # a view that separates nothing adds no order of its own
    flat = (np.zeros(4), np.zeros(2))
    assert list(np.argsort(ensemble(a, flat)[1])) == list(np.argsort(a[1]))


def test_family_halves_split_every_family_in_two() -> None:
    from models.train_dga import family_halves

    family = np.array(["a", "b", "a", "a", "b", "c"])
    assert family_halves(family).tolist() == [0, 0, 1, 0, 1, 0]
