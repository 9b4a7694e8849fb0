"""Real network faults: the nemesis run, and the checker it relies on.

``test_short_nemesis_run`` is the real thing (about 90 s, needs root): five
``p2pchat chat --json`` processes, each in its own network namespace, typed into
while the nemesis partitions them silently (majority/minority, one cut off, a bridge,
a ring), slows a link, pauses one, kills and restarts one and moves one's wall clock;
the checker must find nothing. Without root (or ip/nft/tc) it is skipped with the
reason. Run it with ``-s`` to see the measurements; the long run is a command, see
``tests/README.md``.

The other tests feed the checker small hand-written histories, each breaking one rule,
so that a checker that finds nothing is known to be able to find something.
"""

from __future__ import annotations

import itertools
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio
from netfault import checker, nemesis, netns, timeline
from netfault.nemesis import Fault, cut_pairs

# The checker on small histories ---------------------------------------------------------


class Story:
    """Builds a history the way the harness records one (ids are "id0", "id1", ...)."""

    def __init__(self, peers: int = 2) -> None:
        self.t = 0.0
        self.records: list[dict[str, Any]] = [{"t": 0.0, "type": "run", "peers": peers, "wall": 1.8e9}]
        self.incarnation = dict.fromkeys(range(peers), -1)
        self.seqs: dict[int, int] = {}

    def add(self, type_: str, dt: float = 0.1, **fields: Any) -> None:
        self.t += dt
        self.records.append({"t": round(self.t, 3), "type": type_, **fields})

    def event(self, peer: int, **event: Any) -> None:
        self.add("event", peer=peer, incarnation=self.incarnation[peer], event=event)

    def start(self, *peers: int) -> None:
        for peer in peers:
            self.incarnation[peer] += 1
            self.add("start", peer=peer, incarnation=self.incarnation[peer], pid=1000 + peer)
            self.event(peer, event="ready", url=f"ws://x{peer}", peer_id=f"id{peer}", name=f"p{peer}")

    def show(self, peer: int, sender: int, seq: int, lamport: int, index: int, **extra: Any) -> None:
        self.event(
            peer,
            event="message",
            sender=f"id{sender}",
            name=f"p{sender}",
            seq=seq,
            lamport=lamport,
            text=f"p{sender} says {seq}",
            sent_at="2027-01-15T08:00:00.000Z",
            index=index,
            concurrent=False,
            **{"stable": False, **extra},
        )

    def type(self, peer: int, seq: int) -> None:
        self.add("typed", peer=peer, incarnation=self.incarnation[peer], text=f"p{peer} says {seq}")

    def stable(self, peer: int, count: int) -> None:
        self.event(peer, event="stable", count=count)

    def stop(self, *peers: int, cause: str = "stopped", code: int = 0) -> None:
        for peer in peers:
            self.add("exit", peer=peer, incarnation=self.incarnation[peer], code=code, cause=cause)


def chat_of_two() -> Story:
    """p0 and p1 each write one message (same lamport: p0's sorts first); all good so far."""
    story = Story()
    story.start(0, 1)
    story.type(0, 1)
    story.show(0, 0, 1, 1, 0)
    story.type(1, 1)
    story.show(1, 1, 1, 1, 0)
    story.show(0, 1, 1, 1, 1)
    story.show(1, 0, 1, 1, 0)
    return story


def violations(story: Story) -> list[str]:
    return checker.check(story.records).violations


def test_a_good_history_passes_and_is_counted() -> None:
    story = chat_of_two()
    story.stable(0, 2)
    story.stable(1, 2)
    story.event(0, event="member", peer_id="id1", change="joined")  # a kind it does not know
    story.stop(0, 1)
    report = checker.check(story.records)
    assert report.ok, report.violations
    assert report.counts["accepted"] == 2 and report.counts["lost"] == 0 and report.counts["moved"] == 0


def test_membership_entries_take_their_place_in_the_log() -> None:
    """A ``member`` event with a sender and index is a log entry: indices count it."""
    story = Story()
    story.start(0, 1)
    for peer in (0, 1):
        story.event(
            peer, event="member", action="joined", peer_id="id0", sender="id0", seq=1, lamport=1, index=0
        )
    story.type(0, 2)
    story.show(0, 0, 2, 2, 1)
    story.show(1, 0, 2, 2, 1)
    story.stable(0, 2)
    story.stable(1, 2)
    story.stop(0, 1)
    report = checker.check(story.records)
    assert report.ok, report.violations
    assert report.counts["accepted"] == 1 and report.counts["final_log"] == 2


def test_a_message_inserted_into_the_stable_prefix_is_a_move() -> None:
    story = Story()
    story.start(0, 1)
    story.type(1, 1)
    story.show(1, 1, 1, 1, 0)
    story.show(0, 1, 1, 1, 0)
    story.stable(0, 1)
    story.type(0, 1)
    story.show(0, 0, 1, 1, 0)  # (1, id0) sorts before (1, id1): position 0 moves
    report = checker.check(story.records)
    assert report.counts["moved"] >= 1
    assert any("inside the stable prefix" in v for v in report.violations)


