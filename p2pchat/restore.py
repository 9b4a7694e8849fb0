"""Rebuilding a room's ordered log from what a peer kept: the pure half of a restart.

Part of the pure core. Besides the entries, a peer keeps what its log learned that
the entries alone do not say (see :mod:`p2pchat.store`):

* the other versions of forked entries (an equivocator's entries that go on from one
  of them are judged from it again);
* which entries it held without a place in the log (``Entombed.placeless``: an entry
  that broke a clock promise this peer relied on, which must not take a place after
  the restart either: that place may be above positions it called stable);
* which entries it placed below positions it already held stable
  (``Delivered.placed_late``: only a liar's stamps do that), which its answers must go
  on naming as not stable after the restart;
* the proofs against members (the liars stay expelled);
* the members' latest clock announcements (stability rests on them, rule 8).

The shell reads them from SQLite (:func:`p2pchat.peer.restore_log`) and the
simulator keeps them as it goes (:meth:`p2pchat.sim.Simulation.restart`); both
rebuild here, so a restart in the simulator is the restart of a real peer.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from .evidence import Proof
from .log import OrderedLog
from .message import Message, MessageId
from .wire import Head

__all__ = ["restore"]


def restore(
    log: OrderedLog,
    *,
    versions: Iterable[Message],
    entries: Iterable[Message],
    placeless: Collection[MessageId],
    placed_late: Collection[MessageId],
    proofs: Iterable[Proof],
    announcements: Iterable[Head],
) -> None:
    """Take back into ``log`` what a peer kept, in the order that matters:

    1. the other versions, before the entries that may go on from them;
    2. the entries, each as it was held (verified when it was kept: not again), those
       held without a place held so again, those placed late marked so again;
    3. the proofs, once the entries they name are back;
    4. the announcements last: each is verified again (one of a proven liar counts no
       more), and stability is computed once, from all of it.

    ``versions`` and ``proofs`` must have been checked by the caller (a store on disk
    can be edited by hand)."""
    log.restore_versions(versions)
    for message in entries:
        log.receive(
            message,
            trusted=True,
            defer_stability=True,
            placeless=message.id in placeless,
            placed_late=message.id in placed_late,
        )
    log.restore_proofs(proofs)
    for head in announcements:
        log.observe_head(head, defer_stability=True)
    log.advance_stability()
    log.take_new_announcements()  # (kept already)
