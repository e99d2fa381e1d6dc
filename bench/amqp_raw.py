"""A minimal raw-socket AMQP 0-9-1 client for the benchmarks.

The handshake and the rare methods (queue.declare, basic.qos, basic.consume, ...) go
through pamqp. The hot path does not: publishes are pre-encoded frames sent in large
batches, and deliveries are counted by walking frame headers with ``struct``.

Everything here is blocking, bounded by socket timeouts and deadlines, and meant for
127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from pamqp import commands, frame
from pamqp.base import Frame

__all__ = [
    "BrokerClosed",
    "RawConnection",
    "close_many",
    "encode_ack",
    "encode_publish",
    "encode_publish_prefix",
    "end_round",
    "open_many",
    "round_trip",
    "scan_deliveries",
    "scan_timestamps",
    "unique_queue",
    "wait_reply",
]

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD = 1
FRAME_HEADER = 2
FRAME_BODY = 3
FRAME_HEARTBEAT = 8
FRAME_END = 0xCE
FRAME_END_BYTE = b"\xce"

_FRAME_HDR = struct.Struct(">BHI")
_METHOD_ID = struct.Struct(">HH")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
# basic.deliver payload: class, method, consumer tag (shortstr), delivery tag, ...
_DELIVER = (60, 60)
_CONNECTION_CLOSE = (10, 50)
_CHANNEL_CLOSE = (20, 40)
_ACK_PREFIX = _FRAME_HDR.pack(FRAME_METHOD, 1, 13) + _METHOD_ID.pack(60, 80)


class BrokerClosed(RuntimeError):
    """The broker closed the connection or the channel."""


def unique_queue(case: str) -> str:
    return f"rapidmq-bench-{case}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _shortstr(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError("shortstr too long")
    return bytes([len(raw)]) + raw


def _frame(ftype: int, channel: int, payload: bytes) -> bytes:
    return _FRAME_HDR.pack(ftype, channel, len(payload)) + payload + FRAME_END_BYTE


def encode_publish_prefix(channel: int, exchange: str, routing_key: str, body_size: int) -> bytes:
    """basic.publish method frame + content header frame + body frame header.

    Append ``body_size`` bytes of body and FRAME_END to get one complete message.
    """
    method = struct.pack(">HHH", 60, 40, 0) + _shortstr(exchange) + _shortstr(routing_key) + b"\x00"
    # class 60, weight 0, body size, property flags 0 (no properties: transient).
    content_header = struct.pack(">HHQH", 60, 0, body_size, 0)
    return (
        _frame(FRAME_METHOD, channel, method)
        + _frame(FRAME_HEADER, channel, content_header)
        + _FRAME_HDR.pack(FRAME_BODY, channel, body_size)
    )


def encode_publish(channel: int, exchange: str, routing_key: str, body: bytes) -> bytes:
    """One complete pre-encoded transient basic.publish (method, header and body frames)."""
    return encode_publish_prefix(channel, exchange, routing_key, len(body)) + body + FRAME_END_BYTE


def encode_ack(delivery_tag: int, multiple: bool = True, channel: int = 1) -> bytes:
    if channel == 1:
        prefix = _ACK_PREFIX
    else:
        prefix = _FRAME_HDR.pack(FRAME_METHOD, channel, 13) + _METHOD_ID.pack(60, 80)
    return prefix + _U64.pack(delivery_tag) + (b"\x01" if multiple else b"\x00") + FRAME_END_BYTE


def _close_reason(buf: bytes | bytearray, pos: int, end: int) -> str:
    try:
        _, _, value = frame.unmarshal(bytes(buf[pos:end]))
        return (
            f"{value.name}: {getattr(value, 'reply_code', '')} {getattr(value, 'reply_text', '')}"
        )
    except Exception as exc:
        return f"close frame ({exc})"


def scan_deliveries(buf: bytearray) -> tuple[int, int, int]:
    """Walk complete frames in ``buf``; count basic.deliver methods.

    Returns (bytes consumed, deliveries counted, last delivery tag or 0). Raises
    BrokerClosed on connection.close or channel.close, ValueError on a bad frame.
    """
    pos = 0
    end = len(buf)
    count = 0
    last_tag = 0
    unpack_hdr = _FRAME_HDR.unpack_from
    unpack_id = _METHOD_ID.unpack_from
    while end - pos >= 8:
        ftype, _ch, size = unpack_hdr(buf, pos)
        fend = pos + 8 + size
        if fend > end:
            break
        if buf[fend - 1] != FRAME_END:
            raise ValueError(f"bad frame end at offset {fend - 1}")
        if ftype == FRAME_METHOD:
            mid = unpack_id(buf, pos + 7)
            if mid == _DELIVER:
                count += 1
                tag_at = pos + 12 + buf[pos + 11]
                last_tag = _U64.unpack_from(buf, tag_at)[0]
            elif mid in (_CONNECTION_CLOSE, _CHANNEL_CLOSE):
                raise BrokerClosed(_close_reason(buf, pos, fend))
        pos = fend
    return pos, count, last_tag


def scan_timestamps(buf: bytearray, out: list[int]) -> int:
    """Walk complete frames in ``buf``; append the first 8 body bytes (a signed
    big-endian send timestamp) of every body frame to ``out``. Returns bytes consumed."""
    pos = 0
    end = len(buf)
    unpack_hdr = _FRAME_HDR.unpack_from
    unpack_ts = _I64.unpack_from
    while end - pos >= 8:
        ftype, _ch, size = unpack_hdr(buf, pos)
        fend = pos + 8 + size
        if fend > end:
            break
        if buf[fend - 1] != FRAME_END:
            raise ValueError(f"bad frame end at offset {fend - 1}")
        if ftype == FRAME_BODY:
            out.append(unpack_ts(buf, pos + 7)[0])
        elif ftype == FRAME_METHOD:
            mid = _METHOD_ID.unpack_from(buf, pos + 7)
            if mid in (_CONNECTION_CLOSE, _CHANNEL_CLOSE):
                raise BrokerClosed(_close_reason(buf, pos, fend))
        pos = fend
    return pos


class RawConnection:
    """One AMQP connection with channel 1 open, on a plain blocking socket."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 5672,
        user: str = "guest",
        password: str = "guest",
        vhost: str = "/",
        timeout: float = 10.0,
    ) -> None:
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise ValueError("benchmarks only talk to 127.0.0.1")
        self.host = host
        self.port = port
        self._user = user
        self._password = password
        self._vhost = vhost
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.channel = 1
        self.frame_max = 131072
        self.server_properties: dict[str, Any] = {}
        self.closed = False

    # -- opening -------------------------------------------------------------

    @classmethod
    def open(cls, host: str = "127.0.0.1", port: int = 5672, **kw: Any) -> RawConnection:
        conn = cls(host, port, **kw)
        try:
            for _ in conn.handshake():
                pass
        except BaseException:
            conn.sock.close()
            raise
        return conn

    def handshake(self) -> Iterator[None]:
        """The handshake as steps: each ``next()`` waits for one server reply and sends
        the next request, so many connections can be opened in lock-step."""
        self.sock.sendall(PROTOCOL_HEADER)
        yield
        start = self.expect(0, commands.Connection.Start)
        self.server_properties = dict(start.server_properties or {})
        self.send(
            0,
            commands.Connection.StartOk(
                client_properties={"product": "rapidmq-bench", "platform": "Python"},
                mechanism="PLAIN",
                response=f"\0{self._user}\0{self._password}",
                locale="en_US",
            ),
        )
        yield
        tune = self.expect(0, commands.Connection.Tune)
        self.frame_max = min(tune.frame_max or 131072, 131072)
        channel_max = tune.channel_max or 2047
        self.send(0, commands.Connection.TuneOk(min(channel_max, 2047), self.frame_max, 0))
        self.send(0, commands.Connection.Open(virtual_host=self._vhost))
        yield
        self.expect(0, commands.Connection.OpenOk)
        self.send(self.channel, commands.Channel.Open())
        yield
        self.expect(self.channel, commands.Channel.OpenOk)

    # -- frames --------------------------------------------------------------

    def send(self, channel: int, value: Frame) -> None:
        self.sock.sendall(frame.marshal(value, channel))

    def fill(self, size: int = 262144) -> int:
        """Receive once into ``buf``; raise BrokerClosed on EOF."""
        chunk = self.sock.recv(size)
        if not chunk:
            self.closed = True
            raise BrokerClosed("connection closed by the broker")
        self.buf += chunk
        return len(chunk)

    def read_frame(self, deadline: float | None = None) -> tuple[int, Any]:
        """Next complete frame, decoded by pamqp: (channel, value)."""
        while True:
            if len(self.buf) >= 7:
                size = _FRAME_HDR.unpack_from(self.buf, 0)[2]
                if len(self.buf) >= size + 8:
                    consumed, channel, value = frame.unmarshal(bytes(self.buf[: size + 8]))
                    del self.buf[:consumed]
                    return channel, value
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("no complete frame before the deadline")
            self.fill()

    def expect(
        self, channel: int, *types: type[Any], timeout: float = 15.0
    ) -> Any:  # returns an instance of one of ``types``
        deadline = time.monotonic() + timeout
        while True:
            ch, value = self.read_frame(deadline)
            if isinstance(value, commands.Connection.Close):
                self._reply_close_ok(0, commands.Connection.CloseOk())
                self.closed = True
                raise BrokerClosed(f"connection.close {value.reply_code} {value.reply_text}")
            if isinstance(value, commands.Channel.Close):
                self._reply_close_ok(ch, commands.Channel.CloseOk())
                raise BrokerClosed(f"channel.close {value.reply_code} {value.reply_text}")
            if ch == channel and isinstance(value, types):
                return value
            # Anything else (heartbeats, stray deliveries) is skipped.

    def _reply_close_ok(self, channel: int, value: Frame) -> None:
        with contextlib.suppress(OSError):
            self.send(channel, value)

    def rpc(self, value: Frame, *reply: type[Any], timeout: float = 15.0) -> Any:
        self.send(self.channel, value)
        return self.expect(self.channel, *reply, timeout=timeout)

    # -- methods ---------------------------------------------------------------

    def queue_declare(self, queue: str, *, durable: bool = False) -> Any:
        return self.rpc(
            commands.Queue.Declare(queue=queue, durable=durable), commands.Queue.DeclareOk
        )

    def queue_delete(self, queue: str) -> Any:
        return self.rpc(commands.Queue.Delete(queue=queue), commands.Queue.DeleteOk)

    def basic_qos(self, prefetch_count: int) -> None:
        self.rpc(commands.Basic.Qos(prefetch_count=prefetch_count), commands.Basic.QosOk)

    def basic_consume(self, queue: str, tag: str = "bench", *, no_ack: bool) -> str:
        ok = self.rpc(
            commands.Basic.Consume(queue=queue, consumer_tag=tag, no_ack=no_ack),
            commands.Basic.ConsumeOk,
        )
        return str(ok.consumer_tag)

    def close(self, timeout: float = 3.0, wait: bool = True) -> None:
        """connection.close, then wait (bounded) for close-ok, then close the socket."""
        if self.sock.fileno() < 0:
            return
        try:
            if not self.closed:
                self.send(0, commands.Connection.Close(200, "bye", 0, 0))
                if wait:
                    self.sock.settimeout(timeout)
                    self.expect(0, commands.Connection.CloseOk, timeout=timeout)
        except (OSError, BrokerClosed, TimeoutError):
            pass
        finally:
            self.closed = True
            self.sock.close()

    def __enter__(self) -> RawConnection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_many(
    n: int,
    host: str = "127.0.0.1",
    port: int = 5672,
    *,
    wave: int = 50,
    deadline_s: float = 300.0,
    **kw: Any,
) -> list[RawConnection]:
    """Open ``n`` connections (handshake done, channel 1 open), ``wave`` at a time in
    lock-step. Closes what it opened and re-raises on failure."""
    conns: list[RawConnection] = []
    deadline = time.monotonic() + deadline_s
    try:
        while len(conns) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"opened only {len(conns)} of {n} connections in time")
            batch = [RawConnection(host, port, **kw) for _ in range(min(wave, n - len(conns)))]
            conns.extend(batch)
            steps: Sequence[Iterator[None]] = [c.handshake() for c in batch]
            pending = list(steps)
            while pending:
                pending = [s for s in pending if next(s, StopIteration) is not StopIteration]
    except BaseException:
        for c in conns:
            c.close(wait=False)
        raise
    return conns


