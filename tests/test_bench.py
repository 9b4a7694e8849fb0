"""``p2pchat bench`` end to end: real chat processes in a line, every line delivered.

Only that it runs and loses nothing is checked here (performance is measured, not
asserted): it waits for every peer's admission, which once read an event that only
the founder ever gets, and then timed out on every run.
"""

from __future__ import annotations

import os
import random
import threading
import time
from types import SimpleNamespace

import pytest
import trio

from p2pchat.bench import _cpu_reading, _cpu_since, _Process, _send_lines, run_bench, writer_timings


async def test_bench_admits_every_peer_and_delivers_every_line() -> None:
    with trio.fail_after(90):
        result = await run_bench(
            peers=3, messages=20, rate=None, size=50, topology="line", timeout=60, quiet=True
        )
    assert (result.peers, result.messages) == (3, 3 * 20)  # (lines written in all)
    assert result.lost == 0 and result.duplicates == 0
    assert result.delivered_per_s > 0


class _Stdin:
    """A peer process's stdin that notes when each line was written (virtual time)."""

    def __init__(self) -> None:
        self.times: list[float] = []

    async def send_all(self, data: bytes) -> None:
        self.times.append(trio.current_time())


def _writer(index: int) -> tuple[_Process, _Stdin]:
    stdin = _Stdin()
    return _Process(index, SimpleNamespace(stdin=stdin)), stdin  # type: ignore[arg-type]


async def _write_times(timings: list[random.Random | None], rate: float, messages: int) -> list[list[float]]:
    """When each of ``len(timings)`` peers wrote its lines, from 0, paced at ``rate``."""
    start = trio.current_time()
    writers = [_writer(index) for index in range(len(timings))]
    async with trio.open_nursery() as nursery:
        for (proc, _), timing in zip(writers, timings, strict=True):
            nursery.start_soon(_send_lines, proc, messages, rate, 50, timing)
    return [[t - start for t in stdin.times] for _, stdin in writers]


async def test_paced_peers_write_in_step_only_when_asked(autojump_clock: trio.abc.Clock) -> None:
    """``--in-step``: every peer writes at n / rate. Otherwise each writes at moments of
    its own, a Poisson process of that rate drawn from the seed: the same again for the
    same seed, never two peers at once."""
    in_step = await _write_times([None, None], rate=10, messages=50)
    assert in_step[0] == in_step[1] == pytest.approx([n / 10 for n in range(50)])

    def timings() -> list[random.Random | None]:
        return list(writer_timings(seed=1, peers=2))

    first, again = await _write_times(timings(), 10, 200), await _write_times(timings(), 10, 200)
    for times, times_again in zip(first, again, strict=True):
        assert times == pytest.approx(times_again)
    for times in first:
        assert times == sorted(times) and len(set(times)) == 200
        assert 10 < times[-1] < 30  # (200 lines at a mean of 10 a second: 20 s or so)
    assert not set(first[0]) & set(first[1])


async def test_paced_bench_delivers_every_line() -> None:
    with trio.fail_after(90):
        result = await run_bench(
            peers=2, messages=10, rate=20, size=50, topology="line", timeout=60, quiet=True
        )
    assert result.lost == 0 and result.duplicates == 0 and result.max_ms > 0


def _spin(seconds: float) -> None:
    """Keep this thread on the CPU for ``seconds`` of its own CPU time."""
    began = time.thread_time()
    while time.thread_time() - began < seconds:
        pass


def test_cpu_is_counted_for_every_thread_to_well_under_a_clock_tick() -> None:
    """The bench's CPU figure sums the process's threads (the peers check signatures in
    a worker thread), each to the nanosecond where the kernel keeps it: 10 ms clock
    ticks were an eighth of what a burst costs a peer."""
    if not _cpu_reading(os.getpid()).threads:
        pytest.skip("this kernel keeps no per-thread schedstat")
    release = threading.Event()
    spun = threading.Event()

    def worker() -> None:
        _spin(0.03)
        spun.set()
        release.wait()

    before, process_before = _cpu_reading(os.getpid()), time.process_time()
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        _spin(0.05)
        spun.wait()
        spent, process_spent = _cpu_since(os.getpid(), before), time.process_time() - process_before
    finally:
        release.set()
        thread.join()
    assert spent >= 0.08
    assert spent == pytest.approx(process_spent, abs=0.005)
