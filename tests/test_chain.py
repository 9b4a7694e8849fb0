"""Hash-chained feeds: each entry links to its author's previous one (p2pchat.chain).

The link itself (what it covers, what seq 1 carries), run authentication (one
signature per run, the rest by hashing, also against entries the log holds), and
strictness: a changed text, link or signature inside a run is never accepted, and a
link never vouches across authors or seqs. Then what the log does with the links:
two entries with the same predecessor are equivocation evidence, and an entry that
does not link to the delivered one before it (a fork) is refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from itertools import pairwise
from unittest import mock

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from roomkit import Room

from p2pchat import codec, identity, wire
from p2pchat.chain import authenticate
from p2pchat.deflate import DEFLATED, deflate_frame
from p2pchat.identity import Identity
from p2pchat.log import Equivocation, OrderedLog, ReceiptStatus, Refusal, Refused
from p2pchat.message import LINK_SIZE, Message, MessageId, entry_hash
from p2pchat.peer import _preverify_frame

A, B, C = sorted((Identity(bytes([i + 41]) * 32) for i in range(3)), key=lambda i: i.sender_id)
ROOM = Room([A, B, C])


def history(authors: Sequence[Identity], count: int) -> list[Message]:
    """``count`` honest entries, the authors taking turns, each having seen the ones before."""
    log = ROOM.log()
    entries = []
    for n in range(count):
        entry = log.compose(authors[n % len(authors)], name="n", text=f"m{n}", sent_at_ms=n)
        assert log.receive(entry).status is ReceiptStatus.NEW
        entries.append(entry)
    return entries


HISTORY = history([A, B, C], 45)
"""Fifteen entries of each of A, B and C, interleaved."""
RUN = history([A], 12)
"""Twelve consecutive entries of A."""


def nothing_held(_: MessageId) -> Message | None:
    return None


def held_in(entries: Sequence[Message]) -> Callable[[MessageId], Message | None]:
    by_id = {entry.id: entry for entry in entries}
    return by_id.get


@contextmanager
def counting_signature_checks() -> Iterator[list[MessageId]]:
    """The ids of the entries whose own signature is checked, in order."""
    checked: list[MessageId] = []
    real = Message.verify

    def verify(self: Message, room_id: bytes) -> bool:
        checked.append(self.id)
        return real(self, room_id)

    with mock.patch.object(Message, "verify", verify):
        yield checked


# Tampering --------------------------------------------------------------------------------


def with_field(entry: Message, index: int, value: object) -> Message:
    """``entry`` with payload field ``index`` changed, and its original signature."""
    fields = codec.strict_loads(entry.payload)
    assert isinstance(fields, list)
    fields[index] = value
    return Message.from_wire(codec.dumps(fields), entry.signature)


def changed_text(entry: Message) -> Message:
    return with_field(entry, 7, entry.text + "!")


def changed_link(entry: Message) -> Message:
    """(A first entry's empty link cannot change and still decode: it comes back as it is.)"""
    return with_field(entry, 9, bytes(b ^ 1 for b in entry.previous))


def changed_signature(entry: Message) -> Message:
    signature = bytes([entry.signature[0] ^ 1]) + entry.signature[1:]
    return Message.from_wire(entry.payload, signature)


TAMPERINGS = {"text": changed_text, "link": changed_link, "signature": changed_signature}


# The link ---------------------------------------------------------------------------------


def test_each_entry_links_to_its_authors_previous_entry_and_the_first_to_nothing() -> None:
    by_author: dict[bytes, list[Message]] = {}
    for entry in HISTORY:
        by_author.setdefault(entry.sender_id, []).append(entry)
    for entries in by_author.values():
        assert entries[0].seq == 1 and entries[0].previous == b""
        for before, entry in pairwise(entries):
            assert entry.previous == before.entry_hash()
            assert len(entry.previous) == LINK_SIZE
    # The founder's chain too: genesis, admissions, leave.
    for before, entry in pairwise(ROOM.entries):
        assert entry.previous == before.entry_hash()


def test_the_link_covers_the_signature_and_the_payload() -> None:
    entry = HISTORY[5]
    assert entry_hash(entry.payload, entry.signature) == entry.entry_hash()
    for tamper in TAMPERINGS.values():
        assert tamper(entry).entry_hash() != entry.entry_hash()
    # Not the room id's hash function (personalised), and not a hash of the payload alone.
    assert entry.entry_hash() != entry_hash(entry.payload, b"")
    assert ROOM.entries[0].room_id()[:LINK_SIZE] != ROOM.entries[0].entry_hash()


# Runs ------------------------------------------------------------------------------------


def test_a_run_of_one_author_costs_one_signature_check() -> None:
    with counting_signature_checks() as checked:
        verdicts = authenticate(RUN, ROOM.room_id, nothing_held)
    assert verdicts == [True] * len(RUN)
    assert checked == [RUN[-1].id]  # the latest entry only


def test_interleaved_authors_cost_one_check_each_in_any_order() -> None:
    frame = HISTORY[::-1]  # the order does not matter
    with counting_signature_checks() as checked:
        assert authenticate(frame, ROOM.room_id, nothing_held) == [True] * len(frame)
    assert sorted(checked) == sorted(m.id for m in HISTORY[-3:])


def test_a_live_single_entry_is_checked_on_its_own() -> None:
    with counting_signature_checks() as checked:
        assert authenticate([RUN[4]], ROOM.room_id, nothing_held) == [True]
        assert authenticate([changed_text(RUN[4])], ROOM.room_id, nothing_held) == [False]
    assert checked == [RUN[4].id, RUN[4].id]


def test_a_gap_in_a_run_starts_a_new_run() -> None:
    frame = RUN[:4] + RUN[6:]
    with counting_signature_checks() as checked:
        assert authenticate(frame, ROOM.room_id, nothing_held) == [True] * len(frame)
    assert sorted(checked) == [RUN[3].id, RUN[-1].id]


def test_an_entry_the_log_holds_vouches_for_the_one_before_it() -> None:
    """Gap repair: the log holds 6..12 (verified when they came), the frame brings 1..5."""
    held = held_in(RUN[5:])
    with counting_signature_checks() as checked:
        assert authenticate(RUN[:5], ROOM.room_id, held) == [True] * 5
        assert authenticate(RUN, ROOM.room_id, held) == [True] * len(RUN)  # 6..12: duplicates
        assert authenticate([changed_text(RUN[4])], ROOM.room_id, held) == [False]
    assert checked == [RUN[4].id]  # only the altered copy of 5


def test_a_real_log_answers_for_held_entries() -> None:
    log = ROOM.log()
    for entry in RUN[5:]:
        assert log.receive(entry).status is ReceiptStatus.NEW  # held behind the gap
    with counting_signature_checks() as checked:
        verdicts = authenticate(RUN[:5], ROOM.room_id, log.get)
    assert verdicts == [True] * 5 and checked == []
    for entry, trusted in zip(RUN[:5], verdicts, strict=True):
        log.receive(entry, trusted=trusted)
    assert log.delivered_seq(A.sender_id) == len(RUN)


def test_the_top_of_a_run_with_a_bad_signature_vouches_for_nothing() -> None:
    frame = [*RUN[:-1], changed_signature(RUN[-1])]
    with counting_signature_checks() as checked:
        verdicts = authenticate(frame, ROOM.room_id, nothing_held)
    # The rest are genuine and pass on their own signatures, one by one.
    assert verdicts == [True] * (len(RUN) - 1) + [False]
    assert len(checked) == 2  # the top, then the next one down, which vouches for the rest


def test_a_changed_text_link_or_signature_inside_a_run_is_never_accepted() -> None:
    for name, tamper in TAMPERINGS.items():
        for position in range(1 if name == "link" else 0, len(RUN)):
            frame = list(RUN)
            frame[position] = tamper(RUN[position])
            verdicts = authenticate(frame, ROOM.room_id, nothing_held)
            expected = [i != position for i in range(len(RUN))]
            assert verdicts == expected, (name, position)
            # Not through the log either: it is refused, nothing below it changes.
            log = ROOM.log()
            for entry, trusted in zip(frame, verdicts, strict=True):
                receipt = log.receive(entry, trusted=trusted)
                if entry is frame[position]:
                    assert receipt.status is ReceiptStatus.REFUSED, (name, position)
                    assert receipt.events == (Refused(entry, Refusal.BAD_SIGNATURE),)
            assert log.delivered_seq(A.sender_id) == position
            assert all(m.payload != frame[position].payload for m in log)


def test_a_forged_entry_under_a_genuine_top_is_refused_whatever_it_links_to() -> None:
    """Mallory puts her own entry in A's name (with A's link) below A's genuine top."""
    mallory = Identity(b"\x66" * 32)
    forged = Message.create(
        mallory,
        seq=RUN[5].seq,
        lamport=RUN[5].lamport,
        sent_at_ms=0,
        name="n",
        text="A owes mallory",
        deps={},
        room_id=ROOM.room_id,
        previous=RUN[4].entry_hash(),
    )
    in_as_name = Message.from_wire(forged.payload.replace(mallory.sender_id, A.sender_id), forged.signature)
    frame = [*RUN[:5], in_as_name, *RUN[6:]]
    assert authenticate(frame, ROOM.room_id, nothing_held) == [i != 5 for i in range(len(RUN))]


def test_a_link_vouches_only_for_its_authors_entry_one_seq_below() -> None:
    """B signs entries naming A's entries: that makes B's word, not A's, about them."""
    a_entries = RUN[:3]
    forged_a = changed_text(a_entries[1])  # A's seq 2, altered: its signature fails
    b_first = ROOM.make(B, 1, 100)
    b_second = ROOM.make(B, 2, 101, previous=forged_a.entry_hash())  # B names it
    b_far = ROOM.make(B, 2, 102, previous=a_entries[0].entry_hash(), text="other")
    frame = [a_entries[0], forged_a, b_first, b_second, b_far]
    verdicts = authenticate(frame, ROOM.room_id, nothing_held)
    assert verdicts == [True, False, True, True, True]
    # And within one author, a link names the entry one seq below, no other.
    skipping = ROOM.make(A, 5, 5, previous=changed_text(RUN[2]).entry_hash())
    assert authenticate([changed_text(RUN[2]), skipping], ROOM.room_id, nothing_held) == [False, True]


@pytest.mark.parametrize("kind", ["messages", "push"])
def test_the_preverifying_thread_checks_one_signature_per_author(kind: str) -> None:
    batch = tuple(HISTORY)
    announcement = wire.Head.announce(A, 1, 1, 5, {}, 0, room_id=ROOM.room_id)  # (a PUSH's fifth field)
    frame = wire.Messages(batch) if kind == "messages" else wire.Push(batch, heads=(announcement,))
    data = wire.encode_frame(frame)
    assert deflate_frame(data)[0] == DEFLATED  # (as it comes, deflated)
    before = set(identity._preverified)
    try:
        _preverify_frame(deflate_frame(data), ROOM.room_id)
        added = set(identity._preverified) - before
        assert added == {m.signature for m in HISTORY[-3:]}
        # Only a hint: what it cannot read, or reads wrongly, the node checks itself.
        for junk in (wire.MESSAGES, [wire.MESSAGES, [[b"\x8a\x03\x58\x20", b"sig"], [7, b""]]], [99, []]):
            _preverify_frame(codec.dumps(junk), ROOM.room_id)
        _preverify_frame(b"\xff", ROOM.room_id)
        assert set(identity._preverified) - before == added
    finally:
        for signature in set(identity._preverified) - before:
            identity._preverified.pop(signature, None)


# Equivocation and forks ------------------------------------------------------------------


def test_two_entries_with_the_same_predecessor_are_equivocation_evidence() -> None:
    first = ROOM.make(A, 1, 1)
    kept = ROOM.make(A, 2, 2, text="one version")
    rejected = ROOM.make(A, 2, 2, text="another", previous=first.entry_hash())
    after = ROOM.make(A, 3, 3, previous=kept.entry_hash())
    assert kept.previous == rejected.previous == first.entry_hash()
    frame = [first, kept, rejected, after]
    verdicts = authenticate(frame, ROOM.room_id, nothing_held)
    assert verdicts == [True] * 4  # each is A's own (the rival checked on its own signature)
    log = ROOM.log()
    receipts = [log.receive(m, trusted=t) for m, t in zip(frame, verdicts, strict=True)]
    assert receipts[2].events == (
        Equivocation(kept=kept, rejected=rejected),
        Refused(rejected, Refusal.EQUIVOCATION),
    )
    assert log.evidence == [Equivocation(kept=kept, rejected=rejected)]
    assert [m.payload for m in log if m.sender_id == A.sender_id] == [e.payload for e in (first, kept, after)]


def test_an_entry_that_does_not_link_to_the_delivered_one_before_it_is_a_fork() -> None:
    first = ROOM.make(A, 1, 1)
    kept = ROOM.make(A, 2, 2, text="one version")
    rival = ROOM.make(A, 2, 2, text="another", previous=first.entry_hash())
    on_rival = ROOM.make(A, 3, 3, previous=rival.entry_hash())
    later = ROOM.make(A, 4, 4, previous=on_rival.entry_hash())
    log = ROOM.log()
    for entry in (first, kept):
        assert log.receive(entry).status is ReceiptStatus.NEW
    receipt = log.receive(on_rival)  # validly signed: its author forked after ``first``
    assert receipt.status is ReceiptStatus.REFUSED
    assert receipt.events == (Refused(on_rival, Refusal.BROKEN_CHAIN),)
    assert log.blocked_senders() == {A.sender_id: Refusal.BROKEN_CHAIN}
    assert log.receive(later).status is ReceiptStatus.REFUSED  # the rest of that chain
    assert log.delivered_seq(A.sender_id) == 2


def test_a_log_composes_entries_that_link_to_its_last_one() -> None:
    log = ROOM.log()
    entries = [log.compose(A, name="n", text="0", sent_at_ms=0)]
    for i in range(1, 4):
        log.receive(entries[-1])
        entries.append(log.compose(A, name="n", text=str(i), sent_at_ms=0))
    assert [e.seq for e in entries] == [1, 2, 3, 4]
    assert entries[0].previous == b""
    assert all(e.previous == b.entry_hash() for b, e in pairwise(entries))


def test_a_log_restored_from_trusted_entries_still_checks_links() -> None:
    """Entries taken unchecked (our own store) still have to link up."""
    log = ROOM.log()
    log.receive(RUN[0], trusted=True)
    log.receive(changed_text(RUN[1]), trusted=True)  # as if the store had been altered
    receipt = log.receive(RUN[2], trusted=True)
    assert receipt.status is ReceiptStatus.REFUSED
    assert Refused(RUN[2], Refusal.BROKEN_CHAIN) in receipt.events


# Properties -----------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_batch_is_authentic_exactly_where_its_entries_are_genuine(data: st.DataObject) -> None:
    """Any subset of a history, in any order, with any entries held and any entries
    tampered with: an entry passes exactly when it is the author's, byte for byte."""
    picks = data.draw(st.lists(st.sampled_from(range(len(HISTORY))), unique=True, max_size=len(HISTORY)))
    frame = [HISTORY[i] for i in data.draw(st.permutations(picks))]
    held = held_in([HISTORY[i] for i in data.draw(st.sets(st.sampled_from(range(len(HISTORY)))))])
    tampered = data.draw(st.lists(st.tuples(st.integers(0, 10**6), st.sampled_from(sorted(TAMPERINGS)))))
    for where, how in tampered:
        if frame:
            position = where % len(frame)
            frame.insert(position if where % 2 else position + 1, TAMPERINGS[how](frame[position]))
    genuine = {(m.payload, m.signature) for m in HISTORY}
    verdicts = authenticate(frame, ROOM.room_id, held)
    assert verdicts == [(m.payload, m.signature) in genuine for m in frame]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(range(len(HISTORY))), unique=True))
