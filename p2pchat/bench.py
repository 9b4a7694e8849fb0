"""``p2pchat bench``: real peer processes on loopback, measured.

Starts N ``p2pchat chat --json`` processes, each with its own SQLite store,
connects them in a line (or a random connected graph), has each send M messages
of B bytes -- paced at R per second, or as fast as possible -- and waits until
every peer holds every message. Paced, each peer writes at moments of its own,
drawn (seeded) as independent people would write: a Poisson process of rate R. With
``--in-step`` every peer writes at the same moments instead, R times a second: each
message then waits behind the others sent at the same moment, at every hop. It reads
each process's JSON-lines output as it arrives and reports:

* fully delivered messages per second (all N*M messages at all N peers),
* latency from send to the last peer's delivery (p50, p99, max),
* bytes on the wire per delivery (every frame every peer sent / remote deliveries),
* CPU ms per delivery (the peers' summed CPU time during the run / remote deliveries),
* peak RSS per peer, and messages lost or duplicated.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from .arguments import number, whole_number
from .errors import UserError
from .membership import MAX_MEMBERS

__all__ = [
    "BenchResult",
    "add_bench_parser",
    "chat_command",
    "json_events",
    "run_bench",
    "run_bench_command",
    "writer_timings",
]

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclass
class _Process:
    index: int
    process: trio.Process
    url: str = ""
    peer_id: str = ""
    ready: trio.Event = field(default_factory=trio.Event)
    neighbours: int = 0
    admitted: bool = False
    """It has shown its own admission (or, for the founder, its room's genesis)."""
    delivered: dict[tuple[str, int], float] = field(default_factory=dict)
    duplicates: int = 0
    statistics: dict[str, Any] = field(default_factory=dict)
    stats_seen: trio.Event = field(default_factory=trio.Event)


@dataclass
class BenchResult:
    peers: int
    messages: int
    delivered_per_s: float
    p50_ms: float
    p99_ms: float
    max_ms: float
    bytes_per_delivery: float
    cpu_ms_per_delivery: float
    rss_mb: float
    lost: int
    duplicates: int
    seconds: float

    def as_json(self) -> dict[str, float | int]:
        return {
            "delivered_per_s": round(self.delivered_per_s, 1),
            "p50_ms": round(self.p50_ms, 2),
            "p99_ms": round(self.p99_ms, 2),
            "max_ms": round(self.max_ms, 2),
            "bytes_per_delivery": round(self.bytes_per_delivery, 1),
            "cpu_ms_per_delivery": round(self.cpu_ms_per_delivery, 4),
            "rss_mb": round(self.rss_mb, 1),
            "lost": self.lost,
            "duplicates": self.duplicates,
        }


def add_bench_parser(commands: Any) -> None:
    bench = commands.add_parser(
        "bench",
        help="benchmark real peer processes on loopback",
        description="Start real peer processes on loopback and measure throughput, latency, bytes "
        "and CPU per delivery.",
        epilog="examples:\n  p2pchat bench\n  p2pchat bench --peers 8 --rate 50 --json",
    )
    bench.add_argument(
        "--peers",
        type=whole_number(1, MAX_MEMBERS),
        default=5,
        help=f"peer processes, all members of one room (at most {MAX_MEMBERS})",
    )
    bench.add_argument("--messages", type=whole_number(1), default=200, help="messages per peer")
    bench.add_argument(
        "--rate", type=number(0, above=True), help="messages per second per peer (default: flat out)"
    )
    bench.add_argument(
        "--in-step",
        action="store_true",
        help="with --rate: every peer writes at the same moments (default: each at random moments "
        "of its own, at that mean rate)",
    )
    bench.add_argument("--size", type=whole_number(1), default=50, help="bytes of text per message")
    bench.add_argument("--topology", choices=["line", "random"], default="line")
    bench.add_argument(
        "--timeout", type=number(0, above=True), default=120.0, help="seconds to wait for delivery"
    )
    bench.add_argument("--seed", type=int, default=1)
    bench.add_argument("--json", action="store_true")


def _thread_cpu_ns(pid: int) -> dict[int, int]:
    """Nanoseconds on a CPU so far, for each thread of process ``pid``.

    From ``/proc/PID/task/TID/schedstat``, which the scheduler keeps to the
    nanosecond. ``/proc/PID/stat`` counts in clock ticks (10 ms here): a peer of a
    burst run spends about 80 ms on the CPU, so ticks would be off by up to an
    eighth. Empty where the kernel keeps no such file.
    """
    spent: dict[int, int] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return spent
    for task in tasks:
        try:
            spent[int(task.name)] = int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            continue
    return spent


@dataclass(frozen=True)
class _CpuReading:
    """What a process had spent on the CPU at one moment (see :func:`_cpu_since`)."""

    ticks: float
    threads: dict[int, int]


def _cpu_reading(pid: int) -> _CpuReading:
    return _CpuReading(_cpu_seconds(pid), _thread_cpu_ns(pid))


def _cpu_since(pid: int, before: _CpuReading) -> float:
    """CPU seconds process ``pid`` spent since ``before``: to the nanosecond where the
    kernel says so, else in clock ticks.

    Thread by thread, so that a thread that ended in between (a worker thread left
    idle) takes its earlier time with it rather than subtracting it from the others:
    what it spent in between is lost, which understates by at most that.
    """
    now = _thread_cpu_ns(pid)
    if before.threads and now:
        return sum(spent - before.threads.get(tid, 0) for tid, spent in now.items()) / 1e9
    return _cpu_seconds(pid) - before.ticks


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


def _peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


_last_progress = [0.0]


def _progress(text: str, quiet: bool) -> None:
    """A one-line progress display on a terminal, at most ten updates a second."""
    if quiet or not sys.stderr.isatty():
        return
    now = time.monotonic()
    if text and now - _last_progress[0] < 0.1:
        return
    _last_progress[0] = now
    print(f"\r{text:<72}", end="", file=sys.stderr, flush=True)


def chat_command(name: str, data_dir: str) -> list[str]:
    """A ``p2pchat chat --json`` peer process on a free loopback port, dialing only --join."""
    return [sys.executable, "-m", "p2pchat.cli", "chat", "--json", "--name", name,
            "--listen", "127.0.0.1:0", "--data", data_dir, "--connections", "0"]  # fmt: skip


async def json_events(stream: trio.abc.ReceiveStream) -> AsyncIterator[tuple[float, dict[str, Any]]]:
    """(arrival time, event) for each JSON line a peer process prints."""
    pending = b""
    async for chunk in stream:
        *lines, pending = (pending + chunk).split(b"\n")
        now = time.time()
        for line in lines:
            yield now, json.loads(line)


async def _read_events(peer: _Process) -> None:
    assert peer.process.stdout is not None
    async for now, event in json_events(peer.process.stdout):
        _on_event(peer, event, now)


def _on_event(peer: _Process, event: dict[str, Any], now: float) -> None:
    kind = event["event"]
    if kind == "ready":
        peer.url, peer.peer_id = event["url"], event["peer_id"]
        peer.ready.set()
    elif kind == "peer_up":
        peer.neighbours += 1
    elif kind == "peer_down":
        peer.neighbours -= 1
    elif kind == "member" and event["peer_id"] == peer.peer_id and event["action"] == "joined":
        peer.admitted = True  # (the founder: its genesis)
    elif kind == "members":  # a membership change decided
        if any(m["peer_id"] == peer.peer_id for m in event["joined"]):
            peer.admitted = True
        if any(m["peer_id"] == peer.peer_id for m in event["removed"]):
            peer.admitted = False
    elif kind == "message" and not event.get("replayed"):
        key = (event["sender"], event["seq"])
        if key in peer.delivered:
            peer.duplicates += 1
        else:
            peer.delivered[key] = now
    elif kind == "statistics":
        peer.statistics = event
        peer.stats_seen.set()


def _links(topology: str, peers: int, rng: random.Random) -> list[list[int]]:
    """For each peer, the earlier peers it joins."""
    if topology == "line":
        return [[i - 1] if i else [] for i in range(peers)]
    return [sorted(rng.sample(range(i), min(i, 2))) for i in range(peers)]


async def run_bench(
    *,
    peers: int,
    messages: int,
    rate: float | None,
    size: int,
    topology: str,
    timeout: float,
    seed: int = 1,
    quiet: bool = False,
    in_step: bool = False,
) -> BenchResult:
    rng = random.Random(seed)
    links = _links(topology, peers, rng)
    with tempfile.TemporaryDirectory(prefix="p2pchat-bench-") as tmp:
        async with trio.open_nursery() as nursery:
            procs: list[_Process] = []
            for index in range(peers):
                command = chat_command(f"peer{index}", f"{tmp}/peer{index}")
                for earlier in links[index]:
                    command += ["--join", procs[earlier].url]
                process = await trio.lowlevel.open_process(
                    command, stdin=subprocess.PIPE, stdout=subprocess.PIPE
                )
                proc = _Process(index, process)
                procs.append(proc)
                nursery.start_soon(_read_events, proc)
                with trio.fail_after(30):
                    await proc.ready.wait()
                _progress(f"started {index + 1}/{peers} peers", quiet)
            try:
                timings = None if in_step else writer_timings(seed, peers)
                return await _measure(procs, messages, rate, size, timeout, links, quiet, timings)
            finally:
                for proc in procs:
                    if proc.process.returncode is None:
                        proc.process.terminate()
                with trio.move_on_after(10):
                    for proc in procs:
                        await proc.process.wait()
                for proc in procs:
                    if proc.process.returncode is None:
                        proc.process.kill()
                nursery.cancel_scope.cancel()


async def _measure(
    procs: list[_Process],
    messages: int,
    rate: float | None,
    size: int,
    timeout: float,
    links: list[list[int]],
    quiet: bool,
    timings: list[random.Random] | None,
) -> BenchResult:
    expected_links = sum(len(js) for js in links)
    with trio.fail_after(30):
        # Every link up and every peer admitted: the clock starts with everyone able to write.
        while sum(p.neighbours for p in procs) < 2 * expected_links or not all(p.admitted for p in procs):
            await trio.sleep(0.02)
    cpu_before = [_cpu_reading(p.process.pid) for p in procs]
    total = len(procs) * messages
    started = time.time()
    async with trio.open_nursery() as senders:
        for proc in procs:
            timing = None if timings is None else timings[proc.index]
            senders.start_soon(_send_lines, proc, messages, rate, size, timing)
    deadline = trio.current_time() + timeout
    while trio.current_time() < deadline:
        done = sum(len(p.delivered) for p in procs)
        _progress(f"delivered {done}/{total * len(procs)} ({time.time() - started:.1f} s)", quiet)
        if all(len(p.delivered) >= total for p in procs):
            break
        await trio.sleep(0.01)
    finished = max((max(p.delivered.values(), default=started) for p in procs), default=started)
    cpu = sum(_cpu_since(p.process.pid, before) for p, before in zip(procs, cpu_before, strict=True))
    rss = max(_peak_rss_mb(p.process.pid) for p in procs)
    for proc in procs:
        proc.process.terminate()
    with trio.move_on_after(10):
        for proc in procs:
            await proc.stats_seen.wait()
    _progress("", quiet)
    return _summarize(procs, total, started, finished, cpu, rss)


def writer_timings(seed: int, peers: int) -> list[random.Random]:
    """Each peer's own source of writing moments (see _send_lines): the same for a seed,
    independent of the others' and of the seed's use for the topology."""
    return [random.Random(f"{seed}:{index}:timing") for index in range(peers)]


async def _send_lines(
    proc: _Process, messages: int, rate: float | None, size: int, timing: random.Random | None
) -> None:
    """Write ``proc``'s lines: all at once without a ``rate``; else ``rate`` a second, at
    start + n / rate without a ``timing`` (every peer in step), or at the moments of a
    Poisson process drawn from it (independent writers: an exponential wait each)."""
    assert proc.process.stdin is not None
    filler = random.Random(proc.index)
    if rate is None:
        lines = [_line(proc.index, n, size, filler) for n in range(messages)]
        await proc.process.stdin.send_all("".join(lines).encode())
        return
    start = when = trio.current_time()
    for n in range(messages):
        when = start + n / rate if timing is None else when + timing.expovariate(rate)
        await trio.sleep_until(when)
        await proc.process.stdin.send_all(_line(proc.index, n, size, filler).encode())


_LETTERS = "abcdefghijklmnopqrstuvwxyz" + " " * 6


def _line(index: int, n: int, size: int, filler: random.Random) -> str:
    """Message ``n`` of peer ``index``: its id, then random letters and spaces up to
    ``size`` characters. (Not one letter over and over: frames are deflated, and a
    filler that compresses to nothing would flatter the bytes on the wire.)"""
    text = f"{index}:{n}:" + "".join(filler.choices(_LETTERS, k=size))
    return text[:size] + "\n"


def _summarize(
    procs: list[_Process], total: int, started: float, finished: float, cpu: float, rss: float
) -> BenchResult:
    sent_at: dict[tuple[str, int], float] = {}
    for proc in procs:  # a message's send time is its delivery at its own sender
        for key, when in proc.delivered.items():
            if key[0] == proc.peer_id:
                sent_at[key] = when
    latencies, lost = [], 0
    for key, when in sent_at.items():
        times = [p.delivered.get(key) for p in procs]
        if any(t is None for t in times):
            lost += 1
            continue
        latencies.append((max(t for t in times if t is not None) - when) * 1000)
    lost += total - len(sent_at)
    remote_deliveries = max(total * (len(procs) - 1), 1)
    wire = sum(p.statistics.get("bytes_out", 0) for p in procs)
    elapsed = max(finished - started, 1e-9)
    quantiles = (
        statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    )
    return BenchResult(
        peers=len(procs),
        messages=total,
        delivered_per_s=(total - lost) / elapsed,
        p50_ms=quantiles[49],
        p99_ms=quantiles[98],
        max_ms=max(latencies, default=0.0),
        bytes_per_delivery=wire / remote_deliveries,
        cpu_ms_per_delivery=cpu * 1000 / remote_deliveries,
        rss_mb=rss,
        lost=lost,
        duplicates=sum(p.duplicates for p in procs),
        seconds=elapsed,
    )


def run_bench_command(args: argparse.Namespace) -> int:
    if args.in_step and args.rate is None:
        raise UserError("--in-step paces the peers' writing: give --rate as well.")
    result = trio.run(
        lambda: run_bench(
            peers=args.peers,
            messages=args.messages,
            rate=args.rate,
            size=args.size,
            topology=args.topology,
            timeout=args.timeout,
            seed=args.seed,
            quiet=args.json,
            in_step=args.in_step,
        )
    )
    if args.json:
        print(json.dumps(result.as_json()))
    else:
        rate = f"{args.rate:g}/s per peer" if args.rate else "flat out"
        rate += ", in step" if args.rate and args.in_step else ""
        print(f"{result.peers} peers ({args.topology}), {result.messages} messages of {args.size} B, {rate}")
        print(f"  fully delivered      {result.delivered_per_s:,.0f} messages/s ({result.seconds:.2f} s)")
        print(
            f"  latency to last peer p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, "
            f"max {result.max_ms:.1f} ms"
        )
        print(f"  wire                 {result.bytes_per_delivery:.0f} bytes per delivery")
        print(f"  cpu                  {result.cpu_ms_per_delivery:.3f} ms per delivery")
        print(f"  peak rss             {result.rss_mb:.1f} MB per peer (max)")
        print(f"  lost {result.lost}, duplicates {result.duplicates}")
    return 0 if result.lost == 0 and result.duplicates == 0 else 1
