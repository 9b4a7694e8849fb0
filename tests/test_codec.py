"""Strict decoding of untrusted bytes: the CBOR codec, wire frames and message payloads.

Three kinds of tests:

* fuzzing: arbitrary bytes, hostile CBOR structures and mutated valid frames never
  make the decoders raise anything but :class:`~p2pchat.codec.CodecError`, and
  whatever they do accept re-encodes to the same frame;
* round trips: every valid frame survives ``decode_frame(encode_frame(f)) == f``;
* strictness: hand-built hostile bytes (tags, trailing bytes, duplicate keys,
  indefinite lengths, deep nesting, bools and floats posing as ints, simple
  values, wrong field counts, oversize fields, out-of-range numbers) are refused
  with an error message that names the problem.

Hostile bytes are written with the tiny raw-CBOR helpers below (``arr``, ``cmap``,
``tag`` ...) so that the tests control every byte, including the ones that
cbor2 would never produce.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace

import cbor2
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from p2pchat import codec, wire
from p2pchat.codec import MAX_DEPTH, CodecError
from p2pchat.identity import Identity
from p2pchat.log import OrderedLog
from p2pchat.message import (
    LEGACY_PAYLOAD_VERSION,
    LINK_SIZE,
    MAX_DEPS,
    MAX_LAMPORT,
    MAX_NAME_BYTES,
    MAX_SENT_AT_MS,
    MAX_SEQ,
    MAX_TEXT_BYTES,
    PAYLOAD_VERSION,
    ROOM_ID_SIZE,
    ROOM_RULES,
    Change,
    EntryKind,
    Flush,
    Message,
    MessageId,
    RoomPolicy,
    Tail,
    announcement_payload,
    versions_digest,
)

ALICE, BOB, CAROL = (Identity(bytes([n]) * 32) for n in (1, 2, 3))
IDENTITIES = (ALICE, BOB, CAROL)
SIG = bytes(range(64))
"""A well-formed (64-byte) but meaningless signature: decoding never checks signatures."""
LINK = bytes(range(100, 100 + wire.LINK_SIZE))
"""A well-formed head link (the start of an entry hash), just as meaningless."""
ROOM = bytes(range(100, 100 + ROOM_ID_SIZE))
"""The room the test messages are signed for (rooms are not on the wire)."""
SEEN = bytes(range(200, 200 + LINK_SIZE))
"""A well-formed seen digest (of an entry's deps, or a head's delivered seqs): meaningless."""
FRAME_TYPES = (
    wire.Hello,
    wire.Auth,
    wire.Messages,
    wire.Heads,
    wire.Want,
    wire.Peers,
    wire.Bye,
    wire.Push,
    wire.Graft,
)


# Raw CBOR building blocks ------------------------------------------------------


def head(major: int, arg: int) -> bytes:
    """The initial byte(s) of a CBOR item, shortest form."""
    if arg < 24:
        return bytes([major << 5 | arg])
    for info, size in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if arg < 1 << (8 * size):
            return bytes([major << 5 | info]) + arg.to_bytes(size, "big")
    raise AssertionError("argument too large for CBOR")


def enc(value: object) -> bytes:
    return cbor2.dumps(value)


def arr(*items: bytes) -> bytes:
    return head(4, len(items)) + b"".join(items)


def cmap(*pairs: tuple[bytes, bytes]) -> bytes:
    return head(5, len(pairs)) + b"".join(k + v for k, v in pairs)


def tag(number: int, item: bytes) -> bytes:
    return head(6, number) + item


def bstr(data: bytes) -> bytes:
    return head(2, len(data)) + data


FALSE, TRUE, NULL, UNDEFINED = b"\xf4", b"\xf5", b"\xf6", b"\xf7"
HALF_ONE = b"\xf9\x3c\x00"
HALF_NAN = b"\xf9\x7e\x00"
HALF_INF = b"\xf9\x7c\x00"
SINGLE_ONE = b"\xfa\x3f\x80\x00\x00"
DOUBLE_ONE = b"\xfb\x3f\xf0\x00\x00\x00\x00\x00\x00"
NEG_ZERO = b"\xf9\x80\x00"
SIMPLE_16 = b"\xf0"
SIMPLE_255 = b"\xf8\xff"


PAYLOAD_FIELDS = (
    "version",
    "sender",
    "seq",
    "lamport",
    "sent_at",
    "name",
    "kind",
    "body",
    "deps",
    "previous",
    "seen",
)
VALID_PAYLOAD = {
    "version": enc(PAYLOAD_VERSION),
    "sender": enc(ALICE.sender_id),
    "seq": enc(1),
    "lamport": enc(1),
    "sent_at": enc(1_700_000_000_000),
    "name": enc("alice"),
    "kind": enc(int(EntryKind.TEXT)),
    "body": enc("hi"),
    "deps": cmap(),
    "previous": enc(b""),
    "seen": enc(b""),  # (no deps: no digest)
}


def payload(**raw: bytes) -> bytes:
    """A message payload (raw CBOR), valid except for the fields given as raw item bytes."""
    unknown = raw.keys() - VALID_PAYLOAD.keys()
    assert not unknown, unknown
    return arr(*(raw.get(name, VALID_PAYLOAD[name]) for name in PAYLOAD_FIELDS))


def messages_frame(*signed: bytes) -> bytes:
    """A MESSAGES frame around raw ``[payload, signature]`` items."""
    return arr(enc(wire.MESSAGES), arr(*signed))


def signed(payload_bytes: bytes, signature: bytes = SIG) -> bytes:
    return arr(bstr(payload_bytes), bstr(signature))


def head_item(
    sender: bytes | None = None,
    held: bytes | None = None,
    clock_seq: bytes | None = None,
    clock_lamport: bytes | None = None,
    signature: bytes | None = None,
    delivered: bytes | None = None,
    at_ms: bytes | None = None,
    link: bytes | None = None,
    seen: bytes | None = None,
) -> bytes:
    """A head (raw CBOR), valid except for the fields given; its seen digest is empty
    by default where ``delivered`` is an empty array (as it must be), else SEEN."""
    if seen is None:
        seen = bstr(b"") if delivered == arr() else bstr(SEEN)
    return arr(
        sender if sender is not None else enc(BOB.sender_id),
        held if held is not None else enc(3),
        clock_seq if clock_seq is not None else enc(3),
        clock_lamport if clock_lamport is not None else enc(7),
        signature if signature is not None else bstr(SIG),
        delivered if delivered is not None else arr(enc(CAROL.sender_id), enc(2)),
        at_ms if at_ms is not None else enc(1_700_000_000_000),
        link if link is not None else bstr(LINK),
        seen,
    )


def hello(**raw: bytes) -> bytes:
    fields = {
        "version": enc(wire.PROTOCOL_VERSION),
        "sender": enc(ALICE.sender_id),
        "nonce": enc(bytes(wire.NONCE_SIZE)),
        "key": enc(bytes(32)),
    }
    unknown = raw.keys() - fields.keys()
    assert not unknown, unknown
    fields.update(raw)
    return arr(enc(wire.HELLO), *fields.values())


def auth(*more: bytes, **raw: bytes) -> bytes:
    """An AUTH frame: these fields (``raw`` replaces some), then ``more`` after them."""
    fields = {
        "signature": bstr(SIG),
        "name": enc("alice"),
        "url": enc("ws://127.0.0.1:9000"),
        "room": enc(ROOM),
        "pristine": FALSE,
        "invite": enc(b""),
    }
    unknown = raw.keys() - fields.keys()
    assert not unknown, unknown
    fields.update(raw)
    return arr(enc(wire.AUTH), *fields.values(), *more)


def heads_frame(heads: bytes | None = None, reply: bytes = FALSE) -> bytes:
    return arr(enc(wire.HEADS), heads if heads is not None else arr(head_item()), reply)


def want_frame(*ranges: bytes) -> bytes:
    return arr(enc(wire.WANT), arr(*ranges))


def want_range(sender: bytes | None = None, first: bytes = b"\x01", last: bytes = b"\x02") -> bytes:
    return arr(sender if sender is not None else enc(BOB.sender_id), first, last)


def bye(reason: bytes) -> bytes:
    return arr(enc(wire.BYE), reason)


# Assertions ---------------------------------------------------------------------


def _check_words(error: CodecError, words: tuple[str, ...]) -> None:
    text = str(error).lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in error message {str(error)!r}"


def refuse_frame(data: bytes, *words: str) -> None:
    with pytest.raises(CodecError) as info:
        wire.decode_frame(data)
    _check_words(info.value, words)


def refuse_payload(payload_bytes: bytes, *words: str) -> None:
    """The payload is refused on its own and inside a MESSAGES frame, for the same reason."""
    with pytest.raises(CodecError) as info:
        Message.from_wire(payload_bytes, SIG)
    _check_words(info.value, words)
    refuse_frame(messages_frame(signed(payload_bytes)), *words)


def refuse_loads(data: bytes, *words: str) -> None:
    with pytest.raises(CodecError) as info:
        codec.strict_loads(data)
    _check_words(info.value, words)


def test_hand_built_valid_inputs_are_accepted() -> None:
    """Control for every refusal below: the unmodified hand-built bytes decode."""
    message = Message.from_wire(payload(), SIG)
    assert (message.sender_id, message.seq, message.lamport) == (ALICE.sender_id, 1, 1)
    assert wire.decode_frame(messages_frame(signed(payload()))) == wire.Messages((message,))
    assert isinstance(wire.decode_frame(hello()), wire.Hello)
    assert wire.decode_frame(heads_frame()) == wire.Heads(
        (wire.Head(BOB.sender_id, 3, 3, 7, SIG, ((CAROL.sender_id, 2),), 1_700_000_000_000, LINK, seen=SEEN),)
    )
    assert wire.decode_frame(want_frame(want_range())) == wire.Want((wire.WantRange(BOB.sender_id, 1, 2),))
    assert wire.decode_frame(bye(enc("done"))) == wire.Bye("done")


# Strategies ---------------------------------------------------------------------

sender_ids = st.binary(min_size=32, max_size=32)
seqs = st.integers(1, MAX_SEQ)
counts = st.integers(0, MAX_SEQ)
lamports = st.integers(1, MAX_LAMPORT)
heads = st.one_of(
    st.builds(
        wire.Head,
        sender_ids,
        counts,
        counts,
        st.integers(0, MAX_LAMPORT),
        st.binary(min_size=64, max_size=64),
    ),
    st.builds(wire.Head, sender_ids, counts),  # no clock announcement, no signature
    st.builds(  # no clock announcement, but a digest of one
        wire.Head,
        sender_ids,
        counts,
        digest=st.binary(min_size=wire.DIGEST_SIZE, max_size=wire.DIGEST_SIZE),
    ),
)
# At most 4 UTF-8 bytes per character: max_size = limit // 4 always fits.
names = st.text(max_size=MAX_NAME_BYTES // 4)
urls = st.text(max_size=wire.MAX_URL_BYTES // 4)


@st.composite
def signed_messages(draw: st.DrawFn) -> Message:
    """Entries of every kind, signed for ``ROOM`` (a genesis: for no room)."""
    identity = draw(st.sampled_from(IDENTITIES))
    deps = draw(
        st.dictionaries(st.sampled_from([i.sender_id for i in IDENTITIES]) | sender_ids, seqs, max_size=4)
    )
    kind = draw(st.sampled_from(EntryKind))
    text = draw(names if kind is EntryKind.GENESIS else st.text(max_size=200))
    if kind in (EntryKind.CHANGE, EntryKind.FLUSH, EntryKind.COMMIT):
        text = ""
    seq = draw(seqs)
    return Message.create(
        identity,
        seq=seq,
        previous=b"" if seq == 1 else draw(st.binary(min_size=LINK_SIZE, max_size=LINK_SIZE)),
        lamport=draw(lamports),
        sent_at_ms=draw(st.integers(0, MAX_SENT_AT_MS)),
        name=draw(names),
        text=text,
        deps=deps,
        room_id=ROOM,
        kind=kind,
        change=draw(changes) if kind is EntryKind.CHANGE else None,
        flush=draw(flushes) if kind in (EntryKind.FLUSH, EntryKind.COMMIT) else None,
        policy=draw(st.sampled_from(RoomPolicy)),
    )


changes = (
    st.builds(
        Change,
        st.integers(0, 2**63 - 1),
        st.integers(0, 2**63 - 1),
        st.lists(st.tuples(sender_ids, names), max_size=3, unique_by=lambda p: p[0]).map(tuple),
        st.lists(sender_ids, max_size=3, unique=True).map(tuple),
    )
    .filter(lambda c: c.admitted or c.removed)
    .filter(lambda c: not {m for m, _ in c.admitted} & set(c.removed))
)
flushes = st.builds(
    Flush, st.integers(0, 2**63 - 1), st.integers(0, 2**63 - 1), st.builds(MessageId, sender_ids, seqs)
)


@st.composite
def want_ranges(draw: st.DrawFn) -> wire.WantRange:
    first = draw(seqs)
    return wire.WantRange(draw(sender_ids), first, draw(st.integers(first, MAX_SEQ)))


hello_frames = st.builds(
    wire.Hello,
    version=st.integers(0, 2**16),
    sender_id=sender_ids,
    nonce=st.binary(min_size=wire.NONCE_SIZE, max_size=wire.NONCE_SIZE),
    ephemeral_key=st.binary(min_size=32, max_size=32),
)
auth_frames = st.builds(
    wire.Auth,
    signature=st.binary(min_size=64, max_size=64),
    name=names,
    listen_url=st.none() | urls,
    room_id=st.just(b"") | st.binary(min_size=ROOM_ID_SIZE, max_size=ROOM_ID_SIZE),
    pristine=st.booleans(),
    invite=st.just(b"") | st.binary(min_size=16, max_size=16),
    leaving=st.booleans(),
)
messages_frames = st.builds(wire.Messages, st.lists(signed_messages(), max_size=3).map(tuple))
heads_frames = st.builds(wire.Heads, st.lists(heads, max_size=4).map(tuple), st.booleans())


@st.composite
def announcing_heads_frames(draw: st.DrawFn) -> wire.Heads:
    """Heads with delivered maps naming senders with a head in the frame and without."""
    pool = [i.sender_id for i in IDENTITIES] + draw(st.lists(sender_ids, max_size=2))
    found = []
    for sender in draw(st.lists(st.sampled_from(pool), max_size=5)):
        delivered = draw(st.dictionaries(st.sampled_from(pool), seqs, max_size=4))
        held = draw(counts)
        links = (
            st.just(b"") | st.binary(min_size=wire.LINK_SIZE, max_size=wire.LINK_SIZE)
            if held
            else st.just(b"")
        )
        found.append(
            wire.Head(
                sender,
                held,
                draw(counts),
                draw(st.integers(0, MAX_LAMPORT)),
                draw(st.binary(min_size=64, max_size=64)),
                tuple(sorted(delivered.items())),
                draw(st.integers(0, 2**53)),
                draw(links),
                seen=draw(st.binary(min_size=LINK_SIZE, max_size=LINK_SIZE)) if delivered else b"",
            )
        )
    return wire.Heads(tuple(found), draw(st.booleans()))


want_frames = st.builds(wire.Want, st.lists(want_ranges(), max_size=4).map(tuple))
peers_frames = st.builds(wire.Peers, st.lists(urls, max_size=4).map(tuple))
bye_frames = st.builds(wire.Bye, st.text(max_size=wire.MAX_REASON_BYTES // 4))
push_frames = st.builds(
    wire.Push,
    st.lists(signed_messages(), max_size=3).map(tuple),
    st.lists(want_ranges(), max_size=4).map(tuple),
    st.lists(sender_ids, max_size=3).map(tuple),
).filter(lambda push: bool(push.messages or push.announced or push.pruned))
graft_frames = st.builds(wire.Graft, st.lists(want_ranges(), min_size=1, max_size=4).map(tuple))

# Anything cbor2 can encode that a hostile peer might send.
hostile_leaves = st.one_of(
    st.integers(-(2**64), 2**64 - 1),
    st.booleans(),
    st.none(),
    st.floats(),
    st.binary(max_size=40),
    st.text(max_size=20),
    st.just(cbor2.undefined),
    st.sampled_from([*range(20), *range(32, 256)]).map(cbor2.CBORSimpleValue),
)
hostile_values = st.recursive(
    hostile_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.dictionaries(st.text(max_size=4) | st.binary(max_size=33), children, max_size=4),
        st.builds(cbor2.CBORTag, st.integers(0, 2**64 - 1), children),
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """``data`` after one to four random flips, inserts, deletes, overwrites or a truncation."""
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "overwrite", "truncate"]))
        if op == "insert":
            at = draw(st.integers(0, len(buffer)))
            buffer[at:at] = draw(st.binary(min_size=1, max_size=9))
            continue
        if not buffer:
            continue
        at = draw(st.integers(0, len(buffer) - 1))
        if op == "flip":
            buffer[at] ^= draw(st.integers(1, 255))
        elif op == "delete":
            del buffer[at : at + draw(st.integers(1, 4))]
        elif op == "overwrite":
            buffer[at] = draw(st.sampled_from([0x00, 0x18, 0x1B, 0x5F, 0x9F, 0xBF, 0xC2, 0xF7, 0xFF]))
        else:
            del buffer[at:]
    return bytes(buffer)


def decode_or_codec_error(data: bytes) -> wire.Frame | None:
    """Decode ``data``; only CodecError may escape, and what is accepted must be stable."""
    try:
        frame = wire.decode_frame(data)
    except CodecError:
        event("refused")
        return None
    event(f"decoded a {type(frame).__name__} frame")
    assert isinstance(frame, FRAME_TYPES)
    assert wire.decode_frame(wire.encode_frame(frame)) == frame
    return frame


# Fuzzing: only CodecError, ever -------------------------------------------------


@given(st.binary(max_size=600))
def test_arbitrary_bytes_decode_frame_raises_only_codec_error(data: bytes) -> None:
    decode_or_codec_error(data)


@given(st.binary(max_size=600))
def test_arbitrary_bytes_strict_loads_raises_only_codec_error(data: bytes) -> None:
    with contextlib.suppress(CodecError):
        codec.strict_loads(data)


@given(st.binary(max_size=600), st.binary(min_size=64, max_size=64) | st.binary(max_size=80))
def test_arbitrary_bytes_message_from_wire_raises_only_codec_error(
    payload_bytes: bytes, signature: bytes
) -> None:
    try:
        message = Message.from_wire(payload_bytes, signature)
    except CodecError:
        return
    assert message.payload == payload_bytes
    assert not message.verify(ROOM)


@given(hostile_values)
def test_hostile_cbor_structures_raise_only_codec_error(value: object) -> None:
    data = cbor2.dumps(value)
    with contextlib.suppress(CodecError):
        codec.strict_loads(data)
    decode_or_codec_error(data)
    with contextlib.suppress(CodecError):
        Message.from_wire(data, SIG)


@given(st.integers(0, 10), st.lists(hostile_values, max_size=7))
def test_frame_shaped_hostile_values_raise_only_codec_error(kind: int, fields: list[object]) -> None:
    decode_or_codec_error(cbor2.dumps([kind, *fields]))


@given(st.integers(0, len(PAYLOAD_FIELDS) - 1), hostile_values)
def test_payload_with_one_hostile_field_raises_only_codec_error(index: int, value: object) -> None:
    raw = dict(VALID_PAYLOAD)
    raw[PAYLOAD_FIELDS[index]] = cbor2.dumps(value)
    data = payload(**raw)
    with contextlib.suppress(CodecError):
        Message.from_wire(data, SIG)
    decode_or_codec_error(messages_frame(signed(data)))


NON_EMPTY_FRAMES: dict[str, st.SearchStrategy[wire.Frame]] = {
    "hello": hello_frames,
    "auth": auth_frames,
    "messages": messages_frames.filter(lambda f: bool(f.messages)),
    "heads": heads_frames,
    "want": want_frames,
    "peers": peers_frames,
    "bye": bye_frames,
}


@pytest.mark.parametrize("frame_type", NON_EMPTY_FRAMES)
@given(data=st.data())
def test_mutated_frames_of_each_type_raise_only_codec_error(frame_type: str, data: st.DataObject) -> None:
    frame = data.draw(NON_EMPTY_FRAMES[frame_type])
    decode_or_codec_error(data.draw(mutated(wire.encode_frame(frame))))


@given(st.data(), signed_messages())
def test_mutated_payload_inside_valid_frame_raises_only_codec_error(
    data: st.DataObject, message: Message
) -> None:
    """Mutate the signed payload itself, so the outer frame stays intact."""
    broken = data.draw(mutated(message.payload))
    frame = decode_or_codec_error(messages_frame(signed(broken, message.signature)))
    if frame is not None:
        assert isinstance(frame, wire.Messages)
        (decoded,) = frame.messages
        assert decoded.verify(ROOM) == (broken == message.payload)


# Round trips ---------------------------------------------------------------------


def assert_round_trip(frame: wire.Frame) -> None:
    data = wire.encode_frame(frame)
    assert len(data) <= wire.MAX_FRAME_BYTES
    decoded = wire.decode_frame(data)
    assert decoded == frame
    assert type(decoded) is type(frame)
    assert wire.encode_frame(decoded) == data


@given(hello_frames)
def test_hello_round_trips(frame: wire.Hello) -> None:
    assert_round_trip(frame)


@given(auth_frames)
def test_auth_round_trips(frame: wire.Auth) -> None:
    assert_round_trip(frame)


@given(messages_frames)
def test_messages_round_trip_and_still_verify(frame: wire.Messages) -> None:
    assert_round_trip(frame)
    decoded = wire.decode_frame(wire.encode_frame(frame))
    assert isinstance(decoded, wire.Messages)
    assert all(m.verify(ROOM) for m in decoded.messages)


@given(heads_frames)
def test_heads_round_trip(frame: wire.Heads) -> None:
    assert_round_trip(frame)


@given(announcing_heads_frames())
def test_heads_with_delivered_maps_round_trip(frame: wire.Heads) -> None:
    assert_round_trip(frame)


def test_a_delivered_map_names_a_sender_with_a_head_in_the_frame_by_position() -> None:
    bob = wire.Head(BOB.sender_id, 3, 3, 7, SIG, ((ALICE.sender_id, 4), (CAROL.sender_id, 2)), 5, seen=SEEN)
    alice = wire.Head(ALICE.sender_id, 4, 4, 8, SIG, ((BOB.sender_id, 3),), 6, seen=SEEN)
    data = wire.encode_frame(wire.Heads((bob, alice), False))
    items = cbor2.loads(data)[1]
    assert items[0][5] == [1, 4, CAROL.sender_id, 2]  # (Carol has no head here: by id)
    assert items[1][5] == [0, 3]
    assert wire.decode_frame(data) == wire.Heads((bob, alice), False)


@given(want_frames)
def test_want_round_trips(frame: wire.Want) -> None:
    assert_round_trip(frame)


@given(peers_frames)
def test_peers_round_trip(frame: wire.Peers) -> None:
    assert_round_trip(frame)


@given(bye_frames)
def test_bye_round_trips(frame: wire.Bye) -> None:
    assert_round_trip(frame)


@given(push_frames)
def test_push_round_trips_and_still_verifies(frame: wire.Push) -> None:
    assert_round_trip(frame)
    decoded = wire.decode_frame(wire.encode_frame(frame))
    assert isinstance(decoded, wire.Push)
    assert all(m.verify(ROOM) for m in decoded.messages)


@given(graft_frames)
def test_graft_round_trips(frame: wire.Graft) -> None:
    assert_round_trip(frame)


def push(
    batch: bytes = b"\x80", ihave: bytes = b"\x80", pruned: bytes = b"\x80", heads: bytes = b"\x80"
) -> bytes:
    return arr(enc(wire.PUSH), batch, ihave, pruned, heads)


def test_empty_push_and_graft_refused() -> None:
    """The encoder never sends them; a peer that does is broken or probing."""
    refuse_frame(push(), "push", "empty")
    refuse_frame(arr(enc(wire.GRAFT), arr()), "graft", "no ranges")
    # Heads ride along; they never make a PUSH of their own.
    head = wire.Head.announce(BOB, 3, 3, 7, {CAROL.sender_id: 2}, 5_000, room_id=ROOM)
    only_heads = cbor2.loads(wire.encode_frame(wire.Heads((head,))))[1]
    refuse_frame(push(heads=enc(only_heads)), "push", "empty")


def test_a_push_carries_clock_announcements_along() -> None:
    head = wire.Head.announce(BOB, 3, 3, 7, {CAROL.sender_id: 2}, 5_000, room_id=ROOM)
    frame = wire.Push((), (), (CAROL.sender_id,), (head,))
    decoded = wire.decode_frame(wire.encode_frame(frame))
    assert decoded == frame and isinstance(decoded, wire.Push)
    assert decoded.heads[0].announcement_verifies(ROOM)
    refuse_frame(push(pruned=arr(enc(CAROL.sender_id)), heads=enc("heads")), "heads")


def test_push_ihave_and_graft_ranges_are_checked_like_want() -> None:
    reversed_range = want_range(first=enc(5), last=enc(4))
    assert wire.decode_frame(push(ihave=arr(want_range())))  # control
    refuse_frame(push(ihave=arr(reversed_range)), "ihave last", "outside")
    refuse_frame(arr(enc(wire.GRAFT), arr(reversed_range)), "graft last", "outside")
    refuse_frame(arr(enc(wire.GRAFT), arr(want_range(first=enc(0)))), "graft first", "outside")
    refuse_frame(push(ihave=arr(want_range(sender=enc(b"x" * 31)))), "ihave sender")
    refuse_frame(push(batch=enc(3)), "push batch", "array")
    too_many = arr(*[want_range()] * (wire.MAX_WANTS + 1))
    refuse_frame(push(ihave=too_many), "ihave ranges")


def test_prune_authors_must_be_sender_ids() -> None:
    assert wire.decode_frame(push(pruned=arr(enc(BOB.sender_id))))  # control
    refuse_frame(push(pruned=arr(enc(b"x" * 33))), "prune author")
    refuse_frame(push(pruned=arr(enc("alice"))), "prune author")
    refuse_frame(push(pruned=enc(BOB.sender_id)), "prune authors")
    too_many = arr(*[enc(BOB.sender_id)] * (wire.MAX_PRUNES + 1))
    refuse_frame(push(pruned=too_many), "prune authors")


def test_extreme_but_valid_values_round_trip() -> None:
    top = wire.Head(b"\xff" * 32, MAX_SEQ, MAX_SEQ, MAX_LAMPORT, b"\xff" * 64)
    for frame in (
        wire.Hello(2**16, b"\x00" * 32, b"\xff" * 16, b"\xff" * 32),
        wire.Hello(0, b"\x00" * 32, bytes(16), bytes(32)),
        wire.Auth(b"\xff" * 64, "é" * 32, "u" * wire.MAX_URL_BYTES, b"\xff" * 32, True, b"\xff" * 16),
        wire.Auth(bytes(64), "", None),
        wire.Heads((top,) * 3, True),
        wire.Want((wire.WantRange(b"\x01" * 32, MAX_SEQ, MAX_SEQ),)),
        wire.Peers(("p" * wire.MAX_URL_BYTES,) * wire.MAX_PEERS),
        wire.Bye("\U0001f600" * (wire.MAX_REASON_BYTES // 4)),
        wire.Messages(()),
    ):
        assert_round_trip(frame)


def test_largest_message_create_allows_round_trips_through_a_frame() -> None:
    """Every message Message.create accepts must also be accepted from the wire.

    Max text, max name, MAX_DEPS deps entries and maximal numbers make a payload of
    about 59 KiB, beyond the 20 KiB payload limit wire.py once had: such a message
    was signable but every receiver refused the whole frame.
    """
    deps = {Identity(n.to_bytes(32, "big")).sender_id: MAX_SEQ for n in range(1, MAX_DEPS + 1)}
    message = Message.create(
        ALICE,
        seq=MAX_SEQ,
        previous=b"\xff" * LINK_SIZE,
        lamport=MAX_LAMPORT,
        sent_at_ms=MAX_SENT_AT_MS,
        name="\U0001f600" * (MAX_NAME_BYTES // 4),
        text="\U0001f600" * (MAX_TEXT_BYTES // 4),
        deps=deps,
        room_id=ROOM,
    )
    assert len(message.payload) <= wire.MAX_MESSAGE_PAYLOAD
    assert_round_trip(wire.Messages((message,)))


def test_strict_loads_round_trips_plain_values() -> None:
    value = [1, -5, b"\x00", "ü", None, True, {"k": [b"v"]}]
    assert codec.strict_loads(codec.dumps(value)) == value


# Strictness: tags ----------------------------------------------------------------

TAGGED = {
    "0-datetime": tag(0, enc("2013-03-21T20:04:00Z")),
    "1-epoch": tag(1, enc(1363896240)),
    "2-bignum": tag(2, bstr(b"\x01" + bytes(8))),
    "3-negative-bignum": tag(3, bstr(b"\x01" + bytes(8))),
    "4-decimal": tag(4, arr(enc(-2), enc(27315))),
    "5-bigfloat": tag(5, arr(enc(-1), enc(3))),
    "24-embedded-cbor": tag(24, bstr(enc(1))),
    "25-stringref": tag(25, enc(0)),
    "28-shareable": tag(28, arr(enc(1))),
    "29-sharedref": tag(29, enc(0)),
    "30-rational": tag(30, arr(enc(1), enc(3))),
    "32-uri": tag(32, enc("http://example.com")),
    "35-regex": tag(35, enc("a+(b|c)*")),
    "36-mime": tag(36, enc("Content-Type: text/plain\n\nhi")),
    "37-uuid": tag(37, bstr(bytes(16))),
    "52-ipv4": tag(52, bstr(bytes(4))),
    "256-stringref-namespace": tag(256, arr(enc("aaa"), tag(25, enc(0)))),
    "258-set": tag(258, arr(enc(1), enc(2))),
    "260-network-address": tag(260, bstr(bytes(4))),
    "55799-self-describe": tag(55799, enc(1)),
    "99999-unknown": tag(99999, enc(1)),
    "2**64-1-largest": tag(2**64 - 1, enc(1)),
}


@pytest.mark.parametrize("data", TAGGED.values(), ids=TAGGED.keys())
def test_tags_of_every_kind_are_refused(data: bytes) -> None:
    refuse_loads(data, "tag")


def test_tag_refused_inside_a_frame() -> None:
    refuse_frame(bye(tag(0, enc("2013-03-21T20:04:00Z"))), "tag")
    refuse_frame(hello(version=tag(2, bstr(b"\x01"))), "tag")
    refuse_frame(arr(enc(wire.PEERS), tag(258, arr(enc("ws://a")))), "tag")


def test_tagged_frame_type_refused() -> None:
    refuse_frame(arr(tag(2, bstr(b"\x07")), enc("bye")), "tag")


def test_self_described_frame_refused() -> None:
    refuse_frame(tag(55799, bye(enc("done"))), "tag")


def test_bignum_lamport_refused_in_payload() -> None:
    refuse_payload(payload(lamport=tag(2, bstr(b"\x05"))), "tag")


def test_cyclic_shared_reference_refused() -> None:
    # 28([29(0)]): an array that contains itself, if shared references were honoured.
    refuse_loads(tag(28, arr(tag(29, enc(0)))), "tag")


# Strictness: trailing bytes, duplicate keys, indefinite lengths -----------------------


def test_trailing_bytes_after_frame_refused() -> None:
    good = bye(enc("done"))
    refuse_frame(good + b"\x00", "1 trailing")
    refuse_frame(good + good, "trailing")


def test_trailing_bytes_after_payload_refused() -> None:
    refuse_payload(payload() + b"\xf6", "trailing")


def test_duplicate_keys_refused_by_strict_loads() -> None:
    refuse_loads(cmap((enc("a"), enc(1)), (enc("a"), enc(2))), "duplicate")


def test_duplicate_deps_keys_refused() -> None:
    deps = cmap((enc(BOB.sender_id), enc(1)), (enc(BOB.sender_id), enc(2)))
    refuse_payload(payload(deps=deps), "duplicate")


def test_non_string_map_keys_refused() -> None:
    refuse_loads(cmap((enc(1), enc(1))), "key")
    refuse_payload(payload(deps=cmap((arr(enc(1)), enc(1)))), "key")


INDEFINITE = {
    "frame-array": b"\x9f" + enc(wire.BYE) + enc("done") + b"\xff",
    "urls-array": arr(enc(wire.PEERS), b"\x9f" + enc("ws://a") + b"\xff"),
    "reason-text": bye(b"\x7f" + enc("do") + enc("ne") + b"\xff"),
    "nonce-bytes": hello(nonce=b"\x5f" + bstr(bytes(8)) + bstr(bytes(8)) + b"\xff"),
}


@pytest.mark.parametrize("data", INDEFINITE.values(), ids=INDEFINITE.keys())
def test_indefinite_lengths_in_frames_refused(data: bytes) -> None:
    refuse_frame(data, "indefinite")


def test_indefinite_lengths_in_payload_refused() -> None:
    refuse_payload(payload(deps=b"\xbf" + enc(BOB.sender_id) + enc(1) + b"\xff"), "indefinite")
    refuse_payload(payload(body=b"\x7f" + enc("h") + enc("i") + b"\xff"), "indefinite")
    refuse_payload(b"\x9f" + payload()[1:] + b"\xff", "indefinite")


# Strictness: nesting --------------------------------------------------------------


def nested(depth: int) -> bytes:
    return b"\x81" * depth + b"\x00"


def test_nesting_up_to_max_depth_accepted() -> None:
    value = codec.strict_loads(nested(MAX_DEPTH))
    for _ in range(MAX_DEPTH):
        assert isinstance(value, list)
        (value,) = value
    assert value == 0


def test_nesting_deeper_than_max_depth_refused() -> None:
    refuse_loads(nested(MAX_DEPTH + 1), "depth")
    refuse_loads(b"\xa1\x61k" * (MAX_DEPTH + 1) + b"\x00", "depth")


def test_very_deep_nesting_refused_without_recursion_error() -> None:
    refuse_frame(bye(nested(200_000)), "depth")


def test_payload_nesting_limited_to_five() -> None:
    refuse_payload(payload(deps=cmap((enc(BOB.sender_id), arr(arr(arr(arr(enc(1)))))))), "depth")


# Strictness: exact types ------------------------------------------------------------

BOOL_FOR_INT = {
    "payload-seq-true": payload(seq=TRUE),
    "payload-lamport-true": payload(lamport=TRUE),
    "payload-sent-at-false": payload(sent_at=FALSE),
    "deps-seq-true": payload(deps=cmap((enc(BOB.sender_id), TRUE))),
}


@pytest.mark.parametrize("data", BOOL_FOR_INT.values(), ids=BOOL_FOR_INT.keys())
def test_bool_refused_where_payload_int_expected(data: bytes) -> None:
    refuse_payload(data, "integer", "bool")


def test_bool_payload_version_refused() -> None:
    refuse_payload(payload(version=TRUE), "version")


@pytest.mark.parametrize(
    "data",
    [
        hello(version=TRUE),
        heads_frame(arr(head_item(held=TRUE))),
        heads_frame(arr(head_item(clock_lamport=FALSE))),
        want_frame(want_range(first=TRUE, last=TRUE)),
    ],
    ids=["hello-version", "head-held", "head-clock-lamport", "want-first"],
)
def test_bool_refused_where_frame_int_expected(data: bytes) -> None:
    refuse_frame(data, "integer", "bool")


def test_bool_frame_type_refused() -> None:
    refuse_frame(arr(TRUE, enc(b"\x00" * 64)), "unknown frame type")


def test_int_refused_where_bool_expected() -> None:
    refuse_frame(heads_frame(reply=enc(1)), "boolean", "int")
    refuse_frame(heads_frame(reply=NULL), "boolean")


FLOATS = {
    "half-1.0": HALF_ONE,
    "single-1.0": SINGLE_ONE,
    "double-1.0": DOUBLE_ONE,
    "nan": HALF_NAN,
    "infinity": HALF_INF,
    "negative-zero": NEG_ZERO,
}


@pytest.mark.parametrize("raw", FLOATS.values(), ids=FLOATS.keys())
@pytest.mark.parametrize("field", ["seq", "lamport", "sent_at"])
def test_float_refused_where_payload_int_expected(field: str, raw: bytes) -> None:
    refuse_payload(payload(**{field: raw}), "integer", "float")


@pytest.mark.parametrize("raw", FLOATS.values(), ids=FLOATS.keys())
def test_float_refused_where_frame_int_expected(raw: bytes) -> None:
    refuse_frame(hello(version=raw), "hello version", "float")
    refuse_frame(heads_frame(arr(head_item(clock_seq=raw))), "clock_seq", "float")
    refuse_frame(want_frame(want_range(last=raw)), "want last", "float")
    refuse_frame(arr(raw, enc("done")), "unknown frame type")


def test_float_payload_version_refused() -> None:
    refuse_payload(payload(version=HALF_ONE), "version")


@pytest.mark.parametrize(
    "data, words",
    [
        (auth(url=UNDEFINED), ("url", "text", "undefined")),
        (auth(name=NULL), ("auth name", "text")),
        (hello(nonce=SIMPLE_16), ("nonce", "byte string", "simple")),
        (heads_frame(reply=UNDEFINED), ("boolean",)),
        (heads_frame(arr(head_item(sender=SIMPLE_255))), ("head sender", "byte string")),
        (bye(UNDEFINED), ("reason", "text")),
        (auth(signature=NULL), ("signature", "byte string")),
        (arr(enc(wire.PEERS), arr(SIMPLE_16)), ("url", "text")),
    ],
    ids=["url", "name", "nonce", "reply", "head-sender", "reason", "auth", "peer-url"],
)
def test_undefined_and_simple_values_refused_in_frames(data: bytes, words: tuple[str, ...]) -> None:
    refuse_frame(data, *words)


@pytest.mark.parametrize(
    "field, raw, words",
    [
        ("deps", UNDEFINED, ("deps", "map")),
        ("seq", UNDEFINED, ("seq", "integer")),
        ("body", SIMPLE_16, ("text", "text")),
        ("kind", UNDEFINED, ("kind", "integer")),
        ("sender", NULL, ("sender", "byte string")),
        ("version", UNDEFINED, ("version",)),
        ("lamport", SIMPLE_255, ("lamport", "integer")),
    ],
)
def test_undefined_and_simple_values_refused_in_payload(
    field: str, raw: bytes, words: tuple[str, ...]
) -> None:
    refuse_payload(payload(**{field: raw}), *words)


# Strictness: shape --------------------------------------------------------------------

VALID_FRAME_ITEMS = {
    "hello": cbor2.loads(hello()),
    "auth": cbor2.loads(auth()),
    "messages": [wire.MESSAGES, []],
    "heads": [wire.HEADS, [], False],
    "want": [wire.WANT, []],
    "peers": [wire.PEERS, []],
    "bye": [wire.BYE, "done"],
    "push": [wire.PUSH, [], [], [BOB.sender_id], []],
    "graft": [wire.GRAFT, [[BOB.sender_id, 1, 2]]],
}


@pytest.mark.parametrize("name", VALID_FRAME_ITEMS)
def test_wrong_field_counts_refused(name: str) -> None:
    item = VALID_FRAME_ITEMS[name]
    count = len(item) - 1
    assert wire.decode_frame(cbor2.dumps(item))  # control
    refuse_frame(cbor2.dumps(item[:-1]), name, f"expected {count} fields, got {count - 1}")
    refuse_frame(cbor2.dumps([*item, 0]), name, f"expected {count} fields, got {count + 1}")


def test_wrong_item_counts_in_nested_structures_refused() -> None:
    refuse_payload(arr(*(VALID_PAYLOAD[f] for f in PAYLOAD_FIELDS[:9])), "has 11 fields, not 9")
    refuse_payload(arr(*(VALID_PAYLOAD[f] for f in PAYLOAD_FIELDS), NULL), "12 items", "over the limit")
    refuse_frame(heads_frame(arr(arr(enc(BOB.sender_id), enc(1), enc(1)))), "head", "9 items")
    refuse_frame(want_frame(arr(enc(BOB.sender_id), enc(1))), "want range", "3 items")
    refuse_frame(messages_frame(arr(bstr(payload()))), "signed message", "2 items")
    refuse_frame(messages_frame(arr(bstr(payload()), bstr(SIG), NULL)), "signed message", "2 items")


@pytest.mark.parametrize(
    "kind",
    [enc(0), enc(10), enc(255), enc(2**64 - 1), enc(-1), enc("1"), enc(b"\x01"), NULL],
    ids=["0", "10", "255", "2**64-1", "-1", "text", "bytes", "null"],
)
def test_unknown_frame_type_refused(kind: bytes) -> None:
    refuse_frame(arr(kind, enc("x")), "unknown frame type")


def test_empty_or_non_array_frame_refused() -> None:
    refuse_frame(arr(), "empty")
    refuse_frame(enc({"type": 7}), "frame", "array")
    refuse_frame(enc(7), "frame", "array")
    refuse_frame(b"", "empty")


def test_payload_must_be_an_array() -> None:
    refuse_payload(enc({"seq": 1}), "message", "array")


def test_unsupported_payload_version_refused() -> None:
    refuse_payload(payload(version=enc(PAYLOAD_VERSION + 1)), "version", str(PAYLOAD_VERSION + 1))
    refuse_payload(payload(version=enc(0)), "version")


@pytest.mark.parametrize(
    "deps", [NULL, arr(), arr(enc(BOB.sender_id), enc(1)), enc(0)], ids=["null", "array", "pairs", "int"]
)
def test_payload_without_deps_map_refused(deps: bytes) -> None:
    """The vector clock is mandatory (there is no plain mode any more): null, as a
    version-1 plain message had, is refused like any other non-map."""
    refuse_payload(payload(deps=deps), "message deps", "expected a map")


def test_version_1_payload_is_refused() -> None:
    """The layout before rooms and entry kinds: eight fields, text in place of kind and body."""
    old = arr(enc(1), enc(ALICE.sender_id), enc(1), enc(1), enc(0), enc("alice"), enc("hi"), NULL)
    refuse_payload(old, "unsupported payload version 1")
    refuse_payload(payload(version=enc(1)), "version", "1")


def test_version_2_payload_is_refused() -> None:
    """The layout before hash chains: nine fields, no previous entry's hash."""
    old = arr(enc(2), *(VALID_PAYLOAD[f] for f in PAYLOAD_FIELDS[1:9]))
    refuse_payload(old, "unsupported payload version 2")
    refuse_payload(payload(version=enc(2)), "version", "2")


