"""Run a Starlette app on Hypercorn, on a socket the server has already bound.

The server binds the socket itself (so a port in use stops start-up with the
same one line as the other listeners, and port 0 reports the real port), then
hands its file descriptor to Hypercorn.  Hypercorn's Trio worker runs under
Trio, its asyncio worker under asyncio; either way inside the broker's task
group.
"""

from __future__ import annotations

import logging
import socket
from typing import Any

import anyio
import sniffio
from hypercorn.config import Config
from starlette.applications import Starlette

__all__ = ["serve_http"]

log = logging.getLogger("rapidmq.admin")
# Hypercorn's own lines ("Running on …") would repeat what the ready line says.
_hypercorn_log = logging.getLogger("rapidmq.admin.http")
_hypercorn_log.setLevel(logging.WARNING)


async def serve_http(starlette_app: Starlette, sock: socket.socket, shutdown: anyio.Event) -> None:
    """Serve ``app`` on the listening ``sock`` until ``shutdown`` is set; takes the socket over.

    Hypercorn is stopped through its shutdown trigger rather than by cancelling
    it: its asyncio worker does not survive a cancellation from outside cleanly.
    The trigger also keeps it from installing signal handlers of its own.
    """
    app: Any = starlette_app  # an ASGI app; Hypercorn's type names a narrower protocol
    config = Config()
    config.bind = [f"fd://{sock.detach()}"]
    config.accesslog = None
    config.errorlog = _hypercorn_log
    config.graceful_timeout = 1.0
    config.keep_alive_timeout = 75.0
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as trio_serve

        await trio_serve(app, config, mode="asgi", shutdown_trigger=shutdown.wait)
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        await asyncio_serve(app, config, mode="asgi", shutdown_trigger=shutdown.wait)
