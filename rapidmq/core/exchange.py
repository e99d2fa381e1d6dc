"""Exchanges and the four exchange types.

Every exchange type implements :class:`ExchangeType`: it holds the bindings of
one exchange in the shape that makes its ``route`` fast, as RabbitMQ's exchange
type modules implement ``route/2``.  Destinations are :class:`~rapidmq.core.queue.Queue`
or :class:`Exchange` objects; following exchange-to-exchange bindings is the
virtual host's job.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping
from typing import Any, Protocol

from rapidmq.core.errors import CommandInvalid
from rapidmq.core.headers_match import HeadersPattern, validate_headers_binding
from rapidmq.core.message import Message
from rapidmq.core.topic_trie import TopicTrie

__all__ = [
    "EXCHANGE_TYPES",
    "Binding",
    "DirectExchange",
    "Exchange",
    "ExchangeType",
    "FanoutExchange",
    "HeadersExchange",
    "TopicExchange",
    "exchange_type",
]


class Binding:
    """One binding from a source exchange to a queue or exchange."""

    __slots__ = ("arguments", "destination", "key", "routing_key", "source")

    def __init__(
        self,
        source: Exchange,
        destination: Any,
        routing_key: str,
        arguments: dict[str, Any],
        key: Hashable,
    ) -> None:
        self.source = source
        self.destination = destination  # Queue | Exchange
        self.routing_key = routing_key
        self.arguments = arguments
        self.key = key

    def __repr__(self) -> str:
        return (
            f"Binding({self.source.name!r} -> {self.destination.name!r}, "
            f"{self.routing_key!r}, {self.arguments!r})"
        )


class ExchangeType(Protocol):
    """The routing table of one exchange."""

    name: str

    def validate(self, arguments: Mapping[str, Any]) -> None:
        """Raise a core error if a binding with these arguments is refused."""

    def add(self, binding: Binding) -> None:
        """Add a binding."""

    def remove(self, binding: Binding) -> None:
        """Remove a binding previously added."""

    def route(self, routing_keys: tuple[str, ...], message: Message) -> Collection[Hashable]:
        """Destinations the message goes to (may repeat nothing; may be empty)."""


def _count_add(table: dict[Hashable, int], destination: Hashable) -> None:
    table[destination] = table.get(destination, 0) + 1


def _count_remove(table: dict[Hashable, int], destination: Hashable) -> None:
    count = table.get(destination, 0)
    if count > 1:
        table[destination] = count - 1
    else:
        table.pop(destination, None)


class DirectExchange:
    """Routes to bindings whose key equals a routing key."""

    __slots__ = ("_table",)
    name = "direct"

    def __init__(self) -> None:
        self._table: dict[str, dict[Hashable, int]] = {}

    def validate(self, arguments: Mapping[str, Any]) -> None:
        pass

    def add(self, binding: Binding) -> None:
        _count_add(self._table.setdefault(binding.routing_key, {}), binding.destination)

    def remove(self, binding: Binding) -> None:
        table = self._table.get(binding.routing_key)
        if table is not None:
            _count_remove(table, binding.destination)
            if not table:
                del self._table[binding.routing_key]

    def route(self, routing_keys: tuple[str, ...], message: Message) -> Collection[Hashable]:
        if len(routing_keys) == 1:
            return self._table.get(routing_keys[0], ())
        found: dict[Hashable, None] = {}
        for key in routing_keys:
            found.update(dict.fromkeys(self._table.get(key, ())))
        return found


class FanoutExchange:
    """Routes to every binding."""

    __slots__ = ("_table",)
    name = "fanout"

    def __init__(self) -> None:
        self._table: dict[Hashable, int] = {}

    def validate(self, arguments: Mapping[str, Any]) -> None:
        pass

    def add(self, binding: Binding) -> None:
        _count_add(self._table, binding.destination)

    def remove(self, binding: Binding) -> None:
        _count_remove(self._table, binding.destination)

    def route(self, routing_keys: tuple[str, ...], message: Message) -> Collection[Hashable]:
        return self._table


class TopicExchange:
    """Routes by topic patterns (``*`` one word, ``#`` zero or more)."""

    __slots__ = ("_trie",)
    name = "topic"

    def __init__(self) -> None:
        self._trie = TopicTrie()

    def validate(self, arguments: Mapping[str, Any]) -> None:
        pass

    def add(self, binding: Binding) -> None:
        self._trie.add(binding.routing_key, binding.destination)

    def remove(self, binding: Binding) -> None:
        self._trie.remove(binding.routing_key, binding.destination)

    def route(self, routing_keys: tuple[str, ...], message: Message) -> Collection[Hashable]:
        if len(routing_keys) == 1:
            return self._trie.match(routing_keys[0])
        found: dict[Hashable, None] = {}
        for key in routing_keys:
            found.update(dict.fromkeys(self._trie.match(key)))
        return found


class HeadersExchange:
    """Routes by matching message headers against binding arguments."""

    __slots__ = ("_bindings",)
    name = "headers"

    def __init__(self) -> None:
        self._bindings: dict[Binding, HeadersPattern] = {}

    def validate(self, arguments: Mapping[str, Any]) -> None:
        validate_headers_binding(arguments)

    def add(self, binding: Binding) -> None:
        self._bindings[binding] = HeadersPattern.from_arguments(binding.arguments)

    def remove(self, binding: Binding) -> None:
        self._bindings.pop(binding, None)

    def route(self, routing_keys: tuple[str, ...], message: Message) -> Collection[Hashable]:
        headers = message.properties.headers
        found: dict[Hashable, None] = {}
        for binding, pattern in self._bindings.items():
            if pattern.matches(headers):
                found[binding.destination] = None
        return found


EXCHANGE_TYPES: dict[str, type[ExchangeType]] = {
    "direct": DirectExchange,
    "fanout": FanoutExchange,
    "topic": TopicExchange,
    "headers": HeadersExchange,
}


def exchange_type(name: str) -> ExchangeType:
    """A new routing table for exchange type ``name``.

    Raises:
        CommandInvalid: for a type RapidMQ does not know, as RabbitMQ words it.
    """
    cls = EXCHANGE_TYPES.get(name)
    if cls is None:
        raise CommandInvalid(f"unknown exchange type '{name}'")
    return cls()


class Exchange:
    """One exchange of a virtual host."""

    __slots__ = (
        "alternate",
        "arguments",
        "auto_delete",
        "bindings_in",
        "bindings_out",
        "deleted",
        "durable",
        "internal",
        "name",
        "published_in",
        "published_out",
        "routing",
        "to_exchanges",
        "type",
        "vhost_name",
    )

    def __init__(
        self,
        vhost_name: str,
        name: str,
        type_: str,
        *,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        self.vhost_name = vhost_name
        self.name = name
        self.type = type_
        self.routing: ExchangeType = exchange_type(type_)
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments: dict[str, Any] = dict(arguments or {})
        alternate = self.arguments.get("alternate-exchange")
        if isinstance(alternate, bytes):
            alternate = alternate.decode("utf-8", "replace")
        self.alternate: str | None = alternate if isinstance(alternate, str) else None
        self.bindings_out: dict[Hashable, Binding] = {}  # this exchange is the source
        self.bindings_in: dict[Hashable, Binding] = {}  # this exchange is the destination
        self.to_exchanges = 0  # bindings_out whose destination is an exchange
        self.deleted = False
        # Counted by Session.publish: messages published to this exchange, and
        # copies of them it routed to queues (RabbitMQ's publish_in, publish_out).
        self.published_in = 0
        self.published_out = 0

    @property
    def resource(self) -> str:
        return f"exchange '{self.name}' in vhost '{self.vhost_name}'"

    def statistics(self) -> dict[str, Any]:
        """Static properties, binding counts and message counters."""
        return {
            "name": self.name,
            "vhost": self.vhost_name,
            "type": self.type,
            "durable": self.durable,
            "auto_delete": self.auto_delete,
            "internal": self.internal,
            "arguments": dict(self.arguments),
            "bindings_as_source": len(self.bindings_out),
            "bindings_as_destination": len(self.bindings_in),
            "published_in": self.published_in,
            "published_out": self.published_out,
        }

    def __repr__(self) -> str:
        return f"Exchange({self.name!r}, {self.type!r})"
