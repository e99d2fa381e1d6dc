"""The MQTT front end, transport and core together, in-process on Trio and asyncio."""

from __future__ import annotations

import anyio
import pytest
from pamqp import commands

from rapidmq.protocols.mqtt.packets import (
    MQTT_3_1_1,
    ConnAck,
    Disconnect,
    MQTTProperties,
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
    Will,
)
from rapidmq.server import Server

from .amqp_client import connect as amqp_connect
from .conftest import amqp_port
from .mqtt_fixtures import mqtt_connect, mqtt_server

pytestmark = pytest.mark.anyio
__all__ = ["mqtt_server"]

ACCEPTED_V5 = ConnAck(False, 0, MQTTProperties(topic_alias_maximum=65535))


async def test_qos_0_1_2_both_ways(mqtt_server: Server) -> None:
    sub, ack = await mqtt_connect(mqtt_server, "sub")
    assert ack == ACCEPTED_V5
    await sub.send(
        Subscribe(1, (Subscription("q/0", 0), Subscription("q/1", 1), Subscription("q/2", 2)))
    )
    assert await sub.recv() == SubAck(1, (0, 1, 2))
    pub, _ = await mqtt_connect(mqtt_server, "pub")
    await pub.send(
        Publish("q/0", b"zero"),
        Publish("q/1", b"one", qos=1, packet_id=10),
        Publish("q/2", b"two", qos=2, packet_id=11),
    )
    assert await pub.recv_many(2) == [PubAck(10), PubRec(11)]
    await pub.send(PubRel(11))
    assert await pub.recv() == PubComp(11)
    assert await sub.recv_many(3) == [
        Publish("q/0", b"zero"),
        Publish("q/1", b"one", qos=1, packet_id=1),
        Publish("q/2", b"two", qos=2, packet_id=2),
    ]
    await sub.send(PubAck(1), PubRec(2))
    assert await sub.recv() == PubRel(2)
    await sub.send(PubComp(2))
    await sub.send(PingReq())
    assert await sub.recv() == PingResp()
    assert mqtt_server.broker.statistics()["messages_unacknowledged"] == 0
    await sub.aclose()
    await pub.aclose()


async def test_persistent_session_resends_with_dup_and_same_ids(mqtt_server: Server) -> None:
    sub, _ = await mqtt_connect(mqtt_server, "keeper", level=MQTT_3_1_1, clean_start=False)
    await sub.send(Subscribe(1, (Subscription("k", 1),)))
    assert await sub.recv() == SubAck(1, (1,))
    pub, _ = await mqtt_connect(mqtt_server, "pub", level=MQTT_3_1_1)
    await pub.send(Publish("k", b"a", qos=1, packet_id=1), Publish("k", b"b", qos=1, packet_id=2))
    assert await sub.recv_many(2) == [
        Publish("k", b"a", qos=1, packet_id=1),
        Publish("k", b"b", qos=1, packet_id=2),
    ]
    await sub.send(PubAck(1))
    await sub.aclose()  # drop without DISCONNECT
    await anyio.sleep(0.1)
    await pub.send(Publish("k", b"c", qos=1, packet_id=3))
    again, ack = await mqtt_connect(mqtt_server, "keeper", level=MQTT_3_1_1, clean_start=False)
    assert ack == ConnAck(True, 0)
    assert await again.recv_many(2) == [
        Publish("k", b"b", qos=1, dup=True, packet_id=2),
        Publish("k", b"c", qos=1, packet_id=3),
    ]
    await again.aclose()
    await pub.aclose()


async def test_retained_messages_and_retain_handling(mqtt_server: Server) -> None:
    pub, _ = await mqtt_connect(mqtt_server, "pub")
    await pub.send(Publish("state/door", b"open", retain=True))
    await anyio.sleep(0.05)
    sub, _ = await mqtt_connect(mqtt_server, "sub")
    await sub.send(Subscribe(1, (Subscription("state/+", 1, retain_handling=1),)))
    assert await sub.recv_many(2) == [SubAck(1, (1,)), Publish("state/door", b"open", retain=True)]
    await sub.send(Subscribe(2, (Subscription("state/+", 1, retain_handling=1),)))
    assert await sub.recv() == SubAck(2, (1,))
    await sub.send(Subscribe(3, (Subscription("state/#", 0, retain_handling=2),)))
    assert await sub.recv() == SubAck(3, (0,))
    assert await sub.nothing() == []
    await sub.aclose()
    await pub.aclose()


async def test_will_on_drop_but_not_after_disconnect_and_delayed_will(mqtt_server: Server) -> None:
    watcher, _ = await mqtt_connect(mqtt_server, "watcher")
    await watcher.send(Subscribe(1, (Subscription("will/#"),)))
    assert await watcher.recv() == SubAck(1, (0,))
    polite, _ = await mqtt_connect(mqtt_server, "polite", will=Will("will/polite", b"p"))
    await polite.send(Disconnect())
    assert await polite.closed_by_server() == []
    await polite.aclose()
    rude, _ = await mqtt_connect(mqtt_server, "rude", will=Will("will/rude", b"r"))
    await rude.aclose()
    assert await watcher.recv() == Publish("will/rude", b"r")
    will = Will("will/slow", b"s", properties=MQTTProperties(will_delay_interval=1))
    slow, _ = await mqtt_connect(
        mqtt_server, "slow", will=will, properties=MQTTProperties(session_expiry_interval=10)
    )
    await slow.aclose()
    assert await watcher.nothing(0.5) == []
    assert await watcher.recv(3.0) == Publish("will/slow", b"s")
    await watcher.aclose()


