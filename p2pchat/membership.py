"""Who is in a room: membership decided in epochs (DESIGN.md rule 10).

Part of the pure core. Membership is decided by entries of the log itself, signed
by their authors, so every replica computes the same members from the same
entries, whatever it heard first. Heads, clock announcements and vector clocks
make nobody a member. Every verdict here reads only an entry's causal past,
which causal delivery guarantees is held when the entry is judged.

The rules, as implemented:

* **Epochs.** Epoch 0's only member is the founder (its GENESIS is seq 1). Inside
  an epoch the only membership event is a member's own LEAVE or AWAY: its last
  entry of the epoch. Admitting and removing members *close* the epoch.
* **CHANGE, FLUSH and COMMIT.** Any member may write a CHANGE(epoch, round,
  +admitted, -removed). Every member not being removed *answers* it with a FLUSH
  (its vector clock is what it had delivered); a CHANGE counts as its author's
  FLUSH, and an exit (LEAVE or AWAY) answers every round above its author's last
  answer. A member being removed may answer (and commit) it too, though it is
  not needed. A member answers each round at most once and its rounds only go up.
  A member that answered a change and now holds *all* its answers may write a
  COMMIT for it, the second phase, unless it holds a COMMIT of another change that
  is not dead (in that entry's causal past). An honest member commits the change it
  answered last; or one it answered before, if every change it answered since is
  dead, or waits on a member holding a COMMIT of that one, or could be decided only
  with such a member's COMMIT (see "Moving on"). It does not commit the one it
  answered last where the COMMITs that may still come without those of members
  holding a COMMIT of another change are no majority: that would lock it too.
* **Decided and dead.** A change is *complete* once every member not being removed
  has answered it (with a FLUSH for it, or an exit), and *decided* once complete
  and COMMITs come from a strict majority of the epoch's members not counted by an
  exit. It is *dead* once it can never be decided: a member it needs answered a
  rival of its round or a later round without answering it, or fewer members than
  a majority can still commit it (those that committed it, plus those that
  answered it and did not exit, even if they answered later rounds, plus those
  yet to answer; members being removed included: in a room of four, a change
  removing one that is stuck after its proposer crashed needs the removed member's
  COMMIT). Decided and dead
  only ever grow with the entries held, and never both hold, so every replica
  reaches the same verdict whatever it holds first.
* **Moving on.** A member may answer a later round at any time (a change stuck on
  a member that crashed before answering is superseded by one removing it),
  except while it holds a COMMIT of a change that is not dead in that entry's
  causal past; nor may it exit then. So two changes can never both be decided:
  their committers would be two strict majorities sharing a member, which
  committed both, the second while the first was not dead. Its other entries
  after its answer (chat lines, an exit) are valid while the change is open, void
  if it is decided (above the cut below). A member that moved on may still commit
  the change it left: where members that committed it wait on it (they may answer
  nothing else), and the later rounds died (rivals that proposed at the same
  moment kill each other) or wait on those very members (or need their COMMITs),
  the room would otherwise wait for good on the COMMIT of a member the change
  removes (docs/equivocation.md, rounds that never decide). A room founded before
  protocol 11 (its GENESIS names no rules: message.ROOM_RULES 1) keeps the rule it
  had: a member commits only the change it answered last, and one that answered a
  later round cannot commit an earlier one, nor counts among those that may.
* **Cuts.** When a change is decided, each removed member's cut is the highest
  of its seqs that any answer names, unless two answers name one of its entries of
  the epoch in different versions (each answer names the versions of the removed
  member's last entries it delivered and of any before them not stable there, its
  *tails*, and how many of those were stable; one held without a place, after a
  broken clock promise, as none), and every answer holding that entry names it as
  not stable: then the cut is below the first such entry (Roster._removal_cut). The
  removed member signed two versions, and the replicas split between them; the
  answers are the same everywhere, so every replica voids the same entries,
  whichever version it holds. (A difference at an entry some answerer holds stable
  is a lie of one of the two answers, and counts for nothing.) None of them was
  stable anywhere: a replica calls a position stable only once every member named
  the version it holds there (see p2pchat.log, "Versions a cover names"), and an
  answer goes on from what its author named before. Every other member's cut is the
  seq of its answer. Entries of the epoch above their author's cut are *void*: they
  stay as tombstones (they still satisfy causal delivery and stamp checks) and take
  no place in the log. The next epoch's members are the old ones, minus the removed
  and the exited, plus the admitted. So while a change is open, a removed member's
  entries above the highest seq the answers held name are never stable, and
  neither is a member's entry after its answer (see Roster.removals_named and
  Roster.writes_after_answers): either may be voided.
* **An exit carries over.** A member that answered the decided change and exited
  after its answer (it quit while the change was open) has its exit voided with
  the rest above its cut, but it still wrote nothing after it: so it is a member
  of the next epoch that has already exited it, counted as soon as a replica holds
  the exit, as any exit is. (Without this it would hold stability back until it
  was removed.) The same holds whether a replica took the exit before or after the
  decision: in both cases the exit is judged as of the open epoch, on its causal
  past alone; an exit that was invalid there (its author held a COMMIT of a change
  that was not dead) carries nothing.
* **Which epoch an entry is in.** An entry belongs to the epoch after a decision
  exactly when its causal past holds every answer of that decision and COMMITs of
  it from a strict majority (so it shows the change decided). Answers and COMMITs
  are noted whenever they come, before the decision or after it (above their
  author's cut, as a removed member's own are), each judged as the open epoch
  would judge it: which COMMITs count must not depend on what came first. It is valid
  only if its author is a member of its epoch, not above its cut there, and not
  after its own exit there. So the epochs follow one another in key order too:
  a later epoch's entries follow every answer, and every valid entry of an epoch
  is in the causal past of an answer. All valid entries of a closed epoch are
  therefore held once the decision is, and all are stable.

* **Reopening a room every member exited.** Members that quit at the same moment
  (or on two sides of a split) can each write an AWAY before seeing the other's:
  then nobody is active, and nobody could admit anyone back. So once an entry's
  causal past holds an exit of every member of its epoch, a member that exited by
  AWAY may write votes again there, for a *reopening* change only: a CHANGE that
  admits the members back (its author among them) and removes the other AWAY
  members, and the FLUSH and COMMIT answering it. In a reopening change an AWAY
  counts as no answer (each member admitted answers for itself) and a LEAVE counts
  as usual, so it is decided by COMMITs from a strict majority of the members that
  did not leave: two reopening changes can never both be decided, as for any
  change. No other change can be decided in such an epoch either: a member holding
  a COMMIT of a change not dead cannot exit, and nobody can vote after an exit
  otherwise. Every entry of the epoch is held (each is in the causal past of its
  author's exit), so all of them are stable already: the votes of a reopening take
  no place in the log (tombstones, as COMMITs), and nothing stable moves. A removed
  member's cut covers its exit; what it writes later in the epoch is void.

The shell proposes changes (an open room admits who connects; a member silent for
too long is proposed for removal) and answers them; this module only judges.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

from .message import ROOM_RULES, Change, EntryKind, Flush, Message, MessageId, MessageKey, Tail, Tails

__all__ = [
    "MAX_MEMBERS",
    "VOTES",
    "Decision",
    "Epoch",
    "MemberInfo",
    "MemberState",
    "Roster",
]

MAX_MEMBERS = 256
"""Members a room has at most. A change that would exceed it is invalid."""
VOTES = frozenset({EntryKind.CHANGE, EntryKind.FLUSH, EntryKind.COMMIT})
"""The kinds of entry that propose, answer or commit a change."""


class MemberState(enum.Enum):
    ACTIVE = "active"
    AWAY = "away"
    LEFT = "left"
    REMOVED = "removed"


@dataclass(slots=True)
class MemberInfo:
    """What the log says about one member (for display and for the shell)."""

    member_id: bytes
    name: str
    state: MemberState = MemberState.ACTIVE


@dataclass(frozen=True, slots=True)
class _Answer:
    """A member's answer in one epoch: a FLUSH, its own CHANGE, or its exit."""

    member: bytes
    seq: int
    change: MessageId | None
    """The change answered; None for an exit (which answers every round)."""
    vector: Mapping[bytes, int]
    """The answering entry's full vector clock: what its author had delivered."""
    key: MessageKey
    tails: Tails = ()
    """Per member the change removes, the links of its last entries as the author had
    delivered them (see message.Tails); none for an exit."""

    def names(self, member: bytes) -> int:
        """The highest seq of ``member`` this answer had delivered."""
        return self.seq if member == self.member else self.vector.get(member, 0)

    def versions_of(self, member: bytes) -> Iterator[tuple[int, bytes]]:
        """(seq, link) of ``member``'s entries this answer names the versions of."""
        tail = self._tail_of(member)
        if tail is not None:
            first = self._first_named(member, tail)
            yield from ((first + i, link) for i, link in enumerate(tail.links) if first + i >= 1)

    def first_unstable(self, member: bytes) -> int:
        """The first seq of ``member`` this answer names that was not stable at its author
        (one more than what it holds if it names none so)."""
        tail = self._tail_of(member)
        return self.names(member) + 1 if tail is None else self._first_named(member, tail) + tail.stable

    def _tail_of(self, member: bytes) -> Tail | None:
        return next((tail for tail in self.tails if tail.member == member), None)

    def _first_named(self, member: bytes, tail: Tail) -> int:
        """The seq of the first entry ``tail`` names (its links end at what we hold)."""
        return self.names(member) - len(tail.links) + 1


