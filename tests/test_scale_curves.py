"""benchmarks/scale_curves.py: the tables and the plot from measurements, on tiny sizes.

The numbers themselves are not checked (benchmarks measure, tests do not time
things): what is checked is that real runs produce every figure the tables ask
for, that medians and ranges land in the right cells, that saved results load
back, and that the picture is drawn (when matplotlib, the ``plot`` extra, is
installed).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from p2pchat.bench import BenchResult

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import scale_curves
from scale_curves import Measurement


def sample_results() -> dict[str, list[Measurement]]:
    sim = [
        Measurement(
            "sim",
            5,
            "p2pchat sim --peers 5",
            [
                {
                    "frames_per_message": 10.0,
                    "bytes_per_message": 4000.0,
                    "median_ms": 200.0,
                    "max_ms": 300.0,
                    "stable_median_ms": 1500.0,
                    "lost": 0,
                    "identical": True,
                    "wall_s": 1.0,
                    "memory_per_peer_kb": 100.0,
                    "load_1min": 1.0,
                },
                {
                    "frames_per_message": 12.0,
                    "bytes_per_message": 4400.0,
                    "median_ms": 220.0,
                    "max_ms": 310.0,
                    "stable_median_ms": 1600.0,
                    "lost": 0,
                    "identical": True,
                    "wall_s": 1.2,
                    "memory_per_peer_kb": 110.0,
                    "load_1min": 1.5,
                },
                {
                    "frames_per_message": 11.0,
                    "bytes_per_message": 4200.0,
                    "median_ms": 210.0,
                    "max_ms": 305.0,
                    "stable_median_ms": 1550.0,
                    "lost": 0,
                    "identical": True,
                    "wall_s": 1.1,
                    "memory_per_peer_kb": 105.0,
                    "load_1min": 2.0,
                },
            ],
        ),
        Measurement(
            "sim",
            25,
            "p2pchat sim --peers 25",
            [
                {
                    "frames_per_message": 40.0,
                    "bytes_per_message": 90000.0,
                    "median_ms": 400.0,
                    "max_ms": 500.0,
                    "stable_median_ms": 2500.0,
                    "lost": 1,
                    "identical": False,
                    "wall_s": 9.0,
                    "memory_per_peer_kb": 300.0,
                },
                {"error": "timed out", "elapsed_s": 30.0},
            ],
        ),
    ]
    bench = [
        Measurement(
            "bench",
            5,
            "p2pchat bench --peers 5 --topology line",
            [
                {
                    "delivered_per_s": 900.0,
                    "p50_ms": 12.0,
                    "max_ms": 40.0,
                    "bytes_per_delivery": 300.0,
                    "rss_mb": 60.0,
                    "lost": 0,
                },
            ],
        ),
    ]
    catchup = [
        Measurement(
            "catchup",
            10_000,
            "python benchmarks/catchup_bench.py --messages 10000",
            [{"messages_per_s": 21000.0}, {"messages_per_s": 25000.0}],
        )
    ]
    memory = [
        Measurement(
            "memory",
            10_000,
            "python benchmarks/memory_bench.py --counts 10000",
            [{"bytes_per_entry": 800.0, "rss_bytes_per_entry": 900.0}],
        )
    ]
    return {"sim": sim, "bench": bench, "catchup": catchup, "memory": memory}


def test_tables_show_the_median_and_the_range_over_runs() -> None:
    text = scale_curves.report(sample_results(), note="Produced by a test.")
    lines = text.splitlines()
    five = next(line for line in lines if line.startswith("| 5 | 3 |"))
    # frames/msg: median 11.0 of 10, 11, 12; identical logs in every run.
    assert "| 11.0 (10.0-12.0) |" in five and five.endswith("| yes |")
    assert "| 210 (200-220) |" in five  # median latency
    # A failed run is counted as such, and a run with differing logs says NO.
    twenty_five = next(line for line in lines if line.startswith("| 25 |"))
    assert "1 (1 failed)" in twenty_five and twenty_five.endswith("| NO |")
    assert "| 23,000 (21,000-25,000) |" in text  # catch-up messages/s
    for command in (
        "p2pchat sim --peers 5",
        "p2pchat bench --peers 5 --topology line",
        "catchup_bench.py --messages 10000",
        "memory_bench.py --counts 10000",
    ):
        assert command in text
    assert text.startswith("Produced by a test.")


def test_saved_results_load_back_the_same() -> None:
    results = sample_results()
    again = scale_curves.from_json(scale_curves.to_json(results))
    assert again == results
    assert scale_curves.report(again) == scale_curves.report(results)


def test_loading_several_saved_files_merges_them(tmp_path: Path) -> None:
    results = sample_results()
    first, second = tmp_path / "a.json", tmp_path / "b.json"
    first.write_text(scale_curves.to_json({"sim": results["sim"][1:]}))
    second.write_text(scale_curves.to_json({"sim": results["sim"][:1], "bench": results["bench"]}))
    merged = scale_curves.load([first, second])
    assert [m.size for m in merged["sim"]] == [5, 25] and merged["bench"] == results["bench"]


def test_the_printed_figures_of_the_other_benchmarks_are_understood() -> None:
    catchup = (
        "built and stored 10,000 signed messages in 1.2 s\n"
        "late joiner: 10,000 messages verified and delivered in 0.41 s, "
        "stored in 0.45 s -> 22,222 messages/s\n"
    )
    assert scale_curves.parse_catchup(catchup) == 22_222
    memory = (
        "   10,000 messages: log structures    300 B/message (tracemalloc), messages themselves   "
        "516 B, total    816 B per held message; RSS growth while inserting    -12 B/message; "
        "insert 350,000/s\n"
    )
    assert scale_curves.parse_memory(memory) == (816, -12)
    with pytest.raises(RuntimeError):
        scale_curves.parse_catchup("nothing useful")


def test_a_real_tiny_simulation_has_every_figure_the_table_shows() -> None:
    figures = scale_curves.run_sim_once(3, scale_curves.SimSettings(rate=20, duration=1))
    for _, key, _ in scale_curves.SIM_COLUMNS:
        assert key in figures, key
    assert figures["lost"] == 0 and figures["identical"] is True
    # And p2pchat bench's JSON has every figure the bench table shows.
    result = BenchResult(5, 10, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0, 0, 1.0)
    for _, key, _ in scale_curves.BENCH_COLUMNS:
        assert key in result.as_json(), key


def test_the_command_line_writes_the_tables_from_saved_results(tmp_path: Path) -> None:
    saved, markdown = tmp_path / "results.json", tmp_path / "scale.md"
    saved.write_text(scale_curves.to_json(sample_results()))
    assert scale_curves.main(["--load", str(saved), "--markdown", str(markdown)]) == 0
    assert "| 5 | 3 |" in markdown.read_text()


def test_the_plot_is_drawn_and_the_same_results_give_the_same_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    first, second = tmp_path / "a.svg", tmp_path / "b.svg"
    scale_curves.plot(sample_results(), first)
    scale_curves.plot(sample_results(), second)
    svg = first.read_text()
    assert "<svg" in svg and "Simulator latency" in svg
    assert svg == second.read_text()
    png = tmp_path / "c.png"
    scale_curves.plot({"sim": sample_results()["sim"]}, png)  # (panels without data stay empty)
    assert png.read_bytes().startswith(b"\x89PNG")
