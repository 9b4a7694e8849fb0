"""Convergence of the ordered log, property-tested with hypothesis.

Hypothesis draws a causal history: K senders, each with its own OrderedLog, that
send and sync with each other in a random interleaving. Every message is composed
for real by its author's log, and the generation records the ground truth: the
causal past of each message (what its author had delivered when sending) and true
clock announcements (after sending ``seq`` messages the author's clock was ``L``).

The messages, some duplicates and some announcements are then fed to fresh replicas,
each in its own order drawn with ``st.permutations``. Whatever the order, every replica
must end with the same log, sorted by ``(lamport, sender_id)``, consistent with
happens-before and per-sender FIFO, with the true concurrency flags; and along the
way a position reported stable never moves and the visible log stays closed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.identity import Identity
from p2pchat.log import (
    Concurrent,
    Delivered,
    LogEvent,
    OrderedLog,
    ReceiptStatus,
    Stable,
)
from p2pchat.message import Message, MessageId, MessageKey
from p2pchat.wire import Head

MAX_SENDERS = 5
MAX_OPS = 25
MAX_DUPLICATES = 8
# Signing costs ~25 µs: make the identities once.
IDENTITIES = [Identity(bytes([i + 1]) * 32) for i in range(MAX_SENDERS)]


@dataclass(frozen=True)
class History:
    """A generated conversation and its ground truth."""

    senders: tuple[bytes, ...]
    messages: tuple[Message, ...]
    past: dict[MessageId, frozenset[MessageId]]
    """For each message, the ids its author had delivered when it sent it."""
    heads: tuple[Head, ...]
    """True clock announcements seen during the generation, in generation order, then
    (with ``settle``) each sender's final one, after everyone has everything."""
    final: int
    """How many of ``heads``, at the end, are final announcements."""

    def _name(self, message_id: MessageId) -> str:
        return f"p{self.senders.index(message_id.sender_id)}#{message_id.seq}"

    def __repr__(self) -> str:
        messages = [
            f"{self._name(m.id)} L{m.lamport} past={{{', '.join(sorted(map(self._name, self.past[m.id])))}}}"
            for m in self.messages
        ]
        heads = [
            f"{i}: p{self.senders.index(h.sender_id)} after #{h.clock_seq} clock {h.clock_lamport}"
            for i, h in enumerate(self.heads)
        ]
        return f"History(senders={len(self.senders)}, messages={messages}, heads={heads}, final={self.final})"

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
    seq = log.delivered_seq(identity.sender_id)
    return Head.announce(identity, seq, seq, log.clock)


def _sync(logs: list[OrderedLog], i: int, j: int) -> None:
    """Sender i delivers everything sender j has delivered."""
    for message in logs[j].messages():
        receipt = logs[i].receive(message)
        assert receipt.status in (ReceiptStatus.NEW, ReceiptStatus.DUPLICATE)
    assert {m.id for m in logs[j]} <= {m.id for m in logs[i]}


@st.composite
def histories(draw: st.DrawFn, vector_clocks: bool, settle: bool = False) -> History:
    k = draw(st.integers(2, MAX_SENDERS), label="senders")
    identities = IDENTITIES[:k]
    logs = [OrderedLog() for _ in identities]
    operation = st.one_of(
        # ("send", sender, wall clock): the wall clock is arbitrary, even going backwards.
        st.tuples(st.just("send"), st.integers(0, k - 1), st.integers(0, 2**40)),
        # ("sync", i, j'): i delivers everything j has delivered (j' skips i).
        st.tuples(st.just("sync"), st.integers(0, k - 1), st.integers(0, k - 2)),
    )
    # Draw the length first: hypothesis keeps plain lists short, and convergence bugs need
    # a few rounds of sending and syncing to show.
    length = draw(st.integers(1, MAX_OPS), label="length")
    operations = draw(st.lists(operation, min_size=length, max_size=length), label="operations")

    messages: list[Message] = []
    past: dict[MessageId, frozenset[MessageId]] = {}
    announcements: dict[Head, None] = {}
    for kind, i, arg in operations:
        log, identity = logs[i], identities[i]
        if kind == "send":
            before = frozenset(m.id for m in log)
            message = log.compose(
                identity,
                name=f"peer{i}",
                text=f"message {len(messages)}",
                sent_at_ms=arg,
                vector_clocks=vector_clocks,
            )
            receipt = log.receive(message)
            assert receipt.status is ReceiptStatus.NEW
            assert log.delivered_seq(identity.sender_id) == message.seq
            messages.append(message)
            past[message.id] = before
        else:
            _sync(logs, i, arg + (arg >= i))
        announcements[_announcement(log, identity)] = None

    final_heads: tuple[Head, ...] = ()
    if settle:
        for j in range(1, k):
            _sync(logs, 0, j)
        for i in range(1, k):
            _sync(logs, i, 0)
        final_heads = tuple(
            _announcement(log, identity) for log, identity in zip(logs, identities, strict=True)
        )
        assert all(
            head.clock_lamport == max((m.lamport for m in messages), default=0) for head in final_heads
        )
    return History(
        senders=tuple(identity.sender_id for identity in identities),
        messages=tuple(messages),
        past=past,
        heads=(*announcements, *final_heads),
        final=len(final_heads),
    )


