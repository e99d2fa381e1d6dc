"""The AMQP connection state machine, driven with bytes and no sockets."""

from __future__ import annotations

from typing import Any

import pytest
from pamqp import commands, frame

from rapidmq.auth.users import UserStore
from rapidmq.core.broker import Broker
from rapidmq.protocols.amqp091.connection import AMQPConnection, AMQPSettings

HEADER = b"AMQP\x00\x00\x09\x01"


def _frames(data: bytes) -> list[tuple[int, Any]]:
    out = []
    while data:
        consumed, channel, value = frame.unmarshal(data)
        out.append((channel, value))
        data = data[consumed:]
    return out


def _connection(peer_host: str, clock: list[float] | None = None) -> AMQPConnection:
    users = UserStore()
    users.add_user("guest", "guest", tags=("administrator",))
    users.add_user("alice", "secret")
    now = clock if clock is not None else [0.0]
    return AMQPConnection(
        Broker(), users, AMQPSettings(), (peer_host, 40000), lambda: None, clock=lambda: now[0]
    )


def _login(conn: AMQPConnection, user: str, password: str) -> list[tuple[int, Any]]:
    conn.data_received(HEADER)
    start = _frames(conn.data_to_send())
    assert [type(v) for _, v in start] == [commands.Connection.Start]
    start_ok = commands.Connection.StartOk(
        client_properties={"product": "test"}, mechanism="PLAIN", response=f"\0{user}\0{password}"
    )
    conn.data_received(frame.marshal(start_ok, 0))
    return _frames(conn.data_to_send())


def test_guest_from_a_remote_address_is_refused_with_403() -> None:
    conn = _connection("203.0.113.5")
    replies = _login(conn, "guest", "guest")
    assert len(replies) == 1
    channel, close = replies[0]
    assert channel == 0
    assert isinstance(close, commands.Connection.Close)
    assert close.reply_code == 403
    assert close.reply_text.startswith("ACCESS_REFUSED - Login was refused")
    assert conn.closed


def test_other_users_may_connect_from_a_remote_address() -> None:
    conn = _connection("203.0.113.5")
    replies = _login(conn, "alice", "secret")
    assert [type(v) for _, v in replies] == [commands.Connection.Tune]
    assert not conn.closed


def test_guest_from_loopback_gets_tune() -> None:
    conn = _connection("127.0.0.1")
    replies = _login(conn, "guest", "guest")
    assert [type(v) for _, v in replies] == [commands.Connection.Tune]


def test_handshake_not_finished_in_time_is_closed() -> None:
    clock = [100.0]
    conn = _connection("127.0.0.1", clock)
    conn.data_received(HEADER)
    clock[0] = 109.0
    conn.handle_timer(clock[0])
    assert not conn.closed
    clock[0] = 110.5
    conn.handle_timer(clock[0])
    assert conn.closed


def test_tune_ok_frame_max_limits_follow_rabbitmq() -> None:
    from rapidmq.protocols.amqp091.handshake import check_tune

    settings = AMQPSettings(frame_max=131072)
    assert check_tune(settings, 131072) is None
    assert check_tune(settings, 4096) is None
    assert check_tune(settings, 4095) == "NOT_ALLOWED - frame_max=4095 < 4096 min size"
    assert check_tune(settings, 0) == (
        "NOT_ALLOWED - negotiated frame_max = 0 is higher than the maximum allowed value (131072)"
    )
    assert check_tune(settings, 131073) == (
        "NOT_ALLOWED - negotiated frame_max = 131073 is higher than the maximum allowed value "
        "(131072)"
    )


def test_unknown_mechanism_is_refused_with_its_name() -> None:
    from rapidmq.protocols.amqp091.handshake import LoginRefused, check_login

    users = UserStore()
    users.add_user("guest", "guest")
    with pytest.raises(LoginRefused) as info:
        check_login(users, AMQPSettings(), "127.0.0.1", "EXTERNAL", b"")
    assert info.value.text == "ACCESS_REFUSED - unsupported authentication mechanism 'EXTERNAL'"