@dataclass(frozen=True, slots=True)
class _Proposal:
    id: MessageId
    key: MessageKey
    change: Change
    reopen: bool = False
    """Written by a member that had exited the epoch: a reopening (see the module doc)."""

    @property
    def removed(self) -> frozenset[bytes]:
        return frozenset(self.change.removed)


@dataclass(frozen=True, slots=True)
class Decision:
    """How an epoch closed."""

    change: MessageId
    change_key: MessageKey
    admitted: tuple[tuple[bytes, str], ...]
    removed: tuple[bytes, ...]
    answers: Mapping[bytes, int]
    """Per answering member, the seq of its answer: an entry whose causal past holds
    all of them belongs to the next epoch."""
    cuts: Mapping[bytes, int]
    """Per member of the epoch, the highest of its seqs valid in it."""
    base: int
    """The epoch's members not counted by an exit: COMMITs from more than half of
    them decide the change (and show it decided to a later entry)."""
    last_key: MessageKey
    """The key of the COMMIT that decided it here (COMMITs take no place in the log)."""
    versions: Mapping[bytes, Mapping[int, bytes]] = field(default_factory=dict)
    """Per member the change removes, per seq of its up to its cut that every answer
    holding it names alike: that version's link (see _checked_versions). A replica that
    answered nothing may hold another version there: it shows this one instead
    (OrderedLog._show_decided_versions)."""


@dataclass(slots=True)
class Epoch:
    number: int
    members: frozenset[bytes]
    proposals: dict[MessageId, _Proposal] = field(default_factory=dict)
    answers: dict[int, dict[bytes, _Answer]] = field(default_factory=dict)
    """Per round, per member: its answer (FLUSH or CHANGE) in that round."""
    last_round: dict[bytes, int] = field(default_factory=dict)
    """Per member, the latest round it answered."""
    exits: dict[bytes, tuple[_Answer, EntryKind, MessageKey]] = field(default_factory=dict)
    commits: dict[MessageId, dict[bytes, int]] = field(default_factory=dict)
    """Per change, per member: the seq of its COMMIT (every valid one, even one that
    came after the decision: a later entry may count it)."""
    committed: dict[bytes, MessageId] = field(default_factory=dict)
    """Per member, the change it committed last."""
    decision: Decision | None = None

    def answer_of(self, member: bytes, round_: int) -> _Answer | None:
        """``member``'s answer in ``round_``: its FLUSH or CHANGE, else its exit."""
        answer = self.answers.get(round_, {}).get(member)
        if answer is not None:
            return answer
        exit_ = self.exits.get(member)
        return exit_[0] if exit_ is not None else None


