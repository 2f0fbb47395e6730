"""``dnsguard train dga``, ``dnsguard eval dga`` and ``dnsguard score``."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from models import artifact
from models.model_card import render_model_card

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BATCH = 1000


def _train(args: argparse.Namespace) -> int:
    from models.train_dga import train

    t0 = time.perf_counter()
    model, meta = train(Path(args.data), seed=args.seed)
    artifact.save(model, Path(args.out), meta)
    print(
        f"trained {model.feature_version} DGA model in {time.perf_counter() - t0:.0f}s -> {args.out}.npz/.json; "
        f"thresholds {json.dumps(model.thresholds)}"
    )
    return 0


def _eval(args: argparse.Namespace) -> int:
    from models.train_dga import evaluate

    families = args.family or None
    report = evaluate(Path(args.data), seed=args.seed, families=families, workers=args.workers)
    Path(args.json).write_text(json.dumps(report, indent=2) + "\n")
    Path(args.card).write_text(render_model_card(report))
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {args.json} and {args.card}")
    return 0


def read_names(stream: TextIO) -> Iterator[str]:
    """One domain per line, or a CSV whose header has a ``domain`` column."""
    first = stream.readline()
    if not first:
        return
    header = [h.strip().lower() for h in next(csv.reader([first]))]
    if "domain" in header and len(header) > 1:
        col = header.index("domain")
        for row in csv.reader(stream):
            if len(row) > col and row[col].strip():
                yield row[col].strip()
        return
    if first.strip() and first.strip().lower() != "domain":
        yield first.strip()
    for line in stream:
        if line.strip():
            yield line.strip()


def _score(args: argparse.Namespace) -> int:
    from detectors.dga import CachedScorer

    model, _ = artifact.load(Path(args.model))
    scorer = CachedScorer(model, max_entries=args.cache)
    source = sys.stdin if args.file == "-" else open(args.file, encoding="utf-8")  # noqa: SIM115
    out = io.TextIOWrapper(sys.stdout.buffer, encoding="utf-8", newline="", write_through=False)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["domain", "score"])
    try:
        batch: list[str] = []
        for name in read_names(source):
            batch.append(name)
            if len(batch) >= BATCH:
                writer.writerows(
                    zip(batch, (f"{s:.6f}" for s in scorer.score_batch(batch)), strict=False)
                )
                batch = []
        if batch:
            writer.writerows(
                zip(batch, (f"{s:.6f}" for s in scorer.score_batch(batch)), strict=False)
            )
    finally:
        out.flush()
        out.detach()
        if source is not sys.stdin:
            source.close()
    return 0


def register(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse._SubParsersAction[argparse.ArgumentParser]:
    """Add ``train``, ``eval dga`` and ``score``; returns ``eval``'s subcommands."""
    p = sub.add_parser("train", help="train a model (dga)")
    p.add_argument("what", choices=["dga"])
    p.add_argument(
        "--data", default=str(DEFAULT_DATA), help="folder with benign_top.csv, dga_train.csv"
    )
    p.add_argument("--out", default=str(artifact.DEFAULT_STEM), help="artifact path without suffix")
    p.add_argument("--seed", type=int, default=20261125)
    p.set_defaults(handler=_train)

    p = sub.add_parser("eval", help="evaluate detection: the DGA model, or a simulated cluster")
    what = p.add_subparsers(dest="what", required=True)
    p = what.add_parser("dga", help="leave-family-out evaluation; writes models/MODEL_CARD.md")
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--seed", type=int, default=20261125)
    p.add_argument("--family", action="append", help="evaluate only these held-out families")
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    p.add_argument("--json", default=str(artifact.DEFAULT_STEM.with_suffix(".eval.json")))
    p.add_argument("--card", default=str(Path(artifact.__file__).parent / "MODEL_CARD.md"))
    p.set_defaults(handler=_eval)

    p = sub.add_parser("score", help="score domains: CSV domain,score on stdout")
    p.add_argument(
        "file",
        nargs="?",
        default="-",
        help="one domain per line or CSV with a domain column; - for stdin",
    )
    p.add_argument("--model", default=str(artifact.DEFAULT_STEM))
    p.add_argument("--cache", type=int, default=100_000, help="LRU cache entries")
    p.set_defaults(handler=_score)
    return what