def legacy_payload(**raw: bytes) -> bytes:
    """A payload of version 3 (ten fields: no seen digest), valid except for ``raw``."""
    fields = {**VALID_PAYLOAD, "version": enc(LEGACY_PAYLOAD_VERSION), **raw}
    return arr(*(fields[name] for name in PAYLOAD_FIELDS if name != "seen"))


def test_version_3_payload_is_still_read_and_names_no_versions() -> None:
    """The layout before seen digests (an old data directory's entries): ten fields, read
    with ``seen`` None; with an eleventh it is refused, as a version-4 payload with ten."""
    deps = cmap((enc(BOB.sender_id), enc(2)))
    assert legacy_payload(deps=deps).startswith(b"\x8a\x03")  # (an array of 10, then 3)
    old = Message.from_wire(legacy_payload(deps=deps), SIG)
    assert (old.seen, dict(old.deps), old.text) == (None, {BOB.sender_id: 2}, "hi")
    assert Message.from_wire(payload(), SIG).seen == b""
    assert Message.from_wire(payload(deps=deps, seen=bstr(SEEN)), SIG).seen == SEEN
    refuse_payload(payload(version=enc(3)), "payload version 3 has 10 fields, not 11")
    refuse_payload(legacy_payload(version=enc(PAYLOAD_VERSION)), "payload version 4 has 11 fields, not 10")


