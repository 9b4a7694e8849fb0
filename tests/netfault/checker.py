"""The checker: what must hold over a recorded history (see :mod:`.cluster` for records).

It replays every peer incarnation's printed events: each message event inserts the
message at the index the peer printed, each stable event freezes a prefix. From that:

* **order**: every insertion index is where ``(lamport, sender)`` puts the message, so
  each peer's log is always sorted by that key; final logs are identical everywhere;
* **none lost, none twice**: every accepted message (shown by its author as its own,
  which means committed) is in every final log; no incarnation shows a message twice;
  a line typed into a peer that stopped cleanly was accepted or reported unsent;
* **same content**: one ``(sender, seq)`` never shows two texts or stamps;
* **per-sender FIFO**: each incarnation shows a sender's seqs as 1, 2, 3, ...;
* **causal**: a message is shown only after everything its author had shown before
  writing it (the author's own event stream gives that exactly);
* **stable never moves**: nothing is ever inserted into a peer's stable prefix, a
  stable count never goes back, and all stable prefixes ever reported, by any peer
  and incarnation (replays included), agree position by position with each other and
  with every final log;
* **stability resumes**: after each partition heals, every message that existed is
  stable on every running peer within ``STABILITY_BOUND`` seconds (when the run gave
  that long before the next fault); after the last fault everything settles;
* **no unexpected exit**: a process ends only when the nemesis killed it (SIGKILL) or
  at the end (SIGTERM, exit code 0);
* **clock jumps change display time only**: a peer whose clock is hours off stamps its
  messages with that time; order is checked as above.

Unknown event kinds (a newer peer's events) are kept in the history and ignored.
It also measures: detection time of a silent cut (connection declared down), time to
converge after a heal, delivery and tentative-to-stable latency per message.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

Key = tuple[str, int]  # (sender, seq)
Stream = tuple[int, int]  # (peer, incarnation)

STABILITY_BOUND = 10.0
"""Seconds after a heal within which everything that existed at the heal is stable."""
CONVERGENCE_BOUND = 10.0
"""Seconds after a heal within which every running peer holds what existed at the heal
(the target, reported separately, is 3 s)."""
DETECTION_TARGET = 5.0
CONVERGENCE_TARGET = 3.0
PARTITIONS = ("majority", "isolate", "bridge", "ring")


@dataclass
class StreamState:
    """One incarnation's log as rebuilt from its events."""

    peer: int
    incarnation: int
    peer_id: str = ""
    keys: list[Key] = field(default_factory=list)
    order: list[tuple[int, str]] = field(default_factory=list)
    shown: set[Key] = field(default_factory=set)
    stable: int = 0
    last_seq: dict[str, int] = field(default_factory=dict)
    open_links: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    typed: list[str] = field(default_factory=list)
    handled_texts: set[str] = field(default_factory=set)
    exit_cause: str | None = None
    exit_code: int | None = None
    ended_at: float | None = None


@dataclass
class Report:
    violations: list[str] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    detection: list[float] = field(default_factory=list)
    """Seconds from a silent cut (partition or pause) to the peer_down of the link."""
    undetected: int = 0
    convergence: list[tuple[float, float | None]] = field(default_factory=list)
    """(heal time, seconds until every running peer held what existed at the heal)."""
    stability: list[tuple[float, float | None]] = field(default_factory=list)
    """(heal time, seconds until all of it was stable everywhere; None: not measured)."""
    latency: dict[Key, tuple[float, float | None, float | None]] = field(default_factory=dict)
    """Per accepted message: (accepted at, last delivery latency, last stable latency)."""
    settle_time: float | None = None

    @property
    def ok(self) -> bool:
        return not self.violations

    def summary(self) -> str:
        def spread(values: Sequence[float]) -> str:
            if not values:
                return "none measured"
            return f"median {statistics.median(values):.2f} s, max {max(values):.2f} s ({len(values)})"

        conv = [c for _, c in self.convergence if c is not None]
        stab = [s for _, s in self.stability if s is not None]
        lat = [d for _, d, _ in self.latency.values() if d is not None]
        lines = [
            "counts: " + ", ".join(f"{k} {v}" for k, v in self.counts.items()),
            f"detection of a silent cut: {spread(self.detection)}; undetected {self.undetected} "
            f"(target {DETECTION_TARGET:.0f} s)",
            f"convergence after a heal: {spread(conv)}; not converged "
            f"{sum(c is None for _, c in self.convergence)} (target {CONVERGENCE_TARGET:.0f} s)",
            f"stability after a heal: {spread(stab)}; unmeasured {sum(s is None for _, s in self.stability)}"
            f" (bound {STABILITY_BOUND:.0f} s)",
            f"delivery latency: {spread(lat)}",
            f"all stable after typing stopped: {_seconds(self.settle_time)}",
            f"violations: {len(self.violations)}",
            *(f"  {v}" for v in self.violations[:30]),
        ]
        return "\n".join(lines)


