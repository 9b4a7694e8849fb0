"""Authenticating a batch of entries by their hash chains: one signature per run.

Part of the pure core. Each entry names the hash of its author's previous entry
(``Message.previous``, see :func:`p2pchat.message.entry_hash`). An entry whose hash
is named by an authentic later entry of the same author is authentic too: the author
signed that later entry, and with it the hash, and nobody else can make other bytes
with that hash (a second preimage). So a run of consecutive entries of one author
needs one signature check, on its latest entry, and a hash for each of the others.

:func:`authenticate` decides, for each entry of a batch (a MESSAGES frame), whether
it is authentic:

* an entry identical (payload and signature) to one the log already holds is, since
  the log holds only authentic entries;
* an entry whose hash is named as ``previous`` by an authentic entry one seq above
  (in the batch, or held) is, without checking its own signature;
* any other entry is checked on its own signature, as a live single message is.

Entries are taken from the highest seq down, per author, so each link comes from an
entry already found authentic. An entry that fails (a changed text, link or
signature all change its hash, or its signature does not verify) names no link:
the entries below it are checked on their own signatures, and it is left to the
log, which refuses it with a bad signature. Two authentic entries with the same seq
(an author that signed two versions, which may then name the same predecessor) both
pass here; the log keeps the first and records the second as equivocation evidence.

What it relies on: an entry found authentic through a link may carry a signature of
its own that does not verify, if its author made it so; its bytes are still exactly
the ones the author committed to. A peer that later receives such an entry alone
refuses it, as it refuses any bad signature.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from .message import Message, MessageId

__all__ = ["authenticate"]

HeldLookup = Callable[[MessageId], "Message | None"]


def authenticate(messages: Sequence[Message], room_id: bytes, held: HeldLookup) -> list[bool]:
    """Whether each of ``messages`` is authentic (see the module docstring).

    ``held`` returns the entry the log holds with that id, if any (all of them
    authentic). Signatures are checked only where no link vouches for an entry:
    a run of one author costs one check, whatever its length.
    """
    verdicts = [False] * len(messages)
    by_author: dict[bytes, list[int]] = {}
    for index, message in enumerate(messages):
        by_author.setdefault(message.sender_id, []).append(index)
    for author, indexes in by_author.items():
        indexes.sort(key=lambda i: messages[i].seq, reverse=True)
        # links[s]: the hashes that authentic entries at seq s+1 name as their previous.
        links: dict[int, set[bytes]] = {}
        for index in indexes:
            message = messages[index]
            seq = message.seq
            if _is_authentic(message, room_id, author, links.get(seq), held):
                verdicts[index] = True
                if seq > 1:
                    links.setdefault(seq - 1, set()).add(message.previous)
    return verdicts


def _is_authentic(
    message: Message, room_id: bytes, author: bytes, linked: set[bytes] | None, held: HeldLookup
) -> bool:
    known = held(MessageId(author, message.seq))
    if known is not None and known.payload == message.payload and known.signature == message.signature:
        return True
    above = held(MessageId(author, message.seq + 1))
    if linked is not None or above is not None:
        digest = message.entry_hash()
        if (linked is not None and digest in linked) or (above is not None and digest == above.previous):
            return True
    return message.verify(room_id)
