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

from p2pchat.identity import Identity
from p2pchat.log import (
    Concurrent,
    Delivered,
    Equivocation,
    LogConfig,
    LogEvent,
    OrderedLog,
    ReceiptStatus,
    Refusal,
    Refused,
    Stable,
)
from p2pchat.message import Message
from p2pchat.wire import Head

A, B, C, D = sorted((Identity(bytes([i + 1]) * 32) for i in range(4)), key=lambda i: i.sender_id)


def make(
    identity: Identity,
    seq: int,
    lamport: int,
    deps: Mapping[bytes, int] | None = None,
    text: str = "hello",
) -> Message:
    """A validly signed message with exactly these fields, honest or not."""
    return Message.create(identity, seq=seq, lamport=lamport, sent_at_ms=0, name="n", text=text, deps=deps)


def send(log: OrderedLog, identity: Identity, vector_clocks: bool = True) -> Message:
    """Compose the next honest message on ``log`` and deliver it there."""
    message = log.compose(identity, name="n", text=f"#{len(log)}", sent_at_ms=0, vector_clocks=vector_clocks)
    assert log.receive(message).status is ReceiptStatus.NEW
    return message


def chain(identity: Identity, count: int, vector_clocks: bool = True) -> list[Message]:
    """``count`` consecutive honest messages of one sender who hears nobody else."""
    log = OrderedLog()
    return [send(log, identity, vector_clocks) for _ in range(count)]


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
    log = OrderedLog()
    assert log.receive(a1).status is ReceiptStatus.NEW
    receipt = log.receive(a1)
    assert receipt.status is ReceiptStatus.DUPLICATE
    assert receipt.events == ()
    assert log.messages() == [a1]


def test_copy_of_a_held_message_is_a_duplicate() -> None:
    _, a2 = chain(A, 2)
    log = OrderedLog()
    log.receive(a2)
    assert log.receive(a2).status is ReceiptStatus.DUPLICATE
    assert log.held_count == 1


def test_message_after_a_gap_is_held_until_the_gap_fills() -> None:
    a1, a2, a3 = chain(A, 3)
    log = OrderedLog()
    for message in (a3, a2):
        receipt = log.receive(message)
        assert receipt.status is ReceiptStatus.NEW
        assert receipt.events == ()
    assert len(log) == 0
    assert log.held_count == 2
    assert log.get(a3.id) == a3

    receipt = log.receive(a1)
    assert delivered(receipt.events) == [a1, a2, a3]
    assert log.messages() == [a1, a2, a3]
    assert log.held_count == 0


def test_reply_is_held_until_what_it_replies_to_is_delivered() -> None:
    (a1,) = chain(A, 1)
    b_log = OrderedLog()
    b_log.receive(a1)
    b1 = send(b_log, B)
    log = OrderedLog()
    log.receive(b1)
    assert len(log) == 0
    assert delivered(log.receive(a1).events) == [a1, b1]
    assert log.messages() == [a1, b1]


def test_message_too_far_ahead_is_ignored_not_held() -> None:
    messages = chain(A, 4)
    log = OrderedLog(LogConfig(max_ahead=2))
    assert log.receive(messages[3]).status is ReceiptStatus.IGNORED
    assert log.held_count == 0
    assert log.receive(messages[1]).status is ReceiptStatus.NEW


def test_bytes_held_behind_gaps_are_bounded_over_all_senders() -> None:
    a, b = chain(A, 3), chain(B, 3)
    bound = len(a[1].payload) + len(a[2].payload)
    log = OrderedLog(LogConfig(max_held_bytes=bound))
    assert log.receive(a[1]).status is ReceiptStatus.NEW
    assert log.receive(a[2]).status is ReceiptStatus.NEW
    assert log.held_bytes == bound
    assert log.receive(b[1]).status is ReceiptStatus.IGNORED  # full: comes again with repair
    assert log.receive(b[0]).status is ReceiptStatus.NEW  # deliverable at once: always taken
    assert log.receive(a[0]).status is ReceiptStatus.NEW
    assert log.held_bytes == 0 and len(log) == 4
    assert log.receive(b[1]).status is ReceiptStatus.NEW


# Gaps ---------------------------------------------------------------------------


def test_gaps_report_missing_ranges_per_sender() -> None:
    a = chain(A, 5)
    b = chain(B, 3)
    log = OrderedLog()
    for message in (a[1], a[4], b[2]):
        log.receive(message)
    assert log.gaps() == {A.sender_id: [(1, 1), (3, 4)], B.sender_id: [(1, 2)]}

    log.receive(a[0])
    assert log.gaps() == {A.sender_id: [(3, 4)], B.sender_id: [(1, 2)]}


