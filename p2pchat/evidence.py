"""Proofs that a member broke its word, in a form that outlives the process (issue #9).

Part of the pure core. A proof is two things its offender signed that no honest
member signs together:

* an :class:`~p2pchat.log.Equivocation`: two versions of one of its entries (same
  seq, different bytes);
* a :class:`~p2pchat.log.ClockLie`: a clock announcement ("after my entry s my clock
  stood at L") and a later entry of its own stamped at or below L.

A peer that holds one expels the offender (``Node._expel``). For that to survive a
restart the store keeps each proof as a :class:`SignedProof`: exactly the bytes the
offender signed, with its signatures, nothing of our own. Coming back from disk, a
proof is believed only once it proves its claim again (:func:`proof_from`): both
signatures verify, for this room, and the two signed statements contradict each
other. A data directory edited by hand can therefore not make a peer expel an honest
member; the worst it can do is lose a proof.

One limit, from the announcement format: a clock announcement names no room, while
the entry does. The proof checks the entry against our room; the announcement is
the offender's word wherever it gave it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TypeVar

from .codec import CodecError
from .log import ClockLie, Equivocation
from .message import NO_ROOM, Message, announcement_payload, parse_announcement_payload
from .wire import Head

__all__ = [
    "InvalidProof",
    "Proof",
    "ProofKind",
    "SignedProof",
    "first_per_offender",
    "offence",
    "offender_of",
    "offenders",
    "proof_from",
    "proven_entry",
    "signed_proof",
]

Proof = Equivocation | ClockLie
P = TypeVar("P", bound=Proof)


class ProofKind(enum.Enum):
    """What a proof proves (also its name in the store and in ``--json`` output)."""

    EQUIVOCATION = "equivocation"
    CLOCK_LIE = "clock_lie"


class InvalidProof(ValueError):
    """A stored proof that proves nothing (tampered with, or not this room's)."""


@dataclass(frozen=True, slots=True)
class SignedProof:
    """A proof as the offender signed it: two signed byte strings.

    For an equivocation, ``first`` is the version of the entry kept in the log and
    ``second`` the other one (entry payloads). For a clock lie, ``first`` is the
    announcement (the bytes :func:`~p2pchat.message.announcement_payload` makes) and
    ``second`` the entry stamped at or below the clock it announced.
    """

    offender: bytes
    kind: ProofKind
    first: bytes
    first_signature: bytes
    second: bytes
    second_signature: bytes


def offender_of(proof: Proof) -> bytes:
    """Who signed both halves of ``proof``."""
    return proven_entry(proof).sender_id


def proven_entry(proof: Proof) -> Message:
    """The entry ``proof`` is about: the version kept of the two its author signed, or
    the entry that broke the author's clock promise."""
    return proof.kept if isinstance(proof, Equivocation) else proof.message


def offence(proof: Proof) -> str:
    """What the offender did, in the words a peer closes its link with (and refuses it
    with, after ``refused: ``)."""
    if isinstance(proof, Equivocation):
        return f"signed two versions of its entry {proof.kept.seq}"
    promise, message = proof.announcement, proof.message
    return (
        f"announced clock {promise.clock_lamport} after its entry {promise.clock_seq}, "
        f"then stamped its entry {message.seq} {message.lamport}"
    )


def offenders(proofs: Iterable[Proof]) -> frozenset[bytes]:
    """The members ``proofs`` prove to have lied: every entry of theirs is disputed, as
    other peers may hold it in another version, or without a place, or not at all (the
    equivocation gap, docs/equivocation.md), stable or not.

    Every entry, not only those from the seq a proof names: a link carries one proof
    per offender and kind (the first found, see first_per_offender), so the lowest
    seq at which the offender's versions part is not known here; and one that signed
    two versions of a seq from two predecessors forked lower still.
    """
    return frozenset(offender_of(proof) for proof in proofs)


def first_per_offender(proofs: Iterable[P]) -> list[P]:
    """The first of ``proofs`` against each offender, per kind: one is enough to expel
    it, so one is all the store keeps and a link carries."""
    seen: set[tuple[bytes, type]] = set()
    first: list[P] = []
    for proof in proofs:
        key = (offender_of(proof), type(proof))
        if key not in seen:
            seen.add(key)
            first.append(proof)
    return first


def signed_proof(proof: Proof, room_id: bytes) -> SignedProof:
    """``proof``, found in room ``room_id``, as the bytes its offender signed (what the
    store keeps)."""
    if isinstance(proof, Equivocation):
        kept, rejected = proof.kept, proof.rejected
        return SignedProof(
            kept.sender_id,
            ProofKind.EQUIVOCATION,
            kept.payload,
            kept.signature,
            rejected.payload,
            rejected.signature,
        )
    head, message = proof.announcement, proof.message
    signed = announcement_payload(
        room_id,
        head.sender_id,
        head.clock_seq,
        head.clock_lamport,
        head.delivered,
        head.at_ms,
        head.seen,
    )
    return SignedProof(
        message.sender_id, ProofKind.CLOCK_LIE, signed, head.signature, message.payload, message.signature
    )


def proof_from(signed: SignedProof, room_id: bytes) -> Proof:
    """The proof ``signed`` holds, once it proves its claim again in room ``room_id``.

    Raises :class:`InvalidProof` with the reason when it does not: bytes that do not
    decode, a signature that does not verify, halves from different authors, or two
    statements that do not contradict each other.
    """
    try:
        second = Message.from_wire(signed.second, signed.second_signature)
        if signed.kind is ProofKind.EQUIVOCATION:
            proof: Proof = Equivocation(Message.from_wire(signed.first, signed.first_signature), second)
        else:
            announced_in, announcement = _announcement(signed.first, signed.first_signature)
            if announced_in != (room_id or NO_ROOM):
                raise InvalidProof("the announcement is about another room")
            proof = ClockLie(announcement, second)
    except CodecError as exc:
        raise InvalidProof(f"does not decode: {exc}") from exc
    if offender_of(proof) != signed.offender:
        raise InvalidProof("stored against another member than the one who signed it")
    if isinstance(proof, Equivocation):
        problem = _equivocation_problem(proof, room_id)
    else:
        problem = _clock_lie_problem(proof, room_id)
    if problem is not None:
        raise InvalidProof(problem)
    return proof


def _announcement(payload: bytes, signature: bytes) -> tuple[bytes, Head]:
    """A clock announcement rebuilt from the bytes its member signed, with the room it
    names. (The head's ``held_seq`` is not signed: it is what the relay held, and set
    to the announced seq here; heads we send carry our own.)"""
    room_id, sender_id, seq, lamport, delivered, at_ms, seen = parse_announcement_payload(payload)
    return room_id, Head(sender_id, seq, seq, lamport, signature, delivered, at_ms, b"", b"", seen)


def _equivocation_problem(proof: Equivocation, room_id: bytes) -> str | None:
    """Why ``proof`` is no proof of two versions of one entry (None: it is)."""
    kept, rejected = proof.kept, proof.rejected
    if kept.id != rejected.id:
        return "the two entries are not versions of one seq"
    if kept.payload == rejected.payload:
        return "the two versions are the same entry"
    if not (kept.verify(room_id) and rejected.verify(room_id)):
        return "a signature does not verify in this room"
    return None


def _clock_lie_problem(proof: ClockLie, room_id: bytes) -> str | None:
    """Why ``proof`` is no proof of a broken clock promise (None: it is)."""
    promise, message = proof.announcement, proof.message
    if promise.sender_id != message.sender_id:
        return "the announcement and the entry have different authors"
    if message.seq <= promise.clock_seq:
        return "the entry is not later than the announcement"
    if message.lamport > promise.clock_lamport:
        return "the entry is stamped above the announced clock: the promise was kept"
    if not (promise.announcement_verifies(room_id) and message.verify(room_id)):
        return "a signature does not verify in this room"
    return None
