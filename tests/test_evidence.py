"""Proofs against members outlive a restart (issue #9): kept, checked again, acted on.

A peer that holds proof that a member signed two versions of one entry, or broke a
promise about its clock, expels it. These tests check that the proof is stored as the
bytes the offender signed, comes back from the store only if it still proves its
claim (a hand-edited data directory must not expel an honest member), and that a
restarted peer acts on it as before: it refuses the offender's handshake with the same
reason, never proposes its admission, and passes the proof on to neighbours that never
had it.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path

import pytest
import trio
from roomkit import FOUNDER, Room
from test_attacks import (
    POLICY_VIOLATION,
    TIMEOUT,
    VICTIM,
    Mallory,
    attack_code,
    equivocation_attack,
    holding,
    line,
    url,
)
from test_crash import ROOT, PeerProcess, stop_all
from test_log import TRIO, removal_reaching_a_replica_with_the_other_version
from test_membership import (
    PEOPLE,
    Mesh,
    bob_breaks_a_promise,
    bob_equivocates,
    bob_forks_while_carol_is_away,
    founded_node,
    newcomer,
    three_members,
    twin_of,
)

from p2pchat.cli import main
from p2pchat.deflate import inflate_frame
from p2pchat.evidence import (
    InvalidProof,
    Proof,
    ProofKind,
    SignedProof,
    offence,
    offenders,
    proof_from,
    signed_proof,
)
from p2pchat.identity import Identity
from p2pchat.jsonlines import logged_message_object
from p2pchat.log import ClockLie, Delivered, Entombed, Equivocation, OrderedLog
from p2pchat.message import EntryKind, Message, MessageId, announcement_payload, parse_announcement_payload
from p2pchat.node import Node, Output, Send
from p2pchat.peer import Peer, PeerConfig, open_peer, restore_log
from p2pchat.restore import restore
from p2pchat.store import DATABASE_NAME, SCHEMA, Store
from p2pchat.wire import Frame, Head, Heads, Messages, Push, Want, decode_frame, encode_frame

A, B = sorted((Identity(bytes([0x30 + i]) * 32) for i in range(2)), key=lambda i: i.sender_id)
ROOM = Room([A, B])
C3 = Identity(b"\x3c" * 32)


def equivocation() -> Equivocation:
    """B signs two versions of its entry 1."""
    return Equivocation(ROOM.make(B, 1, 1, text="yes"), ROOM.make(B, 1, 1, text="no"))


def clock_lie() -> ClockLie:
    """B announces its clock is base + 5 after nothing, then stamps its entry 1 base + 1."""
    promise = Head.announce(B, 0, 0, ROOM.base + 5, {A.sender_id: 1}, 1_234, room_id=ROOM.room_id)
    return ClockLie(promise, ROOM.make(B, 1, 1))


def signed_fields(proof: Proof) -> tuple[object, ...]:
    """What a proof says, signatures included (a head's unsigned held_seq aside)."""
    if isinstance(proof, Equivocation):
        return (proof.kept.payload, proof.kept.signature, proof.rejected.payload, proof.rejected.signature)
    head = proof.announcement
    fields = (head.sender_id, head.clock_seq, head.clock_lamport, head.delivered, head.at_ms, head.signature)
    return (*fields, proof.message.payload, proof.message.signature)


# The proofs, as bytes ---------------------------------------------------------------------------


@pytest.mark.parametrize("make", [equivocation, clock_lie])
def test_a_proof_comes_back_from_its_signed_bytes(make: Callable[[], Proof]) -> None:
    proof = make()
    signed = signed_proof(proof, ROOM.room_id)
    assert signed.offender == B.sender_id
    back = proof_from(signed, ROOM.room_id)
    assert type(back) is type(proof) and signed_fields(back) == signed_fields(proof)
    assert offence(back) == offence(proof)


def test_every_member_a_proof_holds_against_is_an_offender() -> None:
    assert offenders([]) == frozenset()
    assert offenders([equivocation(), clock_lie()]) == {B.sender_id}


@pytest.mark.parametrize("lie", ["equivocation", "clock"])
def test_the_json_output_flags_the_liars_lines_that_other_peers_may_show_otherwise(lie: str) -> None:
    """A replica holding a proof against B, while B is not removed yet (a removal voids
    the line where its answers name it differently, see test_membership; a replica that
    did not answer keeps what it holds): every line of B's is flagged, shown or not."""
    log = ROOM.log()
    b1 = ROOM.make(B, 1, 1, text="b1")
    if lie == "equivocation":
        disputed, other = ROOM.make(B, 2, 2, text="yes"), ROOM.make(B, 2, 2, text="no")
        log.receive_many([b1, disputed, other])
        assert log.evidence
    else:
        disputed = ROOM.make(B, 2, 2, text="stamped within its promise")
        log.receive_many([b1, disputed])
        # B's promise, signed after b1, comes after the line that broke it (this replica
        # never relied on it, so it shows the line): the pair is the proof.
        founding = {FOUNDER.sender_id: ROOM.founder_seq}
        promise = Head.announce(
            B, 1, 1, ROOM.base + 5, founding, room_id=ROOM.room_id, delivered_links=ROOM.links_of(founding)
        )
        log.observe_head(promise)
        assert log.lies
    a1 = log.compose(A, name="a", text="a1", sent_at_ms=0)
    log.receive(a1)
    assert log.is_visible(disputed)
    flags = {(m.sender_id, m.seq): logged_message_object(log, i).get("disputed") for i, m in enumerate(log)}
    # Every line of B's (where its versions part is not known for certain), no other.
    assert flags[(B.sender_id, 1)] is True and flags[(B.sender_id, 2)] is True
    assert all(flag is None for (sender, _), flag in flags.items() if sender != B.sender_id)


def test_the_announcement_bytes_read_back_exactly_and_strictly() -> None:
    delivered = ((A.sender_id, 3), (B.sender_id, 9))
    seen = bytes(range(16))  # (the digest of the versions delivered: any 16 bytes here)
    payload = announcement_payload(ROOM.room_id, A.sender_id, 4, 17, delivered, 99, seen)
    assert payload.startswith(b"p2pchat-clock-v4") and payload.endswith(seen)
    assert parse_announcement_payload(payload) == (ROOM.room_id, A.sender_id, 4, 17, delivered, 99, seen)
    records, digest = payload[:-16], payload[-16:]
    unsorted = records[: -2 * 40] + records[-40:] + records[-80:-40] + digest
    twice = records[:-40] + records[-80:-40] + digest
    for bad in (payload[:-1], payload + b"\x00", b"x" + payload[1:], unsorted, twice, records):
        with pytest.raises(ValueError):
            parse_announcement_payload(bad)
    # Nothing delivered: no digest; a digest without delivered seqs is no announcement's.
    bare = announcement_payload(ROOM.room_id, A.sender_id, 4, 17, (), 99)
    assert parse_announcement_payload(bare) == (ROOM.room_id, A.sender_id, 4, 17, (), 99, b"")
    with pytest.raises(ValueError):
        parse_announcement_payload(bare + seen)
    for wrong in (b"", seen[:15], seen + b"\x00"):
        with pytest.raises(ValueError):
            announcement_payload(ROOM.room_id, A.sender_id, 4, 17, delivered, 99, wrong)
    with pytest.raises(ValueError):
        announcement_payload(ROOM.room_id, A.sender_id, 4, 17, (), 99, seen)


def test_a_legacy_announcement_reads_back_naming_no_versions() -> None:
    """The layout before seen digests (an old data directory's announcements): read back
    with seen None, as strictly; it is never taken for the new layout, nor the new for it."""
    delivered = ((A.sender_id, 3), (B.sender_id, 9))
    legacy = announcement_payload(ROOM.room_id, A.sender_id, 4, 17, delivered, 99, None)
    assert legacy.startswith(b"p2pchat-clock-v3")
    assert parse_announcement_payload(legacy) == (ROOM.room_id, A.sender_id, 4, 17, delivered, 99, None)
    bare = announcement_payload(ROOM.room_id, A.sender_id, 4, 17, (), 99, None)
    assert parse_announcement_payload(bare) == (ROOM.room_id, A.sender_id, 4, 17, (), 99, None)
    unsorted = legacy[: -2 * 40] + legacy[-40:] + legacy[-80:-40]
    for bad in (legacy[:-1], legacy + bytes(16), unsorted):
        with pytest.raises(ValueError):
            parse_announcement_payload(bad)
    # The same fields in the current layout: another context, and the digest after them.
    current = announcement_payload(ROOM.room_id, A.sender_id, 4, 17, delivered, 99, bytes(16))
    context = len(b"p2pchat-clock-v3")
    assert current[context:] == legacy[context:] + bytes(16) and current[:context] != legacy[:context]


def tampered(signed: SignedProof, **fields: object) -> SignedProof:
    return replace(signed, **fields)  # type: ignore[arg-type]


def flip(data: bytes, at: int = -1) -> bytes:
    """``data`` with one byte changed."""
    index = at % len(data)
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def test_a_proof_that_does_not_prove_its_claim_is_refused() -> None:
    eq, lie = signed_proof(equivocation(), ROOM.room_id), signed_proof(clock_lie(), ROOM.room_id)
    honest_next = ROOM.make(B, 2, 7, text="after the promise")  # stamped above the clock promised
    honest = signed_proof(ClockLie(clock_lie().announcement, honest_next), ROOM.room_id)
    same = signed_proof(Equivocation(equivocation().kept, equivocation().kept), ROOM.room_id)
    other_seq = signed_proof(Equivocation(equivocation().kept, ROOM.make(B, 2, 2)), ROOM.room_id)
    cases = {
        "a changed text": tampered(eq, second=eq.second.replace(b"no", b"on")),
        "a signature of the other version": tampered(eq, second_signature=eq.first_signature),
        "a changed clock": tampered(lie, first=flip(lie.first, 40)),
        "a changed announcement signature": tampered(lie, first_signature=flip(lie.first_signature)),
        "against another member": tampered(eq, offender=A.sender_id),
        "not bytes at all": tampered(lie, first=b"", second=b"\x00"),
        "the promise kept": honest,
        "the same entry twice": same,
        "two different seqs": other_seq,
    }
    for what, signed in cases.items():
        with pytest.raises(InvalidProof):
            proof_from(signed, ROOM.room_id)
            pytest.fail(f"{what}: taken as proof")
    # Signed for another room: no proof here.
    with pytest.raises(InvalidProof):
        proof_from(eq, bytes(32))


# The store ----------------------------------------------------------------------------------------


def test_proofs_round_trip_through_the_store_once_per_offender_and_kind(tmp_path: Path) -> None:
    eq, lie = equivocation(), clock_lie()
    room = ROOM.room_id
    entries = [*ROOM.entries, eq.kept]
    with Store(tmp_path) as store:
        # With the entries of the batch they came with, in one transaction.
        store.save_messages(room, entries, proofs=[signed_proof(eq, ROOM.room_id)])
        store.save_proofs(room, [signed_proof(lie, room), signed_proof(eq, room)])  # (eq again: ignored)
        # A second proof of the same kind against B is not kept: one is enough.
        another = Equivocation(eq.kept, ROOM.make(B, 1, 1, text="maybe"))
        store.save_proofs(room, [signed_proof(another, ROOM.room_id)])
        store.save_proofs(bytes(32), [signed_proof(eq, ROOM.room_id)])  # (another room's: apart)
    with Store(tmp_path, read_only=True) as store:
        assert {(p.kind, p.second) for p in store.load_proofs(room)} == {
            (ProofKind.EQUIVOCATION, eq.rejected.payload),
            (ProofKind.CLOCK_LIE, lie.message.payload),
        }
        log = restore_log(store, room)
    assert [signed_fields(e) for e in log.evidence] == [signed_fields(eq)]
    assert [signed_fields(x) for x in log.lies] == [signed_fields(lie)]


def test_a_tampered_proof_is_dropped_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    eq, lie = equivocation(), clock_lie()
    room = ROOM.room_id
    with Store(tmp_path) as store:
        proofs = [signed_proof(eq, room), signed_proof(lie, room)]
        store.save_messages(room, [*ROOM.entries, eq.kept], proofs=proofs)
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        # Someone edits the data directory: the second version's text, and a signature
        # replaced by text (SQLite keeps any type in any column).
        db.execute(
            "UPDATE evidence SET second = ? WHERE kind = 'equivocation'",
            (eq.rejected.payload.replace(b"no", b"on"),),
        )
        db.execute("UPDATE evidence SET first_signature = 'forged' WHERE kind = 'clock_lie'")
    db.close()
    caplog.set_level(logging.WARNING, logger="p2pchat.peer")
    with Store(tmp_path) as store:
        log = restore_log(store, room)
        node = Node(A, "a", log)
    assert log.evidence == [] and log.lies == []
    assert node.offenders == {}, "a tampered proof expelled a member"
    dropped = [r.getMessage() for r in caplog.records if "dropped a stored" in r.getMessage()]
    assert len(dropped) == 2, dropped
    assert any("equivocation" in d and "does not verify" in d for d in dropped)
    assert any("clock_lie" in d for d in dropped)


def test_a_directory_without_the_evidence_table_opens_and_gains_it(tmp_path: Path) -> None:
    """A data directory written before proofs were stored (format 3, no evidence table)."""
    before = SCHEMA.replace(
        SCHEMA[
            SCHEMA.index("CREATE TABLE IF NOT EXISTS evidence") : SCHEMA.index(
                "CREATE TABLE IF NOT EXISTS meta"
            )
        ],
        "",
    )
    assert "evidence" not in before
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        db.executescript(before)
        db.executemany(
            "INSERT INTO entries (room, sender, seq, lamport, payload, signature) VALUES (?, ?, ?, ?, ?, ?)",
            [(ROOM.room_id, m.sender_id, m.seq, m.lamport, m.payload, m.signature) for m in ROOM.entries],
        )
    db.close()
    with Store(tmp_path, read_only=True) as store:  # (`p2pchat log` on it: nothing created)
        assert store.load_proofs(ROOM.room_id) == []
        assert len(restore_log(store, ROOM.room_id)) == len(ROOM)
        assert store.load_versions(ROOM.room_id) == store.load_announcements(ROOM.room_id) == []
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        for table in ("evidence", "versions", "announcements"):
            assert not db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchall()
    db.close()
    eq = equivocation()
    announced = Head.announce(A, 1, 1, 9, {B.sender_id: 2}, 5, room_id=ROOM.room_id)
    with Store(tmp_path) as store:
        assert store.message_count(ROOM.room_id) == len(ROOM.entries)
        store.save_proofs(ROOM.room_id, [signed_proof(eq, ROOM.room_id)])
        store.save_messages(ROOM.room_id, [], versions=[eq.rejected])
        store.save_messages(ROOM.room_id, [], announcements=[announced])
    with Store(tmp_path, read_only=True) as store:
        assert [p.second for p in store.load_proofs(ROOM.room_id)] == [eq.rejected.payload]
        assert store.load_versions(ROOM.room_id) == [eq.rejected]
        assert store.load_announcements(ROOM.room_id) == [announced]


def test_entries_held_without_a_place_or_placed_late_stay_so_and_an_older_table_gains_the_marks(
    tmp_path: Path,
) -> None:
    """Which entries our log holds without a place (it relied on a promise they broke),
    and which it placed below positions it already held stable, is ours, not the log's:
    the store keeps both marks. An entries table from a release before (no such columns)
    reads as "none", and gains the columns when opened for writing."""
    lie = clock_lie()
    late = ROOM.make(A, 1, 1)
    room = ROOM.room_id
    without = SCHEMA.replace("    placeless INTEGER NOT NULL DEFAULT 0,\n", "").replace(
        "    placed_late INTEGER NOT NULL DEFAULT 0,\n", ""
    )
    assert "placeless" not in without and "placed_late" not in without
    with sqlite3.connect(tmp_path / DATABASE_NAME) as db:
        db.executescript(without)
        db.executemany(
            "INSERT INTO entries VALUES (?, ?, ?, ?, ?, ?)",
            [(room, m.sender_id, m.seq, m.lamport, m.payload, m.signature) for m in ROOM.entries],
        )
    db.close()
    with Store(tmp_path, read_only=True) as store:
        assert store.load_placeless(room) == set() and store.load_placed_late(room) == set()
    with Store(tmp_path) as store:
        store.save_messages(room, [lie.message], placeless={lie.message.id})
        store.save_messages(room, [late], placed_late={late.id})
    with Store(tmp_path, read_only=True) as store:
        assert store.load_placeless(room) == {lie.message.id}
        assert store.load_placed_late(room) == {late.id}
        log = restore_log(store, room)
    assert log.placeless == {lie.message.id} and not log.is_visible(lie.message)
    assert lie.message in log.tombstones()
    assert log.placed_late == {late.id} and log.is_visible(late)


async def test_a_peer_stores_the_mark_of_an_entry_placed_late(tmp_path: Path) -> None:
    """The shell's half: a delivery placed below positions already stable
    (Delivered.placed_late) is saved with its mark, and a restart marks it again; a
    delivery in order is saved without. (The event is handed to the peer by hand: only a
    liar's stamps cause one.)"""
    room = ROOM.room_id
    first, late = ROOM.make(B, 1, 1), ROOM.make(B, 2, 2)
    with Store(tmp_path) as store:
        store.save_messages(room, ROOM.entries)
        node = Node(A, "a", ROOM.log())
        async with trio.open_nursery() as nursery:
            peer = Peer(node, store, PeerConfig(), nursery)
            for message, placed_late in ((first, False), (late, True)):
                events = node.log.receive(message).events
                (delivered,) = [e for e in events if isinstance(e, Delivered)]
                peer._on_log_events([replace(delivered, placed_late=placed_late)])
            peer._save()
        assert store.load_placed_late(room) == {late.id}
        log = restore_log(store, room)
    assert log.placed_late == {late.id} and log.is_visible(first) and log.is_visible(late)


# A restarted node --------------------------------------------------------------------------------


def restarted(node: Node) -> Node:
    """``node`` as a restart rebuilds it: its entries in log order, and its proofs through
    the bytes the store keeps (what restore_log does, without SQLite)."""
    room = node.log.room_id
    assert room is not None
    log = OrderedLog(room_id=room)
    restore(
        log,
        versions=node.log.other_versions,
        entries=sorted([*node.log.messages(), *node.log.tombstones()], key=lambda m: m.key),
        placeless=node.log.placeless,
        placed_late=node.log.placed_late,
        proofs=[proof_from(signed_proof(p, room), room) for p in [*node.log.evidence, *node.log.lies]],
        announcements=(),
    )
    return Node(node.identity, node.name, log)


def forgetful(node: Node) -> Node:
    """``node`` restarted the way it was before proofs were stored: entries only."""
    room = node.log.room_id
    assert room is not None
    log = OrderedLog(room_id=room)
    for message in sorted([*node.log.messages(), *node.log.tombstones()], key=lambda m: m.key):
        log.receive(message, trusted=True)
    return Node(node.identity, node.name, log)


def refusals(mesh: Mesh) -> list[str]:
    """Why the links of ``mesh`` were closed, in the closing side's words (its note,
    without the "<peer>: " in front)."""
    return [close.note.partition(": ")[2] for close in mesh.closed if close.note is not None]


def test_a_restarted_node_refuses_an_equivocator_and_never_admits_it() -> None:
    mesh = three_members()
    alice = mesh.nodes[0]
    bob_id = PEOPLE[1].sender_id
    genuine = bob_equivocates(mesh)
    mesh.run(3.0)
    reason = f"signed two versions of its entry {genuine.seq}"
    assert alice.offenders == {bob_id: reason} and bob_id not in alice.log.members
    again = restarted(alice)
    assert again.offenders == {bob_id: reason}
    assert [(e.kept.id, e.rejected.id) for e in again.log.evidence] == [(genuine.id, genuine.id)]
    assert not again._may_admit(bob_id)
    after = Mesh([again, newcomer(PEOPLE[1], "bob")])
    after.connect(1, 0)
    after.run(1.0)
    assert f"refused: {reason}" in refusals(after)
    assert bob_id not in again.log.members
    # The same restart without the proofs (as before they were stored) lets bob back in.
    before = Mesh([forgetful(alice), newcomer(PEOPLE[1], "bob")])
    before.connect(1, 0)
    assert not any(r.startswith("refused") for r in refusals(before))
    assert before.nodes[0]._may_admit(bob_id)


def test_a_node_that_relied_on_a_broken_promise_holds_the_line_without_a_place_after_a_restart() -> None:
    mesh = three_members()
    alice, _, carol = mesh.nodes
    _, low = bob_breaks_a_promise(mesh)
    mesh.run(4.0)
    # (Carol showed it until the removal voided it there too: its answers named it as
    # alice holds it, without a place, and as carol does.)
    assert not alice.log.is_visible(low) and not carol.log.is_visible(low)
    assert alice.log.placeless == {low.id} and low in carol.log.tombstones()
    for node in (alice, carol):
        again = restarted(node)
        assert [m.key for m in again.log] == [m.key for m in node.log], f"{node.name} moved on restart"
        assert again.log.placeless == node.log.placeless


def test_a_restarted_node_takes_back_an_equivocators_entries_on_the_version_it_did_not_keep() -> None:
    """Alice kept bob's genuine entry k; bob went on from his other version (k+1 names
    it), and carol's lines depend on that. Restarted, alice holds it all again: the
    other version comes back before the entries, so k+1 goes on from it as it did
    before the restart, and nobody is blocked."""
    mesh = three_members()
    alice = mesh.nodes[0]
    genuine, _ = bob_forks_while_carol_is_away(mesh, more=True)
    mesh.connect(2, 0)
    mesh.run(3.0)
    chained = MessageId(PEOPLE[1].sender_id, genuine.seq + 1)
    assert alice.log.get(chained) is not None and not alice.log.blocked_senders()
    again = restarted(alice)
    assert not again.log.blocked_senders()
    assert [m.key for m in again.log] == [m.key for m in alice.log]
    assert again.log.get(chained) == alice.log.get(chained)


def restored_through_a_store(tmp_path: Path, room: Room, events: Iterable[object]) -> OrderedLog:
    """A replica of ``room`` that gave ``events``, as a peer stores it (the entries
    delivered, every rejected version, the proofs) and restore_log gives it back."""
    events = list(events)
    proofs = [e for e in events if isinstance(e, Equivocation)]
    with Store(tmp_path) as store:
        store.save_messages(
            room.room_id,
            [*room.entries, *(e.message for e in events if isinstance(e, Delivered | Entombed))],
            proofs=[signed_proof(proof, room.room_id) for proof in proofs],
            versions=[proof.rejected for proof in proofs],
        )
        return restore_log(store, room.room_id)


def test_versions_given_up_in_a_swap_survive_a_restart_through_the_store(tmp_path: Path) -> None:
    """B signs five versions of its entry 2. X holds b2 behind a gap; b2' comes (the
    evidence); a1, a reply to b2', and b1 come: b2 waits for a1 for good, and gives way
    to b2'. Three more versions come (up to the cap of other versions), then B's entry 3
    going on from the last of them, and A's honest reply to it. What X stores (as a peer
    does: every rejected version, the first proof per offender) gives it all back."""
    trio_room = Room([A, B, C3])
    b1 = trio_room.make(B, 1, 1, text="b1")
    b2_other = trio_room.make(B, 2, 2, text="b2'")
    a1 = trio_room.make(A, 1, 3, {B.sender_id: 2}, text="a1 replies to b2'")
    b2 = trio_room.make(B, 2, 4, {A.sender_id: 1}, text="b2 depends on a1", previous=b1.entry_hash())
    more = [trio_room.make(B, 2, 2, text=f"b2 v{i}", previous=b1.entry_hash()) for i in (3, 4, 5)]
    b3 = trio_room.make(B, 3, 3, text="b3", previous=more[-1].entry_hash())
    c1 = trio_room.make(C3, 1, 4, {B.sender_id: 3}, text="c1 replies to b3")
    x = trio_room.log()
    events = [event for m in [b2, b2_other, a1, b1, *more, b3, c1] for event in x.receive(m).events]
    assert x.is_visible(c1) and x.is_visible(b2_other)
    again = restored_through_a_store(tmp_path, trio_room, events)
    assert [m.key for m in again] == [m.key for m in x] and again.is_visible(c1)
    assert not again.blocked_senders()
    assert sorted(v.payload for v in again.other_versions) == sorted(v.payload for v in x.other_versions)
    assert b2_other.payload not in {v.payload for v in again.other_versions}  # (the one kept)
    assert [(p.kept.text, p.rejected.text) for p in again.evidence] == [("b2'", "b2 depends on a1")]


@pytest.mark.parametrize("evidence_first", [False, True])
def test_the_version_a_removal_named_is_shown_again_after_a_restart(
    tmp_path: Path, evidence_first: bool
) -> None:
    """Z answered no removal and shows the version its answers named in the place of its
    own (see test_log). What a peer stores (its entries, which keep the version it
    delivered first, every rejected version and the proofs) gives the same log back."""
    log_z, _, x, y, events = removal_reaching_a_replica_with_the_other_version(evidence_first)
    proofs = [e for e in events if isinstance(e, Equivocation)]
    assert proofs and all(p.rejected.payload == y.payload for p in proofs)
    again = restored_through_a_store(tmp_path, TRIO, events)
    assert list(again) == list(log_z) and again.is_visible(y) and not again.is_visible(x)
    assert again.stable_count == len(again) and again.wanted_versions == []


@pytest.mark.parametrize("proven_before", [False, True], ids=["", "bob-proven-before"])
def test_a_member_back_from_away_asks_for_the_version_a_removal_kept_and_shows_it(
    proven_before: bool,
) -> None:
    """Dave went away; bob then gave dave one version of a line and the room another,
    and went silent; alice and carol removed him, their answers naming the room's
    version. Nobody else holds dave's, so no proof comes to dave. Back, dave learns
    the decision, asks alice for the version it kept, and shows it where its own was:
    the same log as alice's, all of it stable. It asks also when it holds a proof
    against bob already (``proven_before``: of another lie), though it asks an
    offender's entries of nobody otherwise."""
    dave_identity = Identity(bytes([0x13]) * 32)
    mesh = Mesh([founded_node(), newcomer(PEOPLE[1], "bob"), newcomer(PEOPLE[2], "carol")])
    mesh.nodes.append(newcomer(dave_identity, "dave"))
    mesh.events[3] = []
    for index in (1, 2, 3):
        mesh.connect(index, 0)
    mesh.run(3.0)
    alice, bob, carol, dave = mesh.nodes
    assert all(node.is_member for node in mesh.nodes)
    _, outputs = dave.write(EntryKind.AWAY, "", mesh.now, 0)
    mesh.route(3, outputs)
    mesh.run(1.0)
    for index in (1, 3):
        mesh.disconnect(next(conn for conn, (at, _) in mesh.links.items() if at == index))
    genuine, outputs = bob.send_text("the truth", mesh.now, 0)
    alice.log.receive(genuine)
    carol.log.receive(genuine)
    dave.log.receive(twin_of(genuine, bob.log.room_id or b""))
    mesh.route(0, alice.propose_removal([PEOPLE[1].sender_id], mesh.now))
    mesh.run(3.0)
    assert PEOPLE[1].sender_id not in alice.log.members and alice.log.is_stable(genuine)
    assert not alice.offenders, "alice saw only one version"
    if proven_before:
        dave.offenders[PEOPLE[1].sender_id] = "broke a clock promise"
    sent = frames_sent_by(mesh, 3)
    mesh.connect(3, 0)
    mesh.run(3.0)
    asked = [r for frame in sent if isinstance(frame, Want) for r in frame.ranges]
    assert (PEOPLE[1].sender_id, genuine.seq, genuine.seq) in [(r.sender_id, r.first, r.last) for r in asked]
    assert dave.log.get(genuine.id) == genuine and dave.log.is_visible(genuine)
    assert [m.key for m in dave.log] == [m.key for m in alice.log]
    assert dave.log.stable_count == len(dave.log) and dave.log.wanted_versions == []
    assert PEOPLE[1].sender_id in dave.offenders


def test_the_store_keeps_the_versions_an_equivocators_branch_goes_on_from(tmp_path: Path) -> None:
    """What a peer stores of the fork (its entries, the proofs, the other versions it
    holds) gives back, through restore_log, alice's log as it was: bob's entry k+1 on
    the version alice did not keep is taken again, and nobody is blocked."""
    mesh = three_members()
    alice = mesh.nodes[0]
    genuine, _ = bob_forks_while_carol_is_away(mesh, more=True)
    mesh.connect(2, 0)
    mesh.run(3.0)
    room = alice.log.room_id
    assert room is not None and alice.log.other_versions
    with Store(tmp_path) as store:
        store.save_messages(
            room,
            [*alice.log.messages(), *alice.log.tombstones()],
            proofs=[signed_proof(p, room) for p in [*alice.log.evidence, *alice.log.lies]],
            placeless=alice.log.placeless,
            versions=alice.log.other_versions,
        )
    with Store(tmp_path, read_only=True) as store:
        again = restore_log(store, room)
    assert not again.blocked_senders()
    assert [m.key for m in again] == [m.key for m in alice.log]
    chained = MessageId(PEOPLE[1].sender_id, genuine.seq + 1)
    assert again.get(chained) == alice.log.get(chained) is not None


def test_a_restarted_node_passes_the_equivocation_on_to_a_newcomer() -> None:
    mesh = three_members()
    alice, _, carol = mesh.nodes
    genuine = bob_equivocates(mesh)
    mesh.run(3.0)
    dave = newcomer(Identity(b"\x77" * 32), "dave")
    after = Mesh([restarted(alice), restarted(carol), dave])
    after.connect(1, 0)
    after.connect(2, 0)
    after.run(3.0)
    assert dave.is_member, "dave was not admitted"
    assert [(e.kept.id, e.rejected.id) for e in dave.log.evidence] == [(genuine.id, genuine.id)]
    assert dave.offenders == {PEOPLE[1].sender_id: f"signed two versions of its entry {genuine.seq}"}
    # Carol had it already: offered again, it is no news (kept once, nothing closed for it).
    assert len(after.nodes[1].log.evidence) == 1
    assert not any("signed two versions" in r for r in refusals(after))


def test_a_restarted_node_still_relays_a_broken_clock_promise() -> None:
    mesh = three_members()
    alice, bob, carol = mesh.nodes
    bob_id = PEOPLE[1].sender_id
    seq = bob.log.delivered_seq(bob_id)
    promise, low = bob_breaks_a_promise(mesh)
    mesh.run(4.0)
    reason = alice.offenders[bob_id]
    assert reason.startswith(f"announced clock {promise.clock_lamport}")
    again = restarted(alice)
    assert again.offenders == {bob_id: reason}
    assert [(lie.announcement.signature, lie.message) for lie in again.log.lies] == [(promise.signature, low)]
    # Our heads carry the promise it broke, as before the restart.
    (head,) = [h for h in again.log.heads() if h.sender_id == bob_id]
    relayed = (head.clock_seq, head.clock_lamport, head.signature)
    assert relayed == (seq, promise.clock_lamport, promise.signature)
    # So a newcomer that never saw the promise finds the lie by itself, and bob is refused.
    dave = newcomer(Identity(b"\x77" * 32), "dave")
    after = Mesh([again, restarted(carol), dave, newcomer(PEOPLE[1], "bob")])
    after.connect(1, 0)
    after.connect(2, 0)
    after.run(3.0)
    assert dave.is_member, "dave was not admitted"
    assert [(lie.announcement.signature, lie.message) for lie in dave.log.lies] == [(promise.signature, low)]
    assert bob_id in dave.offenders
    after.connect(3, 0)
    assert f"refused: {reason}" in refusals(after)


def frames_sent_by(mesh: Mesh, index: int) -> list[Frame]:
    """From now on, every frame node ``index`` of ``mesh`` sends, as the node wrote it
    (decoded, before the link seals it), in order."""
    sent: list[Frame] = []
    route = mesh.route

    def spy(at: int, outputs: Iterable[Output]) -> None:
        outputs = list(outputs)
        if at == index:
            sent.extend(
                decode_frame(inflate_frame(o.data)) for o in outputs if isinstance(o, Send) and not o.clear
            )
        route(at, outputs)

    mesh.route = spy  # type: ignore[method-assign]
    return sent


@pytest.mark.parametrize("lie", ["two versions", "a broken promise"])
def test_a_proof_reaches_a_returning_member_after_the_history_it_lacks(lie: str) -> None:
    """Carol comes back holding the room as it was before bob lied. Alice's proof is two
    versions of a line of bob's, or the line that broke his clock promise; sent first,
    before the lines carol lacks, it could be the first version of that line to reach
    carol, and she might deliver it in the place of the version alice shows (the one
    the room decided on): so the proof follows the history, with the heads that end
    the sync."""
    mesh = three_members()
    alice, _, carol = mesh.nodes
    carol_before = restarted(carol)
    bob_equivocates(mesh) if lie == "two versions" else bob_breaks_a_promise(mesh)
    mesh.say(0, "alice goes on")
    mesh.run(4.0)
    assert alice.offenders, "alice holds no proof"
    proof = [*alice.log.evidence, *alice.log.lies][0]
    proven = {
        m.payload
        for m in ((proof.kept, proof.rejected) if isinstance(proof, Equivocation) else (proof.message,))
    }
    after = Mesh([restarted(alice), carol_before])
    sent = frames_sent_by(after, 0)
    after.connect(1, 0)
    after.run(2.0)
    history = [i for i, frame in enumerate(sent) if isinstance(frame, Messages)]
    proofs = [
        i
        for i, frame in enumerate(sent)
        if isinstance(frame, Push) and {m.payload for m in frame.messages} & proven
    ]
    assert history and proofs, sent
    # (Later MESSAGES frames answer carol's requests once the sync is over.)
    assert min(proofs) > min(history), "the proof went out before the history carol lacked"
    assert isinstance(sent[min(proofs) + 1], Heads), "the heads that end the sync did not follow"
    assert after.nodes[1].offenders.keys() == alice.offenders.keys()
    assert [m.key for m in after.nodes[1].log] == [m.key for m in after.nodes[0].log]


def test_a_neighbour_whose_heads_show_the_proven_entry_gets_the_proof_without_a_sync() -> None:
    """With no transfer of ours to it under way (it did not ask), a trusted neighbour
    gets our proof as soon as its heads say it holds a version of the entry: no
    history can come before the proof there. Heads that say it lacks the entry do not
    bring the proof."""
    mesh = three_members()
    alice, _, carol = mesh.nodes
    bob_id = PEOPLE[1].sender_id
    genuine = bob_equivocates(mesh)
    mesh.run(3.0)
    (conn,) = [c for c, (index, other) in mesh.links.items() if index == 0 and mesh.links[other][0] == 2]
    sent = frames_sent_by(mesh, 0)
    neighbour = alice._neighbours[conn]
    for held in (genuine.seq - 1, genuine.seq):
        neighbour.evidence_sent.clear()  # (as if the proof had not gone on this link yet)
        neighbour.held[bob_id] = 0
        heads = tuple(replace(h, held_seq=held) if h.sender_id == bob_id else h for h in carol.log.heads())
        sent.clear()
        mesh.inject(conn, encode_frame(Heads(heads, False)))
        pushed = [m for frame in sent if isinstance(frame, Push) for m in frame.messages]
        if held < genuine.seq:
            assert not any(m.id == genuine.id for m in pushed), "the proof went before the entry"
        else:
            assert sum(m.id == genuine.id for m in pushed) == 2, "both versions, as the proof"


# End to end: a real peer restarted from its data directory --------------------------------------


async def test_an_equivocator_is_still_refused_after_the_victim_restarts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """As in test_attacks: mallory equivocates to the victim (between alice and bob), and
    is expelled. The victim stops, starts again from its data directory, and still
    refuses mallory's handshake, saying why; ``p2pchat log`` shows the proof."""
    data = tmp_path / "victim"
    mallory = Mallory()
    first: list[list[bytes]] = []
    second: list[bytes] = []
    equivocate = equivocation_attack(mallory, first, second)
    with trio.fail_after(TIMEOUT * 2):
        async with line(PeerConfig(node=VICTIM.node), data_dir=data) as (victim, alice, bob):
            code, reason = await attack_code(url(victim), equivocate)
            assert code == POLICY_VIOLATION, (code, reason)
            assert reason == "expelled: your key signed two versions of its entry 2", reason
            await holding([victim, alice, bob], [Message.from_wire(*m) for m in first])
        async with open_peer("victim", data_dir=data, config=VICTIM) as victim:
            assert victim.node.offenders == {mallory.id: "signed two versions of its entry 2"}
            pairs = [(e.kept.payload, e.rejected.payload) for e in victim.log.evidence]
            assert pairs == [(first[1][0], second[0])]
            code, reason = await attack_code(url(victim), lambda wire: wire.hello_and_auth(mallory))
            assert code == POLICY_VIOLATION, (code, reason)
            assert reason == "refused: your key signed two versions of its entry 2", reason
    capsys.readouterr()
    assert main(["log", "--data", str(data), "--json"]) == 0
    shown = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert shown[-1] == {
        "event": "equivocation",
        "sender": mallory.id.hex(),
        "name": "mallory",
        "seq": 2,
        "kept": "first 2",
        "rejected": "second 2",
    }
    # Its lines are flagged: other peers may show them otherwise. Nobody else's are.
    flags = {(o["name"], o["seq"]): o.get("disputed") for o in shown if o["event"] == "message"}
    assert {key: flag for key, flag in flags.items() if key[0] == "mallory"} == {
        ("mallory", 1): True,
        ("mallory", 2): True,
    }
    assert not any(flag for key, flag in flags.items() if key[0] != "mallory"), flags
    assert main(["log", "--data", str(data)]) == 0
    printed = capsys.readouterr().out.splitlines()
    who = f"mallory ({mallory.id.hex()[:8]})"
    assert printed[-1] == f"    ! {who} signed two versions of its entry 2: proof kept, expelled"
    (line_1,) = [line for line in printed if "mallory: first 1" in line]
    (line_2,) = [line for line in printed if "mallory: first 2" in line]
    assert line_1.endswith(" ≠") and line_2.endswith(" ≠"), (line_1, line_2)
    assert not [line for line in printed if line.endswith(" ≠") and "mallory:" not in line]


def stored_proofs(data: Path) -> int:
    """How many proofs the store in ``data`` holds (read while its peer runs)."""
    db = sqlite3.connect(f"file:{data / DATABASE_NAME}?mode=ro", uri=True)
    try:
        return int(db.execute("SELECT count(*) FROM evidence").fetchone()[0])
    finally:
        db.close()


async def test_the_proof_outlives_a_sigkill(tmp_path: Path) -> None:
    """The victim is a real ``p2pchat chat`` process, alone in its room. Once the proof
    is on disk it is killed (SIGKILL, nothing saved on the way out) and started again on
    its data directory: it still refuses mallory, saying why."""
    data = tmp_path / "victim"
    mallory = Mallory()
    first: list[list[bytes]] = []
    second: list[bytes] = []
    victim = PeerProcess("victim", data, "127.0.0.1:0", (), None, 0)
    again = PeerProcess("victim", data, "127.0.0.1:0", (), None, 1)
    with trio.fail_after(TIMEOUT * 2):
        async with trio.open_nursery() as nursery:
            try:
                await victim.start(nursery)
                code, reason = await attack_code(victim.url, equivocation_attack(mallory, first, second))
                assert code == POLICY_VIOLATION, (code, reason, victim.stderr_tail())
                assert reason == "expelled: your key signed two versions of its entry 2", reason
                while stored_proofs(data) == 0:  # (saved with the next batch, within moments)
                    await trio.sleep(0.02)
                await victim.kill()
                await again.start(nursery)
                code, reason = await attack_code(again.url, lambda wire: wire.hello_and_auth(mallory))
                assert code == POLICY_VIOLATION, (code, reason, again.stderr_tail())
                assert reason == "refused: your key signed two versions of its entry 2", reason
                # Its JSON output shows the proof it kept, after the entries it replays.
                replayed = [e for e in again.events if e.get("replayed") and e["event"] == "equivocation"]
                assert [(e["sender"], e["kept"], e["rejected"]) for e in replayed] == [
                    (mallory.id.hex(), "first 2", "second 2")
                ]
                assert await again.terminate() == 0, again.stderr_tail()
            finally:
                await stop_all([victim, again])
                nursery.cancel_scope.cancel()
    result = await trio.run_process(
        [sys.executable, "-m", "p2pchat.cli", "log", "--data", str(data), "--json"],
        capture_stdout=True,
        cwd=ROOT,
    )
    shown = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert [(e["event"], e["sender"], e["kept"], e["rejected"]) for e in shown if "kept" in e] == [
        ("equivocation", mallory.id.hex(), "first 2", "second 2")
    ]
