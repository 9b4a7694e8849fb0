"""Convergence of the ordered log under a changing membership, property-tested.

Hypothesis draws a causal history of one room: a founder and up to four other
people, each with its own OrderedLog, who write, sync with each other, admit
newcomers, go away, leave and come back (re-admitted) in a random interleaving,
plus strangers who write into the room without ever being admitted. Every entry
is composed for real by its author's log (a stranger's is signed by hand, with an
honest stamp); the generation records the ground truth: the causal past of each
entry and true clock announcements.

The entries, some duplicates and some announcements are then fed to fresh
replicas, each in its own order drawn with ``st.permutations``. Whatever the order,
every replica must end with the same log, sorted by ``(lamport, sender_id)``,
consistent with happens-before and per-sender FIFO, with the true concurrency
flags; every honest entry is delivered and every stranger's entry refused; and
along the way a position reported stable never moves and the visible log stays
causally closed. Once everyone has everything and the active members announce
their final clocks, the whole log is stable (liveness).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from p2pchat.identity import Identity
from p2pchat.log import (
    Concurrent,
    Decided,
    Delivered,
    Entombed,
    LogEvent,
    NotAMember,
    OrderedLog,
    ReceiptStatus,
    Refusal,
    Refused,
    Stable,
    Voided,
)
from p2pchat.message import Change, EntryKind, Flush, Message, MessageId, MessageKey
from p2pchat.wire import Head

MAX_PEOPLE = 5
MAX_STRANGERS = 2
MAX_OPS = 30
MAX_DUPLICATES = 8
# Signing costs ~25 µs: make the identities once.
IDENTITIES = [Identity(bytes([i + 1]) * 32) for i in range(MAX_PEOPLE)]
STRANGERS = [Identity(bytes([0x40 + i]) * 32) for i in range(MAX_STRANGERS)]


@dataclass(frozen=True)
class History:
    """A generated room and its ground truth."""

    room_id: bytes
    people: tuple[bytes, ...]
    messages: tuple[Message, ...]
    """Every entry of the room's members (the founding genesis first), in writing order."""
    intruders: tuple[Message, ...]
    """Entries written by strangers: every replica must refuse them."""
    past: dict[MessageId, frozenset[MessageId]]
    """For each honest entry, the ids its author had delivered when it wrote it."""
    heads: tuple[Head, ...]
    """True clock announcements seen during the generation, in generation order, then
    (with ``settle``) each active member's final one, after everyone has everything."""
    final: int
    """How many of ``heads``, at the end, are final announcements."""
    settled: bool = True
    """With ``settle``: whether the room could settle (no change left open, nobody
    crashed still a member: else stability rightly waits)."""

    def _name(self, message_id: MessageId) -> str:
        return f"p{self.people.index(message_id.sender_id)}#{message_id.seq}"

    def __repr__(self) -> str:
        messages = [
            f"{self._name(m.id)} L{m.lamport} {m.kind.name}{_body(self, m)} "
            f"past={{{', '.join(sorted(map(self._name, self.past[m.id])))}}}"
            for m in self.messages
        ]
        intruders = [f"x{m.sender_id[0]:x}#{m.seq} L{m.lamport}" for m in self.intruders]
        heads = [
            f"{i}: {h.sender_id[0]:x} after #{h.clock_seq} clock {h.clock_lamport}"
            for i, h in enumerate(self.heads)
        ]
        return f"History(entries={messages}, intruders={intruders}, heads={heads}, final={self.final})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # hypothesis' failure report
        printer.text(repr(self))

    def happens_before(self, a: MessageId, b: MessageId) -> bool:
        return a in self.past[b]

    def concurrent_with(self) -> dict[MessageId, frozenset[MessageId]]:
        ids = [m.id for m in self.messages]
        return {
            a: frozenset(
                b for b in ids if b != a and not self.happens_before(a, b) and not self.happens_before(b, a)
            )
            for a in ids
        }


def _announcement(log: OrderedLog, identity: Identity) -> Head:
    return log.announcement(identity)