class Roster:
    """The membership entries of one room's delivered log, judged in epochs."""

    def __init__(self) -> None:
        self.founder: bytes | None = None
        self.epochs: list[Epoch] = []
        self._active: tuple[tuple[int, int], frozenset[bytes]] = ((-1, 0), frozenset())
        self._names: dict[bytes, str] = {}
        self._ever: set[bytes] = set()
        """Everyone ever a member or admitted: their void entries are kept as tombstones."""
        self._removed_in: dict[bytes, int] = {}
        """Members removed, with the epoch they were removed from (latest)."""
        self._first_epoch: dict[bytes, int] = {}
        """The first epoch each member was a member of."""
        self._decided_at: dict[MessageKey, Decision] = {}
        """Each decision by the key of the entry that completed it (its last answer)."""
        self.rules = ROOM_RULES
        """The rules the room was founded with (message.ROOM_RULES): with 1, a member
        commits only the change it answered last, and one that answered a later round may
        not commit an earlier one (nor counts among those that may)."""
        self._tallies: dict[tuple[int, MessageId], _Tally] = {}
        """Each change's tally among every entry held (see _tally_all): cleared wherever a
        recorded entry changes what a tally reads (a vote, an exit, a decision)."""

    # Reading --------------------------------------------------------------------
    @property
    def current(self) -> Epoch:
        return self.epochs[-1]

    def active(self) -> frozenset[bytes]:
        """The members of the current epoch that have not exited it."""
        if not self.epochs:
            return frozenset()
        epoch = self.current
        # Asked per entry and per frame: kept while the epoch and its exits stay the same
        # (exits are only ever added to).
        version = (epoch.number, len(epoch.exits))
        if self._active[0] != version:
            self._active = (version, frozenset(m for m in epoch.members if m not in epoch.exits))
        return self._active[1]

    def was_member(self, member: bytes) -> bool:
        return member in self._ever

    def was_member_by(self, member: bytes, epoch: int) -> bool:
        """Whether ``member`` was a member of some epoch up to ``epoch``: a fact of the
        causal past of any entry of that epoch, so every replica agrees on it."""
        return self._first_epoch.get(member, epoch + 1) <= epoch

    def writes_after_answers(self) -> list[tuple[bytes, int]]:
        """Members that answered a change of the current epoch that is still open, with
        the seq of that answer: their entries above it are void if it is decided. A
        member that answered several open changes (it moved on to a later round while
        an earlier one can still be decided) is given its earliest such answer: its cut
        is its answer in whichever round is decided."""
        if not self.epochs:
            return []
        epoch = self.current
        open_ids = {proposal.id for proposal in self.open_proposals()}
        found: dict[bytes, int] = {}
        for by_member in epoch.answers.values():
            for member, answer in by_member.items():
                if answer.change in open_ids and answer.seq < found.get(member, answer.seq + 1):
                    found[member] = answer.seq
        return list(found.items())

    def removals_named(self) -> list[tuple[bytes, int, list[tuple[int, bytes]]]]:
        """Per member that a change of the current epoch still open removes (for each
        such change): the highest of its seqs that the answers to that change held here
        name, and the versions (seq, link) of its entries that those answers name (their
        tails).

        If the change is decided, the member's entries above its cut are void, and its
        cut is the highest seq any answer names. A member whose entries are all covered
        names them in an answer it writes later; but one that answered already named what
        it had then: so above what the answers held name, a removed member's entry is
        not stable while the change is open, whoever covers it (rule 8 with rule 10).
        Nor is one of its entries that an answer names in another version than the one
        held here: the decision shows the versions its answers agree on, and cuts the
        member below the first entry they name in two (see _removal_cut), even once the
        answer's author exits and its cover stops counting."""
        if not self.epochs:
            return []
        epoch = self.current
        named = []
        for proposal in self.open_proposals():
            round_ = proposal.change.round
            staying = epoch.members - proposal.removed
            answers = [epoch.answer_of(member, round_) for member in staying]
            to_it = [a for a in epoch.answers.get(round_, {}).values() if a.change == proposal.id]
            for gone in proposal.removed:
                highest = max((a.names(gone) for a in answers if a is not None), default=0)
                named.append((gone, highest, [version for a in to_it for version in a.versions_of(gone)]))
        return named

    def name_of(self, member: bytes) -> str | None:
        return self._names.get(member)

    def note_name(self, author: bytes, name: str) -> None:
        if author in self._ever:
            self._names[author] = name

    def open_proposals(self) -> list[_Proposal]:
        """Changes of the current epoch that are neither decided nor dead."""
        if not self.epochs:
            return []
        epoch = self.current
        return [p for p in epoch.proposals.values() if self._status(epoch, p) is None]

    def answered(self, member: bytes) -> _Proposal | None:
        """The open change ``member`` answered last in the current epoch (its entries
        after that answer are void if the change is decided), if any."""
        if not self.epochs:
            return None
        epoch = self.current
        round_ = epoch.last_round.get(member)
        if round_ is None:
            return None
        answer = epoch.answers[round_][member]
        assert answer.change is not None
        proposal = epoch.proposals[answer.change]
        return proposal if self._status(epoch, proposal) is None else None

    def holds_open_commit(self, member: bytes) -> bool:
        """Whether ``member`` committed a change of the current epoch that is neither
        decided nor dead (it may then neither answer another change nor exit)."""
        return bool(self.epochs) and self._open_commit(self.current, member, _EVERYTHING) is not None

    def exit_strands(self, member: bytes) -> bool:
        """Whether an exit of ``member`` now would leave the open change it answered
        short of the COMMITs that decide it, for good: the members the change keeps,
        ``member`` aside, cannot make a strict majority of COMMITs.

        An exit after an answer commits nothing and counts no less in the majority (it
        is void if the change is decided), and its author cannot commit once it exited,
        even back: so in a room of three or four, a removal that ``member`` answered
        would then wait for good on the removed member's own COMMIT (say it crashed).
        Staying a member instead, it commits the change once back. (The removed members
        count only with a COMMIT already held.)"""
        proposal = self.answered(member)
        if proposal is None or member in proposal.removed:
            return False
        return not self._commits_in_reach(proposal, without=frozenset({member}))

    def left_to(self, proposal: _Proposal, members: Iterable[bytes] = ()) -> bool:
        """Whether an open change can be decided only by the COMMIT of a member it
        removes, or of one of ``members`` (say, a member proven to lie, which may never
        send it; what they committed already does not count either): the other members
        it keeps that committed it, or still may, are no strict majority (the rest
        exited, or skipped its round). The members that committed it may answer
        no other change meanwhile, so the epoch waits on that COMMIT:
        docs/equivocation.md, rounds that never decide."""
        return not self._commits_in_reach(proposal, without=frozenset(members))

    def _commits_in_reach(self, proposal: _Proposal, without: frozenset[bytes]) -> bool:
        """Whether the members ``proposal`` keeps can still make a strict majority of
        COMMITs for it, with the removed members' COMMITs already held; the members
        ``without`` count for nothing."""
        epoch = self.current
        round_ = proposal.change.round
        tally = self._tally_all(epoch, proposal)
        commits = epoch.commits.get(proposal.id, {})
        hopeful = sum(1 for other in proposal.removed - without if other in commits)
        for other in epoch.members - proposal.removed - without:
            own = epoch.answers.get(round_, {}).get(other)
            later = epoch.last_round.get(other, -1) > round_
            answered_it = own is not None and own.change == proposal.id and (self.rules > 1 or not later)
            if other in commits or (
                other not in epoch.exits and (answered_it or (own is None and not later))
            ):
                hopeful += 1
        return 2 * hopeful > tally.base

    def waiting_on(self, proposal: _Proposal) -> frozenset[bytes]:
        """The members an open change still needs an answer from."""
        epoch = self.current
        return frozenset(
            member
            for member in epoch.members - proposal.removed
            if epoch.answer_of(member, proposal.change.round) is None
        )

    def first_proposer_after_rivals(self) -> bytes | None:
        """When the latest round of the current epoch died of rival changes (members that
        proposed at the same moment), the author of the first of them by key: it proposes
        again at once, the others give it a moment (or rivals meet again every round)."""
        if not self.epochs or not self.current.proposals:
            return None
        epoch = self.current
        top = max(p.change.round for p in epoch.proposals.values())
        rivals = [p for p in epoch.proposals.values() if p.change.round == top]
        # (An earlier round may still be open: one whose answerers moved on may be decided
        # yet, see _tally; what matters is that the latest died of its rivals.)
        if len(rivals) < 2 or any(self._status(epoch, p) is None for p in rivals):
            return None
        return min(rivals, key=lambda p: p.key).id.sender_id

    def next_round(self) -> int:
        """The round a new change of the current epoch should use: above every round used."""
        if not self.epochs:
            return 0
        epoch = self.current
        used = [p.change.round for p in epoch.proposals.values()]
        return max(used, default=-1) + 1

    def reopening(self, member: bytes) -> bool:
        """Whether ``member`` may vote to reopen the current epoch: it went away from it,
        and every member has exited it (see the module doc)."""
        if not self.epochs:
            return False
        epoch = self.current
        exit_ = epoch.exits.get(member)
        return exit_ is not None and exit_[1] is EntryKind.AWAY and self._all_exited(epoch, _EVERYTHING)

    def reopening_change(self, member: bytes, back: Mapping[bytes, str]) -> Change | None:
        """The reopening ``member`` may propose now, admitting the members away that are
        ``back`` (with their names; ``member`` among them) and removing the others
        away; None if it may not, or if it could not be decided (``back`` is no strict
        majority of the members that did not leave), or if one is open already."""
        if not self.reopening(member) or member not in back or self.open_proposals():
            return None
        epoch = self.current
        if self._open_commit(epoch, member, _EVERYTHING) is not None:
            return None
        away = _away(epoch)
        admitted = {m: name for m, name in back.items() if m in away}
        if 2 * len(admitted) <= len(away):
            return None
        round_ = max(self.next_round(), epoch.last_round.get(member, -1) + 1)
        removed = tuple(sorted(away - set(admitted)))
        return Change(epoch.number, round_, tuple(sorted(admitted.items())), removed)

    def owed_answer(self, member: bytes) -> tuple[EntryKind, Flush] | None:
        """The entry an honest ``member`` owes now, if any: a COMMIT of the change it
        answered last once it holds all that change's answers; else a FLUSH for the
        open change of the highest round above its last answer (the first by key),
        unless it holds a COMMIT of a change that is not dead. (A member away from an
        epoch every member exited owes answers to reopening changes only.)"""
        reopening = self.reopening(member)
        if member not in self.active() and not reopening:
            return None
        epoch = self.current
        if self._open_commit(epoch, member, _EVERYTHING) is not None:
            return None
        last = epoch.last_round.get(member, -1)
        mine = self.answered(member)
        uncommitted = mine is not None and member not in epoch.commits.get(mine.id, {})
        # Not where its COMMITs can make no majority without members that hold a COMMIT
        # of another change (they may commit nothing else while it is not dead):
        # committing it would lock this member too, where the earlier change it answered
        # may need it (see _stranded_by_later_rounds).
        if (
            mine is not None
            and uncommitted
            and self._tally_all(epoch, mine).complete
            and not self._hopeless(epoch, mine, self._locked_elsewhere(epoch, mine))
        ):
            return EntryKind.COMMIT, Flush(epoch.number, mine.change.round, mine.id)
        earlier = self._stranded_by_later_rounds(epoch, member) if self.rules > 1 else None
        if earlier is not None:
            return EntryKind.COMMIT, Flush(epoch.number, earlier.change.round, earlier.id)
        candidates = [
            p for p in self.open_proposals() if p.change.round > last and (p.reopen or not reopening)
        ]
        if not candidates:
            return None
        top = max(p.change.round for p in candidates)
        chosen = min((p for p in candidates if p.change.round == top), key=lambda p: p.key)
        return EntryKind.FLUSH, Flush(epoch.number, top, chosen.id)

    def _stranded_by_later_rounds(self, epoch: Epoch, member: bytes) -> _Proposal | None:
        """An open change ``member`` answered and then moved past, that its COMMIT, with
        those of the other members in its place, decides now: every change it answered
        since is dead (rival changes of one round, say), so it holds no answer it could
        still commit, while members that committed the earlier one wait for it to be
        decided or dead, for good (docs/equivocation.md, rounds that never decide)."""
        for round_ in sorted(epoch.answers, reverse=True):
            answer = epoch.answers[round_].get(member)
            if answer is None or answer.change is None:
                continue
            proposal = epoch.proposals[answer.change]
            if proposal.reopen or self._status(epoch, proposal) is not None:
                continue
            tally = self._tally_all(epoch, proposal)
            if not tally.complete or member in epoch.commits.get(proposal.id, {}):
                continue
            locked = {m for m in epoch.members if self._open_commit(epoch, m, _EVERYTHING) is proposal}
            if not self._would_commit_stranded(epoch, member, proposal, locked):
                continue
            placed = sum(1 for m in epoch.members if self._would_commit_stranded(epoch, m, proposal, locked))
            if 2 * (tally.committed + placed) > tally.base:
                return proposal
        return None

    def _would_commit_stranded(
        self, epoch: Epoch, member: bytes, proposal: _Proposal, locked: set[bytes]
    ) -> bool:
        """Whether ``member`` answered ``proposal``, did not commit it, and may and would
        commit it now (see _stranded_by_later_rounds); ``locked``: the members holding a
        COMMIT of it that is not dead."""
        round_ = proposal.change.round
        answer = epoch.answers.get(round_, {}).get(member)
        if answer is None or answer.change != proposal.id or member in epoch.commits.get(proposal.id, {}):
            return False
        if member in epoch.exits or self._open_commit(epoch, member, _EVERYTHING) is not None:
            return False
        for later, by_member in epoch.answers.items():
            other = by_member.get(member)
            if later <= round_ or other is None or other.change is None:
                continue
            moved_to = epoch.proposals[other.change]
            # (A later change that waits on a member holding a COMMIT of this one cannot be
            # decided before this one is, or dies: that member may answer nothing else; nor
            # can one whose majority needs such a member's COMMIT.)
            if (
                self._status(epoch, moved_to) != "dead"
                and not self.waiting_on(moved_to) & locked
                and not self._hopeless(epoch, moved_to, locked)
            ):
                return False
        return True

    def _locked_elsewhere(self, epoch: Epoch, proposal: _Proposal) -> frozenset[bytes]:
        """The members holding a COMMIT of a change other than ``proposal`` that is not
        dead: none of them may commit ``proposal`` while that holds."""
        return frozenset(
            member
            for member in epoch.members
            if (held := self._open_commit(epoch, member, _EVERYTHING)) is not None and held is not proposal
        )

    def _hopeless(self, epoch: Epoch, proposal: _Proposal, locked: Iterable[bytes]) -> bool:
        """Whether ``proposal`` cannot be decided while the members ``locked`` may not
        commit it: the others that committed it or still may are no strict majority.
        Not "dead" (a lock ends if its change dies, and dead must be final), so it only
        steers what an honest member commits (owed_answer)."""
        excluded = frozenset(locked)
        if not excluded:
            return False
        tally = self._tally(epoch, proposal, _EVERYTHING, excluded)
        return 2 * tally.potential <= tally.base

    def proposal(
        self,
        member: bytes,
        admitted: tuple[tuple[bytes, str], ...],
        removed: frozenset[bytes],
        *,
        supersede: bool = False,
    ) -> Change | None:
        """A change ``member`` may honestly propose now (None if it may not, or if it
        could not be decided): ``member`` active, not removed, holding no COMMIT of a
        change that is not dead, and no change open, unless ``supersede`` (the shell
        judged the open ones stuck on members it removes): then in a round above them."""
        if member not in self.active() or member in removed or not (admitted or removed):
            return None
        if not self.could_decide(removed):
            return None
        epoch = self.current
        if self._open_commit(epoch, member, _EVERYTHING) is not None:
            return None
        if self.open_proposals() and not supersede:
            return None
        round_ = max(self.next_round(), epoch.last_round.get(member, -1) + 1)
        return Change(epoch.number, round_, admitted, tuple(sorted(removed)))

    def is_vote_after_exit(self, message: Message, number: int) -> bool:
        """Whether ``message`` (valid in epoch ``number``) is a vote written after its
        author's exit: a vote of a reopening, which takes no place in the log."""
        if message.kind not in VOTES:
            return False
        exit_ = self.epochs[number].exits.get(message.sender_id)
        return exit_ is not None and exit_[0].seq < message.seq

    def exit_seq(self, member: bytes) -> int:
        """The seq of ``member``'s exit from the current epoch (0 if none)."""
        if not self.epochs:
            return 0
        exit_ = self.current.exits.get(member)
        return exit_[0].seq if exit_ is not None else 0

    def decided_at(self, key: MessageKey) -> Decision | None:
        """The decision of the CHANGE at ``key``, if it was decided (where the log shows
        what it decided: the COMMITs that decide it take no place in the log)."""
        return self._decided_at.get(key)

    def could_decide(self, removed: frozenset[bytes]) -> bool:
        """Whether a change removing ``removed`` could be decided, should every other
        member answer it: its FLUSHes would come from a strict majority."""
        if not self.epochs:
            return False
        epoch = self.current
        required = epoch.members - removed
        exited = {m for m in required if m in epoch.exits}
        return 2 * len(required - exited) > len(epoch.members) - len(exited)

    def members(self) -> dict[bytes, MemberInfo]:
        """Everyone ever a member, with their state at the end of the log."""
        info: dict[bytes, MemberInfo] = {}
        for member in self._ever:
            info[member] = MemberInfo(member, self._names.get(member, ""), self._state(member))
        return info

    def _state(self, member: bytes) -> MemberState:
        epoch = self.current
        if member in epoch.members:
            exit_ = epoch.exits.get(member)
            if exit_ is None:
                return MemberState.ACTIVE
            return MemberState.LEFT if exit_[1] is EntryKind.LEAVE else MemberState.AWAY
        for past in reversed(self.epochs[:-1]):
            if member in past.members:
                decision = past.decision
                assert decision is not None
                if member in decision.removed and not past.proposals[decision.change].reopen:
                    return MemberState.REMOVED  # (one a reopening left out is still away)
                exit_ = past.exits.get(member)
                if exit_ is not None and exit_[1] is EntryKind.LEAVE:
                    return MemberState.LEFT
                return MemberState.AWAY
        return MemberState.AWAY  # admitted by an open change, not yet a member

    # Judging --------------------------------------------------------------------
    def epoch_of(self, author: bytes, seq: int, vector: Mapping[bytes, int], since: int = 0) -> int:
        """The epoch of an entry: past every decision all of whose answers its causal
        past (its vector clock and its author's earlier entries) holds.

        ``since``: an epoch the entry is known to be in or after (its author's previous
        entry's); decisions nest, so the search goes up from there.
        """
        number = min(since, len(self.epochs) - 1)
        while number < len(self.epochs) - 1:
            epoch = self.epochs[number]
            decision = epoch.decision
            assert decision is not None
            if not _holds_all(vector, author, seq, decision.answers):
                break
            commits = epoch.commits.get(decision.change, {})
            past = _past(vector, author, seq)
            shown = sum(1 for member, commit in commits.items() if past(member, commit))
            if 2 * shown <= decision.base:
                break  # (it follows every answer, but was written before it knew the outcome)
            number += 1
        return number

    def judge(self, message: Message, vector: Mapping[bytes, int], since: int = 0) -> tuple[int, str | None]:
        """``message``'s epoch and, if it is invalid there, why (rule 10).

        ``vector`` is its full vector clock without its author's own entry; ``since``
        as for :meth:`epoch_of`.
        """
        if not self.epochs:
            return 0, "written before the room's genesis"
        number = self.epoch_of(message.sender_id, message.seq, vector, since)
        epoch = self.epochs[number]
        author = message.sender_id
        if author not in epoch.members:
            return number, "its author is not a member of its epoch"
        if epoch.decision is not None:
            if message.seq > epoch.decision.cuts.get(author, 0):
                return number, "above its author's cut in a closed epoch"
            return number, None
        exit_ = epoch.exits.get(author)
        if exit_ is not None and exit_[0].seq < message.seq:
            return number, self._judge_after_exit(epoch, message, vector, exit_[1])
        if message.kind is EntryKind.TEXT:
            # A chat line after its author answered a change still open is valid for now:
            # if the change is decided it is above the author's cut, and void (its peer
            # sends the line again); if the change dies it stays. The log never calls such
            # an entry stable while the change is open (see writes_after_answers).
            return number, None
        past = _past(vector, author, message.seq)
        if message.kind is EntryKind.CHANGE:
            return number, self._judge_change(epoch, message, vector, past)
        if message.kind is EntryKind.FLUSH:
            return number, self._judge_flush(epoch, message, past)
        if message.kind is EntryKind.COMMIT:
            return number, self._judge_commit(epoch, message, past)
        if message.kind in (EntryKind.LEAVE, EntryKind.AWAY) and self._open_commit(epoch, author, past):
            # (Its exit would answer a rival round, as if it had not committed.)
            return number, "exits while holding a COMMIT of a change that is not dead"
        return number, None  # (an exit after its author's answer: as a chat line there)

    def _judge_after_exit(
        self, epoch: Epoch, message: Message, vector: Mapping[bytes, int], exit_kind: EntryKind
    ) -> str | None:
        """Why an entry written after its author's exit from ``epoch`` is invalid: all are,
        but a vote of a reopening (see the module doc)."""
        refused = "written after its author left the epoch"
        if exit_kind is not EntryKind.AWAY or message.kind not in VOTES:
            return refused
        past = _past(vector, message.sender_id, message.seq)
        if not self._all_exited(epoch, past):
            return refused
        if message.kind is EntryKind.CHANGE:
            problem = self._judge_reopening(epoch, message)
        else:
            named = self._named(epoch, message)
            problem = None if named is None or named.reopen else "answers a change that reopens nothing"
        return problem or self._judge_vote(epoch, message, vector, past)

    @staticmethod
    def _all_exited(epoch: Epoch, held: _Held) -> bool:
        """Whether ``held`` holds an exit of every member of ``epoch``."""
        exits = epoch.exits
        return all(m in exits and held(m, exits[m][0].seq) for m in epoch.members)

    @staticmethod
    def _judge_reopening(epoch: Epoch, message: Message) -> str | None:
        """Why a CHANGE written after its author's AWAY does not reopen ``epoch``: it must
        admit its author, and admit or remove every member that went away (the
        members that left are gone for good)."""
        change = message.change
        assert change is not None
        away = _away(epoch)
        admitted = {member for member, _ in change.admitted}
        removed = set(change.removed)
        if message.sender_id not in admitted or admitted & removed or admitted | removed != away:
            return "a reopening must admit its author and admit or remove every member away"
        return None

    def _judge_vote(
        self, epoch: Epoch, message: Message, vector: Mapping[bytes, int], held: _Held
    ) -> str | None:
        """Why a CHANGE, FLUSH or COMMIT is invalid in ``epoch`` while it is open, if it is."""
        if message.kind is EntryKind.CHANGE:
            return self._judge_change(epoch, message, vector, held)
        if message.kind is EntryKind.FLUSH:
            return self._judge_flush(epoch, message, held)
        return self._judge_commit(epoch, message, held)

    def _open_commit(self, epoch: Epoch, member: bytes, held: _Held) -> _Proposal | None:
        """The change ``member`` committed last, unless ``held`` shows it dead."""
        change = epoch.committed.get(member)
        if change is None:
            return None
        proposal = epoch.proposals[change]
        tally = (
            self._tally_all(epoch, proposal) if held is _EVERYTHING else self._tally(epoch, proposal, held)
        )
        return None if tally.dead else proposal

    def _judge_round(self, epoch: Epoch, author: bytes, round_: int, held: _Held) -> str | None:
        if self._open_commit(epoch, author, held) is not None:
            return "answers again while holding a COMMIT of a change that is not dead"
        last = epoch.last_round.get(author)
        if last is not None and last >= round_:
            return "answers a round it already answered, or an earlier one"
        return None

    def _judge_change(
        self, epoch: Epoch, message: Message, vector: Mapping[bytes, int], held: _Held
    ) -> str | None:
        change = message.change
        assert change is not None
        author = message.sender_id
        if change.epoch != epoch.number:
            return "a change of another epoch than its own"
        problem = self._judge_round(epoch, author, change.round, held)
        if problem is not None:
            return problem
        removed = set(change.removed)
        if author in removed or not removed <= epoch.members:
            return "removes its author or a non-member"
        exited = {
            m
            for m, (exit_, _, _) in epoch.exits.items()
            if _holds(vector, author, message.seq, MessageId(m, exit_.seq))
        }
        staying = epoch.members - removed - exited
        if any(member in staying for member, _ in change.admitted):
            return "admits a member that is still active"
        if len(staying | {member for member, _ in change.admitted}) > MAX_MEMBERS:
            return f"the room would have more than {MAX_MEMBERS} members"
        return None

    @staticmethod
    def _named(epoch: Epoch, message: Message) -> _Proposal | None:
        """The change of ``epoch`` a FLUSH or COMMIT names, if it names one of its round."""
        flush = message.flush
        assert flush is not None
        proposal = epoch.proposals.get(flush.change)
        if flush.epoch != epoch.number or proposal is None or proposal.change.round != flush.round:
            return None
        return proposal

    def _judge_flush(self, epoch: Epoch, message: Message, held: _Held) -> str | None:
        proposal = self._named(epoch, message)
        if proposal is None:
            return "answers no change of its epoch and round"
        if not held(proposal.id.sender_id, proposal.id.seq):
            return "answers a change it had not seen"
        return self._judge_round(epoch, message.sender_id, proposal.change.round, held)

    def _judge_commit(self, epoch: Epoch, message: Message, held: _Held) -> str | None:
        proposal = self._named(epoch, message)
        if proposal is None:
            return "commits no change of its epoch and round"
        author = message.sender_id
        answer = epoch.answers.get(proposal.change.round, {}).get(author)
        if answer is None or answer.change != proposal.id:
            return "commits a change it did not answer"
        if self.rules == 1 and epoch.last_round.get(author) != proposal.change.round:
            return "commits a change that is not the one it answered last"
        if author in epoch.commits.get(proposal.id, {}):
            return "commits a change twice"
        if self._open_commit(epoch, author, held) is not None:
            return "commits while holding a COMMIT of another change that is not dead"
        if not self._tally(epoch, proposal, held).complete:
            return "commits a change without holding all its answers"
        return None

    # Recording ------------------------------------------------------------------
    def record(self, message: Message, vector: Mapping[bytes, int], number: int) -> Decision | None:
        """Note a delivered, valid membership entry of epoch ``number``.

        Returns the decision it completed, if any (the log then voids what is above
        the cuts and opens the next epoch).
        """
        author = message.sender_id
        self._names[author] = message.name
        if message.kind is EntryKind.GENESIS:
            self.founder = author
            self.rules = message.rules
            self._ever.add(author)
            self._first_epoch.setdefault(author, 0)
            self.epochs.append(Epoch(0, frozenset({author})))
            return None
        epoch = self.epochs[number]
        if message.kind in VOTES:
            self._note_vote(epoch, message, vector)
        if epoch.decision is not None:
            # (A valid entry of a closed epoch delivered after its decision: its answer or
            # COMMIT is noted all the same, as where it came first, for the COMMITs and
            # epochs judged later; nothing is decided again.)
            return None
        if message.kind is EntryKind.COMMIT:
            decision = self._decide(epoch, message.key)
            self._tallies.clear()  # (_decide filled it; a decision changes every status)
            return decision
        if message.kind in (EntryKind.LEAVE, EntryKind.AWAY):
            answer = _Answer(author, message.seq, None, dict(vector), message.key)
            epoch.exits[author] = (answer, message.kind, message.key)
            self._tallies.clear()
        return None  # (only a COMMIT decides: it needs every answer in its causal past)

    def _note_vote(self, epoch: Epoch, message: Message, vector: Mapping[bytes, int]) -> None:
        """Note a CHANGE (a proposal and its author's answer), a FLUSH (an answer) or a
        COMMIT of ``epoch``, judged valid there."""
        author = message.sender_id
        if message.kind is EntryKind.CHANGE:
            assert message.change is not None
            exit_ = epoch.exits.get(author)
            reopen = exit_ is not None and exit_[0].seq < message.seq
            epoch.proposals[message.id] = _Proposal(message.id, message.key, message.change, reopen)
            for member, name in message.change.admitted:
                self._names.setdefault(member, name)
            answer = _Answer(author, message.seq, message.id, dict(vector), message.key, message.change.tails)
            self._answer(epoch, message.change.round, answer)
        elif message.kind is EntryKind.FLUSH:
            assert message.flush is not None
            flush = message.flush
            answer = _Answer(author, message.seq, flush.change, dict(vector), message.key, flush.tails)
            self._answer(epoch, message.flush.round, answer)
        else:
            assert message.kind is EntryKind.COMMIT and message.flush is not None
            self._commit(epoch, author, message.seq, message.flush.change)
        self._tallies.clear()

    def record_void(self, message: Message, vector: Mapping[bytes, int], number: int) -> None:
        """Note a delivered entry of epoch ``number`` that is void because it came after
        the decision (above its author's cut): a COMMIT still counts for which epoch a
        later entry is in, and an exit carries over into the next epoch, the same on
        every replica."""
        epoch = self.epochs[number] if number < len(self.epochs) else None
        if epoch is None or epoch.decision is None:
            return
        author = message.sender_id
        past = _past(vector, author, message.seq)
        if message.kind in VOTES:
            # Judged as the open epoch would have, on its causal past alone, and noted if
            # valid there: a replica that took it before the decision noted it, and what
            # the COMMITs and epochs of later entries are judged on must not depend on
            # which came first. (A removed member's answer and COMMIT: above its cut.)
            exit_ = epoch.exits.get(author)
            if exit_ is not None and exit_[0].seq < message.seq:
                problem = self._judge_after_exit(epoch, message, vector, exit_[1])
            else:
                problem = self._judge_vote(epoch, message, vector, past)
            if problem is None:
                self._note_vote(epoch, message, vector)
        elif message.kind in (EntryKind.LEAVE, EntryKind.AWAY):
            # Judged as the open epoch would have: its first exit there, and not while
            # holding a COMMIT of a change not dead in its causal past.
            if author in epoch.exits or self._open_commit(epoch, author, past) is not None:
                return
            answer = _Answer(author, message.seq, None, dict(vector), message.key)
            self._carry_exit(number, answer, message.kind)

    def _carry_exit(self, number: int, answer: _Answer, kind: EntryKind) -> None:
        """An exit from epoch ``number`` above its author's cut: its author exited the
        next epoch too, if it is a member there (see "An exit carries over")."""
        epoch = self.epochs[number]
        decision = epoch.decision
        assert decision is not None
        following = self.epochs[number + 1]
        member = answer.member
        if member not in following.members or member in following.exits:
            return
        if answer.seq <= decision.cuts.get(member, 0):
            return  # (within the cut: a valid exit of the closed epoch, not carried)
        following.exits[member] = (answer, kind, answer.key)
        self._tallies.clear()

    @staticmethod
    def _commit(epoch: Epoch, member: bytes, seq: int, change: MessageId) -> None:
        epoch.commits.setdefault(change, {})[member] = seq
        epoch.committed[member] = change

    @staticmethod
    def _answer(epoch: Epoch, round_: int, answer: _Answer) -> None:
        epoch.answers.setdefault(round_, {})[answer.member] = answer
        epoch.last_round[answer.member] = round_

    def _decide(self, epoch: Epoch, key: MessageKey) -> Decision | None:
        for proposal in sorted(epoch.proposals.values(), key=lambda p: p.key):
            if self._status(epoch, proposal) == "decided":
                return self._close(epoch, proposal, key)
        return None

    def _status(self, epoch: Epoch, proposal: _Proposal) -> str | None:
        """ "decided", "dead", or None (open), from everything held."""
        if epoch.decision is not None:
            return "decided" if epoch.decision.change == proposal.id else "dead"
        tally = self._tally_all(epoch, proposal)
        if tally.decided:
            return "decided"
        return "dead" if tally.dead else None

    def _tally_all(self, epoch: Epoch, proposal: _Proposal) -> _Tally:
        """_tally among every entry held, computed once per entry recorded: a room whose
        members moved on through many rounds asks it of every change at every step."""
        key = (epoch.number, proposal.id)
        tally = self._tallies.get(key)
        if tally is None:
            tally = self._tallies[key] = self._tally(epoch, proposal, _EVERYTHING)
        return tally

    def _tally(
        self, epoch: Epoch, proposal: _Proposal, held: _Held, excluded: frozenset[bytes] = frozenset()
    ) -> _Tally:
        """Where ``proposal`` stands among the entries ``held`` says are held; with
        ``excluded``, as if those members could no longer commit it (see _hopeless)."""
        moved_on_may_commit = self.rules > 1
        round_ = proposal.change.round
        commits = epoch.commits.get(proposal.id, {})
        complete, blocked = True, False
        committed = potential = exits = 0
        for member in epoch.members:
            own: _Answer | None = None
            later = False
            for answered_round, by_member in epoch.answers.items():
                answer = by_member.get(member)
                if answer is None or not held(member, answer.seq):
                    continue
                if answered_round == round_:
                    own = answer
                later = later or answered_round > round_
            exit_ = epoch.exits.get(member)
            exited = exit_ is not None and held(member, exit_[0].seq)
            if proposal.reopen and exit_ is not None and exit_[1] is EntryKind.AWAY:
                exited = False  # (in a reopening an AWAY answers nothing: it votes, or not)
            if member in proposal.removed:
                # Not needed, but it may answer and commit its own removal: without its
                # COMMIT a majority may be out of reach (two members left of four, one
                # crashed after it answered), so it counts among who may still commit.
                answers_it = (own is not None and own.change == proposal.id) or (own is None and not later)
                answers_it = answers_it and (moved_on_may_commit or not later)
                if member in commits and held(member, commits[member]):
                    committed += 1
                    potential += 1
                elif answers_it and not exited and member not in excluded:
                    potential += 1
            elif own is not None and own.change != proposal.id:
                complete, blocked = False, True  # it answered a rival of the round
            elif own is not None:
                if member in commits and held(member, commits[member]):
                    committed += 1
                    potential += 1
                elif not exited and (moved_on_may_commit or not later) and member not in excluded:
                    # It may still commit, even once it answered a later round: whenever it
                    # holds no COMMIT of another change that is not dead (_judge_commit).
                    potential += 1
            elif later:
                complete, blocked = False, True  # it skipped the round: it can never answer it
            elif exited:
                exits += 1  # its exit answers the round
            else:
                complete = False
                potential += member not in excluded
        return _Tally(complete, blocked, committed, potential, len(epoch.members) - exits)

    def _removal_cut(
        self, epoch: Epoch, gone: bytes, answers: Iterable[_Answer]
    ) -> tuple[int, dict[int, bytes]]:
        """A removed member's cut, and the versions of its entries up to the cut that the
        answers name (see Decision.versions).

        The cut is the highest of its seqs that an answer names, but below the first of
        its entries of this epoch that two answers name in different versions (it
        signed two: an equivocator). Every replica holds the same answers, so it voids
        the same entries, whichever version of them it holds. Not below the epoch: what
        a closed epoch holds is stable.

        A difference counts only at an entry that every answer holding it names as not
        stable at its author (see _checked_versions): an entry held in two versions is
        stable on no answerer (the covers name versions), and an honest answer names
        every entry not stable there (OrderedLog._tails). So a member that lies in its
        answer, naming another version of an honest entry, can void none that an
        answerer holds stable."""
        answers = list(answers)
        cut = max((a.names(gone) for a in answers), default=0)
        # (An exit names no tails: it was written before the change, and holds nothing
        # back, see the module doc.)
        versions, fork = _checked_versions(gone, [a for a in answers if a.change is not None])
        if fork is not None:
            floor = max(
                (e.decision.cuts.get(gone, 0) for e in self.epochs[: epoch.number] if e.decision is not None),
                default=0,
            )
            cut = max(floor, min(cut, fork - 1))
        return cut, {seq: link for seq, link in versions.items() if seq <= cut}

    def _close(self, epoch: Epoch, proposal: _Proposal, key: MessageKey) -> Decision:
        round_ = proposal.change.round
        answers = {m: a for m in epoch.members - proposal.removed if (a := epoch.answer_of(m, round_))}
        cuts = {member: answer.seq for member, answer in answers.items()}
        versions: dict[bytes, dict[int, bytes]] = {}
        for gone in proposal.removed:
            cuts[gone], versions[gone] = self._removal_cut(epoch, gone, answers.values())
        # An exit counts only if it answered the change (an exit written after answering
        # this change is void, as any entry there).
        exited = {m for m, answer in answers.items() if answer.change is None}
        decision = Decision(
            proposal.id,
            proposal.key,
            proposal.change.admitted,
            proposal.change.removed,
            {m: a.seq for m, a in answers.items()},
            cuts,
            len(epoch.members) - len(exited),
            key,
            versions,
        )
        epoch.decision = decision
        self._decided_at[proposal.key] = decision
        admitted = {member for member, _ in proposal.change.admitted}
        members = (epoch.members - proposal.removed - exited) | admitted
        for gone in proposal.removed:
            self._removed_in[gone] = epoch.number
        self._ever |= admitted
        for member in admitted:
            self._first_epoch.setdefault(member, epoch.number + 1)
        self.epochs.append(Epoch(epoch.number + 1, frozenset(members)))
        for answer, kind, _ in list(epoch.exits.values()):
            if answer.member not in exited:
                self._carry_exit(epoch.number, answer, kind)
        return decision


