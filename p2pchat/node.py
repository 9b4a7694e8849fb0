"""A peer's protocol brain: gossip, anti-entropy and repair over many links, sans-IO.

Part of the pure core. A :class:`Node` owns the :class:`~p2pchat.log.OrderedLog`
and one :class:`~p2pchat.protocol.Link` per connection. The shell (or the
simulator) feeds it what happened -- a connection opened, bytes arrived, a
connection closed, the user typed something, time passed -- and carries out
what it returns: :class:`Send` bytes, :class:`Close` a connection, hand
:class:`LogEvents` to the application, dial :class:`Discovered` addresses.
Time (``now``, in seconds on any monotonic scale) and randomness (``rng``)
are always arguments.

Gossip rules:

* **Push, eager or lazy (Plumtree).** A message seen for the first time (our
  own or a neighbour's) is queued for every other neighbour not known to hold
  it: in full on the links that are *eager* for its author, as its bare id (an
  IHAVE) on the links that are *lazy* for it. Queues are flushed as one PUSH
  frame per neighbour after ``batch_window`` seconds, or at once when
  ``max_batch`` messages are waiting, so a burst never costs a frame per
  message; ids ride along with the next PUSH, or go on their own after
  ``lazy_window``. Every link starts eager for every author. A message that
  comes a second time in a PUSH, after a first copy that came in a PUSH on
  another link, shows a redundant link: we ask its sender to push that author
  lazily (PRUNE, riding with our next PUSH to it). Only that direction: the
  other one is the neighbour's to prune. What is left eager converges to one
  spanning tree per author along the fastest paths (one per author, as Riak's
  plumtree keeps eager and lazy sets per root; a single shared tree would route
  every author's messages through the middle of the tree, about twice as many
  hops from a leaf). An announced message that has not come otherwise ``graft_timeout``
  after its IHAVE is pulled with GRAFT from the announcer, which makes the link
  eager for its author again: a broken or slow tree repairs itself. See Leitão,
  Pereira and Rodrigues, "Epidemic Broadcast Trees" (SRDS 2007).
* **Pull.** On connect (the heads in HELLO) and every ``anti_entropy_interval``
  with one random neighbour (HEADS with ``reply_wanted``), the receiver of the
  heads sends every message the other side lacks.
* **Repair.** Heads and vector clocks reveal messages that exist but are not
  here; the log reports them as gaps and the node asks a neighbour that holds
  them with WANT, once a gap has been open for ``gap_grace`` (a message named by
  a later one's vector clock usually comes along its own author's tree a moment
  later), again after ``want_timeout`` if they do not come.
* **Heartbeat.** Every ``heartbeat_interval`` neighbours get our heads when
  they changed (and at least every ``keepalive_interval``). Heads carry every
  member's last clock announcement, relayed, so stability advances in a quiet
  room and across hops: whole where the link has not carried it yet, except on a
  link that pushes the member's messages lazily. There a head names it by a digest
  (8 bytes of its signature), and it goes whole only once the neighbour's own
  heads show that the member's tree did not bring it in ``announcement_grace``.
  A member signs a new beat (says it is alive) every heartbeat, in a room of more
  than ``announce_load`` members less often (``_beat_interval``).
* **Rooms and membership.** AUTH says which room each side is in: a newcomer
  without a room takes its first neighbour's, and a neighbour from another room
  is refused with a reason. In an open room, a member proposes a CHANGE admitting
  a neighbour that is not an active member (a newcomer, or a member back from AWAY
  or LEAVE, once its link stayed open ``admission_delay``; a removed one at once),
  unless the room is full (``MAX_MEMBERS``), and removing every member not heard
  from for ``member_timeout``. Every member answers the changes it sees with a FLUSH, then
  a COMMIT once it holds every answer a change needs (DESIGN.md rule 10, see
  :mod:`p2pchat.membership`). A change is proposed only while every member it
  keeps was heard from recently: it needs all their answers. One stuck on a member
  silent for ``member_timeout`` is superseded by a change in a later round that
  removes it; after rival changes killed a round, the author of the first of them
  proposes again and the others wait ``rival_backoff``.
* **History only for members.** Entries, heads, WANT answers and peer
  addresses go only to a *trusted* neighbour: one that is an active member of
  the room in our log, or one away (a clean quit) on its way back, or any
  neighbour while we hold nothing of the room yet (a newcomer has nothing to
  reveal).
  Trust is checked when the link opens and again at every heartbeat. A
  neighbour we cannot admit while we are a member (the room is full, or it is
  invite-only) gets a close reason and nothing else.
* **Invite-only rooms.** In a room whose genesis says RoomPolicy.INVITE a member
  admits only a neighbour that presents, in its handshake, a valid unused
  unexpired invite this member issued (see :mod:`p2pchat.invites`), and
  re-admits members back from AWAY. A used, expired or unknown invite is
  refused with a reason.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Protocol, TypeVar

from .address import invite_of, split_peer_url, with_peer_id
from .chain import authenticate
from .channel import SEAL_OVERHEAD
from .codec import CodecError
from .deflate import deflate_frame, inflate_frame
from .evidence import first_per_offender, offence, offender_of, proven_entry
from .identity import Identity, short_id
from .invites import InviteBook
from .log import (
    ClockLie,
    Decided,
    Delivered,
    Entombed,
    Equivocation,
    LogEvent,
    NotAMember,
    OrderedLog,
    ReceiptStatus,
    Refusal,
    Refused,
)
from .membership import MAX_MEMBERS, MemberState
from .message import Change, EntryKind, Flush, Message, MessageId, RoomPolicy
from .protocol import CloseCode, Link, LinkState, ProtocolError
from .ratelimit import TokenBucket
from .wire import (
    DIGEST_SIZE,
    MAX_BATCH,
    MAX_PEERS,
    NO_ANNOUNCEMENT,
    Bye,
    Frame,
    Graft,
    Head,
    Heads,
    Messages,
    Peers,
    Push,
    Want,
    WantRange,
    encode_frame,
    message_batches,
)

__all__ = [
    "Close",
    "Discovered",
    "LogEvents",
    "Node",
    "NodeConfig",
    "NodeStatistics",
    "Output",
    "PeerDown",
    "PeerUp",
    "Send",
    "text_count",
]

T = TypeVar("T")

MAX_VERSION_CHECKS = 16
"""Entries one link may make us ask it for, because it holds them in another version than
ours (see Node._ask_for_versions). Heads are not signed: a relay that lies in them costs
us this many small requests, no more."""
BRANCH_SPAN = 16
"""Entries asked for at once when an equivocator's chain here waits on a version of one of
its entries we lack (see Node._ask_for_versions): that one and the 15 before it, which the
branch may go on from too."""
MAX_BRANCH_ASKS = 64
"""Such asks per link: a branch up to 64 x BRANCH_SPAN entries deep is repaired over one
link. (Only an author that signed every version on it can make one deep.)"""
PUSHED_FIRST_MEMORY = 4096
"""How many recent first-by-PUSH message ids a node remembers (see Node._pushed_first)."""
SPREAD_MEMORY = 4
"""How many of a member's latest announcements a node remembers having spread, with
when (see Node._is_behind): a few seconds' worth."""


_MOST_ANSWERS_AT_ONCE = 3
"""A FLUSH, then the COMMIT it made due, then a FLUSH for a later round: at most."""
_EXITED = (MemberState.LEFT, MemberState.AWAY)


class Rng(Protocol):
    """The randomness a node needs; ``random.Random`` fits."""

    def random(self) -> float: ...

    def choice(self, seq: Sequence[T]) -> T: ...


@dataclass(frozen=True, slots=True)
class NodeConfig:
    batch_window: float = 0.001
    """How long a busy link gathers pushes into one frame (see the module docstring).
    1 ms rather than 2: at light load (``p2pchat bench --rate 10 --messages 100``, 8
    alternating runs each) latency to the last peer was p50 4.7-5.3 ms against
    4.9-6.9 ms, p99 8.9-10.4 against 8.9-12.9 ms; bursts lost nothing measurable
    (5 peers in a line: 7,342 against 7,462 msg/s, 7 runs each; 10 and 20 peers
    alike)."""
    max_batch: int = 500
    batch_gather: float = 0.0
    """A push to a link idle for a whole ``batch_window`` waits this fraction of the
    window, so that what arrives in the same burst (from several neighbours) rides in
    one frame. Worth it where a hop takes much longer than the window (the simulator's
    wide-area rooms); on a fast network it is latency for nothing."""
    lazy_push: bool = True
    """Prune redundant links to lazy push (Plumtree); False floods every message on every
    link for good (for comparison)."""
    lazy_window: float = 0.5
    """How long an id announced on a lazy link may wait for a PUSH to ride on."""
    graft_timeout: float = 0.25
    """How long an announced message may take to come by the tree before we pull it
    (GRAFT), and then before we ask the next neighbour that announced it."""
    max_announced: int = 20_000
    """Announced messages we track at most (an IHAVE flood costs bounded memory)."""
    heartbeat_interval: float = 1.0
    announce_interval: float = 0.5
    """Having delivered others' entries, we sign a fresh clock announcement (what we
    delivered, rule 8) at most this often, and it rides on the PUSH frames that go
    anyway, relayed by every member it is news to: stability then follows the messages
    instead of waiting a heartbeat per hop. In a room of more than ``announce_load / 2``
    members, at most every ``members / announce_load`` seconds instead."""
    announce_load: float = 50.0
    """Fresh announcements per second a member receives (and verifies) at most, from the
    whole room: the work stays linear in the room's size, not quadratic."""
    announcement_grace: float = 0.5
    """How long a fresh announcement may take to reach a neighbour by its member's tree
    before our heads give it to that neighbour over a lazy link (see ``_lean_head``)."""
    admission_delay: float = 0.5
    """Seconds a newcomer's link must stay open before an open room proposes to admit it:
    a link that opens and dies at once must not become a member that never answers. A
    member back from AWAY or LEAVE waits as long (its link may be one it dialed just
    before that exit, see Node._returning)."""
    member_timeout: float | None = 30.0
    """Seconds a member may go unheard (no entry, no fresh announcement, no open link to
    us) before we propose to remove it (rule 10); None: never."""
    recent_window: float = 6.0
    """A member heard within this many seconds counts as reachable: a change (an
    admission) is proposed only while every member is, since it needs every answer."""
    rival_backoff: float = 3.0
    """Seconds a member that proposed a change killed by a rival of the same round waits
    before proposing again, unless it wrote the first of them (see Node._gives_way)."""
    keepalive_interval: float = 10.0
    anti_entropy_interval: float = 3.0
    want_timeout: float = 1.0
    gap_grace: float = 0.2
    """How long a gap may stay open before we ask for it: a message revealed by a later
    one's vector clock is usually on its way, along its own author's tree."""
    handshake_timeout: float = 10.0
    max_want_span: int = 10_000
    initial_frames: int = 8
    """Frames of a transfer sent at once; the rest as the shell's send queue drains."""
    sync_patience: float = 5.0
    """While a neighbour streams history to us we ask nobody else for it, unless it
    makes no progress for this long."""
    max_known_addresses: int = 256
    max_frames_per_second: float = 2_000
    max_frame_burst: float = 10_000
    max_bytes_per_second: float = 20_000_000
    max_byte_burst: float = 64_000_000
    """A neighbour sending faster than this (after its burst) is disconnected and banned."""
    ban_seconds: float = 60.0
    """How long a misbehaving peer's id is refused after it broke the protocol."""


_RATE_LIMITED = ("you exceeded this peer's rate limit", "exceeded our rate limit")
"""The close reason for a neighbour that sends too fast, and our note (see Close)."""


# Outputs ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """A frame for ``conn``. Unless ``clear``, ``data`` is the plaintext: the shell seals
    it with :meth:`Node.seal` just before it writes it, in the order it writes, so the
    sealed stream (whose every frame depends on the ones before) matches the wire
    exactly. ``clear`` frames (the handshake: our HELLO, and our AUTH, which the link
    seals itself) go as they are."""

    conn: int
    data: bytes
    clear: bool = False


@dataclass(frozen=True, slots=True)
class Close:
    conn: int
    code: CloseCode
    reason: str
    """Why, for the other side: the close frame carries it there."""
    note: str | None = None
    """Why, in our own words (our log, our failed dial), where the reason reads only from
    the other side ("you are not a member"); None: the reason says it for both."""


@dataclass(frozen=True, slots=True)
class LogEvents:
    events: tuple[LogEvent, ...]


@dataclass(frozen=True, slots=True)
class PeerUp:
    conn: int
    sender_id: bytes
    name: str
    listen_url: str | None


@dataclass(frozen=True, slots=True)
class PeerDown:
    """A neighbour reported by :class:`PeerUp` is gone (each PeerUp gets exactly one)."""

    conn: int
    sender_id: bytes | None
    reason: str


@dataclass(frozen=True, slots=True)
class Discovered:
    """Addresses to dial while the shell has fewer links than it wants."""

    urls: tuple[str, ...]
    beyond_target: bool = False
    """Dial these even with as many links as wanted (unless the shell dials learned
    addresses not at all): members of our room unheard for long (see
    ``Node._rediscover``); links to peers that are no members count toward the target
    too, and relay nothing."""


@dataclass(frozen=True, slots=True)
class OwnEntries:
    """Entries of ours the node wrote by itself (an ADMIT): store them durably before
    carrying out the outputs that follow."""

    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class InviteRedeemed:
    """An invite of ours was used by ``by``: store that durably (it is one-time) before
    carrying out the outputs that follow (the admission)."""

    secret_hash: bytes
    by: bytes


@dataclass(frozen=True, slots=True)
class RoomAdopted:
    """We had no room and took our first neighbour's."""

    room_id: bytes


Output = Send | Close | LogEvents | PeerUp | PeerDown | Discovered | OwnEntries | RoomAdopted | InviteRedeemed


@dataclass(slots=True)
class NodeStatistics:
    connections: int = 0
    delivered: int = 0
    held: int = 0
    missing: int = 0
    stable: int = 0
    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    messages_in: int = 0
    duplicates_in: int = 0
    refused: int = 0
    grafts_out: int = 0
    prunes_out: int = 0


