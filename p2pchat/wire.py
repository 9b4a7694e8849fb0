"""Wire frames: what peers say to each other, as CBOR, with a strict decoder.

Part of the pure core. Each WebSocket binary message carries exactly one frame,
a CBOR array whose first item is the frame type::

    HELLO     [1, version, sender_id, nonce, ephemeral_key]          in clear
    AUTH      [2, signature, name, listen_url|null, room_id|b"", pristine, invite|b""(, true)]   sealed
    MESSAGES  [3, [[payload, signature]...]]       a batch of signed messages
    HEADS     [4, [head...], reply_wanted]         anti-entropy and heartbeat
    WANT      [5, [[sender_id, first, last]...]]   explicit gap repair
    PEERS     [6, [url...]]                        address exchange
    BYE       [7, reason]                          clean goodbye
    PUSH      [8, [[payload, signature]...], [[sender_id, first, last]...], [sender_id...], [head...]]
                                                   gossip: messages pushed eagerly, the ids
                                                   of others announced lazily (IHAVE),
                                                   authors to push to us lazily (PRUNE), and
                                                   fresh clock announcements
    GRAFT     [9, [[sender_id, first, last]...]]   send me these; push me their authors eagerly

    head = [sender_id, held_seq, clock_seq, clock_lamport, signature, [sender, seq, ...], at_ms, link]
    sender = the position (from 0) in the frame's heads of the head of that sender,
             or, only for a sender without a head in the frame, its sender_id

A frame of 256 bytes or more may travel deflated (see :mod:`p2pchat.deflate`):
the receiving link inflates it before it is decoded.

HELLO is the only frame sent in clear: it holds nothing but what the key
exchange needs (see :mod:`p2pchat.protocol` and :mod:`p2pchat.channel`). Every
other frame, AUTH included, travels sealed, so an eavesdropper sees ids and
ephemeral keys but no name, room, address, head or message.

PUSH and GRAFT are the lazy-push gossip of :mod:`p2pchat.node` (Plumtree):
MESSAGES is what a neighbour asked for (WANT, GRAFT, anti-entropy), PUSH is what
it did not ask for, so a duplicate in a PUSH means two tree links carry the same
author's messages to one peer, and one of them is pruned. Announced ids and
prunes ride in the PUSH frames that go anyway (the paper's IHAVE and PRUNE
messages, batched), and a PUSH may carry only them. So do clock announcements that
are news to the sender (never alone: a PUSH with only heads is refused): they reach
the room at the speed of its messages instead of one hop per heartbeat.

A head says: "of this sender I hold seq 1..held_seq without holes, and the last
clock it announced was: after its message clock_seq, its Lamport clock stood at
clock_lamport, and I had delivered what that message had, raised by these seqs"
(the senders whose delivered seq grew since), "and I said so at at_ms" (the member's
wall clock: a member re-announces every heartbeat, so a newer ``at_ms`` shows it is
alive even in a quiet room)", and "my entry held_seq of this sender has a hash that
begins with link" (LINK_SIZE bytes; empty: no claim, as for held_seq 0): a peer that holds another
version of that entry has found an author that signed two (it asks for this one,
which is the proof). The part from clock_seq to at_ms travels from peer to peer so that stability
(DESIGN.md rule 8) advances even in a quiet room and across several hops; it is
signed by the member itself (see message.announcement_payload), so a relaying
peer cannot make stability advance early by inventing a clock. ``signature`` is
empty exactly when there is no announcement (clock_seq = clock_lamport = 0).
A frame carries a head for nearly every sender the maps name: by position a
sender costs one or two bytes there instead of 33. A heartbeat's HEADS frame
repeats every member's held seq, but a member's announcement only where the link
has not carried it either way; once per keepalive interval it repeats them all.

:func:`decode_frame` accepts only frames built exactly like the ones
:func:`encode_frame` produces and raises :class:`~p2pchat.codec.CodecError`
otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from . import codec
from .channel import EPHEMERAL_KEY_SIZE
from .codec import CodecError
from .identity import SENDER_ID_SIZE, SIGNATURE_SIZE, Identity, verify_signature
from .invites import INVITE_SECRET_SIZE
from .message import (
    MAX_DEPS,
    MAX_LAMPORT,
    MAX_NAME_BYTES,
    MAX_SENT_AT_MS,
    MAX_SEQ,
    NO_LINK,
    ROOM_ID_SIZE,
    Message,
    announcement_payload,
    versions_digest,
)

__all__ = [
    "DIGEST_SIZE",
    "LINK_SIZE",
    "MAX_FRAME_BYTES",
    "NONCE_SIZE",
    "NO_ANNOUNCEMENT",
    "PROTOCOL_VERSION",
    "Auth",
    "Bye",
    "Frame",
    "Graft",
    "Head",
    "Heads",
    "Hello",
    "Messages",
    "Peers",
    "Push",
    "Want",
    "WantRange",
    "decode_frame",
    "encode_frame",
    "message_batches",
]

PROTOCOL_VERSION: Final = 11
"""11: a member may commit a change it answered before its last answer (see
p2pchat.membership, "Moving on"), which a peer speaking 10 would refuse, and then
split from the room. 10: an answer to a removal may name more than the removed member's last 16 entries
(message.MAX_TAIL), and says how many of them were stable at its author (message.Tail),
which a peer speaking 9 would refuse as malformed."""
NONCE_SIZE: Final = 16
LINK_SIZE: Final = 16
"""Bytes of an entry hash a head carries (Head.link): 128 bits, so an author cannot make
two versions of an entry whose links agree (2**64 signatures for a birthday collision)."""
DIGEST_SIZE: Final = 8
"""Bytes of an announcement's signature a bare head names (Head.digest): enough to tell
two announcements of one member apart, which is all the hint is for."""
NO_ANNOUNCEMENT: Final = bytes(DIGEST_SIZE)
"""The digest that says: I hold no announcement of this member (though the link carried
one: I had no use for it when it came)."""
MAX_FRAME_BYTES: Final = 1024 * 1024
MAX_BATCH: Final = 2000
MAX_HEADS: Final = 4096
MAX_WANTS: Final = 4096
MAX_PEERS: Final = 64
MAX_PRUNES: Final = 4096
MAX_URL_BYTES: Final = 256
MAX_REASON_BYTES: Final = 256
MAX_MESSAGE_PAYLOAD: Final = 64 * 1024
"""Above the largest payload Message.create can produce (~59.2 KiB: 16 KiB of text plus
MAX_DEPS deps entries and their digest), so every message a peer can sign can also be
received."""
MAX_BATCH_BYTES: Final = MAX_FRAME_BYTES // 2
"""Payload and signature bytes one MESSAGES or PUSH frame carries at most: half the frame
limit, which leaves room for a PUSH frame's announced ranges and prunes and for the
CBOR framing of each entry (a few bytes)."""

HELLO, AUTH, MESSAGES, HEADS, WANT, PEERS, BYE, PUSH, GRAFT = range(1, 10)


@dataclass(frozen=True, slots=True)
class Head:
    sender_id: bytes
    held_seq: int
    clock_seq: int = 0
    clock_lamport: int = 0
    signature: bytes = b""
    """The member's own signature over its clock announcement (empty: no announcement)."""
    delivered: tuple[tuple[bytes, int], ...] = ()
    """Announced too: the senders whose delivered seq grew since its message clock_seq,
    with that seq, sorted by sender."""
    at_ms: int = 0
    """Announced too: the member's wall clock when it announced (liveness, not order)."""
    link: bytes = b""
    """The first LINK_SIZE bytes of the entry hash of the sender's entry ``held_seq``, as
    the peer sending the head holds it (empty: no claim). Not signed: it is what the
    relay holds, and a peer holding another version of that entry asks the relay for
    its version (see Node._ask_for_versions) -- an author that signed two versions of an
    entry is caught even where no peer ever received both in the course of gossip."""
    digest: bytes = b""
    """In a head without its announcement: the first DIGEST_SIZE bytes of the signature
    of the member's announcement that the peer sending the head holds (empty: the one
    the link carried, or none; NO_ANNOUNCEMENT: none, though the link carried one). A
    hint, not a claim anyone checks: it lets a neighbour keep from sending an
    announcement we hold already, and ask for one we lack (see Node._lean_head). It
    travels in the signature's place, which a head without announcement leaves empty."""
    seen: bytes | None = b""
    """Announced too: the versions of the entries ``delivered`` names, as the member
    delivered them (message.versions_digest; empty when delivered is). None only in an
    announcement of the legacy layout, read from an old data directory: it names no
    versions, and never goes on the wire."""

    @classmethod
    def announce(
        cls,
        identity: Identity,
        held_seq: int,
        clock_seq: int,
        clock_lamport: int,
        delivered: Mapping[bytes, int] | None = None,
        at_ms: int = 0,
        *,
        room_id: bytes,
        link: bytes = b"",
        delivered_links: Mapping[bytes, bytes] | None = None,
    ) -> Head:
        """Our own head, with our clock announcement in room ``room_id`` signed (and
        ``link``, our entry ``held_seq``'s, unsigned as in every head).
        ``delivered_links`` gives the entry hash of each entry ``delivered`` names, for
        ``seen`` (one not given counts as zeros: a version nobody holds, which nobody
        counts)."""
        grown = tuple(sorted(delivered.items())) if delivered else ()
        given = delivered_links or {}
        seen = versions_digest((o, n, given.get(o, NO_LINK)) for o, n in grown) if grown else b""
        payload = announcement_payload(
            room_id, identity.sender_id, clock_seq, clock_lamport, grown, at_ms, seen
        )
        signature = identity.sign(payload)
        return cls(
            identity.sender_id, held_seq, clock_seq, clock_lamport, signature, grown, at_ms, link, b"", seen
        )

    def announcement_verifies(self, room_id: bytes) -> bool:
        """Whether the clock announcement is really the member's, about room ``room_id``
        (the room is signed, not sent: an announcement from another room fails)."""
        try:
            payload = announcement_payload(
                room_id,
                self.sender_id,
                self.clock_seq,
                self.clock_lamport,
                self.delivered,
                self.at_ms,
                self.seen,
            )
        except ValueError:
            return False  # (a seen of the wrong size: only from a damaged store)
        return verify_signature(self.sender_id, payload, self.signature)