def _sync(logs: list[OrderedLog], i: int, j: int) -> None:
    """Person i delivers everything person j has delivered (tombstones too)."""
    for message in sorted([*logs[j].messages(), *logs[j].tombstones()], key=lambda m: m.key):
        receipt = logs[i].receive(message)
        assert receipt.status in (ReceiptStatus.NEW, ReceiptStatus.DUPLICATE)
    held = {m.id for m in (*logs[i], *logs[i].tombstones())}
    assert {m.id for m in (*logs[j], *logs[j].tombstones())} <= held


def _intrude(log: OrderedLog, stranger: Identity, wall: int) -> Message:
    """A stranger's entry with an honest stamp and vector clock, signed by hand."""
    deps = log.vector()
    lamport = 1 + max((log.get(MessageId(s, n)).lamport for s, n in deps.items()), default=0)  # type: ignore[union-attr]
    return Message.create(
        stranger,
        seq=1,
        lamport=lamport,
        sent_at_ms=wall,
        name="intruder",
        text="let me in",
        deps=deps,
        room_id=log.room_id or b"",
    )


OPERATIONS = ("send",) * 4 + ("sync",) * 4 + ("admit",) * 3 + ("flush",) * 5
OPERATIONS += ("away", "leave", "intrude", "crash") + ("remove",) * 2
"""Weighted: people mostly write, sync, admit and answer changes; now and then one goes
away, leaves, crashes (does nothing more) or proposes to remove someone."""


def _answer(log: OrderedLog, identity: Identity) -> tuple[EntryKind, Flush] | None:
    """The FLUSH or COMMIT ``identity`` owes (rule 10), if any."""
    return log.roster.owed_answer(identity.sender_id)


def _proposal(
    log: OrderedLog, identity: Identity, admit: tuple[bytes, ...], remove: tuple[bytes, ...]
) -> Change | None:
    """A change ``identity`` may propose; superseding the open ones if they all wait for an
    answer from a member it removes (as the shell does for members silent too long)."""
    roster = log.roster
    gone = frozenset(remove)
    open_ = roster.open_proposals()
    stuck = bool(open_) and all(roster.waiting_on(p) & gone for p in open_)
    return roster.proposal(identity.sender_id, tuple((m, "x") for m in admit), gone, supersede=stuck)