def test_gaps_include_senders_known_only_from_a_vector_clock() -> None:
    b_log = OrderedLog()
    for message in chain(A, 2):
        b_log.receive(message)
    b1 = send(b_log, B)
    log = OrderedLog()
    log.receive(b1)
    assert log.gaps() == {A.sender_id: [(1, 2)]}


def test_gaps_include_seqs_announced_in_a_head() -> None:
    log = OrderedLog()
    log.observe_head(Head(A.sender_id, held_seq=3))
    assert log.gaps() == {A.sender_id: [(1, 3)]}


# Equivocation -------------------------------------------------------------------


def test_equivocation_is_refused_and_kept_as_evidence() -> None:
    kept, rejected = make(A, 1, 1, text="yes"), make(A, 1, 1, text="no")
    log = OrderedLog()
    log.receive(kept)
    receipt = log.receive(rejected)
    assert receipt.status is ReceiptStatus.REFUSED
    evidence = Equivocation(kept=kept, rejected=rejected)
    assert receipt.events == (evidence, Refused(rejected, Refusal.EQUIVOCATION))
    assert log.evidence == [evidence]
    assert log.messages() == [kept]


def test_equivocation_against_a_held_message_never_delivers_both() -> None:
    a1 = make(A, 1, 1)
    kept, rejected = make(A, 2, 2, text="yes"), make(A, 2, 3, text="no")
    log = OrderedLog()
    log.receive(kept)
    assert log.receive(rejected).status is ReceiptStatus.REFUSED
    log.receive(a1)
    assert log.receive(rejected).status is ReceiptStatus.REFUSED
    assert log.messages() == [a1, kept]
    assert [e.rejected for e in log.evidence] == [rejected, rejected]


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
        log = OrderedLog()
        receipt = log.receive(forgery)
        assert receipt.status is ReceiptStatus.REFUSED
        assert receipt.events == (Refused(forgery, Refusal.BAD_SIGNATURE),)
        assert log.receive(genuine).status is ReceiptStatus.NEW
        assert log.messages() == [genuine]


def test_altered_text_of_a_known_sender_is_refused_and_the_genuine_one_delivers() -> None:
    a1, a2 = chain(A, 2)
    forgery = Message.from_wire(a2.payload.replace(b"#1", b"#9"), a2.signature)
    assert forgery.text == "#9"
    log = OrderedLog()
    log.receive(a1)
    assert refusals(log.receive(forgery).events) == [(forgery, Refusal.BAD_SIGNATURE)]
    assert not log.blocked_senders()
    assert delivered(log.receive(a2).events) == [a2]


def test_altered_copy_of_a_delivered_message_is_a_bad_signature_not_equivocation() -> None:
    (a1,) = chain(A, 1)
    forgery = Message.from_wire(a1.payload.replace(b"#0", b"#9"), a1.signature)
    log = OrderedLog()
    log.receive(a1)
    assert refusals(log.receive(forgery).events) == [(forgery, Refusal.BAD_SIGNATURE)]
    assert log.evidence == []
    assert log.messages() == [a1]


# Stamps -------------------------------------------------------------------------


def test_exact_stamp_with_vector_clocks_is_delivered() -> None:
    a1, b1 = make(A, 1, 1, deps={}), make(B, 1, 2, deps={A.sender_id: 1})
    log = OrderedLog()
    log.receive(a1)
    assert delivered(log.receive(b1).events) == [b1]


@pytest.mark.parametrize("lamport", [1, 3, 1000])
def test_stamp_other_than_one_plus_the_dependencies_is_forged(lamport: int) -> None:
    a1, b1 = make(A, 1, 1, deps={}), make(B, 1, lamport, deps={A.sender_id: 1})
    log = OrderedLog()
    log.receive(a1)
    assert refusals(log.receive(b1).events) == [(b1, Refusal.FORGED_STAMP)]
    assert log.messages() == [a1]
    assert log.blocked_senders() == {B.sender_id: Refusal.FORGED_STAMP}


@pytest.mark.parametrize(("second_lamport", "refused"), [(2, False), (3, True)], ids=["exact", "inflated"])
def test_stamp_must_follow_the_senders_own_previous_message(second_lamport: int, refused: bool) -> None:
    a1, a2 = make(A, 1, 1, deps={}), make(A, 2, second_lamport, deps={})
    log = OrderedLog()
    log.receive(a1)
    expected = [(a2, Refusal.FORGED_STAMP)] if refused else []
    assert refusals(log.receive(a2).events) == expected


