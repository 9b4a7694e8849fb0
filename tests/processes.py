"""Child processes of the tests: stopping them without leaking a process or a pipe."""

from __future__ import annotations

import trio


async def close_pipes(process: trio.Process) -> None:
    for stream in (process.stdin, process.stdout):
        if stream is not None:
            await stream.aclose()


async def reap(process: trio.Process, output_done: trio.Event) -> None:
    """Wait for ``process`` to end (killing it after 15 s), for its output reader to see
    the end (5 s at most), then close its pipes. Shielded: it runs in cleanups."""
    with trio.CancelScope(shield=True):
        with trio.move_on_after(15):
            await process.wait()
        if process.returncode is None:
            process.kill()
            await process.wait()
        with trio.move_on_after(5):
            await output_done.wait()
        await close_pipes(process)
