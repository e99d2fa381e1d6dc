"""One MQTT session: subscriptions, in-flight messages and packet ids, outliving connections.

Theory of operation
-------------------
A session owns a core :class:`~rapidmq.core.broker.CoreConnection` and one core
:class:`~rapidmq.core.session.Session`, and is that session's delivery sink, so
unacknowledged deliveries survive a dropped network connection.  Its filters
are bindings of one queue, ``mqtt-session-<client id>``, to ``amq.topic``; each
shared subscription ``$share/<group>/<filter>`` is a consumer of the group's
queue (see :class:`~rapidmq.protocols.mqtt.state.MQTTState`).

While a connection is attached the session consumes its queues with one
session-wide prefetch equal to the client's Receive Maximum; on detach the
consumers are cancelled (messages queue up; those that would go out at QoS 0
are dropped on the way out, as Mosquitto does not queue QoS 0 for offline
clients) but unacked deliveries stay, so
after a reconnect :meth:`MQTTSession.attach` re-sends each in-flight PUBLISH
with DUP and its original packet id, or its PUBREL once PUBREC came back.

An outbound message walks::

    QoS 0: deliver -> PUBLISH, settled at once
    QoS 1: deliver -> PUBLISH --PUBACK--> acked
    QoS 2: deliver -> PUBLISH --PUBREC--> PUBREL --PUBCOMP--> acked

QoS 0 settlements (and dropped deliveries) are deferred to :meth:`flush`,
because settling inside ``deliver`` would re-enter the queue's dispatch loop.
Retained messages are sent through the core too: on SUBSCRIBE they are
published straight into the session's queue, annotated with the topic and the
subscription, so they obey the same credit and packet-id rules.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Protocol

from rapidmq.core.broker import CoreConnection
from rapidmq.core.errors import CoreError
from rapidmq.core.message import Message
from rapidmq.protocols.mqtt.mapping import (
    TOPIC_EXCHANGE,
    message_qos,
    message_to_properties,
    message_topic,
)
from rapidmq.protocols.mqtt.packets import MQTT_5, MQTTProperties, Subscription
from rapidmq.protocols.mqtt.topics import filter_to_binding_key, topic_matches

if TYPE_CHECKING:
    from rapidmq.protocols.mqtt.state import MQTTState

__all__ = ["MQTTSession", "Outgoing", "Outlet", "SessionSubscription"]

log = logging.getLogger("rapidmq.mqtt")

OWN_TAG = "mqtt-session"
_SHARE_TAG = "mqtt-share:"
SessionKey = tuple[str, str]  # (vhost, client id)


class Outlet(Protocol):
    """What a session needs from the connection attached to it."""

    def send_publish(self, out: Outgoing, *, dup: bool) -> bool:
        """Send a PUBLISH; False if it exceeds the client's Maximum Packet Size."""

    def send_pubrel(self, packet_id: int) -> None: ...

    def writable(self) -> bool: ...


@dataclass(slots=True)
class SessionSubscription:
    """One subscription of the session, as the client asked for it."""

    options: Subscription
    identifier: int | None = None
    share: tuple[str, str] | None = None  # (group, filter) of a shared subscription
    queue: str = ""


