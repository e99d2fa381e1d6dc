"""A virtual host: its exchanges, queues and bindings, and routing between them."""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Collection, Hashable
from typing import TYPE_CHECKING, Any

from rapidmq.core.arguments import (
    QUEUE_ARGUMENT_KEYS,
    amqp_type_name,
    check_arguments_equivalence,
    check_field_equivalence,
    parse_queue_arguments,
    resource_name,
)
from rapidmq.core.dead_letter import dead_lettered, is_cycle
from rapidmq.core.durable import BindingRecord, ExchangeRecord, QueueRecord, Recorder
from rapidmq.core.errors import AccessRefused, NotFound, PreconditionFailed, ResourceLocked
from rapidmq.core.exchange import Binding, Exchange, exchange_type
from rapidmq.core.message import Message
from rapidmq.core.persistence import Persistence
from rapidmq.core.policy import Policy
from rapidmq.core.queue import Queue
from rapidmq.core.quorum import check_queue_type
from rapidmq.core.stream import StreamQueue
from rapidmq.core.vhost_policies import VhostPolicies

if TYPE_CHECKING:
    from rapidmq.core.broker import CoreConnection

__all__ = ["VirtualHost", "random_name"]

PREDECLARED_EXCHANGES = (
    ("amq.direct", "direct"),
    ("amq.fanout", "fanout"),
    ("amq.topic", "topic"),
    ("amq.headers", "headers"),
    ("amq.match", "headers"),
)
_PREDECLARED_NAMES = frozenset(name for name, _ in PREDECLARED_EXCHANGES)
_DEFAULT_EXCHANGE_REFUSED = "operation not permitted on the default exchange"
#: The class of each queue type that is not a classic queue.
_QUEUE_CLASSES: dict[str, type[Queue]] = {"stream": StreamQueue}
_SERVER_NAMED_REFUSED = {"quorum": "rabbit_quorum_queue", "stream": "rabbit_stream_queue"}


def random_name(prefix: str) -> str:
    """``prefix`` followed by 22 url-safe base64 characters (128 random bits)."""
    return prefix + base64.urlsafe_b64encode(os.urandom(16)).rstrip(b"=").decode()


def _freeze(value: Any) -> Hashable:
    if isinstance(value, dict):
        return tuple(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, bool):
        return ("bool", value)
    return value  # type: ignore[no-any-return]


