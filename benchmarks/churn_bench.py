"""How soon stability resumes after churn: a quit, a crash for good, a crash during an
admission, a quit during an admission, and a crash with a restart.

Runs the deterministic simulator (virtual time, so the figures do not depend on the
machine): PEERS peers in a ring chat at RATE messages per second (the peers that churn
write nothing, so every message has a live author). The scenarios:

* **quit** -- at QUIT_AT the last peer quits cleanly (its AWAY entry is its last). The
  time to stability before and after it, and the *resume* time: from the quit until
  every message sent before it is stable on every live peer (nobody waits for a member
  that said goodbye).
* **crash for good** -- at CRASH_AT a member crashes without a word and never returns.
  Once unheard for ``--member-timeout`` seconds it is proposed for removal. Reported:
  the time from the crash until every live peer's roster has removed it, and until
  every message sent before that is stable on every live peer (stability resumed).
* **crash during an admission** -- the simulator founds every peer as a member and
  cannot add a new one mid-run, so the admission is a *re*-admission: the last peer
  quits, comes back from its store and is proposed for admission; as soon as that
  CHANGE exists, a member that does not hold it yet crashes for good. Reported: the
  time from the crash until the returning peer is a member again on every live peer
  (a later round superseding the stuck change; it admits the peer too only if its
  proposer has a link to it, otherwise a further change does) and until stability
  resumes.
* **quit during an admission** -- as above, but instead of a crash, a member that has
  answered the CHANGE (and not committed it) quits cleanly before it is decided. Its
  AWAY is void in the epoch the change closes, and carries over into the next one.
  Reported: the time from the quit until every line sent up to AFTER_QUIT seconds after
  it (the next epoch's first lines) is stable on every live peer. (Without the carry-over
  the quitter is a member of the next epoch that never speaks: those lines waited for
  ``--member-timeout`` and its removal.)
* **crash and restart** -- a member crashes and restarts from its store RESTART_AFTER
  seconds later: stability waits for it while it is down.

Lines a member writes after answering a change are void if the change is decided; the
peer shell then sends their text again, the simulator does not, so the benchmark does
it (:class:`Resender`) and follows each such line to the copy that carries it. Every
run also checks the simulator's report: nothing lost, identical logs, no stable
position moved. A run that breaks one of these, or in which the removal or stability
never comes, is printed as such (with the seed), not hidden.

    python benchmarks/churn_bench.py [--seeds 5] [--peers 6] [--member-timeout 10]
"""

from __future__ import annotations

import argparse
import math
import random
import statistics
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial

from p2pchat.membership import MemberState
from p2pchat.message import EntryKind, MessageId
from p2pchat.node import NodeConfig
from p2pchat.sim import SimConfig, Simulation

RATE = 20.0
START = 1.0
QUIT_AT = 5.0
CRASH_AT = 5.0
RESTART_AT = 8.0
"""(crash during an admission) when the peer that quit at QUIT_AT comes back."""
RESTART_CRASH_AT = 15.0
RESTART_AFTER = 5.0
END = 28.0
STEP = 0.05
"""Virtual seconds between two looks at the peers' rosters (the precision of the times)."""
TAIL = 3.0
"""Lines written in the workload's last TAIL seconds wait for heartbeats to become stable
(no later line carries the clocks): they are left out of the latency figures."""
NEVER = math.inf
AFTER_QUIT = 3.0
"""(quit during an admission) the lines whose stability is waited for: up to this long
after the quit, so that they include lines of the next epoch."""


@dataclass
class Outcome:
    """One scenario run with one seed: named times in seconds (NEVER if it never came),
    latency lists, and what went wrong (empty if nothing)."""

    times: dict[str, float] = field(default_factory=dict)
    latencies: dict[str, list[float]] = field(default_factory=dict)
    counts: dict[str, int | bool] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


# Measuring -------------------------------------------------------------------------


