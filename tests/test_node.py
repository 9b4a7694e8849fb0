"""The sans-IO node and link, tested by piping one node's output into another's input."""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from p2pchat.identity import Identity
from p2pchat.log import OrderedLog
from p2pchat.node import Close, LogEvents, Node, NodeConfig, Output, PeerUp, Send
from p2pchat.protocol import CloseCode, Link, LinkState, ProtocolError
from p2pchat.wire import Auth, Hello, Messages, decode_frame, encode_frame

IDS = [Identity(bytes([i + 1]) * 32) for i in range(4)]


class Pipe:
    """Two nodes joined by an in-memory connection; frames are delivered in order by hand."""

    def __init__(self, a: Node, b: Node) -> None:
        self.nodes = {1: a, 2: b}
        self.inbox: dict[int, list[bytes]] = {1: [], 2: []}
        self.closed: list[Close] = []
        self.events: dict[int, list[object]] = {1: [], 2: []}
        self.now = 0.0
        self.route(1, a.open(1, self.now, b"\x01" * 16, dialed_url="ws://b"))
        self.route(2, b.open(2, self.now, b"\x02" * 16))

    def route(self, source: int, outputs: Iterable[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                self.inbox[3 - source].append(output.data)
            elif isinstance(output, Close):
                self.closed.append(output)
            elif isinstance(output, LogEvents | PeerUp):
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


def make_node(index: int, **config: object) -> Node:
    return Node(IDS[index], f"peer{index}", OrderedLog(), config=NodeConfig(**config))  # type: ignore[arg-type]


def keys(node: Node) -> list[tuple[int, bytes]]:
    return [tuple(m.key) for m in node.log]  # type: ignore[misc]


def test_handshake_opens_both_sides_and_reports_the_peer() -> None:
    a, b = make_node(0), make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    assert a.open_count == b.open_count == 1
    ups = [e for e in pipe.events[1] if isinstance(e, PeerUp)]
    assert ups and ups[0].sender_id == IDS[1].sender_id and ups[0].name == "peer1"


def test_messages_flow_both_ways_and_logs_match() -> None:
    a, b = make_node(0), make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    for i in range(20):
        pipe.route(1, a.send_text(f"a{i}", pipe.now, 0)[1])
        pipe.route(2, b.send_text(f"b{i}", pipe.now, 0)[1])
    pipe.run()
    assert len(a.log) == len(b.log) == 40
    assert keys(a) == keys(b)


def test_a_burst_rides_in_few_frames() -> None:
    a, b = make_node(0), make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    before = a.stats.frames_out
    for i in range(300):
        pipe.route(1, a.send_text(f"burst {i}", pipe.now, 0)[1])
    pipe.run()
    assert len(b.log) == 300
    # One MESSAGES frame for the whole burst, plus a few heads; never one frame per message.
    assert a.stats.frames_out - before < 10


def test_late_joiner_gets_history_by_anti_entropy() -> None:
    a = make_node(0)
    for i in range(250):
        a.send_text(f"history {i}", 0.0, 0)
    b = make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    assert keys(b) == keys(a) and len(b.log) == 250


def test_gaps_are_repaired_with_want() -> None:
    a, b = make_node(0), make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    messages = [a.send_text(f"m{i}", pipe.now, 0)[0] for i in range(5)]
    pipe.inbox[2].clear()  # the push is lost on the way
    # b hears of message 5 only (as if relayed by a third peer): it must ask for 1..4.
    pipe.route(2, b.receive(2, encode_frame(Messages((messages[4],))), pipe.now))
    assert b.log.gaps() == {IDS[0].sender_id: [(1, 4)]}
    pipe.run()
    assert len(b.log) == 5 and not b.log.gaps()


def test_forged_identity_fails_the_handshake() -> None:
    honest = Link(IDS[0], "a", None, b"\x01" * 16)
    hello_out = honest.hello(())
    # The impostor claims IDS[1] but signs with IDS[2]'s key.
    impostor_hello = Hello(1, IDS[1].sender_id, "fake", None, b"\x09" * 16)
    honest.receive(encode_frame(impostor_hello))
    assert decode_frame(hello_out)
    forged = Auth(IDS[2].sign(b"p2pchat-auth-v1" + b"\x01" * 16 + b"\x09" * 16 + IDS[1].sender_id))
    with pytest.raises(ProtocolError) as raised:
        honest.receive(encode_frame(forged))
    assert raised.value.code == CloseCode.POLICY_VIOLATION
    assert honest.state is not LinkState.OPEN


def test_replayed_nonce_is_refused() -> None:
    link = Link(IDS[0], "a", None, b"\x01" * 16)
    with pytest.raises(ProtocolError, match="nonce"):
        link.receive(encode_frame(Hello(1, IDS[1].sender_id, "b", None, b"\x01" * 16)))


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
    node.open(7, 0.0, b"\x01" * 16)
    outputs = node.receive(7, data, 0.0)
    closes = [o for o in outputs if isinstance(o, Close)]
    assert closes and closes[0].code == code and closes[0].reason


def test_handshake_timeout_closes_the_connection() -> None:
    node = make_node(0, handshake_timeout=5.0)
    node.open(7, 0.0, b"\x01" * 16)
    assert not [o for o in node.tick(4.0, random.Random(0)) if isinstance(o, Close)]
    closes = [o for o in node.tick(5.0, random.Random(0)) if isinstance(o, Close)]
    assert closes and "handshake" in closes[0].reason


def test_duplicate_connections_keep_exactly_one() -> None:
    a, b = make_node(0), make_node(1)
    first, second = Pipe(a, b), None
    first.run()
    # b now dials a as well: a second link between the same two peers.
    second = Pipe.__new__(Pipe)
    second.nodes = {3: b, 4: a}
    second.inbox = {3: [], 4: []}
    second.closed, second.events, second.now = [], {3: [], 4: []}, 0.0

    def route(source: int, outputs: Iterable[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                second.inbox[7 - source].append(output.data)
            elif isinstance(output, Close):
                second.closed.append(output)

    route(3, b.open(3, 0.0, b"\x03" * 16, dialed_url="ws://a"))
    route(4, a.open(4, 0.0, b"\x04" * 16))
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
    a, b = make_node(0), make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    pipe.route(1, a.send_text("hello", pipe.now, 0)[1])
    pipe.run()
    for _ in range(3):  # a few heartbeat intervals, nobody writes
        pipe.now += 1.0
        pipe.run()
    assert a.log.stable_count == b.log.stable_count == 1


def test_bad_signature_from_a_neighbour_disconnects_it() -> None:
    a, b = make_node(0), make_node(1)
    pipe = Pipe(a, b)
    pipe.run()
    genuine = a.compose("hi", 0)
    forged = type(genuine).from_wire(genuine.payload, bytes(64))
    outputs = b.receive(2, encode_frame(Messages((forged,))), pipe.now)
    closes = [o for o in outputs if isinstance(o, Close)]
    assert closes and closes[0].code == CloseCode.POLICY_VIOLATION
    assert len(b.log) == 0
