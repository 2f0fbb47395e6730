"""The model card shows what the evaluation measured: model and baseline side by
side, the families where the model is worse, and the names that set the threshold."""

from __future__ import annotations

from typing import Any

import pytest

from models.model_card import render_model_card

pytestmark = pytest.mark.unit


def _rates(auc: float, t2: float, t3: float, head: float, top: float) -> dict[str, float]:
    return {"auc": auc, "tpr_at_0.01": t2, "tpr_at_0.001": t3, "tpr_at_0.001_head": head,
            "tpr_above_all_benign": top}  # fmt: skip


def _report(worse: list[str]) -> dict[str, Any]:
    summary: dict[str, Any] = {
        f"{v}_median_{k}_{style}": 0.5
        for v in ("model", "baseline")
        for k in ("tpr_at_0.01", "tpr_at_0.001", "tpr_at_0.001_head", "tpr_above_all_benign")
        for style in ("random", "wordlist")
    }
    summary.update(model_median_auc=0.99, baseline_median_auc=0.98)
    summary["model_median_tpr_at_0.001_random"] = 0.4646
    summary["baseline_median_tpr_at_0.001_random"] = 0.421
    summary["families_worse_than_baseline_at_0.001"] = worse
    return {
        "seed": 1,
        "synthetic_dga": 10,
        "feature_version": "dga-features/3",
        "data_sha256": {},
        "library_versions": {},
        "seconds": 5,
        "families": [
            {
                "family": "cryptolocker",
                "n": 5000,
                "wordlist": False,
                "model": _rates(0.9982, 0.985, 0.4646, 0.7338, 0.0),
                "baseline": _rates(0.9955, 0.907, 0.421, 0.5268, 0.0),
            }
        ],
        "top_benign_calibration": [{"domain": "hkcplzqitt.net", "rank": 18445, "score": 0.9996}],
        "summary": summary,
    }


def test_card_puts_model_and_baseline_side_by_side() -> None:
    card = render_model_card(_report([]))
    row = "| cryptolocker | 5000 | random | 0.9982 | 0.465 | 0.421 | - | - | 0.734 | 0.527 | 0.985 | 0.907 | 0.000 |"
    assert row in card
    assert "| median TPR at FPR 1e-3, random-character | 0.465 | 0.421 | - |" in card
    assert "| `hkcplzqitt.net` | 18445 | 0.999600 |" in card
    assert "by > 0.05 at FPR 1e-3 | 0 |" in card


def test_card_shows_the_ensemble_beside_them_when_measured() -> None:
    report = _report(["cryptolocker"])
    report["families"][0]["ensemble"] = _rates(0.999, 0.99, 0.5, 0.8, 0.0)
    report["summary"]["ensemble_median_tpr_at_0.001_random"] = 0.5
    report["summary"]["families_worse_than_baseline_at_0.001_ensemble"] = []
    card = render_model_card(report)
    assert "| cryptolocker | 5000 | random | 0.9982 | 0.465 | 0.421 | 0.500 |" in card
    assert "| median TPR at FPR 1e-3, random-character | 0.465 | 0.421 | 0.500 |" in card
    assert "at FPR 1e-3 | 1 (cryptolocker) | | 0 | 0 |" in card


def test_card_names_the_families_where_the_model_is_worse() -> None:
    card = render_model_card(_report(["pitou", "m0yv"]))
    assert "by > 0.05 at FPR 1e-3 | 2 (pitou, m0yv) |" in card


def test_card_shows_the_seen_family_ceiling_when_measured() -> None:
    report = _report([])
    report["families"][0]["seen"] = {"model": 0.62, "baseline": 0.31}
    report["summary"].update({
        "model_median_tpr_at_0.001_seen_random": 0.62, "model_families_seen_at_target": 0,
        "baseline_median_tpr_at_0.001_seen_random": 0.31, "baseline_families_seen_at_target": 0,
    })  # fmt: skip
    card = render_model_card(report)
    assert "| cryptolocker | 5000 | random | 0.9982 | 0.465 | 0.421 | - | 0.620 |" in card
    assert "every family seen in training | 0.620 (0 families >= 0.9) | 0.310 (0 families" in card
