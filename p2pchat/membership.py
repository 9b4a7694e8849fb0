"""Who is in a room, at every position of its log (DESIGN.md rule 10).

Part of the pure core. Membership is decided by entries of the log itself,
signed by their authors and ordered by the same key as chat lines, so every
replica computes the same members from the same entries, whatever it heard
first. Heads, clock announcements and vector clocks make nobody a member.

The rules implemented here:

* **Founding.** A room starts with its GENESIS entry, the founder's seq 1; its
  hash is the room id. The founder is the only member of epoch 0.
* **Admission.** A member admits a newcomer with an ADMIT entry. An entry of
  any other author is *valid* only if an ADMIT of that author is in the entry's
  causal past (its vector clock names it), and that ADMIT causally follows the
  author's last LEAVE or AWAY before the entry. The check reads only the
  entry's causal past, which causal delivery guarantees is here, so every
  replica reaches the same verdict. An invalid entry is refused (and, as any
  refusal, blocks its author's chain): a stranger cannot write into the room,
  and what a newcomer types before its admission is queued by its own peer,
  never stamped into the room's past.
* **Leaving.** LEAVE (for good) and AWAY (a clean quit) are the author's last
  entries until it is admitted again; its seq then continues.
* **Who counts for stability (rule 8).** At a position of the log, the members
  are those admitted by an ADMIT sorted before it and not gone by a LEAVE or
  AWAY sorted before it. The scan never under-counts in a way that can move a
  stable position: a member whose ADMIT we do not hold yet was admitted by a
  sponsor we count; the sponsor's clock (its entries or its signed
  announcement, which we only use once we hold the entries it follows) reaches
  a position only if the ADMIT is here or stamped after that position, and the
  newcomer's entries causally follow the ADMIT. A stale ADMIT (written before
  the sponsor saw the member's later AWAY) is ignored, as the validity rule
  ignores it.

Removal of a member that vanished without a word (rule 10's CHANGE and FLUSH
entries) is not implemented yet: such a member holds stability back until it
comes back.
"""

from __future__ import annotations

import enum
from bisect import insort
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .message import EntryKind, Message, MessageKey

__all__ = ["MAX_MEMBERS", "MemberInfo", "MemberState", "Roster", "Transition"]

MAX_MEMBERS = 256
"""Active members a room admits at most. A peer refuses to sponsor beyond it."""


class MemberState(enum.Enum):
    ACTIVE = "active"
    AWAY = "away"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class Transition:
    """A membership entry as the stability scan sees it."""

    key: MessageKey
    kind: EntryKind
    member: bytes
    """GENESIS: the founder; ADMIT: the member admitted; LEAVE/AWAY: the author."""
    seen: int = 0
    """ADMIT: the admitted member's seq its sponsor had delivered (from the ADMIT's vector);
    LEAVE/AWAY: the author's seq of this entry."""


@dataclass(slots=True)
class MemberInfo:
    """What the log says about one member (for display and for the shell)."""

    member_id: bytes
    name: str
    state: MemberState = MemberState.ACTIVE


@dataclass(frozen=True, slots=True)
class _Admission:
    sponsor: bytes
    sponsor_seq: int
    seen: int


