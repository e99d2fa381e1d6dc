"""A minimal raw-socket MQTT 3.1.1 client for the benchmarks.

CONNECT, SUBSCRIBE, PUBLISH, PUBACK, PINGREQ and DISCONNECT are hand-encoded; incoming
packets are walked with a few byte reads (no parser objects). Publishers send
pre-encoded PUBLISH packets in large batches; subscribers count PUBLISH packets and,
for QoS 1, answer each with a PUBACK, all PUBACKs of one read in one send.

Everything here is blocking, bounded by socket timeouts and deadlines, and meant for
127.0.0.1 only. Run directly, it checks the encoders and the packet walker against
amqtt's codec (byte for byte, and with split reads).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import struct
import time
import uuid
from collections.abc import Sequence

__all__ = [
    "MQTTClosed",
    "RawMQTT",
    "close_many",
    "encode_connect",
    "encode_publish",
    "encode_subscribe",
    "open_many",
    "ping_many",
    "round_trip",
    "scan_packets",
    "unique_topic",
]

PUBLISH = 3
PUBACK = 4
SUBACK = 9
PINGRESP = 13
PINGREQ_BYTES = b"\xc0\x00"
DISCONNECT_BYTES = b"\xe0\x00"
_U16 = struct.Struct(">H")


class MQTTClosed(RuntimeError):
    """The broker closed the connection or refused it."""


def unique_topic(case: str) -> str:
    return f"rapidmq-bench/{case}/{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _utf8(value: str) -> bytes:
    raw = value.encode()
    return _U16.pack(len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes([first]) + _varint(len(body)) + body


def encode_connect(client_id: str, keep_alive: int = 0, clean: bool = True) -> bytes:
    """CONNECT, MQTT 3.1.1, no user name (anonymous)."""
    flags = 0x02 if clean else 0x00
    return _packet(
        0x10, _utf8("MQTT") + bytes([4, flags]) + _U16.pack(keep_alive) + _utf8(client_id)
    )


def encode_subscribe(packet_id: int, topic_filter: str, qos: int) -> bytes:
    return _packet(0x82, _U16.pack(packet_id) + _utf8(topic_filter) + bytes([qos]))


def encode_publish(
    topic: str, payload: bytes, qos: int = 0, packet_id: int = 0, retain: bool = False
) -> bytes:
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    body = _utf8(topic) + (_U16.pack(packet_id) if qos else b"") + payload
    return _packet(first, body)


def encode_puback(packet_id: int) -> bytes:
    return b"\x40\x02" + _U16.pack(packet_id)


def scan_packets(buf: bytearray, acks: bytearray | None = None) -> tuple[int, int, int, int]:
    """Walk complete packets in ``buf``.

    Returns (bytes consumed, PUBLISH packets, PUBACK packets, PINGRESP packets). When
    ``acks`` is given, a PUBACK for every QoS 1 PUBLISH is appended to it. Raises
    MQTTClosed on DISCONNECT (MQTT 5 brokers may send one), ValueError on a bad length.
    """
    pos = 0
    end = len(buf)
    publishes = pubacks = pings = 0
    while end - pos >= 2:
        first = buf[pos]
        rl = buf[pos + 1]
        if rl < 128:
            hdr = 2
        else:
            rl &= 0x7F
            shift = 7
            i = pos + 2
            while True:
                if i >= end:
                    return pos, publishes, pubacks, pings
                b = buf[i]
                rl |= (b & 0x7F) << shift
                i += 1
                if b < 128:
                    break
                shift += 7
                if shift > 21:
                    raise ValueError(f"bad remaining length at offset {pos}")
            hdr = i - pos
        pend = pos + hdr + rl
        if pend > end:
            break
        ptype = first >> 4
        if ptype == PUBLISH:
            publishes += 1
            if first & 0x06 and acks is not None:
                at = pos + hdr + 2 + ((buf[pos + hdr] << 8) | buf[pos + hdr + 1])
                acks += b"\x40\x02"
                acks += buf[at : at + 2]
        elif ptype == PUBACK:
            pubacks += 1
        elif ptype == PINGRESP:
            pings += 1
        elif ptype == 14:
            raise MQTTClosed("broker sent DISCONNECT")
        pos = pend
    return pos, publishes, pubacks, pings


class RawMQTT:
    """One blocking MQTT 3.1.1 connection."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 1883,
        *,
        client_id: str | None = None,
        keep_alive: int = 0,
        timeout: float = 15.0,
        send_connect: bool = True,
    ) -> None:
        self.client_id = client_id or f"rb-{os.getpid()}-{uuid.uuid4().hex[:12]}"
        self.keep_alive = keep_alive
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self._next_id = 1
        if send_connect:
            self.sock.sendall(encode_connect(self.client_id, keep_alive))

    @classmethod
    def open(cls, host: str = "127.0.0.1", port: int = 1883, **kw: object) -> RawMQTT:
        conn = cls(host, port, **kw)  # type: ignore[arg-type]
        try:
            conn.expect_connack()
        except BaseException:
            conn.sock.close()
            raise
        return conn

    def fill(self, deadline: float) -> None:
        while True:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                if time.monotonic() > deadline:
                    raise
                continue
            if not chunk:
                raise MQTTClosed("broker closed the connection")
            self.buf += chunk
            return

    def read_packet(self, timeout: float = 15.0) -> tuple[int, bytes]:
        """The next whole packet: (first byte, variable header + payload)."""
        deadline = time.monotonic() + timeout
        while True:
            buf = self.buf
            if len(buf) >= 2:
                rl = 0
                shift = 0
                i = 1
                complete = False
                while i < len(buf) and i <= 4:
                    b = buf[i]
                    rl |= (b & 0x7F) << shift
                    i += 1
                    if b < 128:
                        complete = True
                        break
                    shift += 7
                if complete and len(buf) >= i + rl:
                    first = buf[0]
                    body = bytes(buf[i : i + rl])
                    del buf[: i + rl]
                    return first, body
            if time.monotonic() > deadline:
                raise TimeoutError("no packet from the broker in time")
            self.fill(deadline)

    def expect_connack(self, timeout: float = 15.0) -> None:
        first, body = self.read_packet(timeout)
        if first >> 4 != 2:
            raise MQTTClosed(f"expected CONNACK, got packet type {first >> 4}")
        if len(body) < 2 or body[1] != 0:
            raise MQTTClosed(f"CONNACK refused: return code {body[1] if len(body) > 1 else '?'}")

    def subscribe(self, topic_filter: str, qos: int = 0, timeout: float = 15.0) -> int:
        """SUBSCRIBE and wait for its SUBACK; returns the granted QoS."""
        pid = self._next_id
        self._next_id += 1
        self.sock.sendall(encode_subscribe(pid, topic_filter, qos))
        deadline = time.monotonic() + timeout
        while True:
            first, body = self.read_packet(max(0.1, deadline - time.monotonic()))
            if first >> 4 == SUBACK and body[:2] == _U16.pack(pid):
                granted = body[2]
                if granted == 0x80:
                    raise MQTTClosed(f"SUBSCRIBE {topic_filter!r} refused")
                return granted

    def close(self, wait: bool = True) -> None:
        try:
            if wait:
                self.sock.settimeout(2.0)
                self.sock.sendall(DISCONNECT_BYTES)
        except OSError:
            pass
        finally:
            self.sock.close()

    def __enter__(self) -> RawMQTT:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_many(
    n: int,
    host: str,
    port: int,
    *,
    keep_alive: int = 60,
    wave: int = 100,
    timeout: float = 30.0,
) -> list[RawMQTT]:
    """Open ``n`` connections, ``wave`` at a time: connect and send CONNECT on the whole
    wave, then wait for every CONNACK with one selector. Sockets are closed with RST
    (SO_LINGER 0) later, so repeated runs do not fill the port range with TIME_WAIT."""
    conns: list[RawMQTT] = []
    linger = struct.pack("ii", 1, 0)
    sel = selectors.DefaultSelector()
    try:
        while len(conns) < n:
            batch = []
            try:
                for _ in range(min(wave, n - len(conns))):
                    c = RawMQTT(host, port, keep_alive=keep_alive, timeout=timeout)
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
                    batch.append(c)
                pending = {c.sock.fileno(): c for c in batch}
                for c in batch:
                    c.sock.setblocking(False)
                    sel.register(c.sock, selectors.EVENT_READ, c)
                deadline = time.monotonic() + timeout
                while pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise TimeoutError(f"{len(pending)} CONNACKs missing after {timeout}s")
                    for key, _ in sel.select(min(left, 1.0)):
                        c = key.data
                        try:
                            chunk = c.sock.recv(4096)
                        except BlockingIOError:
                            continue
                        if not chunk:
                            raise MQTTClosed("broker closed a connection during CONNECT")
                        c.buf += chunk
                        if len(c.buf) >= 4:
                            if c.buf[0] >> 4 != 2 or c.buf[3] != 0:
                                raise MQTTClosed(f"CONNACK refused: {bytes(c.buf[:4]).hex()}")
                            del c.buf[:4]
                            sel.unregister(c.sock)
                            c.sock.setblocking(True)
                            c.sock.settimeout(timeout)
                            pending.pop(c.sock.fileno(), None)
            except BaseException:
                for c in batch:
                    with contextlib.suppress(KeyError, ValueError):
                        sel.unregister(c.sock)
                    c.sock.close()
                raise
            conns += batch
    except BaseException:
        close_many(conns, graceful=False)
        raise
    finally:
        sel.close()
    return conns


