"""Private links (issue 10): encryption, identities bound to the key exchange, pinned
peer ids in join URLs, history only for members, private files at rest.

Attacks speak to a real peer on a loopback port through the third-party
``websockets`` client (in a worker thread), driving a :class:`~p2pchat.protocol.Link`
by hand where they need to get through the key exchange. Each attack must end with a
clear close reason and no data, and the peer must keep serving its members.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from functools import partial
from pathlib import Path
from typing import TypeVar

import pytest
import trio
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from p2pchat import node as node_module
from p2pchat.address import invite_of, invite_url, peer_url, split_peer_url
from p2pchat.identity import Identity, short_id
from p2pchat.invites import INVITE_SECRET_SIZE, Invite, InviteBook
from p2pchat.membership import MemberState
from p2pchat.message import RoomPolicy
from p2pchat.peer import DialFailed, Peer, PeerConfig, open_peer
from p2pchat.protocol import LINK_RANDOMNESS, Link, ProtocolError
from p2pchat.store import Store
from p2pchat.wire import Heads, Messages, encode_frame

T = TypeVar("T")
TIMEOUT = 30


def new_link(*, identity: Identity | None = None, room: bytes = b"", expected: bytes | None = None) -> Link:
    return Link(
        identity or Identity(os.urandom(32)),
        "mallory",
        None,
        os.urandom(LINK_RANDOMNESS),
        room,
        dialer=True,
        expected_id=expected,
    )


class Raw:
    """One hand-driven connection (``websockets`` sync client, in a worker thread)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.sent: list[bytes] = []

    def send(self, data: bytes | str) -> None:
        if isinstance(data, bytes):
            self.sent.append(data)
        self.ws.send(data)

    def recv(self, timeout: float = 5) -> bytes:
        data = self.ws.recv(timeout=timeout)
        assert isinstance(data, bytes)
        return data

    def handshake(self, link: Link) -> None:
        """The honest handshake, as a dialer."""
        self.send(link.hello())
        while not link.is_open:
            _, reply = link.receive(self.recv())
            if reply is not None:
                self.send(reply)

    def close_reason(self, timeout: float = 5) -> tuple[int | None, str, int]:
        """Read until the victim closes: (code, reason, frames received meanwhile)."""
        frames = 0
        try:
            while True:
                self.ws.recv(timeout=timeout)
                frames += 1
        except ConnectionClosed as exc:
            received = exc.rcvd
            return (received.code, received.reason, frames) if received else (None, "", frames)
        except TimeoutError:
            return None, "still open", frames


def run_raw(url: str, body: Callable[[Raw], T]) -> T:
    with connect(
        split_peer_url(url)[0], open_timeout=5, close_timeout=1, ping_interval=None, max_size=None,
        compression=None, proxy=None,
    ) as ws:  # fmt: skip
        return body(Raw(ws))


async def in_thread(url: str, body: Callable[[Raw], T]) -> T:
    return await trio.to_thread.run_sync(partial(run_raw, url, body), abandon_on_cancel=True)


def closing(body: Callable[[Raw], object]) -> Callable[[Raw], tuple[int | None, str, int]]:
    def run(raw: Raw) -> tuple[int | None, str, int]:
        with suppress(ConnectionClosed, ProtocolError):
            body(raw)
        return raw.close_reason()

    return run


async def chat_still_works(host: Peer, member: Peer, text: str) -> None:
    await member.send(text)
    with trio.fail_after(TIMEOUT):
        while text not in [m.text for m in host.messages()]:
            await trio.sleep(0.02)


# Pure: the handshake between two Links ----------------------------------------------------------


def pair(*, expected: bytes | None = None, acceptor: Identity | None = None) -> tuple[Link, Link, Identity]:
    server_id = acceptor or Identity(os.urandom(32))
    dialer = new_link(expected=expected)
    server = Link(server_id, "srv", "ws://x:1/", os.urandom(LINK_RANDOMNESS), bytes(32), dialer=False)
    return dialer, server, server_id


def run_handshake(a: Link, b: Link) -> None:
    to_b, to_a = [a.hello()], [b.hello()]
    while to_b or to_a:
        if to_b:
            _, reply = b.receive(to_b.pop(0))
            if reply:
                to_a.append(reply)
        if to_a:
            _, reply = a.receive(to_a.pop(0))
            if reply:
                to_b.append(reply)