def test_first_message_with_an_empty_vector_must_be_stamped_one() -> None:
    a1 = make(A, 1, 2, deps={})
    log = OrderedLog()
    assert refusals(log.receive(a1).events) == [(a1, Refusal.FORGED_STAMP)]


def test_forged_stamp_is_refused_once_its_dependency_arrives() -> None:
    a1, b1 = make(A, 1, 1, deps={}), make(B, 1, 5, deps={A.sender_id: 1})
    log = OrderedLog()
    assert log.receive(b1).events == ()
    receipt = log.receive(a1)
    assert delivered(receipt.events) == [a1]
    assert refusals(receipt.events) == [(b1, Refusal.FORGED_STAMP)]
    assert log.held_count == 0


@pytest.mark.parametrize(
    ("lamports", "refusal"),
    [
        ((10, 20), None),
        ((11,), Refusal.STAMP_TOO_FAR),
        ((10, 21), Refusal.STAMP_TOO_FAR),
    ],
    ids=["within-bound", "first-too-far", "second-too-far"],
)
def test_plain_stamp_may_grow_at_most_the_configured_step(
    lamports: tuple[int, ...], refusal: Refusal | None
) -> None:
    messages = [make(A, seq, lamport) for seq, lamport in enumerate(lamports, start=1)]
    log = OrderedLog(LogConfig(max_lamport_step=10))
    events = [event for message in messages for event in log.receive(message).events]
    if refusal is None:
        assert log.messages() == messages
    else:
        assert refusals(events) == [(messages[-1], refusal)]
        assert log.messages() == messages[:-1]


@pytest.mark.parametrize("deps", [None, {}], ids=["plain", "vector"])
@pytest.mark.parametrize("third", [1, 2], ids=["lower", "equal"])
def test_stamp_must_increase_with_seq(deps: dict[bytes, int] | None, third: int) -> None:
    a1, a2, a3 = make(A, 1, 1, deps), make(A, 2, 2, deps), make(A, 3, third, deps)
    log = OrderedLog()
    log.receive_many([a1, a2])
    assert refusals(log.receive(a3).events) == [(a3, Refusal.STAMP_NOT_INCREASING)]
    assert log.messages() == [a1, a2]


def test_vector_clock_naming_its_own_sender_is_refused() -> None:
    a1 = make(A, 1, 1, deps={A.sender_id: 1})
    log = OrderedLog()
    assert refusals(log.receive(a1).events) == [(a1, Refusal.DEPS_REGRESS)]


def test_later_messages_of_a_blocked_sender_are_refused() -> None:
    a1, bad, a3, a4 = make(A, 1, 5), make(A, 2, 5), make(A, 3, 6), make(A, 4, 7)
    (b1,) = chain(B, 1, vector_clocks=False)
    log = OrderedLog()
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
    assert log.messages() == [b1, a1]


# Stability ----------------------------------------------------------------------


def _log_with_two_from_a() -> tuple[OrderedLog, list[Message]]:
    """Members A and B; A's messages stamped 1 and 2 are delivered; B is silent."""
    log = OrderedLog(members=[A.sender_id, B.sender_id])
    messages = chain(A, 2, vector_clocks=False)
    for message in messages:
        log.receive(message)
    return log, messages


def test_nothing_is_stable_while_a_member_is_silent() -> None:
    log, _ = _log_with_two_from_a()
    assert log.stable_count == 0
    assert log.silent_members() == [B.sender_id]


def test_clock_announcements_extend_the_stable_prefix() -> None:
    log, (a1, a2) = _log_with_two_from_a()
    assert log.observe_head(Head.announce(B, 0, 0, 1)) == [Stable(1)]
    assert log.is_stable(a1)
    assert not log.is_stable(a2)
    assert log.observe_head(Head.announce(B, 0, 0, 2)) == [Stable(2)]
    assert log.observe_head(Head.announce(B, 0, 0, 2)) == []


def test_announcement_counts_only_once_its_message_is_delivered() -> None:
    log, _ = _log_with_two_from_a()
    b1 = make(B, 1, 1)
    assert log.observe_head(Head.announce(B, 1, 1, 5)) == []
    assert log.stable_count == 0
    log.receive(b1)
    assert log.stable_count == 3


def test_newer_announcement_for_the_same_seq_is_not_lost() -> None:
    # B announces its clock after b1 twice, the second time after hearing more.
    log, _ = _log_with_two_from_a()
    log.observe_head(Head.announce(B, 1, 1, 1))
    log.observe_head(Head.announce(B, 1, 1, 2))
    log.receive(make(B, 1, 1))
    assert log.stable_count == 3, "the clock 2 announcement makes a2 stable too"


