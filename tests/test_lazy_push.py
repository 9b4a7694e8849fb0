"""Lazy push (Plumtree) in the pure core: eager and lazy links, IHAVE, GRAFT and PRUNE.

Small networks of real :class:`~p2pchat.node.Node` objects whose outputs are piped
into each other's inputs by hand, with a latency per link and time passed in, so
each test can say exactly which frame went where.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Iterable
from dataclasses import replace

from roomkit import Room

from p2pchat import wire
from p2pchat.deflate import inflate_frame
from p2pchat.identity import Identity
from p2pchat.log import Delivered
from p2pchat.message import MessageId
from p2pchat.node import Close, LogEvents, Node, NodeConfig, Output, Send
from p2pchat.protocol import LINK_RANDOMNESS, CloseCode
from p2pchat.wire import MAX_BATCH, MAX_SEQ, Graft, Messages, Push, WantRange, encode_frame

IDS = [Identity(bytes([0x30 + i]) * 32) for i in range(4)]
A, B, C = 0, 1, 2
QUIET = NodeConfig(heartbeat_interval=1000, keepalive_interval=1000, anti_entropy_interval=1000)
"""No heartbeat heads and no anti-entropy: only pushes, announcements and grafts move messages."""


class Mesh:
    """Nodes joined by in-memory links, each with its own latency, in virtual time."""

    def __init__(self, count: int, links: dict[tuple[int, int], float], config: NodeConfig) -> None:
        self.room = Room(IDS[:count])
        self.nodes = [Node(IDS[i], f"peer{i}", self.room.log(), config=config) for i in range(count)]
        self.now = 0.0
        self._queue: list[tuple[float, int, int, int, bytes, bool]] = []
        self._order = itertools.count()
        self._remote: dict[tuple[int, int], tuple[int, int, float]] = {}
        self._conn_to: dict[tuple[int, int], int] = {}
        self._last_tick = [float("-inf")] * count
        self._rng = random.Random(0)
        self.frames: list[tuple[float, int, int, wire.Frame]] = []
        """Every frame after the handshake: (when sent, from, to, frame)."""
        self.delivered: list[dict[MessageId, float]] = [{} for _ in range(count)]
        self.drop: Callable[[int, int, wire.Frame], bool] = lambda source, target, frame: False
        conns = itertools.count(1)
        for (a, b), latency in links.items():
            conn_a, conn_b = next(conns), next(conns)
            self._remote[(a, conn_a)] = (b, conn_b, latency)
            self._remote[(b, conn_b)] = (a, conn_a, latency)
            self._conn_to[(a, b)], self._conn_to[(b, a)] = conn_a, conn_b
            self.apply(a, self.nodes[a].open(conn_a, 0.0, bytes(LINK_RANDOMNESS), dialed_url=f"ws://p{b}"))
            self.apply(b, self.nodes[b].open(conn_b, 0.0, bytes([1]) * LINK_RANDOMNESS))

    def conn(self, node: int, remote: int) -> int:
        return self._conn_to[(node, remote)]

    def apply(self, index: int, outputs: Iterable[Output]) -> None:
        outputs = [*outputs, *self.nodes[index].drain_all(self.now)]
        for output in outputs:
            if isinstance(output, Send):
                target, conn, latency = self._remote[(index, output.conn)]
                if not output.clear:
                    frame = wire.decode_frame(inflate_frame(output.data))
                    self.frames.append((self.now, index, target, frame))
                    if self.drop(index, target, frame):
                        continue
                arrival = (self.now + latency, next(self._order), target, conn, output.data, output.clear)
                heapq.heappush(self._queue, arrival)
            elif isinstance(output, LogEvents):
                for event in output.events:
                    if isinstance(event, Delivered):
                        self.delivered[index].setdefault(event.message.id, self.now)
            elif isinstance(output, Close):
                raise AssertionError(f"node {index} closed a link: {output}")

    def run(self, seconds: float) -> None:
        until = self.now + seconds
        while True:
            ticks = [
                max(node.next_deadline(), self._last_tick[i] + 0.0005) for i, node in enumerate(self.nodes)
            ]
            frame_at = self._queue[0][0] if self._queue else float("inf")
            when = min(frame_at, *ticks)
            if when > until:
                break
            self.now = max(self.now, when)
            if frame_at <= min(ticks):
                _, _, target, conn, data, clear = heapq.heappop(self._queue)
                node = self.nodes[target]
                receive = node.receive if clear else node.receive_unsealed
                self.apply(target, receive(conn, data, self.now))
            else:
                for i, node in enumerate(self.nodes):
                    if ticks[i] <= self.now:
                        self._last_tick[i] = self.now
                        self.apply(i, node.tick(self.now, self._rng))
        self.now = until

    def send(self, index: int, text: str) -> MessageId:
        message, outputs = self.nodes[index].send_text(text, self.now, int(self.now * 1000))
        self.delivered[index][message.id] = self.now
        self.apply(index, outputs)
        return message.id

    def frames_since(self, since: float, source: int, target: int) -> list[wire.Frame]:
        return [f for when, s, t, f in self.frames if when >= since and (s, t) == (source, target)]


def pushed(frames: Iterable[wire.Frame]) -> set[MessageId]:
    return {m.id for f in frames if isinstance(f, Push) for m in f.messages}


def announced(frames: Iterable[wire.Frame]) -> set[MessageId]:
    return {
        MessageId(r.sender_id, seq)
        for f in frames
        if isinstance(f, Push)
        for r in f.announced
        for seq in range(r.first, r.last + 1)
    }


def triangle(latency: float = 0.01, config: NodeConfig = QUIET) -> Mesh:
    mesh = Mesh(3, {(A, B): latency, (A, C): latency, (B, C): latency}, config)
    mesh.run(1.0)  # handshakes and the first sync
    return mesh


def duplicates(mesh: Mesh, index: int) -> int:
    return mesh.nodes[index].statistics().duplicates_in


def test_a_second_pushed_copy_prunes_that_link_and_later_messages_go_once() -> None:
    mesh = triangle()
    first = mesh.send(A, "one")
    mesh.run(1.0)
    # B and C each got "one" from A, then once more from each other: both prune.
    assert duplicates(mesh, B) == duplicates(mesh, C) == 1
    assert first in pushed(mesh.frames_since(0, B, C)) and first in pushed(mesh.frames_since(0, C, B))
    pruned_by = {(s, t) for _, s, t, f in mesh.frames if isinstance(f, Push) and IDS[A].sender_id in f.pruned}
    assert pruned_by == {(B, C), (C, B)}

    since = mesh.now
    second = mesh.send(A, "two")
    mesh.run(1.0)
    assert second in mesh.delivered[B] and second in mesh.delivered[C]
    # The B-C link is lazy for A now: "two" crosses it at most as an id, never in full.
    assert second not in pushed(mesh.frames_since(since, B, C) + mesh.frames_since(since, C, B))
    assert duplicates(mesh, B) == duplicates(mesh, C) == 1
    assert not [f for _, _, _, f in mesh.frames if isinstance(f, Graft)]  # the tree was never short


def test_an_announced_message_the_tree_does_not_bring_is_grafted_and_the_link_turns_eager() -> None:
    mesh = triangle()
    mesh.send(A, "one")
    mesh.run(1.0)  # B-C is lazy for A from here on
    # The tree link A->C silently stops carrying anything (a stalled path, not a closed one).
    mesh.drop = lambda source, target, frame: (source, target) == (A, C)
    since = mesh.now
    lost = mesh.send(A, "lost on the way to C")
    mesh.run(QUIET.lazy_window + 0.05)  # (nothing else goes from B to C for the id to ride on)
    assert lost not in mesh.delivered[C]
    assert lost in announced(mesh.frames_since(since, B, C))  # B tells C it has it
    mesh.run(1.0)
    grafts = [f for f in mesh.frames_since(since, C, B) if isinstance(f, Graft)]
    assert grafts == [Graft((WantRange(IDS[A].sender_id, lost.seq, lost.seq),))]
    answers = [f for f in mesh.frames_since(since, B, C) if isinstance(f, Messages)]
    assert [m.id for f in answers for m in f.messages] == [lost]
    assert lost in mesh.delivered[C]
    # B pushes A's messages to C eagerly again: the next one comes in full, at once.
    since = mesh.now
    after = mesh.send(A, "after the repair")
    mesh.run(0.1)
    assert after in pushed(mesh.frames_since(since, B, C))
    assert mesh.delivered[C][after] - since < 0.05


def test_a_graft_asks_the_next_announcer_when_the_first_does_not_answer() -> None:
    d = 3
    links = {(A, B): 0.01, (A, C): 0.01, (B, d): 0.01, (C, d): 0.01}
    mesh = Mesh(4, links, QUIET)
    mesh.run(1.0)
    # Nothing reaches D but what the test hands it; B's answers never will.
    mesh.drop = lambda source, target, frame: target == d
    wanted = mesh.send(A, "one")
    mesh.run(0.5)
    assert wanted in mesh.delivered[B] and wanted in mesh.delivered[C]
    ihave = encode_frame(Push((), (WantRange(wanted.sender_id, wanted.seq, wanted.seq),)))
    start = mesh.now
    mesh.apply(d, mesh.nodes[d].receive_unsealed(mesh.conn(d, B), ihave, mesh.now))
    mesh.run(0.01)
    mesh.apply(d, mesh.nodes[d].receive_unsealed(mesh.conn(d, C), ihave, mesh.now))
    mesh.drop = lambda source, target, frame: (source, target) == (B, d)
    mesh.run(1.0)
    grafts = [(round(when - start, 3), target) for when, s, target, f in mesh.frames if isinstance(f, Graft)]
    timeout = QUIET.graft_timeout
    assert grafts == [(timeout, B), (2 * timeout, C)]  # B first (it announced first), then C
    assert wanted in mesh.delivered[d]


def test_announcements_are_bounded_whatever_range_a_neighbour_claims() -> None:
    mesh = triangle()
    node = mesh.nodes[C]
    boast = Push((), (WantRange(IDS[A].sender_id, 1, MAX_SEQ),))
    outputs = node.receive_unsealed(mesh.conn(C, B), encode_frame(boast), mesh.now)
    outputs += node.tick(mesh.now + 1.0, random.Random(0))
    grafts = [wire.decode_frame(inflate_frame(o.data)) for o in outputs if isinstance(o, Send)]
    assert grafts and all(isinstance(g, Graft) for g in grafts)
    asked = sum(r.last - r.first + 1 for g in grafts if isinstance(g, Graft) for r in g.ranges)
    assert 0 < asked <= MAX_BATCH


def test_a_malformed_push_closes_the_link_with_a_reason() -> None:
    mesh = triangle()
    node = mesh.nodes[C]
    empty = b"\x85\x08\x80\x80\x80\x80"  # [PUSH, [], [], [], []]: nothing in it
    outputs = node.receive_unsealed(mesh.conn(C, B), empty, mesh.now)
    closes = [o for o in outputs if isinstance(o, Close)]
    assert len(closes) == 1 and closes[0].code is CloseCode.PROTOCOL_ERROR
    assert "push: empty" in closes[0].reason
    assert node.banned_until(IDS[B].sender_id, mesh.now) is not None


def test_flooding_without_lazy_push_sends_every_message_on_every_link() -> None:
    mesh = triangle(config=NodeConfig(lazy_push=False, heartbeat_interval=1000, anti_entropy_interval=1000))
    for text in ("one", "two", "three"):
        mesh.send(A, text)
        mesh.run(1.0)
    assert duplicates(mesh, B) == duplicates(mesh, C) == 3
    assert not [f for _, _, _, f in mesh.frames if isinstance(f, Push) and f.pruned]


def test_a_node_cut_off_with_a_gap_does_not_spin() -> None:
    """A gap and nobody to ask: the next repair attempt is a while away, not due at once
    for ever (a simulator, or a shell's timer, would spin on the same instant)."""
    mesh = triangle()
    mesh.drop = lambda source, target, frame: target == C
    mesh.send(A, "one")
    second = mesh.send(A, "two")
    mesh.run(0.5)
    node = mesh.nodes[C]
    message = mesh.nodes[A].log.get(second)
    assert message is not None
    mesh.apply(C, node.receive_unsealed(mesh.conn(C, A), encode_frame(Push((message,))), mesh.now))
    assert node.statistics().missing == 1
    for remote in (A, B):
        mesh.apply(C, node.closed(mesh.conn(C, remote)))
    later = mesh.now + 5.0
    node.tick(later, random.Random(0))
    assert node.next_deadline() > later


def test_anti_entropy_does_not_send_again_what_is_on_its_way() -> None:
    # A slow link: B's anti-entropy heads leave before A's burst reaches it, and reach A
    # while the burst is still on its way. A owes B nothing more: every entry crosses
    # once. (Resending them made an end peer of a 5-peer bench take 56 % more entries
    # than it needed, all duplicates.)
    config = NodeConfig(heartbeat_interval=1000, keepalive_interval=1000, anti_entropy_interval=0.25)
    mesh = Mesh(2, {(A, B): 1.0}, config)
    mesh.run(10.0)
    since = mesh.now
    sent = [mesh.send(A, f"line {k}") for k in range(20)]
    mesh.run(5.0)
    heads_from_b = [f for f in mesh.frames_since(since, B, A) if isinstance(f, wire.Heads) and f.reply_wanted]
    assert heads_from_b  # (the heads that used to draw the burst again)
    copies = [
        m.id for f in mesh.frames_since(since, A, B) if isinstance(f, (Push, Messages)) for m in f.messages
    ]
    assert sorted(copies) == sorted(sent)
    assert all(message_id in mesh.delivered[B] for message_id in sent)
    assert duplicates(mesh, B) == 0


HEARTBEATS = NodeConfig(keepalive_interval=1000, anti_entropy_interval=1000)
"""Heartbeat heads every second, but none sent whole for keepalive: the test sees what
each heartbeat carries of its own accord."""


def announcements_of(member: int, frames: Iterable[wire.Frame]) -> list[wire.Head]:
    """The heads in HEADS frames that carry ``member``'s signed announcement whole."""
    sender = IDS[member].sender_id
    return [
        h
        for f in frames
        if isinstance(f, wire.Heads)
        for h in f.heads
        if h.sender_id == sender and h.signature
    ]


def digests_of(member: int, frames: Iterable[wire.Frame]) -> list[bytes]:
    sender = IDS[member].sender_id
    return [
        h.digest
        for f in frames
        if isinstance(f, wire.Heads)
        for h in f.heads
        if h.sender_id == sender and h.digest
    ]


def test_an_announcement_the_tree_brought_does_not_cross_a_lazy_link_again() -> None:
    mesh = triangle(config=HEARTBEATS)
    mesh.send(A, "one")
    mesh.run(1.0)  # B-C is lazy for A from here on
    since = mesh.now
    mesh.send(B, "two")  # A delivers it and announces: its tree brings that to B and to C
    mesh.run(6.0)  # (and A announces again on every heartbeat: a new beat)
    member = IDS[A].sender_id
    announcement = mesh.nodes[B].log.announcement_of(member)
    assert announcement is not None and announcement.at_ms >= since * 1000
    assert mesh.nodes[C].log.announcement_of(member) == announcement
    between = mesh.frames_since(since, B, C) + mesh.frames_since(since, C, B)
    # B and C name A's announcements by their digests. One goes whole, once: B never got
    # the one A's push took to C alone, and C tells B (too late: the next one came).
    assert announcement.signature[: wire.DIGEST_SIZE] in digests_of(A, between)
    spread = {h.signature for _, source, _, f in mesh.frames for h in getattr(f, "heads", ()) if source == A}
    assert len(spread) >= 6
    assert len(announcements_of(A, between)) <= 1


def test_an_announcement_the_tree_did_not_bring_crosses_the_lazy_link() -> None:
    mesh = triangle(config=HEARTBEATS)
    mesh.send(A, "one")
    mesh.run(1.0)  # B-C is lazy for A from here on
    member = IDS[A].sender_id

    def carries_announcement_of_a(source: int, target: int, frame: wire.Frame) -> bool:
        heads = frame.heads if isinstance(frame, wire.Heads | Push) else ()
        return (source, target) == (A, C) and any(h.sender_id == member and h.signature for h in heads)

    mesh.drop = carries_announcement_of_a  # A's tree never brings C A's announcement
    since = mesh.now
    mesh.send(B, "two")  # A delivers it: its announcement now has a higher clock
    mesh.run(4.0)
    held_by_b = mesh.nodes[B].log.announcement_of(member)
    held_by_c = mesh.nodes[C].log.announcement_of(member)
    assert held_by_b is not None and held_by_c is not None
    # B gives C A's announcements over the lazy link, a heartbeat or two late (A signs a
    # new one on every heartbeat, a new beat): C holds A's clock after "two".
    assert (held_by_c.clock_seq, held_by_c.clock_lamport) == (held_by_b.clock_seq, held_by_b.clock_lamport)
    assert held_by_c.at_ms >= held_by_b.at_ms - 2000
    whole = announcements_of(A, mesh.frames_since(since, B, C))
    assert any(h.clock_lamport == held_by_b.clock_lamport for h in whole)


def test_a_push_within_the_window_of_the_last_one_waits_for_the_window_to_end() -> None:
    mesh = Mesh(2, {(A, B): 0.01}, replace(QUIET, batch_window=0.5))
    mesh.run(1.0)
    since = mesh.now
    zero = mesh.send(A, "zero")
    one = mesh.send(A, "one")
    assert [pushed([f]) for f in mesh.frames_since(since, A, B)] == [{zero}]
    mesh.run(0.4)
    assert [pushed([f]) for f in mesh.frames_since(since, A, B)] == [{zero}]
    mesh.run(0.2)
    assert [pushed([f]) for f in mesh.frames_since(since, A, B)] == [{zero}, {one}]
