"""The sans-IO node and link, tested by piping one node's output into another's input."""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterable

import pytest

from p2pchat.address import invite_url
from p2pchat.deflate import inflate_frame
from p2pchat.identity import Identity, short_id
from p2pchat.invites import INVITE_SECRET_SIZE
from p2pchat.log import NotAMember, OrderedLog
from p2pchat.message import EntryKind, RoomPolicy
from p2pchat.node import (
    Close,
    Discovered,
    LogEvents,
    Node,
    NodeConfig,
    Output,
    PeerDown,
    PeerUp,
    RoomAdopted,
    Send,
)
from p2pchat.protocol import LINK_RANDOMNESS, CloseCode, Link, LinkState, ProtocolError
from p2pchat.wire import (
    NO_ANNOUNCEMENT,
    NONCE_SIZE,
    PROTOCOL_VERSION,
    Head,
    Heads,
    Hello,
    Messages,
    decode_frame,
    encode_frame,
)

IDS = [Identity(bytes([i + 1]) * 32) for i in range(4)]


class Pipe:
    """Two nodes joined by an in-memory connection; frames are delivered in order by hand."""

    def __init__(self, a: Node, b: Node, dialed_url: str = "ws://b") -> None:
        self.nodes = {1: a, 2: b}
        self.inbox: dict[int, list[bytes]] = {1: [], 2: []}
        self.closed: list[Close] = []
        self.events: dict[int, list[object]] = {1: [], 2: []}
        self.now = 0.0
        self.route(1, a.open(1, self.now, b"\x01" * LINK_RANDOMNESS, dialed_url=dialed_url))
        self.route(2, b.open(2, self.now, b"\x02" * LINK_RANDOMNESS))

    def route(self, source: int, outputs: Iterable[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                # Sealed as the shell does, in the order frames go out.
                data = sealed(self.nodes[source], output)
                if data is not None:
                    self.inbox[3 - source].append(data)
            elif isinstance(output, Close):
                self.closed.append(output)
            elif isinstance(output, LogEvents | PeerUp | RoomAdopted):
                self.events[source].append(output)

    def run(self, rounds: int = 50) -> None:
        """Deliver frames (and run due timers) until both sides are quiet."""
        rng = random.Random(0)
        for _ in range(rounds):
            moved = False
            for conn in (1, 2):
                while self.inbox[conn]:
                    moved = True
                    data = self.inbox[conn].pop(0)
                    self.route(conn, self.nodes[conn].receive(conn, data, self.now))
            self.now += 0.01
            for conn in (1, 2):
                self.route(conn, self.nodes[conn].tick(self.now, rng))
            if not moved and not any(self.inbox.values()):
                return


def sealed(node: Node, output: Send) -> bytes | None:
    return output.data if output.clear else node.seal(output.conn, output.data)


ROOM_ENTRIES = 2
"""What a two-peer room holds besides chat lines: the founder's GENESIS and its CHANGE
admitting the other (decided at once: the founder is the only member)."""


def make_node(index: int, *, found: bool = False, **config: object) -> Node:
    """A node with a room of its own (``found``) or a newcomer that takes its neighbour's."""
    if found:
        log, _ = OrderedLog.found(IDS[index], name=f"peer{index}", room_name=f"room{index}", sent_at_ms=0)
    else:
        log = OrderedLog()
    config.setdefault("admission_delay", 0.0)  # (admitted at once: these tests are about the rest)
    return Node(IDS[index], f"peer{index}", log, config=NodeConfig(**config))  # type: ignore[arg-type]


def make_pair(**config: object) -> tuple[Node, Node, Pipe]:
    """Node 0 founds a room, node 1 joins it and is admitted."""
    a, b = make_node(0, found=True, **config), make_node(1, **config)
    pipe = Pipe(a, b)
    pipe.run()
    assert b.is_member
    return a, b, pipe


def keys(node: Node) -> list[tuple[int, bytes]]:
    return [tuple(m.key) for m in node.log]  # type: ignore[misc]


def texts(node: Node) -> list[str]:
    return [m.text for m in node.log if m.is_text]


def test_handshake_opens_both_sides_and_reports_the_peer() -> None:
    a, b = make_node(0, found=True), make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    assert a.open_count == b.open_count == 1
    ups = [e for e in pipe.events[1] if isinstance(e, PeerUp)]
    assert ups and ups[0].sender_id == IDS[1].sender_id and ups[0].name == "peer1"
    # The newcomer took the founder's room, and the founder admitted it.
    assert b.log.room_id == a.log.room_id is not None
    assert RoomAdopted(a.log.room_id) in pipe.events[2]
    assert [m.kind for m in a.log] == [EntryKind.GENESIS, EntryKind.CHANGE]
    assert a.log[1].change is not None and a.log[1].change.admitted == ((IDS[1].sender_id, "peer1"),)
    assert keys(a) == keys(b)
    assert a.log.members == b.log.members == {IDS[0].sender_id, IDS[1].sender_id}
    assert a.closed(1, "gone") == [PeerDown(1, IDS[1].sender_id, "gone")]  # one for its PeerUp
    assert a.closed(1, "gone") == []


def test_a_newcomer_cannot_write_before_its_admission() -> None:
    newcomer = make_node(1)
    assert not newcomer.is_member
    with pytest.raises(NotAMember):
        newcomer.send_text("too early", 0.0, 0)
    assert len(newcomer.log) == 0


def test_a_neighbour_from_another_room_is_refused_with_a_reason() -> None:
    a, b = make_node(0, found=True), make_node(1, found=True)
    for node in (a, b):  # neither room is pristine: neither side yields
        node.send_text("busy", 0.0, 0)
    pipe = Pipe(a, b)
    pipe.run()
    assert a.open_count == b.open_count == 0
    assert {close.conn for close in pipe.closed} == {1, 2}
    for close in pipe.closed:
        # The reason goes to the refused side and reads from there; the note is ours.
        ours, theirs = pipe.nodes[close.conn], pipe.nodes[3 - close.conn]
        mine, its = (node.log.room_id.hex()[:16] for node in (ours, theirs) if node.log.room_id)
        assert close.code is CloseCode.POLICY_VIOLATION
        assert close.reason == f"this peer is in room {mine}, not in your room {its}"
        assert close.note == f"{short_id(theirs.identity.sender_id)}: in room {its}, not in our room {mine}"
    assert not [e for events in pipe.events.values() for e in events if isinstance(e, PeerUp)]
    for conn, node in pipe.nodes.items():
        assert node.closed(conn, "gone") == []  # never reported up, so no PeerDown either
    assert texts(a) == texts(b) == ["busy"] and a.log.room_id != b.log.room_id


def refused(founder: Node, *, dialed_url: str = "ws://b") -> Close:
    """How ``founder`` closes the link a newcomer (IDS[1]) dials to it."""
    pipe = Pipe(make_node(1), founder, dialed_url)
    pipe.run()
    (close,) = [close for close in pipe.closed if close.conn == 2]
    return close


def test_every_refusal_reads_right_at_both_ends(monkeypatch: pytest.MonkeyPatch) -> None:
    # The reason goes to the refused side (its dial_failed says it): it speaks to it, never
    # starts with its own id. The note is what the refusing side logs: who, and why.
    newcomer = short_id(IDS[1].sender_id)
    founder = make_node(0, found=True)
    founder._banned[IDS[1].sender_id] = 60.0
    banned = refused(founder)
    founder = make_node(0, found=True)
    founder.offenders[IDS[1].sender_id] = "signed two versions of its entry 1"
    offender = refused(founder)
    log, _ = OrderedLog.found(IDS[0], name="peer0", room_name="room0", sent_at_ms=0, policy=RoomPolicy.INVITE)
    founder = Node(IDS[0], "peer0", log, config=NodeConfig(admission_delay=0.0))
    invite = refused(founder, dialed_url=invite_url("ws://b", IDS[0].sender_id, bytes(INVITE_SECRET_SIZE)))
    monkeypatch.setattr("p2pchat.node.MAX_MEMBERS", 1)
    full = refused(make_node(0, found=True))
    unknown = "unknown invite: forged, or issued by another peer or for another room"
    assert [(close.reason, close.note) for close in (banned, offender, invite, full)] == [
        ("you are banned here for 60 s more", f"{newcomer}: banned for 60 s more"),
        (
            "refused: your key signed two versions of its entry 1",
            f"{newcomer}: refused: signed two versions of its entry 1",
        ),
        (f"this peer refused your invite: {unknown}", f"{newcomer}: refused its invite: {unknown}"),
        (
            "this peer's room is full (1 members): you are not admitted",
            f"{newcomer}: not admitted: our room is full (1 members)",
        ),
    ]
    for close in (banned, offender, invite, full):
        assert close.code is CloseCode.POLICY_VIOLATION
        assert len(close.reason.encode()) <= 123  # (what a close frame carries)


def ups_and_downs(pipe: Pipe) -> dict[int, list[type]]:
    """Per side, the PeerUp events it output, then a PeerDown if its end of the link
    reports one when it goes."""
    seen: dict[int, list[type]] = {}
    for conn, node in pipe.nodes.items():
        seen[conn] = [type(e) for e in pipe.events[conn] if isinstance(e, PeerUp)]
        seen[conn] += [type(o) for o in node.closed(conn, "gone") if isinstance(o, PeerDown)]
    return seen


def test_a_stranger_refused_by_an_invite_only_room_is_never_reported_up() -> None:
    log, _ = OrderedLog.found(IDS[0], name="peer0", room_name="room0", sent_at_ms=0, policy=RoomPolicy.INVITE)
    a = Node(IDS[0], "peer0", log, config=NodeConfig(admission_delay=0.0))
    b = make_node(1)
    pipe = Pipe(a, b)  # b dials a: a refuses it only after both AUTH frames crossed
    pipe.run()
    assert [close.code for close in pipe.closed] == [CloseCode.POLICY_VIOLATION]
    assert "invite-only" in pipe.closed[0].reason
    # Neither end reports a link that one of them refused: no "connected", no "disconnected".
    assert ups_and_downs(pipe) == {1: [], 2: []}


def test_the_address_of_a_refused_stranger_is_not_passed_on() -> None:
    log, _ = OrderedLog.found(IDS[0], name="peer0", room_name="room0", sent_at_ms=0, policy=RoomPolicy.INVITE)
    member = Node(IDS[0], "peer0", log, config=NodeConfig(admission_delay=0.0))
    stranger = Node(IDS[1], "peer1", OrderedLog(), listen_url="ws://127.0.0.1:9001")
    pipe = Pipe(stranger, member)
    pipe.run()
    assert [close.conn for close in pipe.closed] == [2]  # refused: invite-only
    # Never our neighbour: its address goes to nobody (the PEERS frame a member sends
    # to every neighbour it trusts holds what it knows).
    assert member.known_addresses() == []


def test_the_address_of_an_admitted_newcomer_is_passed_on() -> None:
    founder = make_node(0, found=True)
    newcomer = Node(IDS[1], "peer1", OrderedLog(), listen_url="ws://127.0.0.1:9001")
    pipe = Pipe(newcomer, founder)
    pipe.run()
    assert newcomer.is_member
    assert f"ws://127.0.0.1:9001/#{IDS[1].sender_id.hex()}" in founder.known_addresses()


def url_of(index: int) -> str:
    """Node ``index``'s address, naming its id, as neighbours pass it on (see listening)."""
    return f"ws://127.0.0.1:{9000 + index}/#{IDS[index].sender_id.hex()}"


def listening(index: int, log: OrderedLog | None = None) -> Node:
    """Node ``index`` listening on port 9000 + index, a newcomer unless given a log."""
    config = NodeConfig(admission_delay=0.0)
    listen_url = f"ws://127.0.0.1:{9000 + index}"
    return Node(IDS[index], f"peer{index}", log or OrderedLog(), listen_url=listen_url, config=config)


def test_addresses_kept_from_a_run_before_are_dialed_again_while_no_link_leads_to_a_member() -> None:
    # The lonely peer: back after a restart, its only neighbour of before gone for good,
    # it knows no other member's address but those its shell kept. Handed back, the
    # members' ones are offered again (Discovered) while no link leads to a member; a
    # stranger's (a neighbour never admitted) or a malformed one is not even kept: it
    # would be passed on to members (PEERS).
    founder, member, pipe = make_pair()
    pipe.route(2, member.closed(2))
    pipe.route(1, founder.closed(1))
    stranger = url_of(2)
    founder.learn_addresses([stranger, url_of(1), "ws://127.0.0.1:1/#nothex", f"{url_of(3)}.{'ab' * 16}"])
    assert founder.known_addresses() == founder.member_addresses() == [url_of(1)]
    offered = [o for o in founder.tick(pipe.now + 20.0, random.Random(0)) if isinstance(o, Discovered)]
    assert offered == [Discovered((url_of(1),))]


def test_addresses_learned_in_a_room_are_not_passed_on_in_the_room_moved_to() -> None:
    # Peer 0 knows member 1's address in its room; with its room provisional (the shell
    # reopened it while dialing someone to --join) it dials peer 2 and moves to 2's room.
    # Peer 2 must not hear of member 1 from it (PEERS, on a link opened once it trusts
    # peer 0): whom peer 0 knew in another room is none of this room's business. Peer 2,
    # the neighbour it moved with, stays known to it (passed on, dialed again should the
    # link drop), also once the shell restores the room moved to from its store.
    log, _ = OrderedLog.found(IDS[0], name="peer0", room_name="room0", sent_at_ms=0)
    mover = listening(0, log)
    first = Pipe(listening(1), mover)
    first.run()
    assert url_of(1) in mover.known_addresses()
    first.route(2, mover.closed(2))
    log, _ = OrderedLog.found(IDS[2], name="peer2", room_name="room2", sent_at_ms=0)
    other_room = listening(2, log)
    other_room.send_text("history here", 0.0, 0)
    mover.provisional_room = True
    moving = Pipe(mover, other_room, dialed_url=url_of(2))
    moving.run()
    assert mover.log.room_id == other_room.log.room_id
    # (Its AUTH named the room it left: refused, and dialed again, as the shell does.)
    assert [close.conn for close in moving.closed] == [2]
    # Dialed again, as the shell does: admitted. Then once more: a link both ends trust
    # from the start, on which each passes on the addresses it knows (PEERS).
    for _ in range(2):
        moving.route(1, mover.closed(1))
        moving.route(2, other_room.closed(2))
        moving = Pipe(mover, other_room, dialed_url=url_of(2))
        moving.run()
        assert mover.is_member and url_of(2) in mover.known_addresses()
        restored = OrderedLog(room_id=mover.log.room_id)
        restored.receive_many(mover.log.messages())
        mover.replace_log(restored)  # (as the shell's Peer._open_room)
        assert url_of(2) in mover.known_addresses()
    for node in (mover, other_room):
        assert not [url for url in node.known_addresses() if url.startswith("ws://127.0.0.1:9001")]


def test_a_newcomer_waiting_for_its_admission_is_reported_up_on_both_ends() -> None:
    a, b = make_node(0, found=True, admission_delay=5.0), make_node(1, admission_delay=5.0)
    pipe = Pipe(a, b)
    pipe.run(rounds=10)  # (0.1 s: long before the admission)
    assert not b.is_member and a.open_count == b.open_count == 1
    assert ups_and_downs(pipe) == {1: [PeerUp, PeerDown], 2: [PeerUp, PeerDown]}


def test_a_pristine_room_yields_to_the_room_it_meets() -> None:
    a, b = make_node(0, found=True), make_node(1, found=True)
    a.send_text("something happened here", 0.0, 0)
    pipe = Pipe(a, b)  # b's room holds only its genesis: b moves to a's
    pipe.run()
    assert b.log.room_id == a.log.room_id and b.is_member
    pipe.route(2, b.send_text("moved", pipe.now, 0)[1])
    pipe.run()
    assert texts(a) == texts(b) == ["something happened here", "moved"]
    assert keys(a) == keys(b)


@pytest.mark.parametrize("joiner_wrote", [True, False])
def test_a_provisional_joiner_and_the_pristine_room_it_joins_end_in_one_room(joiner_wrote: bool) -> None:
    # The joiner's room is only the one it used last (provisional): it follows the peer
    # it dialed. The peer dialed holds nothing but its genesis (pristine): it yields to a
    # room with history. Both rules must not fire at once, or each moves to the other's
    # room and the two sit linked in two empty rooms.
    joiner, fresh = make_node(0, found=True), make_node(1, found=True)
    if joiner_wrote:
        joiner.send_text("said before joining", 0.0, 0)
    joiner.provisional_room = True
    pipe = Pipe(joiner, fresh)
    pipe.run()
    assert joiner.log.room_id == fresh.log.room_id
    assert joiner.is_member and fresh.is_member
    pipe.route(2, fresh.send_text("hello", pipe.now, 0)[1])
    pipe.run()
    expected = ["said before joining", "hello"] if joiner_wrote else ["hello"]
    assert texts(joiner) == texts(fresh) == expected


def test_messages_flow_both_ways_and_logs_match() -> None:
    a, b, pipe = make_pair()
    for i in range(20):
        pipe.route(1, a.send_text(f"a{i}", pipe.now, 0)[1])
        pipe.route(2, b.send_text(f"b{i}", pipe.now, 0)[1])
    pipe.run()
    assert len(a.log) == len(b.log) == ROOM_ENTRIES + 40
    assert sorted(texts(a)) == sorted([f"a{i}" for i in range(20)] + [f"b{i}" for i in range(20)])
    assert keys(a) == keys(b)


def test_a_burst_rides_in_few_frames() -> None:
    a, b, pipe = make_pair()
    before = a.stats.frames_out
    for i in range(300):
        pipe.route(1, a.send_text(f"burst {i}", pipe.now, 0)[1])
    pipe.run()
    assert texts(b) == [f"burst {i}" for i in range(300)]
    # One MESSAGES frame for the whole burst, plus a few heads; never one frame per message.
    assert a.stats.frames_out - before < 10


def test_late_joiner_gets_history_by_anti_entropy() -> None:
    a = make_node(0, found=True)
    for i in range(250):
        a.send_text(f"history {i}", 0.0, 0)
    b = make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    assert keys(b) == keys(a) and len(b.log) == ROOM_ENTRIES + 250
    assert texts(b) == [f"history {i}" for i in range(250)]


def test_gaps_are_repaired_with_want() -> None:
    a, b, pipe = make_pair()
    messages = [a.send_text(f"m{i}", pipe.now, 0)[0] for i in range(5)]
    assert [m.seq for m in messages] == [4, 5, 6, 7, 8]  # (a's seqs 1 to 3: GENESIS, CHANGE, COMMIT)
    pipe.inbox[2].clear()  # the push is lost on the way
    # b hears of the fifth only (as if relayed by a third peer): it must ask for the four before.
    pipe.route(2, b.receive_unsealed(2, encode_frame(Messages((messages[4],))), pipe.now))
    assert b.log.gaps() == {IDS[0].sender_id: [(4, 7)]}
    pipe.run()
    assert texts(b) == []  # the gap may still be on its way: b waits gap_grace before asking
    pipe.now += b.config.gap_grace
    pipe.run()
    assert texts(b) == [f"m{i}" for i in range(5)] and not b.log.gaps()


def test_forged_identity_fails_the_handshake() -> None:
    honest = Link(IDS[0], "a", None, b"\x01" * LINK_RANDOMNESS, dialer=False)
    # The impostor claims IDS[1] but can only sign with IDS[2]'s key.
    claimed = Identity(IDS[2].seed)
    claimed.sender_id = IDS[1].sender_id
    impostor = Link(claimed, "fake", None, b"\x09" * LINK_RANDOMNESS, dialer=True)
    assert honest.receive(impostor.hello()) == (None, None)  # (the acceptor waits for its AUTH)
    _, forged = impostor.receive(honest.hello())
    assert forged is not None
    with pytest.raises(ProtocolError) as raised:
        honest.receive(forged)
    assert raised.value.code == CloseCode.POLICY_VIOLATION
    assert "failed to prove its identity" in raised.value.reason
    assert honest.state is not LinkState.OPEN


def test_replayed_nonce_is_refused() -> None:
    link = Link(IDS[0], "a", None, b"\x01" * LINK_RANDOMNESS, dialer=False)
    echo = Hello(PROTOCOL_VERSION, IDS[1].sender_id, b"\x01" * NONCE_SIZE, bytes(32))
    with pytest.raises(ProtocolError, match="nonce"):
        link.receive(encode_frame(echo))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (b"\xff\x00garbage", CloseCode.PROTOCOL_ERROR),
        ("a text frame", CloseCode.UNSUPPORTED_DATA),
        (encode_frame(Messages(())), CloseCode.PROTOCOL_ERROR),  # not a HELLO
    ],
)
def test_bad_first_frame_closes_with_a_code(data: bytes | str, code: CloseCode) -> None:
    node = make_node(0)
    node.open(7, 0.0, b"\x01" * LINK_RANDOMNESS)
    outputs = node.receive(7, data, 0.0)
    closes = [o for o in outputs if isinstance(o, Close)]
    assert closes and closes[0].code == code and closes[0].reason


