"""Signed messages: any change to a signed message, and any forged key, fails verification.

* Tampering: re-encoding the payload with one field changed, or flipping any single
  byte of payload or signature, makes ``Message.verify(room)`` fail (or the payload
  fail to decode at all).
* Wrong room: a signature covers the room id (not on the wire), so an entry signed
  for one room does not verify in another, and a replica of room Y refuses a replay
  of room X's entry as a bad signature. A genesis is signed for no room: its hash is
  the room id.
* Wrong signer: a payload signed by someone other than its ``sender_id`` fails.
* Small-order keys: the eight Ed25519 points of small order (and non-canonical or
  mixed-order encodings) are refused by ``identity.check_sender_id``, and
  ``verify_signature`` returns False for them. With such a key a forger can make
  one signature "verify" for many messages under a naive verifier; the tests build
  such forgeries with a small pure-Python Ed25519 and check they are refused.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from roomkit import Room

from p2pchat import codec, wire
from p2pchat.codec import CodecError
from p2pchat.identity import (
    Identity,
    InvalidPublicKey,
    check_sender_id,
    remember_verifications,
    verify_signature,
)
from p2pchat.log import OrderedLog, ReceiptStatus, Refusal, Refused
from p2pchat.message import (
    LEGACY_PAYLOAD_VERSION,
    LINK_SIZE,
    MAX_LAMPORT,
    MAX_NAME_BYTES,
    MAX_SENT_AT_MS,
    MAX_SEQ,
    PAYLOAD_VERSION,
    ROOM_ID_SIZE,
    SIGNING_CONTEXT,
    Change,
    EntryKind,
    Flush,
    Message,
    MessageId,
    signed_bytes,
)

ALICE, BOB, CAROL = (Identity(bytes([n]) * 32) for n in (11, 12, 13))
ROOM = bytes(range(ROOM_ID_SIZE))
"""The room the test messages are signed for."""
OTHER_ROOM = bytes(range(1, ROOM_ID_SIZE + 1))


def make(identity: Identity = ALICE, **overrides: object) -> Message:
    fields: dict[str, object] = {
        "seq": 3,
        "lamport": 17,
        "sent_at_ms": 1_700_000_000_000,
        "name": "alice",
        "text": "hello, world",
        "deps": {BOB.sender_id: 2},
        "room_id": ROOM,
    }
    fields.update(overrides)
    fields.setdefault("previous", b"" if fields["seq"] == 1 else b"\x22" * LINK_SIZE)
    return Message.create(identity, **fields)  # type: ignore[arg-type]


def payload_fields(message: Message) -> list[object]:
    """The payload of a TEXT, LEAVE or AWAY entry as values (their body is the text)."""
    assert message.kind in (EntryKind.TEXT, EntryKind.LEAVE, EntryKind.AWAY)
    return [
        PAYLOAD_VERSION,
        message.sender_id,
        message.seq,
        message.lamport,
        message.sent_at_ms,
        message.name,
        int(message.kind),
        message.text,
        dict(message.deps),
        message.previous,
        message.seen,
    ]


def verifies(payload: bytes, signature: bytes, room_id: bytes = ROOM) -> bool:
    """Decode and verify; a payload that no longer decodes counts as 'does not verify'."""
    try:
        message = Message.from_wire(payload, signature)
    except CodecError:
        return False
    return message.verify(room_id)


# A tiny pure-Python Ed25519 (RFC 8032), only to build forgeries --------------------

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)
Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T)
NEUTRAL: Point = (0, 1, 1, 0)


def decode_point(data: bytes) -> Point | None:
    y = int.from_bytes(data, "little") & ((1 << 255) - 1)
    sign = data[31] >> 7
    y %= P  # a naive decoder also accepts non-canonical y >= p
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = P - x
    return (x, y, 1, x * y % P)


def add(a: Point, b: Point) -> Point:
    x1, y1, z1, t1 = a
    x2, y2, z2, t2 = b
    aa = (y1 - x1) * (y2 - x2) % P
    bb = (y1 + x1) * (y2 + x2) % P
    cc = 2 * t1 * t2 * D % P
    dd = 2 * z1 * z2 % P
    e, f, g, h = bb - aa, dd - cc, dd + cc, bb + aa
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def multiply(k: int, point: Point) -> Point:
    result = NEUTRAL
    while k:
        if k & 1:
            result = add(result, point)
        point = add(point, point)
        k >>= 1
    return result


def encode_point(point: Point) -> bytes:
    x, y, z, _ = point
    inverse = pow(z, P - 2, P)
    x, y = x * inverse % P, y * inverse % P
    return (y | (x & 1) << 255).to_bytes(32, "little")


BASE = decode_point(bytes([0x58]) + bytes([0x66]) * 31)
assert BASE is not None


def naive_verify(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Cofactorless RFC 8032 check [S]B == R + [k]A with no small-order or canonicity checks."""
    a, r = decode_point(public_key), decode_point(signature[:32])
    if a is None or r is None or BASE is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    k = int.from_bytes(hashlib.sha512(signature[:32] + public_key + message).digest(), "little")
    return encode_point(multiply(s, BASE)) == encode_point(add(r, multiply(k % L, a)))


