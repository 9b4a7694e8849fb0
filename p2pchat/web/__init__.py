"""The browser face of p2pchat: a local web app served from the peer's own trio loop.

``p2pchat chat --web`` serves the chat page (:mod:`.chat`), ``p2pchat demo --web``
the live space-time diagram (:mod:`.demo`). Both are Starlette apps run by
Hypercorn's trio worker (:mod:`.server`) inside the nursery that runs the peers,
so the page sees exactly the events the peer publishes, with no thread or second
event loop in between. The pages are plain HTML, CSS and JavaScript modules in
``static/``: no build step, nothing fetched from elsewhere. What keeps other
sites and other users out is in :mod:`.guard`.
"""

from __future__ import annotations

__all__: list[str] = []
