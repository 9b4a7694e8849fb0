"""The web app's gatekeeper, without a browser: Host, Origin and secret checks, settings file."""

from __future__ import annotations

import stat
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import pytest

from p2pchat.web.guard import Guard, host_allowed, load_web_settings

PORT = 8123
TOKEN = "s3cret-s3cret-s3cret"


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        (f"127.0.0.1:{PORT}", True),
        (f"localhost:{PORT}", True),
        (f"[::1]:{PORT}", True),
        (f"192.168.1.5:{PORT}", True),
        (f"127.0.0.1:{PORT + 1}", False),
        ("127.0.0.1", False),
        (f"attacker.example:{PORT}", False),
        (f"localhost.attacker.example:{PORT}", False),
        (f"127.0.0.1.nip.io:{PORT}", False),
        ("", False),
        (f"127.0.0.1:{PORT}x", False),
    ],
)
def test_host_must_be_an_address_or_localhost_on_our_port(host: str, allowed: bool) -> None:
    assert host_allowed(host, PORT) is allowed


async def _call(scope_type: str, path: str, query: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    reached: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        reached.append(scope["path"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    sent: list[dict[str, Any]] = []

    async def receive() -> MutableMapping[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": scope_type,
        "path": path,
        "query_string": query.encode(),
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
    }
    await Guard(app, token=TOKEN, port=PORT)(scope, receive, send)
    if reached:
        sent.insert(0, {"reached": True})
    return sent


HOST = {"Host": f"127.0.0.1:{PORT}"}
SAME_ORIGIN = {**HOST, "Origin": f"http://127.0.0.1:{PORT}"}


async def test_the_page_needs_the_secret_and_gets_the_security_headers() -> None:
    allowed = await _call("http", "/", f"token={TOKEN}", HOST)
    assert allowed[0] == {"reached": True}
    headers = dict(allowed[1]["headers"])
    assert b"script-src 'self'" in headers[b"content-security-policy"]
    assert headers[b"x-content-type-options"] == b"nosniff"
    for query in ["", "token=", f"token={TOKEN}x", f"other={TOKEN}"]:
        refused = await _call("http", "/", query, HOST)
        assert refused[0]["status"] == 403, query


async def test_static_files_need_no_secret_but_still_the_host_check() -> None:
    assert (await _call("http", "/static/chat.js", "", HOST))[0] == {"reached": True}
    refused = await _call("http", "/static/chat.js", "", {"Host": f"evil.example:{PORT}"})
    assert refused[0]["status"] == 421


async def test_the_socket_needs_secret_and_our_own_origin() -> None:
    query = f"token={TOKEN}"
    assert (await _call("websocket", "/ws", query, SAME_ORIGIN))[0] == {"reached": True}
    for headers in [HOST, {**HOST, "Origin": "http://evil.example"}, {**HOST, "Origin": "null"}]:
        refused = await _call("websocket", "/ws", query, headers)
        assert refused == [{"type": "websocket.close", "code": 1008, "reason": refused[0]["reason"]}]
    refused = await _call("websocket", "/ws", "token=nope", SAME_ORIGIN)
    assert refused[0]["type"] == "websocket.close"


def test_secret_and_port_are_kept_private_in_the_data_directory(tmp_path: Path) -> None:
    token, port = load_web_settings(tmp_path / "alice")
    assert len(token) >= 16 and port == 0
    assert load_web_settings(tmp_path / "alice") == (token, 0)
    mode = stat.S_IMODE((tmp_path / "alice" / "web.json").stat().st_mode)
    assert mode == 0o600
    (tmp_path / "alice" / "web.json").write_text("{not json", encoding="utf-8")
    fresh, _ = load_web_settings(tmp_path / "alice")
    assert fresh != token
