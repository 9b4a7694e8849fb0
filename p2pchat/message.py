"""The chat message: its fields, its place in the order, and its signed encoding.

Part of the pure core.

On the wire a message is two byte strings: the CBOR *payload* and the sender's
Ed25519 signature. The signature covers ``SIGNING_CONTEXT + room_id + payload``:
the room id is not sent with every message (both ends know it), yet a message
signed for one room never verifies in another. The payload is never re-encoded
before verification, so there is no canonicalisation to get wrong.

Payload layout (a CBOR array)::

    [4, sender_id, seq, lamport, sent_at_ms, name, kind, body, deps, previous, seen]

Every entry of a room's log is a message; ``kind`` says which (see
:class:`EntryKind`): a chat text, the room's genesis, or a membership entry
(change, flush, leave, away). ``body`` depends on the kind::

    TEXT, LEAVE, AWAY   text
    GENESIS             [room_name, policy, rules]
    CHANGE              [epoch, round, [[member_id, name]...] admitted, [member_id...] removed, tails]
    FLUSH, COMMIT       [epoch, round, change_sender_id, change_seq, tails]

``rules`` names the membership rules the room is founded with (ROOM_RULES); a room
founded before protocol 11 has a GENESIS of two items, and keeps the rules it had.

``tails`` (``[[member_id, [link...], stable]...]``; not in payload version 3) gives,
for each member the change removes, the links (:func:`entry_hash`) of its last entries
(oldest first, up to MAX_TAIL) as the author delivered them, and how many of the first
of them were stable there (an entry written before protocol 10 has no ``stable``: 0):
every replica decides the removed member's cut from them alike, below the first entry
two answers hold in different versions (see :mod:`p2pchat.membership`). A COMMIT's is
empty.

``deps`` is a map ``{sender_id: seq}`` holding the entries of the sender's vector clock
that *changed since its previous message* (its own entry is implied: ``seq-1``).
It is mandatory: every stamp is checked exactly (DESIGN.md rule 4).
The receiver rebuilds the full vector clock at delivery, because per-sender
FIFO delivery guarantees the previous message is already delivered. A quiet
room therefore pays a few bytes per message, not one entry per member.

``seen`` names the *versions* of the entries ``deps`` names: a digest
(:func:`versions_digest`) of each one's :func:`entry_hash` as the author delivered it
(16 bytes; empty when ``deps`` is). An author that signs two versions of one seq (an
equivocator) splits the room into replicas holding one or the other; a replica counts
another member's cover of an entry (DESIGN.md rule 8) only where the versions it names
are the ones held here (see :mod:`p2pchat.log`), so two replicas never both count it
for their own, different version. One digest, not a link per entry: a delta names
every sender heard from since the author's previous entry (about 20 in a busy room of
25), and 16 bytes each would be most of a small entry; a replica only ever needs to
know whether the versions named are all its own. Payload version 3 (entries written
before this, still read from old data directories) has no ``seen``: its deps name
seqs only.

``previous`` chains each author's entries into a feed (as Secure Scuttlebutt does):
it is the :func:`entry_hash` of the author's entry ``seq-1``, and empty at seq 1.
The hash covers that entry's signature and payload, so one valid signature on the
latest entry of a run authenticates the whole run by hashing (see
:mod:`p2pchat.chain`), and an author that signs two versions of a seq has to sign
two successors naming different predecessors.

Why 16 bytes (BLAKE2b-128) are enough: what the chain must resist is a *second
preimage*, an entry other than the author's with the same hash, found by someone
who only sees the author's entry. That costs about 2**128 hash evaluations (2**128/T
against T entries at once: still beyond reach for any T a room can hold). Collisions
(2**64) only help someone who chooses both colliding entries *before* the hash input
is fixed; the hash input starts with the entry's signature, which only the author
can produce and which depends on the payload, so only the author could use one, and
an author can already sign two versions of a seq: a collision gains it nothing that
the equivocation check (which compares the bytes, not the hashes) does not see.
The 16 bytes saved against BLAKE2b-256 are ~9% of a small message on the wire.
"""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict
from collections.abc import ItemsView, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple, TypeVar

from . import codec
from .codec import CodecError
from .identity import SENDER_ID_SIZE, SIGNATURE_SIZE, Identity, short_id, verify_signature

T = TypeVar("T")

__all__ = [
    "LINK_SIZE",
    "MAX_CHANGE_MEMBERS",
    "MAX_LAMPORT",
    "MAX_NAME_BYTES",
    "MAX_TAIL",
    "MAX_TEXT_BYTES",
    "ROOM_ID_SIZE",
    "ROOM_RULES",
    "Change",
    "EntryKind",
    "Flush",
    "Message",
    "MessageId",
    "MessageKey",
    "RoomPolicy",
    "Tail",
    "Tails",
]

