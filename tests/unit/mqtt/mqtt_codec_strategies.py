"""Hypothesis strategies for MQTT packets of levels 3, 4 and 5, and feeding helpers."""

from __future__ import annotations

import dataclasses
import itertools
from typing import Any

from hypothesis import strategies as st

from rapidmq.protocols.mqtt.codec import MQTTParser
from rapidmq.protocols.mqtt.errors import MQTTProtocolError
from rapidmq.protocols.mqtt.packets import (
    Auth,
    ConnAck,
    Connect,
    Disconnect,
    MQTTProperties,
    Packet,
    PacketType,
    PingReq,
    PingResp,
    PubAck,
    PubComp,
    Publish,
    PubRec,
    PubRel,
    SubAck,
    Subscribe,
    Subscription,
    UnsubAck,
    Unsubscribe,
    Will,
)
from rapidmq.protocols.mqtt.properties import WILL

LEVELS = (3, 4, 5)
text = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=12)
binary = st.binary(max_size=24)
u8 = st.integers(0, 255)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
flag = st.integers(0, 1)
packet_id = st.integers(1, 0xFFFF)
pairs = st.lists(st.tuples(text, text), min_size=1, max_size=3)

# Every MQTT 5 property with the values the specification allows, and where it may appear.
_P = PacketType
_ACKS = {_P.PUBACK, _P.PUBREC, _P.PUBREL, _P.PUBCOMP}
PROPERTY_VALUES: dict[str, tuple[Any, set[int]]] = {
    "payload_format_indicator": (flag, {_P.PUBLISH, WILL}),
    "message_expiry_interval": (u32, {_P.PUBLISH, WILL}),
    "content_type": (text, {_P.PUBLISH, WILL}),
    "response_topic": (text, {_P.PUBLISH, WILL}),
    "correlation_data": (binary, {_P.PUBLISH, WILL}),
    "subscription_identifiers": (
        st.lists(st.integers(1, 268_435_455), min_size=1, max_size=3),
        {_P.PUBLISH, _P.SUBSCRIBE},
    ),
    "session_expiry_interval": (u32, {_P.CONNECT, _P.CONNACK, _P.DISCONNECT}),
    "assigned_client_identifier": (text, {_P.CONNACK}),
    "server_keep_alive": (u16, {_P.CONNACK}),
    "authentication_method": (text, {_P.CONNECT, _P.CONNACK, _P.AUTH}),
    "authentication_data": (binary, {_P.CONNECT, _P.CONNACK, _P.AUTH}),
    "request_problem_information": (flag, {_P.CONNECT}),
    "will_delay_interval": (u32, {WILL}),
    "request_response_information": (flag, {_P.CONNECT}),
    "response_information": (text, {_P.CONNACK}),
    "server_reference": (text, {_P.CONNACK, _P.DISCONNECT}),
    "reason_string": (
        text,
        _ACKS | {_P.CONNACK, _P.SUBACK, _P.UNSUBACK, _P.DISCONNECT, _P.AUTH},
    ),
    "receive_maximum": (st.integers(1, 0xFFFF), {_P.CONNECT, _P.CONNACK}),
    "topic_alias_maximum": (u16, {_P.CONNECT, _P.CONNACK}),
    "topic_alias": (st.integers(1, 0xFFFF), {_P.PUBLISH}),
    "maximum_qos": (flag, {_P.CONNACK}),
    "retain_available": (flag, {_P.CONNACK}),
    "user_properties": (pairs, set(_P) - {_P.PINGREQ, _P.PINGRESP} | {WILL}),
    "maximum_packet_size": (st.integers(1, 0xFFFF_FFFF), {_P.CONNECT, _P.CONNACK}),
    "wildcard_subscription_available": (flag, {_P.CONNACK}),
    "subscription_identifier_available": (flag, {_P.CONNACK}),
    "shared_subscription_available": (flag, {_P.CONNACK}),
}


def properties_for(kind: int) -> st.SearchStrategy[MQTTProperties | None]:
    """Any valid property set for a packet type (or ``WILL``), ``None`` included."""
    optional = {name: values for name, (values, where) in PROPERTY_VALUES.items() if kind in where}
    if kind == _P.SUBSCRIBE:
        optional["subscription_identifiers"] = st.lists(
            st.integers(1, 268_435_455), min_size=1, max_size=1
        )
    props = st.fixed_dictionaries({}, optional=optional).map(lambda d: MQTTProperties(**d))
    return st.none() | props


