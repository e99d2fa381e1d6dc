"""Helpers of the MQTT compatibility suites: endpoints, a paho wrapper and raw packets.

``PahoClient`` drives paho-mqtt 2.x (MQTT 3.1.1 or 5) from the test thread and
records everything the client observes: CONNACK flags and reason codes, SUBACK
codes, PUBACK reason codes, messages with their flags and properties, and
disconnect reason codes.  Every wait has a deadline, so a silent broker fails a
test instead of hanging it.

``RawMQTT`` is a bare socket that writes hand-built packets, for what client
libraries refuse to send (invalid topic filters, unknown topic aliases) and to
see exactly how the broker answers: a packet, or the connection closed.

``MQTTScratch`` names topics and client ids for one test with a unique token, and
cleans up after it: clients disconnected, retained messages cleared, persistent
sessions discarded.  Brokers are shared, so nothing a test leaves may leak into
another test or run.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions

__all__ = [
    "CLIENT_TIMEOUT_S",
    "MOSQUITTO_HOST",
    "MOSQUITTO_PORT",
    "QUIET_S",
    "Connack",
    "MQTTEndpoint",
    "MQTTScratch",
    "PahoClient",
    "RawMQTT",
    "Received",
    "SubscribeOptions",
    "props",
    "props_seen",
    "topic_alias_property",
]

MOSQUITTO_HOST = "127.0.0.1"
MOSQUITTO_PORT = 1883
CLIENT_TIMEOUT_S = 5.0
# How long to keep listening after the expected messages, to catch extra ones.
QUIET_S = 0.3
KEEPALIVE_S = 30

Sub = tuple[str, int] | tuple[str, SubscribeOptions]


@dataclass(frozen=True, slots=True)
class MQTTEndpoint:
    """Where an MQTT broker listens, and its AMQP URL when it is also an AMQP broker."""

    host: str
    port: int
    name: str
    amqp_url: str | None = None


@dataclass(frozen=True, slots=True)
class Connack:
    session_present: bool
    reason_code: int
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Received:
    """One PUBLISH as the client saw it."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: dict[str, Any]

    def seen(self, *, dup: bool = False) -> tuple[Any, ...]:
        """A comparable summary: topic, payload, qos, retain flag (and DUP when asked)."""
        base = (self.topic, self.payload, self.qos, self.retain)
        return (*base, self.dup) if dup else base


def props(packet_type: int, **values: Any) -> Properties:
    """paho ``Properties`` of ``packet_type`` with the given attributes set."""
    p = Properties(packet_type)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def props_seen(p: Properties | None) -> dict[str, Any]:
    """Every property present, by paho's name (``UserProperty``, ``ContentType``, ...)."""
    if p is None:
        return {}
    seen = {}
    for name in p.names:
        key = name.replace(" ", "")
        if hasattr(p, key):
            seen[key] = getattr(p, key)
    return seen


def _wait(
    cond: threading.Condition, ready: Callable[[], bool], what: str, timeout_s: float
) -> None:
    deadline = time.monotonic() + timeout_s
    with cond:
        while not ready():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out after {timeout_s}s waiting for {what}")
            cond.wait(left)


