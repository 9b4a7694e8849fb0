"""How long the chat page takes to show a new message, measured in the browser.

Two real peers (``p2pchat chat --json --web`` processes on loopback) and one
page on each, in Debian's Chromium. For each of N messages the script types the
text into the first page and submits it, taking ``performance.timeOrigin +
performance.now()`` on that page at the submit; a MutationObserver on each page
takes the same clock when the row with that text enters the DOM (the frame
that paints it). Messages go one at a time, each after the last was shown on
both pages. Printed: p50, p99 and max, for the page that sent the message
(page -> its peer -> page) and for the other peer's page (plus one gossip hop).

    python benchmarks/web_latency.py                 # 200 messages
    python benchmarks/web_latency.py --messages 500 --chromium /usr/bin/chromium
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import Page, sync_playwright

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

OBSERVE = """() => {
    window.__seen = new Map();
    const clock = () => performance.timeOrigin + performance.now();
    new MutationObserver(() => {
        const now = clock();
        for (const text of document.querySelectorAll("#rows .row .text")) {
            if (!window.__seen.has(text.textContent)) window.__seen.set(text.textContent, now);
        }
    }).observe(document.getElementById("rows"), {childList: true});
}"""

SEND = """text => {
    const input = document.getElementById("text");
    input.value = text;
    const started = performance.timeOrigin + performance.now();
    document.getElementById("compose").requestSubmit();
    return started;
}"""


def start_peer(name: str, data: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "p2pchat.cli",
            "chat",
            "--json",
            "--web",
            "--name",
            name,
            "--data",
            str(data),
            *extra,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    ready = json.loads(process.stdout.readline())
    return process, ready


def shown_at(page: Page, text: str) -> float:
    page.wait_for_function("text => window.__seen.has(text)", arg=text, timeout=30_000)
    return float(page.evaluate("text => window.__seen.get(text)", text))


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=200)
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        alice, alice_ready = start_peer("alice", Path(tmp) / "alice")
        bob, bob_ready = start_peer("bob", Path(tmp) / "bob", "--join", alice_ready["url"])
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=args.chromium, args=ARGS)
                pages = []
                for ready in (alice_ready, bob_ready):
                    page = browser.new_page()
                    page.goto(ready["web"])
                    page.wait_for_selector("#link.connected")
                    page.evaluate(OBSERVE)
                    pages.append(page)
                own: list[float] = []
                other: list[float] = []
                started = time.monotonic()
                for i in range(args.messages):
                    text = f"latency probe {i}"
                    sent = float(pages[0].evaluate(SEND, text))
                    own.append(shown_at(pages[0], text) - sent)
                    other.append(shown_at(pages[1], text) - sent)
                elapsed = time.monotonic() - started
                browser.close()
        finally:
            for process in (alice, bob):
                process.terminate()
                process.wait(timeout=15)
    print(f"{args.messages} messages, one at a time, {elapsed:.1f} s")
    for label, values in (("sender's own page", own), ("the other peer's page", other)):
        print(
            f"  {label:<22} p50 {percentile(values, 50):6.1f} ms   p99 {percentile(values, 99):6.1f} ms   "
            f"max {max(values):6.1f} ms   mean {statistics.fmean(values):6.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