PAYLOAD_VERSION = 4
LEGACY_PAYLOAD_VERSION = 3
"""Entries without ``seen``: read (an old data directory's), never written."""
MAX_LAMPORT = 2**63 - 1
MAX_SEQ = 2**63 - 1
MAX_SENT_AT_MS = 2**53  # far beyond any real date; keeps JSON consumers exact
MAX_TEXT_BYTES = 16 * 1024
MAX_NAME_BYTES = 64
MAX_DEPS = 1024
MAX_CHANGE_MEMBERS = 256
"""Members one CHANGE admits and removes, together, at most."""
MAX_TAIL = 256
"""Links of a removed member's last entries an answer to the change names, at most (16
before protocol 10)."""
MAX_EPOCH = 2**63 - 1
ROOM_ID_SIZE = 32
LINK_SIZE = 16
"""Bytes of an entry hash, the link from an entry to its author's previous one."""
_LINK_PERSON = b"p2pchat-link-v1"
NO_PREVIOUS = b""
"""What a first entry (seq 1) names as its predecessor: nothing."""
NO_LINK = bytes(LINK_SIZE)
"""A link to no entry: a version nobody holds (so nobody counts a cover naming it)."""
_SEEN_PERSON = b"p2pchat-seen-v1"
SIGNING_CONTEXT = b"p2pchat-entry-v2"
GENESIS_ROOM = b""
"""The room id a genesis entry is signed under: its own hash *is* the room id."""


class EntryKind(enum.IntEnum):
    """What an entry of the log is. Only TEXT entries are chat lines."""

    TEXT = 0
    GENESIS = 1
    """The founder's first entry: room name and policy. Its hash is the room id."""
    CHANGE = 2
    """A member proposes to close the epoch: admit some ids, remove some members
    (DESIGN.md rule 10). It counts as its author's FLUSH."""
    LEAVE = 3
    """The author leaves the room: its last entry until it is admitted again."""
    AWAY = 4
    """The author quit cleanly and stops holding stability back until it is back."""
    FLUSH = 5
    """A member's answer to a CHANGE (what it had delivered is its vector clock)."""
    COMMIT = 6
    """A member saw every answer the CHANGE it answered needs: once a strict majority
    committed, the change is decided (the second phase of rule 10)."""


ROOM_RULES = 2
"""The membership rules a room is founded with (the third item of its GENESIS body, which
every replica reads alike): 2, a member may commit a change it answered before its last
answer (p2pchat.membership, "Moving on"). 1, a GENESIS of two items (a room founded
before protocol 11): a member commits only the change it answered last. A room keeps
the rules it was founded with, so its history is judged the same way after an upgrade."""


class RoomPolicy(enum.IntEnum):
    OPEN = 0
    """Any member admits whoever connects to it."""
    INVITE = 1
    """Members admit only who redeems an invite they issued (and re-admit members back
    from AWAY); see p2pchat.invites."""


class MessageKey(NamedTuple):
    """The total order of the log: sort by Lamport stamp, then by sender id.

    The Lamport stamp alone already extends causality (if B's author had seen
    A then ``A.lamport < B.lamport``), so any tie is between messages written
    without knowledge of each other. Such a tie must still be broken the same
    way on every peer; the sender id is unique, fixed and known to all, so it
    is the tie-break. A sender never reuses a stamp (its own stamps strictly
    increase with seq), so no two messages share a key.
    """

    lamport: int
    sender_id: bytes


class MessageId(NamedTuple):
    """A message's identity: its sender and its per-sender sequence number."""

    sender_id: bytes
    seq: int


class Tail(NamedTuple):
    """What an answer to a removal names of one removed member's entries."""

    member: bytes
    links: tuple[bytes, ...]
    """The links of its last entries, oldest first, as the answer's author delivered them."""
    stable: int = 0
    """How many of the first ``links`` name entries that were stable at the answer's
    author (0 in an entry written before protocol 10, which did not say)."""


Tails = tuple[Tail, ...]
"""See the module docstring."""


@dataclass(frozen=True, slots=True)
class Change:
    """The body of a CHANGE entry."""

    epoch: int
    """The epoch it would close (every replica checks it against the entry's causal past)."""
    round: int
    """Rival changes of one epoch compete in rounds; a dead round moves to the next."""
    admitted: tuple[tuple[bytes, str], ...] = ()
    """Ids to admit, each with the name it gave."""
    removed: tuple[bytes, ...] = ()
    tails: Tails = ()
    """Per member removed, the links of its last entries as the author delivered them,
    oldest first (see the module docstring)."""