class Resender:
    """Does what the peer shell does and the simulator does not: once a chat line of
    ours is void (written after our answer to a change that was then decided), send its
    text again as a new entry. Called every STEP, so a line goes out again within STEP
    of its voiding (the shell sends it at once)."""

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        self.again: dict[MessageId, MessageId] = {}
        """Each void line's id -> the id of the line that carries its text again."""
        self._copies: set[MessageId] = set()

    def __call__(self) -> None:
        for peer in self.sim.live():
            me, log = peer.identity.sender_id, peer.node.log
            for message_id in list(self.sim.sent):
                if message_id.sender_id != me or message_id in self.again:
                    continue
                message = log.get(message_id)
                if message is not None and not log.is_visible(message):
                    copy = self.sim.send(peer.index, message.text)
                    if copy is not None:
                        self.again[message_id] = copy.id
                        self._copies.add(copy.id)

    def originals(self, start: float, end: float) -> list[MessageId]:
        """The workload's lines sent in [start, end) (not the copies we sent)."""
        return [m for m, at in self.sim.sent.items() if start <= at < end and m not in self._copies]

    def final(self, message_id: MessageId) -> MessageId:
        """The entry that finally carries a line's text (itself unless it was voided)."""
        while message_id in self.again:
            message_id = self.again[message_id]
        return message_id


def stable_times(run: Resender, start: float, end: float) -> dict[MessageId, float | None]:
    """For each line sent in [start, end): when it (or the copy that carries its text
    again) was stable on every live peer; None if it never was."""
    sim = run.sim
    live = sim.live()
    log = live[0].node.log
    result: dict[MessageId, float | None] = {}
    for message_id in run.originals(start, end):
        message = log.get(run.final(message_id))
        times = sim.stable_at.get(message.key, {}) if message is not None else {}
        if all(p.index in times for p in live):
            result[message_id] = max(times[p.index] for p in live)
        else:
            result[message_id] = None
    return result


def stable_latencies(run: Resender, start: float, end: float) -> list[float]:
    """For lines sent in [start, end): seconds from sending until stable on every live
    peer (lines never stable are left out: :func:`resume_time` counts them)."""
    return [
        when - run.sim.sent[message_id]
        for message_id, when in stable_times(run, start, end).items()
        if when is not None
    ]


def resume_time(run: Resender, event: float, before: float, outcome: Outcome, what: str) -> float:
    """Seconds from ``event`` until every line sent in [START, before) was stable on
    every live peer; NEVER (and a problem noted) if some never was."""
    times = stable_times(run, START, before)
    missing = [m for m, when in times.items() if when is None]
    if missing:
        first = min(run.sim.sent[m] for m in missing)
        outcome.problems.append(
            f"{what}: {len(missing)} of {len(times)} lines sent before t={before:.2f} s "
            f"never stable on every live peer (first sent at t={first:.2f} s)"
        )
        return NEVER
    return max(when for when in times.values() if when is not None) - event


def check_report(run: Resender, outcome: Outcome) -> None:
    """Note any loss, divergence or moved stable position. A void line counts as lost
    only if the copy that carries its text again is (the simulator's own count of lost
    lines includes void ones: they never reach some peers' logs)."""
    sim = run.sim
    report = sim.report()
    live = {p.index for p in sim.live()}
    lost = [
        m for m in run.originals(0.0, math.inf) if not live <= sim.delivered_at.get(run.final(m), {}).keys()
    ]
    outcome.counts["void lines sent again"] = len(run.again)
    outcome.counts["lost (sim's count)"] = report.lost
    outcome.counts["lines lost"] = len(lost)
    outcome.counts["stable positions moved"] = report.stability_moved
    if lost:
        outcome.problems.append(f"{len(lost)} lines lost (not in every live peer's log)")
    outcome.counts["logs identical"] = report.identical
    if not report.identical:
        outcome.problems.append("live peers' logs differ")
    if report.stability_moved:
        outcome.problems.append(f"{report.stability_moved} stable positions moved")


def run_watching(sim: Simulation, until: float, watch: Callable[[], None]) -> None:
    """Run to ``until`` in STEP slices, calling ``watch`` after each."""
    while sim.now < until:
        sim.run_until(min(sim.now + STEP, until))
        watch()