@dataclass(slots=True)
class _Neighbour:
    conn: int
    link: Link
    opened_at: float
    dialed_url: str | None
    held: dict[bytes, int] = field(default_factory=dict)
    """Per author, up to which seq we believe it holds everything: from its heads, what
    it sent us, what it announced, what we pushed (see :func:`_note_held`)."""
    push: list[Message] = field(default_factory=list)
    push_due: float | None = None
    lazy: set[bytes] = field(default_factory=set)
    """Authors whose messages we push to it lazily (ids only): pruned links."""
    pruned: set[bytes] = field(default_factory=set)
    """Authors we sent it a PRUNE for (not again for every duplicate already in flight)."""
    announce: list[MessageId] = field(default_factory=list)
    """Ids to announce to it (IHAVE)."""
    prune: dict[bytes, None] = field(default_factory=dict)
    """Authors to prune on it."""
    lazy_due: float | None = None
    """When the ids and prunes queued for it go in a PUSH of their own, if none went by then."""
    fresh: dict[bytes, Head] = field(default_factory=dict)
    """Clock announcements that were news to us (ours included), per member, to ride on
    the next PUSH to it (never in a frame of their own: heartbeats carry them too)."""
    shared: dict[bytes, bytes] = field(default_factory=dict)
    """Per member, the signature of the newest clock announcement of it this link has
    carried, either way: our heads repeat a member's held seq on every heartbeat, but its
    announcement (a signature and a delivered vector as long as the room) only when it is
    not the one the link carried already."""
    digests: dict[bytes, bytes] = field(default_factory=dict)
    """Per member, the digest of the announcement its latest heads said it holds and the
    link has not carried (Head.digest)."""
    echo: set[bytes] = field(default_factory=set)
    """Members whose announcement its digest showed we share: our next heads say so."""
    behind: set[bytes] = field(default_factory=set)
    """Members of which its latest heads named an announcement older than the one we
    held ``announcement_grace`` before they came: the tree did not bring it ours."""
    last_flush: float = float("-inf")
    heads_sent: tuple[Head, ...] | None = None
    heads_sent_at: float = float("-inf")
    links_sent_at: float = float("-inf")
    """When our heads to it last carried the links (see ``Node._heads_for``)."""
    frame_budget: TokenBucket | None = None
    byte_budget: TokenBucket | None = None
    backlog: deque[Message] = field(default_factory=deque)
    """Messages owed to this neighbour (anti-entropy, WANT replies), released as frames
    when the shell has room for them (:meth:`Node.drain`): a slow reader paces a long
    transfer instead of overflowing its send queue."""
    heads_after_backlog: bool = False
    """Send our heads once the backlog is out: it tells the neighbour the sync is done."""
    hello_seq: int = 0
    """The neighbour's own seq when this link opened: what we held of its chain then,
    raised by its own head in its first heads on this link. An AWAY or LEAVE of it above
    this was written on this very link (it is quitting), not in an earlier session."""
    reported_up: bool = False
    """A PeerUp was output for it: its end gets a PeerDown (a link refused or failed before
    that, e.g. from another room or a duplicate, never had a PeerUp and gets none). It is
    output once both ends took the link: we did (the link is still open after our checks)
    and it did (a frame of its own came after the handshake, see ``Node._on_accepted``)."""
    heads_seen: bool = False
    """Whether its first HEADS frame (the one that opens the sync) has arrived."""
    trusted: bool = False
    """Whether it may get entries, heads and addresses (see the module docstring)."""
    told_leave_held: bool = False
    """It is leaving (wire.Auth.leaving), and we told it we hold its LEAVE."""
    asked: bool = False
    """Whether we asked it for the history we lack while it was not trusted (see
    ``Node._may_ask``)."""
    sent_everything: bool = False
    """It came without a room (it holds nothing) and we owed it the whole log at once."""
    evidence_sent: set[bytes] = field(default_factory=set)
    """Equivocators whose two versions this link has carried (see Node._offer_evidence)."""
    versions_asked: set[MessageId] = field(default_factory=set)
    """Entries we asked this link for because it holds another version of them (see
    Node._ask_for_versions): at most MAX_VERSION_CHECKS."""
    branch_asked: set[MessageId] = field(default_factory=set)
    """The same, for the versions an equivocator's chain here waits on: at most
    MAX_BRANCH_ASKS."""

    @property
    def remote_id(self) -> bytes | None:
        return self.link.remote.sender_id if self.link.remote else None


@dataclass(slots=True)
class _Announced:
    """A message neighbours announced to us lazily and we do not hold yet."""

    due: float
    """When to pull it from the next announcer if it has not come by then."""
    announcers: list[int]
    """Connections that announced it, in the order the announcements came."""


