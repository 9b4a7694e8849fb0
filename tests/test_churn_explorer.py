"""benchmarks/churn_explorer.py: a few fixed seeds of each generator come out OK, and
a few stuck ones get the diagnosis that fits.

The explorer searches many seeds for schedules that break the room's promises (run it
by hand, see benchmarks/README.md); here a handful that take about a second per mode,
with every check it makes: no stable position moved or disagreed between peers,
nothing delivered twice, no proof against an honest peer, and one log at the end.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import churn_explorer
import pytest

SEEDS = {
    "churn": ["4", "5", "8", "10"],
    "exits": ["2", "4", "7", "8"],
    "var": ["3", "5", "8", "11", "12"],
}


def verdicts_of(lines: list[str]) -> dict[str, str]:
    """Seed -> verdict (OK, KNOWN, SAFETY, ...), from the explorer's output lines."""
    return {line.split()[0]: line.split()[1] for line in lines if line[:1].isdigit()}


@pytest.mark.parametrize("mode", sorted(SEEDS))
def test_fixed_seeds_of_each_generator_end_in_one_stable_log(
    mode: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert churn_explorer.main([mode, *SEEDS[mode]]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[1] for line in lines[:-1]] == ["OK"] * len(SEEDS[mode])
    assert lines[-1].startswith(f"SUMMARY {mode} ") and f"OK {len(SEEDS[mode])}," in lines[-1]


def test_a_run_still_stuck_after_the_grace_is_diagnosed_as_it_is_then(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """var 1854: twelve peers in a line, fixed links, a member timeout of 3 s. At the end of
    its schedule the room is on its way (a change under way, its FLUSHes in flight): no
    pattern fits. Members' beats cross the line about a hop per heartbeat, slower than the
    timeout, so they go on proposing each other's removal, until P3, which P2 reaches the
    others through, is removed: a fixed-link split for good, which the state after the
    grace shows. The false suspicions on the way are named after it."""
    assert churn_explorer.main(["var", "1854", "--grace", "60"]) == 0
    out = capsys.readouterr().out
    assert "diagnosis: fixed-link split: " in out
    assert "(also: false suspicion)" in out


def test_a_leaving_peer_waits_until_its_entries_before_the_leave_reached_someone(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """var 1974: P0 writes #10 as a split leaves it alone with P2; the IHAVE and the WANT
    for it between them are lost, and P0 leaves. Had it gone down half a second later
    (as peers did before they waited for a neighbour to hold their LEAVE), P2 would hold
    P0#11..#13 behind #10 for good ("entry lost with its author"). P2's heads say it
    holds P0's entries up to #9 only (held_seq counts no entry after a gap), so P0 stays
    until P2's next WANT has fetched #10 and the rest."""
    assert churn_explorer.main(["var", "1974"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["1974", "OK"], lines


LIAR_STALLS = {
    # P0 and P2 are away: the liar and P1 are the epoch's only active members, and P1
    # alone is no strict majority to remove the liar.
    "606": "room of two: in P0's epoch 1 (members [P0,P1,P2,P3]) [P3] cannot be removed (P3 is the liar)",
    # A room of four: the liar P3 proposed to remove P1 (silent across a split) as P1,
    # holding the proof, proposed to remove P3. P0 and P2 committed P3's change; P1
    # answered its own, so only the liar's COMMIT can decide it (docs/equivocation.md,
    # "What it leaves").
    "1309": "left to a removed member: in P0's epoch 1 the open change P3#13 (round 0, removing [P1])"
    " can be decided only by the COMMIT of a member it removes, or of the liar",
    # P4's only link is the liar P3, and P3 is the only peer it knows: the others proved
    # P3, refuse it, and removed P4 with it (they heard nothing from P4).
    "3036": "eclipsed by the liar: P4 is linked to the liar only (P3) and knows the address of no live"
    " honest peer (known: [3])",
    # P1's only link is P4, which the others removed (it had crashed) and so give
    # nothing; the path from P4 to them through the liar P0 does not count (they refuse
    # a proven liar), nor does the liar, cut off, count as a group of its own.
    "2686": "fixed-link split: live members connected only through peers that are no members (P1,P4 | P2,P3)",
}


def test_a_round_that_waited_on_the_liars_commit_is_committed_by_the_members_that_moved_on(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Rounds that never decided (docs/equivocation.md), now decided:

    - 267: P1 proposed to remove the liar (round 1); P2, split off, was then proposed for
      removal too, by P0 and P1 at the same moment (rounds 2 and 3: rivals, dead). Back,
      P2 and P3 answered and committed round 1, and may answer nothing else; P0 and P1
      had answered later rounds; the liar never commits. Round 1 waited for good on it.
    - 623: a change removing two members that P3 proposed and quit: P0, P7 and the two it
      removes committed it, P1 and P4 answered later rounds, and only the liar P5 could
      still commit it (a strict majority of eight needs five).

    P0 and P1 (P1 and P4) now commit the round they moved past: every round they
    answered since is dead, or waits on the members that committed it."""
    assert churn_explorer.main(["liars", "267", "623"]) == 0
    lines = capsys.readouterr().out.splitlines()
    verdicts = verdicts_of(lines)
    assert verdicts == {"267": "OK", "623": "OK"}, lines


@pytest.mark.parametrize("seed", sorted(LIAR_STALLS))
def test_a_room_a_liar_stalls_is_diagnosed(seed: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert churn_explorer.main(["liars", seed]) == 0
    assert f"diagnosis: {LIAR_STALLS[seed]}" in capsys.readouterr().out


def test_liars_are_proven_everywhere_and_only_their_own_lines_may_differ(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The liars generator: a member signs two versions of a line amid churn.

    - 4: it is proven and removed everywhere, and every honest peer shows the same log.
    - 7 and 41: two honest peers kept different versions of its line. Covers name the
      versions they cover, so neither called its own stable; the removal's answers
      name both versions, so every peer voids the line (before, both called it stable
      and kept it: KNOWN).
    - 53: a peer's copy of the liar's chain went on from the version it does not show;
      its cover of the liar vouches for nothing, so no peer calls the other version
      stable (counted, it made one stable that the removal then voided: SAFETY).
    - 58: in a ring of four with fixed links, the proof's one frame to P2 was lost. P2,
      without it, admitted the liar again after every removal (its neighbour), one change
      after another for good, until a member holding the proof passed it on again when
      it saw that admission.
    - 21: P0, away while the liar broke its clock promise, restarts after the removal
      that kept the liar's line (the answers showed it). Its neighbours' proof (both
      versions), sent as soon as they trusted it, came before the history it lacked:
      the version the others show waited there for entries of that history, and the
      other one, ready, took its place, without a place in the log (it broke the
      promise): KNOWN. The proof now follows the history.
    - 195: P1 kept the version the liar sent it first, quit, and comes back once the
      removal has kept the other version (its answers agreed on it). P1 never
      answered; it kept its own, and called it stable once the epoch closed: KNOWN.
      It now shows the answers' version in its place.
    - 604: the liar wrote 22 more entries after its fork, so answers naming its last
      16 entries agreed, and the removal kept both versions, each where it was: KNOWN.
      The answers name its entries from the first one not stable at their author now.
    - 684: an answerer held the liar's backdated version as void, below the positions
      stable there, and the other version as evidence: its answer names that entry as
      not stable (it holds two versions of it), so the two answers' difference there
      counts and the removal voids it everywhere (a difference at an entry an answer
      names as stable counts for nothing: it is a lie of one of the answers).
    - 191: still the gap docs/equivocation.md describes, counted as KNOWN: a decision
      that kept the liar (it answered) closed the epoch with both versions in it (the
      honest members' entries are the same everywhere, in one order, and the peers
      that differ mark the liar's lines disputed, or it would be SAFETY)."""
    assert churn_explorer.main(["liars", "4", "7", "41", "53", "58", "21", "195", "604", "684", "191"]) == 0
    lines = capsys.readouterr().out.splitlines()
    verdicts = verdicts_of(lines)
    expected = {
        "4": "OK",
        "7": "OK",
        "41": "OK",
        "53": "OK",
        "58": "OK",
        "21": "OK",
        "195": "OK",
        "604": "OK",
        "684": "OK",
        "191": "KNOWN",
    }
    assert verdicts == expected
    assert any("liar's entry differs: honest peers show different versions" in line for line in lines)


def test_a_version_void_in_an_earlier_epoch_takes_no_place_when_a_removal_names_it(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``liars`` 1973, a ring of eight. A partition leaves P1, P2 (the liar), P3 and P7 on
    one side; P1 proposes to remove the other four's P0, P4 and P5, and P2 answers, then
    writes three more lines (seqs 4 to 6) and signs two versions of the last: L22 to its
    side, a backdated L19 that reaches P5. Healed, the change is decided with P2's cut at
    3: its seqs 4 to 6 are void everywhere, and P5, removed, calls positions past them
    stable. The next change removes P2; its answers name P2's entries up to seq 6 as
    they hold them, the void L22 among them. P5 used to show that version in place of
    its own void one, at position 38 of the 49 it had reported stable (SAFETY). A
    version a decision names now takes a place only if it is valid, judged as a
    delivery is: this one is above its author's cut in a closed epoch."""
    assert churn_explorer.main(["liars", "1973"]) == 0
    lines = capsys.readouterr().out.splitlines()
    verdicts = verdicts_of(lines)
    assert verdicts == {"1973": "OK"}, lines


def test_an_entry_an_answer_names_in_another_version_is_not_stable_while_the_removal_is_open(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``liars`` 221 with ten peers. The liar P2 signs two versions of its entry 2; one
    reaches P4 first, the other the rest. Every member proposes to remove P2, and P4's
    round is the one answered: P4's answer names its version of P2's entry 2, the
    others' name theirs, all as not stable, so the decision will cut P2 below entry 2.
    P4 quits before the decision. P8 then stopped counting P4's cover, the only one that
    named the other version, called its own version stable, and the decision voided it
    (SAFETY). An entry an answer to an open change names in another version than ours
    is now stable nowhere here until the change is decided or dead."""
    assert churn_explorer.main(["liars", "221", "--peers", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    verdicts = verdicts_of(lines)
    assert verdicts == {"221": "OK"}, lines


def test_the_answers_generator_has_the_liar_fork_a_membership_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``answers``: the liar signs a chat line with the seq of its next CHANGE, FLUSH or
    COMMIT and sends it first to some neighbours. In 15 it forks its CHANGE; the room
    proves it, removes it and converges."""
    assert churn_explorer.main(["answers", "15", "-v"]) == 0
    out = capsys.readouterr().out
    assert "P4 signs a chat line as its #13 too, not its CHANGE, first to P0,P2,P3" in out
    verdicts = verdicts_of(out.splitlines())
    assert verdicts == {"15": "OK"}, out


@pytest.mark.xfail(strict=True, reason="open (docs/equivocation.md, 'A fork of a membership entry')")
def test_an_honest_answer_to_a_forked_change_takes_the_same_place_everywhere(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """``answers`` 14 and 49: the liar forks its CHANGE with a chat line. An honest
    member's FLUSH answering the CHANGE is valid, and placed, where the CHANGE is the
    version shown, and invalid (it answers no change), so without a place, where the
    chat line is: honest replicas report different honest entries stable (SAFETY)."""
    churn_explorer.main(["answers", "14", "49"])
    lines = capsys.readouterr().out.splitlines()
    verdicts = verdicts_of(lines)
    assert verdicts == {"14": "OK", "49": "OK"}, lines