def test_two_links_agree_and_seal_both_ways() -> None:
    dialer, server, server_id = pair()
    run_handshake(dialer, server)
    assert dialer.is_open and server.is_open
    assert dialer.remote is not None and dialer.remote.sender_id == server_id.sender_id
    assert dialer.remote.room_id == bytes(32) and dialer.remote.name == "srv"
    frame = encode_frame(Heads(()))
    sealed = dialer.seal(frame)
    assert frame not in sealed
    assert server.receive(sealed)[0] == Heads(())


def test_a_dialer_refuses_a_peer_other_than_the_one_its_url_names() -> None:
    dialer, server, server_id = pair(expected=Identity(os.urandom(32)).sender_id)
    with pytest.raises(ProtocolError, match=r"expected peer .* answered"):
        run_handshake(dialer, server)
    # The right id passes.
    dialer, server, _ = pair(expected=server_id.sender_id, acceptor=server_id)
    run_handshake(dialer, server)
    assert dialer.is_open


def test_sealed_frames_replayed_reordered_or_flipped_do_not_open() -> None:
    for attack in ("replay", "reorder", "flip", "truncate", "plain"):
        dialer, server, _ = pair()
        run_handshake(dialer, server)
        first, second = dialer.seal(encode_frame(Heads(()))), dialer.seal(encode_frame(Heads((), True)))
        if attack == "replay":
            server.receive(first)
            bad = first
        elif attack == "reorder":
            bad = second
        elif attack == "flip":
            bad = first[:-1] + bytes([first[-1] ^ 1])
        elif attack == "truncate":
            bad = first[:-3]
        else:
            bad = encode_frame(Heads(()))
        with pytest.raises(ProtocolError, match="does not open"):
            server.receive(bad)


def test_peer_urls_name_ids_and_refuse_malformed_ones() -> None:
    me = Identity(os.urandom(32)).sender_id
    url = peer_url("ws://127.0.0.1:9000", me)
    assert url == f"ws://127.0.0.1:9000/#{me.hex()}"
    assert split_peer_url(url) == ("ws://127.0.0.1:9000/", me)
    assert split_peer_url("ws://127.0.0.1:9000") == ("ws://127.0.0.1:9000", None)
    with pytest.raises(ValueError, match="peer id"):
        split_peer_url("ws://127.0.0.1:9000/#abc")


# Attacks over real sockets --------------------------------------------------------------------


async def test_a_passive_reader_of_a_relayed_session_sees_no_text_names_or_rooms() -> None:
    """A TCP relay in the middle records every byte of a real session between two peers."""
    captured = bytearray()
    secret = "the password is swordfish"
    with trio.fail_after(TIMEOUT):
        async with open_peer("alice") as alice, trio.open_nursery() as nursery:
            target = split_peer_url(alice.url or "")[0].removeprefix("ws://").rstrip("/")
            host, port = target.rsplit(":", 1)

            async def relay(client: trio.SocketStream) -> None:
                server = await trio.open_tcp_stream(host, int(port))

                async def pump(src: trio.SocketStream, dst: trio.SocketStream) -> None:
                    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        async for chunk in src:
                            captured.extend(chunk)
                            await dst.send_all(chunk)
                    with suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                        await dst.send_eof()

                async with client, server, trio.open_nursery() as pumps:
                    pumps.start_soon(pump, client, server)
                    pumps.start_soon(pump, server, client)

            listeners = await nursery.start(partial(trio.serve_tcp, relay, 0, host="127.0.0.1"))
            relay_port = listeners[0].socket.getsockname()[1]
            # Through the relay, still naming alice's id: the relay cannot be in the middle.
            via = peer_url(f"ws://127.0.0.1:{relay_port}", alice.node.identity.sender_id)
            async with open_peer("bob", join=[via]) as bob:
                await bob.wait_admitted()
                await bob.send(secret)
                await alice.send(secret.upper())
                await alice.wait_delivered(4)
                await bob.wait_delivered(4)
                room = alice.room_id
            nursery.cancel_scope.cancel()
    assert secret in [m.text for m in alice.messages()]
    data = bytes(captured)
    assert len(data) > 1000
    for needle in (secret, secret.upper(), "swordfish", "alice", "bob", "room"):
        assert needle.encode() not in data, needle
    assert room is not None and room not in data


