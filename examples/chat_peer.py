"""A minimal chat client on the library API: print the log, send what you type.

python examples/chat_peer.py alice                  # prints its URL
python examples/chat_peer.py bob ws://127.0.0.1:PORT
"""

from __future__ import annotations

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


async def main(name: str, join: list[str]) -> None:
    async with open_peer(name, join=join) as peer, trio.open_nursery() as nursery:
        print(f"{name} listening at {peer.url}; type messages, Ctrl-D to quit")
        nursery.start_soon(print_events, peer)
        while line := await trio.to_thread.run_sync(sys.stdin.readline):
            if line.strip():
                await peer.send(line.rstrip("\n"))
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], sys.argv[2:])
