"""Scale curves: how p2pchat's figures grow with the number of peers and the history.

Runs, each ``--runs`` times:

* ``p2pchat sim`` (the deterministic simulator, one process) at 5, 10, 25 and 100
  peers (a room holds at most 256 members, so 1,000 is refused): frames and
  bytes per message, median and max latency to the last peer, median time until
  stable, lost messages, whether every log is identical, the run's wall time and
  the process's memory growth per simulated peer;
* ``p2pchat bench`` (real peer processes on loopback) at 5, 10 and 20 peers:
  delivered messages per second, median and max latency, bytes per delivery,
  peak RSS per peer, lost messages;
* ``catchup_bench.py`` (a late joiner pulling the history from a real peer) at
  10k, 100k and 1M messages: messages per second, verified and stored;
* ``memory_bench.py``: bytes per held entry of a log at those sizes.

It prints markdown tables (median of the runs, and the range over runs), can write
them with the commands that produced them to a markdown file, and draws the curves
into an SVG or PNG with matplotlib (``pip install -e '.[plot]'``). Raw results can
be saved as JSON and drawn again later without running anything.

    python benchmarks/scale_curves.py --quick                  # a minute or two
    python benchmarks/scale_curves.py --runs 3 --markdown docs/scale.md --plot docs/scale.svg
    python benchmarks/scale_curves.py --sim-peers 5 25 100 --no-bench --no-catchup --no-memory
    python benchmarks/scale_curves.py --load a.json b.json --markdown docs/scale.md --plot docs/scale.svg

Every measurement runs in its own process, one after the other, so that memory
figures belong to one run and runs do not compete for the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SIM_PEERS = [5, 10, 25, 100]
BENCH_PEERS = [5, 10, 20]
CATCHUP_SIZES = [10_000, 100_000, 1_000_000]
MEMORY_SIZES = [10_000, 100_000, 1_000_000]

QUICK_SIM_PEERS = [5, 10, 25]
QUICK_BENCH_PEERS = [5]
QUICK_CATCHUP_SIZES = [10_000]
QUICK_MEMORY_SIZES = [10_000]


@dataclass(frozen=True)
class SimSettings:
    latency_ms: float = 100.0
    rate: float = 100.0
    duration: float = 20.0
    seed: int = 1

    def command(self, peers: int) -> str:
        return (
            f"p2pchat sim --peers {peers} --latency {self.latency_ms:g} --rate {self.rate:g} "
            f"--duration {self.duration:g} --seed {self.seed}"
        )


@dataclass(frozen=True)
class BenchSettings:
    messages: int = 200
    topology: str = "auto"
    """``line``, ``random`` or ``auto``: a line below 20 peers, random from 20 on."""

    def topology_for(self, peers: int) -> str:
        if self.topology != "auto":
            return self.topology
        return "random" if peers >= 20 else "line"

    def command(self, peers: int) -> str:
        topology = self.topology_for(peers)
        return f"p2pchat bench --peers {peers} --topology {topology} --messages {self.messages}"


@dataclass
class Measurement:
    """One figure set of one kind at one size: a list of runs, each a dict of numbers."""

    kind: str
    """``sim``, ``bench``, ``catchup`` or ``memory``."""
    size: int
    command: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    def values(self, key: str) -> list[float]:
        return [float(run[key]) for run in self.runs if run.get(key) is not None]

    def median(self, key: str) -> float | None:
        values = self.values(key)
        return statistics.median(values) if values else None


# Running ------------------------------------------------------------------------


def run_sim_once(peers: int, settings: SimSettings) -> dict[str, Any]:
    """One simulator run in this process (called in a child process by :func:`measure_sim`)."""
    from p2pchat.sim_cli import simulate

    before = _rss_bytes()
    started, cpu = time.perf_counter(), time.process_time()
    report = simulate(
        peers=peers,
        latency_ms=settings.latency_ms,
        rate=settings.rate,
        duration=settings.duration,
        partition=False,
        seed=settings.seed,
    )
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    result: dict[str, Any] = asdict(report)
    result["wall_s"] = wall
    result["cpu_s"] = cpu
    result["memory_per_peer_kb"] = max(peak - before, 0) / peers / 1024
    result["peak_rss_mb"] = peak / 2**20
    return result


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def measure_sim(peers: int, settings: SimSettings, timeout: float) -> dict[str, Any]:
    argv = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--sim-child",
        json.dumps({"peers": peers, **asdict(settings)}),
    ]
    return _json_of(_run(argv, timeout))


def measure_bench(peers: int, settings: BenchSettings, timeout: float) -> dict[str, Any]:
    topology, messages = settings.topology_for(peers), str(settings.messages)
    argv = [sys.executable, "-m", "p2pchat.cli", "bench", "--peers", str(peers), "--json"]
    argv += ["--topology", topology, "--messages", messages]
    return _json_of(_run(argv, timeout))


CATCHUP_LINE = re.compile(r"-> ([\d,]+) messages/s")
MEMORY_LINE = re.compile(
    r"total\s+(\d+) B per held message; RSS growth while inserting\s+(-?\d+) B/message"
)


def measure_catchup(messages: int, timeout: float) -> dict[str, Any]:
    out = _run([sys.executable, str(HERE / "catchup_bench.py"), "--messages", str(messages)], timeout)
    return {"messages_per_s": parse_catchup(out)}


def measure_memory(count: int, timeout: float) -> dict[str, Any]:
    out = _run([sys.executable, str(HERE / "memory_bench.py"), "--counts", str(count)], timeout)
    total, rss = parse_memory(out)
    return {"bytes_per_entry": total, "rss_bytes_per_entry": rss}


def parse_catchup(output: str) -> float:
    found = CATCHUP_LINE.search(output)
    if found is None:
        raise RuntimeError(f"catchup_bench.py printed no rate:\n{output}")
    return float(found.group(1).replace(",", ""))


def parse_memory(output: str) -> tuple[float, float]:
    found = MEMORY_LINE.search(output)
    if found is None:
        raise RuntimeError(f"memory_bench.py printed no figures:\n{output}")
    return float(found.group(1)), float(found.group(2))


def _run(argv: list[str], timeout: float) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if done.returncode not in (0, 1):  # (sim and bench exit 1 when something was lost)
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return done.stdout


def _json_of(output: str) -> dict[str, Any]:
    for line in reversed(output.strip().splitlines()):
        if line.startswith("{"):
            result: dict[str, Any] = json.loads(line)
            return result
    raise RuntimeError(f"no JSON result in:\n{output}")


def collect(
    kind: str,
    sizes: Iterable[int],
    runs: int,
    command: Callable[[int], str],
    measure: Callable[[int], dict[str, Any]],
) -> list[Measurement]:
    results = []
    for size in sizes:
        measurement = Measurement(kind, size, command(size))
        for run in range(runs):
            print(f"{kind} {size:,} run {run + 1}/{runs}: {measurement.command}", file=sys.stderr, flush=True)
            started, load = time.perf_counter(), os.getloadavg()[0]
            try:
                figures = measure(size)
            except (RuntimeError, subprocess.TimeoutExpired) as error:
                print(f"  failed: {str(error).strip()[:500]}", file=sys.stderr)
                figures = {"error": str(error).strip().splitlines()[0][:200]}
            figures.setdefault("elapsed_s", time.perf_counter() - started)
            figures.setdefault("load_1min", load)
            measurement.runs.append(figures)
        results.append(measurement)
    return results


# Tables ------------------------------------------------------------------------

Column = tuple[str, str, str]
"""(heading, key in a run's figures, format of one number)."""

SIM_COLUMNS: list[Column] = [
    ("frames/msg", "frames_per_message", "{:.1f}"),
    ("bytes/msg", "bytes_per_message", "{:,.0f}"),
    ("median ms", "median_ms", "{:.0f}"),
    ("max ms", "max_ms", "{:.0f}"),
    ("stable median ms", "stable_median_ms", "{:.0f}"),
    ("lost", "lost", "{:.0f}"),
    ("wall s", "wall_s", "{:.1f}"),
    ("CPU s", "cpu_s", "{:.1f}"),
    ("KB/peer", "memory_per_peer_kb", "{:,.0f}"),
]
BENCH_COLUMNS: list[Column] = [
    ("delivered/s", "delivered_per_s", "{:,.0f}"),
    ("p50 ms", "p50_ms", "{:.1f}"),
    ("max ms", "max_ms", "{:.1f}"),
    ("bytes/delivery", "bytes_per_delivery", "{:,.0f}"),
    ("RSS MB/peer", "rss_mb", "{:.1f}"),
    ("lost", "lost", "{:.0f}"),
]
CATCHUP_COLUMNS: list[Column] = [
    ("messages/s", "messages_per_s", "{:,.0f}"),
    ("whole run s", "elapsed_s", "{:.0f}"),
]
MEMORY_COLUMNS: list[Column] = [
    ("B/entry (tracemalloc)", "bytes_per_entry", "{:,.0f}"),
    ("B/entry (RSS growth)", "rss_bytes_per_entry", "{:,.0f}"),
]
LOAD_COLUMN: Column = ("load (1 min)", "load_1min", "{:.1f}")
"""The machine's load average as each run began: the figures are only as quiet as it."""


def cell(measurement: Measurement, key: str, fmt: str) -> str:
    """The median of the runs, and ``(min-max)`` when the runs differ."""
    values = measurement.values(key)
    if not values:
        return "-"
    text = fmt.format(statistics.median(values))
    low, high = fmt.format(min(values)), fmt.format(max(values))
    return text if low == high else f"{text} ({low}-{high})"


def table(measurements: Sequence[Measurement], size_heading: str, columns: Sequence[Column]) -> str:
    """A markdown table: one row per size, one column per figure, plus the identical-logs
    check and the failures (when there are any)."""
    columns = [*columns, LOAD_COLUMN]
    headings = [size_heading, "runs", *(c[0] for c in columns)]
    has_identical = any("identical" in run for m in measurements for run in m.runs)
    if has_identical:
        headings.append("identical")
    lines = ["| " + " | ".join(headings) + " |", "|" + "|".join("---" for _ in headings) + "|"]
    for m in measurements:
        good = [run for run in m.runs if "error" not in run]
        failed = len(m.runs) - len(good)
        row = [f"{m.size:,}", f"{len(good)} ({failed} failed)" if failed else str(len(good))]
        row.extend(cell(m, key, fmt) for _, key, fmt in columns)
        if has_identical:
            flags = {run.get("identical") for run in good}
            row.append("yes" if flags == {True} else "-" if not flags else "NO")
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def commands_list(measurements: Sequence[Measurement]) -> str:
    return "\n".join(f"    {m.command}" for m in measurements)


def report(results: dict[str, list[Measurement]], note: str = "") -> str:
    """All tables as markdown, each followed by the commands behind it."""
    sections = [
        ("sim", "Simulator (`p2pchat sim`, virtual time, one process)", "peers", SIM_COLUMNS),
        ("bench", "Real processes on loopback (`p2pchat bench`)", "peers", BENCH_COLUMNS),
        ("catchup", "Late joiner catch-up (`benchmarks/catchup_bench.py`)", "history", CATCHUP_COLUMNS),
        ("memory", "Memory per held entry (`benchmarks/memory_bench.py`)", "entries", MEMORY_COLUMNS),
    ]
    parts = [note] if note else []
    for kind, title, heading, columns in sections:
        measurements = results.get(kind, [])
        if not measurements:
            continue
        body = table(measurements, heading, columns)
        parts.append(f"### {title}\n\n{body}\n\nCommands:\n\n{commands_list(measurements)}")
    parts.append("Each cell: median of the runs (range over the runs in brackets when they differ).")
    return "\n\n".join(parts) + "\n"


# Plot ------------------------------------------------------------------------------


def plot(results: dict[str, list[Measurement]], path: Path) -> None:
    """Four panels: simulator traffic, simulator latency, real-process throughput,
    catch-up rate and memory. Needs matplotlib (the ``plot`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Reproducible SVG: no date, fixed ids, so regenerating an unchanged figure changes nothing.
    plt.rcParams["svg.hashsalt"] = "p2pchat-scale"
    plt.rcParams["svg.fonttype"] = "none"  # text stays text: smaller, and searchable
    figure, axes = plt.subplots(2, 2, figsize=(11, 8))
    sim, bench = results.get("sim", []), results.get("bench", [])
    catchup, memory = results.get("catchup", []), results.get("memory", [])

    ax = axes[0][0]
    _curve(ax, sim, "frames_per_message", "frames per message", "o-")
    _curve(ax, sim, "bytes_per_message", "bytes per message / 1000", "s-", scale=1 / 1000)
    sizes = [m.size for m in sim]
    if sizes:
        ax.plot(sizes, sizes, ":", color="grey", label="= peers (reference)")
    _decorate(ax, "Simulator traffic (all peers)", "simulated peers", log=True)

    ax = axes[0][1]
    _curve(ax, sim, "median_ms", "median latency", "o-")
    _curve(ax, sim, "max_ms", "max latency", "^-")
    _curve(ax, sim, "stable_median_ms", "median time to stable", "s--")
    _decorate(ax, "Simulator latency to the last peer (ms)", "simulated peers", log=False, logx=True)

    ax = axes[1][0]
    _curve(ax, bench, "delivered_per_s", "delivered messages/s", "o-")
    _curve(ax, bench, "p50_ms", "p50 latency (ms)", "^--")
    _decorate(ax, "Real processes on loopback (p2pchat bench)", "peer processes", log=False, logy=True)

    ax = axes[1][1]
    _curve(ax, catchup, "messages_per_s", "catch-up messages/s", "o-")
    _curve(ax, memory, "bytes_per_entry", "bytes per held entry", "s--")
    _decorate(ax, "Late joiner catch-up and memory", "messages in the history", log=True)

    figure.tight_layout()
    metadata: dict[str, Any] = {"Date": None} if path.suffix == ".svg" else {}
    figure.savefig(path, metadata=metadata)
    plt.close(figure)


def _curve(
    ax: Any, measurements: Sequence[Measurement], key: str, label: str, style: str, scale: float = 1.0
) -> None:
    """Median points joined by a line, with the range over runs as error bars."""
    points = [(m.size, m.values(key)) for m in measurements if m.values(key)]
    if not points:
        return
    xs = [x for x, _ in points]
    mids = [statistics.median(v) * scale for _, v in points]
    lows = [mid - min(v) * scale for mid, (_, v) in zip(mids, points, strict=True)]
    highs = [max(v) * scale - mid for mid, (_, v) in zip(mids, points, strict=True)]
    ax.errorbar(xs, mids, yerr=[lows, highs], fmt=style, capsize=3, label=label)


def _decorate(ax: Any, title: str, xlabel: str, *, log: bool, logx: bool = False, logy: bool = False) -> None:
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    if log or logx:
        ax.set_xscale("log")
    if log or logy:
        ax.set_yscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)


# Saving and loading ------------------------------------------------------------------


def to_json(results: dict[str, list[Measurement]]) -> str:
    return json.dumps({kind: [asdict(m) for m in ms] for kind, ms in results.items()}, indent=1)


def from_json(text: str) -> dict[str, list[Measurement]]:
    raw = json.loads(text)
    return {kind: [Measurement(**m) for m in ms] for kind, ms in raw.items()}


def load(paths: Iterable[Path]) -> dict[str, list[Measurement]]:
    """Results saved by several runs of this script, merged (by kind, ordered by size)."""
    merged: dict[str, list[Measurement]] = {}
    for path in paths:
        for kind, measurements in from_json(path.read_text()).items():
            merged.setdefault(kind, []).extend(measurements)
    return {kind: sorted(ms, key=lambda m: m.size) for kind, ms in merged.items()}


# Command line ------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes, one run, 5 s of simulated sending (a check)"
    )
    parser.add_argument("--runs", type=int, default=3, help="repetitions of each measurement")
    parser.add_argument("--sim-peers", type=int, nargs="*", help=f"default {SIM_PEERS}")
    parser.add_argument("--bench-peers", type=int, nargs="*", help=f"default {BENCH_PEERS}")
    parser.add_argument("--catchup-sizes", type=int, nargs="*", help=f"default {CATCHUP_SIZES}")
    parser.add_argument("--memory-sizes", type=int, nargs="*", help=f"default {MEMORY_SIZES}")
    parser.add_argument("--no-sim", action="store_true")
    parser.add_argument("--no-bench", action="store_true")
    parser.add_argument("--no-catchup", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--duration", type=float, help="seconds of simulated sending (default 20)")
    parser.add_argument("--rate", type=float, default=100.0, help="simulated messages per second")
    parser.add_argument("--latency", type=float, default=100.0, help="simulated ms per hop")
    parser.add_argument("--bench-messages", type=int, default=200, help="messages per bench peer")
    parser.add_argument("--bench-topology", default="auto", choices=["auto", "line", "random"])
    parser.add_argument("--timeout", type=float, default=1800, help="seconds allowed per run")
    parser.add_argument("--save", type=Path, help="write the raw results as JSON")
    parser.add_argument(
        "--load", type=Path, nargs="+", help="read (and merge) results saved before instead of measuring"
    )
    parser.add_argument("--markdown", type=Path, help="write the tables to this file")
    parser.add_argument("--plot", type=Path, help="draw the curves into this .svg or .png")
    parser.add_argument("--sim-child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def measure_all(args: argparse.Namespace) -> dict[str, list[Measurement]]:
    quick = args.quick
    runs = 1 if quick and args.runs == 3 else args.runs
    sim = SimSettings(args.latency, args.rate, args.duration or (5.0 if quick else 20.0))
    bench_messages = 50 if quick and args.bench_messages == 200 else args.bench_messages
    bench = BenchSettings(messages=bench_messages, topology=args.bench_topology)

    def sizes(given: list[int] | None, full: list[int], small: list[int]) -> list[int]:
        return given if given is not None else small if quick else full

    results: dict[str, list[Measurement]] = {}
    if not args.no_sim:
        results["sim"] = collect(
            "sim",
            sizes(args.sim_peers, SIM_PEERS, QUICK_SIM_PEERS),
            runs,
            sim.command,
            lambda n: measure_sim(n, sim, args.timeout),
        )
    if not args.no_bench:
        results["bench"] = collect(
            "bench",
            sizes(args.bench_peers, BENCH_PEERS, QUICK_BENCH_PEERS),
            runs,
            bench.command,
            lambda n: measure_bench(n, bench, args.timeout),
        )
    if not args.no_catchup:
        results["catchup"] = collect(
            "catchup",
            sizes(args.catchup_sizes, CATCHUP_SIZES, QUICK_CATCHUP_SIZES),
            runs,
            lambda n: f"python benchmarks/catchup_bench.py --messages {n}",
            lambda n: measure_catchup(n, args.timeout),
        )
    if not args.no_memory:
        results["memory"] = collect(
            "memory",
            sizes(args.memory_sizes, MEMORY_SIZES, QUICK_MEMORY_SIZES),
            runs,
            lambda n: f"python benchmarks/memory_bench.py --counts {n}",
            lambda n: measure_memory(n, args.timeout),
        )
    return results


MARKDOWN_TITLE = """# Scale curves

Written by `benchmarks/scale_curves.py` (see `benchmarks/README.md`); the picture is
`scale.svg` next to this file. Figures depend on the machine and on its load: the
load column is the machine's 1-minute load average as each run began.

"""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.sim_child is not None:
        settings = json.loads(args.sim_child)
        peers = settings.pop("peers")
        print(json.dumps(run_sim_once(peers, SimSettings(**settings))))
        return 0
    results = load(args.load) if args.load is not None else measure_all(args)
    if args.save is not None:
        args.save.write_text(to_json(results) + "\n")
    shown = " ".join(sys.argv[1:]) if argv is None else " ".join(argv)
    text = report(results, note=f"Produced by `python benchmarks/scale_curves.py {shown}`.")
    print(text)
    if args.markdown is not None:
        args.markdown.write_text(MARKDOWN_TITLE + text)
    if args.plot is not None:
        plot(results, args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
