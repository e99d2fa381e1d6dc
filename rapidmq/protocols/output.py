"""The output side every sans-IO protocol connection shares with the transport.

Frames are appended to :attr:`OutputBuffer.out`; the first append after a flush
calls the transport's ``wake`` once, and the transport takes everything with one
``data_to_send`` per loop turn.  Past :data:`OUTPUT_HIGH_WATER` buffered bytes
:meth:`OutputBuffer.writable` says no, which pauses the core's deliveries to the
connection until the buffer drains (the connection's ``output_drained``).

The transport may also set :attr:`OutputBuffer.retime`: a connection whose next
timer deadline moved earlier calls it so that ``handle_timer`` runs again at once.

It also holds who is on the other end, as the transport knows it: the peer's
address, and the local address and verified TLS certificate, which the
transport sets after making the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["OUTPUT_HIGH_WATER", "OutputBuffer"]

#: Above this many buffered output bytes, deliveries to the connection pause.
OUTPUT_HIGH_WATER = 1 << 20


def _no_retime() -> None:
    """Without a transport (tests drive ``handle_timer`` themselves) nothing needs telling."""


class OutputBuffer:
    """One connection's output buffer and its wake-up of the transport's writer."""

    out: bytearray
    #: True once writable() said no; the connection resumes deliveries when it drains.
    output_paused: bool

    def _init_output(self, peer: tuple[str, int], wake: Callable[[], None]) -> None:
        self.peer = peer
        self.peer_name = f"{peer[0]}:{peer[1]}"
        #: The server's end of the socket; the transport sets it (None without a socket).
        self.local_address: tuple[str, int] | None = None
        #: The client's verified TLS certificate (``ssl.SSLSocket.getpeercert()``); the
        #: transport sets it on a TLS listener.  None without TLS or without a certificate.
        self.peer_certificate: dict[str, Any] | None = None
        #: Makes the transport call ``handle_timer`` again now; the transport sets it.
        self.retime: Callable[[], None] = _no_retime
        self.out = bytearray()
        self.output_paused = False
        self._wake_cb = wake
        self._woken = False

    def wake(self) -> None:
        if not self._woken:
            self._woken = True
            self._wake_cb()

    def writable(self) -> bool:
        if len(self.out) < OUTPUT_HIGH_WATER:
            return True
        self.output_paused = True
        return False

    def _take_output(self) -> bytes:
        """Everything buffered, emptying the buffer; the next append wakes the writer."""
        self._woken = False
        if not self.out:
            return b""
        data = bytes(self.out)
        self.out.clear()
        return data