def round_trip(conn: RawConnection, timeout: float = 10.0) -> float:
    """Declare a fresh queue, consume it, publish one message and wait for it.

    Returns the publish-to-delivery time in milliseconds; deletes the queue."""
    queue = unique_queue("rt")
    conn.queue_declare(queue)
    try:
        conn.basic_consume(queue, "rt", no_ack=True)
        body = os.urandom(16)
        t0 = time.perf_counter()
        conn.sock.sendall(encode_publish(conn.channel, "", queue, body))
        conn.expect(conn.channel, commands.Basic.Deliver, timeout=timeout)
        deadline = time.monotonic() + timeout
        while True:
            _, value = conn.read_frame(deadline)
            if getattr(value, "value", None) == body:
                break
        elapsed = (time.perf_counter() - t0) * 1000.0
        conn.rpc(commands.Basic.Cancel(consumer_tag="rt"), commands.Basic.CancelOk)
    finally:
        conn.queue_delete(queue)
    return elapsed


def close_many(conns: Sequence[RawConnection], timeout: float = 10.0) -> None:
    """connection.close on every connection first, then collect the close-oks."""
    deadline = time.monotonic() + timeout
    for c in conns:
        try:
            if not c.closed:
                c.send(0, commands.Connection.Close(200, "bye", 0, 0))
        except OSError:
            c.closed = True
    for c in conns:
        try:
            if not c.closed:
                c.sock.settimeout(max(0.05, deadline - time.monotonic()))
                c.expect(
                    0, commands.Connection.CloseOk, timeout=max(0.05, deadline - time.monotonic())
                )
        except (OSError, BrokerClosed, TimeoutError):
            pass
        finally:
            c.closed = True
            c.sock.close()