@dataclass(frozen=True, slots=True)
class Hello:
    """The opening frame, in clear: who we are and our half of the key exchange."""

    version: int
    sender_id: bytes
    nonce: bytes
    ephemeral_key: bytes
    """Our X25519 public key for this link only (see channel.EphemeralKey)."""


@dataclass(frozen=True, slots=True)
class Auth:
    """The first sealed frame: proof of the identity key over the handshake transcript,
    and what the other side needs to know about us before anything else."""

    signature: bytes
    name: str
    listen_url: str | None
    room_id: bytes = b""
    """The room the sender is in; empty for a newcomer that has none yet."""
    pristine: bool = False
    """The sender's room holds nothing but its own genesis (see Node._yields_to)."""
    invite: bytes = b""
    """A dialer redeeming an invite: its secret (see p2pchat.invites); else empty."""
    leaving: bool = False
    """The sender left the room in this run and stays only until a neighbour holds its
    LEAVE (see Node.leave_handed_over): never to be admitted again on this link. On
    the wire a seventh field, ``true``, sent only then: every other AUTH is as a peer
    of the release before reads it."""


@dataclass(frozen=True, slots=True)
class Messages:
    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Heads:
    heads: tuple[Head, ...]
    reply_wanted: bool = False


@dataclass(frozen=True, slots=True)
class WantRange:
    sender_id: bytes
    first: int
    last: int


