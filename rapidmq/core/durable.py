"""Durable topology as metadata records: what is written, and how it comes back.

Theory of operation: a :class:`Recorder` sits beside each virtual host when the
broker has a :class:`~rapidmq.storage.api.MetadataStore`.  The vhost calls it on
every change of topology -- never on publish, deliver or settle -- and the
recorder writes only what RabbitMQ keeps across a restart: vhosts, durable
exchanges (not the predeclared ``amq.*`` ones), durable queues (exclusive queues
are never durable here) and bindings whose source and destination are both
durable.

A new record is written *before* the object exists in memory, so a failed write
refuses the client's operation (:class:`StorageFailed`, AMQP 541) and nothing
is half-done.  Removals write the deletes first, bindings before the object
they hang on, so a store cut off at any point holds no binding without its
ends.  A removal the client asked for (queue.delete, exchange.delete, unbind)
fails the same way; one the broker does by itself (auto-delete, ``x-expires``,
a cascade) is logged and goes on in memory.

Record keys follow :data:`rapidmq.storage.api.KINDS`.  A binding's key ends
with :func:`args_id`, a digest of its arguments; the value holds the arguments
themselves.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from rapidmq.core.errors import StorageFailed
from rapidmq.core.exchange import Binding, Exchange
from rapidmq.storage.api import MetadataStore, StorageError
from rapidmq.storage.records import encode_value

if TYPE_CHECKING:
    from rapidmq.core.policy import Policy
    from rapidmq.core.queue import Queue

__all__ = [
    "BindingRecord",
    "ExchangeRecord",
    "PolicyRecord",
    "QueueRecord",
    "Recorder",
    "args_id",
    "binding_key",
    "read_bindings",
    "read_exchanges",
    "read_policies",
    "read_queues",
    "unreadable",
]

log = logging.getLogger("rapidmq.core")

_R = TypeVar("_R")


def args_id(arguments: dict[str, Any]) -> str:
    """A stable digest of binding arguments: equal tables give equal ids.

    The table is encoded with sorted keys as the stores encode values (so ``1``,
    ``True`` and ``b"1"`` differ) and hashed: 128 bits as 32 hex digits.
    """
    return hashlib.sha256(encode_value(_sorted(arguments))).hexdigest()[:32]


def _sorted(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _sorted(value[key]) for key in sorted(value)}
    if isinstance(value, list):
        return [_sorted(item) for item in value]
    return value


def binding_key(binding: Binding) -> tuple[str, str, str, str, str, str]:
    """The ``binding`` record key of one binding."""
    destination = binding.destination
    kind = "exchange" if isinstance(destination, Exchange) else "queue"
    return (
        binding.source.vhost_name,
        binding.source.name,
        kind,
        destination.name,
        binding.routing_key,
        args_id(binding.arguments),
    )


def _is_recorded(binding: Binding) -> bool:
    return bool(binding.source.durable and binding.destination.durable)


class Recorder:
    """Writes one vhost's durable topology to a metadata store."""

    __slots__ = ("store", "vhost")

    def __init__(self, store: MetadataStore, vhost: str) -> None:
        self.store = store
        self.vhost = vhost

    def _put(self, kind: str, key: tuple[str, ...], value: dict[str, Any], what: str) -> None:
        try:
            self.store.put(kind, key, value)
        except StorageError as err:
            raise StorageFailed(f"cannot record {what}: {_detail(err)}") from err

    def _delete(self, kind: str, key: tuple[str, ...], what: str, *, strict: bool) -> None:
        try:
            self.store.delete(kind, key)
        except StorageError as err:
            if strict:
                raise StorageFailed(f"cannot forget {what}: {_detail(err)}") from err
            log.error("cannot forget %s: %s", what, _detail(err))

    # -- vhosts ----------------------------------------------------------------------

    def vhost_added(self, description: str = "", tags: tuple[str, ...] = ()) -> None:
        """Record the vhost with its description and tags (created or changed)."""
        value = {"name": self.vhost, "description": description, "tags": list(tags)}
        self._put("vhost", (self.vhost,), value, f"vhost '{self.vhost}'")

    def vhost_deleted(self) -> None:
        self._delete("vhost", (self.vhost,), f"vhost '{self.vhost}'", strict=False)

    # -- exchanges -------------------------------------------------------------------

    def exchange_declared(self, exchange: Exchange) -> None:
        """Record a new exchange if it is durable. Raises StorageFailed."""
        if not exchange.durable:
            return
        value = {
            "name": exchange.name,
            "type": exchange.type,
            "durable": True,
            "auto_delete": exchange.auto_delete,
            "internal": exchange.internal,
            "arguments": dict(exchange.arguments),
        }
        self._put("exchange", (self.vhost, exchange.name), value, exchange.resource)

    def exchange_deleted(self, exchange: Exchange, *, strict: bool) -> None:
        """Forget a durable exchange and every recorded binding to or from it."""
        if not exchange.durable:
            return
        for binding in (*exchange.bindings_out.values(), *exchange.bindings_in.values()):
            self.binding_removed(binding, strict=strict)
        self._delete("exchange", (self.vhost, exchange.name), exchange.resource, strict=strict)

    # -- queues ----------------------------------------------------------------------

    def queue_declared(self, queue: Queue) -> None:
        """Record a new queue if it is durable. Raises StorageFailed."""
        if not queue.durable:
            return
        value = {
            "name": queue.name,
            "durable": True,
            "auto_delete": queue.auto_delete,
            "arguments": dict(queue.arguments),
        }
        self._put("queue", (self.vhost, queue.name), value, queue.resource)

    def queue_deleted(self, queue: Queue, *, strict: bool) -> None:
        """Forget a durable queue and every recorded binding to it."""
        if not queue.durable:
            return
        for binding in queue.bindings_in.values():
            self.binding_removed(binding, strict=strict)
        self._delete("queue", (self.vhost, queue.name), queue.resource, strict=strict)

    # -- bindings --------------------------------------------------------------------

    def binding_added(self, binding: Binding) -> None:
        """Record a binding between two durable objects. Raises StorageFailed."""
        if not _is_recorded(binding):
            return
        value = {"arguments": dict(binding.arguments)}
        self._put("binding", binding_key(binding), value, _binding_text(binding))

    def binding_removed(self, binding: Binding, *, strict: bool) -> None:
        """Forget a recorded binding."""
        if _is_recorded(binding):
            self._delete("binding", binding_key(binding), _binding_text(binding), strict=strict)

    # -- policies --------------------------------------------------------------------

    def policy_set(self, policy: Policy, *, operator: bool) -> None:
        """Record a policy (created or replaced). Raises StorageFailed."""
        value = {
            "pattern": policy.pattern,
            "apply-to": policy.apply_to,
            "definition": dict(policy.definition),
            "priority": policy.priority,
        }
        kind = "operator_policy" if operator else "policy"
        self._put(
            kind, (self.vhost, policy.name), value, _policy_text(policy.name, operator, self.vhost)
        )

    def policy_cleared(self, name: str, *, operator: bool, strict: bool) -> None:
        """Forget a policy."""
        kind = "operator_policy" if operator else "policy"
        self._delete(
            kind, (self.vhost, name), _policy_text(name, operator, self.vhost), strict=strict
        )