def first_time_everywhere(sim: Simulation, holds: Callable[[int], bool], seen: dict[int, float]) -> None:
    """Note in ``seen`` the first time ``holds(peer)`` was true for each live peer."""
    for peer in sim.live():
        if peer.index not in seen and holds(peer.index):
            seen[peer.index] = sim.now


def when_everywhere(sim: Simulation, seen: dict[int, float]) -> float:
    """When every live peer had got there (NEVER if one never did)."""
    live = [p.index for p in sim.live()]
    return max(seen[i] for i in live) if all(i in seen for i in live) else NEVER


# Building -------------------------------------------------------------------------


def build(
    seed: int, peers: int, member_timeout: float | None, quiet: Iterable[int], end: float
) -> Simulation:
    """A ring of ``peers`` in which all but ``quiet`` chat at RATE from START to ``end``."""
    node = NodeConfig(member_timeout=member_timeout)
    sim = Simulation(SimConfig(peers=peers, topology="ring", seed=seed, latency=(0.05, 0.1), node=node))
    workload = random.Random(seed)
    writers = [i for i in range(peers) if i not in set(quiet)]
    for k in range(int((end - START) * RATE)):
        sim.send_at(START + k / RATE, workload.choice(writers), f"message {k}")
    return sim


def is_active(sim: Simulation, observer: int, member: int) -> bool:
    return sim.peers[member].identity.sender_id in sim.peers[observer].node.log.roster.active()


# Scenarios --------------------------------------------------------------------------


def run_quit(seed: int, peers: int) -> Outcome:
    """The last peer quits at QUIT_AT."""
    outcome = Outcome()
    quitter = peers - 1
    run = Resender(build(seed, peers, None, [quitter], QUIT_AT + 8.0))
    sim = run.sim
    sim.at(QUIT_AT, partial(sim.quit, quitter))
    run_watching(sim, QUIT_AT + 15.0, run)
    outcome.latencies["before any churn"] = stable_latencies(run, START, QUIT_AT)
    outcome.latencies["after the quit"] = stable_latencies(run, QUIT_AT + 0.5, QUIT_AT + 8.0 - TAIL)
    outcome.times["quit -> resumed"] = resume_time(run, QUIT_AT, QUIT_AT, outcome, "quit")
    check_report(run, outcome)
    return outcome


def run_crash_for_good(seed: int, peers: int, member_timeout: float, horizon: float | None = None) -> Outcome:
    """A member crashes at CRASH_AT and never returns; watch until ``horizon`` (by default
    long enough for the removal)."""
    outcome = Outcome()
    victim = peers // 2
    horizon = horizon if horizon is not None else CRASH_AT + 4 * member_timeout + 10.0
    run = Resender(build(seed, peers, member_timeout, [victim], horizon - 5.0))
    sim = run.sim
    sim.at(CRASH_AT, partial(sim.crash, victim))
    removed: dict[int, float] = {}

    def watch() -> None:
        run()
        first_time_everywhere(sim, lambda i: not is_active(sim, i, victim), removed)

    run_watching(sim, horizon, watch)
    decided = when_everywhere(sim, removed)
    outcome.times["crash -> removed"] = decided - CRASH_AT
    if decided == NEVER:
        outcome.problems.append(f"crashed peer{victim} not removed everywhere by t={horizon:.0f} s")
        outcome.times["crash -> resumed"] = NEVER
    else:
        outcome.times["crash -> resumed"] = resume_time(run, CRASH_AT, decided, outcome, "crash for good")
        check_removed(sim, victim, outcome)
        outcome.latencies["after the removal"] = stable_latencies(run, decided + 0.5, horizon - 5.0 - TAIL)
    check_report(run, outcome)
    return outcome


def check_removed(sim: Simulation, member: int, outcome: Outcome) -> None:
    """Note it if some live peer's roster does not call ``member`` removed."""
    member_id = sim.peers[member].identity.sender_id
    for peer in sim.live():
        info = peer.node.log.roster.members().get(member_id)
        if info is None or info.state is not MemberState.REMOVED:
            state = "unknown" if info is None else info.state.value
            outcome.problems.append(f"peer{peer.index} lists peer{member} as {state}, not removed")