@dataclass(frozen=True, slots=True)
class Want:
    ranges: tuple[WantRange, ...]


@dataclass(frozen=True, slots=True)
class Peers:
    urls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Bye:
    reason: str


@dataclass(frozen=True, slots=True)
class Push:
    """Gossip nobody asked for: messages pushed eagerly, ids announced lazily (IHAVE),
    authors to push lazily from now on (PRUNE)."""

    messages: tuple[Message, ...]
    announced: tuple[WantRange, ...] = ()
    """Messages the sender holds and pushes to us lazily: pull them with GRAFT if they
    do not arrive otherwise."""
    pruned: tuple[bytes, ...] = ()
    """Authors whose messages the sender got twice, the second time from us: push it
    their messages lazily from now on."""
    heads: tuple[Head, ...] = ()
    """Clock announcements (heads) that were news to the sender, riding along: so that
    stability advances as fast as messages travel (DESIGN.md rule 8)."""


@dataclass(frozen=True, slots=True)
class Graft:
    """Send me these messages, and push me their authors' messages eagerly from now on."""

    ranges: tuple[WantRange, ...]


Frame = Hello | Auth | Messages | Heads | Want | Peers | Bye | Push | Graft


# Encoding ---------------------------------------------------------------------


def _head_items(heads: tuple[Head, ...]) -> list[object]:
    position: dict[bytes, int] = {}
    for index, head in enumerate(heads):
        position.setdefault(head.sender_id, index)
    return [
        [
            head.sender_id,
            head.held_seq,
            head.clock_seq,
            head.clock_lamport,
            head.signature or head.digest,
            [x for sender, seq in head.delivered for x in (position.get(sender, sender), seq)],
            head.at_ms,
            head.link,
            _wire_seen(head),
        ]
        for head in heads
    ]