@st.composite
def histories(draw: st.DrawFn, settle: bool = False, min_length: int = 1) -> History:
    k = draw(st.integers(2, MAX_PEOPLE), label="people")
    identities = IDENTITIES[:k]
    founder_log, genesis = OrderedLog.found(identities[0], name="p0", room_name="room", sent_at_ms=0)
    room_id = genesis.room_id()
    logs = [founder_log, *(OrderedLog(room_id=room_id) for _ in identities[1:])]
    # (operation, who, whom, wall clock): who and whom pick among the people for whom the
    # operation makes sense at that point; the wall clock is arbitrary, even going backwards.
    operation = st.tuples(
        st.sampled_from(OPERATIONS), st.integers(0, 99), st.integers(0, 99), st.integers(0, 2**40)
    )
    # Draw the length first: hypothesis keeps plain lists short, and convergence bugs need
    # a few rounds of writing, syncing and admitting to show.
    length = draw(st.integers(min_length, MAX_OPS), label="length")
    operations = draw(st.lists(operation, min_size=length, max_size=length), label="operations")

    messages: list[Message] = [genesis]
    intruders: list[Message] = []
    past: dict[MessageId, frozenset[MessageId]] = {genesis.id: frozenset()}
    announcements: dict[Head, None] = {}

    def write(i: int, kind: EntryKind, text: str, wall: int, **body: Any) -> None:
        log, identity = logs[i], identities[i]
        before = frozenset(m.id for m in (*log, *log.tombstones()))
        try:
            message = log.compose(identity, name=f"p{i}", text=text, sent_at_ms=wall, kind=kind, **body)
        except NotAMember:
            return  # (answered an open change: an honest member writes nothing until it ends)
        assert log.receive(message).status is ReceiptStatus.NEW
        messages.append(message)
        past[message.id] = before

    crashed: set[int] = set()
    for op, who, whom, wall in operations:
        live = [i for i in range(k) if i not in crashed]
        members = [i for i in live if logs[i].is_member(identities[i].sender_id)]
        if op == "sync":
            i, j = who % k, whom % k
            if i != j and i not in crashed:
                _sync(logs, i, j)
        elif op == "intrude" and len(intruders) < MAX_STRANGERS:
            i = who % k
            intruders.append(_intrude(logs[i], STRANGERS[len(intruders)], wall))
        elif not members:
            continue  # everybody is gone: the room is over
        else:
            i = members[who % len(members)]
            log = logs[i]
            outsiders = [
                j for j in range(k) if j not in crashed and not log.is_member(identities[j].sender_id)
            ]
            others = sorted(log.members - {identities[i].sender_id})
            if op == "send":
                write(i, EntryKind.TEXT, f"message {len(messages)}", wall)
            elif op == "admit" and outsiders:
                j = outsiders[whom % len(outsiders)]
                change = _proposal(log, identities[i], (identities[j].sender_id,), ())
                if change is not None:
                    write(i, EntryKind.CHANGE, "", wall, change=change)
            elif op == "remove" and others:
                change = _proposal(log, identities[i], (), (others[whom % len(others)],))
                if change is not None:
                    write(i, EntryKind.CHANGE, "", wall, change=change)
            elif op == "flush":
                # Whoever knows of the change and owes an answer gives it now (in turn).
                for j in members[who % len(members) :] + members[: who % len(members)]:
                    owed = _answer(logs[j], identities[j])
                    if owed is not None:
                        write(j, owed[0], "", wall, flush=owed[1])
            elif op == "crash" and i != 0:
                crashed.add(i)
            elif op in ("away", "leave"):
                write(i, EntryKind.AWAY if op == "away" else EntryKind.LEAVE, op, wall)
        i = who % k
        if i not in crashed:
            announcements[_announcement(logs[i], identities[i])] = None

    final_heads: tuple[Head, ...] = ()
    if settle:
        live = [i for i in range(k) if i not in crashed]
        _share(logs, live)
        # The live members finish the open changes, then remove whoever crashed (superseding
        # a change that waits for a crashed member's answer).
        for _ in range(6):
            for _answers in range(3):  # a FLUSH, the COMMIT it makes due, a later round's FLUSH
                for i in live:
                    owed = _answer(logs[i], identities[i])
                    if owed is not None:
                        write(i, owed[0], "", 0, flush=owed[1])
                _share(logs, live)
            gone = tuple(
                sorted(
                    identities[c].sender_id
                    for c in crashed
                    if logs[live[0]].is_member(identities[c].sender_id)
                )
            )
            proposers = [i for i in live if logs[i].is_member(identities[i].sender_id)]
            if gone and proposers:
                change = _proposal(logs[proposers[0]], identities[proposers[0]], (), gone)
                if change is not None:
                    write(proposers[0], EntryKind.CHANGE, "", 0, change=change)
                    _share(logs, live)
        reference = logs[live[0]]
        settled = not reference.roster.open_proposals() and not any(
            reference.is_member(identities[c].sender_id) for c in crashed
        )
        if settled:
            final_heads = tuple(
                _announcement(logs[i], identities[i])
                for i in live
                if logs[i].is_member(identities[i].sender_id)
            )
    return History(
        room_id=room_id,
        people=tuple(identity.sender_id for identity in identities),
        messages=tuple(messages),
        intruders=tuple(intruders),
        past=past,
        heads=(*announcements, *final_heads),
        final=len(final_heads),
        settled=not settle
        or bool(final_heads)
        or not any(logs[i].is_member(identities[i].sender_id) for i in range(k)),
    )


def _share(logs: list[OrderedLog], live: list[int]) -> None:
    """Everyone live delivers everything anyone live has."""
    for j in live[1:]:
        _sync(logs, live[0], j)
    for i in live[1:]:
        _sync(logs, i, live[0])