class _Checker:
    def __init__(self, records: Sequence[dict[str, Any]]) -> None:
        self.records = records
        self.report = Report()
        self.streams: dict[Stream, StreamState] = {}
        self.current: dict[int, StreamState] = {}
        self.content: dict[Key, tuple[int, str]] = {}
        self.vectors: dict[Key, dict[str, int]] = {}
        self.accepted_at: dict[Key, float] = {}
        self.first_shown: dict[int, dict[Key, float]] = defaultdict(dict)
        self.stable_at: dict[int, dict[Key, float]] = defaultdict(dict)
        self.frozen: list[Key] = []
        """The stable prefix: every position any peer ever reported stable."""
        self.voided: set[Key] = set()
        """Entries a decided membership change voided (rule 10): they leave every log, and
        their authors send their texts again as new entries."""
        self.peer_ids: dict[int, str] = {}
        self.wall0 = 0.0
        self.faults: list[dict[str, Any]] = []
        self.phases: dict[str, float] = {}
        self.size = 0
        self.moved = 0
        """Stable positions that changed (an insertion into, or disagreement on, a stable prefix)."""
        self._sent_at: dict[Key, float] | None = None
        self._link_events: dict[int, list[tuple[float, str, str | None]]] | None = None
        self.settled_logs: dict[int, list[Key]] | None = None

    def violation(self, text: str) -> None:
        self.report.violations.append(text)

    # Replaying the history ---------------------------------------------------------------
    def run(self) -> Report:
        for record in self.records:
            kind, t = record["type"], record["t"]
            if kind == "run":
                self.wall0, self.size = record["wall"], record["peers"]
            elif kind == "start":
                state = StreamState(record["peer"], record["incarnation"])
                self.streams[(state.peer, state.incarnation)] = self.current[state.peer] = state
            elif kind == "exit":
                state = self.streams[(record["peer"], record["incarnation"])]
                state.exit_cause, state.exit_code, state.ended_at = record["cause"], record["code"], t
            elif kind == "typed":
                self.streams[(record["peer"], record["incarnation"])].typed.append(record["text"])
            elif kind == "event":
                self.on_event(self.streams[(record["peer"], record["incarnation"])], record["event"], t)
            elif kind == "garbage":
                self.violation(f"p{record['peer']}.{record['incarnation']} printed a line that is not JSON")
            elif kind == "fault":
                self.faults.append(record)
            elif kind == "phase":
                self.phases[record["name"]] = t
                if record["name"] in ("settled", "not settled"):
                    # The logs to compare: taken before the peers are stopped, since a peer
                    # that quits writes an entry (AWAY) that others may not get before they stop.
                    self.settled_logs = {peer: list(s.keys) for peer, s in self.current.items()}
        self.check_exits()
        self.check_typed()
        self.check_final()
        self.measure()
        return self.report

    def on_event(self, state: StreamState, event: dict[str, Any], t: float) -> None:
        kind = event.get("event")
        where = f"p{state.peer}.{state.incarnation}"
        if kind == "ready":
            state.peer_id = event["peer_id"]
            previous = self.peer_ids.setdefault(state.peer, state.peer_id)
            if previous != state.peer_id:
                self.violation(f"{where}: identity changed across a restart")
        elif kind in ("message", "member") and "sender" in event and "index" in event:
            self.on_entry(state, event, t, where)
        elif kind == "stable":
            self.on_stable(state, event["count"], t, where)
        elif kind == "voided":
            self.on_voided(state, [(m["sender"], m["seq"]) for m in event["messages"]], where)
        elif kind == "peer_up":
            state.open_links[event["peer_id"]] += 1
        elif kind == "peer_down":
            if event.get("peer_id"):
                state.open_links[event["peer_id"]] = max(0, state.open_links[event["peer_id"]] - 1)
        elif kind == "error":
            state.handled_texts.update(event.get("unsent", ()))
        # concurrent, statistics and kinds this checker does not know: nothing to check

    def on_entry(self, state: StreamState, event: dict[str, Any], t: float, where: str) -> None:
        """A log entry shown: a chat message, or a membership entry (``member`` event)."""
        sender, seq, lamport = event["sender"], event["seq"], event["lamport"]
        key: Key = (sender, seq)
        is_text = event["event"] == "message"
        value = (lamport, event["text"] if is_text else "(membership entry)")
        if self.content.setdefault(key, value) != value:
            self.violation(f"{where}: {key[0][:8]}#{seq} shown as {value}, elsewhere {self.content[key]}")
        if key in state.shown:
            self.violation(f"{where}: {key[0][:8]}#{seq} shown twice")
            return
        # Seqs only rise; one may be skipped: a COMMIT (or a refused entry) of the sender is
        # held but takes no place in the log. Nothing accepted goes missing: see check_final.
        if seq <= state.last_seq.get(sender, 0):
            self.violation(f"{where}: {sender[:8]}#{seq} after #{state.last_seq.get(sender, 0)} (not FIFO)")
        for other, needed in self.vectors.get(key, {}).items():
            if self.missing_before(state, other, needed):
                self.violation(f"{where}: {sender[:8]}#{seq} shown before {other[:8]}#{needed} it depends on")
                break
        sort_key = (lamport, sender)
        index = event["index"]
        expected = bisect.bisect_left(state.order, sort_key)
        if index != expected or (expected < len(state.order) and state.order[expected] == sort_key):
            self.violation(
                f"{where}: {sender[:8]}#{seq} at index {index}, (lamport, sender) order says {expected}"
            )
            index = expected
        if index < state.stable:
            self.moved += 1
            self.violation(
                f"{where}: {sender[:8]}#{seq} inserted at {index}, inside the stable prefix of {state.stable}"
            )
        if sender == state.peer_id:
            if is_text:  # membership entries are not typed: not counted as accepted lines
                self.accepted_at.setdefault(key, t)
                state.handled_texts.add(event["text"])
            if not event.get("replayed"):
                self.vectors.setdefault(key, dict(state.last_seq))
        state.keys.insert(index, key)
        state.order.insert(index, sort_key)
        state.shown.add(key)
        state.last_seq[sender] = seq
        self.first_shown[state.peer].setdefault(key, t)
        if event.get("replayed") and event.get("stable") and index == state.stable:
            self.on_stable(state, index + 1, t, where)

    def missing_before(self, state: StreamState, other: str, needed: int) -> bool:
        """Whether ``other``'s entries up to ``needed`` include one this stream must have
        shown by now and has not: one shown somewhere and not voided. (A voided entry
        that reached this peer only after the change voiding it is never shown here, and
        a COMMIT is never shown anywhere: an author that showed one before voiding it
        still names it in what it depends on.)"""
        return any(
            (other, s) in self.content and (other, s) not in self.voided
            for s in range(state.last_seq.get(other, 0) + 1, needed + 1)
        )

    def on_voided(self, state: StreamState, keys: list[Key], where: str) -> None:
        """Entries leave the log: never one at a stable position."""
        for key in keys:
            self.voided.add(key)
            if key not in state.shown:
                continue  # (voided before this peer showed it)
            index = state.keys.index(key)
            if index < state.stable:
                self.moved += 1
                self.violation(f"{where}: {key[0][:8]}#{key[1]} voided at stable position {index}")
                state.stable -= 1
            del state.keys[index], state.order[index]
            state.shown.discard(key)

    def on_stable(self, state: StreamState, count: int, t: float, where: str) -> None:
        if count < state.stable:
            self.violation(f"{where}: stable count went back from {state.stable} to {count}")
            return
        if count > len(state.keys):
            self.violation(f"{where}: {count} stable, but only {len(state.keys)} shown")
            count = len(state.keys)
        for position in range(state.stable, count):
            key = state.keys[position]
            if position < len(self.frozen):
                if self.frozen[position] != key:
                    self.moved += 1
                    self.violation(
                        f"{where}: stable position {position} holds {key[0][:8]}#{key[1]}, "
                        f"another peer had {self.frozen[position][0][:8]}#{self.frozen[position][1]} there"
                    )
            else:
                self.frozen.append(key)
            self.stable_at[state.peer].setdefault(key, t)
        state.stable = count

    # After the replay ----------------------------------------------------------------------
    def check_exits(self) -> None:
        for state in self.streams.values():
            where = f"p{state.peer}.{state.incarnation}"
            if state.exit_cause in (None, "unexpected"):
                self.violation(f"{where} exited unexpectedly (code {state.exit_code})")
            elif state.exit_cause == "stopped" and state.exit_code != 0:
                self.violation(f"{where} exited with code {state.exit_code} when stopped")

    def check_typed(self) -> None:
        typed = sum(len(s.typed) for s in self.streams.values())
        unaccepted = 0
        # A line typed just before a SIGKILL may be committed yet shown only by the next
        # incarnation's replay: accepted all the same.
        accepted_texts = {self.content[key][1] for key in self.accepted_at}
        for state in self.streams.values():
            missing = [text for text in state.typed if text not in state.handled_texts]
            unaccepted += sum(text not in accepted_texts for text in missing)
            if missing and state.exit_cause == "stopped":
                self.violation(
                    f"p{state.peer}.{state.incarnation}: typed {missing[0]!r} "
                    f"(and {len(missing) - 1} more) never shown"
                )
        accepted = len(set(self.accepted_at) - self.voided)  # (a voided line is accepted again)
        self.report.counts.update(typed=typed, accepted=accepted, unaccepted=unaccepted)

    def final_streams(self) -> list[StreamState]:
        return [s for s in self.current.values() if s.exit_cause == "stopped"]

    def final_log(self, state: StreamState) -> list[Key]:
        """The peer's log once everything settled (or at its end, if not recorded)."""
        if self.settled_logs is not None and state.peer in self.settled_logs:
            return self.settled_logs[state.peer]
        return state.keys

    def check_final(self) -> None:
        finals = self.final_streams()
        if len(finals) < len(self.current):
            self.violation(f"only {len(finals)} of {len(self.current)} peers ran to the end")
        lost = 0
        accepted = set(self.accepted_at)
        for state in finals:
            log = self.final_log(state)
            texts = {(key[0], self.content[key][1]) for key in log if key in self.content}
            # A voided line is not lost if its author sent its text again (a new entry).
            missing = {
                key
                for key in accepted - set(log)
                if key not in self.voided or (key[0], self.content[key][1]) not in texts
            }
            lost = max(lost, len(missing))
            if missing:
                sample = sorted(missing)[0]
                self.violation(
                    f"p{state.peer}: {len(missing)} accepted messages missing, "
                    f"e.g. {sample[0][:8]}#{sample[1]}"
                )
            if log[: len(self.frozen)] != self.frozen[: len(log)]:
                self.moved += 1
                self.violation(f"p{state.peer}: final log disagrees with the stable prefix")
        orders = {tuple(self.final_log(s)) for s in finals}
        if len(orders) > 1:
            self.violation(f"final logs differ: {len(orders)} distinct orders")
        self.report.counts.update(
            lost=lost,
            final_log=max((len(self.final_log(s)) for s in finals), default=0),
            stable_prefix=len(self.frozen),
            moved=self.moved,
            incarnations=len(self.streams),
            partitions=sum(f["phase"] == "end" and f["fault"] in PARTITIONS for f in self.faults),
            faults=sum(f["phase"] == "start" for f in self.faults),
        )
        quiet, stopped = self.phases.get("quiet"), self.phases.get("stopped")
        if quiet is not None and stopped is not None:
            times = [
                max(self.stable_at[s.peer].get(k, float("inf")) for k in self.final_log(s))
                for s in finals
                if self.final_log(s)
            ]
            settle = max(times, default=quiet) - quiet
            self.report.settle_time = max(0.0, settle) if settle != float("inf") else None
            if self.report.settle_time is None:
                self.violation("after the last heal, not everything became stable")

    # Measurements --------------------------------------------------------------------------
    def measure(self) -> None:
        starts = [f for f in self.faults if f["phase"] == "start"]
        ends = [f for f in self.faults if f["phase"] == "end"]
        for fault in starts:
            if "cut" in fault:
                self.measure_detection(fault["t"], [tuple(p) for p in fault["cut"]], self.fault_end(fault))
            elif fault["fault"] == "pause":
                (paused,) = fault["peers"]
                pairs = [(a, paused) for a in range(self.size) if a != paused]
                self.measure_detection(fault["t"], pairs, self.fault_end(fault))
            elif fault["fault"] == "clock":
                self.check_clock(fault, self.fault_end(fault))
        process_faults = [f for f in starts if f["fault"] != "clock"]
        run_end = self.phases.get("stopped", float("inf"))
        for fault in ends:
            if fault["fault"] not in PARTITIONS:
                continue
            healed = fault["t"]
            later = [f["t"] for f in process_faults if f["t"] > healed]
            window_end = min([*later, run_end])
            self.measure_heal(healed, window_end)
        finals = self.final_streams()
        for key, accepted in self.accepted_at.items():
            shown = [self.first_shown[s.peer].get(key) for s in finals]
            stable = [self.stable_at[s.peer].get(key) for s in finals]
            self.report.latency[key] = (accepted, _last(shown, accepted), _last(stable, accepted))

    def fault_end(self, start: dict[str, Any]) -> float:
        for fault in self.faults:
            if fault["phase"] == "end" and fault["fault"] == start["fault"] and fault["t"] >= start["t"]:
                return float(fault["t"])
        return float("inf")

    def stream_at(self, peer: int, t: float) -> StreamState | None:
        found = None
        for (p, _), state in sorted(self.streams.items()):
            if p == peer and self.started_at(state) <= t:
                found = state
        return found

    def started_at(self, state: StreamState) -> float:
        for record in self.records:
            if record["type"] == "start" and (record["peer"], record["incarnation"]) == (
                state.peer,
                state.incarnation,
            ):
                return float(record["t"])
        return float("inf")

    def measure_detection(self, t0: float, pairs: Iterable[tuple[int, int]], t1: float) -> None:
        """For each cut link that was up at t0: when its peer_down came."""
        links = self.links_at(t0)
        for a, b in pairs:
            b_id = self.peer_ids.get(b)
            if b_id is None or links.get(a, {}).get(b_id, 0) <= 0:
                continue
            down = self.first_event_after(a, t0, "peer_down", b_id)
            if down is not None and down <= t1 + 1.0:
                self.report.detection.append(down - t0)
            else:
                self.report.undetected += 1

    def links_at(self, t0: float) -> dict[int, dict[str, int]]:
        links: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        streams: dict[int, int] = {}
        for record in self.records:
            if record["t"] > t0:
                break
            if record["type"] == "start":
                streams[record["peer"]] = record["incarnation"]
                links[record["peer"]] = defaultdict(int)
            elif record["type"] == "event" and streams.get(record["peer"]) == record["incarnation"]:
                event = record["event"]
                if event.get("event") == "peer_up":
                    links[record["peer"]][event["peer_id"]] += 1
                elif event.get("event") == "peer_down" and event.get("peer_id"):
                    count = links[record["peer"]][event["peer_id"]]
                    links[record["peer"]][event["peer_id"]] = max(0, count - 1)
        return links

    def first_event_after(self, peer: int, t0: float, kind: str, peer_id: str) -> float | None:
        if self._link_events is None:
            self._link_events = defaultdict(list)
            for record in self.records:
                if record["type"] == "event" and record["event"].get("event") in ("peer_up", "peer_down"):
                    event = record["event"]
                    self._link_events[record["peer"]].append(
                        (record["t"], event["event"], event.get("peer_id"))
                    )
        for t, what, who in self._link_events[peer]:
            if t >= t0 and what == kind and who == peer_id:
                return float(t)
        return None

    def measure_heal(self, healed: float, window_end: float) -> None:
        # (Voided entries are not waited for: a peer that got one only after the change
        # voiding it never shows it.)
        existing = {
            key for shown in self.first_shown.values() for key, t in shown.items() if t <= healed
        } - self.voided
        running = [
            s
            for s in (self.stream_at(p, healed) for p in self.current)
            if s is not None and (s.ended_at is None or s.ended_at >= window_end)
        ]
        for times, out, bound, name in (
            (self.first_shown, self.report.convergence, CONVERGENCE_BOUND, "hold"),
            (self.stable_at, self.report.stability, STABILITY_BOUND, "have stable"),
        ):
            latest = 0.0
            for state in running:
                for key in existing:
                    at = times[state.peer].get(key, float("inf"))
                    latest = max(latest, at - healed)
            if healed + latest <= window_end:
                out.append((healed, latest))
            elif window_end - healed >= bound:
                out.append((healed, None))
                self.violation(
                    f"{bound:.0f} s after the heal at {healed:.1f} s not every peer did {name} everything"
                )
            else:
                out.append((healed, None))  # the next fault came first: not measured

    def check_clock(self, fault: dict[str, Any], end: float) -> None:
        (peer,) = fault["peers"]
        jump = _parse_jump(fault["jump"])
        peer_id = self.peer_ids.get(peer)
        offsets = []
        for key, accepted in self.accepted_at.items():
            if key[0] == peer_id and fault["t"] + 3.0 <= accepted <= end:
                sent = self.sent_at.get(key)
                if sent is not None:
                    offsets.append(sent - (self.wall0 + accepted))
        if not offsets:
            return
        wrong = [o for o in offsets if abs(o - jump) > 120]
        if wrong:
            self.violation(
                f"p{peer}: clock jumped {fault['jump']} but {len(wrong)} messages "
                f"show offset {wrong[0]:.0f} s"
            )
        self.report.counts["clock_jumped_messages"] = self.report.counts.get(
            "clock_jumped_messages", 0
        ) + len(offsets)

    @property
    def sent_at(self) -> dict[Key, float]:
        if self._sent_at is None:
            sent: dict[Key, float] = {}
            for record in self.records:
                if record["type"] == "event" and record["event"].get("event") == "message":
                    event = record["event"]
                    stamp = event["sent_at"].replace("Z", "+00:00")
                    sent.setdefault(
                        (event["sender"], event["seq"]), datetime.fromisoformat(stamp).timestamp()
                    )
            self._sent_at = sent
        return self._sent_at


def _last(times: Sequence[float | None], since: float) -> float | None:
    """Seconds from ``since`` until the last of ``times``; None if one never came."""
    known = [t for t in times if t is not None]
    return max(known) - since if known and len(known) == len(times) else None


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.2f} s"


def _parse_jump(text: str) -> float:
    sign = -1 if text.startswith("-") else 1
    number = text.lstrip("+-")
    unit = {"h": 3600, "m": 60, "s": 1, "d": 86400}.get(number[-1:], 1)
    value = float(number.rstrip("hmsd") or 0)
    return sign * value * unit


def check(records: Sequence[dict[str, Any]]) -> Report:
    """Check a run's history; the report lists violations and measurements."""
    return _Checker(records).run()