@dataclass(slots=True)
class Roster:
    """The membership entries of one room's delivered log."""

    founder: bytes | None = None
    _admissions: dict[bytes, list[_Admission]] = field(default_factory=dict)
    _exits: dict[bytes, list[int]] = field(default_factory=dict)
    """Per member, the seqs of its LEAVE and AWAY entries (ascending: FIFO delivery)."""
    _transitions: list[Transition] = field(default_factory=list)
    """Every membership entry delivered, sorted by key."""
    _names: dict[bytes, str] = field(default_factory=dict)
    _scanned: list[tuple[Transition, frozenset[bytes]]] | None = None
    """``scan()`` as of the last membership entry (recomputed after the next one)."""

    # Validity (checked once an entry's causal past is delivered) -------------------
    def admits(self, message: Message, vector: Mapping[bytes, int]) -> bool:
        """Whether ``message``'s author is a member where the message stands.

        ``vector`` is the message's full vector clock: what its author had delivered
        of the others (with its own chain, exactly its causal past). Its own entries
        are never needed here: nobody admits itself.
        """
        author = message.sender_id
        if message.kind is EntryKind.GENESIS:
            return False  # a genesis is only valid as the room's own (checked by the log)
        if message.kind is EntryKind.ADMIT and message.subject == author:
            return False  # nobody admits itself
        last_exit = _last_below(self._exits.get(author, ()), message.seq)
        if author == self.founder and last_exit == 0:
            return True
        for admission in self._admissions.get(author, ()):
            if admission.seen >= last_exit and vector.get(admission.sponsor, 0) >= admission.sponsor_seq:
                return True
        return False

    # Recording delivered entries ------------------------------------------------
    def note_name(self, author: bytes, name: str) -> None:
        """A chat line's author: remember a name for it (the first one seen)."""
        if author not in self._names:
            self._names[author] = name

    def record(self, message: Message, vector: Mapping[bytes, int]) -> Transition:
        """Note a delivered membership entry (not a TEXT); ``vector`` is its full vector clock."""
        author = message.sender_id
        if message.kind is EntryKind.GENESIS:
            self.founder = author
            self._names[author] = message.name
            transition = Transition(message.key, message.kind, author)
        elif message.kind is EntryKind.ADMIT:
            assert message.subject is not None
            subject = message.subject
            seen = vector.get(subject, 0)
            self._admissions.setdefault(subject, []).append(_Admission(author, message.seq, seen))
            self._names.setdefault(subject, message.text)
            transition = Transition(message.key, message.kind, subject, seen)
        else:
            self._exits.setdefault(author, []).append(message.seq)
            transition = Transition(message.key, message.kind, author, message.seq)
        self._names[author] = message.name
        insort(self._transitions, transition, key=lambda t: t.key)
        self._scanned = None
        return transition

    # Reading ----------------------------------------------------------------------
    @property
    def transitions(self) -> list[Transition]:
        return self._transitions

    def has_exited(self, member: bytes, *, before: MessageKey) -> bool:
        """Whether ``member`` left or went away at a position before ``before``."""
        return any(
            t.member == member and t.kind in (EntryKind.LEAVE, EntryKind.AWAY) and t.key < before
            for t in self._transitions
        )

    def last_exit(self, member: bytes) -> int:
        """The seq of ``member``'s latest LEAVE or AWAY (0 if none)."""
        exits = self._exits.get(member)
        return exits[-1] if exits else 0

    def name_of(self, member: bytes) -> str | None:
        return self._names.get(member)

    def members(self) -> dict[bytes, MemberInfo]:
        """Everyone ever admitted, with their state at the end of the log."""
        info: dict[bytes, MemberInfo] = {}
        for transition, active in self.scan():
            member = transition.member
            entry = info.setdefault(member, MemberInfo(member, self._names.get(member, "")))
            if member in active or transition.kind is not EntryKind.ADMIT:
                entry.state = _state_after(transition, active)  # (an ignored ADMIT changes nothing)
        return info

    def active(self) -> frozenset[bytes]:
        """The members at the end of the log."""
        scanned = self.scan()
        return scanned[-1][1] if scanned else frozenset()

    def scan(self) -> list[tuple[Transition, frozenset[bytes]]]:
        """Each transition in key order, with the member set just after it."""
        if self._scanned is None:
            self._scanned = list(self._scan())
        return self._scanned

    def _scan(self) -> Iterable[tuple[Transition, frozenset[bytes]]]:
        active: set[bytes] = set()
        last_exit: dict[bytes, int] = {}
        for transition in self._transitions:
            member = transition.member
            if transition.kind is EntryKind.ADMIT:
                # A stale ADMIT (its sponsor had not seen the member's later exit) does
                # not bring it back, exactly as the validity rule ignores it.
                if transition.seen >= last_exit.get(member, 0):
                    active.add(member)
            elif transition.kind is EntryKind.GENESIS:
                active.add(member)
            else:
                active.discard(member)
                last_exit[member] = max(last_exit.get(member, 0), transition.seen)
            yield transition, frozenset(active)


def _state_after(transition: Transition, active: frozenset[bytes]) -> MemberState:
    if transition.member in active:
        return MemberState.ACTIVE
    if transition.kind is EntryKind.LEAVE:
        return MemberState.LEFT
    return MemberState.AWAY


def _last_below(seqs: Iterable[int], seq: int) -> int:
    """The largest of ``seqs`` below ``seq`` (0 if none)."""
    best = 0
    for value in seqs:
        if value < seq:
            best = max(best, value)
    return best