async def test_attacks_get_a_close_reason_and_no_data_and_the_peer_keeps_serving() -> None:
    with trio.fail_after(TIMEOUT * 2):
        async with open_peer("victim") as victim, open_peer("bob", join=[victim.url or ""]) as bob:
            await bob.wait_admitted()
            url = victim.url or ""
            victim_id = victim.node.identity.sender_id
            bob_id = bob.node.identity.sender_id
            reasons: dict[str, tuple[int | None, str, int]] = {}

            def plaintext_after_hello(raw: Raw) -> None:
                raw.send(new_link().hello())
                raw.recv()  # the victim's HELLO
                raw.send(encode_frame(Messages(())))  # not sealed

            reasons["plaintext frame"] = await in_thread(url, closing(plaintext_after_hello))

            def borrowed_identity(raw: Raw) -> None:
                # Says it is bob, but can only sign with its own key.
                impostor = Identity(os.urandom(32))
                impostor.sender_id = bob_id
                raw.handshake(new_link(identity=impostor))

            reasons["someone else's identity"] = await in_thread(url, closing(borrowed_identity))

            def wrong_room(raw: Raw) -> None:
                raw.handshake(new_link(room=os.urandom(32)))

            reasons["wrong room"] = await in_thread(url, closing(wrong_room))

            recorded: list[bytes] = []

            def honest(raw: Raw) -> None:
                raw.handshake(new_link())
                recorded.extend(raw.sent)

            # (It hangs up itself: an honest newcomer whose link stays open is admitted,
            # and then gets the room's heartbeats, never a close.)
            await in_thread(url, honest)

            def replayed_handshake(raw: Raw) -> None:
                raw.send(recorded[0])  # the old HELLO
                raw.recv()
                raw.send(recorded[1])  # the old sealed AUTH: keys have changed

            reasons["replayed handshake"] = await in_thread(url, closing(replayed_handshake))

            def sealed(mangle: str) -> Callable[[Raw], None]:
                def body(raw: Raw) -> None:
                    link = new_link()
                    raw.handshake(link)
                    first = link.seal(encode_frame(Heads(())))
                    second = link.seal(encode_frame(Heads(())))
                    if mangle == "replayed":
                        raw.send(first)
                        raw.send(first)
                    elif mangle == "reordered":
                        raw.send(second)
                    else:
                        raw.send(first[:20] + bytes([first[20] ^ 0x40]) + first[21:])

                return body

            for mangle in ("replayed", "reordered", "bit-flipped"):
                reasons[f"{mangle} sealed frame"] = await in_thread(url, closing(sealed(mangle)))

            def text_frame(raw: Raw) -> None:
                raw.recv()  # the victim's HELLO, in clear: its id, a nonce, an ephemeral key
                raw.send("hello?")

            reasons["text frame"] = await in_thread(url, closing(text_frame))

            expected = {
                "plaintext frame": "does not open",
                "someone else's identity": "failed to prove its identity",
                "wrong room": "this peer is in room",
                "replayed handshake": "does not open",
                "replayed sealed frame": "does not open",
                "reordered sealed frame": "does not open",
                "bit-flipped sealed frame": "does not open",
                "text frame": "text frames are not accepted",
            }
            for attack, needle in expected.items():
                code, reason, _ = reasons[attack]
                assert code is not None and code >= 1002, (attack, code, reason)
                assert needle in reason, (attack, reason)
            # Attacks that never proved an identity got nothing but the victim's HELLO.
            for attack in ("plaintext frame", "someone else's identity", "replayed handshake", "text frame"):
                assert reasons[attack][2] == 0, attack
            assert victim_id  # (the victim's id is public: it is in its URL)
            await chat_still_works(victim, bob, "still here")


async def test_a_dial_to_a_url_naming_another_id_is_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="p2pchat.peer")
    impostor_expected = Identity(os.urandom(32)).sender_id
    with trio.fail_after(TIMEOUT):
        async with open_peer("alice") as alice:
            base = split_peer_url(alice.url or "")[0]
            async with open_peer("bob", join=[peer_url(base, impostor_expected)]) as bob:
                while not any("expected peer" in r.getMessage() for r in caplog.records):
                    await trio.sleep(0.02)
                assert bob.node.open_count == 0 and len(bob.log) == 0
                assert alice.node.open_count == 0
    refusal = next(r.getMessage() for r in caplog.records if "expected peer" in r.getMessage())
    assert "answered: refusing" in refusal


