"""WebSocket (RFC 6455) around any sans-IO protocol handler, for MQTT over WebSocket.

Theory of operation
-------------------
:class:`WebSocketHandler` has the same face as a protocol handler
(:class:`~rapidmq.transport.tcp.ConnectionHandler`), so
:class:`~rapidmq.transport.tcp.SocketConnection` drives it like any other.  It
lives in two states:

* **handshake**: bytes go to an h11 parser until one HTTP request is complete.
  A request for another path is answered 404, a request that is not a
  WebSocket upgrade 400 (426 for a wrong ``Sec-WebSocket-Version``), and an
  upgrade that offers none of our subprotocols 400, as RabbitMQ's Web MQTT
  plugin does; each rejection closes the connection.  A good upgrade is
  answered 101 with the first subprotocol *the client* listed that we accept,
  and the inner handler is made with the transport's own ``wake``.  If nothing
  arrives within ``handshake_timeout_s`` the socket is closed.
* **open**: bytes go to a wsproto frame parser.  Binary payloads, whole or in
  fragments, are concatenated and fed to the inner handler as one byte stream:
  MQTT packets may span frames and a frame may hold several packets (MQTT
  3.1.1 §6, MQTT 5 §6).  Pings are answered with pongs.  A text frame closes
  with 1003, a message over ``max_message_bytes`` with 1009, a frame error with
  the code wsproto gives.  A close from the peer is answered and the inner
  handler learns the connection is lost; an inner handler that closes gets a
  close frame 1000 (1001 when the broker is shutting down) sent after its
  last bytes.

``out`` holds encoded WebSocket bytes only, so the transport's ``len(out)``
measures what really waits for the socket.  The inner handler's output is
moved into it (as binary frames of at most ``OUTPUT_MESSAGE_MAX_BYTES``) after
every ``data_received`` and ``handle_timer`` and in ``data_to_send``, which is
where a flush triggered by the inner handler's ``wake`` picks it up.  Outgoing
data frames are written here directly (server frames are never masked); only
control frames go through wsproto.
"""

from __future__ import annotations

import base64
import binascii
import logging
import struct
import time
from collections.abc import Callable
from enum import Enum
from http import HTTPStatus
from typing import Any

import h11
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, TextMessage
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import generate_accept_token

from rapidmq.transport.tcp import ConnectionHandler, HandlerFactory

__all__ = [
    "MQTT_SUBPROTOCOLS",
    "OUTPUT_MESSAGE_MAX_BYTES",
    "WebSocketHandler",
    "encode_binary_frame",
    "websocket_factory",
]

log = logging.getLogger("rapidmq.connection")

#: The subprotocols MQTT clients offer: "mqtt" (3.1.1 and 5) and "mqttv3.1" (older clients).
MQTT_SUBPROTOCOLS: tuple[str, ...] = ("mqtt", "mqttv3.1")
#: Inner output is sent in binary messages of at most this size, so clients with a
#: message-size limit (1 MiB is common) still accept large MQTT packets.
OUTPUT_MESSAGE_MAX_BYTES = 1 << 20
#: The largest HTTP request head accepted during the handshake.
MAX_REQUEST_BYTES = 16 << 10
_IDLE_S = 3600.0


class _State(Enum):
    HANDSHAKE = "handshake"
    OPEN = "open"
    CLOSED = "closed"


def _no_retime() -> None:
    """Until the transport sets ``retime``, there is no timer to tell."""


def encode_binary_frame(out: bytearray, payload: bytes) -> None:
    """Append one final, unmasked binary frame (RFC 6455 §5.2) holding ``payload``."""
    n = len(payload)
    if n < 126:
        out += struct.pack("!BB", 0x82, n)
    elif n < 65536:
        out += struct.pack("!BBH", 0x82, 126, n)
    else:
        out += struct.pack("!BBQ", 0x82, 127, n)
    out += payload