def ping_many(conns: Sequence[RawMQTT], timeout: float = 30.0) -> tuple[int, int]:
    """PINGREQ on every connection; returns (PINGRESPs received, connections dead)."""
    sel = selectors.DefaultSelector()
    dead = 0
    waiting: set[int] = set()
    try:
        for c in conns:
            try:
                c.sock.sendall(PINGREQ_BYTES)
            except OSError:
                dead += 1
                continue
            c.sock.setblocking(False)
            sel.register(c.sock, selectors.EVENT_READ, c)
            waiting.add(c.sock.fileno())
        got = 0
        deadline = time.monotonic() + timeout
        while waiting and time.monotonic() < deadline:
            for key, _ in sel.select(0.5):
                c = key.data
                try:
                    chunk = c.sock.recv(4096)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                fd = c.sock.fileno()
                if not chunk:
                    dead += 1
                    sel.unregister(c.sock)
                    waiting.discard(fd)
                    continue
                c.buf += chunk
                used, _, _, pings = scan_packets(c.buf)
                del c.buf[:used]
                if pings:
                    got += 1
                    sel.unregister(c.sock)
                    waiting.discard(fd)
        for c in conns:
            c.sock.setblocking(True)
        return got, dead
    finally:
        sel.close()


def close_many(conns: Sequence[RawMQTT], graceful: bool = True) -> None:
    for c in conns:
        try:
            if graceful:
                c.sock.setblocking(False)
                c.sock.send(DISCONNECT_BYTES)
        except OSError:
            pass
        finally:
            c.sock.close()