@dataclass(frozen=True, slots=True)
class Flush:
    """The body of a FLUSH or COMMIT entry: which change it answers or commits."""

    epoch: int
    round: int
    change: MessageId
    tails: Tails = ()
    """FLUSH: per member the change removes, the links of its last entries as the author
    delivered them, oldest first (see the module docstring); COMMIT: none."""


@dataclass(frozen=True, slots=True)
class Message:
    """A signed entry of a room's log (a chat message or a membership entry)."""

    sender_id: bytes
    seq: int
    lamport: int
    sent_at_ms: int
    """The sender's wall clock at send time, ms since the Unix epoch. Display only."""
    name: str
    text: str
    """TEXT: the chat line; GENESIS: the room's name; LEAVE and AWAY: the reason
    given; CHANGE and FLUSH: empty."""
    deps: Mapping[bytes, int]
    """Vector clock entries changed since the sender's previous message."""
    payload: bytes = field(repr=False)
    signature: bytes = field(repr=False)
    kind: EntryKind = EntryKind.TEXT
    change: Change | None = None
    """CHANGE: what it proposes."""
    flush: Flush | None = None
    """FLUSH: the change it answers; COMMIT: the change it commits."""
    policy: RoomPolicy = RoomPolicy.OPEN
    """GENESIS: the room's policy."""
    previous: bytes = NO_PREVIOUS
    """The entry_hash of the author's entry ``seq-1``; empty at seq 1."""
    legacy: bool = False
    """Payload version 3: written before entries named versions (it has no ``seen``)."""
    rules: int = ROOM_RULES
    """GENESIS: the membership rules the room was founded with (see ROOM_RULES)."""

    @property
    def seen(self) -> bytes | None:
        """The :func:`versions_digest` of the entries ``deps`` names, in the versions the
        author delivered (empty when ``deps`` is); None in a legacy entry, which names no
        versions. Read from the payload when asked (its last field, of 16 bytes when
        ``deps`` is not empty: checked when it was decoded), not kept: a peer may hold a
        million entries, and it is asked once, at delivery."""
        if self.legacy:
            return None
        return self.payload[-LINK_SIZE:] if self.deps else b""

    @property
    def key(self) -> MessageKey:
        return MessageKey(self.lamport, self.sender_id)

    @property
    def id(self) -> MessageId:
        return MessageId(self.sender_id, self.seq)

    @property
    def is_text(self) -> bool:
        return self.kind is EntryKind.TEXT

    def signed_bytes(self, room_id: bytes) -> bytes:
        """What the signature covers in room ``room_id`` (a genesis: in no room)."""
        return signed_bytes(GENESIS_ROOM if self.kind is EntryKind.GENESIS else room_id, self.payload)

    def verify(self, room_id: bytes) -> bool:
        """Whether the signature is the sender's over the payload bound to ``room_id``."""
        return verify_signature(self.sender_id, self.signed_bytes(room_id), self.signature)

    def entry_hash(self) -> bytes:
        """This entry's link: what the author's next entry names as ``previous``."""
        return entry_hash(self.payload, self.signature)

    def room_id(self) -> bytes:
        """For a genesis entry: the id of the room it founds (the hash of its payload)."""
        return room_id_of(self.payload)

    def __repr__(self) -> str:
        what = "" if self.kind is EntryKind.TEXT else f"{self.kind.name} "
        return (
            f"Message({short_id(self.sender_id)}#{self.seq} L{self.lamport} "
            f"{what}{self.name!r}: {self.text[:30]!r})"
        )

    # Creating ---------------------------------------------------------------
    @classmethod
    def create(
        cls,
        identity: Identity,
        *,
        seq: int,
        lamport: int,
        sent_at_ms: int,
        name: str,
        text: str,
        deps: Mapping[bytes, int],
        room_id: bytes,
        kind: EntryKind = EntryKind.TEXT,
        change: Change | None = None,
        flush: Flush | None = None,
        policy: RoomPolicy = RoomPolicy.OPEN,
        previous: bytes = NO_PREVIOUS,
        links: Mapping[bytes, bytes] | None = None,
        rules: int = ROOM_RULES,
    ) -> Message:
        """Encode and sign a new entry. Raises ValueError on out-of-range fields.

        ``previous`` is the :meth:`entry_hash` of the author's entry ``seq-1`` (none at seq 1).
        ``rules`` (GENESIS): the membership rules the room is founded with (ROOM_RULES).
        ``links`` gives, per sender in ``deps``, the entry_hash of its entry named there,
        for ``seen`` (see the module docstring); one not given counts as LINK_SIZE zero
        bytes, a version nobody holds (only tests write that: a cover nobody counts).
        """
        if not 1 <= seq <= MAX_SEQ:
            raise ValueError("seq must be >= 1")
        if len(previous) != (0 if seq == 1 else LINK_SIZE):
            raise ValueError(f"previous must be empty at seq 1 and {LINK_SIZE} bytes after")
        if not 1 <= lamport <= MAX_LAMPORT:
            raise ValueError("lamport must be in [1, 2**63-1]")
        if len(text.encode("utf-8")) > MAX_TEXT_BYTES:
            raise ValueError(f"text is over {MAX_TEXT_BYTES} bytes")
        if len(name.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"name is over {MAX_NAME_BYTES} bytes")
        if not 0 <= sent_at_ms <= MAX_SENT_AT_MS:
            raise ValueError("sent_at_ms out of range")
        if (kind is EntryKind.CHANGE) != (change is not None) or (kind in _NAMING_A_CHANGE) != (
            flush is not None
        ):
            raise ValueError("a CHANGE carries a change, a FLUSH or COMMIT a flush, other entries neither")
        if (kind is EntryKind.CHANGE or kind in _NAMING_A_CHANGE) and text:
            raise ValueError("CHANGE, FLUSH and COMMIT entries carry no text")
        if change is not None:
            _check_change(change)
        if kind is EntryKind.GENESIS and len(text.encode("utf-8")) > MAX_NAME_BYTES:
            raise ValueError(f"a room's name is over {MAX_NAME_BYTES} bytes")
        if not 1 <= rules <= ROOM_RULES:
            raise ValueError(f"a room's rules are 1 to {ROOM_RULES}")
        # Sorted: the canonical encoding sorts the map, and ``seen`` follows its order.
        wire_deps = {s: n for s, n in sorted(deps.items()) if n > 0} or NO_DEPS
        # Not decoded back below, so refuse here what every receiver's from_wire would.
        if len(wire_deps) > MAX_DEPS:
            raise ValueError(f"deps has more than {MAX_DEPS} entries")
        for dep_sender, dep_seq in wire_deps.items():
            if len(dep_sender) != SENDER_ID_SIZE or dep_seq > MAX_SEQ:
                raise ValueError("deps entry out of range")
        given = links or {}
        named = [(sender, seq_named, given.get(sender, NO_LINK)) for sender, seq_named in wire_deps.items()]
        if any(len(link) != LINK_SIZE for _, _, link in named):
            raise ValueError(f"each link is {LINK_SIZE} bytes")
        seen = versions_digest(named) if named else b""
        body = _encode_body(kind, text, change, flush, policy, rules)
        payload = codec.dumps(
            [
                PAYLOAD_VERSION,
                identity.sender_id,
                seq,
                lamport,
                sent_at_ms,
                name,
                int(kind),
                body,
                wire_deps,
                previous,
                seen,
            ]
        )
        room = GENESIS_ROOM if kind is EntryKind.GENESIS else room_id
        # Built directly rather than decoded back: these are the values just encoded.
        return cls(
            identity.sender_id,
            seq,
            lamport,
            sent_at_ms,
            name,
            text,
            Deps(wire_deps) if wire_deps else NO_DEPS,
            payload,
            identity.sign(signed_bytes(room, payload)),
            kind,
            change,
            flush,
            policy if kind is EntryKind.GENESIS else RoomPolicy.OPEN,  # as receivers decode it
            previous,
            rules=rules if kind is EntryKind.GENESIS else ROOM_RULES,
        )

    # Decoding ---------------------------------------------------------------
    @classmethod
    def from_wire(cls, payload: bytes, signature: bytes) -> Message:
        """Strictly decode a payload. Does *not* verify the signature (see verify).

        A message usually arrives several times (once per neighbour that pushes it, and
        in a process running many peers once per peer): the recently decoded ones are
        remembered by signature, and the same payload under the same signature is not
        decoded again. Decoding is a pure function of those bytes, and a Message is
        immutable, so sharing the object changes nothing but the work.
        """
        codec.expect_bytes(signature, "signature", size=SIGNATURE_SIZE)
        known = _decoded.get(signature)
        if known is not None and known.payload == payload:
            return known
        message = cls._decode(payload, signature)
        if len(_decoded) >= _DECODED_LIMIT:
            _decoded.popitem(last=False)  # the oldest (O(1), unlike deleting a dict's first key)
        _decoded[signature] = message
        return message

    @classmethod
    def _decode(cls, payload: bytes, signature: bytes) -> Message:
        fields = codec.expect_array(codec.strict_loads(payload, max_depth=5), "message", max_length=11)
        version = fields[0] if fields else None
        if type(version) is not int or version not in (PAYLOAD_VERSION, LEGACY_PAYLOAD_VERSION):
            raise CodecError(f"message: unsupported payload version {version!r}")
        if len(fields) != (expected := 11 if version == PAYLOAD_VERSION else 10):
            raise CodecError(f"message: payload version {version} has {expected} fields, not {len(fields)}")
        _, sender_id, seq, lamport, sent_at_ms, name, kind, body, deps, previous = fields[:10]
        entry_kind = _parse_kind(kind)
        if entry_kind is EntryKind.TEXT:  # (the common case, without a detour)
            text = codec.expect_str(body, "message text", max_bytes=MAX_TEXT_BYTES)
            change, flush, policy, rules = None, None, RoomPolicy.OPEN, ROOM_RULES
        else:
            text, change, flush, policy, rules = _parse_body(
                entry_kind, body, version == LEGACY_PAYLOAD_VERSION
            )
        number = codec.expect_int(seq, "message seq", lo=1, hi=MAX_SEQ)
        link = codec.expect_bytes(previous, "message previous", size=0 if number == 1 else LINK_SIZE)
        named = _parse_deps(deps)
        if version == PAYLOAD_VERSION:
            codec.expect_bytes(fields[10], "message seen", size=LINK_SIZE if named else 0)
        # Positional: this runs once per message received, a million times in a catch-up.
        return cls(
            _shared(codec.expect_bytes(sender_id, "message sender", size=SENDER_ID_SIZE)),
            number,
            codec.expect_int(lamport, "message lamport", lo=1, hi=MAX_LAMPORT),
            codec.expect_int(sent_at_ms, "message sent_at", hi=MAX_SENT_AT_MS),
            _shared(codec.expect_str(name, "message name", max_bytes=MAX_NAME_BYTES)),
            text,
            named,
            payload,
            signature,
            entry_kind,
            change,
            flush,
            policy,
            link,
            version == LEGACY_PAYLOAD_VERSION,
            rules,
        )


