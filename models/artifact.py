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
from detectors.features import FEATURE_VERSION, Dictionary

FORMAT = "dnsguard-dga/2"
ARTIFACT_DIR = Path(__file__).resolve().parent / "artifacts"
DEFAULT_STEM = ARTIFACT_DIR / "dga-v2"
THRESHOLD_NAMES = ("evidence", "block")


class ArtifactError(ValueError):
    """The artifact is missing, corrupt, or made for other code."""


def _arrays(model: DgaModel) -> dict[str, np.ndarray]:
    return {
        "ngram_weights": model.ngram_weights.astype(np.float32),
        "dictionary": model.dictionary.words,
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
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the worker may run as another user
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
        "bias": model.bias,
        "thresholds": dict(model.thresholds),
        "arrays_sha256": _digest(arrays),
    }
    _atomic_write(
        stem.with_suffix(".npz"),
        lambda fh: np.savez_compressed(
            fh, ngram_weights=arrays["ngram_weights"], dictionary=arrays["dictionary"]
        ),
    )
    body = json.dumps(meta, indent=2, sort_keys=True).encode() + b"\n"
    _atomic_write(stem.with_suffix(".json"), lambda fh: fh.write(body))


def _thresholds(stem: Path, raw: Any) -> dict[str, float]:
    if not isinstance(raw, dict) or set(raw) != set(THRESHOLD_NAMES):
        raise ArtifactError(f"{stem}: thresholds must be exactly {list(THRESHOLD_NAMES)}")
    out = {}
    for key, value in raw.items():
        if not isinstance(value, (int, float)) or not 0.0 < float(value) < 1.0:
            raise ArtifactError(f"{stem}: threshold {key}={value!r} is not in (0, 1)")
        out[key] = float(value)
    if out["evidence"] > out["block"]:
        raise ArtifactError(f"{stem}: the evidence threshold is above the block threshold")
    return out


def load(stem: Path = DEFAULT_STEM) -> tuple[DgaModel, dict[str, Any]]:
    try:
        meta = json.loads(stem.with_suffix(".json").read_text())
        with np.load(stem.with_suffix(".npz"), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (OSError, ValueError) as exc:
        raise ArtifactError(f"cannot read DGA artifact {stem}: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = meta.get("format") if isinstance(meta, dict) else None
        raise ArtifactError(f"{stem}: format {found!r}, expected {FORMAT!r}")
    if meta.get("feature_version") != FEATURE_VERSION:
        raise ArtifactError(
            f"{stem}: trained on features {meta.get('feature_version')!r}, "
            f"this code computes {FEATURE_VERSION!r}; retrain with `dnsguard train dga`"
        )
    if set(arrays) != {"ngram_weights", "dictionary"}:
        raise ArtifactError(f"{stem}: arrays {sorted(arrays)}, expected dictionary, ngram_weights")
    if _digest(arrays) != meta.get("arrays_sha256"):
        raise ArtifactError(f"{stem}: arrays do not match the recorded sha256")
    try:
        model = DgaModel(
            feature_version=meta["feature_version"],
            dictionary=Dictionary.from_codes(arrays["dictionary"]),
            ngram_weights=arrays["ngram_weights"].astype(np.float32),
            bias=float(meta["bias"]),
            thresholds=_thresholds(stem, meta.get("thresholds")),
        )
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, ArtifactError):
            raise
        raise ArtifactError(f"{stem}: {exc}") from exc
    return model, meta