@pytest.mark.parametrize(
    ("deps", "seen", "words"),
    [
        (cmap((enc(BOB.sender_id), enc(2))), bstr(SEEN[:15]), ("message seen", "expected 16 bytes, got 15")),
        (
            cmap((enc(BOB.sender_id), enc(2))),
            bstr(SEEN + b"x"),
            ("message seen", "expected 16 bytes, got 17"),
        ),
        (cmap((enc(BOB.sender_id), enc(2))), bstr(b""), ("message seen", "expected 16 bytes, got 0")),
        (cmap(), bstr(SEEN), ("message seen", "expected 0 bytes, got 16")),
        (cmap((enc(BOB.sender_id), enc(2))), enc("s" * LINK_SIZE), ("message seen", "byte string", "str")),
        (cmap((enc(BOB.sender_id), enc(2))), NULL, ("message seen", "byte string")),
    ],
    ids=["short", "long", "missing", "without-deps", "text", "null"],
)
def test_seen_is_16_bytes_exactly_when_deps_name_entries(
    deps: bytes, seen: bytes, words: tuple[str, ...]
) -> None:
    refuse_payload(payload(deps=deps, seen=seen), *words)


@pytest.mark.parametrize(
    ("seq", "previous", "why"),
    [
        (1, b"\x01" * LINK_SIZE, "expected 0 bytes, got 16"),
        (2, b"", "expected 16 bytes, got 0"),
        (2, b"\x01" * (LINK_SIZE - 1), "expected 16 bytes, got 15"),
        (2, b"\x01" * 32, "expected 16 bytes, got 32"),
    ],
    ids=["seq-1-with-link", "seq-2-without", "short-link", "long-link"],
)
def test_previous_is_empty_exactly_at_seq_1_and_a_link_after(seq: int, previous: bytes, why: str) -> None:
    refuse_payload(payload(seq=enc(seq), previous=enc(previous)), "message previous", why)
    refuse_payload(payload(seq=enc(2), previous=NULL), "message previous", "expected a byte string")
    with pytest.raises(ValueError, match="previous"):
        Message.create(
            ALICE,
            seq=seq,
            lamport=1,
            sent_at_ms=0,
            name="a",
            text="b",
            deps={},
            room_id=ROOM,
            previous=previous,
        )


