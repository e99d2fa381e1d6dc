"""Helpers for driving the core with plain calls: a settable clock, a recording sink, stores."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rapidmq.core import Broker, ClientInfo, CoreConnection, Message, Properties, Session
from rapidmq.storage import open_stores
from rapidmq.storage.api import MessageStore


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingSink:
    """Records every call the core makes; ``is_writable`` can be switched off."""

    events: list[tuple[Any, ...]] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    is_writable: bool = True

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        self.events.append(("deliver", consumer_tag, delivery_tag, redelivered, message.body))
        self.messages.append(message)

    def consumer_cancelled(self, consumer_tag: str) -> None:
        self.events.append(("cancelled", consumer_tag))

    def writable(self) -> bool:
        return self.is_writable

    def take(self) -> list[tuple[Any, ...]]:
        events, self.events = self.events, []
        return events


@dataclass
class Client:
    """One connection with one session and its sink."""

    connection: CoreConnection
    session: Session
    sink: RecordingSink

    def channel(self) -> tuple[Session, RecordingSink]:
        sink = RecordingSink()
        return self.connection.open_session(sink), sink


WALL_CLOCK_S = 1_700_000_000.75


def connect(broker: Broker, user: str = "guest") -> Client:
    connection = broker.connect("/", ClientInfo("amqp091", "127.0.0.1:1", user=user))
    sink = RecordingSink()
    return Client(connection, connection.open_session(sink), sink)


def msg(
    body: bytes | str,
    routing_key: str = "q",
    exchange: str = "",
    **properties: Any,
) -> Message:
    if isinstance(body, str):
        body = body.encode()
    return Message(exchange, routing_key, body, Properties(**properties))


class Stores:
    """RocksDB stores in one data dir that a test can close and open again (a restart)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.opened: list[Any] = []

    def open(self) -> MessageStore:
        metadata, messages = open_stores(self.path, "rocksdb")
        self.opened += [messages, metadata]
        return messages

    def close(self) -> None:
        opened, self.opened = self.opened, []
        for store in opened:
            store.close()