async def test_a_neighbour_that_cannot_be_admitted_gets_only_a_close_reason(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_module, "MAX_MEMBERS", 2)
    with trio.fail_after(TIMEOUT):
        async with open_peer("host") as host, open_peer("bob", join=[host.url or ""]) as bob:
            await bob.wait_admitted()
            await bob.send("members only")

            def stranger(raw: Raw) -> tuple[int | None, str, int]:
                raw.handshake(new_link())
                return raw.close_reason()

            code, reason, frames = await in_thread(host.url or "", stranger)
            assert "room is full" in reason and code == 1008
            assert frames == 0, "no heads, entries or addresses before the close"
            await chat_still_works(host, bob, "still chatting")


async def test_urls_carry_the_peer_id() -> None:
    async with open_peer("alice") as alice:
        assert alice.url is not None
        assert split_peer_url(alice.url)[1] == alice.node.identity.sender_id


# At rest --------------------------------------------------------------------------------------


def test_the_data_directory_and_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "alice"
    store = Store(data)
    store.save_identity(os.urandom(32), "alice")
    store.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    files = list(data.iterdir())
    assert files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# Invite-only rooms ----------------------------------------------------------------------------


def test_an_invite_admits_once_before_it_expires() -> None:
    book = InviteBook()
    secret = os.urandom(INVITE_SECRET_SIZE)
    book.issue(secret, expires_ms=1_000)
    assert book.check(os.urandom(INVITE_SECRET_SIZE), 0) is not None
    assert "unknown invite" in str(book.check(os.urandom(INVITE_SECRET_SIZE), 0))
    assert "expired" in str(book.redeem(secret, b"x" * 32, now_ms=1_000))
    invite = book.redeem(secret, b"x" * 32, now_ms=999)
    assert isinstance(invite, Invite) and invite.used_by == b"x" * 32
    assert "already used" in str(book.redeem(secret, b"y" * 32, now_ms=0))
    assert all(secret not in key for key in book._invites), "only the hash of a secret is kept"


def test_invite_urls_name_the_issuer_and_carry_the_secret() -> None:
    issuer, secret = Identity(os.urandom(32)).sender_id, os.urandom(INVITE_SECRET_SIZE)
    url = invite_url("ws://127.0.0.1:9000", issuer, secret)
    assert split_peer_url(url) == ("ws://127.0.0.1:9000/", issuer)
    assert invite_of(url) == secret
    assert invite_of(peer_url("ws://127.0.0.1:9000", issuer)) is None
    with pytest.raises(ValueError, match="invite"):
        invite_of(url[:-2])
    with pytest.raises(ValueError, match="invite"):
        # Never presented to whoever answers: only to the peer the URL names.
        Link(Identity(os.urandom(32)), "x", None, os.urandom(LINK_RANDOMNESS), dialer=True, invite=secret)


def invited(
    url: str, secret: bytes | None = None, identity: Identity | None = None
) -> Callable[[Raw], object]:
    """A newcomer redeeming ``secret`` (default: the one in ``url``) at the issuer."""
    _, issuer = split_peer_url(url)
    secret = invite_of(url) if secret is None else secret

    def body(raw: Raw) -> None:
        link = Link(
            identity or Identity(os.urandom(32)), "guest", None, os.urandom(LINK_RANDOMNESS),
            dialer=True, expected_id=issuer, invite=secret or b"",
        )  # fmt: skip
        raw.handshake(link)

    return body