def _wire_seen(head: Head) -> bytes:
    """A head's seen digest, as every receiver's parser takes it (see _parse_head)."""
    if head.seen is None:
        raise ValueError("an announcement of the legacy layout does not go on the wire")
    if len(head.seen) != (LINK_SIZE if head.delivered else 0):
        raise ValueError(f"a head's seen is {LINK_SIZE} bytes with delivered entries, none without")
    return head.seen


def message_batches(messages: Iterable[Message], max_count: int) -> Iterator[tuple[Message, ...]]:
    """Split ``messages``, in order, into batches that each fit one frame: at most
    ``max_count`` (and MAX_BATCH) entries and MAX_BATCH_BYTES of entry bytes. Capping the
    count alone is not enough: 100 texts of 16 KiB are over the frame limit, and a
    receiver closes a link that sends an oversized frame (so the batch would never pass)."""
    max_count = min(max_count, MAX_BATCH)
    batch: list[Message] = []
    size = 0
    for message in messages:
        cost = len(message.payload) + len(message.signature)
        if batch and (len(batch) >= max_count or size + cost > MAX_BATCH_BYTES):
            yield tuple(batch)
            batch, size = [], 0
        batch.append(message)
        size += cost
    if batch:
        yield tuple(batch)


def encode_frame(frame: Frame) -> bytes:
    """The CBOR bytes of one frame."""
    item: list[object]
    match frame:
        case Hello():
            item = [HELLO, frame.version, frame.sender_id, frame.nonce, frame.ephemeral_key]
        case Auth():
            item = [
                AUTH,
                frame.signature,
                frame.name,
                frame.listen_url,
                frame.room_id,
                frame.pristine,
                frame.invite,
                *((True,) if frame.leaving else ()),
            ]
        case Messages():
            item = [MESSAGES, [[m.payload, m.signature] for m in frame.messages]]
        case Heads():
            item = [HEADS, _head_items(frame.heads), frame.reply_wanted]
        case Want():
            item = [WANT, _range_items(frame.ranges)]
        case Peers():
            item = [PEERS, list(frame.urls)]
        case Bye():
            item = [BYE, frame.reason]
        case Push():
            item = [
                PUSH,
                [[m.payload, m.signature] for m in frame.messages],
                _range_items(frame.announced),
                list(frame.pruned),
                _head_items(frame.heads),
            ]
        case Graft():
            item = [GRAFT, _range_items(frame.ranges)]
    return codec.dumps(item)


def _range_items(ranges: tuple[WantRange, ...]) -> list[object]:
    return [[r.sender_id, r.first, r.last] for r in ranges]


# Decoding ---------------------------------------------------------------------


