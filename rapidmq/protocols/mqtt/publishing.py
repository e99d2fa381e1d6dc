"""Inbound PUBLISH and PUBREL: topic aliases, validation, routing and acknowledgement.

QoS 0 is routed and forgotten, QoS 1 is routed then PUBACKed.  QoS 2 is held
in the session under its packet id from PUBLISH until PUBREL and routed then
(the specification's "method A", which Mosquitto uses, so QoS 2 messages reach
subscribers in the same order as from Mosquitto); a DUP re-send of a held id is
acknowledged again but not stored twice.  In MQTT 5 a PUBACK says 0x10 when the
message reached no queue.

Durability: a publish that a durable queue stored is acknowledged (PUBACK, or
PUBCOMP after PUBREL) only once the store batch it went into is durable, as an
AMQP confirm is (ARCHITECTURE.md §4).  Acknowledgements wait in one queue per
connection, so none overtakes an earlier one.  A QoS 2 message held for a
persistent session is written into the session's record (a synced metadata
write) before its PUBREC, and taken out of it when its PUBCOMP is sent.
"""

from __future__ import annotations

import logging
from collections import deque
from typing import TYPE_CHECKING

from rapidmq.core.errors import AccessRefused, CoreError
from rapidmq.protocols.mqtt.errors import InvalidTopic
from rapidmq.protocols.mqtt.login import is_utf8
from rapidmq.protocols.mqtt.mapping import publish_to_message
from rapidmq.protocols.mqtt.packets import MQTT_5, PacketType, Publish, ReasonCode
from rapidmq.protocols.mqtt.reasons import reason_for
from rapidmq.protocols.mqtt.topics import validate_topic_name

if TYPE_CHECKING:
    from rapidmq.protocols.mqtt.connection import MQTTConnection

__all__ = ["PublishHandler"]

log = logging.getLogger("rapidmq.connection")
auth_log = logging.getLogger("rapidmq.auth")

_VALID_TOPICS_KEPT = 1024