def crash_on_change(sim: Simulation, returning: int, state: dict[str, float]) -> None:
    """As soon as some peer holds a CHANGE admitting ``returning``, crash the member
    farthest from every holder (it holds none: it cannot have answered it)."""
    if "crashed" in state:
        return
    newcomer = sim.peers[returning].identity.sender_id
    holders = [p.index for p in sim.live() if holds_admission(sim, p.index, newcomer)]
    others = [p.index for p in sim.live() if p.index not in holders and p.index != returning]
    if not holders or not others:
        return
    victim = max(others, key=lambda i: min(abs(i - h) for h in holders))
    state["crashed"], state["victim"] = sim.now, victim
    sim.crash(victim)


def holds_admission(sim: Simulation, index: int, newcomer: bytes) -> bool:
    """Whether peer ``index`` holds a CHANGE admitting ``newcomer``."""
    return any(
        m.kind is EntryKind.CHANGE
        and m.change is not None
        and any(a == newcomer for a, _ in m.change.admitted)
        for m in sim.peers[index].stored
    )


def readmission(seed: int, peers: int, member_timeout: float, returning: int, horizon: float) -> Resender:
    """A run in which ``returning`` (a quiet peer) quits at QUIT_AT and comes back at
    RESTART_AT, to be re-admitted."""
    run = Resender(build(seed, peers, member_timeout, [returning], horizon - 5.0))
    sim = run.sim
    sim.at(QUIT_AT, partial(sim.quit, returning))
    sim.at(RESTART_AT, partial(sim.restart, returning))
    return run


def run_crash_during_admission(seed: int, peers: int, member_timeout: float) -> Outcome:
    """The last peer quits, comes back at RESTART_AT; a member crashes before answering
    the CHANGE admitting it."""
    outcome = Outcome()
    returning = peers - 1
    horizon = RESTART_AT + 4 * member_timeout + 12.0
    state: dict[str, float] = {}
    run = readmission(seed, peers, member_timeout, returning, horizon)
    sim = run.sim
    admitted: dict[int, float] = {}
    removed: dict[int, float] = {}

    def watch() -> None:
        run()
        crash_on_change(sim, returning, state)
        if "crashed" in state:
            first_time_everywhere(sim, lambda i: is_active(sim, i, returning), admitted)
            victim = int(state["victim"])
            first_time_everywhere(sim, lambda i: not is_active(sim, i, victim), removed)

    run_watching(sim, horizon, watch)
    if "crashed" not in state:
        outcome.problems.append(f"no CHANGE admitting peer{returning} by t={horizon:.0f} s: nobody crashed")
        return outcome
    crashed, victim = state["crashed"], int(state["victim"])
    outcome.times["CHANGE seen, crash at"] = crashed
    done = when_everywhere(sim, admitted)
    outcome.times["crash -> admitted"] = done - crashed
    if done == NEVER:
        outcome.problems.append(
            f"peer{returning} not a member again everywhere by t={horizon:.0f} s "
            f"(peer{victim} crashed at t={crashed:.2f} s)"
        )
        outcome.times["crash -> resumed"] = NEVER
    else:
        outcome.times["crash -> resumed"] = resume_time(run, crashed, done, outcome, "crash during admission")
    gone = when_everywhere(sim, removed)
    outcome.times["crash -> removed"] = gone - crashed
    if gone == NEVER:
        outcome.problems.append(f"crashed peer{victim} not removed everywhere by t={horizon:.0f} s")
    else:
        check_removed(sim, victim, outcome)
    check_report(run, outcome)
    return outcome


