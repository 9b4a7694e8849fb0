"""A minimal chat client on the library API: print the log, send what you type.

python examples/chat_peer.py alice                  # prints its URL
python examples/chat_peer.py bob ws://127.0.0.1:PORT
"""

from __future__ import annotations

import signal
import sys

import trio

from p2pchat.peer import MessageDelivered, NeighbourUp, StableAdvanced, open_peer


async def print_events(peer) -> None:  # type: ignore[no-untyped-def]
    async with peer.subscribe() as events:
        async for event in events:
            if isinstance(event, MessageDelivered) and not event.message.is_text:
                pass  # a membership entry (the room's genesis, an admission, an away ...)
            elif isinstance(event, MessageDelivered):
                where = "" if event.index == len(peer.log) - 1 else f"  [inserted at {event.index}]"
                print(f"{event.message.name}: {event.message.text}{where}")
            elif isinstance(event, NeighbourUp):
                print(f"* {event.name} joined")
            elif isinstance(event, StableAdvanced):
                pass  # a UI would un-dim the first event.count lines


async def quit_on_ctrl_c(
    scope: trio.CancelScope, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()  # from here on Ctrl-C ends the chat cleanly
        async for _ in signals:
            scope.cancel()
            return


async def main(name: str, join: list[str]) -> None:
    async with open_peer(name, join=join) as peer, trio.open_nursery() as nursery:
        await nursery.start(quit_on_ctrl_c, nursery.cancel_scope)
        print(f"{name} listening at {peer.url}; type messages, Ctrl-D or Ctrl-C to quit")
        nursery.start_soon(print_events, peer)
        while True:
            # abandon_on_cancel: Ctrl-C does not wait for the blocked readline to return.
            line = await trio.to_thread.run_sync(sys.stdin.readline, abandon_on_cancel=True)
            if not line:
                break
            if line.strip():
                await peer.send(line.rstrip("\n"))
        nursery.cancel_scope.cancel()
    # Leaving open_peer said goodbye to every neighbour.


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    trio.run(main, sys.argv[1], sys.argv[2:])
