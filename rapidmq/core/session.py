"""A session: what one AMQP channel (or one MQTT connection) does in the core.

Theory of operation: a session owns its consumers and every delivery it has not
settled yet, keyed by delivery tag (1, 2, ... for deliveries and basic.get
results alike).  Unsettled deliveries are kept in a dict in tag order, so
``multiple`` settlements walk only the settled prefix.  Credit is checked by the
queue at dispatch time: per consumer (``set_prefetch(n)`` before consuming) and
per session (``set_prefetch(n, global_=True)``); a sink that is not writable
blocks the whole session until :meth:`Session.resume`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from itertools import repeat
from typing import TYPE_CHECKING, Any, Literal

from rapidmq.core.access import Access
from rapidmq.core.api import DeliverySink, GetResult, PublishResult, QueueDeclareResult
from rapidmq.core.arguments import amqp_type_name, parse_expiration
from rapidmq.core.consumer import Consumer
from rapidmq.core.entry import Entry
from rapidmq.core.errors import (
    AccessRefused,
    NotAllowed,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
)
from rapidmq.core.message import Message
from rapidmq.core.queue import Queue
from rapidmq.core.reply_to import REPLY_PREFIX, REPLY_QUEUE, ReplyConsumer, registry_for
from rapidmq.core.vhost import VirtualHost, random_name

if TYPE_CHECKING:
    from rapidmq.core.broker import CoreConnection

__all__ = ["Session"]

_UNROUTED = PublishResult(routed=False)
_ROUTED = PublishResult(routed=True)
_ROUTED_REJECTED = PublishResult(routed=True, rejected=True)

# (entry, queue, consumer or None for basic.get)
_Pending = tuple[Entry, Queue, Consumer | None]


class Session:
    """One channel's view of a virtual host."""

    def __init__(self, connection: CoreConnection, vhost: VirtualHost, sink: DeliverySink) -> None:
        self.connection = connection
        self.vhost = vhost
        self.sink = sink
        # What the connection's user may do; None checks nothing (see Broker.connect).
        self.access: Access | None = connection.access
        self.consumers: dict[str, Consumer] = {}
        # The consumer of amq.rabbitmq.reply-to, which is not in ``consumers``:
        # it belongs to no queue, and RabbitMQ keeps it apart likewise.
        self.reply_consumer: ReplyConsumer | None = None
        self._unacked: dict[int, _Pending] = {}
        self._next_tag = 1
        self.consumer_prefetch = 0
        self.global_prefetch = 0
        self.global_unacked = 0
        self.blocked = False
        self.closed = False
        self._last_queue: str | None = None
        self.published = 0
        self.unroutable = 0
        self.delivered = 0
        self.acked = 0
        self.rejected = 0

    # -- names ---------------------------------------------------------------

    def _queue_name(self, name: str) -> str:
        if name:
            return name
        if self._last_queue is None:
            raise NotFound("no previously declared queue")
        return self._last_queue

    @contextmanager
    def unchecked(self) -> Iterator[None]:
        """Skip permission checks inside the block, for what the broker does itself.

        An MQTT subscription's retained messages are put into its queue by the
        broker, not published by the client (RabbitMQ's MQTT plugin delivers them
        directly), so they need no write permission on the default exchange.
        """
        access, self.access = self.access, None
        try:
            yield
        finally:
            self.access = access

    # -- exchanges and queues ------------------------------------------------

    def declare_exchange(
        self,
        name: str,
        type: str,
        *,
        passive: bool = False,
        durable: bool = False,
        auto_delete: bool = False,
        internal: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """exchange.declare."""
        access = self.access
        if access is not None and not passive and name:
            # As rabbit_channel: configure on the exchange; a new exchange with an
            # alternate exchange also needs read on itself and write on that one.
            access.check("exchange", name, "configure")
            alternate = (arguments or {}).get("alternate-exchange")
            if isinstance(alternate, str) and name not in self.vhost.exchanges:
                access.check("exchange", name, "read")
                access.check("exchange", alternate, "write")
        self.vhost.declare_exchange(
            name,
            type,
            passive=passive,
            durable=durable,
            auto_delete=auto_delete,
            internal=internal,
            arguments=arguments,
        )

    def delete_exchange(self, name: str, *, if_unused: bool = False) -> None:
        """exchange.delete."""
        access = self.access
        if access is not None and name and not name.startswith("amq."):
            access.check("exchange", name, "configure")  # after the reserved-name refusals
        self.vhost.delete_exchange(name, if_unused=if_unused)

    def declare_queue(
        self,
        name: str,
        *,
        passive: bool = False,
        durable: bool = False,
        exclusive: bool = False,
        auto_delete: bool = False,
        arguments: dict[str, Any] | None = None,
    ) -> QueueDeclareResult:
        """queue.declare; ``""`` asks for a server-named queue."""
        if name.startswith(REPLY_QUEUE):
            return self._declare_reply_queue(name)
        access = self.access
        if access is not None and not passive and not name.startswith("amq."):
            # RabbitMQ checks the name it generated for a server-named queue; any
            # such name decides alike, since all are "amq.gen-" and random letters.
            checked = name or random_name("amq.gen-")
            access.check("queue", checked, "configure")
            dead_letter = (arguments or {}).get("x-dead-letter-exchange")
            if isinstance(dead_letter, str) and name not in self.vhost.queues:
                access.check("queue", checked, "read")
                access.check("exchange", dead_letter, "write")
        queue = self.vhost.declare_queue(
            self.connection,
            name,
            passive=passive,
            durable=durable,
            exclusive=exclusive,
            auto_delete=auto_delete,
            arguments=arguments,
        )
        self._last_queue = queue.name
        return QueueDeclareResult(queue.name, queue.ready_count, len(queue.consumers))

    def _declare_reply_queue(self, name: str) -> QueueDeclareResult:
        """As RabbitMQ: the pseudo-queue and a live reply name exist, whatever is asked.

        Nothing is checked (no permission, no argument): the declare only tells
        whether a reply name still reaches its consumer.
        """
        if name != REPLY_QUEUE and registry_for(self.vhost).find(name) is None:
            raise NotFound(f"no queue '{name}' in vhost '{self.vhost.name}'")
        self._last_queue = name
        return QueueDeclareResult(name, 0, 1)

    def delete_queue(self, name: str, *, if_unused: bool = False, if_empty: bool = False) -> int:
        """queue.delete; returns the number of ready messages deleted."""
        name = self._queue_name(name)
        if self.access is not None:
            self.access.check("queue", name, "configure")
        return self.vhost.delete_queue(
            self.connection, name, if_unused=if_unused, if_empty=if_empty
        )

    def purge_queue(self, name: str) -> int:
        """queue.purge; returns the number of ready messages dropped."""
        name = self._queue_name(name)
        if self.access is not None:
            self.access.check("queue", name, "read")
        return self.vhost.queue_for(name, self.connection).purge()

    def bind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """queue.bind (``""`` queue and key mean the last declared queue)."""
        if not queue and not routing_key and self._last_queue is not None:
            routing_key = self._last_queue
        queue = self._queue_name(queue)
        if self.access is not None:
            self._check_binding("queue", queue, exchange, routing_key)
        self.vhost.bind(
            self.connection,
            exchange,
            queue,
            routing_key,
            arguments,
            to_exchange=False,
        )

    def unbind_queue(
        self,
        queue: str,
        exchange: str,
        routing_key: str,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """queue.unbind."""
        if not queue and not routing_key and self._last_queue is not None:
            routing_key = self._last_queue
        queue = self._queue_name(queue)
        if self.access is not None:
            self._check_binding("queue", queue, exchange, routing_key)
        self.vhost.unbind(
            self.connection,
            exchange,
            queue,
            routing_key,
            arguments,
            to_exchange=False,
        )

    def bind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """exchange.bind."""
        if self.access is not None:
            self._check_binding("exchange", destination, source, routing_key)
        self.vhost.bind(
            self.connection, source, destination, routing_key, arguments, to_exchange=True
        )

    def unbind_exchange(
        self,
        destination: str,
        source: str,
        routing_key: str,
        arguments: dict[str, Any] | None = None,
    ) -> None:
        """exchange.unbind."""
        if self.access is not None:
            self._check_binding("exchange", destination, source, routing_key)
        self.vhost.unbind(
            self.connection, source, destination, routing_key, arguments, to_exchange=True
        )

    def _check_binding(
        self, kind: Literal["exchange", "queue"], destination: str, source: str, key: str
    ) -> None:
        """As rabbit_channel's binding_action: write on the destination, read on the source.

        A topic source also needs topic read permission on the binding key.  The
        default exchange is left to the vhost, which refuses it with its own text.
        """
        access = self.access
        assert access is not None
        access.check(kind, destination, "write")
        if not destination or not source:
            return
        access.check("exchange", source, "read")
        exchange = self.vhost.exchanges.get(source)
        if access.has_topic and exchange is not None and exchange.type == "topic":
            access.check_topic(source, key, "read")

    # -- publishing ------------------------------------------------------------

    def authorize_publish(self, exchange: str, routing_key: str) -> None:
        """Raise the AccessRefused :meth:`publish` would, without publishing.

        For front ends that act on a publish before routing it (MQTT retains or
        holds a message first), so that a refused one leaves nothing behind.
        """
        access = self.access
        if access is None:
            return
        access.check_publish(exchange)
        target = self.vhost.exchanges.get(exchange)
        if access.has_topic and target is not None and target.type == "topic":
            access.check_topic(exchange, routing_key, "write")

    def authorize_read(self, queue: str) -> None:
        """Raise the AccessRefused :meth:`consume` would on ``queue``, without consuming."""
        if self.access is not None:
            self.access.check("queue", queue, "read")

    def publish(self, message: Message, *, mandatory: bool = False) -> PublishResult:
        """basic.publish: route ``message`` by its exchange and routing key."""
        vhost = self.vhost
        access = self.access
        if access is not None and (
            access.version != access.source.version
            or not access.write_exchange.get(message.exchange)
        ):
            access.check_publish(message.exchange)  # decides, refreshes or refuses
        exchange = vhost.exchanges.get(message.exchange)
        if exchange is None:
            raise NotFound(f"no exchange '{message.exchange}' in vhost '{vhost.name}'")
        if exchange.internal:
            raise AccessRefused(f"cannot publish to internal {exchange.resource}")
        if access is not None and access.has_topic and exchange.type == "topic":
            access.check_topic_write(exchange.name, message.routing_key)
        props = message.properties
        reply_to = props.reply_to
        if reply_to is not None and reply_to == REPLY_QUEUE:
            message = self.name_reply_to(message)
            props = message.properties
        user_id = props.user_id
        if user_id is not None and user_id != self.connection.client.user:
            raise PreconditionFailed(
                f"user_id property set to '{user_id}' but authenticated user was "
                f"'{self.connection.client.user}'"
            )
        ttl_ms = None if props.expiration is None else parse_expiration(props.expiration)
        headers = props.headers
        self.published += 1
        exchange.published_in += 1
        if headers and ("CC" in headers or "BCC" in headers):
            keys, message = _sender_selected(message, headers)
            queues = vhost.route(exchange, message, keys)
            entry_keys: tuple[str, ...] | None = keys
            if exchange is vhost.default_exchange:
                registry = registry_for(vhost)
                for key in sorted(set(keys)):
                    if key.startswith(REPLY_PREFIX):
                        registry.deliver(key, message)
        elif exchange is vhost.default_exchange:
            queue = vhost.queues.get(message.routing_key)
            if queue is None:
                # Only a missing queue can be a reply name: no client may declare
                # an "amq." queue, so the common publish pays nothing for this.
                if message.routing_key.startswith(REPLY_PREFIX):
                    registry_for(vhost).deliver(message.routing_key, message)
                self.unroutable += 1
                return _UNROUTED  # a reply is no queue's: mandatory returns it, as RabbitMQ
            queues = (queue,)
            entry_keys = None
        else:
            queues = vhost.route(exchange, message, (message.routing_key,))
            entry_keys = None
        if not queues:
            self.unroutable += 1
            return _UNROUTED
        exchange.published_out += len(queues)
        rejected = False
        persist = vhost.persistence
        if persist is None or (props.delivery_mode != 2 and not vhost.storing_all):
            for queue in queues:
                if not queue.publish(message, entry_keys, ttl_ms):
                    rejected = True
            return _ROUTED_REJECTED if rejected else _ROUTED
        adds = persist.adds
        for queue in queues:
            if not queue.publish(message, entry_keys, ttl_ms):
                rejected = True
        if persist.adds == adds:
            return _ROUTED_REJECTED if rejected else _ROUTED
        return PublishResult(routed=True, rejected=rejected, batch=persist.batch)

    def name_reply_to(self, message: Message) -> Message:
        """``message`` with ``reply_to`` naming this session's reply consumer.

        :meth:`publish` calls it for ``reply_to`` ``amq.rabbitmq.reply-to``; a
        front end that holds publishes back (transactions) calls it first, since
        RabbitMQ names the reply consumer when the message is published.
        """
        consumer = self.reply_consumer
        if consumer is None:
            raise PreconditionFailed("fast reply consumer does not exist")
        return message.evolve(reply_to=consumer.reply_to)

    # -- consuming -------------------------------------------------------------

    def set_prefetch(self, count: int, *, global_: bool = False) -> None:
        """basic.qos: per new consumer, or shared by the session with ``global_``."""
        if global_:
            self.global_prefetch = count
            self._dispatch_all()
        else:
            self.consumer_prefetch = count

    def consume(
        self,
        queue: str,
        consumer_tag: str = "",
        *,
        no_ack: bool = False,
        exclusive: bool = False,
        arguments: dict[str, Any] | None = None,
        dispatch: bool = True,
    ) -> str:
        """basic.consume; returns the consumer tag (generated for ``""``).

        With ``dispatch=False`` nothing is delivered until :meth:`resume`, so a
        front end can send consume-ok before the first delivery.
        """
        if consumer_tag and consumer_tag in self.consumers:
            raise NotAllowed(f"attempt to reuse consumer tag '{consumer_tag}'")
        if queue == REPLY_QUEUE:
            return self._consume_reply_queue(consumer_tag, no_ack)
        name = self._queue_name(queue)
        if self.access is not None:
            self.access.check("queue", name, "read")
        target = self.vhost.queue_for(name, self.connection)
        arguments = dict(arguments or {})
        priority = arguments.get("x-priority", 0)
        if isinstance(priority, bool) or not isinstance(priority, int):
            raise PreconditionFailed(
                f"invalid arg 'x-priority' for {target.resource}: "
                f'"expected integer, got {amqp_type_name(priority)}"'
            )
        if self.global_prefetch and target.settings.queue_type == "quorum":
            raise NotImplementedFeature(f"{target.resource} does not support global qos")
        if target.exclusive_consumer is not None or (
            exclusive and target.consumers and target.exclusive_consumers
        ):
            raise AccessRefused(f"{target.resource} in exclusive use")
        tag = consumer_tag or random_name("amq.ctag-")
        consumer = Consumer(
            self,
            target,
            tag,
            no_ack=no_ack,
            exclusive=exclusive,
            priority=priority,
            prefetch=self.consumer_prefetch,
            arguments=arguments,
        )
        target.add_consumer(consumer, dispatch=dispatch)  # may refuse (a stream's checks)
        self.consumers[tag] = consumer
        return tag

    def _consume_reply_queue(self, consumer_tag: str, no_ack: bool) -> str:
        """Consume amq.rabbitmq.reply-to; as RabbitMQ, no read permission is asked."""
        if not no_ack:
            raise PreconditionFailed("reply consumer cannot acknowledge")
        if self.reply_consumer is not None:
            raise PreconditionFailed("reply consumer already set")
        tag = consumer_tag or random_name("amq.ctag-")
        self.reply_consumer = registry_for(self.vhost).register(self, tag)
        return tag

    def deliver_reply(self, consumer: ReplyConsumer, message: Message) -> None:
        """Hand a reply to this session's reply consumer (called by the registry).

        As RabbitMQ 3.10, the delivery takes the next delivery tag without using
        it up: no-ack replies are never settled, so the tag names nothing.
        """
        if self.closed or self.reply_consumer is not consumer:
            return
        self.delivered += 1
        self.sink.deliver(consumer.tag, self._next_tag, False, message)

    def _drop_reply_consumer(self, reply: ReplyConsumer) -> None:
        self.reply_consumer = None
        registry_for(self.vhost).unregister(reply)

    def cancel(self, consumer_tag: str) -> None:
        """basic.cancel; unknown tags are ignored, as RabbitMQ does."""
        reply = self.reply_consumer
        if reply is not None and reply.tag == consumer_tag:
            self._drop_reply_consumer(reply)
            return
        consumer = self.consumers.pop(consumer_tag, None)
        if consumer is not None:
            consumer.queue.remove_consumer(consumer)

    def server_cancelled(self, consumer: Consumer) -> None:
        """The consumer's queue was deleted: forget it and tell the front end."""
        if self.consumers.get(consumer.tag) is consumer:
            del self.consumers[consumer.tag]
            if not self.closed:
                self.sink.consumer_cancelled(consumer.tag)

    def deliver(self, consumer: Consumer, queue: Queue, entry: Entry) -> None:
        """Hand one message to the sink (called by the queue's dispatch)."""
        tag = self._next_tag
        self._next_tag = tag + 1
        consumer.delivered += 1
        self.delivered += 1
        if consumer.no_ack:
            queue.delivered_no_ack += 1
        else:
            self._unacked[tag] = (entry, queue, consumer)
            consumer.unacked += 1
            self.global_unacked += 1
        sink = self.sink
        sink.deliver(consumer.tag, tag, entry.redelivered, entry.message)
        if not sink.writable():
            self.blocked = True

    def get(self, queue: str, *, no_ack: bool = False) -> GetResult | None:
        """basic.get; None when the queue is empty."""
        name = self._queue_name(queue)
        if self.access is not None:
            self.access.check("queue", name, "read")
        target = self.vhost.queue_for(name, self.connection)
        entry = target.get(no_ack=no_ack)
        if entry is None:
            return None
        tag = self._next_tag
        self._next_tag = tag + 1
        self.delivered += 1
        if no_ack:
            target.settle_get_no_ack()
        else:
            self._unacked[tag] = (entry, target, None)
            target.unacked_count += 1
        return GetResult(tag, entry.redelivered, entry.message, target.ready_count)

    # -- settling --------------------------------------------------------------

    def _take(self, delivery_tag: int, multiple: bool) -> list[_Pending]:
        unacked = self._unacked
        if multiple:
            if delivery_tag == 0:
                taken = list(unacked.values())
                unacked.clear()
                return taken
            if delivery_tag not in unacked:
                raise PreconditionFailed(f"unknown delivery tag {delivery_tag}")
            tags = []
            for tag in unacked:
                if tag > delivery_tag:
                    break
                tags.append(tag)
            return [unacked.pop(tag) for tag in tags]
        pending = unacked.pop(delivery_tag, None)
        if pending is None:
            raise PreconditionFailed(f"unknown delivery tag {delivery_tag}")
        return [pending]

    def _release_credit(self, taken: list[_Pending]) -> set[Queue]:
        """Give the consumers' credit back; returns the queues that may dispatch now."""
        queues: set[Queue] = set()
        for _, _, consumer in taken:
            if consumer is not None:
                consumer.unacked -= 1
                self.global_unacked -= 1
                queues.add(consumer.queue)
        if self.global_prefetch and queues:
            queues.update(c.queue for c in self.consumers.values())
        return queues

    def ack(self, delivery_tag: int, *, multiple: bool = False) -> None:
        """basic.ack."""
        taken = self._take(delivery_tag, multiple)
        self.acked += len(taken)
        if len(taken) == 1:
            entry, queue, consumer = taken[0]
            if entry.stored:
                queue.forget(entry)
            queue.unacked_count -= 1
            queue.acked += 1
            if consumer is not None:
                consumer.unacked -= 1
                self.global_unacked -= 1
                if self.global_prefetch:
                    self._dispatch_all()
                else:
                    queue.dispatch()
            return
        by_queue: dict[Queue, int] = {}
        for entry, queue, _ in taken:
            by_queue[queue] = by_queue.get(queue, 0) + 1
            if entry.stored:
                queue.forget(entry)
        for queue, count in by_queue.items():
            queue.settle_acked(count)
        for queue in self._release_credit(taken):
            queue.dispatch()

    def ack_each(self, delivery_tags: Iterable[int]) -> None:
        """Acknowledge several single deliveries, dispatching once at the end.

        For front ends that settle in batches (MQTT QoS 0).  Tags that are not
        outstanding are skipped rather than refused, since the caller settles on
        the client's behalf and a deleted queue may have taken them already.
        """
        unacked = self._unacked
        taken = [item for item in map(unacked.pop, delivery_tags, repeat(None)) if item is not None]
        if not taken:
            return
        self.acked += len(taken)
        by_queue: dict[Queue, int] = {}
        for entry, queue, _ in taken:
            by_queue[queue] = by_queue.get(queue, 0) + 1
            if entry.stored:
                queue.forget(entry)
        for queue, count in by_queue.items():
            queue.settle_acked(count)
        for queue in self._release_credit(taken):
            queue.dispatch()

    def reject(self, delivery_tag: int, *, multiple: bool = False, requeue: bool = True) -> None:
        """basic.reject and basic.nack: requeue, or dead-letter / drop."""
        taken = self._take(delivery_tag, multiple)
        self.rejected += len(taken)
        self._settle_rejected(taken, requeue)

    def _settle_rejected(self, taken: list[_Pending], requeue: bool) -> None:
        by_queue: dict[Queue, list[Entry]] = {}
        for entry, queue, _ in taken:
            by_queue.setdefault(queue, []).append(entry)
        dispatch = self._release_credit(taken)
        for queue, entries in by_queue.items():
            queue.reject(entries, requeue=requeue)
        for queue in dispatch:
            queue.dispatch()

    def recover(self) -> None:
        """basic.recover(requeue=True): requeue every unacked delivery."""
        taken = list(self._unacked.values())
        self._unacked.clear()
        self._settle_rejected(taken, True)

    def resume(self) -> None:
        """The sink drained: deliver to this session's consumers again."""
        self.blocked = False
        self._dispatch_all()

    def _dispatch_all(self) -> None:
        for queue in {c.queue: None for c in list(self.consumers.values())}:
            if self.blocked:
                break
            queue.dispatch()

    def close(self) -> None:
        """Cancel every consumer and requeue every unacked delivery; idempotent."""
        if self.closed:
            return
        self.closed = True
        if self.reply_consumer is not None:
            self._drop_reply_consumer(self.reply_consumer)
        consumers = list(self.consumers.values())
        self.consumers.clear()
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer, auto_delete=False)
        taken = list(self._unacked.values())
        self._unacked.clear()
        self.global_unacked = 0
        by_queue: dict[Queue, list[Entry]] = {}
        for entry, queue, _ in taken:
            by_queue.setdefault(queue, []).append(entry)
        for queue, entries in by_queue.items():
            queue.requeue(entries)
        for consumer in consumers:
            consumer.queue.maybe_auto_delete()
        self.connection.session_closed(self)

    def statistics(self) -> dict[str, Any]:
        """Counters and credit of this session."""
        return {
            "consumers": len(self.consumers) + (self.reply_consumer is not None),
            "messages_unacknowledged": len(self._unacked),
            "prefetch_count": self.consumer_prefetch,
            "global_prefetch_count": self.global_prefetch,
            "blocked": self.blocked,
            "next_delivery_tag": self._next_tag,
            "published": self.published,
            "unroutable": self.unroutable,
            "delivered": self.delivered,
            "acknowledged": self.acked,
            "rejected": self.rejected,
        }


def _sender_selected(message: Message, headers: dict[str, Any]) -> tuple[tuple[str, ...], Message]:
    """Routing keys from the CC and BCC headers; BCC is removed from the message."""
    keys = [message.routing_key]
    for name in ("CC", "BCC"):
        if name not in headers:
            continue
        routes = headers[name]
        if not isinstance(routes, list):
            raise PreconditionFailed(
                f'invalid message: {{unacceptable_type_in_header,"{name}",'
                f"{amqp_type_name(routes)}}}"
            )
        for route in routes:
            if isinstance(route, bytes):
                route = route.decode("utf-8", "replace")
            if isinstance(route, str):
                keys.append(route)
    if "BCC" in headers:
        message = message.evolve(headers={k: v for k, v in headers.items() if k != "BCC"})
    return tuple(keys), message
