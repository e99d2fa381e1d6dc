"""The AMQP front end, transport and core together, in-process on Trio and asyncio."""

from __future__ import annotations

import struct

import anyio
import pytest
from pamqp import commands, heartbeat

from rapidmq.server import Server

from .amqp_client import PROTOCOL_HEADER, ConnectionClosed, connect
from .conftest import amqp_port

pytestmark = pytest.mark.anyio


async def test_publish_consume_and_ack_round_trip(server: Server) -> None:
    client = await connect(amqp_port(server))
    await client.open_channel(1)
    ok = await client.rpc(1, commands.Queue.Declare(queue="q1"), commands.Queue.DeclareOk)
    assert (ok.queue, ok.message_count, ok.consumer_count) == ("q1", 0, 0)
    props = commands.Basic.Properties(content_type="text/plain", headers={"k": "v"})
    for i in range(3):
        await client.publish(1, "", "q1", f"m{i}".encode(), props)
    await client.send(1, commands.Basic.Consume(queue="q1", consumer_tag="c1"))
    consume_ok = await client.expect(commands.Basic.ConsumeOk)
    assert consume_ok.consumer_tag == "c1"
    got = [await client.next_delivery() for _ in range(3)]
    assert [d.body for d in got] == [b"m0", b"m1", b"m2"]
    assert [d.method.delivery_tag for d in got] == [1, 2, 3]
    assert got[0].properties.content_type == "text/plain"
    assert got[0].properties.headers == {"k": "v"}
    await client.send(1, commands.Basic.Ack(delivery_tag=3, multiple=True))
    ok = await client.rpc(
        1, commands.Queue.Declare(queue="q1", passive=True), commands.Queue.DeclareOk
    )
    assert (ok.message_count, ok.consumer_count) == (0, 1)
    await client.aclose()


async def test_large_message_spans_body_frames(server: Server) -> None:
    client = await connect(amqp_port(server))
    await client.open_channel(1)
    await client.rpc(1, commands.Queue.Declare(queue="big"), commands.Queue.DeclareOk)
    data = bytes(range(256)) * 4096  # 1 MiB, eight frames at frame-max 131072
    await client.publish(1, "", "big", data)
    await client.send(1, commands.Basic.Get(queue="big", no_ack=True))
    get_ok = await client.expect(commands.Basic.GetOk)
    delivery = await client.read_content(get_ok)
    assert delivery.body == data
    await client.aclose()


async def test_publisher_confirms_cover_every_publish(server: Server) -> None:
    client = await connect(amqp_port(server))
    await client.open_channel(1)
    await client.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    await client.rpc(1, commands.Queue.Declare(queue="cq"), commands.Queue.DeclareOk)
    for i in range(10):
        await client.publish(1, "", "cq", b"x%d" % i)
    confirmed = 0
    while confirmed < 10:
        ack = await client.expect(commands.Basic.Ack)
        assert ack.delivery_tag > confirmed
        assert ack.multiple or ack.delivery_tag == confirmed + 1
        confirmed = ack.delivery_tag
    assert confirmed == 10
    await client.aclose()


async def test_mandatory_unroutable_is_returned_before_its_confirm(server: Server) -> None:
    client = await connect(amqp_port(server))
    await client.open_channel(1)
    await client.rpc(1, commands.Confirm.Select(), commands.Confirm.SelectOk)
    await client.publish(1, "amq.direct", "nowhere", b"lost", mandatory=True)
    ret = await client.expect(commands.Basic.Return)
    assert (ret.reply_code, ret.reply_text, ret.exchange, ret.routing_key) == (
        312,
        "NO_ROUTE",
        "amq.direct",
        "nowhere",
    )
    returned = await client.read_content(ret)
    assert returned.body == b"lost"
    ack = await client.expect(commands.Basic.Ack)
    assert ack.delivery_tag == 1
    await client.aclose()


async def test_channel_error_closes_only_the_channel(server: Server) -> None:
    client = await connect(amqp_port(server))
    await client.open_channel(1)
    await client.open_channel(2)
    await client.send(1, commands.Queue.Declare(queue="absent", passive=True))
    close = await client.expect(commands.Channel.Close)
    assert (close.reply_code, close.reply_text, close.class_id, close.method_id) == (
        404,
        "NOT_FOUND - no queue 'absent' in vhost '/'",
        50,
        10,
    )
    await client.send(1, commands.Channel.CloseOk())
    ok = await client.rpc(2, commands.Queue.Declare(queue="present"), commands.Queue.DeclareOk)
    assert ok.queue == "present"
    await client.aclose()