def _props(level: int, kind: int) -> st.SearchStrategy[MQTTProperties | None]:
    return properties_for(kind) if level == 5 else st.none()


@st.composite
def connects(draw: st.DrawFn, level: int) -> Connect:
    username = draw(st.none() | text)
    password = draw(st.none() | binary) if username is not None or level == 5 else None
    will = None
    if draw(st.booleans()):
        will = Will(
            draw(text), draw(binary), draw(st.integers(0, 2)), draw(st.booleans()),
            draw(_props(level, WILL)),
        )  # fmt: skip
    return Connect(
        level, draw(text), draw(st.booleans()), draw(u16), username, password, will,
        draw(_props(level, _P.CONNECT)), "MQIsdp" if level == 3 else "MQTT",
    )  # fmt: skip


@st.composite
def publishes(draw: st.DrawFn, level: int) -> Publish:
    qos = draw(st.integers(0, 2))
    return Publish(
        draw(text), draw(binary), qos, draw(st.booleans()), draw(st.booleans()) if qos else False,
        draw(packet_id) if qos else None, draw(_props(level, _P.PUBLISH)),
    )  # fmt: skip


@st.composite
def subscribes(draw: st.DrawFn, level: int) -> Subscribe:
    def subscription(draw: st.DrawFn) -> Subscription:
        if level < 5:
            return Subscription(draw(text), draw(st.integers(0, 2)))
        return Subscription(
            draw(text), draw(st.integers(0, 2)), draw(st.booleans()), draw(st.booleans()),
            draw(st.integers(0, 2)),
        )  # fmt: skip

    subs = draw(st.lists(st.composite(subscription)(), min_size=1, max_size=4))
    return Subscribe(draw(packet_id), tuple(subs), draw(_props(level, _P.SUBSCRIBE)))


def packets(level: int) -> st.SearchStrategy[Packet]:
    """Any packet but CONNECT, either direction, valid at ``level``."""
    reason = u8 if level == 5 else st.just(0)
    codes = st.lists(u8, min_size=1, max_size=5).map(tuple)
    acks = [
        st.builds(record, packet_id, reason, _props(level, kind))
        for record, kind in ((PubAck, _P.PUBACK), (PubRec, _P.PUBREC), (PubRel, _P.PUBREL))
    ]
    choices = [
        st.builds(
            ConnAck, st.booleans() if level > 3 else st.just(False), u8, _props(level, _P.CONNACK)
        ),
        publishes(level),
        *acks,
        st.builds(PubComp, packet_id, reason, _props(level, _P.PUBCOMP)),
        subscribes(level),
        st.builds(SubAck, packet_id, codes, _props(level, _P.SUBACK)),
        st.builds(
            Unsubscribe,
            packet_id,
            st.lists(text, min_size=1, max_size=4).map(tuple),
            _props(level, _P.UNSUBSCRIBE),
        ),
        st.builds(
            UnsubAck,
            packet_id,
            codes if level == 5 else st.just(()),
            _props(level, _P.UNSUBACK),
        ),
        st.just(PingReq()),
        st.just(PingResp()),
        st.builds(Disconnect, reason, _props(level, _P.DISCONNECT)),
    ]
    if level == 5:
        choices.append(st.builds(Auth, u8, _props(level, _P.AUTH)))
    return st.one_of(choices)


def normalized(packet: Packet) -> Packet:
    """``packet`` as the decoder returns it: an empty property set becomes ``None``."""
    changes: dict[str, Any] = {}
    props = getattr(packet, "properties", None)
    if props is not None and props == MQTTProperties():
        changes["properties"] = None
    will = getattr(packet, "will", None)
    if will is not None and will.properties == MQTTProperties():
        changes["will"] = dataclasses.replace(will, properties=None)
    return dataclasses.replace(packet, **changes) if changes else packet  # type: ignore[arg-type]


def feed(
    data: bytes, cuts: list[int] | None = None, **parser_args: Any
) -> tuple[list[Packet], MQTTProtocolError | None]:
    """Feed ``data`` cut at ``cuts`` (byte by byte when ``None``): packets, then the error."""
    parser = MQTTParser(**parser_args)
    points = range(len(data) + 1) if cuts is None else [0, *sorted(cuts), len(data)]
    got: list[Packet] = []
    for start, stop in itertools.pairwise(points):
        try:
            got += parser.receive_data(data[start:stop])
        except MQTTProtocolError as err:
            return got + err.packets, err
    return got, None
