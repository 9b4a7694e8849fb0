"""benchmarks/churn_bench.py: a member that crashes for good is removed and stability resumes.

The times themselves are not checked (benchmarks measure, tests do not time things):
what is checked is that the removal is decided on every live peer, that every line
sent before it becomes stable everywhere, and that nothing is lost, diverges or moves.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import churn_bench
import pytest


def test_a_member_crashed_for_good_is_removed_and_stability_resumes() -> None:
    outcome = churn_bench.run_crash_for_good(seed=0, peers=4, member_timeout=3.0)
    assert outcome.problems == []
    removed, resumed = outcome.times["crash -> removed"], outcome.times["crash -> resumed"]
    # Nobody proposes the removal before the member has been unheard for the timeout.
    assert 3.0 <= removed < math.inf
    assert removed <= resumed < math.inf
    assert outcome.counts["lines lost"] == 0
    assert outcome.counts["stable positions moved"] == 0
    assert outcome.counts["logs identical"] is True
    assert outcome.latencies["after the removal"]  # lines written after it are stable too


def test_a_member_that_never_answers_is_reported_when_nobody_removes_it() -> None:
    # With the removal effectively disabled, the benchmark says so instead of failing.
    outcome = churn_bench.run_crash_for_good(seed=0, peers=4, member_timeout=1000.0, horizon=20.0)
    assert outcome.times["crash -> removed"] == math.inf
    assert any("not removed" in problem for problem in outcome.problems)


@pytest.mark.parametrize("seed", range(5))
def test_a_member_that_quits_after_answering_a_change_is_away_in_the_next_epoch(seed: int) -> None:
    outcome = churn_bench.run_quit_during_admission(seed=seed, peers=6, member_timeout=10.0)
    assert outcome.problems == []
    assert outcome.counts["its AWAY carried over"] is True  # (the case this scenario is for)
    # Stability of the next epoch's lines did not wait for a removal of the quitter.
    assert outcome.times["quit -> resumed"] < 10.0
    assert outcome.counts["lines lost"] == 0
    assert outcome.counts["stable positions moved"] == 0