def decode_frame(data: bytes) -> Frame:
    """Strictly decode one frame from untrusted bytes. Raises CodecError."""
    if len(data) > MAX_FRAME_BYTES:
        raise CodecError(f"frame of {len(data)} bytes is over the limit of {MAX_FRAME_BYTES}")
    # The widest frame (HELLO: type and 7 fields) plus one, so that a frame with one
    # field too many still gets an error naming it.
    item = codec.expect_array(codec.strict_loads(data), "frame", max_length=9)
    if not item:
        raise CodecError("frame: empty array")
    kind, fields = item[0], item[1:]
    parse = _PARSERS.get(kind) if type(kind) is int else None
    if parse is None:
        raise CodecError(f"frame: unknown frame type {kind!r}")
    return parse(fields)


def _fields(fields: list[object], name: str, count: int) -> list[object]:
    if len(fields) != count:
        raise CodecError(f"{name}: expected {count} fields, got {len(fields)}")
    return fields


def _sender(value: object, what: str) -> bytes:
    return codec.expect_bytes(value, what, size=SENDER_ID_SIZE)


def _parse_head(value: object) -> tuple[Head, list[object]]:
    """A head without its delivered seqs, and those as they came (see _parse_heads)."""
    # Every heartbeat carries a head per member: the checks of the strict path, inline, for
    # a well-formed head; anything else takes the strict path for its error message.
    if type(value) is list and len(value) == 9:
        sender, held, clock_seq, clock_lamport, signature, delivered, at_ms, link, seen = value
        if (
            type(sender) is bytes
            and len(sender) == SENDER_ID_SIZE
            and type(held) is int
            and 0 <= held <= MAX_SEQ
            and type(clock_seq) is int
            and 0 <= clock_seq <= MAX_SEQ
            and type(clock_lamport) is int
            and 0 <= clock_lamport <= MAX_LAMPORT
            and type(signature) is bytes
            and type(at_ms) is int
            and 0 <= at_ms <= MAX_SENT_AT_MS
            and type(delivered) is list
            and len(delivered) <= 2 * MAX_DEPS
            and len(delivered) % 2 == 0
            and type(link) is bytes
            and (not link or (held and len(link) == LINK_SIZE))
            and type(seen) is bytes
            and len(seen) == (LINK_SIZE if delivered else 0)
        ):
            if len(signature) == SIGNATURE_SIZE:
                return Head(
                    sender, held, clock_seq, clock_lamport, signature, (), at_ms, link, b"", seen
                ), delivered
            if len(signature) in (0, DIGEST_SIZE) and not (clock_seq or clock_lamport or delivered or at_ms):
                return Head(sender, held, link=link, digest=signature), delivered
    return _parse_head_strictly(value)


def _parse_head_strictly(value: object) -> tuple[Head, list[object]]:
    sender, held, clock_seq, clock_lamport, signature, delivered, at_ms, link, seen = codec.expect_array(
        value, "head", length=9
    )
    head = Head(
        sender_id=_sender(sender, "head sender"),
        held_seq=codec.expect_int(held, "head held_seq", hi=MAX_SEQ),
        clock_seq=codec.expect_int(clock_seq, "head clock_seq", hi=MAX_SEQ),
        clock_lamport=codec.expect_int(clock_lamport, "head clock_lamport", hi=MAX_LAMPORT),
        signature=codec.expect_bytes(signature, "head signature", max_size=SIGNATURE_SIZE),
        at_ms=codec.expect_int(at_ms, "head at_ms", hi=MAX_SENT_AT_MS),
        link=codec.expect_bytes(link, "head link", max_size=LINK_SIZE),
        seen=codec.expect_bytes(seen, "head seen", max_size=LINK_SIZE),
    )
    if head.link and (len(head.link) != LINK_SIZE or not head.held_seq):
        raise CodecError(f"head link: expected {LINK_SIZE} bytes or none (none for held_seq 0)")
    entries = codec.expect_array(delivered, "head delivered", max_length=2 * MAX_DEPS)
    if len(entries) % 2:
        raise CodecError("head delivered: expected sender, seq pairs, got an odd number of items")
    if len(head.seen or b"") != (LINK_SIZE if entries else 0):
        raise CodecError(f"head seen: expected {LINK_SIZE} bytes with delivered entries, none without")
    size = len(head.signature)
    if size not in (0, DIGEST_SIZE, SIGNATURE_SIZE):
        raise CodecError(
            f"head signature: expected 0, {DIGEST_SIZE} (a digest) or {SIGNATURE_SIZE} bytes, got {size}"
        )
    if size != SIGNATURE_SIZE and (head.clock_seq or head.clock_lamport or entries or head.at_ms):
        raise CodecError("head: a clock announcement without a signature")
    if size == DIGEST_SIZE:
        head = Head(head.sender_id, head.held_seq, link=head.link, digest=head.signature)
    return head, entries