def _body(history: History, message: Message) -> str:
    def who(member: bytes) -> str:
        return f"p{history.people.index(member)}" if member in history.people else "?"

    if message.change is not None:
        change = message.change
        admitted = "".join(f"+{who(m)}" for m, _ in change.admitted)
        removed = "".join(f"-{who(m)}" for m in change.removed)
        return f"(e{change.epoch}r{change.round}{admitted}{removed})"
    if message.flush is not None:
        return f"(e{message.flush.epoch}r{message.flush.round} {history._name(message.flush.change)})"
    return ""


Item = tuple[str, int]
"""("message" | "intruder", index into History.messages / intruders) or ("head", index)."""


@st.composite
def streams(draw: st.DrawFn, history: History) -> list[Item]:
    """One replica's input: every entry, some again, the intruders, some announcements."""
    count = len(history.messages)
    items: list[Item] = [("message", i) for i in range(count)]
    duplicates = draw(st.lists(st.integers(0, count - 1), max_size=MAX_DUPLICATES))
    items += [("message", i) for i in duplicates]
    items += [("intruder", i) for i in range(len(history.intruders))]
    first_final = len(history.heads) - history.final
    heads = draw(st.sets(st.integers(0, first_final - 1))) if first_final else set()
    items += [("head", i) for i in sorted(heads)]
    items += [("head", i) for i in range(first_final, len(history.heads))]
    return draw(st.permutations(items))


@st.composite
def scenarios(draw: st.DrawFn, settle: bool = False, min_length: int = 1) -> tuple[History, list[list[Item]]]:
    history = draw(histories(settle, min_length))
    replicas = draw(st.integers(2, 3), label="replicas")
    return history, [draw(streams(history), label=f"stream {r}") for r in range(replicas)]


class Replica:
    """A fresh OrderedLog of the room fed one stream, checking the invariants after every step."""

    def __init__(self, history: History) -> None:
        self.history = history
        self.concurrent_with = history.concurrent_with()
        self.intruder_ids = {m.id for m in history.intruders}
        self.log = OrderedLog(room_id=history.room_id)
        self.seen: set[MessageId] = set()
        # What the events say, replayed independently of the log.
        self.mirror: list[MessageKey] = []
        self.flagged: set[MessageId] = set()
        self.refused: set[MessageId] = set()
        # Keys at the positions reported stable so far.
        self.pinned: list[MessageKey] = []

    def feed(self, stream: list[Item]) -> OrderedLog:
        for kind, item in stream:
            if kind == "message":
                message = self.history.messages[item]
                receipt = self.log.receive(message)
                first_time = message.id not in self.seen
                self.seen.add(message.id)
                expected = ReceiptStatus.NEW if first_time else ReceiptStatus.DUPLICATE
                assert receipt.status is expected, "an honest entry was not taken"
                self.apply(receipt.events)
            elif kind == "intruder":
                receipt = self.log.receive(self.history.intruders[item])
                assert receipt.status in (ReceiptStatus.NEW, ReceiptStatus.REFUSED)  # (held, or refused)
                self.apply(receipt.events)
            else:
                self.apply(self.log.observe_head(self.history.heads[item]))
            self.check()
        return self.log

    def apply(self, events: tuple[LogEvent, ...] | list[LogEvent]) -> None:
        for event in events:
            if isinstance(event, Delivered):
                self.mirror.insert(event.index, event.message.key)
                if event.concurrent:
                    self.flagged.add(event.message.id)
            elif isinstance(event, Concurrent):
                assert self.flagged.isdisjoint(event.ids), "flagged twice"
                self.flagged.update(event.ids)
            elif isinstance(event, Stable):
                assert event.count == self.log.stable_count
            elif isinstance(event, Voided):
                for message in event.messages:
                    self.mirror.remove(message.key)
            elif isinstance(event, (Decided, Entombed)):
                pass  # (a decision; an entry kept as a tombstone: checked against the log below)
            elif isinstance(event, Refused) and event.message.id in self.intruder_ids:
                assert event.reason is Refusal.NOT_A_MEMBER
                self.refused.add(event.message.id)
            else:
                raise AssertionError(f"honest history produced {event!r}")

    def check(self) -> None:
        log = self.log
        keys = [m.key for m in log]
        assert keys == self.mirror, "Delivered indices disagree with the log"
        assert keys == sorted(keys)
        assert log.stability_violations == 0
        assert set(log.blocked_senders()) <= {m.sender_id for m in self.history.intruders}
        assert not log.evidence

        # A position reported stable never changes.
        assert log.stable_count >= len(self.pinned)
        assert keys[: len(self.pinned)] == self.pinned, "a stable position moved"
        self.pinned = keys[: log.stable_count]

        visible = {m.id for m in log}
        delivered = visible | {m.id for m in log.tombstones()}
        assert delivered.isdisjoint(self.intruder_ids), "a stranger's entry was delivered"
        fifo_closure = {
            MessageId(s, seq) for s in self.history.people for seq in range(1, log.delivered_seq(s) + 1)
        }
        assert delivered == fifo_closure
        for message_id in delivered:
            assert self.history.past[message_id] <= delivered, "not causally closed"
        for message_id in visible:
            truth = not self.concurrent_with[message_id].isdisjoint(delivered)
            assert log.is_concurrent(message_id) == truth
            assert (message_id in self.flagged) == truth


