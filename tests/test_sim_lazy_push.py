"""Lazy push (Plumtree) on the deterministic simulator: fewer frames than flooding for
the same room, nothing lost, and a tree cut by a crash repairs itself with GRAFT."""

from __future__ import annotations

import random

import pytest
from test_sim import assert_healthy, run_chat

from p2pchat.node import NodeConfig
from p2pchat.sim import SimConfig, SimReport, Simulation, reachable


def chat(lazy_push: bool, seed: int) -> tuple[Simulation, SimReport]:
    node = NodeConfig(batch_window=0.02, lazy_push=lazy_push)
    config = SimConfig(peers=12, topology="random", degree=4, latency=(0.03, 0.06), seed=seed, node=node)
    sim = Simulation(config)
    run_chat(sim, 12, 400, start=1.0, spacing=0.02, seed=seed)
    sim.run_until(10.0)
    assert sim.settle(60), sim.report()
    return sim, sim.report()


@pytest.mark.parametrize("seed", range(3))
def test_lazy_push_sends_fewer_frames_than_flooding_and_loses_nothing(seed: int) -> None:
    flood_sim, flood = chat(lazy_push=False, seed=seed)
    lazy_sim, lazy = chat(lazy_push=True, seed=seed)
    for sim in (flood_sim, lazy_sim):
        assert_healthy(sim)
    assert lazy.frames_per_message < 0.8 * flood.frames_per_message, (lazy, flood)
    assert lazy.bytes_per_message < flood.bytes_per_message
    assert sum(p.node.stats.duplicates_in for p in lazy_sim.peers) < 0.5 * sum(
        p.node.stats.duplicates_in for p in flood_sim.peers
    )
    # With trees along the fastest paths, the latency to the last peer stays close.
    assert lazy.median_ms < 1.5 * flood.median_ms


def tree_parent(sim: Simulation) -> int:
    """The peer with the most links whose crash leaves the rest connected: a parent in
    many authors' trees (whether it cut a tree link in use, the grafts tell)."""
    degree = {i: sum(i in link for link in sim.links) for i in range(len(sim.peers))}
    for victim in sorted(degree, key=lambda i: -degree[i]):
        rest = [i for i in range(len(sim.peers)) if i != victim]
        links = [(a, b) for a, b in sim.links if victim not in (a, b)]
        if reachable(links, rest[0]) == set(rest):
            return victim
    raise AssertionError("no peer can go without disconnecting the rest")


@pytest.mark.parametrize("seed", range(3))
def test_a_crash_that_cuts_the_tree_is_grafted_around_and_delivery_goes_on(seed: int) -> None:
    # No heads and no anti-entropy: nothing but the gossip itself and its repair moves messages.
    quiet = {"heartbeat_interval": 1000.0, "keepalive_interval": 1000.0, "anti_entropy_interval": 1000.0}
    node = NodeConfig(batch_window=0.02, **quiet)
    config = SimConfig(peers=10, topology="random", degree=3, latency=(0.02, 0.04), seed=seed, node=node)
    sim = Simulation(config)
    senders = random.Random(seed)
    for k in range(300):
        sim.send_at(1.0 + k * 0.02, senders.randrange(10), f"message {k}")
    sim.run_until(3.0)  # the trees have formed
    victim = tree_parent(sim)
    grafts_before = sum(p.node.stats.grafts_out for p in sim.peers)
    sim.crash(victim)  # (not restarted: its links are gone for good)
    crashed_at = sim.now
    sim.run_until(8.0)
    assert sum(p.node.stats.grafts_out for p in sim.peers if p.alive) > grafts_before
    sim.run_until(20.0)
    live = {p.index for p in sim.live()}
    # Everything written after the crash (once the tree had a moment to heal) reaches
    # every live peer quickly: with no heads and no anti-entropy, only grafts can do it.
    later = [m for m, sent_at in sim.sent.items() if sent_at > crashed_at + 1.0]
    assert later
    for message_id in later:
        times = sim.delivered_at.get(message_id, {})
        assert live <= times.keys(), message_id
        assert max(times[i] for i in live) - sim.sent[message_id] < 0.5
