"""A peer says why it cannot reach an address, and when it tries again."""

from __future__ import annotations

import errno
import logging
import socket
from contextlib import suppress
from dataclasses import replace
from pathlib import Path

import cbor2
import pytest
import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketRequest, serve_websocket

from p2pchat.address import split_peer_url
from p2pchat.dialerrors import dial_failure_reason
from p2pchat.node import Discovered
from p2pchat.peer import DialFailed, NeighbourDown, NeighbourUp, PeerConfig, PeerEvent, open_peer


def test_reasons_are_in_plain_words() -> None:
    assert dial_failure_reason(ConnectionRefusedError(errno.ECONNREFUSED, "refused")) == "connection refused"
    assert dial_failure_reason(socket.gaierror(-2, "Name or service not known")) == "unknown host"
    assert dial_failure_reason(trio.TooSlowError()) == "no answer (timed out)"
    assert "handshake" in dial_failure_reason(HandshakeError())
    # trio reports "all attempts to connect failed", the real errors as its cause.
    wrapped = OSError("all attempts to connect to 127.0.0.1:1 failed")
    wrapped.__cause__ = ExceptionGroup("attempts", [ConnectionRefusedError(errno.ECONNREFUSED, "refused")])
    assert dial_failure_reason(wrapped) == "connection refused"
    assert dial_failure_reason(OSError(errno.EHOSTUNREACH, "No route to host")) == "no route to host"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def next_dial_failures(events: trio.MemoryReceiveChannel[PeerEvent], count: int) -> list[DialFailed]:
    """The next ``count`` failed dials ``events`` publish (other events are passed over)."""
    failures: list[DialFailed] = []
    async for event in events:
        if isinstance(event, DialFailed):
            failures.append(event)
            if len(failures) == count:
                break
    return failures


async def test_a_peer_publishes_each_failed_dial_with_the_next_try() -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    config = PeerConfig(backoff_initial=0.05, backoff_max=0.2)
    with trio.fail_after(10):
        async with open_peer("alice", config=config) as alice, alice.subscribe() as events:
            alice.join(url)
            failures = await next_dial_failures(events, 3)
    assert {f.url for f in failures} == {url}
    assert {f.reason for f in failures} == {"connection refused"}
    assert all(f.retry_in is not None and 0 <= f.retry_in <= 0.2 for f in failures)


async def test_a_learned_address_is_given_up_after_a_few_tries_and_says_so() -> None:
    url = f"ws://127.0.0.1:{closed_port()}"
    config = PeerConfig(backoff_initial=0.01, backoff_max=0.02, discovered_attempts=2)
    with trio.fail_after(10):
        async with open_peer("alice", config=config) as alice, alice.subscribe() as events:
            alice.join(url, bootstrap=False)
            async for event in events:
                if isinstance(event, DialFailed) and event.retry_in is None:
                    break
            assert alice.statistics().dialing == 0  # the dialer has stopped


async def test_our_own_old_address_learned_from_a_neighbour_is_not_dialed() -> None:
    with trio.fail_after(10):
        async with open_peer("alice") as alice:
            old = f"ws://127.0.0.1:{closed_port()}/#{alice.peer_id}"  # (from before a restart)
            alice.join(old, bootstrap=False)
            assert alice.statistics().dialing == 0


async def test_a_member_cut_off_from_us_is_dialed_beyond_the_links_wanted() -> None:
    # With as many links as it wants, a peer dials a learned address only when the node
    # offers it beyond the target (a member unheard for long, see Node._rediscover), and
    # never when it dials learned addresses not at all (target 0).
    config = PeerConfig(target_connections=1, backoff_initial=0.01, backoff_max=0.02)
    with trio.fail_after(10):
        async with (
            open_peer("alice", config=config) as alice,
            open_peer("bob", join=[alice.url or ""]) as bob,
        ):
            await alice.wait_connected(1)
            far = f"ws://127.0.0.1:{closed_port()}/#{bob.peer_id[::-1]}"  # (no peer of ours)
            alice._apply([Discovered((far,))])
            assert alice.statistics().dialing == 0
            alice._apply([Discovered((far,), beyond_target=True)])
            assert alice.statistics().dialing == 1
        async with open_peer("carol", config=replace(config, target_connections=0)) as carol:
            carol._apply([Discovered((far,), beyond_target=True)])
            assert carol.statistics().dialing == 0


