"""Peers over real WebSockets on 127.0.0.1: convergence, history, restarts, hostile clients.

Every peer listens on port 0 (a free port); ``peer.url`` is where it can be dialed.
Each test body runs under ``trio.fail_after`` so a regression shows up as a failure,
never as a hang, and waits on ``wait_delivered`` / ``wait_connected`` rather than
sleeping.

The second half attacks the transport the way the network can: a ping that arrives
while the server is closing (trio-websocket issue #184), streams aborted mid-handshake,
garbage before and after the HTTP upgrade, clients that never speak, servers that
never answer, a neighbour that never reads, and text or undecodable frames. After
each, the listener must still accept an ordinary peer and chat with it.
"""

from __future__ import annotations

import os
import random
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import trio
import trio.testing
from trio_websocket import ConnectionClosed, WebSocketConnection, wrap_client_stream
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Ping, Request, TextMessage

from p2pchat.identity import Identity
from p2pchat.message import EntryKind, Message, MessageKey
from p2pchat.node import NodeConfig
from p2pchat.peer import NeighbourDown, Peer, PeerConfig, _stage_idle, open_peer
from p2pchat.protocol import LINK_RANDOMNESS, CloseCode, Link
from p2pchat.store import Store
from p2pchat.transport import dial, serve_websockets, url_of
from p2pchat.wire import MAX_FRAME_BYTES, Peers, encode_frame

TIMEOUT = 30


# Helpers -------------------------------------------------------------------------------------


def keys(peer: Peer) -> list[MessageKey]:
    """The keys of every entry of the peer's log, membership entries included."""
    return [m.key for m in peer.messages()]


def text_keys(peer: Peer) -> list[MessageKey]:
    return [m.key for m in peer.messages() if m.is_text]


def texts(peer: Peer) -> list[str]:
    return [m.text for m in peer.messages() if m.is_text]


