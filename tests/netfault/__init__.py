"""Real network faults for p2pchat: namespaced peers, a nemesis and a checker.

Each peer is a real ``p2pchat chat --json`` process in its own Linux network
namespace (:mod:`.netns`); a seeded nemesis (:mod:`.nemesis`) partitions the
network silently, slows a link, pauses, kills and restarts processes and moves a
peer's wall clock while clients keep typing (:mod:`.cluster`); afterwards a
checker (:mod:`.checker`) reads the recorded history and a timeline picture is
drawn from it (:mod:`.timeline`). Needs root; ``python -m tests.netfault --help``
runs it by hand, ``tests/test_netfault.py`` in the test suite.
"""
