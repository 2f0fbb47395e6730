"""The shipped DGA artifact loads, scores sensibly, and refuses mismatches."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from detectors.dga import CachedScorer
from detectors.features import FEATURE_VERSION
from models import artifact

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def model():  # type: ignore[no-untyped-def]
    m, meta = artifact.load()
    return m, meta


def test_artifact_records_provenance(model) -> None:  # type: ignore[no-untyped-def]
    _, meta = model
    assert meta["feature_version"] == FEATURE_VERSION
    assert set(meta["data_sha256"]) == {"benign_top.csv", "dga_train.csv"}
    assert {"numpy", "scikit-learn", "python"} <= set(meta["library_versions"])
    assert isinstance(meta["seed"], int)
    t = meta["thresholds"]
    assert 0 < t["evidence"] < t["block"] < 1
    assert meta["calibration"]["evidence_fpr"] == 0.01


def test_logits_equal_the_training_design_matrix(model) -> None:  # type: ignore[no-untyped-def]
    """Serving's gather-sum and training's sparse matrix are one computation."""
    from models.train_dga import design_matrix

    m, _ = model
    names = ["google.com", "xjwqkzpvhrtq.com", "www.bbc.co.uk", "a" * 63 + ".net", "com",
             "zq-9_x.duckdns.org", "d1a2b3c4e5f6g7.cloudfront.net"]  # fmt: skip
    x = design_matrix(names)
    expected = x @ m.ngram_weights.astype(np.float64) + m.bias
    expected[4] = -20.0  # 'com' has no label to judge: the bare-suffix logit
    np.testing.assert_allclose(m.logits(names), expected, rtol=0, atol=1e-4)


def test_load_refuses_bad_thresholds(tmp_path: Path) -> None:
    stem = tmp_path / "m"
    for suffix in (".npz", ".json"):
        shutil.copy(artifact.DEFAULT_STEM.with_suffix(suffix), stem.with_suffix(suffix))
    meta = json.loads(stem.with_suffix(".json").read_text())
    for bad in (
        {"evidence": 0.9},
        {"evidence": 0.99, "block": 0.9},
        {"evidence": 0.5, "block": 1.0},
    ):
        stem.with_suffix(".json").write_text(json.dumps({**meta, "thresholds": bad}))
        with pytest.raises(artifact.ArtifactError, match="threshold"):
            artifact.load(stem)


def test_scores_are_probabilities_and_rank_dga_above_benign(model) -> None:  # type: ignore[no-untyped-def]
    m, _ = model
    benign = ["google.com", "wikipedia.org", "www.bbc.co.uk", "github.com", "stackoverflow.com"]
    dga = [
        "xjwqkzpvhrtq.com",
        "qzkfhwpxl.biz",
        "a8f3e9d0c1b2a4f5e6d7c8b9a0f1e2d3.tk",
        "kqjxwzvbnm.net",
    ]
    s = m.score_batch(benign + dga)
    assert ((s >= 0) & (s <= 1)).all()
    assert s[: len(benign)].max() < 0.05
    assert s[len(benign) :].min() > 0.5


def test_empty_batch_and_bare_suffix(model) -> None:  # type: ignore[no-untyped-def]
    m, _ = model
    assert m.score_batch([]).shape == (0,)
    assert m.score_batch(["com"])[0] < 1e-6


def test_cached_scorer_matches_model_and_bounds_memory(model) -> None:  # type: ignore[no-untyped-def]
    m, _ = model
    scorer = CachedScorer(m, max_entries=3)
    names = ["a.com", "B.com.", "c.com", "d.com", "a.com"]
    got = scorer.score_batch(names)
    np.testing.assert_allclose(got, m.score_batch(names))
    assert len(scorer) == 3
    scorer.score_batch(["d.com", "c.com"])
    assert scorer.hits >= 2


def test_names_sharing_registrable_score_alike(model) -> None:  # type: ignore[no-untyped-def]
    """What the cache key relies on: the subdomains never change a score."""
    m, _ = model
    names = ["a1.cdn.example.com", "zz9-q.cdn.example.com", "x.y.example.com", "q.example.com"]
    s = m.score_batch([*names, "example.com", "example.net", "example.duckdns.org"])
    assert s[0] == s[1] == s[2] == s[3] == s[4]
    assert s[5] != s[4]  # the public suffix is a feature of its own
    assert s[6] != s[4]
    scorer = CachedScorer(m)
    np.testing.assert_array_equal(scorer.score_batch(names), s[:4])
    assert scorer.misses == 1  # four names, one model input
    scorer.score_batch(["other.cdn.example.com", "r.example.net"])
    assert (scorer.misses, scorer.hits) == (2, 1)  # a batch counts one miss per key


def test_a_names_score_does_not_depend_on_its_batch(model, shared_data: Path) -> None:  # type: ignore[no-untyped-def]
    # names of every length group, mixed; scored together, one by one, and reversed
    m, _ = model
    rows = (shared_data / "dga_train.csv").read_text().splitlines()[1::400]
    names = [r.split(",")[1] for r in rows] + ["google.com", "www.bbc.co.uk", "com", ""]
    together = m.score_batch(names)
    alone = np.array([m.score_batch([n])[0] for n in names])
    reversed_ = m.score_batch(names[::-1])[::-1]
    # equal up to the float32 n-gram sum, whose padding differs with the batch
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-5)
    np.testing.assert_allclose(together, reversed_, rtol=0, atol=1e-5)
    assert {len(n.split(".")[0]) > 16 for n in names} == {True, False}


def test_load_refuses_other_feature_version(tmp_path: Path) -> None:
    stem = tmp_path / "m"
    for suffix in (".npz", ".json"):
        shutil.copy(artifact.DEFAULT_STEM.with_suffix(suffix), stem.with_suffix(suffix))
    meta = json.loads(stem.with_suffix(".json").read_text())
    meta["feature_version"] = "dga-features/0"
    stem.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(artifact.ArtifactError, match="retrain"):
        artifact.load(stem)


def test_load_refuses_tampered_arrays(tmp_path: Path) -> None:
    stem = tmp_path / "m"
    shutil.copy(artifact.DEFAULT_STEM.with_suffix(".json"), stem.with_suffix(".json"))
    with np.load(artifact.DEFAULT_STEM.with_suffix(".npz"), allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["ngram_weights"][0] += 1.0
    np.savez(stem.with_suffix(".npz"), **arrays)
    with pytest.raises(artifact.ArtifactError, match="sha256"):
        artifact.load(stem)


def test_artifact_contains_no_pickled_objects() -> None:
    with np.load(artifact.DEFAULT_STEM.with_suffix(".npz"), allow_pickle=False) as npz:
        for key in npz.files:
            assert npz[key].dtype != object, key
