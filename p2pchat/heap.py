"""The garbage collector's policy for a long-running peer process.

CPython's cyclic collector now and then runs a *full* collection, which walks every
container object the process holds: every module, function and class loaded at start,
and every message of a restored log. In a peer process that is tens of milliseconds of
pure pause even in a small room, and it grows with the log; where it lands depends
only on how much was allocated before (measured with ``p2pchat bench``: a gen-2
collection of 17-35 ms in the middle peers' first fraction of a second of traffic).

Everything alive once the peer has started (imports, the restored log, the store)
stays alive as long as the process does, so :func:`freeze_startup_heap` moves it out
of the collector's sight once, after a last collection: later full collections walk
only what was allocated since. Reference counting frees frozen objects as before;
only a reference cycle among them would stay (there is none left after the
collection just before). The application calls it, not the library: it is a choice
for the whole process.
"""

from __future__ import annotations

import gc

__all__ = ["freeze_startup_heap"]


def freeze_startup_heap() -> None:
    """Collect once, then leave what survives out of every later collection."""
    gc.collect()
    gc.freeze()
