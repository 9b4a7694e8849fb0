"""A link that goes silent is noticed and redialed (PeerConfig.liveness_timeout).

On loopback a dead peer's socket closes at once; on a real network a partition, a
pulled cable or a sleeping laptop leaves the TCP connection open, carrying nothing.
Here two real peers talk through a TCP relay on 127.0.0.1 that can go silent: once
cut, it swallows every byte in both directions of the connections it carries (and
of new ones) without closing anything, as a network that drops packets would. The
peers must notice from the silence alone, and reconnect once the relay forwards again.

Times are shortened through the config; each test runs under ``trio.fail_after``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio

from p2pchat.address import peer_url, split_peer_url
from p2pchat.peer import NeighbourDown, NeighbourUp, Peer, PeerConfig, PeerEvent, open_peer

TIMEOUT = 20
FAST = PeerConfig(
    liveness_timeout=0.6, ping_interval=0.2, backoff_initial=0.05, backoff_max=0.3, dial_timeout=1.0
)


class SilentRelay:
    """Forwards TCP connections to ``target_port`` until :meth:`cut`; then stays silent.

    A cut kills every connection relayed so far for good (their bytes are dropped from
    then on), and connections accepted while cut are held open and never forwarded.
    After :meth:`heal` new connections are forwarded again.
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.generation = 0
        self.cut_now = False
        self.port = 0

    def cut(self) -> None:
        self.cut_now = True
        self.generation += 1

    def heal(self) -> None:
        self.cut_now = False

    async def serve(self, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        task_status.started(self.port)
        await trio.serve_listeners(self._relay, listeners)

    async def _relay(self, client: trio.SocketStream) -> None:
        async with client:
            if self.cut_now:
                await trio.sleep_forever()  # accepted, never answered
            generation = self.generation
            upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
            async with upstream, trio.open_nursery() as nursery:
                nursery.start_soon(self._pump, client, upstream, generation)
                nursery.start_soon(self._pump, upstream, client, generation)

    async def _pump(self, source: trio.SocketStream, sink: trio.SocketStream, generation: int) -> None:
        try:
            async for chunk in source:
                if self.generation == generation:
                    await sink.send_all(chunk)
                # else: swallowed -- the connection lives on and carries nothing
        except trio.BrokenResourceError:
            pass


@asynccontextmanager
async def relayed_pair(config: PeerConfig) -> AsyncIterator[tuple[Peer, Peer, SilentRelay]]:
    """Peer a, and peer b that dials a through a relay."""
    async with open_peer("a", config=config) as a, trio.open_nursery() as nursery:
        assert a.url is not None
        base, a_id = split_peer_url(a.url)
        assert a_id == a.node.identity.sender_id
        relay = SilentRelay(int(base.rstrip("/").rsplit(":", 1)[1]))
        port = await nursery.start(relay.serve)
        # b dials the relay's address, expecting a's id: the relay only passes bytes on.
        async with open_peer("b", join=[peer_url(f"ws://127.0.0.1:{port}", a_id)], config=config) as b:
            await a.wait_connected()
            await b.wait_connected()
            await b.wait_admitted()  # a founded the room; b may write once admitted
            yield a, b, relay
        nursery.cancel_scope.cancel()


async def next_down(events: trio.MemoryReceiveChannel[PeerEvent]) -> NeighbourDown:
    async for event in events:
        if isinstance(event, NeighbourDown):
            return event
    raise AssertionError("event stream ended")


async def test_a_silent_link_is_closed_on_both_sides_and_redialed_after_the_heal() -> None:
    with trio.fail_after(TIMEOUT):
        async with relayed_pair(FAST) as (a, b, relay), a.subscribe() as a_events, b.subscribe() as b_events:
            relay.cut()
            down_a, down_b = await next_down(a_events), await next_down(b_events)
            assert "silent" in down_a.reason and "silent" in down_b.reason
            assert down_a.sender_id == b.node.identity.sender_id
            # b writes during the cut; its dialer keeps trying (held by the relay).
            message = await b.send("written while cut off")
            await trio.sleep(0.5)
            assert message.key not in {m.key for m in a.messages()}
            relay.heal()
            async for event in a_events:
                if isinstance(event, NeighbourUp):
                    break
            await a.wait_texts(1)
            assert [m.text for m in a.messages() if m.is_text] == ["written while cut off"]


async def test_a_quiet_but_healthy_link_stays_up() -> None:
    """In a quiet room heads go out only every keepalive (10 s): pings keep it alive."""
    with trio.fail_after(TIMEOUT):
        async with relayed_pair(FAST) as (a, b, _), a.subscribe() as events:
            with trio.move_on_after(5 * FAST.liveness_timeout):
                down = await next_down(events)
                raise AssertionError(f"healthy link closed: {down.reason}")
            assert a.node.open_count == 1 and b.node.open_count == 1


async def test_without_the_liveness_check_a_silent_link_stays_open() -> None:
    """The control: the silence itself closes nothing, only the check does."""
    config = PeerConfig(liveness_timeout=0, backoff_initial=0.05, backoff_max=0.3)
    with trio.fail_after(TIMEOUT):
        async with relayed_pair(config) as (a, b, relay), a.subscribe() as events:
            relay.cut()
            with trio.move_on_after(4 * FAST.liveness_timeout):
                down = await next_down(events)
                raise AssertionError(f"closed without the check: {down.reason}")
            assert a.node.open_count == 1 and b.node.open_count == 1
