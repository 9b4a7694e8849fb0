"""Rooms that know who is in them (DESIGN.md rule 10), end to end through nodes and peers.

Each test is one of the failures that membership fixes: strangers writing into the
room, a newcomer's lines landing in the room's stable past, thousands of throwaway
keys or heads, a member who quits holding stability back for good.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import AsyncIterator, Iterable
from functools import partial
from pathlib import Path

import pytest
import trio

from p2pchat.chatview import not_left_text
from p2pchat.identity import Identity
from p2pchat.jsonlines import peer_event_object, proof_objects
from p2pchat.log import Delivered, NotAMember, OrderedLog, ReceiptStatus, Refusal, Refused, Voided
from p2pchat.membership import MemberState
from p2pchat.message import EntryKind, Message, MessageId, MessageKey
from p2pchat.node import BRANCH_SPAN, MAX_VERSION_CHECKS, Close, LogEvents, Node, Output, Send
from p2pchat.peer import ClockLieFound, MessageDelivered, Peer, PeerConfig, open_peer, restore_log
from p2pchat.protocol import LINK_RANDOMNESS
from p2pchat.sim import SimConfig, Simulation
from p2pchat.store import Store
from p2pchat.wire import (
    LINK_SIZE,
    MAX_HEADS,
    Head,
    Heads,
    Messages,
    Want,
    WantRange,
    decode_frame,
    encode_frame,
)

PEOPLE = [Identity(bytes([0x10 + i]) * 32) for i in range(3)]


class Mesh:
    """Nodes joined pairwise by in-memory connections; frames are delivered in order."""

    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.now = 0.0
        self.links: dict[int, tuple[int, int]] = {}
        """conn -> (node index, conn of the other end)."""
        self.inbox: dict[int, list[bytes]] = {}
        self.events: dict[int, list[object]] = {i: [] for i in range(len(nodes))}
        self.closed: list[Close] = []
        self._next_conn = 1

    def connect(self, a: int, b: int) -> tuple[int, int]:
        ca, cb = self._next_conn, self._next_conn + 1
        self._next_conn += 2
        self.links[ca], self.links[cb] = (a, cb), (b, ca)
        self.inbox[ca], self.inbox[cb] = [], []
        self.route(a, self.nodes[a].open(ca, self.now, bytes([ca]) * LINK_RANDOMNESS, dialed_url=f"ws://{b}"))
        self.route(b, self.nodes[b].open(cb, self.now, bytes([cb]) * LINK_RANDOMNESS))
        self.run()
        return ca, cb

    def disconnect(self, conn: int) -> None:
        """Cut the connection ``conn`` is one end of: both nodes hear it is gone."""
        index, other = self.links.pop(conn)
        other_index, _ = self.links.pop(other)
        del self.inbox[conn], self.inbox[other]
        self.route(index, self.nodes[index].closed(conn))
        self.route(other_index, self.nodes[other_index].closed(other))

    def route(self, index: int, outputs: Iterable[Output]) -> None:
        for output in outputs:
            if isinstance(output, Send):
                _, other = self.links[output.conn]
                # Sealed as the shell does, in the order frames go out.
                data = output.data if output.clear else self.nodes[index].seal(output.conn, output.data)
                if data is not None:
                    self.inbox[other].append(data)
            elif isinstance(output, Close):
                self.closed.append(output)
            elif isinstance(output, LogEvents):
                self.events[index].extend(output.events)

    def deliver(self, conn: int, data: bytes) -> None:
        index, _ = self.links[conn]
        self.route(index, self.nodes[index].receive(conn, data, self.now))

    def inject(self, conn: int, frame: bytes) -> None:
        """A frame from the neighbour on ``conn`` as the node gets it once unsealed."""
        index, _ = self.links[conn]
        self.route(index, self.nodes[index].receive_unsealed(conn, frame, self.now))

    def run(self, seconds: float = 0.5) -> None:
        """Deliver frames and run timers for ``seconds`` of virtual time."""
        rng = random.Random(0)
        end = self.now + seconds
        while self.now < end:
            for conn, frames in self.inbox.items():
                while frames:
                    self.deliver(conn, frames.pop(0))
            self.now += 0.01
            for index, node in enumerate(self.nodes):
                self.route(index, node.tick(self.now, rng))

    def say(self, index: int, *texts: str) -> list[Message]:
        messages, outputs = self.nodes[index].send_texts(texts, self.now, 0)
        self.route(index, outputs)
        return messages


def founded_node(identity: Identity = PEOPLE[0]) -> Node:
    log, _ = OrderedLog.found(identity, name="alice", room_name="room", sent_at_ms=0)
    return Node(identity, "alice", log)


def newcomer(identity: Identity, name: str) -> Node:
    return Node(identity, name, OrderedLog())


def keys(node: Node) -> list[MessageKey]:
    return [m.key for m in node.log]


def stable_keys(node: Node) -> list[MessageKey]:
    return keys(node)[: node.log.stable_count]


def three_members() -> Mesh:
    mesh = Mesh([founded_node(), newcomer(PEOPLE[1], "bob"), newcomer(PEOPLE[2], "carol")])
    mesh.connect(1, 0)
    mesh.connect(2, 0)
    mesh.run(2.0)
    assert all(node.is_member for node in mesh.nodes)
    return mesh


def test_a_newcomers_first_lines_land_after_the_rooms_stable_past() -> None:
    mesh = Mesh([founded_node(), newcomer(PEOPLE[1], "bob")])
    mesh.say(0, *(f"line {i}" for i in range(40)))
    mesh.run()
    past = stable_keys(mesh.nodes[0])
    assert len(past) == 41  # the genesis and the 40 lines: alice is alone
    try:
        mesh.nodes[1].send_texts(["typed before joining"], mesh.now, 0)
    except NotAMember:
        pass
    else:
        raise AssertionError("a newcomer must not stamp anything before its admission")
    mesh.connect(1, 0)
    mesh.run(2.0)
    (line,) = mesh.say(1, "typed before joining")
    mesh.run(2.0)
    for node in mesh.nodes:
        assert keys(node)[:41] == past, "the stable past did not move"
        assert keys(node)[-1] == line.key
    assert keys(mesh.nodes[0]) == keys(mesh.nodes[1])
    assert mesh.nodes[0].log.stable_count == len(mesh.nodes[0].log)


def test_throwaway_keys_are_refused_and_the_room_keeps_chatting() -> None:
    mesh = three_members()
    bob_conn = next(conn for conn, (index, _) in mesh.links.items() if index == 1)
    base = mesh.nodes[0].log
    strangers = [Identity(random.Random(i).randbytes(32)) for i in range(1100)]
    deps = base.vector()
    lamport = base.clock + 1
    spam = [
        Message.create(
            s,
            seq=1,
            lamport=lamport,
            sent_at_ms=0,
            name="spam",
            text="x",
            deps=deps,
            room_id=base.room_id or b"",
        )
        for s in strangers
    ]
    for start in range(0, len(spam), 500):
        mesh.inject(bob_conn, encode_frame(Messages(tuple(spam[start : start + 500]))))
    refused = [e for e in mesh.events[1] if isinstance(e, Refused)]
    assert len(refused) == 1100 and {e.reason for e in refused} == {Refusal.NOT_A_MEMBER}
    bob = mesh.nodes[1]
    assert bob.log.held_count == 0 and len(bob.log.members) == 3
    assert len(bob.log.heads()) <= 4, "strangers are in nobody's heads"
    for round_ in range(3):
        for index in range(3):
            mesh.say(index, f"round {round_} from {index}")
        mesh.run(1.5)
    assert keys(mesh.nodes[0]) == keys(mesh.nodes[1]) == keys(mesh.nodes[2])
    assert all(n.log.stable_count == len(n.log) for n in mesh.nodes)
    assert not mesh.closed


def test_thousands_of_heads_make_nobody_a_member() -> None:
    mesh = three_members()
    bob_conn = next(conn for conn, (index, _) in mesh.links.items() if index == 1)
    fake = [Head(random.Random(i).randbytes(32), 5, 5, 10**6, bytes(64)) for i in range(5000)]
    for start in range(0, len(fake), MAX_HEADS):
        mesh.inject(bob_conn, encode_frame(Heads(tuple(fake[start : start + MAX_HEADS]))))
    bob = mesh.nodes[1]
    assert len(bob.log.members) == 3
    assert len(bob.log.heads()) <= 4 and not bob.log.gaps()
    mesh.say(1, "still here")
    mesh.run(4.0)  # clocks travel with heartbeats: a second or so a hop
    assert keys(mesh.nodes[0]) == keys(bob)
    assert bob.log.stable_count == len(bob.log), "stability is not held back by invented ids"
    assert not mesh.closed


def test_a_member_who_quits_stops_holding_stability_back() -> None:
    mesh = three_members()
    carol = mesh.nodes[2]
    _, outputs = carol.write(EntryKind.AWAY, "quit", mesh.now, 0)
    mesh.route(2, outputs)
    mesh.run(1.0)
    for conn in [c for c, (index, _) in mesh.links.items() if index == 2]:
        mesh.route(2, carol.close(conn))
    mesh.run(0.5)
    # Carol is gone for good (her frames are never delivered again).
    for conn, (index, _) in list(mesh.links.items()):
        if index == 2:
            mesh.inbox[conn].clear()
    mesh.nodes = mesh.nodes[:2]
    mesh.say(0, "after carol left")
    mesh.say(1, "me too")
    mesh.run(2.0)
    for node in mesh.nodes:
        assert node.log.stable_count == len(node.log)
        info = node.log.member_info()
        assert info[PEOPLE[2].sender_id].state is MemberState.AWAY
        assert PEOPLE[2].sender_id not in node.log.members


def test_a_member_who_comes_back_is_readmitted_and_its_seq_continues() -> None:
    mesh = three_members()
    carol = mesh.nodes[2]
    (first,) = mesh.say(2, "before")
    away, outputs = carol.write(EntryKind.AWAY, "quit", mesh.now, 0)
    mesh.route(2, outputs)
    mesh.run(1.0)
    assert not carol.is_member
    mesh.say(0, "while carol is away")
    mesh.run(1.0)
    carol_conn = next(conn for conn, (index, _) in mesh.links.items() if index == 2)
    mesh.route(2, carol.close(carol_conn))
    mesh.run(0.2)
    mesh.connect(2, 1)  # she comes back through bob, who re-admits her
    mesh.run(2.0)
    assert carol.is_member
    (back,) = mesh.say(2, "back again")
    mesh.run(2.0)
    assert back.seq == away.seq + 1 > first.seq
    assert keys(mesh.nodes[0]) == keys(mesh.nodes[1]) == keys(carol)
    assert mesh.nodes[0].log.member_info()[PEOPLE[2].sender_id].state is MemberState.ACTIVE


@pytest.mark.parametrize("exit_kind", [EntryKind.LEAVE, EntryKind.AWAY], ids=["leave", "away"])
def test_a_link_dialed_just_before_an_exit_does_not_get_the_member_in_again(exit_kind: EntryKind) -> None:
    # Bob dials carol; before the link opens he leaves (or quits), and carol gets his
    # LEAVE through alice first. His AUTH, sent before, does not say he is leaving: to
    # carol he looked like a member back, and she proposed his admission at once. Bob
    # stopped, and the room counted a member that was gone (a flaky CLI test). Now a
    # member whose exit carol held waits admission_delay as a newcomer does; by then
    # bob closed the link (leaving, at once; quitting, with all his links).
    mesh = three_members()
    mesh.run(2.0)  # (carol has heard everyone lately: she may propose a change)
    bob, carol = mesh.nodes[1:]
    bob_id = PEOPLE[1].sender_id
    at_bob, at_carol = mesh._next_conn, mesh._next_conn + 1
    mesh._next_conn += 2
    mesh.links[at_bob], mesh.links[at_carol] = (1, at_carol), (2, at_bob)
    mesh.inbox[at_bob], mesh.inbox[at_carol] = [], []
    mesh.route(1, bob.open(at_bob, mesh.now, bytes([at_bob]) * LINK_RANDOMNESS, dialed_url="ws://2"))
    mesh.route(2, carol.open(at_carol, mesh.now, bytes([at_carol]) * LINK_RANDOMNESS))
    parked = {conn: mesh.inbox.pop(conn) for conn in (at_bob, at_carol)}
    _, outputs = bob.write(exit_kind, "bye", mesh.now, 0)
    mesh.route(1, outputs)
    while any(mesh.inbox.values()):  # (the exit goes round through alice)
        for conn, frames in mesh.inbox.items():
            while frames:
                mesh.deliver(conn, frames.pop(0))
    assert carol.log.member_info()[bob_id].state in (MemberState.LEFT, MemberState.AWAY)
    mesh.inbox.update(parked)
    while not carol.is_open(at_carol):  # (the handshake, up to carol taking bob's AUTH)
        conn = at_carol if mesh.inbox[at_carol] else at_bob
        mesh.deliver(conn, mesh.inbox[conn].pop(0))

    def proposed_for_bob(node: Node) -> bool:
        changes = [m.change for m in node.log if m.kind is EntryKind.CHANGE and m.change is not None]
        return any(bob_id in dict(change.admitted) for change in changes[1:])  # (after his admission)

    assert not proposed_for_bob(carol)  # (not at once: a member back waits admission_delay)
    for step in range(200):  # (the shell carries out each close)
        mesh.run(0.01)
        if exit_kind is EntryKind.AWAY and step == 20:
            mesh.route(1, bob.close_all())  # (as Peer.aclose does after its AWAY)
        for close in mesh.closed:
            if close.conn in mesh.links:
                mesh.disconnect(close.conn)
    if exit_kind is EntryKind.LEAVE:
        assert [c.reason for c in mesh.closed] == ["this peer is on its way out of the room"]
    for node in mesh.nodes:
        assert not proposed_for_bob(node)
        assert node.log.member_info()[bob_id].state is not MemberState.ACTIVE
        assert node.log.members == {PEOPLE[0].sender_id, PEOPLE[2].sender_id}


async def test_a_peer_that_sends_before_it_is_admitted_queues_until_then() -> None:
    with trio.fail_after(20):
        async with open_peer("alice") as alice:
            for i in range(10):
                await alice.send(f"history {i}")
            async with open_peer("bob", join=[alice.url]) as bob:
                # Sent at once: bob is not a member yet, so this waits for the admission.
                message = await bob.send("hello, I just arrived")
                history = [m.key for m in alice.messages()]
                assert message.lamport > max(key.lamport for key in history[:11])
                async with alice.subscribe() as events:
                    async for event in events:
                        if isinstance(event, MessageDelivered) and event.message.id == message.id:
                            assert event.index == len(alice.messages()) - 1
                            break
                assert bob.room_id == alice.room_id


def _churn(seed: int) -> Simulation:
    """Six simulated peers chatting while two quit, one crashes and restarts, and a
    partition comes and goes."""
    # A ring: whoever quits, the others stay connected (0-1-2-3 once 4 and 5 are gone).
    sim = Simulation(SimConfig(peers=6, topology="ring", seed=seed, latency=(0.02, 0.12)))
    workload = random.Random(seed)
    for k in range(150):
        sim.send_at(1.0 + k * 0.04, workload.randrange(4), f"message {k}")
    sim.at(2.0, partial(sim.quit, 5))
    sim.at(3.0, partial(sim.crash, 3))
    sim.at(3.5, partial(sim.partition, {0, 1}, {2, 3, 4}))
    sim.at(5.0, partial(sim.restart, 3))
    sim.at(6.0, sim.heal)
    sim.at(6.5, partial(sim.quit, 4))
    return sim


@pytest.mark.parametrize("seed", range(6))
def test_churn_in_the_simulator_loses_nothing_and_moves_no_stable_position(seed: int) -> None:
    sim = _churn(seed)
    sim.run_until(10.0)
    assert sim.settle(60), sim.report()
    report = sim.report()
    assert report.lost == 0 and report.duplicates == 0 and report.identical
    assert report.stability_moved == 0
    live = sim.live()
    assert {p.index for p in live} == {0, 1, 2, 3}
    sim.run_until(sim.now + 5.0)
    for peer in live:
        log = peer.node.log
        assert log.stable_count == len(log), "stability resumes once the quitters' AWAYs are in"
        states = log.member_info()
        assert states[sim.peers[5].identity.sender_id].state is MemberState.AWAY
        assert states[sim.peers[4].identity.sender_id].state is MemberState.AWAY


async def _write_with_a_backup_between(
    bob: Peer, alice_dir: Path, backup: Path, before: list[str], after: list[str]
) -> bytes:
    """Alice joins bob and writes ``before``; her data directory is copied to ``backup``
    while she runs; she writes ``after`` and quits. Returns her peer id."""
    assert bob.url is not None
    async with open_peer("alice", data_dir=alice_dir, join=[bob.url]) as alice:
        for text in before:
            await alice.send(text)
        await bob.wait_delivered(len(alice.messages()))
        shutil.copytree(alice_dir, backup)
        for text in after:
            await alice.send(text)
        await bob.wait_delivered(len(alice.messages()))
        return alice.node.identity.sender_id


def _restore(backup: Path, data_dir: Path) -> None:
    """Her data is lost; the old copy is put back."""
    shutil.rmtree(data_dir)
    shutil.copytree(backup, data_dir)


async def test_a_peer_restored_from_an_old_copy_recovers_its_chain_before_writing(tmp_path: Path) -> None:
    alice_dir, bob_dir, backup = tmp_path / "alice", tmp_path / "bob", tmp_path / "backup"
    with trio.fail_after(30):
        async with open_peer("bob", data_dir=bob_dir) as bob:
            assert bob.url is not None
            alice_id = await _write_with_a_backup_between(
                bob, alice_dir, backup, ["one", "two"], ["three", "four", "five"]
            )
            # Alice quit (her AWAY is her last entry); her data is lost, the backup restored.
            away = bob.log.messages()[-1]
            assert away.kind is EntryKind.AWAY and away.sender_id == alice_id
            _restore(backup, alice_dir)
            async with open_peer("alice", data_dir=alice_dir, join=[bob.url]) as restored:
                message = await restored.send("six")
                assert message.seq == away.seq + 1, "her seq continues after what bob holds"
                assert not restored.log.evidence and not bob.log.evidence
                await bob.wait_delivered(len(restored.messages()))
                assert [m.key for m in bob.messages()] == [m.key for m in restored.messages()]
                room = restored.room_id
            # What she took back from bob is on her disk too: a restart shows it all.
            store = Store(alice_dir)
            try:
                assert room is not None
                entries = restore_log(store, room).messages()
            finally:
                store.close()
            assert [m.text for m in entries if m.is_text] == ["one", "two", "three", "four", "five", "six"]


async def test_a_peer_that_wrote_alone_on_an_old_copy_is_told_why_the_room_expels_it(tmp_path: Path) -> None:
    # Restored from an old copy and started without --join, nothing could tell it its
    # chain went further: its next entry reuses a seq (equivocation), and the room expels
    # it when it comes back. It says so in plain words, writes nothing more (its lines
    # wait), and does not stop with "own message was not accepted".
    alice_dir, bob_dir, backup = tmp_path / "alice", tmp_path / "bob", tmp_path / "backup"
    with trio.fail_after(30):
        async with open_peer("bob", data_dir=bob_dir) as bob:
            assert bob.url is not None
            await _write_with_a_backup_between(bob, alice_dir, backup, ["one"], ["two"])
            _restore(backup, alice_dir)
            async with open_peer("alice", data_dir=alice_dir) as alone:
                await alone.send("alone, on the old copy")
            async with open_peer("alice", data_dir=alice_dir, join=[bob.url]) as restored:
                while restored.node.own_offence() is None:
                    await trio.sleep(0.05)
                said = restored.node.why_not_writable()
                assert said is not None and said.startswith("this identity signed two versions of its entry")
                assert "another --data directory" in said
                assert restored.node.identity.sender_id in bob.node.offenders
                with trio.move_on_after(1) as waited:
                    await restored.send("and now?")
                assert waited.cancelled_caught  # (it waits: nothing of ours is taken now)


async def test_join_enters_the_room_of_the_peer_joined_and_keeps_each_rooms_history(tmp_path: Path) -> None:
    alice_dir = tmp_path / "alice"
    with trio.fail_after(30):
        async with (
            open_peer("bob", data_dir=tmp_path / "bob") as bob,
            open_peer("carol", data_dir=tmp_path / "carol") as carol,
        ):
            assert bob.url is not None and carol.url is not None and bob.room_id != carol.room_id
            await bob.send("in bob's room")
            await carol.send("in carol's room")
            async with open_peer("alice", data_dir=alice_dir, join=[bob.url]) as alice:
                await alice.send("hi bob")
                assert alice.room_id == bob.room_id
            # Her last room is bob's; joining carol takes her to carol's room.
            async with open_peer("alice", data_dir=alice_dir, join=[carol.url]) as alice:
                await alice.send("hi carol")
                assert alice.room_id == carol.room_id
                assert [m.text for m in alice.messages() if m.is_text] == ["in carol's room", "hi carol"]
            # And back to bob's room: her history there comes from her own store.
            async with open_peer("alice", data_dir=alice_dir, join=[bob.url]) as alice:
                await alice.wait_admitted()
                assert alice.room_id == bob.room_id
                texts = [m.text for m in alice.messages() if m.is_text]
                assert texts == ["in bob's room", "hi bob"]
                seqs = [m.seq for m in alice.messages() if m.sender_id == alice.node.identity.sender_id]
                assert seqs == list(range(1, len(seqs) + 1))


def twin_of(genuine: Message, room_id: bytes) -> Message:
    """Another version of bob's entry ``genuine``: same seq, stamp, deps and predecessor
    (a fork of bob's feed), another text."""
    return Message.create(
        PEOPLE[1],
        seq=genuine.seq,
        lamport=genuine.lamport,
        sent_at_ms=0,
        name="bob",
        text="a lie",
        deps=genuine.deps,
        room_id=room_id,
        previous=genuine.previous,
    )


def bob_equivocates(mesh: Mesh) -> Message:
    """Bob says a line (on its way to alice); carol gets another version of it first, as
    if relayed by alice, whose link carries it. Returns the genuine one."""
    (genuine,) = mesh.say(1, "the truth")
    twin = twin_of(genuine, mesh.nodes[1].log.room_id or b"")
    carol_conn = next(conn for conn, (index, _) in mesh.links.items() if index == 2)
    mesh.inject(carol_conn, encode_frame(Messages((twin,))))
    return genuine


def test_evidence_of_an_equivocation_reaches_every_peer() -> None:
    mesh = three_members()  # bob and carol both connected to alice
    genuine = bob_equivocates(mesh)
    mesh.run(2.0)
    for node in mesh.nodes:
        proofs = {(e.kept.id, e.rejected.id) for e in node.log.evidence}
        assert (genuine.id, genuine.id) in proofs, f"{node.name} has no evidence"
        kept = node.log.get(genuine.id)
        assert kept is not None and kept.text in ("the truth", "a lie")
    # Spreading evidence is not misbehaviour: only links to the equivocator close.
    assert all("signed two versions" in close.reason for close in mesh.closed)


def test_an_honest_reply_to_the_version_a_peer_did_not_keep_is_taken_there_too() -> None:
    mesh = three_members()  # bob and carol both connected to alice
    alice, bob, carol = mesh.nodes
    (line,) = mesh.say(2, "carol's line")  # (on its way: bob has not seen it yet)
    (genuine,) = mesh.say(1, "the truth")
    # Bob's other version of the same entry, written as if after carol's line: a later stamp.
    twin = Message.create(
        PEOPLE[1],
        seq=genuine.seq,
        lamport=max(genuine.lamport - 1, line.lamport) + 1,
        sent_at_ms=0,
        name="bob",
        text="a lie",
        deps={**genuine.deps, PEOPLE[2].sender_id: line.seq},
        room_id=bob.log.room_id or b"",
        previous=genuine.previous,
    )
    assert twin.lamport != genuine.lamport
    carol_conn = next(conn for conn, (index, _) in mesh.links.items() if index == 2)
    mesh.inject(carol_conn, encode_frame(Messages((twin,))))  # carol gets the twin first
    assert carol.log.get(twin.id) == twin
    (reply,) = mesh.say(2, "carol replies to what she saw")
    assert reply.lamport == twin.lamport + 1  # (stamped from the twin: alice keeps the other)
    (more,) = mesh.say(2, "and more")  # (refused at alice while carol is blocked there)
    mesh.run(3.0)
    for node in (alice, carol):
        assert node.log.get(reply.id) == reply, f"{node.name} does not hold carol's reply"
        assert node.log.get(more.id) == more, f"{node.name} never got carol's next line back"
        assert PEOPLE[2].sender_id not in node.log.blocked_senders(), f"{node.name} blocks carol"
    honest = {PEOPLE[0].sender_id, PEOPLE[2].sender_id}
    assert [m.key for m in alice.log if m.sender_id in honest] == [
        m.key for m in carol.log if m.sender_id in honest
    ]


def bob_forks_while_carol_is_away(mesh: Mesh, *, more: bool = False) -> tuple[Message, Message]:
    """Carol's link to alice is cut; bob says a line, which reaches alice; carol (alone) gets
    another version of it, and with ``more`` bob's next entry chained to that version.
    Returns the genuine entry and carol's version."""
    alice, bob, carol = mesh.nodes
    mesh.disconnect(next(conn for conn, (index, _) in mesh.links.items() if index == 2))
    (genuine,) = mesh.say(1, "the truth")
    mesh.run(0.5)
    twin = twin_of(genuine, bob.log.room_id or b"")
    taken = [twin]
    if more:
        taken.append(
            Message.create(
                PEOPLE[1],
                seq=genuine.seq + 1,
                lamport=genuine.lamport + 1,
                sent_at_ms=0,
                name="bob",
                text="more lies",
                deps={},
                room_id=bob.log.room_id or b"",
                previous=twin.entry_hash(),
            )
        )
    for message in taken:
        assert carol.log.receive(message).status is ReceiptStatus.NEW
    assert alice.log.get(genuine.id) == genuine and carol.log.get(genuine.id) == twin
    return genuine, twin


@pytest.mark.parametrize("more", [False, True], ids=["one-entry", "and-a-chained-one"])
def test_peers_that_each_kept_one_version_find_the_fork_when_they_meet(more: bool) -> None:
    """Each of alice and carol holds "bob's entry k" already when they meet, so gossip
    alone would never carry the other version to either (the room would show two texts
    for that line for good, nobody expelled): the links in their heads differ, and each
    asks the other for its version, which is the proof."""
    mesh = three_members()
    alice, _, carol = mesh.nodes
    bob_id = PEOPLE[1].sender_id
    genuine, twin = bob_forks_while_carol_is_away(mesh, more=more)
    mesh.connect(2, 0)
    mesh.run(3.0)
    for node in (alice, carol):
        assert {(e.kept.payload, e.rejected.payload) for e in node.log.evidence} & {
            (genuine.payload, twin.payload),
            (twin.payload, genuine.payload),
        }, f"{node.name} found no fork"
        assert node.offenders == {bob_id: f"signed two versions of its entry {genuine.seq}"}
        # (With more, carol's answer to bob's removal depends on bob's entry k+1, which
        # goes on from the version alice did not keep: alice takes it all the same.)
        assert bob_id not in node.log.members, f"{node.name} still counts bob"
        assert not node.log.blocked_senders().keys() - {bob_id}, f"{node.name} blocks an honest member"

    # Only the forked entry differs: the rest of bob's chain, and everything else, agree.
    def unforked(node: Node) -> list[MessageKey]:
        return [m.key for m in node.log if m.id != genuine.id]

    assert unforked(alice) == unforked(carol)


def test_an_entry_chained_to_a_version_we_lack_makes_us_ask_for_that_version() -> None:
    """Bob's entry k+1 names a predecessor alice does not hold (she kept another version
    of k): refused with a broken chain, and alice asks the neighbour that brought it for
    its entry k, the version k+1 chains to (and the entries before it, which the branch
    may go on from too: BRANCH_SPAN at once)."""
    mesh = three_members()
    alice, _, carol = mesh.nodes
    genuine, twin = bob_forks_while_carol_is_away(mesh, more=True)
    chained = carol.log.get(MessageId(PEOPLE[1].sender_id, genuine.seq + 1))
    assert chained is not None and chained.previous == twin.entry_hash()
    alice_from_bob = next(conn for conn, (index, _) in mesh.links.items() if index == 0)
    outputs = alice.receive_unsealed(alice_from_bob, encode_frame(Messages((chained,))), mesh.now)
    assert alice.log.blocked_senders() == {PEOPLE[1].sender_id: Refusal.BROKEN_CHAIN}
    asked = [decode_frame(o.data) for o in outputs if isinstance(o, Send) and o.conn == alice_from_bob]
    first = max(1, genuine.seq - BRANCH_SPAN + 1)
    assert Want((WantRange(PEOPLE[1].sender_id, first, genuine.seq),)) in asked
    # Once only: the same entry again does not ask again.
    again = alice.receive_unsealed(alice_from_bob, encode_frame(Messages((chained,))), mesh.now)
    assert not [o for o in again if isinstance(o, Send) and isinstance(decode_frame(o.data), Want)]


def test_an_offenders_entry_chained_to_a_version_we_lack_still_makes_us_ask_for_it() -> None:
    """Bob is proven an offender already (an earlier fork), so forks of his entries are
    no news to alice; but his entry k+1 goes on from a version of k she lacks, and the
    honest entries that depend on it wait on it: she asks for that version all the same."""
    mesh = three_members()
    alice, _, carol = mesh.nodes
    bob_id = PEOPLE[1].sender_id
    genuine, _ = bob_forks_while_carol_is_away(mesh, more=True)
    chained = carol.log.get(MessageId(bob_id, genuine.seq + 1))
    assert chained is not None
    alice.offenders[bob_id] = "signed two versions of its entry 1"  # (as if proven before)
    alice_from_bob = next(conn for conn, (index, _) in mesh.links.items() if index == 0)
    outputs = alice.receive_unsealed(alice_from_bob, encode_frame(Messages((chained,))), mesh.now)
    assert alice.log.blocked_for(bob_id) is Refusal.BROKEN_CHAIN
    asked = [decode_frame(o.data) for o in outputs if isinstance(o, Send) and o.conn == alice_from_bob]
    assert Want((WantRange(bob_id, max(1, genuine.seq - BRANCH_SPAN + 1), genuine.seq),)) in asked


@pytest.mark.parametrize("depth", [3, 20])
def test_a_deep_branch_of_an_equivocator_is_repaired_at_once_and_the_honest_reply_taken(depth: int) -> None:
    """While carol is away, bob signs ``depth`` entries from his seq k on that differ from
    the ones alice holds, and carol replies to the last. When they meet, alice lacks a
    version at every level of that branch: she asks for them BRANCH_SPAN at a time as
    each comes (not one per heads round), and takes carol's reply within a second."""
    mesh = three_members()
    alice, bob, carol = mesh.nodes
    bob_id = PEOPLE[1].sender_id
    mesh.disconnect(next(conn for conn, (index, _) in mesh.links.items() if index == 2))
    genuine = mesh.say(1, *[f"truth {i}" for i in range(depth - 1)])
    mesh.run(0.5)
    room = bob.log.room_id
    assert room is not None
    previous, lamport = genuine[0].previous, genuine[0].lamport
    for i in range(depth):
        lie = Message.create(
            PEOPLE[1],
            seq=genuine[0].seq + i,
            lamport=lamport + i,
            sent_at_ms=0,
            name="bob",
            text=f"lie {i}",
            deps={},
            room_id=room,
            previous=previous,
        )
        previous = lie.entry_hash()
        assert carol.log.receive(lie).status is ReceiptStatus.NEW
    (reply,) = mesh.say(2, "carol replies to the last lie")
    assert reply.deps.get(bob_id) == genuine[0].seq + depth - 1
    mesh.connect(2, 0)
    mesh.run(1.0)
    assert alice.log.is_visible(reply) and not alice.log.blocked_senders()
    assert len(alice.log.other_versions) == depth - 1  # (the last seq alice never had)


def test_a_head_shows_where_its_peer_holds_another_version() -> None:
    mesh = three_members()
    alice, _, carol = mesh.nodes
    bob_id = PEOPLE[1].sender_id
    genuine, twin = bob_forks_while_carol_is_away(mesh)
    (carols_head,) = [h for h in carol.log.heads() if h.sender_id == bob_id]
    (alices_head,) = [h for h in alice.log.heads() if h.sender_id == bob_id]
    assert (carols_head.held_seq, carols_head.link) == (genuine.seq, twin.entry_hash()[:LINK_SIZE])
    assert alices_head.link == genuine.entry_hash()[:LINK_SIZE]
    assert alice.log.other_version_at(carols_head) == genuine.seq
    assert carol.log.other_version_at(alices_head) == genuine.seq
    assert alice.log.other_version_at(alices_head) is None
    # Heads about an earlier entry, one past what we hold, or without a link say nothing.
    earlier = genuine.seq - 1
    assert alice.log.other_version_at(Head(bob_id, earlier, link=carol.log.link_of(bob_id, earlier))) is None
    assert alice.log.other_version_at(Head(bob_id, genuine.seq + 1, link=bytes(LINK_SIZE))) is None
    assert alice.log.other_version_at(Head(bob_id, genuine.seq)) is None


def test_a_relay_lying_in_its_heads_costs_a_few_requests_and_no_proof() -> None:
    """Heads are not signed: a neighbour can name any link for any entry. We ask it, at
    most MAX_VERSION_CHECKS times over the link's life, and expel nobody."""
    mesh = three_members()
    alice = mesh.nodes[0]
    bob_id = PEOPLE[1].sender_id
    mesh.say(1, *(f"line {i}" for i in range(30)))
    mesh.run(1.0)
    top = alice.log.delivered_seq(bob_id)
    alice_from_carol = next(
        conn for conn, (index, other) in mesh.links.items() if index == 0 and mesh.links[other][0] == 2
    )
    wanted: list[WantRange] = []
    for seq in range(top - 25, top + 1):
        for _ in range(2):  # (each lie twice: asked once)
            lie = Heads((Head(bob_id, seq, link=bytes(LINK_SIZE)),), False)
            outputs = alice.receive_unsealed(alice_from_carol, encode_frame(lie), mesh.now)
            for output in outputs:
                if isinstance(output, Send) and output.conn == alice_from_carol:
                    frame = decode_frame(output.data)
                    if isinstance(frame, Want):
                        wanted.extend(frame.ranges)
    assert len(wanted) == MAX_VERSION_CHECKS == len(set(wanted))
    assert all(r.sender_id == bob_id and r.first == r.last for r in wanted)
    mesh.run(2.0)
    assert not alice.offenders and not alice.log.evidence and alice.is_open(alice_from_carol)


def test_an_equivocator_is_removed_and_refused_and_the_room_goes_on() -> None:
    mesh = three_members()
    alice, _, carol = mesh.nodes
    bob_id = PEOPLE[1].sender_id
    genuine = bob_equivocates(mesh)
    mesh.run(3.0)
    for node in (alice, carol):
        assert node.offenders == {bob_id: f"signed two versions of its entry {genuine.seq}"}
        assert bob_id not in node.log.members, f"{node.name} still counts bob"
    assert any("signed two versions" in close.reason for close in mesh.closed)
    # The two honest members chat on, and everything they hold becomes stable.
    mesh.say(0, "alice goes on")
    mesh.say(2, "carol goes on")
    mesh.run(3.0)
    for node in (alice, carol):
        texts = [m.text for m in node.log if m.is_text]
        assert texts[-2:] in (["alice goes on", "carol goes on"], ["carol goes on", "alice goes on"])
        assert node.log.stable_count == len(node.log), f"{node.name}: stability stalled"
        assert not node._may_admit(bob_id)
    assert [m.key for m in alice.log] == [m.key for m in carol.log]


def bob_breaks_a_promise(mesh: Mesh) -> tuple[Head, Message]:
    """Bob promises alice alone a clock far ahead of his (a signed announcement on her
    link from him), then writes a line stamped below it. Returns both."""
    bob = mesh.nodes[1]
    seq = bob.log.delivered_seq(PEOPLE[1].sender_id)
    room = bob.log.room_id or b""
    promise = Head.announce(PEOPLE[1], seq, seq, bob.log.clock + 50, {}, 10**12, room_id=room)
    alice_from_bob = next(
        conn for conn, (index, other) in mesh.links.items() if index == 0 and mesh.links[other][0] == 1
    )
    mesh.inject(alice_from_bob, encode_frame(Heads((promise,), False)))
    (low,) = mesh.say(1, "stamped below my promise")
    assert low.lamport <= promise.clock_lamport
    return promise, low


def test_a_member_that_breaks_a_clock_promise_is_removed_on_the_proof() -> None:
    mesh = three_members()
    alice, _, carol = mesh.nodes
    bob_id = PEOPLE[1].sender_id
    promise, low = bob_breaks_a_promise(mesh)
    mesh.run(4.0)
    for node in (alice, carol):  # (carol never saw the promise: alice's heads relay it)
        proofs = [(lie.announcement.signature, lie.message) for lie in node.log.lies]
        assert proofs == [(promise.signature, low)]
        assert bob_id in node.offenders and "announced clock" in node.offenders[bob_id]
        assert bob_id not in node.log.members, f"{node.name} still counts bob"
    # Alice relied on the promise: there the line would land among positions she may
    # have called stable on it, so it is held without a place. Carol never relied on it
    # and showed it, until the removal: its answers name the line as alice holds it
    # (without a place) and as carol does, so the removal voids it on both. The logs end
    # the same, and no stable position moved anywhere.
    assert alice.log.placeless == {low.id} and not alice.log.is_visible(low)
    lies = [e["shown"] for n in (alice, carol) for e in proof_objects(n.log) if e["event"] == "clock_lie"]
    assert lies == [False, False]
    assert not carol.log.placeless and not carol.log.is_visible(low) and low in carol.log.tombstones()
    assert [m.key for m in alice.log] == [m.key for m in carol.log]
    assert alice.log.stability_violations == carol.log.stability_violations == 0
    mesh.say(0, "alice goes on")
    mesh.say(2, "carol goes on")
    mesh.run(3.0)
    for node in (alice, carol):
        assert node.log.stable_count == len(node.log), f"{node.name}: stability stalled"
    # chat --json shows the proof.
    lie = alice.log.lies[0]
    shown = peer_event_object(ClockLieFound(promise.clock_seq, promise.clock_lamport, lie.message), alice.log)
    assert shown == {
        "event": "clock_lie",
        "sender": bob_id.hex(),
        "name": "bob",
        "announced_seq": promise.clock_seq,
        "announced_clock": promise.clock_lamport,
        "seq": low.seq,
        "lamport": low.lamport,
        "shown": False,
    }


async def test_a_line_is_said_stable_only_where_no_entry_voided_later_in_its_frame_moves_it() -> None:
    # The flag on a message event holds for the index the event gives. A frame that
    # delivers lines and then a decision voiding entries below them moves those lines up
    # after their events were made: at a removed member's end, "stable" at index 15 was
    # at 14 in the end. (Events made by hand: what the shell says of a frame's events.)
    with trio.fail_after(20):
        async with open_peer("alice") as alice:
            for text in ("one", "two", "three"):
                await alice.send(text)
            while alice.log.stable_count < len(alice.log):
                await trio.sleep(0.05)
            founding, three = alice.log[0], alice.log[len(alice.log) - 1]
            index = alice.log.index_of(three)
            async with alice.subscribe() as events:
                alice._on_log_events([Delivered(three, index, False)])
                alice._on_log_events([Delivered(three, index, False), Voided((founding,))])
                alice._on_log_events([Delivered(founding, 0, False), Voided((three,))])
                said = [event async for event in _first(events, 3) if isinstance(event, MessageDelivered)]
    assert [(event.message.id, event.stable) for event in said] == [
        (three.id, True),
        (three.id, False),  # (an entry below it voided after it: it moved up)
        (founding.id, True),  # (one above it: it stayed where it was)
    ]


async def _first(events: trio.MemoryReceiveChannel[object], count: int) -> AsyncIterator[object]:
    """The first ``count`` message events of ``events``."""
    seen = 0
    async for event in events:
        if isinstance(event, MessageDelivered):
            yield event
            seen += 1
            if seen == count:
                return


async def test_a_member_started_again_without_join_dials_its_neighbours_of_before(tmp_path: Path) -> None:
    # Without --join, the chat reopens the room last used: it dials the neighbours it had
    # there (their addresses are kept with the room), instead of sitting alone in it.
    with trio.fail_after(30):
        async with open_peer("bob", data_dir=tmp_path / "bob") as bob:
            assert bob.url is not None
            async with open_peer("alice", data_dir=tmp_path / "alice", join=[bob.url]) as alice:
                await alice.send("before")
                await bob.wait_delivered(len(alice.messages()))
            async with open_peer("alice", data_dir=tmp_path / "alice") as again:
                await again.wait_connected(1)
                await again.send("back without --join")
                await bob.wait_delivered(len(again.messages()))
                assert [m.text for m in bob.messages()][-1] == "back without --join"


async def test_a_member_started_again_without_join_reaches_a_member_it_only_heard_of(tmp_path: Path) -> None:
    # Carol wanted one link: linked to alice only, she heard of bob from alice (PEERS)
    # and never dialed him. Then alice left for good. Started again without --join,
    # carol must not sit alone for good: her store kept the address of bob, a member
    # her node learned of, besides those of the neighbours that were up.
    with trio.fail_after(30):
        async with open_peer("bob", data_dir=tmp_path / "bob") as bob:
            assert bob.url is not None
            async with open_peer("alice", data_dir=tmp_path / "alice", join=[bob.url]) as alice:
                assert alice.url is not None
                one_link = PeerConfig(target_connections=1)
                carol_dir = tmp_path / "carol"
                async with open_peer("carol", data_dir=carol_dir, join=[alice.url], config=one_link) as carol:
                    await carol.send("before")
                    await bob.wait_delivered(len(carol.messages()))
                    assert bob.url in carol.node.member_addresses()
                    linked = [remote for _, remote, _ in carol.node.neighbours()]
                    assert linked == [alice.node.identity.sender_id]
                await alice.leave("for good")
            async with open_peer("carol", data_dir=carol_dir) as again:
                assert bob.url in again.node.known_addresses()
                await again.wait_connected(1)
                await again.send("back without --join")
                await bob.wait_delivered(len(again.messages()))
                assert [m.text for m in bob.messages()][-1] == "back without --join"


async def test_members_run_again_with_the_same_join_url_find_each_other_while_the_peer_joined_is_down(
    tmp_path: Path,
) -> None:
    # Bob and carol joined alice; all three quit at the same moment. Bob and carol run
    # the same command again (--join alice's URL), but alice stays down. Alice is a
    # member of the room they used last, so they dial its other neighbours too: they
    # find each other, reopen the room (two of three) and chat, instead of each sitting
    # alone redialing alice for good.
    with trio.fail_after(40):
        async with open_peer("alice", data_dir=tmp_path / "alice") as alice:
            assert alice.url is not None
            alice_url = alice.url
            async with (
                open_peer("bob", data_dir=tmp_path / "bob", join=[alice_url]) as bob,
                open_peer("carol", data_dir=tmp_path / "carol", join=[alice_url]) as carol,
            ):
                await bob.send("before")
                for peer in (alice, carol):
                    await peer.wait_delivered(len(bob.messages()))
                while carol.node.open_count < 2 or bob.node.open_count < 2:
                    await trio.sleep(0.05)  # (carol dials bob once alice names him)
                async with trio.open_nursery() as nursery:
                    for peer in (alice, bob, carol):
                        nursery.start_soon(peer.go_away)
                while sum(m.kind is EntryKind.AWAY for m in alice.messages()) < 3:
                    await trio.sleep(0.05)
        async with (
            open_peer("bob", data_dir=tmp_path / "bob", join=[alice_url]) as bob,
            open_peer("carol", data_dir=tmp_path / "carol", join=[alice_url]) as carol,
        ):
            await bob.send("after, from bob")
            await carol.send("after, from carol")
            for peer in (bob, carol):
                while {"after, from bob", "after, from carol"} - {m.text for m in peer.messages()}:
                    await peer.wait_delivered(len(peer.messages()) + 1)
                assert peer.node.is_member
            assert [m.key for m in bob.messages()] == [m.key for m in carol.messages()]


async def test_a_member_that_leaves_while_alone_stays_until_a_neighbour_holds_its_leave(
    tmp_path: Path,
) -> None:
    # Alice quit; bob, alone, types /leave. Had he stopped at once, nobody would ever
    # hold his LEAVE: alice, back, would count him (and wait for him) for good. He
    # stays, redials, and stops once alice, back where she was, says she holds it
    # (his link told her he is leaving: she tells him, though he is no member now).
    config = PeerConfig(leave_patience=30.0, backoff_max=0.5)
    with trio.fail_after(40):
        async with open_peer("alice", data_dir=tmp_path / "alice") as alice:
            assert alice.url is not None
            async with open_peer("bob", data_dir=tmp_path / "bob", join=[alice.url], config=config) as bob:
                await bob.send("before")
                await alice.wait_delivered(len(bob.messages()))
                bob_id = bob.node.identity.sender_id
                await alice.aclose()
                while bob.node.open_count:
                    await trio.sleep(0.05)
                stopped = trio.Event()

                async def leave() -> None:
                    assert await bob.leave("while alone") is None  # (the LEAVE is written)
                    stopped.set()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(leave)
                    await trio.sleep(1.0)
                    assert not stopped.is_set()  # (still up, waiting)
                    async with open_peer("alice", data_dir=tmp_path / "alice") as back:
                        while back.log.member_info()[bob_id].state is not MemberState.LEFT:
                            await back.wait_delivered(len(back.messages()) + 1)
                        with trio.fail_after(5):
                            await stopped.wait()
                        assert not back.log.is_member(bob_id)


async def test_a_leave_that_cannot_be_written_says_why_and_the_peer_stops_still_a_member(
    tmp_path: Path,
) -> None:
    # Carol joins a room whose member will not admit her (invite-only, no invite): she is
    # no member, so /leave can write no LEAVE. It says why instead of leaving silently.
    with trio.fail_after(20):
        async with open_peer("alice", data_dir=tmp_path / "alice", private=True) as alice:
            assert alice.url is not None
            async with open_peer("carol", data_dir=tmp_path / "carol", join=[alice.url]) as carol:
                await carol.wait_connected(1)
                assert not carol.is_member
                why_not = await carol.leave("never admitted")
                assert why_not == "we are not an active member of the room"
                assert not any(m.kind is EntryKind.LEAVE for m in carol.messages())
                assert carol.own_state is None
                assert not_left_text(why_not, carol.own_state) == f"not left: {why_not}"
    # (A member that could not leave is told how it stopped instead, and what to do.)
    said = not_left_text("a membership change we committed to is still being decided", MemberState.ACTIVE)
    assert said.endswith("; you stopped still a member: run the chat again and /leave once that is over")


async def test_two_members_that_quit_at_the_same_moment_reopen_their_room_when_back(tmp_path: Path) -> None:
    # Each wrote its AWAY before it saw the other's: nobody was active, and nobody could
    # admit anyone again, for good. Back (after their quit, not while quitting), the
    # two are a majority of the room and reopen it, and chat on. Neither is told whom to
    # join: each listens where it did before, and dials the neighbour it had there.
    with trio.fail_after(40):
        async with open_peer("alice", data_dir=tmp_path / "alice") as alice:
            assert alice.url is not None
            async with open_peer("bob", data_dir=tmp_path / "bob", join=[alice.url]) as bob:
                await bob.send("before")
                await alice.wait_delivered(len(bob.messages()))
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(alice.go_away)
                    nursery.start_soon(bob.go_away)
                while sum(m.kind is EntryKind.AWAY for m in alice.messages()) < 2:
                    await trio.sleep(0.05)
                await trio.sleep(1.5)  # (a heartbeat: quitting, neither reopens the room)
                assert not alice.node.is_member and not bob.node.is_member
                assert alice.node.log.roster.reopening(bob.node.identity.sender_id)
        async with (
            open_peer("alice", data_dir=tmp_path / "alice") as alice,
            open_peer("bob", data_dir=tmp_path / "bob") as bob,
        ):
            await alice.send("after, from alice")
            await bob.send("after, from bob")
            for peer in (alice, bob):
                while {"after, from alice", "after, from bob"} - {m.text for m in peer.messages()}:
                    await peer.wait_delivered(len(peer.messages()) + 1)
                assert peer.node.is_member
            assert [m.key for m in alice.messages()] == [m.key for m in bob.messages()]
