"""``dnsguard eval cluster``: the detectors over a simulated cluster hour."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from models import artifact
from models.cli import DEFAULT_DATA, read_names


def _eval_cluster(args: argparse.Namespace) -> int:
    from streams.sim.cluster import ClusterSpec
    from streams.sim.cluster_eval import render, run

    spec = ClusterSpec(
        seed=args.seed,
        duration_s=args.duration,
        pods=args.pods,
        infected=args.infected,
        families=tuple(args.family) if args.family else None,
        benign_fold=1 if args.unseen else None,
    )
    data = Path(args.data)
    if args.unseen:
        from models.train_dga import fit_without
        from streams.sim.cluster import infected_families

        held = infected_families(spec, data)
        print(f"training a model without {', '.join(sorted(set(held)))} and the benign names "
              "the traffic uses ...", flush=True)  # fmt: skip
        model = fit_without(data, held)
    else:
        model, _ = artifact.load(Path(args.model))
    allowlist: list[str] = []
    if args.allowlist:
        with open(args.allowlist, encoding="utf-8") as fh:
            allowlist = list(read_names(fh))
    report = run(spec, data, model, allowlist=allowlist,
                 jsonl=Path(args.jsonl) if args.jsonl else None,
                 queries_only=args.queries_only, late_s=args.late)  # fmt: skip
    print(render(report))
    if args.json:
        Path(args.json).write_text(json.dumps(report.as_dict(), indent=2) + "\n")
    return 0


def register(what: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``cluster`` to ``dnsguard eval``."""
    p = what.add_parser(
        "cluster", help="run the detectors over simulated cluster traffic and report precision"
    )
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--model", default=str(artifact.DEFAULT_STEM))
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--pods", type=int, default=200)
    p.add_argument("--infected", type=int, default=12)
    p.add_argument("--duration", type=float, default=3600.0, help="seconds of traffic")
    p.add_argument("--family", action="append", help="DGA families of the infected pods")
    p.add_argument(
        "--unseen",
        action="store_true",
        help="train a model that never saw the infected pods' families nor the benign names used",
    )
    p.add_argument(
        "--queries-only",
        action="store_true",
        help="every response not observed, as the UDP module ships events",
    )
    p.add_argument(
        "--late",
        type=float,
        default=0.0,
        metavar="S",
        help="deliver as Envoys with two worker threads do, one thread's batches S seconds late",
    )
    p.add_argument("--allowlist", help="allowlist file (one name per line)")
    p.add_argument("--jsonl", help="also write the events (and .truth.json) here")
    p.add_argument("--json", help="write the report as JSON here")
    p.set_defaults(handler=_eval_cluster)