def end_round(proc: Any, publisher: RawConnection | None, admin: RawConnection, queue: str) -> None:
    """After a round: reap the consumer process, close the publisher, drop the queue."""
    if proc.is_alive():
        proc.join(5)
    if proc.is_alive():
        proc.kill()
        proc.join(5)
    if publisher is not None:
        publisher.close()
    try:
        admin.queue_delete(queue)
    finally:
        admin.close()


def wait_reply(pipe: Any, proc: Any, timeout: float, what: str) -> Any:
    """Receive one object from a child process's pipe, bounded in time; fail fast if
    the child dies, and turn an {"error": ...} reply into an exception."""
    deadline = time.monotonic() + timeout
    while not pipe.poll(0.1):
        if not proc.is_alive() and not pipe.poll(0.1):
            raise RuntimeError(f"{what}: process exited with code {proc.exitcode}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: no reply in {timeout:.0f}s")
    reply = pipe.recv()
    if isinstance(reply, dict) and "error" in reply:
        raise RuntimeError(f"{what}: {reply['error']}")
    return reply


def _self_check() -> None:
    """The hand-written encoders and the frame walker agree with pamqp byte for byte."""
    from pamqp import body, header

    queue = "rapidmq-bench-check"
    payload = b"0123456789abcdef"
    expected = (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=queue), 1)
        + frame.marshal(header.ContentHeader(0, len(payload), commands.Basic.Properties()), 1)
        + frame.marshal(body.ContentBody(payload), 1)
    )
    assert encode_publish(1, "", queue, payload) == expected, "basic.publish encoding"
    for tag, multiple in ((1, True), (2**40 + 7, False)):
        assert encode_ack(tag, multiple) == frame.marshal(
            commands.Basic.Ack(delivery_tag=tag, multiple=multiple), 1
        ), "basic.ack encoding"
    deliveries = b"".join(
        frame.marshal(commands.Basic.Deliver("ctag", tag, False, "", queue), 1)
        + frame.marshal(
            header.ContentHeader(0, 16, commands.Basic.Properties()),
            1,
        )
        + frame.marshal(body.ContentBody(_I64.pack(-tag) + _U64.pack(tag)), 1)
        for tag in range(1, 101)
    )
    for split in (0, 1, 7, 50, len(deliveries) // 2, len(deliveries) - 1):
        buf = bytearray(deliveries[:split])
        used, count, last1 = scan_deliveries(buf)
        del buf[:used]
        buf += deliveries[split:]
        used2, count2, last2 = scan_deliveries(buf)
        assert used2 == len(buf) and count + count2 == 100, split
        assert (last2 or last1) == 100, split
        stamps: list[int] = []
        assert scan_timestamps(bytearray(deliveries), stamps) == len(deliveries)
        assert stamps == [-t for t in range(1, 101)]
    print("amqp_raw self-check ok")


if __name__ == "__main__":
    _self_check()