async def test_an_invite_only_room_admits_only_invited_newcomers(tmp_path: Path) -> None:
    with trio.fail_after(TIMEOUT * 2):
        async with open_peer("alice", private=True, data_dir=tmp_path / "alice") as alice:
            await alice.send("for members only")
            assert alice.log.genesis is not None and alice.log.genesis.policy is RoomPolicy.INVITE
            url = alice.url or ""

            # A stranger without an invite: a reason, and no data.
            code, reason, frames = await in_thread(url, closing(invited(url)))
            assert "invite-only" in reason and code == 1008 and frames == 0

            # Carol redeems an invite and gets the history; the room then chats.
            invite = alice.invite()
            assert invite_of(invite) is not None and invite.startswith(url)
            async with open_peer("carol", join=[invite], data_dir=tmp_path / "carol") as carol:
                await carol.wait_admitted()
                with trio.fail_after(TIMEOUT):
                    while "for members only" not in [m.text for m in carol.messages()]:
                        await trio.sleep(0.02)
                await chat_still_works(alice, carol, "thanks for the invite")

                # The same invite again, for someone else: used.
                code, reason, frames = await in_thread(url, closing(invited(invite)))
                assert "already used" in reason and frames == 0
                # Expired, and forged.
                stale = alice.invite(ttl=-1)
                code, reason, frames = await in_thread(url, closing(invited(stale)))
                assert "expired" in reason and frames == 0
                forged = os.urandom(INVITE_SECRET_SIZE)
                code, reason, frames = await in_thread(url, closing(invited(url, forged)))
                assert "unknown invite" in reason and frames == 0

            # Carol quit (AWAY): she is re-admitted with her old link, invite used or not.
            async with open_peer("carol", join=[invite], data_dir=tmp_path / "carol") as carol:
                await carol.wait_admitted()
                await chat_still_works(alice, carol, "back again")

        # The invites survive a restart: a used one stays used.
        async with open_peer("alice", data_dir=tmp_path / "alice") as alice:
            code, reason, _ = await in_thread(alice.url or "", closing(invited(invite)))
            assert "already used" in reason


# The command line -------------------------------------------------------------------------------