class PahoClient:
    """One paho-mqtt client on its own network thread, recording what it observes.

    The client never reconnects by itself: a broker that drops it must be seen to.
    """

    def __init__(
        self,
        endpoint: MQTTEndpoint,
        client_id: str,
        *,
        version: int = 5,
        clean: bool = True,
        session_expiry_s: int | None = None,
        manual_ack: bool = False,
        username: str | None = None,
        password: str | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.client_id = client_id
        self.version = version
        self.clean = clean
        self.session_expiry_s = session_expiry_s
        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=paho.MQTTv5 if version == 5 else paho.MQTTv311,
            clean_session=None if version == 5 else clean,
            reconnect_on_failure=False,
            manual_ack=manual_ack,
        )
        if username is not None:
            self._client.username_pw_set(username, password)
        self._cond = threading.Condition()
        self.connacks: list[Connack] = []
        self.messages: list[Received] = []
        self.raw_messages: list[paho.MQTTMessage] = []
        self.disconnects: list[int] = []
        self._subacks: dict[int, list[int]] = {}
        self._unsubacks: dict[int, list[int]] = {}
        self._published: dict[int, int] = {}
        self._running = False
        c = self._client
        c.on_connect = self._on_connect
        c.on_subscribe = self._on_subscribe
        c.on_unsubscribe = self._on_unsubscribe
        c.on_publish = self._on_publish
        c.on_message = self._on_message
        c.on_disconnect = self._on_disconnect

    # --- paho callbacks (network thread) ------------------------------------------------

    def _record(self, fn: Callable[[], None]) -> None:
        with self._cond:
            fn()
            self._cond.notify_all()

    def _on_connect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, p: Any) -> None:
        seen = Connack(bool(flags.session_present), rc.value, props_seen(p))
        self._record(lambda: self.connacks.append(seen))

    def _on_subscribe(self, c: Any, u: Any, mid: int, rcs: list[ReasonCode], p: Any) -> None:
        self._record(lambda: self._subacks.__setitem__(mid, [r.value for r in rcs]))

    def _on_unsubscribe(self, c: Any, u: Any, mid: int, rcs: list[ReasonCode], p: Any) -> None:
        self._record(lambda: self._unsubacks.__setitem__(mid, [r.value for r in rcs]))

    def _on_publish(self, c: Any, u: Any, mid: int, rc: ReasonCode, p: Any) -> None:
        self._record(lambda: self._published.__setitem__(mid, rc.value))

    def _on_message(self, c: Any, u: Any, m: paho.MQTTMessage) -> None:
        p = props_seen(m.properties) if self.version == 5 else {}
        seen = Received(m.topic, m.payload, m.qos, bool(m.retain), bool(m.dup), p)

        def add() -> None:
            self.messages.append(seen)
            self.raw_messages.append(m)

        self._record(add)

    def _on_disconnect(self, c: Any, u: Any, flags: Any, rc: ReasonCode, p: Any) -> None:
        self._record(lambda: self.disconnects.append(rc.value))

    # --- commands (test thread) -----------------------------------------------------------

    def will(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> PahoClient:
        self._client.will_set(topic, payload, qos, retain, properties)
        return self

    def connect(
        self, properties: Properties | None = None, keepalive_s: int = KEEPALIVE_S
    ) -> Connack:
        """Connect, wait for CONNACK and return it (whatever its reason code)."""
        if self.version == 5:
            p = properties or Properties(PacketTypes.CONNECT)
            if self.session_expiry_s is not None:
                p.SessionExpiryInterval = self.session_expiry_s
            self._client.connect(
                self.endpoint.host,
                self.endpoint.port,
                keepalive_s,
                clean_start=self.clean,
                properties=p,
            )
        else:
            self._client.connect(self.endpoint.host, self.endpoint.port, keepalive_s)
        before = len(self.connacks)
        self._client.loop_start()
        self._running = True
        _wait(self._cond, lambda: len(self.connacks) > before, "CONNACK", CLIENT_TIMEOUT_S)
        return self.connacks[-1]

    def subscribe(self, *subs: Sub, properties: Properties | None = None) -> list[int]:
        """SUBSCRIBE to each ``(filter, qos or SubscribeOptions)``; return the SUBACK codes."""
        rc, mid = self._client.subscribe(list(subs), properties=properties)
        assert rc == paho.MQTT_ERR_SUCCESS and mid is not None, rc
        _wait(self._cond, lambda: mid in self._subacks, "SUBACK", CLIENT_TIMEOUT_S)
        return self._subacks.pop(mid)

    def unsubscribe(self, *filters: str) -> list[int]:
        rc, mid = self._client.unsubscribe(list(filters))
        assert rc == paho.MQTT_ERR_SUCCESS and mid is not None, rc
        _wait(self._cond, lambda: mid in self._unsubacks, "UNSUBACK", CLIENT_TIMEOUT_S)
        return self._unsubacks.pop(mid)

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 0,
        retain: bool = False,
        properties: Properties | None = None,
    ) -> int:
        """Publish and wait until the flow completes (sent, PUBACK or PUBCOMP).

        Returns the reason code paho reports (0 for success, or the broker's
        PUBACK/PUBREC reason code with MQTT 5).
        """
        info = self._client.publish(topic, payload, qos, retain, properties)
        assert info.rc == paho.MQTT_ERR_SUCCESS, f"publish refused by paho: {info.rc}"
        mid = info.mid
        _wait(self._cond, lambda: mid in self._published, f"publish {mid} done", CLIENT_TIMEOUT_S)
        return self._published.pop(mid)

    def ack(self, message: paho.MQTTMessage) -> None:
        """Acknowledge a message by hand (``manual_ack=True``)."""
        self._client.ack(message.mid, message.qos)

    def wait_messages(self, n: int, timeout_s: float = CLIENT_TIMEOUT_S) -> list[Received]:
        """Wait until at least ``n`` messages arrived in total; return them all."""
        _wait(
            self._cond,
            lambda: len(self.messages) >= n,
            f"{n} messages (have {self.messages!r})",
            timeout_s,
        )
        with self._cond:
            return list(self.messages)

    def collect(
        self, n: int, *, quiet_s: float = QUIET_S, timeout_s: float = CLIENT_TIMEOUT_S
    ) -> list[Received]:
        """Wait for ``n`` messages in total (or the timeout), then ``quiet_s`` more; never raises.

        Returns every message received so far, so extra or missing ones show.
        """
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while len(self.messages) < n and (left := deadline - time.monotonic()) > 0:
                self._cond.wait(left)
        time.sleep(quiet_s)
        with self._cond:
            return list(self.messages)

    def expect(self, n: int, *, quiet_s: float = QUIET_S) -> list[Received]:
        """Exactly ``n`` messages in total: wait for them, then ``quiet_s`` with no more."""
        got = self.collect(n, quiet_s=quiet_s)
        assert len(got) == n, f"expected {n} messages, got {len(got)}: {got!r}"
        return got

    def take(self, n: int, *, quiet_s: float = QUIET_S) -> list[Received]:
        """``collect(n)``, then forget what arrived, so the next call counts from zero."""
        got = self.collect(n, quiet_s=quiet_s)
        with self._cond:
            del self.messages[: len(got)]
            del self.raw_messages[: len(got)]
        return got

    def wait_disconnected(self, timeout_s: float = CLIENT_TIMEOUT_S) -> int:
        """Wait until the connection ends; return paho's disconnect reason code."""
        _wait(self._cond, lambda: bool(self.disconnects), "the connection to end", timeout_s)
        self._stop_loop()
        return self.disconnects[-1]

    def disconnect(self, reason_code: int = 0, properties: Properties | None = None) -> None:
        """A clean DISCONNECT (with ``reason_code`` under MQTT 5), then wait for the close."""
        if self.version == 5:
            rc = ReasonCode(PacketTypes.DISCONNECT, identifier=reason_code)
            self._client.disconnect(reasoncode=rc, properties=properties)
        else:
            self._client.disconnect()
        self.wait_disconnected()

    def drop(self) -> None:
        """End the connection without DISCONNECT, as a crashed client would."""
        sock = self._client.socket()
        assert sock is not None, "not connected"
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        self.wait_disconnected()

    def _stop_loop(self) -> None:
        if self._running:
            self._running = False
            self._client.loop_stop()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            if self._client.is_connected():
                self._client.disconnect()
                _wait(self._cond, lambda: bool(self.disconnects), "close", 2.0)
        self._stop_loop()


