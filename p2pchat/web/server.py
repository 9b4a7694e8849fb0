"""Run a web app on the current trio loop with Hypercorn's trio worker.

``serve_web(app, host, port, task_status=...)`` follows the trio convention: it
binds first, hands the bound port to ``task_status.started`` and then serves
until cancelled. Hypercorn's own logging is kept quiet (its access log is off;
errors go to the ``p2pchat.web`` logger), so ``--json`` output stays clean.
"""

from __future__ import annotations

import logging
from typing import Any

import trio
from hypercorn.config import Config
from hypercorn.trio import serve

__all__ = ["format_host", "serve_web"]

logger = logging.getLogger("p2pchat.web")


def format_host(host: str) -> str:
    """``host`` as it goes into a URL (IPv6 literals in brackets)."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def _config(host: str, port: int) -> Config:
    config = Config()
    config.bind = [f"{format_host(host)}:{port}"]
    config.accesslog = None
    config.errorlog = logger
    # Short grace on shutdown: pages reconnect by themselves.
    config.graceful_timeout = 0.5
    config.websocket_ping_interval = 20.0
    return config


async def serve_web(
    app: Any,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` (port 0 picks a free one) until cancelled."""

    class _Started:
        def started(self, binds: list[str] | None = None) -> None:
            bound = int((binds or [""])[0].rsplit(":", 1)[1])
            task_status.started(bound)

    await serve(app, _config(host, port), task_status=_Started())
