"""Crash and fault tests with real peer processes: SIGKILL, restart on the same data.

Every peer here is a real ``python -m p2pchat.cli chat --json`` process with its own
SQLite store. The harness writes lines to its stdin, reads its JSON lines from stdout,
kills it with SIGKILL at random moments (drawn from a seeded ``random.Random``: the
kill schedule is reproducible, the operating system's timing is not) and restarts it on
the same data directory. What must hold:

* Our own messages are committed before they are shown: every own message event a
  process printed before it was killed is in ``p2pchat log --data DIR --json`` after.
* A sender's seqs are 1..n with no hole and no repeat, its lamports strictly increase
  with seq, across any number of restarts (a crash never makes it reuse a value).
* No equivocation: no two different texts with the same (sender, seq) on any stdout.
* With several peers chatting while some are killed and restarted, they converge to
  the same log, in the same order, with nothing any process showed as its own lost.

The log holds membership entries too (the founder's genesis, admissions, the AWAY a
clean stop writes): they are printed as ``member`` events, count in every seq, index and
order check, and are held to the same never-lost, never-equivocated rules as chat lines.

Run with ``pytest -n 0 -s`` to see the counts (kills, restarts, messages).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio
from processes import close_pipes, reap

ROOT = Path(__file__).resolve().parent.parent
SEED = int(os.environ.get("P2PCHAT_CRASH_SEED", "20261126"))

Key = tuple[str, int]  # (sender hex, seq)
ENTRY_EVENTS = ("message", "member")
"""The events that show an entry of the log: a chat line, or a membership entry."""


def entry_value(event: dict[str, Any]) -> tuple[int, str]:
    """What an entry event says (beyond its key) that must never differ between two
    showings of the same (sender, seq): its stamp, and its text or whom it is about."""
    if event["event"] == "message":
        return event["lamport"], event["text"]
    return event["lamport"], f"member {event['peer_id']}"


def without_final_aways(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log before the AWAY entries that the final clean stops wrote (they are stamped
    after everything else, and a peer that stopped first never gets the others')."""
    end = len(entries)
    while end and entries[end - 1]["event"] == "member" and entries[end - 1]["action"] == "away":
        end -= 1
    return entries[:end]


# A peer process -------------------------------------------------------------------------