async def test_takeover_and_keep_alive_timeout(mqtt_server: Server) -> None:
    first, _ = await mqtt_connect(mqtt_server, "same")
    second, ack = await mqtt_connect(mqtt_server, "same", keep_alive=1)
    assert ack == ACCEPTED_V5
    assert await first.closed_by_server() == [Disconnect(0x8E)]
    assert await second.closed_by_server(4.0) == [Disconnect(0x8D)]
    await first.aclose()
    await second.aclose()


async def test_shared_subscription_load_sharing_and_redistribution(mqtt_server: Server) -> None:
    one, _ = await mqtt_connect(mqtt_server, "one")
    two, _ = await mqtt_connect(mqtt_server, "two")
    for member in (one, two):
        await member.send(Subscribe(1, (Subscription("$share/workers/jobs", 1),)))
        assert await member.recv() == SubAck(1, (1,))
    pub, _ = await mqtt_connect(mqtt_server, "pub")
    for i in range(4):
        await pub.send(Publish("jobs", b"%d" % i, qos=1, packet_id=i + 1))
    assert await pub.recv_many(4) == [PubAck(i + 1) for i in range(4)]
    got_one = await one.recv_many(2)
    got_two = await two.recv_many(2)
    assert sorted(p.payload for p in got_one + got_two) == [b"0", b"1", b"2", b"3"]  # type: ignore[union-attr]
    await one.aclose()  # never acked: its two jobs go to the other member
    redelivered = await two.recv_many(2)
    assert sorted(p.payload for p in redelivered) == sorted(p.payload for p in got_one)  # type: ignore[union-attr]
    await two.aclose()
    await pub.aclose()


async def test_topic_aliases_no_local_subscription_ids_and_dollar_topics(
    mqtt_server: Server,
) -> None:
    client, _ = await mqtt_connect(
        mqtt_server, "c", properties=MQTTProperties(topic_alias_maximum=5)
    )
    await client.send(
        Subscribe(
            1,
            (Subscription("#", 0, no_local=True),),
            MQTTProperties(subscription_identifiers=[7]),
        )
    )
    assert await client.recv() == SubAck(1, (0,))
    await client.send(Publish("own", b"not echoed"))
    other, _ = await mqtt_connect(mqtt_server, "o")
    await other.send(
        Publish("$SYS/hidden", b"no"),
        Publish("t/x", b"1", properties=MQTTProperties(topic_alias=1)),
        Publish("", b"2", properties=MQTTProperties(topic_alias=1)),
    )
    assert await client.recv_many(2) == [
        Publish(
            "t/x", b"1", properties=MQTTProperties(subscription_identifiers=[7], topic_alias=1)
        ),
        Publish("", b"2", properties=MQTTProperties(subscription_identifiers=[7], topic_alias=1)),
    ]
    assert await client.nothing() == []
    await client.aclose()
    await other.aclose()


async def test_mqtt_and_amqp_interoperate(mqtt_server: Server) -> None:
    amqp = await amqp_connect(amqp_port(mqtt_server))
    await amqp.open_channel(1)
    await amqp.rpc(1, commands.Queue.Declare(queue="from-mqtt"), commands.Queue.DeclareOk)
    await amqp.rpc(
        1,
        commands.Queue.Bind(queue="from-mqtt", exchange="amq.topic", routing_key="home.#"),
        commands.Queue.BindOk,
    )
    await amqp.send(1, commands.Basic.Consume(queue="from-mqtt", no_ack=True))
    await amqp.expect(commands.Basic.ConsumeOk)
    mqtt, _ = await mqtt_connect(mqtt_server, "m")
    await mqtt.send(Subscribe(1, (Subscription("replies/#", 1),)))
    assert await mqtt.recv() == SubAck(1, (1,))
    props = MQTTProperties(
        content_type="text/plain",
        correlation_data=b"req-1",
        response_topic="replies/m",
        user_properties=[("who", "mqtt")],
    )
    await mqtt.send(Publish("home/hall/light", b"on", qos=1, packet_id=1, properties=props))
    assert await mqtt.recv() == PubAck(1)
    delivery = await amqp.next_delivery()
    assert delivery.method.routing_key == "home.hall.light"
    assert delivery.body == b"on"
    p = delivery.properties
    assert (p.content_type, p.correlation_id, p.reply_to, p.headers, p.delivery_mode) == (
        "text/plain",
        "req-1",
        "replies.m",
        {"who": "mqtt"},
        2,
    )
    reply = commands.Basic.Properties(
        correlation_id=p.correlation_id, headers={"status": "done"}, delivery_mode=2
    )
    await amqp.publish(1, "amq.topic", p.reply_to, b"ok", reply)
    assert await mqtt.recv() == Publish(
        "replies/m",
        b"ok",
        qos=1,
        packet_id=1,
        properties=MQTTProperties(correlation_data=b"req-1", user_properties=[("status", "done")]),
    )
    await mqtt.aclose()
    await amqp.aclose()