def signed_bytes(room_id: bytes, payload: bytes) -> bytes:
    return SIGNING_CONTEXT + room_id + payload


def entry_hash(payload: bytes, signature: bytes) -> bytes:
    """The link to an entry: BLAKE2b-128 of its signature, then its payload.

    The signature comes first so that nobody but the author can choose a prefix ahead
    of time (see the module docstring for the size). Personalised, so that it is never
    the same function as the room id's hash.
    """
    return hashlib.blake2b(signature + payload, digest_size=LINK_SIZE, person=_LINK_PERSON).digest()


def versions_digest(named: Iterable[tuple[bytes, int, bytes]]) -> bytes:
    """What an entry's ``seen`` says of ``named`` (sender, seq, entry_hash), given in the
    order of its deps (sorted by sender): BLAKE2b-128 over each, personalised. An
    equivocator would need two versions of an entry whose digests agree: 2**64 work for
    a collision, as for the links themselves."""
    parts = [part for sender, seq, link in named for part in (sender, seq.to_bytes(8, "big"), link)]
    return hashlib.blake2b(b"".join(parts), digest_size=LINK_SIZE, person=_SEEN_PERSON).digest()


def room_id_of(genesis_payload: bytes) -> bytes:
    """A room's id: the BLAKE2b-256 hash of its genesis payload."""
    return hashlib.blake2b(genesis_payload, digest_size=ROOM_ID_SIZE).digest()