class JsonChat:
    """``p2pchat chat --json`` in a subprocess; its events read line by line."""

    def __init__(self, tmp_path: Path, name: str, *extra: str) -> None:
        env = {**os.environ, "XDG_DATA_HOME": str(tmp_path / "xdg")}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "p2pchat.cli", "chat", "--json", "--name", name,
             "--data", str(tmp_path / name), *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, encoding="utf-8", env=env,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, predicate: Callable[[dict[str, object]], bool]) -> dict[str, object]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            event = json.loads(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            if predicate(event):
                return dict(event)

    def say(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=TIMEOUT)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with suppress(OSError):
                    stream.close()


def test_chat_private_and_invite_from_the_command_line(tmp_path: Path) -> None:
    alice = JsonChat(tmp_path, "alice", "--private")
    try:
        ready = alice.wait_for(lambda e: e["event"] == "ready")
        assert split_peer_url(str(ready["url"]))[1] == bytes.fromhex(str(ready["peer_id"]))
        alice.say("/invite")
        invite = str(alice.wait_for(lambda e: e["event"] == "invite")["url"])
        assert invite_of(invite) is not None
        bob = JsonChat(tmp_path, "bob", "--join", invite)
        try:
            bob.wait_for(lambda e: e["event"] == "members" and [j["name"] for j in e["joined"]] == ["bob"])
            bob.say("hello from bob")
            alice.wait_for(lambda e: e["event"] == "message" and e.get("text") == "hello from bob")
        finally:
            bob.stop()
    finally:
        alice.stop()


async def test_a_member_who_left_an_invite_only_room_gets_only_a_close_reason() -> None:
    carol_id = Identity(os.urandom(32))
    with trio.fail_after(TIMEOUT * 2):
        async with open_peer("alice", private=True) as alice:
            invite = alice.invite()
            async with open_peer("carol", join=[invite], identity=carol_id) as carol:
                await carol.wait_admitted()
                await carol.leave("bye")
            with trio.fail_after(TIMEOUT):
                while carol_id.sender_id in alice.log.members:
                    await trio.sleep(0.02)
            url = alice.url or ""
            for attempt in (invited(url, identity=carol_id), invited(invite, identity=carol_id)):
                code, reason, frames = await in_thread(url, closing(attempt))
                assert code == 1008 and frames == 0
                assert "invite-only" in reason or "already used" in reason


async def test_an_invite_url_is_dialed_no_more_once_its_issuer_left() -> None:
    # Only alice could take carol in on it; once alice left (her LEAVE is in carol's log,
    # and her peer stopped), a dial there can never succeed: carol says so once, and stops.
    config = PeerConfig(backoff_initial=0.01, backoff_max=0.05)
    with trio.fail_after(TIMEOUT * 2):
        async with open_peer("alice", private=True) as alice:
            alice_id = alice.node.identity.sender_id
            invite = alice.invite()
            async with (
                open_peer("carol", join=[invite], config=config) as carol,
                carol.subscribe() as events,
            ):
                await carol.wait_admitted()
                await alice.leave("bye")
                failures: list[DialFailed] = []
                with trio.move_on_after(5):
                    async for event in events:
                        if isinstance(event, DialFailed):
                            failures.append(event)
                            if event.retry_in is None:
                                break
                assert carol.log.member_info()[alice_id].state is MemberState.LEFT
                assert failures and failures[-1].retry_in is None, failures[-3:]
                said = f"the peer that issued this invite ({short_id(alice_id)}) left the room"
                assert [f.reason for f in failures if f.reason == said] == [said]  # once
                assert failures[-1].reason == said and failures[-1].url == invite
                assert carol.statistics().dialing == 0
                await trio.sleep(0.2)  # (many redials' worth of the backoff: none comes)
                later = [events.receive_nowait() for _ in range(events.statistics().current_buffer_used)]
                assert [e for e in later if isinstance(e, DialFailed)] == []


async def test_a_member_run_again_with_an_invite_whose_issuer_left_rejoins_through_the_others(
    tmp_path: Path,
) -> None:
    # Carol came in on alice's invite; alice left for good, and carol quit. Run again with
    # the same command, carol's room is provisional (the invite could be for another
    # room), but its issuer is a member of the room she used last: she dials that room's
    # other neighbours too, is back in it through bob, and gives the invite up.
    config = PeerConfig(backoff_initial=0.01, backoff_max=0.05)
    with trio.fail_after(TIMEOUT * 2):
        async with open_peer("bob", data_dir=tmp_path / "bob", private=True) as bob:
            async with open_peer("alice", join=[bob.invite()]) as alice:
                await alice.wait_admitted()
                alice_id = alice.node.identity.sender_id
                invite = alice.invite()
                async with open_peer("carol", data_dir=tmp_path / "carol", join=[invite]) as carol:
                    await carol.wait_admitted()
                    while bob.url not in {url for _, _, url in carol.node.neighbours()}:
                        await trio.sleep(0.02)
                    await alice.leave("bye")
                    while carol.log.member_info()[alice_id].state is not MemberState.LEFT:
                        await trio.sleep(0.02)
            async with (
                open_peer("carol", data_dir=tmp_path / "carol", join=[invite], config=config) as carol,
                carol.subscribe() as events,
            ):
                await carol.wait_admitted()
                await chat_still_works(bob, carol, "back on the same command")
                said = f"the peer that issued this invite ({short_id(alice_id)}) left the room"
                async for event in events:  # (alice's other addresses are given up too)
                    if isinstance(event, DialFailed) and event.url == invite and event.retry_in is None:
                        assert event.reason == said
                        break


async def test_peer_exchange_announces_addresses_with_ids_and_dials_them() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_peer("alice") as alice, open_peer("bob", join=[alice.url or ""]) as bob:
            await bob.wait_admitted()
            async with open_peer("carol", join=[alice.url or ""]) as carol:
                # carol learns bob's address from alice, naming bob's id, and dials it.
                while not any(url == bob.url for _, _, url in carol.node.neighbours()):
                    await trio.sleep(0.02)
                assert bob.url in carol.node.known_addresses()
                assert all(split_peer_url(url)[1] is not None for url in carol.node.known_addresses())
                assert carol.unpinned == []


async def test_a_url_without_an_id_still_works_and_is_noted_as_trust_on_first_use() -> None:
    with trio.fail_after(TIMEOUT):
        async with open_peer("alice") as alice:
            plain = split_peer_url(alice.url or "")[0].rstrip("/")
            async with open_peer("bob", join=[plain]) as bob:
                assert bob.unpinned == [plain]
                await bob.wait_admitted()
                await chat_still_works(alice, bob, "hello without an id")
                # Once connected, bob knows alice by the URL that names her.
                assert [url for _, _, url in bob.node.neighbours()] == [alice.url]


async def test_private_founds_a_new_invite_only_room_where_an_open_one_is_stored(tmp_path: Path) -> None:
    async with open_peer("alice", data_dir=tmp_path / "alice") as alice:
        open_room = alice.room_id
    async with open_peer("alice", data_dir=tmp_path / "alice", private=True) as alice:
        assert alice.room_id != open_room
        assert alice.log.genesis is not None and alice.log.genesis.policy is RoomPolicy.INVITE
    # Reopened later without --private, it is the invite-only room (the last used).
    async with open_peer("alice", data_dir=tmp_path / "alice") as alice:
        assert alice.log.genesis is not None and alice.log.genesis.policy is RoomPolicy.INVITE