async def test_malformed_frame_closes_only_its_connection(server: Server) -> None:
    healthy = await connect(amqp_port(server))
    await healthy.open_channel(1)
    broken = await connect(amqp_port(server))
    # A method frame whose frame-end octet is wrong.
    await broken.send_raw(struct.pack(">BHI", 1, 0, 4) + b"\x00\x0a\x00\x33" + b"\x00")
    close = await broken.expect(commands.Connection.Close)
    assert close.reply_code == 501
    await broken.send(0, commands.Connection.CloseOk())
    ok = await healthy.rpc(1, commands.Queue.Declare(queue="still-fine"), commands.Queue.DeclareOk)
    assert ok.queue == "still-fine"
    await healthy.aclose()
    await broken.aclose()


async def test_bad_protocol_header_gets_ours_and_eof(server: Server) -> None:
    stream = await anyio.connect_tcp("127.0.0.1", amqp_port(server))
    await stream.send(b"AMQP\x01\x01\x00\x0a")
    received = b""
    with anyio.fail_after(5):
        try:
            while True:
                received += await stream.receive()
        except anyio.EndOfStream:
            pass
    assert received == PROTOCOL_HEADER
    await stream.aclose()


async def test_refused_login_gets_403(server: Server) -> None:
    with pytest.raises(ConnectionClosed) as info:
        await connect(amqp_port(server), password="wrong")
    assert info.value.reply_code == 403
    assert info.value.reply_text == (
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. "
        "For details see the broker logfile."
    )


async def test_unknown_vhost_gets_530(server: Server) -> None:
    with pytest.raises(ConnectionClosed) as info:
        await connect(amqp_port(server), vhost="nope")
    assert (info.value.reply_code, info.value.reply_text) == (
        530,
        "NOT_ALLOWED - vhost nope not found",
    )


async def test_server_sends_heartbeats(server: Server) -> None:
    client = await connect(amqp_port(server), heartbeat_s=1)
    _channel, value = await client.read_frame(timeout_s=2.5)
    assert isinstance(value, heartbeat.Heartbeat)
    await client.aclose()


async def test_shutdown_closes_connections_with_320(server: Server) -> None:
    client = await connect(amqp_port(server))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.stop)
        close = await client.expect(commands.Connection.Close)
        await client.send(0, commands.Connection.CloseOk())
    assert close.reply_code == 320
    assert close.reply_text.startswith("CONNECTION_FORCED")
    await client.aclose()


async def test_connection_blocked_is_announced(server: Server) -> None:
    client = await connect(amqp_port(server))
    (conn,) = list(server.connections)
    conn.handler.set_blocked(True, "low on memory")  # type: ignore[attr-defined]
    blocked = await client.expect(commands.Connection.Blocked)
    assert blocked.reason == "low on memory"
    conn.handler.set_blocked(False)  # type: ignore[attr-defined]
    await client.expect(commands.Connection.Unblocked)
    await client.aclose()


async def test_access_request_is_answered_with_ticket_1(server: Server) -> None:
    from rapidmq.protocols.amqp091.access import AccessRequest

    client = await connect(amqp_port(server))
    await client.open_channel(1)
    await client.send(1, AccessRequest(realm="/data"))
    expected = struct.pack(">BHI", 1, 1, 6) + struct.pack(">HHH", 30, 11, 1) + b"\xce"
    with anyio.fail_after(5):
        while len(client.buffer) < len(expected):
            client.buffer += await client.stream.receive()
    assert bytes(client.buffer) == expected
    await client.aclose()


async def test_empty_queue_name_means_the_last_declared_queue(server: Server) -> None:
    client = await connect(amqp_port(server))
    await client.open_channel(1)
    await client.send(1, commands.Queue.Purge(queue=""))
    close = await client.expect(commands.Channel.Close)
    assert (close.reply_code, close.reply_text) == (
        404,
        "NOT_FOUND - no previously declared queue",
    )
    await client.send(1, commands.Channel.CloseOk())
    await client.open_channel(2)
    await client.rpc(2, commands.Queue.Declare(queue="recent"), commands.Queue.DeclareOk)
    # queue "" and routing key "" bind the last declared queue under its own name.
    await client.rpc(2, commands.Queue.Bind(queue="", exchange="amq.direct"), commands.Queue.BindOk)
    await client.publish(2, "amq.direct", "recent", b"via shortcut")
    await client.send(2, commands.Basic.Get(queue="", no_ack=True))
    get_ok = await client.expect(commands.Basic.GetOk)
    assert (await client.read_content(get_ok)).body == b"via shortcut"
    await client.aclose()