def _encode_body(
    kind: EntryKind, text: str, change: Change | None, flush: Flush | None, policy: RoomPolicy, rules: int
) -> object:
    if kind is EntryKind.GENESIS:
        return [text, int(policy)] if rules == 1 else [text, int(policy), rules]
    if change is not None:
        admitted = [[member, name] for member, name in change.admitted]
        return [change.epoch, change.round, admitted, list(change.removed), _encode_tails(change.tails)]
    if flush is not None:
        return [
            flush.epoch,
            flush.round,
            flush.change.sender_id,
            flush.change.seq,
            _encode_tails(flush.tails),
        ]
    return text


def _encode_tails(tails: Tails) -> list[object]:
    return [[tail.member, list(tail.links), tail.stable] for tail in tails]


def _check_change(change: Change) -> None:
    """What every receiver's decoder refuses, refused when writing."""
    ids = [member for member, _ in change.admitted] + list(change.removed)
    if not ids or len(ids) > MAX_CHANGE_MEMBERS or len(set(ids)) != len(ids):
        raise ValueError(f"a change names 1 to {MAX_CHANGE_MEMBERS} distinct members")
    if any(len(member) != SENDER_ID_SIZE for member in ids):
        raise ValueError("a change names members by their 32-byte ids")
    if any(len(name.encode("utf-8")) > MAX_NAME_BYTES for _, name in change.admitted):
        raise ValueError(f"a member's name is over {MAX_NAME_BYTES} bytes")
    if not (0 <= change.epoch <= MAX_EPOCH and 0 <= change.round <= MAX_EPOCH):
        raise ValueError("epoch or round out of range")
    _check_tails(change.tails)
    if not {tail.member for tail in change.tails} <= set(change.removed):
        raise ValueError("a change names the tails of the members it removes only")


