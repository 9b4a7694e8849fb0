"""``p2pchat sim``: a broadcast workload on the deterministic simulator.

Shaped like the Gossip Glomers broadcast challenge: N peers, a fixed latency per
hop, R messages per second across the group, optional partitions that come and
go and heal before the end. Reports frames per message, latency to the last
peer, time until stable, and whether every log is identical.
"""

from __future__ import annotations

import argparse
import json
import random
from functools import partial
from typing import Any

from .arguments import number, whole_number
from .membership import MAX_MEMBERS
from .node import NodeConfig
from .sim import SimConfig, SimReport, Simulation

__all__ = ["add_sim_parser", "run_sim", "simulate"]


def add_sim_parser(commands: Any) -> None:
    sim = commands.add_parser(
        "sim",
        help="run the deterministic network simulator",
        description="Run many peers in one process on the deterministic simulator (virtual time, "
        "reproducible from --seed) and report frames per message, latency, time to stability, "
        "loss and whether every log is identical.",
        epilog="examples:\n  p2pchat sim\n  p2pchat sim --peers 50 --partition --seed 3 --json",
    )
    sim.add_argument(
        "--peers",
        type=whole_number(1, MAX_MEMBERS),
        default=25,
        help=f"peers in the network, all members of one room (a room holds at most {MAX_MEMBERS})",
    )
    sim.add_argument("--latency", type=number(0), default=100.0, help="ms per hop")
    sim.add_argument(
        "--rate", type=number(0, above=True), default=100.0, help="messages per second, whole group"
    )
    sim.add_argument(
        "--duration", type=number(0, above=True), default=20.0, help="seconds of sending (virtual)"
    )
    sim.add_argument("--partition", action="store_true", help="partitions come and go, then heal")
    sim.add_argument("--topology", default="random", choices=["line", "ring", "random", "full"])
    sim.add_argument(
        "--degree", type=whole_number(1), default=6, help="links per peer in the random topology"
    )
    sim.add_argument("--batch-ms", type=number(0), default=50.0, help="gossip batching window")
    sim.add_argument("--seed", type=int, default=1)
    sim.add_argument("--json", action="store_true")


def simulate(
    *,
    peers: int,
    latency_ms: float,
    rate: float,
    duration: float,
    partition: bool,
    seed: int,
    topology: str = "random",
    degree: int = 6,
    batch_ms: float = 50.0,
    settle: float = 60.0,
) -> SimReport:
    hop = latency_ms / 1000
    # Hops of tens of ms or more: an idle link gathers 30 % of the window (see NodeConfig).
    node = NodeConfig(batch_window=batch_ms / 1000, batch_gather=0.3)
    config = SimConfig(
        peers=peers, topology=topology, degree=degree, latency=(hop, hop), seed=seed, node=node
    )
    sim = Simulation(config)
    workload = random.Random(seed)
    start = 1.0  # let the handshakes finish and membership spread
    count = int(rate * duration)
    for k in range(count):
        sim.send_at(start + k / rate, workload.randrange(peers), f"message {k}")
    if partition:
        for begin, end in ((0.2, 0.35), (0.55, 0.7)):
            cut = sorted(workload.sample(range(peers), peers // 2))
            rest = [p for p in range(peers) if p not in cut]
            sim.at(start + begin * duration, partial(sim.partition, cut, rest))
            sim.at(start + end * duration, sim.heal)
    sim.run_until(start + duration)
    sim.settle(start + duration + settle)
    # Let stability catch up after the last delivery (heartbeats), then measure: at
    # least five heartbeats, and in a large room until every position is stable (each
    # member announces only every members / announce_load seconds there), or ``settle``.
    heartbeat = sim.config.node.heartbeat_interval
    give_up = sim.now + settle
    sim.run_until(sim.now + 5 * heartbeat)
    while not sim.all_stable() and sim.now < give_up:
        sim.run_until(sim.now + heartbeat)
    return sim.report()


def run_sim(args: argparse.Namespace) -> int:
    report = simulate(
        peers=args.peers,
        latency_ms=args.latency,
        rate=args.rate,
        duration=args.duration,
        partition=args.partition,
        seed=args.seed,
        topology=args.topology,
        degree=args.degree,
        batch_ms=args.batch_ms,
    )
    if args.json:
        print(json.dumps(report.as_json()))
    else:
        print(f"messages sent          {report.sent}")
        print(f"frames per message     {report.frames_per_message:.2f}")
        print(f"bytes per message      {report.bytes_per_message:.0f} (all peers, all frames)")
        print(
            f"latency to last peer   median {report.median_ms:.0f} ms, p99 {report.p99_ms:.0f} ms, "
            f"max {report.max_ms:.0f} ms"
        )
        if 0 < report.whole_count < report.sent:  # (the latency of those written while whole)
            print(
                f"  written unpartitioned median {report.whole_median_ms:.0f} ms, "
                f"max {report.whole_max_ms:.0f} ms ({report.whole_count} messages)"
            )
        print(
            f"time until stable      median {report.stable_median_ms:.0f} ms, "
            f"max {report.stable_max_ms:.0f} ms"
        )
        print(f"lost {report.lost}, duplicates {report.duplicates}, never stable {report.unstable}")
        print(f"identical logs         {'yes' if report.identical else 'NO'}")
        print(f"stable positions moved {report.stability_moved}")
    ok = report.identical and report.lost == 0 and report.duplicates == 0
    return 0 if ok else 1
