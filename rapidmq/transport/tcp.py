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
  called again (heartbeats, handshake and close timeouts).  A handler whose next
  deadline moved earlier than the one it last returned (a handshake finished, a
  close began) calls its ``retime`` callable, and the timer asks it again at
  once, so no handler has to poll.

When the handler sets ``closed`` the writer flushes what is left and closes the
socket.  This module is the only one in the broker that touches sockets.

TLS
---
A TLS listener's connection first runs :func:`tls_handshake` (bounded by the
handshake timeout, so a client that never finishes cannot hold a socket), then
the same three tasks with a :class:`TLSSession` between the socket and the
handler.  The session is a bare ``ssl.SSLObject`` on memory BIOs rather than
anyio's ``TLSStream`` for two reasons:

* throughput: the reader decrypts *every* record of a received chunk before
  one ``data_received`` (``SSLObject.read`` returns one 16 KiB record per call,
  which through a stream would be one handler call per record), and the writer
  encrypts everything buffered in one ``write`` and sends all records in one
  ``send``, exactly as on plaintext;
* one sender: TLS 1.3 makes the reading side write too (key updates), and a
  ``TLSStream`` would then send from the reader while the writer sends.  Here
  the reader only leaves such records in the outgoing BIO and wakes the writer.

A handshake that fails (plaintext client, bad or missing certificate, old TLS
version, timeout) closes that connection only, with one warning naming the peer.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

__all__ = [
    "READ_PAUSE_BYTES",
    "ConnectionHandler",
    "HandlerFactory",
    "ListenError",
    "SocketConnection",
    "TLSSession",
    "bind_socket",
    "listen_error",
    "open_listener",
    "tls_handshake",
]

log = logging.getLogger("rapidmq.connection")

READ_PAUSE_BYTES = 4 << 20
RECEIVE_BYTES = 256 << 10


class ConnectionHandler(Protocol):
    """What a sans-IO protocol connection offers the transport.

    A handler may also have a ``reading_paused`` attribute: while it is true the
    reader stops reading (see the module docstring).  It is optional, so it is
    read with ``getattr`` once per received chunk, never per message.  A handler
    with a ``local_address`` attribute is given the socket's local address, and
    one with a ``peer_certificate`` attribute the client's verified certificate
    on a TLS listener (``ssl.SSLSocket.getpeercert()``; None without one).  One
    with a ``retime`` attribute is given a callable that makes the timer call
    ``handle_timer`` again at once.
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


class TLSSession:
    """The TLS state of one connection whose handshake is done (see the module docstring)."""

    __slots__ = ("incoming", "outgoing", "ssl_object")

    def __init__(
        self, ssl_object: ssl.SSLObject, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO
    ) -> None:
        self.ssl_object = ssl_object
        self.incoming = incoming
        self.outgoing = outgoing

    @property
    def peer_certificate(self) -> dict[str, Any] | None:
        """The client's certificate if it sent one and it was verified, else None."""
        return self.ssl_object.getpeercert() or None

    def connection_info(self) -> dict[str, Any]:
        """The TLS fields of a connection in the management API, as RabbitMQ names them.

        ``{"ssl": True, "ssl_protocol": "tlsv1.3", "ssl_key_exchange": "any",
        "ssl_cipher": "aes_256_gcm", "ssl_hash": "sha384", "peer_cert_subject":
        "CN=alice", "peer_cert_issuer": "CN=ca", "peer_cert_validity": "… - …"}``;
        the peer_cert fields are None without a verified client certificate.
        Made on request (an API call), never per message.
        """
        obj = self.ssl_object
        name, protocol, _bits = obj.cipher() or ("", "", 0)
        key_exchange, cipher, digest = _cipher_parts(name)
        cert = self.peer_certificate
        info: dict[str, Any] = {
            "ssl": True,
            "ssl_protocol": (obj.version() or protocol).lower(),
            "ssl_key_exchange": key_exchange,
            "ssl_cipher": cipher,
            "ssl_hash": digest,
            "peer_cert_subject": None,
            "peer_cert_issuer": None,
            "peer_cert_validity": None,
        }
        if cert:
            info["peer_cert_subject"] = _distinguished_name(cert.get("subject", ()))
            info["peer_cert_issuer"] = _distinguished_name(cert.get("issuer", ()))
            info["peer_cert_validity"] = (
                f"{_iso_time(cert.get('notBefore'))} - {_iso_time(cert.get('notAfter'))}"
            )
        return info

    def decrypt(self, raw: bytes) -> tuple[bytes, bool]:
        """All plaintext that ``raw`` completes, and whether the peer sent close_notify.

        Raises:
            ssl.SSLError: the peer sent something that is not valid TLS.
        """
        if raw:
            self.incoming.write(raw)
        read = self.ssl_object.read
        first = b""
        parts: list[bytes] | None = None
        while True:
            try:
                part = read(RECEIVE_BYTES)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                return (b"".join(parts) if parts else first), True
            if not part:
                return (b"".join(parts) if parts else first), True
            if not first:
                first = part
            elif parts is None:
                parts = [first, part]
            else:
                parts.append(part)
        return (b"".join(parts) if parts else first), False

    def encrypt(self, data: bytes) -> bytes:
        """The records for ``data``, after any the reader left (key updates, alerts)."""
        if data:
            self.ssl_object.write(data)
        return self.outgoing.read()