def check_final(history: History, replica: Replica) -> None:
    log = replica.log
    assert log.held_count == 0, "something is held for good"
    assert replica.refused == replica.intruder_ids, "every stranger's entry is refused"
    tombstones = log.tombstones()
    assert len(log) + len(tombstones) == len(history.messages), "every honest entry is delivered"
    keys = [m.key for m in log]
    assert sorted([*keys, *(m.key for m in tombstones)]) == sorted(m.key for m in history.messages)
    position = {m.id: index for index, m in enumerate(log)}
    for message in log:
        for earlier in history.past[message.id]:
            if earlier in position:
                assert position[earlier] < position[message.id], "order contradicts causality"
    for person in history.people:
        seqs = [m.seq for m in log if m.sender_id == person]
        assert seqs == sorted(seqs), "order contradicts per-sender FIFO"
    truth = history.concurrent_with()
    for message in log:
        assert log.is_concurrent(message.id) == bool(truth[message.id])


@given(data=st.data())
def test_replicas_converge_whatever_the_delivery_order(data: st.DataObject) -> None:
    history, replica_streams = data.draw(scenarios())
    logs = []
    for stream in replica_streams:
        replica = Replica(history)
        replica.feed(stream)
        check_final(history, replica)
        logs.append(([m.key for m in replica.log], [m.key for m in replica.log.tombstones()]))
    assert all(keys == logs[0] for keys in logs)


@given(data=st.data())
def test_final_announcements_of_the_active_members_make_the_whole_log_stable(data: st.DataObject) -> None:
    history, replica_streams = data.draw(scenarios(settle=True))
    for stream in replica_streams:
        replica = Replica(history)
        replica.feed(stream)
        check_final(history, replica)
        if history.settled:
            assert replica.log.stable_count == len(replica.log)


@given(data=st.data())
def test_long_histories_with_churn_converge_and_settle(data: st.DataObject) -> None:
    # Hypothesis favours short inputs: this one always runs 25-30 operations of churn.
    history, replica_streams = data.draw(scenarios(settle=True, min_length=MAX_OPS - 5))
    logs = []
    for stream in replica_streams:
        replica = Replica(history)
        replica.feed(stream)
        check_final(history, replica)
        if history.settled:
            assert replica.log.stable_count == len(replica.log)
        logs.append(([m.key for m in replica.log], [m.key for m in replica.log.tombstones()]))
    assert all(keys == logs[0] for keys in logs)


# Removal under partition -----------------------------------------------------------

