"""DGA scoring throughput on one core: dnsguard's scorer vs scikit-learn's predict_proba.

Both paths score the same distinct names in batches of 1,000 with the same
trained weights, interleaved round by round; medians are reported.

* ``dnsguard``: ``DgaModel.score_batch`` (names -> scores, numpy gather-sum);
* ``sklearn``: the same feature code, a CSR design matrix, and
  ``LogisticRegression.predict_proba`` with the same coefficients;
* ``sklearn predict_proba only``: the model call alone on a prebuilt matrix;
* ``cached``: ``CachedScorer`` on names it has already seen.

Run: ``.venv/bin/python -m bench.bench_dga`` (prints a table, writes bench/results/dga.json).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import json
import platform
import random
import statistics
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from detectors.dga import CachedScorer
from models import artifact
from models.train_dga import design_matrix, load_dataset

BATCH = 1000
ROUNDS = 7
BATCHES_PER_ROUND = 20
DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OUT = Path(__file__).resolve().parent / "results" / "dga.json"


def main() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
    model, meta = artifact.load()
    ds = load_dataset(DATA)
    names = ds.benign + ds.dga
    random.Random(7).shuffle(names)
    batches = [names[i * BATCH : (i + 1) * BATCH] for i in range(ROUNDS * BATCHES_PER_ROUND)]

    clf = LogisticRegression()
    clf.classes_ = np.array([0, 1])
    clf.coef_ = model.ngram_weights.astype(np.float64)[None, :]
    clf.intercept_ = np.array([model.bias])

    def ours(batch: list[str]) -> np.ndarray:
        return model.score_batch(batch)

    def sk(batch: list[str]) -> np.ndarray:
        out: np.ndarray = clf.predict_proba(design_matrix(batch))[:, 1]
        return out

    # Same answers from both paths (float32 weights: tiny rounding differences).
    check = batches[0]
    assert np.allclose(ours(check), sk(check), atol=1e-4)

    prebuilt = [design_matrix(b) for b in batches[:BATCHES_PER_ROUND]]
    cached = CachedScorer(model, max_entries=len(names))
    for b in batches[:BATCHES_PER_ROUND]:
        cached.score_batch(b)

    rates: dict[str, list[float]] = {
        "dnsguard": [],
        "sklearn": [],
        "sklearn predict_proba only": [],
        "cached": [],
    }
    for r in range(ROUNDS):
        chunk = batches[r * BATCHES_PER_ROUND : (r + 1) * BATCHES_PER_ROUND]
        for label, fn, items in (
            ("dnsguard", ours, chunk),
            ("sklearn", sk, chunk),
            ("sklearn predict_proba only", lambda x: clf.predict_proba(x)[:, 1], prebuilt),
            ("cached", cached.score_batch, batches[:BATCHES_PER_ROUND]),
        ):
            t0 = time.perf_counter()
            for item in items:
                fn(item)
            rates[label].append(len(items) * BATCH / (time.perf_counter() - t0))

    med = {k: statistics.median(v) for k, v in rates.items()}
    print(
        f"DGA scoring, batches of {BATCH}, one core, median of {ROUNDS} rounds x {BATCHES_PER_ROUND} batches"
    )
    print(f"{'path':32s} {'names/s':>12s} {'vs sklearn':>11s}")
    for k, v in med.items():
        print(f"{k:32s} {v:12,.0f} {v / med['sklearn']:10.2f}x")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps(
            {
                "bench": "dga",
                "batch": BATCH,
                "rounds": ROUNDS,
                "median_names_per_s": med,
                "all_rounds": rates,
                "machine": {"python": platform.python_version(), "cpu_count": os.cpu_count()},
                "model_feature_version": meta["feature_version"],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
