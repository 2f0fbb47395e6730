"""Pickle-free DGA model artifacts: arrays in ``.npz``, metadata in ``.json``.

``save`` writes both files atomically; ``load`` reads arrays with
``allow_pickle=False`` and refuses an artifact whose format or feature version
does not match this code, or whose arrays do not match the metadata's hash.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from detectors.dga import DgaModel
from detectors.features import (
    FEATURE_VERSION,
    STAT_NAMES,
    Dictionary,
    FeatureContext,
    StatBinner,
    TrigramLM,
)

FORMAT = "dnsguard-dga/1"
ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_STEM = ARTIFACT_DIR / "dga-v1"


class ArtifactError(ValueError):
    """The artifact is missing, corrupt, or made for other code."""


def _arrays(model: DgaModel) -> dict[str, np.ndarray]:
    edges = model.binner.edges
    return {
        "ngram_weights": model.ngram_weights.astype(np.float32),
        "bin_weights": model.bin_weights.astype(np.float32),
        "bin_edges": np.concatenate(edges).astype(np.float64),
        "bin_edge_counts": np.array([len(e) for e in edges], dtype=np.int64),
        "lm_logp": model.context.lm.logp.astype(np.float32),
        "dictionary": model.context.dictionary.words,
    }


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for key in sorted(arrays):
        h.update(key.encode())
        h.update(np.ascontiguousarray(arrays[key]).tobytes())
    return h.hexdigest()


def _atomic_write(path: Path, write: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save(model: DgaModel, stem: Path, metadata: dict[str, Any]) -> None:
    arrays = _arrays(model)
    meta = {
        **metadata,
        "format": FORMAT,
        "feature_version": model.feature_version,
        "stat_names": list(STAT_NAMES),
        "bias": model.bias,
        "suffix_log_freq": model.context.suffix_log_freq,
        "arrays_sha256": _digest(arrays),
    }
    _atomic_write(stem.with_suffix(".npz"), lambda fh: np.savez_compressed(fh, **arrays))
    body = json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n"
    _atomic_write(stem.with_suffix(".json"), lambda fh: fh.write(body))


def load(stem: Path = DEFAULT_STEM) -> tuple[DgaModel, dict[str, Any]]:
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read DGA artifact {stem}: {exc}") from exc
    if meta.get("format") != FORMAT:
        raise ArtifactError(f"{stem}: format {meta.get('format')!r}, expected {FORMAT!r}")
    if meta.get("feature_version") != FEATURE_VERSION:
        raise ArtifactError(
            f"{stem}: trained on features {meta.get('feature_version')!r}, "
            f"this code computes {FEATURE_VERSION!r}; retrain with `dnsguard train dga`"
        )
    if meta.get("stat_names") != list(STAT_NAMES):
        raise ArtifactError(f"{stem}: statistic names differ from this code's")
    if _digest(arrays) != meta.get("arrays_sha256"):
        raise ArtifactError(f"{stem}: arrays do not match the recorded sha256")
    counts = arrays["bin_edge_counts"]
    splits = np.cumsum(counts)[:-1]
    edges = tuple(np.split(arrays["bin_edges"], splits))
    context = FeatureContext(
        lm=TrigramLM(arrays["lm_logp"].astype(np.float64)),
        dictionary=Dictionary.from_codes(arrays["dictionary"]),
        suffix_log_freq={str(k): float(v) for k, v in meta["suffix_log_freq"].items()},
    )
    try:
        model = DgaModel(
            feature_version=meta["feature_version"],
            context=context,
            binner=StatBinner(edges),
            ngram_weights=arrays["ngram_weights"],
            bin_weights=arrays["bin_weights"],
            bias=float(meta["bias"]),
        )
    except ValueError as exc:
        raise ArtifactError(f"{stem}: {exc}") from exc
    return model, meta