class PublishHandler:
    """The publishing half of one connection, with its inbound topic aliases."""

    __slots__ = (
        "_acks",
        "_persist",
        "aliases",
        "conn",
        "published",
        "unroutable",
        "valid_topics",
    )

    def __init__(self, conn: MQTTConnection) -> None:
        self.conn = conn
        self._persist = conn.broker.persistence
        # (store batch, packet type, packet id, reason code) of acknowledgements that
        # wait for a sync, and those after them, in order
        self._acks: deque[tuple[int, int, int, int]] = deque()
        self.aliases: dict[int, str] = {}
        # Topics this connection published that passed validation: most clients
        # publish to a few topics over and over.
        self.valid_topics: set[str] = set()
        self.published = 0
        self.unroutable = 0

    def publish(self, p: Publish) -> None:
        """Handle one PUBLISH from the client."""
        conn = self.conn
        topic = p.topic
        props = p.properties
        if props is not None and props.topic_alias is not None:
            alias = props.topic_alias
            if alias == 0 or alias > conn.settings.topic_alias_maximum:
                conn.protocol_violation(
                    f"topic alias {alias} out of range", ReasonCode.TOPIC_ALIAS_INVALID
                )
                return
            if topic:
                self.aliases[alias] = topic
            else:
                known = self.aliases.get(alias)
                if known is None:
                    conn.protocol_violation(f"unknown topic alias {alias}")
                    return
                topic = known
        valid = self.valid_topics
        if topic not in valid:
            try:
                validate_topic_name(topic)
            except InvalidTopic as err:
                conn.protocol_violation(err.text, ReasonCode.TOPIC_NAME_INVALID)
                return
            if len(valid) >= _VALID_TOPICS_KEPT:
                valid.clear()
            valid.add(topic)
        qos = p.qos
        session = conn.session
        packet_id = p.packet_id or 0
        if qos == 2:
            if packet_id in session.incoming_qos2:
                self._ack(PacketType.PUBREC, packet_id, 0)  # a re-send: held already
                return
            if len(session.incoming_qos2) >= conn.settings.receive_maximum:
                conn.protocol_violation(
                    "receive maximum exceeded", ReasonCode.RECEIVE_MAXIMUM_EXCEEDED
                )
                return
        if props is not None and props.payload_format_indicator == 1 and not is_utf8(p.payload):
            # As Mosquitto: refuse it in the acknowledgement, drop it at QoS 0.
            if qos:
                kind = PacketType.PUBACK if qos == 1 else PacketType.PUBREC
                self._ack(kind, packet_id, ReasonCode.PAYLOAD_FORMAT_INVALID)
            return
        message = publish_to_message(p, topic, origin=session.origin, now=conn.mqtt.clock())
        if (qos == 2 or p.retain) and session.core_session.access is not None:
            # Checked before the message is held or retained, so a refused one
            # leaves nothing behind; the publish below re-checks from the cache.
            try:
                session.core_session.authorize_publish(message.exchange, message.routing_key)
            except AccessRefused as err:
                self._refused(err, qos, packet_id, topic)
                return
        if qos == 2:
            session.incoming_qos2[packet_id] = (topic, message, p.retain)
            conn.mqtt.record_later(session)  # synced before the PUBREC goes out
            self._ack(PacketType.PUBREC, packet_id, 0)
            return
        try:
            result = conn.mqtt.publish(session.core_session, topic, message, p.retain)
        except AccessRefused as err:
            self._refused(err, qos, packet_id, topic)
            return
        except CoreError as err:
            log.warning("MQTT publish to '%s' refused: %s", topic, err.text)
            if qos and conn.level == MQTT_5:
                kind = PacketType.PUBACK if qos == 1 else PacketType.PUBREC
                self._ack(kind, packet_id, reason_for(err))
            elif qos:
                conn.protocol_violation(err.text, ReasonCode.UNSPECIFIED_ERROR)
            return
        self.published += 1
        code = 0
        if not result.routed:
            self.unroutable += 1
            code = ReasonCode.NO_MATCHING_SUBSCRIBERS
        if qos == 1:
            self._ack(PacketType.PUBACK, packet_id, code, result.batch)

    def _refused(self, err: AccessRefused, qos: int, packet_id: int, topic: str) -> None:
        """A publish the user may not make.

        MQTT 5 refuses it in its acknowledgement (PUBACK or PUBREC 0x87) and, at
        QoS 0, which has none, with DISCONNECT 0x87, as RabbitMQ's MQTT 5 support
        does; MQTT 3.1 and 3.1.1 have no way to refuse a publish, so the
        connection is closed, as RabbitMQ does.
        """
        conn = self.conn
        auth_log.warning("MQTT publish to '%s' refused: %s", topic, err.text)
        if qos and conn.level == MQTT_5:
            kind = PacketType.PUBACK if qos == 1 else PacketType.PUBREC
            self._ack(kind, packet_id, ReasonCode.NOT_AUTHORIZED)
            return
        conn.protocol_violation(err.text, ReasonCode.NOT_AUTHORIZED)

    def pubrel(self, packet_id: int) -> None:
        """PUBREL: route the held QoS 2 message, then PUBCOMP; 0x92 if the id is unknown."""
        conn = self.conn
        session = conn.session
        held = session.incoming_qos2.pop(packet_id, None)
        if held is None:
            self._ack(PacketType.PUBCOMP, packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
            return
        topic, message, retain = held
        # Still recorded until its PUBCOMP: the client re-sends PUBREL after a crash.
        session.releasing[packet_id] = held
        try:
            result = conn.mqtt.publish(session.core_session, topic, message, retain)
        except CoreError as err:
            (auth_log if isinstance(err, AccessRefused) else log).warning(
                "MQTT publish to '%s' refused: %s", topic, err.text
            )
            self._ack(PacketType.PUBCOMP, packet_id, 0)
            return
        self.published += 1
        if not result.routed:
            self.unroutable += 1
        self._ack(PacketType.PUBCOMP, packet_id, 0, result.batch)

    # -- acknowledgements, in order and after the store sync -----------------------------

    def _ack(self, kind: int, packet_id: int, code: int, batch: int | None = None) -> None:
        acks = self._acks
        persist = self._persist
        if persist is not None and (acks or (batch is not None and batch > persist.durable_batch)):
            acks.append((batch or 0, kind, packet_id, code))
            persist.when_durable(self._on_durable)
            return
        self._send(kind, packet_id, code)

    def _send(self, kind: int, packet_id: int, code: int) -> None:
        conn = self.conn
        if kind == PacketType.PUBCOMP and conn.session.releasing.pop(packet_id, None) is not None:
            # The message is routed and durable: the held copy may go from the record.
            if conn.closed:
                conn.mqtt.record(conn.session)
            else:
                conn.mqtt.record_later(conn.session)
        if not conn.closed:  # else the client re-sends what it has no acknowledgement for
            conn.send_ack(kind, packet_id, code)

    def _on_durable(self, batch: int) -> None:
        """The store made every batch up to ``batch`` durable: send what waited for it."""
        acks = self._acks
        while acks and acks[0][0] <= batch:
            _, kind, packet_id, code = acks.popleft()
            self._send(kind, packet_id, code)
        if acks:
            assert self._persist is not None
            self._persist.when_durable(self._on_durable)

    @property
    def waiting_acks(self) -> int:
        """Acknowledgements held until a store sync."""
        return len(self._acks)
