"""Three peers in one process, on real loopback WebSockets, write at the same moment.

Each peer receives the others' messages in a different order, yet all three
print the same conversation: the log is sorted by (lamport, sender_id).

    python examples/three_peers.py
"""

from __future__ import annotations

import trio

from p2pchat.peer import open_peer


async def main() -> None:
    with trio.fail_after(30):
        async with (
            open_peer("alice") as alice,
            open_peer("bob", join=[alice.url]) as bob,  # type: ignore[list-item]
            open_peer("carol", join=[bob.url]) as carol,  # type: ignore[list-item]
        ):
            peers = [alice, bob, carol]
            await carol.wait_connected(1)
            await alice.wait_connected(1)
            # Everyone writes at once: these messages are concurrent.
            async with trio.open_nursery() as nursery:
                for peer in peers:
                    for n in range(3):
                        nursery.start_soon(peer.send, f"{peer.name} says {n}")
            for peer in peers:
                await peer.wait_texts(9)
            await bob.send("bob saw all of that")  # written after seeing the rest
            for peer in peers:
                await peer.wait_texts(10)

            for peer in peers:
                print(f"--- {peer.name}'s log")
                for message in peer.messages():
                    if not message.is_text:  # the room's genesis and admissions
                        print(f"  L{message.lamport:<3} * {message.kind.name.lower()} by {message.name}")
                        continue
                    mark = " (concurrent)" if peer.log.is_concurrent(message.id) else ""
                    print(f"  L{message.lamport:<3} {message.name:>5}: {message.text}{mark}")
            orders = {tuple(m.key for m in peer.messages()) for peer in peers}
            print("identical order on every peer:", len(orders) == 1)


if __name__ == "__main__":
    trio.run(main)