def host_port(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    assert parts.hostname is not None and parts.port is not None
    return parts.hostname, parts.port


async def send_many(peer: Peer, count: int, prefix: str, seed: int) -> list[Message]:
    """``count`` messages from ``peer``, with small random pauses so senders interleave."""
    rng = random.Random(seed)
    sent = []
    for i in range(count):
        sent.append(await peer.send(f"{prefix} {i}"))
        await trio.sleep(rng.random() * 0.002)
    return sent


async def wait_until(condition: Callable[[], bool]) -> None:
    """Poll ``condition`` (for states with no wait_ method, e.g. a neighbour being gone)."""
    while not condition():
        await trio.sleep(0.01)


async def assert_converged(peers: list[Peer], total: int) -> list[MessageKey]:
    """Every peer holds ``total`` chat lines, and all hold the same entries in one order.

    Membership entries (a CHANGE, a FLUSH, an AWAY) may still be on their way when the last chat
    line arrives, so identical logs are awaited, for a bounded time, before comparing.
    Returns the keys of the common log (membership entries included).
    """
    for peer in peers:
        await peer.wait_texts(total)
    with trio.move_on_after(10):
        await wait_until(lambda: all(keys(peer) == keys(peers[0]) for peer in peers))
    logs = [keys(peer) for peer in peers]
    for peer, log in zip(peers, logs, strict=True):
        assert len(text_keys(peer)) == total
        assert len({(m.sender_id, m.seq) for m in peer.messages()}) == len(log)  # no duplicates
        assert log == sorted(log)
    assert all(log == logs[0] for log in logs), "peers disagree on the order"
    return logs[0]


async def chat_works(host: Peer) -> None:
    """A fresh peer can join ``host``, and messages flow both ways."""
    before = len(texts(host))
    async with open_peer("guest", join=[host.url or ""]) as guest:
        await guest.wait_texts(before)
        await guest.send("hello from the guest")
        await host.send("hello from the host")
        await assert_converged([host, guest], before + 2)


@dataclass
class Running:
    """A peer running in a background task, so it can be stopped while others go on."""

    peer: Peer
    stop: trio.Event
    stopped: trio.Event

    async def aclose(self) -> None:
        self.stop.set()
        await self.stopped.wait()


async def start_peer(nursery: trio.Nursery, name: str, **kwargs: object) -> Running:
    stop, stopped = trio.Event(), trio.Event()

    async def run(task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with open_peer(name, **kwargs) as peer:  # type: ignore[arg-type]
                task_status.started(peer)
                await stop.wait()
        finally:
            stopped.set()

    peer: Peer = await nursery.start(run)
    return Running(peer, stop, stopped)


@asynccontextmanager
async def raw_websocket(url: str) -> AsyncIterator[tuple[trio.SocketStream, WSConnection]]:
    """A TCP stream that has completed the WebSocket upgrade, driven by bare wsproto."""
    host, port = host_port(url)
    ws = WSConnection(ConnectionType.CLIENT)
    async with await trio.open_tcp_stream(host, port) as stream:
        await stream.send_all(ws.send(Request(host=f"{host}:{port}", target="/")))
        while True:
            data = await stream.receive_some(65536)
            assert data, "server closed during the upgrade"
            ws.receive_data(data)
            if any(isinstance(event, AcceptConnection) for event in ws.events()):
                break
        yield stream, ws


@asynccontextmanager
async def client_websocket(
    url: str, max_message_size: int = MAX_FRAME_BYTES
) -> AsyncIterator[WebSocketConnection]:
    """A trio-websocket client whose TCP stream is closed on exit.

    (``open_websocket_url`` leaks the stream when the server closes first.)
    """
    host, port = host_port(url)
    async with await trio.open_tcp_stream(host, port) as stream, trio.open_nursery() as nursery:
        ws = await wrap_client_stream(
            nursery, stream, f"{host}:{port}", "/", max_message_size=max_message_size
        )
        try:
            yield ws
        finally:
            await trio.aclose_forcefully(stream)
            nursery.cancel_scope.cancel()


def abort_on_close(stream: trio.SocketStream) -> None:
    """Make closing ``stream`` send a TCP RST instead of a FIN."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


async def close_code_after(ws: WebSocketConnection) -> int | None:
    """Read (and drop) messages until the server closes; its close code."""
    try:
        while True:
            await ws.get_message()
    except ConnectionClosed as exc:
        return exc.reason.code if exc.reason else None


# Convergence ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target_connections",
    [PeerConfig().target_connections, 1],
    ids=["line-grows-into-mesh", "strict-line"],
)
async def test_five_peers_in_a_line_converge_with_concurrent_senders(target_connections: int) -> None:
    # With target_connections=1 nobody dials learned addresses: every message crosses
    # up to four hops of relaying. With the default the line fills in by discovery.
    config = PeerConfig(target_connections=target_connections)
    senders, per_sender = 5, 50
    with trio.fail_after(TIMEOUT):
        async with AsyncExitStack() as stack:
            peers: list[Peer] = []
            for i in range(5):
                join = [peers[-1].url or ""] if peers else []
                peer = await stack.enter_async_context(open_peer(f"p{i}", join=join, config=config))
                peers.append(peer)
            for peer in peers:
                await peer.wait_connected(1)
            # Every admission decided everywhere first: a line written while a change its
            # author answered is open is void if it is decided, and goes out again (a
            # line too many in the count of each sender's lines and tombstones below).
            await wait_until(
                lambda: all(len(p.log.members) == 5 and not p.log.roster.open_proposals() for p in peers)
            )
            async with trio.open_nursery() as nursery:
                for i, peer in enumerate(peers[:senders]):
                    nursery.start_soon(send_many, peer, per_sender, f"from p{i}", i)
            log = await assert_converged(peers, senders * per_sender)
            for peer in peers:
                ids = [(m.sender_id, m.seq) for m in peer.messages() if m.is_text]
                assert len(set(ids)) == len(ids) == senders * per_sender
            # Each sender's entries (its chat lines and its membership entries: p0's genesis,
            # the CHANGE each peer wrote for the next, the FLUSHes, and the COMMITs, which
            # take no place in the log) appear in seq order, 1..n, no holes.
            by_sender: dict[bytes, list[int]] = {}
            lines: dict[bytes, int] = {}
            held = sorted([*peers[0].messages(), *peers[0].log.tombstones()], key=lambda m: m.key)
            for message in held:
                by_sender.setdefault(message.sender_id, []).append(message.seq)
                lines[message.sender_id] = lines.get(message.sender_id, 0) + message.is_text
            assert sorted(by_sender) == sorted(bytes.fromhex(p.peer_id) for p in peers)
            assert all(seqs == list(range(1, len(seqs) + 1)) for seqs in by_sender.values())
            assert all(count == per_sender for count in lines.values())
            assert len(log) == len(peers[0].messages())


async def test_late_joiner_receives_the_full_history_in_order() -> None:
    count = 60
    with trio.fail_after(TIMEOUT):
        async with open_peer("a") as a, open_peer("b", join=[a.url or ""]) as b:
            await b.wait_connected(1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(send_many, a, count // 2, "a", 1)
                nursery.start_soon(send_many, b, count // 2, "b", 2)
            history = await assert_converged([a, b], count)
            async with open_peer("late", join=[b.url or ""]) as late:
                await late.wait_admitted()
                log = await assert_converged([a, b, late], count)
                # The whole history, in the same order, then only the latecomer's admission:
                # b's CHANGE and a's FLUSH answering it.
                assert log[: len(history)] == history
                added = late.messages()[len(history) :]
                assert sorted(m.kind for m in added) == [EntryKind.CHANGE, EntryKind.FLUSH]  # (COMMITs: none)
                (change,) = [m.change for m in added if m.change is not None]
                assert change.admitted == ((bytes.fromhex(late.peer_id), "late"),)
                assert texts(late) == texts(a)


async def test_a_late_joiner_checks_one_signature_per_run_of_the_history() -> None:
    """Catch-up comes in batches; each author's run in a batch is authenticated by its
    hash links and one signature (p2pchat.chain), not one signature per entry."""
    count = 300
    checked: list[bytes] = []
    real_verify = Message.verify

    def verify(message: Message, room_id: bytes) -> bool:
        checked.append(message.sender_id)
        return real_verify(message, room_id)

    with trio.fail_after(TIMEOUT):
        async with open_peer("a") as a:
            sent = [await a.send(f"a {i} " + "x" * 40) for i in range(count)]
            with pytest.MonkeyPatch.context() as patch:
                patch.setattr(Message, "verify", verify)
                async with open_peer("late", join=[a.url or ""]) as late:
                    await late.wait_admitted()
                    while len(texts(late)) < count:
                        await trio.sleep(0.01)
                    assert keys(late)[: len(keys(a))] == keys(a)
            by_a = checked.count(bytes.fromhex(a.peer_id))
            assert 1 <= by_a <= count // 10, f"{by_a} signatures of a checked for {count} entries"
            assert [m.payload for m in late.messages() if m.is_text] == [m.payload for m in sent]


# Partition and restart -----------------------------------------------------------------------


def other_port() -> int:
    """A port free now (a restarted peer would take the one it had, see peer._listen)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_partition_heals_after_the_middle_peer_restarts(tmp_path: Path) -> None:
    # target_connections=1: nobody dials addresses it learns, so A - B - C stays a line
    # and stopping B really cuts A off from C.
    config = PeerConfig(target_connections=1)
    b_dir = tmp_path / "b"
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            a = await start_peer(nursery, "a", config=config)
            b = await start_peer(nursery, "b", data_dir=b_dir, join=[a.peer.url], config=config)
            c = await start_peer(nursery, "c", join=[b.peer.url], config=config)
            await b.peer.wait_connected(2)
            for running in (a, b, c):
                await send_many(running.peer, 5, running.peer.name, 0)
            before = await assert_converged([a.peer, b.peer, c.peer], 15)
            b_id = b.peer.peer_id
            b_clock = max(key.lamport for key in before)

            await b.aclose()
            await wait_until(lambda: a.peer.node.open_count == 0 and c.peer.node.open_count == 0)
            async with trio.open_nursery() as senders:
                senders.start_soon(send_many, a.peer, 20, "a during partition", 1)
                senders.start_soon(send_many, c.peer, 20, "c during partition", 2)
            assert len(texts(a.peer)) == len(texts(c.peer)) == 35
            assert text_keys(a.peer) != text_keys(c.peer), "A and C were not partitioned"

            # (Dialing no address it kept or learns: it stays cut off until it joins below.
            # On another port than before: c still redials the address it joined.)
            alone = PeerConfig(target_connections=0)
            b = await start_peer(
                nursery, "b", data_dir=b_dir, config=alone, listen=f"127.0.0.1:{other_port()}"
            )
            assert b.peer.peer_id == b_id
            assert set(before) <= set(keys(b.peer)), "B lost its history across the restart"
            assert text_keys(b.peer) == [key for key in before if key in set(text_keys(b.peer))]
            assert len(text_keys(b.peer)) == 15
            # Its clean quit wrote AWAY, its last entry: it is not a member until re-admitted,
            # and what it sends meanwhile waits, unstamped (it would land in the room's past).
            own = [m for m in b.peer.messages() if m.sender_id.hex() == b_id]
            assert own[-1].kind is EntryKind.AWAY and not b.peer.is_member
            async with trio.open_nursery() as typing:
                sent: list[Message] = []
                typing.start_soon(lambda: _append(sent, b.peer.send("b is back")))
                await trio.sleep(0.2)
                assert not sent and len(texts(b.peer)) == 15
                b.peer.join(a.peer.url or "")
                b.peer.join(c.peer.url or "")
            (after_restart,) = sent
            assert after_restart.seq == own[-1].seq + 1  # seq continues, never reused
            assert after_restart.lamport > b_clock
            readmissions = [
                m
                for m in b.peer.messages()
                if m.change is not None and bytes.fromhex(b_id) in {member for member, _ in m.change.admitted}
            ]
            assert after_restart.lamport > readmissions[-1].lamport  # stamped after its re-admission
            log = await assert_converged([a.peer, b.peer, c.peer], 15 + 40 + 1)
            assert set(before) <= set(log)
            last = await b.peer.send("b after the merge")
            assert last.seq == after_restart.seq + 1
            assert last.lamport > max(key.lamport for key in log)
            await assert_converged([a.peer, b.peer, c.peer], 15 + 40 + 2)
            for running in (a, b, c):
                await running.aclose()


async def _append(into: list[Message], sending: Awaitable[Message]) -> None:
    into.append(await sending)


async def test_store_keeps_identity_history_and_seq_across_restarts(tmp_path: Path) -> None:
    data = tmp_path / "s"
    with trio.fail_after(TIMEOUT):
        async with open_peer("friend") as friend:
            async with open_peer("s", data_dir=data, join=[friend.url or ""]) as s:
                await s.wait_connected(1)
                mine = [await s.send(f"mine {i}") for i in range(3)]
                assert [m.seq for m in mine] == [1, 2, 3]  # (admitted by friend: nothing of its own before)
                await send_many(friend, 2, "theirs", 0)
                first_log = await assert_converged([s, friend], 5)
                peer_id = s.peer_id
                room = s.room_id
            assert room is not None and room == friend.room_id
            with Store(data, read_only=True) as store:
                held = list(store.load_messages(room))
                assert store.message_count(room) == len(held)
                # (The COMMIT deciding its admission is stored, but takes no place in the log.)
                stored = [m for m in held if m.kind is not EntryKind.COMMIT]
                assert sum(m.is_text for m in stored) == 5
                # Everything it showed, then its AWAY (a clean quit), stamped last.
                assert [m.key for m in stored][: len(first_log)] == first_log
                away = stored[-1]
                assert (away.kind, away.sender_id.hex(), away.seq) == (EntryKind.AWAY, peer_id, 4)
                assert store.clock(room) == max(m.lamport for m in stored) == away.lamport
                assert store.last_room() == room

            # (Dialing none of the addresses it kept: alone. By default it would dial friend.)
            async with open_peer("s", data_dir=data, config=PeerConfig(target_connections=0)) as s:
                # Alone, it reopens the room last used with its identity and history, but
                # being away it may not write until a member re-admits it: what is sent
                # meanwhile waits unstamped, and is never stored if the peer stops first.
                assert s.peer_id == peer_id and s.room_id == room
                assert keys(s) == [m.key for m in stored]
                assert not s.is_member
                with trio.move_on_after(0.3) as waited:
                    await s.send("before re-admission")
                assert waited.cancelled_caught
            with Store(data, read_only=True) as store:
                assert store.message_count(room) == len(held)

            async with open_peer("s", data_dir=data, join=[friend.url or ""]) as s:
                assert s.peer_id == peer_id
                assert [m.seq for m in s.messages() if m.sender_id.hex() == peer_id] == [1, 2, 3, 4]
                again = await s.send("after restart")
                assert again.seq == away.seq + 1 == 5  # seq continues, never reused
                assert again.lamport > away.lamport
                await s.send("third run")
                await assert_converged([s, friend], 7)
                ours = [m for m in friend.messages() if m.sender_id.hex() == peer_id]
                assert [m.seq for m in ours] == [1, 2, 3, 4, 5, 6]
                assert [m.seq for m in ours if not m.is_text] == [4]


# trio-websocket pitfalls -----------------------------------------------------------------------


async def test_the_reader_handles_a_frame_itself_only_while_the_processing_stage_waits_empty() -> None:
    # A frame is handled by the reader task (sooner) only when nothing is ahead of it in
    # the processing stage; the frame order relies on how trio hands values over.
    send, receive = trio.open_memory_channel[bytes](2)
    assert not _stage_idle(receive)  # (the stage has not started)
    got: list[bytes] = []

    async def stage() -> None:
        async for frame in receive:
            got.append(frame)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stage)
        await trio.testing.wait_all_tasks_blocked()
        assert _stage_idle(receive)
        send.send_nowait(b"checked ahead")  # handed to the waiting stage, not taken yet
        assert not _stage_idle(receive) and got == []
        send.send_nowait(b"next")  # queued behind it
        assert not _stage_idle(receive)
        await trio.testing.wait_all_tasks_blocked()
        assert got == [b"checked ahead", b"next"] and _stage_idle(receive)
        send.close()


async def test_pings_during_close_and_aborted_streams_do_not_kill_the_listener() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_peer("host") as host:
            host_name, port = host_port(host.url or "")

            async def ping_while_server_closes() -> None:
                # Upstream #184: a ping that arrives after the server sent its close frame
                # (wsproto state LOCAL_CLOSING) makes trio-websocket's reader raise.
                async with raw_websocket(host.url or "") as (stream, ws):
                    # Frames are made while the connection is open (wsproto refuses later).
                    pings = b"".join(ws.send(Ping(payload=bytes([i]))) for i in range(5))
                    await stream.send_all(ws.send(TextMessage("provoke a close")))
                    while True:
                        data = await stream.receive_some(65536)
                        if not data:
                            return
                        ws.receive_data(data)
                        if any(isinstance(e, CloseConnection) for e in ws.events()):
                            break
                    with suppress(trio.BrokenResourceError):
                        await stream.send_all(pings)
                    abort_on_close(stream)

            async def ping_then_abort() -> None:
                async with trio.open_nursery() as nursery:
                    stream = await trio.open_tcp_stream(host_name, port)
                    ws = await wrap_client_stream(nursery, stream, host_name, "/")

                    async def ping() -> None:
                        with suppress(ConnectionClosed):
                            await ws.ping()

                    nursery.start_soon(ping)
                    await trio.sleep(0)
                    abort_on_close(stream)
                    await trio.aclose_forcefully(stream)
                    nursery.cancel_scope.cancel()

            async def upgrade_then_abort() -> None:
                async with raw_websocket(host.url or "") as (stream, ws):
                    await stream.send_all(ws.send(Ping(payload=b"bye")))
                    abort_on_close(stream)

            async def garbage() -> None:
                async with await trio.open_tcp_stream(host_name, port) as stream:
                    await stream.send_all(os.urandom(300))

            async def half_request() -> None:
                async with await trio.open_tcp_stream(host_name, port) as stream:
                    await stream.send_all(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: webs")
                    abort_on_close(stream)

            for _ in range(8):
                for attack in (ping_while_server_closes, ping_then_abort, upgrade_then_abort):
                    await attack()
                async with trio.open_nursery() as nursery:
                    for attack in (garbage, half_request, ping_then_abort, upgrade_then_abort):
                        nursery.start_soon(attack)
            await chat_works(host)
            await wait_until(lambda: host.node.open_count == 0)


async def test_silent_tcp_clients_do_not_block_others() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_peer("host") as host:
            host_name, port = host_port(host.url or "")
            async with AsyncExitStack() as stack:
                silent = [
                    await stack.enter_async_context(await trio.open_tcp_stream(host_name, port))
                    for _ in range(5)
                ]
                await chat_works(host)
                assert len(silent) == 5


async def test_silent_tcp_client_is_dropped_after_the_handshake_timeout() -> None:
    async def never_called(connection: WebSocketConnection, nursery: trio.Nursery) -> None:
        raise AssertionError("a client that never upgraded reached the handler")

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                lambda task_status: serve_websockets(
                    never_called, "127.0.0.1", 0, handshake_timeout=0.5, task_status=task_status
                )
            )
            host_name, port = host_port(url_of(listeners[0]))
            async with await trio.open_tcp_stream(host_name, port) as stream:
                started = trio.current_time()
                with trio.fail_after(5):
                    try:
                        data = await stream.receive_some(1024)
                    except trio.BrokenResourceError:
                        data = b""
                elapsed = trio.current_time() - started
            assert data == b""
            assert 0.3 <= elapsed < 5
            nursery.cancel_scope.cancel()


async def test_websocket_client_that_never_says_hello_is_closed() -> None:
    config = PeerConfig(node=NodeConfig(handshake_timeout=0.5))
    with trio.fail_after(TIMEOUT):
        async with open_peer("host", config=config) as host:
            async with client_websocket(host.url or "") as ws:
                started = trio.current_time()
                code = await close_code_after(ws)
                elapsed = trio.current_time() - started
            assert code == CloseCode.POLICY_VIOLATION
            assert 0.3 <= elapsed < 5
            await chat_works(host)


async def test_dial_to_a_silent_server_times_out() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, silent, 0)
            port = listeners[0].socket.getsockname()[1]
            started = trio.current_time()
            async with trio.open_nursery() as dial_nursery:
                with pytest.raises(trio.TooSlowError):
                    await dial(dial_nursery, f"ws://127.0.0.1:{port}", timeout=0.5)
                # Nothing of the failed dial is left running in the nursery.
            assert trio.current_time() - started < 2
            nursery.cancel_scope.cancel()


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
async def test_dialed_stream_is_closed_when_the_server_closes_first() -> None:
    # trio-websocket leaves a client's TCP stream open when the server closes first;
    # dial must close it once its nursery is done, or every redial leaks a socket.
    async def close_at_once(connection: WebSocketConnection, nursery: trio.Nursery) -> None:
        await connection.aclose(1000, "bye")

    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as server:
            listeners = await server.start(serve_websockets, close_at_once, "127.0.0.1", 0)
            url = url_of(listeners[0])
            baseline = open_fds()
            for _ in range(5):
                async with trio.open_nursery() as nursery:
                    ws = await dial(nursery, url)
                    assert await close_code_after(ws) == 1000
                    nursery.cancel_scope.cancel()
            with trio.fail_after(2):
                await wait_until(lambda: open_fds() <= baseline)
            server.cancel_scope.cancel()