async def tls_handshake(
    stream: anyio.abc.SocketStream, context: ssl.SSLContext, timeout_s: float
) -> TLSSession | None:
    """The server side of a TLS handshake on ``stream``; None (and one warning) if it fails.

    The caller closes the stream when this returns None.
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    ssl_object = context.wrap_bio(incoming, outgoing, server_side=True)
    failure = ""
    try:
        with anyio.fail_after(timeout_s):
            while True:
                try:
                    ssl_object.do_handshake()
                    break
                except ssl.SSLWantReadError:
                    if outgoing.pending:
                        await stream.send(outgoing.read())
                    incoming.write(await stream.receive(RECEIVE_BYTES))
            if outgoing.pending:
                await stream.send(outgoing.read())
        return TLSSession(ssl_object, incoming, outgoing)
    except TimeoutError:
        failure = f"did not finish within {timeout_s:g} s"
    except ssl.SSLError as err:
        failure = f"failed: {_handshake_failure(err)}"
        # Tell the client why (the alert OpenSSL left in the outgoing BIO), briefly.
        if outgoing.pending:
            with anyio.move_on_after(1.0), contextlib.suppress(Exception):
                await stream.send(outgoing.read())
    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
        failure = "failed: the client closed the connection"
    peer = _address(stream.extra(SocketAttribute.remote_address, ("?", 0)))
    log.warning("TLS handshake with %s:%s %s; connection closed", peer[0], peer[1], failure)
    return None


_DN_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "domainComponent": "DC",
}


def _distinguished_name(rdns: Any) -> str:
    """``CN=alice,O=Example`` from the subject or issuer of ``getpeercert()``."""
    return ",".join(f"{_DN_NAMES.get(key, key)}={value}" for rdn in rdns for key, value in rdn)


def _iso_time(value: Any) -> str:
    try:
        seconds = ssl.cert_time_to_seconds(str(value))
    except ValueError:
        return str(value)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _cipher_parts(name: str) -> tuple[str, str, str]:
    """(key exchange, cipher, hash) of an OpenSSL suite name, in RabbitMQ's spelling.

    ``TLS_AES_256_GCM_SHA384`` (TLS 1.3) gives ("any", "aes_256_gcm", "sha384");
    ``ECDHE-RSA-AES128-GCM-SHA256`` gives ("ecdhe_rsa", "aes_128_gcm", "sha256").
    """
    if name.startswith("TLS_"):
        body, _, digest = name[4:].rpartition("_")
        if digest.startswith("SHA"):
            return "any", body.lower(), digest.lower()
        return "any", name[4:].lower(), ""
    parts = name.split("-")
    kx_parts: list[str] = []
    while parts and parts[0] in ("ECDHE", "DHE", "RSA", "ECDSA", "PSK"):
        kx_parts.append(parts.pop(0).lower())
    digest = "sha256"
    if parts and parts[-1].startswith("SHA"):
        digest = parts.pop().lower()
    cipher = "_".join(parts).lower()
    for bits in ("128", "256"):
        cipher = cipher.replace(f"aes{bits}", f"aes_{bits}")
    return "_".join(kx_parts) or "rsa", cipher, digest


#: OpenSSL's reasons for the usual handshake failures, as an operator would say them.
_FAILURES = {
    "WRONG_VERSION_NUMBER": "the client does not speak TLS (plaintext on a TLS port?)",
    "HTTP_REQUEST": "the client sent plain HTTP to a TLS port",
    "UNKNOWN_PROTOCOL": "the client does not speak TLS (plaintext on a TLS port?)",
    "UNSUPPORTED_PROTOCOL": "the client offers only TLS versions older than 1.2",
    "NO_SHARED_CIPHER": "the client offers no cipher suite the broker accepts",
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the client sent no certificate, and one is required",
}


def _handshake_failure(err: ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return f"client certificate refused: {err.verify_message}"
    reason = str(err.reason or err)
    return _FAILURES.get(reason, " ".join(reason.replace("_", " ").lower().split()))


def _address(value: object) -> tuple[str, int]:
    return (str(value[0]), int(value[1])) if isinstance(value, tuple) else (str(value), 0)


class SocketConnection:
    """One accepted socket driven by a sans-IO handler (over TLS when ``tls`` is given)."""

    def __init__(
        self,
        stream: anyio.abc.SocketStream,
        factory: HandlerFactory,
        tls: TLSSession | None = None,
    ) -> None:
        self.stream = stream
        #: The TLS session on a TLS listener, else None.
        self.tls = tls
        raw = stream.extra(SocketAttribute.raw_socket)
        with contextlib.suppress(OSError):
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        peer = _address(stream.extra(SocketAttribute.remote_address))
        self.peer = peer
        self.local = _address(stream.extra(SocketAttribute.local_address))
        #: When the socket was accepted, in milliseconds since the epoch.
        self.connected_at = int(time.time() * 1000)
        #: Bytes received and sent, counted per chunk (never per frame).
        self.received_bytes = 0
        self.sent_bytes = 0
        self._wake_event = anyio.Event()
        self._drained_event = anyio.Event()
        self._retime_event = anyio.Event()
        self.handler = factory(peer, self._wake)
        if hasattr(self.handler, "retime"):
            self.handler.retime = self._retime
        if hasattr(self.handler, "local_address"):
            self.handler.local_address = self.local
        if tls is not None and hasattr(self.handler, "peer_certificate"):
            self.handler.peer_certificate = tls.peer_certificate

    def _wake(self) -> None:
        self._wake_event.set()

    def _retime(self) -> None:
        self._retime_event.set()

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
                if self.tls is not None:
                    await self._tls_close()
                await self.stream.aclose()

    async def _tls_close(self) -> None:
        """Send close_notify, briefly and best effort: the socket closes right after."""
        tls = self.tls
        assert tls is not None
        with contextlib.suppress(ssl.SSLError, ValueError):
            tls.ssl_object.unwrap()
        if tls.outgoing.pending:
            with anyio.move_on_after(0.5), contextlib.suppress(Exception):
                await self.stream.send(tls.outgoing.read())

    async def _reader(self) -> None:
        handler = self.handler
        stream = self.stream
        tls = self.tls
        pending = b""
        if tls is not None:
            # Plaintext that arrived with the end of the TLS handshake.
            try:
                pending, ended = tls.decrypt(b"")
            except ssl.SSLError:
                return
            if ended:
                if pending:
                    handler.data_received(pending)
                return
        while not handler.closed:
            if pending:
                data, pending = pending, b""
            else:
                try:
                    data = await stream.receive(RECEIVE_BYTES)
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return
                except OSError:
                    return
                self.received_bytes += len(data)
                if tls is not None:
                    try:
                        data, ended = tls.decrypt(data)
                    except ssl.SSLError:
                        return
                    if tls.outgoing.pending:
                        self._wake_event.set()
                    if ended:
                        if data:
                            handler.data_received(data)
                        return
                    if not data:
                        continue
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
        tls = self.tls
        while True:
            await self._wake_event.wait()
            self._wake_event = anyio.Event()
            data = handler.data_to_send()
            if tls is not None:
                data = tls.encrypt(data)
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
            # A fresh event before asking, so a retime during handle_timer is not lost.
            self._retime_event = event = anyio.Event()
            delay = handler.handle_timer(time.monotonic())
            if handler.closed:
                self._wake_event.set()
            with anyio.move_on_after(delay):
                await event.wait()