@dataclass(slots=True)
class Outgoing:
    """A PUBLISH to the client: in flight until acknowledged when QoS > 0."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    properties: MQTTProperties | None
    packet_id: int | None = None
    delivery_tag: int | None = None
    released: bool = False  # QoS 2: PUBREC received, PUBREL sent


_MATCH_CACHE_SIZE = 4096


def _granted_qos(sub: SessionSubscription) -> int:
    return sub.options.qos


class MQTTSession:
    """The server side of one MQTT session (``clean start`` ends it with its connection)."""

    def __init__(
        self,
        state: MQTTState,
        core: CoreConnection,
        client_id: str,
        *,
        expiry_s: int | None,
        clock: Callable[[], float],
    ) -> None:
        self.state = state
        self.core = core
        self.vhost = core.vhost.name
        self.client_id = client_id
        self.key: SessionKey = (self.vhost, client_id)
        self.origin = f"mqtt:{self.vhost}:{client_id}"
        self.queue_name = f"mqtt-session-{client_id}"
        self.expiry_s = expiry_s  # None: never expires; 0: ends with the connection
        self._clock = clock
        self.core_session = core.open_session(self)
        self.subscriptions: dict[str, SessionSubscription] = {}
        # (topic, published by this session) -> the session's matching subscriptions;
        # cleared whenever the subscriptions change.
        self._match_cache: dict[tuple[str, bool], list[SessionSubscription]] = {}
        self.inflight: dict[int, Outgoing] = {}
        # delivery tag -> copies still in flight, when overlapping subscriptions got several
        self._copies: dict[int, int] = {}
        # QoS 2 from the client, held from PUBLISH until PUBREL: id -> (topic, message, retain)
        self.incoming_qos2: dict[int, tuple[str, Message, bool]] = {}
        # Those released by PUBREL and routed, until their PUBCOMP goes out
        self.releasing: dict[int, tuple[str, Message, bool]] = {}
        self.outlet: Outlet | None = None
        self.level = 4
        self.ended = False
        self.recorded = False  # an mqtt_session record of it is stored
        self.record_due = False  # changed since the record was written
        self._has_queue = False
        self._next_id = 1
        self._settle_later: list[int] = []
        self._flushing = False
        # (went offline, came back): QoS 0 messages published in between are dropped.
        self._offline: tuple[float, float] | None = None
        self._detached_at: float | None = None
        self.sent = 0
        self.dropped = 0

    # -- attaching ---------------------------------------------------------------------

    def attach(self, outlet: Outlet, level: int, receive_maximum: int) -> None:
        """A connection takes this session: re-send what is in flight, then consume."""
        self.outlet = outlet
        self.level = level
        if self._detached_at is not None:
            self._offline = (self._detached_at, self._clock())
            self._detached_at = None
        self.core_session.set_prefetch(receive_maximum, global_=True)
        for out in list(self.inflight.values()):
            assert out.packet_id is not None
            if out.released:
                outlet.send_pubrel(out.packet_id)
            elif not outlet.send_publish(out, dup=True):
                self._complete(out.packet_id)
        self._consume_all()
        self.flush()

    def detach(self) -> None:
        """The connection went: stop consuming, keep in-flight messages for the next one."""
        self.flush()
        self.outlet = None
        self._detached_at = self._clock()
        for tag in list(self.core_session.consumers):
            self.core_session.cancel(tag)

    def end(self) -> None:
        """The session is over: requeue unacked, delete its queue, leave shared groups."""
        if self.ended:
            return
        self.ended = True
        self.outlet = None
        self._settle_later.clear()
        self.inflight.clear()
        shares = [s for s in self.subscriptions.values() if s.share is not None]
        self.subscriptions.clear()
        session = self.core_session
        session.close()
        for sub in shares:
            self.state.leave_shared(self, sub.queue)
        if self._has_queue:
            with contextlib.suppress(CoreError):
                session.vhost.delete_queue(self.core, self.queue_name)
        self.core.close()

    def _consume_all(self) -> None:
        if self._has_queue:
            self._consume(self.queue_name, OWN_TAG)
        for name, sub in self.subscriptions.items():
            if sub.share is not None:
                self._consume(sub.queue, _SHARE_TAG + name)

    def _consume(self, queue: str, tag: str) -> None:
        if self.outlet is None:
            return
        # While every subscription on the session's own queue is QoS 0, nothing it
        # delivers is ever acknowledged: consume without acks, which spares the core
        # the unacked bookkeeping and the front end the settlements.
        no_ack = tag == OWN_TAG and not any(
            s.share is None and s.options.qos > 0 for s in self.subscriptions.values()
        )
        core = self.core_session
        current = core.consumers.get(tag)
        if current is not None:
            if not (current.no_ack and not no_ack):
                return
            core.cancel(tag)  # a QoS > 0 subscription arrived: deliver with acks from now
        try:
            core.consume(queue, tag, no_ack=no_ack)
        except CoreError as err:
            log.warning("MQTT session %s cannot consume from %s: %s", self.key, queue, err.text)

    # -- subscriptions -----------------------------------------------------------------

    def subscribe(
        self, options: Subscription, identifier: int | None, share: tuple[str, str] | None
    ) -> bool:
        """Add or replace a subscription; returns True when it is new.

        Raises:
            CoreError: the core refused the queue or binding.
        """
        name = options.filter
        existing = self.subscriptions.get(name)
        if share is not None:
            queue = self.state.join_shared(self, share[0], share[1])
            sub = SessionSubscription(options, identifier, share, queue)
            self.subscriptions[name] = sub
            self._match_cache.clear()
            self._consume(queue, _SHARE_TAG + name)
            return existing is None
        if not self._has_queue:
            # Only a session that outlives its connection needs a durable queue; a
            # clean session's queue goes with it, as RabbitMQ's MQTT plugin does.
            self.core_session.declare_queue(self.queue_name, durable=self.expiry_s != 0)
            self._has_queue = True
        self.core_session.bind_queue(
            self.queue_name, TOPIC_EXCHANGE, filter_to_binding_key(options.filter)
        )
        self.subscriptions[name] = SessionSubscription(options, identifier, None, self.queue_name)
        self._match_cache.clear()
        self._consume(self.queue_name, OWN_TAG)
        return existing is None

    def unsubscribe(self, name: str) -> bool:
        """Remove a subscription; False when there was none."""
        sub = self.subscriptions.pop(name, None)
        if sub is None:
            return False
        self._match_cache.clear()
        if sub.share is not None:
            self.core_session.cancel(_SHARE_TAG + name)
            self.state.leave_shared(self, sub.queue)
            return True
        key = filter_to_binding_key(sub.options.filter)
        try:
            self.core_session.unbind_queue(self.queue_name, TOPIC_EXCHANGE, key)
        except CoreError as err:
            log.warning("MQTT session %s: unbind %s failed: %s", self.key, key, err.text)
        return True

    def queue_retained(self, sub_name: str, topic: str, message: Message, now: float) -> None:
        """Send a retained message for a new subscription, through the session's queue."""
        annotations = dict(message.annotations or {})
        annotations.update(retain=True, retained_topic=topic, retained_for=sub_name)
        copy = Message(
            "",
            self.queue_name,
            message.body,
            message.properties,
            message.encoded_properties,
            annotations,
        )
        self.core_session.publish(copy)

    # -- the core's delivery sink ------------------------------------------------------

    def deliver(
        self, consumer_tag: str, delivery_tag: int, redelivered: bool, message: Message
    ) -> None:
        outlet = self.outlet
        if outlet is None:  # cannot happen: consumers are cancelled on detach
            self._settle_later.append(delivery_tag)
            return
        annotations = message.annotations
        matched = self._matching(consumer_tag, message, annotations)
        if not matched:
            self.dropped += 1
            self._settle_later.append(delivery_tag)
            return
        retained_delivery = annotations is not None and "retained_for" in annotations
        published_qos = message_qos(message)
        base_props = message_to_properties(message, self._clock())
        if base_props is not None and base_props.message_expiry_interval == 0:
            self.dropped += 1  # expired while queued
            self._settle_later.append(delivery_tag)
            return
        if self._offline is not None and annotations is not None:
            published_at = annotations.get("published_at")
            went, came = self._offline
            if (
                isinstance(published_at, float | int)
                and went <= published_at < came
                and min(published_qos, max(s.options.qos for s in matched)) == 0
            ):
                self.dropped += 1  # QoS 0 is not queued for offline clients, as in Mosquitto
                self._settle_later.append(delivery_tag)
                return
        topic = annotations.get("retained_topic") if retained_delivery else None  # type: ignore[union-attr]
        if not isinstance(topic, str):
            topic = message_topic(message)
        published_retain = bool(annotations and annotations.get("retain"))
        # Overlapping subscriptions: MQTT 5 clients get a copy per subscription with
        # its own QoS and subscription identifier, earlier levels one copy at the
        # highest QoS -- both as Mosquitto sends them.
        if len(matched) > 1 and self.level != MQTT_5:
            matched = [max(matched, key=_granted_qos)]
        # A redelivery from the session's own queue went to this client before (a
        # restart); one from a shared queue went to another member.
        dup = redelivered and consumer_tag == OWN_TAG
        waiting = 0
        for sub in matched:
            options = sub.options
            qos = min(published_qos, options.qos)
            retain = retained_delivery or (published_retain and options.retain_as_published)
            props = base_props
            if sub.identifier is not None:
                props = (
                    MQTTProperties(subscription_identifiers=[sub.identifier])
                    if props is None
                    else replace(props, subscription_identifiers=[sub.identifier])
                )
            out = Outgoing(topic, message.body, qos, retain, props)
            self.sent += 1
            if qos == 0:
                outlet.send_publish(out, dup=False)
                continue
            packet_id = self._allocate_id()
            out.packet_id = packet_id
            out.delivery_tag = delivery_tag
            self.inflight[packet_id] = out
            if outlet.send_publish(out, dup=dup):
                waiting += 1
            else:
                del self.inflight[packet_id]
                self.dropped += 1
        if not waiting:
            self._settle_later.append(delivery_tag)
        elif waiting > 1:
            self._copies[delivery_tag] = waiting

    def _matching(
        self, consumer_tag: str, message: Message, annotations: Any
    ) -> list[SessionSubscription]:
        origin = None if annotations is None else annotations.get("origin")
        local = origin == self.origin
        if consumer_tag != OWN_TAG:
            sub = self.subscriptions.get(consumer_tag[len(_SHARE_TAG) :])
            return [] if sub is None else [sub]
        if annotations is not None and "retained_for" in annotations:
            sub = self.subscriptions.get(annotations["retained_for"])
            return [] if sub is None or sub.share is not None else [sub]
        topic = message_topic(message)
        cache = self._match_cache
        matched = cache.get((topic, local))
        if matched is None:
            matched = [
                s
                for s in self.subscriptions.values()
                if s.share is None
                and not (local and s.options.no_local)
                and topic_matches(s.options.filter, topic)
            ]
            if len(cache) >= _MATCH_CACHE_SIZE:
                cache.clear()
            cache[(topic, local)] = matched
        return matched

    def consumer_cancelled(self, consumer_tag: str) -> None:
        log.warning("MQTT session %s: queue of consumer %s was deleted", self.key, consumer_tag)
        if consumer_tag == OWN_TAG:
            self._has_queue = False

    def writable(self) -> bool:
        outlet = self.outlet
        return outlet is not None and outlet.writable()

    # -- acknowledgements from the client ----------------------------------------------

    def puback(self, packet_id: int) -> None:
        """PUBACK: a QoS 1 delivery is done (unknown ids are ignored)."""
        out = self.inflight.get(packet_id)
        if out is not None and out.qos == 1:
            self._complete(packet_id)

    def pubrec(self, packet_id: int, reason_code: int) -> bool:
        """PUBREC: True if a PUBREL must follow (False: unknown id)."""
        out = self.inflight.get(packet_id)
        if out is None or out.qos != 2:
            return False
        if reason_code >= 0x80:
            self._complete(packet_id)  # the client refused it: it is done
            return False
        if not out.released:
            out.released = True
            self.state.record_later(self)  # so the PUBREL is re-sent after a restart
        return True

    def pubcomp(self, packet_id: int) -> None:
        """PUBCOMP: a QoS 2 delivery is done."""
        out = self.inflight.get(packet_id)
        if out is not None and out.released:
            # Not recorded by itself: a PUBREL re-sent after a restart for an id that
            # is done costs the client one PUBCOMP.
            self._complete(packet_id)

    def restore(
        self,
        subscriptions: dict[str, SessionSubscription],
        released: tuple[int, ...],
        incoming_qos2: dict[int, tuple[str, Message, bool]],
    ) -> None:
        """Take back a stored session's state, detached (its bindings came back with the core).

        Outbound QoS 2 ids whose PUBREC came back before the restart get their
        PUBREL again on the next attach.
        """
        vhost = self.core_session.vhost
        self._has_queue = self.queue_name in vhost.queues
        for name, sub in subscriptions.items():
            if sub.share is not None:
                try:
                    sub.queue = self.state.join_shared(self, sub.share[0], sub.share[1])
                except CoreError as err:
                    log.warning("MQTT session %s: %s not restored: %s", self.key, name, err.text)
                    continue
            else:
                sub.queue = self.queue_name
            self.subscriptions[name] = sub
        for packet_id in released:
            self.inflight[packet_id] = Outgoing("", b"", 2, False, None, packet_id, None, True)
        self.incoming_qos2.update(incoming_qos2)
        self._detached_at = self._clock()

    def _complete(self, packet_id: int) -> None:
        out = self.inflight.pop(packet_id)
        tag = out.delivery_tag
        if tag is not None and tag in self._copies:
            # One copy of several (overlapping subscriptions): ack the core on the last.
            left = self._copies[tag] - 1
            if left:
                self._copies[tag] = left
                return
            del self._copies[tag]
        if out.delivery_tag is not None:
            with contextlib.suppress(CoreError):  # the queue went away meanwhile
                self.core_session.ack(out.delivery_tag)

    def _allocate_id(self) -> int:
        packet_id = self._next_id
        inflight = self.inflight
        while packet_id in inflight:
            packet_id = packet_id % 65535 + 1
        self._next_id = packet_id % 65535 + 1
        return packet_id

    def flush(self) -> None:
        """Settle deferred QoS 0 deliveries (which may deliver more); not re-entrant."""
        if self._flushing or self.ended:
            return
        self._flushing = True
        try:
            pending = self._settle_later
            session = self.core_session
            while pending:
                tags, self._settle_later = pending, []
                session.ack_each(tags)
                pending = self._settle_later
        finally:
            self._flushing = False

    def statistics(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "vhost": self.vhost,
            "connected": self.outlet is not None,
            "expiry_s": self.expiry_s,
            "subscriptions": {
                name: {"qos": s.options.qos, "identifier": s.identifier}
                for name, s in self.subscriptions.items()
            },
            "inflight": len(self.inflight),
            "incoming_qos2": len(self.incoming_qos2),
            "queue": self.queue_name if self._has_queue else None,
            "sent": self.sent,
            "dropped": self.dropped,
        }


def with_alias(props: MQTTProperties | None, alias: int) -> MQTTProperties:
    """A copy of ``props`` carrying a topic alias."""
    if props is None:
        return MQTTProperties(topic_alias=alias)
    return replace(props, topic_alias=alias)