SMALL_ORDER_POINTS = {
    "identity (order 1)": "0100000000000000000000000000000000000000000000000000000000000000",
    "order 2": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "all-zero (order 4)": "0000000000000000000000000000000000000000000000000000000000000000",
    "order 4, sign bit": "0000000000000000000000000000000000000000000000000000000000000080",
    "order 8 a": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",
    "order 8 b": "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc85",
    "order 8 c": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",
    "order 8 d": "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa",
}
SMALL_ORDER = [bytes.fromhex(h) for h in SMALL_ORDER_POINTS.values()]
NON_CANONICAL_SMALL_ORDER = {
    "identity, sign bit": "0100000000000000000000000000000000000000000000000000000000000080",
    "order 2, sign bit": "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
    "y = p (order 4)": "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "y = p + 1 (identity)": "eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
    "y = p, sign bit": "edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff",
}
IDENTITY_POINT = SMALL_ORDER[0]
FORGED_UNDER_IDENTITY = IDENTITY_POINT + bytes(32)
"""R = neutral point, S = 0: [0]B == R + [k]·identity holds for every message."""


def test_small_order_constants_are_the_eight_torsion_points() -> None:
    """The hard-coded list is exactly the subgroup of order 8 (guards against typos)."""
    generator = decode_point(SMALL_ORDER[4])
    assert generator is not None
    subgroup = {encode_point(multiply(k, generator)) for k in range(8)}
    assert subgroup == set(SMALL_ORDER)
    for point in SMALL_ORDER:
        decoded = decode_point(point)
        assert decoded is not None
        assert encode_point(multiply(8, decoded)) == encode_point(NEUTRAL)


def test_naive_verifier_accepts_real_signatures() -> None:
    """Control: the pure-Python verifier used to show the forgeries are real is correct."""
    message = make()
    signed = SIGNING_CONTEXT + ROOM + message.payload
    assert naive_verify(message.sender_id, signed, message.signature)
    assert not naive_verify(message.sender_id, signed + b"x", message.signature)


# Honest messages -----------------------------------------------------------------


def test_honest_message_verifies() -> None:
    for deps in ({}, {BOB.sender_id: 1, CAROL.sender_id: 9}):
        message = make(deps=deps)
        assert message.verify(ROOM)
        # Exactly what the signature covers: the context, the room id, the payload bytes.
        assert verify_signature(ALICE.sender_id, SIGNING_CONTEXT + ROOM + message.payload, message.signature)


ADMIT_CAROL = Change(1, 0, ((CAROL.sender_id, "carol"),))
"""Epoch 1 of a :class:`Room` of Alice and Bob (epoch 0 is the founder alone)."""
BOBS_CHANGE = MessageId(BOB.sender_id, 1)
"""In the replay tests, Bob's first entry: ``ADMIT_CAROL``, which a FLUSH answers."""
ENTRIES = {
    "text": {},
    "change": {"kind": EntryKind.CHANGE, "change": ADMIT_CAROL, "text": ""},
    "flush": {"kind": EntryKind.FLUSH, "flush": Flush(1, 0, BOBS_CHANGE), "text": ""},
    "leave": {"kind": EntryKind.LEAVE, "text": "bye"},
    "away": {"kind": EntryKind.AWAY, "text": ""},
}