def round_trip(host: str, port: int, timeout: float = 10.0) -> float:
    """A fresh subscriber and a fresh publisher: ms from PUBLISH sent to PUBLISH
    received (QoS 0, 16 bytes, a unique topic)."""
    topic = unique_topic("probe")
    with (
        RawMQTT.open(host, port, timeout=timeout) as sub,
        RawMQTT.open(host, port, timeout=timeout) as pub,
    ):
        sub.subscribe(topic, 0, timeout)
        t0 = time.perf_counter()
        pub.sock.sendall(encode_publish(topic, b"0123456789abcdef"))
        deadline = time.monotonic() + timeout
        while True:
            first, _ = sub.read_packet(max(0.1, deadline - time.monotonic()))
            if first >> 4 == PUBLISH:
                return (time.perf_counter() - t0) * 1000


def _self_check() -> None:
    """The encoders agree with amqtt's codec byte for byte; the walker handles splits."""
    import asyncio

    from amqtt.adapters import BufferReader
    from amqtt.mqtt.connect import ConnectPacket
    from amqtt.mqtt.publish import PublishPacket
    from amqtt.mqtt.subscribe import SubscribePacket

    async def decode(cls: type, raw: bytes) -> object:
        return await cls.from_stream(BufferReader(raw))

    async def checks() -> None:
        pub = encode_publish("a/b", b"xyz", qos=1, packet_id=7)
        ref = PublishPacket.build("a/b", b"xyz", 7, False, 1, False)
        assert ref.to_bytes() == pub, (ref.to_bytes(), pub)
        pub0 = encode_publish("a/b", b"0123456789abcdef")
        ref0 = PublishPacket.build("a/b", b"0123456789abcdef", None, False, 0, False)
        assert ref0.to_bytes() == pub0
        conn = await decode(ConnectPacket, encode_connect("cid", 60))
        assert conn.client_id == "cid" and conn.keep_alive == 60 and conn.clean_session_flag
        sub = await decode(SubscribePacket, encode_subscribe(3, "x/+/#", 1))
        assert sub.variable_header.packet_id == 3 and sub.payload.topics == [("x/+/#", 1)], (
            sub.payload.topics
        )

    asyncio.run(checks())
    long_topic = "t/" + "x" * 300  # a two-byte remaining length
    stream = (
        encode_publish("a/b", b"p" * 16) * 3
        + encode_publish(long_topic, b"q", qos=1, packet_id=258)
        + b"\x40\x02\x00\x01"
        + b"\xd0\x00"
    )
    for step in (1, 2, 3, 7, len(stream)):
        buf = bytearray()
        acks = bytearray()
        totals = [0, 0, 0]
        for i in range(0, len(stream), step):
            buf += stream[i : i + step]
            used, p, a, g = scan_packets(buf, acks)
            del buf[:used]
            totals = [totals[0] + p, totals[1] + a, totals[2] + g]
        assert not buf and totals == [4, 1, 1], (step, totals)
        assert bytes(acks) == encode_puback(258), acks
    print("mqtt_raw: encoders match amqtt's codec; the walker handles split reads")


if __name__ == "__main__":
    _self_check()