def _policy_text(name: str, operator: bool, vhost: str) -> str:
    kind = "operator policy" if operator else "policy"
    return f"{kind} '{name}' in vhost '{vhost}'"


def _binding_text(binding: Binding) -> str:
    return f"binding of {binding.destination.resource} to {binding.source.resource}"


def _detail(err: StorageError) -> str:
    return str(err).removeprefix("rapidmq: ")


# -- reading back ----------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class ExchangeRecord:
    """A durable exchange as stored."""

    vhost: str
    name: str
    type: str
    auto_delete: bool
    internal: bool
    arguments: dict[str, Any]


@dataclass(slots=True, frozen=True)
class QueueRecord:
    """A durable queue as stored."""

    vhost: str
    name: str
    auto_delete: bool
    arguments: dict[str, Any]


@dataclass(slots=True, frozen=True)
class BindingRecord:
    """A binding between durable objects as stored."""

    vhost: str
    source: str
    to_exchange: bool
    destination: str
    routing_key: str
    arguments: dict[str, Any]


def unreadable(kind: str, key: tuple[str, ...], detail: object) -> StorageError:
    """The refusal of a stored record that cannot be read back."""
    return StorageError(
        f"rapidmq: the stored {kind} record {key} is unreadable ({detail}); "
        "restore a backup or move the data dir away"
    )


def _read(
    store: MetadataStore, kind: str, build: Callable[[tuple[str, ...], dict[str, Any]], _R]
) -> Iterator[_R]:
    for key, value in store.items(kind):
        try:
            arguments = value.get("arguments", {})
            if not isinstance(arguments, dict):
                raise TypeError("its arguments are not a table")
            record = build(key, value)
        except KeyError as err:
            raise unreadable(kind, key, f"{err} is missing") from None
        except (ValueError, TypeError) as err:
            raise unreadable(kind, key, err) from None
        yield record


def read_exchanges(store: MetadataStore) -> Iterator[ExchangeRecord]:
    """Every stored exchange.

    Raises:
        StorageError: a record is unreadable.
    """

    def build(key: tuple[str, ...], value: dict[str, Any]) -> ExchangeRecord:
        vhost, name = key
        return ExchangeRecord(
            vhost,
            name,
            str(value["type"]),
            bool(value.get("auto_delete", False)),
            bool(value.get("internal", False)),
            dict(value.get("arguments", {})),
        )

    return _read(store, "exchange", build)


def read_queues(store: MetadataStore) -> Iterator[QueueRecord]:
    """Every stored queue.

    Raises:
        StorageError: a record is unreadable.
    """

    def build(key: tuple[str, ...], value: dict[str, Any]) -> QueueRecord:
        vhost, name = key
        auto_delete = bool(value.get("auto_delete", False))
        return QueueRecord(vhost, name, auto_delete, dict(value.get("arguments", {})))

    return _read(store, "queue", build)


def read_bindings(store: MetadataStore) -> Iterator[BindingRecord]:
    """Every stored binding.

    Raises:
        StorageError: a record is unreadable.
    """

    def build(key: tuple[str, ...], value: dict[str, Any]) -> BindingRecord:
        vhost, source, kind, destination, routing_key, _ = key
        if kind not in ("queue", "exchange"):
            raise ValueError(f"destination kind {kind!r}")
        arguments = dict(value.get("arguments", {}))
        return BindingRecord(vhost, source, kind == "exchange", destination, routing_key, arguments)

    return _read(store, "binding", build)


@dataclass(slots=True, frozen=True)
class PolicyRecord:
    """A policy or operator policy as stored (validated again when it is restored)."""

    vhost: str
    name: str
    operator: bool
    body: dict[str, Any]


def read_policies(store: MetadataStore, *, operator: bool) -> Iterator[PolicyRecord]:
    """Every stored policy, or every operator policy.

    Raises:
        StorageError: a record is unreadable.
    """
    kind = "operator_policy" if operator else "policy"

    def build(key: tuple[str, ...], value: dict[str, Any]) -> PolicyRecord:
        vhost, name = key
        if not isinstance(value.get("definition"), dict):
            raise ValueError("its definition is not a table")
        return PolicyRecord(vhost, name, operator, dict(value))

    return _read(store, kind, build)