# Strictness: sizes ---------------------------------------------------------------------


def test_oversize_frame_refused_before_parsing() -> None:
    refuse_frame(b"\x00" * (wire.MAX_FRAME_BYTES + 1), "over the limit", str(wire.MAX_FRAME_BYTES))
    big_bye = arr(enc(wire.BYE), enc("x" * wire.MAX_FRAME_BYTES))
    refuse_frame(big_bye, "over the limit")


def test_frame_at_size_limit_is_parsed() -> None:
    # Exactly at the limit the size check passes and the parser reports the real problem.
    refuse_frame(arr() + b"\x00" * (wire.MAX_FRAME_BYTES - 1), "trailing")


@pytest.mark.parametrize(
    "text, accepted",
    [
        ("x" * MAX_TEXT_BYTES, True),
        ("x" * (MAX_TEXT_BYTES + 1), False),
        ("\U0001f600" * (MAX_TEXT_BYTES // 4), True),
        ("\U0001f600" * (MAX_TEXT_BYTES // 4 + 1), False),  # few characters, many bytes
        ("é" * (MAX_TEXT_BYTES // 2) + "x", False),
    ],
    ids=["ascii-at-limit", "ascii-over", "emoji-at-limit", "emoji-over", "two-byte-over"],
)
def test_text_size_limit_counts_utf8_bytes(text: str, accepted: bool) -> None:
    data = payload(body=enc(text))
    if accepted:
        assert Message.from_wire(data, SIG).text == text
    else:
        refuse_payload(data, "text", "over the limit", str(MAX_TEXT_BYTES))


def test_oversize_name_refused() -> None:
    assert Message.from_wire(payload(name=enc("n" * MAX_NAME_BYTES)), SIG).name
    refuse_payload(payload(name=enc("n" * (MAX_NAME_BYTES + 1))), "name", "over the limit")
    refuse_payload(payload(name=enc("ñ" * 33)), "name", "over the limit")
    refuse_frame(auth(name=enc("n" * (MAX_NAME_BYTES + 1))), "auth name", "over the limit")


def test_oversize_url_and_reason_refused() -> None:
    long_url = enc("u" * (wire.MAX_URL_BYTES + 1))
    refuse_frame(auth(url=long_url), "url", "over the limit")
    refuse_frame(arr(enc(wire.PEERS), arr(long_url)), "url", "over the limit")
    refuse_frame(bye(enc("r" * (wire.MAX_REASON_BYTES + 1))), "bye reason", "over the limit")


def test_oversize_payload_refused() -> None:
    big = payload(body=enc("x" * (wire.MAX_MESSAGE_PAYLOAD + 1)))
    refuse_frame(messages_frame(signed(big)), "message payload", "over the limit")


def test_too_many_items_refused() -> None:
    junk = arr(bstr(b""), bstr(b""))
    refuse_frame(messages_frame(*[junk] * (wire.MAX_BATCH + 1)), "messages batch", "over the limit")
    refuse_frame(heads_frame(arr(*[head_item()] * (wire.MAX_HEADS + 1))), "heads", "limit")
    refuse_frame(want_frame(*[want_range()] * (wire.MAX_WANTS + 1)), "want ranges", "limit")
    refuse_frame(arr(enc(wire.PEERS), arr(*[enc("ws://a")] * (wire.MAX_PEERS + 1))), "limit")
    many_deps = cmap(*((enc(n.to_bytes(32, "big")), enc(1)) for n in range(MAX_DEPS + 1)))
    refuse_payload(payload(deps=many_deps), "deps", "over the limit")


def test_wrong_size_signature_and_nonce_refused() -> None:
    with pytest.raises(CodecError, match="signature: expected 64 bytes, got 63"):
        Message.from_wire(payload(), SIG[:-1])
    refuse_frame(messages_frame(signed(payload(), SIG + b"\x00")), "signature", "64 bytes")
    refuse_frame(auth(signature=bstr(SIG[:-1])), "auth signature", "64 bytes")
    refuse_frame(hello(nonce=bstr(bytes(15))), "nonce", "16 bytes")


# Strictness: numeric ranges ---------------------------------------------------------------


def test_lamport_at_most_2_pow_63_minus_1() -> None:
    assert Message.from_wire(payload(lamport=enc(MAX_LAMPORT)), SIG).lamport == MAX_LAMPORT
    refuse_payload(payload(lamport=enc(2**63)), "lamport", str(2**63), "outside")
    refuse_payload(payload(lamport=enc(2**64 - 1)), "lamport", "outside")
    refuse_frame(heads_frame(arr(head_item(clock_lamport=enc(2**63)))), "clock_lamport", "outside")


def test_lamport_zero_and_negative_refused() -> None:
    refuse_payload(payload(lamport=enc(0)), "lamport", "outside")
    refuse_payload(payload(lamport=enc(-1)), "lamport", "outside")
    refuse_payload(payload(lamport=enc(-(2**64))), "lamport", "outside")


def test_seq_zero_refused() -> None:
    refuse_payload(payload(seq=enc(0)), "message seq", "outside")
    refuse_payload(payload(deps=cmap((enc(BOB.sender_id), enc(0)))), "deps seq", "outside")
    refuse_frame(want_frame(want_range(first=enc(0))), "want first", "outside")


def test_seq_above_2_pow_63_minus_1_refused() -> None:
    refuse_payload(payload(seq=enc(2**63)), "message seq", "outside")
    refuse_frame(heads_frame(arr(head_item(held=enc(2**63)))), "held_seq", "outside")


def test_want_range_must_not_be_reversed() -> None:
    refuse_frame(want_frame(want_range(first=enc(5), last=enc(4))), "want last", "outside")


def test_negative_sent_at_and_far_future_refused() -> None:
    refuse_payload(payload(sent_at=enc(-1)), "sent_at", "outside")
    refuse_payload(payload(sent_at=enc(MAX_SENT_AT_MS + 1)), "sent_at", "outside")


def test_hello_version_range() -> None:
    refuse_frame(hello(version=enc(2**16 + 1)), "hello version", "outside")
    refuse_frame(hello(version=enc(-1)), "hello version", "outside")


@pytest.mark.parametrize("size", [0, 31, 33, 64])
def test_sender_id_wrong_length_refused(size: int) -> None:
    wrong = enc(b"\x07" * size)
    words = ("expected 32 bytes", f"got {size}")
    refuse_payload(payload(sender=wrong), "message sender", *words)
    refuse_payload(payload(deps=cmap((wrong, enc(1)))), "deps sender", *words)
    refuse_frame(hello(sender=wrong), "hello sender", *words)
    refuse_frame(heads_frame(arr(head_item(sender=wrong))), "head sender", *words)
    refuse_frame(want_frame(want_range(sender=wrong)), "want sender", *words)


def test_sender_id_as_text_refused() -> None:
    refuse_payload(payload(sender=enc("a" * 32)), "message sender", "byte string", "str")


# Creating messages --------------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"seq": 0},
        {"lamport": 0},
        {"lamport": MAX_LAMPORT + 1},
        {"text": "x" * (MAX_TEXT_BYTES + 1)},
        {"name": "n" * (MAX_NAME_BYTES + 1)},
        {"sent_at_ms": -1},
        {"deps": {b"\x01" * 31: 1}},
        {"deps": {BOB.sender_id: MAX_SEQ + 1}},
        {"deps": {n.to_bytes(32, "big"): 1 for n in range(MAX_DEPS + 1)}},
        {"kind": EntryKind.CHANGE},
        {"kind": EntryKind.TEXT, "change": Change(0, 0, (), (BOB.sender_id,))},
        {"kind": EntryKind.LEAVE, "flush": Flush(0, 0, MessageId(BOB.sender_id, 1))},
        {"kind": EntryKind.CHANGE, "change": Change(0, 0, ((BOB.sender_id, "n" * (MAX_NAME_BYTES + 1)),))},
        {"kind": EntryKind.CHANGE, "change": Change(0, 0)},
        {"kind": EntryKind.CHANGE, "change": Change(0, 0, ((BOB.sender_id, "b"),), (BOB.sender_id,))},
        {"kind": EntryKind.CHANGE, "change": Change(0, 0, (), (BOB.sender_id[:31],))},
        {"kind": EntryKind.FLUSH, "flush": Flush(0, 0, MessageId(BOB.sender_id, 1)), "text": "x"},
        {"kind": EntryKind.GENESIS, "text": "r" * (MAX_NAME_BYTES + 1)},
    ],
    ids=[
        "seq-0",
        "lamport-0",
        "lamport-over",
        "text-over",
        "name-over",
        "sent-at",
        "deps-key",
        "deps-seq-over",
        "too-many-deps",
        "change-without-body",
        "text-with-change",
        "leave-with-flush",
        "admit-name-over",
        "empty-change",
        "admit-and-remove-one",
        "short-removed-id",
        "flush-with-text",
        "room-name-over",
    ],
)
def test_create_refuses_what_the_wire_would_refuse(change: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "seq": 1,
        "lamport": 1,
        "sent_at_ms": 0,
        "name": "alice",
        "text": "hi",
        "deps": {},
        "room_id": ROOM,
    }
    fields.update(change)
    with pytest.raises(ValueError):
        Message.create(ALICE, **fields)  # type: ignore[arg-type]


@given(signed_messages())
def test_created_message_is_exactly_what_receivers_decode(message: Message) -> None:
    """Message.create builds its fields directly; they must match the signed payload."""
    assert Message.from_wire(message.payload, message.signature) == message
    assert message.verify(ROOM)


def test_create_with_the_most_deps_allowed_is_decodable() -> None:
    deps = {n.to_bytes(32, "big"): 1 for n in range(1, MAX_DEPS + 1)}
    message = Message.create(
        ALICE, seq=1, lamport=2, sent_at_ms=0, name="a", text="b", deps=deps, room_id=ROOM
    )
    assert Message.from_wire(message.payload, message.signature) == message


@pytest.mark.parametrize(
    ("link", "held"),
    [(bstr(LINK[:15]), enc(3)), (bstr(LINK + b"x"), enc(3)), (bstr(LINK), enc(0)), (enc("x" * 16), enc(3))],
    ids=["short", "long", "for-seq-0", "text"],
)
def test_head_link_is_16_bytes_or_none_and_none_for_seq_0(link: bytes, held: bytes) -> None:
    refuse_frame(heads_frame(arr(head_item(held=held, link=link))), "head link")


def test_a_head_without_a_link_makes_no_claim() -> None:
    frame = wire.decode_frame(heads_frame(arr(head_item(link=bstr(b"")))))
    assert isinstance(frame, wire.Heads) and frame.heads[0].link == b""


def test_head_signature_must_be_empty_or_64_bytes_and_present_with_a_clock() -> None:
    refuse_frame(heads_frame(arr(head_item(signature=bstr(b"\x01" * 63)))), "head signature", "63")
    refuse_frame(heads_frame(arr(head_item(signature=bstr(b"")))), "without a signature")
    unsigned = wire.Heads((wire.Head(BOB.sender_id, 3),))
    assert wire.decode_frame(wire.encode_frame(unsigned)) == unsigned


def test_a_head_without_announcement_may_name_one_by_an_8_byte_digest() -> None:
    bare = {"clock_seq": enc(0), "clock_lamport": enc(0), "delivered": arr(), "at_ms": enc(0)}
    frame = wire.decode_frame(heads_frame(arr(head_item(signature=bstr(SIG[:8]), **bare))))
    assert isinstance(frame, wire.Heads)
    (head,) = frame.heads
    assert (head.digest, head.signature) == (SIG[:8], b"")
    refuse_frame(heads_frame(arr(head_item(signature=bstr(SIG[:9]), **bare))), "head signature", "9")
    # A digest is no signature: a clock beside it is an unsigned announcement.
    for field in bare:
        fields = {**bare, field: arr(enc(CAROL.sender_id), enc(2)) if field == "delivered" else enc(5)}
        refuse_frame(heads_frame(arr(head_item(signature=bstr(SIG[:8]), **fields))), "without a signature")


# Entry kinds and their bodies ----------------------------------------------------------

GENESIS, CHANGE, LEAVE, AWAY, FLUSH = (
    enc(int(k))
    for k in (EntryKind.GENESIS, EntryKind.CHANGE, EntryKind.LEAVE, EntryKind.AWAY, EntryKind.FLUSH)
)


def genesis_body(room_name: bytes = enc("room"), policy: bytes = enc(int(RoomPolicy.OPEN))) -> bytes:
    return arr(room_name, policy)


NO_TAILS = arr()
"""An answer's tails when the change removes nobody."""


def change_body(
    epoch: bytes = enc(3),
    round_: bytes = enc(1),
    admitted: bytes | None = None,
    removed: bytes | None = None,
    tails: bytes | None = NO_TAILS,
) -> bytes:
    """A CHANGE body, of five items; of four with ``tails`` None (as payload version 3
    had)."""
    items = [
        epoch,
        round_,
        admitted if admitted is not None else arr(arr(enc(BOB.sender_id), enc("bob"))),
        removed if removed is not None else arr(enc(ALICE.sender_id)),
    ]
    return arr(*items, *([tails] if tails is not None else []))


def flush_body(
    epoch: bytes = enc(3),
    round_: bytes = enc(1),
    sender: bytes | None = None,
    seq: bytes = enc(9),
    tails: bytes | None = NO_TAILS,
) -> bytes:
    """A FLUSH (or COMMIT) body, of five items; of four with ``tails`` None."""
    items = [epoch, round_, sender if sender is not None else enc(BOB.sender_id), seq]
    return arr(*items, *([tails] if tails is not None else []))


def test_hand_built_entries_of_every_kind_are_accepted() -> None:
    """Control for the body refusals below."""
    genesis = Message.from_wire(payload(kind=GENESIS, body=genesis_body()), SIG)
    assert (genesis.kind, genesis.text, genesis.policy, genesis.change) == (
        EntryKind.GENESIS,
        "room",
        RoomPolicy.OPEN,
        None,
    )
    change = Message.from_wire(payload(kind=CHANGE, body=change_body()), SIG)
    assert (change.kind, change.change, change.text) == (
        EntryKind.CHANGE,
        Change(3, 1, ((BOB.sender_id, "bob"),), (ALICE.sender_id,)),
        "",
    )
    flush = Message.from_wire(payload(kind=FLUSH, body=flush_body()), SIG)
    assert (flush.kind, flush.flush) == (EntryKind.FLUSH, Flush(3, 1, MessageId(BOB.sender_id, 9)))
    for kind, raw in ((EntryKind.LEAVE, LEAVE), (EntryKind.AWAY, AWAY)):
        exit_entry = Message.from_wire(payload(kind=raw, body=enc("bye")), SIG)
        assert (exit_entry.kind, exit_entry.text, exit_entry.change) == (kind, "bye", None)
    text = Message.from_wire(payload(), SIG)
    assert (text.kind, text.text, text.change, text.flush) == (EntryKind.TEXT, "hi", None, None)


@pytest.mark.parametrize(
    "raw",
    [enc(7), enc(255), enc(2**64 - 1), enc(-1), TRUE, HALF_ONE, enc("0"), enc(b"\x00"), NULL, arr()],
    ids=["7", "255", "2**64-1", "-1", "true", "float", "text", "bytes", "null", "array"],
)
def test_unknown_or_ill_typed_kind_refused(raw: bytes) -> None:
    refuse_payload(payload(kind=raw), "message kind")


@pytest.mark.parametrize(
    "kind",
    [enc(int(EntryKind.TEXT)), LEAVE, AWAY],
    ids=["text", "leave", "away"],
)
@pytest.mark.parametrize(
    "body, words",
    [
        (enc(b"hi"), ("message text", "text", "bytes")),
        (enc(7), ("message text", "text", "int")),
        (NULL, ("message text", "text")),
        (arr(enc("hi")), ("message text", "text", "list")),
        (genesis_body(), ("message text", "text", "list")),
        (enc("x" * (MAX_TEXT_BYTES + 1)), ("message text", "over the limit")),
    ],
    ids=["bytes", "int", "null", "array", "genesis-shaped", "over"],
)
def test_text_leave_and_away_bodies_must_be_bounded_text(
    kind: bytes, body: bytes, words: tuple[str, ...]
) -> None:
    assert Message.from_wire(payload(kind=kind, body=enc("x" * MAX_TEXT_BYTES)), SIG)  # control
    refuse_payload(payload(kind=kind, body=body), *words)


@pytest.mark.parametrize(
    "body, words",
    [
        (enc("room"), ("genesis body", "array", "str")),
        (cmap((enc("name"), enc("room"))), ("genesis body", "array", "dict")),
        (arr(enc("room")), ("genesis body", "expected 2 or 3 items, got 1")),
        (arr(enc("room"), enc(0), enc(0)), ("room rules", "outside")),
        (arr(enc("room"), enc(0), enc(1)), ("room rules", "outside")),
        (arr(enc("room"), enc(0), enc(ROOM_RULES + 1)), ("room rules", "outside")),
        (arr(enc("room"), enc(0), TRUE), ("room rules", "integer", "bool")),
        (arr(enc("room"), enc(0), enc(2), enc(0)), ("genesis body", "expected 2 or 3 items, got 4")),
        (genesis_body(room_name=enc(b"room")), ("room name", "text", "bytes")),
        (genesis_body(room_name=NULL), ("room name", "text")),
        (genesis_body(room_name=enc("r" * (MAX_NAME_BYTES + 1))), ("room name", "over the limit")),
        (genesis_body(room_name=enc("é" * (MAX_NAME_BYTES // 2 + 1))), ("room name", "over the limit")),
        (genesis_body(policy=enc(max(RoomPolicy) + 1)), ("room policy", "outside")),
        (genesis_body(policy=enc(-1)), ("room policy", "outside")),
        (genesis_body(policy=enc(2**64 - 1)), ("room policy", "outside")),
        (genesis_body(policy=FALSE), ("room policy", "integer", "bool")),
        (genesis_body(policy=HALF_ONE), ("room policy", "integer", "float")),
        (genesis_body(policy=NULL), ("room policy", "integer")),
        (genesis_body(policy=enc("open")), ("room policy", "integer", "str")),
    ],
    ids=[
        "text",
        "map",
        "1-item",
        "rules-0",
        "rules-1-named",
        "rules-above",
        "rules-bool",
        "4-items",
        "name-bytes",
        "name-null",
        "name-over",
        "name-over-utf8",
        "policy-above",
        "policy-negative",
        "policy-huge",
        "policy-bool",
        "policy-float",
        "policy-null",
        "policy-text",
    ],
)
def test_genesis_body_strictness(body: bytes, words: tuple[str, ...]) -> None:
    assert Message.from_wire(payload(kind=GENESIS, body=genesis_body(enc("r" * MAX_NAME_BYTES))), SIG)
    refuse_payload(payload(kind=GENESIS, body=body), *words)


def test_a_genesis_names_the_rules_its_room_was_founded_with() -> None:
    # Two items: a room founded before protocol 11 (rules 1); three: the rules named.
    old = Message.from_wire(payload(kind=GENESIS, body=genesis_body()), SIG)
    named = Message.from_wire(payload(kind=GENESIS, body=arr(enc("room"), enc(0), enc(ROOM_RULES))), SIG)
    assert (old.rules, named.rules) == (1, ROOM_RULES)
    for rules in (1, ROOM_RULES):
        _, genesis = OrderedLog.found(ALICE, name="a", room_name="room", sent_at_ms=0, rules=rules)
        assert genesis.rules == rules
        assert Message.from_wire(genesis.payload, genesis.signature).rules == rules
    with pytest.raises(ValueError, match="rules"):
        OrderedLog.found(ALICE, name="a", room_name="room", sent_at_ms=0, rules=ROOM_RULES + 1)


@pytest.mark.parametrize("size", [0, 1, 31, 33, 64])
def test_change_and_flush_ids_must_be_32_bytes(size: int) -> None:
    short = enc(b"\x07" * size)
    refuse_payload(payload(kind=CHANGE, body=change_body(admitted=arr(arr(short, enc("b"))))), "admitted id")
    refuse_payload(payload(kind=CHANGE, body=change_body(removed=arr(short))), "removed id")
    refuse_payload(payload(kind=FLUSH, body=flush_body(sender=short)), "flushed change sender")


@pytest.mark.parametrize(
    "body, words",
    [
        (enc(BOB.sender_id), ("change body", "array", "bytes")),
        (arr(enc(0), enc(0), arr()), ("change body", "expected 5 items, got 3")),
        (change_body(epoch=enc(-1)), ("change epoch",)),
        (change_body(epoch=TRUE), ("change epoch", "bool")),
        (change_body(round_=HALF_ONE), ("change round", "float")),
        (change_body(admitted=arr(), removed=arr()), ("change", "1 to")),
        (change_body(admitted=arr(arr(enc(BOB.sender_id)))), ("admitted member", "expected 2 items")),
        (change_body(admitted=arr(arr(enc(BOB.sender_id), enc(b"bob")))), ("admitted name", "bytes")),
        (
            change_body(admitted=arr(arr(enc(BOB.sender_id), enc("n" * (MAX_NAME_BYTES + 1))))),
            ("admitted name", "over the limit"),
        ),
        (change_body(removed=arr(enc(BOB.sender_id))), ("change", "distinct")),
        (change_body(removed=arr(enc(ALICE.sender_id), enc(ALICE.sender_id))), ("change", "distinct")),
        (change_body(removed=enc(ALICE.sender_id)), ("removed members", "array")),
    ],
    ids=[
        "bytes",
        "3-items",
        "epoch-negative",
        "epoch-bool",
        "round-float",
        "empty",
        "pair-short",
        "name-bytes",
        "name-over",
        "admit-and-remove",
        "removed-twice",
        "removed-not-array",
    ],
)
def test_change_body_strictness(body: bytes, words: tuple[str, ...]) -> None:
    assert Message.from_wire(payload(kind=CHANGE, body=change_body()), SIG)  # control
    refuse_payload(payload(kind=CHANGE, body=body), *words)


@pytest.mark.parametrize(
    "body, words",
    [
        (enc("flush"), ("flush body", "array", "str")),
        (arr(enc(0), enc(0), enc(BOB.sender_id)), ("flush body", "expected 5 items, got 3")),
        (flush_body(seq=enc(0)), ("flushed change seq",)),
        (flush_body(seq=FALSE), ("flushed change seq", "bool")),
        (flush_body(epoch=NULL), ("flush epoch",)),
        (flush_body(round_=enc("1")), ("flush round", "str")),
    ],
    ids=["text", "3-items", "seq-0", "seq-bool", "epoch-null", "round-text"],
)
def test_flush_body_strictness(body: bytes, words: tuple[str, ...]) -> None:
    assert Message.from_wire(payload(kind=FLUSH, body=flush_body()), SIG)  # control
    refuse_payload(payload(kind=FLUSH, body=body), *words)


def tail(member: bytes = ALICE.sender_id, count: int = 2, size: int = LINK_SIZE) -> bytes:
    """A removed member's tail: ``count`` links of ``size`` bytes."""
    return arr(enc(member), arr(*(enc(bytes([i % 256]) * size) for i in range(count))))


def test_answers_name_the_removed_members_last_versions() -> None:
    """A CHANGE and a FLUSH carry tails as a fifth item (an entry of payload version 3 did
    not: four items are read as none)."""
    change = Message.from_wire(payload(kind=CHANGE, body=change_body(tails=arr(tail()))), SIG)
    assert change.change is not None and change.change.tails == (
        Tail(ALICE.sender_id, (bytes(16), bytes([1]) * 16), 0),
    )
    flush = Message.from_wire(
        payload(kind=FLUSH, body=arr(enc(3), enc(1), enc(BOB.sender_id), enc(9), arr(tail()))), SIG
    )
    assert flush.flush is not None and flush.flush.tails == change.change.tails


@pytest.mark.parametrize("kind", ["change", "flush"])
def test_an_answer_has_tails_exactly_where_its_payload_version_has_them(kind: str) -> None:
    """Version 4 bodies carry tails as a fifth item, always (empty when nobody is
    removed); version 3 bodies never did: each refuses the other's shape."""
    raw, make = (CHANGE, change_body) if kind == "change" else (FLUSH, flush_body)
    assert Message.from_wire(payload(kind=raw, body=make()), SIG)
    assert Message.from_wire(legacy_payload(kind=raw, body=make(tails=None)), SIG).legacy
    refuse_payload(payload(kind=raw, body=make(tails=None)), f"{kind} body", "expected 5 items, got 4")
    refuse_payload(legacy_payload(kind=raw, body=make()), f"{kind} body", "expected 4 items, got 5")


def answering(tails: bytes, kind: bytes = FLUSH) -> bytes:
    return payload(kind=kind, body=arr(enc(3), enc(1), enc(BOB.sender_id), enc(9), tails))


@pytest.mark.parametrize(
    "body, words",
    [
        (answering(enc(b"")), ("tails", "array")),
        (answering(arr(tail(count=0))), ("tails", "1 to 256 links")),
        (answering(arr(tail(count=257))), ("tail links", "over the limit")),
        (answering(arr(tail(size=15))), ("tail link", "expected 16 bytes")),
        (answering(arr(tail(), tail())), ("tails", "distinct")),
        (answering(arr(arr(enc(ALICE.sender_id)))), ("tail", "expected 2 or 3 items")),
        (answering(arr(tail()), kind=enc(int(EntryKind.COMMIT))), ("commit", "no tails")),
        (
            payload(kind=CHANGE, body=change_body(tails=arr(tail(member=CAROL.sender_id)))),
            ("change", "members it removes"),
        ),
    ],
    ids=[
        "not-array",
        "no-links",
        "257-links",
        "short-link",
        "twice",
        "tail-short",
        "commit",
        "not-removed",
    ],
)
def test_tails_strictness(body: bytes, words: tuple[str, ...]) -> None:
    assert Message.from_wire(answering(arr(tail())), SIG)  # control
    refuse_payload(body, *words)


def test_a_tail_may_name_up_to_256_links() -> None:
    """Since protocol 10 a tail runs from the removed member's first entry not stable at
    the answer's author (see OrderedLog._tails): up to 256 links, where it was 16. (All
    the tails of an entry together are bounded by the payload's 64 KiB.)"""
    longest = Message.from_wire(answering(arr(tail(count=256), tail(BOB.sender_id, count=256))), SIG)
    assert longest.flush is not None and [len(t.links) for t in longest.flush.tails] == [256, 256]


def test_a_tail_says_how_many_of_its_links_name_stable_entries() -> None:
    """Since protocol 10 a tail has a third item: how many of its first links name
    entries stable at the answer's author (see membership._checked_versions); a tail
    of two items (an entry written before) says none, and more than its links, a
    negative count or a fourth item are refused."""
    links = arr(*(enc(bytes([i]) * LINK_SIZE) for i in range(3)))
    said = Message.from_wire(answering(arr(arr(enc(ALICE.sender_id), links, enc(2)))), SIG).flush
    assert said is not None and said.tails[0].stable == 2
    unsaid = Message.from_wire(answering(arr(tail(count=3))), SIG).flush
    assert unsaid is not None and unsaid.tails[0].stable == 0
    refuse_payload(answering(arr(arr(enc(ALICE.sender_id), links, enc(4)))), "tails", "stable entries")
    refuse_payload(answering(arr(arr(enc(ALICE.sender_id), links, enc(-1)))), "tail stable count")
    refuse_payload(answering(arr(arr(enc(ALICE.sender_id), links, enc(1), enc(1)))), "tail")


@pytest.mark.parametrize(
    "kind, body",
    [
        (enc(int(EntryKind.TEXT)), genesis_body()),
        (enc(int(EntryKind.TEXT)), change_body()),
        (GENESIS, enc("room")),
        (GENESIS, change_body()),
        (CHANGE, genesis_body()),
        (CHANGE, enc("bob")),
        (CHANGE, flush_body()),
        (FLUSH, change_body()),
        (LEAVE, change_body()),
        (AWAY, genesis_body()),
    ],
    ids=[
        "text-genesis-body",
        "text-change-body",
        "genesis-text-body",
        "genesis-change-body",
        "change-genesis-body",
        "change-text-body",
        "change-flush-body",
        "flush-change-body",
        "leave-change-body",
        "away-genesis-body",
    ],
)
def test_body_of_another_kind_refused(kind: bytes, body: bytes) -> None:
    """The kind decides the body's shape; a body shaped for another kind is an error."""
    refuse_payload(payload(kind=kind, body=body), "expected")


def test_body_nesting_within_payload_depth() -> None:
    """A body array is the payload's second level; a change's tails' links are the fifth
    and last allowed, and anything nested deeper is refused by the depth limit."""
    refuse_payload(payload(kind=GENESIS, body=arr(arr(enc("room")), enc(0))), "room name", "list")
    deep = arr(arr(arr(arr(enc(BOB.sender_id))), enc("bob")))
    refuse_payload(payload(kind=CHANGE, body=change_body(admitted=deep)), "depth")


@given(signed_messages())
def test_every_kind_round_trips_through_a_frame_and_verifies(message: Message) -> None:
    event(message.kind.name)
    assert_round_trip(wire.Messages((message,)))
    frame = wire.decode_frame(wire.encode_frame(wire.Messages((message,))))
    assert isinstance(frame, wire.Messages)
    (decoded,) = frame.messages
    assert (decoded.kind, decoded.change, decoded.flush, decoded.policy, decoded.text) == (
        message.kind,
        message.change,
        message.flush,
        message.policy,
        message.text,
    )
    assert decoded.verify(ROOM)


# The room in HELLO -------------------------------------------------------------------------


@pytest.mark.parametrize("room", [b"", ROOM], ids=["none-yet", "32-bytes"])
def test_auth_room_of_0_or_32_bytes_accepted(room: bytes) -> None:
    frame = wire.decode_frame(auth(room=enc(room)))
    assert isinstance(frame, wire.Auth)
    assert frame.room_id == room
    assert_round_trip(frame)


def test_auth_says_leaving_in_a_seventh_field_only_when_leaving() -> None:
    # Every other AUTH has the six fields a peer of the release before reads.
    staying = wire.Auth(SIG, "alice", None, ROOM)
    assert len(cbor2.loads(wire.encode_frame(staying))) == 1 + 6
    leaving = replace(staying, leaving=True)
    assert cbor2.loads(wire.encode_frame(leaving))[1:] == [*cbor2.loads(wire.encode_frame(staying))[1:], True]
    assert_round_trip(leaving)
    frame = wire.decode_frame(auth(TRUE))
    assert isinstance(frame, wire.Auth) and frame.leaving
    for seventh in (FALSE, enc(1), NULL):  # (true or nothing)
        refuse_frame(auth(seventh), "auth", "6 fields")
    refuse_frame(auth(TRUE, TRUE), "auth", "6 fields")


@pytest.mark.parametrize("size", [1, 16, 31, 33, 64])
def test_auth_room_of_another_size_refused(size: int) -> None:
    refuse_frame(auth(room=enc(b"\x07" * size)), "auth room")


@pytest.mark.parametrize(
    "raw, words",
    [
        (enc("r" * ROOM_ID_SIZE), ("auth room", "byte string", "str")),
        (NULL, ("auth room", "byte string")),
        (UNDEFINED, ("auth room", "byte string")),
        (enc(0), ("auth room", "byte string", "int")),
        (arr(enc(ROOM)), ("auth room", "byte string", "list")),
        (tag(2, bstr(ROOM)), ("tag",)),
        (b"\x5f" + bstr(ROOM[:16]) + bstr(ROOM[16:]) + b"\xff", ("indefinite",)),
    ],
    ids=["text", "null", "undefined", "int", "array", "tagged", "indefinite"],
)
def test_auth_room_must_be_a_byte_string(raw: bytes, words: tuple[str, ...]) -> None:
    refuse_frame(auth(room=raw), *words)


def test_frames_of_older_layouts_refused() -> None:
    """A protocol-2 HELLO (seven fields, name and heads in clear) and an AUTH without the
    invite field are decode errors, not frames with fields missing."""
    old_hello = [wire.HELLO, 2, ALICE.sender_id, "alice", None, bytes(16), [], ROOM]
    refuse_frame(cbor2.dumps(old_hello), "hello", "expected 4 fields, got 7")
    five_fields = cbor2.loads(auth())[:-1]
    refuse_frame(cbor2.dumps(five_fields), "auth", "expected 6 fields, got 5")


def test_auth_invite_of_0_or_16_bytes() -> None:
    frame = wire.decode_frame(auth(invite=enc(b"\x01" * 16)))
    assert isinstance(frame, wire.Auth) and frame.invite == b"\x01" * 16
    refuse_frame(auth(invite=enc(b"\x01" * 15)), "auth invite")
    refuse_frame(auth(pristine=enc(0)), "auth pristine", "boolean")


def test_create_signs_under_room_and_genesis_under_no_room() -> None:
    """The room is not in the payload: the same fields make the same payload in every room,
    and only the signature tells the rooms apart. A genesis verifies wherever it is read."""
    fields: dict[str, object] = {
        "seq": 2,
        "lamport": 5,
        "sent_at_ms": 0,
        "name": "a",
        "text": "t",
        "deps": {},
        "previous": b"\x02" * LINK_SIZE,
    }
    here = Message.create(ALICE, room_id=ROOM, **fields)  # type: ignore[arg-type]
    there = Message.create(ALICE, room_id=bytes(ROOM_ID_SIZE), **fields)  # type: ignore[arg-type]
    assert here.payload == there.payload
    assert here.signature != there.signature
    assert here.verify(ROOM) and not here.verify(bytes(ROOM_ID_SIZE))
    assert there.verify(bytes(ROOM_ID_SIZE)) and not there.verify(ROOM)
    genesis = Message.create(ALICE, room_id=ROOM, kind=EntryKind.GENESIS, **fields)  # type: ignore[arg-type]
    assert genesis.verify(ROOM) and genesis.verify(b"") and genesis.verify(genesis.room_id())
    assert len(genesis.room_id()) == ROOM_ID_SIZE


@pytest.mark.parametrize(
    "delivered, words",
    [
        (cmap((enc(CAROL.sender_id), enc(2))), ("head delivered", "array")),
        (arr(enc(CAROL.sender_id)), ("head delivered", "odd number")),
        (arr(enc(CAROL.sender_id), enc(0)), ("head delivered seq",)),
        (arr(enc(CAROL.sender_id), TRUE), ("head delivered seq", "bool")),
        (arr(enc(CAROL.sender_id[:31]), enc(1)), ("head delivered sender", "32 bytes")),
        (arr(enc("carol"), enc(1)), ("head delivered sender", "str")),
    ],
    ids=["map", "odd", "seq-0", "seq-bool", "short-id", "text-id"],
)
def test_head_delivered_map_strictness(delivered: bytes, words: tuple[str, ...]) -> None:
    assert wire.decode_frame(heads_frame(arr(head_item())))  # control
    refuse_frame(heads_frame(arr(head_item(delivered=delivered))), *words)


@pytest.mark.parametrize(
    "delivered, words",
    [
        (arr(enc(1), enc(2)), ("head delivered sender", "position 1")),
        (arr(enc(-1), enc(2)), ("head delivered sender", "position -1")),
        (arr(TRUE, enc(2)), ("head delivered sender", "bool")),
        (arr(enc(BOB.sender_id), enc(2)), ("head delivered sender", "has a head in this frame")),
        (arr(enc(0), enc(0)), ("head delivered seq",)),
    ],
    ids=["past-the-heads", "negative", "bool", "listed-by-id", "seq-0"],
)
def test_head_delivered_positions_strictness(delivered: bytes, words: tuple[str, ...]) -> None:
    assert wire.decode_frame(heads_frame(arr(head_item(delivered=arr(enc(0), enc(2))))))  # control
    refuse_frame(heads_frame(arr(head_item(delivered=delivered))), *words)


def test_a_sender_named_twice_in_a_delivered_map_is_refused() -> None:
    twice = head_item(delivered=arr(enc(0), enc(2), enc(1), enc(3)))
    refuse_frame(heads_frame(arr(twice, head_item())), "named twice")  # (two heads of Bob)


def test_a_delivered_map_or_beat_needs_a_signed_announcement() -> None:
    unsigned = head_item(clock_seq=enc(0), clock_lamport=enc(0), signature=bstr(b""))
    refuse_frame(heads_frame(arr(unsigned)), "without a signature")
    beat_only = head_item(clock_seq=enc(0), clock_lamport=enc(0), signature=bstr(b""), delivered=arr())
    refuse_frame(heads_frame(arr(beat_only)), "without a signature")


@pytest.mark.parametrize(
    "at_ms", [enc(-1), TRUE, HALF_ONE, enc("0"), enc(2**53 + 1)], ids=["neg", "bool", "float", "text", "over"]
)
def test_head_at_ms_strictness(at_ms: bytes) -> None:
    refuse_frame(heads_frame(arr(head_item(at_ms=at_ms))), "head at_ms")


def test_the_delivered_map_is_signed() -> None:
    head = wire.Head.announce(BOB, 3, 3, 7, {CAROL.sender_id: 2}, 5_000, room_id=ROOM)
    assert head.announcement_verifies(ROOM)
    assert not wire.Head(
        BOB.sender_id, 3, 3, 7, head.signature, ((CAROL.sender_id, 3),), 5_000
    ).announcement_verifies(ROOM)
    assert not wire.Head(
        BOB.sender_id, 3, 3, 7, head.signature, ((CAROL.sender_id, 2),), 6_000
    ).announcement_verifies(ROOM)
    # The room is signed too: the same announcement from another room does not verify.
    assert not head.announcement_verifies(bytes(32))


def test_the_versions_delivered_are_signed_as_a_digest() -> None:
    """An announcement names the versions of what it says it delivered: the digest of each
    (sender, seq, entry hash), in sender order; one not given counts as zeros."""
    delivered = {CAROL.sender_id: 2, ALICE.sender_id: 4}
    links = {CAROL.sender_id: LINK, ALICE.sender_id: SEEN}
    head = wire.Head.announce(BOB, 3, 3, 7, delivered, 5_000, room_id=ROOM, delivered_links=links)
    named = [(ALICE.sender_id, 4, SEEN), (CAROL.sender_id, 2, LINK)]
    assert head.seen == versions_digest(named) and head.announcement_verifies(ROOM)
    unlinked = wire.Head.announce(BOB, 3, 3, 7, delivered, 5_000, room_id=ROOM)
    assert unlinked.seen == versions_digest((s, n, bytes(LINK_SIZE)) for s, n, _ in named)
    assert wire.Head.announce(BOB, 3, 3, 7, {}, 5_000, room_id=ROOM).seen == b""
    # Other versions named, or none: the signature does not cover them.
    assert not replace(head, seen=unlinked.seen).announcement_verifies(ROOM)
    assert not replace(head, seen=b"").announcement_verifies(ROOM)
    assert not replace(head, seen=None).announcement_verifies(ROOM)  # (the legacy layout)
    assert_round_trip(wire.Heads((head, unlinked)))
    decoded = wire.decode_frame(wire.encode_frame(wire.Heads((head,))))
    assert isinstance(decoded, wire.Heads) and decoded.heads[0].announcement_verifies(ROOM)


@pytest.mark.parametrize(
    "seen, words",
    [
        (bstr(SEEN[:15]), ("head seen", "16 bytes")),
        (bstr(SEEN + b"x"), ("head seen", "16", "17")),
        (bstr(b""), ("head seen", "16 bytes")),
        (enc("s" * LINK_SIZE), ("head seen", "byte string", "str")),
        (NULL, ("head seen", "byte string")),
    ],
    ids=["short", "long", "missing", "text", "null"],
)
def test_a_head_names_the_versions_it_delivered_in_16_bytes(seen: bytes, words: tuple[str, ...]) -> None:
    assert wire.decode_frame(heads_frame(arr(head_item(seen=bstr(SEEN)))))  # control
    refuse_frame(heads_frame(arr(head_item(seen=seen))), *words)
    # Without delivered seqs, no digest.
    refuse_frame(heads_frame(arr(head_item(delivered=arr(), seen=bstr(SEEN)))), "head seen")
    # The layout of protocol 8, without the digest, is refused.
    (old,) = cbor2.loads(heads_frame())[1]
    refuse_frame(cbor2.dumps([wire.HEADS, [old[:-1]], False]), "head", "expected 9 items, got 8")


def test_a_legacy_announcement_never_goes_on_the_wire() -> None:
    """An announcement of the legacy layout (read from an old data directory) names no
    versions: it verifies as it was signed, but is not sent."""
    grown = ((CAROL.sender_id, 2),)
    signature = BOB.sign(announcement_payload(ROOM, BOB.sender_id, 3, 7, grown, 5_000, None))
    legacy = wire.Head(BOB.sender_id, 3, 3, 7, signature, grown, 5_000, seen=None)
    assert legacy.announcement_verifies(ROOM)
    assert not replace(legacy, seen=b"").announcement_verifies(ROOM)
    with pytest.raises(ValueError, match="legacy"):
        wire.encode_frame(wire.Heads((legacy,)))
    # Nor does a head whose seen does not fit what it names: no receiver would take it.
    for wrong in (b"", bytes(15), bytes(17)):
        with pytest.raises(ValueError, match="seen"):
            wire.encode_frame(wire.Heads((replace(legacy, seen=wrong),)))