def _parse_heads(value: object) -> tuple[Head, ...]:
    items = codec.expect_array(value, "heads", max_length=MAX_HEADS)
    parsed = [_parse_head(item) for item in items]
    if not any(entries for _, entries in parsed):
        return tuple(head for head, _ in parsed)
    senders = [head.sender_id for head, _ in parsed]
    listed = frozenset(senders)
    return tuple(
        Head(
            head.sender_id,
            head.held_seq,
            head.clock_seq,
            head.clock_lamport,
            head.signature,
            _parse_delivered(entries, senders, listed),
            head.at_ms,
            head.link,
            b"",
            head.seen,
        )
        if entries
        else head
        for head, entries in parsed
    )


def _parse_delivered(
    entries: list[object], senders: list[bytes], listed: frozenset[bytes]
) -> tuple[tuple[bytes, int], ...]:
    """A head's delivered seqs, sorted by sender: each sender by its head's position in
    the frame (``senders``), or by id when the frame has no head of it (one encoding)."""
    grown: list[tuple[bytes, int]] = []
    count = len(senders)
    pairs = iter(entries)
    # (Heads come by the thousand: the common shapes checked inline, anything else
    # through the codec's checks, for their error messages.)
    for ref, seq in zip(pairs, pairs, strict=True):  # (an even count: checked already)
        if type(ref) is int:
            if not 0 <= ref < count:
                raise CodecError(f"head delivered sender: position {ref} is not a head of this frame")
            sender = senders[ref]
        else:
            if type(ref) is bytes and len(ref) == SENDER_ID_SIZE:
                sender = ref
            else:
                sender = _sender(ref, "head delivered sender")
            if sender in listed:
                raise CodecError("head delivered sender: named by id, but it has a head in this frame")
        if type(seq) is not int or not 1 <= seq <= MAX_SEQ:
            seq = codec.expect_int(seq, "head delivered seq", lo=1, hi=MAX_SEQ)
        grown.append((sender, seq))
    grown.sort()
    if any(grown[i][0] == grown[i + 1][0] for i in range(len(grown) - 1)):
        raise CodecError("head delivered: a sender named twice")
    return tuple(grown)


def _parse_url(value: object) -> str:
    return codec.expect_str(value, "url", max_bytes=MAX_URL_BYTES)


def _parse_hello(fields: list[object]) -> Hello:
    version, sender, nonce, ephemeral = _fields(fields, "hello", 4)
    return Hello(
        version=codec.expect_int(version, "hello version", hi=2**16),
        sender_id=_sender(sender, "hello sender"),
        nonce=codec.expect_bytes(nonce, "hello nonce", size=NONCE_SIZE),
        ephemeral_key=codec.expect_bytes(ephemeral, "hello ephemeral key", size=EPHEMERAL_KEY_SIZE),
    )


def _parse_room(value: object) -> bytes:
    room = codec.expect_bytes(value, "auth room", max_size=ROOM_ID_SIZE)
    if len(room) not in (0, ROOM_ID_SIZE):
        raise CodecError(f"auth room: {len(room)} bytes, expected 0 or {ROOM_ID_SIZE}")
    return room


def _parse_auth(fields: list[object]) -> Auth:
    if len(fields) == 7 and fields[6] is True:  # (leaving: see Auth.leaving)
        fields, leaving = fields[:6], True
    else:
        leaving = False
    signature, name, url, room, pristine, invite = _fields(fields, "auth", 6)
    if type(pristine) is not bool:
        raise CodecError(f"auth pristine: expected a boolean, got {type(pristine).__name__}")
    return Auth(
        signature=codec.expect_bytes(signature, "auth signature", size=SIGNATURE_SIZE),
        name=codec.expect_str(name, "auth name", max_bytes=MAX_NAME_BYTES),
        listen_url=codec.expect_optional(url, _parse_url),
        room_id=_parse_room(room),
        pristine=pristine,
        invite=_parse_invite(invite),
        leaving=leaving,
    )


