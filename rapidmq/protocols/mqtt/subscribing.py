"""SUBSCRIBE and UNSUBSCRIBE: validation, bindings, SUBACK/UNSUBACK and retained messages.

A filter becomes a binding of the session's queue (or a share group's queue)
to ``amq.topic``.  After the SUBACK, each new (or, with Retain Handling 0,
every) non-shared subscription gets the retained messages it matches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rapidmq.core.errors import AccessRefused, CoreError
from rapidmq.protocols.mqtt.errors import InvalidTopicFilter
from rapidmq.protocols.mqtt.packets import (
    MQTT_5,
    MQTTProperties,
    ReasonCode,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
)
from rapidmq.protocols.mqtt.reasons import reason_for
from rapidmq.protocols.mqtt.topics import parse_shared, validate_topic_filter

if TYPE_CHECKING:
    from rapidmq.protocols.mqtt.connection import MQTTConnection
    from rapidmq.protocols.mqtt.session import MQTTSession

__all__ = ["handle_subscribe", "handle_unsubscribe"]

FAILURE_311 = 0x80


def handle_subscribe(conn: MQTTConnection, packet: Subscribe) -> None:
    """Subscribe, answer SUBACK, then send the retained messages the subscriptions asked for."""
    v5 = conn.level == MQTT_5
    session = conn.session
    props = packet.properties
    identifier = None
    if props is not None and props.subscription_identifiers:
        identifier = props.subscription_identifiers[0]
    codes: list[int] = []
    problems: list[str] = []
    want_retained: list[str] = []
    for sub in packet.subscriptions:
        try:
            validate_topic_filter(sub.filter)
            share = parse_shared(sub.filter)
        except InvalidTopicFilter as err:
            # A filter that breaks the wildcard rules is malformed, so the packet is:
            # close the connection (MQTT 5: DISCONNECT 0x81), as Mosquitto does.
            # SUBACK 0x8F is for well-formed filters the client may not use.
            conn.protocol_violation(err.text, ReasonCode.MALFORMED_PACKET)
            return
        if share is not None and sub.no_local and v5:
            conn.protocol_violation(f"no local on shared subscription '{sub.filter}'")
            return
        try:
            new = _subscribe(session, sub, identifier, share)
        except CoreError as err:
            codes.append(reason_for(err) if v5 else FAILURE_311)
            problems.append(err.text)
            continue
        codes.append(min(sub.qos, 2))
        if share is None and (sub.retain_handling == 0 or (sub.retain_handling == 1 and new)):
            want_retained.append(sub.filter)
    ack_props = None
    if v5 and problems and conn.problem_information:
        ack_props = MQTTProperties(reason_string="; ".join(problems)[:200])
    conn.mqtt.record(session)  # before SUBACK: the metadata write is synced
    conn.send(SubAck(packet.packet_id, tuple(codes), ack_props))
    if want_retained:
        now = conn.mqtt.clock()
        store = conn.mqtt.retained(session.vhost)
        # The broker puts them into the subscription's queue, not the client: no
        # write permission on the default exchange is needed for that.
        with session.core_session.unchecked():
            for topic_filter in want_retained:
                for topic, message in store.matching(topic_filter, now):
                    session.queue_retained(topic_filter, topic, message, now)


def _subscribe(
    session: MQTTSession,
    sub: Subscription,
    identifier: int | None,
    share: tuple[str, str] | None,
) -> bool:
    """Subscribe with RabbitMQ's MQTT checks, refusing the whole subscription.

    Declaring and binding the queue check configure and write on it, read on
    ``amq.topic`` and topic read on the binding key; consuming needs read on
    the queue, which is checked here, since the session consumes on its own
    and only logs a refusal there.

    Raises:
        CoreError: the core refused the queue, the binding or reading.
    """
    core = session.core_session
    if share is None:
        core.authorize_read(session.queue_name)
        return session.subscribe(sub, identifier, share)
    new = session.subscribe(sub, identifier, share)
    try:
        core.authorize_read(session.subscriptions[sub.filter].queue)
    except AccessRefused:
        session.unsubscribe(sub.filter)
        raise
    return new


def handle_unsubscribe(conn: MQTTConnection, packet: Unsubscribe) -> None:
    """Unsubscribe each filter; MQTT 5 says 0x11 for filters that had no subscription."""
    session = conn.session
    codes: list[int] = []
    for topic_filter in packet.filters:
        try:
            validate_topic_filter(topic_filter)
        except InvalidTopicFilter as err:
            conn.protocol_violation(err.text, ReasonCode.MALFORMED_PACKET)
            return
        existed = session.unsubscribe(topic_filter)
        codes.append(ReasonCode.SUCCESS if existed else ReasonCode.NO_SUBSCRIPTION_EXISTED)
    conn.mqtt.record(session)
    conn.send(UnsubAck(packet.packet_id, tuple(codes) if conn.level == MQTT_5 else ()))