@dataclass
class PeerProcess:
    """One incarnation of a ``p2pchat chat --json`` process and what it printed."""

    name: str
    data: Path
    listen: str
    joins: tuple[str, ...]
    connections: int | None
    incarnation: int
    process: trio.Process | None = None
    events: list[dict[str, Any]] = field(default_factory=list)
    url: str = ""
    peer_id: str = ""
    ready: trio.Event = field(default_factory=trio.Event)
    eof: trio.Event = field(default_factory=trio.Event)
    partial_tail: bytes = b""
    delivered: set[Key] = field(default_factory=set)
    shown_twice: list[Key] = field(default_factory=list)
    replayed: list[dict[str, Any]] = field(default_factory=list)
    live: int = 0
    """Events after the replay (peer_up, live messages, ...)."""
    absorbed: int = 0
    sigterm_sent: bool = False
    neighbours: int = 0
    lines_written: int = 0
    own_live: int = 0
    """Own messages sent by this incarnation (not replayed) that it has shown."""
    """How many of ``events`` the witness has looked at."""

    @property
    def stderr_path(self) -> Path:
        return self.data.parent / f"{self.data.name}.stderr"

    def command(self) -> list[str]:
        command = [sys.executable, "-m", "p2pchat.cli", "chat", "--json", "--name", self.name]
        command += ["--data", str(self.data), "--listen", self.listen]
        for url in self.joins:
            command += ["--join", url]
        if self.connections is not None:
            command += ["--connections", str(self.connections)]
        return command

    async def start(self, nursery: trio.Nursery) -> None:
        with self.stderr_path.open("ab") as stderr:
            stderr.write(f"--- incarnation {self.incarnation}\n".encode())
            stderr.flush()
            self.process = await trio.lowlevel.open_process(
                self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT
            )
        nursery.start_soon(self._read)
        with trio.fail_after(20):
            while not self.ready.is_set():
                if self.eof.is_set():
                    raise RuntimeError(f"{self.name} exited before ready:\n{self.stderr_tail()}")
                await trio.sleep(0.01)

    async def _read(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        pending = b""
        try:
            async for chunk in self.process.stdout:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        self._on_event(json.loads(line))
        except trio.ClosedResourceError:
            pass
        finally:
            self.partial_tail = pending  # a line cut by SIGKILL was never shown
            self.eof.set()

    def _on_event(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "ready":
            self.url, self.peer_id = event["url"], event["peer_id"]
            self.ready.set()
        elif kind in ENTRY_EVENTS:
            key = (event["sender"], event["seq"])
            if key in self.delivered:
                self.shown_twice.append(key)
            self.delivered.add(key)
            if event.get("replayed"):
                self.replayed.append(event)
            else:
                self.live += 1
                self.own_live += kind == "message" and event["sender"] == self.peer_id
        else:
            self.live += 1
            self.neighbours += {"peer_up": 1, "peer_down": -1}.get(kind, 0)
            if kind == "voided":
                # A decided membership change voided these (rule 10): they leave the log.
                self.delivered -= {(m["sender"], m["seq"]) for m in event["messages"]}
        self.events.append(event)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    def messages(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e["event"] == "message"]

    def own_messages(self) -> list[dict[str, Any]]:
        return [e for e in self.messages() if e["sender"] == self.peer_id]

    def connected(self) -> int:
        return self.neighbours

    def caught_up(self) -> bool:
        """It has shown, as its own, every line written to it (one message per line)."""
        return self.own_live >= self.lines_written

    async def write(self, text: str) -> bool:
        """Write to stdin; False once the process is gone."""
        assert self.process is not None and self.process.stdin is not None
        try:
            await self.process.stdin.send_all(text.encode())
        except (trio.BrokenResourceError, trio.ClosedResourceError, BrokenPipeError):
            return False
        self.lines_written += text.count("\n")
        return True

    async def kill(self) -> None:
        """SIGKILL, then collect everything it printed before it died."""
        assert self.process is not None
        if self.process.returncode is None:
            self.process.kill()
        await self._finish()
        assert self.process.returncode == -signal.SIGKILL, self.stderr_tail()

    async def terminate(self) -> int:
        """SIGTERM (a clean stop: goodbyes, unsaved messages stored), return the exit code."""
        assert self.process is not None
        if self.process.returncode is None and not self.sigterm_sent:
            self.sigterm_sent = True  # twice could kill it in teardown, after its handler is gone
            self.process.terminate()
        await self._finish()
        assert self.process.returncode is not None
        return self.process.returncode

    async def _finish(self) -> None:
        assert self.process is not None
        await reap(self.process, self.eof)

    def stderr_tail(self, lines: int = 40) -> str:
        try:
            text = self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


async def stop_all(processes: list[PeerProcess]) -> None:
    """For finally blocks: kill whatever is still running, by pid, and reap it."""
    with trio.CancelScope(shield=True):
        for proc in processes:
            if proc.process is not None and proc.process.returncode is None:
                proc.process.kill()
        for proc in processes:
            if proc.process is not None:
                with trio.move_on_after(10):
                    await proc.process.wait()
                await close_pipes(proc.process)


# What a store holds ---------------------------------------------------------------------


async def read_log(data: Path) -> list[dict[str, Any]]:
    """``p2pchat log --data DIR --json``, after checking the database is sound."""
    db = sqlite3.connect(data / "p2pchat.sqlite3")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        db.close()
    result = await trio.run_process(
        [sys.executable, "-m", "p2pchat.cli", "log", "--data", str(data), "--json"],
        capture_stdout=True,
        capture_stderr=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr, result.stderr.decode()
    shown = [json.loads(line) for line in result.stdout.decode().splitlines() if line.strip()]
    entries = [e for e in shown if e["event"] in ENTRY_EVENTS]
    # After the entries come the proofs kept against members: honest peers have none.
    assert entries == shown, f"proof against an honest peer: {shown[len(entries) :]}"
    assert [e["index"] for e in entries] == list(range(len(entries)))
    return entries


def stored_keys(data: Path) -> set[Key]:
    """Every entry the database holds, visible or a tombstone, as (sender hex, seq)."""
    db = sqlite3.connect(data / "p2pchat.sqlite3")
    try:
        return {(sender.hex(), seq) for sender, seq in db.execute("SELECT sender, seq FROM entries")}
    finally:
        db.close()


def check_log_shape(entries: list[dict[str, Any]]) -> None:
    """Sorted by (lamport, sender), no duplicates, per sender seqs rising and lamport rising."""
    keys = [(e["sender"], e["seq"]) for e in entries]
    assert len(set(keys)) == len(keys), "duplicate (sender, seq) in a log"
    order = [(e["lamport"], e["sender"]) for e in entries]
    assert order == sorted(order) and len(set(order)) == len(order), "log not in (lamport, sender) order"
    by_sender: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_sender.setdefault(entry["sender"], []).append(entry)
    for sender, own in by_sender.items():
        own.sort(key=lambda e: e["seq"])
        # Seqs rise without repeats. A seq may be missing from the log only as a tombstone:
        # an entry a membership decision voided (a line written while a change its author
        # had answered was open), which its peer sent again as a new entry.
        seqs = [e["seq"] for e in own]
        assert seqs == sorted(set(seqs)), f"repeated seqs from {sender[:8]}"
        lamports = [e["lamport"] for e in own]
        assert all(a < b for a, b in itertools.pairwise(lamports)), (
            f"{sender[:8]}'s lamports do not increase with seq"
        )


class Witness:
    """Everything every process ever printed about messages: to catch equivocation."""

    def __init__(self) -> None:
        self.seen: dict[Key, tuple[int, str]] = {}
        self.own_shown: dict[Key, tuple[int, str]] = {}
        """Own message events printed by their sender: committed, so never to be lost."""
        self.voided: set[Key] = set()
        """Entries a decided membership change voided, as any process printed (decisions are
        the same everywhere): they leave every log, and their texts are sent again."""
        self.lamports_used: dict[tuple[str, int], int] = {}

    def absorb(self, proc: PeerProcess) -> None:
        fresh, proc.absorbed = proc.events[proc.absorbed :], len(proc.events)
        for event in fresh:
            if event["event"] == "voided":
                self.voided |= {(m["sender"], m["seq"]) for m in event["messages"]}
            if event["event"] not in ENTRY_EVENTS:
                continue
            key = (event["sender"], event["seq"])
            value = entry_value(event)
            previous = self.seen.setdefault(key, value)
            assert previous == value, f"equivocation: {key} shown as {previous} and as {value}"
            if event["sender"] == proc.peer_id:
                self.own_shown[key] = value
                stamp = (event["sender"], event["lamport"])
                used_by = self.lamports_used.setdefault(stamp, event["seq"])
                assert used_by == event["seq"], f"lamport {stamp} reused by seqs {used_by} and {key[1]}"
        assert not proc.shown_twice, f"{proc.name} showed {proc.shown_twice[:3]} twice"

    def check_committed(
        self,
        entries: list[dict[str, Any]],
        where: str,
        sender: str | None = None,
        skip: Collection[tuple[str, int]] = (),
        tombstones: Collection[Key] = (),
    ) -> None:
        """Every own entry shown (by ``sender``, or by anyone; but those in ``skip``) is in
        the log, unchanged, or stored as a tombstone (``tombstones``: held, but voided by a
        decided membership change, so ``p2pchat log`` does not show it)."""
        stored = {(e["sender"], e["seq"]): entry_value(e) for e in entries}
        for key, value in self.own_shown.items():
            if key not in stored and (key in self.voided or key in tombstones):
                continue
            if (sender is None or key[0] == sender) and key not in skip:
                assert stored.get(key) == value, f"{where}: shown {key} {value} but stored {stored.get(key)}"
        for key, value in stored.items():
            if key in self.seen:
                assert self.seen[key] == value, f"{where}: stored {key} {value}, shown {self.seen[key]}"


# 1. Crash safety of one peer --------------------------------------------------------------


def check_burst_prefixes(own: list[dict[str, Any]], bursts: list[list[str]]) -> None:
    """Own texts in seq order are, burst after burst, a prefix of what each burst wrote."""
    texts = [e["text"] for e in sorted(own, key=lambda e: e["seq"])]
    position = 0
    for burst in bursts:
        taken = 0
        while position < len(texts) and taken < len(burst) and texts[position] == burst[taken]:
            position += 1
            taken += 1
    assert position == len(texts), f"own messages are not prefixes of the bursts: {texts[position:][:3]}"


async def wait_replayed(proc: PeerProcess, log: list[dict[str, Any]], *, exact: bool) -> None:
    """The restarted process replays its store: exactly ``log`` when nothing else wrote to
    the store since, else (a partner's messages arriving) a subset with all our own."""
    with trio.fail_after(20):
        if exact:
            while len(proc.replayed) < len(log):
                await trio.sleep(0.01)
        else:  # the replay is printed before any other event
            while proc.live == 0:
                await trio.sleep(0.01)
    replayed = [(e["sender"], e["seq"]) for e in proc.replayed]
    stored = [(e["sender"], e["seq"]) for e in log]
    if exact:
        assert replayed == stored, "replay differs from the store it was started on"
    else:
        assert set(replayed) <= set(stored), "replayed messages that are not in the store"
        own_replayed = [key for key in replayed if key[0] == proc.peer_id]
        assert own_replayed == [key for key in stored if key[0] == proc.peer_id], "own replay differs"


async def crash_cycles(
    tmp: Path,
    rng: random.Random,
    *,
    cycles: int,
    partner: PeerProcess | None,
    witness: Witness,
    nursery: trio.Nursery,
    counts: Counter[str],
    started: list[PeerProcess],
) -> tuple[PeerProcess, list[dict[str, Any]]]:
    """Start the victim, write a burst, SIGKILL it mid-burst, check its store; repeat.

    The store is read (``p2pchat log``) while the next incarnation starts on it: nothing
    writes our own messages before we write to its stdin. Returns the last (running)
    incarnation and the store it was restarted on. Every incarnation is put in ``started``
    (before it starts) for the caller's clean-up.
    """
    data = tmp / "victim"
    joins = (partner.url,) if partner is not None else ()
    bursts: list[list[str]] = []
    previous_own: list[dict[str, Any]] = []
    log: list[dict[str, Any]] = []
    proc = PeerProcess("victim", data, "127.0.0.1:0", joins, None, 0)
    started.append(proc)
    await proc.start(nursery)
    peer_id = proc.peer_id
    for cycle in range(cycles):
        try:
            if partner is not None:
                with trio.fail_after(20):
                    while proc.connected() < 1:
                        await trio.sleep(0.01)
            if cycle:
                await wait_replayed(proc, log, exact=partner is None)
            burst = [f"c{cycle:02d}-{j:04d} " + "x" * rng.randrange(0, 60) for j in range(400)]
            bursts.append(burst)
            kill_after = rng.uniform(0.0, 0.35)
            async with trio.open_nursery() as writing:

                async def write_burst(proc: PeerProcess = proc, burst: list[str] = burst) -> None:
                    j = 0
                    while j < len(burst):
                        n = rng.randint(1, 20)
                        if not await proc.write("".join(line + "\n" for line in burst[j : j + n])):
                            return
                        j += n
                        await trio.sleep(rng.uniform(0.002, 0.015))

                writing.start_soon(write_burst)
                await trio.sleep(kill_after)
                await proc.kill()
                counts["kills"] += 1
        finally:
            await stop_all([proc])
        witness.absorb(proc)
        killed = proc

        # Read the store and restart on it at once (each takes an interpreter start).
        proc = PeerProcess("victim", data, "127.0.0.1:0", joins, None, cycle + 1)
        started.append(proc)
        async with trio.open_nursery() as both:

            async def read(data: Path = data) -> None:
                log[:] = await read_log(data)

            both.start_soon(read)
            both.start_soon(proc.start, nursery)
        counts["restarts"] += 1
        assert proc.peer_id == peer_id, "identity changed across a restart"

        # The store opens cleanly and holds everything that was shown as ours.
        check_log_shape(log)
        witness.check_committed(log, "victim's store", sender=peer_id)
        own = [e for e in log if e["sender"] == peer_id]
        own_texts = [e for e in own if e["event"] == "message"]
        check_burst_prefixes(own_texts, bursts)
        own_shown = [e for e in killed.own_messages() if not e.get("replayed")]
        counts["own shown"] += len(own_shown)
        counts["own committed"] += sum(1 for e in own_texts if e["text"].startswith(f"c{cycle:02d}-"))
        if 0 < len(own_shown) < len(burst):
            counts["kills mid-burst"] += 1
        # Nothing committed before (chat line or membership entry) is lost or changed by a later crash.
        by_seq = {e["seq"]: entry_value(e) for e in own}
        for e in previous_own:
            assert by_seq.get(e["seq"]) == entry_value(e), f"own seq {e['seq']} lost or changed"
        previous_own = own
    return proc, log


async def finish_victim(
    proc: PeerProcess, log: list[dict[str, Any]], witness: Witness, counts: Counter[str], *, exact: bool
) -> dict[str, Any]:
    """After the last restart: it replays its store, and its next message is (n+1, > all)."""
    await wait_replayed(proc, log, exact=exact)
    own_seqs = [e["seq"] for e in log if e["sender"] == proc.peer_id]
    assert await proc.write("after the last crash\n")
    with trio.fail_after(20):
        while not any(e["text"] == "after the last crash" for e in proc.own_messages()):
            await trio.sleep(0.01)
    (last,) = [e for e in proc.own_messages() if e["text"] == "after the last crash"]
    assert last["seq"] == len(own_seqs) + 1
    assert last["lamport"] > max((e["lamport"] for e in proc.replayed), default=0)
    assert all(
        last["lamport"] > lamport for (sender, lamport) in witness.lamports_used if sender == proc.peer_id
    )
    counts["own committed"] += 1
    return last


async def test_sigkill_during_bursts_never_loses_or_reuses(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    counts: Counter[str] = Counter()
    witness = Witness()
    started = trio.current_time()
    procs: list[PeerProcess] = []
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            try:
                proc, log = await crash_cycles(
                    tmp_path,
                    rng,
                    cycles=9,
                    partner=None,
                    witness=witness,
                    nursery=nursery,
                    counts=counts,
                    started=procs,
                )
                last = await finish_victim(proc, log, witness, counts, exact=True)
                assert await proc.terminate() == 0, proc.stderr_tail()
                witness.absorb(proc)
                final = await read_log(proc.data)
                check_log_shape(final)
                witness.check_committed(final, "final store")
                # The store it restarted on, then its line after the last crash. Alone in its
                # room, its clean stop (SIGTERM) writes no AWAY: it stays the room's member.
                assert [(e["sender"], e["seq"]) for e in final[: len(log)]] == [
                    (e["sender"], e["seq"]) for e in log
                ]
                assert len(final) == len(log) + 1
                assert (final[-1]["seq"], final[-1].get("text")) == (last["seq"], "after the last crash")
            finally:
                await stop_all(procs)
                nursery.cancel_scope.cancel()
    print(
        f"\ncrash (alone): {counts['kills']} SIGKILLs ({counts['kills mid-burst']} mid-burst), "
        f"{counts['restarts']} restarts, {counts['own shown']} own messages shown before a kill, "
        f"{counts['own committed']} committed, {len(final)} in the final log, "
        f"{trio.current_time() - started:.1f} s"
    )


async def test_sigkill_while_receiving_never_equivocates(tmp_path: Path) -> None:
    """The victim also receives (and batches to disk) a partner's messages when killed."""
    rng = random.Random(SEED + 1)
    counts: Counter[str] = Counter()
    witness = Witness()
    started = trio.current_time()
    partner = PeerProcess("partner", tmp_path / "partner", "127.0.0.1:0", (), None, 0)
    procs = [partner]
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            try:
                await partner.start(nursery)
                chatting = trio.CancelScope()

                async def chat() -> None:
                    with chatting:
                        n = 0
                        while await partner.write(f"partner {n}\n"):
                            n += 1
                            await trio.sleep(rng.uniform(0.005, 0.03))

                nursery.start_soon(chat)
                victim, log = await crash_cycles(
                    tmp_path,
                    rng,
                    cycles=6,
                    partner=partner,
                    witness=witness,
                    nursery=nursery,
                    counts=counts,
                    started=procs,
                )
                # The victim's store held the partner's messages it had saved, causally closed.
                counts["partner messages in victim's stores"] = sum(
                    1 for e in log if e["sender"] == partner.peer_id
                )
                await finish_victim(victim, log, witness, counts, exact=False)
                chatting.cancel()

                # Settle: the partner has sent every line written to it, both show the same
                # set, then both stores hold the same log.
                with trio.fail_after(20):
                    while not partner.caught_up() or victim.delivered != partner.delivered:
                        await trio.sleep(0.05)
                assert await victim.terminate() == 0, victim.stderr_tail()
                assert await partner.terminate() == 0, partner.stderr_tail()
                witness.absorb(victim)
                witness.absorb(partner)
                logs = [await read_log(victim.data), await read_log(partner.data)]
                for entries, where in zip(logs, ["victim's final store", "partner's store"], strict=True):
                    check_log_shape(entries)
                    witness.check_committed(entries, where)
                victim_keys, partner_keys = (
                    [(e["sender"], e["seq"]) for e in without_final_aways(log)] for log in logs
                )
                assert victim_keys == partner_keys, "the two final logs differ"
                # Only the clean stops' AWAY entries follow: the victim's own is in its store.
                assert logs[0][len(victim_keys) :] and all(
                    e["sender"] == victim.peer_id for e in logs[0][len(victim_keys) :]
                )
            finally:
                await stop_all(procs)
                nursery.cancel_scope.cancel()
    final = logs[0]
    print(
        f"\ncrash (with a partner): {counts['kills']} SIGKILLs ({counts['kills mid-burst']} mid-burst), "
        f"{counts['restarts']} restarts, {counts['own shown']} own messages shown before a kill, "
        f"{counts['own committed']} committed, "
        f"{sum(1 for e in final if e['sender'] == partner.peer_id)} partner messages, "
        f"{len(final)} in the final logs, {len(witness.seen)} distinct messages seen, "
        f"{trio.current_time() - started:.1f} s"
    )


# 2. A ring of five chatting peers, some killed and restarted -----------------------------


def ring_report(current: list[PeerProcess], witness: Witness) -> str:
    everything = set().union(*(p.delivered for p in current)) | (set(witness.own_shown) - witness.voided)
    names = {p.peer_id: p.name for p in current}
    lines = []
    for proc in current:
        missing = Counter(names.get(sender, sender[:8]) for sender, _ in everything - proc.delivered)
        lines.append(
            f"{proc.name}.{proc.incarnation} alive={proc.alive} connected={proc.connected()} "
            f"caught up {proc.own_live}/{proc.lines_written}, "
            f"shows {len(proc.delivered)}/{len(everything)}, missing {dict(missing)}"
        )
        lines.append(proc.stderr_tail(8))
    return "\n".join(lines)


def free_ports(count: int) -> list[int]:
    """Ports the kernel has just handed out, so peers can be told each other's URLs up front."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


async def test_ring_of_five_with_kills_converges(tmp_path: Path) -> None:
    rng = random.Random(SEED + 2)
    counts: Counter[str] = Counter()
    witness = Witness()
    started = trio.current_time()
    size = 5
    ports = free_ports(size)
    urls = [f"ws://127.0.0.1:{port}" for port in ports]
    # Peer 0 founds the room; peer i joins peer i-1, and peer 4 joins peer 0 too: a ring, so
    # one dead peer cuts nobody off, and every message travels up to two hops. Killed peers
    # restart on the same port (and in the room they stored).
    joins = [() if i == 0 else (urls[i - 1],) for i in range(size)]
    joins[size - 1] = (urls[size - 2], urls[0])
    current = [
        PeerProcess(f"p{i}", tmp_path / f"p{i}", f"127.0.0.1:{ports[i]}", joins[i], 0, 0) for i in range(size)
    ]
    everyone = list(current)
    down: set[int] = set()

    def note(what: str) -> None:
        print(f"[{trio.current_time() - started:6.2f}] {what}", flush=True)

    async def chat(proc: PeerProcess, chat_rng: random.Random) -> None:
        n = 0
        while await proc.write(f"{proc.name}.{proc.incarnation}.{n}\n"):
            counts["lines written"] += 1
            n += 1
            await trio.sleep(chat_rng.uniform(0.02, 0.05))

    async def restart(i: int, victim: PeerProcess, downtime: float, chatters: trio.Nursery) -> None:
        """Check the killed peer's store while it is down, then start it again (same port)."""

        async def check_store() -> None:
            entries = await read_log(victim.data)
            check_log_shape(entries)
            tombstones = stored_keys(victim.data) - {(e["sender"], e["seq"]) for e in entries}
            witness.check_committed(
                entries, f"{victim.name}'s store after a kill", sender=victim.peer_id, tombstones=tombstones
            )

        again = PeerProcess(victim.name, victim.data, victim.listen, victim.joins, 0, victim.incarnation + 1)
        everyone.append(again)

        async def relaunch() -> None:
            await trio.sleep(downtime)
            await again.start(nursery)

        async with trio.open_nursery() as both:
            both.start_soon(check_store)
            both.start_soon(relaunch)
        assert again.peer_id == victim.peer_id and again.url == victim.url
        counts["restarts"] += 1
        note(f"restarted {again.name}.{again.incarnation} (down {downtime:.2f} s)")
        current[i] = again
        down.discard(i)
        chatters.start_soon(chat, again, random.Random(rng.random()))

    with trio.fail_after(100):
        async with trio.open_nursery() as nursery:
            try:
                async with trio.open_nursery() as starting:
                    for proc in current:
                        starting.start_soon(proc.start, nursery)
                with trio.move_on_after(20):
                    while sum(p.connected() for p in current) < 2 * size:
                        await trio.sleep(0.02)
                if sum(p.connected() for p in current) < 2 * size:
                    raise AssertionError(
                        f"the ring did not come up in 20 s:\n{ring_report(current, witness)}"
                    )
                note("ring up")

                chat_started = trio.current_time()
                kill_at = sorted(rng.uniform(0.5, 10.0) for _ in range(5))
                async with trio.open_nursery() as chatters:
                    for proc in current:
                        chatters.start_soon(chat, proc, random.Random(rng.random()))
                    async with trio.open_nursery() as restarts:
                        for when in kill_at:
                            await trio.sleep_until(chat_started + when)
                            while len(down) >= 2:  # at most two peers down at once
                                await trio.sleep(0.05)
                            i = rng.choice([i for i in range(size) if i not in down])
                            victim = current[i]
                            down.add(i)
                            await victim.kill()
                            counts["kills"] += 1
                            witness.absorb(victim)
                            note(f"killed {victim.name}.{victim.incarnation}")
                            restarts.start_soon(restart, i, victim, rng.uniform(0.1, 0.8), chatters)
                    await trio.sleep(0.5)  # a little chat after the last restart
                    chatters.cancel_scope.cancel()
                chatted = trio.current_time() - chat_started
                note("stopped chatting")

                # Settle: every live process shows the same set, holding every own message shown.
                settle_started = trio.current_time()

                def converged() -> bool:
                    for proc in current:  # own messages shown since count too
                        witness.absorb(proc)
                    sets = [p.delivered for p in current]
                    return (
                        all(p.caught_up() for p in current)
                        and all(s == sets[0] for s in sets)
                        and set(witness.own_shown) - witness.voided <= sets[0]
                    )

                with trio.move_on_after(30):
                    while not converged():
                        await trio.sleep(0.05)
                if not converged():
                    raise AssertionError(f"no convergence after 30 s:\n{ring_report(current, witness)}")
                settled = trio.current_time() - settle_started
                note(f"settled in {settled:.1f} s")

                for proc in current:  # all at once: nobody redials a peer that is stopping
                    assert proc.process is not None
                    proc.sigterm_sent = True
                    proc.process.terminate()
                for proc in current:
                    assert await proc.terminate() == 0, proc.stderr_tail()
                    witness.absorb(proc)
                logs = [await read_log(p.data) for p in current]
                # The AWAY entries of the final stops (all at once) come last; each peer
                # printed and stored its own, but may never have got the others'.
                keys = [[(e["sender"], e["seq"]) for e in without_final_aways(entries)] for entries in logs]
                final_aways = {
                    (e["sender"], e["seq"])
                    for entries in logs
                    for e in entries[len(without_final_aways(entries)) :]
                }
                for entries, proc in zip(logs, current, strict=True):
                    check_log_shape(entries)
                    witness.check_committed(entries, f"{proc.name}'s final store", sender=proc.peer_id)
                    witness.check_committed(
                        without_final_aways(entries), f"{proc.name}'s final store", skip=final_aways
                    )
                for other in keys[1:]:
                    assert other == keys[0], "peers' final logs differ"
                shown = set(witness.own_shown) - final_aways - witness.voided
                assert shown <= set(keys[0])
                assert len(shown) == len(keys[0]), "an entry in the logs was never shown"
            finally:
                await stop_all(everyone)
                nursery.cancel_scope.cancel()
    per_sender = Counter(e["sender"] for e in logs[0])
    print(
        f"\nring of {size}: {counts['kills']} SIGKILLs, {counts['restarts']} restarts, "
        f"{counts['lines written']} lines written, {len(witness.own_shown)} own entries shown, "
        f"{len(logs[0])} entries in each final log (per sender {sorted(per_sender.values())}), "
        f"chatting {chatted:.1f} s, settled in {settled:.1f} s, total {trio.current_time() - started:.1f} s"
    )
