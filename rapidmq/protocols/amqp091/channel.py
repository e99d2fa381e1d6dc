"""One AMQP channel: AMQP methods in, core ``Session`` calls out, deliveries back as frames.

Theory of operation
-------------------
A ``Channel`` is created on ``channel.open`` and owns one core ``Session``.  It
is also that session's :class:`~rapidmq.core.api.DeliverySink`: the core calls
``deliver`` synchronously and the channel appends the encoded frames to its
connection's output buffer.  Nothing here blocks or does I/O.

Publisher confirms are coalesced: transient publishes are confirmed as soon as
they are routed, so after a batch of input the connection asks each channel to
``flush_confirms`` and a single ``basic.ack multiple=true`` covers the batch.
A ``basic.nack`` (rejected by a queue's overflow rule) first flushes the acks
before it, so the client sees every sequence number settled in order.

A persistent message stored by a durable queue is confirmed only once the store
batch it went into is durable (the group commit of ARCHITECTURE.md §4): its
sequence number waits in ``_confirm_waits`` with that batch, and an ack never
covers a waiting number, so ``multiple=true`` acks stay in order.  The channel
asks the core's ``Persistence`` to call it back after the next sync.

Transactions (``tx.select``) buffer publishes and settlements until
``tx.commit``; ``tx.rollback`` drops them, as RabbitMQ does.  A commit that
stored persistent messages answers commit-ok after the sync, in commit order.

Direct reply-to (``amq.rabbitmq.reply-to``) lives in the core session; the
channel only names the reply consumer early where AMQP holds a message back or
hands it back: a transactional publish (refused at publish time, as RabbitMQ) and
a ``basic.return``, which carries the message as it was routed.

Errors from the core are raised to the connection, which turns them into
``channel.close`` or ``connection.close`` by their scope.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pamqp import commands as spec

from rapidmq.core.errors import CommandInvalid, NotImplementedFeature, PreconditionFailed
from rapidmq.core.message import Message
from rapidmq.core.reply_to import REPLY_QUEUE
from rapidmq.protocols.amqp091 import encode
from rapidmq.protocols.amqp091.access import AccessRequest, AccessRequestOk
from rapidmq.protocols.amqp091.events import PublishReceived
from rapidmq.protocols.amqp091.properties import encode_properties

if TYPE_CHECKING:
    from rapidmq.core.session import Session
    from rapidmq.protocols.amqp091.connection import AMQPConnection

__all__ = ["Channel", "ChannelState"]


class ChannelState(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"  # we sent channel.close and wait for close-ok


class _Mode(enum.Enum):
    PLAIN = "plain"
    CONFIRM = "confirm"
    TX = "tx"


class Channel:
    """The server side of one AMQP channel."""

    __slots__ = (
        "_confirm_acked",
        "_confirm_seq",
        "_confirm_waits",
        "_frame_max",
        "_mode",
        "_out",
        "_persist",
        "_tx_batch",
        "_tx_ops",
        "_tx_waits",
        "conn",
        "id",
        "session",
        "state",
    )

    def __init__(self, conn: AMQPConnection, channel_id: int) -> None:
        self.conn = conn
        self.id = channel_id
        self.state = ChannelState.OPEN
        self._out = conn.out
        self._frame_max = conn.frame_max  # fixed by tune-ok before any channel opens
        self._mode = _Mode.PLAIN
        self._confirm_seq = 0  # last publish sequence number in confirm mode
        self._confirm_acked = 0  # every seq <= this has been confirmed to the client
        self._tx_ops: list[Callable[[], None]] = []
        self._persist = conn.broker.persistence
        # (seq, store batch, nack) of confirms that wait for a sync, in seq order
        self._confirm_waits: deque[tuple[int, int, bool]] = deque()
        self._tx_batch = 0  # the latest store batch of the open transaction
        self._tx_waits: deque[int] = deque()  # store batches of commits awaiting commit-ok
        assert conn.core is not None  # channels open only on an open connection
        self.session: Session = conn.core.open_session(self)

    @property
    def mode(self) -> str:
        """``"plain"``, ``"confirm"`` (confirm.select) or ``"tx"`` (tx.select)."""
        return self._mode.value

    @property
    def unconfirmed(self) -> int:
        """Publishes in confirm mode not yet confirmed to the client."""
        return self._confirm_seq - self._confirm_acked

    # -- DeliverySink ------------------------------------------------------------------

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        props = message.encoded_properties
        if props is None:
            # A cache of the wire form: computing it once per message is idempotent.
            props = message.encoded_properties = encode_properties(message.properties)
        encode.encode_deliver(
            self._out,
            self.id,
            consumer_tag,
            delivery_tag,
            redelivered,
            message.exchange,
            message.routing_key,
            props,
            message.body,
            self._frame_max,
        )
        self.conn.wake()

    def consumer_cancelled(self, consumer_tag: str) -> None:
        if self.state is ChannelState.OPEN and self.conn.client_capability(
            "consumer_cancel_notify"
        ):
            self.send(spec.Basic.Cancel(consumer_tag=consumer_tag, nowait=True))

    def writable(self) -> bool:
        return self.conn.writable()

    # -- plumbing ----------------------------------------------------------------------

    def send(self, method: Any) -> None:
        encode.encode_method(self._out, self.id, method)
        self.conn.wake()

    def handle_method(self, method: Any) -> None:
        handler = _HANDLERS.get(type(method))
        if handler is None:
            raise CommandInvalid(f"unexpected method {method.name} on a channel")
        handler(self, method)

    def close_session(self) -> None:
        """Release everything the channel holds in the core (requeues unacked)."""
        self.session.close()

    # -- publish -------------------------------------------------------------------------

    def handle_publish(self, event: PublishReceived) -> None:
        if event.immediate:
            raise NotImplementedFeature("immediate=true")
        message = Message(
            event.exchange,
            event.routing_key,
            event.body,
            event.properties,
            event.encoded_properties,
        )
        if self._mode is _Mode.TX:
            if event.properties.reply_to == REPLY_QUEUE:
                message = self.session.name_reply_to(message)  # refused now, not at commit
            mandatory = event.mandatory
            self._tx_ops.append(lambda: self._publish(message, mandatory))
            return
        self._publish(message, event.mandatory)

    def _publish(self, message: Message, mandatory: bool) -> None:
        if self._mode is _Mode.CONFIRM:
            self._confirm_seq += 1
            try:
                result = self.session.publish(message, mandatory=mandatory)
            except Exception:
                # The publish failed outright (e.g. no such exchange): the channel
                # closes, and unconfirmed publishes are left unconfirmed, as RabbitMQ.
                raise
            if mandatory and not result.routed:
                self._basic_return(message)
            batch = result.batch
            if batch is not None or self._confirm_waits:
                seq = self._confirm_seq
                if result.rejected:
                    self._confirm_waits.append((seq, 0, True))
                elif batch is not None:
                    self._confirm_waits.append((seq, batch, False))
                self.conn.confirms_pending.add(self)
            elif result.rejected:
                self.flush_confirms(upto=self._confirm_seq - 1)
                encode.encode_nack(self._out, self.id, self._confirm_seq, False)
                self._confirm_acked = self._confirm_seq
                self.conn.wake()
            else:
                self.conn.confirms_pending.add(self)
            return
        result = self.session.publish(message, mandatory=mandatory)
        if mandatory and not result.routed:
            self._basic_return(message)
        if result.batch is not None:
            self._tx_batch = result.batch  # batch numbers only grow

    def _basic_return(self, message: Message) -> None:
        if message.properties.reply_to == REPLY_QUEUE:
            # RabbitMQ returns the message as routed, with the reply name filled in.
            message = self.session.name_reply_to(message)
        props = message.encoded_properties
        if props is None:
            props = message.encoded_properties = encode_properties(message.properties)
        encode.encode_return(
            self._out,
            self.id,
            312,
            "NO_ROUTE",
            message.exchange,
            message.routing_key,
            props,
            message.body,
            self.conn.frame_max,
        )
        self.conn.wake()

    def flush_confirms(self, upto: int | None = None) -> None:
        """Confirm every publish up to ``upto`` (default: all so far) with one ack.

        Publishes waiting for a store sync are not confirmed, nor any after them.
        """
        last = self._confirm_seq if upto is None else upto
        waits = self._confirm_waits
        if waits:
            self._settle_waits()
            if waits:
                last = min(last, waits[0][0] - 1)
        self._ack_upto(last)

    def _ack_upto(self, last: int) -> None:
        if last > self._confirm_acked:
            multiple = last - self._confirm_acked > 1
            encode.encode_ack(self._out, self.id, last, multiple)
            self._confirm_acked = last
            self.conn.wake()

    def _settle_waits(self) -> None:
        """Confirm (or nack) the waiting publishes whose store batch is durable."""
        waits = self._confirm_waits
        persist = self._persist
        durable = 0 if persist is None else persist.durable_batch
        while waits:
            seq, batch, nack = waits[0]
            if batch > durable:
                assert persist is not None
                persist.when_durable(self._on_durable)
                return
            waits.popleft()
            if nack:
                self._ack_upto(seq - 1)
                encode.encode_nack(self._out, self.id, seq, False)
                self._confirm_acked = seq
                self.conn.wake()

    def _on_durable(self, batch: int) -> None:
        """The store made every batch up to ``batch`` durable."""
        if self.state is not ChannelState.OPEN or self.conn.closed:
            return
        if self._confirm_waits:
            self.flush_confirms()
        waits = self._tx_waits
        while waits and waits[0] <= batch:
            waits.popleft()
            self.send(spec.Tx.CommitOk())
        if waits:
            assert self._persist is not None
            self._persist.when_durable(self._on_durable)

    # -- settlements ---------------------------------------------------------------------

    def handle_ack(self, delivery_tag: int, multiple: bool) -> None:
        if self._mode is _Mode.TX:
            self._tx_ops.append(lambda: self.session.ack(delivery_tag, multiple=multiple))
            return
        self.session.ack(delivery_tag, multiple=multiple)

    def _basic_ack_method(self, m: spec.Basic.Ack) -> None:
        self.handle_ack(m.delivery_tag, m.multiple)

    def _settle_reject(self, tag: int, multiple: bool, requeue: bool) -> None:
        if self._mode is _Mode.TX:
            self._tx_ops.append(
                lambda: self.session.reject(tag, multiple=multiple, requeue=requeue)
            )
            return
        self.session.reject(tag, multiple=multiple, requeue=requeue)

    def _basic_nack(self, m: spec.Basic.Nack) -> None:
        self._settle_reject(m.delivery_tag, m.multiple, m.requeue)

    def _basic_reject(self, m: spec.Basic.Reject) -> None:
        self._settle_reject(m.delivery_tag or 0, False, m.requeue)

    def _basic_recover(self, m: spec.Basic.Recover) -> None:
        if not m.requeue:
            raise NotImplementedFeature("requeue=false")
        self.session.recover()
        self.send(spec.Basic.RecoverOk())

    def _basic_recover_async(self, m: spec.Basic.RecoverAsync) -> None:
        if not m.requeue:
            raise NotImplementedFeature("requeue=false")
        self.session.recover()

    # -- exchanges -----------------------------------------------------------------------

    def _exchange_declare(self, m: spec.Exchange.Declare) -> None:
        self.session.declare_exchange(
            m.exchange,
            m.exchange_type,
            passive=m.passive,
            durable=m.durable,
            auto_delete=m.auto_delete,
            internal=m.internal,
            arguments=m.arguments or None,
        )
        if not m.nowait:
            self.send(spec.Exchange.DeclareOk())

    def _exchange_delete(self, m: spec.Exchange.Delete) -> None:
        self.session.delete_exchange(m.exchange, if_unused=m.if_unused)
        if not m.nowait:
            self.send(spec.Exchange.DeleteOk())

    def _exchange_bind(self, m: spec.Exchange.Bind) -> None:
        self.session.bind_exchange(m.destination, m.source, m.routing_key, m.arguments or None)
        if not m.nowait:
            self.send(spec.Exchange.BindOk())

    def _exchange_unbind(self, m: spec.Exchange.Unbind) -> None:
        self.session.unbind_exchange(m.destination, m.source, m.routing_key, m.arguments or None)
        if not m.nowait:
            self.send(spec.Exchange.UnbindOk())

    # -- queues --------------------------------------------------------------------------

    def _queue_declare(self, m: spec.Queue.Declare) -> None:
        result = self.session.declare_queue(
            m.queue,
            passive=m.passive,
            durable=m.durable,
            exclusive=m.exclusive,
            auto_delete=m.auto_delete,
            arguments=m.arguments or None,
        )
        if not m.nowait:
            self.send(
                spec.Queue.DeclareOk(
                    queue=result.name,
                    message_count=result.message_count,
                    consumer_count=result.consumer_count,
                )
            )

    def _queue_bind(self, m: spec.Queue.Bind) -> None:
        self.session.bind_queue(m.queue, m.exchange, m.routing_key, m.arguments or None)
        if not m.nowait:
            self.send(spec.Queue.BindOk())

    def _queue_unbind(self, m: spec.Queue.Unbind) -> None:
        self.session.unbind_queue(m.queue, m.exchange, m.routing_key, m.arguments or None)
        self.send(spec.Queue.UnbindOk())

    def _queue_purge(self, m: spec.Queue.Purge) -> None:
        count = self.session.purge_queue(m.queue)
        if not m.nowait:
            self.send(spec.Queue.PurgeOk(message_count=count))

    def _queue_delete(self, m: spec.Queue.Delete) -> None:
        count = self.session.delete_queue(m.queue, if_unused=m.if_unused, if_empty=m.if_empty)
        if not m.nowait:
            self.send(spec.Queue.DeleteOk(message_count=count))

    # -- consumers -----------------------------------------------------------------------

    def _basic_qos(self, m: spec.Basic.Qos) -> None:
        if m.prefetch_size:
            raise NotImplementedFeature(f"prefetch_size!=0 ({m.prefetch_size})")
        self.session.set_prefetch(m.prefetch_count, global_=m.global_)
        self.send(spec.Basic.QosOk())

    def _basic_consume(self, m: spec.Basic.Consume) -> None:
        # consume-ok must precede the first delivery, so the core is asked not to
        # dispatch inside consume(); resume() delivers what is waiting afterwards.
        tag = self.session.consume(
            m.queue,
            m.consumer_tag,
            no_ack=m.no_ack,
            exclusive=m.exclusive,
            arguments=m.arguments or None,
            dispatch=False,
        )
        if not m.nowait:
            self.send(spec.Basic.ConsumeOk(consumer_tag=tag))
        self.session.resume()

    def _basic_cancel(self, m: spec.Basic.Cancel) -> None:
        self.session.cancel(m.consumer_tag or "")
        if not m.nowait:
            self.send(spec.Basic.CancelOk(consumer_tag=m.consumer_tag))

    def _basic_get(self, m: spec.Basic.Get) -> None:
        result = self.session.get(m.queue, no_ack=m.no_ack)
        if result is None:
            self.send(spec.Basic.GetEmpty())
            return
        message = result.message
        props = message.encoded_properties
        if props is None:
            props = message.encoded_properties = encode_properties(message.properties)
        encode.encode_get_ok(
            self._out,
            self.id,
            result.delivery_tag,
            result.redelivered,
            message.exchange,
            message.routing_key,
            result.message_count,
            props,
            message.body,
            self.conn.frame_max,
        )
        self.conn.wake()

    # -- modes ---------------------------------------------------------------------------

    def _confirm_select(self, m: spec.Confirm.Select) -> None:
        if self._mode is _Mode.TX:
            raise PreconditionFailed("cannot switch from tx to confirm mode")
        self._mode = _Mode.CONFIRM
        if not m.nowait:
            self.send(spec.Confirm.SelectOk())

    def _tx_select(self, m: spec.Tx.Select) -> None:
        if self._mode is _Mode.CONFIRM:
            raise PreconditionFailed("cannot switch from confirm to tx mode")
        self._mode = _Mode.TX
        self.send(spec.Tx.SelectOk())

    def _tx_commit(self, m: spec.Tx.Commit) -> None:
        if self._mode is not _Mode.TX:
            raise PreconditionFailed("channel is not transactional")
        ops, self._tx_ops = self._tx_ops, []
        self._tx_batch = 0
        for op in ops:
            op()
        batch, self._tx_batch = self._tx_batch, 0
        persist = self._persist
        if persist is not None and (self._tx_waits or batch > persist.durable_batch):
            # commit-ok once the persistent messages are on disk, as RabbitMQ does
            self._tx_waits.append(batch)
            persist.when_durable(self._on_durable)
            return
        self.send(spec.Tx.CommitOk())

    def _tx_rollback(self, m: spec.Tx.Rollback) -> None:
        if self._mode is not _Mode.TX:
            raise PreconditionFailed("channel is not transactional")
        self._tx_ops.clear()
        self.send(spec.Tx.RollbackOk())

    def _access_request(self, m: AccessRequest) -> None:
        self.send(AccessRequestOk(ticket=1))

    def _channel_flow(self, m: spec.Channel.Flow) -> None:
        if not m.active:
            raise NotImplementedFeature("active=false")
        self.send(spec.Channel.FlowOk(active=True))


#: AMQP method class -> the Channel method that handles it.
_HANDLERS: dict[type[Any], Callable[[Channel, Any], None]] = {
    spec.Exchange.Declare: Channel._exchange_declare,
    spec.Exchange.Delete: Channel._exchange_delete,
    spec.Exchange.Bind: Channel._exchange_bind,
    spec.Exchange.Unbind: Channel._exchange_unbind,
    spec.Queue.Declare: Channel._queue_declare,
    spec.Queue.Bind: Channel._queue_bind,
    spec.Queue.Unbind: Channel._queue_unbind,
    spec.Queue.Purge: Channel._queue_purge,
    spec.Queue.Delete: Channel._queue_delete,
    spec.Basic.Qos: Channel._basic_qos,
    spec.Basic.Consume: Channel._basic_consume,
    spec.Basic.Cancel: Channel._basic_cancel,
    spec.Basic.Get: Channel._basic_get,
    spec.Basic.Ack: Channel._basic_ack_method,
    spec.Basic.Nack: Channel._basic_nack,
    spec.Basic.Reject: Channel._basic_reject,
    spec.Basic.Recover: Channel._basic_recover,
    spec.Basic.RecoverAsync: Channel._basic_recover_async,
    spec.Confirm.Select: Channel._confirm_select,
    spec.Tx.Select: Channel._tx_select,
    spec.Tx.Commit: Channel._tx_commit,
    spec.Tx.Rollback: Channel._tx_rollback,
    spec.Channel.Flow: Channel._channel_flow,
    AccessRequest: Channel._access_request,
}
