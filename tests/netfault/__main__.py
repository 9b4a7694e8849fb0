"""``python -m tests.netfault``: one nemesis run with namespaced peers (needs root).

Example, the long run::

    sudo .venv/bin/python -m tests.netfault --peers 7 --duration 600 --seed 7 --out netfault-long

writes OUT/history.jsonl and OUT/timeline.svg, prints the checker's report and exits
non-zero if anything it checks was violated.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import trio

from . import checker, nemesis, netns, timeline


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.netfault", description=__doc__.splitlines()[0])
    parser.add_argument("--peers", type=int, default=5)
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of faults and typing")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rate", type=float, default=2.0, help="lines typed per second per peer")
    parser.add_argument("--schedule", choices=["random", "short"], default="random")
    parser.add_argument(
        "--out", type=Path, default=Path("netfault-run"), help="directory for data and results"
    )
    args = parser.parse_args(argv)
    reason = netns.missing_requirement()
    if reason is not None:
        print(f"cannot run: {reason}", file=sys.stderr)
        return 2
    settings = nemesis.RunSettings(
        peers=args.peers,
        duration=args.duration,
        seed=args.seed,
        rate=args.rate,
        schedule=args.schedule,
        workdir=args.out.resolve(),
    )
    history_path = trio.run(nemesis.run, settings)
    records = [json.loads(line) for line in history_path.read_text().splitlines()]
    report = checker.check(records)
    picture = timeline.draw(records, report, history_path.parent / "timeline.svg")
    print(report.summary())
    print(f"history: {history_path}\ntimeline: {picture}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