def _check_tails(tails: Tails) -> None:
    """What every receiver's decoder refuses in tails, refused when writing."""
    members = [tail.member for tail in tails]
    if len(members) > MAX_CHANGE_MEMBERS or len(set(members)) != len(members):
        raise ValueError(f"tails name up to {MAX_CHANGE_MEMBERS} distinct members")
    for member, links, stable in tails:
        if len(member) != SENDER_ID_SIZE or not 1 <= len(links) <= MAX_TAIL:
            raise ValueError(f"a tail names a 32-byte member and 1 to {MAX_TAIL} links")
        if not 0 <= stable <= len(links):
            raise ValueError("a tail says at most all of its links name stable entries")
        if any(len(link) != LINK_SIZE for link in links):
            raise ValueError(f"each link of a tail is {LINK_SIZE} bytes")


_KINDS = tuple(EntryKind)
_NAMING_A_CHANGE = (EntryKind.FLUSH, EntryKind.COMMIT)
"""The kinds whose body names a change (a :class:`Flush`)."""
_POLICIES = tuple(RoomPolicy)


def _parse_kind(value: object) -> EntryKind:
    return _KINDS[codec.expect_int(value, "message kind", hi=len(_KINDS) - 1)]


def _parse_body(
    kind: EntryKind, body: object, legacy: bool
) -> tuple[str, Change | None, Flush | None, RoomPolicy, int]:
    if kind is EntryKind.GENESIS:
        fields = codec.expect_array(body, "genesis body")
        if len(fields) not in (2, 3):
            raise CodecError(f"genesis body: expected 2 or 3 items, got {len(fields)}")
        name = codec.expect_str(fields[0], "room name", max_bytes=MAX_NAME_BYTES)
        number = codec.expect_int(fields[1], "room policy", hi=len(_POLICIES) - 1)
        # (Two items: a room founded before its rules were named, rules 1; named, 2 on.)
        rules = codec.expect_int(fields[2], "room rules", lo=2, hi=ROOM_RULES) if len(fields) == 3 else 1
        return name, None, None, _POLICIES[number], rules
    if kind is EntryKind.CHANGE:
        return "", _parse_change(body, legacy), None, RoomPolicy.OPEN, ROOM_RULES
    if kind in _NAMING_A_CHANGE:
        fields = _body_fields(body, "flush body", legacy)
        epoch, round_, sender, seq = fields[:4]
        flush = Flush(
            codec.expect_int(epoch, "flush epoch", hi=MAX_EPOCH),
            codec.expect_int(round_, "flush round", hi=MAX_EPOCH),
            MessageId(
                _shared(codec.expect_bytes(sender, "flushed change sender", size=SENDER_ID_SIZE)),
                codec.expect_int(seq, "flushed change seq", lo=1, hi=MAX_SEQ),
            ),
            _parse_tails(fields[4]) if len(fields) == 5 else (),
        )
        if kind is EntryKind.COMMIT and flush.tails:
            raise CodecError("commit body: a COMMIT names no tails")
        return "", None, flush, RoomPolicy.OPEN, ROOM_RULES
    text = codec.expect_str(body, "message text", max_bytes=MAX_TEXT_BYTES)
    return text, None, None, RoomPolicy.OPEN, ROOM_RULES


def _body_fields(body: object, what: str, legacy: bool) -> list[object]:
    """A CHANGE, FLUSH or COMMIT body: 4 items and tails, or the 4 items alone in a
    ``legacy`` entry (payload version 3: its entries came before tails)."""
    return codec.expect_array(body, what, length=4 if legacy else 5)


def _parse_tails(value: object) -> Tails:
    tails = []
    for item in codec.expect_array(value, "tails", max_length=MAX_CHANGE_MEMBERS):
        # (Two items in an entry written before protocol 10: nothing said of stability.)
        fields = codec.expect_array(item, "tail", max_length=3)
        if len(fields) not in (2, 3):
            raise CodecError(f"tail: expected 2 or 3 items, got {len(fields)}")
        member, links = fields[:2]
        stable = codec.expect_int(fields[2], "tail stable count", hi=MAX_TAIL) if len(fields) == 3 else 0
        tails.append(
            Tail(
                _shared(codec.expect_bytes(member, "tail member", size=SENDER_ID_SIZE)),
                tuple(
                    codec.expect_bytes(link, "tail link", size=LINK_SIZE)
                    for link in codec.expect_array(links, "tail links", max_length=MAX_TAIL)
                ),
                stable,
            )
        )
    parsed = tuple(tails)
    try:
        _check_tails(parsed)
    except ValueError as error:
        raise CodecError(f"tails: {error}") from None
    return parsed


