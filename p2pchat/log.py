"""The ordered log: one peer's copy of the conversation, in the one total order.

Part of the pure core. This module is DESIGN.md rules 2-9 in code:

* A received message is *held* at once (after its signature checks out) and
  *delivered* -- it enters the visible, ordered log -- only when its sender's
  earlier messages are delivered (per-sender FIFO) and, when it carries a vector
  clock, when everything that clock names is delivered (causal delivery). The
  visible log is therefore always causally closed.
* The visible log is sorted by :class:`~p2pchat.message.MessageKey`,
  ``(lamport, sender_id)``. Two logs holding the same messages are identical,
  whatever order the messages arrived in.
* Stamps are checked *at delivery*, when everything the check needs is known,
  so every honest replica reaches the same verdict on the same message:
  with vector clocks the stamp must be exactly ``1 + max(lamport of what the
  sender had delivered)``; without, it must grow with seq by at most a
  configured step. A refusal blocks the rest of that sender's chain (FIFO).
* Gaps (missing seqs) are reported per sender, for the protocol to ask for.
* The stable prefix (rule 8) is the part of the log whose positions can no
  longer change; it grows as members' clocks are heard of.

All methods are synchronous and deterministic; the log never reads a clock.
"""

from __future__ import annotations

import dataclasses
import enum
import heapq
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from itertools import islice, product
from typing import NamedTuple

from sortedcontainers import SortedList

from .identity import Identity
from .membership import VOTES, Decision, MemberInfo, Roster
from .message import (
    MAX_LAMPORT,
    MAX_TAIL,
    NO_LINK,
    NO_PREVIOUS,
    ROOM_RULES,
    Change,
    EntryKind,
    Flush,
    Message,
    MessageId,
    MessageKey,
    RoomPolicy,
    Tail,
    Tails,
    versions_digest,
)
from .wire import LINK_SIZE, Head

__all__ = [
    "ClockLie",
    "Concurrent",
    "Decided",
    "Delivered",
    "Entombed",
    "Equivocation",
    "LogConfig",
    "LogEvent",
    "OrderedLog",
    "OwnHistoryIncomplete",
    "Receipt",
    "Refusal",
    "Refused",
    "Stable",
    "Voided",
]

MAX_STRANGER_HEADS = 256
"""Heads of unknown ids kept for when their admission arrives (see observe_head)."""
MAX_VERSIONS_KEPT = 4
"""Other versions of one forked entry kept as evidence (and their stamps, for the stamp
checks of honest entries that depend on them): an equivocator can sign any number of
versions; an honest author saw one of the first few to spread, most likely."""
MAX_BRANCHES = 16
"""Times an equivocator's chain may go on from a version of an entry we did not keep
(see OrderedLog._branch); past that its chain ends, as any broken chain: each switch
keeps a full vector clock, and an equivocator that forks at every seq must not make us
keep one per entry."""
MAX_STAMP_COMBINATIONS = 256
"""Versions of an entry's forked dependencies tried together, at most."""

# Larger than any 32-byte sender id: (L, _AFTER_ALL_SENDERS) sorts after every key stamped L.
_AFTER_ALL_SENDERS = b"\xff" * 33
_ALL_COVERED = (MAX_LAMPORT + 1, _AFTER_ALL_SENDERS)
"""Above every key: a member has said it delivered every entry delivered here."""
_CROSS_CHECK = False
"""Tests may set this: every shortcut of the stability computation checked against it."""


MIN_TAIL = 16
"""An answer to a removal names at least the removed member's last this many entries
(all of them if fewer), stable here or not (see OrderedLog._tails)."""
TAIL_BUDGET = 1024
"""Links an answer names in all its tails, at most (17 KiB of its 64 KiB payload)."""


class NotAMember(RuntimeError):
    """We cannot write now: we are not (or no longer) a member of the room."""


class OwnHistoryIncomplete(RuntimeError):
    """We cannot write now: some of our own earlier messages are held, not delivered.

    Writing anyway would reuse a seq of ours (equivocation). Neighbours repair it.
    """


class Refusal(enum.Enum):
    """Why a message was refused."""

    BAD_SIGNATURE = "signature does not verify"
    EQUIVOCATION = "same sender and seq as a held message, different content"
    FORGED_STAMP = "lamport stamp is not 1 + max(lamport of the messages its vector clock names)"
    STAMP_NOT_INCREASING = "lamport stamp does not increase with seq"
    DEPS_REGRESS = "vector clock goes backwards or names its own sender"
    NOT_A_MEMBER = "the author is not a member of the room where this entry stands"
    NOT_OUR_GENESIS = "a genesis entry that is not this room's"
    SENDER_BLOCKED = "an earlier message of this sender was refused"
    TOO_FAR_AHEAD = "seq is too far ahead of what is delivered from this sender"
    BROKEN_CHAIN = "previous is not the hash of its author's entry before it (a fork)"


# Events -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Delivered:
    """``message`` entered the visible log at position ``index`` (later entries shifted)."""

    message: Message
    index: int
    concurrent: bool
    placed_late: bool = False
    """Its place is below positions this replica already held stable (only a liar's
    stamps do that, see OrderedLog._deliver): a store keeps the mark, so that a restart
    holds it so again (see receive's ``placed_late``)."""


@dataclass(frozen=True, slots=True)
class Concurrent:
    """Messages already in the log turned out to be concurrent with a newer one (only
    entries with a place in the log: a tombstone, such as a COMMIT, is shown nowhere)."""

    ids: tuple[MessageId, ...]


@dataclass(frozen=True, slots=True)
class Stable:
    """Positions ``0 .. count-1`` of the log are final."""

    count: int


@dataclass(frozen=True, slots=True)
class Refused:
    message: Message
    reason: Refusal


@dataclass(frozen=True, slots=True)
class Equivocation:
    """Evidence: two validly signed messages with the same ``(sender, seq)``."""

    kept: Message
    rejected: Message


@dataclass(frozen=True, slots=True)
class ClockLie:
    """Evidence: a member signed ``announcement`` (its clock was ``clock_lamport`` after
    its entry ``clock_seq``), then signed ``message``, a later entry stamped no higher.
    An honest member's next stamp is above every clock it announced (its vector clock
    names what it had delivered), so the two signatures prove the lie; the peers that
    relied on the promise may already have called positions below it stable."""

    announcement: Head
    message: Message


@dataclass(frozen=True, slots=True)
class Voided:
    """Entries that were in the log left it: a membership change put them above their
    author's cut (they stay as tombstones). None of them was stable."""

    messages: tuple[Message, ...]


@dataclass(frozen=True, slots=True)
class Entombed:
    """An entry was delivered as a tombstone: held (later entries may depend on it) but
    without a place in the log (void or invalid, rule 10; or ``placeless``)."""

    message: Message
    placeless: bool = False
    """A valid entry held without a place because it is stamped within its author's
    bound here (it broke a clock promise we relied on, see OrderedLog._check): a choice
    of this replica, which a restart must make again (the store keeps it)."""


@dataclass(frozen=True, slots=True)
class Decided:
    """A membership change was decided: the epoch it closed, and how."""

    epoch: int
    decision: Decision


LogEvent = Delivered | Concurrent | Stable | Refused | Equivocation | ClockLie | Voided | Decided | Entombed


class ReceiptStatus(enum.Enum):
    NEW = "new"
    """First time seen and accepted (held or delivered): worth forwarding."""
    DUPLICATE = "duplicate"
    REFUSED = "refused"
    IGNORED = "ignored"
    """Not taken now but not the sender's fault (e.g. too far ahead); may come again."""