def _http_response(
    status: int, headers: list[tuple[str, str]], body: bytes = b"", *, close: bool = True
) -> bytes:
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}"]
    lines += [f"{name}: {value}" for name, value in headers]
    if close:
        lines += ["content-type: text/plain; charset=utf-8", f"content-length: {len(body)}"]
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _tokens(request: h11.Request, name: bytes) -> list[str]:
    """Comma-separated values of every header ``name``, in order, blanks dropped."""
    found: list[str] = []
    for key, value in request.headers:
        if key == name:
            found += [t.strip() for t in value.decode("latin-1").split(",") if t.strip()]
    return found


class WebSocketHandler:
    """Serves one WebSocket connection and carries an inner protocol handler inside it."""

    def __init__(
        self,
        inner_factory: HandlerFactory,
        peer: tuple[str, int],
        wake: Callable[[], None],
        *,
        path: str = "/ws",
        subprotocols: tuple[str, ...] = ("mqtt",),
        handshake_timeout_s: float = 10.0,
        max_message_bytes: int = 268435456,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.inner_factory = inner_factory
        self.peer = peer
        self.peer_name = f"{peer[0]}:{peer[1]}"
        #: The server's end of the socket; the transport sets it (None without a socket).
        self.local_address: tuple[str, int] | None = None
        #: The client's verified TLS certificate (``ssl.SSLSocket.getpeercert()``); the
        #: transport sets it on a TLS listener.  None without TLS or without a certificate.
        self.peer_certificate: dict[str, Any] | None = None
        #: Makes the transport call ``handle_timer`` again now; the transport sets it and
        #: the inner handler gets it.
        self.retime: Callable[[], None] = _no_retime
        self.path = path
        self.subprotocols = subprotocols
        self.handshake_timeout_s = handshake_timeout_s
        self.max_message_bytes = max_message_bytes
        self.out = bytearray()
        self.closed = False  # the transport closes the socket once `out` is flushed
        self.subprotocol: str | None = None
        self.inner: ConnectionHandler | None = None
        self._wake = wake
        self._state = _State.HANDSHAKE
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        self._request: h11.Request | None = None
        self._ws: Connection | None = None
        self._deadline = clock() + handshake_timeout_s
        self._message_bytes = 0
        self._shutting_down = False
        self._inner_lost = False
        self._messages_received = 0
        self._frames_sent = 0

    # -- transport face ------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        before = len(self.out)
        if self._state is _State.HANDSHAKE:
            self._receive_handshake(data)
        else:
            assert self._ws is not None
            self._ws.receive_data(data)
            self._receive_frames()
        self._pump()
        if len(self.out) != before or self.closed:
            self._wake()

    @property
    def reading_paused(self) -> bool:
        """The inner handler asked the transport to stop reading (a blocked publisher)."""
        return bool(getattr(self.inner, "reading_paused", False))

    def data_to_send(self) -> bytes:
        """Everything encoded for the socket, emptying the buffer."""
        self._pump()
        if not self.out:
            return b""
        data = bytes(self.out)
        self.out.clear()
        return data

    def output_drained(self) -> None:
        if self.inner is not None:
            self.inner.output_drained()

    def handle_timer(self, now: float) -> float:
        """Enforce the handshake timeout, then the inner handler's timers."""
        if self.closed:
            return _IDLE_S
        if self._state is _State.HANDSHAKE:
            if now >= self._deadline:
                log.warning(
                    "closing WebSocket connection %s: no upgrade within %ss",
                    self.peer_name,
                    self.handshake_timeout_s,
                )
                self._finish()
                return _IDLE_S
            return self._deadline - now  # the upgrade calls retime for the inner timers
        assert self.inner is not None
        delay = self.inner.handle_timer(now)
        before = len(self.out)
        self._pump()
        if len(self.out) != before:
            self._wake()
        return delay

    def connection_lost(self) -> None:
        """The socket is gone; the inner handler hears of it once."""
        self._lose_inner()
        self._finish()

    def shutdown(self) -> None:
        """The broker is stopping: let the inner handler say goodbye, then close with 1001."""
        if self.closed:
            return
        self._shutting_down = True
        if self.inner is None:
            self._finish()
            return
        self.inner.shutdown()
        self._pump()
        self._wake()

    def statistics(self) -> dict[str, Any]:
        return {
            "state": self._state.value,
            "path": self.path,
            "subprotocol": self.subprotocol,
            "messages_received": self._messages_received,
            "frames_sent": self._frames_sent,
            "pending_output_bytes": len(self.out),
        }

    # -- handshake -----------------------------------------------------------------------

    def _receive_handshake(self, data: bytes) -> None:
        http = self._http
        try:
            http.receive_data(data)
            while True:
                event = http.next_event()
                if event is h11.NEED_DATA or event is h11.PAUSED:
                    return
                if isinstance(event, h11.ConnectionClosed):
                    self._finish()
                    return
                if isinstance(event, h11.Request):
                    self._request = event
                elif isinstance(event, h11.EndOfMessage) and self._request is not None:
                    self._answer(self._request)
                    return
        except h11.RemoteProtocolError as err:
            self._reject(err.error_status_hint, f"bad HTTP request: {err}")

    def _answer(self, request: h11.Request) -> None:
        target = request.target.decode("latin-1")
        if target.partition("?")[0] != self.path:
            self._reject(404, f"no WebSocket endpoint at {target}")
            return
        if request.method != b"GET":
            self._reject(400, "a WebSocket upgrade must be a GET")
            return
        if "upgrade" not in [t.lower() for t in _tokens(request, b"connection")] or (
            "websocket" not in [t.lower() for t in _tokens(request, b"upgrade")]
        ):
            self._reject(400, "this endpoint only accepts WebSocket upgrades")
            return
        if _tokens(request, b"sec-websocket-version") != ["13"]:
            self._reject(
                426, "only WebSocket version 13 is supported", [("sec-websocket-version", "13")]
            )
            return
        keys = _tokens(request, b"sec-websocket-key")
        try:
            valid_key = len(keys) == 1 and len(base64.b64decode(keys[0], validate=True)) == 16
        except binascii.Error:
            valid_key = False
        if not valid_key:
            self._reject(400, "missing or malformed Sec-WebSocket-Key")
            return
        offered = _tokens(request, b"sec-websocket-protocol")
        chosen = next((p for p in offered if p in self.subprotocols), None)
        if chosen is None:
            expected = ", ".join(self.subprotocols)
            self._reject(400, f"no supported WebSocket subprotocol offered (expected {expected})")
            return
        self.out += _http_response(
            101,
            [
                ("upgrade", "websocket"),
                ("connection", "Upgrade"),
                ("sec-websocket-accept", generate_accept_token(keys[0].encode()).decode()),
                ("sec-websocket-protocol", chosen),
            ],
            close=False,
        )
        trailing, _ = self._http.trailing_data
        self.subprotocol = chosen
        self._state = _State.OPEN
        self.inner = self.inner_factory(self.peer, self._wake)
        if hasattr(self.inner, "local_address"):
            self.inner.local_address = self.local_address
        if hasattr(self.inner, "peer_certificate"):
            self.inner.peer_certificate = self.peer_certificate
        if hasattr(self.inner, "retime"):
            self.inner.retime = self.retime
        self.retime()  # the inner handler's deadlines replace the handshake timeout
        self._ws = Connection(ConnectionType.SERVER)
        if trailing:
            self._ws.receive_data(bytes(trailing))
            self._receive_frames()

    def _reject(self, status: int, text: str, headers: list[tuple[str, str]] | None = None) -> None:
        log.info("refusing WebSocket connection %s: %s %s", self.peer_name, status, text)
        self.out += _http_response(status, headers or [], text.encode())
        self._finish()

    # -- open connection -----------------------------------------------------------------

    def _receive_frames(self) -> None:
        ws = self._ws
        assert ws is not None
        stream = bytearray()
        for event in ws.events():
            if self.closed:
                break
            if isinstance(event, BytesMessage):
                self._message_bytes += len(event.data)
                if self._message_bytes > self.max_message_bytes:
                    self._feed(stream)
                    self._close(CloseReason.MESSAGE_TOO_BIG, "message too big")
                    break
                stream += event.data
                if event.message_finished:
                    self._message_bytes = 0
                    self._messages_received += 1
                continue
            self._feed(stream)
            if isinstance(event, Ping):
                self.out += ws.send(event.response())
            elif isinstance(event, TextMessage):
                self._close(CloseReason.UNSUPPORTED_DATA, "text frames are not supported")
            elif isinstance(event, CloseConnection):
                self._peer_closed(event)
            # A Pong needs nothing.
        else:
            self._feed(stream)

    def _feed(self, stream: bytearray) -> None:
        inner = self.inner
        if stream and inner is not None and not inner.closed:
            inner.data_received(bytes(stream))
        stream.clear()

    def _peer_closed(self, event: CloseConnection) -> None:
        ws = self._ws
        assert ws is not None
        if ws.state is ConnectionState.REMOTE_CLOSING:
            self.out += ws.send(event.response())
        elif ws.state is ConnectionState.OPEN:
            # wsproto reports a malformed frame as a close event with the code to send.
            log.warning("closing WebSocket connection %s: %s", self.peer_name, event.reason)
            self.out += ws.send(CloseConnection(code=event.code, reason=event.reason))
        self._lose_inner()
        self._finish()

    def _close(self, code: int, reason: str) -> None:
        ws = self._ws
        if code not in (CloseReason.NORMAL_CLOSURE, CloseReason.GOING_AWAY):
            log.warning("closing WebSocket connection %s: %s (%s)", self.peer_name, reason, code)
        if ws is not None and ws.state is ConnectionState.OPEN:
            if self.inner is not None:
                # What the inner handler already answered goes out before the close frame.
                self._frame_inner_output(self.inner)
            self.out += ws.send(CloseConnection(code=code, reason=reason or None))
        self._finish()

    def _pump(self) -> None:
        """Move the inner handler's output into ``out``; close after it if it closed."""
        inner = self.inner
        if inner is None or self.closed:
            return
        self._frame_inner_output(inner)
        if inner.closed:
            if self._shutting_down:
                self._close(CloseReason.GOING_AWAY, "broker shutting down")
            else:
                self._close(CloseReason.NORMAL_CLOSURE, "")

    def _frame_inner_output(self, inner: ConnectionHandler) -> None:
        data = inner.data_to_send()
        if data:
            step = OUTPUT_MESSAGE_MAX_BYTES
            for start in range(0, len(data), step):
                encode_binary_frame(self.out, data[start : start + step])
                self._frames_sent += 1

    def _lose_inner(self) -> None:
        if self.inner is not None and not self._inner_lost:
            self._inner_lost = True
            self.inner.connection_lost()

    def _finish(self) -> None:
        self._state = _State.CLOSED
        self.closed = True


def websocket_factory(
    inner_factory: HandlerFactory,
    *,
    path: str = "/ws",
    subprotocols: tuple[str, ...] = MQTT_SUBPROTOCOLS,
    handshake_timeout_s: float = 10.0,
    max_message_bytes: int = 268435456,
) -> HandlerFactory:
    """A handler factory for ``SocketConnection`` that serves ``inner_factory`` over WebSocket."""

    def make(peer: tuple[str, int], wake: Callable[[], None]) -> ConnectionHandler:
        return WebSocketHandler(
            inner_factory,
            peer,
            wake,
            path=path,
            subprotocols=subprotocols,
            handshake_timeout_s=handshake_timeout_s,
            max_message_bytes=max_message_bytes,
        )

    return make