def _parse_change(body: object, legacy: bool) -> Change:
    fields = _body_fields(body, "change body", legacy)
    epoch, round_, admitted, removed = fields[:4]
    pairs = []
    for item in codec.expect_array(admitted, "admitted members", max_length=MAX_CHANGE_MEMBERS):
        member, name = codec.expect_array(item, "admitted member", length=2)
        pairs.append(
            (
                _shared(codec.expect_bytes(member, "admitted id", size=SENDER_ID_SIZE)),
                codec.expect_str(name, "admitted name", max_bytes=MAX_NAME_BYTES),
            )
        )
    gone = tuple(
        _shared(codec.expect_bytes(member, "removed id", size=SENDER_ID_SIZE))
        for member in codec.expect_array(removed, "removed members", max_length=MAX_CHANGE_MEMBERS)
    )
    change = Change(
        codec.expect_int(epoch, "change epoch", hi=MAX_EPOCH),
        codec.expect_int(round_, "change round", hi=MAX_EPOCH),
        tuple(pairs),
        gone,
        _parse_tails(fields[4]) if len(fields) == 5 else (),
    )
    try:
        _check_change(change)
    except ValueError as error:
        raise CodecError(f"change: {error}") from None
    return change


ANNOUNCEMENT_CONTEXT = b"p2pchat-clock-v4"
LEGACY_ANNOUNCEMENT_CONTEXT = b"p2pchat-clock-v3"
"""Announcements that name no versions: read (an old data directory's), never written."""
NO_ROOM = bytes(ROOM_ID_SIZE)
"""The room an announcement names while its member is in none (no use to anyone)."""


def announcement_payload(
    room_id: bytes,
    sender_id: bytes,
    seq: int,
    lamport: int,
    delivered: Iterable[tuple[bytes, int]],
    at_ms: int = 0,
    seen: bytes | None = b"",
) -> bytes:
    """The bytes a member signs to announce its clock: "in room ``room_id``, after my
    message ``seq``, my Lamport clock stood at ``lamport``" (every later message of mine
    there is stamped above), "and I had delivered what my message ``seq`` had, raised by
    ``delivered``" (the senders whose delivered seq grew since, DESIGN.md rule 8, sorted
    by sender), "in the versions ``seen`` digests" (:func:`versions_digest`, as an
    entry's ``seen``; empty when ``delivered`` is), "said at ``at_ms``". ``seen`` None:
    the legacy layout, which names no versions.

    The room is part of it because one identity writes in many rooms, each with its own
    clock: an announcement carried from one room into another would otherwise look like
    a broken promise there, and get an honest member expelled."""
    room = room_id or NO_ROOM
    if len(room) != ROOM_ID_SIZE:
        raise ValueError(f"room id must be {ROOM_ID_SIZE} bytes")
    context = ANNOUNCEMENT_CONTEXT if seen is not None else LEGACY_ANNOUNCEMENT_CONTEXT
    parts = [context, room, sender_id, seq.to_bytes(8, "big"), lamport.to_bytes(8, "big")]
    parts.append(at_ms.to_bytes(8, "big"))
    for other, other_seq in sorted(delivered):
        parts += [other, other_seq.to_bytes(8, "big")]
    if seen is not None:
        if len(seen) != (LINK_SIZE if len(parts) > 6 else 0):
            raise ValueError(f"an announcement's seen is {LINK_SIZE} bytes, none when it names no entries")
        parts.append(seen)
    return b"".join(parts)


