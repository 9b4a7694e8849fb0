"""Make the README's screenshots of the web UI: docs/web-chat.png and docs/web-demo.png.

Runs real peers (``p2pchat chat --json --web``) and ``p2pchat demo --web`` on
loopback and photographs their pages in Debian's Chromium:

    python docs/make_web_screenshots.py [--chromium /usr/bin/chromium]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from playwright.sync_api import sync_playwright

DOCS = Path(__file__).parent
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def p2pchat(*args: str) -> list[str]:
    return [sys.executable, "-m", "p2pchat.cli", *args]


def start_peer(name: str, data: Path, *extra: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    process = subprocess.Popen(
        p2pchat("chat", "--json", "--web", "--name", name, "--data", str(data), *extra),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    assert process.stdout is not None
    return process, json.loads(process.stdout.readline())


def say(process: subprocess.Popen[str], *lines: str) -> None:
    assert process.stdin is not None
    process.stdin.write("".join(f"{line}\n" for line in lines))
    process.stdin.flush()


def chat_screenshot(browser: Any, tmp: Path) -> None:
    alice, alice_ready = start_peer("alice", tmp / "alice", "--simulate-delay", "50-300")
    bob, bob_ready = start_peer(
        "bob", tmp / "bob", "--simulate-delay", "50-300", "--join", alice_ready["url"]
    )
    carol, _ = start_peer("carol", tmp / "carol", "--simulate-delay", "900-1400", "--join", bob_ready["url"])
    peers = [alice, bob, carol]
    try:
        page = browser.new_page(viewport={"width": 1100, "height": 520})
        page.goto(bob_ready["web"])
        page.wait_for_selector("#link.connected")
        time.sleep(1.5)
        say(alice, "lunch at noon?")
        time.sleep(1.5)
        say(bob, "+1")
        say(carol, "sounds good")
        time.sleep(2.5)
        say(alice, "the big room, <b>not</b> the small one")
        time.sleep(2.0)
        say(carol, "on my way")
        say(alice, "I'll bring snacks")
        page.fill("#text", "see you there")
        page.press("#text", "Enter")
        time.sleep(0.3)
        page.hover(".row.concurrent >> nth=0")
        page.screenshot(path=str(DOCS / "web-chat.png"))
        page.close()
    finally:
        for process in peers:
            process.terminate()
            process.wait(timeout=15)


def demo_screenshot(browser: Any) -> None:
    demo = subprocess.Popen(
        p2pchat("demo", "--web", "--peers", "4", "--messages", "4", "--seed", "7"),
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert demo.stdout is not None
        url = re.search(r"http://\S+", demo.stdout.readline())
        assert url
        page = browser.new_page(viewport={"width": 1400, "height": 560})
        page.goto(url.group(0))
        page.wait_for_selector("#verdict.ok", timeout=60_000)
        page.locator("#order li").nth(9).click()
        page.screenshot(path=str(DOCS / "web-demo.png"))
        page.close()
    finally:
        demo.send_signal(signal.SIGINT)
        demo.wait(timeout=15)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=args.chromium, args=ARGS)
        chat_screenshot(browser, Path(tmp))
        demo_screenshot(browser)
        browser.close()
    print(f"wrote {DOCS / 'web-chat.png'} and {DOCS / 'web-demo.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