REMOVAL_OPS = ("send",) * 4 + ("sync",) * 6 + ("propose",) * 2 + ("flush",) * 4 + ("supersede",)
"""``supersede``: a member proposes a removal in a later round while a change is open, as
the rules allow any member that holds no COMMIT of an open change (whether or not the
open one is stuck): the adversarial case for two decisions in one epoch."""


@st.composite
def removal_histories(draw: st.DrawFn) -> History:
    """Four members (the founder and three it admitted) write and sync in a random
    interleaving, and now and then one proposes to remove another, possibly a rival
    proposal of the same round, while the one being removed goes on writing and
    syncing with some of the others (a partition, not a crash). The others answer
    the changes they see, commit those they see complete, and may move on to a later
    round of their own. Every entry is composed by its author's log."""
    people = IDENTITIES[:4]
    founder_log, genesis = OrderedLog.found(people[0], name="p0", room_name="room", sent_at_ms=0)
    admitted = tuple((p.sender_id, f"p{i}") for i, p in enumerate(people) if i)
    change = founder_log.compose(
        people[0], name="p0", text="", sent_at_ms=0, kind=EntryKind.CHANGE, change=Change(0, 0, admitted)
    )
    founder_log.receive(change)
    commit = founder_log.compose(
        people[0], name="p0", text="", sent_at_ms=0, kind=EntryKind.COMMIT, flush=Flush(0, 0, change.id)
    )
    founder_log.receive(commit)
    messages: list[Message] = [genesis, change, commit]
    past: dict[MessageId, frozenset[MessageId]] = {
        genesis.id: frozenset(),
        change.id: frozenset({genesis.id}),
        commit.id: frozenset({genesis.id, change.id}),
    }
    logs = [founder_log, *(OrderedLog(room_id=genesis.room_id()) for _ in people[1:])]
    for log in logs[1:]:
        log.receive_many([genesis, change, commit])
    announcements: dict[Head, None] = {}

    def write(i: int, kind: EntryKind, **body: Any) -> None:
        log = logs[i]
        before = frozenset(m.id for m in (*log, *log.tombstones()))
        try:
            message = log.compose(people[i], name=f"p{i}", text="", sent_at_ms=0, kind=kind, **body)
        except NotAMember:
            return
        assert log.receive(message).status is ReceiptStatus.NEW
        messages.append(message)
        past[message.id] = before

    operation = st.tuples(st.sampled_from(REMOVAL_OPS), st.integers(0, 3), st.integers(0, 3))
    for op, i, j in draw(st.lists(operation, min_size=10, max_size=40), label="operations"):
        log = logs[i]
        if op == "sync":
            if i != j:
                _sync(logs, i, j)
        elif op == "send":
            if log.is_member(people[i].sender_id):
                write(i, EntryKind.TEXT)
        elif op in ("propose", "supersede"):
            proposal = _proposal(log, people[i], (), (people[j].sender_id,))
            if op == "supersede":
                gone = frozenset({people[j].sender_id})
                proposal = log.roster.proposal(people[i].sender_id, (), gone, supersede=True)
            if proposal is not None:
                write(i, EntryKind.CHANGE, change=proposal)
        else:
            owed = log.roster.owed_answer(people[i].sender_id)
            if owed is not None:
                write(i, owed[0], flush=owed[1])
        announcements[logs[i].announcement(people[i])] = None
    return History(
        room_id=genesis.room_id(),
        people=tuple(p.sender_id for p in people),
        messages=tuple(messages),
        intruders=(),
        past=past,
        heads=tuple(announcements),
        final=0,
    )


@given(data=st.data())
def test_removals_under_partition_never_move_a_stable_position(data: st.DataObject) -> None:
    history = data.draw(removal_histories())
    logs = []
    for r in range(data.draw(st.integers(2, 3), label="replicas")):
        replica = Replica(history)
        replica.feed(data.draw(streams(history), label=f"stream {r}"))
        check_final(history, replica)
        logs.append(([m.key for m in replica.log], [m.key for m in replica.log.tombstones()]))
    assert all(keys == logs[0] for keys in logs)
