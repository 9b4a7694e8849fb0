"""Unit tests for the ordered log (p2pchat.log), one rule of DESIGN.md at a time.

Dedup, holding and gap reports, the refusals (equivocation, bad signatures, forged,
inflated or non-increasing stamps, blocked senders), the stable prefix, and the
events a receive returns. Honest messages are composed by a real OrderedLog;
dishonest ones are built directly with Message.create. The identities are named
A < B < C < D in sender-id order, so ties on lamport sort alphabetically.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import pytest
from hypothesis import given
from hypothesis import strategies as st
from roomkit import FOUNDER, Room

from p2pchat.identity import Identity
from p2pchat.log import (
    MAX_VERSIONS_KEPT,
    ClockLie,
    Concurrent,
    Delivered,
    Equivocation,
    LogConfig,
    LogEvent,
    OrderedLog,
    OwnHistoryIncomplete,
    ReceiptStatus,
    Refusal,
    Refused,
    Stable,
)
from p2pchat.message import (
    Change,
    EntryKind,
    Flush,
    Message,
    MessageId,
    MessageKey,
    Tail,
    Tails,
    versions_digest,
)
from p2pchat.restore import restore
from p2pchat.wire import Head

A, B, C, D = sorted((Identity(bytes([i + 1]) * 32) for i in range(4)), key=lambda i: i.sender_id)
ROOM = Room([A, B, C, D])
R = len(ROOM)
"""The founding entries (genesis, the change admitting four, the founder's leave) come first in every log."""


def make(
    identity: Identity,
    seq: int,
    lamport: int,
    deps: Mapping[bytes, int] | None = None,
    text: str = "hello",
) -> Message:
    """A validly signed message with exactly these fields, honest or not (stamps count
    from the founding entries: a first message stamped 1 follows them directly)."""
    return ROOM.make(identity, seq, lamport, deps, text)


def send(log: OrderedLog, identity: Identity) -> Message:
    """Compose the next honest message on ``log`` and deliver it there."""
    message = log.compose(identity, name="n", text=f"#{len(texts(log))}", sent_at_ms=0)
    assert log.receive(message).status is ReceiptStatus.NEW
    return message


def chain(identity: Identity, count: int) -> list[Message]:
    """``count`` consecutive honest messages of one sender who hears nobody else."""
    log = ROOM.log()
    return [send(log, identity) for _ in range(count)]


def texts(log: OrderedLog) -> list[Message]:
    """The chat lines of ``log``, in order (without the founding entries)."""
    return [m for m in log if m.is_text]


def refusals(events: tuple[LogEvent, ...] | list[LogEvent]) -> list[tuple[Message, Refusal]]:
    return [(e.message, e.reason) for e in events if isinstance(e, Refused)]


def changes(events: tuple[LogEvent, ...]) -> tuple[LogEvent, ...]:
    """The events that report changes to the log itself, without stability news."""
    return tuple(e for e in events if not isinstance(e, Stable))


def delivered(events: tuple[LogEvent, ...] | list[LogEvent]) -> list[Message]:
    return [e.message for e in events if isinstance(e, Delivered)]


# Dedup and holding --------------------------------------------------------------


def test_identical_message_is_a_duplicate() -> None:
    (a1,) = chain(A, 1)
    log = ROOM.log()
    assert log.receive(a1).status is ReceiptStatus.NEW
    receipt = log.receive(a1)
    assert receipt.status is ReceiptStatus.DUPLICATE
    assert receipt.events == ()
    assert texts(log) == [a1]


def test_copy_of_a_held_message_is_a_duplicate() -> None:
    _, a2 = chain(A, 2)
    log = ROOM.log()
    log.receive(a2)
    assert log.receive(a2).status is ReceiptStatus.DUPLICATE
    assert log.held_count == 1


def test_message_after_a_gap_is_held_until_the_gap_fills() -> None:
    a1, a2, a3 = chain(A, 3)
    log = ROOM.log()
    for message in (a3, a2):
        receipt = log.receive(message)
        assert receipt.status is ReceiptStatus.NEW
        assert receipt.events == ()
    assert texts(log) == []
    assert log.held_count == 2
    assert log.get(a3.id) == a3

    receipt = log.receive(a1)
    assert delivered(receipt.events) == [a1, a2, a3]
    assert texts(log) == [a1, a2, a3]
    assert log.held_count == 0


def test_reply_is_held_until_what_it_replies_to_is_delivered() -> None:
    (a1,) = chain(A, 1)
    b_log = ROOM.log()
    b_log.receive(a1)
    b1 = send(b_log, B)
    log = ROOM.log()
    log.receive(b1)
    assert texts(log) == []
    assert delivered(log.receive(a1).events) == [a1, b1]
    assert texts(log) == [a1, b1]


def test_message_too_far_ahead_is_ignored_not_held() -> None:
    messages = chain(A, 4)
    log = ROOM.log(LogConfig(max_ahead=2))
    assert log.receive(messages[3]).status is ReceiptStatus.IGNORED
    assert log.held_count == 0
    assert log.receive(messages[1]).status is ReceiptStatus.NEW


def test_bytes_held_behind_gaps_are_bounded_over_all_senders() -> None:
    a, b = chain(A, 3), chain(B, 3)
    bound = len(a[1].payload) + len(a[2].payload)
    log = ROOM.log(LogConfig(max_held_bytes=bound))
    assert log.receive(a[1]).status is ReceiptStatus.NEW
    assert log.receive(a[2]).status is ReceiptStatus.NEW
    assert log.held_bytes == bound
    assert log.receive(b[1]).status is ReceiptStatus.IGNORED  # full: comes again with repair
    assert log.receive(b[0]).status is ReceiptStatus.NEW  # deliverable at once: always taken
    assert log.receive(a[0]).status is ReceiptStatus.NEW
    assert log.held_bytes == 0 and len(texts(log)) == 4
    assert log.receive(b[1]).status is ReceiptStatus.NEW


# Gaps ---------------------------------------------------------------------------


def test_gaps_report_missing_ranges_per_sender() -> None:
    a = chain(A, 5)
    b = chain(B, 3)
    log = ROOM.log()
    for message in (a[1], a[4], b[2]):
        log.receive(message)
    assert log.gaps() == {A.sender_id: [(1, 1), (3, 4)], B.sender_id: [(1, 2)]}

    log.receive(a[0])
    assert log.gaps() == {A.sender_id: [(3, 4)], B.sender_id: [(1, 2)]}


def test_gaps_include_senders_known_only_from_a_vector_clock() -> None:
    b_log = ROOM.log()
    for message in chain(A, 2):
        b_log.receive(message)
    b1 = send(b_log, B)
    log = ROOM.log()
    log.receive(b1)
    assert log.gaps() == {A.sender_id: [(1, 2)]}


def test_gaps_include_seqs_announced_in_a_head() -> None:
    log = ROOM.log()
    log.observe_head(Head(A.sender_id, held_seq=3))
    assert log.gaps() == {A.sender_id: [(1, 3)]}


# Equivocation -------------------------------------------------------------------


def test_equivocation_is_refused_and_kept_as_evidence() -> None:
    kept, rejected = make(A, 1, 1, text="yes"), make(A, 1, 1, text="no")
    log = ROOM.log()
    log.receive(kept)
    receipt = log.receive(rejected)
    assert receipt.status is ReceiptStatus.REFUSED
    evidence = Equivocation(kept=kept, rejected=rejected)
    assert receipt.events == (evidence, Refused(rejected, Refusal.EQUIVOCATION))
    assert log.evidence == [evidence]
    assert texts(log) == [kept]


def test_equivocation_against_a_held_message_never_delivers_both() -> None:
    a1 = make(A, 1, 1)
    kept, rejected = make(A, 2, 2, text="yes"), make(A, 2, 3, text="no")
    log = ROOM.log()
    log.receive(kept)
    assert log.receive(rejected).status is ReceiptStatus.REFUSED
    log.receive(a1)
    again = log.receive(rejected)
    assert again.status is ReceiptStatus.REFUSED
    assert texts(log) == [a1, kept]
    # The same pair again is no news: kept once, reported once (peers pass proofs on
    # to every new link, so a peer sees a proof it holds again and again).
    assert again.events == (Refused(rejected, Refusal.EQUIVOCATION),)
    assert [e.rejected for e in log.evidence] == [rejected]


def test_a_held_version_that_could_never_be_delivered_gives_way_to_the_other() -> None:
    """X gets a1 first: it depends on c1, which replied to a1' (the version C saw), so
    a1 waits for c1 and c1 for A's seq 1, for good. When a1' comes, it is held instead
    (a1 is the evidence): a1', c1 and c2 are delivered, as where a1' came first."""
    a1_other = TRIO.make(A, 1, 1, text="a1', the version C saw")
    c1 = TRIO.make(C, 1, 2, {A.sender_id: 1}, text="c1 replies to a1'")
    a1 = TRIO.make(A, 1, 3, {C.sender_id: 1}, text="a1 depends on c1", previous=b"")
    c2 = TRIO.make(C, 2, 3, text="c2")
    x, y = TRIO.log(), TRIO.log()
    x.receive_many([a1, c1, c2])
    assert x.held_count == 3  # (deadlocked: each waits on the other)
    x.receive(a1_other)
    y.receive_many([a1_other, c1, c2, a1])
    for log in (x, y):
        assert log.held_count == 0 and not log.blocked_senders() and log.evidence
        assert all(log.is_visible(m) for m in (a1_other, c1, c2))
    assert [m.key for m in x] == [m.key for m in y]


def test_a_version_held_behind_a_gap_gives_way_once_the_gap_fills() -> None:
    """X gets a2 before a1: held behind the gap, it cannot give way when a2' comes (a2'
    is the evidence). a1 comes; a2 now waits for c1, and c1 (a reply to a2') for A's
    seq 2, for good. a2' is held instead, as where it came first."""
    a1 = TRIO.make(A, 1, 1, text="a1")
    a2_other = TRIO.make(A, 2, 2, text="a2', the version C saw")
    c1 = TRIO.make(C, 1, 3, {A.sender_id: 2}, text="c1 replies to a2'")
    a2 = TRIO.make(A, 2, 4, {C.sender_id: 1}, text="a2 depends on c1", previous=a1.entry_hash())
    c2 = TRIO.make(C, 2, 4, text="c2")
    x, y = TRIO.log(), TRIO.log()
    x.receive_many([a2, a2_other, c1, c2])
    events = x.receive(a1).events
    assert Equivocation(kept=a2_other, rejected=a2) in events
    y.receive_many([a1, a2_other, c1, c2, a2])
    for log in (x, y):
        assert log.held_count == 0 and not log.blocked_senders()
        assert all(log.is_visible(m) for m in (a1, a2_other, c1, c2))
    assert [m.key for m in x] == [m.key for m in y]
    assert x.other_versions == [a2]  # (the one kept is no "other" version)
    assert [m.key for m in _restarted(x)] == [m.key for m in x]


def test_a_version_that_waited_itself_gives_way_when_what_it_waited_for_comes() -> None:
    """a2 waits for c1, a reply to a2'; a2' comes while b1, which it depends on, is not
    here: it cannot take a2's place yet. b1 comes: a2' is held instead, and delivered."""
    a1 = TRIO.make(A, 1, 1, text="a1")
    b1 = TRIO.make(B, 1, 1, text="b1")
    a2_other = TRIO.make(A, 2, 2, {B.sender_id: 1}, text="a2', the version C saw")
    c1 = TRIO.make(C, 1, 3, {A.sender_id: 2}, text="c1 replies to a2'")
    a2 = TRIO.make(A, 2, 4, {C.sender_id: 1}, text="a2 depends on c1", previous=a1.entry_hash())
    log = TRIO.log()
    log.receive_many([a1, a2, a2_other, c1])
    assert log.held_count == 2  # (a2 and c1, each waiting on the other)
    log.receive(b1)
    assert log.held_count == 0 and not log.blocked_senders()
    assert all(log.is_visible(m) for m in (a1, b1, a2_other, c1))
    assert [(e.kept, e.rejected) for e in log.evidence] == [(a2_other, a2)]  # (the proof, relabelled)


@given(orders=st.lists(st.permutations(range(9)), min_size=3, max_size=3))
def test_no_order_of_arrival_deadlocks_a_version_on_a_reply_to_the_other(orders: list[list[int]]) -> None:
    """A signs two versions of its seq 2: a2', which C replied to (c1), and a2, which
    depends on c1. Three replicas take them, B's and C's lines and the members'
    announcements, each in its own order: wherever a2 comes first (after a gap, or
    before what a2' depends on), it gives way; every honest entry is taken everywhere,
    in the same place; nobody honest is blocked; a stable position never moves."""
    room = TRIO.room_id
    a1, b1 = TRIO.make(A, 1, 1, text="a1"), TRIO.make(B, 1, 1, text="b1")
    a2_other = TRIO.make(A, 2, 2, {B.sender_id: 1}, text="a2', the version C saw")
    c1 = TRIO.make(C, 1, 3, {A.sender_id: 2}, text="c1 replies to a2'")
    a2 = TRIO.make(A, 2, 4, {C.sender_id: 1}, text="a2 depends on c1", previous=a1.entry_hash())
    c2 = TRIO.make(C, 2, 4, text="c2")
    top = c2.lamport
    heads = [
        Head.announce(A, 2, 2, top, {B.sender_id: 1, C.sender_id: 2}, 1, room_id=room),
        Head.announce(B, 1, 1, top, {A.sender_id: 2, C.sender_id: 2}, 1, room_id=room),
        Head.announce(C, 2, 2, top, {B.sender_id: 1}, 1, room_id=room),
    ]
    honest = {B.sender_id, C.sender_id}
    logs = honest_replicas([a1, b1, a2_other, c1, a2, c2, *heads], orders, honest)
    for log in logs:
        assert log.held_count == 0

    def honest_keys(log: OrderedLog) -> list[MessageKey]:
        return [m.key for m in log if m.sender_id in honest]

    assert honest_keys(logs[0]) == honest_keys(logs[1]) == honest_keys(logs[2])


# Signatures ---------------------------------------------------------------------


def _flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def test_any_flipped_byte_is_refused_and_does_not_poison_the_id() -> None:
    (genuine,) = chain(A, 1)
    tampered = [
        dataclasses.replace(genuine, payload=_flip(genuine.payload, i)) for i in range(len(genuine.payload))
    ] + [
        dataclasses.replace(genuine, signature=_flip(genuine.signature, i))
        for i in range(len(genuine.signature))
    ]
    for forgery in tampered:
        log = ROOM.log()
        receipt = log.receive(forgery)
        assert receipt.status is ReceiptStatus.REFUSED
        assert receipt.events == (Refused(forgery, Refusal.BAD_SIGNATURE),)
        assert log.receive(genuine).status is ReceiptStatus.NEW
        assert texts(log) == [genuine]


def test_altered_text_of_a_known_sender_is_refused_and_the_genuine_one_delivers() -> None:
    a1, a2 = chain(A, 2)
    forgery = Message.from_wire(a2.payload.replace(b"#1", b"#9"), a2.signature)
    assert forgery.text == "#9"
    log = ROOM.log()
    log.receive(a1)
    assert refusals(log.receive(forgery).events) == [(forgery, Refusal.BAD_SIGNATURE)]
    assert not log.blocked_senders()
    assert delivered(log.receive(a2).events) == [a2]


def test_altered_copy_of_a_delivered_message_is_a_bad_signature_not_equivocation() -> None:
    (a1,) = chain(A, 1)
    forgery = Message.from_wire(a1.payload.replace(b"#0", b"#9"), a1.signature)
    log = ROOM.log()
    log.receive(a1)
    assert refusals(log.receive(forgery).events) == [(forgery, Refusal.BAD_SIGNATURE)]
    assert log.evidence == []
    assert texts(log) == [a1]


# Stamps -------------------------------------------------------------------------


def test_exact_stamp_with_vector_clocks_is_delivered() -> None:
    a1, b1 = make(A, 1, 1, deps={}), make(B, 1, 2, deps={A.sender_id: 1})
    log = ROOM.log()
    log.receive(a1)
    assert delivered(log.receive(b1).events) == [b1]


@pytest.mark.parametrize("lamport", [1, 3, 1000])
def test_stamp_other_than_one_plus_the_dependencies_is_forged(lamport: int) -> None:
    a1, b1 = make(A, 1, 1, deps={}), make(B, 1, lamport, deps={A.sender_id: 1})
    log = ROOM.log()
    log.receive(a1)
    assert refusals(log.receive(b1).events) == [(b1, Refusal.FORGED_STAMP)]
    assert texts(log) == [a1]
    assert log.blocked_senders() == {B.sender_id: Refusal.FORGED_STAMP}


@pytest.mark.parametrize(("second_lamport", "refused"), [(2, False), (3, True)], ids=["exact", "inflated"])
def test_stamp_must_follow_the_senders_own_previous_message(second_lamport: int, refused: bool) -> None:
    a1, a2 = make(A, 1, 1, deps={}), make(A, 2, second_lamport, deps={})
    log = ROOM.log()
    log.receive(a1)
    expected = [(a2, Refusal.FORGED_STAMP)] if refused else []
    assert refusals(log.receive(a2).events) == expected


def test_first_message_with_an_empty_vector_must_be_stamped_one() -> None:
    a1 = make(A, 1, 2, deps={})
    log = ROOM.log()
    assert refusals(log.receive(a1).events) == [(a1, Refusal.FORGED_STAMP)]


def test_forged_stamp_is_refused_once_its_dependency_arrives() -> None:
    a1, b1 = make(A, 1, 1, deps={}), make(B, 1, 5, deps={A.sender_id: 1})
    log = ROOM.log()
    assert log.receive(b1).events == ()
    receipt = log.receive(a1)
    assert delivered(receipt.events) == [a1]
    assert refusals(receipt.events) == [(b1, Refusal.FORGED_STAMP)]
    assert log.held_count == 0


def test_message_for_another_room_does_not_verify() -> None:
    (a1,) = chain(A, 1)
    other = Room([A], name="another room").log()
    assert refusals(other.receive(a1).events) == [(a1, Refusal.BAD_SIGNATURE)]


@pytest.mark.parametrize("third", [1, 2], ids=["lower", "equal"])
def test_stamp_must_increase_with_seq(third: int) -> None:
    a1, a2, a3 = make(A, 1, 1), make(A, 2, 2), make(A, 3, third)
    log = ROOM.log()
    log.receive_many([a1, a2])
    assert refusals(log.receive(a3).events) == [(a3, Refusal.STAMP_NOT_INCREASING)]
    assert texts(log) == [a1, a2]


def test_vector_clock_naming_its_own_sender_is_refused() -> None:
    a1 = make(A, 1, 1, deps={A.sender_id: 1})
    log = ROOM.log()
    assert refusals(log.receive(a1).events) == [(a1, Refusal.DEPS_REGRESS)]


def test_later_messages_of_a_blocked_sender_are_refused() -> None:
    a1, bad, a3, a4 = make(A, 1, 1), make(A, 2, 1), make(A, 3, 2), make(A, 4, 3)
    (b1,) = chain(B, 1)
    log = ROOM.log()
    log.receive(a1)
    log.receive(a3)
    assert log.held_count == 1
    assert refusals(log.receive(bad).events) == [(bad, Refusal.STAMP_NOT_INCREASING)]
    assert log.held_count == 0, "what followed the refused message is dropped"
    for message in (a3, a4):
        receipt = log.receive(message)
        assert receipt.status is ReceiptStatus.REFUSED
        assert refusals(receipt.events) == [(message, Refusal.SENDER_BLOCKED)]
    assert log.gaps() == {}
    assert delivered(log.receive(b1).events) == [b1], "other senders are unaffected"
    assert texts(log) == [a1, b1]


# Stability ----------------------------------------------------------------------


PAIR = Room([A, B])
"""A room of exactly A and B, for the stability rules."""


def _log_with_two_from_a() -> tuple[OrderedLog, list[Message]]:
    """Members A and B; A's messages stamped base+1 and base+2 are delivered; B is silent."""
    log = PAIR.log()
    messages = [PAIR.make(A, 1, 1), PAIR.make(A, 2, 2)]
    for message in messages:
        log.receive(message)
    return log, messages


def _announce(
    identity: Identity,
    seq: int,
    lamport: int,
    delivered: dict[bytes, int] | None = None,
    *,
    log: OrderedLog | None = None,
) -> Head:
    """``identity``'s signed clock announcement, lamport counted from the founding entries.

    Unless ``delivered`` says otherwise it claims to have delivered everything of the
    others that ``log`` holds, in the versions ``log`` holds (rule 8 asks for both
    halves: the clock, and what was delivered).
    """
    if delivered is None:
        assert log is not None
        everyone = (A, B, C, D, FOUNDER)
        delivered = {
            m.sender_id: n for m in everyone if m is not identity and (n := log.delivered_seq(m.sender_id))
        }
    links = log.links_of(delivered) if log is not None else PAIR.links_of(delivered)
    return Head.announce(
        identity, seq, seq, PAIR.base + lamport, delivered, room_id=PAIR.room_id, delivered_links=links
    )


P = len(PAIR)
STABLE_FOUNDING = 2
"""Genesis and the change admitting A and B (epoch 0, closed). The founder's leave, in
epoch 1, waits for B (B could write an entry that sorts before it)."""


def test_nothing_is_stable_while_a_member_is_silent() -> None:
    log, _ = _log_with_two_from_a()
    assert log.stable_count == STABLE_FOUNDING
    assert log.silent_members() == [B.sender_id]


def test_clock_announcements_extend_the_stable_prefix() -> None:
    log, (a1, a2) = _log_with_two_from_a()
    assert log.observe_head(_announce(B, 0, 1, log=log)) == [Stable(P + 1)]
    assert log.is_stable(a1)
    assert not log.is_stable(a2)
    assert log.observe_head(_announce(B, 0, 2, log=log)) == [Stable(P + 2)]
    assert log.observe_head(_announce(B, 0, 2, log=log)) == []


def test_announcement_counts_only_once_its_message_is_delivered() -> None:
    log, _ = _log_with_two_from_a()
    b1 = PAIR.make(B, 1, 1)
    assert log.observe_head(_announce(B, 1, 5, log=log)) == []
    assert log.stable_count == STABLE_FOUNDING
    log.receive(b1)
    assert log.stable_count == P + 1, "A has not said it delivered b1"
    log.observe_head(_announce(A, 2, 2, log=log))
    assert log.stable_count == P + 3


def test_newer_announcement_for_the_same_seq_is_not_lost() -> None:
    # B announces its clock after b1 twice, the second time after hearing more.
    log, _ = _log_with_two_from_a()
    log.observe_head(_announce(B, 1, 1, log=log))
    log.observe_head(_announce(B, 1, 2, log=log))
    log.receive(PAIR.make(B, 1, 1))
    log.observe_head(_announce(A, 2, 2, log=log))
    assert log.stable_count == P + 3, "the clock 2 announcement makes a2 stable too"


def test_an_announcement_not_signed_by_its_member_is_ignored() -> None:
    log, _ = _log_with_two_from_a()
    # Signed by C, claiming to be B's clock:
    forged = Head.announce(C, 0, 0, PAIR.base + 5, room_id=PAIR.room_id)
    lie = Head(B.sender_id, 0, 0, PAIR.base + 5, forged.signature)
    assert log.observe_head(lie) == []
    assert log.stable_count == STABLE_FOUNDING and log.bad_announcements == 1
    assert log.observe_head(_announce(B, 0, 5, log=log)) == [Stable(P + 2)]


def test_a_stamp_below_a_clock_its_author_announced_is_proof_of_a_lie() -> None:
    # B promises: after its entry 0 (none yet) its clock is 5, so it will stamp above 5.
    # Then it signs b1 stamped 1, with a vector clock that backs the low stamp.
    log, (a1, _) = _log_with_two_from_a()
    promise = _announce(B, 0, 5, log=log)
    assert log.observe_head(promise) == [Stable(P + 2)]
    b1 = PAIR.make(B, 1, 1)
    receipt = log.receive(b1)
    assert ClockLie(promise, b1) in receipt.events
    assert log.lies == [ClockLie(promise, b1)]
    # Held without a place here: it would land inside what this replica called stable on
    # the promise. A replica that never saw the promise shows it, in the place its stamp
    # gives (after nothing it called stable: B's bound there is B's own stamps).
    assert log.placeless == {b1.id} and b1 in log.tombstones() and not log.is_visible(b1)
    unaware, _ = _log_with_two_from_a()
    unaware.receive(b1)
    assert unaware.is_visible(b1) and unaware.index_of(b1) == unaware.index_of(a1) + 1
    assert [m.key for m in log] == [m.key for m in unaware if m.id != b1.id]
    assert log.stability_violations == 0 and unaware.stability_violations == 0 and not unaware.lies
    # A liar's word counts no more: its later announcements make nothing stable.
    count = log.stable_count
    assert log.observe_head(_announce(B, 1, 9, log=log)) == []
    assert log.stable_count == count


def _tail_of_a(log: OrderedLog) -> Tail:
    """The tail B's answer names of A's entries, were B to propose removing A on ``log``."""
    removal = Change(1, 0, (), (A.sender_id,))
    change = log.compose(B, name="b", text="", sent_at_ms=0, kind=EntryKind.CHANGE, change=removal)
    assert change.change is not None
    (tail,) = change.change.tails
    return tail


def test_an_entry_placed_below_stable_positions_is_marked_so_again_after_a_restart() -> None:
    """An entry given a place below positions a replica already held stable (only a
    liar's stamps do that) is stable there by position, but its answers name it as not
    stable. A restart no longer knows which positions were stable before: the store keeps
    the mark (Delivered.placed_late), and a log restored with it answers as before."""
    log, (a1, a2) = _log_with_two_from_a()
    log.observe_head(_announce(B, 0, 2, log=log))
    assert log.is_stable(a2) and not log.placed_late
    assert _tail_of_a(log).stable == 2  # (both of A's entries: stable here)

    def restored(placed_late: frozenset[MessageId]) -> OrderedLog:
        again = PAIR.log()
        for message in (a1, a2):
            again.receive(message, trusted=True, defer_stability=True, placed_late=message.id in placed_late)
        again.observe_head(_announce(B, 0, 2, log=again), defer_stability=True)
        again.advance_stability()
        return again

    unmarked, marked = restored(frozenset()), restored(frozenset({a1.id}))
    assert unmarked.stable_count == marked.stable_count == log.stable_count
    assert marked.placed_late == {a1.id} and not unmarked.placed_late
    assert _tail_of_a(unmarked).stable == 2
    # From the entry placed late on, nothing of A's is named stable (see OrderedLog._tails).
    tail = _tail_of_a(marked)
    assert tail.stable == 0 and tail.links == _tail_of_a(unmarked).links


def test_a_liars_membership_entry_without_a_place_counts_in_the_roster_as_everywhere() -> None:
    """B promises a clock, then leaves with a LEAVE stamped below it: the replica that
    relied on the promise holds the LEAVE without a place, but B has left there too, as
    at a replica that shows it (the rosters, so every later decision, stay the same)."""
    log, _ = _log_with_two_from_a()
    log.observe_head(_announce(B, 0, 5, log=log))
    leave = PAIR.make(B, 1, 1, kind=EntryKind.LEAVE, text="bye")
    log.receive(leave)
    unaware, _ = _log_with_two_from_a()
    unaware.receive(leave)
    assert log.placeless == {leave.id} and unaware.is_visible(leave)
    assert log.members == unaware.members and B.sender_id not in log.members
    after = PAIR.make(B, 2, 9, text="after leaving")
    log.receive(after)
    unaware.receive(after)
    assert not log.is_visible(after) and not unaware.is_visible(after)  # (void everywhere)
    assert [m.key for m in log] == [m.key for m in unaware if m.id != leave.id]


def test_a_promise_that_arrives_after_the_entry_breaking_it_is_proof_too() -> None:
    log, _ = _log_with_two_from_a()
    b1 = PAIR.make(B, 1, 1)
    log.receive(b1)
    promise = _announce(B, 0, 1, log=log)  # (clock 1 after nothing: b1 must be stamped 2 or more)
    assert log.observe_head(promise) == [ClockLie(promise, b1)]
    assert log.observe_head(promise) == []  # (once per liar)
    # An honest promise is none: B's clock after b1 is 1, its next entry is stamped 2.
    honest, _ = _log_with_two_from_a()
    honest.receive(b1)
    honest.observe_head(_announce(B, 1, 1, log=log))
    honest.receive(PAIR.make(B, 2, 3, {A.sender_id: 2}))
    assert not honest.lies


def _history_with_a_lie() -> tuple[list[Message], list[Head]]:
    """B writes three lines and C one, and both say so; A promises (after nothing, its
    clock is past B's lines), then writes a1 stamped below that promise; B and C,
    honest, reply to a1; every member announces its clock at the end."""
    room = TRIO.room_id
    b1, b2, b3 = (TRIO.make(B, seq, seq, text=f"b{seq}") for seq in (1, 2, 3))
    c1 = TRIO.make(C, 1, 1, text="c1")
    seen = {FOUNDER.sender_id: TRIO.founder_seq, B.sender_id: 3, C.sender_id: 1}
    promise = Head.announce(A, 0, 0, b3.lamport + 1, seen, 1, room_id=room)
    a1 = TRIO.make(A, 1, 2, {B.sender_id: 1}, text="a1, below the promise")
    b4 = TRIO.make(B, 4, 4, {A.sender_id: 1}, text="b4, reply to a1")
    c2 = TRIO.make(C, 2, 5, {A.sender_id: 1, B.sender_id: 4}, text="c2")
    top = c2.lamport
    heads = [
        promise,
        Head.announce(B, 3, 3, b3.lamport, {C.sender_id: 1}, 1, room_id=room),
        Head.announce(C, 1, 1, b3.lamport, {B.sender_id: 3}, 1, room_id=room),
        Head.announce(A, 1, 1, top, {B.sender_id: 4, C.sender_id: 2}, 2, room_id=room),
        Head.announce(B, 4, 4, top, {C.sender_id: 2}, 2, room_id=room),
        Head.announce(C, 2, 2, top, {}, 2, room_id=room),
    ]
    return [b1, b2, b3, c1, a1, b4, c2], heads


def honest_replicas(
    arrivals: list[Message | Head], orders: list[list[int]], honest: set[bytes]
) -> list[OrderedLog]:
    """One replica per order, each given ``arrivals`` (entries and heads) in its order.
    After each arrival, a position it called stable has not moved (its stable keys only
    grow at the end); at the end none of the ``honest`` is blocked and every entry of
    theirs has a place."""
    logs = []
    for order in orders:
        log = TRIO.log()
        stable: list[MessageKey] = []
        for arrival in (arrivals[index] for index in order):
            if isinstance(arrival, Message):
                log.receive(arrival)
            else:
                log.observe_head(arrival)
            now = [m.key for m in log][: log.stable_count]
            assert now[: len(stable)] == stable, "a stable position moved"
            stable = now
        assert log.stability_violations == 0
        assert not log.blocked_senders().keys() & honest
        assert all(log.is_visible(m) for m in arrivals if isinstance(m, Message) and m.sender_id in honest)
        logs.append(log)
    return logs


@given(orders=st.lists(st.permutations(range(13)), min_size=3, max_size=3))
def test_replicas_take_every_honest_entry_around_a_broken_promise_and_stable_positions_hold(
    orders: list[list[int]],
) -> None:
    """Three replicas take a liar's promise, the entry that breaks it, honest replies to
    that entry and the members' announcements, each in its own order: those that relied
    on the promise hold the entry without a place, the others show it. Every honest
    entry is taken everywhere, in the same place; nobody honest is blocked; a position
    called stable never moves; the rosters agree."""
    entries, heads = _history_with_a_lie()
    honest = {B.sender_id, C.sender_id}
    logs = honest_replicas([*entries, *heads], orders, honest)

    def honest_keys(log: OrderedLog) -> list[MessageKey]:
        return [m.key for m in log if m.sender_id in honest]

    assert honest_keys(logs[0]) == honest_keys(logs[1]) == honest_keys(logs[2])
    assert logs[0].members == logs[1].members == logs[2].members


def test_an_announcement_from_another_room_is_no_promise_here() -> None:
    # B is also a member of another room, where its clock is far ahead. Its announcement
    # from there, carried here by anyone, proves nothing: it names the other room.
    log, _ = _log_with_two_from_a()
    b1 = PAIR.make(B, 1, 1)
    log.receive(b1)
    elsewhere = Head.announce(B, 0, 0, 1_000, room_id=bytes(range(32)))
    assert log.observe_head(elsewhere) == []
    assert not log.lies and log.bad_announcements == 1
    log.receive(PAIR.make(B, 2, 2))  # (stamped far below the other room's clock)
    assert not log.lies


def test_a_copy_restored_from_before_a_promise_writes_only_once_it_keeps_it() -> None:
    # B wrote b1 after a1, then delivered a2 and a3 and promised clock base+3; a copy
    # of B's log from before a2 is restored. An entry now would be stamped below the
    # promise: the copy waits until repair brings a3, then its entry keeps the promise.
    log, (a1, a2) = _log_with_two_from_a()
    a3 = PAIR.make(A, 3, 3)
    b_now = PAIR.log()
    b_now.receive(a1)
    b1 = b_now.compose(B, name="b", text="b1", sent_at_ms=0)
    b_now.receive(b1)
    restored = PAIR.log()
    restored.receive_many([a1, b1])
    b_now.receive_many([a2, a3])
    promise = Head.announce(B, 1, 1, b_now.clock, room_id=PAIR.room_id)
    restored.observe_head(promise)  # (relayed back to it by a neighbour)
    assert restored.promised_ahead(B.sender_id)
    with pytest.raises(OwnHistoryIncomplete, match="clock we announced"):
        restored.compose(B, name="b", text="too early", sent_at_ms=0)
    restored.receive(a2)
    assert restored.promised_ahead(B.sender_id)
    restored.receive(a3)
    b2 = restored.compose(B, name="b", text="in time", sent_at_ms=0)
    assert b2.lamport > promise.clock_lamport
    log.receive_many([a3, b1])
    log.observe_head(promise)
    log.receive(b2)
    assert not log.lies


def test_a_member_going_away_stops_holding_stability_back() -> None:
    log, (a1, a2) = _log_with_two_from_a()
    b_log = PAIR.log()
    b_log.receive_many([a1, a2])
    away = b_log.compose(B, name="b", text="quit", sent_at_ms=0, kind=EntryKind.AWAY)
    assert away.lamport == PAIR.base + 3
    log.receive(away)
    # B counts up to its AWAY (which it wrote after seeing a1 and a2); A alone after it.
    assert log.stable_count == P + 2
    assert log.silent_members() == [A.sender_id]
    assert B.sender_id not in log.members
    assert log.observe_head(_announce(A, 2, 3, log=log)) == [Stable(P + 3)]


def test_a_sender_named_in_a_vector_clock_is_not_a_member() -> None:
    # Only members count for stability: an id in a vector clock or a head is no member.
    stranger = Identity(b"\x07" * 32)
    log, _ = _log_with_two_from_a()
    log.observe_head(Head.announce(stranger, 3, 3, 1, room_id=PAIR.room_id))
    assert stranger.sender_id not in log.members
    assert log.heads() == [h for h in log.heads() if h.sender_id != stranger.sender_id]
    assert log.observe_head(_announce(B, 0, 2, log=log)) == [Stable(P + 2)]


def test_an_entry_from_a_stranger_is_refused_and_never_held() -> None:
    stranger = Identity(b"\x07" * 32)
    log, (a1, a2) = _log_with_two_from_a()
    first = PAIR.make(stranger, 1, 3, {A.sender_id: 2})
    receipt = log.receive(first)
    assert refusals(receipt.events) == [(first, Refusal.NOT_A_MEMBER)]
    assert log.held_count == 0 and texts(log) == [a1, a2]
    assert stranger.sender_id not in log.members


def test_a_newcomers_entries_follow_its_admission() -> None:
    newcomer = Identity(b"\x07" * 32)
    log, (a1, a2) = _log_with_two_from_a()
    change = Change(1, 0, ((newcomer.sender_id, "n"),))
    admit = log.compose(A, name="a", text="", sent_at_ms=0, kind=EntryKind.CHANGE, change=change)
    log.receive(admit)
    assert newcomer.sender_id not in log.members, "B has not flushed yet"
    b_log = PAIR.log()
    b_log.receive_many([a1, a2, admit])
    flush = b_log.compose(
        B, name="b", text="", sent_at_ms=0, kind=EntryKind.FLUSH, flush=Flush(1, 0, admit.id)
    )
    log.receive(flush)
    assert newcomer.sender_id not in log.members, "complete, but nobody committed it yet"
    commits = []
    for author, author_log in ((A, log), (B, b_log)):
        author_log.receive_many([flush, *commits])
        commit = author_log.compose(
            author, name="x", text="", sent_at_ms=0, kind=EntryKind.COMMIT, flush=Flush(1, 0, admit.id)
        )
        author_log.receive(commit)
        commits.append(commit)
        if author is A:
            assert newcomer.sender_id not in log.members, "one COMMIT of two members is no majority"
    log.receive(commits[-1])
    assert newcomer.sender_id in log.members
    n_log = PAIR.log()
    n_log.receive_many([a1, a2, admit, flush, *commits])
    hello = send(n_log, newcomer)
    assert hello.lamport > max(m.lamport for m in (admit, flush, *commits))
    assert delivered(log.receive(hello).events) == [hello]
    assert newcomer.sender_id in log.members
    # Admitted after the room's past, so an entry of it can never land above a1 or a2.
    assert texts(log) == [a1, a2, hello]


# Events -------------------------------------------------------------------------


def test_delivered_index_is_the_position_at_the_time_of_delivery() -> None:
    b1, b2 = make(B, 1, 1), make(B, 2, 2)
    a1, a2, a3 = make(A, 1, 1), make(A, 2, 2), make(A, 3, 3, {B.sender_id: 2})
    log = ROOM.log()
    log.receive_many([b1, b2, a3, a2])
    before = list(log)
    events = log.receive(a1).events
    assert [(e.message, e.index) for e in events if isinstance(e, Delivered)] == [
        (a1, R + 0),
        (a2, R + 2),
        (a3, R + 4),
    ]
    replayed = list(before)
    for event in events:
        if isinstance(event, Delivered):
            replayed.insert(event.index, event.message)
    assert replayed == list(log)
    assert texts(log) == [a1, b1, a2, b2, a3]


def test_concurrent_events_flag_earlier_messages() -> None:
    (a1,) = chain(A, 1)
    (b1,) = chain(B, 1)
    log = ROOM.log()
    assert changes(log.receive(a1).events) == (Delivered(a1, R + 0, concurrent=False),)
    assert changes(log.receive(b1).events) == (
        Concurrent((a1.id,)),
        Delivered(b1, R + 1, concurrent=True),
    )
    assert log.is_concurrent(a1.id)
    assert log.is_concurrent(b1.id)


def test_message_concurrent_only_with_flagged_messages_is_flagged_too() -> None:
    (a1,) = chain(A, 1)
    (b1,) = chain(B, 1)
    (c1,) = chain(C, 1)
    log = ROOM.log()
    log.receive_many([a1, b1])
    assert changes(log.receive(c1).events) == (Delivered(c1, R + 2, concurrent=True),)
    assert log.is_concurrent(c1.id)


def test_concurrent_event_lists_only_newly_flagged_messages() -> None:
    (a1,) = chain(A, 1)
    (b1,) = chain(B, 1)
    (c1,) = chain(C, 1)
    a_log = ROOM.log()
    a_log.receive_many([a1, b1])
    a2 = send(a_log, A)  # has seen a1 and b1
    log = ROOM.log()
    log.receive_many([a1, b1])
    assert changes(log.receive(a2).events) == (Delivered(a2, R + 2, concurrent=False),)
    assert not log.is_concurrent(a2.id)
    assert changes(log.receive(c1).events) == (Concurrent((a2.id,)), Delivered(c1, R + 2, concurrent=True))
    assert log.is_concurrent(a2.id)


def test_founding_entries_are_never_flagged_concurrent() -> None:
    (a1,) = chain(A, 1)
    log = ROOM.log()
    log.receive(a1)
    assert not any(log.is_concurrent(m.id) for m in log)


# A fork of a dependency -------------------------------------------------------------

TRIO = Room([A, B, C])


def _fork_and_reply() -> tuple[Message, Message, Message, Message]:
    """B writes b1; A signs two versions of its seq 1 (a1 stamped base+1, a1' stamped
    base+2 after seeing b1); B, honest, saw a1' and replies stamped from it."""
    b1 = TRIO.make(B, 1, 1, text="b1")
    a1 = TRIO.make(A, 1, 1, text="one version")
    a1_other = TRIO.make(A, 1, 2, {B.sender_id: 1}, text="another version", previous=b"")
    reply = TRIO.make(B, 2, 3, {A.sender_id: 1}, text="reply to the other version")
    return b1, a1, a1_other, reply


@given(order=st.permutations(range(3)))
def test_an_honest_reply_to_a_forked_entry_is_taken_whatever_version_was_kept(order: list[int]) -> None:
    b1, a1, a1_other, reply = _fork_and_reply()
    c1 = TRIO.make(C, 1, 4, {B.sender_id: 2}, text="c1, after the reply")
    # X keeps a1, Y keeps a1': the reply, stamped from a1', is exact only at Y at first.
    x, y = TRIO.log(), TRIO.log()
    x.receive_many([b1, a1])
    y.receive_many([b1, a1_other])
    for log, other_version in ((x, a1_other), (y, a1)):
        arrivals = [reply, other_version, c1]
        log.receive_many([arrivals[index] for index in order])
        # Once it holds both versions, the honest reply is in, and nobody is blocked.
        assert log.get(reply.id) == reply and log.get(c1.id) == c1, order
        assert not log.blocked_senders() and log.evidence, order

    # The honest members' entries stand in the same places on both replicas.
    def honest(log: OrderedLog) -> list[MessageKey]:
        return [m.key for m in log if m.sender_id != A.sender_id]

    assert honest(x) == honest(y)


@given(order=st.permutations(range(3)))
def test_an_equivocator_going_on_from_the_version_we_did_not_keep_blocks_no_honest_reply(
    order: list[int],
) -> None:
    """A goes on from a1' (its seq 2 names a1' as previous); B replies to that. A replica
    that kept a1 refuses a2 (a broken chain) until a1' comes to light, then takes it, as
    the replicas that kept a1' do, and with it B's reply: B is blocked nowhere."""
    b1, a1, a1_other, _ = _fork_and_reply()
    a2 = TRIO.make(A, 2, 3, text="goes on from the other version")
    assert a2.previous == a1_other.entry_hash()
    reply = TRIO.make(B, 2, 4, {A.sender_id: 2}, text="reply to a2")
    x, y = TRIO.log(), TRIO.log()
    x.receive_many([b1, a1])
    y.receive_many([b1, a1_other, a2, reply, a1])
    arrivals = [a2, reply, a1_other]
    x.receive_many([arrivals[index] for index in order])
    for log in (x, y):
        assert log.get(reply.id) == reply and log.get(a2.id) == a2, order
        assert not log.blocked_senders() and log.evidence, order

    # Everything but the forked entry itself stands in the same place on both replicas.
    def unforked(log: OrderedLog) -> list[MessageKey]:
        return [m.key for m in log if m.id != a1.id]

    assert unforked(x) == unforked(y) and x.is_visible(a2) and y.is_visible(a2)


# Covers name versions ---------------------------------------------------------------


def _fork_seen_both_ways(fork: bool = True) -> tuple[Message, Message, Message, Message]:
    """C signs two versions of its seq 1, stamped alike: B saw ``y`` and wrote b1, A saw
    ``x`` and wrote a1 (each names the version it saw). Without ``fork``, both saw x."""
    y = TRIO.make(C, 1, 1, text="one version" if fork else "the only version")
    b1 = TRIO.make(B, 1, 2, {C.sender_id: 1}, text="b1")
    x = TRIO.make(C, 1, 1, text="another version" if fork else "the only version")
    a1 = TRIO.make(A, 1, 2, {C.sender_id: 1}, text="a1")
    return x, y, a1, b1


def _stable_ids(log: OrderedLog) -> set[MessageId]:
    return {m.id for m in log if log.is_stable(m)}


def test_a_cover_naming_another_version_of_an_entry_does_not_make_ours_stable() -> None:
    x, _, a1, b1 = _fork_seen_both_ways()
    log = TRIO.log()
    log.receive_many([x, a1])
    assert x.id not in _stable_ids(log), "B has not said it delivered C's entry 1"
    log.receive(b1)
    # Counted by seq, b1 would cover C's entry 1, and x would be stable here while the
    # replicas that kept y call y stable on a1's cover in turn.
    assert x.id not in _stable_ids(log) and log.stability_violations == 0
    # Which entry b1 names in another version is not known here: each is worth asking for.
    assert x.id in log.take_named_versions()
    assert log.take_named_versions() == []
    # Without the fork the same entries make it stable (the check above can fail).
    x, _, a1, b1 = _fork_seen_both_ways(fork=False)
    log = TRIO.log()
    log.receive_many([x, a1, b1])
    assert x.id in _stable_ids(log) and log.take_named_versions() == []


@given(order=st.permutations(range(3)), first=st.booleans())
def test_two_replicas_never_both_call_their_own_version_stable(order: list[int], first: bool) -> None:
    x, y, a1, b1 = _fork_seen_both_ways()
    kept_x, kept_y = TRIO.log(), TRIO.log()
    for log, own, other in ((kept_x, x, y), (kept_y, y, x)):
        log.receive(own)
        arrivals = [a1, b1, other]
        log.receive_many([arrivals[index] for index in order])
        if first:  # and the replies again, whatever came first
            log.receive_many([a1, b1])
    stable_x, stable_y = _stable_ids(kept_x), _stable_ids(kept_y)
    assert not (x.id in stable_x and y.id in stable_y)
    assert x.id not in stable_x and y.id not in stable_y, "each has a member naming the other version"


def test_the_versions_an_entry_names_read_back_as_written_whatever_the_order_given() -> None:
    """The payload's deps map is encoded sorted; ``seen`` digests the versions in that
    order, also when the deps were given in another (a receiver digests its own
    versions in the order it reads)."""
    b1, c1 = TRIO.make(B, 1, 1), TRIO.make(C, 1, 1)
    deps = dict(sorted({B.sender_id: 1, C.sender_id: 1}.items(), reverse=True))
    links = {B.sender_id: b1.entry_hash(), C.sender_id: c1.entry_hash()}
    entry = Message.create(
        A, seq=1, lamport=9, sent_at_ms=0, name="n", text="t", deps=deps, room_id=TRIO.room_id, links=links
    )
    decoded = Message.from_wire(entry.payload, entry.signature)
    assert list(decoded.deps.items()) == list(entry.deps.items()) == sorted(deps.items())
    assert entry.seen == decoded.seen == versions_digest((s, 1, links[s]) for s in sorted(links))


def _b_announces_a2(a2_link: bytes) -> Head:
    """B's announcement: no entry of its own, clock base+5, and it delivered the founding
    entries and A's entries up to 2, its entry 2 being the one ``a2_link`` names."""
    delivered = {FOUNDER.sender_id: PAIR.founder_seq, A.sender_id: 2}
    links = PAIR.links_of({FOUNDER.sender_id: PAIR.founder_seq}) | {A.sender_id: a2_link}
    return Head.announce(B, 0, 0, PAIR.base + 5, delivered, room_id=PAIR.room_id, delivered_links=links)


def test_an_announced_entry_counts_once_delivered_in_the_version_it_named() -> None:
    a1, a2 = PAIR.make(A, 1, 1), PAIR.make(A, 2, 2)
    log = PAIR.log()
    log.receive(a1)
    # B announces having delivered A's entry 2, which this replica does not hold yet:
    # what it says of A's entries counts once a2 is here and is the version B named.
    log.observe_head(_b_announces_a2(a2.entry_hash()))
    assert a1.id not in _stable_ids(log)
    log.receive(a2)
    assert {a1.id, a2.id} <= _stable_ids(log)


def test_an_announced_entry_delivered_in_another_version_does_not_count() -> None:
    a1, a2 = PAIR.make(A, 1, 1), PAIR.make(A, 2, 2)
    other = PAIR.make(A, 2, 2, text="another version of a2")
    log = PAIR.log()
    log.receive(a1)
    log.observe_head(_b_announces_a2(other.entry_hash()))
    log.receive(a2)
    assert not _stable_ids(log) & {a1.id, a2.id}
    assert a2.id in log.take_named_versions()


def _remove_c(log_a: OrderedLog, log_b: OrderedLog, b_names: Tails | None = None) -> None:
    """A proposes to remove C, B answers, both commit: each replica writes on its own
    view and hears the other's entries. With ``b_names``, B lies in its answer: those
    are the tails it names."""
    removal = Change(1, 0, (), (C.sender_id,))
    change = log_a.compose(A, name="a", text="", sent_at_ms=0, kind=EntryKind.CHANGE, change=removal)
    log_a.receive(change)
    log_b.receive(change)
    answer = Flush(1, 0, change.id)
    flush = log_b.compose(B, name="b", text="", sent_at_ms=0, kind=EntryKind.FLUSH, flush=answer)
    if b_names is not None:
        lie = dataclasses.replace(flush.flush or answer, tails=b_names)
        flush = TRIO.make(
            B,
            flush.seq,
            flush.lamport,
            flush.deps,
            "",
            relative=False,
            kind=EntryKind.FLUSH,
            flush=lie,
            previous=flush.previous,
            links=log_b.links_of(flush.deps),
        )
    log_b.receive(flush)
    log_a.receive(flush)
    for author, own, other in ((A, log_a, log_b), (B, log_b, log_a)):
        commit = own.compose(
            author, name="x", text="", sent_at_ms=0, kind=EntryKind.COMMIT, flush=Flush(1, 0, change.id)
        )
        own.receive(commit)
        other.receive(commit)
    assert C.sender_id not in log_a.members and C.sender_id not in log_b.members


def test_a_removal_voids_an_entry_its_answers_hold_in_two_versions() -> None:
    """C signed two versions of its entry 1; A holds x, B holds y. The change removing
    C and its answer name them (their tails), so every replica voids C's entries from
    there, whichever version it holds: the logs end identical. (Cut at the highest seq
    an answer names, each would keep its own version, and call it stable: the epoch is
    closed.)"""
    x, y, _, _ = _fork_seen_both_ways()
    log_a, log_b = TRIO.log(), TRIO.log()
    log_a.receive(x)
    log_b.receive(y)
    _remove_c(log_a, log_b)
    assert [m.id for m in log_a] == [m.id for m in log_b]
    assert list(log_a) == list(log_b)
    assert not log_a.is_visible(x) and not log_b.is_visible(y)
    assert log_a.stability_violations == log_b.stability_violations == 0
    # And the room goes on: what A and B write next becomes stable on both, though
    # each named C's entry in a version the other does not hold.
    lines = []
    for _ in range(2):
        for author, own, other in ((A, log_a, log_b), (B, log_b, log_a)):
            line = own.compose(author, name="n", text=f"after {len(lines)}", sent_at_ms=0)
            own.receive(line)
            other.receive(line)
            lines.append(line)
    for log in (log_a, log_b):
        assert {m.id for m in lines[:2]} <= _stable_ids(log)
    # Without the fork, both keep C's entry (the check above can fail).
    x, _, _, _ = _fork_seen_both_ways(fork=False)
    log_a, log_b = TRIO.log(), TRIO.log()
    log_a.receive(x)
    log_b.receive(x)
    _remove_c(log_a, log_b)
    assert log_a.is_visible(x) and log_b.is_visible(x) and list(log_a) == list(log_b)


def _c_removed_where_z_holds_the_other_version() -> tuple[Message, Message, OrderedLog, OrderedLog]:
    """C signed two versions of its entry 1: A and B hold y, and remove C (their answers
    name y); replica Z holds x. Returns x, y, A's replica and Z."""
    x, y, _, _ = _fork_seen_both_ways()
    log_a, log_b, log_z = TRIO.log(), TRIO.log(), TRIO.log()
    log_a.receive(y)
    log_b.receive(y)
    log_z.receive(x)
    _remove_c(log_a, log_b)
    return x, y, log_a, log_z


def removal_reaching_a_replica_with_the_other_version(
    evidence_first: bool,
) -> tuple[OrderedLog, OrderedLog, Message, Message, list[LogEvent]]:
    """C signed two versions of its entry 1: A and B hold y, and remove C; their answers
    name y. Replica Z answered nothing (a member away, or one not admitted yet) and
    holds x; with ``evidence_first`` it holds y too, as evidence, before the removal
    comes. Z then takes in everything A's replica holds, y last. Returns Z, A's replica,
    x, y and the events Z gave."""
    x, y, _, _ = _fork_seen_both_ways()
    log_a, log_b, log_z = TRIO.log(), TRIO.log(), TRIO.log()
    log_a.receive(y)
    log_b.receive(y)
    events = list(log_z.receive(x).events)
    if evidence_first:
        events.extend(log_z.receive(y).events)
    _remove_c(log_a, log_b)  # (after Z took y, with ``evidence_first``)
    for message in [*log_a, *log_a.tombstones()]:
        if message.id != y.id:
            events.extend(log_z.receive(message).events)
    events.extend(log_z.receive(y).events)
    return log_z, log_a, x, y, events


@pytest.mark.parametrize("evidence_first", [False, True])
def test_a_replica_that_answered_no_removal_shows_the_version_its_answers_named(evidence_first: bool) -> None:
    """Kept as it was, Z would show x where A and B show y, and call it stable: the
    removal closed the epoch, and a closed epoch is all stable. It shows y in x's place
    (at once if it held y, else once y comes), and calls no position stable that y's
    coming moved."""
    log_z, log_a, x, y, events = removal_reaching_a_replica_with_the_other_version(evidence_first)
    assert list(log_z) == list(log_a)
    assert log_z.is_visible(y) and not log_z.is_visible(x) and log_z.is_stable(y)
    assert log_z.stable_count == len(log_z) and log_z.stability_violations == 0
    assert log_z.get(y.id) == y and log_z.wanted_versions == []
    # Before y came, no stable count Z gave reached y's position.
    if not evidence_first:
        shown = next(i for i, e in enumerate(events) if isinstance(e, Delivered) and e.message == y)
        before_y = [e.count for e in events[:shown] if isinstance(e, Stable)]
        assert max(before_y, default=0) <= log_a.index_of(y)


@given(order=st.permutations(range(5)))
def test_a_replica_that_answered_no_removal_ends_with_the_room_in_any_order_of_arrival(
    order: list[int],
) -> None:
    """Z holds x; everything A's replica holds after removing C (y among it) comes to Z
    in any order: Z ends with A's log, all stable, and no position it reported stable
    ever moved."""
    _, _, log_a, log_z = _c_removed_where_z_holds_the_other_version()
    arrivals = [m for m in [*log_a, *log_a.tombstones()] if m.sender_id != FOUNDER.sender_id]
    assert len(arrivals) == len(order)
    reported: dict[int, MessageKey] = {}
    for index in order:
        for event in log_z.receive(arrivals[index]).events:
            if isinstance(event, Stable):
                reported.update((p, log_z[p].key) for p in range(event.count))
                assert all(log_z[p].key == key for p, key in reported.items()), "a stable position moved"
    assert list(log_z) == list(log_a) and log_z.stable_count == len(log_z)
    assert all(log_z[p].key == key for p, key in reported.items())


def test_a_version_a_removal_named_is_asked_for_and_holds_stability_back_until_it_comes() -> None:
    x, y, log_a, log_z = _c_removed_where_z_holds_the_other_version()
    log_z.receive_many([m for m in [*log_a, *log_a.tombstones()] if m.id != y.id])
    assert not log_z.is_visible(x) and not log_z.is_visible(y)
    assert log_z.wanted_versions == [y.id] and y.id in log_z.take_named_versions()
    # No position from the lowest key y can have on is stable: C's entry before it is
    # the founding history, so none after it.
    assert log_z.stable_count <= log_a.index_of(y)
    # Another version than the one named does not take the place.
    other = TRIO.make(C, 1, 1, text="a third version")
    log_z.receive(other)
    assert not log_z.is_visible(other) and log_z.wanted_versions == [y.id]
    log_z.receive(y)
    assert list(log_z) == list(log_a) and log_z.stable_count == len(log_z)


@pytest.mark.parametrize("after", [3, 20])
def test_a_removal_voids_an_entry_held_in_two_versions_however_many_its_author_wrote_after_it(
    after: int,
) -> None:
    """As above, but C writes ``after`` more entries after its forked entry 1, going on
    from x (B takes them on that branch). The answers name C's entries from the first
    one not stable at their author, not only the last 16: x and y are stable at
    neither, so the answers differ at entry 1, and the removal voids C's entries from
    there on both replicas. (With the last 16 only, after 20 more entries the answers
    would agree, and each would keep its own version of entry 1 for good.)"""
    x, y, a1, b1 = _fork_seen_both_ways()
    more = [TRIO.make(C, seq, seq, text=f"c{seq}") for seq in range(2, after + 2)]
    log_a, log_b = TRIO.log(), TRIO.log()
    log_a.receive_many([x, a1, *more, b1])
    log_b.receive_many([y, b1, x, *more, a1])
    assert log_a.is_visible(x) and log_b.is_visible(y) and all(log_b.is_visible(m) for m in more)
    _remove_c(log_a, log_b)
    assert list(log_a) == list(log_b)
    assert not any(log.is_visible(m) for log in (log_a, log_b) for m in [x, y, *more])
    assert log_a.stability_violations == log_b.stability_violations == 0


def test_a_member_lying_in_its_answer_cannot_void_what_an_answerer_holds_stable() -> None:
    """C wrote 20 lines, stable on A's and B's replicas; A removes C, and B, lying,
    names another version of C's first line in its answer. Every answer holding that
    line must name it for a difference to count: A's names only C's last 16 (and none
    before them is unstable there), so nothing is voided. (Counted, B's lie would void
    all 20 lines, stable on both replicas.)"""
    lines = [TRIO.make(C, seq, seq, text=f"c{seq}") for seq in range(1, 21)]
    log_a, log_b = TRIO.log(), TRIO.log()
    for log in (log_a, log_b):
        log.receive_many(lines)
    replies = [
        log_a.compose(A, name="a", text="a1", sent_at_ms=0),
        log_b.compose(B, name="b", text="b1", sent_at_ms=0),
    ]
    for log in (log_a, log_b):
        log.receive_many(replies)
        assert all(log.is_stable(line) for line in lines)
    true_links = tuple(log_b.link_of(C.sender_id, seq) for seq in range(2, 21))
    _remove_c(log_a, log_b, b_names=(Tail(C.sender_id, (bytes([7]) * 16, *true_links)),))
    for log in (log_a, log_b):
        assert all(log.is_visible(line) for line in lines)
        assert log.stability_violations == 0
    assert list(log_a) == list(log_b)


def _c_lies_about_its_clock(rely: bool) -> tuple[OrderedLog, OrderedLog, Message]:
    """C promises clock base+5 before writing anything, then signs c1 stamped base+1.
    Replica X (A's) relied on the promise when ``rely``: it holds c1 without a place.
    Replica Y (B's) never saw the promise: it shows c1. Each member writes a line after
    c1, on its own replica, and both replicas hear both lines."""
    founding = {FOUNDER.sender_id: TRIO.founder_seq}
    promise = Head.announce(
        C, 0, 0, TRIO.base + 5, founding, room_id=TRIO.room_id, delivered_links=TRIO.links_of(founding)
    )
    c1 = TRIO.make(C, 1, 1, text="stamped within the promise")
    log_x, log_y = TRIO.log(), TRIO.log()
    if rely:
        log_x.observe_head(promise)
    log_x.receive(c1)
    log_y.receive(c1)
    assert log_x.is_visible(c1) is not rely and log_y.is_visible(c1)
    a1 = log_x.compose(A, name="a", text="a1", sent_at_ms=0)
    b1 = log_y.compose(B, name="b", text="b1", sent_at_ms=0)
    for log in (log_x, log_y):
        log.receive_many([a1, b1])
    return log_x, log_y, c1


def test_a_cover_of_an_entry_held_without_a_place_does_not_make_it_stable_elsewhere() -> None:
    """Counted by seq, A's cover would let Y call c1 stable where X shows nothing."""
    _, log_y, c1 = _c_lies_about_its_clock(rely=True)
    assert c1.id not in _stable_ids(log_y)
    # Had X not relied on the promise, the same covers make c1 stable (the check can fail).
    _, log_y, c1 = _c_lies_about_its_clock(rely=False)
    assert c1.id in _stable_ids(log_y)


def test_a_removal_voids_an_entry_some_answer_holds_without_a_place() -> None:
    """A's answer names c1 as held without a place (its tail), B's as shown: the removal
    of C voids c1 on both replicas, and the logs end identical."""
    log_x, log_y, c1 = _c_lies_about_its_clock(rely=True)
    _remove_c(log_x, log_y)
    assert list(log_x) == list(log_y) and not log_y.is_visible(c1)
    assert log_x.stability_violations == log_y.stability_violations == 0


def test_a_replica_that_answered_no_removal_gives_the_entry_it_held_without_a_place_its_place() -> None:
    """Neither A nor B relied on C's promise: both show c1, and their answers to C's
    removal name it so. Z relied on it and answered nothing: it held c1 without a
    place, and gives it its place at the decision, as every answerer shows it."""
    log_a, log_b, c1 = _c_lies_about_its_clock(rely=False)
    founding = {FOUNDER.sender_id: TRIO.founder_seq}
    promise = Head.announce(
        C, 0, 0, TRIO.base + 5, founding, room_id=TRIO.room_id, delivered_links=TRIO.links_of(founding)
    )
    log_z = TRIO.log()
    log_z.observe_head(promise)
    log_z.receive(c1)
    assert not log_z.is_visible(c1) and c1.id in log_z.placeless
    _remove_c(log_a, log_b)
    assert log_a.is_visible(c1) and log_b.is_visible(c1)
    log_z.receive_many([m for m in [*log_a, *log_a.tombstones()] if m.id != c1.id])
    assert list(log_z) == list(log_a) and log_z.is_visible(c1) and c1.id not in log_z.placeless
    assert log_z.stable_count == len(log_z) and log_z.stability_violations == 0


def test_an_entry_chained_to_an_unknown_version_is_still_refused() -> None:
    b1, a1, a1_other, _ = _fork_and_reply()
    a2 = TRIO.make(A, 2, 3, text="goes on from the other version")
    log = TRIO.log()
    log.receive_many([b1, a1])
    assert refusals(log.receive(a2).events) == [(a2, Refusal.BROKEN_CHAIN)]
    log.receive(a1_other)  # (a2 comes back with it)
    assert log.get(a2.id) == a2 and not log.blocked_senders()
    stray = TRIO.make(A, 3, 4, text="after a version nobody holds", previous=bytes(len(a2.previous)))
    assert refusals(log.receive(stray).events) == [(stray, Refusal.BROKEN_CHAIN)]


def test_an_entry_on_the_other_branch_gets_the_vector_clock_of_the_version_it_goes_on_from() -> None:
    """X keeps a1, which saw b1; Y keeps a1', which saw nothing; a2 goes on from a1'. Its
    full vector clock is a1' and its own delta, on both replicas: a2 has not seen b1, so
    both flag the two concurrent. (Summed up from the version X kept, X would say a2
    saw b1, and flag neither.)"""
    b1 = TRIO.make(B, 1, 1, text="b1")
    c1 = TRIO.make(C, 1, 1, text="c1")
    c2 = TRIO.make(C, 2, 2, text="c2")
    a1 = TRIO.make(A, 1, 2, {B.sender_id: 1}, text="saw b1")
    a1_other = TRIO.make(A, 1, 1, text="saw nothing", previous=b"")
    a2 = TRIO.make(A, 2, 3, {C.sender_id: 2}, text="after the version that saw nothing")
    assert a2.previous == a1_other.entry_hash()
    x, y = TRIO.log(), TRIO.log()
    x.receive_many([b1, c1, c2, a1, a1_other, a2])
    y.receive_many([b1, c1, c2, a1_other, a2, a1])
    for log in (x, y):
        assert log.is_visible(a2) and not log.blocked_senders()
        assert log.is_concurrent(a2.id) and log.is_concurrent(b1.id)
    assert x._senders[A.sender_id].vector == y._senders[A.sender_id].vector


def test_a_branch_two_forks_deep_names_the_version_we_lack_first() -> None:
    """A forked seq 1 and seq 2, and goes on from both others (a3 after a2' after a1').
    X, which kept a1 and a2, refuses a3 and says which version it lacks: a2', then a1'
    (a head of a neighbour on that chain makes it ask for the same); with both, a3 is in."""
    a1, a2 = TRIO.make(A, 1, 1, text="a1"), TRIO.make(A, 2, 2, text="a2")
    a1_other = TRIO.make(A, 1, 1, text="a1'", previous=b"")
    a2_other = TRIO.make(A, 2, 2, text="a2' after a1'", previous=a1_other.entry_hash())
    a3 = TRIO.make(A, 3, 3, text="a3 after a2'", previous=a2_other.entry_hash())
    x = TRIO.log()
    x.receive_many([a1, a2])
    assert refusals(x.receive(a3).events) == [(a3, Refusal.BROKEN_CHAIN)]
    head = Head(A.sender_id, 3, link=a3.entry_hash()[:16])
    assert x.missing_version(a3) == a2.id and x.other_version_at(head) == 2
    x.receive(a2_other)
    assert x.blocked_for(A.sender_id) is Refusal.BROKEN_CHAIN
    assert x.missing_version(a3) == a1.id and x.other_version_at(head) == 1
    x.receive(a1_other)
    assert x.get(a3.id) == a3 and not x.blocked_senders() and x.missing_version(a3) is None


@pytest.mark.parametrize("kept_here", [EntryKind.LEAVE, EntryKind.TEXT], ids=["kept-leave", "kept-text"])
def test_a_branch_from_a_fork_of_a_membership_entry_stays_refused(kept_here: EntryKind) -> None:
    """A signs a LEAVE and a chat line with the same seq. Replicas that kept different
    ones disagree on whether A is a member: no entry after the fork can be judged the
    same on both, so its branch stays refused (as any broken chain) where the other
    version was kept, and nothing is taken that the rosters would judge differently."""
    other_kind = EntryKind.TEXT if kept_here is EntryKind.LEAVE else EntryKind.LEAVE
    a1 = TRIO.make(A, 1, 1, kind=kept_here, text="the version X keeps")
    a1_other = TRIO.make(A, 1, 1, kind=other_kind, text="the other version", previous=b"")
    a2 = TRIO.make(A, 2, 2, text="goes on from the other version")
    x = TRIO.log()
    x.receive_many([a1, a1_other, a2])
    assert x.evidence and x.get(a2.id) is None
    assert x.blocked_for(A.sender_id) is Refusal.BROKEN_CHAIN and x.missing_version(a2) is None


def test_an_entry_waiting_at_the_head_of_a_branch_costs_no_walk_through_its_authors_history() -> None:
    """The state a branch goes on from is computed once per delivery of its author: an
    entry on the branch that waits for a dependency is checked again at each arrival of
    its author's later entries, and must not sum up the author's whole history each time."""
    history = [TRIO.make(A, seq, seq, text=f"a{seq}") for seq in range(1, 41)]
    last = history[-1]
    other = TRIO.make(A, 41, 41, text="a41'", previous=last.entry_hash())
    kept = TRIO.make(A, 41, 41, text="a41", previous=last.entry_hash())
    c1 = TRIO.make(C, 1, 50, text="c1, never delivered here", relative=False)
    waits = TRIO.make(
        A,
        42,
        51,
        {c1.sender_id: 1},
        text="after a41', waits for c1",
        relative=False,
        previous=other.entry_hash(),
    )
    x = TRIO.log()
    x.receive_many([*history, kept, other])
    looked_up: list[MessageId] = []
    get = x.get

    def counted_get(message_id: MessageId) -> Message | None:
        looked_up.append(message_id)
        return get(message_id)

    x.get = counted_get  # type: ignore[method-assign]
    x.receive(waits)
    first = len(looked_up)
    for seq in range(43, 53):  # more of A's entries, held behind the waiting one
        x.receive(TRIO.make(A, seq, seq + 10, text=f"a{seq}", relative=False))
    assert x.get(waits.id) is waits and not x.blocked_senders()  # (held, waiting for c1)
    assert first >= 40 and len(looked_up) - first <= 10 * 5


def test_a_held_chat_line_never_gives_way_to_a_membership_entry() -> None:
    """A's a1 waits for b1, and a2 after it; C replied to a2. A LEAVE with a1's seq comes:
    swapped in, it would make a2 a branch from a membership fork, never taken (and C's
    reply would wait for good). It stays the evidence; b1 comes, and all is delivered."""
    b1 = TRIO.make(B, 1, 1, text="b1")
    a1 = TRIO.make(A, 1, 2, {B.sender_id: 1}, text="a1")
    a2 = TRIO.make(A, 2, 3, text="a2")
    c1 = TRIO.make(C, 1, 4, {A.sender_id: 2}, text="c1 replies to a2")
    leave = TRIO.make(A, 1, 1, kind=EntryKind.LEAVE, text="", previous=b"")
    log = TRIO.log()
    log.receive_many([a1, a2, c1, leave, b1])
    assert all(log.is_visible(m) for m in (b1, a1, a2, c1)) and not log.blocked_senders()
    assert [(e.kept, e.rejected) for e in log.evidence] == [(a1, leave)]


def _restarted(log: OrderedLog) -> OrderedLog:
    """``log`` restored as a peer restores it from its store (p2pchat.restore): the other
    versions first, then the entries in log order, then the proofs."""
    again = TRIO.log()
    restore(
        again,
        versions=log.other_versions,
        entries=sorted([*log.messages(), *log.tombstones()], key=lambda m: m.key),
        placeless=log.placeless,
        placed_late=log.placed_late,
        proofs=[*log.evidence, *log.lies],
        announcements=(),
    )
    return again


def test_an_entry_going_on_from_a_third_version_is_taken_again_after_a_restart() -> None:
    """X kept a1, then learnt two other versions; a2 goes on from the second of them.
    Restarted, X takes a2 again: every version the branch needs came back first."""
    b1, a1, a1_other, _ = _fork_and_reply()
    a1_third = TRIO.make(A, 1, 1, text="a third version", previous=b"")
    a2 = TRIO.make(A, 2, 2, {B.sender_id: 1}, text="goes on from the third version")
    reply = TRIO.make(B, 2, 3, {A.sender_id: 2}, text="reply to a2")
    assert a2.previous == a1_third.entry_hash()
    x = TRIO.log()
    x.receive_many([b1, a1, a1_other, a1_third, a2, reply])
    assert x.get(a2.id) == a2 and x.is_visible(reply) and not x.blocked_senders()
    again = _restarted(x)
    assert not again.blocked_senders()
    assert [m.key for m in again] == [m.key for m in x] and again.get(a2.id) == a2
    assert again._senders[A.sender_id].vector == x._senders[A.sender_id].vector


def test_an_entry_on_the_other_branch_stamped_within_what_we_called_stable_takes_no_place() -> None:
    """A's version a1 (kept at X) is stamped after b1; its other version, and a2 going on
    from that, are stamped low. At X, a2 would land among positions X may have called
    stable on a1's stamp: it is held without a place instead (B's reply to it is taken),
    while Y, which kept the low version, shows it."""
    b1 = TRIO.make(B, 1, 1, text="b1")
    a1 = TRIO.make(A, 1, 2, {B.sender_id: 1}, text="the version X keeps")
    a1_low = TRIO.make(A, 1, 1, text="the low version", previous=b"")
    a2 = TRIO.make(A, 2, 2, text="goes on from the low version")
    assert a2.previous == a1_low.entry_hash() and a2.lamport <= a1.lamport
    reply = TRIO.make(B, 2, 3, {A.sender_id: 2}, text="reply to a2")
    x, y = TRIO.log(), TRIO.log()
    x.receive_many([b1, a1, a1_low, a2, reply])
    y.receive_many([b1, a1_low, a2, reply, a1])
    assert x.get(a2.id) == a2 and not x.is_visible(a2) and a2 in x.tombstones()
    assert x.get(a1.id) == a1  # (a2 shares a1's key: each is found by its id)
    assert y.is_visible(a2)
    for log in (x, y):
        assert log.is_visible(reply) and not log.blocked_senders() and log.stability_violations == 0

    def others(log: OrderedLog) -> list[MessageKey]:
        return [m.key for m in log if m.sender_id != A.sender_id]

    assert others(x) == others(y)


def _forked_history(low: bool) -> tuple[list[Message], list[Head]]:
    """B writes three lines and C one, and both say so; A signs two versions of its seq
    1 and goes on from the second; B and C, honest, reply along that branch, and every
    member announces its clock at the end. With ``low`` the second version, and A's
    entry after it, are stamped below B's lines, which the replicas that kept the first
    version may have called stable by then (on the first version's stamp and B's and
    C's announcements). Returns the entries and the announcements."""
    room = TRIO.room_id
    b1, b2, b3 = (TRIO.make(B, seq, seq, text=f"b{seq}") for seq in (1, 2, 3))
    c1 = TRIO.make(C, 1, 1, text="c1")
    seen = {B.sender_id: 3, C.sender_id: 1}
    if low:
        a1 = TRIO.make(A, 1, 4, seen, text="one version")
        a1_other = TRIO.make(A, 1, 1, text="another version", previous=b"")
    else:
        a1 = TRIO.make(A, 1, 1, text="one version")
        a1_other = TRIO.make(A, 1, 4, seen, text="another version", previous=b"")
    a2 = TRIO.make(A, 2, a1_other.lamport + 1, text="a2, after the other version", relative=False)
    b4 = TRIO.make(B, 4, max(a2.lamport, b3.lamport) + 1, {A.sender_id: 2}, relative=False)
    c2 = TRIO.make(C, 2, b4.lamport + 1, {A.sender_id: 2, B.sender_id: 4}, text="c2", relative=False)
    b5 = TRIO.make(B, 5, c2.lamport + 1, {C.sender_id: 2}, text="b5", relative=False)
    entries = [b1, b2, b3, c1, a1, a1_other, a2, b4, c2, b5]
    top = b5.lamport
    heads = [
        Head.announce(B, 3, 3, b3.lamport, {C.sender_id: 1}, 1, room_id=room),
        Head.announce(C, 1, 1, b3.lamport, {B.sender_id: 3}, 1, room_id=room),
        Head.announce(A, 2, 2, top, {B.sender_id: 5, C.sender_id: 2}, 2, room_id=room),
        Head.announce(B, 5, 5, top, {}, 2, room_id=room),
        Head.announce(C, 2, 2, top, {B.sender_id: 5}, 2, room_id=room),
    ]
    return entries, heads


@given(low=st.booleans(), orders=st.lists(st.permutations(range(15)), min_size=3, max_size=3))
def test_replicas_converge_on_every_honest_entry_around_a_fork_and_stable_positions_hold(
    low: bool, orders: list[list[int]]
) -> None:
    """Three replicas take an equivocator's two versions, the branch it goes on from,
    honest replies along it and the members' clock announcements, each in its own
    order (so each keeps the version it got first). Every honest entry is taken
    everywhere, in the same place, with the same concurrency flags; nobody honest is
    blocked; a position called stable never moves (each replica's stable keys only
    ever grow at the end); and a restart changes none of it."""
    entries, heads = _forked_history(low)
    honest = {B.sender_id, C.sender_id}
    logs = honest_replicas([*entries, *heads], orders, honest)
    assert all(log.evidence for log in logs), "the fork went unnoticed"

    def honest_view(log: OrderedLog) -> list[tuple[MessageKey, bool]]:
        return [(m.key, log.is_concurrent(m.id)) for m in log if m.sender_id in honest]

    assert honest_view(logs[0]) == honest_view(logs[1]) == honest_view(logs[2])
    for log in logs:
        again = _restarted(log)
        assert [m.key for m in again] == [m.key for m in log] and not again.blocked_senders()


def test_a_stamp_no_version_explains_is_still_refused() -> None:
    b1, a1, a1_other, _ = _fork_and_reply()
    log = TRIO.log()
    log.receive_many([b1, a1, a1_other])
    inflated = TRIO.make(B, 2, 9, {A.sender_id: 1}, text="jumps the queue")
    assert refusals(log.receive(inflated).events) == [(inflated, Refusal.FORGED_STAMP)]
    assert log.blocked_senders() == {B.sender_id: Refusal.FORGED_STAMP}


def test_a_thousand_versions_of_one_entry_cost_a_few() -> None:
    log = TRIO.log()
    first = TRIO.make(A, 1, 1, text="version 0")
    log.receive(first)
    for n in range(1, 200):
        log.receive(TRIO.make(A, 1, 1, text=f"version {n}", previous=b""))
    assert len(log.evidence) == MAX_VERSIONS_KEPT and log.get(first.id) == first


@pytest.mark.parametrize("order", [[0, 1, 2], [1, 0, 2], [0, 2, 1], [2, 0, 1], [1, 2, 0], [2, 1, 0]])
def test_a_version_that_passes_takes_the_place_of_a_refused_one(order: list[int]) -> None:
    """B signs two versions of its entry 1: one stamped too high (refused everywhere:
    FORGED_STAMP, which blocks B's chain), and an honest one, which A replies to. A
    replica that got the refused one first takes the honest one too, with the proof
    that B signed both, and delivers A's reply: it ends where a replica that never saw
    the refused version does. (It used to refuse the honest version for good, B being
    blocked, and hold A's reply forever.)"""
    forged, honest = make(B, 1, 5, text="too high"), make(B, 1, 1, text="b1")
    reply = make(A, 1, 2, {B.sender_id: 1}, text="a1 replies to b1")
    clean = ROOM.log()
    for message in (honest, reply):
        clean.receive(message)
    log = ROOM.log()
    first = log.receive(forged)
    assert refusals(first.events) == [(forged, Refusal.FORGED_STAMP)]
    for index in order:
        log.receive([forged, honest, reply][index])
    assert [m.key for m in log] == [m.key for m in clean]
    assert texts(log) == [honest, reply] and log.held_count == 0
    assert not log.blocked_senders()
    assert [(p.kept, p.rejected) for p in log.evidence] == [(honest, forged)]


def test_a_refused_version_is_proof_even_when_the_other_is_refused_too() -> None:
    """Two refused versions of one entry: the author stays blocked, and the pair is its
    proof (it signed both)."""
    first, second = make(B, 1, 5, text="one"), make(B, 1, 6, text="two")
    log = ROOM.log()
    log.receive(first)
    receipt = log.receive(second)
    assert receipt.status is ReceiptStatus.REFUSED
    assert log.blocked_for(B.sender_id) is Refusal.FORGED_STAMP
    assert [(p.kept, p.rejected) for p in log.evidence] == [(second, first)]
    assert texts(log) == []


@given(st.permutations(range(5)))
def test_replicas_that_saw_a_refused_version_first_end_where_the_others_do(order: list[int]) -> None:
    """B signs a refused version of its entry 1 and an honest one, then goes on (b2 on
    the honest one); A replies to b1, C to b2 and a1. In any order of arrival, and
    with each entry coming once more afterwards (as repair brings what a blocked chain
    dropped), a replica ends with the log of one that never saw the refused version,
    and with the proof against B."""
    forged = make(B, 1, 5, text="too high")
    honest = make(B, 1, 1, text="b1")
    b2 = make(B, 2, 2, text="b2 goes on from b1")
    a1 = make(A, 1, 2, {B.sender_id: 1}, text="a1 replies to b1")
    c1 = make(C, 1, 3, {B.sender_id: 2, A.sender_id: 1}, text="c1 replies to b2 and a1")
    entries = [forged, honest, b2, a1, c1]
    clean = ROOM.log()
    for message in entries[1:]:
        clean.receive(message)
    log = ROOM.log()
    for index in [*order, *range(len(entries))]:
        log.receive(entries[index])
    assert [m.key for m in log] == [m.key for m in clean]
    assert texts(log) == texts(clean) == [honest, a1, b2, c1]
    assert log.held_count == 0 and not log.blocked_senders()
    assert [(p.kept, p.rejected) for p in log.evidence] == [(honest, forged)]


E = Identity(bytes([5]) * 32)
FIVE = Room([A, B, C, D, E])


@pytest.mark.parametrize("evidence_first", [False, True])
def test_a_version_a_removal_names_of_an_entry_void_since_an_earlier_epoch_takes_no_place(
    evidence_first: bool,
) -> None:
    """Five members. A proposes to remove E; B, C and D answer, and C then writes a line
    in two versions: y to the members, x to replica Z (a member away, or one being
    admitted). A, B and D commit: the change is decided, C's cut is its answer, and its
    line is void on every replica, in either version. Next A removes C; the answers name
    C's entries as they hold them, the void y among them. Z used to show y in place of
    its own void x (among positions it had called stable: ``liars`` 1973 of the churn
    explorer); y is void as x is, so Z shows neither and ends with A's log. With
    ``evidence_first`` Z holds y as evidence before the removal; else y comes last."""
    logs = {author: FIVE.log() for author in (A, B, C, D)}
    log_z = FIVE.log()
    reported: dict[int, MessageKey] = {}

    def take(entry: Message, *, by_z: bool = True) -> None:
        for log in logs.values():
            log.receive(entry)
        if by_z:
            to_z(entry)

    def to_z(entry: Message) -> None:
        for event in log_z.receive(entry).events:
            if isinstance(event, Stable):
                reported.update((p, log_z[p].key) for p in range(event.count))
        assert all(log_z[p].key == key for p, key in reported.items()), "a stable position moved"

    def write(author: Identity, *, by_z: bool = True, text: str = "", **fields: object) -> Message:
        entry = logs[author].compose(author, name="n", text=text, sent_at_ms=0, **fields)  # type: ignore[arg-type]
        take(entry, by_z=by_z)
        return entry

    first = write(A, kind=EntryKind.CHANGE, change=Change(1, 0, (), (E.sender_id,)))
    for author in (B, C, D):
        write(author, kind=EntryKind.FLUSH, flush=Flush(1, 0, first.id))
    y = write(C, by_z=False, text="one version")
    x = FIVE.make(
        C, y.seq, y.lamport, y.deps, "another version", relative=False,
        previous=y.previous, links=logs[C].links_of(y.deps),
    )  # fmt: skip
    to_z(x)
    if evidence_first:
        to_z(y)
    for author in (A, B, D):
        write(author, kind=EntryKind.COMMIT, flush=Flush(1, 0, first.id))
    assert E.sender_id not in log_z.members and C.sender_id in log_z.members
    assert not any(log.is_visible(y) for log in logs.values()) and not log_z.is_visible(x)
    second = write(A, kind=EntryKind.CHANGE, change=Change(2, 0, (), (C.sender_id,)))
    for author in (B, D):
        write(author, kind=EntryKind.FLUSH, flush=Flush(2, 0, second.id))
    for author in (A, B, D):
        write(author, kind=EntryKind.COMMIT, flush=Flush(2, 0, second.id))
    if not evidence_first:
        to_z(y)
    log_a = logs[A]
    assert C.sender_id not in log_a.members and C.sender_id not in log_z.members
    assert not log_z.is_visible(y) and not log_z.is_visible(x)
    assert list(log_z) == list(log_a) and log_z.stable_count == len(log_z) == log_a.stable_count
    assert log_z.stability_violations == 0 and log_z.wanted_versions == []
    assert reported, "Z called positions stable before the second removal"


@pytest.mark.parametrize("exit_kind", [EntryKind.AWAY, EntryKind.LEAVE], ids=["away", "left"])
def test_an_entry_an_open_removal_names_in_another_version_is_not_stable_when_that_answer_s_author_exits(
    exit_kind: EntryKind,
) -> None:
    """Five members; E signs its line in two versions, y to A, C and D, x to B. A
    proposes to remove E; B, C and D answer, B's answer naming x, the others' y. The
    decision cuts E below the line (its answers disagree on it): y is void. Before it, B
    exits: its cover stops counting, and every other replica covered y. They used to
    call y stable there, and the decision then voided it (``liars`` 221 of the churn
    explorer, ten peers). An answer counts in the decision after its author exits, so
    while the change is open y is not stable; decided, no position reported stable moved
    and every replica shows the same log."""
    authors = (A, B, C, D, E)
    logs = {author: FIVE.log() for author in authors}
    reported: dict[Identity, dict[int, MessageKey]] = {author: {} for author in authors}

    def give(replica: Identity, entry: Message) -> None:
        log = logs[replica]
        events = log.receive(entry).events
        assert all(log[p].key == key for p, key in reported[replica].items()), "a stable position moved"
        for event in events:
            if isinstance(event, Stable):
                reported[replica].update((p, log[p].key) for p in range(event.count))

    def write(author: Identity, *to: Identity, text: str = "", **fields: object) -> Message:
        entry = logs[author].compose(author, name="n", text=text, sent_at_ms=0, **fields)  # type: ignore[arg-type]
        for replica in (author, *to):
            give(replica, entry)
        return entry

    write(A, B, C, D, E, text="before the fork")
    y = write(E, A, C, D, text="one version")
    x = FIVE.make(
        E, y.seq, y.lamport, y.deps, "another version", relative=False,
        previous=y.previous, links=logs[E].links_of(y.deps),
    )  # fmt: skip
    give(B, x)
    change = write(A, B, C, D, kind=EntryKind.CHANGE, change=Change(1, 0, (), (E.sender_id,)))
    for author, others in ((C, (A, B, D)), (D, (A, B, C)), (B, (A, C, D))):
        write(author, *others, kind=EntryKind.FLUSH, flush=Flush(1, 0, change.id))
    write(B, A, C, D, kind=exit_kind)
    y_at = {replica: [m.id for m in logs[replica]].index(y.id) for replica in (A, C, D)}
    assert all(logs[replica].stable_count <= y_at[replica] for replica in (A, C, D))
    for author, others in ((A, (B, C, D)), (C, (A, B, D)), (D, (A, B, C))):
        write(author, *others, kind=EntryKind.COMMIT, flush=Flush(1, 0, change.id))
    for replica in (A, B, C, D):
        log = logs[replica]
        assert E.sender_id not in log.members and not log.is_visible(y) and not log.is_visible(x)
        assert list(log) == list(logs[A]) and log.stable_count == len(log)
    assert all(reported[replica] for replica in (A, C, D)), "no position was reported stable"


@pytest.mark.xfail(strict=True, reason="open (docs/equivocation.md, 'A fork of a membership entry')")
def test_an_honest_answer_to_a_change_the_liar_forked_with_a_chat_line_has_one_place_everywhere() -> None:
    """Five members. E proposes to remove D (a CHANGE) and signs a chat line as the same
    entry; A holds the CHANGE, B the chat line. A answers the CHANGE. B, given A's FLUSH
    and the CHANGE it answered (held as the other version), judges the FLUSH against the
    roster it built from the chat line: it answers no change there, so it takes no place
    at B while it has one at A (``answers`` 14 of the churn explorer)."""
    logs = {author: FIVE.log() for author in (A, B, E)}

    def write(author: Identity, *to: Identity, **fields: object) -> Message:
        entry = logs[author].compose(author, name="n", text="", sent_at_ms=0, **fields)  # type: ignore[arg-type]
        for replica in (author, *to):
            logs[replica].receive(entry)
        return entry

    change = write(E, A, kind=EntryKind.CHANGE, change=Change(1, 0, (), (D.sender_id,)))
    line = FIVE.make(
        E, change.seq, change.lamport, change.deps, "a line in its place", relative=False,
        previous=change.previous, links=logs[E].links_of(change.deps),
    )  # fmt: skip
    logs[B].receive(line)
    flush = write(A, kind=EntryKind.FLUSH, flush=Flush(1, 0, change.id))
    for entry in (change, flush):  # (B holds the CHANGE as the other version, then the FLUSH)
        logs[B].receive(entry)
    assert logs[B].delivered_seq(A.sender_id) == flush.seq
    assert logs[A].is_visible(flush)
    assert logs[B].is_visible(flush), "an honest answer has a place at A and none at B"
