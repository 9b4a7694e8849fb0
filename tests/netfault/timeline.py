"""A picture of a run (SVG, no dependencies): faults as bands, and per message its
delivery latency and its tentative-to-stable time.

Top: one lane per peer, time to the right; a band where a fault touched that peer
(partitions colour every peer they cut, by side). Below, two plots on the same time
axis, one dot per accepted message at the moment its author showed it: the time until
the last peer showed it (delivery), and until the last peer held it stable. Heals are
dashed vertical lines through all three.
"""

from __future__ import annotations

import math
from html import escape
from pathlib import Path
from typing import Any

from .checker import Report

WIDTH, LEFT, RIGHT = 1200, 70, 20
LANE = 22
PLOT = 160
COLOURS = {
    "majority": "#e4572e",
    "isolate": "#f3a712",
    "bridge": "#a8c686",
    "ring": "#669bbc",
    "slow": "#b388eb",
    "pause": "#8d6a9f",
    "crash": "#222222",
    "clock": "#29335c",
}


def draw(records: list[dict[str, Any]], report: Report, path: Path) -> Path:
    size = next((r["peers"] for r in records if r["type"] == "run"), 0)
    end = max((r["t"] for r in records), default=1.0)
    scale = (WIDTH - LEFT - RIGHT) / max(end, 1.0)

    def x(t: float) -> float:
        return LEFT + t * scale

    parts: list[str] = []
    top = 30
    lanes_height = size * LANE
    for peer in range(size):
        y = top + peer * LANE
        parts.append(f'<text x="{LEFT - 8}" y="{y + 15}" text-anchor="end">p{peer}</text>')
        parts.append(
            f'<line x1="{LEFT}" y1="{y + LANE / 2}" x2="{WIDTH - RIGHT}" y2="{y + LANE / 2}" stroke="#ddd"/>'
        )
    heals: list[float] = []
    for start in (r for r in records if r["type"] == "fault" and r["phase"] == "start"):
        finish = next(
            (
                r["t"]
                for r in records
                if r["type"] == "fault"
                and r["phase"] == "end"
                and r["fault"] == start["fault"]
                and r["t"] >= start["t"]
            ),
            end,
        )
        kind = start["fault"]
        colour = COLOURS.get(kind, "#999")
        touched = _touched(start, size)
        # A clock jump runs alongside other faults: a thin strip under the lane's band.
        offset, height = (LANE - 5, 4) if kind == "clock" else (3, LANE - 8)
        for peer, opacity in touched.items():
            y = top + peer * LANE + offset
            parts.append(
                f'<rect x="{x(start["t"]):.1f}" y="{y}" '
                f'width="{max(1.0, (finish - start["t"]) * scale):.1f}" '
                f'height="{height}" fill="{colour}" fill-opacity="{opacity}"><title>{escape(kind)} '
                f"{escape(start.get('jump', ''))} {start['t']:.1f}-{finish:.1f} s</title></rect>"
            )
        label_peer = min(touched) if touched else 0
        label = f"{kind} {start.get('jump', '')}" if kind == "clock" else kind
        colour_text, label_y = ("black", LANE + 8) if kind == "clock" else ("white", 14)
        parts.append(
            f'<text x="{x(start["t"]) + 2:.1f}" y="{top + label_peer * LANE + label_y}" font-size="10" '
            f'fill="{colour_text}">{escape(label)}</text>'
        )
        if kind != "clock":
            heals.append(finish)
    for record in records:
        if record["type"] == "exit" and record["cause"] != "stopped":
            y = top + record["peer"] * LANE + LANE / 2
            parts.append(f'<text x="{x(record["t"]):.1f}" y="{y + 4}" font-size="12" fill="red">✕</text>')

    latency = list(report.latency.values())
    delivery_top = top + lanes_height + 40
    stable_top = delivery_top + PLOT + 40
    for title, plot_top, column, colour in (
        ("delivery latency (last peer to show it)", delivery_top, 1, "#1f77b4"),
        ("tentative to stable (last peer)", stable_top, 2, "#2ca02c"),
    ):
        values = [value for value in (v[column] for v in latency) if value is not None]
        top_value = max([1.0, *values])
        ceiling = 10 ** math.ceil(math.log10(top_value))

        def to_y(value: float, plot_top: float = plot_top, ceiling: float = ceiling) -> float:
            # Log scale from 10 ms to the ceiling: most values are small, a few are the story.
            low = math.log10(0.01)
            fraction = (math.log10(max(value, 0.01)) - low) / (math.log10(ceiling) - low)
            return plot_top + PLOT - fraction * PLOT

        parts.append(f'<text x="{LEFT}" y="{plot_top - 8}" font-weight="bold">{escape(title)}</text>')
        parts.append(
            f'<rect x="{LEFT}" y="{plot_top}" width="{WIDTH - LEFT - RIGHT}" height="{PLOT}" '
            'fill="none" stroke="#ccc"/>'
        )
        tick = 0.01
        while tick <= ceiling:
            parts.append(
                f'<text x="{LEFT - 6}" y="{to_y(tick) + 4:.1f}" text-anchor="end" '
                f'font-size="10">{tick:g} s</text>'
            )
            parts.append(
                f'<line x1="{LEFT}" y1="{to_y(tick):.1f}" x2="{WIDTH - RIGHT}" '
                f'y2="{to_y(tick):.1f}" stroke="#eee"/>'
            )
            tick *= 10
        for accepted, *measures in latency:
            value = measures[column - 1]
            if value is None:
                parts.append(
                    f'<text x="{x(accepted):.1f}" y="{plot_top + 10}" font-size="9" fill="red">?</text>'
                )
            else:
                parts.append(
                    f'<circle cx="{x(accepted):.1f}" cy="{to_y(value):.1f}" r="1.6" fill="{colour}"/>'
                )
    bottom = stable_top + PLOT
    for healed in heals:
        parts.append(
            f'<line x1="{x(healed):.1f}" y1="{top}" x2="{x(healed):.1f}" y2="{bottom}" '
            'stroke="#555" stroke-dasharray="3,3"/>'
        )
    second = 10 if end > 60 else 5
    if end > 300:
        second = 60
    t = 0.0
    while t <= end:
        parts.append(
            f'<text x="{x(t):.1f}" y="{bottom + 16}" text-anchor="middle" font-size="10">{t:.0f} s</text>'
        )
        t += second
    legend = " · ".join(f'<tspan fill="{c}">■</tspan> {k}' for k, c in COLOURS.items())
    verdict = "OK" if report.ok else f"{len(report.violations)} violations"
    header = f"p2pchat nemesis run: {size} peers, {report.counts.get('accepted', 0)} messages, {verdict}"
    height = bottom + 50
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'font-family="sans-serif" font-size="12">\n<rect width="100%" height="100%" fill="white"/>\n'
        f'<text x="{LEFT}" y="18" font-weight="bold">{escape(header)}</text>\n'
        f'<text x="{LEFT}" y="{bottom + 40}" font-size="11">{legend} · dashed: heal · ✕: killed</text>\n'
        + "\n".join(parts)
        + "\n</svg>\n"
    )
    path.write_text(svg, encoding="utf-8")
    return path


def _touched(fault: dict[str, Any], size: int) -> dict[int, float]:
    """The peers a fault concerns, with an opacity per side of a partition."""
    if "cut" not in fault:
        return {peer: 0.85 for peer in fault["peers"][:1]}
    cut = {tuple(pair) for pair in fault["cut"]}
    blocked = {peer for pair in cut for peer in pair}
    # Peers that still reach each other share a side; sides differ in opacity.
    sides: list[set[int]] = []
    for peer in sorted(blocked):
        for side in sides:
            if all((peer, other) not in cut for other in side):
                side.add(peer)
                break
        else:
            sides.append({peer})
    return {peer: 0.9 - 0.45 * (i % 2) for i, side in enumerate(sides) for peer in side}
