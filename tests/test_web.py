"""The web UI in a real browser: Debian's Chromium driven by Playwright.

Peers run as real ``p2pchat chat --json --web`` processes (the ``web`` key of
their ``ready`` event is the page's URL); the pages are the shipped HTML and
JavaScript, unchanged. The tests are plain synchronous tests: Playwright's sync
API runs its own event loop, which must not meet pytest-trio's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from test_cli import ChatProcess, command, environment
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

playwright_sync = pytest.importorskip("playwright.sync_api")
Page = playwright_sync.Page
expect = playwright_sync.expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
TIMEOUT_MS = 20_000


@pytest.fixture(scope="session")
def browser_type_launch_args() -> dict[str, Any]:
    """pytest-playwright launches this Chromium (Playwright's own download cannot work here)."""
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail("Chromium is missing: .ci/run should have installed it")
        pytest.skip("Chromium is not installed (apt-get install -y chromium)")
    return {"executable_path": CHROMIUM, "args": CHROMIUM_ARGS}


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[str], Page]]:
    """Pages that fail the test on any JavaScript error (and on any alert)."""
    contexts: list[Any] = []
    problems: list[str] = []

    def open_(url: str) -> Page:
        context = browser.new_context(viewport={"width": 1100, "height": 700})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
        page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
        page.on(
            "console",
            lambda message: "Content Security Policy" in message.text and problems.append(message.text),
        )
        page.goto(url)
        expect(page.locator("#link")).to_have_class("connected")
        return page

    yield open_
    for context in contexts:
        context.close()
    assert not problems, problems


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., ChatProcess]]:
    """``p2pchat chat --json`` processes, killed at the end if still running."""
    started: list[ChatProcess] = []

    def start(name: str, *extra: str) -> ChatProcess:
        process = ChatProcess(tmp_path, name, *extra)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
    # Pages came and went (their fixture closes them first): no peer may have complained.
    for process in started:
        assert "Traceback" not in "".join(process.stderr), "".join(process.stderr)


def web_peer(spawn: Callable[..., ChatProcess], name: str, *extra: str) -> ChatProcess:
    peer = spawn(name, "--web", *extra)
    assert str(peer.ready["web"]).startswith("http://127.0.0.1:"), peer.ready
    return peer


def fed_page(spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page], script: str) -> Page:
    """The page of a fresh peer, after ``script`` (run in the page) fed it objects of the
    ``chat --json`` contract through window.p2pchat.receive."""
    page = open_page(web_peer(spawn, "alice").ready["web"])
    page.evaluate(script)
    return page


def type_message(page: Page, text: str) -> None:
    page.fill("#text", text)
    page.press("#text", "Enter")


def row_with(page: Page, text: str) -> Any:
    exactly = re.compile(f"^{re.escape(text)}$")
    return page.locator(".row.message", has=page.locator(".text", has_text=exactly))


def shown_order(page: Page) -> list[tuple[str, int]]:
    """(sender, seq) of the rows on screen, in their order."""
    rows = page.eval_on_selector_all(
        ".row", "rows => rows.map(r => [Number(r.dataset.index), r.dataset.sender, Number(r.dataset.seq)])"
    )
    return [(sender, seq) for _, sender, seq in sorted(rows)]


