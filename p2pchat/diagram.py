"""An SVG space-time diagram of a chat run: who wrote what, when it arrived where.

One horizontal lane per peer, time flowing to the right along a time axis. Each
message is a dot on its sender's lane at the moment it was written, labelled
``L3 bob`` (its Lamport stamp and author), the same words that find it in the
final order listed beside the lanes. An arrow runs from the dot to every other
peer's lane at the moment the message was first shown there; an arrival that had
to be inserted above a message already shown there (it arrived out of order) is
ringed in red. Concurrent messages are orange. A legend explains every mark, and
the image is as big as its content.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from html import escape

__all__ = ["Arrival", "Send", "render_svg"]

LEFT = 90
"""Room for the lane names."""
PLOT_WIDTH = 620
TOP = 96
"""Below the title and the legend."""
LINE_HEIGHT = 17
LIST_GAP = 36
CHAR_WIDTH = 6.6
"""About the width of one character at font-size 12 (sans-serif), to size the image."""
LIST_CHARS = 44
MIN_LANE_GAP = 56
AXIS_ROOM = 40
CONCURRENT = "#e67e22"
SEQUENTIAL = "#2c7fb8"
ARROW = "#999"
OUT_OF_ORDER = "#d62728"


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
    """Message ``send`` (an index into the sends) was first shown on ``lane`` at ``time``.

    ``out_of_order``: it was inserted above a message already shown there.
    """

    send: int
    lane: int
    time: float
    out_of_order: bool = False


def render_svg(
    lanes: list[str],
    sends: list[Send],
    arrivals: list[Arrival],
    final_order: list[int],
    title: str,
) -> str:
    """The diagram as an SVG document. ``final_order`` lists indices into ``sends``."""
    end = max([s.time for s in sends] + [a.time for a in arrivals] + [0.001])
    listing = [_order_line(position, sends[i], lanes) for position, i in enumerate(final_order)]
    list_height = LINE_HEIGHT * (len(listing) + 1)
    # Lanes share the height of the final-order list, so neither side is half empty.
    lane_gap = max(MIN_LANE_GAP, (list_height - AXIS_ROOM) / max(1, len(lanes)))

    def x(t: float) -> float:
        return LEFT + PLOT_WIDTH * t / end

    def y(lane: int) -> float:
        return TOP + 20 + lane_gap * lane

    axis_y = y(len(lanes) - 1) + 30
    list_x = LEFT + PLOT_WIDTH + LIST_GAP
    longest = max([len(text) for text in listing] + [36])
    width = math.ceil(list_x + CHAR_WIDTH * longest + 20)
    height = math.ceil(max(axis_y + AXIS_ROOM, TOP + list_height + 10))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        "<defs>",
        '<marker id="head" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="6" markerHeight="6" '
        f'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="{ARROW}"/></marker>',
        "</defs>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{LEFT}" y="24" font-size="15" font-weight="bold">{escape(title)}</text>',
        *_legend(),
    ]
    for lane, name in enumerate(lanes):
        lane_y = f"{y(lane):.1f}"
        parts.append(
            f'<line x1="{LEFT}" y1="{lane_y}" x2="{LEFT + PLOT_WIDTH}" y2="{lane_y}" stroke="#ccc"/>'
        )
        parts.append(f'<text x="{LEFT - 10}" y="{y(lane) + 4:.1f}" text-anchor="end">{escape(name)}</text>')
    parts.extend(_time_axis(end, x, axis_y))
    marks = []
    for arrival in arrivals:
        send = sends[arrival.send]
        colour = CONCURRENT if send.concurrent else ARROW
        parts.append(
            f'<line x1="{x(send.time):.1f}" y1="{y(send.lane):.1f}" x2="{x(arrival.time):.1f}" '
            f'y2="{y(arrival.lane):.1f}" stroke="{colour}" stroke-opacity="0.45" marker-end="url(#head)"/>'
        )
        if arrival.out_of_order:
            marks.append(
                f'<circle cx="{x(arrival.time):.1f}" cy="{y(arrival.lane):.1f}" r="6" fill="none" '
                f'stroke="{OUT_OF_ORDER}" stroke-width="1.5"/>'
            )
    parts.append(f'<g class="out-of-order">{"".join(marks)}</g>')
    parts.extend(_dots(sends, lanes, x, y))
    parts.append(
        f'<text x="{list_x}" y="{TOP - 8}" font-weight="bold">Final order (the same on every peer)</text>'
    )
    for position, index in enumerate(final_order):
        colour = CONCURRENT if sends[index].concurrent else "black"
        parts.append(
            f'<text x="{list_x}" y="{TOP + LINE_HEIGHT * (position + 1) - 4}" fill="{colour}">'
            f"{escape(listing[position])}</text>"
        )
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def _order_line(position: int, send: Send, lanes: list[str]) -> str:
    mark = " ∥" if send.concurrent else ""
    text = f"{position + 1:>2}. L{send.lamport} {lanes[send.lane]}: {send.label}{mark}"
    return text if len(text) <= LIST_CHARS else text[: LIST_CHARS - 1] + "…"


def _legend() -> list[str]:
    """One line of marks, each with its meaning (kept in a group: they are not data)."""
    y = 52
    items = [
        f'<circle cx="{LEFT + 5}" cy="{y - 4}" r="5" fill="{SEQUENTIAL}"/>'
        f'<text x="{LEFT + 14}" y="{y}">message written (L3 bob: stamp and author, as in the final '
        "order)</text>",
        f'<circle cx="{LEFT + 5}" cy="{y + 14}" r="5" fill="{CONCURRENT}"/>'
        f'<text x="{LEFT + 14}" y="{y + 18}">written concurrently (∥): neither author had seen the '
        "other</text>",
        f'<line x1="{LEFT + 440}" y1="{y - 4}" x2="{LEFT + 470}" y2="{y - 4}" stroke="{ARROW}" '
        f'marker-end="url(#head)"/><text x="{LEFT + 478}" y="{y}">first shown on another peer</text>',
        f'<circle cx="{LEFT + 465}" cy="{y + 14}" r="6" fill="none" stroke="{OUT_OF_ORDER}" '
        f'stroke-width="1.5"/><text x="{LEFT + 478}" y="{y + 18}">arrived out of order: inserted '
        "above a message already shown</text>",
    ]
    return [f'<g class="legend" fill="#333">{"".join(items)}</g>']


def _time_axis(end: float, x: Callable[[float], float], axis_y: float) -> list[str]:
    """A time axis under the lanes, ticks at a round step (seconds from the first write)."""
    step = _tick_step(end)
    parts = [f'<line x1="{LEFT}" y1="{axis_y}" x2="{LEFT + PLOT_WIDTH}" y2="{axis_y}" stroke="#555"/>']
    ticks = int(end / step + 1e-9)
    for k in range(ticks + 1):
        t = k * step
        parts.append(f'<line x1="{x(t):.1f}" y1="{axis_y}" x2="{x(t):.1f}" y2="{axis_y + 5}" stroke="#555"/>')
        label = f"{t:g} s" if step >= 1 else f"{t * 1000:g} ms"
        parts.append(
            f'<text x="{x(t):.1f}" y="{axis_y + 18}" text-anchor="middle" font-size="10" fill="#555">'
            f"{label}</text>"
        )
    parts.append(
        f'<text x="{LEFT - 10}" y="{axis_y + 4}" text-anchor="end" font-size="10" fill="#555">time</text>'
    )
    return parts


def _tick_step(end: float) -> float:
    """A round step (1, 2 or 5 times a power of ten) giving about 6-12 ticks over ``end``."""
    raw = end / 8
    power = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if factor * power >= raw:
            return float(factor * power)
    return float(10 * power)  # pragma: no cover - the loop always returns


def _dots(
    sends: list[Send], lanes: list[str], x: Callable[[float], float], y: Callable[[int], float]
) -> list[str]:
    """The dots, each labelled "L3 bob"; a label that would overlap the previous one on its
    lane goes below the lane instead of above it."""
    parts = []
    last_label: dict[int, tuple[float, bool]] = {}
    for send in sorted(sends, key=lambda s: (s.lane, s.time)):
        colour = CONCURRENT if send.concurrent else SEQUENTIAL
        label = f"L{send.lamport} {lanes[send.lane]}"
        cx, cy = x(send.time), y(send.lane)
        previous = last_label.get(send.lane)
        above = True
        if previous is not None and cx - previous[0] < CHAR_WIDTH * 0.8 * len(label) + 4:
            above = not previous[1]
        last_label[send.lane] = (cx, above)
        parts.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="5" fill="{colour}"/>')
        label_y = cy - 9 if above else cy + 17
        parts.append(
            f'<text x="{cx:.1f}" y="{label_y:.1f}" text-anchor="middle" font-size="10">{escape(label)}</text>'
        )
    return parts
