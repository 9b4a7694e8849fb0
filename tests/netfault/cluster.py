"""Real peer processes in namespaces, typed into and watched, with a recorded history.

Every record of the history is a dict with ``t`` (seconds since the run started, on
trio's clock) and ``type``:

* ``run``: the run's parameters, and ``wall`` (the harness's wall clock at ``t = 0``);
* ``start`` / ``exit``: a process incarnation began / ended (``code``, ``expected``);
* ``typed``: a line written to a peer's stdin (``text``);
* ``event``: a JSON line a peer printed (``event``, as printed, whatever its kind);
* ``fault``: the nemesis began (``phase: "start"``) or undid (``"end"``) a fault.

The history is kept in memory for the checker and written as JSON lines as it grows.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import trio
from processes import reap

from .netns import Network

ROOT = Path(__file__).resolve().parents[2]
PORT = 7000
FAKETIME_LIBRARIES = (
    "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/aarch64-linux-gnu/faketime/libfaketime.so.1",
    "/usr/lib/faketime/libfaketime.so.1",
)


def faketime_library() -> str | None:
    """libfaketime (Debian package ``faketime``), to give a peer a wrong wall clock."""
    return next((path for path in FAKETIME_LIBRARIES if Path(path).exists()), None)


class History:
    """The append-only record of a run, in memory and as JSON lines in ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._file: TextIO = path.open("w", encoding="utf-8")
        self._origin = trio.current_time()

    def now(self) -> float:
        return trio.current_time() - self._origin

    def add(self, type_: str, **fields: Any) -> dict[str, Any]:
        record = {"t": round(self.now(), 4), "type": type_, **fields}
        self.records.append(record)
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        return record

    def close(self) -> None:
        self._file.close()


@dataclass
class PeerProcess:
    """Peer ``index``: its namespace, data directory and current incarnation."""

    index: int
    network: Network
    data: Path
    joins: tuple[str, ...]
    history: History
    clock_file: Path | None
    incarnation: int = -1
    process: trio.Process | None = None
    peer_id: str = ""
    ready: trio.Event = field(default_factory=trio.Event)
    eof: trio.Event = field(default_factory=trio.Event)
    paused: bool = False
    killed: bool = False
    """The current incarnation was killed on purpose (its exit is expected)."""
    stopping: bool = False
    shown: set[tuple[str, int]] = field(default_factory=set)
    """Log entries (messages, membership entries) the current incarnation has shown."""
    accepted: set[tuple[str, int]] = field(default_factory=set)
    """Own messages any incarnation showed: committed, so never to be lost."""
    stable_count: int = 0
    typed: int = 0
    handled: int = 0
    """Lines of the current incarnation shown as own messages or reported unsent."""

    @property
    def name(self) -> str:
        return f"p{self.index}"

    @property
    def url(self) -> str:
        return f"ws://{self.network.address(self.index)}:{PORT}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None and not self.killed

    def command(self) -> list[str]:
        env = []
        library = faketime_library()
        if self.clock_file is not None and library is not None:
            # Only the wall clock is faked: trio's monotonic clock must stay true.
            env = [
                "env",
                f"LD_PRELOAD={library}",
                f"FAKETIME_TIMESTAMP_FILE={self.clock_file}",
                "FAKETIME_CACHE_DURATION=1",
                "DONT_FAKE_MONOTONIC=1",
            ]
        command = [*self.network.exec_prefix(self.index), *env, sys.executable, "-m", "p2pchat.cli"]
        command += ["chat", "--json", "--name", self.name, "--data", str(self.data)]
        command += ["--listen", f"{self.network.address(self.index)}:{PORT}"]
        for url in self.joins:
            command += ["--join", url]
        return command

    async def start(self, nursery: trio.Nursery) -> None:
        self.incarnation += 1
        self.ready, self.eof, self.killed, self.paused = trio.Event(), trio.Event(), False, False
        self.shown, self.stable_count, self.typed, self.handled = set(), 0, 0, 0
        stderr_path = self.data.parent / f"{self.name}.stderr"
        with stderr_path.open("ab") as stderr:
            stderr.write(f"--- incarnation {self.incarnation}\n".encode())
            stderr.flush()
            self.process = await trio.lowlevel.open_process(
                self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, cwd=ROOT
            )
        self.history.add("start", peer=self.index, incarnation=self.incarnation, pid=self.process.pid)
        nursery.start_soon(self._read, self.process, self.incarnation)
        with trio.fail_after(30):
            while not self.ready.is_set():
                if self.eof.is_set():
                    raise RuntimeError(f"{self.name} exited before it was ready: see {stderr_path}")
                await trio.sleep(0.02)

    async def _read(self, process: trio.Process, incarnation: int) -> None:
        assert process.stdout is not None
        pending = b""
        eof = self.eof
        try:
            async for chunk in process.stdout:
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if line.strip():
                        self._on_line(line, incarnation)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        finally:
            # The exit is recorded before ``eof`` is set: kill() and stop() wait for eof,
            # so the record precedes whatever the nemesis does next.
            with trio.CancelScope(shield=True), trio.move_on_after(20):
                await process.wait()
            cause = "killed" if self.killed else "stopped" if self.stopping else "unexpected"
            self.history.add(
                "exit", peer=self.index, incarnation=incarnation, code=process.returncode, cause=cause
            )
            eof.set()

    def _on_line(self, line: bytes, incarnation: int) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            self.history.add(
                "garbage", peer=self.index, incarnation=incarnation, line=line.decode(errors="replace")
            )
            return
        self.history.add("event", peer=self.index, incarnation=incarnation, event=event)
        kind = event.get("event")
        if kind == "ready":
            self.peer_id = event["peer_id"]
            self.ready.set()
        elif kind in ("message", "member") and "sender" in event:
            key = (event["sender"], event["seq"])
            self.shown.add(key)
            if kind == "message" and event["sender"] == self.peer_id:
                self.accepted.add(key)
                self.handled += not event.get("replayed")
        elif kind == "stable":
            self.stable_count = max(self.stable_count, event["count"])
        elif kind == "error":
            self.handled += len(event.get("unsent", ()))

    @property
    def settled(self) -> bool:
        """Every line typed into it handled, everything it shows stable."""
        return self.handled >= self.typed and self.stable_count >= len(self.shown)

    async def type_line(self, text: str) -> bool:
        """Write ``text`` to the peer's stdin; False if it is not running."""
        if not self.running or self.process is None or self.process.stdin is None:
            return False
        try:
            # Never cancelled half-way (that would glue two lines together); a paused peer's
            # pipe holds minutes of typing at this rate.
            await self.process.stdin.send_all(text.encode() + b"\n")
            self.history.add("typed", peer=self.index, incarnation=self.incarnation, text=text)
            self.typed += 1
            return True
        except (trio.BrokenResourceError, trio.ClosedResourceError, BrokenPipeError):
            pass
        return False

    # Faults on the process -------------------------------------------------------------
    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.process.returncode is None:
            os.kill(self.process.pid, sig)

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    async def kill(self) -> None:
        self.killed = True
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGKILL)
        await self._reap()

    async def stop(self) -> None:
        """SIGTERM: a clean stop (it must exit 0); SIGKILL after 15 s."""
        self.stopping = True
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        await self._reap()

    async def _reap(self) -> None:
        if self.process is None:
            return
        await reap(self.process, self.eof)

    def set_clock(self, spec: str) -> None:
        """Move the wall clock libfaketime gives this peer (``"+5h"``, ``"+0"``)."""
        assert self.clock_file is not None
        self.clock_file.write_text(spec + "\n")


