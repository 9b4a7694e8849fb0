"""``p2pchat bench`` end to end: real chat processes in a line, every line delivered.

Only that it runs and loses nothing is checked here (performance is measured, not
asserted): it waits for every peer's admission, which once read an event that only
the founder ever gets, and then timed out on every run.
"""

from __future__ import annotations

import trio

from p2pchat.bench import run_bench


async def test_bench_admits_every_peer_and_delivers_every_line() -> None:
    with trio.fail_after(90):
        result = await run_bench(
            peers=3, messages=20, rate=None, size=50, topology="line", timeout=60, quiet=True
        )
    assert (result.peers, result.messages) == (3, 3 * 20)  # (lines written in all)
    assert result.lost == 0 and result.duplicates == 0
    assert result.delivered_per_s > 0
