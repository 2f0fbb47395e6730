"""The model card shows what the evaluation measured, including its ceiling."""

from __future__ import annotations

import pytest

from models.model_card import render_model_card

pytestmark = pytest.mark.unit


def _report() -> dict:  # type: ignore[type-arg]
    family = {
        "family": "dnschanger",
        "n": 5000,
        "wordlist": False,
        "auc": 0.98781,
        "tpr_at_1e-3": 0.0028,
        "tpr_at_1e-4": 0.0,
        "test_fpr_at_1e-3": 0.0011,
        "seen_tpr_at_1e-3": 0.0312,
    }
    band = {"band": "1-1000", "n": 100, "fp": 0, "fpr": 0.0}
    return {
        "seed": 1,
        "synthetic_dga": 10,
        "feature_version": "dga-features/2",
        "data_sha256": {},
        "library_versions": {},
        "families": [family],
        "benign_bands": {
            "1e-3": {"threshold": 0.99, "holdout_test_half": [band], "all_top_100k": [band]}
        },
        "top_benign_calibration": [{"domain": "hkcplzqitt.net", "rank": 18445, "score": 0.9996}],
        "summary": {
            "median_tpr_at_1e-3_random": 0.0028,
            "median_tpr_at_1e-3_wordlist": None,
            "seen_median_tpr_at_1e-3_random": 0.0312,
            "seen_median_tpr_at_1e-3_wordlist": None,
            "median_auc": 0.98781,
        },
    }


def test_card_shows_the_seen_family_ceiling_and_the_names_that_set_the_threshold() -> None:
    card = render_model_card(_report())
    assert (
        "| dnschanger | 5000 | random/other | 0.98781 | 0.0028 | 0.0000 | 0.00110 | 0.0312 |"
        in card
    )
    assert (
        "each family seen in training: median TPR at FPR 1e-3, random-character | 0.0312 |" in card
    )
    assert "| `hkcplzqitt.net` | 18445 | 0.999600 |" in card