def quit_after_answering(sim: Simulation, returning: int, state: dict[str, float]) -> None:
    """As soon as a member (not the one returning) has answered the CHANGE admitting
    ``returning``, and not committed it, while another member already committed it (so
    it is on its way to be decided, not killed by a rival), have it quit."""
    if "quit" in state:
        return
    newcomer = sim.peers[returning].identity.sender_id
    for peer in sim.live():
        me = peer.identity.sender_id
        roster = peer.node.log.roster
        answered = roster.answered(me)
        if peer.index == returning or answered is None or roster.holds_open_commit(me):
            continue
        if not any(a == newcomer for a, _ in answered.change.admitted):
            continue
        committed_elsewhere = any(
            other is not peer and other.node.log.roster.current.commits.get(answered.id)
            for other in sim.live()
        )
        if committed_elsewhere:
            state["quit"], state["quitter"] = sim.now, peer.index
            sim.quit(peer.index)
            return


def run_quit_during_admission(seed: int, peers: int, member_timeout: float) -> Outcome:
    """The last peer quits, comes back at RESTART_AT; a member quits after answering the
    CHANGE admitting it, before the change is decided."""
    outcome = Outcome()
    returning = peers - 1
    horizon = RESTART_AT + 2 * member_timeout + 12.0
    state: dict[str, float] = {}
    run = readmission(seed, peers, member_timeout, returning, horizon)
    sim = run.sim

    def watch() -> None:
        run()
        quit_after_answering(sim, returning, state)

    run_watching(sim, horizon, watch)
    if "quit" not in state:
        outcome.problems.append(f"no member answered a CHANGE admitting peer{returning}: nobody quit")
        return outcome
    quit_at, quitter = state["quit"], int(state["quitter"])
    member_id = sim.peers[quitter].identity.sender_id
    outcome.times["answered, quit at"] = quit_at
    # The quitter's own lines after its answer are void once the change is decided, and
    # nobody sends them again (it quit): they are not waited for.
    times = stable_times(run, START, quit_at + AFTER_QUIT)
    void = {m for m, when in times.items() if when is None and m.sender_id == member_id}
    outcome.counts["its AWAY carried over"] = away_carried_over(sim, member_id)
    outcome.counts["its void lines"] = len(void)
    rest = [when for m, when in times.items() if m not in void]
    if None in rest:
        outcome.problems.append(f"quit during admission: {rest.count(None)} lines never stable everywhere")
        outcome.times["quit -> resumed"] = NEVER
    else:
        outcome.times["quit -> resumed"] = max(w for w in rest if w is not None) - quit_at
    for peer in sim.live():
        info = peer.node.log.roster.members().get(member_id)
        if info is None or info.state is not MemberState.AWAY:
            state_now = "unknown" if info is None else info.state.value
            outcome.problems.append(f"peer{peer.index} lists peer{quitter} as {state_now}, not away")
    check_report(run, outcome)
    return outcome


def away_carried_over(sim: Simulation, member: bytes) -> bool:
    """Whether ``member``'s AWAY was void in the epoch it was written in (a change it had
    answered was decided) and so carried over, rather than answering the change itself."""
    log = sim.live()[0].node.log
    return any(m.sender_id == member and m.kind is EntryKind.AWAY for m in log.tombstones())


def run_crash_and_restart(seed: int, peers: int) -> Outcome:
    """A member crashes at RESTART_CRASH_AT and restarts RESTART_AFTER seconds later."""
    outcome = Outcome()
    victim = peers // 2
    back = RESTART_CRASH_AT + RESTART_AFTER
    run = Resender(build(seed, peers, None, [victim], END))
    sim = run.sim
    sim.at(RESTART_CRASH_AT, partial(sim.crash, victim))
    sim.at(back, partial(sim.restart, victim))
    run_watching(sim, END + 10.0, run)
    outcome.latencies["before the crash"] = stable_latencies(run, START, RESTART_CRASH_AT - 5.0)
    outcome.latencies["while one is crashed"] = stable_latencies(run, RESTART_CRASH_AT, back)
    outcome.times["restart -> resumed"] = resume_time(run, back, back, outcome, "crash and restart")
    check_report(run, outcome)
    return outcome


# Printing ---------------------------------------------------------------------------


def describe(values: list[float]) -> str:
    if not values:
        return "no messages"
    median, worst = statistics.median(values) * 1000, max(values) * 1000
    return f"median {median:6.0f} ms, max {worst:6.0f} ms ({len(values)} msgs)"