async def test_peer_joining_a_silent_server_stays_usable() -> None:
    async def silent(stream: trio.SocketStream) -> None:
        await trio.sleep_forever()

    config = PeerConfig(dial_timeout=0.3, backoff_initial=0.05, backoff_max=0.2)
    with trio.fail_after(TIMEOUT):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(trio.serve_tcp, silent, 0)
            port = listeners[0].socket.getsockname()[1]
            # The host joins the room of a founder; the silent address, listed first, keeps
            # timing out meanwhile (a newcomer takes its room from whoever answers).
            async with (
                open_peer("founder") as founder,
                open_peer("host", join=[f"ws://127.0.0.1:{port}", founder.url or ""], config=config) as host,
            ):
                await trio.sleep(0.7)  # a few dial attempts time out meanwhile
                assert host.room_id == founder.room_id and host.is_member
                await chat_works(host)
            nursery.cancel_scope.cancel()


async def _handshake_as_neighbour(ws: WebSocketConnection) -> Link:
    """Complete the p2pchat HELLO/AUTH exchange (and key exchange) from a hand-driven client."""
    link = Link(Identity(os.urandom(32)), "slowpoke", None, os.urandom(LINK_RANDOMNESS), dialer=True)
    await ws.send_message(link.hello())
    while not link.is_open:
        _, reply = link.receive(await ws.get_message())
        if reply is not None:
            await ws.send_message(reply)
    # A frame of its own after the handshake, as every peer sends: it takes the link, and
    # the host reports it up (and later down).
    await ws.send_message(link.seal(encode_frame(Peers(()))))
    return link