def test_an_announcement_not_signed_by_its_member_is_ignored() -> None:
    log, _ = _log_with_two_from_a()
    forged = Head.announce(C, 0, 0, 5)  # signed by C, claiming to be B's clock
    lie = Head(B.sender_id, 0, 0, 5, forged.signature)
    assert log.observe_head(lie) == []
    assert log.stable_count == 0 and log.bad_announcements == 1
    assert log.observe_head(Head.announce(B, 0, 0, 5)) == [Stable(2)]


def test_removing_the_silent_member_unblocks_stability() -> None:
    log, _ = _log_with_two_from_a()
    assert log.remove_member(B.sender_id) == [Stable(2)]
    assert log.stable_count == 2
    assert log.silent_members() == [A.sender_id]


def test_sender_known_from_a_vector_clock_holds_stability_back() -> None:
    # A's message is only known from C's vector clock; it sorts before the others.
    (a1,) = chain(A, 1)
    (b1,) = chain(B, 1)
    c_log = OrderedLog()
    c1 = send(c_log, C)
    c_log.receive(a1)
    c2 = send(c_log, C)
    log = OrderedLog(members=[B.sender_id, C.sender_id])
    log.receive_many([c2, c1])  # c2 names A: from here on A is known
    assert A.sender_id in log.members
    log.receive(b1)
    assert log.stable_count == 0, "b1 and c1 are not stable: a1 may sort before them"
    log.receive(a1)
    assert log.messages() == [a1, b1, c1, c2]
    assert log.stability_violations == 0


# Events -------------------------------------------------------------------------


def test_delivered_index_is_the_position_at_the_time_of_delivery() -> None:
    b1, b2 = make(B, 1, 1), make(B, 2, 3)
    a1, a2, a3 = make(A, 1, 1), make(A, 2, 2), make(A, 3, 4)
    log = OrderedLog()
    log.receive_many([b1, b2, a3, a2])
    before = log.messages()
    events = log.receive(a1).events
    assert [(e.message, e.index) for e in events if isinstance(e, Delivered)] == [
        (a1, 0),
        (a2, 2),
        (a3, 4),
    ]
    replayed = list(before)
    for event in events:
        if isinstance(event, Delivered):
            replayed.insert(event.index, event.message)
    assert replayed == log.messages() == [a1, b1, a2, b2, a3]


def test_concurrent_events_flag_earlier_messages() -> None:
    (a1,) = chain(A, 1)
    (b1,) = chain(B, 1)
    log = OrderedLog()
    assert changes(log.receive(a1).events) == (Delivered(a1, 0, concurrent=False),)
    assert changes(log.receive(b1).events) == (
        Concurrent((a1.id,)),
        Delivered(b1, 1, concurrent=True),
    )
    assert log.is_concurrent(a1.id)
    assert log.is_concurrent(b1.id)


def test_message_concurrent_only_with_flagged_messages_is_flagged_too() -> None:
    (a1,) = chain(A, 1)
    (b1,) = chain(B, 1)
    (c1,) = chain(C, 1)
    log = OrderedLog()
    log.receive_many([a1, b1])
    assert changes(log.receive(c1).events) == (Delivered(c1, 2, concurrent=True),)
    assert log.is_concurrent(c1.id)


def test_concurrent_event_lists_only_newly_flagged_messages() -> None:
    (a1,) = chain(A, 1)
    (b1,) = chain(B, 1)
    (c1,) = chain(C, 1)
    a_log = OrderedLog()
    a_log.receive_many([a1, b1])
    a2 = send(a_log, A)  # has seen a1 and b1
    log = OrderedLog()
    log.receive_many([a1, b1])
    assert changes(log.receive(a2).events) == (Delivered(a2, 2, concurrent=False),)
    assert not log.is_concurrent(a2.id)
    assert changes(log.receive(c1).events) == (Concurrent((a2.id,)), Delivered(c1, 2, concurrent=True))
    assert log.is_concurrent(a2.id)


def test_plain_messages_are_never_flagged_concurrent() -> None:
    (a1,) = chain(A, 1, vector_clocks=False)
    (b1,) = chain(B, 1, vector_clocks=False)
    log = OrderedLog()
    events = [e for _, receipt in log.receive_many([a1, b1]) for e in receipt.events]
    assert not any(isinstance(e, Concurrent) for e in events)
    assert not log.is_concurrent(a1.id)
    assert not log.is_concurrent(b1.id)
