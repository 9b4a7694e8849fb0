"""A deterministic in-process network of many peers, in virtual time.

The simulator runs the real :class:`~p2pchat.node.Node` logic -- the same code
the trio shell runs -- over an in-memory network: per-link latency
distributions, frame loss, duplication and reordering, partitions that heal,
and peers that crash and restart from what they had stored. Everything random
comes from one seed, so a run is reproducible exactly.

It serves the tests (convergence over many seeds), ``p2pchat sim`` and the
benchmarks.
"""

from __future__ import annotations

import copy
import enum
import gc
import heapq
import itertools
import random
import statistics
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import Generic, TypeVar

from .deflate import deflate_frame
from .evidence import Proof
from .identity import Identity, remember_verifications
from .log import (
    ClockLie,
    Delivered,
    Entombed,
    Equivocation,
    NotAMember,
    OrderedLog,
    OwnHistoryIncomplete,
    Stable,
)
from .message import Change, EntryKind, Flush, Message, MessageId, MessageKey
from .node import Close, Discovered, LogEvents, Node, NodeConfig, Output, Send, text_count
from .protocol import LINK_RANDOMNESS
from .restore import restore
from .store import MAX_LEARNED_ADDRESSES
from .wire import Head, Messages, encode_frame

__all__ = ["SimConfig", "SimReport", "Simulation", "make_topology"]

HANDSHAKE_FRAMES = 2  # HELLO and AUTH: never duplicated or reordered (TCP would not either)


@dataclass(frozen=True)
class SimConfig:
    peers: int = 5
    topology: str = "random"
    """``line``, ``ring``, ``random`` (connected, about ``degree`` links each) or ``full``."""
    degree: int = 3
    latency: tuple[float, float] = (0.01, 0.05)
    """Each link draws its own latency range inside this one (seconds per hop)."""
    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    """Probability that a frame is held back so later frames on its link overtake it."""
    seed: int = 0
    node: NodeConfig = field(default_factory=NodeConfig)
    redial_delay: float = 0.5
    target_connections: int = 0
    """As the shell's: a peer with fewer open links than this dials the addresses its
    neighbours pass on (each once; not redialed when it closes). 0: the topology's
    links only, the same on every run of a seed."""


def reachable(links: Iterable[tuple[int, int]], start: int) -> set[int]:
    """The peers ``links`` connect to ``start`` (itself included)."""
    links = list(links)
    reached, frontier = {start}, [start]
    while frontier:
        here = frontier.pop()
        for a, b in links:
            for x, y in ((a, b), (b, a)):
                if x == here and y not in reached:
                    reached.add(y)
                    frontier.append(y)
    return reached


