"""Run a Starlette app on Hypercorn, on a socket the server has already bound.

The server binds the socket itself (so a port in use stops start-up with the
same one line as the other listeners, and port 0 reports the real port), then
hands its file descriptor to Hypercorn.  Hypercorn's Trio worker runs under
Trio, its asyncio worker under asyncio; either way inside the broker's task
group.

For HTTPS the server hands over its own TLS context (the one every TLS
listener uses, built and checked at start-up), so Hypercorn does not read the
certificate files a second time with options of its own.
"""

from __future__ import annotations

import logging
import socket
import ssl
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


class _TLSConfig(Config):
    """A Hypercorn config that serves TLS with a context built elsewhere."""

    def __init__(self, context: ssl.SSLContext) -> None:
        super().__init__()
        self._context = context
        # Hypercorn serves TLS on ``bind`` only when both are set; it never reads them here.
        self.certfile = self.keyfile = "<rapidmq tls context>"

    def create_ssl_context(self) -> ssl.SSLContext | None:
        return self._context


async def serve_http(
    starlette_app: Starlette,
    sock: socket.socket,
    shutdown: anyio.Event,
    *,
    ssl_context: ssl.SSLContext | None = None,
    handshake_timeout_s: float = 10.0,
) -> None:
    """Serve ``app`` on the listening ``sock`` until ``shutdown`` is set; takes the socket over.

    With ``ssl_context`` it serves HTTPS, and a TLS handshake must finish within
    ``handshake_timeout_s``.

    Hypercorn is stopped through its shutdown trigger rather than by cancelling
    it: its asyncio worker does not survive a cancellation from outside cleanly.
    The trigger also keeps it from installing signal handlers of its own.
    """
    app: Any = starlette_app  # an ASGI app; Hypercorn's type names a narrower protocol
    if ssl_context is not None:
        # Hypercorn offers h2 and http/1.1 by ALPN on its own contexts; so does ours.
        ssl_context.set_alpn_protocols(Config.alpn_protocols)
        config: Config = _TLSConfig(ssl_context)
        config.ssl_handshake_timeout = handshake_timeout_s
    else:
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