async def test_neighbour_that_never_reads_is_disconnected_not_waited_for() -> None:
    config = PeerConfig(send_queue_frames=4)
    text = "x" * 8000
    with trio.fail_after(TIMEOUT):
        async with (
            open_peer("host", config=config) as host,
            open_peer("guest", join=[host.url or ""]) as guest,
            host.subscribe() as events,
            trio.open_nursery() as client,
        ):
            await host.wait_connected(1)
            host_name, port = host_port(host.url or "")
            stream = await trio.open_tcp_stream(host_name, port)
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            ws = await wrap_client_stream(client, stream, host_name, "/", message_queue_size=1)
            await _handshake_as_neighbour(ws)
            await host.wait_connected(2)
            # It gets the room once admitted (its link stayed open a moment, guest answered).
            await wait_until(lambda: len(host.log.members) == 3)
            # From here on the client never calls get_message: its queue fills, then
            # its socket buffer, then the host's socket buffer, then the host's outbox.

            slow_dropped = trio.Event()
            reasons: list[str] = []

            async def watch() -> None:
                async for event in events:
                    if isinstance(event, NeighbourDown):
                        reasons.append(event.reason)
                        if "too slow" in event.reason:
                            slow_dropped.set()
                            return

            client.start_soon(watch)
            sent = 0
            try:
                while not slow_dropped.is_set():
                    assert sent < 5000, f"slow neighbour never dropped; downs: {reasons}"
                    await host.send(f"{sent} {text}")
                    sent += 1
                    if sent % 10 == 0:
                        # Paced by the guest, which reads: on a loaded machine a burst it
                        # cannot keep up with would fill its queue too, and drop it as well.
                        await guest.wait_texts(sent)
                assert host.node.open_count == 1
                # The host kept serving the guest meanwhile, and still does.
                await guest.send("still there?")
                await assert_converged([host, guest], sent + 1)
            finally:
                client.cancel_scope.cancel()
                await trio.aclose_forcefully(stream)


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ("a text frame", CloseCode.UNSUPPORTED_DATA),
        (b"\xff\x00 not cbor", CloseCode.PROTOCOL_ERROR),
        (b"\x00" * (MAX_FRAME_BYTES + 1), CloseCode.TOO_BIG),
    ],
    ids=["text", "garbage-bytes", "oversized"],
)
async def test_bad_frames_close_the_connection_with_a_code(payload: str | bytes, code: int) -> None:
    with trio.fail_after(TIMEOUT):
        async with open_peer("host") as host, open_peer("guest", join=[host.url or ""]) as guest:
            await guest.wait_connected(1)
            for _ in range(3):
                async with client_websocket(host.url or "", max_message_size=2 * MAX_FRAME_BYTES) as ws:
                    await ws.send_message(payload)
                    assert await close_code_after(ws) == code
            await host.send("host still works")
            await guest.send("guest still works")
            await assert_converged([host, guest], 2)
            assert host.node.open_count == 1


async def test_bad_frame_after_the_handshake_closes_the_connection() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_peer("host") as host:
            async with client_websocket(host.url or "") as ws:
                link = await _handshake_as_neighbour(ws)
                await host.wait_connected(1)
                await ws.send_message(link.seal(b"\x82garbage"))  # sealed, so it opens: bad CBOR
                assert await close_code_after(ws) == CloseCode.PROTOCOL_ERROR
            await wait_until(lambda: host.node.open_count == 0)
            await chat_works(host)