def test_stable_prefixes_of_two_peers_must_agree() -> None:
    story = Story()
    story.start(0, 1)
    story.show(0, 0, 1, 1, 0)
    story.stable(0, 1)
    story.show(1, 1, 1, 1, 0)
    story.stable(1, 1)
    assert any("another peer had" in v for v in violations(story))


def test_a_restart_that_replays_a_different_stable_prefix_is_a_move() -> None:
    story = chat_of_two()
    story.stable(0, 2)
    story.stop(0, cause="killed", code=-9)
    story.start(0)
    story.show(0, 1, 1, 1, 0, replayed=True, stable=True)  # p1's message now first
    assert any("stable position 0" in v for v in violations(story))


def test_an_accepted_message_missing_at_the_end_is_lost() -> None:
    story = Story()
    story.start(0, 1)
    story.type(0, 1)
    story.show(0, 0, 1, 1, 0)
    story.stop(0, 1)
    report = checker.check(story.records)
    assert report.counts["lost"] == 1
    assert any("accepted messages missing" in v for v in report.violations)


def test_a_message_shown_twice_is_caught() -> None:
    story = chat_of_two()
    story.show(0, 1, 1, 1, 2)
    assert any("shown twice" in v for v in violations(story))


def test_an_index_against_the_order_is_caught() -> None:
    story = Story()
    story.start(0, 1)
    story.show(0, 1, 1, 1, 0)
    story.show(0, 0, 1, 1, 1)  # belongs at 0
    assert any("order says 0" in v for v in violations(story))


def test_a_senders_seqs_shown_out_of_order_are_not_fifo() -> None:
    # (A gap alone is allowed: a COMMIT takes no place in the log.)
    story = Story()
    story.start(0, 1)
    story.show(1, 1, 1, 1, 0)
    story.show(1, 1, 2, 2, 1)
    story.show(0, 1, 2, 2, 0)
    story.show(0, 1, 1, 1, 0)
    assert any("not FIFO" in v for v in violations(story))


def test_a_voided_entry_leaves_the_log_but_never_a_stable_position() -> None:
    story = Story()
    story.start(0, 1)
    story.show(0, 1, 1, 1, 0)
    story.show(0, 1, 2, 2, 1)
    story.stable(0, 1)
    story.event(0, event="voided", messages=[{"sender": "id1", "seq": 2}])
    story.show(0, 1, 3, 3, 1)  # (its text again, as a new entry: at index 1 once #2 is gone)
    assert not any("index" in v or "voided" in v for v in violations(story))
    story.event(0, event="voided", messages=[{"sender": "id1", "seq": 1}])
    assert any("voided at stable position 0" in v for v in violations(story))


def test_a_reply_shown_before_what_it_answers_breaks_causality() -> None:
    story = Story(3)
    story.start(0, 1, 2)
    story.show(0, 0, 1, 1, 0)  # p0 writes
    story.show(1, 0, 1, 1, 0)  # p1 sees it ...
    story.show(1, 1, 1, 2, 1)  # ... and answers
    story.show(2, 1, 1, 2, 0)  # p2 shows the answer without the question
    assert any("depends on" in v for v in violations(story))


def test_a_dependency_voided_before_it_reached_a_peer_is_not_waited_for() -> None:
    # p0 shows p1's #1, answers it, then a change voids p1's #1 at p0. p2 gets p1's #1
    # only after that change: never shown there. p0's answer is not "before" it at p2;
    # neither is p1's #2 (its text again). The same at p2 without the void is a violation.
    def story_of(voided: bool) -> Story:
        story = Story(3)
        story.start(0, 1, 2)
        story.show(0, 1, 1, 1, 0)
        story.show(0, 0, 1, 2, 1)
        if voided:
            story.event(0, event="voided", messages=[{"sender": "id1", "seq": 1}])
        story.show(2, 0, 1, 2, 0)
        return story

    assert not any("depends on" in v for v in violations(story_of(voided=True)))
    assert any("depends on" in v for v in violations(story_of(voided=False)))


def test_content_differing_for_one_sender_and_seq_is_caught() -> None:
    story = chat_of_two()
    story.records[-1]["event"]["text"] = "something else"
    assert any("elsewhere" in v for v in violations(story))


def test_an_exit_the_nemesis_did_not_cause_is_caught() -> None:
    story = chat_of_two()
    story.stop(1, cause="unexpected", code=1)
    assert any("exited unexpectedly" in v for v in violations(story))


def test_a_line_typed_into_a_cleanly_stopped_peer_must_be_shown() -> None:
    story = chat_of_two()
    story.type(0, 2)
    story.stop(0, 1)
    assert any("never shown" in v for v in violations(story))


