"""The nemesis: a seeded schedule of faults, and the run that carries it out.

Fault kinds (``Fault.kind``):

* ``majority``: a silent partition into a minority and a majority;
* ``isolate``: one peer cut off from everyone;
* ``bridge``: two halves that cannot reach each other, and one bridge peer that
  reaches both (everything between the halves must be relayed through it);
* ``ring``: each peer reaches only its two neighbours on a ring;
* ``slow``: a token-bucket rate limit on one peer's link (both directions);
* ``pause``: SIGSTOP, later SIGCONT (a laptop that sleeps with its connections open);
* ``crash``: SIGKILL, later a restart on the same data directory and address;
* ``clock``: the peer's wall clock hours off (libfaketime), later set right.

A partition replaces no other fault: faults of a schedule do not overlap, except a
clock jump, which runs alongside the others. Every fault is undone before the run
ends, then clients stop typing and the run waits for the peers to settle.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from . import netns
from .cluster import Cluster, History, faketime_library

PARTITIONS = ("majority", "isolate", "bridge", "ring")
KINDS = (*PARTITIONS, "slow", "pause", "crash", "clock")
SLOW_RATE = "1mbit"
"""Slow, yet above what the largest frame needs to arrive within the liveness timeout."""
CLOCK_JUMPS = ("+5h", "-3h", "+26h")


@dataclass(frozen=True)
class Fault:
    kind: str
    start: float
    duration: float
    peers: tuple[int, ...]
    """The peers it is about, in an order that says how (see :func:`cut_pairs`)."""
    jump: str = ""

    @property
    def end(self) -> float:
        return self.start + self.duration


def cut_pairs(fault: Fault, size: int) -> list[tuple[int, int]]:
    """The (from, to) pairs whose packets a partition drops."""
    order = list(fault.peers)
    if fault.kind == "majority":
        minority = set(order[: size // 2 if size > 2 else 1])
        blocked = [(a, b) for a in range(size) for b in range(size) if (a in minority) != (b in minority)]
    elif fault.kind == "isolate":
        (alone,) = order[:1]
        blocked = [(a, b) for a in range(size) for b in range(size) if a != b and alone in (a, b)]
    elif fault.kind == "bridge":
        rest = order[1:]
        left, right = set(rest[: len(rest) // 2]), set(rest[len(rest) // 2 :])
        blocked = [(a, b) for a in left for b in right] + [(b, a) for a in left for b in right]
    elif fault.kind == "ring":
        position = {peer: i for i, peer in enumerate(order)}
        near = {1, size - 1}
        blocked = [
            (a, b)
            for a in range(size)
            for b in range(size)
            if a != b and (position[a] - position[b]) % size not in near
        ]
    else:
        raise ValueError(f"not a partition: {fault.kind}")
    return sorted(blocked)


def short_schedule(size: int, seed: int, start: float = 4.0) -> list[Fault]:
    """Every kind once, one after another (a clock jump alongside), in about 80 s."""
    rng = random.Random(seed)

    def peers() -> tuple[int, ...]:
        order = list(range(size))
        rng.shuffle(order)
        return tuple(order)

    faults: list[Fault] = []
    t = start
    for kind in PARTITIONS:
        faults.append(Fault(kind, t, 7.0, peers()))
        if kind == "isolate":
            faults.append(Fault("clock", t, 20.0, peers()[:1], jump=rng.choice(CLOCK_JUMPS)))
        t += 7.0 + 5.0
    faults.append(Fault("slow", t, 8.0, peers()[:1]))
    t += 8.0 + 4.0
    faults.append(Fault("pause", t, 6.0, peers()[:1]))
    t += 6.0 + 5.0
    faults.append(Fault("crash", t, 3.0, peers()[:1]))
    return faults


def random_schedule(size: int, seed: int, duration: float, start: float = 4.0) -> list[Fault]:
    """Faults one after another with settling gaps, kinds and peers drawn from ``seed``.

    Kinds come from a shuffled bag of all kinds, refilled when empty: random order, yet
    every kind recurs (a long run never misses one by chance).
    """
    rng = random.Random(seed)
    faults: list[Fault] = []
    bag: list[str] = []
    t = start
    while True:
        if not bag:
            bag = list(KINDS)
            rng.shuffle(bag)
        kind = bag.pop()
        length = rng.uniform(5.0, 20.0) if kind != "crash" else rng.uniform(1.0, 10.0)
        if t + length > duration - 10.0:
            return faults
        order = list(range(size))
        rng.shuffle(order)
        jump = rng.choice(CLOCK_JUMPS) if kind == "clock" else ""
        faults.append(Fault(kind, t, length, tuple(order), jump=jump))
        t += length + rng.uniform(5.0, 10.0)


@dataclass
class RunSettings:
    peers: int = 5
    duration: float = 75.0
    seed: int = 1
    rate: float = 2.0
    """Lines typed per second, per peer."""
    schedule: str = "short"
    workdir: Path = field(default_factory=lambda: Path("netfault-run"))
    settle_timeout: float = 60.0


async def apply(fault: Fault, cluster: Cluster, network: netns.Network, nursery: trio.Nursery) -> None:
    """Start ``fault``, hold it for its duration, undo it."""
    history = cluster.history
    size = network.size
    record: dict[str, Any] = {"fault": fault.kind, "peers": list(fault.peers)}
    if fault.kind in PARTITIONS:
        pairs = cut_pairs(fault, size)
        network.cut(pairs)
        record["cut"] = [list(pair) for pair in pairs]
        assert network.dropped_pairs() == len(pairs), "the partition's rules are not in force"
        history.add("fault", phase="start", **record)
        await trio.sleep(fault.duration)
        network.heal_partition()
    elif fault.kind == "slow":
        (peer,) = record["peers"] = fault.peers[:1]
        network.slow(peer, SLOW_RATE)
        history.add("fault", phase="start", rate=SLOW_RATE, **record)
        await trio.sleep(fault.duration)
        network.unslow(peer)
    elif fault.kind == "pause":
        (index,) = record["peers"] = fault.peers[:1]
        cluster.peers[index].pause()
        history.add("fault", phase="start", **record)
        await trio.sleep(fault.duration)
        cluster.peers[index].resume()
    elif fault.kind == "crash":
        (index,) = record["peers"] = fault.peers[:1]
        history.add("fault", phase="start", **record)
        await cluster.peers[index].kill()
        await trio.sleep(fault.duration)
        await cluster.restart(cluster.peers[index], nursery)
    elif fault.kind == "clock":
        (index,) = record["peers"] = fault.peers[:1]
        victim = cluster.peers[index]
        if victim.clock_file is None:
            history.add("fault", phase="skipped", reason="no libfaketime", **record)
            return
        victim.set_clock(fault.jump)
        history.add("fault", phase="start", jump=fault.jump, **record)
        await trio.sleep(fault.duration)
        victim.set_clock("+0")
    history.add("fault", phase="end", **record)


async def execute(
    schedule: Sequence[Fault], cluster: Cluster, network: netns.Network, nursery: trio.Nursery
) -> None:
    """Run every fault at its time (a clock jump alongside the others)."""
    history = cluster.history

    async def at_its_time(fault: Fault) -> None:
        await trio.sleep(max(0.0, fault.start - history.now()))
        await apply(fault, cluster, network, nursery)

    async with trio.open_nursery() as alongside:
        for fault in schedule:
            if fault.kind == "clock":
                alongside.start_soon(at_its_time, fault)
        for fault in schedule:
            if fault.kind != "clock":
                await at_its_time(fault)


async def wait_connected(cluster: Cluster, timeout: float = 30.0) -> None:
    """Until every peer has shown every other peer's id in a peer_up (or timeout: the
    checker then reports what is missing, the run goes on)."""
    with trio.move_on_after(timeout):
        while True:
            ups: dict[int, set[str]] = {}
            for record in cluster.history.records:
                if record["type"] == "event" and record["event"].get("event") == "peer_up":
                    ups.setdefault(record["peer"], set()).add(record["event"]["peer_id"])
            if all(len(ups.get(p.index, ())) >= min(1, len(cluster.peers) - 1) for p in cluster.peers):
                return
            await trio.sleep(0.1)


async def wait_settled(cluster: Cluster, timeout: float) -> bool:
    """Until every running peer shows every accepted message and all of it is stable."""
    with trio.move_on_after(timeout):
        while True:
            accepted = set().union(*(p.accepted for p in cluster.peers))
            running = [p for p in cluster.peers if p.running]
            if (
                all(p.settled and accepted <= p.shown for p in running)
                and len({frozenset(p.shown) for p in running}) == 1
            ):
                return True
            await trio.sleep(0.1)
    return False


async def run(settings: RunSettings) -> Path:
    """One nemesis run; returns the history file (JSON lines). Needs root."""
    settings.workdir.mkdir(parents=True, exist_ok=True)
    if settings.schedule == "short":
        schedule = short_schedule(settings.peers, settings.seed)
    else:
        schedule = random_schedule(settings.peers, settings.seed, settings.duration)
    history_path = settings.workdir / "history.jsonl"
    network = netns.create(settings.peers)
    history = History(history_path)
    cluster = Cluster(network, settings.workdir, history, settings.seed)
    try:
        history.add(
            "run",
            peers=settings.peers,
            seed=settings.seed,
            schedule=settings.schedule,
            duration=settings.duration,
            rate=settings.rate,
            wall=cluster.wall_clock() - history.now(),
            addresses=[network.address(i) for i in range(settings.peers)],
            faketime=faketime_library() is not None,
        )
        async with trio.open_nursery() as nursery:
            await cluster.start(nursery)
            await wait_connected(cluster)
            history.add("phase", name="typing")
            for peer in cluster.peers:
                nursery.start_soon(cluster.type_forever, peer, settings.rate)
            await execute(schedule, cluster, network, nursery)
            # Everything is undone already; this is the end of the faults.
            network.heal()
            for peer in cluster.peers:
                if peer.paused:
                    peer.resume()
            history.add("phase", name="healed")
            end = max(settings.duration, history.now() + 3.0) if schedule else settings.duration
            await trio.sleep(max(0.0, end - history.now()))
            cluster.typing = False
            history.add("phase", name="quiet")
            settled = await wait_settled(cluster, settings.settle_timeout)
            history.add("phase", name="settled" if settled else "not settled")
            await cluster.stop_all()
            history.add("phase", name="stopped")
            nursery.cancel_scope.cancel()
    finally:
        cluster.kill_everything()
        network.destroy()
        history.close()
    return history_path
