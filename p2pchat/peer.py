"""A running peer: the trio shell around the sans-IO :class:`~p2pchat.node.Node`.

The peer owns a nursery with: the WebSocket listener, one task group per
connection (reader, writer), one dialer per address it keeps a connection to,
a ticker that runs the node's timers, and a saver that batches received
messages into the SQLite store. Everything the node decides is carried out in
:meth:`Peer._apply`, synchronously, so the node never waits on I/O.

Use it as an async context manager::

    async with open_peer("alice", join=["ws://127.0.0.1:9000"]) as peer:
        await peer.send("hello")
        async with peer.subscribe() as events:
            async for event in events:
                ...

or start it in your own nursery with ``await nursery.start(serve_peer, ...)``.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path

import trio
from trio_websocket import ConnectionClosed, HandshakeError, WebSocketConnection
from wsproto.utilities import LocalProtocolError

from .address import address_of, invite_of, invite_url, peer_url, split_peer_url
from .addresses import is_wildcard, ws_urls
from .codec import CodecError, strict_loads
from .deflate import DEFLATED, inflate_frame
from .dialerrors import DialError, dial_failure_reason, find_dial_error
from .evidence import InvalidProof, Proof, SignedProof, proof_from, signed_proof
from .identity import SENDER_ID_SIZE, Identity, preverify, short_id
from .invites import DEFAULT_TTL_SECONDS, INVITE_SECRET_SIZE, InviteBook
from .lockfile import DataDirectoryLock
from .log import (
    ClockLie,
    Concurrent,
    Decided,
    Delivered,
    Entombed,
    Equivocation,
    LogConfig,
    NotAMember,
    OrderedLog,
    OwnHistoryIncomplete,
    Stable,
    Voided,
)
from .membership import MemberState
from .message import (
    MAX_NAME_BYTES,
    PAYLOAD_VERSION,
    EntryKind,
    Message,
    MessageId,
    MessageKey,
    RoomPolicy,
    signed_bytes,
)
from .node import (
    Close,
    Discovered,
    InviteRedeemed,
    LogEvents,
    Node,
    NodeConfig,
    NodeStatistics,
    Output,
    OwnEntries,
    PeerDown,
    PeerUp,
    RoomAdopted,
    Send,
    text_count,
)
from .protocol import LINK_RANDOMNESS, CloseCode
from .restore import restore
from .store import Store
from .transport import close_quickly, dial, parse_host_port, serve_websockets, url_of
from .wire import MESSAGES as MESSAGES_FRAME
from .wire import PUSH as PUSH_FRAME

__all__ = [
    "ClockLieFound",
    "ConcurrentMarked",
    "DialFailed",
    "EntriesVoided",
    "EquivocationFound",
    "MembersChanged",
    "MessageDelivered",
    "NeighbourDown",
    "NeighbourUp",
    "Peer",
    "PeerConfig",
    "PeerEvent",
    "StableAdvanced",
    "open_peer",
    "serve_peer",
]

logger = logging.getLogger("p2pchat.peer")

REFUSAL_CODES = frozenset({CloseCode.POLICY_VIOLATION, CloseCode.TRY_AGAIN_LATER})
"""Close codes with which the other side refuses us (see PeerConfig.refusal_backoff_max)."""


def _refuses(code: int, connection: _Connection) -> bool:
    """Whether closing ``connection`` with ``code`` refuses the link: a refusal code, or a
    protocol error before the link was up (the other side speaks another protocol
    version, say: redialing at once will not change that, and the user should hear why)."""
    return code in REFUSAL_CODES or (code == CloseCode.PROTOCOL_ERROR and not connection.up)


@dataclass(frozen=True)
class PeerConfig:
    node: NodeConfig = field(default_factory=NodeConfig)
    log: LogConfig = field(default_factory=LogConfig)
    max_connections: int = 32
    """Connections beyond this are refused (code 1013, try again later)."""
    target_connections: int = 4
    """Addresses learned from neighbours are dialed while we have fewer than this."""
    send_queue_frames: int = 256
    """Frames queued for one neighbour; a neighbour this far behind is disconnected."""
    dial_timeout: float = 5.0
    backoff_initial: float = 0.25
    backoff_max: float = 2.0
    """Redials of a lost link are at most this far apart (a random wait up to it), so a
    link cut by a partition comes back within about this long after the heal. A redial
    of an unreachable address costs one TCP handshake attempt."""
    refusal_backoff_max: float = 30.0
    """A peer that closes our link with a refusal (policy, e.g. an invite-only room we
    are not a member of, or "try again later") is redialed with backoff growing up to
    this instead: our redials cost it a handshake each, and a refusal seldom changes
    within seconds."""
    liveness_timeout: float = 3.0
    """A link on which nothing arrived (no frame, no pong) for this long is dead: it is
    closed and redialed. A cable pulled, packets silently dropped or a sleeping laptop
    leave a TCP connection open for minutes; heartbeats alone would not end it. A link
    so slow that one frame takes longer than this to arrive is closed too. 0: no check."""
    ping_interval: float = 1.0
    """A link that has been silent this long gets a WebSocket ping; its pong counts as
    hearing from the other side (a quiet room sends heads only every keepalive)."""
    discovered_attempts: int = 3
    """Failed dials before a learned (not bootstrap) address is given up."""
    save_interval: float = 0.05
    link_delay: tuple[float, float] | None = None
    """For demos and tests: hold each outgoing frame a random (min, max) seconds, keeping
    per-link order, so that peers see messages in different orders as on a real WAN."""
    link_loss: float = 0.0
    """For demos and tests: drop this fraction of outgoing frames after the handshake."""
    own_history_wait: float = 10.0
    """A restarted peer with peers to join waits at most this long for a neighbour to send
    what it lacks before it writes (a stale copy of its data would reuse seqs)."""
    leave_patience: float = 10.0
    """A peer that leaves (:meth:`Peer.leave`) stays up at most this long, linked and
    redialing, until a neighbour holds its LEAVE (say it left while cut off): before
    that, nobody could tell the room it left."""


# Events for the application ----------------------------------------------------


def _voided_below(events: list[object]) -> list[MessageKey | None]:
    """Per event, the lowest key of the entries voided by the events after it."""
    lowest: MessageKey | None = None
    below: list[MessageKey | None] = []
    for event in reversed(events):
        below.append(lowest)
        if isinstance(event, Voided):
            voided = min(message.key for message in event.messages)
            lowest = voided if lowest is None else min(lowest, voided)
    return below[::-1]


@dataclass(frozen=True, slots=True)
class MessageDelivered:
    """A message entered the log at ``index`` (later entries moved down one)."""

    message: Message
    index: int
    concurrent: bool
    stable: bool


@dataclass(frozen=True, slots=True)
class ConcurrentMarked:
    """These earlier messages turned out to be concurrent with a newer one."""

    ids: tuple[tuple[bytes, int], ...]


@dataclass(frozen=True, slots=True)
class StableAdvanced:
    """Log positions ``0 .. count-1`` are final."""

    count: int


@dataclass(frozen=True, slots=True)
class NeighbourUp:
    sender_id: bytes
    name: str
    url: str | None


@dataclass(frozen=True, slots=True)
class NeighbourDown:
    sender_id: bytes | None
    reason: str


@dataclass(frozen=True, slots=True)
class EquivocationFound:
    """``kept.sender_id`` signed two versions of one seq: evidence, kept by the log
    (``log.evidence``) and passed on to every neighbour."""

    kept: Message
    rejected: Message


@dataclass(frozen=True, slots=True)
class ClockLieFound:
    """``message.sender_id`` announced its clock was ``announced_clock`` after its entry
    ``announced_seq``, then stamped ``message`` no higher: proof, kept by the log
    (``log.lies``) and passed on; the member is expelled for it."""

    announced_seq: int
    announced_clock: int
    message: Message


@dataclass(frozen=True, slots=True)
class MembersChanged:
    """A membership change was decided (rule 10): epoch ``epoch`` closed, ``joined``
    were admitted (or came back), ``removed`` were removed."""

    epoch: int
    joined: tuple[tuple[bytes, str], ...]
    removed: tuple[bytes, ...]
    by: bytes
    """The member that proposed the change."""


@dataclass(frozen=True, slots=True)
class EntriesVoided:
    """Entries left the log: they were above their author's cut when a change removed
    it (a partitioned member's lines; ours are sent again once we are back)."""

    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class DialFailed:
    """Dialing ``url`` failed for ``reason``; the next try is in ``retry_in`` seconds
    (``None``: given up, for addresses learned from neighbours)."""

    url: str
    reason: str
    retry_in: float | None


PeerEvent = (
    MessageDelivered
    | ConcurrentMarked
    | StableAdvanced
    | NeighbourUp
    | NeighbourDown
    | EquivocationFound
    | ClockLieFound
    | DialFailed
    | MembersChanged
    | EntriesVoided
)


@dataclass(frozen=True, slots=True)
class PeerStatistics:
    node: NodeStatistics
    members: int
    silent_members: int
    dialing: int


@dataclass
class _Connection:
    conn: int
    websocket: WebSocketConnection
    outbox: trio.MemorySendChannel[tuple[float, bytes, bool]]
    """(when to send, frame, clear): the time is 0 unless a link delay is simulated; the
    frame is sealed as it is written unless it is a handshake frame (see node.Send)."""
    scope: trio.CancelScope
    last_heard: float
    """When something (a frame or a pong) last arrived: see PeerConfig.liveness_timeout."""
    frames: int = 0
    close_code: int = CloseCode.NORMAL
    close_reason: str = ""
    refusal: LinkRefusal | None = None
    """Why the link was closed with a refusal code (see REFUSAL_CODES), by either side."""
    up: bool = False
    """The node reported the link up (both ends took it: see node.PeerUp)."""


@dataclass(frozen=True, slots=True)
class LinkRefusal:
    """A link closed with a refusal code: by the other side, or by us (``ours``: it is
    not who the URL names, say, or not in our room)."""

    reason: str
    ours: bool = False
    was_up: bool = False
    """The link had been reported up (a NeighbourUp) before the refusal: its NeighbourDown
    says why it ended. One refused before that was never up: the dialer says why."""


class Peer:
    """A peer that is running. Make one with :func:`open_peer` or :func:`serve_peer`."""

    def __init__(self, node: Node, store: Store | None, config: PeerConfig, nursery: trio.Nursery) -> None:
        self.node = node
        self.store = store
        self.config = config
        self._nursery = nursery
        self._rng = random.Random(os.urandom(16))
        self._connections: dict[int, _Connection] = {}
        self._next_conn = 1
        self._subscribers: list[trio.MemorySendChannel[PeerEvent]] = []
        self._unsaved: list[Message] = []
        self._unsaved_proofs: list[SignedProof] = []
        """Proofs found since the last save: stored with the entries of the same batch."""
        self._unsaved_placeless: set[MessageId] = set()
        """Of ``_unsaved``, the entries held without a place here (Entombed.placeless)."""
        self._unsaved_placed_late: set[MessageId] = set()
        """Of ``_unsaved``, the entries placed below positions already stable here
        (Delivered.placed_late)."""
        self._unsaved_versions: list[Message] = []
        """Other versions of forked entries the log took since the last save."""
        self._own_saved = node.log.delivered_seq(node.identity.sender_id)
        """Our entries up to this seq are on disk (restored, or saved as we wrote them):
        one of ours the log takes from a neighbour above it (our chain recovered after a
        restart from an old copy of our data) is saved as anyone else's is."""
        self._dialing: set[str] = set()
        self._kept_addresses: set[tuple[bytes, str]] = set()
        """(room, address) of members' addresses known to be in the store (see
        _keep_member_addresses)."""
        self._tick_scope: trio.CancelScope | None = None
        """The ticker's sleep; its deadline is moved earlier when the node needs it sooner."""
        self._changed = trio.Event()
        self._closing = False
        self._left = False
        self.url: str | None = None
        """Our join URL, naming our id (``ws://host:port/#<peer id>``)."""
        self.urls: list[str] = []
        """Every join URL others can dial us at, best first (several for a wildcard --listen)."""
        self.unpinned: list[str] = []
        """URLs we joined that name no peer id: whoever answers there is trusted."""

    # Who we are ---------------------------------------------------------------------
    @property
    def peer_id(self) -> str:
        """Our sender id (the Ed25519 public key) in hex."""
        return self.node.identity.sender_id.hex()

    @property
    def name(self) -> str:
        return self.node.name

    @property
    def log(self) -> OrderedLog:
        return self.node.log

    # The application's side -----------------------------------------------------------
    async def send(self, text: str) -> Message:
        """Sign ``text`` as our next message, store it durably, deliver and gossip it."""
        (message,) = await self.send_many([text])
        return message

    async def send_many(self, texts: Iterable[str]) -> list[Message]:
        """Send several messages with one durable commit (what a burst of input needs).

        Nothing leaves this peer, and no event is published, before the messages are
        on disk: the node's outputs are applied only after the commit, and nothing can
        run in between because no await separates the two.
        """
        texts = list(texts)
        # Before our admission what we type is queued here, unstamped: stamped now it
        # would land in the room's past (rule 10). (What we write while a membership
        # change we answered is open is void if the change is decided: sent again then.)
        await self.wait_writable()
        if self._closing:
            raise trio.ClosedResourceError("peer is shutting down")
        now, wall_ms = trio.current_time(), int(time.time() * 1000)
        messages, outputs = self.node.send_texts(texts, now, wall_ms)
        self._save(own=messages)
        self._apply(outputs)
        await trio.lowlevel.checkpoint()
        return messages

    @property
    def room_id(self) -> bytes | None:
        """The room we are in (None until a newcomer has met its first neighbour)."""
        return self.node.log.room_id

    @property
    def is_member(self) -> bool:
        """Whether we are an active member of the room (may write)."""
        return self.node.is_member

    @property
    def own_state(self) -> MemberState | None:
        """Our state in the room's membership (None if we were never admitted)."""
        info = self.node.log.member_info().get(self.node.identity.sender_id)
        return info.state if info is not None else None

    async def wait_admitted(self) -> None:
        """Return once we may write: we are an active member of our room, and our own
        chain here is known to be complete (see Node.history_checked)."""
        while not (self.node.is_member and self.node.history_checked):
            if self._closing:
                raise trio.ClosedResourceError("peer is shutting down")
            await self._wait_changed()

    async def wait_writable(self) -> None:
        """Return once a chat line of ours may be written (see Node.may_write)."""
        while not self.node.may_write:
            if self._closing:
                raise trio.ClosedResourceError("peer is shutting down")
            await self._wait_changed()

    def invite(self, ttl: float = DEFAULT_TTL_SECONDS) -> str:
        """A join URL for one newcomer, valid for ``ttl`` seconds.

        In an invite-only room the URL carries a fresh one-time secret: whoever presents
        it first (before it expires) is admitted by us. The invite is stored durably
        before the URL is returned. In an open room anyone may join: our plain URL.
        Raises NotAMember if we are not an active member (we could not admit anyone).
        """
        if self.url is None:
            raise RuntimeError("the peer is not listening yet")
        if not self.node.is_member:
            raise NotAMember("only an active member of the room can invite")
        genesis = self.node.log.genesis
        room_id = self.node.log.room_id
        if genesis is None or room_id is None or genesis.policy is not RoomPolicy.INVITE:
            return self.url
        secret = os.urandom(INVITE_SECRET_SIZE)
        invite = self.node.invites.issue(secret, int((time.time() + ttl) * 1000))
        if self.store is not None:
            self.store.save_invite(room_id, invite)
        base = split_peer_url(self.url)[0]
        return invite_url(base, self.node.identity.sender_id, secret)

    async def leave(self, reason: str = "") -> str | None:
        """Leave the room for good (a LEAVE entry, our last), then stop the peer: once a
        neighbour says it holds the LEAVE, or after ``PeerConfig.leave_patience``
        seconds (meanwhile links come and go as ever, and each new one carries it).

        Returns None once the LEAVE is written; otherwise why none could be written now
        (in words for the user), and the peer stops as :meth:`aclose` does: away, if it
        can write that, else still a member. Run again, it can leave then.
        """
        why_not = await self._write_last(EntryKind.LEAVE, reason)
        if why_not is not None:
            logger.warning("could not leave the room: %s", why_not)
        if not self.node.leave_handed_over:
            logger.info("left: waiting for a neighbour to hold our LEAVE")
        with trio.move_on_after(self.config.leave_patience):
            while not self.node.leave_handed_over:
                await self._wait_changed()
        if not self.node.leave_handed_over:
            logger.warning("stopping, though no neighbour has said it holds our LEAVE yet")
        await self.aclose()
        return why_not

    async def _write_last(self, kind: EntryKind, reason: str) -> str | None:
        """Write a LEAVE or AWAY, store it durably and give neighbours a moment to get it.
        Returns why it wrote none (None if it wrote one, or had exited already)."""
        if self._left:
            return None
        if not self.node.is_member:
            return "we are not an active member of the room"
        if not self.node.history_checked:
            # (Before our chain is known complete, an entry of ours could reuse a seq.)
            return "our own entries were still being checked with a neighbour"
        if kind is EntryKind.AWAY and self.node.log.members == {self.node.identity.sender_id}:
            # The last active member stays a member: an AWAY would unblock nobody, and
            # with nobody left to re-admit it, it could never write here again.
            return "the last active member stays one"
        # While a change we answered is open, an exit of ours would be void if it is
        # decided (and carried over into the next epoch, see p2pchat.membership): give
        # it a moment to end, so that the exit stands where we wrote it.
        with trio.move_on_after(EXIT_PATIENCE):
            while self.node.log.roster.answered(self.node.identity.sender_id) is not None:
                await self._wait_changed()
        me, roster = self.node.identity.sender_id, self.node.log.roster
        if (why_not := self.node.why_not_writable()) is not None:
            return f"nothing of ours may be written now ({why_not})"
        if roster.holds_open_commit(me):
            # (An exit while our COMMIT of an open change stands would be invalid.)
            return "a membership change we committed to is still being decided"
        if kind is EntryKind.AWAY and roster.exit_strands(me):
            # (The change we answered would wait for good on COMMITs nobody can write:
            # we stop without an AWAY, still a member, and commit it once back.)
            return "the membership change we answered needs our COMMIT"
        self._left = True
        try:
            message, outputs = self.node.write(kind, reason, trio.current_time(), int(time.time() * 1000))
        except (NotAMember, OwnHistoryIncomplete) as exc:
            return str(exc)
        self._save(own=[message])
        self._apply(outputs)  # (closing the links flushes what is queued for them)
        return None

    def messages(self) -> list[Message]:
        """A snapshot of the ordered log."""
        return self.node.log.messages()

    @asynccontextmanager
    async def subscribe(self) -> AsyncIterator[trio.MemoryReceiveChannel[PeerEvent]]:
        """Events from now on: deliveries (with their index), stability, concurrency, peers."""
        send, receive = trio.open_memory_channel[PeerEvent](math.inf)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    def statistics(self) -> PeerStatistics:
        return PeerStatistics(
            node=self.node.statistics(),
            members=len(self.node.log.members),
            silent_members=len(self.node.log.silent_members()),
            dialing=len(self._dialing),
        )

    async def wait_delivered(self, count: int) -> None:
        """Return once the log holds at least ``count`` messages."""
        while len(self.node.log) < count:
            await self._wait_changed()

    async def wait_texts(self, count: int) -> None:
        """Return once the log holds at least ``count`` chat lines (membership entries,
        which :meth:`wait_delivered` counts too, aside)."""
        while text_count(self.node.log) < count:
            await self._wait_changed()

    async def wait_connected(self, count: int = 1) -> None:
        """Return once at least ``count`` neighbours have finished the handshake."""
        while self.node.open_count < count:
            await self._wait_changed()

    async def _wait_changed(self) -> None:
        await self._changed.wait()

    def join(self, url: str, *, bootstrap: bool = True) -> None:
        """Keep a connection to ``url`` (redialing with backoff while we run)."""
        ours = {address_of(own) for own in (self.url, *self.urls) if own}
        if address_of(url) in ours or url in self._dialing:
            return
        expected = split_peer_url(url)[1]
        if expected == self.node.identity.sender_id and not bootstrap:
            return  # (our own address from before a restart, passed on by a neighbour)
        if expected is None:
            self.unpinned.append(url)  # (the chat shows a notice; a warning would garble it)
            logger.info("%s names no peer id: trusting whoever answers there (trust on first use)", url)
        self._dialing.add(url)
        self._nursery.start_soon(self._dialer, url, bootstrap)

    async def go_away(self) -> None:
        """Write our AWAY entry (a clean quit; :meth:`aclose` does it too), so that the
        others stop waiting for us until we are back. The last active member writes none."""
        await self._write_last(EntryKind.AWAY, "quit")

    async def aclose(self) -> None:
        """Say goodbye to every neighbour, store what is unsaved, stop."""
        if self._closing:
            return
        await self.go_away()
        self._closing = True
        self._notify()
        self._apply(self.node.close_all())
        with trio.move_on_after(2):
            while self._connections:
                await self._wait_changed()
        self._save()
        self._nursery.cancel_scope.cancel()

    # Carrying out the node's decisions --------------------------------------------------
    def _apply(self, outputs: Iterable[Output]) -> None:
        learned = False  # (whether the node may know new addresses of members to keep)
        for output in outputs:
            match output:
                case Send():
                    self._send(output.conn, output.data, output.clear)
                case Close():
                    self._close(output.conn, output.code, output.reason, output.note)
                case LogEvents():
                    self._on_log_events(output.events)
                    # (Addresses learned before our log knew their peers for members.)
                    learned = learned or any(isinstance(event, Decided) for event in output.events)
                case PeerUp():
                    logger.info("connected to %s (%s)", output.name, short_id(output.sender_id))
                    if (connection := self._connections.get(output.conn)) is not None:
                        connection.up = True
                    self._remember_address(output.listen_url)
                    self._publish(NeighbourUp(output.sender_id, output.name, output.listen_url))
                case PeerDown():
                    self._publish(NeighbourDown(output.sender_id, output.reason))
                case Discovered():
                    self._on_discovered(output)
                    learned = True
                case OwnEntries():
                    self._save(own=list(output.messages))
                case RoomAdopted():
                    self._open_room(output.room_id)
                case InviteRedeemed():
                    if self.store is not None:
                        self.store.use_invite(output.secret_hash, output.by)
        if learned:
            self._keep_member_addresses()
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()
        scope = self._tick_scope
        if scope is not None:
            # Moving a deadline is cheap: no task wakes up until it is reached.
            scope.deadline = min(scope.deadline, self.node.next_deadline())

    def _send(self, conn: int, data: bytes, clear: bool = False) -> None:
        connection = self._connections.get(conn)
        if connection is None:
            return
        connection.frames += 1
        due = 0.0
        if connection.frames > 2 and self.config.link_loss and self._rng.random() < self.config.link_loss:
            return  # simulated loss of a plaintext frame (never the handshake: HELLO and AUTH)
        if self.config.link_delay is not None:
            due = trio.current_time() + self._rng.uniform(*self.config.link_delay)
        try:
            connection.outbox.send_nowait((due, data, clear))
        except trio.WouldBlock:
            # The neighbour reads slower than we produce: drop the neighbour, not messages.
            # Whatever it misses it will fetch again by anti-entropy when it reconnects.
            if connection.scope.cancel_called:
                return  # already being dropped
            logger.warning("disconnecting conn %d: send queue full", conn)
            connection.close_code = CloseCode.POLICY_VIOLATION
            connection.close_reason = "too slow: send queue full"
            connection.scope.cancel()
        except trio.ClosedResourceError:
            pass

    def _close(self, conn: int, code: int, reason: str, note: str | None = None) -> None:
        """Close ``conn`` with ``reason`` (for the other side); ``note``, the same in our
        words, is what we log and say (see node.Close)."""
        connection = self._connections.get(conn)
        if connection is None:
            return
        said = reason if note is None else note
        logger.info("closing conn %d: %s", conn, said)
        connection.close_code, connection.close_reason = code, reason
        if _refuses(code, connection) and connection.refusal is None:
            connection.refusal = LinkRefusal(said, ours=True)
        connection.outbox.close()  # the writer sends what is queued, then closes

    def _on_log_events(self, events: Iterable[object]) -> None:
        log = self.node.log
        me = self.node.identity.sender_id
        events = list(events)
        voided_below = _voided_below(events)
        for position, event in enumerate(events):
            if isinstance(event, Delivered):
                if self._note_unsaved(event.message) and event.placed_late:
                    self._unsaved_placed_late.add(event.message.id)
                # Said stable only where its index is its position now: later deliveries of
                # the same frame may only have moved it down (past the stable count it is
                # not stable), but an entry voided later in the frame, below it, moves it up.
                lowest = voided_below[position]
                moved_up = lowest is not None and lowest < event.message.key
                stable = not moved_up and event.index < log.stable_count and log.is_stable(event.message)
                self._publish(MessageDelivered(event.message, event.index, event.concurrent, stable))
            elif isinstance(event, Entombed):
                # (Held for good: others may need it.)
                if self._note_unsaved(event.message) and event.placeless:
                    self._unsaved_placeless.add(event.message.id)
            elif isinstance(event, Decided):
                decision = event.decision
                self._publish(
                    MembersChanged(
                        event.epoch, decision.admitted, decision.removed, decision.change.sender_id
                    )
                )
            elif isinstance(event, Voided):
                self._publish(EntriesVoided(event.messages))
                lost = [m.text for m in event.messages if m.sender_id == me and m.is_text]
                if lost:
                    # Our lines after our cut are void: they go out again as new entries
                    # once we may write (re-admitted), in their order.
                    self._nursery.start_soon(self._send_again, lost)
            elif isinstance(event, Stable):
                self._publish(StableAdvanced(event.count))
            elif isinstance(event, Concurrent):
                self._publish(ConcurrentMarked(tuple((i.sender_id, i.seq) for i in event.ids)))
            elif isinstance(event, Equivocation):
                logger.warning(
                    "%s signed two versions of its entry %d", short_id(event.kept.sender_id), event.kept.seq
                )
                self._unsaved_proofs.append(signed_proof(event, self.node.log.room_id or b""))
                self._unsaved_versions.append(event.rejected)
                self._publish(EquivocationFound(event.kept, event.rejected))
            elif isinstance(event, ClockLie):
                promise, message = event.announcement, event.message
                logger.warning(
                    "%s announced clock %d after its entry %d, then stamped its entry %d %d",
                    short_id(message.sender_id),
                    promise.clock_lamport,
                    promise.clock_seq,
                    message.seq,
                    message.lamport,
                )
                self._unsaved_proofs.append(signed_proof(event, self.node.log.room_id or b""))
                self._publish(ClockLieFound(promise.clock_seq, promise.clock_lamport, message))

    def _remember_address(self, url: str | None) -> None:
        """Keep a neighbour's address (its URL naming its id) with the room: a restart
        without ``--join`` dials the latest ones (see serve_peer)."""
        room_id = self.node.log.room_id
        if self.store is None or room_id is None or url is None or split_peer_url(url)[1] is None:
            return
        self.store.remember_address(room_id, url, int(time.time() * 1000))

    def _keep_member_addresses(self) -> None:
        """Keep the addresses the node learned of other members of our room (from its
        neighbours: none of a stranger, see Node.member_addresses) with the room, besides
        those of the neighbours that were up: a restart without ``--join`` hands them back
        to the node (see _reopen_links)."""
        room_id = self.node.log.room_id
        if self.store is None or room_id is None:
            return
        new = [url for url in self.node.member_addresses() if (room_id, url) not in self._kept_addresses]
        if new:
            self.store.remember_learned(room_id, new, int(time.time() * 1000))
            self._kept_addresses.update((room_id, url) for url in new)

    def _reopen_links(self) -> None:
        """Back in a room we know, with nobody named to join (or one it knows, see
        _rejoins_last_room): dial the neighbours we had
        there, the latest up first (then members we learned of), each given up after a
        few failed dials; and hand the node every address kept with the room. It offers
        the members among them again whenever no link of ours leads to a member (see
        Node._rediscover): a peer whose neighbours of before are gone for good keeps
        trying the other members it heard of, instead of staying alone for good."""
        room_id = self.node.log.room_id
        if self.store is None or room_id is None:
            return
        kept = self.store.addresses(room_id)
        for url in kept[: self.config.target_connections]:
            self.join(url, bootstrap=False)
        self.node.learn_addresses(kept)
        self._kept_addresses.update((room_id, url) for url in kept)

    def _note_unsaved(self, message: Message) -> bool:
        """Keep ``message`` for the next save, unless it is ours and on disk already."""
        if message.sender_id == self.node.identity.sender_id:
            if message.seq <= self._own_saved:
                return False
            self._own_saved = message.seq
        self._unsaved.append(message)
        return True

    async def _send_again(self, texts: list[str]) -> None:
        with suppress(trio.ClosedResourceError):
            await self.send_many(texts)

    def remove(self, member: bytes) -> None:
        """Propose to remove ``member`` from the room (``/remove``): decided once every
        other member answers and a strict majority did. Raises ValueError with the
        reason when no such change can be proposed now."""
        self._apply(self.node.propose_removal([member], trio.current_time()))

    def _publish(self, event: PeerEvent) -> None:
        for subscriber in list(self._subscribers):
            try:
                subscriber.send_nowait(event)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                self._subscribers.remove(subscriber)

    def _on_discovered(self, discovered: Discovered) -> None:
        target = self.config.target_connections
        for url in discovered.urls:
            if discovered.beyond_target:
                # (A member cut off from us: dialed whatever links we have, unless we dial
                # learned addresses not at all, or could not take the link.)
                if target == 0 or len(self._connections) >= self.config.max_connections:
                    break
            elif self.node.open_count + self._dials_pending() >= target:
                break
            if not self._connected_to(url):
                self.join(url, bootstrap=False)

    def _dials_pending(self) -> int:
        """Addresses we are dialing and not linked to. (A dialer stays while its link is
        up, to redial it: counted with the open links too, it made a peer with one link
        of two wanted dial nothing more.)"""
        return sum(1 for url in self._dialing if not self._connected_to(url))

    def _connected_to(self, url: str) -> bool:
        wanted = address_of(url)
        return any(address and address_of(address) == wanted for _, _, address in self.node.neighbours())

    # Background tasks -----------------------------------------------------------------------
    async def _ticker(self) -> None:
        """Run the node's timers (batch flushes, heartbeats, repair) when they are due."""
        while True:
            with trio.CancelScope(deadline=self.node.next_deadline()) as scope:
                self._tick_scope = scope
                await trio.sleep_forever()
            self._tick_scope = None
            self._apply(self.node.tick(trio.current_time(), self._rng))

    async def _saver(self) -> None:
        while True:
            await trio.sleep(self.config.save_interval)
            self._save()

    def _save(self, own: list[Message] | None = None) -> None:
        """Commit the received messages not yet on disk, and ``own`` ones with them.

        Our own messages are committed durably (fsync), in the same transaction as
        the received messages they may depend on: an own message stored without them
        could not be delivered after a crash. Proofs found meanwhile go in the same
        transaction (a crash loses them with the batch; neighbours we passed them on
        to pass them back when we reconnect, see Node._offer_evidence).
        """
        room_id = self.node.log.room_id
        if self.store is None or room_id is None:
            return
        if own:
            self._own_saved = max(self._own_saved, *(message.seq for message in own))
        batch, self._unsaved = [*self._unsaved, *(own or ())], []
        proofs, self._unsaved_proofs = self._unsaved_proofs, []
        placeless, self._unsaved_placeless = self._unsaved_placeless, set()
        placed_late, self._unsaved_placed_late = self._unsaved_placed_late, set()
        versions, self._unsaved_versions = self._unsaved_versions, []
        announcements = self.node.log.take_new_announcements()
        if batch or proofs or versions or announcements:
            self.store.save_messages(
                room_id,
                batch,
                durable=bool(own),
                proofs=proofs,
                placeless=placeless,
                placed_late=placed_late,
                versions=versions,
                announcements=announcements,
            )
        if batch:
            self._durable_up_to(batch)

    def _durable_up_to(self, saved: list[Message]) -> None:
        """Let the node announce a clock, and entries delivered, only once they are on
        disk (see Node.announce_limit and Node.saved_vector)."""
        highest = max(m.lamport for m in saved)
        limit = self.node.announce_limit
        self.node.announce_limit = highest if limit is None else max(limit, highest)
        vector = self.node.saved_vector
        if vector is None:
            vector = self.node.saved_vector = {}
        for message in saved:
            if message.seq > vector.get(message.sender_id, 0):
                vector[message.sender_id] = message.seq

    async def _trust_own_history_after(self, seconds: float) -> None:
        """Alone (nobody to --join), or after ``seconds`` without a neighbour's sync, we
        write on what our store holds."""
        await trio.sleep(seconds)
        if not self.node.history_checked:
            if seconds:
                logger.warning(
                    "no neighbour synced with us in %.0f s: writing on our stored history", seconds
                )
            self.node.history_checked = True
            self._notify()

    def _open_room(self, room_id: bytes) -> None:
        """We took a neighbour's room: if we were in it before, go on from our store (its
        history and the invites we issued there)."""
        store = self.store
        if store is None:
            return
        store.use_room(room_id, "", int(time.time() * 1000))
        if len(self.node.log) == 0 and store.message_count(room_id):
            self.node.replace_log(restore_log(store, room_id, self.config.log))
            self.node.announce_limit = store.clock(room_id)
            self.node.saved_vector = self.node.log.vector()
            self.node.invites = InviteBook(store.load_invites(room_id))  # ours there, if any

    async def _dialer(self, url: str, bootstrap: bool) -> None:
        delay = self.config.backoff_initial
        failures = 0
        try:
            while not self._closing:
                if self._connected_to(url):
                    await self._wait_changed()
                    continue
                issuer_left = self._issuer_left(url)
                if issuer_left is not None:
                    logger.info("not dialing %s again: %s", url, issuer_left)
                    self._publish(DialFailed(url, issuer_left, None))
                    return
                started = trio.current_time()
                refusal = None
                provisional_room = self.node.log.room_id if self.node.provisional_room else None
                try:
                    refusal = await self._dial_and_run(url)
                    moved_to = self.node.log.room_id
                    if refusal is not None and provisional_room not in (None, moved_to) and moved_to:
                        # We took its room on this link (see Node._follows), and it refused
                        # the room we were in: a refused dial like any other (said, and
                        # backed off from), though the next one is into the room now ours.
                        moved = f"moved to its room {moved_to.hex()[:16]}"
                        refusal = replace(refusal, reason=f"{refusal.reason}; {moved}")
                except Exception as exc:  # one link's failure never stops the peer
                    failures += 1
                    gave_up = not bootstrap and failures >= self.config.discovered_attempts
                    wait = self._rng.uniform(0, delay)
                    self._dial_failed(url, exc, None if gave_up else wait)
                    if gave_up:
                        return
                else:
                    if refusal is None and trio.current_time() - started > 10:
                        delay = self.config.backoff_initial
                    wait = self._rng.uniform(0, delay)
                    if refusal is not None and refusal.ours:
                        # What answered is no peer for us there (not who the URL names,
                        # ourselves, another room): a dial that failed.
                        failures += 1
                        gave_up = not bootstrap and failures >= self.config.discovered_attempts
                        then = "giving up" if gave_up else f"redialing in {wait:.2f} s"
                        logger.info("refused %s (%s): %s", url, refusal.reason, then)
                        self._publish(DialFailed(url, refusal.reason, None if gave_up else wait))
                        if gave_up:
                            return
                    else:
                        failures = 0
                        if refusal is not None:
                            logger.info("%s refused us (%s): redialing in %.2f s", url, refusal.reason, wait)
                            if not refusal.was_up:
                                # (Never up, so no NeighbourDown told it: a dial that failed.)
                                self._publish(DialFailed(url, refusal.reason, wait))
                # Exponential backoff with full jitter, so restarted peers do not redial in
                # step; refusals back off further (PeerConfig.refusal_backoff_max).
                await trio.sleep(wait)
                cap = self.config.backoff_max if refusal is None else self.config.refusal_backoff_max
                delay = min(delay * 2, max(cap, self.config.backoff_max))
        finally:
            self._dialing.discard(url)

    def _issuer_left(self, url: str) -> str | None:
        """Why the invite URL ``url`` is dialed no more, or None: the peer that issued it
        left our room (its LEAVE is in our log). A LEAVE is its author's last entry and
        stops its peer; should it ever come back (with a new invite: the room is
        invite-only), its address comes like any member's, without our old secret. (Not
        while our room is provisional: the invite may be for another room.)"""
        if self.node.provisional_room:
            return None
        try:
            issuer = split_peer_url(url)[1] if invite_of(url) is not None else None
        except ValueError:
            return None
        info = self.node.log.member_info().get(issuer) if issuer is not None else None
        if issuer is None or info is None or info.state is not MemberState.LEFT:
            return None
        return f"the peer that issued this invite ({short_id(issuer)}) left the room"

    def _dial_failed(self, url: str, exc: Exception, retry_in: float | None) -> None:
        """Say why ``url`` could not be reached (the UI shows it; ``-v`` logs it)."""
        failure = find_dial_error(exc)
        if failure is None:  # an established connection ended badly: not a dial failure
            if _is_expected_dial_failure(exc):
                logger.debug("connection to %s ended: %r", url, exc)
            else:
                logger.warning("connection to %s failed", url, exc_info=exc)
            return
        then = "giving up" if retry_in is None else f"retrying in {retry_in:.0f} s"
        logger.info("can't reach %s: %s; %s", url, failure.reason, then)
        self._publish(DialFailed(url, failure.reason, retry_in))

    async def _dial_and_run(self, url: str) -> LinkRefusal | None:
        """Dial ``url`` and run the link until it ends: the refusal it ended with, if
        either side closed it with one (raises if the dial fails)."""
        refusal = None
        try:
            async with trio.open_nursery() as nursery:
                try:
                    websocket = await dial(nursery, url, timeout=self.config.dial_timeout)
                except Exception as exc:
                    raise DialError(dial_failure_reason(exc)) from exc
                refusal = await self._run_connection(websocket, nursery, dialed_url=url)
                nursery.cancel_scope.cancel()
        except* LocalProtocolError as group:
            # trio-websocket's reader answers a ping that arrives while we close with a pong
            # wsproto refuses, and raises (the pitfall the transport module describes): the
            # connection was ending anyway, so it ended normally.
            logger.debug("connection to %s ended while closing: %r", url, group.exceptions[0])
        return refusal

    async def _accept(self, websocket: WebSocketConnection, nursery: trio.Nursery) -> None:
        if len(self._connections) >= self.config.max_connections or self._closing:
            await close_quickly(websocket, CloseCode.TRY_AGAIN_LATER, "too many connections")
            return
        await self._run_connection(websocket, nursery, dialed_url=None)

    async def _run_connection(
        self, websocket: WebSocketConnection, nursery: trio.Nursery, dialed_url: str | None
    ) -> LinkRefusal | None:
        """Run one link until it ends; the refusal it ended with, if one side closed it
        with one."""
        conn = self._next_conn
        self._next_conn += 1
        send, receive = trio.open_memory_channel[tuple[float, bytes, bool]](self.config.send_queue_frames)
        connection = _Connection(conn, websocket, send, trio.CancelScope(), trio.current_time())
        self._connections[conn] = connection
        reason = "closed"
        try:
            with connection.scope:
                randomness = os.urandom(LINK_RANDOMNESS)
                self._apply(self.node.open(conn, trio.current_time(), randomness, dialed_url))
                async with trio.open_nursery() as tasks:
                    tasks.start_soon(self._writer, connection, receive)
                    if self.config.liveness_timeout > 0:
                        tasks.start_soon(self._watch_liveness, connection, tasks)
                    reason = await self._reader(connection)
                    tasks.cancel_scope.cancel()
        finally:
            del self._connections[conn]
            cancelled = connection.scope.cancelled_caught
            if cancelled:
                reason = connection.close_reason or "cancelled"
            # The node (and the application) hear of it at once: the goodbye on the socket
            # can take its full timeout, and on a silent link it never completes.
            self._apply(self.node.closed(conn, reason))
            if cancelled:
                with trio.CancelScope(shield=True):
                    await close_quickly(websocket, connection.close_code, reason, timeout=0.5)
        refusal = connection.refusal
        return refusal if refusal is None else replace(refusal, was_up=connection.up)

    async def _reader(self, connection: _Connection) -> str:
        """Receive frames; big batches are verified ahead in a worker thread.

        Two stages: this task takes frames off the socket, opens them (they are sealed
        once the handshake is done) and, for batches, checks their signatures on
        another core, while ``_process`` hands the previous frame to the node. Frames
        stay in order; a frame is processed only after its check ran. A frame too small
        to check ahead, with none ahead of it in ``_process``, goes to the node from
        here: one scheduling round sooner, at every hop (light load). The handshake
        frames are handled here, one at a time: until both HELLOs are in, there are no
        keys to open the next frame with.
        """
        send, receive = trio.open_memory_channel[bytes](2)
        reason = "connection closed"
        conn = connection.conn
        async with trio.open_nursery() as stages:
            stages.start_soon(self._process, connection, receive)
            async with send:
                try:
                    while True:
                        data = await connection.websocket.get_message()
                        connection.last_heard = trio.current_time()
                        if not self.node.is_open(conn):
                            self._apply(self.node.receive(conn, data, trio.current_time()))
                            continue
                        opened = self.node.unseal(conn, data, trio.current_time())
                        if isinstance(opened, list):
                            self._apply(opened)  # it did not open: the link closes
                            continue
                        if _worth_preverifying(opened):
                            room_id = self.node.log.room_id or b""
                            await trio.to_thread.run_sync(_preverify_frame, opened, room_id)
                        elif _stage_idle(receive):
                            # Nothing ahead of it: handled here, a scheduling round sooner.
                            self._process_frame(connection, opened)
                            continue
                        await send.send(opened)
                except ConnectionClosed as exc:
                    why = exc.reason
                    if why:
                        reason = (
                            f"connection closed ({why.code} {why.reason})"
                            if why.reason
                            else (f"connection closed ({why.code})")
                        )
                        if _refuses(why.code, connection) and connection.refusal is None:
                            connection.refusal = LinkRefusal(why.reason or str(why.code))
        return reason

    async def _process(self, connection: _Connection, frames: trio.MemoryReceiveChannel[bytes]) -> None:
        async for plaintext in frames:
            self._process_frame(connection, plaintext)

    def _process_frame(self, connection: _Connection, plaintext: bytes) -> None:
        # Frames waiting for us prove the link alive, even while we are the slow side.
        connection.last_heard = trio.current_time()
        self._apply(self.node.receive_unsealed(connection.conn, plaintext, trio.current_time()))

    async def _watch_liveness(self, connection: _Connection, tasks: trio.Nursery) -> None:
        """Ping a quiet link; close it once nothing has arrived for ``liveness_timeout``.

        The close is like the one for a full send queue: the reader is cancelled, the
        node hears the link is down (NeighbourDown with the reason) and the dialer, if
        we dialed, redials with backoff.
        """
        timeout, interval = self.config.liveness_timeout, self.config.ping_interval
        while True:
            await trio.sleep_until(connection.last_heard + min(interval, timeout))
            silent = trio.current_time() - connection.last_heard
            if silent >= timeout:
                logger.info("closing conn %d: silent for %.1f s", connection.conn, silent)
                connection.close_code = CloseCode.GOING_AWAY
                connection.close_reason = f"silent for {silent:.1f} s"
                connection.scope.cancel()
                return
            if silent >= interval:
                tasks.start_soon(self._ping, connection)
                await trio.sleep(interval)  # one ping per interval while silent

    @staticmethod
    async def _ping(connection: _Connection) -> None:
        try:
            await connection.websocket.ping()
        except (ConnectionClosed, ValueError):  # ValueError: a random payload repeated
            return
        connection.last_heard = max(connection.last_heard, trio.current_time())

    async def _writer(
        self, connection: _Connection, outbox: trio.MemoryReceiveChannel[tuple[float, bytes, bool]]
    ) -> None:
        low_water = max(1, self.config.send_queue_frames // 4)
        try:
            async for due, data, clear in outbox:
                if due:
                    await trio.sleep_until(due)  # a simulated link delay; order is kept
                # Sealed here, in the order of the wire (the node is not awaited on).
                sealed = data if clear else self.node.seal(connection.conn, data)
                if sealed is None:
                    break
                await connection.websocket.send_message(sealed)
                queued = connection.outbox.statistics().current_buffer_used
                if queued < low_water and self.node.backlog(connection.conn):
                    # Room again: release more of a long transfer (see Node.drain).
                    room = self.config.send_queue_frames // 2 - queued
                    self._apply(self.node.drain(connection.conn, room, trio.current_time()))
        except ConnectionClosed:
            return
        await close_quickly(connection.websocket, connection.close_code, connection.close_reason)


PREVERIFY_MIN_BYTES = 16 * 1024
"""Frames at least this big (about 90 messages; deflated, half this) have their
signatures checked ahead."""
EXIT_PATIENCE = 2.0
"""Seconds a LEAVE or AWAY waits for a membership change we answered to end."""


def _stage_idle(frames: trio.MemoryReceiveChannel[bytes]) -> bool:
    """Whether the processing stage waits for a frame with none handed to it yet (a
    frame handed to a waiting task leaves the count of waiting tasks at once)."""
    statistics = frames.statistics()
    return statistics.current_buffer_used == 0 and statistics.tasks_waiting_receive > 0


def _worth_preverifying(frame: bytes) -> bool:
    """Whether a frame (perhaps deflated) is big enough to check its signatures ahead."""
    deflated = frame[:1] == bytes((DEFLATED,))
    return len(frame) >= (PREVERIFY_MIN_BYTES // 2 if deflated else PREVERIFY_MIN_BYTES)


def _preverify_frame(data: bytes, room_id: bytes) -> None:
    """Check the signatures the node will check in a MESSAGES or PUSH frame, for
    identity.verify_signature to find.

    Those are the signatures of each author's last entry in the frame: the node
    authenticates the entries before it through their hash links (p2pchat.chain), and
    checks the signature of any other entry itself. The same strict CBOR rules as
    everywhere, but no more checking than needed to find the triples: anything
    unexpected is skipped here, and the node's full decoder sees the same bytes
    afterwards and decides.
    """
    try:
        frame = strict_loads(inflate_frame(data))  # (the node inflates it again: cheap)
        if not isinstance(frame, list):
            return
        if (len(frame), frame[0]) not in ((2, MESSAGES_FRAME), (5, PUSH_FRAME)):
            return
        last: dict[bytes, tuple[bytes, bytes]] = {}
        for payload, signature in frame[1]:
            # The author's id sits at a fixed place in every payload this release
            # writes; no need to decode the rest (anything else is checked later).
            if payload[:4] == _PAYLOAD_START:
                last[payload[4:36]] = (payload, signature)
    except (CodecError, TypeError, ValueError):
        return
    # (A genesis is signed in no room: it is simply checked again later.)
    preverify((sender, signed_bytes(room_id, payload), sig) for sender, (payload, sig) in last.items())


_PAYLOAD_START = bytes([0x80 + 11, PAYLOAD_VERSION, 0x58, SENDER_ID_SIZE])
"""How every payload starts: an array of 11, the version, a 32-byte string (the author)."""


def _is_expected_dial_failure(exc: BaseException) -> bool:
    """Network trouble (refused, timed out, handshake rejected), possibly in a group."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_is_expected_dial_failure(e) for e in exc.exceptions)
    return isinstance(exc, OSError | HandshakeError | trio.TooSlowError | ValueError | ConnectionClosed)


# Opening a peer ----------------------------------------------------------------------------


def default_data_dir(name: str) -> Path:
    """``$XDG_DATA_HOME/p2pchat/NAME`` (``~/.local/share/p2pchat/NAME`` by default)."""
    base = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(base) / "p2pchat" / name


def restore_log(store: Store, room_id: bytes, config: LogConfig | None = None) -> OrderedLog:
    """The ordered log of room ``room_id`` in ``store`` (verified when it was stored),
    with the proofs against members kept there (checked again, see restored_proofs)."""
    log = OrderedLog(config, room_id=room_id)
    restore(
        log,
        # (Unlike the entries, the other versions are not what our log was built from:
        # each is checked again.)
        versions=(v for v in store.load_versions(room_id) if v.verify(room_id)),
        entries=store.load_messages(room_id),
        placeless=store.load_placeless(room_id),
        placed_late=store.load_placed_late(room_id),
        proofs=restored_proofs(store, room_id),
        announcements=store.load_announcements(room_id),
    )
    if log.bad_announcements:
        logger.warning("dropped %d stored clock announcements: bad signature", log.bad_announcements)
    return log


def restored_proofs(store: Store, room_id: bytes) -> list[Proof]:
    """The proofs stored for ``room_id`` that still prove what they claim. The others
    (a data directory edited by hand, or damaged) are dropped with a warning: they
    must not make us expel a member."""
    proofs = []
    for stored in store.load_proofs(room_id):
        try:
            proofs.append(proof_from(stored, room_id))
        except InvalidProof as exc:
            logger.warning(
                "dropped a stored %s proof against %s: %s",
                stored.kind.value,
                short_id(stored.offender) or "nobody",
                exc,
            )
    return proofs


class NoSuchRoom(LookupError):
    """``--room`` named a room that is not in the data directory."""


def load_node(
    name: str,
    store: Store | None,
    config: PeerConfig,
    identity: Identity | None = None,
    *,
    room: str | None = None,
    found: bool = True,
    private: bool = False,
) -> Node:
    """Build the node: identity and history from the store when there is one.

    The room: ``room`` (a hex id or prefix of one stored here), else the room last
    used here, else a new room founded now when ``found`` (nobody to join), else none
    yet (a newcomer takes its first neighbour's room). With peers to join and no
    ``room``, the last room is provisional: the first peer we dial that is in another
    room takes us there (going on from the store if we were in it before, see
    :meth:`Peer._open_room`). ``private`` (with ``found``) founds a new invite-only
    room, whatever is stored.
    """
    stored = store.load_identity() if store is not None else None
    if identity is None:
        identity = Identity(stored.seed if stored else os.urandom(32))
    if store is not None and (stored is None or stored.name != name):
        store.save_identity(identity.seed, name)
    if private and found and room is not None:
        raise NoSuchRoom("--private founds a new room: it cannot reopen one (--room)")
    # A new invite-only room is founded even where other rooms are stored.
    room_id = None if private and found else _pick_room(store, room)
    now_ms = int(time.time() * 1000)
    if room_id is not None and store is not None:
        log = restore_log(store, room_id, config.log)
    elif found:
        policy = RoomPolicy.INVITE if private else RoomPolicy.OPEN
        log, genesis = OrderedLog.found(
            identity, name=name, room_name=_room_name_for(name), sent_at_ms=now_ms, policy=policy
        )
        room_id = log.room_id
        if store is not None and room_id is not None:
            store.save_messages(room_id, [genesis], durable=True)
    else:
        log = OrderedLog(config.log)
    if store is not None and room_id is not None:
        store.use_room(room_id, "", now_ms)
    node = Node(identity, name, log, config=config.node, wall_offset=time.time() - trio.current_time())
    # With peers to --join and no --room, the room last used is shown meanwhile, but we
    # enter the room of the peers we join, whichever it is.
    node.provisional_room = room is None and not found and room_id is not None
    # Our own entries came from disk, which may be an old copy: with peers to join, write
    # nothing before one of them has sent what we lack (see Node.history_checked).
    node.history_checked = found or log.delivered_seq(identity.sender_id) == 0
    if store is not None:
        # Never announce a clock above what is on disk here (see Node.announce_limit).
        node.announce_limit = store.clock(room_id) if room_id is not None else 0
        node.saved_vector = log.vector()
        if room_id is not None:
            node.invites = InviteBook(store.load_invites(room_id))
    return node


def _room_name_for(name: str) -> str:
    """The name of a room we found: "<name>'s room", cut to the room-name limit on a
    character boundary (a member's name may use all of that limit by itself)."""
    room_name = f"{name}'s room".encode()
    return room_name[:MAX_NAME_BYTES].decode("utf-8", "ignore")


def _pick_room(store: Store | None, room: str | None) -> bytes | None:
    if store is None:
        if room is not None:
            raise NoSuchRoom("--room needs a data directory")
        return None
    if room is None:
        return store.last_room()
    found = store.find_room(room)
    if found is None:
        known = ", ".join(r.room_id.hex()[:16] for r in store.rooms()) or "none"
        raise NoSuchRoom(f"no room {room!r} in this data directory (rooms here: {known})")
    return found


async def serve_peer(
    name: str,
    *,
    data_dir: str | Path | None = None,
    listen: str = "127.0.0.1:0",
    join: Iterable[str] = (),
    config: PeerConfig | None = None,
    identity: Identity | None = None,
    room: str | None = None,
    private: bool = False,
    task_status: trio.TaskStatus[Peer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a peer until cancelled; ``task_status.started`` hands over the :class:`Peer`.

    ``data_dir=None`` keeps everything in memory (nothing survives a restart).
    Without ``join`` and without a stored room, the peer founds a new room; with
    ``join`` a newcomer enters the room of the peers it joins. ``private`` makes a
    room founded here invite-only (see :meth:`Peer.invite`).
    """
    config = config or PeerConfig()
    join = tuple(join)
    # One process per data directory (see lockfile): taken before the store is opened.
    lock = DataDirectoryLock(data_dir) if data_dir is not None else None
    if lock is not None:
        lock.acquire()
    store = None
    try:
        store = Store(data_dir) if data_dir is not None else None
        node = load_node(name, store, config, identity, room=room, found=not join, private=private)
        async with trio.open_nursery() as nursery:
            peer = Peer(node, store, config, nursery)
            host, port = parse_host_port(listen)
            listeners = await _listen(nursery, peer, host, port, store)
            bases = [url_of(listeners[0])]
            if is_wildcard(host):  # tell others an address that reaches this machine
                bases = ws_urls(host, listeners[0].socket.getsockname()[1])
            peer.urls = [peer_url(base, node.identity.sender_id) for base in bases]
            peer.url = node.listen_url = peer.urls[0]
            nursery.start_soon(peer._ticker)
            nursery.start_soon(peer._saver)
            for url in join:
                peer.join(url)
            if not join or _rejoins_last_room(node, join):
                peer._reopen_links()
            nursery.start_soon(peer._trust_own_history_after, 0.0 if not join else config.own_history_wait)
            task_status.started(peer)
    finally:
        if store is not None:
            store.close()
        if lock is not None:
            lock.release()


def _rejoins_last_room(node: Node, join: Iterable[str]) -> bool:
    """Whether a peer we are told to join is one the room we used last knows (a member
    now or before): most likely the same command run again. Then the room's other
    neighbours are dialed too, as without ``--join``: a peer joined that is down for
    now must not leave us alone, and an invite whose issuer left is given up once we
    are back in the room (see Peer._issuer_left). Our room stays provisional: if the
    peer joined turns out to be in another room first, we still move there."""
    if not node.provisional_room:
        return False
    for url in join:
        try:
            named = split_peer_url(url)[1]
        except ValueError:
            continue
        if named is not None and node.log.roster.was_member(named):
            return True
    return False


async def _listen(
    nursery: trio.Nursery, peer: Peer, host: str, port: int, store: Store | None
) -> list[trio.SocketListener]:
    """Serve ``peer`` on ``host:port``. Port 0 means the port this data directory's peer
    listened on last, if it is free (its neighbours kept that address: a peer that comes
    back where it was is found again, say to reopen a room every member quit), else any."""
    listeners: list[trio.SocketListener] | None = None
    remembered = store.listen_port() if store is not None and not port else 0
    if remembered:
        try:
            listeners = await nursery.start(serve_websockets, peer._accept, host, remembered)
        except OSError as exc:
            logger.info("port %d, used last, is taken (%s): listening on another", remembered, exc)
    if listeners is None:
        listeners = await nursery.start(serve_websockets, peer._accept, host, port)
    if store is not None and not port:
        store.remember_listen_port(listeners[0].socket.getsockname()[1])
    return listeners


@asynccontextmanager
async def open_peer(
    name: str,
    *,
    data_dir: str | Path | None = None,
    listen: str = "127.0.0.1:0",
    join: Iterable[str] = (),
    config: PeerConfig | None = None,
    identity: Identity | None = None,
    room: str | None = None,
    private: bool = False,
) -> AsyncIterator[Peer]:
    """Run a peer for the duration of the ``async with`` block, then close it cleanly."""
    async with trio.open_nursery() as nursery:
        serve = partial(
            serve_peer,
            name,
            data_dir=data_dir,
            listen=listen,
            join=tuple(join),
            config=config,
            identity=identity,
            room=room,
            private=private,
        )
        peer: Peer = await nursery.start(serve)
        try:
            yield peer
        finally:
            with trio.CancelScope(shield=True):
                await peer.aclose()
            nursery.cancel_scope.cancel()