async def test_a_link_we_dialed_counts_once_toward_the_links_wanted() -> None:
    # Carol wants two links and has one, to alice, which she dialed: an address learned
    # now is dialed (her dialer of alice, up, is that one link, not a second).
    config = PeerConfig(target_connections=2, backoff_initial=0.01, backoff_max=0.02)
    with trio.fail_after(10):
        async with (
            open_peer("alice") as alice,
            open_peer("carol", join=[alice.url or ""], config=config) as carol,
        ):
            await carol.wait_connected(1)
            far = f"ws://127.0.0.1:{closed_port()}/#{alice.peer_id[::-1]}"  # (no peer of ours)
            carol._apply([Discovered((far,))])
            assert carol.statistics().dialing == 2


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "p2pchat.peer" and "refused us" in r.msg]


async def test_a_peer_that_refuses_us_is_redialed_with_a_longer_backoff(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="p2pchat.peer")
    config = PeerConfig(backoff_initial=0.01, backoff_max=0.02, refusal_backoff_max=0.2)
    with trio.fail_after(30):
        async with open_peer("alice", private=True) as alice:
            plain = split_peer_url(alice.url or "")[0]
            # carol is no member of alice's invite-only room: every link she dials is refused.
            async with open_peer("carol", join=[plain], config=config):
                while len(refusals(caplog)) < 10:
                    await trio.sleep(0.05)
    found = refusals(caplog)
    assert all(r.args and "invite-only" in str(r.args[1]) for r in found)
    waits = [float(r.args[2]) for r in found if r.args]  # type: ignore[arg-type,index]
    # (Full jitter: a wait is random up to the delay, which doubles from 0.01 s per try.
    # By the sixth it is at the refusal cap; five waits all under the plain 0.02 s cap
    # would happen one time in 10^5.)
    assert max(waits[5:]) > config.backoff_max
    assert max(waits) <= config.refusal_backoff_max


async def test_a_url_naming_another_peer_is_a_failed_dial_redialed_ever_more_slowly() -> None:
    config = PeerConfig(backoff_initial=0.01, backoff_max=0.02, refusal_backoff_max=0.2)
    with trio.fail_after(30):
        async with open_peer("alice") as alice:
            wrong = split_peer_url(alice.url or "")[0] + "#" + "ab" * 32
            async with open_peer("carol", join=[wrong], config=config) as carol, carol.subscribe() as events:
                failures = await next_dial_failures(events, 10)
    assert all(f.url == wrong and "expected peer abababab" in f.reason for f in failures), failures
    waits = [f.retry_in or 0.0 for f in failures]
    # (As for a peer that refuses us: see the test above.)
    assert max(waits[5:]) > config.backoff_max
    assert max(waits) <= config.refusal_backoff_max


def pending(events: trio.MemoryReceiveChannel[PeerEvent]) -> list[PeerEvent]:
    """The events already published (none is awaited)."""
    found = []
    while True:
        try:
            found.append(events.receive_nowait())
        except trio.WouldBlock:
            return found