@dataclass(frozen=True, slots=True)
class _Tally:
    """A change's answers and commits among some entries (see Roster._tally)."""

    complete: bool
    """Every member it needs answered it."""
    blocked: bool
    """A member it needs answered a rival of its round, or skipped the round."""
    committed: int
    potential: int
    """Members that committed it or still may."""
    base: int

    @property
    def decided(self) -> bool:
        return self.complete and 2 * self.committed > self.base

    @property
    def dead(self) -> bool:
        return self.blocked or 2 * self.potential <= self.base


_Held = Callable[[bytes, int], bool]
"""Whether the entry (member, seq) is among those considered."""


def _checked_versions(gone: bytes, answers: list[_Answer]) -> tuple[dict[int, bytes], int | None]:
    """The versions of ``gone``'s entries that every answer holding them names alike,
    and the first of its entries two answers name differently where that counts: an
    entry that every answer holding it names as not stable at its author. (A difference
    counts nowhere else: one of the two answers lies, and what an answerer holds stable
    stays. Nor does a version that an answer holding the entry does not name.)"""
    windows = [(a.names(gone), dict(a.versions_of(gone)), a.first_unstable(gone)) for a in answers]
    versions: dict[int, bytes] = {}
    fork = None
    for seq in sorted({seq for _, named, _ in windows for seq in named}):
        holders = [(named, unstable) for held, named, unstable in windows if held >= seq]
        if any(seq not in named for named, _ in holders):
            continue
        links = {named[seq] for named, _ in holders}
        if len(links) == 1:
            versions[seq] = links.pop()
        elif all(unstable <= seq for _, unstable in holders):
            fork = seq
            break
    return versions, fork


