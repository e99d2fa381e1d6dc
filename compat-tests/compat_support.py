"""Shared helpers of the compatibility suites (imported by the test modules)."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pika
import pika.exceptions

CLIENT_TIMEOUT_S = 5.0


#: The ``observe_both`` fixture: a scenario run on RabbitMQ and on RapidMQ, giving
#: (RabbitMQ's observation, RapidMQ's).
ObserveBoth = Callable[[Callable[["Scratch"], Any]], tuple[Any, Any]]


@dataclass(frozen=True, slots=True)
class BrokerEndpoint:
    """Where a broker under test listens."""

    amqp_url: str
    amqp_port: int
    host: str
    mqtt_port: int | None = None  # None: the broker runs without its MQTT listener


def _endpoint(url: str, mqtt_port: int | None = None) -> BrokerEndpoint:
    parts = urlsplit(url)
    return BrokerEndpoint(
        amqp_url=url, amqp_port=parts.port or 5672, host=parts.hostname or "", mqtt_port=mqtt_port
    )


def pika_parameters(url: str, **overrides: Any) -> pika.URLParameters:
    """Connection parameters with short timeouts, so a silent broker fails fast."""
    params = pika.URLParameters(url)
    params.socket_timeout = CLIENT_TIMEOUT_S
    params.stack_timeout = CLIENT_TIMEOUT_S * 2
    params.blocked_connection_timeout = CLIENT_TIMEOUT_S * 2
    params.connection_attempts = 1
    params.retry_delay = 0
    for key, value in overrides.items():
        setattr(params, key, value)
    return params


class Scratch:
    """Unique names on one broker for one test, deleted again at the end.

    ``token`` is part of every name; ``normalize`` replaces it with ``ID`` so two
    brokers' observations (error texts quote queue names) can be compared.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.token = uuid.uuid4().hex[:12]
        self._queues: list[str] = []
        self._exchanges: list[str] = []
        self._connections: list[pika.BlockingConnection] = []

    def queue(self, label: str = "q") -> str:
        name = f"compat-{label}-{self.token}"
        self._queues.append(name)
        return name

    def exchange(self, label: str = "x") -> str:
        name = f"compat-{label}-{self.token}"
        self._exchanges.append(name)
        return name

    def own_queue(self, name: str) -> str:
        """Register a queue named elsewhere (e.g. by the server) for deletion."""
        self._queues.append(name)
        return name

    def connect(self, **overrides: Any) -> pika.BlockingConnection:
        conn = pika.BlockingConnection(pika_parameters(self.url, **overrides))
        self._connections.append(conn)
        return conn

    def channel(self, *, confirm: bool = True) -> Any:
        """A channel on a new connection, in confirm mode unless asked otherwise.

        Confirms make each publish wait until the broker has enqueued it, so a
        count or basic.get right after publishing sees the message.
        """
        ch = self.connect().channel()
        if confirm:
            ch.confirm_delivery()
        return ch

    def normalize(self, value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(self.token, "ID")
        if isinstance(value, bytes):
            return value.replace(self.token.encode(), b"ID")
        if isinstance(value, dict):
            return {self.normalize(k): self.normalize(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.normalize(v) for v in value)
        return value

    def close(self) -> None:
        for conn in self._connections:
            with contextlib.suppress(Exception):
                if conn.is_open:
                    conn.close()
        if not (self._queues or self._exchanges):
            return
        try:
            conn = pika.BlockingConnection(pika_parameters(self.url))
        except Exception:
            return
        try:
            for kind, names in (("queue", self._queues), ("exchange", self._exchanges)):
                for name in dict.fromkeys(names):
                    try:
                        ch = conn.channel()
                        if kind == "queue":
                            ch.queue_delete(name)
                        else:
                            ch.exchange_delete(name)
                        ch.close()
                    except pika.exceptions.ChannelClosed:
                        continue
        except Exception:
            pass
        finally:
            with contextlib.suppress(Exception):
                conn.close()
