"""An SVG space-time diagram of a chat run: who wrote what, when it arrived where.

One horizontal lane per peer, time flowing to the right. Each message is a dot
on its sender's lane at the moment it was written, labelled with its Lamport
stamp; an arrow runs from there to every other peer's lane at the moment the
message was first shown there. Concurrent messages are drawn in orange. The
final order, identical on every peer, is listed beside the lanes.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

__all__ = ["Arrival", "Send", "render_svg"]

LANE_GAP = 70
TOP = 60
LEFT = 90
PLOT_WIDTH = 760
LIST_X = LEFT + PLOT_WIDTH + 40
LINE_HEIGHT = 17
CONCURRENT = "#e67e22"
SEQUENTIAL = "#2c7fb8"


@dataclass(frozen=True)
class Send:
    """A message written by ``lane`` at ``time`` (seconds from the start)."""

    lane: int
    time: float
    lamport: int
    label: str
    concurrent: bool


@dataclass(frozen=True)
class Arrival:
    """Message ``send`` (an index into the sends) was first shown on ``lane`` at ``time``."""

    send: int
    lane: int
    time: float


def render_svg(
    lanes: list[str],
    sends: list[Send],
    arrivals: list[Arrival],
    final_order: list[int],
    title: str,
) -> str:
    """The diagram as an SVG document. ``final_order`` lists indices into ``sends``."""
    end = max([s.time for s in sends] + [a.time for a in arrivals] + [0.001])

    def x(t: float) -> float:
        return LEFT + PLOT_WIDTH * t / end

    def y(lane: int) -> float:
        return TOP + LANE_GAP * lane

    lanes_bottom = y(len(lanes) - 1) + 40
    list_bottom = TOP + LINE_HEIGHT * (len(final_order) + 1)
    height = max(lanes_bottom + 40, list_bottom + 20)
    width = LIST_X + 330
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height:.0f}" '
        f'viewBox="0 0 {width} {height:.0f}" font-family="sans-serif" font-size="12">',
        "<defs>",
        '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#888"/></marker>',
        "</defs>",
        f'<rect width="{width}" height="{height:.0f}" fill="white"/>',
        f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{escape(title)}</text>',
        f'<text x="{LEFT}" y="42" fill="#555">time →  (dot: a message written, labelled with its '
        f"Lamport stamp; arrow: first shown on another peer; "
        f'<tspan fill="{CONCURRENT}">orange</tspan>: concurrent)</text>',
    ]
    for lane, name in enumerate(lanes):
        parts.append(
            f'<line x1="{LEFT}" y1="{y(lane)}" x2="{LEFT + PLOT_WIDTH}" y2="{y(lane)}" stroke="#ccc"/>'
        )
        parts.append(f'<text x="{LEFT - 10}" y="{y(lane) + 4}" text-anchor="end">{escape(name)}</text>')
    for arrival in arrivals:
        send = sends[arrival.send]
        colour = CONCURRENT if send.concurrent else "#999"
        parts.append(
            f'<line x1="{x(send.time):.1f}" y1="{y(send.lane)}" x2="{x(arrival.time):.1f}" '
            f'y2="{y(arrival.lane)}" stroke="{colour}" stroke-opacity="0.45" marker-end="url(#head)"/>'
        )
    for send in sends:
        colour = CONCURRENT if send.concurrent else SEQUENTIAL
        parts.append(f'<circle cx="{x(send.time):.1f}" cy="{y(send.lane)}" r="5" fill="{colour}"/>')
        parts.append(
            f'<text x="{x(send.time):.1f}" y="{y(send.lane) - 9}" text-anchor="middle" '
            f'font-size="10">{send.lamport}</text>'
        )
    parts.append(
        f'<text x="{LIST_X}" y="{TOP - 8}" font-weight="bold">Final order (the same on every peer)</text>'
    )
    for position, index in enumerate(final_order):
        send = sends[index]
        colour = CONCURRENT if send.concurrent else "black"
        mark = " ∥" if send.concurrent else ""
        text = f"{position + 1:>2}. L{send.lamport} {lanes[send.lane]}: {send.label}{mark}"
        parts.append(
            f'<text x="{LIST_X}" y="{TOP + LINE_HEIGHT * (position + 1) - 4}" fill="{colour}">'
            f"{escape(text[:48])}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