def _away(epoch: Epoch) -> set[bytes]:
    """The members that exited ``epoch`` by AWAY (they may come back)."""
    return {m for m, (_, kind, _) in epoch.exits.items() if kind is EntryKind.AWAY}


def _everything(member: bytes, seq: int) -> bool:
    return True


_EVERYTHING: _Held = _everything
"""Every entry recorded (the replica's own view)."""


def _past(vector: Mapping[bytes, int], author: bytes, seq: int) -> _Held:
    """The causal past of ``author``'s entry ``seq`` with full vector clock ``vector``."""
    return lambda member, member_seq: _holds(vector, author, seq, MessageId(member, member_seq))


def _holds(vector: Mapping[bytes, int], author: bytes, seq: int, entry: MessageId) -> bool:
    """Whether an entry (``author``'s ``seq``, with ``vector``) has ``entry`` in its causal past."""
    if entry.sender_id == author:
        return entry.seq < seq
    return vector.get(entry.sender_id, 0) >= entry.seq


def _holds_all(vector: Mapping[bytes, int], author: bytes, seq: int, answers: Mapping[bytes, int]) -> bool:
    for member, answer_seq in answers.items():
        if member == author:
            if answer_seq >= seq:
                return False
        elif vector.get(member, 0) < answer_seq:
            return False
    return True
