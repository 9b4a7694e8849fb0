"""How a membership change is decided (DESIGN.md rule 10), in the pure core.

A change is decided by two phases of entries: every member it keeps answers it
(FLUSH), then members holding every answer commit it (COMMIT), and COMMITs from a
strict majority decide it. The hard cases are a member that crashes before it
answers (the change must be superseded by one removing it) and a replica that holds
an answer nobody else ever got (it must not decide what the others moved past).
Each test builds the entries with the members' own logs, then delivers them to
fresh replicas in every order hypothesis draws: all replicas must agree.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from p2pchat.identity import Identity
from p2pchat.log import Concurrent, OrderedLog
from p2pchat.membership import MemberState
from p2pchat.message import ROOM_RULES, Change, EntryKind, Flush, Message, MessageId
from p2pchat.node import NodeConfig
from p2pchat.sim import SimConfig, Simulation

PEOPLE = [Identity(bytes([0x40 + i]) * 32) for i in range(5)]
NEWCOMER = Identity(b"\x4f" * 32)


@dataclass
class Room:
    """Four members (p0 founded the room and admitted p1..p3), each with its own log."""

    logs: list[OrderedLog]
    written: list[Message] = field(default_factory=list)

    def write(self, i: int, kind: EntryKind, **body: object) -> Message:
        message = self.logs[i].compose(PEOPLE[i], name=f"p{i}", text="", sent_at_ms=0, kind=kind, **body)  # type: ignore[arg-type]
        self.logs[i].receive(message)
        self.written.append(message)
        return message

    def answer(self, i: int) -> Message | None:
        """What member ``i`` owes now (a FLUSH or a COMMIT), written."""
        owed = self.logs[i].roster.owed_answer(PEOPLE[i].sender_id)
        return None if owed is None else self.write(i, owed[0], flush=owed[1])

    def sync(self, i: int, j: int) -> None:
        """``j`` gets everything ``i`` holds."""
        self.logs[j].receive_many([*self.logs[i], *self.logs[i].tombstones()])

    def replica(self, order: list[int]) -> OrderedLog:
        """A fresh replica fed every entry written, in ``order``."""
        log = OrderedLog(room_id=self.logs[0].room_id)
        log.receive_many(self.written[k] for k in order)
        return log


def four_members(count: int = 4, rules: int = ROOM_RULES) -> Room:
    """p0 founded the room (by ``rules``) and admitted p1 up to p{count - 1}."""
    founder, genesis = OrderedLog.found(PEOPLE[0], name="p0", room_name="room", sent_at_ms=0, rules=rules)
    logs = [founder, *(OrderedLog(room_id=genesis.room_id()) for _ in PEOPLE[1:count])]
    room = Room(logs, [genesis])
    admitted = tuple((p.sender_id, f"p{i}") for i, p in enumerate(PEOPLE[1:count], start=1))
    change = room.write(0, EntryKind.CHANGE, change=Change(0, 0, admitted))
    room.write(0, EntryKind.COMMIT, flush=Flush(0, 0, change.id))
    for i in range(1, count):
        room.sync(0, i)
        assert logs[i].is_member(PEOPLE[i].sender_id)
    return room


def admission_stuck_on_p3(*, p3_answers: bool) -> tuple[Room, Message, Message | None]:
    """p0 proposes to admit the newcomer; p1 and p2 answer; p3 crashes, after writing a
    FLUSH that reaches nobody (``p3_answers``) or before answering at all."""
    room = four_members()
    admit = room.logs[0].roster.proposal(PEOPLE[0].sender_id, ((NEWCOMER.sender_id, "new"),), frozenset())
    assert admit is not None
    change = room.write(0, EntryKind.CHANGE, change=admit)
    for i in (1, 2, 3):
        room.sync(0, i)
    room.answer(1)
    room.answer(2)
    lost = room.answer(3) if p3_answers else None
    for i in (0, 1, 2):
        for j in (0, 1, 2):
            if i != j:
                room.sync(i, j)
    # Without p3's answer nobody can commit: the change is stuck.
    assert all(room.answer(i) is None for i in (0, 1, 2))
    assert room.logs[1].roster.waiting_on(room.logs[1].roster.open_proposals()[0]) == {PEOPLE[3].sender_id}
    return room, change, lost


def supersede(room: Room, by: int) -> Message:
    """Member ``by`` proposes, in a later round, to remove p3 and admit the newcomer; the
    others answer and commit; everyone alive shares everything."""
    roster = room.logs[by].roster
    gone = frozenset({PEOPLE[3].sender_id})
    assert all(roster.waiting_on(p) & gone for p in roster.open_proposals())
    proposal = roster.proposal(PEOPLE[by].sender_id, ((NEWCOMER.sender_id, "new"),), gone, supersede=True)
    assert proposal is not None and proposal.round == 1
    change = room.write(by, EntryKind.CHANGE, change=proposal)
    settle(room)
    return change


def settle(room: Room) -> None:
    """p0, p1 and p2 answer what they owe and share everything, until nothing is owed."""
    for _ in range(6):
        for i in (0, 1, 2):
            for j in (0, 1, 2):
                if i != j:
                    room.sync(i, j)
        if all(room.answer(i) is None for i in (0, 1, 2)):
            return
    raise AssertionError("answers still owed after six rounds")


def test_concurrent_events_name_only_entries_with_a_place_in_the_log() -> None:
    # The four COMMITs of an admission are written concurrently, and they are tombstones:
    # a user interface that looked one up among the lines would find nothing.
    room = four_members()
    admit = room.logs[0].roster.proposal(PEOPLE[0].sender_id, ((NEWCOMER.sender_id, "new"),), frozenset())
    room.write(0, EntryKind.CHANGE, change=admit)
    for i in (1, 2, 3):
        room.sync(0, i)
        room.answer(i)
    for i in range(4):
        for j in range(4):
            if i != j:
                room.sync(i, j)
    commits = [room.answer(i) for i in range(4)]
    assert all(commit is not None and commit.kind is EntryKind.COMMIT for commit in commits)
    replica = OrderedLog(room_id=room.logs[0].room_id)
    named: list[MessageId] = []
    for _, receipt in replica.receive_many(room.written):
        named.extend(i for event in receipt.events if isinstance(event, Concurrent) for i in event.ids)
    shown = {message.id for message in replica}
    assert named and set(named) <= shown
    assert any(replica.is_concurrent(commit.id) for commit in commits if commit is not None)


@settings(max_examples=60, deadline=None)
@given(p3_answers=st.booleans(), by=st.sampled_from([0, 1, 2]), data=st.data())
def test_a_change_stuck_on_a_crashed_member_is_superseded_and_every_replica_agrees(
    p3_answers: bool, by: int, data: st.DataObject
) -> None:
    room, stuck, lost = admission_stuck_on_p3(p3_answers=p3_answers)
    winner = supersede(room, by)
    for i in (0, 1, 2):
        decision = room.logs[i].roster.epochs[1].decision
        assert decision is not None and decision.change == winner.id
        assert room.logs[i].is_member(NEWCOMER.sender_id)
        assert not room.logs[i].is_member(PEOPLE[3].sender_id)
    # Replicas that get everything, p3's lost answer included, in any order: the stuck
    # change is never decided anywhere (its answers are all there, but nobody could
    # commit it before moving on), p3's answer is void, and the logs are identical.
    orders = [data.draw(st.permutations(range(len(room.written))), label=f"order {r}") for r in range(3)]
    replicas = [room.replica(order) for order in orders]
    expected = [m.key for m in room.logs[0]]
    for log in replicas:
        decision = log.roster.epochs[1].decision
        assert decision is not None and decision.change == winner.id != stuck.id
        assert [m.key for m in log] == expected
        assert log.stability_violations == 0
        if lost is not None:
            assert log.get(lost.id) is not None and not log.is_visible(lost)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_member_holding_a_commit_waits_and_the_members_that_moved_on_commit_it_too(
    data: st.DataObject,
) -> None:
    """p3's answer reaches p2 only: p2 commits the stuck change, so it may not answer the
    superseding one while the stuck one may still be decided. p0 and p1 moved on to the
    superseding change, which waits on p2: once they hold every answer of the stuck one
    (p2 passes p3's on), they commit it, and it is decided (p3 is still a member, to be
    removed in the next epoch). Until the rule that a member may commit a change it
    moved past, p2 answered the superseding change once p0 and p1 had moved on (the
    stuck one was then dead); the room that a removed member's COMMIT alone could
    decide waited for good (see test_members_that_moved_on_to_a_round_its_rivals_...)."""
    room, stuck, lost = admission_stuck_on_p3(p3_answers=True)
    assert lost is not None
    room.sync(3, 2)
    commit = room.answer(2)
    assert commit is not None and commit.kind is EntryKind.COMMIT
    roster = room.logs[2].roster
    assert roster.holds_open_commit(PEOPLE[2].sender_id)
    # p0 supersedes; p1 follows; p2 holds its COMMIT.
    proposal = room.logs[0].roster.proposal(
        PEOPLE[0].sender_id, ((NEWCOMER.sender_id, "new"),), frozenset({PEOPLE[3].sender_id}), supersede=True
    )
    assert proposal is not None
    superseding = room.write(0, EntryKind.CHANGE, change=proposal)
    room.sync(0, 2)
    assert room.answer(2) is None
    room.sync(0, 1)
    assert room.answer(1) is not None  # p1 moves on (it had not committed)
    room.sync(1, 2)
    assert room.answer(2) is None  # p0 and p1 may still commit the stuck change
    assert room.answer(0) is None  # (it does not hold p3's answer yet)
    settle(room)
    orders = [data.draw(st.permutations(range(len(room.written))), label=f"order {r}") for r in range(2)]
    expected = [m.key for m in room.logs[0]]
    for log in [room.logs[0], room.logs[1], room.logs[2], *(room.replica(order) for order in orders)]:
        decision = log.roster.epochs[1].decision
        assert decision is not None and decision.change == MessageId(stuck.sender_id, stuck.seq)
        assert decision.change != superseding.id
        assert decision.cuts[PEOPLE[3].sender_id] == lost.seq  # (its answer, which p2 passed on)
        assert log.is_member(PEOPLE[3].sender_id) and log.is_member(NEWCOMER.sender_id)
        assert [m.key for m in log] == expected


def test_an_exit_while_holding_an_open_commit_is_refused_the_same_everywhere() -> None:
    room, _, _ = admission_stuck_on_p3(p3_answers=True)
    room.sync(3, 2)
    room.answer(2)  # p2 commits the stuck change
    away = room.write(2, EntryKind.AWAY)
    replica = room.replica(list(range(len(room.written))))
    assert replica.get(away.id) is not None and not replica.is_visible(away)
    assert not replica.is_visible(away) and not room.logs[2].is_visible(away)


def test_a_member_being_removed_may_commit_its_removal_when_the_proposer_crashed() -> None:
    """p0 proposes to remove p1, then crashes; p2 and p3 answer and commit. Three COMMITs of
    four members are needed, and p0 cannot give one: p1's own (it may answer and commit its
    removal) decides the change, instead of a stall for good. (Found by model checking.)"""
    room = four_members()
    gone = frozenset({PEOPLE[1].sender_id})
    proposal = room.logs[0].roster.proposal(PEOPLE[0].sender_id, (), gone)
    assert proposal is not None
    change = room.write(0, EntryKind.CHANGE, change=proposal)
    for i in (1, 2, 3):
        room.sync(0, i)  # p0 crashes now
    for _ in range(4):
        for i in (1, 2, 3):
            room.answer(i)
        for i in (1, 2, 3):
            for j in (1, 2, 3):
                if i != j:
                    room.sync(i, j)
    for log in [*(room.logs[i] for i in (1, 2, 3)), room.replica(list(range(len(room.written))))]:
        decision = log.roster.epochs[1].decision
        assert decision is not None and decision.change == change.id
        assert not log.is_member(PEOPLE[1].sender_id) and log.is_member(PEOPLE[0].sender_id)


def round_left_by_rivals(rules: int = ROOM_RULES) -> tuple[Room, Message, list[Message]]:
    """Five members; p4 is silent and p0 proposes its removal (round 0). p2 and p3 hold
    every answer and commit it. p0 and p1 had not seen theirs yet: each proposed the
    removal again in round 1, at the same moment, and the two rivals kill each other.
    Then everyone but p4 shares everything and writes what it owes, three times."""
    room = four_members(5, rules)
    gone = frozenset({PEOPLE[4].sender_id})
    proposal = room.logs[0].roster.proposal(PEOPLE[0].sender_id, (), gone)
    assert proposal is not None
    first = room.write(0, EntryKind.CHANGE, change=proposal)
    for i in (1, 2, 3):
        room.sync(0, i)
        assert room.answer(i) is not None
    for i, j in ((1, 2), (1, 3), (2, 3), (3, 2)):
        room.sync(i, j)
    for i in (2, 3):
        commit = room.answer(i)
        assert commit is not None and commit.kind is EntryKind.COMMIT
    rivals = []
    for i in (0, 1):
        again = room.logs[i].roster.proposal(PEOPLE[i].sender_id, (), gone, supersede=True)
        assert again is not None and again.round == 1
        rivals.append(room.write(i, EntryKind.CHANGE, change=again))
    for _ in range(3):
        for i in range(4):
            for j in range(4):
                if i != j:
                    room.sync(i, j)
        for i in range(4):
            room.answer(i)
    return room, first, rivals


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_members_that_moved_on_to_a_round_its_rivals_killed_commit_the_round_they_left(
    data: st.DataObject,
) -> None:
    """round_left_by_rivals: three COMMITs of five decide round 0, and only p0, p1 and the
    removed p4 may still give the third (p2 and p3 may answer no other change
    meanwhile). Every change p0 and p1 answered since is dead, so they commit round 0,
    and it is decided (it used to wait for p4's COMMIT, for good: churn explorer, liars
    seed 267)."""
    room, first, rivals = round_left_by_rivals()
    lines = []
    for _ in range(2):  # (the second round says the first was delivered everywhere)
        lines.append([room.write(i, EntryKind.TEXT) for i in range(4)])
        for i in range(4):
            for j in range(4):
                if i != j:
                    room.sync(i, j)
    orders = [data.draw(st.permutations(range(len(room.written))), label=f"order {r}") for r in range(2)]
    expected = [m.key for m in room.logs[0]]
    for log in [*room.logs[:4], *(room.replica(order) for order in orders)]:
        decision = log.roster.epochs[1].decision
        assert decision is not None and decision.change == first.id
        assert all(rival.id != decision.change for rival in rivals)
        assert not log.is_member(PEOPLE[4].sender_id)
        assert [m.key for m in log] == expected
        assert all(log.is_stable(line) for line in lines[0])
        assert log.stability_violations == 0


def test_a_room_founded_by_the_rules_before_keeps_them() -> None:
    """A room founded before protocol 11 (rules 1: a GENESIS of two items) is judged as it
    was: a member commits only the change it answered last. In round_left_by_rivals,
    round 0 then waits for p4's COMMIT; and a COMMIT of round 0 that p0 writes anyway is
    refused on every replica (in a room by rules 2, valid)."""
    for rules in (1, ROOM_RULES):
        room, first, _ = round_left_by_rivals(rules)
        decided = room.logs[0].roster.epochs[1].decision is not None
        assert decided == (rules > 1)
        if decided:
            continue
        assert all(room.logs[i].roster.owed_answer(PEOPLE[i].sender_id) is None for i in range(4))
        late = room.logs[0].compose(
            PEOPLE[0], name="p0", text="", sent_at_ms=0, kind=EntryKind.COMMIT, flush=Flush(1, 0, first.id)
        )
        replica = room.replica(list(range(len(room.written))))
        replica.receive(late)
        assert replica.roster.epochs[1].decision is None
        assert replica.get(late.id) is None or not replica.is_visible(late)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_an_exit_written_after_answering_carries_over_into_the_next_epoch(data: st.DataObject) -> None:
    """p3 answers an admission, then quits (its AWAY) before anyone commits. The change is
    decided without it: its AWAY is above its cut, void. It wrote nothing after it, so it
    is away in the next epoch too, on every replica, whether the AWAY came before or after
    the decision there: the next epoch's stability does not wait for p3 (it used to, until
    p3 was removed for silence)."""
    room = four_members()
    room.logs.append(OrderedLog(room_id=room.logs[0].room_id))
    newcomer = PEOPLE[4]
    admit = room.logs[0].roster.proposal(PEOPLE[0].sender_id, ((newcomer.sender_id, "p4"),), frozenset())
    assert admit is not None
    change = room.write(0, EntryKind.CHANGE, change=admit)
    for i in (1, 2, 3):
        room.sync(0, i)
    flush = room.answer(3)
    assert flush is not None and flush.kind is EntryKind.FLUSH
    room.sync(3, 0)  # its FLUSH gets out; its AWAY (below) only after the decision
    away = room.write(3, EntryKind.AWAY)
    settle(room)
    for i in (0, 1, 2):
        room.sync(i, 4)
    room.sync(3, 0)
    lines = []
    for _ in range(2):  # (the second round says the first was delivered everywhere)
        lines.append([room.write(i, EntryKind.TEXT) for i in (0, 1, 2, 4)])
        for i in (0, 1, 2, 4):
            for j in (0, 1, 2, 4):
                if i != j:
                    room.sync(i, j)
    orders = [data.draw(st.permutations(range(len(room.written))), label=f"order {r}") for r in range(3)]
    expected = [m.key for m in room.logs[0]]
    for log in [room.logs[0], room.logs[4], *(room.replica(order) for order in orders)]:
        decision = log.roster.epochs[1].decision
        assert decision is not None and decision.change == change.id
        assert decision.cuts[PEOPLE[3].sender_id] == flush.seq
        assert not log.is_visible(away)
        assert log.roster.active() == {PEOPLE[i].sender_id for i in (0, 1, 2, 4)}
        assert log.member_info()[PEOPLE[3].sender_id].state is MemberState.AWAY
        assert [m.key for m in log] == expected
        assert all(log.is_visible(line) for line in lines[0] + lines[1])
        assert all(log.is_stable(line) for line in lines[0]), "stability waits for p3"
        assert PEOPLE[3].sender_id not in log.silent_members()
        assert log.stability_violations == 0


# A removed member's own answer and COMMIT ---------------------------------------------------------


@functools.cache
def _churned_room() -> tuple[Simulation, tuple[Message, ...]]:
    """Every entry of a simulated room of five in a ring, where one member crashes and
    comes back, and others are removed and admitted around it (short timeouts)."""
    node = NodeConfig(member_timeout=2.0, recent_window=2.0)
    sim = Simulation(SimConfig(peers=5, topology="ring", seed=0, node=node))
    workload = random.Random(0)
    for k in range(40):
        sim.send_at(1.0 + k * 0.05, workload.randrange(5), f"message {k}")
    sim.at(1.5, lambda: sim.crash(1))
    sim.at(7.5, lambda: sim.restart(1))
    sim.run_until(30.0)
    log = sim.peers[0].node.log
    entries = {m.id: m for m in log} | {m.id: m for m in log.tombstones()}
    return sim, tuple(entries.values())


def test_the_churned_room_has_a_removed_member_that_committed_its_own_removal() -> None:
    # (What the next test is about: without it, it would test nothing in particular.)
    sim, _ = _churned_room()
    epochs = sim.peers[0].node.log.roster.epochs
    assert any(
        set(epoch.decision.removed) & set(epoch.commits.get(epoch.decision.change, {}))
        for epoch in epochs
        if epoch.decision is not None
    )


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_a_removed_members_answer_and_commit_count_the_same_whenever_they_come(data: st.DataObject) -> None:
    # A member being removed may answer and commit its own removal; a replica that took
    # its answer after the decision (above its cut: void) did not note it, and then not
    # its COMMIT either. Later entries whose past shows the decision only with that
    # COMMIT were judged in the old epoch there (a CHANGE of the next one: invalid) and
    # in the next one elsewhere: two logs, both stable.
    sim, entries = _churned_room()
    reference = [m.key for m in sim.peers[0].node.log]
    log = sim._room_log()
    for message in data.draw(st.permutations(entries)):
        log.receive(message)
    assert [m.key for m in log] == reference
    assert log.held_count == 0


# A room every member quit at once, reopened --------------------------------------------


@functools.cache
def _reopened_room(seed: int) -> tuple[Simulation, tuple[Message, ...]]:
    """Every entry of a simulated room of four whose members all quit at the same
    moment (each wrote its AWAY before it saw another's), then came back together: each
    may propose to reopen it (rivals), and three lines are written after."""
    sim = Simulation(SimConfig(peers=4, topology="full", seed=seed, node=NodeConfig(member_timeout=None)))
    for k in range(12):
        sim.send_at(1.0 + k * 0.1, k % 4, f"message {k}")
    for index in range(4):
        sim.at(3.0, functools.partial(sim.quit, index))
        sim.at(6.0, functools.partial(sim.restart, index))
    for k in range(3):
        sim.send_at(20.0 + k * 0.2, k, f"back {k}")
    sim.run_until(40.0)
    log = sim.peers[0].node.log
    entries = {m.id: m for m in log} | {m.id: m for m in log.tombstones()}
    return sim, tuple(entries.values())


@settings(max_examples=30, deadline=None)
@given(seed=st.sampled_from([0, 1, 2]), data=st.data())
def test_a_reopening_is_judged_the_same_in_every_order(seed: int, data: st.DataObject) -> None:
    sim, entries = _reopened_room(seed)
    reference = sim.peers[0].node.log
    assert [p.identity.sender_id for p in sim.peers if reference.is_member(p.identity.sender_id)]
    reopened = [
        e for e in reference.roster.epochs if e.decision is not None and e.proposals[e.decision.change].reopen
    ]
    assert len(reopened) == 1  # (what this test is about)
    log = sim._room_log()
    for message in data.draw(st.permutations(entries)):
        log.receive(message)
    assert [m.key for m in log] == [m.key for m in reference]
    assert [e.members for e in log.roster.epochs] == [e.members for e in reference.roster.epochs]
    decisions = [e.decision.change if e.decision else None for e in log.roster.epochs]
    assert decisions == [e.decision.change if e.decision else None for e in reference.roster.epochs]
    assert log.held_count == 0 and log.stability_violations == 0
    assert {"back 0", "back 1", "back 2"} <= {m.text for m in log if m.is_text}


def test_a_member_that_moved_on_to_a_later_round_holds_its_lines_back_from_its_first_open_answer() -> None:
    # p2 answers a removal in round 0, writes a line, then proposes a rival in round 1.
    # Round 0 can still be decided (p2's answer stands; the others and the member being
    # removed may commit it), and then p2's cut is its round-0 answer: the line is void.
    # Only its last answer was held back from stability: the line was said stable, then
    # voided (found by random churn: 8 peers, two removals by hand at once, 9 stable
    # positions moved).
    room = four_members()
    gone = frozenset({PEOPLE[3].sender_id})
    removal = room.logs[0].roster.proposal(PEOPLE[0].sender_id, (), gone)
    assert removal is not None
    room.write(0, EntryKind.CHANGE, change=removal)
    room.sync(0, 2)
    flush = room.answer(2)
    assert flush is not None and flush.kind is EntryKind.FLUSH
    line = room.logs[2].compose(PEOPLE[2], name="p2", text="after its answer", sent_at_ms=0)
    room.logs[2].receive(line)
    room.written.append(line)
    rival = room.logs[2].roster.proposal(
        PEOPLE[2].sender_id, ((NEWCOMER.sender_id, "new"),), gone, supersede=True
    )
    assert rival is not None and rival.round == 1
    room.write(2, EntryKind.CHANGE, change=rival)
    room.sync(2, 0)
    roster = room.logs[0].roster
    assert len(roster.open_proposals()) == 2  # (round 0 is not dead: it may still be decided)
    assert (PEOPLE[2].sender_id, flush.seq) in roster.writes_after_answers()
    assert not room.logs[0].is_stable(line)


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_a_member_commits_the_round_it_left_where_the_later_one_needs_a_locked_commit(
    data: st.DataObject,
) -> None:
    """A room of three. p2 proposes to remove p1 (round 0), and at once p0 too (round
    1). p0 gets round 0 only, answers it and commits it; p1 leaves. Round 1 has every
    answer it needs (p2 proposed it, p1's LEAVE answers it), but two COMMITs of three
    decide it and only p2 may give one: p0, the only other, holds a COMMIT of round 0
    and may commit nothing else while round 0 is not dead. p2 used to commit round 1,
    and the room waited for good (each round held one COMMIT and needed the other's:
    ``var`` 2350 of the churn explorer). p2 now commits round 0, which p0's COMMIT and
    its own decide; every replica, in any order of arrival, agrees."""
    room = four_members(count=3)
    p0, p1, p2 = (PEOPLE[i].sender_id for i in range(3))
    first = room.write(2, EntryKind.CHANGE, change=Change(1, 0, (), (p1,)))
    room.write(2, EntryKind.CHANGE, change=Change(1, 1, (), (p0,)))
    room.logs[0].receive(first)
    flush = room.answer(0)
    commit = room.answer(0)
    assert flush is not None and flush.kind is EntryKind.FLUSH
    assert commit is not None and commit.kind is EntryKind.COMMIT and commit.flush is not None
    assert commit.flush.change == first.id
    room.write(1, EntryKind.LEAVE)
    for i in range(3):
        for j in range(3):
            if i != j:
                room.sync(i, j)
    owed = room.logs[2].roster.owed_answer(p2)
    assert owed == (EntryKind.COMMIT, Flush(1, 0, first.id))
    room.answer(2)
    order = data.draw(st.permutations(range(len(room.written))), label="order")
    for log in [room.logs[2], room.replica(order)]:
        decision = log.roster.epochs[1].decision
        assert decision is not None and decision.change == first.id
        assert not log.is_member(p1) and log.is_member(p0) and log.is_member(p2)