def seconds(value: float) -> str:
    return "NEVER" if value == NEVER else f"{value:6.2f} s"


def print_outcome(seed: int, outcome: Outcome) -> None:
    lines = [f"{name:22} {describe(values)}" for name, values in outcome.latencies.items()]
    lines += [f"{name:22} {seconds(value)}" for name, value in outcome.times.items()]
    if outcome.counts:
        lines.append(", ".join(f"{name}: {value}" for name, value in outcome.counts.items()))
    lines += [f"PROBLEM: {problem}" for problem in outcome.problems]
    for number, line in enumerate(lines):
        print(f"  {f'seed {seed}:' if number == 0 else '':9}{line}")


def print_summary(outcomes: list[Outcome]) -> None:
    names = list(dict.fromkeys(name for o in outcomes for name in o.times))
    for name in names:
        values = [o.times[name] for o in outcomes if name in o.times]
        print(f"  summary: {name:22} median {seconds(statistics.median(values))}, max {seconds(max(values))}")
    for name in dict.fromkeys(name for o in outcomes for name in o.latencies):
        pooled = [v for o in outcomes for v in o.latencies.get(name, [])]
        print(f"  summary: {name:22} {describe(pooled)} (all seeds)")
    bad = sum(1 for o in outcomes if o.problems)
    print(
        f"  summary: {bad} of {len(outcomes)} seeds had a problem"
        if bad
        else "  summary: no problem (every seed: 0 lost, identical logs, 0 stable positions moved)"
    )


def scenario(title: str, seeds: int, one_run: Callable[[int], Outcome]) -> list[Outcome]:
    print(title)
    outcomes = []
    for seed in range(seeds):
        outcome = one_run(seed)
        print_outcome(seed, outcome)
        outcomes.append(outcome)
    print_summary(outcomes)
    print()
    return outcomes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--peers", type=int, default=6)
    parser.add_argument(
        "--member-timeout", type=float, default=10.0, help="seconds (NodeConfig.member_timeout)"
    )
    parser.add_argument(
        "--only",
        choices=["quit", "crash", "admission", "quit-admission", "restart"],
        action="append",
        help="run only these",
    )
    args = parser.parse_args(argv)
    only = set(args.only or ["quit", "crash", "admission", "quit-admission", "restart"])
    n, timeout = args.peers, args.member_timeout
    print(f"{n} peers in a ring, {RATE:.0f} msg/s, links 50-100 ms; times in virtual seconds")
    print(f"(rosters looked at every {STEP * 1000:.0f} ms)\n")
    readmission_at = f"peer{n - 1} quits at t={QUIT_AT:.0f} s, back at t={RESTART_AT:.0f} s"
    scenarios: list[tuple[str, str, Callable[[int], Outcome]]] = [
        (
            "quit",
            f"quit at t={QUIT_AT:.0f} s: time from sending to stable on every live peer, and resume time",
            lambda s: run_quit(s, n),
        ),
        (
            "crash",
            f"crash for good at t={CRASH_AT:.0f} s, member timeout {timeout:g} s",
            lambda s: run_crash_for_good(s, n, timeout),
        ),
        (
            "admission",
            f"crash during an admission: {readmission_at}; a member crashes once the CHANGE "
            f"admitting it exists; member timeout {timeout:g} s",
            lambda s: run_crash_during_admission(s, n, timeout),
        ),
        (
            "quit-admission",
            f"quit during an admission: {readmission_at}; a member that answered the CHANGE "
            f"admitting it quits before it is decided; member timeout {timeout:g} s",
            lambda s: run_quit_during_admission(s, n, timeout),
        ),
        (
            "restart",
            f"crash at t={RESTART_CRASH_AT:.0f} s, restart {RESTART_AFTER:.0f} s later",
            lambda s: run_crash_and_restart(s, n),
        ),
    ]
    outcomes: list[Outcome] = []
    for name, title, one_run in scenarios:
        if name in only:
            outcomes += scenario(title, args.seeds, one_run)
    return 1 if any(o.problems for o in outcomes) else 0


if __name__ == "__main__":
    raise SystemExit(main())
