"""Randomized churn explorer: many seeds of random churn in the simulator, each checked
for safety and for liveness.

Not a benchmark: a search for schedules that break the room's promises. Every seed
draws a random room and a random schedule of faults, runs it in the deterministic
simulator (virtual time: a seed is the same run every time, on any machine) and looks
at the result. Five generators (MODE):

* ``churn`` -- tests/test_sim.py's ``_random_churn``: 3 to 6 peers; crashes, quits and
  partitions; lost and doubled frames.
* ``exits`` -- tests/test_sim.py's ``_random_churn_with_exits``: 3 to 8 peers, also
  members that leave for good and removals by hand, frames held back; peers dial the
  addresses passed on while they have fewer than ``--tc`` links (default 4).
* ``var`` -- wider (defined here): 3 to 12 peers, line topologies too, up to 10 % loss,
  short member timeouts, bursts of up to six events of fourteen kinds (flapping peers,
  three-way splits, several crashes or quits at once, a crash, a removal or a LEAVE
  during a split, ...). Its knobs fix what is otherwise drawn from the seed.
* ``liars`` -- a member lies (defined here): 4 to 8 peers, one of them signs two
  versions of a line one to three times (half of them with the second version's stamp
  backdated as low as the stamp check allows), each version going first to some of its
  neighbours, while honest members crash, quit or are split off. The ``var`` knobs but
  ``--kinds`` apply.
* ``answers`` -- as ``liars``, but about half of the lies fork a membership entry: the
  liar signs a chat line with the seq (and predecessor) of its next CHANGE, FLUSH or
  COMMIT and sends it first to some of its neighbours.

Each seed prints one line:

* ``OK`` -- every live peer holds the same log, all of it stable, nothing held, every
  live peer a member in everyone's eyes.
* ``SAFETY`` -- the room broke a promise: a position a peer reported stable moved (an
  entry inserted above it or voided, another version of it, or a different order after
  a restart), two peers reported different entries stable at the same position, an
  entry was delivered twice, or an honest peer was convicted of equivocation. With a
  liar, peers are compared on the honest members' entries: two honest peers whose
  stable entries of honest members differ. The moment each happened and the run's
  trace (faults, membership entries, decisions) follow the line.
* ``KNOWN`` -- (``liars``) as OK, the liar proven and removed everywhere, but honest
  peers kept different versions of its line, and may have called them stable: the gap
  docs/equivocation.md describes, not yet closed. Each of them must show such a line
  marked disputed (its author proven to have lied, see evidence.offenders): one shown
  without the mark is SAFETY.
* ``LIVENESS`` -- the run ended without converging (with a liar: the honest peers on
  the honest members' entries, every honest peer holding the proof, the liar no
  member): what did not converge, and a
  diagnosis of why. If it converges within ``--grace`` more virtual seconds: *converges
  later*, or *false suspicion* when meanwhile a member up and reachable for the whole
  member timeout was proposed for removal (the timeout shorter than a crossing of the
  room). Otherwise, the known limits that fit the state it is stuck in then:

  - *lonely peer*: no link, and it knows the address of no live peer (its only
    neighbour left), or of none but a liar it refuses; *isolated group*: the same for
    a group of members linked among themselves; *eclipsed by the liar*: linked to the
    liar only, and it knows the address of no live honest peer;
  - *room of two*, *no majority*: a member down for good (or the liar, which answers
    no change that removes it) cannot be removed, too few of the epoch's active
    members are up (a strict majority must commit);
  - *LEAVE lost, others away*: a member left for good and its LEAVE was never
    delivered, while others of its epoch quit (AWAY) and came back: too few active
    members are up to remove it, and the room cannot be reopened (not every member
    exited);
  - a member split, live members connected only through peers that are no members
    (which relay nothing), or through a liar they proved (they refuse it): *fixed-link
    split* with ``tc=0`` (nobody dials around them), *links to non-members* with
    ``tc>0`` (they fill the link target, so nobody dials across);
  - *entry lost with its author*: a peer holds entries of an author that is down behind
    one of its entries that no live peer holds (the author crashed before that one
    reached anyone; one that leaves waits until a neighbour holds its LEAVE, and all
    before it): they wait for good, held, though nothing else waits for them;
  - *left to a removed member*: an open change only the COMMIT of a member it removes,
    or of the liar, can decide: the other members it keeps that may still commit it
    are no strict majority, and those that committed it answer nothing else
    (``docs/equivocation.md``, rounds that never decide);
  - *honest entry placed differently*: an honest member's answer to the liar's change,
    delivered by two honest peers, has a place in the log at one and none at the other,
    which shows another version of the change (``answers``: ``docs/equivocation.md``,
    "A fork of a membership entry", open);

  or *unclassified*. Members proposed for removal while up and reachable (as for *false
  suspicion*) are named too, after the category: often how the room came to be stuck.
* ``ERROR`` -- the run raised (the log's self-checks are on, as in the tests).

A summary line ends the output; the exit status is 1 if any seed was SAFETY or ERROR.

    python benchmarks/churn_explorer.py var 1301-1700
    python benchmarks/churn_explorer.py exits 3301-3600 --tc 3
    python benchmarks/churn_explorer.py var 42 --peers 12 --topology line -v
    python benchmarks/churn_explorer.py liars 1-300 -q
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import itertools
import random
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import ModuleType
from unittest import mock

import p2pchat.log
from p2pchat.evidence import offender_of, offenders
from p2pchat.log import Decided, Delivered, Entombed, OrderedLog, Stable, Voided
from p2pchat.membership import VOTES, MemberState
from p2pchat.message import EntryKind, Message, MessageId, MessageKey
from p2pchat.node import Node, NodeConfig, Output, OwnEntries
from p2pchat.sim import SimConfig, SimPeer, Simulation

MODES = ("churn", "exits", "var", "liars", "answers")
VAR_KINDS = (
    "crash",
    "quit",
    "partition",
    "leave",
    "remove",
    "flap",
    "crashpart",
    "remove2",
    "multiquit",
    "longpart",
    "threeway",
    "multicrash",
    "removepart",
    "leavepart",
)
STATUSES = ("OK", "KNOWN", "SAFETY", "LIVENESS", "ERROR")
GRACE_STEP = 10.0
"""Virtual seconds between two looks at a run given more time (--grace)."""
SHOWN = 12
"""Safety violations printed per seed (the first ones; the trace has them all)."""
BATCH_WINDOW = 0.002
"""NodeConfig.batch_window in the var and liars rooms: the default when the sweeps that
benchmarks/README.md and docs/equivocation.md report were run. Its default went to
1 ms since, for latency on loopback; in these rooms a hop takes 50 to 500 ms and the
window makes no difference worth having, but every change of timing draws other
schedules from the same seeds."""


# Tracing ----------------------------------------------------------------------------


class TracedSimulation(Simulation):
    """A :class:`Simulation` that notes the faults, the membership entries each peer
    writes and the decisions, and catches a stable position moving when it happens
    (the simulator's own check, :meth:`Simulation.stability_moved`, looks at the end)."""

    def __init__(self, config: SimConfig) -> None:
        self.trace: list[str] = []
        self.violations: list[str] = []
        """Safety violations, as they happened."""
        self.false_suspicions: list[str] = []
        """Removals proposed (not by hand) of a member linked to the proposer through live
        peers while no fault happened for the whole member timeout before."""
        self.by_hand: set[bytes] = set()
        """Members proposed for removal by hand (Node.propose_removal), when it was made
        (not those it refused)."""
        self._last_fault = 0.0
        """When a peer last crashed or restarted, or a partition began or healed."""
        self._names: dict[bytes, str] = {}
        self._noted: set[object] = set()
        self._stable_anywhere: dict[int, tuple[MessageKey, bytes, int]] = {}
        """Per position, the first entry any peer reported stable there (its key and
        signature: two versions of a liar's entry may share a key), and that peer."""
        self.liars: set[bytes] = set()
        """Members that lie (the ``liars`` generator): their entries may differ between
        honest peers (docs/equivocation.md), so positions are compared between peers on
        what the honest members wrote (see ``honest_stable``)."""
        self.lied: set[bytes] = set()
        """The liars that did lie (one needs two links to), and how many times."""
        self.lies = 0
        self.answer_forks: dict[int, int] = {}
        """Per liar (the ``answers`` generator), how many of its next membership entries
        (a CHANGE, FLUSH or COMMIT) it signs a second version of."""
        self.liar_disagreements: list[str] = []
        """Positions two peers reported stable as different entries, one of them a liar's."""
        self._stable_signatures: dict[int, dict[int, bytes]] = {}
        """Per peer, the signature of the entry at each position it reported stable."""
        super().__init__(config)
        self._names = {peer.identity.sender_id: f"P{peer.index}" for peer in self.peers}

    # Names --------------------------------------------------------------------------
    def name(self, sender_id: bytes) -> str:
        return self._names.get(sender_id, sender_id.hex()[:6])

    def names(self, sender_ids: Iterable[bytes]) -> str:
        return "[" + ",".join(sorted((self.name(s) for s in sender_ids), key=_peer_order)) + "]"

    def entry(self, message: Message) -> str:
        return f"{self.name(message.sender_id)}#{message.seq} {message.kind.name} L{message.lamport}"

    def key_entry(self, log: OrderedLog, key: MessageKey) -> str:
        """The entry stamped ``key`` in ``log`` (a tombstone if void), or the bare key."""
        for message in [*log, *log.tombstones()]:
            if message.key == key:
                void = "" if log.is_visible(message) else " (void)"
                return self.entry(message) + void
        return f"{self.name(key.sender_id)}@L{key.lamport} (not held)"

    def note(self, text: str) -> None:
        self.trace.append(f"{self.now:8.3f}  {text}")

    # Faults -------------------------------------------------------------------------
    def crash(self, index: int) -> None:
        self.note(f"crash P{index}")
        self._last_fault = self.now
        super().crash(index)

    def restart(self, index: int) -> None:
        self.note(f"restart P{index}")
        self._last_fault = self.now
        super().restart(index)
        log = self.peers[index].node.log
        for position, key in sorted(self._stable_positions[index].items()):
            if position < len(log) and self.moved(index, position, log[position]):
                self._violation(
                    f"P{index} restarted with {self.key_entry(log, log[position].key)} at position "
                    f"{position}, which it had reported stable as {self.key_entry(log, key)}"
                )
                break

    def quit(self, index: int, linger: float = 0.5) -> None:
        if self.peers[index].alive and self.peers[index].node.is_member:
            self.note(f"quit P{index}")
        super().quit(index, linger)

    def partition(self, *groups: Iterable[int]) -> None:
        sets = [sorted(group) for group in groups]
        self.note("partition " + " | ".join(",".join(f"P{i}" for i in group) for group in sets))
        self._last_fault = self.now
        super().partition(*sets)

    def heal(self) -> None:
        self.note("heal")
        self._last_fault = self.now
        super().heal()

    def equivocate(
        self, index: int, backdated: bool = False, first_to: Iterable[int] | None = None
    ) -> list[int] | None:
        seq = self.peers[index].node.log.delivered_seq(self.peers[index].identity.sender_id) + 1
        told = super().equivocate(index, backdated, first_to)
        if told is None:
            self.note(f"P{index} cannot equivocate now")
            return None
        self.lied.add(self.peers[index].identity.sender_id)
        self.lies += 1
        to = ",".join(f"P{i}" for i in told)
        self.note(f"P{index} equivocates on #{seq}{' (backdated)' if backdated else ''}, first to {to}")
        return told

    def fork_answers(self, index: int, count: int) -> None:
        """Peer ``index`` will sign a second version of each of its next ``count``
        membership entries: a chat line with its seq, predecessor, stamp and vector clock,
        sent at once to some of its neighbours, before the entry reaches them."""
        self.answer_forks[index] = self.answer_forks.get(index, 0) + count

    def _apply(self, index: int, outputs: Iterable[Output]) -> None:
        outputs = list(outputs)
        if self.answer_forks.get(index):
            for output in outputs:
                if isinstance(output, OwnEntries):
                    for entry in output.messages:
                        if entry.kind in VOTES and self.answer_forks[index] > 0:
                            self._fork_entry(index, entry)
        super()._apply(index, outputs)

    def _fork_entry(self, index: int, entry: Message) -> None:
        peer = self.peers[index]
        node = peer.node
        if not peer.alive or len(self.open_links(index)) < 2:
            return
        twin = Message.create(
            peer.identity,
            seq=entry.seq,
            lamport=entry.lamport,
            sent_at_ms=entry.sent_at_ms,
            name=entry.name,
            text=f"a lie in place of its {entry.kind.name}",
            deps=entry.deps,
            room_id=node.log.room_id or b"",
            previous=entry.previous,
            links=node.log.links_of(entry.deps),
        )
        told = self.send_ahead(index, twin)
        self.answer_forks[index] -= 1
        self.lied.add(peer.identity.sender_id)
        self.lies += 1
        to = ",".join(f"P{i}" for i in told)
        what = f"a chat line as its #{entry.seq} too, not its {entry.kind.name}"
        self.note(f"P{index} signs {what}, first to {to}")

    # What the peers' logs say ---------------------------------------------------------
    def _violation(self, text: str) -> None:
        self.violations.append(f"{self.now:.3f} {text}")
        self.note(f"!!! {text}")

    def _record(self, peer: SimPeer, events: Iterable[object]) -> None:
        for event in events:
            self._before(peer, event)
            recorded = len(self._stable_positions[peer.index])
            super()._record(peer, [event])
            if isinstance(event, Stable):
                self._after_stable(peer, recorded)

    def _before(self, peer: SimPeer, event: object) -> None:
        positions = self._stable_positions[peer.index]
        log = peer.node.log
        if isinstance(event, Delivered | Entombed):
            self._note_own_vote(peer, event.message)
        if isinstance(event, Delivered) and event.index < len(positions):
            if self.moved(peer.index, event.index, event.message):
                self._violation(
                    f"P{peer.index} delivered {self.entry(event.message)} at position {event.index}, "
                    f"one of the {len(positions)} it had reported stable (it was "
                    f"{self.key_entry(log, positions[event.index])})"
                )
        elif isinstance(event, Voided):
            stable = {key: position for position, key in positions.items()}
            for message in event.messages:
                if message.key in stable:
                    self._violation(
                        f"P{peer.index} voided {self.entry(message)}, reported stable at position "
                        f"{stable[message.key]}"
                    )
        elif isinstance(event, Decided):
            self._note_decision(peer, event)

    def _after_stable(self, peer: SimPeer, recorded: int) -> None:
        positions = self._stable_positions[peer.index]
        log = peer.node.log
        signatures = self._stable_signatures.setdefault(peer.index, {})
        for position in range(recorded, len(positions)):
            key, signature = positions[position], log[position].signature
            signatures[position] = signature
            reported = self._stable_anywhere.setdefault(position, (key, signature, peer.index))
            first, first_signature, by = reported
            if (first, first_signature) != (key, signature):
                other = self.peers[by].node.log
                text = (
                    f"P{peer.index} reported position {position} stable as {self.key_entry(log, key)}, "
                    f"P{by} as {self.key_entry(other, first)}"
                )
                if self.liars:
                    # (Compared on the honest members' entries instead, see honest_stable.)
                    self.liar_disagreements.append(f"{self.now:.3f} {text}")
                else:
                    self._violation(text)

    def moved(self, index: int, position: int, message: Message) -> bool:
        """Whether ``message`` at ``position`` of peer ``index`` is not the entry the peer
        reported stable there (another key, or another version of a liar's entry)."""
        key = self._stable_positions[index].get(position)
        if key is None:
            return False
        signature = self._stable_signatures.get(index, {}).get(position)
        return key != message.key or (signature is not None and signature != message.signature)

    def _note_own_vote(self, peer: SimPeer, message: Message) -> None:
        if message.sender_id != peer.identity.sender_id or message.kind is EntryKind.TEXT:
            return
        if message.id in self._noted:
            return
        self._noted.add(message.id)
        what = f"P{peer.index} writes {message.kind.name} #{message.seq} L{message.lamport}"
        if message.change is not None:
            change = message.change
            what += (
                f" ep{change.epoch} r{change.round} +{self.names(a for a, _ in change.admitted)}"
                f" -{self.names(change.removed)}"
            )
            self._check_suspicion(peer, change.removed)
        elif message.flush is not None:
            flush = message.flush
            what += (
                f" ep{flush.epoch} r{flush.round} for {self.name(flush.change.sender_id)}#{flush.change.seq}"
            )
        if message.kind in VOTES or message.kind in (EntryKind.LEAVE, EntryKind.AWAY):
            self.note(what)

    def _note_decision(self, peer: SimPeer, event: Decided) -> None:
        decision = event.decision
        if (event.epoch, decision.change) in self._noted:
            return
        self._noted.add((event.epoch, decision.change))
        cuts = ", ".join(
            f"{self.name(m)}:{seq}" for m, seq in sorted(decision.cuts.items(), key=self._by_name)
        )
        self.note(
            f"P{peer.index} first to decide epoch {event.epoch} "
            f"(change {self.name(decision.change.sender_id)}#{decision.change.seq}): "
            f"+{self.names(a for a, _ in decision.admitted)} -{self.names(decision.removed)} cuts {cuts}"
        )

    def _check_suspicion(self, peer: SimPeer, removed: Iterable[bytes]) -> None:
        """Note a proposal (not by hand) to remove a member linked to the proposer through
        live peers now, when no peer crashed or restarted and no partition began or healed
        for the whole member timeout: nothing kept them apart but slowness."""
        timeout = self.config.node.member_timeout
        if timeout is None or self._last_fault > self.now - timeout:
            return
        linked = _reachable_over_links(self, peer.index)
        for member in removed:
            index = _peer_order(self.name(member))
            if member not in self.by_hand and index in linked:
                self.false_suspicions.append(f"{self.now:.3f} P{peer.index} proposed removing P{index}")

    def _by_name(self, item: tuple[bytes, int]) -> int:
        return _peer_order(self.name(item[0]))

    def is_up(self, sender_id: bytes) -> bool:
        return any(p.alive and p.identity.sender_id == sender_id for p in self.peers)


def _reachable_over_links(sim: Simulation, start: int) -> set[int]:
    """The live peers open links connect to ``start`` (itself included)."""
    reached, todo = {start}, [start]
    while todo:
        here = todo.pop()
        for e in sim._endpoints.values():
            if e.peer == here and e.remote_peer not in reached and sim.peers[e.remote_peer].alive:
                reached.add(e.remote_peer)
                todo.append(e.remote_peer)
    return reached


def _peer_order(name: str) -> int:
    return int(name[1:]) if name.startswith("P") and name[1:].isdigit() else 1 << 30


# Generators -------------------------------------------------------------------------


def _test_sim() -> ModuleType:
    """tests/test_sim.py, whose generators the churn and exits modes run."""
    tests = str(Path(__file__).resolve().parent.parent / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    return importlib.import_module("test_sim")


@contextmanager
def _traced(
    module: ModuleType, target_connections: int | None, built: list[TracedSimulation]
) -> Iterator[None]:
    """While it lasts, the simulations ``module`` builds are traced and go to ``built``
    (and dial while they have fewer than ``target_connections`` links, if given)."""
    propose_removal = Node.propose_removal

    def build(config: SimConfig) -> TracedSimulation:
        if target_connections is not None:
            config = dataclasses.replace(config, target_connections=target_connections)
        built.append(TracedSimulation(config))
        return built[-1]

    def by_hand(node: Node, members: Iterable[bytes], now: float) -> list[Output]:
        members = list(members)
        outputs = propose_removal(node, members, now)  # (raises if it may not propose)
        built[-1].by_hand.update(members)
        return outputs

    with mock.patch.object(module, "Simulation", build), mock.patch.object(Node, "propose_removal", by_hand):
        yield


@dataclass(frozen=True)
class VarKnobs:
    """What the ``var`` generator would otherwise draw from the seed (None: drawn)."""

    peers: int | None = None
    topology: str | None = None
    adm: float | None = None
    """NodeConfig.admission_delay."""
    loss: float | None = None
    tc: int | None = None
    """SimConfig.target_connections."""
    kinds: tuple[str, ...] = VAR_KINDS
    events: int | None = None
    lines: int = 80
    extra: float = 0.0
    """Virtual seconds run past the schedule's end."""


@dataclass(frozen=True)
class Run:
    """A seed's simulation, run to the end of its schedule."""

    sim: TracedSimulation
    description: str
    """The room and the schedule drawn, in a line."""


@dataclass(frozen=True)
class RoomChoices:
    """What a generator draws a room from (each drawn in this order, one after another)."""

    peers: Sequence[int]
    topologies: Sequence[str]
    timeouts: Sequence[float]
    """NodeConfig.member_timeout (and recent_window)."""
    adms: Sequence[float]
    """NodeConfig.admission_delay."""
    losses: Sequence[float]
    latencies: Sequence[float]
    """The longest a frame takes (the shortest is 10 ms)."""
    duplicates: Sequence[float]
    reorders: Sequence[float]
    tcs: Sequence[int]
    """SimConfig.target_connections."""


VAR_ROOMS = RoomChoices(
    peers=(3, 4, 5, 6, 8, 10, 12),
    topologies=("ring", "random", "full", "line"),
    timeouts=(3.0, 5.0, 8.0),
    adms=(0.0, 0.5, 1.0, 3.0),
    losses=(0.0, 0.02, 0.05, 0.1),
    latencies=(0.05, 0.2, 0.5),
    duplicates=(0.0, 0.05, 0.1),
    reorders=(0.0, 0.1, 0.2),
    tcs=(0, 2, 3, 4),
)
LIAR_ROOMS = RoomChoices(
    peers=(4, 5, 6, 8),
    topologies=("ring", "random", "full"),
    timeouts=(5.0, 8.0),
    adms=(0.0, 1.0),
    losses=(0.0, 0.02, 0.05),
    latencies=(0.05, 0.2),
    duplicates=(0.0, 0.05),
    reorders=(0.0, 0.1),
    tcs=(0, 2, 3),
)


def draw_room(
    rng: random.Random, seed: int, knobs: VarKnobs, choices: RoomChoices, built: list[TracedSimulation]
) -> tuple[TracedSimulation, str]:
    """A simulated room drawn from ``choices`` (what ``knobs`` fixes is not drawn), and
    the room in a few words. (The draws come in a fixed order: a seed names the same
    run as it did in the explorations before.)"""
    peers = knobs.peers if knobs.peers is not None else rng.choice(choices.peers)
    topology = knobs.topology or rng.choice(choices.topologies)
    timeout = rng.choice(choices.timeouts)
    adm = knobs.adm if knobs.adm is not None else rng.choice(choices.adms)
    node = NodeConfig(
        member_timeout=timeout, recent_window=timeout, admission_delay=adm, batch_window=BATCH_WINDOW
    )
    loss = knobs.loss if knobs.loss is not None else rng.choice(choices.losses)
    latency = rng.choice(choices.latencies)
    duplicate, reorder = rng.choice(choices.duplicates), rng.choice(choices.reorders)
    tc = knobs.tc if knobs.tc is not None else rng.choice(choices.tcs)
    config = SimConfig(
        peers=peers,
        topology=topology,
        seed=seed,
        node=node,
        latency=(0.01, latency),
        loss=loss,
        duplicate=duplicate,
        reorder=reorder,
        target_connections=tc,
    )
    sim = TracedSimulation(config)
    built.append(sim)
    room = (
        f"peers={peers} topo={topology} to={timeout} adm={adm} loss={loss} lat={latency} "
        f"dup={duplicate} reo={reorder} tc={tc}"
    )
    return sim, room


def var_run(seed: int, knobs: VarKnobs, built: list[TracedSimulation]) -> Run:
    """A wider generator than the tests': larger rooms, higher loss, bursts of events.

    (The draws from the seed come in a fixed order: a seed names the same run as it
    did in the explorations before this script.)"""
    rng = random.Random(seed * 7919 + 17)
    sim, room = draw_room(rng, seed, knobs, VAR_ROOMS, built)
    peers, timeout = sim.config.peers, sim.config.node.member_timeout or 0.0
    drawn_events = rng.randint(1, 6)
    events = knobs.events if knobs.events is not None else drawn_events
    left: set[int] = set()

    def crash(victim: int) -> None:
        if sim.peers[victim].alive:
            sim.crash(victim)

    def restart(victim: int) -> None:
        if not sim.peers[victim].alive and victim not in left:
            sim.restart(victim)

    def quit_(victim: int) -> None:
        if sim.peers[victim].alive and sim.peers[victim].node.is_member:
            sim.quit(victim)

    def leave(victim: int) -> None:
        if len(left) < peers - 2 and sim.leave(victim):
            sim.note(f"leave P{victim} (down for good once a neighbour holds its LEAVE)")
            left.add(victim)

    def remove(by: int, victims: list[int]) -> None:
        peer = sim.peers[by]
        if peer.alive:
            names = ",".join(f"P{v}" for v in victims)
            members = [sim.peers[v].identity.sender_id for v in victims]
            try:
                outputs = peer.node.propose_removal(members, sim.now)
            except ValueError as e:
                sim.note(f"P{by} may not propose removing {names}: {e}")
            else:
                sim.note(f"P{by} proposes removing {names}")
                sim.by_hand.update(members)
                sim._apply(by, outputs)

    def schedule(when: float, action: Callable[[], None]) -> None:
        sim.at(when, action)

    horizon = when = 1.0
    plan = []
    for _ in range(events):
        when += rng.uniform(0.2, 2 * timeout) if rng.random() < 0.5 else rng.uniform(0.0, 0.5)
        kind = rng.choice(knobs.kinds)
        victim, back = rng.randrange(peers), when + rng.uniform(0.5, 4 * timeout)
        others = [p for p in range(peers) if p != victim]
        if kind == "crash":
            schedule(when, partial(crash, victim))
            schedule(back, partial(restart, victim))
        elif kind == "quit":
            schedule(when, partial(quit_, victim))
            schedule(back + 1, partial(restart, victim))
        elif kind == "flap":
            t = when
            for _ in range(rng.randint(2, 4)):
                schedule(t, partial(crash, victim))
                t += rng.uniform(0.01, 1.0)
                schedule(t, partial(restart, victim))
                t += rng.uniform(0.01, 1.5)
            back = t
        elif kind == "leave":
            schedule(when, partial(leave, victim))
        elif kind == "remove":
            schedule(when, partial(remove, rng.choice(others), [victim]))
        elif kind == "remove2":
            if peers >= 4:
                second = rng.choice(others)
                bystanders = [p for p in range(peers) if p not in (victim, second)]
                by1, by2 = rng.choice(bystanders), rng.choice(bystanders)
                delay = rng.choice([0.0, 0.0, rng.uniform(0, 0.3)])
                schedule(when, partial(remove, by1, [victim]))
                schedule(when + delay, partial(remove, by2, [second]))
        elif kind in ("partition", "longpart", "threeway", "crashpart", "removepart", "leavepart"):
            groups: tuple[set[int], ...]
            if kind == "threeway" and peers >= 4:
                order = list(range(peers))
                rng.shuffle(order)
                a, b = sorted(rng.sample(range(1, peers), 2))
                groups = (set(order[:a]), set(order[a:b]), set(order[b:]))
            else:
                cut = set(rng.sample(range(peers), rng.randint(1, peers // 2)))
                groups = (cut, set(range(peers)) - cut)
            if kind == "longpart":
                back = when + rng.uniform(4 * timeout, 10 * timeout)
            schedule(when, partial(sim.partition, *groups))
            schedule(back, sim.heal)
            mid = when + rng.uniform(0.1, max(0.2, back - when))
            if kind == "crashpart":
                schedule(mid, partial(crash, victim))
                up = rng.choice([mid + rng.uniform(0.1, 2.0), back + rng.uniform(0.0, 2.0)])
                schedule(up, partial(restart, victim))
                back = max(back, up)
            elif kind == "removepart":
                schedule(mid, partial(remove, rng.choice(others), [victim]))
            elif kind == "leavepart":
                schedule(mid, partial(leave, victim))
        elif kind in ("multiquit", "multicrash"):
            action = quit_ if kind == "multiquit" else crash
            for v in rng.sample(range(peers), rng.randint(2, max(2, peers // 2))):
                schedule(when, partial(action, v))
                up = back + 1 + rng.uniform(0, 1) if kind == "multiquit" else back + rng.uniform(0, 1)
                schedule(up, partial(restart, v))
        plan.append(kind)
        horizon = max(horizon, back + 2)
    for k in range(knobs.lines):
        sim.send_at(1.0 + k * (horizon - 1.0) / knobs.lines, rng.randrange(peers), f"m{k}")
    end = max(when, horizon) + 10 * timeout + 40 + (peers > 6) * 20
    sim.run_until(end + knobs.extra)
    return Run(sim, f"{room} plan={','.join(plan)}")


def liars_run(seed: int, knobs: VarKnobs, built: list[TracedSimulation], *, answers: bool = False) -> Run:
    """One member lies: one to three times it signs two versions of a line (some with a
    stamp backdated below the first), each version reaching some of its neighbours
    first, while honest members crash, quit or are split off; every member chats.
    ``answers``: each lie is, as often, a second version of the liar's next membership
    entry instead (a chat line in place of its CHANGE, FLUSH or COMMIT)."""
    rng = random.Random(seed * 6151 + 29 + answers * 7)
    sim, room = draw_room(rng, seed, knobs, LIAR_ROOMS, built)
    peers, timeout = sim.config.peers, sim.config.node.member_timeout or 0.0
    liar = rng.randrange(peers)
    sim.liars.add(sim.peers[liar].identity.sender_id)
    honest = [p for p in range(peers) if p != liar]
    plan = [f"liar=P{liar}"]
    when = 2.0
    for _ in range(rng.randint(1, 3)):
        when += rng.uniform(0.0, 2 * timeout)
        backdated = rng.random() < 0.5
        if answers and rng.random() < 0.5:
            sim.at(when, partial(sim.fork_answers, liar, 1))
            plan.append("answer")
            continue
        sim.at(when, partial(sim.equivocate, liar, backdated))
        plan.append("backdated" if backdated else "fork")
    horizon = when + 2
    for _ in range(knobs.events if knobs.events is not None else rng.randint(0, 3)):
        start = rng.uniform(1.0, when + timeout)
        kind = rng.choice(["crash", "quit", "partition"])
        victim, back = rng.choice(honest), start + rng.uniform(0.5, 3 * timeout)
        if kind == "partition":
            cut = set(rng.sample(range(peers), rng.randint(1, peers // 2)))
            sim.at(start, partial(sim.partition, cut, set(range(peers)) - cut))
            sim.at(back, sim.heal)
        else:
            down = sim.crash if kind == "crash" else sim.quit
            sim.at(start, partial(_if_up, sim, victim, down))
            sim.at(back, partial(_if_down, sim, victim, sim.restart))
        plan.append(f"{kind}@{start:.1f}")
        horizon = max(horizon, back + 2)
    for k in range(knobs.lines):
        sim.send_at(1.0 + k * (horizon - 1.0) / knobs.lines, rng.randrange(peers), f"m{k}")
    sim.run_until(horizon + 10 * timeout + 40 + knobs.extra)
    return Run(sim, f"{room} plan={','.join(plan)} lies={sim.lies}")


def _if_up(sim: Simulation, index: int, action: Callable[[int], None]) -> None:
    if sim.peers[index].alive and sim.peers[index].node.is_member:
        action(index)


def _if_down(sim: Simulation, index: int, action: Callable[[int], None]) -> None:
    if not sim.peers[index].alive:
        action(index)


def generate(mode: str, seed: int, tc: int | None, knobs: VarKnobs, built: list[TracedSimulation]) -> Run:
    """Run one seed of ``mode`` to the end of its schedule (the simulation goes to
    ``built`` as soon as it exists, for a look at it if the run raises)."""
    if mode == "var":
        return var_run(seed, knobs, built)
    if mode in ("liars", "answers"):
        return liars_run(seed, knobs, built, answers=mode == "answers")
    module = _test_sim()
    with _traced(module, tc if mode == "churn" else None, built):
        if mode == "churn":
            module._random_churn(seed)
        else:
            module._random_churn_with_exits(seed, 4 if tc is None else tc)
    sim = built[0]
    config = sim.config
    description = f"peers={config.peers} topo={config.topology} to={config.node.member_timeout} "
    description += f"loss={config.loss} tc={config.target_connections}"
    return Run(sim, description)


# Verdicts ---------------------------------------------------------------------------


@dataclass
class Verdict:
    status: str
    """OK, SAFETY, LIVENESS or ERROR."""
    safety: list[str] = field(default_factory=list)
    liveness: list[str] = field(default_factory=list)
    """What had not converged at the end of the schedule."""
    category: str = ""
    """Why it had not, in a few words (the summary counts them)."""
    diagnosis: str = ""
    details: list[str] = field(default_factory=list)


def safety_problems(sim: TracedSimulation) -> list[str]:
    """What the room promised never to do and did (see the module doc)."""
    problems = list(sim.violations)
    for peer in sim.peers:
        log = peer.node.log
        for position, key in sorted(sim._stable_positions[peer.index].items()):
            if position >= len(log) or sim.moved(peer.index, position, log[position]):
                now = log[position].key if position < len(log) else None
                problems.append(
                    f"at the end P{peer.index}'s position {position} (reported stable as "
                    f"{sim.key_entry(log, key)}) holds "
                    + (sim.key_entry(log, now) if now is not None else "nothing (the log is shorter)")
                )
                break
    if sim.duplicates:
        problems.append(f"{sim.duplicates} entries delivered twice")
    for peer in honest_live(sim):
        accused = {offender_of(proof) for proof in peer.node.log.proofs} - sim.liars
        if accused:
            problems.append(f"P{peer.index} holds proofs of equivocation against {sim.names(accused)}")
    if sim.liars:
        stable = {peer.index: honest_stable(sim, peer) for peer in honest_live(sim)}
        for a, b in itertools.combinations(sorted(stable), 2):
            shorter, longer = sorted((stable[a], stable[b]), key=len)
            if longer[: len(shorter)] != shorter:
                problems.append(f"P{a} and P{b} hold different honest entries stable")
    return problems


def honest_live(sim: TracedSimulation) -> list[SimPeer]:
    """The live peers but the liars."""
    return [peer for peer in sim.live() if peer.identity.sender_id not in sim.liars]


def honest_stable(sim: TracedSimulation, peer: SimPeer) -> tuple[tuple[MessageKey, bytes], ...]:
    """The entries of honest members in ``peer``'s stable prefix, in order."""
    log = peer.node.log
    return tuple(
        (m.key, m.signature) for m in itertools.islice(log, log.stable_count) if m.sender_id not in sim.liars
    )


def _entries(sim: TracedSimulation, peer: SimPeer, *, honest: bool) -> tuple[tuple[MessageKey, bytes], ...]:
    return tuple((m.key, m.signature) for m in peer.node.log if not honest or m.sender_id not in sim.liars)


def liveness_problems(sim: TracedSimulation) -> list[str]:
    """What a live room should have reached by now and did not (with liars: the honest
    peers, on what the honest members wrote, and the liars expelled)."""
    problems = []
    live = honest_live(sim)
    if sim.liars:
        if len({_entries(sim, p, honest=True) for p in live}) > 1:
            problems.append("logs differ")
    elif len({tuple(m.key for m in p.node.log) for p in live}) > 1:
        problems.append("logs differ")
    # Every liar some honest peer can prove, or whose lie shows (honest peers' logs
    # differ), must end proven and removed everywhere. (A lie may leave no trace: its
    # second version refused where it went, and gone with a crash before the first came.)
    proven = {offender_of(proof) for peer in live for proof in peer.node.log.proofs}
    shows = len({_entries(sim, p, honest=False) for p in live}) > 1
    expected = sim.lied if shows else sim.lied & proven
    for peer in live:
        log = peer.node.log
        if expected & log.members:
            problems.append(f"liar member@P{peer.index}")
        if expected - {offender_of(proof) for proof in log.proofs}:
            problems.append(f"no proof@P{peer.index}")
    for peer in live:
        log = peer.node.log
        # (A removed liar's own entries may stay held behind a gap nobody fills: its
        # entries above its cut, which only it holds. Bounded, and they hold up nothing.)
        if log.held_count and not (sim.liars and set(log.gaps()) <= sim.liars):
            problems.append(f"held@P{peer.index}={log.held_count}")
        if log.stable_count != len(log):
            problems.append(f"unstable@P{peer.index}={len(log) - log.stable_count}")
        strangers = [q.index for q in live if not log.is_member(q.identity.sender_id)]
        if strangers:
            problems.append(f"nonmember@P{peer.index}:{strangers}")
    return problems


def _known(peer: SimPeer) -> set[int]:
    return {int(url.removeprefix("sim://").partition("/")[0]) for url in peer.node.known_addresses()}


def _links(sim: Simulation, index: int) -> list[int]:
    return sorted(e.remote_peer for e in sim._endpoints.values() if e.peer == index)


def _member_or_away(a: SimPeer, b: SimPeer) -> bool:
    """Whether ``a`` gives ``b`` entries: it takes it for a member, or one away, and
    holds no proof against it (it refuses a link to a proven liar)."""
    if b.identity.sender_id in a.node.offenders:
        return False
    info = a.node.log.member_info().get(b.identity.sender_id)
    return a.node.log.is_member(b.identity.sender_id) or (info is not None and info.state is MemberState.AWAY)


def member_components(sim: Simulation) -> list[set[int]]:
    """The live peers, grouped by links on which both ends give each other entries."""
    live = {p.index for p in sim.live()}
    edges = {
        (e.peer, e.remote_peer)
        for e in sim._endpoints.values()
        if e.peer in live
        and e.remote_peer in live
        and _member_or_away(sim.peers[e.peer], sim.peers[e.remote_peer])
        and _member_or_away(sim.peers[e.remote_peer], sim.peers[e.peer])
    }
    components: list[set[int]] = []
    for start in sorted(live):
        if any(start in c for c in components):
            continue
        seen, todo = {start}, [start]
        while todo:
            here = todo.pop()
            for a, b in edges:
                for x, y in ((a, b), (b, a)):
                    if x == here and y not in seen:
                        seen.add(y)
                        todo.append(y)
        components.append(seen)
    return components


def diagnose(sim: TracedSimulation) -> tuple[str, str]:
    """Why a run did not converge: (category, one sentence). The first pattern that fits
    names the category; the others that fit too are named after it."""
    findings = [
        *_placed_differently(sim),
        *_lonely(sim),
        *_eclipsed(sim),
        *_no_majority(sim),
        *_split(sim),
        *_lost_with_author(sim),
        *_left_to_removed(sim),
    ]
    # Members proposed for removal while up and reachable are no reason to be stuck, but
    # often how a room came to it (a member taken out that others reached the room through).
    suspected = {"false suspicion"} if sim.false_suspicions else set()
    if not findings:
        findings = [("unclassified", "no known pattern: see the state and the trace (-v)")]
    # A pattern that names a known limit comes before one that only describes the state.
    findings.sort(key=lambda finding: finding[0] == "unclassified")
    (category, sentence), others = (
        findings[0],
        sorted(({c for c, _ in findings[1:]} | suspected) - {findings[0][0], "unclassified"}),
    )
    return category, sentence + (f" (also: {', '.join(others)})" if others else "")


def _placed_differently(sim: TracedSimulation) -> Iterator[tuple[str, str]]:
    """An honest member's answer to a change of the liar, that two honest peers both
    delivered, with a place in the log at one (which shows the change) and none at the
    other (which shows another version of the liar's entry in its place): the
    ``answers`` generator's fork of a membership entry (docs/equivocation.md, open)."""
    peers = honest_live(sim)
    for peer, other in itertools.permutations(peers, 2):
        shown = {m.id for m in other.node.log}
        for entry in peer.node.log:
            if entry.kind is not EntryKind.FLUSH or entry.flush is None or entry.id in shown:
                continue
            change = entry.flush.change
            theirs = other.node.log.get(change)
            if (
                entry.sender_id not in sim.liars
                and change.sender_id in sim.liars
                and other.node.log.delivered_seq(entry.sender_id) >= entry.seq
                and (theirs is None or theirs.kind is not EntryKind.CHANGE)
            ):
                yield (
                    "honest entry placed differently",
                    (
                        f"{sim.name(entry.sender_id)}#{entry.seq}, an answer to the liar's change "
                        f"#{change.seq}, has a place at P{peer.index} and none at P{other.index}, "
                        "which shows another version of that entry"
                    ),
                )
                return


def _lonely(sim: TracedSimulation) -> Iterator[tuple[str, str]]:
    """A peer with no link that knows the address of no live peer (but liars: it refuses
    one it holds a proof against, as it must)."""
    for peer in honest_live(sim):
        known = [sim.peers[t] for t in _known(peer) if t != peer.index]
        if peer.node.open_count == 0 and not any(
            p.alive and p.identity.sender_id not in sim.liars for p in known
        ):
            yield (
                "lonely peer",
                (
                    f"P{peer.index} has no link and knows the address of no live honest peer "
                    f"(known: {sorted(_known(peer))})"
                ),
            )


def _eclipsed(sim: TracedSimulation) -> Iterator[tuple[str, str]]:
    """An honest peer linked to liars only, that knows the address of no live honest
    peer: what it hears of the room is what the liars choose to pass on (an eclipse),
    and the others, which proved the liar, refuse it."""
    for peer in honest_live(sim):
        links = _links(sim, peer.index)
        known = [sim.peers[t] for t in _known(peer) if t != peer.index]
        if (
            links
            and all(sim.peers[q].identity.sender_id in sim.liars for q in links)
            and not any(p.alive and p.identity.sender_id not in sim.liars for p in known)
        ):
            yield (
                "eclipsed by the liar",
                (
                    f"P{peer.index} is linked to the liar only ({','.join(f'P{q}' for q in links)}) "
                    f"and knows the address of no live honest peer (known: {sorted(_known(peer))})"
                ),
            )


def _no_majority(sim: TracedSimulation) -> Iterator[tuple[str, str]]:
    """Active members of a stuck peer's epoch down for good, too many to remove. A liar
    counts as down: it answers no change that removes it."""
    live = sim.live()
    stuck = [p for p in live if p.node.log.stable_count != len(p.node.log) or p.node.log.held_count]
    for peer in stuck or live:
        log = peer.node.log
        epoch = log.roster.current
        active = [m for m in epoch.members if m not in epoch.exits]
        down = [m for m in active if not sim.is_up(m) or m in sim.liars]
        up = len(active) - len(down)
        if not down or 2 * up > len(active):
            continue
        lost = []  # (down for good after a LEAVE this peer has not delivered)
        for member in down:
            gone = next(p for p in sim.peers if p.identity.sender_id == member)
            leaves = [m for m in gone.stored if m.sender_id == member and m.kind is EntryKind.LEAVE]
            if leaves and log.delivered_seq(member) < leaves[-1].seq:
                held = " (held: an entry of its before it is missing)" if log.get(leaves[-1].id) else ""
                lost.append(
                    f"{sim.name(member)}'s LEAVE #{leaves[-1].seq} is not delivered at P{peer.index}{held}"
                )
        where = f"P{peer.index}'s epoch {epoch.number} (members {sim.names(epoch.members)})"
        back = [m for m, (_, kind, _) in epoch.exits.items() if kind is EntryKind.AWAY and sim.is_up(m)]
        if lost and back:
            yield (
                "LEAVE lost, others away",
                (
                    f"in {where} {'; '.join(lost)}; {sim.names(back)} exited by AWAY and came back: {up} of "
                    f"the {len(active)} active members are up, too few to remove {sim.names(down)} (a strict "
                    "majority must commit), and the room cannot be reopened (not every member exited)"
                ),
            )
        else:
            liars = [sim.name(m) for m in down if m in sim.liars]
            why = "; ".join([*lost, *(f"{name} is the liar" for name in liars)]) or "down for good"
            yield (
                "room of two" if len(active) == 2 else "no majority",
                (
                    f"in {where} {sim.names(down)} cannot be removed ({why}): {up} of {len(active)} "
                    "active members are up and answer, a strict majority must commit"
                ),
            )
        return


def _split(sim: TracedSimulation) -> Iterator[tuple[str, str]]:
    """Live members connected only through peers that are no members (a liar cut off
    from the rest is no split: the honest peers refuse it once proven)."""
    honest = {p.index for p in sim.peers if p.identity.sender_id not in sim.liars}
    components = [c for c in member_components(sim) if c & honest]
    if len(components) < 2:
        return
    groups = " | ".join(",".join(f"P{i}" for i in sorted(c)) for c in components)
    split = f"live members connected only through peers that are no members ({groups})"
    tc = sim.config.target_connections
    if tc == 0:
        yield "fixed-link split", f"{split}, and with target_connections 0 nobody dials around them"
        return
    for component in components:
        if not any(
            sim.peers[t].alive and t not in component for p in component for t in _known(sim.peers[p])
        ):
            group = ",".join(f"P{i}" for i in sorted(component))
            yield "isolated group", f"{split}: nobody in {group} knows the address of a live peer outside it"
            return
    full = [
        f"P{p.index}"
        for p in sim.live()
        if p.node.open_count >= tc
        and any(not _member_or_away(p, sim.peers[q]) for q in _links(sim, p.index) if sim.peers[q].alive)
    ]
    if full:
        yield (
            "links to non-members",
            (
                f"{split}; {','.join(full)} at the link target ({tc}) with links to non-members, "
                "so nobody dials across"
            ),
        )
    else:
        yield "unclassified", f"{split}; addresses across are known and peers are below the link target"


def _lost_with_author(sim: TracedSimulation) -> Iterator[tuple[str, str]]:
    """Entries held behind one of their author's that no live peer holds, the author down:
    the only copy went down with it (before it reached anyone), and they wait for good."""
    live = sim.live()
    for peer in live:
        log = peer.node.log
        for gone in (p for p in sim.peers if not p.alive):
            author = gone.identity.sender_id
            missing = MessageId(author, log.delivered_seq(author) + 1)
            own = [m for m in gone.stored if m.sender_id == author and m.seq > missing.seq]
            held = [m.seq for m in own if log.get(m.id) is not None]
            if not held or any(p.node.log.get(missing) is not None for p in live):
                continue
            info = log.member_info().get(author)
            where = f"{info.state.value} here" if info is not None else "no member here"
            yield (
                "entry lost with its author",
                (
                    f"P{peer.index} holds {sim.name(author)}#{held[0]}..#{held[-1]} ({len(held)}) behind "
                    f"#{missing.seq}, which no live peer holds: {sim.name(author)} is down ({where}), "
                    "its entry went down with it"
                ),
            )


def _left_to_removed(sim: TracedSimulation) -> Iterator[tuple[str, str]]:
    """An open change that only the COMMIT of a member it removes, or of the liar, can
    decide: the other members it keeps that could commit it are too few (the rest
    answered later rounds, or exited), and those that committed it may answer nothing
    else."""
    for peer in honest_live(sim):
        roster = peer.node.log.roster
        for proposal in roster.open_proposals():
            if roster.left_to(proposal, sim.liars):
                change = proposal.change
                yield (
                    "left to a removed member",
                    (
                        f"in P{peer.index}'s epoch {roster.current.number} the open change "
                        f"{sim.name(proposal.id.sender_id)}#{proposal.id.seq} (round {change.round}, "
                        f"removing {sim.names(change.removed)}) can be decided only by the COMMIT "
                        "of a member it removes, or of the liar: the others it keeps that may "
                        "commit it are no strict majority (rounds that never decide, "
                        "docs/equivocation.md)"
                    ),
                )
                return


def state(sim: Simulation) -> str:
    """Every peer in a few characters: epoch, members, log length, stable, held, links."""
    parts = []
    for p in sim.peers:
        log = p.node.log
        if not p.alive:
            parts.append(f"P{p.index}:down")
            continue
        parts.append(
            f"P{p.index}:ep{log.roster.current.number}/m{len(log.members)}/L{len(log)}/S{log.stable_count}"
            f"/H{log.held_count}/o{p.node.open_count}/known={sorted(_known(p))}/links={_links(sim, p.index)}"
        )
    return " ".join(parts)


def judge(run: Run, grace: float) -> Verdict:
    """Look at a run that reached the end of its schedule (and run it on if it must)."""
    sim = run.sim
    liveness = liveness_problems(sim)
    if not liveness:
        safety = safety_problems(sim)
        if safety:
            return Verdict("SAFETY", safety, details=[f"state: {state(sim)}"])
        return known_gap(sim) or Verdict("OK")
    details = [f"state: {state(sim)}"]
    waited = 0.0
    while waited < grace and liveness_problems(sim):
        step = min(GRACE_STEP, grace - waited)
        sim.run_until(sim.now + step)
        waited += step
    if not liveness_problems(sim):
        category, diagnosis = "converges later", f"converged within {waited:g} more virtual seconds"
        if sim.false_suspicions:
            category = "false suspicion"
            diagnosis += f"; proposed while up and reachable: {'; '.join(sim.false_suspicions)}"
    else:
        # Diagnosed as it is stuck, after the grace: at the end of the schedule the room
        # may still have been on its way (a change under way, entries in flight), and
        # stuck later in another way than any pattern fits then.
        category, diagnosis = diagnose(sim)
        if grace:
            diagnosis += f" (still after {grace:g} more virtual seconds)"
            details.append(f"not converged after them: {' '.join(liveness_problems(sim))}")
            details.append(f"state after them: {state(sim)}")
    safety = safety_problems(sim)  # (after the longer run: it may have moved something too)
    return Verdict("SAFETY" if safety else "LIVENESS", safety, liveness, category, diagnosis, details)


def known_gap(sim: TracedSimulation) -> Verdict | None:
    """The gap docs/equivocation.md describes, if it showed: honest peers that kept
    different versions of a liar's entry, and may have called them stable."""
    live = honest_live(sim)
    differ = len({_entries(sim, p, honest=False) for p in live}) > 1
    if not differ and not sim.liar_disagreements:
        return None
    unmarked = _unmarked_differences(sim, live)
    if unmarked:
        # (The peers cannot agree on these lines yet, but each must say so: see
        # evidence.offenders.)
        return Verdict("SAFETY", unmarked, details=[f"state: {state(sim)}"])
    how = _how_liar_entries_differ(sim, live)
    said = f"honest peers show different versions of the liar's entries ({how})"
    if sim.liar_disagreements:
        said += f", and reported them stable: {sim.liar_disagreements[0]}"
        if len(sim.liar_disagreements) > 1:
            said += f" (and {len(sim.liar_disagreements) - 1} more positions)"
    return Verdict("KNOWN", category="liar's entry differs", diagnosis=said)


def _liar_entries(sim: TracedSimulation, live: Sequence[SimPeer]) -> list[dict[MessageId, bytes]]:
    """Per peer of ``live``, the liar's entries its log shows: their signatures by id."""
    return [{m.id: m.signature for m in p.node.log if m.sender_id in sim.liars} for p in live]


def _unmarked_differences(sim: TracedSimulation, live: Sequence[SimPeer]) -> list[str]:
    """An entry of the liar that the honest peers show differently (or not all), shown
    by one of them without the disputed mark (see jsonlines.entry_object)."""
    shown = _liar_entries(sim, live)
    differ = {entry for entry in set().union(*shown) if len({view.get(entry) for view in shown}) > 1}
    problems = []
    for peer, view in zip(live, shown, strict=True):
        marked = offenders(peer.node.log.proofs)
        for entry in sorted(differ & view.keys()):
            if entry.sender_id not in marked:
                what = f"{sim.name(entry.sender_id)}#{entry.seq}"
                problems.append(f"P{peer.index} shows {what} without the disputed mark; others otherwise")
    return problems


def _how_liar_entries_differ(sim: TracedSimulation, live: Sequence[SimPeer]) -> str:
    """How many of the liar's entries the honest peers show in two versions, and how many
    some of them hold without a place (placeless: a stamp within a clock the liar
    announced, see OrderedLog.placeless) where others show one."""
    shown = _liar_entries(sim, live)
    versions = placeless = 0
    for entry in set().union(*shown):
        signatures = {view.get(entry) for view in shown}
        versions += len(signatures - {None}) > 1
        placeless += None in signatures
    return f"{versions} in two versions, {placeless} without a place on some peers"


# Command line -----------------------------------------------------------------------


def parse_seeds(texts: Sequence[str]) -> list[int]:
    """``7``, ``1301-1700``: the seeds, in order, each once."""
    seeds: list[int] = []
    for text in texts:
        first, _, last = text.partition("-")
        try:
            low, high = int(first), int(last or first)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a seed or a range of seeds: {text!r}") from None
        if high < low:
            raise argparse.ArgumentTypeError(f"an empty range: {text!r}")
        seeds += range(low, high + 1)
    return list(dict.fromkeys(seeds))


def _kinds(text: str) -> tuple[str, ...]:
    kinds = tuple(k for k in text.split(",") if k)
    unknown = [k for k in kinds if k not in VAR_KINDS]
    if unknown or not kinds:
        raise argparse.ArgumentTypeError(f"{text!r}: choose among {','.join(VAR_KINDS)}")
    return kinds


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", choices=MODES, help="the generator of schedules")
    parser.add_argument("seeds", nargs="+", help="seeds: N or FIRST-LAST (inclusive), one or more")
    parser.add_argument(
        "--tc", type=int, help="target_connections (exits: default 4; churn: default 0; var: drawn)"
    )
    parser.add_argument(
        "--grace",
        type=float,
        default=300.0,
        help="virtual seconds more for a run that did not converge, to tell slow from stuck (default 300)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="the trace of every seed that failed")
    parser.add_argument("-q", "--quiet", action="store_true", help="no line for the seeds that are OK")
    var = parser.add_argument_group("var, liars, answers (otherwise drawn from the seed; --kinds: var only)")
    var.add_argument("--peers", type=int)
    var.add_argument("--topology", choices=["ring", "random", "full", "line"])
    var.add_argument("--adm", type=float, help="admission delay, seconds")
    var.add_argument("--loss", type=float, help="probability that a frame is lost")
    var.add_argument(
        "--kinds", type=_kinds, help=f"events drawn among these (default all: {','.join(VAR_KINDS)})"
    )
    var.add_argument("--events", type=int, help="events in the schedule (default 1 to 6)")
    var.add_argument("--lines", type=int, help="chat lines over the schedule (default 80)")
    var.add_argument("--extra", type=float, help="virtual seconds run past the schedule's end (default 0)")
    return parser


VAR_ONLY = ("peers", "topology", "adm", "loss", "kinds", "events", "lines", "extra")


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        seeds = parse_seeds(args.seeds)
    except argparse.ArgumentTypeError as e:
        parser.error(str(e))
    given = {name: getattr(args, name) for name in VAR_ONLY if getattr(args, name) is not None}
    if (given and args.mode not in ("var", "liars", "answers")) or ("kinds" in given and args.mode != "var"):
        parser.error(f"{', '.join('--' + n for n in given)}: var, liars, answers only (--kinds: var only)")
    knobs = VarKnobs(tc=args.tc, **given)
    # Every time the log's quick look says no position can become stable, the full
    # computation must agree (as in the tests, see tests/conftest.py).
    cross_check, p2pchat.log._CROSS_CHECK = p2pchat.log._CROSS_CHECK, True
    try:
        return explore(args, seeds, knobs, given)
    finally:
        p2pchat.log._CROSS_CHECK = cross_check


def explore(args: argparse.Namespace, seeds: Sequence[int], knobs: VarKnobs, given: dict[str, object]) -> int:
    """Run and judge every seed, print a line for each and the summary; the exit status."""
    counts: dict[str, int] = {}
    categories: dict[str, list[int]] = {}
    started = time.monotonic()
    for seed in seeds:
        t0 = time.monotonic()
        built: list[TracedSimulation] = []
        description = ""
        try:
            run = generate(args.mode, seed, args.tc, knobs, built)
            description = run.description
            verdict = judge(run, args.grace)
        except Exception:
            lines = traceback.format_exc().rstrip().splitlines()
            verdict = Verdict("ERROR", lines[-1:], details=lines)
        counts[verdict.status] = counts.get(verdict.status, 0) + 1
        if verdict.category:
            categories.setdefault(verdict.category, []).append(seed)
        if verdict.status == "OK" and args.quiet:
            continue
        sim = built[0] if built else None
        lost = f" lost={sim.report().lost}" if sim is not None and verdict.status != "ERROR" else ""
        print(f"{seed} {verdict.status} {args.mode} {description}{lost} ({time.monotonic() - t0:.1f} s)")
        for problem in verdict.safety[:SHOWN]:
            print(f"    {problem}")
        if len(verdict.safety) > SHOWN:
            print(f"    ... and {len(verdict.safety) - SHOWN} more")
        if verdict.liveness:
            print(f"    not converged: {' '.join(verdict.liveness)}")
            print(f"    diagnosis: {verdict.category}: {verdict.diagnosis}")
        elif verdict.diagnosis:
            print(f"    {verdict.category}: {verdict.diagnosis}")
        for detail in verdict.details:
            print(f"    {detail}")
        if sim is not None and (args.verbose or verdict.status in ("SAFETY", "ERROR")):
            print("    trace:")
            for line in sim.trace:
                print(f"      {line}")
        sys.stdout.flush()
    wall = time.monotonic() - started
    tally = ", ".join(f"{status} {counts.get(status, 0)}" for status in STATUSES)
    kinds = "; ".join(f"{c}: {' '.join(map(str, s))}" for c, s in sorted(categories.items()))
    knobs_given = " ".join(
        f"--{k}={','.join(v) if isinstance(v, tuple) else v}"
        for k, v in [("tc", args.tc), *given.items()]
        if v is not None
    )
    print(
        f"SUMMARY {args.mode} {knobs_given + ' ' if knobs_given else ''}seeds {_ranges(seeds)} "
        f"({len(seeds)}): {tally}" + (f" [{kinds}]" if kinds else "") + f"; wall {wall:.0f} s"
    )
    return 1 if counts.get("SAFETY") or counts.get("ERROR") else 0


def _ranges(seeds: Sequence[int]) -> str:
    parts: list[str] = []
    for seed in seeds:
        if parts and seed == int(parts[-1].rpartition("-")[2]) + 1:
            parts[-1] = f"{parts[-1].partition('-')[0]}-{seed}"
        else:
            parts.append(str(seed))
    return ",".join(parts)


if __name__ == "__main__":
    raise SystemExit(main())