@dataclass(frozen=True, slots=True)
class Receipt:
    status: ReceiptStatus
    events: tuple[LogEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class LogConfig:
    max_ahead: int = 100_000
    """Messages further than this beyond a sender's delivered seq are not held."""
    max_held_bytes: int = 64 * 1024 * 1024
    """Payload bytes held behind gaps, over all senders. Past it, messages that cannot be
    delivered at once are not taken (IGNORED: they come again with repair)."""


@dataclass(slots=True)
class _Sender:
    """What the log knows about one sender."""

    delivered: int = 0
    lamports: list[int] = field(default_factory=list)
    """lamports[k-1] is the stamp of delivered message k."""
    vector: dict[bytes, int] | None = None
    """Full vector clock (without its own entry) of the last delivered message."""
    held: dict[int, Message] = field(default_factory=dict)
    known: int = 0
    """Highest seq heard of: held, named in a vector clock, or announced in a head."""
    announced: Head | None = None
    """Best usable clock announcement: after message clock_seq, the clock was clock_lamport."""
    pending: Head | None = None
    """Newest announcement whose clock_seq is not delivered here yet."""
    concurrent_ranges: list[list[int]] = field(default_factory=list)
    """Disjoint sorted [first, last] seq ranges flagged concurrent."""
    blocked: Refusal | None = None
    refused: Message | None = None
    """The entry whose refusal blocked it (see OrderedLog._blocked_on)."""
    retry: Message | None = None
    """The entry that blocked it, when refused for its stamp only, or for going on from
    a version of its predecessor we do not hold: checked again if a fork of one of its
    dependencies, or of its predecessor, comes to light (see OrderedLog._retry_after_fork)."""
    branch_vectors: dict[int, dict[bytes, int]] | None = None
    """Full vector clocks of its delivered entries that went on from a version of their
    predecessor we did not keep (an equivocator's other branch, see OrderedLog._branch):
    there its vector clock is not the sum of the deltas of the entries we kept. At most
    MAX_BRANCHES."""
    base: tuple[int, int, dict[bytes, int]] | None = None
    """(seq, delivered, full vector clock) of the last branch base computed for it (see
    OrderedLog._state_at)."""
    epoch: int = 0
    """The epoch of its last delivered entry (its next one is in this one or later)."""
    cover: dict[bytes, int] | None = None
    """From its usable clock announcement, when newer than its last entry: what it had
    delivered of the others (else its last entry's ``vector`` says it)."""
    capped: dict[bytes, int] | None = None
    """Per other sender of which its cover (its last entry's or announcement's) named an
    entry in another version than the one we hold: how far that cover counts here, the
    seq up to which what it named was our version (see OrderedLog._match_versions)."""
    awaiting: _AwaitedCover | None = None
    """Its announcement's cover, while some entry it names is not delivered here yet: the
    versions it names cannot be checked until then (see OrderedLog._match_announced)."""
    beat: int = 0
    """The newest ``at_ms`` of its verified announcements: it was alive then (its clock)."""
    bound: int = 0
    """Every future message of this sender has a stamp above this value: the larger of
    its last delivered stamp and its best usable clock announcement."""
    promise: Head | None = None
    """The announcement that set ``bound``, when one set it above the last stamp: the
    proof if the sender's next entry breaks it."""
    link: bytes = NO_PREVIOUS
    """The entry hash of its last delivered entry: what its next one names as previous."""
    judged: int = -1
    """The roster version (OrderedLog._roster_version) at which its last entry was found a
    valid chat line of the last epoch; -1 if it was not one (see OrderedLog._judge)."""

    @property
    def last_lamport(self) -> int:
        return self.lamports[-1] if self.lamports else 0


@dataclass(slots=True)
class _AwaitedCover:
    """A member's announcement naming entries not all delivered here: what it names, and
    how far its cover of each sender it raised counts until its versions are checked."""

    delivered: tuple[tuple[bytes, int], ...]
    seen: bytes
    counted: dict[bytes, int]
    waiting_on: MessageId
    """An entry it names that is not delivered here: it is checked again when that comes."""


class OrderedLog:
    """One replica's conversation: held messages, the ordered visible log, stability."""

    def __init__(self, config: LogConfig | None = None, room_id: bytes | None = None) -> None:
        self.config = config or LogConfig()
        self.room_id = room_id
        """The room this log belongs to; None until it is known (a newcomer learns it
        from its first neighbour). Nothing is taken before."""
        self.roster = Roster()
        self._senders: dict[bytes, _Sender] = {}
        self._order: SortedList = SortedList()
        self._by_key: dict[MessageKey, Message] = {}
        self._waiting: dict[bytes, list[tuple[int, bytes]]] = {}
        self._wait_entries: set[tuple[bytes, int, bytes]] = set()
        self._held_bytes = 0
        self._stranger_heads: dict[bytes, Head] = {}
        self._tombstones: dict[MessageId, Message] = {}
        """Delivered entries that take no place in the log: void or invalid (rule 10), or
        valid but placeless (see _check). By id: a placeless entry on an equivocator's
        other branch may share its key with an entry of the same author, never its id."""
        self._placed_late: set[MessageId] = set()
        """Entries given a place below positions already stable (only a liar's stamps do
        that, see _deliver): stable by position, but no answer of ours names them so
        (see _tails). Delivered, or restored, as such (see receive's ``placed_late``)."""
        self._placeless: set[MessageId] = set()
        """The valid entries held without a place here (see _check): delivered as such, or
        restored as such (see receive's ``placeless``)."""
        self._closed_count = 0
        """Positions of the log in closed epochs: all stable (but see _wanted_floor)."""
        self._closed_end: MessageKey | None = None
        """The last key of the closed epochs (the log's last at the last decision): the
        entries of the epochs still open all sort after it (they follow every answer)."""
        self._decided_versions: dict[MessageId, Message] = {}
        """Entries of removed members shown here in the version the removal's answers
        named, not the one our copy of the chain delivered (kept in _other_versions);
        see _show_decided_versions."""
        self._wanted_versions: dict[MessageId, bytes] = {}
        """Entries of removed members that a decision kept in a version we do not hold
        (the link its answers named): asked for, and shown once here."""
        self._wanted_floor: MessageKey | None = None
        """While versions are wanted: the lowest key any of them can have. No position
        from there on is stable (one of them will take a place there or later)."""
        self.text_count = 0
        """Chat lines in the log (its entries less its membership entries)."""
        self._clock = 0
        self._roster_version = 0
        """Counts the entries recorded in the roster: while it stands still, what the
        roster says of a chat line stands still too (see _judge)."""
        self._holding_back: bytes | None = None
        """The member that last held the stable prefix back (see _cannot_advance)."""
        self._awaiting_match: dict[MessageId, set[bytes]] = {}
        """Per entry not delivered yet that members' announcements name (``awaiting``):
        those members, whose announcements are checked again once it is delivered."""
        self._forked: set[bytes] = set()
        """Senders of which we hold two versions of an entry, or whose chain here went on
        from a version we do not show: the suspects when a cover names versions not all
        ours (see _match_versions)."""
        self._settled: dict[bytes, int] = {}
        """Per sender, the seq up to which its entries stand in closed epochs (or are
        void there): settled, whatever a cover names (see _counted)."""
        self._named_versions: dict[MessageId, None] = {}
        """Entries a member's cover named in a version we do not hold, since the caller
        last took them (take_named_versions): the version is worth asking for (the author
        signed two: proof), and until it is known the cover counts only below it."""
        self._uncovered: dict[bytes, tuple[int, bytes]] = {}
        """Per member, the first key of an entry it has not said it delivered (see
        _first_uncovered), kept up to date as entries are delivered; dropped when what the
        member said it delivered changes."""
        self._stable_count = 0
        self._first_open: MessageKey | None = None
        """The key at position ``_stable_count`` (the first not yet stable), once asked for;
        None when not known (it changes with the stable count and with what is put in the
        log at or below it, or taken out)."""
        self.evidence: list[Equivocation] = []
        self._evidence_pairs: set[tuple[MessageId, bytes]] = set()
        """(id, the other version's payload) of each proof in ``evidence``."""
        self._other_versions: dict[MessageId, dict[bytes, Message]] = {}
        """Per forked entry, the other versions we hold (at most MAX_VERSIONS_KEPT), by
        entry hash: an honest author that saw one of those stamped its next entry from
        it, and the equivocator may go on from one (see _branch)."""
        self._liars: dict[bytes, ClockLie] = {}
        """Members caught lying about their clock, with the proof (see lies): their
        announcements count no more, and our heads relay the promise they broke."""
        self._new_announcements: dict[bytes, Head] = {}
        """Per member, its announcement in use here if it changed since the caller last
        took them (take_new_announcements): what a store keeps for a restart."""
        self.stability_violations = 0
        self.bad_announcements = 0
        """Clock announcements dropped because their signature did not verify."""

    @classmethod
    def found(
        cls,
        identity: Identity,
        *,
        name: str,
        room_name: str,
        sent_at_ms: int,
        policy: RoomPolicy = RoomPolicy.OPEN,
        config: LogConfig | None = None,
        rules: int = ROOM_RULES,
    ) -> tuple[OrderedLog, Message]:
        """A new room founded by ``identity``: its log, holding the genesis entry
        (``rules``: see message.ROOM_RULES; only tests found a room by older ones)."""
        genesis = Message.create(
            identity,
            seq=1,
            lamport=1,
            sent_at_ms=sent_at_ms,
            name=name,
            text=room_name,
            deps={},
            room_id=b"",
            kind=EntryKind.GENESIS,
            policy=policy,
            rules=rules,
        )
        log = cls(config, room_id=genesis.room_id())
        log.receive(genesis, trusted=True)
        return log, genesis

    def adopt_room(self, room_id: bytes) -> None:
        """Join room ``room_id`` (once, before anything is held)."""
        if self.room_id is not None and self.room_id != room_id:
            raise ValueError("this log already belongs to another room")
        self.room_id = room_id

    # Reading ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._order)

    def __getitem__(self, index: int) -> Message:
        return self._by_key[self._order[index]]

    def __iter__(self) -> Iterator[Message]:
        return (self._by_key[key] for key in self._order)

    def messages(self) -> list[Message]:
        """A snapshot of the visible log, in order."""
        return list(self)

    @property
    def clock(self) -> int:
        """The Lamport clock: the largest stamp delivered here."""
        return self._clock

    @property
    def stable_count(self) -> int:
        """How many entries, from the start, are in their final position."""
        return self._stable_count

    @property
    def held_count(self) -> int:
        """Messages received but waiting for earlier ones."""
        return sum(len(s.held) for s in self._senders.values())

    @property
    def held_bytes(self) -> int:
        """Payload bytes of the messages held behind gaps."""
        return self._held_bytes

    @property
    def members(self) -> frozenset[bytes]:
        """The room's active members at the end of the log."""
        return self.roster.active()

    def is_member(self, sender_id: bytes) -> bool:
        return sender_id in self.roster.active()

    def member_info(self) -> dict[bytes, MemberInfo]:
        """Everyone ever admitted, with their current state."""
        return self.roster.members()

    @property
    def genesis(self) -> Message | None:
        founder = self.roster.founder
        return None if founder is None else self.get(MessageId(founder, 1))

    def delivered_seq(self, sender_id: bytes) -> int:
        state = self._senders.get(sender_id)
        return state.delivered if state else 0

    def vector(self) -> dict[bytes, int]:
        """This replica's vector clock: the highest delivered seq per sender."""
        return {s: st.delivered for s, st in self._senders.items() if st.delivered}

    def delivered_since_own(
        self, sender_id: bytes, cap: Mapping[bytes, int] | None = None
    ) -> dict[bytes, int]:
        """What we announce we delivered (rule 8): the senders whose delivered seq grew
        since our last entry, each at most ``cap`` (what is on disk, if given: a restart
        must not forget what we claimed). Nothing once we answered an open change or
        left the epoch: what we deliver then is not in our answer, so no cut is bound to
        cover it."""
        if not self.is_member(sender_id) or self.roster.answered(sender_id) is not None:
            return {}
        state = self._senders.get(sender_id)
        own = (state.vector if state is not None else None) or {}
        grown = {}
        for other, other_state in self._senders.items():
            seq = other_state.delivered if cap is None else min(other_state.delivered, cap.get(other, 0))
            if other != sender_id and seq > own.get(other, 0):
                grown[other] = seq
        return grown

    def announcement(self, identity: Identity, at_ms: int = 0) -> Head:
        """Our signed clock announcement: after our last entry, our clock and what we
        delivered since, said at ``at_ms``."""
        me = identity.sender_id
        seq = self.delivered_seq(me)
        delivered = self.delivered_since_own(me)
        return Head.announce(
            identity,
            seq,
            seq,
            self._clock,
            delivered,
            at_ms,
            room_id=self.room_id or b"",
            link=self.link_of(me, seq),
            delivered_links=self.links_of(delivered),
        )

    def _tails(self, members: Iterable[bytes]) -> Tails:
        """What an answer to a change removing ``members`` says of their entries: the
        links of the last MIN_TAIL and of any before them not stable here, as delivered
        here (see membership), oldest first, up to MAX_TAIL per member and TAIL_BUDGET
        in all (then the oldest go).

        Not stable here: an entry its author signed in two versions is stable on no
        replica whose members hold both (the covers name the versions), so every
        answer names it, however many entries its author wrote after it; so is one
        held here without a place (named as zeros). Each tail says how many of its
        first links name entries stable here: a difference counts in the decision only
        at an entry every answer holding it names as not stable, so that a member lying
        in its answer cannot void an entry that an answerer holds stable."""
        held = [
            (m, state) for m in members if (state := self._senders.get(m)) is not None and state.delivered
        ]
        room = min(MAX_TAIL, max(1, TAIL_BUDGET // max(1, len(held))))
        tails = []
        for member, state in held:
            unstable = self._first_unstable_seq(member, state)
            first = max(1, min(state.delivered - MIN_TAIL + 1, unstable), state.delivered - room + 1)
            links = tuple(self._tail_link(member, state, seq) for seq in range(first, state.delivered + 1))
            tails.append(Tail(member, links, max(0, unstable - first)))
        return tuple(tails)

    def _first_unstable_seq(self, member: bytes, state: _Sender) -> int:
        """The seq of ``member``'s first entry among its last MAX_TAIL not stable here,
        one more than its last if all are: the first one stamped at or above the first
        position not yet stable, held without a place, placed below positions that were
        stable (a liar's backdated entry: stable here by position only), or held here in
        two versions (whichever version counts here, the room may show the other). (An
        entry stamped alike counts as not stable: a longer tail, never a shorter one.
        Scanned, not bisected: on a liar's other branch the stamps need not rise from
        one version to the next.)"""
        start = max(0, state.delivered - MAX_TAIL)
        bound = self._order[self._stable_count].lamport if self._stable_count < len(self._order) else None
        lamports = state.lamports
        odd = self._placeless | self._placed_late
        versions = self._other_versions
        for index in range(start, state.delivered):
            if bound is not None and lamports[index] >= bound:
                return index + 1
            entry = MessageId(member, index + 1)
            if (odd and entry in odd) or (versions and entry in versions):
                return index + 1
        return state.delivered + 1

    def _tail_link(self, member: bytes, state: _Sender, seq: int) -> bytes:
        """A tail's link to an entry: zeros for one we hold without a place (so that the
        decision voids it everywhere, see membership), else its link."""
        if self._placeless and MessageId(member, seq) in self._placeless:
            return NO_LINK
        return self._link_at(member, state, seq)

    def links_of(self, named: Mapping[bytes, int]) -> dict[bytes, bytes]:
        """The link of each entry ``named`` names (sender: seq), as we hold it: what an
        entry or announcement of ours that names them says (see p2pchat.message). Left
        out (Message.create writes zeros: a version nobody holds) for one a link would not
        vouch for (see _vouchable)."""
        links = {}
        for sender, seq in named.items():
            state = self._senders.get(sender)
            if state is not None and self._vouchable(sender, state, seq):
                links[sender] = self._link_at(sender, state, seq)
        return links

    def _vouchable(self, sender: bytes, state: _Sender, seq: int) -> bool:
        """Whether a link to ``sender``'s entry ``seq`` says what we hold of its entries up
        to there: its chain here is one hash chain through it (see _branch), and none of
        them is held without a place (stamped within a clock its author announced, see
        _check): a replica that placed that entry must not count our cover of it, or it
        could call it stable where we show nothing."""
        if not _linear_through(state, seq):
            return False
        return not self._placeless or not any(p.sender_id == sender and p.seq <= seq for p in self._placeless)

    @property
    def lies(self) -> list[ClockLie]:
        """The first clock lie found of each member that told one, in the order found."""
        return list(self._liars.values())

    @property
    def proofs(self) -> list[Equivocation | ClockLie]:
        """Every proof held against members: the equivocations, then the clock lies."""
        return [*self.evidence, *self.lies]

    def promised_ahead(self, sender_id: bytes) -> bool:
        """Whether a clock ``sender_id`` announced is ahead of this replica's clock: for
        our own id, an entry of ours now would break a promise of ours (see compose)."""
        state = self._senders.get(sender_id)
        return state is not None and state.bound > self._clock

    def take_new_announcements(self) -> list[Head]:
        """The members' announcements in use here that changed since the last call.

        A store keeps them, and a restart observes them again after the entries (see
        :func:`p2pchat.peer.restore_log`): stability rests on them (rule 8), and the
        entries alone would show positions called stable before as tentative. The newest
        is enough: it carries the member's clock and everything it delivered since its
        last entry."""
        fresh = list(self._new_announcements.values())
        self._new_announcements.clear()
        return fresh

    def announcement_of(self, sender_id: bytes) -> Head | None:
        """The clock announcement of ``sender_id`` in use here (the newest usable one)."""
        state = self._senders.get(sender_id)
        return state.announced if state is not None else None

    def last_beat(self, sender_id: bytes) -> int:
        """The newest ``at_ms`` of ``sender_id``'s verified announcements (0: none)."""
        state = self._senders.get(sender_id)
        return state.beat if state is not None else 0

    @property
    def placeless(self) -> frozenset[MessageId]:
        """The valid entries held here without a place (see Entombed.placeless)."""
        return frozenset(self._placeless)

    @property
    def placed_late(self) -> frozenset[MessageId]:
        """The entries given a place here below positions already stable (see
        Delivered.placed_late)."""
        return frozenset(self._placed_late)

    def tombstones(self) -> list[Message]:
        """Delivered entries that take no place in the log (void or invalid), by key."""
        return sorted(self._tombstones.values(), key=lambda message: (message.key, message.seq))

    def get(self, message_id: MessageId) -> Message | None:
        """A delivered or held message by id."""
        state = self._senders.get(message_id.sender_id)
        if state is None:
            return None
        if message_id.seq <= state.delivered:
            key = MessageKey(state.lamports[message_id.seq - 1], message_id.sender_id)
            found = self._by_key.get(key)
            if found is not None and found.seq == message_id.seq:
                return found
            if self._decided_versions and (shown := self._decided_versions.get(message_id)) is not None:
                return shown
            return self._tombstones[message_id]
        return state.held.get(message_id.seq)

    def is_visible(self, message: Message) -> bool:
        """Whether ``message`` has a place in the log (delivered, neither void nor invalid)."""
        found = self._by_key.get(message.key)
        return found is not None and (found is message or found.payload == message.payload)

    def index_of(self, message: Message) -> int:
        """Current position of a delivered message."""
        index: int = self._order.index(message.key)
        return index

    def is_concurrent(self, message_id: MessageId) -> bool:
        state = self._senders.get(message_id.sender_id)
        if state is None:
            return False
        ranges = state.concurrent_ranges
        i = bisect_right(ranges, [message_id.seq, MAX_LAMPORT]) - 1
        return i >= 0 and ranges[i][0] <= message_id.seq <= ranges[i][1]

    def is_stable(self, message: Message) -> bool:
        return self.is_visible(message) and self.index_of(message) < self._stable_count

    def blocked_senders(self) -> dict[bytes, Refusal]:
        return {s: st.blocked for s, st in self._senders.items() if st.blocked is not None}

    def blocked_for(self, sender_id: bytes) -> Refusal | None:
        """Why ``sender_id``'s chain is blocked here, if it is."""
        state = self._senders.get(sender_id)
        return state.blocked if state is not None else None

    def messages_between(self, sender_id: bytes, first: int, last: int) -> list[Message]:
        """The messages we hold (delivered or not) of ``sender_id`` with seq in [first, last]."""
        state = self._senders.get(sender_id)
        if state is None:
            return []
        found = []
        for seq in range(max(first, 1), min(last, max(state.delivered, state.known)) + 1):
            message = self.get(MessageId(sender_id, seq))
            if message is not None:
                found.append(message)
        return found

    def gaps(self, limit: int = 1024) -> dict[bytes, list[tuple[int, int]]]:
        """Missing seq ranges per sender, ``[first, last]`` inclusive, at most ``limit`` in all."""
        found: dict[bytes, list[tuple[int, int]]] = {}
        budget = limit
        for sender_id, state in self._senders.items():
            if state.known <= state.delivered or state.blocked is not None:
                continue
            ranges = _missing_ranges(state.delivered + 1, state.known, state.held)
            if ranges:
                found[sender_id] = ranges[:budget]
                budget -= len(found[sender_id])
                if budget <= 0:
                    break
        return found

    def heads(self) -> list[Head]:
        """Per sender: the highest seq held without holes, and its last clock announcement
        (for a member caught lying about its clock: the promise it broke, the proof)."""
        result = []
        for sender_id, state in self._senders.items():
            if not state.delivered and not state.held and state.announced is None:
                continue  # only named somewhere: not ours to vouch for
            held_seq = state.delivered
            while held_seq + 1 in state.held:
                held_seq += 1
            lie = self._liars.get(sender_id)
            announced = state.announced if lie is None else lie.announcement
            link = self._link_at(sender_id, state, held_seq)
            if announced is None or announced.seen is None:
                # (A legacy announcement, from an old data directory, does not go on the wire.)
                result.append(Head(sender_id, held_seq, link=link))
            else:
                result.append(
                    Head(
                        sender_id,
                        held_seq,
                        announced.clock_seq,
                        announced.clock_lamport,
                        announced.signature,
                        announced.delivered,
                        announced.at_ms,
                        link,
                        b"",
                        announced.seen,
                    )
                )
        return result

    def link_of(self, sender_id: bytes, seq: int) -> bytes:
        """What a head of ours says of ``sender_id``'s entry ``seq``, which we hold: the
        start of its entry hash, or nothing for seq 0 (see wire.Head.link)."""
        state = self._senders.get(sender_id)
        return self._link_at(sender_id, state, seq) if state is not None else b""

    def _link_at(self, sender_id: bytes, state: _Sender, seq: int) -> bytes:
        if not seq:
            return b""
        if seq == state.delivered:
            link = state.link  # (the common case: no hashing)
        elif seq < state.delivered:
            delivered = self.get(MessageId(sender_id, seq))
            assert delivered is not None  # (held as an entry or a tombstone)
            link = delivered.entry_hash()
        else:
            link = state.held[seq].entry_hash()
        return link[:LINK_SIZE]

    def other_version_at(self, head: Head) -> int | None:
        """The seq of an entry of ``head``'s sender that the peer sending the head holds
        in another version than ours, if the head shows one (see wire.Head.link).

        Either its link for the entry ``held_seq`` differs from ours, or we refused the
        sender's next entry for naming another predecessor than ours (BROKEN_CHAIN) and
        the head holds entries past ours, chained to that other version, most likely:
        then the entry whose version we lack (see missing_version).
        Cheap enough for every head: one hash at most.
        """
        if not head.link:
            return None  # (most heads: links ride only in a link's whole heads)
        state = self._senders.get(head.sender_id)
        if state is None:
            return None
        seq = head.held_seq
        if seq <= state.delivered or seq in state.held:
            return seq if self._link_at(head.sender_id, state, seq) != head.link else None
        missing = self.missing_version_for(head.sender_id)
        return missing.seq if missing is not None else None

    # Clocks -------------------------------------------------------------------
    def observe_head(self, head: Head, *, defer_stability: bool = False) -> list[LogEvent]:
        """Learn from a head: more messages exist, and a member's clock announcement.

        Heads make nobody a member and create no state for strangers: only senders
        we hold entries of (or that the roster names) are tracked.
        """
        state = self._senders.get(head.sender_id)
        if state is None:
            if self.roster.name_of(head.sender_id) is None:
                self._remember_stranger_head(head)
                return []
            state = self._senders.setdefault(head.sender_id, _Sender())
        state.known = max(state.known, head.held_seq, head.clock_seq)
        events: list[LogEvent] = []
        usable = head.clock_lamport and head.sender_id not in self._liars
        if usable and (self._is_news(state, head) or self._would_prove_lie(state, head)):
            # Only the member can sign its clock: a relay cannot make stability run ahead.
            if head.announcement_verifies(self.room_id or b""):
                self._note_announcement(state, head, events)
            else:
                self.bad_announcements += 1
        return events if defer_stability else [*events, *self._advance_stability()]

    def _would_prove_lie(self, state: _Sender, head: Head) -> bool:
        """Whether ``head`` announces a clock that an entry after it, delivered here, is
        stamped no higher than (cheap: checked before the signature)."""
        seq = head.clock_seq
        return seq < state.delivered and head.clock_lamport >= state.lamports[seq]

    def _caught_lying(self, head: Head, message: Message, events: list[LogEvent]) -> None:
        """Keep the proof, and trust no announcement of the liar any more. Its bound stays
        where the broken promise put it: positions may be stable on it, and its entries
        stamped within it take no place here (see _check)."""
        state = self._senders[message.sender_id]
        state.promise = state.announced = state.pending = state.cover = None
        self._drop_awaiting(message.sender_id, state)
        self._uncovered.pop(message.sender_id, None)
        if message.sender_id not in self._liars:
            lie = ClockLie(head, message)
            self._liars[message.sender_id] = lie
            self._forked.add(message.sender_id)  # (its entries may be placeless on some replicas)
            events.append(lie)

    def _remember_stranger_head(self, head: Head) -> None:
        """Keep the latest head of an id we know nothing of yet (bounded), in case its
        admission is on its way: heads are not all repeated (a peer that left is gone)."""
        heads = self._stranger_heads
        known = heads.pop(head.sender_id, None)
        heads[head.sender_id] = head if known is None or _is_later(head, known) else known
        while len(heads) > MAX_STRANGER_HEADS:
            del heads[next(iter(heads))]  # the oldest

    @staticmethod
    def _is_news(state: _Sender, head: Head) -> bool:
        """Whether an announcement would change what we know (else it need not be verified)."""
        if head.at_ms > state.beat:
            return True  # (alive more recently: worth a verification, see last_beat)
        if head.clock_seq <= state.delivered:
            if state.announced is None or head.clock_lamport > state.announced.clock_lamport:
                return True
            if head.clock_seq != state.delivered:
                return False
            cover = state.cover if state.cover is not None else (state.vector or {})
            return any(seq > cover.get(other, 0) for other, seq in head.delivered)
        return _is_later(head, state.pending)

    def _note_announcement(self, state: _Sender, head: Head, events: list[LogEvent]) -> None:
        seq, lamport = head.clock_seq, head.clock_lamport
        state.beat = max(state.beat, head.at_ms)
        if seq <= state.delivered:
            # Sanity: an announced clock is at least the stamp of the message it follows.
            if seq and lamport < state.lamports[seq - 1]:
                return
            if self._would_prove_lie(state, head):
                # A promise its next entry, delivered here already, broke: proof, not a bound.
                entry = self.get(MessageId(head.sender_id, seq + 1))
                if entry is not None:
                    self._caught_lying(head, entry, events)
                return
            if _is_later(head, state.announced):
                state.announced = head  # (relayed as it is: the newest one we hold)
                self._new_announcements[head.sender_id] = head
            if lamport > state.bound:
                state.bound, state.promise = lamport, head
            if seq == state.delivered and head.delivered:
                self._raise_cover(head.sender_id, state, head)
        elif _is_later(head, state.pending):
            # Newest first: a later seq, or the same seq with a clock that moved on since.
            state.pending = head

    def _raise_cover(self, member: bytes, state: _Sender, head: Head) -> None:
        """What ``member`` had delivered: its last entry's vector, raised by what its
        announcements since say (``head``'s, and those before), counted as far as the
        versions it names are ours. (Cover only grows while its last entry stays the
        same: it starts from that entry's vector.)"""
        old = state.cover if state.cover is not None else (state.vector or {})
        raised: dict[bytes, int] | None = None
        for other, other_seq in head.delivered:
            if other_seq > old.get(other, 0):
                if raised is None:
                    raised = dict(old)
                raised[other] = other_seq
        if raised is None:
            return
        had_limits = state.capped is not None or state.awaiting is not None
        counted = {
            other: self._counted(state, other, old.get(other, 0))
            for other in raised
            if other not in old or raised[other] > old[other]
        }
        state.cover = raised
        self._drop_awaiting(member, state)  # (this one names at least as much)
        if head.seen is None:
            for other in counted:
                self._uncap(state, other)  # (legacy: counted by seq)
        else:
            self._match_announced(member, state, head.delivered, head.seen, counted)
        # Its first uncovered entry stays first unless its own sender is covered further
        # now: every other sender's first uncovered entry can only be later than before.
        # Unless how far its cover counts changed too (versions not all ours, or not
        # checked yet, now or before): then it is found again.
        first = self._uncovered.get(member)
        if first is not None and (
            raised.get(first[1], 0) > old.get(first[1], 0) or had_limits or state.capped or state.awaiting
        ):
            del self._uncovered[member]

    # Versions a cover names -----------------------------------------------------
    #
    # A member's cover (DESIGN.md rule 8: its last entry's vector clock, or its signed
    # announcement) says "I delivered the entries of each sender up to seq n". An author
    # that signed two versions of one entry splits replicas into those holding one and
    # those holding the other; counted by seq, a cover from a replica holding the other
    # version would let us call ours stable while that replica calls its own stable.
    # So a cover also names the versions of what it names (``seen``, a digest of their
    # entry hashes, each of which by the hash chain also fixes every earlier entry of
    # its sender), and counts here only as far as those are the versions we hold: a
    # cover whose digest is not ours counts, for each sender it raised, no further than
    # that member's cover did before. An announcement naming entries not all delivered
    # here yet is checked once they are. (Legacy entries and announcements name no
    # versions: counted by seq, as they were.) The entries named are asked for
    # (take_named_versions): another version of one, with ours, is the proof that
    # expels its author.

    def take_named_versions(self) -> list[MessageId]:
        """Entries a member's cover named in versions not all ours since last asked."""
        named, self._named_versions = list(self._named_versions), {}
        return named

    def _match_entry_versions(self, member: bytes, state: _Sender, message: Message) -> None:
        """``member``'s entry ``message`` is delivered: what its vector clock names replaces
        any announcement of it (and what that left unchecked)."""
        seen = message.seen
        if (
            seen
            and state.awaiting is None
            and state.capped is None
            and self._our_digest(message.deps.items()) == seen
        ):
            return  # (the common case, without a detour: nothing was held back, nothing is)
        old = state.cover if state.cover is not None else (state.vector or {})
        if state.awaiting is not None:
            counted = {
                other: self._counted(state, other, old.get(other, 0)) for other in state.awaiting.counted
            }
            self._drop_awaiting(member, state)
            old = {**old, **counted}  # (what was unchecked counts no further than before)
        raised = {other: self._counted(state, other, old.get(other, 0)) for other in message.deps}
        if message.seen is None:
            for other in raised:
                self._uncap(state, other)  # (legacy: counted by seq)
        elif raised:
            self._match_versions(state, tuple(message.deps.items()), message.seen, raised)

    def _our_digest(self, named: Iterable[tuple[bytes, int]]) -> bytes | None:
        """What ``seen`` says of the entries ``named`` (sender, seq) in the versions we
        hold, or None where that says nothing: an entry not delivered here, or one a link
        does not vouch for (see _vouchable)."""
        senders = self._senders
        ours = []
        for other, seq in named:
            state = senders.get(other)
            if state is None or seq > state.delivered or not self._vouchable(other, state, seq):
                return None
            ours.append((other, seq, self._link_at(other, state, seq)))
        return versions_digest(ours)

    def _match_announced(
        self,
        member: bytes,
        state: _Sender,
        delivered: tuple[tuple[bytes, int], ...],
        seen: bytes,
        counted: dict[bytes, int],
    ) -> None:
        """Check the versions ``member``'s announcement names, or wait until every entry
        it names is delivered here (its cover of each sender in ``counted`` counts that
        far meanwhile)."""
        senders = self._senders
        for other, seq in delivered:
            other_state = senders.get(other)
            if other_state is None or seq > other_state.delivered:
                waiting_on = MessageId(other, seq)
                state.awaiting = _AwaitedCover(delivered, seen, counted, waiting_on)
                self._awaiting_match.setdefault(waiting_on, set()).add(member)
                return
        self._match_versions(state, delivered, seen, counted)

    def _match_versions(
        self, state: _Sender, named: tuple[tuple[bytes, int], ...], seen: bytes, counted: dict[bytes, int]
    ) -> None:
        """Whether the entries ``named`` (all delivered here) are the versions ``seen``
        digests: then the member's cover of each sender in ``counted`` counts in full;
        else no further than ``counted`` says, and each named entry is worth asking for."""
        if self._our_digest(named) == seen:
            for other in counted:
                self._uncap(state, other)
            return
        # Which entry differs the digest does not tell. An honest author's entries exist in
        # one version only, so with one faulty member it is an entry of a sender known
        # here to have signed two versions (or whose chain here branched), if one is
        # named: only its cover counts no further. Else every sender named is suspect.
        suspects = {other for other, _ in named if other in self._forked} or set(counted)
        capped = state.capped if state.capped is not None else {}
        for other, count in counted.items():
            if other in suspects:
                capped[other] = min(count, capped.get(other, count))
        state.capped = capped or None
        for other, seq in named:
            if other in counted and other in suspects:
                self._named_versions[MessageId(other, seq)] = None

    @staticmethod
    def _uncap(state: _Sender, other: bytes) -> None:
        if state.capped is not None:
            state.capped.pop(other, None)
            if not state.capped:
                state.capped = None

    def _counted(self, state: _Sender, other: bytes, covered: int) -> int:
        """How far ``state``'s member's cover of ``other``, ``covered`` by seq, counts here:
        as far as it named our versions, and at least as far as closed epochs settled
        (positions there are stable whatever anyone names): all of it if ``other`` is no
        member of the open epoch (none of its entries there has a place)."""
        counted = covered
        if state.capped is not None and (cap := state.capped.get(other)) is not None:
            counted = min(counted, cap)
        if state.awaiting is not None and (count := state.awaiting.counted.get(other)) is not None:
            counted = min(counted, count)
        if counted < covered:
            if self.roster.epochs and other not in self.roster.current.members:
                return covered  # (a non-member's entries here are all settled, or void)
            counted = min(covered, max(counted, self._settled.get(other, 0)))
        return counted

    def _drop_awaiting(self, member: bytes, state: _Sender) -> None:
        awaited = state.awaiting
        if awaited is None:
            return
        state.awaiting = None
        waiting = self._awaiting_match.get(awaited.waiting_on)
        if waiting is not None:
            waiting.discard(member)
            if not waiting:
                del self._awaiting_match[awaited.waiting_on]

    def _match_awaited(self, message: Message) -> None:
        """``message`` is delivered: the announcements that waited for it are checked
        again (or wait for the next entry they name that is not here yet)."""
        for member in self._awaiting_match.pop(message.id, ()):
            state = self._senders.get(member)
            awaited = state.awaiting if state is not None else None
            if state is None or awaited is None:
                continue
            state.awaiting = None
            self._match_announced(member, state, awaited.delivered, awaited.seen, awaited.counted)
            self._uncovered.pop(member, None)

    # Sending ------------------------------------------------------------------
    def compose(
        self,
        identity: Identity,
        *,
        name: str,
        text: str,
        sent_at_ms: int,
        kind: EntryKind = EntryKind.TEXT,
        change: Change | None = None,
        flush: Flush | None = None,
    ) -> Message:
        """Create and sign this replica's next entry (does not insert it).

        Raises :class:`NotAMember` unless we are an active member (a newcomer's peer
        queues what is typed until its admission), and :class:`OwnHistoryIncomplete`
        while some of our own earlier entries are held here, not delivered, or while a
        clock we announced before is ahead of ours.
        """
        state = self._senders.get(identity.sender_id) or _Sender()
        # Only our own signed messages prove our history is incomplete here. ``known`` is
        # not proof: any neighbour can raise it with a head or a vector clock and so mute us.
        if state.held:
            raise OwnHistoryIncomplete("our own earlier messages are not all here yet; wait for repair")
        if self.promised_ahead(identity.sender_id):
            # A clock we announced before (a copy of our data from before it, restored)
            # is ahead of ours: an entry now would break that promise, and be taken for a
            # lie. What made our clock that high is in the room; repair brings it.
            raise OwnHistoryIncomplete("a clock we announced before is ahead of ours; wait for repair")
        reopening = kind in VOTES and self.roster.reopening(identity.sender_id)  # (see membership)
        if self.room_id is None or not (self.is_member(identity.sender_id) or reopening):
            raise NotAMember("not a member of the room (yet): wait for admission")

        previous = state.vector or {}
        deps = {
            s: st.delivered
            for s, st in self._senders.items()
            if s != identity.sender_id and st.delivered > previous.get(s, 0)
        }
        if change is not None and change.removed:
            change = dataclasses.replace(change, tails=self._tails(change.removed))
        if flush is not None and kind is EntryKind.FLUSH:
            proposed = self.get(flush.change)
            if proposed is not None and proposed.change is not None and proposed.change.removed:
                flush = dataclasses.replace(flush, tails=self._tails(proposed.change.removed))
        return Message.create(
            identity,
            seq=state.delivered + 1,
            lamport=self._clock + 1,
            sent_at_ms=sent_at_ms,
            name=name,
            text=text,
            deps=deps,
            room_id=self.room_id,
            kind=kind,
            change=change,
            flush=flush,
            previous=state.link,
            links=self.links_of(deps),
        )

    # Receiving ----------------------------------------------------------------
    def receive(
        self,
        message: Message,
        *,
        trusted: bool = False,
        defer_stability: bool = False,
        placeless: bool = False,
        placed_late: bool = False,
    ) -> Receipt:
        """Take one message from anywhere (the network, the store, ourselves).

        ``trusted`` skips signature verification, for messages this peer verified
        before it stored them, and for messages :func:`p2pchat.chain.authenticate`
        found authentic; anything else from the network must leave it False.
        ``defer_stability`` leaves the stable prefix alone: a caller taking a batch
        calls :meth:`advance_stability` once at the end instead of once a message.
        ``placeless``, for an entry restored from a store that held it without a place
        (``Entombed.placeless``), holds it so again: whether it broke a clock promise we
        relied on is this replica's history, not the log's. ``placed_late``, for an entry
        restored from a store that held it placed below positions already stable
        (``Delivered.placed_late``), marks it so again: a restarted replica no longer
        knows which positions it held stable before, and its answers must go on naming
        that entry as not stable (see _tails).
        """
        room_id = self.room_id
        if room_id is None:
            return Receipt(ReceiptStatus.IGNORED)  # we do not know which room yet
        state = self._senders.get(message.sender_id)
        if self._wanted_versions and message.id in self._wanted_versions:
            taken = self._take_wanted_version(message, room_id, trusted, defer_stability)
            if taken is not None:
                return taken
        if state is not None:
            if message.seq <= state.delivered or message.seq in state.held:  # (else: new here)
                existing = self.get(message.id)
                if existing is not None:
                    return self._same_id(existing, message, room_id, trusted, defer_stability)
            if state.blocked is not None:
                return self._blocked_on(state, message, room_id, trusted, defer_stability)
        if not trusted and not message.verify(room_id):
            # Not recorded against the sender: anyone can send garbage in its name.
            return Receipt(ReceiptStatus.REFUSED, (Refused(message, Refusal.BAD_SIGNATURE),))
        delivered = state.delivered if state is not None else 0
        if message.seq > delivered + self.config.max_ahead:
            return Receipt(ReceiptStatus.IGNORED)
        if (
            message.seq > delivered + 1
            and self._held_bytes + len(message.payload) > self.config.max_held_bytes
        ):
            return Receipt(ReceiptStatus.IGNORED)  # full: repair brings it again later
        if state is None:
            state = self._senders.setdefault(message.sender_id, _Sender())
        if placeless:
            self._placeless.add(message.id)
        if placed_late:
            self._placed_late.add(message.id)
        state.held[message.seq] = message
        self._held_bytes += len(message.payload)
        state.known = max(state.known, message.seq)
        events: list[LogEvent] = []
        self._deliver_ready([message.sender_id], events)
        if not defer_stability:
            events.extend(self._advance_stability())
        # Refused on arrival (its stamp failed the checks): not worth forwarding.
        refused = any(isinstance(e, Refused) and e.message is message for e in events)
        return Receipt(ReceiptStatus.REFUSED if refused else ReceiptStatus.NEW, tuple(events))

    def receive_many(self, messages: Iterable[Message]) -> list[tuple[Message, Receipt]]:
        return [(m, self.receive(m)) for m in messages]

    def _same_id(
        self, existing: Message, message: Message, room_id: bytes, trusted: bool, defer_stability: bool
    ) -> Receipt:
        if existing.payload == message.payload:
            return Receipt(ReceiptStatus.DUPLICATE)
        if not trusted and not message.verify(room_id):
            return Receipt(ReceiptStatus.REFUSED, (Refused(message, Refusal.BAD_SIGNATURE),))
        state = self._senders[existing.sender_id]
        if existing.seq == state.delivered + 1 and self._gives_way(message, state):
            return self._replace_held(existing, message, state, defer_stability)
        evidence = Equivocation(kept=existing, rejected=message)
        if not self._keep_evidence(evidence):
            # Known already (neighbours pass a proof on to every new link): no news.
            return Receipt(ReceiptStatus.REFUSED, (Refused(message, Refusal.EQUIVOCATION),))
        events: list[LogEvent] = [evidence, Refused(message, Refusal.EQUIVOCATION)]
        self._retry_after_fork(message.id, events)
        return Receipt(ReceiptStatus.REFUSED, tuple(events))

    def _blocked_on(
        self, state: _Sender, message: Message, room_id: bytes, trusted: bool, defer_stability: bool
    ) -> Receipt:
        """``message`` comes from an author whose chain is blocked here by the refusal of
        one of its entries. Refused, unless it is another version of that very entry:
        then the author signed two (the proof of it), and if this one passes the checks,
        it takes the place, and the chain goes on from it.

        The refusal depended on nothing but the refused entry and its causal past: every
        replica refuses that version, so one that passes is the entry every replica takes
        (those that never saw the refused one, and those that see it later, as evidence).
        Refusing it here too would make this replica refuse what everyone else delivered,
        and hold every honest entry that depends on it, for good. (A fork of the chain, a
        version going on from another predecessor, is left to _branch.)"""
        refused = state.refused
        if (
            refused is None
            or state.blocked is Refusal.BROKEN_CHAIN
            or refused.seq != message.seq
            or refused.payload == message.payload
        ):
            return Receipt(ReceiptStatus.REFUSED, (Refused(message, Refusal.SENDER_BLOCKED),))
        if not trusted and not message.verify(room_id):
            return Receipt(ReceiptStatus.REFUSED, (Refused(message, Refusal.BAD_SIGNATURE),))
        events: list[LogEvent] = []
        evidence = Equivocation(kept=message, rejected=refused)
        if self._keep_evidence(evidence):
            events.append(evidence)
        if isinstance(self._check(message, state), Refusal):
            events.append(Refused(message, Refusal.SENDER_BLOCKED))
            return Receipt(ReceiptStatus.REFUSED, tuple(events))
        self._unblock(state, message)
        self._deliver_ready([message.sender_id], events)
        if not defer_stability:
            events.extend(self._advance_stability())
        return Receipt(ReceiptStatus.NEW, tuple(events))

    def _gives_way(self, message: Message, state: _Sender) -> bool:
        """Whether ``message``, another version of the entry next in its author's chain
        here (held, waiting), replaces it: it can be delivered now; it is not a version
        we gave up before (an equivocator cannot make us swap back and forth: each swap
        keeps one more version, at most MAX_VERSIONS_KEPT); and both are chat lines (the
        author's entries after a swapped membership entry would be a branch never taken,
        see _branch_versions)."""
        if message.entry_hash() in self._other_versions.get(message.id, {}):
            return False
        if message.kind is not EntryKind.TEXT or state.held[message.seq].kind is not EntryKind.TEXT:
            return False
        return isinstance(self._check(message, state), _Verdict)

    def _replace_held(
        self, held: Message, message: Message, state: _Sender, defer_stability: bool
    ) -> Receipt:
        """Another version of the entry next in its author's chain here, which waits (for
        a dependency), that can be delivered now: it is held instead, and delivered, and
        the first becomes the evidence. Which version a replica keeps is its own affair
        either way, but the first may wait for good: it can depend on an honest entry
        that replied to the author's entry of that seq as its writer saw it, the other
        version (then neither would ever be delivered here). See _gives_way."""
        evidence = Equivocation(kept=message, rejected=held)
        if not self._keep_evidence(evidence):
            return Receipt(ReceiptStatus.REFUSED, (Refused(message, Refusal.EQUIVOCATION),))
        self._hold_instead(state, held, message)
        events: list[LogEvent] = [evidence, Refused(held, Refusal.EQUIVOCATION)]
        self._deliver_ready([message.sender_id], events)
        self._retry_after_fork(message.id, events)
        if not defer_stability:
            events.extend(self._advance_stability())
        # (Refused, as any equivocation: the proof travels, and the node acts on it.)
        return Receipt(ReceiptStatus.REFUSED, tuple(events))

    def _swap_in_a_ready_version(self, waiting: Message, state: _Sender, events: list[LogEvent]) -> bool:
        """For ``waiting``, next in its author's chain here and waiting for a dependency:
        if we hold another version of it as evidence that can be delivered now, hold that
        one instead (``waiting`` becomes the evidence) and say so.

        The other half of _gives_way, for a version that could not take the place when it
        came: it came while ``waiting`` was held behind a gap, or it was waiting itself
        then (its probe registered its author as a waiter on what it lacked, so the
        author's chain is checked again when that comes). ``waiting`` may wait for good:
        on an honest reply to the other version. Chat lines only, as there; the version
        taken is delivered at once, so nothing swaps back."""
        versions = self._other_versions.get(waiting.id)
        if not versions or waiting.kind is not EntryKind.TEXT:
            return False
        ready = [
            link
            for link, version in versions.items()
            if version.kind is EntryKind.TEXT and isinstance(self._check(version, state), _Verdict)
        ]
        if not ready:
            return False
        version = versions.pop(ready[0])  # (held now; its slot goes to the one it replaces)
        versions[waiting.entry_hash()] = waiting
        self._hold_instead(state, waiting, version)
        self._relabel_evidence(kept=version, given_up=waiting)
        events.extend((Equivocation(kept=version, rejected=waiting), Refused(waiting, Refusal.EQUIVOCATION)))
        return True

    def _unblock(self, state: _Sender, message: Message) -> None:
        """The author's chain, blocked by a refused entry, goes on from ``message`` (an
        entry in its place, or the one refused, that passes the checks now): held, to be
        delivered next."""
        state.blocked = state.retry = state.refused = None
        state.held[message.seq] = message
        self._held_bytes += len(message.payload)
        state.known = max(state.known, message.seq)

    def _hold_instead(self, state: _Sender, held: Message, version: Message) -> None:
        """Hold ``version`` where ``held``, another version of the same entry, was."""
        state.held[version.seq] = version
        self._held_bytes += len(version.payload) - len(held.payload)

    def _relabel_evidence(self, kept: Message, given_up: Message) -> None:
        """The proofs that named ``given_up`` as the version we keep name ``kept`` now
        (each is still two versions its author signed; which one we keep is ours to say)."""
        for index, proof in enumerate(self.evidence):
            if proof.kept.payload != given_up.payload:
                continue
            other = given_up if proof.rejected.payload == kept.payload else proof.rejected
            self._evidence_pairs.discard((proof.kept.id, proof.rejected.payload))
            self._evidence_pairs.add((kept.id, other.payload))
            self.evidence[index] = Equivocation(kept=kept, rejected=other)

    def _keep_evidence(self, proof: Equivocation) -> bool:
        """Add ``proof`` to ``evidence`` unless the same pair is there already, or we
        hold MAX_VERSIONS_KEPT versions of that entry already: an equivocator may sign
        any number of them, and one pair is proof enough (the first few are kept for
        the stamps of honest entries that depend on them)."""
        pair = (proof.kept.id, proof.rejected.payload)
        if pair in self._evidence_pairs or not self._keep_version(proof.rejected):
            return False
        self._evidence_pairs.add(pair)
        self.evidence.append(proof)
        return True

    def _keep_version(self, version: Message, capped: bool = True) -> bool:
        """Hold ``version``, another version of an entry we kept, unless we hold
        MAX_VERSIONS_KEPT of them already (``capped``); whether we hold it now. The
        version we delivered is no "other" one (a proof may name it as such: see
        _swap_in_a_ready_version)."""
        if self._delivered_as(version):
            return True
        versions = self._other_versions.setdefault(version.id, {})
        self._forked.add(version.sender_id)
        link = version.entry_hash()
        if link not in versions:
            if capped and len(versions) >= MAX_VERSIONS_KEPT:
                return False
            versions[link] = version
        return True

    def _delivered_as(self, version: Message) -> bool:
        """Whether ``version`` is the version of its entry we delivered."""
        state = self._senders.get(version.sender_id)
        if state is None or version.seq > state.delivered:
            return False
        ours = self.get(version.id)
        return ours is not None and ours.payload == version.payload

    @property
    def other_versions(self) -> list[Message]:
        """The other versions of forked entries we hold (what a store keeps, so that a
        restart judges the entries going on from them as before: see restore_versions)."""
        return [version for versions in self._other_versions.values() for version in versions.values()]

    def restore_versions(self, versions: Iterable[Message]) -> None:
        """Take back other versions of forked entries a store kept (``other_versions``,
        verified when they were stored), before the entries: an equivocator's entries
        that went on from one of them are judged from it again (see _branch). The proofs
        come back after the entries (restore_proofs)."""
        for version in versions:
            # (Uncapped: a store holds one more than the cap where a version we kept was
            # given up for another, see _swap_in_a_ready_version; it is dropped again when
            # the entry is delivered, see _advance_chain.)
            self._keep_version(version, capped=False)

    def _stamp_fits_a_fork(self, message: Message, previous_lamport: int) -> bool:
        """Whether ``message``'s stamp is exact for another version of an entry it
        depends on, one its author signed twice (DESIGN.md rule 4 with a fork).

        An honest author that saw the version we did not keep stamped its entry from
        that version's stamp: refusing it would block an honest member for its sender's
        lie, and only at the replicas that kept the other version. Any version of the
        forked entry will do (each is validly signed by its author; we cannot tell which
        one the author saw); every other dependency counts with the one stamp it has.
        """
        stamps: list[list[int]] = []
        for dep_sender, dep_seq in message.deps.items():
            kept = self._senders[dep_sender].lamports[dep_seq - 1]
            versions = self._other_versions.get(MessageId(dep_sender, dep_seq), {})
            others = {version.lamport for version in versions.values()} - {kept}
            stamps.append([kept, *others])
        if all(len(choice) == 1 for choice in stamps):
            return False
        combinations = islice(product(*stamps), MAX_STAMP_COMBINATIONS)
        return any(message.lamport == max(previous_lamport, *combination) + 1 for combination in combinations)

    def _retry_after_fork(self, fork: MessageId, events: list[LogEvent]) -> None:
        """A second version of ``fork`` came to light: an author blocked for the stamp of
        an entry that depends on it may have stamped it from that version, and the
        author of ``fork`` may have gone on from that version. Check that entry again;
        if it passes now, the author is no longer blocked (its later entries, refused
        meanwhile, come back by repair: its heads name them)."""
        for sender_id, state in list(self._senders.items()):  # (delivering may add senders)
            message = state.retry
            if message is None:
                continue
            goes_on = sender_id == fork.sender_id and message.seq > fork.seq
            if not goes_on and message.deps.get(fork.sender_id) != fork.seq:
                continue
            if message.seq != state.delivered + 1 or isinstance(self._check(message, state), Refusal):
                continue
            self._unblock(state, message)
            self._deliver_ready([sender_id], events)

    def restore_proofs(self, proofs: Iterable[Equivocation | ClockLie]) -> None:
        """Take back proofs kept across a restart (the caller checked them again, see
        :func:`p2pchat.evidence.proof_from`), after the entries are restored: each
        equivocation joins ``evidence``; a clock lie counts as when it was caught (the
        liar's announcements count no more, our heads relay the promise it broke)."""
        for proof in proofs:
            if isinstance(proof, Equivocation):
                if self._delivered_as(proof.rejected):
                    # (Stored before a swap: its "kept" is the version we gave up.)
                    proof = Equivocation(kept=proof.rejected, rejected=proof.kept)
                self._keep_evidence(proof)
                continue
            liar = proof.message.sender_id
            if liar in self._liars:
                continue
            if liar in self._senders:
                self._caught_lying(proof.announcement, proof.message, [])
            else:
                self._liars[liar] = proof  # (none of its entries here: nothing to relay it with)

    # Delivery -----------------------------------------------------------------
    def _deliver_ready(self, queue: list[bytes], events: list[LogEvent]) -> None:
        """Deliver every held message that has become deliverable, in causal order."""
        while queue:
            sender_id = queue.pop()
            state = self._senders[sender_id]
            message = state.held.get(state.delivered + 1)
            if message is None or state.blocked is not None:
                continue
            verdict = self._check(message, state)
            if isinstance(verdict, _Wait):
                if self._other_versions and self._swap_in_a_ready_version(message, state, events):
                    queue.append(sender_id)  # (held instead: delivered on the next turn)
                continue
            if isinstance(verdict, Refusal):
                self._block(state, message, verdict, events)
                continue
            del state.held[message.seq]
            self._held_bytes -= len(message.payload)
            if verdict.valid and verdict.placed and not self._bookkeeping(message, verdict.epoch):
                self._deliver(message, state, verdict, events)
            else:
                self._entomb(message, state, verdict, events)
            queue.append(sender_id)
            self._wake_waiters(sender_id, message.seq, queue)

    def _bookkeeping(self, message: Message, epoch: int) -> bool:
        """Whether a valid entry takes no place in the log: a COMMIT (see _entomb), or a
        vote of a reopening (written in an epoch that is all stable already, see
        p2pchat.membership)."""
        return message.kind is EntryKind.COMMIT or self.roster.is_vote_after_exit(message, epoch)

    def _check(self, message: Message, state: _Sender) -> Refusal | _Wait | _Verdict:
        """The checks of rules 4 and 10, run when the message is next in its sender's chain.

        Returns the message's full vector clock, epoch and validity when it can be
        delivered (an invalid entry of a member, past or present, is delivered as a
        tombstone: a seq is never reused, and later entries may depend on it),
        ``_WAIT`` when a dependency is still missing, or a Refusal. Every verdict
        depends only on the message and its causal past, so every replica reaches
        the same one.
        """
        if message.previous != state.link:
            # Both entries are the author's (each signed, or linked to a signed one): it
            # signed another entry with this one's predecessor's seq. Unless we hold that
            # other entry, its chain ends here; if we do, it is judged from there.
            branch = self._branch(message, state)
            if not isinstance(branch, _Sender):
                return branch
            state = branch
        previous_lamport = state.last_lamport
        if message.lamport <= previous_lamport:
            return Refusal.STAMP_NOT_INCREASING
        if message.kind is EntryKind.GENESIS:
            return self._check_genesis(message)
        full = dict(state.vector or {})
        expected = previous_lamport
        for dep_sender, dep_seq in message.deps.items():
            if dep_sender == message.sender_id or dep_seq <= full.get(dep_sender, 0):
                return Refusal.DEPS_REGRESS
            full[dep_sender] = dep_seq
            dep_state = self._senders.get(dep_sender)
            if dep_state is None or dep_state.delivered < dep_seq:
                self._wait_for(dep_sender, dep_seq, message.sender_id)
                return _WAIT
            expected = max(expected, dep_state.lamports[dep_seq - 1])
        # The sender's clock was the largest stamp it had delivered: its own previous
        # message and everything its vector clock names. Anything else is forged.
        if message.lamport != expected + 1 and not self._stamp_fits_a_fork(message, previous_lamport):
            return Refusal.FORGED_STAMP
        epoch, problem = self._judge(message, state, full)
        if problem is None:
            # A stamp within the author's bound here (a clock it announced, which we may
            # have called positions stable on) could land among stable positions: the
            # entry is valid (the roster records it as every replica does) but takes no
            # place here. An honest author stamps every entry above every clock it
            # announced, so only an entry that broke a promise we relied on comes here.
            placed = message.lamport > state.bound and not (self._placeless and message.id in self._placeless)
            return _Verdict(full, epoch, True, placed)
        if not self.roster.was_member_by(message.sender_id, epoch):
            # A stranger where the entry stands (every replica agrees: it is a fact of
            # the entry's causal past): never held, a thousand throwaway keys cost
            # nothing to keep. A member's invalid entry is a tombstone instead.
            return Refusal.NOT_A_MEMBER
        return _Verdict(full, epoch, False)

    def _branch(self, message: Message, state: _Sender) -> _Sender | Refusal | _Wait:
        """For an entry going on from a version of its predecessor that we did not keep,
        but hold as evidence (an equivocator's other branch): its author's state as a
        replica that kept that version has it -- seq, stamp, full vector clock and epoch
        after that version -- checked as that replica checked it. (Computed from the
        entries alone, so every replica judges the entry the same; ``bound`` stays ours:
        see _check.) A Refusal if we hold no such version, or it would have been refused
        there, or a fork on the way is one the rosters could disagree on (see
        _branch_versions); _WAIT if a dependency of it is not delivered here yet."""
        branch = self._branch_versions(message, state)
        if not isinstance(branch, list):
            return Refusal.BROKEN_CHAIN
        if len(state.branch_vectors or ()) >= MAX_BRANCHES:
            return Refusal.BROKEN_CHAIN
        base = self._state_at(message.sender_id, state, message.seq - 1 - len(branch))
        for version in reversed(branch):
            verdict = self._check(version, base)
            if isinstance(verdict, _Wait):
                return verdict
            if isinstance(verdict, Refusal):
                return Refusal.BROKEN_CHAIN
            base = _Sender(
                delivered=version.seq,
                lamports=[version.lamport],
                vector=verdict.vector,
                link=version.entry_hash(),
                epoch=verdict.epoch,
                bound=state.bound,
            )
        return base

    def _branch_versions(self, message: Message, state: _Sender) -> list[Message] | MessageId | None:
        """The other versions ``message`` goes on from, newest first, back to the chain
        we kept; or the id of the first one we lack; None if the branch cannot be taken.

        Only forks of chat lines count: where a version (ours or the other) is a
        membership entry, the rosters of the replicas that kept different versions
        differ, and no entry after it can be judged the same on both; such a branch
        stays refused, as any broken chain."""
        sender = message.sender_id
        branch: list[Message] = []
        link, seq = message.previous, message.seq - 1
        while seq > 0:
            version = self._other_versions.get(MessageId(sender, seq), {}).get(link)
            if version is None:
                return MessageId(sender, seq)
            ours = self.get(version.id)
            if version.kind is not EntryKind.TEXT or ours is None or ours.kind is not EntryKind.TEXT:
                return None
            branch.append(version)
            link, seq = version.previous, seq - 1
            if link == self._entry_hash_at(sender, state, seq):
                return branch  # back on the chain we kept
        return None  # (an entry 1 that names a predecessor: nothing can explain it)

    def missing_version(self, message: Message) -> MessageId | None:
        """For an entry refused for naming a predecessor we do not hold (BROKEN_CHAIN):
        the entry of its author whose other version it goes on from, which we lack (a
        neighbour holding that chain has it); None if we lack none."""
        state = self._senders.get(message.sender_id)
        if state is None or message.seq != state.delivered + 1:
            return None
        found = self._branch_versions(message, state)
        return found if isinstance(found, MessageId) and self._other_versions_lacking(found) else None

    def missing_version_for(self, sender_id: bytes) -> MessageId | None:
        """missing_version of the entry ``sender_id``'s chain here is blocked on, if any."""
        state = self._senders.get(sender_id)
        if state is None or state.blocked is not Refusal.BROKEN_CHAIN or state.retry is None:
            return None
        return self.missing_version(state.retry)

    def _other_versions_lacking(self, entry: MessageId) -> bool:
        """Whether we may still take another version of ``entry`` (MAX_VERSIONS_KEPT)."""
        return len(self._other_versions.get(entry, ())) < MAX_VERSIONS_KEPT

    def _state_at(self, sender: bytes, state: _Sender, seq: int) -> _Sender:
        """``sender``'s state after its delivered entry ``seq`` (a branch's base, see
        _branch): its stamp, its full vector clock (the deltas of its entries summed up,
        from the last one that went on from another branch), our bound on it; its epoch
        is left at 0, a floor (an entry's epoch follows from its vector clock). The
        vector is remembered until the sender's next delivery: an entry waiting at the
        head of a branch is checked again at each arrival of its author's."""
        cached = state.base
        if cached is not None and cached[:2] == (seq, state.delivered):
            vector = cached[2]
        else:
            start, vector = 0, {}
            for branched, full in (state.branch_vectors or {}).items():
                if start < branched <= seq:
                    start, vector = branched, full
            vector = dict(vector)
            for number in range(start + 1, seq + 1):
                entry = self.get(MessageId(sender, number))
                assert entry is not None  # (delivered: held as an entry or a tombstone)
                vector.update(entry.deps.items())  # (each delta only raises the clock)
            state.base = (seq, state.delivered, vector)
        link = self._entry_hash_at(sender, state, seq)
        stamps = [state.lamports[seq - 1]] if seq else []
        return _Sender(delivered=seq, lamports=stamps, vector=dict(vector), link=link, bound=state.bound)

    def _entry_hash_at(self, sender: bytes, state: _Sender, seq: int) -> bytes:
        """The entry hash of ``sender``'s delivered entry ``seq`` (NO_PREVIOUS for 0)."""
        if seq == state.delivered:
            return state.link
        if not seq:
            return NO_PREVIOUS
        entry = self.get(MessageId(sender, seq))
        assert entry is not None
        return entry.entry_hash()

    def _judge(self, message: Message, state: _Sender, full: dict[bytes, int]) -> tuple[int, str | None]:
        """The roster's verdict on ``message`` (rule 10), asked once per roster change
        and author for a run of chat lines (see _Sender.judged, set on delivery: a check
        may be a probe, see _gives_way and _retry_after_fork).

        A chat line's verdict in the last epoch depends only on the roster and on
        whether its author exited the epoch before it. So when the author's previous
        entry was a valid chat line of the last epoch and the roster has recorded
        nothing since (an exit would be recorded), this one is valid there too.
        """
        version = self._roster_version
        if message.kind is EntryKind.TEXT and state.judged == version:
            if _CROSS_CHECK:
                assert self.roster.judge(message, full, since=state.epoch) == (state.epoch, None)
            return state.epoch, None
        return self.roster.judge(message, full, since=state.epoch)

    def _check_genesis(self, message: Message) -> Refusal | _Verdict:
        if message.seq != 1 or message.lamport != 1 or message.deps or message.room_id() != self.room_id:
            return Refusal.NOT_OUR_GENESIS
        return _Verdict({}, 0, True)

    def _wait_for(self, dep_sender: bytes, dep_seq: int, waiter: bytes) -> None:
        # Being named in a vector clock makes nobody a member (rule 10); the entry just waits.
        dep_state = self._senders.setdefault(dep_sender, _Sender())
        dep_state.known = max(dep_state.known, dep_seq)
        if (dep_sender, dep_seq, waiter) in self._wait_entries:
            return  # already waiting for exactly this: a second entry would wake it twice
        self._wait_entries.add((dep_sender, dep_seq, waiter))
        heapq.heappush(self._waiting.setdefault(dep_sender, []), (dep_seq, waiter))

    def _wake_waiters(self, sender_id: bytes, seq: int, queue: list[bytes]) -> None:
        waiting = self._waiting.get(sender_id)
        while waiting and waiting[0][0] <= seq:
            dep_seq, waiter = heapq.heappop(waiting)
            self._wait_entries.discard((sender_id, dep_seq, waiter))
            queue.append(waiter)

    def _block(self, state: _Sender, message: Message, reason: Refusal, events: list[LogEvent]) -> None:
        """A refused message at the head of a chain blocks the rest of that chain (FIFO)."""
        state.blocked, state.refused = reason, message
        state.retry = message if reason in (Refusal.FORGED_STAMP, Refusal.BROKEN_CHAIN) else None
        self._held_bytes -= sum(len(m.payload) for m in state.held.values())
        state.held.clear()
        events.append(Refused(message, reason))

    def _advance_chain(
        self, message: Message, state: _Sender, verdict: _Verdict, events: list[LogEvent]
    ) -> None:
        promise = state.promise
        if message.previous != state.link:  # (on another branch: see _branch)
            if state.branch_vectors is None:
                state.branch_vectors = {}
                self._forked.add(message.sender_id)
            state.branch_vectors[message.seq] = verdict.vector
        state.delivered = message.seq
        state.link = message.entry_hash()
        state.lamports.append(message.lamport)
        if self._other_versions and (versions := self._other_versions.get(message.id)):
            versions.pop(state.link, None)  # (kept now, after a swap or a restart: not "other")
        if message.lamport > state.bound:
            state.bound, state.promise = message.lamport, None
        elif promise is not None:
            # Held all the same (every replica must hold the same entries, and most never
            # saw the promise, so they show it), here without a place (see _check): the
            # node expels the member for it.
            self._caught_lying(promise, message, events)
        if message.deps or state.capped or state.awaiting:
            self._match_entry_versions(message.sender_id, state, message)
        state.vector = verdict.vector
        state.cover = None  # this entry's vector is newer than any announcement before it
        self._note_uncovered(message)
        if self._awaiting_match:
            self._match_awaited(message)
        state.epoch = verdict.epoch
        settled = (
            verdict.valid and message.kind is EntryKind.TEXT and verdict.epoch == len(self.roster.epochs) - 1
        )
        state.judged = self._roster_version if settled else -1
        self._clock = max(self._clock, message.lamport)

    def _entomb(self, message: Message, state: _Sender, verdict: _Verdict, events: list[LogEvent]) -> None:
        """Deliver an invalid entry of a member, a COMMIT, or a placeless entry (see _check)
        as a tombstone: it takes no place in the log, but later entries may depend on it
        (rule 10), and a valid one counts in the roster as everywhere. A COMMIT is
        bookkeeping, always in this form: which COMMITs a replica holds when it decides
        differs from replica to replica, so none of them may take a place."""
        self._advance_chain(message, state, verdict, events)
        self._tombstones[message.id] = message
        decision = None
        if verdict.valid:
            decision = self._record_valid(message, verdict.vector, verdict.epoch)
        else:
            self._roster_version += 1
            self.roster.record_void(message, verdict.vector, verdict.epoch)
        self._mark_concurrency(message, verdict.vector, events)
        self._use_pending_announcement(state, events)
        placeless = verdict.valid and not verdict.placed and message.kind is not EntryKind.COMMIT
        if placeless:
            self._placeless.add(message.id)
        events.append(Entombed(message, placeless))
        if decision is not None:
            self._close_epoch(verdict.epoch, decision, events)

    def _use_pending_announcement(self, state: _Sender, events: list[LogEvent]) -> None:
        """An announcement that came before the entry it follows counts from now on."""
        if state.pending is not None and state.pending.clock_seq <= state.delivered:
            pending, state.pending = state.pending, None
            self._note_announcement(state, pending, events)

    def _deliver(self, message: Message, state: _Sender, verdict: _Verdict, events: list[LogEvent]) -> None:
        self._advance_chain(message, state, verdict, events)
        vector = verdict.vector
        key = message.key
        self._by_key[key] = message
        self._order.add(key)
        index: int = self._order.bisect_left(key)
        if index <= self._stable_count:
            self._first_open = None
        placed_late = index < self._stable_count
        if placed_late:
            # Only possible when an announcement lied (rule 8).
            self.stability_violations += 1
            self._stable_count += 1
            self._placed_late.add(message.id)
        self.text_count += message.is_text
        decision = self._record_valid(message, vector, verdict.epoch)
        concurrent = self._mark_concurrency(message, vector, events)
        self._use_pending_announcement(state, events)
        events.append(Delivered(message, index, concurrent, placed_late))
        if decision is not None:
            self._close_epoch(verdict.epoch, decision, events)

    def _record_valid(self, message: Message, vector: dict[bytes, int], epoch: int) -> Decision | None:
        """What a valid entry tells the roster (with a place in the log or without)."""
        if message.kind is EntryKind.TEXT:
            self.roster.note_name(message.sender_id, message.name)
            return None
        self._roster_version += 1
        decision = self.roster.record(message, vector, epoch)
        # The founder or the members admitted may have announced their clocks
        # before we knew them: use what we kept of that now.
        for member in _announcing(message, decision):
            early = self._stranger_heads.pop(member, None)
            if early is not None:
                self.observe_head(early, defer_stability=True)
        return decision

    def _close_epoch(self, epoch: int, decision: Decision, events: list[LogEvent]) -> None:
        """A change was decided: void what is above the cuts; the epoch is all stable."""
        voided: list[Message] = []
        for member, cut in decision.cuts.items():
            state = self._senders.get(member)
            if state is None:
                continue
            for seq in range(cut + 1, state.delivered + 1):
                message = self._by_key.get(MessageKey(state.lamports[seq - 1], member))
                if message is not None and message.seq == seq and self._unplace(message):
                    voided.append(message)  # (else a tombstone already)
        shown = self._show_decided_versions(decision, voided)
        if voided:
            events.append(Voided(tuple(voided)))
        events.extend(self._place_decided(v) for v in shown if self._placeable(v))
        events.append(Decided(epoch, decision))
        # Every entry now in the log belongs to a closed epoch (the next epoch's entries
        # follow every answer of the decision just completed).
        self._closed_end = self._order[-1] if self._order else None
        self._closed_count = self._closed_positions()
        # So covers that named another version of an entry here no longer hold back what
        # comes after it: each sender's entries up to its cut are settled (a removed
        # member's are all settled, or void), and a cover counts at least that far (see
        # _counted). Without this, a cover naming a version we do not hold would hold
        # every later position back for good.
        for member, cut in decision.cuts.items():
            state = self._senders.get(member)
            settled = max(cut, state.delivered) if state is not None and member in decision.removed else cut
            self._settled[member] = max(self._settled.get(member, 0), settled)
        limited = [s for s in self._senders.values() if s.capped is not None or s.awaiting is not None]
        for state in limited:
            state.capped = None
        if limited:
            self._uncovered.clear()  # (what counts changed: the cuts settled more)

    # A replica that answered no removal (away, crashed, not yet admitted) can hold an
    # entry of the removed member in another version than the one every answer named
    # (the member signed two: its first version reached this replica, the other the
    # rest of the room). The cut keeps that entry, and the decision closes its epoch:
    # all stable. Kept as it is, this replica would show its version, stable, where
    # every answerer shows the other. So it shows the answers' version in its place:
    # the one it holds as evidence, or, until it comes (asked for, see
    # wanted_versions), none, and no position from the lowest key it could have on is
    # stable. Its own version stays what its copy of the chain went on from (the
    # author's later entries here are above the cut or replaced as well), out of the
    # log. None of these positions was stable here before: the answerers' covers named
    # the other version (see _match_versions), unless the author's chain here went
    # past the cover's digest unnoticed (older than the tails).

    def _show_decided_versions(self, decision: Decision, voided: list[Message]) -> list[Message]:
        """Per removed member, each entry up to its cut that the answers named in another
        version than the one we show (or named with a place where we hold it without
        one): ours leaves the log (into ``voided``); the versions to place instead are
        returned, and those we lack are wanted."""
        shown: list[Message] = []
        for member, named in decision.versions.items():
            state = self._senders.get(member)
            floor = self._settled.get(member, 0)
            for seq, link in sorted(named.items()):
                if state is None or seq > state.delivered or seq <= floor or link == NO_LINK:
                    continue
                entry = MessageId(member, seq)
                ours = self.get(entry)
                if ours is None or ours.kind is not EntryKind.TEXT:
                    continue  # (a membership entry counted in the roster as it is)
                if ours.entry_hash()[:LINK_SIZE] == link:
                    if entry in self._placeless:  # the same version, placed by the room
                        shown.append(ours)
                    continue
                if self._unplace(ours):
                    voided.append(ours)
                version = next(
                    (v for h, v in self._other_versions.get(entry, {}).items() if h[:LINK_SIZE] == link), None
                )
                if version is None:
                    self._wanted_versions[entry] = link
                    self._named_versions[entry] = None  # (asked for, see take_named_versions)
                elif version.kind is EntryKind.TEXT:
                    shown.append(version)
        self._wanted_floor = self._lowest_wanted_key()
        return shown

    def _placeable(self, version: Message) -> bool:
        """Whether ``version``, the version of its author's entry a decision named, takes
        a place here: a chat line, valid (_valid_as_named), whose key no other entry of
        its author's takes here (only a liar's stamps can make one: that entry keeps
        it, and the version is shown nowhere here)."""
        if version.kind is not EntryKind.TEXT or version.key in self._by_key:
            return False
        return self._valid_as_named(self._senders[version.sender_id], version)

    def _valid_as_named(self, state: _Sender, version: Message) -> bool:
        """Whether ``version``, the version of its author's entry a decision named, is
        valid (rule 10): only then does it take a place.

        The answers name the removed member's entries up to its cut as they hold them,
        void ones too: an entry of an earlier epoch above its author's cut there is void
        on every replica, in whichever version it holds (the epoch follows from the
        entry's vector clock, the cut from a decision every replica shares). Shown in
        place of our own void version, it would land among positions already stable
        here (``liars`` 1973 of churn_explorer: a member kept by one decision, which
        voided its later lines, and removed by the next one). The version is judged as
        a delivery would judge it: from our chain, through the other versions held here
        that it goes on from (see _branch_versions). One that goes on from a version we
        lack (or from a membership entry's) cannot be judged here, and takes its place
        as the answers give it."""
        author, seq = version.sender_id, version.seq
        branch: list[Message] = []
        if self._entry_hash_at(author, state, seq - 1) != version.previous:
            found = self._branch_versions(version, state)
            if not isinstance(found, list):
                return True
            branch = found
        vector = dict(self._state_at(author, state, seq - 1 - len(branch)).vector or {})
        for entry in (*reversed(branch), version):
            vector.update(entry.deps.items())  # (each delta only raises the clock)
        return self.roster.judge(version, vector)[1] is None

    def _unplace(self, message: Message) -> bool:
        """Take ``message`` (delivered) out of the log, as a tombstone; whether it had a
        place there."""
        if self._by_key.get(message.key) is not message:
            return False
        del self._by_key[message.key]
        index: int = self._order.index(message.key)
        if index < self._stable_count:
            self.stability_violations += 1  # impossible with honest announcements (rule 8)
            self._stable_count -= 1
        self._order.remove(message.key)
        self._first_open = None
        self._decided_versions.pop(message.id, None)
        self._tombstones[message.id] = message
        self.text_count -= message.is_text
        return True

    def _place_decided(self, version: Message) -> Delivered:
        """Give ``version``, the version of its entry a decision named, a place."""
        if self._tombstones.get(version.id) is version:  # (held without a place until now)
            del self._tombstones[version.id]
            self._placeless.discard(version.id)
        key = version.key
        self._by_key[key] = version
        self._order.add(key)
        self._decided_versions[version.id] = version
        self._first_open = None
        self.text_count += version.is_text
        index: int = self._order.index(key)
        if index < self._stable_count:
            self.stability_violations += 1  # (see the comment above _show_decided_versions)
            self._stable_count += 1
        return Delivered(version, index, False)

    def _lowest_wanted_key(self) -> MessageKey | None:
        """The lowest key a wanted version can have: above its author's entry before it."""
        lowest = None
        for entry in self._wanted_versions:
            state = self._senders[entry.sender_id]
            before = state.lamports[entry.seq - 2] if entry.seq >= 2 else 0
            key = MessageKey(before + 1, b"")
            lowest = key if lowest is None else min(lowest, key)
        return lowest

    def _closed_positions(self) -> int:
        """How many positions, from the start, are in closed epochs and stable."""
        if self._closed_end is None:
            return 0
        count: int = self._order.bisect_right(self._closed_end)
        if self._wanted_floor is not None:
            count = min(count, self._order.bisect_left(self._wanted_floor))
        return count

    def shows_decided_version(self, message_id: MessageId) -> bool:
        """Whether we show ``message_id`` in the version a decision named, not the one our
        copy of its author's chain delivered (see _show_decided_versions)."""
        return message_id in self._decided_versions

    def wants_version(self, entry: MessageId) -> bool:
        """Whether ``entry`` is among ``wanted_versions``."""
        return entry in self._wanted_versions

    @property
    def wanted_versions(self) -> list[MessageId]:
        """Entries a decision kept in a version we do not hold yet: worth asking any
        neighbour that holds them for (see _show_decided_versions)."""
        return list(self._wanted_versions)

    def _take_wanted_version(
        self, message: Message, room_id: bytes, trusted: bool, defer_stability: bool
    ) -> Receipt | None:
        """``message`` may be the version a decision kept of an entry we show in none:
        if it is (its link is the one named), it takes that place; else None."""
        if message.entry_hash()[:LINK_SIZE] != self._wanted_versions[message.id]:
            return None
        if not trusted and not message.verify(room_id):
            return Receipt(ReceiptStatus.REFUSED, (Refused(message, Refusal.BAD_SIGNATURE),))
        del self._wanted_versions[message.id]
        self._wanted_floor = self._lowest_wanted_key()
        events: list[LogEvent] = []
        ours = self.get(message.id)
        if ours is not None:
            proof = Equivocation(kept=ours, rejected=message)
            if self._keep_evidence(proof):
                events.append(proof)  # (so that it is stored with the proofs)
        self._keep_version(message, capped=False)
        if self._placeable(message):
            events.append(self._place_decided(message))
        self._closed_count = max(self._closed_count, self._closed_positions())
        if not defer_stability:
            events.extend(self._advance_stability())
        return Receipt(ReceiptStatus.NEW, tuple(events))

    def _mark_concurrency(self, message: Message, vector: dict[bytes, int], events: list[LogEvent]) -> bool:
        """Flag ``message`` and every delivered message concurrent with it.

        A delivered message n is concurrent with the newly delivered m exactly when
        n is not in m's past (m cannot be in n's past: n was delivered first). For
        each other sender those are the seqs above what m's vector clock names, up
        to what is delivered here: one suffix range per sender.
        """
        newly: list[MessageId] = []
        concurrent = False
        for other_id, other in self._senders.items():
            if other_id == message.sender_id or other.vector is None:
                continue
            first = vector.get(other_id, 0) + 1
            if first <= other.delivered:
                # ``message`` is concurrent with these even if they were flagged before.
                concurrent = True
                ranges = other.concurrent_ranges
                if ranges and ranges[-1][0] <= first and ranges[-1][1] >= other.delivered:
                    continue  # all of them are flagged already (the common case)
                for seq in _add_range(other.concurrent_ranges, first, other.delivered):
                    if (flagged := MessageId(other_id, seq)) not in self._tombstones:
                        newly.append(flagged)  # (a tombstone, a COMMIT say, is shown nowhere)
        if not concurrent:
            return False
        own = self._senders[message.sender_id].concurrent_ranges
        _add_range(own, message.seq, message.seq)
        if newly:
            events.append(Concurrent(tuple(newly)))
        return True

    # Stability ----------------------------------------------------------------
    def silent_members(self) -> list[bytes]:
        """Members holding stability back: those that let the fewest positions be stable."""
        count, waiting_on = self._stable_prefix()
        if count >= len(self._order):
            return []
        return sorted(waiting_on)

    def advance_stability(self) -> list[LogEvent]:
        """Recompute the stable prefix (after a batch taken with ``defer_stability``)."""
        return self._advance_stability()

    def _advance_stability(self) -> list[LogEvent]:
        if self._cannot_advance():
            if _CROSS_CHECK:
                assert self._stable_prefix()[0] <= self._stable_count
            return []
        count, _ = self._stable_prefix()
        if count <= self._stable_count:
            return []
        self._stable_count = count
        self._first_open = None
        return [Stable(count)]

    def _cannot_advance(self) -> bool:
        """Whether no position can become stable now: exactly ``_stable_prefix()[0] <=
        stable_count``, but without bisecting (most calls, in a busy room). A member's
        limit is at most the first position not yet stable when the key there is past its
        clock, or past an entry it has not delivered (see ``_member_limit``)."""
        order = self._order
        if self._wanted_floor is not None and order.bisect_left(self._wanted_floor) <= self._stable_count:
            return True  # (a wanted version may take a place there, see _show_decided_versions)
        if self._stable_count >= len(order) or self._closed_count > self._stable_count:
            return False
        if not self.roster.epochs:
            return False
        epoch = self.roster.current
        first = self._first_open
        if first is None:
            first = self._first_open = order[self._stable_count]
        elif _CROSS_CHECK:
            assert first == order[self._stable_count], "a stale first open key"
        # The member that held it back last time most often still does: asked first.
        last = self._holding_back
        if last in epoch.members and last not in epoch.exits and self._holds_back(last, first):
            return True
        for member in epoch.members:
            if member in epoch.exits or member == last:
                continue
            if self._holds_back(member, first):
                self._holding_back = member
                return True
        return any(key <= first for _, key in self._first_after_answers())

    def _holds_back(self, member: bytes, first: MessageKey) -> bool:
        """Whether ``member`` lets no position from ``first``'s on be stable: its clock
        is below first's stamp, or it has not said it delivered an entry at or before it."""
        state = self._senders.get(member)
        if state is None or (state.bound, _AFTER_ALL_SENDERS) < first:
            return True
        return self._first_uncovered(member, state) <= first

    def _stable_prefix(self) -> tuple[int, frozenset[bytes]]:
        """Rule 8 over rule 10's members: how many positions are final, and the members
        the first position past them waits for.

        Every position in a closed epoch is stable. A position of the open epoch with
        key (L, s) is stable once each of the epoch's members whose exit we do not
        hold is *bound above L* (its entries up to a signed announcement whose clock
        is at least L are here) and has *delivered everything up to it* (its last
        entry's or announcement's vector covers every entry at or before it). The
        second half is what makes removal safe: any later FLUSH of a member covers
        those entries, so no cut can void one of them.
        """
        count, waiting = self._open_prefix()
        if self._wanted_floor is not None:
            # No position from the lowest key a wanted version can have on (see
            # _show_decided_versions); the members are not what it waits for.
            wanted: int = self._order.bisect_left(self._wanted_floor)
            if wanted < count:
                return wanted, frozenset()
        return count, waiting

    def _open_prefix(self) -> tuple[int, frozenset[bytes]]:
        """_stable_prefix, but for the versions a decision kept that we lack."""
        start = self._closed_count
        order = self._order
        if start >= len(order) or not self.roster.epochs:
            return len(order), frozenset()
        epoch = self.roster.current
        limits = {m: self._member_limit(m) for m in epoch.members if m not in epoch.exits}
        for member, first_after in self._first_after_answers():
            limits[member] = min(limits.get(member, len(order)), order.bisect_left(first_after))
        if not limits:
            return len(order), frozenset()  # nobody can write in this epoch any more
        lowest = min(limits.values())
        waiting = frozenset(m for m, limit in limits.items() if limit == lowest)
        return max(start, lowest), waiting

    def _member_limit(self, member: bytes) -> int:
        """How many positions, from the start, ``member`` lets be stable."""
        state = self._senders.get(member)
        if state is None:
            return 0
        # The first key it holds back, then one bisect: the smallest of the positions
        # the keys bisect to is where the smallest key does. (No key in the log equals
        # (bound, _AFTER_ALL_SENDERS), so bisecting left or right of it is the same.)
        first_held = min((state.bound, _AFTER_ALL_SENDERS), self._first_uncovered(member, state))
        limit: int = self._order.bisect_left(first_held)
        return limit

    def _first_uncovered(self, member: bytes, state: _Sender) -> tuple[int, bytes]:
        """The smallest key of an entry delivered here that ``member`` has not said it
        delivered (its last entry's or announcement's vector): no position from there on
        is stable yet (rule 8). Per other sender, that is its first entry past what the
        member covers. (Plain tuples: they compare as the keys they are.)

        Asked per member per frame, so kept (``_uncovered``): a delivery can only lower
        it (``_note_uncovered``), and it is found again only when what the member covers
        changes."""
        first = self._uncovered.get(member)
        if first is None:
            first = self._uncovered[member] = self._find_first_uncovered(member, state)
        elif _CROSS_CHECK:
            assert first == self._find_first_uncovered(member, state), "a stale first uncovered key"
        return first

    def _find_first_uncovered(self, member: bytes, state: _Sender) -> tuple[int, bytes]:
        first = _ALL_COVERED
        cover = state.cover if state.cover is not None else (state.vector or {})
        versions_differ = state.capped or state.awaiting
        for other, other_state in self._senders.items():
            covered = cover.get(other, 0)
            if versions_differ:
                covered = self._counted(state, other, covered)
            if other_state.delivered > covered and other != member:
                first = min(first, (other_state.lamports[covered], other))
        return first

    def _note_uncovered(self, message: Message) -> None:
        """``message`` was delivered (as an entry or a tombstone): it is the first entry of
        its sender that a member has not said it delivered when the member covers all
        its sender's entries before it. (Its sender's vector changed: its own is found
        again when asked.)"""
        sender, seq = message.sender_id, message.seq
        uncovered = self._uncovered
        uncovered.pop(sender, None)
        key = (message.lamport, sender)
        for member, first in uncovered.items():
            if key < first:
                state = self._senders[member]
                cover = state.cover if state.cover is not None else (state.vector or {})
                covered = cover.get(sender, 0)
                if state.capped or state.awaiting:
                    covered = self._counted(state, sender, covered)
                if covered == seq - 1:
                    uncovered[member] = key

    def _first_after_answers(self) -> Iterator[tuple[bytes, MessageKey]]:
        """Per member that answered a change still open, the key of its first entry
        after that answer; per member a change still open removes, the key of its first
        entry above what the answers held name: void if the change is decided, so
        nothing from it on is stable until the change is over."""
        for member, answer_seq in self.roster.writes_after_answers():
            state = self._senders.get(member)
            if state is not None and state.delivered > answer_seq:
                yield member, MessageKey(state.lamports[answer_seq], member)
        # And per member being removed, its first entry above what the answers so far
        # name: void if the change is decided, whoever says it delivered it.
        for member, named, versions in self.roster.removals_named():
            state = self._senders.get(member)
            if state is None:
                continue
            if state.delivered > named:
                yield member, MessageKey(state.lamports[named], member)
            # And its entries that an answer names in another version than ours (or as
            # held without a place): the decision may void them, or show the other
            # version (liars 221 of churn_explorer, ten peers: the one answer naming the
            # other version stopped counting as a cover when its author quit, and an
            # entry it named was called stable here, then voided).
            for seq, link in versions:
                if seq <= state.delivered and self._tail_link(member, state, seq) != link:
                    yield member, MessageKey(state.lamports[seq - 1], member)


def _linear_through(state: _Sender, seq: int) -> bool:
    """Whether the sender's entries delivered here up to ``seq`` form one hash chain
    (none of them went on from a version of its predecessor we do not show)."""
    branches = state.branch_vectors
    return not branches or min(branches) > seq


def _is_later(head: Head, than: Head | None) -> bool:
    """Newest first: a later seq, or a clock that moved on since, or more delivered, or
    said later."""
    if than is None:
        return True
    clock, than_clock = (head.clock_seq, head.clock_lamport), (than.clock_seq, than.clock_lamport)
    if clock != than_clock:
        return clock > than_clock
    # (Summed only for two announcements of one clock: the rarer case.)
    return (_reach(head), head.at_ms) > (_reach(than), than.at_ms)


def _reach(head: Head) -> int:
    return sum(seq for _, seq in head.delivered)


def _announcing(message: Message, decision: Decision | None) -> list[bytes]:
    """Members whose early clock announcements a membership entry makes usable."""
    members = [message.sender_id]
    if message.change is not None:
        members += [member for member, _ in message.change.admitted]
    if decision is not None:
        members += [member for member, _ in decision.admitted]
    return members


class _Verdict(NamedTuple):
    """Verdict of the checks: deliverable, with its full vector clock and its epoch;
    ``valid`` False for a tombstone. (A named tuple: one is made per entry delivered,
    at a third of a frozen dataclass's cost.)"""

    vector: dict[bytes, int]
    epoch: int
    valid: bool
    placed: bool = True
    """False for a tombstone (``valid`` False), or for a valid entry held without a place
    (stamped within its author's bound here, see OrderedLog._check)."""


class _Wait:
    """Verdict of a stamp check: a dependency is not delivered yet."""


_WAIT = _Wait()


def _missing_ranges(first: int, last: int, held: Mapping[int, Message]) -> list[tuple[int, int]]:
    """Ranges of seqs in [first, last] that are not in ``held``."""
    ranges: list[tuple[int, int]] = []
    present = sorted(s for s in held if first <= s <= last)
    cursor = first
    for seq in [*present, last + 1]:
        if seq > cursor:
            ranges.append((cursor, seq - 1))
        cursor = seq + 1
    return ranges


def _add_range(ranges: list[list[int]], first: int, last: int) -> list[int]:
    """Add [first, last] to sorted disjoint ``ranges``; return the seqs that were not covered."""
    added: list[int] = []
    i = bisect_left(ranges, [first, first])
    if i > 0 and ranges[i - 1][1] >= first - 1:
        i -= 1
    start, end = first, last
    cursor = first
    j = i
    while j < len(ranges) and ranges[j][0] <= last + 1:
        lo, hi = ranges[j]
        added.extend(range(cursor, min(lo, last + 1)))
        cursor = max(cursor, hi + 1)
        start, end = min(start, lo), max(end, hi)
        j += 1
    added.extend(range(cursor, last + 1))
    ranges[i:j] = [[start, end]]
    return added