Item = tuple[str, int]
"""("message", index into History.messages) or ("head", index into History.heads)."""


@st.composite
def streams(draw: st.DrawFn, history: History) -> list[Item]:
    """One replica's input: every message, some again, some announcements; shuffled."""
    count = len(history.messages)
    items: list[Item] = [("message", i) for i in range(count)]
    if count:
        duplicates = draw(st.lists(st.integers(0, count - 1), max_size=MAX_DUPLICATES))
        items += [("message", i) for i in duplicates]
    first_final = len(history.heads) - history.final
    heads = draw(st.sets(st.integers(0, first_final - 1))) if first_final else set()
    items += [("head", i) for i in sorted(heads)]
    items += [("head", i) for i in range(first_final, len(history.heads))]
    return draw(st.permutations(items))


@st.composite
def scenarios(draw: st.DrawFn, vector_clocks: bool, settle: bool = False) -> tuple[History, list[list[Item]]]:
    history = draw(histories(vector_clocks, settle))
    replicas = draw(st.integers(2, 3), label="replicas")
    return history, [draw(streams(history), label=f"stream {r}") for r in range(replicas)]


class Replica:
    """A fresh OrderedLog fed one stream, checking the invariants after every step."""

    def __init__(self, history: History, vector_clocks: bool) -> None:
        self.history = history
        self.vector_clocks = vector_clocks
        self.concurrent_with = history.concurrent_with()
        self.log = OrderedLog(members=history.senders)
        self.seen: set[MessageId] = set()
        # What the events say, replayed independently of the log.
        self.mirror: list[MessageKey] = []
        self.flagged: set[MessageId] = set()
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
                assert receipt.status is expected
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
            else:
                raise AssertionError(f"honest history produced {event!r}")

    def check(self) -> None:
        log = self.log
        keys = [m.key for m in log]
        assert keys == self.mirror, "Delivered indices disagree with the log"
        assert keys == sorted(keys)
        assert log.stability_violations == 0
        assert not log.blocked_senders()
        assert not log.evidence

        # A position reported stable never changes.
        assert log.stable_count >= len(self.pinned)
        assert keys[: len(self.pinned)] == self.pinned
        self.pinned = keys[: log.stable_count]

        delivered = {m.id for m in log}
        fifo_closure = {
            MessageId(s, seq) for s in self.history.senders for seq in range(1, log.delivered_seq(s) + 1)
        }
        assert delivered == fifo_closure
        if self.vector_clocks:
            for message_id in delivered:
                assert self.history.past[message_id] <= delivered, "not causally closed"
            for message_id in delivered:
                truth = not self.concurrent_with[message_id].isdisjoint(delivered)
                assert log.is_concurrent(message_id) == truth
                assert (message_id in self.flagged) == truth
        else:
            assert not self.flagged
            assert not any(log.is_concurrent(message_id) for message_id in delivered)


def check_final(history: History, log: OrderedLog, vector_clocks: bool) -> None:
    assert log.held_count == 0
    assert len(log) == len(history.messages)
    keys = [m.key for m in log]
    assert keys == sorted(m.key for m in history.messages)
    position = {m.id: index for index, m in enumerate(log)}
    for message in history.messages:
        for earlier in history.past[message.id]:
            assert position[earlier] < position[message.id], "order contradicts causality"
    for sender in history.senders:
        seqs = [m.seq for m in log if m.sender_id == sender]
        assert seqs == list(range(1, len(seqs) + 1)), "order contradicts per-sender FIFO"
    truth = history.concurrent_with()
    for message in history.messages:
        expected = vector_clocks and bool(truth[message.id])
        assert log.is_concurrent(message.id) == expected


@pytest.mark.parametrize("vector_clocks", [True, False], ids=["vector", "plain"])
@given(data=st.data())
def test_replicas_converge_whatever_the_delivery_order(vector_clocks: bool, data: st.DataObject) -> None:
    history, replica_streams = data.draw(scenarios(vector_clocks))
    logs = []
    for stream in replica_streams:
        log = Replica(history, vector_clocks).feed(stream)
        check_final(history, log, vector_clocks)
        logs.append([m.key for m in log])
    assert all(keys == logs[0] for keys in logs)


@pytest.mark.parametrize("vector_clocks", [True, False], ids=["vector", "plain"])
@given(data=st.data())
def test_final_announcements_make_the_whole_log_stable(vector_clocks: bool, data: st.DataObject) -> None:
    history, replica_streams = data.draw(scenarios(vector_clocks, settle=True))
    for stream in replica_streams:
        log = Replica(history, vector_clocks).feed(stream)
        check_final(history, log, vector_clocks)
        assert log.stable_count == len(log)