class Cluster:
    """``size`` peers, each in its own namespace of ``network``, chatting."""

    def __init__(self, network: Network, workdir: Path, history: History, seed: int) -> None:
        self.network = network
        self.history = history
        self.rng = random.Random(seed)
        clock_files = faketime_library() is not None
        self.peers: list[PeerProcess] = []
        for index in range(network.size):
            # Each peer dials those before it, as with an invite list: every pair has a
            # dialer that redials it for good. The first dials nobody: it founds the room.
            joins = tuple(f"ws://{network.address(j)}:{PORT}" for j in range(index))
            clock_file = workdir / f"p{index}.faketime" if clock_files else None
            if clock_file is not None:
                clock_file.write_text("+0\n")
            peer = PeerProcess(index, network, workdir / f"p{index}", joins, history, clock_file)
            self.peers.append(peer)
        self.typing = True
        self.typed = 0

    async def start(self, nursery: trio.Nursery) -> None:
        async with trio.open_nursery() as starting:
            for peer in self.peers:
                starting.start_soon(peer.start, nursery)

    async def type_forever(self, peer: PeerProcess, rate: float) -> None:
        """Type about ``rate`` lines a second into ``peer`` while ``self.typing``."""
        rng = random.Random(self.rng.random())
        n = 0
        while self.typing:
            await trio.sleep(rng.expovariate(rate))
            if not self.typing:
                break
            text = f"{peer.name}-{peer.incarnation}-{n} " + "x" * rng.randrange(0, 40)
            if await peer.type_line(text):
                n += 1
                self.typed += 1

    async def restart(self, peer: PeerProcess, nursery: trio.Nursery) -> None:
        await peer.start(nursery)

    async def stop_all(self) -> None:
        """SIGTERM every running peer, in parallel (SIGCONT first for a paused one)."""
        async with trio.open_nursery() as stopping:
            for peer in self.peers:
                if peer.running:
                    stopping.start_soon(peer.stop)

    def kill_everything(self) -> None:
        """For ``finally``: SIGKILL whatever is still running, by pid."""
        for peer in self.peers:
            if peer.process is not None and peer.process.returncode is None:
                peer.killed = True
                try:
                    os.kill(peer.process.pid, signal.SIGCONT)
                    os.kill(peer.process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass

    def wall_clock(self) -> float:
        return time.time()
