"""The peer process's garbage-collector policy (p2pchat.heap)."""

import gc
import weakref

from p2pchat.heap import freeze_startup_heap


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_startup_garbage_is_collected_and_the_survivors_frozen() -> None:
    garbage = _Cycle()
    gone = weakref.ref(garbage)
    del garbage
    alive = _Cycle()
    try:
        freeze_startup_heap()
        assert gone() is None  # collected first: a cycle frozen now would stay for good
        assert gc.get_freeze_count() > 0
        assert not any(obj is alive for obj in gc.get_objects())  # out of the collector's sight
    finally:
        gc.unfreeze()
    assert any(obj is alive for obj in gc.get_objects())