def test_handshake_timeout_closes_the_connection() -> None:
    node = make_node(0, handshake_timeout=5.0)
    node.open(7, 0.0, b"\x01" * LINK_RANDOMNESS)
    assert not [o for o in node.tick(4.0, random.Random(0)) if isinstance(o, Close)]
    closes = [o for o in node.tick(5.0, random.Random(0)) if isinstance(o, Close)]
    assert closes and "handshake" in closes[0].reason


def test_duplicate_connections_keep_exactly_one() -> None:
    a, b, first = make_pair()
    # b now dials a as well: a second link between the same two peers.
    second = Pipe.__new__(Pipe)
    second.nodes = {3: b, 4: a}
    second.inbox = {3: [], 4: []}
    second.closed, second.events, second.now = [], {3: [], 4: []}, 0.0

    def route(source: int, outputs: Iterable[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                data = sealed(second.nodes[source], output)
                if data is not None:
                    second.inbox[7 - source].append(data)
            elif isinstance(output, Close):
                second.closed.append(output)

    route(3, b.open(3, 0.0, b"\x03" * LINK_RANDOMNESS, dialed_url="ws://a"))
    route(4, a.open(4, 0.0, b"\x04" * LINK_RANDOMNESS))
    for _ in range(5):
        for conn in (3, 4):
            while second.inbox[conn]:
                route(conn, second.nodes[conn].receive(conn, second.inbox[conn].pop(0), 0.0))
    lower_id_dialed_first = min(IDS[0].sender_id, IDS[1].sender_id) == IDS[0].sender_id
    closed_conns = {c.conn for c in second.closed} | {c.conn for c in first.closed}
    # Both sides agree: the link dialed by the smaller id survives.
    if lower_id_dialed_first:
        assert closed_conns == {3, 4}
    else:
        assert closed_conns == {1, 2}


def test_stability_advances_in_a_quiet_room_through_heartbeats() -> None:
    a, b, pipe = make_pair()
    pipe.route(1, a.send_text("hello", pipe.now, 0)[1])
    pipe.run()
    hello = a.log[ROOM_ENTRIES]
    assert hello.text == "hello"
    assert not b.log.is_stable(hello)  # b has not yet heard a's announcement after it
    for _ in range(3):  # a few heartbeat intervals, nobody writes
        pipe.now += 1.0
        pipe.run()
    # Every entry, the room's own and the line, is final on both sides.
    assert a.log.stable_count == b.log.stable_count == ROOM_ENTRIES + 1
    assert a.log.is_stable(hello) and b.log.is_stable(hello)


def test_bad_signature_from_a_neighbour_disconnects_it() -> None:
    a, b, pipe = make_pair()
    before = keys(b)
    genuine = a.compose("hi", 0)
    forged = type(genuine).from_wire(genuine.payload, bytes(64))
    outputs = b.receive_unsealed(2, encode_frame(Messages((forged,))), pipe.now)
    closes = [o for o in outputs if isinstance(o, Close)]
    assert closes and closes[0].code == CloseCode.POLICY_VIOLATION
    assert keys(b) == before and texts(b) == []


def heads_sent(node: Node, outputs: Iterable[Output]) -> dict[bytes, Head]:
    """The heads in the first HEADS frame among ``outputs`` (the heartbeat's), by member."""
    for output in outputs:
        if isinstance(output, Send) and not output.clear:
            frame = decode_frame(inflate_frame(output.data))
            if isinstance(frame, Heads):
                return {head.sender_id: head for head in frame.heads}
    return {}


def test_a_heartbeat_repeats_an_announcement_only_where_the_link_lacks_it() -> None:
    a, b, pipe = make_pair()
    for _ in range(3):  # heartbeats both ways: each has the other's announcement
        pipe.now += 1.0
        pipe.run()
    b_id, a_id = IDS[1].sender_id, IDS[0].sender_id
    assert a.log.announcement_of(b_id) is not None
    pipe.route(1, a.send_text("news", pipe.now, 0)[1])  # (a's own announcement changes)
    pipe.now += 1.0
    heads = heads_sent(a, a.tick(pipe.now, random.Random(0)))
    # b's own announcement came from b: only its held seq goes back. a's is new to b.
    assert heads[b_id].signature == b"" and heads[b_id].held_seq == b.log.delivered_seq(b_id)
    assert heads[a_id].signature and heads[a_id].clock_seq == a.log.delivered_seq(a_id)
    # Once per keepalive interval the heads carry links (the versions held), but still
    # no announcement the link carried.
    pipe.route(1, a.send_text("more news", pipe.now, 0)[1])
    pipe.now += NodeConfig().keepalive_interval
    heads = heads_sent(a, a.tick(pipe.now, random.Random(0)))
    assert heads[b_id].signature == b"" and heads[b_id].link == a.log.link_of(b_id, heads[b_id].held_seq)


def test_a_neighbour_that_holds_no_announcement_the_link_carried_gets_it_again() -> None:
    a, b, pipe = make_pair()
    for _ in range(3):  # heartbeats both ways: each has the other's announcement
        pipe.now += 1.0
        pipe.run()
    b_id = IDS[1].sender_id
    held = a.log.announcement_of(b_id)
    assert held is not None
    # Heads from b that say it holds no announcement of b_id, as a peer says of a member
    # whose announcement it had no use for when it came. (b's own frames, nothing else,
    # reach a from here on: a keeps the announcement of b it holds.)
    pipe.now += 1.0
    none = Head(b_id, b.log.delivered_seq(b_id), digest=NO_ANNOUNCEMENT)
    a.receive_unsealed(1, encode_frame(Heads((none,))), pipe.now)
    pipe.now += 1.0
    heads = heads_sent(a, a.tick(pipe.now, random.Random(0)))
    assert heads[b_id].signature == held.signature  # whole again
    pipe.now += 1.0
    heads = heads_sent(a, a.tick(pipe.now, random.Random(0)))
    assert b_id not in heads or heads[b_id].signature == b""  # only once


@pytest.mark.parametrize(
    ("config", "every"),
    [
        ({}, 1.0),  # a small room: every heartbeat
        ({"announce_load": 0.5}, 4.0),  # 2 members, 0.5 beats a second: every 4 s
        ({"announce_load": 0.1, "member_timeout": 8.0}, 2.0),  # capped at a quarter of the timeout
    ],
)
def test_a_member_beats_as_often_as_the_room_can_take(config: dict[str, float], every: float) -> None:
    a, _, pipe = make_pair(**config)
    beats = set()
    for _ in range(12):  # heartbeats, nobody writes
        pipe.now += 1.0
        pipe.run()
        beats.add(a.log.last_beat(IDS[1].sender_id))
    beats.discard(0)
    spacing = {later - earlier for earlier, later in itertools.pairwise(sorted(beats))}
    # (Each pipe.run takes a few ms of virtual time: heartbeats drift a little.)
    assert spacing and all(0 <= gap - every * 1000 < 250 for gap in spacing), sorted(beats)


def test_last_heard_counts_from_a_members_own_words() -> None:
    a, b, pipe = make_pair()
    other = b.identity.sender_id
    assert set(a.last_heard(pipe.now)) == {other}  # (active members other than us)
    pipe.route(2, b.send_text("hi", pipe.now, 0)[1])
    pipe.run()
    said = pipe.now
    assert a.last_heard(said)[other] == 0.0  # its line: heard now
    # Later, its entries unchanged and its links gone quiet: counted from the line.
    assert a.last_heard(said + 42.0)[other] == 42.0
