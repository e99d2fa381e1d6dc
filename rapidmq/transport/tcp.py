"""TCP listeners and the one read loop and writer that serve any sans-IO protocol.

Theory of operation
-------------------
Each accepted socket gets a :class:`ConnectionHandler` (the protocol's sans-IO
connection object) and three tasks in one task group:

* the **reader** feeds received bytes to ``handler.data_received`` and pauses
  while the handler has more than ``READ_PAUSE_BYTES`` waiting to be sent, so a
  client that does not read cannot make the broker buffer without bound, and
  while the handler's ``reading_paused`` is true (a blocked publisher during a
  memory or disk alarm).  A handler that turns ``reading_paused`` off calls
  ``wake``: every writer round lets a paused reader look again;
* the **writer** sleeps until the handler (or any other connection routing a
  message to it) calls ``wake``, then sends *everything* buffered in one
  ``send``.  Coalescing frames this way is what lets a Python broker move
  hundreds of thousands of messages a second (ARCHITECTURE.md §3);
* the **timer** calls ``handler.handle_timer(now)`` when the handler asks to be
  called again (heartbeats, handshake and close timeouts).

When the handler sets ``closed`` the writer flushes what is left and closes the
socket.  This module is the only one in the broker that touches sockets.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import time
from collections.abc import Callable
from typing import Protocol

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

__all__ = [
    "READ_PAUSE_BYTES",
    "ConnectionHandler",
    "HandlerFactory",
    "ListenError",
    "SocketConnection",
    "bind_socket",
    "listen_error",
    "open_listener",
]

log = logging.getLogger("rapidmq.connection")

READ_PAUSE_BYTES = 4 << 20
RECEIVE_BYTES = 256 << 10


class ConnectionHandler(Protocol):
    """What a sans-IO protocol connection offers the transport.

    A handler may also have a ``reading_paused`` attribute: while it is true the
    reader stops reading (see the module docstring).  It is optional, so it is
    read with ``getattr`` once per received chunk, never per message.  A handler
    with a ``local_address`` attribute is given the socket's local address.
    """

    closed: bool
    out: bytearray

    def data_received(self, data: bytes) -> None: ...
    def data_to_send(self) -> bytes: ...
    def output_drained(self) -> None: ...
    def handle_timer(self, now: float) -> float: ...
    def connection_lost(self) -> None: ...
    def shutdown(self) -> None: ...


HandlerFactory = Callable[[tuple[str, int], Callable[[], None]], ConnectionHandler]


class ListenError(Exception):
    """A listener could not bind; the message is one readable line."""


def listen_error(err: OSError, name: str, host: str, port: int, flag: str) -> ListenError:
    """The one line that says why a listener could not bind, and what to change."""
    where = f"cannot listen for {name} on {host}:{port}"
    if err.errno == errno.EADDRINUSE:
        return ListenError(f"{where}: the port is already in use; choose another with {flag}")
    if err.errno == errno.EACCES:
        return ListenError(f"{where}: permission denied; choose a port above 1023 with {flag}")
    return ListenError(f"{where}: {err.strerror or err}; check the address or change {flag}")


def bind_socket(host: str, port: int, *, name: str, flag: str) -> socket.socket:
    """A bound, listening TCP socket for a server that accepts by itself (HTTP).

    Raises:
        ListenError: the address cannot be bound (one line naming the fix).
    """
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM)
        family, type_, proto, _, address = infos[0]
        sock = socket.socket(family, type_, proto)
    except OSError as err:
        raise listen_error(err, name, host, port, flag) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(1024)
    except OSError as err:
        sock.close()
        raise listen_error(err, name, host, port, flag) from None
    return sock


async def open_listener(host: str, port: int, *, name: str, flag: str) -> anyio.abc.SocketListener:
    """Bind a TCP listener, turning bind failures into one readable line."""
    try:
        listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    except OSError as err:
        raise listen_error(err, name, host, port, flag) from None
    # A multi-listener on an ambiguous host would hide which port was bound.
    if isinstance(listener, anyio.abc.SocketListener):
        return listener
    first = listener.listeners[0]
    assert isinstance(first, anyio.abc.SocketListener)
    return first


class SocketConnection:
    """One accepted socket driven by a sans-IO handler."""

    def __init__(self, stream: anyio.abc.SocketStream, factory: HandlerFactory) -> None:
        self.stream = stream
        raw = stream.extra(SocketAttribute.raw_socket)
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        remote = stream.extra(SocketAttribute.remote_address)
        peer = (str(remote[0]), int(remote[1])) if isinstance(remote, tuple) else (str(remote), 0)
        local = stream.extra(SocketAttribute.local_address)
        self.peer = peer
        self.local = (str(local[0]), int(local[1])) if isinstance(local, tuple) else (str(local), 0)
        #: When the socket was accepted, in milliseconds since the epoch.
        self.connected_at = int(time.time() * 1000)
        #: Bytes received and sent, counted per chunk (never per frame).
        self.received_bytes = 0
        self.sent_bytes = 0
        self._wake_event = anyio.Event()
        self._drained_event = anyio.Event()
        self.handler = factory(peer, self._wake)
        if hasattr(self.handler, "local_address"):
            self.handler.local_address = self.local

    def _wake(self) -> None:
        self._wake_event.set()

    def shutdown(self) -> None:
        self.handler.shutdown()
        self._wake_event.set()

    async def run(self) -> None:
        handler = self.handler
        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._writer, tg.cancel_scope)
                tg.start_soon(self._timer)
                await self._reader()
                tg.cancel_scope.cancel()
        except Exception:
            log.exception(
                "internal error on connection %s:%s; closing it", self.peer[0], self.peer[1]
            )
        finally:
            handler.connection_lost()
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()

    async def _reader(self) -> None:
        handler = self.handler
        stream = self.stream
        while not handler.closed:
            try:
                data = await stream.receive(RECEIVE_BYTES)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                return
            except OSError:
                return
            self.received_bytes += len(data)
            handler.data_received(data)
            while not handler.closed and (
                len(handler.out) > READ_PAUSE_BYTES or getattr(handler, "reading_paused", False)
            ):
                self._drained_event = anyio.Event()
                await self._drained_event.wait()
        # The handler asked to close: wait for the writer to flush and close.
        await anyio.sleep_forever()

    async def _writer(self, scope: anyio.CancelScope) -> None:
        handler = self.handler
        stream = self.stream
        while True:
            await self._wake_event.wait()
            self._wake_event = anyio.Event()
            data = handler.data_to_send()
            if data:
                try:
                    await stream.send(data)
                except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    scope.cancel()
                    return
                self.sent_bytes += len(data)
            handler.output_drained()
            self._drained_event.set()
            if handler.closed and not handler.out:
                scope.cancel()
                return

    async def _timer(self) -> None:
        handler = self.handler
        while True:
            delay = handler.handle_timer(time.monotonic())
            if handler.closed:
                self._wake_event.set()
            await anyio.sleep(delay)