class Node:
    """Everything a peer decides, with no I/O of its own."""

    def __init__(
        self,
        identity: Identity,
        name: str,
        log: OrderedLog,
        *,
        listen_url: str | None = None,
        config: NodeConfig | None = None,
        wall_offset: float = 0.0,
    ) -> None:
        self.identity = identity
        self.wall_offset = wall_offset
        """Seconds to add to ``now`` for the wall clock (display only), for the entries
        the node writes by itself."""
        self.name = name
        self.log = log
        self.listen_url = listen_url
        self.config = config or NodeConfig()
        self._neighbours: dict[int, _Neighbour] = {}
        self._want_retry_at: dict[bytes, float] = {}
        self._gap_seen: dict[bytes, tuple[int, float]] = {}
        """Per sender with a gap: its first missing seq, and since when it is missing."""
        self._announced: dict[MessageId, _Announced] = {}
        """Messages neighbours announced (IHAVE) that we lack, by when to GRAFT them."""
        self._next_graft_check: float | None = None
        self._parents: dict[bytes, int] = {}
        """Per author, the connection that pushed us the last of its messages first: our
        parent in its tree."""
        self._pushed_first: dict[MessageId, int] = {}
        """Recent messages whose first copy came in a PUSH, and on which connection
        (oldest first, bounded): only a second pushed copy of one of those can show a
        redundant tree link. One that came first as an answer (anti-entropy, WANT,
        GRAFT) says nothing about the tree."""
        self._syncing: dict[int, float] = {}
        """Connections streaming history to us, and until when we wait for progress."""
        self._next_heartbeat = 0.0
        self._next_anti_entropy = self.config.anti_entropy_interval
        self._next_rediscovery = self.config.keepalive_interval
        self._rediscoveries = 0
        """Rounds of _rediscover so far: where each round starts in the addresses it offers."""
        self._next_want_check: float | None = None
        self._addresses: dict[str, None] = {}
        self._banned: dict[bytes, float] = {}
        self._own_announcement: tuple[tuple[bytes, int, int, tuple[tuple[bytes, int], ...], int], Head] | None
        self._own_announcement = None
        """Our last signed announcement, with what it says (room, seq, clock, delivered,
        beat): signed again only when that changes."""
        self._own_spread_at = float("-inf")
        """When we last queued a fresh announcement of ours on every link."""
        self._spread: dict[bytes, deque[tuple[bytes, float]]] = {}
        """Per member, the digests of the last few announcements of it we spread, and
        when each came (see ``_is_behind``)."""
        self._beat_ms = 0
        """Our wall clock at our last beat: our announcements say we were alive then."""
        self._beat_at = float("-inf")
        """When we last signed a new beat (see ``_beat_interval``)."""
        self._admission_due: float | None = None
        """When a newcomer's link will have been open ``admission_delay``: admit it then."""
        self.saved_vector: dict[bytes, int] | None = None
        """When set (the shell stores entries), per sender the highest seq on disk: we
        announce having delivered no more than that (see _own_head)."""
        self._heard: dict[bytes, tuple[int, int, float, float | None]] = {}
        """Per member: its delivered seq and announcement beat as we last saw them, when
        we first saw it as a member, and when we last heard from it (None: never)."""
        self._rivals_seen: dict[tuple[int, int], float] = {}
        """Per (epoch, round) a change would take after rivals died: when we first saw it."""
        self._exited = False
        """We wrote our LEAVE or AWAY in this run: we are on our way out, and vote in no
        reopening (see _propose_reopening)."""
        self._left = False
        """We wrote our LEAVE in this run: every link we open says so (wire.Auth.leaving)."""
        self._leave_seq: int | None = None
        """The seq of the LEAVE we wrote in this run, until a neighbour's heads say it
        holds it (see leave_handed_over)."""
        self.announce_limit: int | None = None
        """When set, our clock announcements never exceed it: the shell sets it to the
        clock it has made durable, so a crash cannot make us take back a promise
        (after a restart our clock restarts from what is on disk)."""
        self.stats = NodeStatistics()
        self._evidence_spread: set[MessageId] = set()
        self.provisional_room = False
        """Our room is only the one we used last, opened while we dial peers to join: the
        first of them in another room takes us to its room (the shell sets this)."""
        self.invites = InviteBook()
        """The invites we issued for our room (the shell loads them from its store)."""
        self._invited: set[bytes] = set()
        """Neighbours whose invite we accepted: admitted as soon as a change can be made."""
        self.offenders: dict[bytes, str] = {}
        """Ids we hold proof against (they signed two versions of one of their entries,
        or broke a promise about their clock), with what they did: we propose their
        removal, never their admission, and refuse them as neighbours (see _expel)."""
        self._recall_offenders()
        self.history_checked = True
        """Whether we may trust that our own chain here is complete. A peer restarted from
        an old copy of its data must not write before a neighbour has sent what it lacked
        (it would reuse a seq: equivocation): the shell clears this for a log it restored
        from disk, and a neighbour's completed sync (or the shell, after a while alone)
        sets it again."""

    # Connections ----------------------------------------------------------------
    def open(self, conn: int, now: float, randomness: bytes, dialed_url: str | None = None) -> list[Output]:
        """A transport connection is up (dialed or accepted): start the handshake.

        ``randomness``: protocol.LINK_RANDOMNESS fresh random bytes. A ``dialed_url``
        that names a peer id (address.peer_url) makes the link refuse any other peer.
        """
        expected, invite = None, None
        if dialed_url is not None:
            with suppress(ValueError):  # (the shell checks URLs before it dials them)
                expected, invite = split_peer_url(dialed_url)[1], invite_of(dialed_url)
        link = Link(
            self.identity,
            self.name,
            self.listen_url,
            randomness,
            self.log.room_id or b"",
            dialer=dialed_url is not None,
            expected_id=expected,
            pristine=self._pristine(),
            invite=invite or b"",
            leaving=self._left,
        )
        config = self.config
        self._neighbours[conn] = _Neighbour(
            conn,
            link,
            now,
            dialed_url,
            frame_budget=TokenBucket(config.max_frames_per_second, config.max_frame_burst),
            byte_budget=TokenBucket(config.max_bytes_per_second, config.max_byte_burst),
        )
        return [self._send_raw(conn, link.hello())]

    def closed(self, conn: int, reason: str = "closed") -> list[Output]:
        """The transport connection is gone (for whatever reason)."""
        self._syncing.pop(conn, None)
        neighbour = self._neighbours.pop(conn, None)
        if neighbour is None:
            return []
        neighbour.link.close()
        outputs: list[Output] = [PeerDown(conn, neighbour.remote_id, reason)] if neighbour.reported_up else []
        return [*outputs, *self._regraft(conn)]

    def close(self, conn: int, reason: str = "bye", code: CloseCode = CloseCode.NORMAL) -> list[Output]:
        """Say goodbye on ``conn`` and ask the shell to close it."""
        neighbour = self._neighbours.get(conn)
        if neighbour is None:
            return []
        outputs: list[Output] = []
        if neighbour.link.is_open:
            outputs.extend(self._flush(neighbour, neighbour.last_flush))
            outputs.append(self._send(conn, encode_frame(Bye(reason))))
        neighbour.link.close()
        outputs.append(Close(conn, code, reason))
        return outputs

    def close_all(self, reason: str = "shutting down") -> list[Output]:
        outputs: list[Output] = []
        for conn in list(self._neighbours):
            outputs.extend(self.close(conn, reason, CloseCode.GOING_AWAY))
        return outputs

    def neighbours(self) -> list[tuple[int, bytes | None, str | None]]:
        """(conn, remote id or None before the handshake, remote listen URL with its id)."""
        return [(n.conn, n.remote_id, _url_of(n)) for n in self._neighbours.values()]

    def is_open(self, conn: int) -> bool:
        """Whether the handshake on ``conn`` is complete (its frames are sealed)."""
        neighbour = self._neighbours.get(conn)
        return neighbour is not None and neighbour.link.is_open

    @property
    def open_count(self) -> int:
        return sum(1 for n in self._neighbours.values() if n.link.is_open)

    def known_addresses(self) -> list[str]:
        return list(self._addresses)

    def learn_addresses(self, urls: Iterable[str]) -> None:
        """Keep addresses of members of our room that the shell kept from a run before
        (see :meth:`member_addresses`): passed on to the neighbours we trust, and offered
        to the shell again whenever no link of ours leads to a member (see _rediscover),
        as if a neighbour had told us. A peer whose neighbours of before left for good
        then still finds the members it heard of, instead of staying alone for good.

        Only the addresses of members of our room, active or away, as our log says: one
        the shell kept of a neighbour that was never admitted (a stranger) must reach no
        member, as with the addresses neighbours tell us (see _learn_address)."""
        members = self._members_and_away()
        self._remember(url for url in urls if _announceable(url) and _peer_of(url) in members)

    def member_addresses(self) -> list[str]:
        """The addresses we know of the other members of our room, active or away (back
        later), the latest learned first: for the shell to keep with the room and hand
        back after a restart (:meth:`learn_addresses`)."""
        return self._addresses_of(self._members_and_away())[::-1]

    def _members_and_away(self) -> frozenset[bytes]:
        """The other members of our room, active or away, as our log says."""
        states = (MemberState.ACTIVE, MemberState.AWAY)
        info = self.log.member_info()
        return frozenset(m for m, i in info.items() if i.state in states) - {self.identity.sender_id}

    # Sending ----------------------------------------------------------------------
    @property
    def is_member(self) -> bool:
        """Whether we are an active member of our room."""
        return self.log.room_id is not None and self.log.is_member(self.identity.sender_id)

    @property
    def may_write(self) -> bool:
        """Whether a chat line of ours may be written now: we are an active member, our
        chain here is known complete, and no clock we announced before is ahead of ours
        (a copy of our data from before it, restored: repair brings our clock up). While
        a change we answered is open, a line of ours is void if the change is decided;
        our peer then sends it again."""
        return self.why_not_writable() is None

    def why_not_writable(self) -> str | None:
        """Why a chat line of ours must wait (see may_write), in words for the user; None
        if it need not."""
        me = self.identity.sender_id
        own_offence = self.own_offence()
        if own_offence is not None:
            return own_offence
        refused = self.log.blocked_for(me)
        if refused is not None:
            return f"an earlier entry of ours was refused here ({refused.value}): none can follow it"
        if not self.is_member and self.log.roster.reopening(me):
            return "every member quit the room: it is sent once a majority of them is back and reopens it"
        if not self.is_member:
            return "not an active member of the room: it is sent once a member admits us (on a link to one)"
        if not self.history_checked:
            return "our own entries are being checked with a neighbour: it is sent once they are"
        if self.log.promised_ahead(me):
            return "a clock we announced is ahead of our copy of the room: it is sent once repair catches up"
        return None

    def own_offence(self) -> str | None:
        """What we did that the room expels us for, in words for the user, if our log holds
        proof of it (our own signatures): no member admits us again, ever. It happens to a
        data directory restored from an old copy that wrote before it met the room."""
        me = self.identity.sender_id
        for proof in self.log.proofs:
            if offender_of(proof) == me:
                return (
                    f"this identity {offence(proof)} (was its data directory restored from an "
                    "old copy, and written with before it met the room?): the room expels it "
                    "for good; chat on with a new identity (another --data directory)"
                )
        return None

    def compose(
        self,
        text: str,
        wall_ms: int,
        kind: EntryKind = EntryKind.TEXT,
        *,
        change: Change | None = None,
        flush: Flush | None = None,
    ) -> Message:
        """Our next signed entry (not yet in the log: store it, then :meth:`publish`).

        Raises :class:`~p2pchat.log.NotAMember` before our admission. (A line written
        while a membership change we answered is open is void if the change is decided;
        our peer then sends it again.)
        """
        return self.log.compose(
            self.identity,
            name=self.name,
            text=text,
            sent_at_ms=wall_ms,
            kind=kind,
            change=change,
            flush=flush,
        )

    def write(
        self,
        kind: EntryKind,
        text: str,
        now: float,
        wall_ms: int,
        *,
        change: Change | None = None,
        flush: Flush | None = None,
    ) -> tuple[Message, list[Output]]:
        """Write one entry of ours of any kind (a LEAVE, an AWAY, a CHANGE, a FLUSH)."""
        message = self.compose(text, wall_ms, kind, change=change, flush=flush)
        self._exited = self._exited or kind in (EntryKind.LEAVE, EntryKind.AWAY)
        outputs = self._own_outputs([message], [*self._deliver_own(message)], now)
        if kind is EntryKind.LEAVE:
            self._left, self._leave_seq = True, message.seq
            outputs.extend(self._ask_who_holds_our_leave(now))
        return message, outputs

    @property
    def leave_handed_over(self) -> bool:
        """Whether a neighbour has said (in its heads) that it holds the LEAVE we wrote;
        True if we wrote none. A leaving peer waits for this (see Peer.leave): our LEAVE
        is our last entry, and until someone else holds it, nobody can tell the room we
        left, and the others count us for good (or until they can remove us)."""
        return self._leave_seq is None

    def _ask_who_holds_our_leave(self, now: float) -> list[Output]:
        """Send our LEAVE on every open link now (not after a batching window), then our
        heads asking for theirs: each neighbour answers once it has taken the LEAVE."""
        outputs: list[Output] = []
        for neighbour in self._neighbours.values():
            if neighbour.link.is_open and neighbour.trusted and not neighbour.backlog:
                outputs.extend(self._flush(neighbour, now))
                outputs.append(self._send_heads(neighbour, now, reply_wanted=True))
        return outputs

    def _note_leave_held(self, heads: Sequence[Head]) -> None:
        """A head of ours at or past our LEAVE, from any neighbour: it holds the LEAVE.
        (Heads are not signed: one that says so falsely makes us stop as peers did
        before they waited, nothing worse.)"""
        leave_seq = self._leave_seq
        me = self.identity.sender_id
        if leave_seq is not None and any(h.sender_id == me and h.held_seq >= leave_seq for h in heads):
            self._leave_seq = None

    def publish(self, message: Message, now: float) -> list[Output]:
        """Deliver our own (already stored) message locally and queue it for every neighbour."""
        return self._own_outputs([message], [*self._deliver_own(message)], now)

    def send_text(self, text: str, now: float, wall_ms: int) -> tuple[Message, list[Output]]:
        (message,), outputs = self.send_texts([text], now, wall_ms)
        return message, outputs

    def send_texts(
        self, texts: Iterable[str], now: float, wall_ms: int
    ) -> tuple[list[Message], list[Output]]:
        """Compose and deliver several messages of ours; one batch of outputs for all.

        The shell must store the messages durably before it carries out the outputs.
        """
        messages: list[Message] = []
        events: list[LogEvent] = []
        for text in texts:
            # Each is composed after the previous one is delivered: seq and stamp follow it.
            message = self.compose(text, wall_ms)
            events.extend(self._deliver_own(message))
            messages.append(message)
        return messages, self._own_outputs(messages, events, now)

    def _deliver_own(self, message: Message) -> tuple[LogEvent, ...]:
        receipt = self.log.receive(message, trusted=True, defer_stability=True)  # we signed it
        if receipt.status is not ReceiptStatus.NEW:
            raise RuntimeError(f"own message was not accepted: {receipt}")
        return receipt.events

    def _own_outputs(self, messages: Sequence[Message], events: list[LogEvent], now: float) -> list[Output]:
        events.extend(self.log.advance_stability())
        # Our entry says what we delivered (its vector clock): it supersedes an
        # announcement of ours still waiting for a PUSH.
        me = self.identity.sender_id
        for neighbour in self._neighbours.values():
            neighbour.fresh.pop(me, None)
        return [LogEvents(tuple(events)), *self._queue_push(messages, now, source=None)]

    # Receiving --------------------------------------------------------------------
    def receive(self, conn: int, data: bytes | str, now: float) -> list[Output]:
        """Bytes (or, wrongly, text) arrived on ``conn``."""
        neighbour = self._neighbours.get(conn)
        if neighbour is None:
            return []
        if neighbour.link.is_open:
            opened = self.unseal(conn, data, now)
            return opened if isinstance(opened, list) else self.receive_unsealed(conn, opened, now)
        if not _in_handshake(neighbour):
            return []
        if not self._count_in(neighbour, data, now):
            return self._fail(neighbour, CloseCode.POLICY_VIOLATION, *_RATE_LIMITED)
        try:
            _, reply = neighbour.link.receive(data)
        except ProtocolError as exc:
            return self._fail(neighbour, exc.code, exc.reason)  # (no id proven yet: no ban)
        outputs: list[Output] = []
        if reply is not None:
            outputs.append(self._send_raw(conn, reply))  # our AUTH, sealed by the link
        if neighbour.link.is_open:
            outputs.extend(self._on_open(neighbour, now))
        return outputs

    def unseal(self, conn: int, data: bytes | str, now: float) -> bytes | list[Output]:
        """The plaintext of a sealed frame that arrived on the open link ``conn`` (the
        frame as the neighbour sent it, perhaps deflated), or the outputs that close the
        link if it does not open (or exceeds the rate limit).

        The shell may call this ahead of :meth:`receive_unsealed` (to check signatures
        in another thread), in the order the frames arrived.
        """
        neighbour = self._neighbours.get(conn)
        if neighbour is None or not neighbour.link.is_open:
            return []
        try:
            plaintext = neighbour.link.unseal(data)
        except ProtocolError as exc:
            # No ban: a frame that does not open may come from anyone on the path, not
            # from the neighbour (whose id an on-path attacker could otherwise get banned).
            return self._fail(neighbour, exc.code, exc.reason)
        # Counted once it opened: only the neighbour's own frames can get it banned.
        if not self._count_in(neighbour, data, now):
            return self._fail(neighbour, CloseCode.POLICY_VIOLATION, *_RATE_LIMITED, ban=now)
        return plaintext

    def _inflate(self, neighbour: _Neighbour, plaintext: bytes, now: float) -> bytes | list[Output]:
        """The frame in ``plaintext``, inflated if it came deflated (once: a frame
        deflated twice does not decode), or the outputs that close the link."""
        try:
            frame = inflate_frame(plaintext)
        except CodecError as exc:
            # It opened, so the proven neighbour sent it: refuse its id for a while.
            return self._fail(neighbour, CloseCode.PROTOCOL_ERROR, str(exc), ban=now)
        # The work of a deflated frame is in its inflated size: what the budget counts.
        extra = len(frame) - len(plaintext)
        if extra > 0 and not self._within_budget(neighbour, extra, now):
            return self._fail(neighbour, CloseCode.POLICY_VIOLATION, *_RATE_LIMITED, ban=now)
        return frame

    def receive_unsealed(self, conn: int, plaintext: bytes, now: float) -> list[Output]:
        """Act on a frame opened by :meth:`unseal` (deflated or not, as it was sent)."""
        neighbour = self._neighbours.get(conn)
        if neighbour is None or not neighbour.link.is_open:
            return []
        inflated = self._inflate(neighbour, plaintext, now)
        if isinstance(inflated, list):
            return inflated
        try:
            frame = neighbour.link.parse(inflated)
        except ProtocolError as exc:
            # It opened, so the proven neighbour sent it: refuse its id for a while.
            return self._fail(neighbour, exc.code, exc.reason, ban=now)
        return [*self._on_accepted(neighbour, frame), *self._dispatch(neighbour, frame, now)]

    def _count_in(self, neighbour: _Neighbour, data: bytes | str, now: float) -> bool:
        self.stats.frames_in += 1
        self.stats.bytes_in += len(data)
        return self._within_budget(neighbour, len(data), now)

    @staticmethod
    def _within_budget(neighbour: _Neighbour, size: int, now: float) -> bool:
        frames, octets = neighbour.frame_budget, neighbour.byte_budget
        return (frames is None or frames.take(1, now)) and (octets is None or octets.take(size, now))

    def banned_until(self, sender_id: bytes, now: float) -> float | None:
        """When a ban on ``sender_id`` ends, or None if it is not banned at ``now``."""
        until = self._banned.get(sender_id)
        if until is None or until <= now:
            self._banned.pop(sender_id, None)
            return None
        return until

    def _dispatch(self, neighbour: _Neighbour, frame: Frame, now: float) -> list[Output]:
        match frame:
            case Messages():
                return self._on_messages(neighbour, frame.messages, now)
            case Push():
                return self._on_push(neighbour, frame, now)
            case Graft():
                return self._on_graft(neighbour, frame.ranges, now) if neighbour.trusted else []
            case Heads():
                return self._on_heads(neighbour, frame.heads, frame.reply_wanted, now)
            case Want():
                return self._on_want(neighbour, frame.ranges, now) if neighbour.trusted else []
            case Peers():
                return self._on_peers(frame.urls) if neighbour.trusted else []
            case Bye():
                neighbour.link.close()
                return [Close(neighbour.conn, CloseCode.NORMAL, f"peer said bye: {frame.reason}")]
        return []  # pragma: no cover - Link filters handshake frames

    def _on_open(self, neighbour: _Neighbour, now: float) -> list[Output]:
        remote = neighbour.link.remote
        assert remote is not None
        if remote.sender_id == self.identity.sender_id:
            return self._fail(neighbour, CloseCode.POLICY_VIOLATION, "connected to ourselves")
        if self._left and not neighbour.link.says_leaving:
            # Our AUTH went out before we wrote our LEAVE: the other side, holding it,
            # could take us for a member back and propose our admission again (see
            # _returning). A link opened since says we are leaving (wire.Auth.leaving).
            return self._fail(neighbour, CloseCode.NORMAL, "this peer is on its way out of the room")
        offence = self.offenders.get(remote.sender_id)
        if offence is not None:
            return self._fail(
                neighbour, CloseCode.POLICY_VIOLATION, f"refused: your key {offence}", f"refused: {offence}"
            )
        until = self.banned_until(remote.sender_id, now)
        if until is not None:
            left = f"{until - now:.0f} s more"
            return self._fail(
                neighbour, CloseCode.POLICY_VIOLATION, f"you are banned here for {left}", f"banned for {left}"
            )
        twin = self._twin(neighbour, remote.sender_id)
        if twin is not None:
            # Both ends dialed each other. Both keep the link dialed by the smaller id.
            dialer_of_new = self.identity.sender_id if neighbour.dialed_url else remote.sender_id
            loser = neighbour if dialer_of_new != min(self.identity.sender_id, remote.sender_id) else twin
            outputs = self._fail(loser, CloseCode.NORMAL, "duplicate connection")
            if loser is neighbour:
                return outputs
        else:
            outputs = []
        if self._yields_to(remote.room_id, remote.pristine) or self._follows(
            neighbour, remote.room_id, remote.pristine
        ):
            outputs.extend(self._move_to_room(remote.room_id, keep=neighbour))
        if remote.room_id == self.log.room_id:
            self.provisional_room = False  # settled: a neighbour is in our room
        # The other side of the same rule: a neighbour whose AUTH named its pristine room
        # is moving to ours right now, so it is not refused.
        moving_here = self._yielded_to_by(remote.room_id, remote.pristine)
        refusal = None if moving_here else self._room_refusal(remote.room_id)
        if refusal is not None:
            return [*outputs, *self._fail(neighbour, CloseCode.POLICY_VIOLATION, *refusal)]
        if self.log.room_id is None:
            self.log.adopt_room(remote.room_id)
            outputs.append(RoomAdopted(remote.room_id))
        neighbour.hello_seq = self.log.delivered_seq(remote.sender_id)
        # It answers our heads with what we lack, then its heads: until those come,
        # asking for gaps would only fetch the same messages twice.
        self._syncing[neighbour.conn] = now + self.config.sync_patience
        admission: list[Output] = []
        # (A peer that left stays only until it knows we hold its LEAVE: see wire.Auth.)
        admissible = not remote.leaving
        if admissible and (self.config.admission_delay <= 0 or self._returning(remote.sender_id)):
            # (A member coming back has answered changes before: no need to wait.)
            admission = self._admit(remote.sender_id, remote.name, now)
            outputs.extend(admission)
        elif admissible and self.is_member and not self.log.is_member(remote.sender_id):
            due = now + self.config.admission_delay
            self._admission_due = due if self._admission_due is None else min(self._admission_due, due)
        invited = admissible and remote.invite and self._policy() is RoomPolicy.INVITE
        if invited and not admission and not self.log.is_member(remote.sender_id):
            refused = self._redeem(neighbour, remote.invite, now, outputs)
            if refused is not None:
                return [*outputs, *refused]
        outputs.extend(self._check_trust(neighbour, now))
        said = any(isinstance(output, Send) and output.conn == neighbour.conn for output in outputs)
        if neighbour.link.is_open and not said:
            # We take the link but have nothing for it yet (it waits for its admission):
            # an empty PEERS tells it so, and it reports us up (see _on_accepted).
            outputs.append(self._send(neighbour.conn, encode_frame(Peers(()))))
        return outputs

    def _on_accepted(self, neighbour: _Neighbour, frame: Frame) -> list[Output]:
        """A PeerUp for ``neighbour`` if this frame shows it took the link (see
        ``_Neighbour.reported_up``): any frame of its own after the handshake but a BYE.

        Until then the link is open but not reported: the other end may still refuse it
        (an invite-only room we are no member of, an offender, a ban, a full room), and a
        link refused by either end was never up for the user (its refusal is told as such:
        the close reason, and the dialer's failed dial)."""
        remote = neighbour.link.remote
        if neighbour.reported_up or remote is None or isinstance(frame, Bye):
            return []
        neighbour.reported_up = True
        return [PeerUp(neighbour.conn, remote.sender_id, remote.name, _url_of(neighbour))]

    def _policy(self) -> RoomPolicy | None:
        genesis = self.log.genesis
        return genesis.policy if genesis is not None else None

    def _redeem(
        self, neighbour: _Neighbour, secret: bytes, now: float, outputs: list[Output]
    ) -> list[Output] | None:
        """Admit the neighbour on an invite of ours (outputs appended), or refuse it."""
        remote = neighbour.link.remote
        assert remote is not None
        reason = self.invites.check(secret, self._wall_ms(now))
        if reason is not None:
            return self._fail(
                neighbour,
                CloseCode.POLICY_VIOLATION,
                f"this peer refused your invite: {reason}",
                f"refused its invite: {reason}",
            )
        admission = self._admit(remote.sender_id, remote.name, now, invited=True)
        if not admission:
            # (The invite stays unused: it may be presented again.)
            why = "(not synced, or the room is full)"
            reason = f"this peer cannot admit anyone right now {why}: try again later"
            note = f"its invite is kept for later: we cannot admit anyone right now {why}"
            return self._fail(neighbour, CloseCode.TRY_AGAIN_LATER, reason, note)
        used = self.invites.redeem(secret, remote.sender_id, self._wall_ms(now))
        assert not isinstance(used, str)
        self._invited.add(remote.sender_id)
        outputs.extend([InviteRedeemed(used.secret_hash, remote.sender_id), *admission])
        return None

    def _qualifies(self, neighbour: _Neighbour) -> bool:
        """Whether ``neighbour`` may get entries, heads and addresses from us."""
        remote = neighbour.remote_id
        if remote is None:
            return False
        # Holding nothing of the room (a newcomer before its first sync), we reveal nothing.
        # A member back from AWAY gets the room at once: it may write again only once a
        # change re-admits it, which it may have to relay between members cut off from
        # each other but for it.
        return self.log.genesis is None or self.log.is_member(remote) or self._is_away(remote)

    def _check_trust(self, neighbour: _Neighbour, now: float) -> list[Output]:
        """Trust a neighbour once it qualifies (and open the sync with it); refuse one that
        cannot qualify because we are a member and cannot admit it."""
        if not neighbour.link.is_open:
            return []
        if self._holds_leave_of(neighbour):
            return self._tell_leave_held(neighbour, now)
        if self._qualifies(neighbour):
            if neighbour.trusted:
                return []
            neighbour.trusted = True
            self._learn_address(neighbour)
            # Our proofs go once it holds what it lacks of the history (_offer_evidence).
            return self._open_sync(neighbour, now)
        neighbour.trusted = False
        if self._may_ask(neighbour) and not neighbour.asked:
            # We are not a member (yet, or again): ask it for what we lack. Our log may be
            # too old to know it for the member it is; we learn that from what it sends.
            neighbour.asked = True
            return [self._send_heads(neighbour, now, reply_wanted=True)]
        if self.is_member and len(self.log.members) >= MAX_MEMBERS:
            reason = f"this peer's room is full ({MAX_MEMBERS} members): you are not admitted"
            note = f"not admitted: our room is full ({MAX_MEMBERS} members)"
            return self._fail(neighbour, CloseCode.POLICY_VIOLATION, reason, note)
        invite_only = self._policy() is RoomPolicy.INVITE
        if self.is_member and invite_only and not self._is_away(neighbour.remote_id):
            reason = "this room is invite-only and you are not a member: ask a member for an invite"
            note = "not a member of this invite-only room (only an invite of ours admits it)"
            return self._fail(neighbour, CloseCode.POLICY_VIOLATION, reason, note)
        # (We cannot admit it now: it waits, connected, and gets nothing. A member back
        # from AWAY in an invite-only room waits for its re-admission too.)
        return []

    def _holds_leave_of(self, neighbour: _Neighbour) -> bool:
        """Whether ``neighbour`` is leaving (wire.Auth.leaving) and we hold its LEAVE."""
        remote = neighbour.link.remote
        if remote is None or not remote.leaving:
            return False
        return self._state_of(remote.sender_id) is MemberState.LEFT

    def _tell_leave_held(self, neighbour: _Neighbour, now: float) -> list[Output]:
        """Its head alone tells a leaving neighbour that we hold its LEAVE, once: it
        waits for that to stop (see leave_handed_over). No member now, it gets nothing
        else of the room from us."""
        neighbour.trusted = False
        if neighbour.told_leave_held:
            return []
        neighbour.told_leave_held = True
        remote = neighbour.link.remote
        assert remote is not None
        head = Head(remote.sender_id, self.log.delivered_seq(remote.sender_id))
        return [self._send(neighbour.conn, encode_frame(Heads((head,))))]

    def _learn_address(self, neighbour: _Neighbour) -> None:
        """Keep the listen URL of a neighbour we just trusted, to pass on to the others
        (PEERS) and dial: a member of our room (or one away), or, while we hold nothing
        of the room, one in the room we took. Never that of a neighbour we refused or that
        waits for its admission: a stranger's address would reach every member."""
        remote = neighbour.link.remote
        url = _url_of(neighbour)
        if remote is None or not remote.listen_url or url is None:
            return
        if self.log.genesis is not None or remote.room_id == self.log.room_id:
            self._remember([url])

    def _may_ask(self, neighbour: _Neighbour) -> bool:
        """Whether we may ask ``neighbour`` for entries (our heads with ``reply_wanted``, WANT).

        A trusted one, always. While we are not an active member, also any neighbour of our
        room: a newcomer whose log stopped before the epochs that admitted its neighbours
        would otherwise trust none of them, and never learn that they are members (it tells
        them only what it holds, which it had from the room). What it sends is judged as
        anything else; it gets entries of ours only once trusted.

        A member, too, asks a neighbour of its room that holds entries it lacks: a member
        whose log stopped before the epochs that admitted its neighbours (cut off while
        the room removed it and admitted it again, linked back only to members it did
        not know of) would otherwise never catch up.
        """
        if not neighbour.link.is_open:
            return False
        if neighbour.trusted:
            return True
        if self.log.genesis is None:
            return False
        return not self.is_member or self._holds_more(neighbour)

    def _holds_more(self, neighbour: _Neighbour) -> bool:
        """Whether ``neighbour`` said it holds an entry we have not delivered."""
        delivered = self.log.delivered_seq
        return any(seq > delivered(sender) for sender, seq in neighbour.held.items())

    def _returning(self, member: bytes) -> bool:
        """Whether a neighbour that is not an active member is proposed for admission as
        soon as its link opens: a member that was removed, not one whose LEAVE or AWAY we
        held when its link opened. Such a link may have been dialed just before that
        exit, by a peer now on its way out (a leaving one closes it, see _on_open; one
        that quit closes all its links): it waits ``admission_delay`` as a newcomer
        does. A member that really is back is admitted once its link stayed open that
        long."""
        return self.log.roster.was_member(member) and self._state_of(member) not in _EXITED

    def _is_away(self, member: bytes | None) -> bool:
        """Whether ``member`` went away cleanly (and may be re-admitted without an invite)."""
        return member is not None and self._state_of(member) is MemberState.AWAY

    def _state_of(self, member: bytes) -> MemberState | None:
        """``member``'s state in our room; None if it was never admitted."""
        info = self.log.member_info().get(member)
        return info.state if info is not None else None

    def _open_sync(self, neighbour: _Neighbour, now: float) -> list[Output]:
        """Our heads (asking for what we lack) and the addresses we know, to a neighbour
        just trusted."""
        outputs: list[Output] = [self._send_heads(neighbour, now, reply_wanted=True)]
        own = _url_of(neighbour)
        addresses = [a for a in self._addresses if a != own][:MAX_PEERS]
        if self.listen_url:
            addresses = [self.listen_url, *addresses][:MAX_PEERS]
        if addresses:
            outputs.append(self._send(neighbour.conn, encode_frame(Peers(tuple(addresses)))))
        remote = neighbour.link.remote
        if remote is not None and not remote.room_id and not neighbour.backlog:
            # A newcomer holds nothing: its heads would only say so, a round trip later.
            neighbour.sent_everything = True
            self._owe_missing(neighbour, {})
            neighbour.heads_after_backlog = True
            outputs.extend(self.drain(neighbour.conn, self.config.initial_frames, now))
        return outputs

    def _wall_ms(self, now: float) -> int:
        return max(0, int((now + self.wall_offset) * 1000))

    def _yields_to(self, remote_room: bytes, theirs_pristine: bool) -> bool:
        """Whether we give up our room for the neighbour's.

        A peer started without anyone to join founds a room at once, so that others can
        join it; if it then joins someone else before anything happened in its room, it
        moves. Precisely: a *pristine* room holds nothing but its founder's genesis. We
        yield when ours is pristine and theirs is not, or both are and theirs has the
        smaller id; both ends compute the same, so exactly one of them moves.
        """
        ours = self.log.room_id
        if ours is None or not remote_room or remote_room == ours or not self._pristine():
            return False
        return not theirs_pristine or remote_room < ours

    def _follows(self, neighbour: _Neighbour, remote_room: bytes, theirs_pristine: bool) -> bool:
        """Whether we move to the room of a peer we dialed: our room is only the one we
        used last (``provisional_room``), and the user asked to join that peer.

        Unless that peer gives up its pristine room for ours (:meth:`_yielded_to_by`): it
        cannot know our room is provisional, and if both of us moved, each would sit in
        the other's room, linked to nobody in it. Its room held nothing yet, so the two
        of us end in one room all the same."""
        return (
            self.provisional_room
            and neighbour.dialed_url is not None
            and bool(remote_room)
            and remote_room != self.log.room_id
            and not self._yielded_to_by(remote_room, theirs_pristine)
        )

    def _yielded_to_by(self, remote_room: bytes, theirs_pristine: bool) -> bool:
        """Whether the neighbour gives up its room for ours (:meth:`_yields_to` on its side)."""
        ours = self.log.room_id
        if ours is None or not remote_room or remote_room == ours or not theirs_pristine:
            return False
        return not self._pristine() or ours < remote_room

    def _pristine(self) -> bool:
        genesis = self.log.genesis
        return len(self.log) == 1 and genesis is not None and genesis.sender_id == self.identity.sender_id

    def _move_to_room(self, room_id: bytes, keep: _Neighbour) -> list[Output]:
        """Leave our pristine room for ``room_id``: a fresh log, and other links redone."""
        outputs: list[Output] = []
        for other in list(self._neighbours.values()):
            if other is not keep:
                outputs.extend(self.close(other.conn, f"moved to room {room_id.hex()[:16]}"))
        self.replace_log(OrderedLog(self.log.config, room_id=room_id))
        self.announce_limit = 0  # nothing of the new room is on disk yet
        if self.saved_vector is not None:
            self.saved_vector = {}
        outputs.append(RoomAdopted(room_id))
        return outputs

    def replace_log(self, log: OrderedLog) -> None:
        """Continue with ``log`` (the shell restored the room we just adopted from its store)."""
        if log.room_id != self.log.room_id:
            self._forget_addresses()
        self.log = log
        self.invites = InviteBook()  # (ours were for the room we leave; the shell reloads the new room's)
        self._own_announcement = None
        self.history_checked = log.delivered_seq(self.identity.sender_id) == 0
        self.offenders = {}  # (proofs are per room: the new log's are recalled)
        self._recall_offenders()

    def _forget_addresses(self) -> None:
        """Forget the addresses we learned in the room we leave: passed on in the new one
        (PEERS), they would tell its members whom we knew elsewhere. Not those of our open
        links: the neighbour we move with (see _move_to_room) is in the new room, and
        stays reachable (trusted there, its address is kept again anyway; a log the shell
        restores after the move must not drop it)."""
        linked = {_url_of(n) for n in self._neighbours.values() if n.link.is_open}
        self._addresses = {url: None for url in self._addresses if url in linked}

    def _recall_offenders(self) -> None:
        """Every member our log holds proof against is an offender, with the reason
        :meth:`_expel` gives: a log restored from the store holds the proofs found before
        the restart (see OrderedLog.restore_proofs), so the offender stays refused, never
        admitted, and its removal is proposed at the next heartbeat if still due."""
        for proof in self.log.proofs:
            offender = offender_of(proof)
            if offender != self.identity.sender_id:
                self.offenders.setdefault(offender, offence(proof))

    def _room_refusal(self, remote_room: bytes) -> tuple[str, str] | None:
        """Why a neighbour in room ``remote_room`` (empty: none yet) cannot be served: for
        it, and for us (see :class:`Close`)."""
        ours = self.log.room_id
        if ours is None and not remote_room:
            reason = "neither side is in a room yet: one of them must found one"
            return reason, reason
        if ours is not None and remote_room and remote_room != ours:
            theirs, mine = remote_room.hex()[:16], ours.hex()[:16]
            return f"this peer is in room {mine}, not in your room {theirs}", (
                f"in room {theirs}, not in our room {mine}"
            )
        return None

    def _admit(self, member: bytes, name: str, now: float, *, invited: bool = False) -> list[Output]:
        """Propose to admit a neighbour that is not an active member (rule 10): in an
        open room anyone; in an invite-only room one that redeemed our invite
        (``invited``) or a member back from AWAY. Empty if we cannot propose now (a
        change is open: heartbeats propose again once it is over)."""
        if not self._may_admit(member, invited=invited) or self._unheard(now, self.config.recent_window):
            return []  # (a member that may be gone could never answer: heartbeats handle it)
        return self._propose(((member, name),), frozenset(), now)

    def _may_admit(self, member: bytes, *, invited: bool = False) -> bool:
        genesis = self.log.genesis
        if genesis is None or not self.is_member or not self.history_checked:
            return False  # (a change of ours now could reuse a seq of ours we do not hold yet)
        members = self.log.members
        if member in members or member in self.offenders or len(members) >= MAX_MEMBERS:
            return False
        return genesis.policy is not RoomPolicy.INVITE or invited or self._is_away(member)

    def _propose(
        self,
        admitted: tuple[tuple[bytes, str], ...],
        removed: frozenset[bytes],
        now: float,
        *,
        supersede: bool = False,
    ) -> list[Output]:
        """Write a CHANGE, if one may be written now (see Roster.proposal)."""
        change = self.log.roster.proposal(self.identity.sender_id, admitted, removed, supersede=supersede)
        return self._write_change(change, now) if change is not None else []

    def _write_change(self, change: Change, now: float) -> list[Output]:
        """Write our CHANGE, and the answers it makes due."""
        try:
            message, outputs = self.write(EntryKind.CHANGE, "", now, self._wall_ms(now), change=change)
        except (NotAMember, RuntimeError):
            return []  # our own history is incomplete here: a member who can will propose it
        # (Our CHANGE is our answer: alone in the room, we owe its COMMIT at once.)
        return [OwnEntries((message,)), *outputs, *self._answer_changes(now)]

    def _answer_changes(self, now: float) -> list[Output]:
        """Write the FLUSH and COMMIT we owe open changes (rule 10), if any: our answer may
        complete a change, and then we owe its COMMIT at once."""
        outputs: list[Output] = []
        if self._exited and not self.is_member:
            return []  # (on our way out: a reopening is for members that are back)
        for _ in range(_MOST_ANSWERS_AT_ONCE):
            owed = self.log.roster.owed_answer(self.identity.sender_id) if self.history_checked else None
            if owed is None:
                break
            kind, flush = owed
            try:
                message, written = self.write(kind, "", now, self._wall_ms(now), flush=flush)
            except (NotAMember, RuntimeError):
                break
            outputs += [OwnEntries((message,)), *written]
        return outputs

    def _admit_neighbours(self, now: float) -> list[Output]:
        """Answer an open change, or propose one: admitting every neighbour that is not an
        active member (one whose AWAY arrived after its first heads, say, would otherwise
        wait for its admission for good) and removing every member unheard for
        ``member_timeout``. Then check every neighbour's trust again."""
        outputs: list[Output] = self._answer_changes(now)
        if self.is_member and not outputs:
            outputs.extend(self._propose_changes(now))
        elif not outputs:
            outputs.extend(self._propose_reopening(now))
        for neighbour in list(self._neighbours.values()):
            outputs.extend(self._check_trust(neighbour, now))
        return outputs

    def _propose_changes(self, now: float) -> list[Output]:
        waiting: dict[bytes, str] = {}
        for neighbour in list(self._neighbours.values()):
            remote = neighbour.link.remote
            if not neighbour.link.is_open or remote is None:
                continue
            if self.log.roster.exit_seq(remote.sender_id) > neighbour.hello_seq:
                continue  # it said goodbye on this link: it is on its way out
            if remote.leaving:
                continue  # it left, and stays only until it knows we hold its LEAVE
            young = now - neighbour.opened_at < self.config.admission_delay
            if young and not self._returning(remote.sender_id):
                continue  # (not open long enough yet: see NodeConfig.admission_delay)
            if self._may_admit(remote.sender_id, invited=remote.sender_id in self._invited):
                waiting[remote.sender_id] = remote.name
        # Offenders go at once, whoever holds the proof proposes (rivals sort themselves
        # out, see _gives_way); they are not waited for, heard or not.
        offenders = self.log.members & frozenset(self.offenders)
        timeout = self.config.member_timeout
        silent = self._unheard(now, timeout) - offenders if timeout is not None else frozenset()
        if silent and not offenders:
            # Remove them all at once (a change needs every member it keeps). The first of
            # the members still heard proposes; the others step in if it does not.
            heard = sorted(self.log.members - silent)
            assert timeout is not None
            if heard[0] != self.identity.sender_id and not self._unheard(now, 2 * timeout):
                return []
        elif not silent and self._unheard(now, self.config.recent_window) - offenders:
            return []  # someone may be gone: wait until it is back, or long enough unheard
        removed = silent | offenders
        if not waiting and not removed:
            return []
        if self._gives_way(now):
            return []
        return self._propose(tuple(sorted(waiting.items())), removed, now, supersede=self._stuck_on(removed))

    def _propose_reopening(self, now: float) -> list[Output]:
        """Every member exited the room while we were away (they quit at the same moment,
        say): propose to reopen it, admitting us and the members away on a link to us,
        once we are a strict majority of those that did not leave (rule 10, see
        p2pchat.membership); the others away are removed, and admitted again when back."""
        roster = self.log.roster
        me = self.identity.sender_id
        if self._exited or not self.history_checked or not roster.reopening(me) or self._gives_way(now):
            return []
        back = {me: self.name}
        for neighbour in self._neighbours.values():
            remote = neighbour.link.remote
            linked = neighbour.link.is_open and neighbour.trusted
            if linked and remote is not None and roster.reopening(remote.sender_id):
                back[remote.sender_id] = remote.name
        change = roster.reopening_change(me, back)
        return self._write_change(change, now) if change is not None else []

    def _gives_way(self, now: float) -> bool:
        """Whether we leave the next proposal to another member for now: after rival
        changes killed a round, the author of the first of them proposes again at once;
        the others wait ``rival_backoff`` (it may be gone)."""
        roster = self.log.roster
        first = roster.first_proposer_after_rivals()
        if first is None or first == self.identity.sender_id:
            return False
        if first not in roster.active() and not roster.reopening(first):
            return False
        round_ = (roster.current.number, roster.next_round())
        since = self._rivals_seen.setdefault(round_, now)
        return now - since < self.config.rival_backoff

    def _stuck_on(self, gone: frozenset[bytes]) -> bool:
        """Whether every open change waits for an answer from one of ``gone``: a change
        removing them may then supersede it, in a later round (rule 10)."""
        proposals = self.log.roster.open_proposals()
        return bool(proposals) and all(self.log.roster.waiting_on(p) & gone for p in proposals)

    def propose_removal(self, members: Iterable[bytes], now: float) -> list[Output]:
        """Propose to remove ``members`` (``/remove``). Raises ValueError with the reason
        when no such change can be proposed now."""
        removed = frozenset(members)
        me = self.identity.sender_id
        if not self.is_member:
            raise ValueError("only an active member can propose a removal")
        if me in removed:
            raise ValueError("to leave, use /leave")
        if not removed <= self.log.members:
            raise ValueError("not an active member of the room")
        supersede = self._stuck_on(removed)
        if self.log.roster.open_proposals() and not supersede:
            raise ValueError("a membership change is being decided: try again when it is over")
        if not self.log.roster.could_decide(removed):
            raise ValueError("a removal needs the answers of a strict majority of the members")
        outputs = self._propose((), removed, now, supersede=supersede)
        if not outputs:
            raise ValueError("cannot write now (our own history is not complete here yet)")
        return outputs

    def _unheard(self, now: float, window: float) -> frozenset[bytes]:
        """Active members other than us not heard from for ``window`` seconds.

        Only a member's own signed words count: a new entry, or a newer liveness beat
        in its announcement (relayed or not). A member never heard from since we first
        saw it counts from then for removal (``member_timeout``), but as unheard for a
        new change (a link that opened and died cannot answer one).
        """
        unheard = set()
        for member, (_, _, first_seen, heard) in self._hear(now).items():
            since = heard if heard is not None else first_seen
            if heard is None and window < (self.config.member_timeout or math.inf):
                unheard.add(member)  # (never heard: no change may wait for its answer)
            elif now - since >= window:
                unheard.add(member)
        return frozenset(unheard)

    def last_heard(self, now: float) -> dict[bytes, float | None]:
        """Per active member other than us, how many seconds ago we last heard from it
        (its own signed words, see _unheard); None if not since we first saw it."""
        return {
            member: None if heard is None else now - heard
            for member, (_, _, _, heard) in self._hear(now).items()
        }

    def _hear(self, now: float) -> dict[bytes, tuple[int, int, float, float | None]]:
        """Bring ``_heard`` up to date for every active member other than us: (its
        delivered seq, its newest beat, when we first saw it, when either last grew)."""
        me = self.identity.sender_id
        heard = {}
        for member in self.log.members:
            if member == me:
                continue
            mark = (self.log.delivered_seq(member), self.log.last_beat(member))
            seen = self._heard.get(member)
            if seen is None:
                seen = (*mark, now, None)
            elif seen[:2] != mark:
                seen = (*mark, seen[2], now)
            self._heard[member] = heard[member] = seen
        if len(self._heard) > len(heard):
            # Not members now (removed, left): a member admitted again is counted from
            # its admission, not from what we heard of it before it was removed.
            self._heard = heard
        return heard

    def _twin(self, neighbour: _Neighbour, remote_id: bytes) -> _Neighbour | None:
        for other in self._neighbours.values():
            if other is not neighbour and other.link.is_open and other.remote_id == remote_id:
                return other
        return None

    def _on_messages(
        self, neighbour: _Neighbour, messages: Iterable[Message], now: float, *, pushed: bool = False
    ) -> list[Output]:
        events: list[LogEvent] = []
        fresh: list[Message] = []
        redundant: dict[bytes, None] = {}
        evidence: list[Equivocation] = []
        forged: Message | None = None
        messages = tuple(messages)
        # One signature per author's run, the rest by hash links (see p2pchat.chain).
        room_id = self.log.room_id
        if room_id is None:
            authentic = [False] * len(messages)  # (the log takes nothing yet anyway)
        else:
            authentic = authenticate(messages, room_id, self.log.get)
        for message, trusted in zip(messages, authentic, strict=True):
            self.stats.messages_in += 1
            receipt = self.log.receive(message, trusted=trusted, defer_stability=True)
            if receipt.events:
                events.extend(receipt.events)
                # (A version that takes the place of a refused one is news, and a proof.)
                evidence.extend(e for e in receipt.events if isinstance(e, Equivocation))
            _note_held(neighbour.held, message.sender_id, message.seq, message.seq)
            if receipt.status is ReceiptStatus.NEW:
                fresh.append(message)
                self._announced.pop(message.id, None)
                if pushed:
                    self._note_pushed_first(message.id, neighbour.conn)
                    self._parents[message.sender_id] = neighbour.conn
            elif receipt.status is ReceiptStatus.DUPLICATE:
                self.stats.duplicates_in += 1
                if pushed and self._tree_brought(message, besides=neighbour):
                    redundant[message.sender_id] = None
            elif receipt.status is ReceiptStatus.REFUSED:
                self.stats.refused += 1
                if any(isinstance(e, Refused) and e.reason is Refusal.BAD_SIGNATURE for e in receipt.events):
                    forged = message
                    break
        if fresh and self.is_member:
            events.extend(self._announce_soon(now))
        events.extend(self.log.advance_stability())
        if forged is not None:
            # Honest peers verify before relaying: a bad signature is the neighbour's fault.
            # What it sent before that is genuine and still goes on to the others.
            entry = f"{short_id(forged.sender_id)}#{forged.seq}"
            reason = f"you relayed an entry with a bad signature ({entry})"
            note = f"relayed an entry with a bad signature ({forged!r})"
            outputs: list[Output] = [LogEvents(tuple(events))] if events else []
            outputs.extend(self._queue_push(fresh, now, source=neighbour))
            return [*outputs, *self._fail(neighbour, CloseCode.POLICY_VIOLATION, reason, note, ban=now)]
        if neighbour.conn in self._syncing:
            self._syncing[neighbour.conn] = now + self.config.sync_patience  # progress
        outputs = [LogEvents(tuple(events))] if events else []
        outputs.extend(self._queue_push(fresh, now, source=neighbour))
        self._prune(neighbour, redundant, now)
        for proof in evidence:
            outputs.extend(self._spread_evidence(proof, now))
            outputs.extend(self._expel(proof.kept.sender_id, offence(proof), now))
        outputs.extend(self._ask_for_versions(neighbour, self._versions_lacking(events)))
        outputs.extend(self._act_on_lies(events, now))
        outputs.extend(self._remind_of_evidence(events, now))
        outputs.extend(self._request_gaps(now, neighbour))
        if any(isinstance(e, (Delivered, Entombed)) and e.message.kind is not EntryKind.TEXT for e in events):
            # (An answer may complete or kill a change; the votes of a reopening are tombstones.)
            outputs.extend(self._answer_changes(now))
        if any(isinstance(e, Decided) for e in events):
            # A new epoch: admit whoever is still waiting, and trust who was admitted.
            outputs.extend(self._admit_neighbours(now))
        return outputs

    def _versions_lacking(self, events: Iterable[LogEvent]) -> Iterator[MessageId]:
        """The entries whose other version ``events`` show we lack, from the neighbour
        that brought them (see OrderedLog.missing_version).

        An entry whose link names another predecessor than ours: that neighbour (or the
        one it chained from) holds the other version, the proof, and, if the author goes
        on from there, what we judge its entry from. So does an entry a member's cover
        named in another version than ours (see OrderedLog.take_named_versions). And a
        version that came may be one
        the author's chain here goes on from, with more below it that we lack: asked for
        at once, not at the next heads."""
        for event in events:
            missing = None
            if isinstance(event, Refused) and event.reason is Refusal.BROKEN_CHAIN:
                missing = self.log.missing_version(event.message)
            elif isinstance(event, Equivocation):
                missing = self.log.missing_version_for(event.kept.sender_id)
            if missing is not None:
                yield missing
        # And the entries a member's cover (its entry or announcement, relayed by this
        # neighbour) named in a version we do not hold: the neighbour most likely holds it.
        yield from self.log.take_named_versions()

    def _spread_evidence(self, proof: Equivocation, now: float) -> list[Output]:
        """Tell every neighbour, once, that an author signed two versions of one seq.

        Both versions go to each neighbour (the one that sent us one of them too: it
        holds the other as a duplicate; after OrderedLog._replace_held, the version it
        sent is the one we kept): whichever it holds, the other one is its evidence too.
        So the evidence reaches every peer, however the two versions were spread.
        """
        message_id = proof.kept.id
        if message_id in self._evidence_spread:
            return []
        self._evidence_spread.add(message_id)
        outputs: list[Output] = []
        for neighbour in self._neighbours.values():
            if not neighbour.link.is_open:
                continue
            neighbour.push.extend([proof.kept, proof.rejected])
            neighbour.evidence_sent.add(proof.kept.sender_id)
            outputs.extend(self._flush(neighbour, now))
        return outputs

    def _offer_evidence(self, neighbour: _Neighbour, now: float, *, held_only: bool = False) -> list[Output]:
        """Our proof against each offender, once per link, to a neighbour we trust:
        :meth:`_spread_evidence` reached only the links open when the proof came, so a
        peer that connects later (or after a restart of ours: the store keeps the proofs)
        gets it this way. For an equivocator, both versions of its entry (a neighbour
        that holds the proof already refuses the second version, as a duplicate proof,
        and does nothing more); for a broken clock promise, the entry that broke it (our
        heads carry the promise).

        Offered once the neighbour holds what it lacked of the history: at the end of
        the sync's transfer (:meth:`drain`), or, with ``held_only``, at its heads once
        they say it holds a version of the entry (no sync of ours to it is under way:
        it did not ask us for one, having trusted us before we trusted it). Sent
        before, the version we do not show could be the first of that entry to reach
        a peer coming back, and be delivered there: the one we show can depend on
        entries of the history not there yet, and a version that can be delivered
        takes the place of one that waits (OrderedLog._gives_way). Such a peer
        answered no removal of the liar, so nothing would void that version there: it
        would keep it where the room shows the other."""
        offered = False
        for proof in first_per_offender(self.log.proofs):
            offender = offender_of(proof)
            if offender in neighbour.evidence_sent or offender == neighbour.remote_id:
                continue
            if held_only and neighbour.held.get(offender, 0) < proven_entry(proof).seq:
                continue
            neighbour.evidence_sent.add(offender)
            if isinstance(proof, Equivocation):
                neighbour.push.extend([proof.kept, proof.rejected])
            else:
                neighbour.push.append(proof.message)
            offered = True
        return self._flush(neighbour, now) if offered else []

    def _remind_of_evidence(self, events: Iterable[LogEvent], now: float) -> list[Output]:
        """A member proposes to admit a member we hold proof against: the proof has not
        reached it (a member that holds one never proposes that). We pass ours on again
        to every neighbour, toward it: where the proof went once per link, one frame
        lost, or a link closed as it went, and that part of the room would admit the
        offender again after every removal, a change after a change, for good."""
        if not self.offenders:
            return []  # (the common case: no need to look at every event)
        admitted = {
            member
            for event in events
            if isinstance(event, Delivered) and event.message.change is not None
            for member, _ in event.message.change.admitted
            if member in self.offenders
        }
        outputs: list[Output] = []
        if not admitted:
            return outputs
        for neighbour in self._neighbours.values():
            if neighbour.link.is_open and neighbour.trusted:
                neighbour.evidence_sent.difference_update(admitted)
                outputs.extend(self._offer_evidence(neighbour, now))
        return outputs

    def _act_on_lies(self, events: Iterable[LogEvent], now: float) -> list[Output]:
        """Expel each member the log caught breaking a clock promise, and pass the proof
        on: the entry stamped below the promise goes to every neighbour at once, and the
        promise rides in our heads from now on (in place of the liar's latest
        announcement, see OrderedLog.heads), so a neighbour finds the lie in turn."""
        outputs: list[Output] = []
        for lie in (e for e in events if isinstance(e, ClockLie)):
            message = lie.message
            for neighbour in self._neighbours.values():
                if neighbour.link.is_open and neighbour.trusted:
                    neighbour.push.append(message)
                    outputs.extend(self._flush(neighbour, now))
            outputs.extend(self._expel(message.sender_id, offence(lie), now))
        return outputs

    def _expel(self, offender: bytes, what: str, now: float) -> list[Output]:
        """Act on proof that ``offender`` signed two versions of one entry, or broke a
        promise about its clock: it is no neighbour of ours any more, and we propose to
        remove it from the room.

        The proof is two entries (or an entry and an announcement), each signed by the
        offender: no replica can be talked into it, and every replica gets it (it is
        passed on). So every honest member that holds it proposes the removal, none
        proposes the offender's admission again, and the removal is decided the way
        any change is (rule 10). While the change is open, the offender cannot hold it
        up: the change does not wait for the answer of a member it removes, and it
        supersedes a change stuck on the offender.
        """
        if offender == self.identity.sender_id or offender in self.offenders:
            return []
        self.offenders[offender] = what
        outputs: list[Output] = []
        for neighbour in list(self._neighbours.values()):
            if neighbour.remote_id == offender and neighbour.link.is_open:
                outputs.extend(
                    self._fail(neighbour, CloseCode.POLICY_VIOLATION, f"expelled: your key {what}", what)
                )
        if self.is_member and offender in self.log.members:
            outputs.extend(self._propose_changes(now))
        return outputs

    def _on_heads(
        self, neighbour: _Neighbour, heads: Iterable[Head], reply_wanted: bool, now: float
    ) -> list[Output]:
        heads = tuple(heads)
        first = not neighbour.heads_seen
        if first:
            # Its first heads open the sync (they ask for what it lacks).
            neighbour.heads_seen = True
            # (Raised, never lowered: a peer restored from an old copy of its data names
            # less of its own chain than we hold, its AWAY included, and is back, not
            # quitting on this link.)
            own = (h.held_seq for h in heads if h.sender_id == neighbour.remote_id)
            neighbour.hello_seq = max([neighbour.hello_seq, *own])
        else:
            self._syncing.pop(neighbour.conn, None)  # its transfer to us is complete
            self.history_checked = True
        reported: dict[bytes, int] = {}
        outputs = self._learn_from_heads(heads, neighbour, now)
        self._note_digests(neighbour, heads, now)
        for head in heads:
            reported[head.sender_id] = head.held_seq
            if head.held_seq > neighbour.held.get(head.sender_id, 0):
                neighbour.held[head.sender_id] = head.held_seq
        already_sent = first and neighbour.sent_everything  # (what came since went by push)
        if reply_wanted and neighbour.trusted and not neighbour.backlog and not already_sent:
            # (A request while a transfer is under way is answered by that transfer.)
            self._owe_missing(neighbour, reported)
            neighbour.heads_after_backlog = True
            outputs.extend(self.drain(neighbour.conn, self.config.initial_frames, now))
        elif self.offenders and neighbour.trusted and not neighbour.heads_after_backlog:
            outputs.extend(self._offer_evidence(neighbour, now, held_only=True))
        outputs.extend(self._request_gaps(now, neighbour))
        return outputs

    def _note_digests(self, neighbour: _Neighbour, heads: Sequence[Head], now: float) -> None:
        """Which announcements ``neighbour``'s heads say it holds (see ``_lean_head``)."""
        digests, shared, log = neighbour.digests, neighbour.shared, self.log
        for head in heads:
            member, digest = head.sender_id, head.digest
            if digest:
                digests[member] = digest
            else:
                digests.pop(member, None)
            ours = log.announcement_of(member)
            carried = ours is not None and shared.get(member) == ours.signature
            if digest == NO_ANNOUNCEMENT:
                lacking = ours is not None  # (it had no use for the one the link carried)
            elif carried:
                lacking = False  # (a digest of an older one left before ours reached it)
            else:
                # No digest: it holds the one the link carried, if any.
                reported = digest or shared.get(member, b"")[:DIGEST_SIZE]
                lacking = self._is_behind(member, reported, now)
            if lacking:
                neighbour.behind.add(member)
                shared.pop(member, None)
                continue
            neighbour.behind.discard(member)
            if digest and ours is not None and not carried and ours.signature[:DIGEST_SIZE] == digest:
                shared[member] = ours.signature
                neighbour.echo.add(member)  # (it cannot tell we hold it too otherwise)

    def _is_behind(self, member: bytes, digest: bytes, now: float) -> bool:
        """Whether a neighbour whose heads, come ``now``, name ``member``'s announcement
        by ``digest`` lacks the one we held ``announcement_grace`` ago, or a later one:
        long enough for the member's tree to have brought it (a member announces about
        every second, so the newest alone would never have had the time).

        A digest we never spread may name a later announcement than ours (one that
        rode on another neighbour's push) or an older one: the neighbour is behind if
        ours had the time to reach it. (If it held a later one, it gives us that next.)"""
        settled = now - self.config.announcement_grace
        spread = self._spread.get(member)
        if not spread:
            ours = self.log.announcement_of(member)
            return ours is not None and ours.signature[:DIGEST_SIZE] != digest
        for index in range(len(spread) - 1, -1, -1):
            if spread[index][0] == digest:
                # Behind if a later one than what it holds had the time to reach it.
                return index < len(spread) - 1 and spread[index + 1][1] <= settled
        return spread[-1][1] <= settled

    def _owe_missing(self, neighbour: _Neighbour, reported: dict[bytes, int]) -> None:
        """Anti-entropy: owe the neighbour everything its own heads say it lacks, but
        what we sent it on this link already.

        Its heads may have left it before our last pushes reached it (in a burst, a few
        thousand entries can be on their way): those are not owed again. A link delivers
        every frame in order or closes, and a new link syncs from the start; an entry
        the neighbour could not take (too far ahead, or its buffer full) it asks for
        again once heads show it the gap (WANT), as it would any other.
        """
        missing: list[Message] = []
        for head in self.log.heads():
            theirs = max(reported.get(head.sender_id, 0), neighbour.held.get(head.sender_id, 0))
            if head.held_seq > theirs:
                missing.extend(self.log.messages_between(head.sender_id, theirs + 1, head.held_seq))
        # In log order, which is causal: the receiver can deliver each one on arrival
        # instead of holding whole chains until their dependencies come.
        missing.sort(key=_log_order)
        neighbour.backlog.extend(missing)

    def drain(self, conn: int, frames: int, now: float) -> list[Output]:
        """Up to ``frames`` MESSAGES frames of what we owe ``conn``, then our heads once
        all of it is out. The shell calls this whenever its send queue has room."""
        neighbour = self._neighbours.get(conn)
        if neighbour is None or not neighbour.link.is_open or not neighbour.trusted:
            return []
        backlog = neighbour.backlog
        outputs: list[Output] = []
        while backlog and len(outputs) < frames:
            batch = _take_batch(backlog, self.config.max_batch)
            for message in batch:
                _note_held(neighbour.held, message.sender_id, message.seq, message.seq)
            outputs.append(self._send(conn, encode_frame(Messages(tuple(batch)))))
        if not backlog and neighbour.heads_after_backlog:
            neighbour.heads_after_backlog = False
            outputs.extend(self._offer_evidence(neighbour, now))
            outputs.append(self._send_heads(neighbour, now, reply_wanted=False))
        return outputs

    def backlog(self, conn: int) -> int:
        """Messages still owed to ``conn``."""
        neighbour = self._neighbours.get(conn)
        return len(neighbour.backlog) if neighbour is not None else 0

    def drain_all(self, now: float) -> list[Output]:
        """Everything owed to everyone (for a network with unbounded buffers: the simulator)."""
        # (Only neighbours owed something: this runs after every event in the simulator.)
        owed = [c for c, n in self._neighbours.items() if n.backlog or n.heads_after_backlog]
        return [o for conn in owed for o in self.drain(conn, 1 << 30, now)]

    def _on_want(self, neighbour: _Neighbour, ranges: Iterable[WantRange], now: float) -> list[Output]:
        # max_want_span bounds the whole frame, not each range: a frame of 4096 ranges must
        # not cost 4096 times the span (heads can make any seq look held, so the cost is
        # the span asked for, not what we hold).
        found: list[Message] = []
        budget = self.config.max_want_span
        for wanted in ranges:
            if budget <= 0:
                break
            last = min(wanted.last, wanted.first + budget - 1)
            budget -= last - wanted.first + 1
            found.extend(self.log.messages_between(wanted.sender_id, wanted.first, last))
        found.sort(key=_log_order)
        neighbour.backlog.extend(found)
        return self.drain(neighbour.conn, self.config.initial_frames, now)

    def _on_peers(self, urls: Iterable[str]) -> list[Output]:
        new = self._remember(urls)
        return [Discovered(tuple(new))] if new else []

    def _remember(self, urls: Iterable[str]) -> list[str]:
        new = []
        for url in urls:
            if url == self.listen_url or url in self._addresses or not _announceable(url):
                continue
            if len(self._addresses) >= self.config.max_known_addresses:
                break
            self._addresses[url] = None
            new.append(url)
        return new

    # Time -------------------------------------------------------------------------
    def tick(self, now: float, rng: Rng) -> list[Output]:
        """Run everything that is due at ``now``."""
        outputs: list[Output] = []
        for neighbour in list(self._neighbours.values()):
            dues = (neighbour.push_due, neighbour.lazy_due)
            if any(due is not None and due <= now for due in dues):
                outputs.extend(self._flush(neighbour, now))
            if _in_handshake(neighbour) and now - neighbour.opened_at >= self.config.handshake_timeout:
                outputs.extend(self._fail(neighbour, CloseCode.POLICY_VIOLATION, "handshake timed out"))
        if now >= self._next_heartbeat:
            self._next_heartbeat = now + self.config.heartbeat_interval
            outputs.extend(self._heartbeat(now))
        elif self._admission_due is not None and now >= self._admission_due:
            self._admission_due = None
            outputs.extend(self._admit_neighbours(now))
        open_neighbours = [n for n in self._neighbours.values() if self._may_ask(n)]
        if now >= self._next_anti_entropy:
            self._next_anti_entropy = now + self.config.anti_entropy_interval
            if open_neighbours:
                outputs.append(self._send_heads(rng.choice(open_neighbours), now, reply_wanted=True))
        if self._next_want_check is not None and now >= self._next_want_check:
            if open_neighbours:
                outputs.extend(self._request_gaps(now, rng.choice(open_neighbours)))
            else:  # (nobody to ask: again later, not at once, over and over)
                self._next_want_check = now + self.config.want_timeout
        if self._next_graft_check is not None and now >= self._next_graft_check:
            outputs.extend(self._graft_due(now))
        if now >= self._next_rediscovery:
            self._next_rediscovery = now + self.config.keepalive_interval
            outputs.extend(self._rediscover(now))
        return outputs

    def _rediscover(self, now: float) -> list[Output]:
        """When no link of ours leads to an active member, the addresses we know of
        active members, again: the shell dials them while it has fewer links than it
        wants. Otherwise members whose links all lead through peers that are no members
        (removed, or waiting to be admitted again: they relay nothing) would stay apart
        for good, each side's changes waiting on answers from the other. The same holds
        for members linked to each other and otherwise only through such peers: so while
        linked to members, the addresses of those we have not heard from for
        ``recent_window`` and have no link to.

        Those links count toward the shell's target, though: two groups of members,
        each at its target within itself and through such peers, never dial across. So
        one of the members cut off from us (see _cut_off), each of them in turn, is
        offered beyond the target as well."""
        connected = {n.remote_id for n in self._neighbours.values() if n.link.is_open}
        members = self.log.members - {self.identity.sender_id}
        linked = bool(connected & members)
        if linked:
            # (Linked to the room: gossip reaches everyone heard from, PEERS brings news.)
            members = self._unheard(now, self.config.recent_window)
        urls = self._addresses_of(members - connected)
        outputs: list[Output] = []
        far = self._addresses_of(self._cut_off(now, linked) - connected)
        if far:
            # (Our id sets where we start, so members of one group pick different ones;
            # the next round picks the next one, so a dead one is not picked for good.)
            url = far[(self._rediscoveries + 1 + self.identity.sender_id[0]) % len(far)]
            outputs.append(Discovered((url,), beyond_target=True))
            urls = [other for other in urls if other != url]
        if urls:
            # In turn, from round to round: the shell dials them in this order until it
            # has the links it wants, and with one link wanted, a dead address listed
            # first would otherwise take the only slot in every round.
            start = self._rediscoveries % len(urls)
            outputs.append(Discovered((*urls[start:], *urls[:start])))
        self._rediscoveries += 1
        return outputs

    def _addresses_of(self, members: frozenset[bytes]) -> list[str]:
        """The addresses we know of ``members``, in the order we learned them."""
        return [url for url in self._addresses if split_peer_url(url)[1] in members]

    def _cut_off(self, now: float, linked: bool) -> frozenset[bytes]:
        """Members of our room we may be cut off from: while we are one, those unheard
        for ``member_timeout`` (``recent_window`` if members are never removed), as long
        as we hear some member or none of our links leads to one. A member linked to
        members it hears none of is the one behind (they took it for removed, say): it
        catches up over those links (see _may_ask), and dialing more members would only
        give it more links that carry nothing."""
        if not self.is_member:
            return frozenset()  # (a newcomer, or one removed: the room admits it over its links)
        timeout = self.config.member_timeout
        unheard = self._unheard(now, self.config.recent_window if timeout is None else timeout)
        if linked and not self.log.members - unheard - {self.identity.sender_id}:
            return frozenset()
        return unheard

    def next_deadline(self) -> float:
        """When :meth:`tick` next has something to do."""
        deadlines = [self._next_heartbeat, self._next_anti_entropy]
        if self._admission_due is not None:
            deadlines.append(self._admission_due)
        if self._next_want_check is not None:
            deadlines.append(self._next_want_check)
        if self._next_graft_check is not None:
            deadlines.append(self._next_graft_check)
        for neighbour in self._neighbours.values():
            if neighbour.push_due is not None:
                deadlines.append(neighbour.push_due)
            if neighbour.lazy_due is not None:
                deadlines.append(neighbour.lazy_due)
            if _in_handshake(neighbour):
                deadlines.append(neighbour.opened_at + self.config.handshake_timeout)
        return min(deadlines)

    def _heartbeat(self, now: float) -> list[Output]:
        if now - self._beat_at >= self._beat_interval() - self.config.heartbeat_interval / 2:
            self._beat_at, self._beat_ms = now, self._wall_ms(now)
        outputs: list[Output] = self._admit_neighbours(now)
        events = self.log.observe_head(self._own_head())
        if events:
            outputs.append(LogEvents(tuple(events)))
        heads = tuple(self._heads())
        for neighbour in self._neighbours.values():
            if not neighbour.link.is_open or not neighbour.trusted or neighbour.backlog:
                continue  # (heads follow a transfer only once it is complete)
            stale = now - neighbour.heads_sent_at >= self.config.keepalive_interval
            if heads != neighbour.heads_sent or stale:
                outputs.append(self._send_heads(neighbour, now, reply_wanted=False, heads=heads))
        return outputs

    def _beat_interval(self) -> float:
        """How often we say we are alive (a new beat: our announcement signed again, and
        spread to every member). Every heartbeat in a room of up to ``announce_load``
        members; in a larger one no more often than the room can take (every member
        verifies every beat) and no less often than a quarter of ``member_timeout``."""
        config = self.config
        interval = max(config.heartbeat_interval, len(self.log.members) / config.announce_load)
        return min(interval, config.member_timeout / 4) if config.member_timeout else interval

    # Helpers ----------------------------------------------------------------------
    def _own_head(self) -> Head:
        """Our fresh clock announcement: after our last message our clock is log.clock,
        and what we delivered since (rule 8). Every later message of ours is stamped
        above it. While what we hold is not all on disk yet (``announce_limit``,
        ``saved_vector``), we announce no more than is.
        """
        me = self.identity.sender_id
        seq = self.log.delivered_seq(me)
        clock = self.log.clock if self.announce_limit is None else min(self.log.clock, self.announce_limit)
        grown = tuple(sorted(self.log.delivered_since_own(me, self.saved_vector).items()))
        beat = self._beat_ms
        room = self.log.room_id or b""
        said = (room, seq, clock, grown, beat)
        cached = self._own_announcement
        if cached is None or cached[0] != said:
            link = self.log.link_of(me, seq)
            named = dict(grown)
            head = Head.announce(
                self.identity,
                seq,
                seq,
                clock,
                named,
                beat,
                room_id=room,
                link=link,
                delivered_links=self.log.links_of(named),
            )
            cached = self._own_announcement = (said, head)
        return cached[1]

    def _heads(self) -> list[Head]:
        own = self._own_head()
        return [own, *(h for h in self.log.heads() if h.sender_id != own.sender_id)]

    def _send_heads(
        self,
        neighbour: _Neighbour,
        now: float,
        *,
        reply_wanted: bool,
        heads: tuple[Head, ...] | None = None,
    ) -> Send:
        heads = heads if heads is not None else tuple(self._heads())
        neighbour.heads_sent = heads
        neighbour.heads_sent_at = now
        sent = self._heads_for(neighbour, heads, now)
        return self._send(neighbour.conn, encode_frame(Heads(sent, reply_wanted)))

    def _heads_for(self, neighbour: _Neighbour, heads: tuple[Head, ...], now: float) -> tuple[Head, ...]:
        """``heads`` as they go to ``neighbour`` (see ``_lean_head``): an announcement the
        link has carried already goes as the bare head (sender and held seq). In a busy
        room most of them have: the fresh ones ride on the PUSH frames. The links go once
        per ``keepalive_interval`` (the first heads on a link have them: peers that meet
        compare the versions they hold at once, and again every interval)."""
        with_links = now - neighbour.links_sent_at >= self.config.keepalive_interval
        if with_links:
            neighbour.links_sent_at = now
        return tuple(self._lean_head(neighbour, head, now, with_links) for head in heads)

    def _lean_head(self, neighbour: _Neighbour, head: Head, now: float, with_link: bool) -> Head:
        """``head`` without its announcement if the link carried it (and without its link
        unless ``with_link``).

        Nor, on a link that pushes its member's messages lazily, while the member's tree
        may still bring the announcement to the neighbour: there the head names it by its
        digest, and the announcement goes whole only once the neighbour's heads, sent
        after ``announcement_grace``, name another one (or none). Otherwise every fresh
        announcement would cross every link of the room once (a flood), not each peer
        about once along the tree: in a busy room of 50 members, four times the
        announcement bytes and parsing of the tree alone.

        A head of a member whose announcement we do not hold, though the link carried
        one (we had no use for it when it came: a member we had not admitted yet, an
        announcement ahead of what we held), says so once (NO_ANNOUNCEMENT): the
        neighbour gives it again (see ``_note_digests``).
        """
        member, signature = head.sender_id, head.signature
        link = head.link if with_link else b""
        if not signature:
            if neighbour.shared.pop(member, None) is None:
                return Head(member, head.held_seq, link=link)
            return Head(member, head.held_seq, link=link, digest=NO_ANNOUNCEMENT)
        digest = signature[:DIGEST_SIZE]
        if neighbour.shared.get(member) == signature:
            if member in neighbour.echo:
                neighbour.echo.discard(member)
                return Head(member, head.held_seq, link=link, digest=digest)
            return Head(member, head.held_seq, link=link)
        if member in neighbour.lazy and member not in neighbour.behind:
            if neighbour.digests.get(member) == digest:
                neighbour.shared[member] = signature  # it holds it; tell it we do
            return Head(member, head.held_seq, link=link, digest=digest)
        neighbour.behind.discard(member)
        neighbour.shared[member] = signature
        if head.link == link:
            return head
        return Head(
            head.sender_id,
            head.held_seq,
            head.clock_seq,
            head.clock_lamport,
            head.signature,
            head.delivered,
            head.at_ms,
            link,
            b"",
            head.seen,
        )

    def _queue_push(self, messages: Sequence[Message], now: float, source: _Neighbour | None) -> list[Output]:
        if not messages:
            return []
        outputs: list[Output] = []
        for neighbour in self._neighbours.values():
            if neighbour is source or not neighbour.link.is_open or not neighbour.trusted:
                continue
            for message in messages:
                if neighbour.held.get(message.sender_id, 0) < message.seq:
                    if message.sender_id in neighbour.lazy:
                        neighbour.announce.append(message.id)
                    else:
                        neighbour.push.append(message)
            if neighbour.announce and neighbour.lazy_due is None:
                neighbour.lazy_due = now + self.config.lazy_window
            if not neighbour.push:
                continue
            # Adaptive batching: a link that sent nothing for a whole window sends
            # almost at once (after batch_gather of the window: little added latency in
            # a quiet room); a busy one waits out the window so that a burst rides in
            # one frame.
            idle = now - neighbour.last_flush >= self.config.batch_window
            gather = self.config.batch_window * self.config.batch_gather
            if (idle and gather <= 0) or len(neighbour.push) >= self.config.max_batch:
                outputs.extend(self._flush(neighbour, now))
            elif neighbour.push_due is None:
                neighbour.push_due = now + gather if idle else neighbour.last_flush + self.config.batch_window
        return outputs

    def _flush(self, neighbour: _Neighbour, now: float) -> list[Output]:
        """One PUSH frame (more for a huge batch) with everything queued for ``neighbour``:
        its eager messages and, riding along, the ids announced to it lazily."""
        neighbour.last_flush = now
        batch, neighbour.push, neighbour.push_due = neighbour.push, [], None
        announce, neighbour.announce, neighbour.lazy_due = neighbour.announce, [], None
        pruned, neighbour.prune = tuple(neighbour.prune), {}
        held = neighbour.held
        for message in batch:
            _note_held(held, message.sender_id, message.seq, message.seq)
        # (Not the ids it has sent us meanwhile.)
        ranges = _id_ranges(i for i in announce if i.seq > held.get(i.sender_id, 0))
        if not batch and not ranges and not pruned:
            return []
        fresh, neighbour.fresh = tuple(neighbour.fresh.values()), {}
        for head in fresh:
            neighbour.shared[head.sender_id] = head.signature
        batches = list(message_batches(batch, self.config.max_batch)) or [()]
        frames = [Push(batches[0], ranges, pruned, fresh)] + [Push(more) for more in batches[1:]]
        return [self._send(neighbour.conn, encode_frame(frame)) for frame in frames]

    # Lazy push: IHAVE, GRAFT, PRUNE ---------------------------------------------------
    def _on_push(self, neighbour: _Neighbour, frame: Push, now: float) -> list[Output]:
        neighbour.lazy.update(frame.pruned)
        outputs = self._on_messages(neighbour, frame.messages, now, pushed=True) if frame.messages else []
        if frame.announced and neighbour.link.is_open:
            self._note_announced(neighbour, frame.announced, now)
        if frame.heads and neighbour.link.is_open:
            outputs.extend(self._learn_from_heads(frame.heads, neighbour, now))
        return outputs

    def _learn_from_heads(self, heads: Sequence[Head], source: _Neighbour, now: float) -> list[Output]:
        """Heads from ``source`` (a HEADS frame's, or riding on a PUSH): what they say,
        the stability that follows, any clock lie they prove, and any entry they show
        ``source`` holds in another version than ours."""
        self._note_leave_held(heads)
        events = self._observe_heads(heads, source, now)
        events.extend(self.log.advance_stability())
        outputs: list[Output] = [LogEvents(tuple(events))] if events else []
        forks = [MessageId(head.sender_id, seq) for head in heads if (seq := self.log.other_version_at(head))]
        forks += self.log.take_named_versions()  # (named by an announcement in another version)
        # And the versions a decision kept that we lack, from a neighbour holding them.
        forks += [w for w in self.log.wanted_versions if source.held.get(w.sender_id, 0) >= w.seq]
        return [*outputs, *self._act_on_lies(events, now), *self._ask_for_versions(source, forks)]

    def _ask_for_versions(self, neighbour: _Neighbour, entries: Iterable[MessageId]) -> list[Output]:
        """Ask ``neighbour`` for its version of ``entries``: each one, we have reason to
        think, it holds in another version than ours. Its version, signed by the author,
        is then the proof that the author signed two (the log finds it on arrival, and we
        expel the author): without asking, two peers that each received one version would
        never exchange it (each holds "that seq" already), and the room would show two
        texts for good with nobody the wiser. Each entry once per link, at most
        MAX_VERSION_CHECKS per link; never our own entries, nor those of an author
        already proven an offender, unless its chain here is refused for going on from
        a version we lack (see OrderedLog.missing_version): we take its branch from
        that version, and the honest entries that depend on it; or a decision kept a
        version of it that we lack (OrderedLog.wanted_versions). Those asks cover the
        BRANCH_SPAN entries up to it (the branch may go deeper), on their own budget."""
        asked = neighbour.versions_asked
        ranges: list[WantRange] = []
        for entry in entries:
            author = entry.sender_id
            if author == self.identity.sender_id:
                continue
            if self.log.blocked_for(author) is Refusal.BROKEN_CHAIN:
                branch_asked = neighbour.branch_asked
                if (
                    neighbour.link.is_open
                    and entry not in branch_asked
                    and len(branch_asked) < MAX_BRANCH_ASKS
                ):
                    neighbour.branch_asked.add(entry)
                    ranges.append(WantRange(author, max(1, entry.seq - BRANCH_SPAN + 1), entry.seq))
                continue
            if entry in asked:
                continue
            if author in self.offenders and not self.log.wants_version(entry):
                continue
            if len(asked) >= MAX_VERSION_CHECKS or not neighbour.link.is_open:
                break
            asked.add(entry)
            ranges.append(WantRange(author, entry.seq, entry.seq))
        return [self._send(neighbour.conn, encode_frame(Want(tuple(ranges))))] if ranges else []

    def _observe_heads(self, heads: Iterable[Head], source: _Neighbour, now: float) -> list[LogEvent]:
        """Learn from heads (stability left to the caller), and pass each announcement
        that was news to us on to our other neighbours, riding on their next PUSH."""
        events: list[LogEvent] = []
        log = self.log
        for head in heads:
            events.extend(log.observe_head(head, defer_stability=True))
            if head.signature:
                source.shared[head.sender_id] = head.signature
                if log.announcement_of(head.sender_id) is head:
                    self._spread_announcement(head, now, besides=source)
        return events

    def _spread_announcement(self, head: Head, now: float, besides: _Neighbour | None) -> None:
        """Queue ``head`` for the next PUSH on the links that push its member's messages
        eagerly: its announcements follow its messages' tree, so each peer gets each one
        about once (the heartbeat's heads reach the rest, see ``_lean_head``). Remember
        when it came, for ``_is_behind``."""
        member = head.sender_id
        spread = self._spread.get(member)
        if spread is None:
            spread = self._spread[member] = deque(maxlen=SPREAD_MEMORY)
        spread.append((head.signature[:DIGEST_SIZE], now))
        for neighbour in self._neighbours.values():
            if neighbour is besides or member in neighbour.lazy:
                continue
            if neighbour.trusted and neighbour.link.is_open:
                neighbour.fresh[member] = head

    def _announce_soon(self, now: float) -> list[LogEvent]:
        """We delivered others' entries: once per ``announce_interval``, say so (a fresh
        signed announcement of ours, on the next PUSH of every link)."""
        config = self.config
        interval = max(config.announce_interval, len(self.log.members) / config.announce_load)
        if now - self._own_spread_at < interval:
            return []
        self._own_spread_at = now
        own = self._own_head()
        self._spread_announcement(own, now, besides=None)
        return self.log.observe_head(own, defer_stability=True)

    def _note_announced(self, neighbour: _Neighbour, ranges: Iterable[WantRange], now: float) -> None:
        """Remember the announced messages we lack, to pull them if the tree does not
        bring them in time. Only seqs the log could take count (a range may span up to
        MAX_SEQ), and only so many in all."""
        budget = MAX_BATCH
        for announced in ranges:
            sender_id = announced.sender_id
            _note_held(neighbour.held, sender_id, announced.first, announced.last)
            delivered = self.log.delivered_seq(sender_id)
            first = max(announced.first, delivered + 1)
            last = min(announced.last, delivered + self.log.config.max_ahead, first + budget - 1)
            budget -= max(0, last - first + 1)
            for seq in range(first, last + 1):
                message_id = MessageId(sender_id, seq)
                known = self._announced.get(message_id)
                if known is not None:
                    if neighbour.conn not in known.announcers:
                        known.announcers.append(neighbour.conn)
                elif len(self._announced) < self.config.max_announced and self.log.get(message_id) is None:
                    due = now + self.config.graft_timeout
                    self._announced[message_id] = _Announced(due, [neighbour.conn])
                    if self._next_graft_check is None or self._next_graft_check > due:
                        self._next_graft_check = due
            if budget <= 0:
                break

    def _note_pushed_first(self, message_id: MessageId, conn: int) -> None:
        pushed_first = self._pushed_first
        pushed_first[message_id] = conn
        if len(pushed_first) > PUSHED_FIRST_MEMORY:
            del pushed_first[next(iter(pushed_first))]

    def _tree_brought(self, message: Message, besides: _Neighbour) -> bool:
        """Whether ``message`` came first in a PUSH over another link that is still
        eager for its author: then ``besides`` pushing it too is redundant. (If that
        link is one we pruned, with the PRUNE still on its way, ``besides`` may be the
        only eager link left: pruning it too would cut us off the author's tree.)"""
        conn = self._pushed_first.get(message.id)
        first = self._neighbours.get(conn) if conn is not None else None
        return (
            self.config.lazy_push
            and first is not None
            and first is not besides
            and first.link.is_open
            and message.sender_id not in first.pruned
        )

    def _graft_due(self, now: float) -> list[Output]:
        """GRAFT what was announced and has not come by its deadline, each from the next
        neighbour that announced it; that link becomes eager for its author again."""
        by_conn: dict[int, list[MessageId]] = {}
        next_check = float("inf")
        for message_id, announced in list(self._announced.items()):
            if self.log.get(message_id) is not None:
                del self._announced[message_id]
                continue
            if announced.due > now:
                next_check = min(next_check, announced.due)
                continue
            while announced.announcers:
                conn = announced.announcers.pop(0)
                neighbour = self._neighbours.get(conn)
                if neighbour is not None and neighbour.link.is_open and neighbour.trusted:
                    by_conn.setdefault(conn, []).append(message_id)
                    break
            if announced.announcers:
                announced.due = now + self.config.graft_timeout
                next_check = min(next_check, announced.due)
            else:
                # Nobody else announced it: gap repair and anti-entropy take over.
                del self._announced[message_id]
        self._next_graft_check = next_check if next_check != float("inf") else None
        outputs: list[Output] = []
        for conn, ids in by_conn.items():
            neighbour = self._neighbours[conn]
            for message_id in ids:
                neighbour.pruned.discard(message_id.sender_id)  # (it pushes them to us again)
            self.stats.grafts_out += 1
            outputs.append(self._send(conn, encode_frame(Graft(_id_ranges(ids)))))
        return outputs

    def _regraft(self, lost: int) -> list[Output]:
        """Our parent in some authors' trees is gone: graft those authors at once on the
        links we had pruned them on, rather than wait for their next message to be
        announced and missed. A GRAFT for the next seq, which nobody may hold yet, asks
        for nothing but the eager push; the duplicates this brings prune all but the
        fastest link again."""
        orphaned = [author for author, conn in self._parents.items() if conn == lost]
        outputs: list[Output] = []
        for author in orphaned:
            del self._parents[author]
        for neighbour in self._neighbours.values():
            authors = [a for a in orphaned if a in neighbour.pruned]
            if not authors or not neighbour.link.is_open or not neighbour.trusted:
                continue
            neighbour.pruned.difference_update(authors)
            upcoming = ((a, self.log.delivered_seq(a) + 1) for a in authors)
            ranges = tuple(WantRange(author, seq, seq) for author, seq in upcoming)
            self.stats.grafts_out += 1
            outputs.append(self._send(neighbour.conn, encode_frame(Graft(ranges))))
        return outputs

    def _on_graft(self, neighbour: _Neighbour, ranges: Sequence[WantRange], now: float) -> list[Output]:
        """The neighbour pulls what we announced: we push it those authors eagerly again."""
        for wanted in ranges:
            neighbour.lazy.discard(wanted.sender_id)
        return self._on_want(neighbour, ranges, now)

    def _prune(self, neighbour: _Neighbour, authors: Iterable[bytes], now: float) -> None:
        """Messages of ``authors`` came twice, the second time in a PUSH from ``neighbour``:
        ask it to push them to us lazily. Only that direction: what we push to it is its
        to prune (it may well be its fastest path; our own pushes to a neighbour that
        holds a message already are suppressed anyway, see ``_Neighbour.held``)."""
        new = [a for a in authors if a not in neighbour.pruned]
        if not new or not neighbour.link.is_open:
            return
        # (It rides with the next PUSH to the neighbour: until then it pushes us a few
        # more copies, which cost bytes, not frames.)
        neighbour.pruned.update(new)
        neighbour.prune.update(dict.fromkeys(new))
        self.stats.prunes_out += len(new)
        if neighbour.lazy_due is None:
            neighbour.lazy_due = now + self.config.lazy_window

    def _request_gaps(self, now: float, preferred: _Neighbour) -> list[Output]:
        """Ask for missing messages, at most once per sender per ``want_timeout``."""
        gaps = self.log.gaps()
        self._gap_seen = {s: seen for s, seen in self._gap_seen.items() if s in gaps}
        if not gaps:
            self._next_want_check = None
            return []
        self._next_want_check = now + self.config.want_timeout
        if any(deadline > now for deadline in self._syncing.values()):
            return []  # history is streaming in; what is still missing after it, we ask for
        by_target: dict[int, list[WantRange]] = {}
        for sender_id, ranges in gaps.items():
            seen = self._gap_seen.get(sender_id)
            if seen is None or seen[0] != ranges[0][0]:
                seen = self._gap_seen[sender_id] = (ranges[0][0], now)
            if now < seen[1] + self.config.gap_grace:
                self._next_want_check = min(self._next_want_check, seen[1] + self.config.gap_grace)
                continue
            if self._want_retry_at.get(sender_id, float("-inf")) > now:
                continue
            target = self._holder(sender_id, ranges[0][0], preferred)
            if target is None:
                continue
            self._want_retry_at[sender_id] = now + self.config.want_timeout
            by_target.setdefault(target.conn, []).extend(
                WantRange(sender_id, first, last) for first, last in ranges
            )
        return [self._send(conn, encode_frame(Want(tuple(ranges)))) for conn, ranges in by_target.items()]

    def _holder(self, sender_id: bytes, seq: int, preferred: _Neighbour) -> _Neighbour | None:
        """A neighbour believed to hold ``(sender_id, seq)``, the preferred one first."""
        candidates = [preferred, *self._neighbours.values()]
        for neighbour in candidates:
            if self._may_ask(neighbour) and neighbour.held.get(sender_id, 0) >= seq:
                return neighbour
        return preferred if self._may_ask(preferred) else None

    def _fail(
        self,
        neighbour: _Neighbour,
        code: CloseCode,
        reason: str,
        note: str | None = None,
        *,
        ban: float | None = None,
    ) -> list[Output]:
        """Close ``neighbour``; with ``ban`` (the time now), refuse its id for a while.

        ``reason`` goes to the neighbour as it is, so it must read right there ("this
        peer ...", "you ..."); ``note``, the same in our words (see :class:`Close`), is
        ``reason`` unless given, and gets the neighbour's short id in front once we know
        it. (Not our connection number: the shell's log names the connection already,
        and a failed dial, told to the user, names the URL.)"""
        neighbour.link.close()
        if note is None:
            note = reason
        if ban is not None and neighbour.remote_id is not None:
            self._banned[neighbour.remote_id] = ban + self.config.ban_seconds
            banned = f" (banned for {self.config.ban_seconds:.0f} s)"
            reason, note = reason + banned, note + banned
        if neighbour.remote_id is not None:
            note = f"{short_id(neighbour.remote_id)}: {note}"
        return [Close(neighbour.conn, code, reason, note)]

    def _send(self, conn: int, frame: bytes) -> Send:
        """A frame for ``conn`` (deflated if it is worth it; to be sealed by the shell,
        see :class:`Send`)."""
        data = deflate_frame(frame)
        self.stats.frames_out += 1
        self.stats.bytes_out += len(data) + SEAL_OVERHEAD  # what it will weigh on the wire
        return Send(conn, data)

    def _send_raw(self, conn: int, data: bytes) -> Send:
        self.stats.frames_out += 1
        self.stats.bytes_out += len(data)
        return Send(conn, data, clear=True)

    def seal(self, conn: int, plaintext: bytes) -> bytes | None:
        """A frame of ours for ``conn``, sealed (None once the connection is gone)."""
        neighbour = self._neighbours.get(conn)
        if neighbour is None:
            return None
        return neighbour.link.seal(plaintext)

    def statistics(self) -> NodeStatistics:
        stats = self.stats
        stats.connections = self.open_count
        stats.delivered = len(self.log)
        stats.held = self.log.held_count
        stats.missing = sum(last - first + 1 for ranges in self.log.gaps().values() for first, last in ranges)
        stats.stable = self.log.stable_count
        return replace(stats)