def parse_announcement_payload(
    payload: bytes,
) -> tuple[bytes, bytes, int, int, tuple[tuple[bytes, int], ...], int, bytes | None]:
    """The fields :func:`announcement_payload` signed, read back strictly: ``(room_id,
    sender_id, seq, lamport, delivered, at_ms, seen)`` (seen None: the legacy layout).
    Raises CodecError unless ``payload`` is exactly what announcement_payload makes of
    them (values in the ranges a head may carry, delivered sorted by sender, each
    sender once)."""
    legacy = payload.startswith(LEGACY_ANNOUNCEMENT_CONTEXT)
    context = LEGACY_ANNOUNCEMENT_CONTEXT if legacy else ANNOUNCEMENT_CONTEXT
    fixed = len(context) + ROOM_ID_SIZE + SENDER_ID_SIZE + 3 * 8
    pair = SENDER_ID_SIZE + 8
    end = len(payload) if legacy or len(payload) <= fixed else len(payload) - LINK_SIZE
    if not payload.startswith(context) or end < fixed or (end - fixed) % pair:
        raise CodecError("clock announcement: not the layout of a signed announcement")
    cursor = len(context)
    room_id = payload[cursor : cursor + ROOM_ID_SIZE]
    cursor += ROOM_ID_SIZE
    sender_id = payload[cursor : cursor + SENDER_ID_SIZE]
    cursor += SENDER_ID_SIZE
    seq, lamport, at_ms = (_uint64(payload, cursor + 8 * i) for i in range(3))
    delivered = tuple(
        (payload[start : start + SENDER_ID_SIZE], _uint64(payload, start + SENDER_ID_SIZE))
        for start in range(fixed, end, pair)
    )
    seen = None if legacy else payload[end:]
    if seen is not None and len(seen) != (LINK_SIZE if delivered else 0):
        raise CodecError("clock announcement: a seen digest without delivered entries, or none with them")
    if seq > MAX_SEQ or lamport > MAX_LAMPORT or at_ms > MAX_SENT_AT_MS or len(delivered) > MAX_DEPS:
        raise CodecError("clock announcement: a value out of range")
    if any(not 1 <= other_seq <= MAX_SEQ for _, other_seq in delivered):
        raise CodecError("clock announcement: a delivered seq out of range")
    if any(delivered[i][0] >= delivered[i + 1][0] for i in range(len(delivered) - 1)):
        raise CodecError("clock announcement: delivered senders not sorted, or one named twice")
    return room_id, sender_id, seq, lamport, delivered, at_ms, seen


def _uint64(data: bytes, offset: int) -> int:
    return int.from_bytes(data[offset : offset + 8], "big")


class Deps(Mapping[bytes, int]):
    """A vector-clock delta, stored flat: ``(sender, seq, sender, seq, ...)``.

    A peer may hold a million messages; a flat tuple costs about half of a dict.
    """

    __slots__ = ("_flat",)

    def __init__(self, entries: Mapping[bytes, int]) -> None:
        self._flat: tuple[bytes | int, ...] = tuple(x for pair in entries.items() for x in pair)

    @classmethod
    def from_flat(cls, flat: tuple[bytes | int, ...]) -> Deps:
        """From ``(sender, seq, sender, seq, ...)`` with distinct senders (already checked)."""
        deps = cls.__new__(cls)
        deps._flat = flat
        return deps

    def __getitem__(self, sender: bytes) -> int:
        flat = self._flat
        for i in range(0, len(flat), 2):
            if flat[i] == sender:
                return flat[i + 1]  # type: ignore[return-value]
        raise KeyError(sender)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._flat[::2])  # type: ignore[arg-type]

    def __len__(self) -> int:
        return len(self._flat) // 2

    def items(self) -> ItemsView[bytes, int]:
        return _DepsItems(self)

    def __repr__(self) -> str:
        return f"Deps({dict(self.items())!r})"


class _DepsItems(ItemsView[bytes, int]):
    """Items without a lookup per key."""

    _mapping: Deps

    def __iter__(self) -> Iterator[tuple[bytes, int]]:
        flat = self._mapping._flat
        return zip(flat[::2], flat[1::2], strict=True)  # type: ignore[arg-type]


NO_DEPS: Mapping[bytes, int] = MappingProxyType({})
"""The one empty vector-clock delta every message without changes shares."""

_DECODED_LIMIT = 4096
_decoded: OrderedDict[bytes, Message] = OrderedDict()
"""signature -> the message last decoded with it (see Message.from_wire), oldest first."""

_SHARED_LIMIT = 65_536
_shared_values: dict[object, object] = {}


def _shared(value: T) -> T:
    """One object per distinct sender id or name, whichever message it came in.

    A room has few senders and names but a peer may hold a million messages: sharing
    saves ~60 bytes per message per field. Bounded, so hostile input cannot grow it
    without limit (past the bound values are simply not shared).
    """
    existing = _shared_values.get(value)
    if existing is not None:
        return existing  # type: ignore[return-value]
    if len(_shared_values) < _SHARED_LIMIT:
        _shared_values[value] = value
    return value


def _parse_deps(value: object) -> Mapping[bytes, int]:
    entries = codec.expect_map(value, "message deps", max_length=MAX_DEPS)
    if not entries:
        return NO_DEPS
    # The hot loop of decoding (a delta names every sender heard from since the sender's
    # previous message): the checks of codec.expect_bytes/expect_int inline, which raise
    # their own errors only when one fails.
    flat: list[bytes | int] = []
    append = flat.append
    for sender, seq in entries.items():
        if type(sender) is not bytes or len(sender) != SENDER_ID_SIZE:
            sender = codec.expect_bytes(sender, "deps sender", size=SENDER_ID_SIZE)
        if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            seq = codec.expect_int(seq, "deps seq", lo=1, hi=MAX_SEQ)
        append(_shared(sender))
        append(seq)
    return Deps.from_flat(tuple(flat))