# --- raw packets ----------------------------------------------------------------------------


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(value: str | bytes) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return struct.pack("!H", len(data)) + data


def packet(first_byte: int, body: bytes) -> bytes:
    return bytes([first_byte]) + varint(len(body)) + body


CLOSED = "closed"
SILENT = "no packet"


class RawMQTT:
    """A bare TCP connection writing hand-built MQTT packets.

    ``read`` returns ``(first_byte, body)`` of the next packet, ``"closed"`` when
    the broker ended the connection, or ``"no packet"`` when nothing came in time.
    """

    def __init__(self, endpoint: MQTTEndpoint, version: int = 5) -> None:
        self.version = version
        self.sock = socket.create_connection(
            (endpoint.host, endpoint.port), timeout=CLIENT_TIMEOUT_S
        )
        self._buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _props(self, block: bytes) -> bytes:
        return varint(len(block)) + block if self.version == 5 else b""

    def read(self, timeout_s: float = CLIENT_TIMEOUT_S) -> tuple[int, bytes] | str:
        self.sock.settimeout(timeout_s)
        while True:
            parsed = self._parse()
            if parsed is not None:
                return parsed
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                return SILENT
            except (ConnectionResetError, BrokenPipeError):
                return CLOSED
            if not data:
                return CLOSED
            self._buf += data

    def _parse(self) -> tuple[int, bytes] | None:
        length, mul, i = 0, 1, 1
        while True:
            if i >= len(self._buf):
                return None
            byte = self._buf[i]
            length += (byte & 0x7F) * mul
            mul *= 128
            i += 1
            if not byte & 0x80:
                break
        if len(self._buf) < i + length:
            return None
        first, body = self._buf[0], self._buf[i : i + length]
        self._buf = self._buf[i + length :]
        return first, body

    def connect(
        self, client_id: str, *, clean: bool = True, session_expiry_s: int = 0
    ) -> tuple[int, bytes] | str:
        level = 5 if self.version == 5 else 4
        flags = 0x02 if clean else 0x00
        body = mqtt_str("MQTT") + bytes([level, flags]) + struct.pack("!H", KEEPALIVE_S)
        expiry = b"\x11" + struct.pack("!I", session_expiry_s) if session_expiry_s else b""
        body += self._props(expiry) + mqtt_str(client_id)
        self.send(packet(0x10, body))
        return self.read()

    def subscribe(
        self, subs: Iterable[tuple[str | bytes, int]], packet_id: int = 1
    ) -> tuple[int, bytes] | str:
        body = struct.pack("!H", packet_id) + self._props(b"")
        for topic_filter, options in subs:
            body += mqtt_str(topic_filter) + bytes([options])
        self.send(packet(0x82, body))
        return self.read()

    def publish(
        self,
        topic: str | bytes,
        payload: bytes,
        *,
        qos: int = 0,
        packet_id: int = 1,
        properties: bytes = b"",
    ) -> None:
        body = mqtt_str(topic)
        if qos:
            body += struct.pack("!H", packet_id)
        body += self._props(properties) + payload
        self.send(packet(0x30 | (qos << 1), body))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