def text_count(log: OrderedLog) -> int:
    """How many chat lines ``log`` holds (constant time)."""
    return log.text_count


def _log_order(message: Message) -> tuple[int, bytes]:
    return message.key


def _take_batch(backlog: deque[Message], max_count: int) -> tuple[Message, ...]:
    """Take from the front of ``backlog`` the entries one MESSAGES frame can carry."""
    batch = next(message_batches(islice(backlog, max_count), max_count), ())
    for _ in batch:
        backlog.popleft()
    return batch


def _note_held(held: dict[bytes, int], sender_id: bytes, first: int, last: int) -> None:
    """A neighbour holds ``first..last`` of ``sender_id``: raise what we believe it holds
    without holes, only if that range continues it. (Taking a higher seq for all below
    it would stop our pushes of a message it lacks, which a tree has no other path for.)"""
    if first <= held.get(sender_id, 0) + 1 and last > held.get(sender_id, 0):
        held[sender_id] = last


def _id_ranges(ids: Iterable[MessageId]) -> tuple[WantRange, ...]:
    """Message ids as ranges of consecutive seqs per sender (an IHAVE or a GRAFT)."""
    ranges: list[WantRange] = []
    for sender_id, seq in sorted(set(ids)):
        last = ranges[-1] if ranges else None
        if last is not None and last.sender_id == sender_id and last.last + 1 == seq:
            ranges[-1] = WantRange(sender_id, last.first, seq)
        else:
            ranges.append(WantRange(sender_id, seq, seq))
    return tuple(ranges)


def _announceable(url: str) -> bool:
    """Whether an address learned from a neighbour may be kept and dialed: a well-formed
    URL (with or without a peer id), never an invite (those are for one newcomer)."""
    try:
        return invite_of(url) is None
    except ValueError:
        return False


def _peer_of(url: str) -> bytes | None:
    """The peer id ``url`` names (None if none, or if it is no well-formed peer URL)."""
    try:
        return split_peer_url(url)[1]
    except ValueError:
        return None


def _url_of(neighbour: _Neighbour) -> str | None:
    """The neighbour's listen URL naming its id (None if it announced none, or one that
    names another id), else the URL we dialed."""
    remote = neighbour.link.remote
    if remote is not None and remote.listen_url:
        return with_peer_id(remote.listen_url, remote.sender_id)
    return neighbour.dialed_url


def _in_handshake(neighbour: _Neighbour) -> bool:
    return neighbour.link.state in (LinkState.AWAIT_HELLO, LinkState.AWAIT_AUTH)