@pytest.mark.parametrize("fields", ENTRIES.values(), ids=ENTRIES.keys())
def test_entries_of_every_kind_verify_only_in_their_room(fields: dict[str, object]) -> None:
    message = make(ALICE, **fields)
    assert message.verify(ROOM)
    assert not message.verify(OTHER_ROOM)
    assert not message.verify(b"")  # not as a genesis either
    assert not message.verify(ROOM[:-1])
    elsewhere = make(ALICE, room_id=OTHER_ROOM, **fields)
    assert elsewhere.payload == message.payload  # the room is not in the payload...
    assert elsewhere.verify(OTHER_ROOM) and not elsewhere.verify(ROOM)  # ...only in the signature


def test_signature_without_context_or_room_does_not_verify() -> None:
    """Signatures over the bare payload (the version-1 rule), over another context, or
    with the room left out, are not signatures of the entry."""
    message = make()
    for signed in (
        message.payload,
        SIGNING_CONTEXT + message.payload,
        ROOM + message.payload,
        b"p2pchat-entry-v1" + ROOM + message.payload,
        b"p2pchat-clock-v1" + ROOM + message.payload,
        SIGNING_CONTEXT + message.payload + ROOM,
    ):
        assert not Message.from_wire(message.payload, ALICE.sign(signed)).verify(ROOM)


def test_genesis_is_signed_for_no_room_and_its_hash_is_the_room_id() -> None:
    log, genesis = OrderedLog.found(ALICE, name="alice", room_name="lobby", sent_at_ms=0)
    assert log.room_id == genesis.room_id()
    assert len(genesis.room_id()) == ROOM_ID_SIZE
    assert verify_signature(ALICE.sender_id, SIGNING_CONTEXT + genesis.payload, genesis.signature)
    # Whichever room a replica reads it in, a genesis checks against no room ...
    assert genesis.verify(b"") and genesis.verify(ROOM) and genesis.verify(genesis.room_id())
    # ... and any other genesis (another name, founder or time) founds another room.
    others = [
        OrderedLog.found(ALICE, name="alice", room_name="lobby2", sent_at_ms=0)[1],
        OrderedLog.found(ALICE, name="alice", room_name="lobby", sent_at_ms=1)[1],
        OrderedLog.found(BOB, name="alice", room_name="lobby", sent_at_ms=0)[1],
    ]
    assert len({genesis.room_id(), *(o.room_id() for o in others)}) == 4


def test_message_survives_the_wire_and_still_verifies() -> None:
    message = make()
    frame = wire.decode_frame(wire.encode_frame(wire.Messages((message,))))
    assert isinstance(frame, wire.Messages)
    (decoded,) = frame.messages
    assert decoded == message
    assert decoded.verify(ROOM)


# Tampering -----------------------------------------------------------------------

