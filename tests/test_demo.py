"""The multi-peer demo: its verdict, its table and its space-time diagram."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import trio

from p2pchat.demo import _node_config, run_demo
from p2pchat.diagram import Arrival, Send, render_svg
from p2pchat.node import NodeConfig

SVG = "{http://www.w3.org/2000/svg}"
ORDER_LINE = re.compile(r"\s*\d+\. L\d+ ")


async def test_demo_peers_agree_and_the_diagram_shows_every_message(tmp_path: Path) -> None:
    out = io.StringIO()
    diagram = tmp_path / "run.svg"
    with trio.fail_after(60):
        result = await run_demo(
            peers=3, messages=3, topology="line", delay_ms=(5, 40), seed=3, diagram=diagram, out=out
        )
    assert result.identical and result.messages == 9
    assert {row["held"] for row in result.rows} == {9}  # chat lines
    # Besides them, the same membership entries everywhere: at least the genesis and an
    # admission for each of the two others.
    (entries,) = {row["entries"] for row in result.rows}
    assert entries >= 9 + 3
    assert len({row["digest"] for row in result.rows}) == 1
    text = out.getvalue()
    assert "VERDICT: OK" in text and result.digest in text
    root = ET.parse(diagram).getroot()
    assert root.tag == f"{SVG}svg"
    dots = root.findall(f"{SVG}circle")
    assert len(dots) == 9  # one dot per message written
    arrows = [line for line in root.findall(f"{SVG}line") if line.get("marker-end")]
    assert len(arrows) == 9 * 2  # each message first shown on the two other peers
    listing = [t.text for t in root.findall(f"{SVG}text") if t.text and ORDER_LINE.match(t.text)]
    assert len(listing) == 9  # the final order, beside the lanes


async def test_demo_with_loss_still_agrees() -> None:
    with trio.fail_after(90):
        result = await run_demo(
            peers=4, messages=2, topology="ring", delay_ms=(5, 30), loss=0.2, seed=5, out=io.StringIO()
        )
    assert result.identical


def test_diagram_marks_concurrent_messages_and_lists_the_final_order() -> None:
    sends = [Send(0, 0.1, 1, "a <b>", True), Send(1, 0.1, 1, "b", True), Send(0, 0.5, 2, "after", False)]
    arrivals = [Arrival(0, 1, 0.2), Arrival(1, 0, 0.25), Arrival(2, 1, 0.6)]
    svg = render_svg(["alice", "bob"], sends, arrivals, [0, 1, 2], "title & more")
    root = ET.fromstring(svg)  # well-formed, text escaped
    fills = [c.get("fill") for c in root.findall(f"{SVG}circle")]  # the dots (not the legend's)
    assert fills.count("#e67e22") == 2 and len(fills) == 3
    listing = [t.text for t in root.iter(f"{SVG}text") if t.text and ORDER_LINE.match(t.text)]
    assert listing[0].strip() == "1. L1 alice: a <b> ∥" and listing[2].strip() == "3. L2 alice: after"


def test_diagram_labels_dots_as_the_final_order_does_and_explains_every_mark() -> None:
    sends = [Send(0, 0.1, 1, "first", False), Send(1, 0.3, 2, "second", False)]
    arrivals = [Arrival(0, 1, 0.2), Arrival(1, 0, 0.9, out_of_order=True)]
    root = ET.fromstring(render_svg(["alice", "bob"], sends, arrivals, [0, 1], "t"))
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    # Each dot's label is how its line in the final order starts (after the position).
    for label in ("L1 alice", "L2 bob"):
        assert label in texts
        assert any(ORDER_LINE.match(t) and t.split(". ", 1)[1].startswith(label) for t in texts)
    legend = " ".join(t.text or "" for t in root.iter(f"{SVG}text") if t in list(_group(root, "legend")))
    for meaning in ("message written", "concurrently", "first shown on another peer", "out of order"):
        assert meaning in legend
    rings = list(_group(root, "out-of-order").iter(f"{SVG}circle"))
    assert len(rings) == 1  # only the arrival inserted above something already shown
    assert any(t.endswith(" ms") or t.endswith(" s") for t in texts)  # a time axis
    width, height = float(root.get("width", 0)), float(root.get("height", 0))
    assert width < 1200 and height < 400  # sized to what it shows


def _group(root: ET.Element, name: str) -> ET.Element:
    return next(g for g in root.iter(f"{SVG}g") if g.get("class") == name)


async def test_demo_diagram_marks_the_arrivals_that_came_out_of_order(tmp_path: Path) -> None:
    out = io.StringIO()
    diagram = tmp_path / "run.svg"
    with trio.fail_after(60):
        result = await run_demo(
            peers=4, messages=3, topology="ring", delay_ms=(5, 80), seed=11, diagram=diagram, out=out
        )
    rings = list(_group(ET.parse(diagram).getroot(), "out-of-order").iter(f"{SVG}circle"))
    # The table counts inserted-above deliveries on every peer; the diagram rings those on
    # other peers' lanes (own messages always arrive last, never out of order).
    assert len(rings) == sum(row["inserted_above"] for row in result.rows)


def test_demo_command_exits_zero_with_a_verdict(tmp_path: Path) -> None:
    diagram = tmp_path / "demo.svg"
    done = subprocess.run(
        [sys.executable, "-m", "p2pchat.cli", "demo", "--peers", "3", "--messages", "2",
         "--delay", "5-30", "--seed", "1", "--diagram", str(diagram)],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "VERDICT: OK" in done.stdout
    assert diagram.read_text().startswith("<svg")


def test_demo_refuses_a_bad_delay() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "p2pchat.cli", "demo", "--delay", "9-3"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "MIN" in done.stderr


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


async def test_demo_progress_line_is_cleared_before_what_follows() -> None:
    out = _Terminal()
    with trio.fail_after(60):
        await run_demo(peers=3, messages=2, topology="line", delay_ms=(5, 20), seed=2, out=out)
    text = out.getvalue()
    assert "\r" in text  # progress was shown, rewriting one line
    for line in text.split("\n"):
        # What stays visible on a line is what follows its last carriage return.
        visible = line.rsplit("\r", 1)[-1].replace("\x1b[K", "")
        assert "round " not in visible and "stable [" not in visible, repr(line)


async def test_demo_admits_every_peer_before_writing() -> None:
    out = io.StringIO()
    with trio.fail_after(60):
        result = await run_demo(peers=3, messages=1, topology="line", delay_ms=(5, 20), seed=6, out=out)
    assert result.identical
    assert "3 of 3 peers admitted" in out.getvalue()


def test_demo_under_loss_repairs_on_shorter_timers_than_a_reliable_link_needs() -> None:
    default, lossless, lossy = NodeConfig(), _node_config(0.0), _node_config(0.3)
    assert (lossless.anti_entropy_interval, lossless.keepalive_interval) == (
        default.anti_entropy_interval,
        default.keepalive_interval,
    )
    assert lossy.anti_entropy_interval <= 0.5 < default.anti_entropy_interval
    assert lossy.keepalive_interval <= 1.0 < default.keepalive_interval


async def test_a_seed_fixes_the_peers_ids_and_the_script() -> None:
    async def run(seed: int) -> tuple[list[str], list[str]]:
        out = io.StringIO()
        with trio.fail_after(60):
            result = await run_demo(
                peers=3, messages=2, topology="line", delay_ms=(5, 20), seed=seed, out=out
            )
        assert result.identical
        lines = out.getvalue().splitlines()
        ids = [line.split(" id ")[1] for line in lines if " id " in line]
        return ids, [line for line in lines if "rounds of writing" in line]

    first, again, other = await run(8), await run(8), await run(9)
    assert len(first[0]) == 3 and first == again
    assert set(first[0]).isdisjoint(other[0])