def topic_alias_property(alias: int) -> bytes:
    return b"\x23" + struct.pack("!H", alias)


# --- per-test names and cleanup -------------------------------------------------------------


class MQTTScratch:
    """Unique topics and client ids on one broker for one test, cleaned up afterwards.

    ``token`` is part of every topic and client id; ``normalize`` replaces it with
    ``ID`` so two brokers' observations can be compared.
    """

    def __init__(self, endpoint: MQTTEndpoint) -> None:
        self.endpoint = endpoint
        self.token = uuid.uuid4().hex[:10]
        self._clients: list[PahoClient] = []
        self._raw: list[RawMQTT] = []
        self._retained: set[str] = set()
        self._sessions: dict[str, int] = {}

    def topic(self, *levels: str) -> str:
        return "/".join(("compat", self.token, *levels))

    def client_id(self, label: str = "c") -> str:
        cid = f"{label}-{self.token}"
        assert len(cid) <= 23, "MQTT 3.1.1 servers need only accept client ids of 23 characters"
        return cid

    def client(
        self, label: str = "c", *, version: int = 5, connect: bool = True, **kwargs: Any
    ) -> PahoClient:
        """A paho client with id ``label-token``, connected unless asked otherwise."""
        c = PahoClient(self.endpoint, self.client_id(label), version=version, **kwargs)
        self._clients.append(c)
        if not c.clean or c.session_expiry_s:
            self._sessions[c.client_id] = version
        if connect:
            connack = c.connect()
            assert connack.reason_code == 0, connack
        return c

    def raw(self, version: int = 5) -> RawMQTT:
        r = RawMQTT(self.endpoint, version)
        self._raw.append(r)
        return r

    def retained(self, topic: str) -> str:
        """Register a topic that will carry a retained message, to clear it at the end."""
        self._retained.add(topic)
        return topic

    def normalize(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(self.token, "ID")
        if isinstance(value, bytes):
            return value.replace(self.token.encode(), b"ID")
        if isinstance(value, dict):
            return {self.normalize(k): self.normalize(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.normalize(v) for v in value)
        if isinstance(value, Received | Connack):
            return self.normalize(
                {k: getattr(value, k) for k in value.__slots__}  # type: ignore[attr-defined]
            )
        return value

    def close(self) -> None:
        for c in self._clients:
            c.close()
        for r in self._raw:
            r.close()
        if not (self._retained or self._sessions):
            return
        with contextlib.suppress(Exception):
            cleaner = PahoClient(self.endpoint, self.client_id("clean"))
            cleaner.connect()
            for topic in sorted(self._retained):
                cleaner.publish(topic, b"", qos=1, retain=True)
            cleaner.close()
        for cid, version in self._sessions.items():
            # Connecting with a clean start and no session expiry discards the session.
            with contextlib.suppress(Exception):
                c = PahoClient(self.endpoint, cid, version=version, clean=True)
                c.connect()
                c.close()