def test_a_batch_costs_one_check_per_run(picks: list[int]) -> None:
    """With nothing held, the signatures checked are those of the last entry of each
    author's runs of consecutive seqs in the batch: no more."""
    frame = [HISTORY[i] for i in picks]
    seqs = {(m.sender_id, m.seq) for m in frame}
    tops = {(s, n) for s, n in seqs if (s, n + 1) not in seqs}
    with counting_signature_checks() as checked:
        assert authenticate(frame, ROOM.room_id, nothing_held) == [True] * len(frame)
    assert sorted(checked) == sorted(MessageId(s, n) for s, n in tops)


def test_an_honest_history_taken_in_batches_equals_one_taken_entry_by_entry() -> None:
    one_by_one = ROOM.log()
    for entry in HISTORY:
        one_by_one.receive(entry)
    batched = OrderedLog(room_id=ROOM.room_id)
    for entry in ROOM.entries:
        batched.receive(entry, trusted=True)
    for start in range(0, len(HISTORY), 10):
        frame = HISTORY[start : start + 10][::-1]  # (out of order: held, then delivered)
        for entry, trusted in zip(frame, authenticate(frame, ROOM.room_id, batched.get), strict=True):
            assert trusted
            batched.receive(entry, trusted=trusted)
    assert [m.payload for m in batched] == [m.payload for m in one_by_one]
