"""Lamport and vector clocks: small immutable values with the textbook laws.

Example tests pin down each operation; hypothesis checks the algebra (merge is a
commutative, associative, idempotent least upper bound; ``compare`` agrees with
the entry-wise order and is antisymmetric).
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from p2pchat.clock import Causality, LamportClock, VectorClock

A, B, C = b"a" * 32, b"b" * 32, b"c" * 32

MIRROR = {
    Causality.BEFORE: Causality.AFTER,
    Causality.AFTER: Causality.BEFORE,
    Causality.EQUAL: Causality.EQUAL,
    Causality.CONCURRENT: Causality.CONCURRENT,
}

lamports = st.builds(LamportClock, st.integers(0, 2**63))
vectors = st.dictionaries(st.sampled_from([A, B, C]), st.integers(0, 6)).map(VectorClock)


def reference_compare(x: VectorClock, y: VectorClock) -> Causality:
    """Causality straight from the definition: entry-wise <= in both directions."""
    senders = set(x) | set(y)
    x_le_y = all(x.get_seq(s) <= y.get_seq(s) for s in senders)
    y_le_x = all(y.get_seq(s) <= x.get_seq(s) for s in senders)
    if x_le_y and y_le_x:
        return Causality.EQUAL
    if x_le_y:
        return Causality.BEFORE
    if y_le_x:
        return Causality.AFTER
    return Causality.CONCURRENT


# LamportClock -------------------------------------------------------------------


def test_lamport_starts_at_zero_and_stamps_one() -> None:
    clock = LamportClock()
    assert clock.time == 0
    assert clock.stamp() == 1


def test_lamport_tick_returns_a_new_clock() -> None:
    clock = LamportClock(5)
    assert clock.tick() == LamportClock(6)
    assert clock == LamportClock(5)


def test_lamport_merge_takes_the_larger_without_ticking() -> None:
    clock = LamportClock(5)
    assert clock.merge(9) == LamportClock(9)
    assert clock.merge(LamportClock(9)) == LamportClock(9)
    assert clock.merge(3) == LamportClock(5)
    assert clock.merge(5) == LamportClock(5)
    assert clock == LamportClock(5)


def test_lamport_stamp_does_not_advance_the_clock() -> None:
    clock = LamportClock(7)
    assert clock.stamp() == 8
    assert clock.stamp() == 8
    assert clock.time == 7


def test_lamport_clock_is_frozen() -> None:
    clock = LamportClock(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        clock.time = 2  # type: ignore[misc]


def test_lamport_clocks_order_by_time() -> None:
    assert LamportClock(1) < LamportClock(2)
    assert sorted([LamportClock(3), LamportClock(1), LamportClock(2)]) == [
        LamportClock(1),
        LamportClock(2),
        LamportClock(3),
    ]
    assert hash(LamportClock(4)) == hash(LamportClock(4))


@given(lamports, lamports)
def test_lamport_merge_is_commutative_max(x: LamportClock, y: LamportClock) -> None:
    assert x.merge(y) == y.merge(x) == LamportClock(max(x.time, y.time))


@given(lamports, lamports, lamports)
def test_lamport_merge_is_associative(x: LamportClock, y: LamportClock, z: LamportClock) -> None:
    assert x.merge(y).merge(z) == x.merge(y.merge(z))


@given(lamports, st.lists(st.integers(0, 2**63), max_size=10))
def test_lamport_stamp_after_merges_exceeds_everything_seen(clock: LamportClock, seen: list[int]) -> None:
    for stamp in seen:
        clock = clock.merge(stamp)
    assert clock.stamp() == max([clock.time, *seen]) + 1
    assert all(clock.stamp() > stamp for stamp in seen)
    assert clock.tick().time == clock.stamp()


# VectorClock: basics --------------------------------------------------------------


def test_vector_absent_entries_are_zero() -> None:
    clock = VectorClock({A: 2})
    assert clock.get_seq(A) == 2
    assert clock.get_seq(B) == 0
    assert B not in clock
    with pytest.raises(KeyError):
        clock[B]


def test_vector_zero_entries_are_dropped() -> None:
    clock = VectorClock({A: 0, B: 3})
    assert dict(clock) == {B: 3}
    assert len(clock) == 1
    assert clock == VectorClock({B: 3})
    assert hash(clock) == hash(VectorClock({B: 3}))


def test_vector_negative_entry_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        VectorClock({A: -1})


def test_vector_empty_clocks() -> None:
    assert VectorClock() == VectorClock({}) == VectorClock(None)
    assert len(VectorClock()) == 0
    assert VectorClock().compare(VectorClock()) is Causality.EQUAL


def test_vector_tick_advances_one_sender() -> None:
    clock = VectorClock({A: 1, B: 4})
    assert clock.tick(A) == VectorClock({A: 2, B: 4})
    assert clock.tick(C) == VectorClock({A: 1, B: 4, C: 1})


def test_vector_merge_is_entrywise_max() -> None:
    x = VectorClock({A: 3, B: 1})
    y = VectorClock({B: 5, C: 2})
    assert x.merge(y) == VectorClock({A: 3, B: 5, C: 2})
    assert x.merge({A: 1}) == x  # a plain mapping works too


def test_vector_includes() -> None:
    clock = VectorClock({A: 3})
    assert clock.includes(A, 1)
    assert clock.includes(A, 3)
    assert not clock.includes(A, 4)
    assert not clock.includes(B, 1)
    assert clock.includes(B, 0)


# VectorClock: compare ----------------------------------------------------------------


def test_vector_compare_equal() -> None:
    assert VectorClock({A: 1, B: 2}).compare(VectorClock({B: 2, A: 1})) is Causality.EQUAL


def test_vector_compare_before_and_after() -> None:
    early = VectorClock({A: 1})
    late = VectorClock({A: 1, B: 1})
    assert early.compare(late) is Causality.BEFORE
    assert late.compare(early) is Causality.AFTER
    assert VectorClock().compare(early) is Causality.BEFORE


def test_vector_compare_concurrent() -> None:
    x = VectorClock({A: 2, B: 1})
    y = VectorClock({A: 1, B: 2})
    assert x.compare(y) is Causality.CONCURRENT
    assert y.compare(x) is Causality.CONCURRENT
    assert VectorClock({A: 1}).compare(VectorClock({B: 1})) is Causality.CONCURRENT


def test_vector_two_senders_write_without_seeing_each_other() -> None:
    base = VectorClock({C: 1})
    from_a, from_b = base.tick(A), base.tick(B)
    assert from_a.compare(from_b) is Causality.CONCURRENT
    reply = from_a.merge(from_b).tick(A)
    assert from_a.compare(reply) is Causality.BEFORE
    assert from_b.compare(reply) is Causality.BEFORE


# VectorClock: immutability -----------------------------------------------------------


def test_vector_tick_and_merge_leave_the_original_unchanged() -> None:
    clock = VectorClock({A: 1})
    clock.tick(A)
    clock.tick(B)
    clock.merge({A: 9, C: 9})
    assert clock == VectorClock({A: 1})
    assert dict(clock) == {A: 1}


def test_vector_does_not_alias_the_mapping_it_was_built_from() -> None:
    source = {A: 1}
    clock = VectorClock(source)
    source[A] = 99
    source[B] = 5
    assert dict(clock) == {A: 1}


def test_vector_has_no_item_assignment() -> None:
    clock = VectorClock({A: 1})
    with pytest.raises(TypeError):
        clock[A] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        del clock[A]  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        clock.extra = 1  # type: ignore[attr-defined]
    assert dict(clock) == {A: 1}


def test_vector_hash_is_stable_and_usable_in_sets() -> None:
    clock = VectorClock({A: 1, B: 2})
    first = hash(clock)
    clock.tick(A)
    assert hash(clock) == first
    assert len({clock, VectorClock({B: 2, A: 1}), VectorClock({A: 2, B: 2})}) == 2


# VectorClock: laws ------------------------------------------------------------------------


@given(vectors, vectors)
def test_vector_compare_matches_the_definition(x: VectorClock, y: VectorClock) -> None:
    assert x.compare(y) is reference_compare(x, y)


@given(vectors, vectors)
def test_vector_compare_is_antisymmetric(x: VectorClock, y: VectorClock) -> None:
    assert y.compare(x) is MIRROR[x.compare(y)]
    assert (x.compare(y) is Causality.EQUAL) == (x == y)


@given(vectors, vectors)
def test_vector_merge_is_the_least_upper_bound(x: VectorClock, y: VectorClock) -> None:
    joined = x.merge(y)
    assert x.compare(joined) in (Causality.BEFORE, Causality.EQUAL)
    assert y.compare(joined) in (Causality.BEFORE, Causality.EQUAL)
    for sender in joined:
        assert joined[sender] in (x.get_seq(sender), y.get_seq(sender))


@given(vectors, vectors, vectors)
def test_vector_merge_is_commutative_associative_idempotent(
    x: VectorClock, y: VectorClock, z: VectorClock
) -> None:
    assert x.merge(y) == y.merge(x)
    assert x.merge(y).merge(z) == x.merge(y.merge(z))
    assert x.merge(x) == x


@given(vectors, st.sampled_from([A, B, C]))
def test_vector_tick_is_strictly_after(x: VectorClock, sender: bytes) -> None:
    ticked = x.tick(sender)
    assert x.compare(ticked) is Causality.BEFORE
    assert ticked.get_seq(sender) == x.get_seq(sender) + 1
    assert ticked.includes(sender, x.get_seq(sender) + 1)