def test_detection_and_convergence_are_measured_from_the_history() -> None:
    story = chat_of_two()
    story.event(0, event="peer_up", peer_id="id1", name="p1", url="ws://x1")
    story.event(1, event="peer_up", peer_id="id0", name="p0", url="ws://x0")
    story.add("fault", phase="start", fault="isolate", peers=[0, 1], cut=[[0, 1], [1, 0]])
    story.add(
        "event", dt=3.2, peer=0, incarnation=0, event={"event": "peer_down", "peer_id": "id1", "reason": "x"}
    )
    story.add("fault", dt=1.0, phase="end", fault="isolate", peers=[0, 1])
    story.stable(0, 2)
    story.stable(1, 2)
    report = checker.check(story.records)
    assert report.detection == [pytest.approx(3.2)]
    assert report.undetected == 1  # p1 never reported its link to p0 down
    assert report.convergence[0][1] == 0.0  # both already held both messages
    assert report.stability[0][1] == pytest.approx(0.2)  # the last of the two stable events


def test_stability_that_does_not_resume_after_a_heal_is_caught() -> None:
    story = chat_of_two()
    story.add("fault", phase="start", fault="majority", peers=[0, 1], cut=[[0, 1], [1, 0]])
    story.add("fault", dt=5.0, phase="end", fault="majority", peers=[0, 1])
    story.stable(0, 2)  # p1 never says its log is stable
    story.add("phase", dt=12.0, name="stopped")
    assert any("not every peer did have stable everything" in v for v in violations(story))


def clock_story(offset: float) -> Story:
    """p0's clock jumps +5h; 4 s later it writes a message stamped ``offset`` s off."""
    story = Story()
    story.start(0, 1)
    story.add("fault", phase="start", fault="clock", peers=[0], jump="+5h")
    story.type(0, 1)
    story.t += 4.0  # the harness clock moves on
    story.show(0, 0, 1, 1, 0)
    sent = datetime.fromtimestamp(1.8e9 + story.t + offset, UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    story.records[-1]["event"]["sent_at"] = sent
    story.show(1, 0, 1, 1, 0)
    story.add("fault", phase="end", fault="clock", peers=[0])
    story.stop(0, 1)
    return story


def test_a_clock_jump_must_show_in_the_display_time() -> None:
    assert not violations(clock_story(5 * 3600))
    assert checker.check(clock_story(5 * 3600).records).counts["clock_jumped_messages"] == 1
    assert any("clock jumped +5h" in v for v in violations(clock_story(0)))


def test_partitions_cut_what_they_say() -> None:
    assert cut_pairs(Fault("isolate", 0, 1, (2, 0, 1, 3)), 4) == sorted(
        [(2, 0), (0, 2), (2, 1), (1, 2), (2, 3), (3, 2)]
    )
    majority = set(cut_pairs(Fault("majority", 0, 1, (3, 1, 0, 2, 4)), 5))
    assert (3, 0) in majority and (1, 2) in majority and (3, 1) not in majority and (0, 4) not in majority
    bridge = set(cut_pairs(Fault("bridge", 0, 1, (4, 0, 1, 2, 3)), 5))
    assert all(4 not in pair for pair in bridge) and (0, 2) in bridge and (0, 1) not in bridge
    ring = set(cut_pairs(Fault("ring", 0, 1, (0, 1, 2, 3, 4)), 5))
    assert (0, 1) not in ring and (0, 4) not in ring and (0, 2) in ring and (1, 3) in ring


def test_the_short_schedule_has_every_fault_kind() -> None:
    schedule = nemesis.short_schedule(5, seed=1)
    assert {f.kind for f in schedule} == set(nemesis.KINDS)
    assert max(f.end for f in schedule) < 80


def test_a_long_random_schedule_has_every_kind_and_heals_before_the_end() -> None:
    schedule = nemesis.random_schedule(7, seed=7, duration=600)
    assert {f.kind for f in schedule} == set(nemesis.KINDS)
    assert all(a.end <= b.start for a, b in itertools.pairwise(schedule))
    assert schedule[-1].end <= 590


# The real thing ----------------------------------------------------------------------------

SKIP_REASON = netns.missing_requirement()


@pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")
async def test_short_nemesis_run(tmp_path: Path) -> None:
    settings = nemesis.RunSettings(peers=5, duration=75.0, seed=20261127, workdir=tmp_path)
    with trio.fail_after(240):
        history_path = await nemesis.run(settings)
    records = [json.loads(line) for line in history_path.read_text().splitlines()]
    report = checker.check(records)
    picture = timeline.draw(records, report, tmp_path / "timeline.svg")
    print(f"\n{report.summary()}\nhistory {history_path}, timeline {picture}")
    assert report.ok, report.summary()
    started = {r["fault"] for r in records if r["type"] == "fault" and r["phase"] == "start"}
    assert started == set(nemesis.KINDS), f"faults that did not happen: {set(nemesis.KINDS) - started}"
    assert report.counts["accepted"] > 300 and report.counts["lost"] == 0 and report.counts["moved"] == 0
    assert report.detection and report.undetected == 0
    assert report.counts.get("clock_jumped_messages", 0) > 0