FIELD_VALUES = {
    "sender": st.sampled_from([BOB.sender_id, CAROL.sender_id]),
    "seq": st.integers(2, MAX_SEQ),  # (seq 1 names no previous entry: it would not decode)
    "lamport": st.integers(1, MAX_LAMPORT),
    "sent_at": st.integers(0, MAX_SENT_AT_MS),
    "name": st.text(max_size=MAX_NAME_BYTES // 4),
    # Kinds whose body is text like the original's: the payload still decodes.
    "kind": st.sampled_from([int(EntryKind.LEAVE), int(EntryKind.AWAY)]),
    "body": st.text(max_size=100),
    # (Some deps: the original names some, and so its seen digest is 16 bytes.)
    "deps": st.dictionaries(
        st.sampled_from([BOB.sender_id, CAROL.sender_id]), st.integers(1, 99), min_size=1
    ),
    "previous": st.binary(min_size=LINK_SIZE, max_size=LINK_SIZE),
    "seen": st.binary(min_size=LINK_SIZE, max_size=LINK_SIZE),
}
FIELD_INDEX = {
    "sender": 1,
    "seq": 2,
    "lamport": 3,
    "sent_at": 4,
    "name": 5,
    "kind": 6,
    "body": 7,
    "deps": 8,
    "previous": 9,
    "seen": 10,
}


@pytest.mark.parametrize("field", FIELD_INDEX)
@given(data=st.data())
def test_changing_any_field_breaks_the_signature(field: str, data: st.DataObject) -> None:
    original = make()
    fields = payload_fields(original)
    new_value = data.draw(FIELD_VALUES[field])
    assume(new_value != fields[FIELD_INDEX[field]])
    fields[FIELD_INDEX[field]] = new_value
    forged_payload = codec.dumps(fields)
    tampered = Message.from_wire(forged_payload, original.signature)  # decodes fine
    assert not tampered.verify(ROOM)


def test_same_content_encoded_differently_does_not_verify() -> None:
    """The signature covers bytes, not values: a non-shortest encoding of seq differs."""
    original = make(seq=3)
    items = [codec.dumps(value) for value in payload_fields(original)]
    assert b"\x8b" + b"".join(items) == original.payload  # 0x8b: array of 11 items
    items[2] = b"\x18\x03"  # seq 3 in the (legal, non-shortest) one-byte-argument form
    re_encoded = b"\x8b" + b"".join(items)
    decoded = Message.from_wire(re_encoded, original.signature)
    assert (decoded.seq, decoded.text, decoded.deps) == (3, original.text, original.deps)
    assert not decoded.verify(ROOM)


def test_a_legacy_entry_verifies_as_signed_and_its_seen_digest_is_covered() -> None:
    """An entry of payload version 3 (no seen digest: an old data directory's) verifies
    as it was signed; in version 4 the digest is signed like every other field."""
    fields = payload_fields(make())
    legacy = codec.dumps([LEGACY_PAYLOAD_VERSION, *fields[1:10]])
    old = Message.from_wire(legacy, ALICE.sign(signed_bytes(ROOM, legacy)))
    assert old.seen is None and old.verify(ROOM)
    # Dropping the digest of a version-4 entry (and its version) breaks the signature.
    assert not Message.from_wire(legacy, make().signature).verify(ROOM)


@given(st.data())
def test_flipping_any_payload_byte_breaks_verification(data: st.DataObject) -> None:
    original = make(text=data.draw(st.text(max_size=60)))
    index = data.draw(st.integers(0, len(original.payload) - 1))
    mask = data.draw(st.integers(1, 255))
    broken = bytearray(original.payload)
    broken[index] ^= mask
    assert not verifies(bytes(broken), original.signature)


@given(st.data())
def test_flipping_any_signature_byte_breaks_verification(data: st.DataObject) -> None:
    original = make()
    index = data.draw(st.integers(0, 63))
    mask = data.draw(st.integers(1, 255))
    broken = bytearray(original.signature)
    broken[index] ^= mask
    assert not Message.from_wire(original.payload, bytes(broken)).verify(ROOM)


def test_malleated_signature_refused() -> None:
    """S + L is the same S modulo the group order; libsodium must refuse it (non-canonical)."""
    original = make()
    s = int.from_bytes(original.signature[32:], "little")
    malleated = original.signature[:32] + (s + L).to_bytes(32, "little")
    signed = original.signed_bytes(ROOM)
    assert naive_verify(original.sender_id, signed, malleated)
    assert not verify_signature(original.sender_id, signed, malleated)
    assert not Message.from_wire(original.payload, malleated).verify(ROOM)


def test_signature_of_another_message_does_not_verify() -> None:
    first, second = make(seq=1, lamport=1), make(seq=2, lamport=2)
    assert not Message.from_wire(second.payload, first.signature).verify(ROOM)


def test_truncated_or_extended_signature_does_not_verify() -> None:
    message = make()
    signed = message.signed_bytes(ROOM)
    assert verify_signature(ALICE.sender_id, signed, message.signature)  # control
    assert not verify_signature(ALICE.sender_id, signed, message.signature[:63])
    assert not verify_signature(ALICE.sender_id, signed, message.signature + b"\x00")
    assert not verify_signature(ALICE.sender_id, signed, b"")
    # Same concatenation signature + signed bytes as the honest pair, split at another place.
    shifted = message.signature[63:] + signed
    assert not verify_signature(ALICE.sender_id, shifted, message.signature[:63])


# Wrong signer ---------------------------------------------------------------------


def test_signature_by_another_key_fails() -> None:
    claimed = make(ALICE)
    signed = claimed.signed_bytes(ROOM)
    by_bob = BOB.sign(signed)  # Bob signs a payload that claims to be Alice's
    assert not Message.from_wire(claimed.payload, by_bob).verify(ROOM)
    assert not verify_signature(ALICE.sender_id, signed, by_bob)
    assert verify_signature(BOB.sender_id, signed, by_bob)  # control


@given(st.binary(min_size=32, max_size=32), st.text(max_size=40))
def test_signature_by_a_random_key_fails(seed: bytes, text: str) -> None:
    forger = Identity(seed)
    assume(forger.sender_id != ALICE.sender_id)
    fields = payload_fields(make())
    fields[7] = text
    payload = codec.dumps(fields)
    assert not Message.from_wire(payload, forger.sign(signed_bytes(ROOM, payload))).verify(ROOM)


def test_claiming_another_sender_id_fails() -> None:
    """Bob builds a payload naming Alice as sender and signs it with his own key."""
    fields = payload_fields(make(BOB))
    fields[1] = ALICE.sender_id
    payload = codec.dumps(fields)
    assert not Message.from_wire(payload, BOB.sign(signed_bytes(ROOM, payload))).verify(ROOM)


# Small-order and malformed keys --------------------------------------------------------


def test_real_public_keys_are_accepted() -> None:
    for identity in (ALICE, BOB, CAROL):
        assert check_sender_id(identity.sender_id) == identity.sender_id


@pytest.mark.parametrize("point", SMALL_ORDER, ids=SMALL_ORDER_POINTS.keys())
def test_small_order_keys_refused(point: bytes) -> None:
    with pytest.raises(InvalidPublicKey, match="small order"):
        check_sender_id(point)


@pytest.mark.parametrize(
    "point",
    [bytes.fromhex(h) for h in NON_CANONICAL_SMALL_ORDER.values()],
    ids=NON_CANONICAL_SMALL_ORDER.keys(),
)
def test_non_canonical_small_order_encodings_refused(point: bytes) -> None:
    decoded = decode_point(point)
    assert decoded is not None  # a naive decoder takes it...
    assert encode_point(multiply(8, decoded)) == encode_point(NEUTRAL)  # ...and it is small
    with pytest.raises(InvalidPublicKey):
        check_sender_id(point)
    assert not verify_signature(point, b"anything", FORGED_UNDER_IDENTITY)


def test_mixed_order_key_refused() -> None:
    """A real key plus a torsion point is on the curve but outside the prime-order subgroup."""
    real = decode_point(ALICE.sender_id)
    torsion = decode_point(SMALL_ORDER[4])
    assert real is not None and torsion is not None
    mixed = encode_point(add(real, torsion))
    assert mixed != ALICE.sender_id
    with pytest.raises(InvalidPublicKey):
        check_sender_id(mixed)


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_wrong_length_sender_id_refused(size: int) -> None:
    with pytest.raises(InvalidPublicKey, match="32 bytes"):
        check_sender_id(ALICE.sender_id[:1] * size)
    message = make()
    assert not verify_signature(ALICE.sender_id[:1] * size, message.signed_bytes(ROOM), message.signature)


def test_forged_signature_under_identity_point_passes_a_naive_verifier() -> None:
    """Control for the next test: the forgery is real, not just random bytes."""
    assert naive_verify(IDENTITY_POINT, b"any message at all", FORGED_UNDER_IDENTITY)
    assert naive_verify(IDENTITY_POINT, b"another one", FORGED_UNDER_IDENTITY)


@given(st.binary(max_size=200))
def test_forged_signature_under_identity_point_never_verifies(payload: bytes) -> None:
    assert not verify_signature(IDENTITY_POINT, payload, FORGED_UNDER_IDENTITY)


@given(st.text(max_size=60), st.integers(1, 1000))
def test_forged_message_from_identity_point_never_verifies(text: str, seq: int) -> None:
    previous = b"" if seq == 1 else bytes(LINK_SIZE)
    payload = codec.dumps(
        [
            PAYLOAD_VERSION,
            IDENTITY_POINT,
            seq,
            seq,
            0,
            "mallory",
            int(EntryKind.TEXT),
            text,
            {},
            previous,
            b"",
        ]
    )
    forged = Message.from_wire(payload, FORGED_UNDER_IDENTITY)  # the codec does not judge keys
    assert forged.sender_id == IDENTITY_POINT
    assert naive_verify(IDENTITY_POINT, forged.signed_bytes(ROOM), FORGED_UNDER_IDENTITY)
    assert not forged.verify(ROOM)


def forge_for_small_order_key(public_key: bytes, message: bytes) -> bytes | None:
    """A signature (R, S=0) with R a torsion point such that R + [k]A = 0, if one exists."""
    a = decode_point(public_key)
    assert a is not None
    for r_bytes in SMALL_ORDER:
        r = decode_point(r_bytes)
        assert r is not None
        k = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little")
        # A has order dividing 8 and L is odd, so [k mod L]A depends only on k mod L mod 8.
        if encode_point(add(r, multiply(k % L % 8, a))) == encode_point(NEUTRAL):
            return r_bytes + bytes(32)
    return None


@pytest.mark.parametrize("point", SMALL_ORDER, ids=SMALL_ORDER_POINTS.keys())
def test_forgeries_under_every_small_order_key_are_refused(point: bytes) -> None:
    forged_count = 0
    for n in range(16):
        message = b"pay mallory %d" % n
        signature = forge_for_small_order_key(point, message)
        if signature is None:
            continue
        assert naive_verify(point, message, signature)  # a real forgery...
        assert not verify_signature(point, message, signature)  # ...that we refuse
        forged_count += 1
    assert forged_count > 0


# Replays into another room -----------------------------------------------------------------


def replica(room: Room, before: list[Message]) -> OrderedLog:
    """A replica of ``room`` holding its founding entries and then ``before``, all taken."""
    log = OrderedLog(room_id=room.room_id)
    for entry in [*room.entries, *before]:
        assert log.receive(entry).status is ReceiptStatus.NEW
    return log


def written_in(room: Room, fields: dict[str, object]) -> tuple[list[Message], Message]:
    """Alice's first entry of kind ``fields`` in ``room``, and what it answers: for a FLUSH,
    Bob's first entry, the CHANGE it flushes (signed for ``room`` too); else nothing.

    Each names no versions of the entries it depends on (links of zeros, as if its author
    held none): the founder's entries differ from room to room (each chain starts at its
    room's genesis), and so would the seen digest of an entry naming their versions."""
    before = []
    deps: dict[bytes, int] = {}
    lamport = 1
    if fields.get("kind") is EntryKind.FLUSH:
        before.append(room.make(BOB, 1, 1, text="", kind=EntryKind.CHANGE, change=ADMIT_CAROL, links={}))
        deps, lamport = {BOB.sender_id: 1}, 2
    entry = room.make(
        ALICE,
        1,
        lamport,
        deps,
        text=str(fields.get("text", "hello")),
        kind=fields.get("kind", EntryKind.TEXT),  # type: ignore[arg-type]
        change=fields.get("change"),  # type: ignore[arg-type]
        flush=fields.get("flush"),  # type: ignore[arg-type]
        links={},
    )
    return before, entry


@pytest.mark.parametrize("fields", ENTRIES.values(), ids=ENTRIES.keys())
def test_entry_signed_for_another_room_is_refused_as_bad_signature(fields: dict[str, object]) -> None:
    """Alice is a member of rooms X and Y, founded alike. Her entry for X, replayed into Y,
    has exactly the payload of a valid entry of Y: only the room-bound signature tells."""
    room_x = Room([ALICE, BOB])
    room_y = Room([ALICE, BOB], name="another room")
    assert room_y.room_id != room_x.room_id
    # Field for field the same rooms (same founder, stamps and seqs) but for the genesis
    # (and the founder's links to it: each entry names its author's previous one).
    assert [(e.seq, e.lamport, e.kind, e.change) for e in room_x.entries[1:]] == [
        (e.seq, e.lamport, e.kind, e.change) for e in room_y.entries[1:]
    ]
    x_before, for_x = written_in(room_x, fields)
    y_before, for_y = written_in(room_y, fields)
    assert for_x.payload == for_y.payload
    assert [m.payload for m in x_before] == [m.payload for m in y_before]

    x_log = replica(room_x, x_before)
    assert x_log.receive(for_x).status is ReceiptStatus.NEW  # control: valid in its own room
    assert x_log.delivered_seq(ALICE.sender_id) == 1
    assert x_log.is_visible(for_x), "the control entry is valid (not a tombstone) in its room"

    y_log = replica(room_y, y_before)
    replayed = Message.from_wire(for_x.payload, for_x.signature)  # as it comes off the wire
    receipt = y_log.receive(replayed)
    assert receipt.status is ReceiptStatus.REFUSED
    assert receipt.events == (Refused(replayed, Refusal.BAD_SIGNATURE),)
    assert y_log.delivered_seq(ALICE.sender_id) == 0
    # Anyone can replay: the refusal is not held against Alice, whose own entry for Y is taken.
    assert ALICE.sender_id not in y_log.blocked_senders()
    assert not y_log.evidence
    assert y_log.receive(for_y).status is ReceiptStatus.NEW
    assert y_log.delivered_seq(ALICE.sender_id) == 1
    assert y_log.is_visible(for_y)
    # Once Y holds Alice's seq 1, X's version carries the same payload: a duplicate, which
    # changes nothing (the entry Y keeps is the one signed for Y), and no equivocation.
    assert y_log.receive(replayed).status is ReceiptStatus.DUPLICATE
    kept = y_log.get(for_y.id)
    assert kept is not None and kept.signature == for_y.signature and kept.verify(room_y.room_id)
    assert not y_log.evidence


def test_genesis_of_another_room_is_refused() -> None:
    """A genesis verifies anywhere (it is signed for no room), so a replica checks it is its
    own room's: the hash of another founder's genesis is not this room's id."""
    room = Room([ALICE])
    _, foreign = OrderedLog.found(BOB, name="bob", room_name="test room", sent_at_ms=0)
    assert foreign.verify(room.room_id)
    log = room.log()
    receipt = log.receive(foreign)
    assert receipt.status is ReceiptStatus.REFUSED
    assert receipt.events == (Refused(foreign, Refusal.NOT_OUR_GENESIS),)
    assert log.delivered_seq(BOB.sender_id) == 0
    assert log.genesis == room.entries[0]


def test_remembered_verifications_pass_only_the_same_signer_bytes_and_signature() -> None:
    # (Switched on for the rest of this process, as the simulator does: it must stay sound.)
    remember_verifications()
    alice, bob = Identity(bytes([7]) * 32), Identity(bytes([8]) * 32)
    payload = b"a payload checked by many simulated peers"
    signature = alice.sign(payload)
    assert verify_signature(alice.sender_id, payload, signature)
    assert verify_signature(alice.sender_id, payload, signature)  # remembered now
    assert not verify_signature(alice.sender_id, payload + b"!", signature)
    assert not verify_signature(bob.sender_id, payload, signature)
    assert not verify_signature(alice.sender_id, payload, bytes(64))
    forged = bytes([signature[0] ^ 1]) + signature[1:]
    assert not verify_signature(alice.sender_id, payload, forged)


def test_decoding_the_same_bytes_again_gives_the_same_message_other_bytes_their_own() -> None:
    message = make(text="decoded once")
    first = Message.from_wire(message.payload, message.signature)
    assert Message.from_wire(message.payload, message.signature) is first
    # The same signature with other bytes is decoded (and judged) on its own.
    changed = message.payload.replace(b"decoded once", b"decoded ONCE")
    other = Message.from_wire(changed, message.signature)
    assert other.text == "decoded ONCE" and not other.verify(ROOM) and message.verify(ROOM)
    assert Message.from_wire(message.payload, message.signature).text == "decoded once"
    with pytest.raises(CodecError):
        Message.from_wire(message.payload[:-1], message.signature)