def _parse_invite(value: object) -> bytes:
    invite = codec.expect_bytes(value, "auth invite", max_size=INVITE_SECRET_SIZE)
    if len(invite) not in (0, INVITE_SECRET_SIZE):
        raise CodecError(f"auth invite: {len(invite)} bytes, expected 0 or {INVITE_SECRET_SIZE}")
    return invite


def _parse_signed(value: object) -> Message:
    payload, signature = codec.expect_array(value, "signed message", length=2)
    payload = codec.expect_bytes(payload, "message payload", max_size=MAX_MESSAGE_PAYLOAD)
    signature = codec.expect_bytes(signature, "message signature", size=SIGNATURE_SIZE)
    return Message.from_wire(payload, signature)


def _parse_batch(value: object, what: str) -> tuple[Message, ...]:
    items = codec.expect_array(value, f"{what} batch", max_length=MAX_BATCH)
    return tuple(_parse_signed(m) for m in items)


def _parse_messages(fields: list[object]) -> Messages:
    (batch,) = _fields(fields, "messages", 1)
    return Messages(_parse_batch(batch, "messages"))


def _parse_heads_frame(fields: list[object]) -> Heads:
    heads, reply = _fields(fields, "heads", 2)
    if type(reply) is not bool:
        raise CodecError(f"heads reply_wanted: expected a boolean, got {type(reply).__name__}")
    return Heads(_parse_heads(heads), reply)


def _parse_range(value: object, what: str = "want") -> WantRange:
    sender, first, last = codec.expect_array(value, f"{what} range", length=3)
    first_seq = codec.expect_int(first, f"{what} first", lo=1, hi=MAX_SEQ)
    last_seq = codec.expect_int(last, f"{what} last", lo=first_seq, hi=MAX_SEQ)
    return WantRange(_sender(sender, f"{what} sender"), first_seq, last_seq)


def _parse_ranges(value: object, what: str) -> tuple[WantRange, ...]:
    items = codec.expect_array(value, f"{what} ranges", max_length=MAX_WANTS)
    return tuple(_parse_range(r, what) for r in items)


def _parse_want(fields: list[object]) -> Want:
    (ranges,) = _fields(fields, "want", 1)
    return Want(_parse_ranges(ranges, "want"))


def _parse_push(fields: list[object]) -> Push:
    batch, announced, pruned, heads = _fields(fields, "push", 4)
    authors = codec.expect_array(pruned, "prune authors", max_length=MAX_PRUNES)
    push = Push(
        _parse_batch(batch, "push"),
        _parse_ranges(announced, "ihave"),
        tuple(_sender(a, "prune author") for a in authors),
        _parse_heads(heads),
    )
    if not (push.messages or push.announced or push.pruned):
        raise CodecError("push: empty (no messages, ids or prunes)")
    return push


def _parse_graft(fields: list[object]) -> Graft:
    (ranges,) = _fields(fields, "graft", 1)
    graft = Graft(_parse_ranges(ranges, "graft"))
    if not graft.ranges:
        raise CodecError("graft: no ranges")
    return graft


def _parse_peers(fields: list[object]) -> Peers:
    (urls,) = _fields(fields, "peers", 1)
    items = codec.expect_array(urls, "peers urls", max_length=MAX_PEERS)
    return Peers(tuple(_parse_url(u) for u in items))


def _parse_bye(fields: list[object]) -> Bye:
    (reason,) = _fields(fields, "bye", 1)
    return Bye(codec.expect_str(reason, "bye reason", max_bytes=MAX_REASON_BYTES))


_PARSERS: dict[int, Callable[[list[object]], Frame]] = {
    HELLO: _parse_hello,
    AUTH: _parse_auth,
    MESSAGES: _parse_messages,
    HEADS: _parse_heads_frame,
    WANT: _parse_want,
    PEERS: _parse_peers,
    BYE: _parse_bye,
    PUSH: _parse_push,
    GRAFT: _parse_graft,
}
