"""How soon stability resumes when a member quits, and when one crashes and comes back.

Runs the deterministic simulator (virtual time, so the figures do not depend on the
machine): PEERS peers in a ring chat at RATE messages per second; at QUIT_AT one of
them quits cleanly (its AWAY entry is its last); at CRASH_AT another crashes without
a word and restarts from its store RESTART_AFTER seconds later. For the messages
written after each event it prints how long they took to become stable on every live
peer: after a quit that is the ordinary time to stability (nobody waits for the
member that left); after a crash, stability waits for the member until it is back,
so the figure is dominated by the downtime (removing a vanished member is not
implemented yet).

    python benchmarks/churn_bench.py [--seeds 5] [--peers 6]
"""

from __future__ import annotations

import argparse
import random
import statistics
from functools import partial

from p2pchat.message import MessageId
from p2pchat.sim import SimConfig, Simulation

RATE = 20.0
QUIT_AT = 5.0
CRASH_AT = 15.0
RESTART_AFTER = 5.0
END = 28.0


def stable_latencies(sim: Simulation, start: float, end: float) -> list[float]:
    """For messages sent in [start, end): seconds from sending until stable on every live peer."""
    live = {p.index for p in sim.live()}
    keys = {m.id: m.key for m in sim.live()[0].node.log}
    result = []
    for message_id, sent_at in sim.sent.items():
        if not start <= sent_at < end:
            continue
        times = sim.stable_at.get(keys[MessageId(*message_id)], {})
        if live <= times.keys():
            result.append(max(times[i] for i in live) - sent_at)
    return result


def run(seed: int, peers: int) -> tuple[list[float], list[float], list[float]]:
    sim = Simulation(SimConfig(peers=peers, topology="ring", seed=seed, latency=(0.05, 0.1)))
    workload = random.Random(seed)
    writers = [i for i in range(peers) if i not in (peers - 1, peers - 2)]
    for k in range(int((END - 2.0) * RATE)):
        sim.send_at(1.0 + k / RATE, workload.choice(writers), f"message {k}")
    sim.at(QUIT_AT, partial(sim.quit, peers - 1))
    sim.at(CRASH_AT, partial(sim.crash, peers - 2))
    sim.at(CRASH_AT + RESTART_AFTER, partial(sim.restart, peers - 2))
    sim.run_until(END + 10.0)
    report = sim.report()
    assert report.lost == 0 and report.identical and report.stability_moved == 0, report
    return (
        stable_latencies(sim, 1.0, QUIT_AT),
        stable_latencies(sim, QUIT_AT + 0.5, CRASH_AT - 5.0),  # (not held up by the crash)
        stable_latencies(sim, CRASH_AT, CRASH_AT + RESTART_AFTER),
    )


def describe(values: list[float]) -> str:
    median, worst = statistics.median(values) * 1000, max(values) * 1000
    return f"median {median:6.0f} ms, max {worst:6.0f} ms ({len(values)} msgs)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--peers", type=int, default=6)
    args = parser.parse_args()
    print(
        f"{args.peers} peers in a ring, {RATE:.0f} msg/s; quit at {QUIT_AT:.0f} s; crash at {CRASH_AT:.0f} s,"
    )
    print(f"back {RESTART_AFTER:.0f} s later; time from sending to stable on every live peer:")
    for seed in range(args.seeds):
        before, after_quit, during_crash = run(seed, args.peers)
        print(f"seed {seed}: before any churn    {describe(before)}")
        print(f"        after the quit       {describe(after_quit)}")
        print(f"        while one is crashed {describe(during_crash)}")


if __name__ == "__main__":
    main()