async def test_a_link_the_other_side_refuses_is_a_failed_dial_never_a_connection() -> None:
    config = PeerConfig(backoff_initial=0.01, backoff_max=0.02, refusal_backoff_max=0.05)
    with trio.fail_after(30):
        async with open_peer("alice", private=True) as alice, alice.subscribe() as at_alice:
            plain = split_peer_url(alice.url or "")[0]
            # carol is no member of alice's invite-only room: refused every time.
            async with (
                open_peer("carol", join=[plain], config=config) as carol,
                carol.subscribe() as at_carol,
            ):
                failures: list[DialFailed] = []
                async for event in at_carol:
                    assert not isinstance(event, NeighbourUp | NeighbourDown), event
                    if isinstance(event, DialFailed):
                        failures.append(event)
                        if len(failures) == 3:
                            break
                # alice refused each link before carol heard of it: she reported none either.
                assert [e for e in pending(at_alice) if isinstance(e, NeighbourUp | NeighbourDown)] == []
    assert all(f.url == plain and "invite-only" in f.reason and f.retry_in is not None for f in failures)


async def test_a_provisional_room_refused_by_the_peer_joined_is_a_failed_dial(tmp_path: Path) -> None:
    config = PeerConfig(backoff_initial=0.01, backoff_max=0.02, refusal_backoff_max=0.2)
    with trio.fail_after(30):
        async with open_peer("alice", data_dir=tmp_path / "alice") as alone:
            await alone.send("in alice's own room")  # (not pristine: she moves, bob does not)
        async with open_peer("bob", data_dir=tmp_path / "bob") as bob:
            await bob.send("in bob's room")
            assert bob.url is not None
            # Her last room is provisional: the first link takes her to bob's room, and bob
            # refuses that link (it came from her old room). She says so, then redials.
            async with (
                open_peer("alice", data_dir=tmp_path / "alice", join=[bob.url], config=config) as alice,
                alice.subscribe() as events,
            ):
                before = alice.room_id
                seen: list[PeerEvent] = []
                async for event in events:
                    seen.append(event)
                    if isinstance(event, NeighbourUp):
                        break
                assert alice.room_id == bob.room_id != before
    failures = [e for e in seen if isinstance(e, DialFailed)]
    assert len(failures) == 1, seen
    (failure,) = failures
    assert before is not None and bob.room_id is not None
    assert failure.url == bob.url and failure.retry_in is not None
    assert f"not in your room {before.hex()[:16]}" in failure.reason
    assert failure.reason.endswith(f"moved to its room {bob.room_id.hex()[:16]}")


async def serve_other_version(handler_mode: str, task_status: trio.TaskStatus[int]) -> None:
    """A server speaking protocol version 7: it sends its HELLO, or closes as a peer of
    another version does on ours."""

    async def handler(request: WebSocketRequest) -> None:
        websocket = await request.accept()
        if handler_mode == "hello":
            hello = [1, 7, b"\x01" * 32, b"\x02" * 16, b"\x03" * 32]  # [HELLO, version, id, nonce, key]
            await websocket.send_message(cbor2.dumps(hello))
        else:
            await websocket.get_message()  # (our HELLO)
            await websocket.aclose(1002, "protocol version 11 is not supported (this peer speaks 7)")
        with suppress(ConnectionClosed):
            while True:
                await websocket.get_message()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, None)
        task_status.started(server.port)


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("hello", "protocol version 7 is not supported (this peer speaks 11)"),  # we close
        ("close", "protocol version 11 is not supported (this peer speaks 7)"),  # it closes
    ],
)
async def test_a_peer_of_another_protocol_version_is_a_failed_dial_that_says_so(
    mode: str, reason: str
) -> None:
    config = PeerConfig(backoff_initial=0.01, backoff_max=0.02, refusal_backoff_max=0.05)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            port = await nursery.start(serve_other_version, mode)
            url = f"ws://127.0.0.1:{port}"
            async with open_peer("alice", join=[url], config=config) as alice, alice.subscribe() as events:
                failures = await next_dial_failures(events, 2)
            nursery.cancel_scope.cancel()
    # (The reason as it is: the URL names the peer, and no "conn N:" of our own goes in front.)
    assert all(f.url == url and f.reason == reason and f.retry_in is not None for f in failures), failures