def test_two_peers_two_pages_type_in_one_read_in_the_other(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    alice = web_peer(spawn, "alice")
    bob = web_peer(spawn, "bob", "--join", alice.url)
    alice_page, bob_page = open_page(alice.ready["web"]), open_page(bob.ready["web"])
    expect(alice_page.locator("#share-url")).to_have_value(alice.url)

    type_message(alice_page, "hello bob, from a browser")
    line = row_with(bob_page, "hello bob, from a browser")
    expect(line).to_be_visible()
    expect(line.locator(".name")).to_have_text("alice")
    type_message(bob_page, "hi alice")
    expect(row_with(alice_page, "hi alice")).to_be_visible()
    # What the page sent went through the peer like a stdin line: --json shows it too.
    bob.wait_for(lambda e: e["event"] == "message" and e["text"] == "hello bob, from a browser")
    bob_entry = alice_page.locator(f'#members li[data-peer="{bob.ready["peer_id"]}"]')
    expect(bob_entry).to_contain_text("bob")
    expect(bob_entry).to_contain_text("connected here")
    expect(alice_page.locator("#text")).to_have_value("")


def test_commands_typed_on_the_page_are_not_sent_as_messages(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    alice = web_peer(spawn, "alice")
    page = open_page(alice.ready["web"])
    type_message(page, "/leave")
    expect(page.locator("#errors")).to_contain_text("/leave works in the chat this page belongs to")
    type_message(page, "/leeve")
    expect(page.locator("#errors")).to_contain_text("unknown command /leeve")
    type_message(page, "/invite")
    expect(page.locator("#errors")).to_contain_text("invite (one newcomer, 24 h): ws://127.0.0.1:")
    type_message(page, "//leave is text")
    expect(row_with(page, "/leave is text")).to_be_visible()
    assert [m["text"] for m in alice.wait_messages(1)] == ["/leave is text"]  # (the only one sent)


def test_three_delayed_peers_end_in_one_order_and_every_line_turns_stable(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    delay = ("--simulate-delay", "30-250")
    alice = web_peer(spawn, "alice", *delay)
    bob = web_peer(spawn, "bob", *delay, "--join", alice.url)
    carol = web_peer(spawn, "carol", *delay, "--join", bob.url)
    bob.wait_for(lambda e: e["event"] == "peer_up" and e["name"] == "carol")
    pages = [open_page(p.ready["web"]) for p in (alice, bob, carol)]
    for round_number in range(3):
        for page, name in zip(pages, ("alice", "bob", "carol"), strict=True):
            type_message(page, f"{name} {round_number}")
    for page in pages:
        expect(page.locator(".row.message")).to_have_count(9)
        expect(page.locator(".row.tentative")).to_have_count(0, timeout=30_000)
    orders = [shown_order(page) for page in pages]
    assert orders[0] == orders[1] == orders[2]
    # The nine lines and the room's membership entries: the genesis, and for each of the
    # two admissions a change (and, for the second, the first joiner's flush answering it).
    assert len(set(orders[0])) >= 9 + 3


def test_a_late_message_is_inserted_in_its_place_and_highlighted(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    # carol's frames take 1.5 s to leave her: alice writes three lines before
    # carol's first (stamped 1, like alice's first) reaches bob.
    alice = web_peer(spawn, "alice")
    bob = web_peer(spawn, "bob", "--join", alice.url)
    carol = web_peer(spawn, "carol", "--simulate-delay", "1500-1500", "--join", bob.url)
    bob.wait_for(lambda e: e["event"] == "peer_up" and e["name"] == "carol")
    page = open_page(bob.ready["web"])
    carol.say("carol was first")
    carol.wait_for(lambda e: e["event"] == "message")  # written (stamp 1) before alice writes
    alice.say("alice one", "alice two", "alice three")
    expect(page.locator(".row.message")).to_have_count(3)
    late = row_with(page, "carol was first")
    expect(late).to_have_class(re.compile(r"\blate\b"))
    rows = page.eval_on_selector_all(
        ".row.message",
        "rows => rows.map(r => [Number(r.dataset.index), r.querySelector('.text').textContent])",
    )
    texts = [text for _, text in sorted(rows)]
    assert texts.index("carol was first") < 2, texts  # above at least two of alice's lines
    expect(page.locator(".row.message").last.locator(".text")).to_have_text("alice three")
    expect(late).not_to_have_class(re.compile(r"\blate\b"), timeout=5000)
    # Neither author had seen the other's lines: all four are marked concurrent, and
    # hovering carol's line picks out the three it was concurrent with.
    expect(page.locator(".row.concurrent")).to_have_count(4)
    late.locator(".mark").hover()
    expect(page.locator(".row.hover-partner .text")).to_have_text(["alice one", "alice two", "alice three"])
    title = late.locator(".mark").get_attribute("title") or ""
    assert "alice: alice two" in title, title


def test_html_in_a_message_shows_literally(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    alice = web_peer(spawn, "alice")
    page = open_page(alice.ready["web"])
    attack = "<img src=x onerror=alert(1)>"
    alice.say(attack)
    type_message(page, "<b>bold?</b><script>alert(2)</script>")
    expect(row_with(page, attack)).to_be_visible()
    expect(row_with(page, "<b>bold?</b><script>alert(2)</script>")).to_be_visible()
    assert page.locator("#rows img, #rows b, #rows script").count() == 0
    # Too long for a message: refused with a reason, nothing else changes.
    page.evaluate("window.p2pchat.link.send('x'.repeat(20000))")
    expect(page.locator("#errors")).to_contain_text("too long")
    type_message(page, "still here")
    expect(page.locator(".row.message")).to_have_count(3)
    # The open_page fixture fails the test if an alert ran.


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str]]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers)


def test_requests_without_the_secret_or_from_elsewhere_are_refused(
    spawn: Callable[..., ChatProcess], browser: Any
) -> None:
    alice = web_peer(spawn, "alice")
    web = str(alice.ready["web"])
    base, token = web.split("/?token=")
    socket_url = f"ws://{base.removeprefix('http://')}/ws"

    status, headers = _get(web)
    assert status == 200
    assert "script-src 'self'" in headers["content-security-policy"]
    assert "unsafe-inline" not in headers["content-security-policy"]
    assert _get(f"{base}/")[0] == 403
    wrong = token[:-1] + ("y" if token.endswith("x") else "x")  # (one character off)
    assert _get(f"{base}/?token={wrong}")[0] == 403
    port = base.rsplit(":", 1)[1]
    # DNS rebinding: a hostile name pointed at 127.0.0.1 arrives as its own Host.
    assert _get(web, {"Host": f"attacker.example:{port}"})[0] == 421
    assert _get(web, {"Origin": "http://attacker.example"})[0] == 403

    for url, origin in [
        (socket_url, base),
        (f"{socket_url}?token=wrong", base),
        (f"{socket_url}?token={token}", "http://attacker.example"),
        (f"{socket_url}?token={token}", f"http://localhost:{port}"),
    ]:
        with pytest.raises(InvalidStatus) as refused:
            connect(url, origin=origin, open_timeout=10)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
    with connect(f"{socket_url}?token={token}", origin=base, open_timeout=10) as ws:  # type: ignore[arg-type]
        assert json.loads(str(ws.recv(timeout=10)).splitlines()[0])["event"] == "ready"

    # In the browser: a page of another site (here a bare HTTP server on another
    # port, without our CSP) that knows the secret still cannot open the socket.
    site = ThreadingHTTPServer(("127.0.0.1", 0), _EmptyPage)
    threading.Thread(target=site.serve_forever, daemon=True).start()
    try:
        foreign = browser.new_page()
        foreign.goto(f"http://127.0.0.1:{site.server_address[1]}/")
        outcome = foreign.evaluate(
            """url => new Promise(done => {
                const ws = new WebSocket(url);
                ws.onopen = () => done("open");
                ws.onerror = () => done("refused");
            })""",
            f"{socket_url}?token={token}",
        )
        assert outcome == "refused"
        foreign.close()
    finally:
        site.shutdown()
        site.server_close()


class _EmptyPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"<!doctype html><title>another site</title>"
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def test_the_page_reconnects_when_its_peer_restarts(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    alice = web_peer(spawn, "alice")
    page = open_page(alice.ready["web"])
    type_message(page, "before the restart")
    alice.wait_for(lambda e: e["event"] == "message")
    assert alice.stop() == 0
    expect(page.locator("#link")).to_have_class("disconnected")

    again = web_peer(spawn, "alice")  # same data directory: same secret, same port
    assert again.ready["web"] == alice.ready["web"]
    expect(page.locator("#link")).to_have_class("connected")
    type_message(page, "after the restart")
    expect(page.locator(".row.message .text")).to_have_text(["before the restart", "after the restart"])
    again.wait_for(lambda e: e["event"] == "message" and e["text"] == "after the restart")


def test_membership_lines_and_the_member_list(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    """The room's real membership entries: founding, an admission, a clean quit."""
    alice = web_peer(spawn, "alice")
    page = open_page(alice.ready["web"])
    founded = '— alice founded the room "alice\'s room"'
    expect(page.locator(".row.member")).to_have_text([founded])  # her genesis
    bob = web_peer(spawn, "bob", "--join", alice.url)
    # Alone in the room, alice decides her change admitting bob at once: one line says so.
    expect(page.locator(".row.member")).to_have_text([founded, "— bob joined"])
    bob_id = bob.ready["peer_id"]
    expect(page.locator(f'#members li[data-peer="{bob_id}"] .state').first).to_contain_text("active")
    assert bob.stop() == 0  # a clean quit: bob's AWAY, alice stays
    expect(page.locator(".row.member").last).to_have_text("— bob is away")
    expect(page.locator(f'#members li[data-peer="{bob_id}"] .state').first).to_contain_text("away")


def test_a_room_of_100000_messages_renders_only_what_is_on_screen(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    page = fed_page(
        spawn,
        open_page,
        """() => {
            const sender = "e".repeat(64);
            const objects = [];
            for (let i = 0; i < 100000; i += 1) {
                objects.push({event: "message", sender, name: "erin", seq: i + 1, lamport: i + 1,
                              text: `line ${i}`, sent_at: "2026-01-01T00:00:00.000Z", index: i,
                              concurrent: false, stable: true, deps: {}, replayed: true});
            }
            window.p2pchat.receive(objects);
        }""",
    )
    # (What is checked is how many rows exist, not how fast: on a loaded machine the
    # page can take more than expect's default 5 s to lay out 100,000 messages.)
    last = page.locator(".row.message").last.locator(".text")
    expect(last).to_have_text("line 99999", timeout=30_000)
    assert page.locator(".row").count() < 100
    page.eval_on_selector("#log", "box => { box.scrollTop = box.scrollHeight / 2; }")
    middle = page.locator(".row", has_text=re.compile(r"^.*erinline 50000L")).first
    expect(middle).to_be_visible(timeout=30_000)
    assert page.locator(".row").count() < 100


def test_a_proven_liars_lines_are_marked_before_and_after_the_proof_came(
    spawn: Callable[..., ChatProcess], open_page: Callable[[str], Page]
) -> None:
    page = fed_page(
        spawn,
        open_page,
        """() => {
            const sender = "e".repeat(64);
            const line = (seq) => ({event: "message", sender, name: "erin", seq, lamport: seq,
                                    text: `line ${seq}`, sent_at: "2026-01-01T00:00:00.000Z",
                                    index: seq - 1, concurrent: false, stable: true, deps: {}});
            const other = {...line(1), sender: "f".repeat(64), name: "frank", text: "frank's", index: 1};
            window.p2pchat.receive([line(1), other]);
            window.p2pchat.receive([{event: "equivocation", sender, name: "erin", seq: 2,
                                     kept: "line 2", rejected: "other 2"}]);
            window.p2pchat.receive([{...line(2), index: 2}]);
        }""",
    )
    for text in ("line 1", "line 2"):  # (shown before the proof came, and after)
        expect(row_with(page, text).locator(".mark.disputed")).to_have_text("≠")
    expect(row_with(page, "frank's")).to_be_visible()
    assert row_with(page, "frank's").locator(".mark.disputed").count() == 0
    said = "erin signed two versions of its entry 2: its lines marked ≠"
    expect(page.locator("#errors")).to_contain_text(said)


def test_the_demo_page_draws_every_message_and_arrow_of_a_seeded_run(browser: Any, tmp_path: Path) -> None:
    peers, messages = 3, 3
    demo = subprocess.Popen(
        command(
            "demo",
            "--web",
            "--peers",
            str(peers),
            "--messages",
            str(messages),
            "--seed",
            "4",
            "--delay",
            "10-80",
            "--diagram",
            str(tmp_path / "run.svg"),
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment(tmp_path),
    )
    try:
        assert demo.stdout is not None
        url = re.search(r"http://\S+", demo.stdout.readline())
        assert url, "demo --web did not print its URL"
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(demo.stdout or []), daemon=True).start()
        page = browser.new_page(viewport={"width": 1400, "height": 800})
        page.set_default_timeout(40_000)
        page.goto(url.group(0))
        expect(page.locator("#verdict")).to_have_class("ok")
        total = peers * messages
        expect(page.locator("#diagram .dot")).to_have_count(total)
        expect(page.locator("#diagram .arrow")).to_have_count(total * (peers - 1))
        expect(page.locator("#order li")).to_have_count(total)
        expect(page.locator("#order li.stable")).to_have_count(total)
        # The same run's SVG (--diagram stays): the same stamps, the same concurrent ones.
        svg = (tmp_path / "run.svg").read_text(encoding="utf-8")
        # (The SVG's dots are its top-level circles; its legend and rings are in groups.)
        dots = ET.fromstring(svg).findall("{http://www.w3.org/2000/svg}circle")
        assert (
            sum(d.get("fill") == "#e67e22" for d in dots) == page.locator("#diagram .dot.concurrent").count()
        )
        svg_stamps = sorted(re.findall(r'font-size="10">L(\d+) ', svg))  # dot labels: "L3 bob"
        assert svg_stamps == sorted(page.locator("#diagram .stamp").all_text_contents())
        verdict = next(line for line in lines if line.startswith("VERDICT"))
        digest = re.search(r"digest (\w+)", verdict)
        assert digest and digest.group(1) in (page.text_content("#verdict") or "")

        # The causal past of the last message in the order: everything before it that it saw.
        page.locator("#order li").last.click()
        expect(page.locator("#diagram .dot.selected")).to_have_count(1)
        assert page.locator("#diagram .dot.past").count() >= 2
        # Replay draws the run again from nothing.
        page.click("#replay")
        expect(page.locator("#diagram")).to_have_attribute("data-mode", "replay")
        expect(page.locator("#diagram")).to_have_attribute("data-mode", "live")
        expect(page.locator("#diagram .arrow")).to_have_count(total * (peers - 1))
        page.close()
    finally:
        demo.send_signal(signal.SIGTERM)
        assert demo.wait(timeout=15) == 0
        if demo.stdout:
            demo.stdout.close()
        if demo.stderr:
            demo.stderr.close()


def test_web_needs_nothing_from_the_internet() -> None:
    """Every page loads only files of the package: no URL with a scheme in the static files."""
    static = Path(__file__).parent.parent / "p2pchat" / "web" / "static"
    for path in static.iterdir():
        text = path.read_text(encoding="utf-8")
        external = [u for u in re.findall(r"https?://[^\s\"'`)]+", text) if "www.w3.org/2000/svg" not in u]
        assert not external, (path.name, external)


def test_the_full_screen_chat_serves_the_page_too(tmp_path: Path, open_page: Callable[[str], Page]) -> None:
    from test_tui import Terminal

    terminal = Terminal("--name", "alice", "--data", str(tmp_path / "alice"), "--web")
    try:
        screen = terminal.wait_for(lambda s: "?token=" in s)
        url = re.search(r"http://127\.0\.0\.1:\d+/\?token=[\w-]+", screen)
        assert url, screen
        page = open_page(url.group(0))
        terminal.type("typed in the terminal")
        expect(row_with(page, "typed in the terminal")).to_be_visible()
        type_message(page, "typed in the browser")
        terminal.wait_for(lambda s: "typed in the browser" in s)
    finally:
        assert terminal.close() == 0