def make_topology(kind: str, peers: int, degree: int, rng: random.Random) -> list[tuple[int, int]]:
    """The links between peers 0..peers-1 as (dialer, listener) pairs."""
    if peers < 2:
        return []
    line = [(i, i + 1) for i in range(peers - 1)]
    if kind == "line":
        return line
    if kind == "ring":
        return [*line, (peers - 1, 0)] if peers > 2 else line
    if kind == "full":
        return list(itertools.combinations(range(peers), 2))
    if kind != "random":
        raise ValueError(f"unknown topology {kind!r}")
    # A random spanning tree keeps it connected; random extra links bring the degree up.
    order = list(range(peers))
    rng.shuffle(order)
    links = {tuple(sorted((order[i], order[rng.randrange(i)]))) for i in range(1, peers)}
    target = max(len(links), peers * degree // 2)
    while len(links) < min(target, peers * (peers - 1) // 2):
        a, b = rng.sample(range(peers), 2)
        links.add(tuple(sorted((a, b))))
    return sorted((a, b) for a, b in links)


@dataclass
class _Endpoint:
    peer: int
    conn: int
    remote_peer: int
    remote_conn: int
    dialer: bool
    frames_sent: int = 0
    last_arrival: float = 0.0


@dataclass
class SimPeer:
    index: int
    identity: Identity
    name: str
    rng: random.Random
    node: Node
    stored: list[Message] = field(default_factory=list)
    alive: bool = True
    tick_at: float | None = None
    arrival: list[MessageId] = field(default_factory=list)
    kept: Kept = field(default_factory=lambda: Kept())
    """What the shell stores besides the entries (see p2pchat.restore)."""


@dataclass
class Kept:
    """What a peer's store holds besides its entries, as the shell keeps it: every other
    version of a forked entry, the entries held without a place, those placed below
    positions already stable, the first proof per offender and kind, and the newest
    announcement of each member."""

    versions: list[Message] = field(default_factory=list)
    placeless: set[MessageId] = field(default_factory=set)
    placed_late: set[MessageId] = field(default_factory=set)
    proofs: dict[tuple[bytes, type], Proof] = field(default_factory=dict)
    announcements: dict[bytes, Head] = field(default_factory=dict)

    def note(self, event: object) -> None:
        if isinstance(event, Entombed) and event.placeless:
            self.placeless.add(event.message.id)
        elif isinstance(event, Delivered) and event.placed_late:
            self.placed_late.add(event.message.id)
        elif isinstance(event, Equivocation):
            self.versions.append(event.rejected)
            self.proofs.setdefault((event.kept.sender_id, Equivocation), event)
        elif isinstance(event, ClockLie):
            self.proofs.setdefault((event.message.sender_id, ClockLie), event)

    def with_announcements(self, log: OrderedLog) -> Kept:
        """Itself, with the announcements ``log`` took since it was rebuilt from it."""
        self.announcements.update((head.sender_id, head) for head in log.take_new_announcements())
        return self


@dataclass
class SimReport:
    sent: int
    frames: int
    frames_per_message: float
    bytes_per_message: float
    median_ms: float
    p99_ms: float
    max_ms: float
    stable_median_ms: float
    stable_max_ms: float
    lost: int
    duplicates: int
    identical: bool
    stability_moved: int
    unstable: int
    whole_median_ms: float = 0.0
    """Latency of the messages that met no partition: not written during one, nor in
    the second before one began or after it healed."""
    whole_max_ms: float = 0.0
    whole_count: int = 0

    def as_json(self) -> dict[str, object]:
        return {
            "frames_per_message": round(self.frames_per_message, 2),
            "median_ms": round(self.median_ms, 1),
            "p99_ms": round(self.p99_ms, 1),
            "max_ms": round(self.max_ms, 1),
            "stable_median_ms": round(self.stable_median_ms, 1),
            "stable_max_ms": round(self.stable_max_ms, 1),
            "lost": self.lost,
            "duplicates": self.duplicates,
            "identical": self.identical,
            "unpartitioned_median_ms": round(self.whole_median_ms, 1),
            "unpartitioned_max_ms": round(self.whole_max_ms, 1),
        }


class Simulation:
    """N peers on an in-memory network in virtual time."""

    def __init__(self, config: SimConfig) -> None:
        self.config = config
        # Every simulated peer checks every signature: do each check once per process.
        remember_verifications()
        self.now = 0.0
        self._rng = random.Random(config.seed)
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._conns = itertools.count(1)
        self._endpoints: dict[int, _Endpoint] = {}
        self._link_latency: dict[frozenset[int], tuple[float, float]] = {}
        self._partition: list[set[int]] | None = None
        self._discovered: set[tuple[int, int]] = set()
        """(dialer, listener) links dialed from addresses passed on (not redialed)."""
        self.partitions: list[list[float | None]] = []
        """[begin, end] of every partition so far (end None while it lasts)."""
        self.sent: dict[MessageId, float] = {}
        self.delivered_at: dict[MessageId, dict[int, float]] = {}
        self.stable_at: dict[MessageKey, dict[int, float]] = {}
        self.duplicates = 0
        self._stable_positions: list[dict[int, MessageKey]] = []
        self.links = make_topology(config.topology, config.peers, config.degree, self._rng)
        self._room_template: SharingCopier[OrderedLog] | None = None
        self.room_entries = self._found_room()
        """The founding entries every peer starts with (GENESIS, then a CHANGE admitting them)."""
        self.peers = [self._make_peer(i) for i in range(config.peers)]
        self._stable_positions = [{} for _ in self.peers]
        for a, b in self.links:
            self._connect(a, b)

    # Building ---------------------------------------------------------------------
    def _identity(self, index: int) -> Identity:
        return Identity(random.Random(self.config.seed * 1_000_003 + index).randbytes(32))

    def _found_room(self) -> list[Message]:
        """The room every simulated peer starts in: peer 0 founds it and admits the others."""
        founder = self._identity(0)
        log, genesis = OrderedLog.found(founder, name="peer0", room_name="sim", sent_at_ms=0)
        entries = [genesis]
        admitted = tuple((self._identity(i).sender_id, f"peer{i}") for i in range(1, self.config.peers))
        if admitted:
            # The founder alone is epoch 0: its CHANGE is complete at once, its COMMIT
            # decides it.
            def write(kind: EntryKind, change: Change | None = None, flush: Flush | None = None) -> Message:
                entry = log.compose(
                    founder, name="peer0", text="", sent_at_ms=0, kind=kind, change=change, flush=flush
                )
                log.receive(entry, trusted=True)
                return entry

            admit = write(EntryKind.CHANGE, change=Change(0, 0, admitted))
            entries += [admit, write(EntryKind.COMMIT, flush=Flush(0, 0, admit.id))]
        return entries

    def _room_log(self) -> OrderedLog:
        """A log holding the founding entries, as if it had received them.

        Built once, then copied for each peer: the copies share the template's immutable
        parts (entries, member sets), as a thousand peers could not each afford their
        own (a room founded with an ADMIT per member keeps one member set per admission).
        """
        if self._room_template is None:
            log = OrderedLog(room_id=self.room_entries[0].room_id())
            for entry in self.room_entries:
                log.receive(entry, trusted=True, defer_stability=True)
            log.advance_stability()
            self._room_template = SharingCopier(log)
        return self._room_template.copy()

    def _make_peer(self, index: int) -> SimPeer:
        identity = self._identity(index)
        name = f"peer{index}"
        rng = random.Random(self._rng.random())
        node = Node(identity, name, self._room_log(), listen_url=f"sim://{index}", config=self.config.node)
        return SimPeer(index, identity, name, rng, node)

    def _latency_range(self, a: int, b: int) -> tuple[float, float]:
        key = frozenset((a, b))
        if key not in self._link_latency:
            lo, hi = self.config.latency
            x, y = sorted((self._rng.uniform(lo, hi), self._rng.uniform(lo, hi)))
            self._link_latency[key] = (x, y)
        return self._link_latency[key]

    def _connect(self, a: int, b: int) -> None:
        if not (self.peers[a].alive and self.peers[b].alive):
            return
        conn_a, conn_b = next(self._conns), next(self._conns)
        self._endpoints[conn_a] = _Endpoint(a, conn_a, b, conn_b, True)
        self._endpoints[conn_b] = _Endpoint(b, conn_b, a, conn_a, False)
        for peer, conn, dialed in ((a, conn_a, f"sim://{b}"), (b, conn_b, None)):
            node = self.peers[peer].node
            nonce = self.peers[peer].rng.randbytes(LINK_RANDOMNESS)
            self._apply(peer, node.open(conn, self.now, nonce, dialed_url=dialed))

    # Event loop -------------------------------------------------------------------
    def at(self, when: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (when, next(self._counter), action))

    def run_until(self, until: float) -> None:
        while self._queue and self._queue[0][0] <= until:
            when, _, action = heapq.heappop(self._queue)
            self.now = max(self.now, when)
            action()
        self.now = max(self.now, until)

    def _schedule_tick(self, peer: SimPeer) -> None:
        if not peer.alive:
            return
        deadline = max(peer.node.next_deadline(), self.now)
        if peer.tick_at is not None and peer.tick_at <= deadline:
            return
        peer.tick_at = deadline
        generation = peer.node

        def tick() -> None:
            if peer.node is not generation or not peer.alive or peer.tick_at != deadline:
                return
            peer.tick_at = None
            self._apply(peer.index, peer.node.tick(self.now, peer.rng))

        self.at(deadline, tick)

    def _apply(self, index: int, outputs: Iterable[Output]) -> None:
        peer = self.peers[index]
        # The simulated network buffers without limit: release every transfer at once.
        outputs = [*outputs, *peer.node.drain_all(self.now)]
        for output in outputs:
            match output:
                case Send():
                    self._transmit(output.conn, output.data, output.clear)
                case Close():
                    self._close(output.conn, output.reason)
                case LogEvents():
                    self._record(peer, output.events)
                case Discovered():
                    self._dial_discovered(index, output.urls, output.beyond_target)
                case _:
                    pass
        self._schedule_tick(peer)

    def _record(self, peer: SimPeer, events: Iterable[object]) -> None:
        for event in events:
            if isinstance(event, Delivered):
                times = self.delivered_at.setdefault(event.message.id, {})
                if peer.node.log.shows_decided_version(event.message.id):
                    # Shown in place of the version this peer delivered (see
                    # OrderedLog._show_decided_versions): no second delivery, and the
                    # store keeps it with the other versions, not the entries.
                    continue
                if peer.index in times and peer.node.log.get(event.message.id) is not None:
                    self.duplicates += 1
                times.setdefault(peer.index, self.now)
                peer.arrival.append(event.message.id)
                peer.stored.append(event.message)
            elif isinstance(event, Entombed):
                # Held for good as the shell stores it (later entries may depend on it; a
                # COMMIT of ours lost here would be written again after a restart).
                peer.stored.append(event.message)
            elif isinstance(event, Stable):
                self._record_stable(peer, event.count)
            peer.kept.note(event)

    def _record_stable(self, peer: SimPeer, count: int) -> None:
        positions = self._stable_positions[peer.index]
        log = peer.node.log
        for position in range(len(positions), count):
            key = log[position].key
            positions[position] = key
            self.stable_at.setdefault(key, {}).setdefault(peer.index, self.now)

    # Network ----------------------------------------------------------------------
    def _transmit(self, conn: int, data: bytes, clear: bool) -> None:
        """Carry one frame. The simulated network carries frames after the handshake as
        plaintext (Send.data): it models a lossy, duplicating, reordering network for the
        gossip, which a sealed stream over TCP would turn into broken links instead."""
        endpoint = self._endpoints.get(conn)
        if endpoint is None:
            return
        endpoint.frames_sent += 1
        remote = self._endpoints.get(endpoint.remote_conn)
        if remote is None or self._cut(endpoint.peer, endpoint.remote_peer):
            return
        handshake = endpoint.frames_sent <= HANDSHAKE_FRAMES
        if not handshake and self._rng.random() < self.config.loss:
            return
        copies = 2 if not handshake and self._rng.random() < self.config.duplicate else 1
        lo, hi = self._latency_range(endpoint.peer, endpoint.remote_peer)
        for _ in range(copies):
            arrival = self.now + self._rng.uniform(lo, hi)
            if handshake or self._rng.random() >= self.config.reorder:
                # In order on the link, like TCP: never before the previous frame.
                arrival = max(arrival, remote.last_arrival)
                remote.last_arrival = arrival
            self.at(arrival, _bind(self._arrive, remote, data, clear))

    def _arrive(self, endpoint: _Endpoint, data: bytes, clear: bool) -> None:
        peer = self.peers[endpoint.peer]
        if not peer.alive or endpoint.conn not in self._endpoints:
            return
        node = peer.node
        receive = node.receive if clear else node.receive_unsealed
        self._apply(endpoint.peer, receive(endpoint.conn, data, self.now))

    def _cut(self, a: int, b: int) -> bool:
        if self._partition is None:
            return False
        return not any(a in group and b in group for group in self._partition)

    def _close(self, conn: int, reason: str) -> None:
        endpoint = self._endpoints.pop(conn, None)
        if endpoint is None:
            return
        peer = self.peers[endpoint.peer]
        if peer.alive:
            self._apply(endpoint.peer, peer.node.closed(conn, reason))
        remote = self._endpoints.pop(endpoint.remote_conn, None)
        if remote is not None and self.peers[remote.peer].alive:
            when = self.now + self._latency_range(endpoint.peer, endpoint.remote_peer)[1]

            def remote_closed() -> None:
                remote_peer = self.peers[remote.peer]
                if remote_peer.alive:
                    self._apply(remote.peer, remote_peer.node.closed(remote.conn, reason))

            self.at(when, remote_closed)
        # The dialing side redials, like the shell's backoff loop.
        dialer, listener = (
            (endpoint.peer, endpoint.remote_peer)
            if endpoint.dialer
            else (endpoint.remote_peer, endpoint.peer)
        )
        if "duplicate" not in reason and (dialer, listener) not in self._discovered:
            self.at(self.now + self.config.redial_delay, lambda: self._redial(dialer, listener))

    def _dial_discovered(self, index: int, urls: Iterable[str], beyond_target: bool = False) -> None:
        """Dial addresses a neighbour passed on while ``index`` has too few links (or
        ``beyond_target``: whatever it has, as the shell does, see Discovered)."""
        if self.config.target_connections == 0:
            return  # (the fixed topology only)
        for url in urls:
            open_links = sum(1 for e in self._endpoints.values() if e.peer == index)
            if open_links >= self.config.target_connections and not beyond_target:
                return
            other = int(url.removeprefix("sim://").partition("/")[0])  # (sim://3/#<its id>)
            linked = any(e.peer == index and e.remote_peer == other for e in self._endpoints.values())
            if other == index or linked:
                continue
            if (index, other) not in self.links and (other, index) not in self.links:
                self._discovered.add((index, other))  # (a topology link is redialed as ever)
            self.at(self.now, partial(self._redial, index, other))

    def _redial(self, a: int, b: int) -> None:
        connected = any(
            (e.peer == a and e.remote_peer == b) or (e.peer == b and e.remote_peer == a)
            for e in self._endpoints.values()
        )
        if connected or not self.peers[a].alive:
            return
        if self._cut(a, b) or not self.peers[b].alive:
            if (a, b) in self._discovered:
                return  # (a passed-on address: given up)
            # Unreachable: try again later, with jitter (as the shell's backoff does).
            delay = self.config.redial_delay * (0.5 + self._rng.random())
            self.at(self.now + delay, lambda: self._redial(a, b))
            return
        self._connect(a, b)

    # Faults -------------------------------------------------------------------------
    def partition(self, *groups: Iterable[int]) -> None:
        """Only peers in the same group hear each other until :meth:`heal`.

        Connections across the cut break (as TCP connections do once keep-alives
        fail) and are redialed, unsuccessfully until the partition heals.
        """
        self._partition = [set(g) for g in groups]
        self.partitions.append([self.now, None])
        for conn, endpoint in list(self._endpoints.items()):
            if endpoint.dialer and self._cut(endpoint.peer, endpoint.remote_peer):
                self._close(conn, "network partition")

    def heal(self) -> None:
        self._partition = None
        if self.partitions and self.partitions[-1][1] is None:
            self.partitions[-1][1] = self.now

    def _during_partition(self, when: float, margin: float = 1.0) -> bool:
        """Whether a message written at ``when`` could have met a partition on its way:
        written during one, less than ``margin`` seconds before one began, or less than
        ``margin`` seconds after it healed (while the cut links are being redialed)."""
        for begin, end in self.partitions:
            if begin is not None and begin - margin <= when and (end is None or when <= end + margin):
                return True
        return False

    def crash(self, index: int) -> None:
        """Stop a peer at once: what it delivered is stored, the rest is gone."""
        peer = self.peers[index]
        peer.alive = False
        for conn in [c for c, e in self._endpoints.items() if e.peer == index]:
            self._close(conn, "peer crashed")

    def quit(self, index: int, linger: float = 0.5) -> None:
        """A clean quit: the peer writes its AWAY entry, lingers while it goes out, stops.

        As the shell's, it writes none while its COMMIT of an open change stands (the exit
        would be invalid), nor when the exit would keep a change it answered from ever
        being decided (see Roster.exit_strands): it stops as if it crashed, and commits
        the change once back."""
        peer = self.peers[index]
        if not peer.alive or not peer.node.is_member:
            return
        me, roster = peer.identity.sender_id, peer.node.log.roster
        if not roster.holds_open_commit(me) and not roster.exit_strands(me):
            _, outputs = peer.node.write(EntryKind.AWAY, "quit", self.now, int(self.now * 1000))
            self._apply(index, outputs)
        self.at(self.now + linger, partial(self.crash, index))

    def leave(self, index: int, linger: float = 0.5, patience: float = 10.0) -> bool:
        """/leave: the peer writes its LEAVE and stops once a neighbour holds it (at least
        ``linger`` seconds later, while it goes out; at most ``patience``), as the
        shell's (see Peer.leave). Whether it wrote one: as the shell's, not while a
        change it answered, or committed, is open (the exit would be void, or invalid)."""
        peer = self.peers[index]
        me, roster = peer.identity.sender_id, peer.node.log.roster
        if not peer.alive or not peer.node.may_write or roster.answered(me) is not None:
            return False
        if roster.holds_open_commit(me):
            return False
        _, outputs = peer.node.write(EntryKind.LEAVE, "bye", self.now, int(self.now * 1000))
        self._apply(index, outputs)
        deadline = self.now + patience

        def stop_once_handed_over() -> None:
            if peer is not self.peers[index] or not peer.alive:
                return
            if peer.node.leave_handed_over or self.now >= deadline:
                self.crash(index)
            else:
                self.at(self.now + 0.1, stop_once_handed_over)

        self.at(self.now + linger, stop_once_handed_over)
        return True

    def restart(self, index: int) -> None:
        """Start a crashed peer again from its stored messages, same identity, and the
        addresses of members it knew (the shell keeps the latest learned with the room,
        and hands them to the node again when started without --join); it dials its
        topology links, and the addresses the shell would (see Peer._reopen_links)."""
        old = self.peers[index]
        log = self._room_log()
        kept = old.kept.with_announcements(old.node.log)
        restore(
            log,
            versions=kept.versions,
            entries=old.stored,
            placeless=kept.placeless,
            placed_late=kept.placed_late,
            proofs=kept.proofs.values(),
            announcements=kept.announcements.values(),
        )
        node = Node(old.identity, old.name, log, listen_url=f"sim://{index}", config=self.config.node)
        node.learn_addresses(old.node.member_addresses()[:MAX_LEARNED_ADDRESSES])
        self.peers[index] = SimPeer(
            index, old.identity, old.name, old.rng, node, list(old.stored), True, None, old.arrival, kept
        )
        positions = self._stable_positions[index]
        self._stable_positions[index] = positions  # stable claims from before must still hold
        for a, b in self.links:
            if index in (a, b):
                self._redial(a, b)
        # As the shell's restart without --join (Peer._reopen_links): the neighbours it
        # had, then members it heard of, up to its link target.
        had = [url for _, _, url in old.node.neighbours() if url]
        addresses = list(dict.fromkeys([*had, *old.node.member_addresses()]))
        self._dial_discovered(index, addresses[: self.config.target_connections])
        self._schedule_tick(self.peers[index])

    def equivocate(
        self, index: int, backdated: bool = False, first_to: Iterable[int] | None = None
    ) -> list[int] | None:
        """Peer ``index`` lies: it writes a line, and signs a second version of it (same
        seq and predecessor, another text) that it sends at once to the neighbours in
        ``first_to`` (by default a random part of them): they get it before the first,
        which the others get. ``backdated``: the second version says its author had seen
        nothing new since its previous entry, so its stamp is as low as the stamp check
        lets it be (below the first's, if the author had seen anything since).

        Returns the neighbours sent the second version first; None if the peer cannot
        write now, or has fewer than two links."""
        peer = self.peers[index]
        node = peer.node
        if not peer.alive or len(self.open_links(index)) < 2 or node.why_not_writable() is not None:
            return None
        try:
            genuine = self.send(index, f"the truth {len(self.sent)}")
        except (NotAMember, OwnHistoryIncomplete):
            return None
        if genuine is None:
            return None
        lamport, deps = genuine.lamport, genuine.deps
        if backdated:
            before = node.log.get(MessageId(genuine.sender_id, genuine.seq - 1)) if genuine.seq > 1 else None
            lamport, deps = (before.lamport + 1 if before is not None else 1), {}
        twin = Message.create(
            peer.identity,
            seq=genuine.seq,
            lamport=lamport,
            sent_at_ms=genuine.sent_at_ms,
            name=genuine.name,
            text="a lie",
            deps=deps,
            room_id=node.log.room_id or b"",
            previous=genuine.previous,
            links=node.log.links_of(deps),
        )
        return self.send_ahead(index, twin, first_to)

    def open_links(self, index: int) -> dict[int, int]:
        """Peer ``index``'s open links: the peer at the other end -> its conn there."""
        node = self.peers[index].node
        ends = self._endpoints.values()
        return {e.remote_peer: e.conn for e in ends if e.peer == index and node.is_open(e.conn)}

    def send_ahead(self, index: int, message: Message, first_to: Iterable[int] | None = None) -> list[int]:
        """Send ``message`` (signed by peer ``index``, past its node: another version of
        one of its entries) at once to the neighbours in ``first_to`` (by default a
        random part of them, not all): they get it before what the node sends them.
        Returns those neighbours."""
        links = self.open_links(index)
        if first_to is None:
            first_to = self._rng.sample(sorted(links), self._rng.randint(1, len(links) - 1))
        told = [remote for remote in first_to if remote in links]
        frame = deflate_frame(encode_frame(Messages((message,))))
        for remote in told:
            self._transmit(links[remote], frame, clear=False)
        return told

    # Workload -------------------------------------------------------------------------
    def send(self, index: int, text: str) -> Message | None:
        """Peer ``index`` sends ``text`` now (ignored if it is down, or no member: it quit
        and lingers while its AWAY goes out)."""
        peer = self.peers[index]
        if not peer.alive or not peer.node.is_member:
            return None
        message, outputs = peer.node.send_text(text, self.now, int(self.now * 1000))
        self.sent[message.id] = self.now
        self._apply(index, outputs)
        return message

    def send_at(self, when: float, index: int, text: str) -> None:
        def send() -> None:
            self.send(index, text)

        self.at(when, send)

    # Results --------------------------------------------------------------------------
    def live(self) -> list[SimPeer]:
        return [p for p in self.peers if p.alive]

    def converged(self) -> bool:
        live = self.live()
        if not live:
            return True
        first = [m.key for m in live[0].node.log]
        # Every chat line sent, and the same entries (membership ones too) in one order.
        return all(
            text_count(p.node.log) == len(self.sent)
            and [m.key for m in p.node.log] == first
            and p.node.log.held_count == 0
            for p in live
        )

    def settle(self, limit: float, step: float = 0.1) -> bool:
        """Run until all live peers hold every sent message in one order, or ``limit``."""
        while self.now < limit:
            self.run_until(self.now + step)
            if self.converged():
                return True
        return self.converged()

    def all_stable(self) -> bool:
        """Whether every live peer holds every entry of its log as stable."""
        return all(p.node.log.stable_count == len(p.node.log) for p in self.live())

    def stability_moved(self) -> int:
        """Positions reported stable whose message has changed since (must be 0)."""
        moved = 0
        for peer in self.peers:
            log = peer.node.log
            for position, key in self._stable_positions[peer.index].items():
                if position >= len(log) or log[position].key != key:
                    moved += 1
        return moved

    def report(self) -> SimReport:
        live = self.live()
        live_ids = {p.index for p in live}
        latencies, whole, lost = [], [], 0
        for message_id, sent_at in self.sent.items():
            times = self.delivered_at.get(message_id, {})
            if not live_ids <= times.keys():
                lost += 1
                continue
            latency = (max(times[i] for i in live_ids) - sent_at) * 1000
            latencies.append(latency)
            if not self._during_partition(sent_at):
                whole.append(latency)
        stable = []
        for message_id, sent_at in self.sent.items():
            peer = self.peers[0].node.log.get(message_id)
            times = self.stable_at.get(peer.key, {}) if peer else {}
            if live_ids <= times.keys():
                stable.append((max(times[i] for i in live_ids) - sent_at) * 1000)
        frames = sum(p.node.stats.frames_out for p in self.peers)
        wire = sum(p.node.stats.bytes_out for p in self.peers)
        sent = max(len(self.sent), 1)
        first = [m.key for m in live[0].node.log] if live else []
        return SimReport(
            sent=len(self.sent),
            frames=frames,
            frames_per_message=frames / sent,
            bytes_per_message=wire / sent,
            median_ms=_percentile(latencies, 50),
            p99_ms=_percentile(latencies, 99),
            max_ms=max(latencies, default=0.0),
            stable_median_ms=_percentile(stable, 50),
            stable_max_ms=max(stable, default=0.0),
            lost=lost,
            duplicates=self.duplicates,
            identical=all([m.key for m in p.node.log] == first for p in live),
            stability_moved=self.stability_moved(),
            unstable=len(self.sent) - len(stable),
            whole_median_ms=_percentile(whole, 50),
            whole_max_ms=max(whole, default=0.0),
            whole_count=len(whole),
        )


T = TypeVar("T")


class SharingCopier(Generic[T]):
    """Deep copies of one template whose immutable parts are shared, not copied.

    Immutable: frozen dataclasses (with all they hold), frozensets, mapping proxies, enum
    members, and tuples of immutable things. Everything else reachable through lists,
    dicts, sets and plain objects is copied as ``copy.deepcopy`` would copy it. The
    template must not change while copies are made.
    """

    def __init__(self, template: T) -> None:
        self.template = template
        self._shared: dict[int, object] = {}
        self._visited: set[int] = set()
        self._collect(template)

    def copy(self) -> T:
        return copy.deepcopy(self.template, dict(self._shared))

    def _collect(self, obj: object) -> bool:
        """Note every immutable object reachable from ``obj``; whether ``obj`` is one."""
        if isinstance(obj, _ATOMIC):
            return True
        key = id(obj)
        if key in self._visited:
            return key in self._shared
        self._visited.add(key)
        if isinstance(obj, _SHARED) or _is_frozen_dataclass(obj):
            self._shared[key] = obj
            return True
        if not (isinstance(obj, list | tuple | set | dict) or _is_plain_object(obj)):
            return False
        # (Every child is visited: a mutable object may hold immutable ones to share.)
        immutable = all([self._collect(child) for child in gc.get_referents(obj)])
        if immutable and isinstance(obj, tuple):
            self._shared[key] = obj
            return True
        return False


_ATOMIC = (type, int, float, str, bytes, bool, type(None), types.ModuleType, types.FunctionType)
_SHARED = (frozenset, types.MappingProxyType, enum.Enum)


def _is_frozen_dataclass(obj: object) -> bool:
    params = getattr(type(obj), "__dataclass_params__", None)
    return params is not None and bool(params.frozen)


def _is_plain_object(obj: object) -> bool:
    """An instance of a class with attributes (its own, or from a library such as sortedcontainers)."""
    return hasattr(obj, "__dict__") or hasattr(type(obj), "__slots__")


def _bind(
    action: Callable[[_Endpoint, bytes, bool], None], endpoint: _Endpoint, data: bytes, clear: bool
) -> Callable[[], None]:
    return lambda: action(endpoint, data, clear)


def _percentile(values: list[float], pct: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(pct) - 1] if pct < 100 else max(values)