class VirtualHost:
    """Exchanges, queues and bindings of one vhost, with no I/O.

    With a ``recorder``, every change to durable topology is written through it
    (see :mod:`rapidmq.core.durable`); routing and messages never touch it.
    """

    def __init__(
        self,
        name: str,
        *,
        clock: Callable[[], float],
        wall_clock: Callable[[], float],
        recorder: Recorder | None = None,
        persistence: Persistence | None = None,
    ) -> None:
        self.name = name
        self.description = ""
        self.tags: tuple[str, ...] = ()
        self.recorder = recorder
        self.persistence = persistence  # durable queues store persistent messages here
        self._clock = clock
        self._wall_clock = wall_clock
        self.exchanges: dict[str, Exchange] = {}
        self.queues: dict[str, Queue] = {}
        self.timed: set[Queue] = set()
        #: Policies and operator policies, applied to queues and exchanges as they change.
        self.policies = VhostPolicies(name, recorder)
        self.default_exchange = Exchange(name, "", "direct", durable=True)
        self.exchanges[""] = self.default_exchange
        for xname, xtype in PREDECLARED_EXCHANGES:
            self.exchanges[xname] = Exchange(name, xname, xtype, durable=True)
        self.dead_letter_cycles_dropped = 0
        #: Durable queues that store transient messages too (quorum queues).
        self.storing_all = 0
        #: The vhost's limits (RabbitMQ's vhost-limits), set by the server; None = none.
        self.max_queues: int | None = None
        self.max_connections: int | None = None

    @property
    def wall_clock(self) -> Callable[[], float]:
        """Seconds since the epoch (stream timestamps and retention by age)."""
        return self._wall_clock

    def _exchange_resource(self, name: str) -> str:
        return resource_name("exchange", name, self.name)

    def _queue_resource(self, name: str) -> str:
        return resource_name("queue", name, self.name)

    # -- exchanges ----------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        """The exchange ``name``, or NotFound with RabbitMQ's text."""
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise NotFound(f"no {self._exchange_resource(name)}")
        return exchange

    def declare_exchange(
        self,
        name: str,
        type_: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Exchange:
        """Create an exchange or check that the existing one is equivalent."""
        if passive:
            if name == "":
                raise AccessRefused(_DEFAULT_EXCHANGE_REFUSED)
            return self.exchange(name)
        exchange_type(type_)  # CommandInvalid for unknown types, before anything else
        if name == "":
            raise AccessRefused(_DEFAULT_EXCHANGE_REFUSED)
        arguments = dict(arguments or {})
        resource = self._exchange_resource(name)
        exchange = self.exchanges.get(name)
        if exchange is None:
            if name.startswith("amq."):
                raise AccessRefused(f"exchange name '{name}' contains reserved prefix 'amq.*'")
            alternate = arguments.get("alternate-exchange")
            if alternate is not None and not isinstance(alternate, str | bytes):
                raise PreconditionFailed(
                    f"invalid type '{amqp_type_name(alternate)}' "
                    f"for arg 'alternate-exchange' in {resource}"
                )
            exchange = Exchange(
                self.name,
                name,
                type_,
                durable=durable,
                auto_delete=auto_delete,
                internal=internal,
                arguments=arguments,
            )
            if self.recorder is not None:
                self.recorder.exchange_declared(exchange)
            self.exchanges[name] = exchange
            self.policies.exchange_added(exchange)
            return exchange
        check_field_equivalence(exchange.type, type_, resource, "type")
        check_field_equivalence(exchange.durable, durable, resource, "durable")
        check_field_equivalence(exchange.auto_delete, auto_delete, resource, "auto_delete")
        check_field_equivalence(exchange.internal, internal, resource, "internal")
        check_arguments_equivalence(
            exchange.arguments, arguments, resource, ("alternate-exchange",)
        )
        return exchange

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        """Delete an exchange and its bindings; unknown names are ignored, as RabbitMQ does."""
        if name == "":
            raise AccessRefused(_DEFAULT_EXCHANGE_REFUSED)
        if name.startswith("amq."):
            raise AccessRefused(f"deletion of system {self._exchange_resource(name)} not allowed")
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings_out:
            raise PreconditionFailed(f"{exchange.resource} in use")
        self._remove_exchange(exchange, strict=True)

    def _remove_exchange(self, exchange: Exchange, *, strict: bool = False) -> None:
        if exchange.deleted:
            return
        if self.recorder is not None:
            self.recorder.exchange_deleted(exchange, strict=strict)
        exchange.deleted = True
        del self.exchanges[exchange.name]
        self.policies.exchange_removed(exchange.name)
        for binding in list(exchange.bindings_out.values()):
            self._remove_binding(binding, forget=False)
        for binding in list(exchange.bindings_in.values()):
            self._remove_binding(binding, forget=False)

    # -- queues -------------------------------------------------------------

    def declare_queue(
        self,
        connection: CoreConnection,
        name: str,
        *,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> Queue:
        """Create a queue or check that the existing one is equivalent."""
        if passive:
            queue = self.queue_for(name, connection)
            queue.touch()
            return queue
        arguments = dict(arguments or {})
        owner = connection if exclusive else None
        durable = durable and not exclusive
        if name == "":
            queue_type = arguments.get("x-queue-type")
            if queue_type in _SERVER_NAMED_REFUSED:
                raise PreconditionFailed(
                    "Cannot declare a server-named queue for type "
                    f"{_SERVER_NAMED_REFUSED[queue_type]}"
                )
            name = random_name("amq.gen-")
        elif name.startswith("amq."):
            raise AccessRefused(f"queue name '{name}' contains reserved prefix 'amq.*'")
        resource = self._queue_resource(name)
        existing = self.queues.get(name)
        if existing is not None:
            if existing.owner is not owner:
                raise ResourceLocked(self._locked_text(name))
            check_field_equivalence(existing.durable, durable, resource, "durable")
            check_field_equivalence(existing.auto_delete, auto_delete, resource, "auto_delete")
            check_arguments_equivalence(
                existing.arguments, arguments, resource, QUEUE_ARGUMENT_KEYS
            )
            existing.touch()
            return existing
        declared = parse_queue_arguments(arguments, resource)
        check_queue_type(
            arguments,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            resource=resource,
        )
        settings = self.policies.queue_settings(name, arguments, declared)
        if self.max_queues is not None and len(self.queues) >= self.max_queues:
            raise PreconditionFailed(
                f"cannot declare queue '{name}': queue limit in vhost '{self.name}' "
                f"({self.max_queues}) is reached"
            )
        queue = _QUEUE_CLASSES.get(settings.queue_type, Queue)(
            self,
            name,
            durable=durable,
            owner=owner,
            auto_delete=auto_delete,
            arguments=arguments,
            settings=settings,
            clock=self._clock,
        )
        if self.recorder is not None:
            self.recorder.queue_declared(queue)
        self.queues[name] = queue
        self.policies.queue_added(name, arguments, declared)
        if owner is not None:
            owner.exclusive_queues[name] = queue
        if settings.expires_ms is not None:
            self.watch(queue)
        return queue

    def _locked_text(self, name: str) -> str:
        return (
            f"cannot obtain exclusive access to locked {self._queue_resource(name)}. "
            "It could be originally declared on another connection or the exclusive "
            "property value does not match that of the original declaration."
        )

    def queue_for(self, name: str, connection: CoreConnection) -> Queue:
        """The queue ``name`` if this connection may use it.

        Raises:
            NotFound: no such queue.
            ResourceLocked: it is exclusive to another connection.
        """
        queue = self.queues.get(name)
        if queue is None:
            raise NotFound(f"no {self._queue_resource(name)}")
        if queue.owner is not None and queue.owner is not connection:
            raise ResourceLocked(self._locked_text(name))
        return queue

    def delete_queue(
        self,
        connection: CoreConnection,
        name: str,
        *,
        if_unused: bool = False,
        if_empty: bool = False,
    ) -> int:
        """Delete a queue; returns its ready message count (0 if it did not exist)."""
        queue = self.queues.get(name)
        if queue is None:
            return 0
        self.queue_for(name, connection)
        if if_unused and queue.consumers:
            raise PreconditionFailed(f"{queue.resource} in use")
        if if_empty and queue.ready_count:
            raise PreconditionFailed(f"{queue.resource} not empty")
        count = queue.ready_count
        self.remove_queue(queue, strict=True)
        return count

    def remove_queue(self, queue: Queue, *, strict: bool = False) -> None:
        """Delete a queue: unbind it, cancel its consumers, drop its messages.

        Args:
            queue: the queue.
            strict: a failed delete of its records raises StorageFailed (a
                client's queue.delete) instead of being logged (auto-delete, expiry).
        """
        if queue.deleted:
            return
        if self.recorder is not None:
            self.recorder.queue_deleted(queue, strict=strict)
        del self.queues[queue.name]
        self.policies.queue_removed(queue.name)
        self.timed.discard(queue)
        if queue.owner is not None:
            queue.owner.exclusive_queues.pop(queue.name, None)
        consumers = queue.detach()
        for binding in list(queue.bindings_in.values()):
            self._remove_binding(binding, forget=False)
        for consumer in consumers:
            consumer.session.server_cancelled(consumer)

    # -- policies -----------------------------------------------------------

    def set_policy(self, policy: Policy, *, operator: bool = False) -> bool:
        """Create or replace a policy and apply it to every queue and exchange at once.

        Returns:
            True if the policy is new.

        Raises:
            StorageFailed: it could not be recorded; nothing changed.
        """
        return self.policies.set(
            policy, operator=operator, queues=self.queues, exchanges=self.exchanges
        )

    def clear_policy(self, name: str, *, operator: bool = False) -> bool:
        """Delete a policy and undo its effect at once; False if there was none.

        Raises:
            StorageFailed: the deletion could not be recorded; nothing changed.
        """
        return self.policies.clear(
            name, operator=operator, queues=self.queues, exchanges=self.exchanges
        )

    # -- bindings -----------------------------------------------------------

    def bind(
        self,
        connection: CoreConnection,
        source: str,
        destination: str,
        routing_key: str,
        arguments: dict[str, Any] | None,
        *,
        to_exchange: bool,
    ) -> None:
        """Add a binding (idempotent)."""
        source_x, target = self._binding_ends(connection, source, destination, to_exchange)
        arguments = dict(arguments or {})
        source_x.routing.validate(arguments)
        self._add_binding(source_x, target, routing_key, arguments, record=True)

    def _add_binding(
        self,
        source_x: Exchange,
        target: Exchange | Queue,
        routing_key: str,
        arguments: dict[str, Any],
        *,
        record: bool,
    ) -> None:
        to_exchange = isinstance(target, Exchange)
        key = self._binding_key(source_x.name, target.name, routing_key, arguments, to_exchange)
        if key in source_x.bindings_out:
            return
        binding = Binding(source_x, target, routing_key, arguments, key)
        if record and self.recorder is not None:
            self.recorder.binding_added(binding)
        source_x.bindings_out[key] = binding
        target.bindings_in[key] = binding
        source_x.routing.add(binding)
        if to_exchange:
            source_x.to_exchanges += 1

    def unbind(
        self,
        connection: CoreConnection,
        source: str,
        destination: str,
        routing_key: str,
        arguments: dict[str, Any] | None,
        *,
        to_exchange: bool,
    ) -> None:
        """Remove a binding; a missing one is not an error, as in RabbitMQ 3.x.

        Only the default exchange is refused whatever exists.  A binding that is
        not there answers unbind-ok even when its source or destination is gone
        too (an auto-delete exchange that went with its last binding, say):
        clients such as aio-pika's RPC pattern unbind in that state when they
        tear down.  An existing binding to another connection's exclusive queue
        is refused as a bind would be.
        """
        if source == "" or (to_exchange and destination == ""):
            raise AccessRefused(_DEFAULT_EXCHANGE_REFUSED)
        source_x = self.exchanges.get(source)
        if source_x is None:
            return
        frozen_args = dict(arguments or {})
        key = self._binding_key(source, destination, routing_key, frozen_args, to_exchange)
        binding = source_x.bindings_out.get(key)
        if binding is None:
            return
        if not to_exchange:
            self.queue_for(destination, connection)  # ResourceLocked for another's exclusive
        self._remove_binding(binding, strict=True)

    def _binding_ends(
        self, connection: CoreConnection, source: str, destination: str, to_exchange: bool
    ) -> tuple[Exchange, Any]:
        if source == "" or (to_exchange and destination == ""):
            raise AccessRefused(_DEFAULT_EXCHANGE_REFUSED)
        source_x = self.exchange(source)
        target: Exchange | Queue
        if to_exchange:
            target = self.exchange(destination)
        else:
            target = self.queue_for(destination, connection)
        return source_x, target

    @staticmethod
    def _binding_key(
        source: str, destination: str, routing_key: str, arguments: dict[str, Any], to_x: bool
    ) -> Hashable:
        return (source, to_x, destination, routing_key, _freeze(arguments))

    def _remove_binding(
        self, binding: Binding, *, strict: bool = False, forget: bool = True
    ) -> None:
        source = binding.source
        if binding.key not in source.bindings_out:
            return
        if forget and self.recorder is not None:
            self.recorder.binding_removed(binding, strict=strict)
        del source.bindings_out[binding.key]
        binding.destination.bindings_in.pop(binding.key, None)
        source.routing.remove(binding)
        if isinstance(binding.destination, Exchange):
            source.to_exchanges -= 1
        if source.auto_delete and not source.bindings_out and not source.deleted:
            self._remove_exchange(source)

    # -- restoring ----------------------------------------------------------

    def clear(self) -> None:
        """Delete every queue and exchange but the predeclared ones (the vhost goes)."""
        for queue in list(self.queues.values()):
            self.remove_queue(queue)
        for exchange in list(self.exchanges.values()):
            if exchange.name and exchange.name not in _PREDECLARED_NAMES:
                self._remove_exchange(exchange)
        self.policies.drop_all()

    def restore_exchange(self, record: ExchangeRecord) -> bool:
        """Rebuild a stored durable exchange, writing nothing; False if it exists."""
        if record.name in self.exchanges:
            return False
        exchange = self.exchanges[record.name] = Exchange(
            self.name,
            record.name,
            record.type,
            durable=True,
            auto_delete=record.auto_delete,
            internal=record.internal,
            arguments=record.arguments,
        )
        self.policies.exchange_added(exchange)
        return True

    def restore_queue(self, record: QueueRecord) -> bool:
        """Rebuild a stored durable queue, writing nothing; False if it exists."""
        if record.name in self.queues:
            return False
        declared = parse_queue_arguments(record.arguments, self._queue_resource(record.name))
        settings = self.policies.queue_settings(record.name, record.arguments, declared)
        queue = _QUEUE_CLASSES.get(settings.queue_type, Queue)(
            self,
            record.name,
            durable=True,
            owner=None,
            auto_delete=record.auto_delete,
            arguments=record.arguments,
            settings=settings,
            clock=self._clock,
        )
        self.queues[record.name] = queue
        self.policies.queue_added(record.name, record.arguments, declared)
        if settings.expires_ms is not None:
            self.watch(queue)  # x-expires counts again from now, as in RabbitMQ
        return True

    def restore_binding(self, record: BindingRecord) -> bool:
        """Rebuild a stored binding, writing nothing; False if an end is missing."""
        source = self.exchanges.get(record.source)
        target: Exchange | Queue | None
        if record.to_exchange:
            target = self.exchanges.get(record.destination)
        else:
            target = self.queues.get(record.destination)
        if source is None or target is None or source is self.default_exchange:
            return False
        self._add_binding(source, target, record.routing_key, record.arguments, record=False)
        return True

    # -- routing ------------------------------------------------------------

    def route(
        self, exchange: Exchange, message: Message, routing_keys: tuple[str, ...]
    ) -> Collection[Queue]:
        """The queues a message published to ``exchange`` reaches, each once."""
        if exchange is self.default_exchange:
            queues = self.queues
            if len(routing_keys) == 1:
                queue = queues.get(routing_keys[0])
                return () if queue is None else (queue,)
            return {q: None for key in routing_keys if (q := queues.get(key)) is not None}
        found = exchange.routing.route(routing_keys, message)
        if not exchange.to_exchanges and (found or exchange.alternate is None):
            return found  # type: ignore[return-value]
        return self._route_graph(exchange, message, routing_keys)

    def _route_graph(
        self, start: Exchange, message: Message, routing_keys: tuple[str, ...]
    ) -> Collection[Queue]:
        queues: dict[Queue, None] = {}
        seen = {start}
        work = [start]
        while work:
            exchange = work.pop()
            found = exchange.routing.route(routing_keys, message)
            if not found and exchange.alternate is not None:
                alternate = self.exchanges.get(exchange.alternate)
                found = () if alternate is None else (alternate,)
            for destination in found:
                if isinstance(destination, Queue):
                    queues[destination] = None
                elif destination not in seen and isinstance(destination, Exchange):
                    seen.add(destination)
                    if destination is self.default_exchange:
                        queues.update(dict.fromkeys(self.route(destination, message, routing_keys)))
                    else:
                        work.append(destination)
        return queues

    def dead_letter(
        self, queue: Queue, message: Message, routing_keys: tuple[str, ...], reason: str
    ) -> bool:
        """Republish a message that died in ``queue`` to its dead-letter exchange.

        Returns True if some queue took it.
        """
        settings = queue.settings
        assert settings.dead_letter_exchange is not None
        exchange = self.exchanges.get(settings.dead_letter_exchange)
        if exchange is None:
            return False
        new, keys = dead_lettered(
            message,
            routing_keys,
            reason=reason,
            queue=queue.name,
            exchange=exchange.name,
            routing_key=settings.dead_letter_routing_key,
            now_s=self._wall_clock(),
        )
        targets = self.route(exchange, new, keys)
        headers = new.properties.headers or {}
        deaths = headers.get("x-death", [])
        taken = False
        for target in list(targets):
            if reason != "rejected" and is_cycle(target.name, deaths):
                self.dead_letter_cycles_dropped += 1
                continue
            if target.publish(new, keys if len(keys) > 1 else None, None):
                taken = True
        return taken

    # -- timers -------------------------------------------------------------

    def watch(self, queue: Queue) -> None:
        """``queue`` has (or may have) a deadline: include it in ticks."""
        if not queue.deleted:
            self.timed.add(queue)

    def tick(self, now: float) -> None:
        """Run every due queue timer."""
        for queue in list(self.timed):
            deadline = queue.next_deadline()
            if deadline is None:
                self.timed.discard(queue)
            elif deadline <= now:
                queue.on_timer(now)
                if not queue.deleted and queue.next_deadline() is None:
                    self.timed.discard(queue)

    def next_deadline(self) -> float | None:
        """The earliest queue deadline in this vhost, or None."""
        deadlines = [d for q in self.timed if (d := q.next_deadline()) is not None]
        return min(deadlines) if deadlines else None

    def statistics(self) -> dict[str, Any]:
        """Totals over this vhost's queues and exchanges."""
        queues = self.queues.values()
        figures = {
            "name": self.name,
            "exchanges": len(self.exchanges),
            "queues": len(self.queues),
            "bindings": sum(len(x.bindings_out) for x in self.exchanges.values()),
            "consumers": sum(len(q.consumers) for q in queues),
            "messages_ready": sum(q.ready_count for q in queues),
            "messages_unacknowledged": sum(q.unacked_count for q in queues),
            "dead_letter_cycles_dropped": self.dead_letter_cycles_dropped,
        }
        if self.persistence is not None:
            figures["messages_persistent"] = sum(q.persistent_count for q in queues)
        return figures
