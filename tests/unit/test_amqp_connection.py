"""The AMQP connection state machine, driven with bytes and a fake clock, no sockets.

Every input is fed whole and byte by byte; the output is decoded with pamqp
and compared whole: channel, method name and every field.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pamqp import commands, frame, header
from pamqp.base import Frame
from pamqp.body import ContentBody
from pamqp.heartbeat import Heartbeat

from rapidmq.auth.backends import Authenticator, InternalBackend, LoginDone, LoginRequest
from rapidmq.auth.users import UserStore
from rapidmq.core.broker import Broker
from rapidmq.protocols.amqp091.connection import CLOSE_TIMEOUT_S, IDLE_S, AMQPConnection
from rapidmq.protocols.amqp091.handshake import (
    SECRET_REFUSED_TEXT,
    AMQPSettings,
    server_properties,
)

HEADER = b"AMQP\x00\x00\x09\x01"
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"
START = 100.0
SECRET_REFUSED = (
    0,
    "Connection.Close",
    {"reply_code": 530, "reply_text": SECRET_REFUSED_TEXT, "class_id": 10, "method_id": 70},
)
Sent = tuple[int, str, dict[str, Any]]


class DeferredAuthenticator(Authenticator):
    """The real login chain, answering only when the test says (a directory that is slow)."""

    def __init__(self, users: UserStore) -> None:
        super().__init__([InternalBackend(lambda: users)], loopback_users=("guest",), record=False)
        self.waiting: list[tuple[LoginRequest, LoginDone]] = []

    def login(self, request: LoginRequest, done: LoginDone) -> None:
        self.waiting.append((request, done))

    def answer(self) -> LoginRequest:
        request, done = self.waiting.pop(0)
        super().login(request, done)
        return request


_clients: list[Client] = []


@pytest.fixture(autouse=True)
def _sockets_closed() -> Iterator[None]:
    """Each test's connections end as the transport ends them, so none outlives its test."""
    yield
    while _clients:
        _clients.pop().conn.connection_lost()


class Client:
    """One ``AMQPConnection`` spoken to in bytes, whole or one byte at a time."""

    def __init__(
        self,
        *,
        bytewise: bool = False,
        host: str = "127.0.0.1",
        deferred: bool = False,
        certificate: dict[str, Any] | None = None,
        heartbeat_s: int = 60,
    ) -> None:
        self.now = START
        self.users = UserStore()
        self.users.add_user("guest", "guest", tags=("administrator",))
        self.users.add_user("alice", "secret")
        self.auth = DeferredAuthenticator(self.users) if deferred else None
        settings = AMQPSettings(heartbeat_s=heartbeat_s, authenticator=self.auth)
        self.bytewise = bytewise
        self.retimed = 0
        self.conn = AMQPConnection(
            Broker(), self.users, settings, (host, 40000), lambda: None, clock=lambda: self.now
        )
        self.conn.retime = self._retime
        _clients.append(self)
        if certificate is not None:
            self.conn.peer_certificate = certificate

    def _retime(self) -> None:
        self.retimed += 1

    def feed(self, data: bytes) -> None:
        if self.bytewise:
            for i in range(len(data)):
                self.conn.data_received(data[i : i + 1])
        else:
            self.conn.data_received(data)

    def send(self, *methods: tuple[int, Frame] | Frame | bytes) -> list[Sent]:
        """Send methods (on channel 0 unless given as ``(channel, method)``); return the reply."""
        data = b""
        for item in methods:
            if isinstance(item, bytes):
                data += item
            elif isinstance(item, tuple):
                data += frame.marshal(item[1], item[0])
            else:
                data += frame.marshal(item, 0)
        self.feed(data)
        return self.received()

    def received(self) -> list[Sent]:
        return decode(self.conn.data_to_send())

    def timer(self, at: float) -> float:
        self.now = at
        return self.conn.handle_timer(at)

    def login(self, user: str = "guest", password: str = "guest") -> list[Sent]:
        assert self.send(HEADER)[0][1] == "Connection.Start"
        return self.send(start_ok(user, password))

    def open(self, heartbeat_s: int = 0, user: str = "guest", password: str = "guest") -> None:
        self.login(user, password)
        assert self.send(
            commands.Connection.TuneOk(2047, 131072, heartbeat_s),
            commands.Connection.Open(virtual_host="/"),
        ) == [(0, "Connection.OpenOk", {"known_hosts": ""})]


def decode(data: bytes) -> list[Sent]:
    out: list[Sent] = []
    while data:
        consumed, channel, value = frame.unmarshal(data)
        fields = {} if isinstance(value, Heartbeat) else dict(value)
        out.append((channel, value.name, fields))
        data = data[consumed:]
    return out


def start_ok(user: str, password: str, mechanism: str = "PLAIN") -> commands.Connection.StartOk:
    return commands.Connection.StartOk(
        client_properties={"product": "test", "capabilities": {"connection.blocked": True}},
        mechanism=mechanism,
        response=f"\0{user}\0{password}",
    )


def publish(channel: int, routing_key: str, body: bytes) -> bytes:
    return (
        frame.marshal(commands.Basic.Publish(exchange="", routing_key=routing_key), channel)
        + frame.marshal(header.ContentHeader(0, len(body), commands.Basic.Properties()), channel)
        + frame.marshal(ContentBody(body), channel)
    )


def update_secret(secret: str) -> commands.Connection.UpdateSecret:
    return commands.Connection.UpdateSecret(new_secret=secret, reason="token refresh")


def close_ok(channel: int = 0) -> Sent:
    return (channel, "Connection.CloseOk", {})


def tune(heartbeat_s: int = 60) -> Sent:
    return (
        0,
        "Connection.Tune",
        {"channel_max": 2047, "frame_max": 131072, "heartbeat": heartbeat_s},
    )


START_REPLY: Sent = (
    0,
    "Connection.Start",
    {
        "version_major": 0,
        "version_minor": 9,
        "server_properties": server_properties(AMQPSettings()),
        "mechanisms": "PLAIN AMQPLAIN",
        "locales": "en_US",
    },
)
UPDATE_SECRET_OK: Sent = (0, "Connection.UpdateSecretOk", {})
CHANNEL_OPEN_OK: Sent = (1, "Channel.OpenOk", {"channel_id": "0"})


def open_after_login(client: Client) -> None:
    """Walk a client with a deferred login to open: header, start-ok, answer, tune-ok, open."""
    client.send(HEADER)
    client.send(start_ok("guest", "guest"))
    assert client.auth is not None
    client.auth.answer()
    client.send(
        commands.Connection.TuneOk(2047, 131072, 0), commands.Connection.Open(virtual_host="/")
    )


def declare_ok(queue: str) -> Sent:
    return (1, "Queue.DeclareOk", {"queue": queue, "message_count": 0, "consumer_count": 0})


@pytest.fixture(params=["whole", "bytewise"])
def bytewise(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "bytewise")


# -- the handshake -----------------------------------------------------------------------


def test_handshake_pipelined_after_start_answers_each_step(bytewise: bool) -> None:
    client = Client(bytewise=bytewise)
    assert client.send(HEADER) == [START_REPLY]
    assert client.send(
        start_ok("guest", "guest"),
        commands.Connection.TuneOk(2047, 131072, 60),
        commands.Connection.Open(virtual_host="/"),
        (1, commands.Channel.Open()),
    ) == [tune(), (0, "Connection.OpenOk", {"known_hosts": ""}), CHANNEL_OPEN_OK]
    assert (client.conn.user, client.conn.vhost, client.conn.heartbeat_s) == ("guest", "/", 60)


def test_guest_from_a_remote_address_is_refused_with_403(bytewise: bool) -> None:
    client = Client(bytewise=bytewise, host="203.0.113.5")
    assert client.login() == [
        (
            0,
            "Connection.Close",
            {
                "reply_code": 403,
                "reply_text": "ACCESS_REFUSED - Login was refused using authentication "
                "mechanism PLAIN. For details see the broker logfile.",
                "class_id": 0,
                "method_id": 0,
            },
        )
    ]
    assert client.conn.closed


def test_other_users_may_connect_from_a_remote_address() -> None:
    client = Client(host="203.0.113.5")
    assert client.login("alice", "secret") == [tune()]
    assert not client.conn.closed


def test_a_bad_protocol_header_is_answered_with_ours_and_closed(bytewise: bool) -> None:
    client = Client(bytewise=bytewise)
    client.feed(b"AMQP\x00\x00\x09\x02")
    assert client.conn.data_to_send() == HEADER
    assert client.conn.closed


def test_tune_ok_with_a_small_frame_max_is_closed_with_530() -> None:
    client = Client()
    client.login()
    assert client.send(commands.Connection.TuneOk(2047, 4095, 0)) == [
        (
            0,
            "Connection.Close",
            {
                "reply_code": 530,
                "reply_text": "NOT_ALLOWED - frame_max=4095 < 4096 min size",
                "class_id": 10,
                "method_id": 31,
            },
        )
    ]


def test_open_of_a_missing_vhost_is_closed_with_530() -> None:
    client = Client()
    client.login()
    assert client.send(
        commands.Connection.TuneOk(2047, 131072, 0), commands.Connection.Open(virtual_host="nope")
    ) == [
        (
            0,
            "Connection.Close",
            {
                "reply_code": 530,
                "reply_text": "NOT_ALLOWED - vhost nope not found",
                "class_id": 10,
                "method_id": 40,
            },
        )
    ]


def test_tune_ok_and_open_pipelined_behind_a_pending_login_wait_for_it(bytewise: bool) -> None:
    client = Client(bytewise=bytewise, deferred=True)
    client.send(HEADER)
    assert (
        client.send(
            start_ok("guest", "guest"),
            commands.Connection.TuneOk(2047, 131072, 0),
            commands.Connection.Open(virtual_host="/"),
        )
        == []
    )
    assert client.conn.reading_paused  # the transport reads no more meanwhile
    assert client.auth is not None
    client.auth.answer()
    assert client.received() == [tune(), (0, "Connection.OpenOk", {"known_hosts": ""})]
    assert not client.conn.reading_paused


def test_a_login_refused_later_drops_what_was_held() -> None:
    client = Client(deferred=True)
    client.send(HEADER)
    assert (
        client.send(start_ok("guest", "wrong"), commands.Connection.TuneOk(2047, 131072, 0)) == []
    )
    assert client.auth is not None
    client.auth.answer()
    [(channel, name, fields)] = client.received()
    assert (channel, name, fields["reply_code"]) == (0, "Connection.Close", 403)
    assert client.conn.closed


def test_a_late_login_answer_after_the_handshake_timeout_is_ignored() -> None:
    client = Client(deferred=True)
    client.send(HEADER)
    client.send(start_ok("guest", "guest"))
    client.timer(START + 10.0)
    assert client.conn.closed
    assert client.auth is not None
    client.auth.answer()
    assert client.received() == []


# -- update-secret -----------------------------------------------------------------------


def test_update_secret_with_the_right_secret_is_answered_and_the_connection_works(
    bytewise: bool,
) -> None:
    client = Client(bytewise=bytewise)
    client.open()
    assert client.send(update_secret("guest")) == [UPDATE_SECRET_OK]
    assert client.send((1, commands.Channel.Open()), (1, commands.Queue.Declare(queue="q1"))) == [
        CHANNEL_OPEN_OK,
        declare_ok("q1"),
    ]


def test_update_secret_with_a_wrong_secret_closes_with_530(bytewise: bool) -> None:
    client = Client(bytewise=bytewise)
    client.open()
    assert client.send(update_secret("wrong")) == [SECRET_REFUSED]
    assert not client.conn.closed  # waits for close-ok, as after any connection.close
    assert client.send(commands.Connection.CloseOk()) == []
    assert client.conn.closed


def test_update_secret_names_no_other_user_a_plain_response_is_just_a_wrong_secret() -> None:
    client = Client()
    client.open()
    assert client.send(update_secret("\0alice\0secret")) == [SECRET_REFUSED]


def test_update_secret_that_is_not_utf8_closes_with_530() -> None:
    client = Client()
    client.open()
    arguments = struct.pack(">I", 2) + b"\xff\xfe" + b"\x01r"
    payload = struct.pack(">HH", 10, 70) + arguments
    raw = struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"
    assert client.send(raw) == [SECRET_REFUSED]


def test_update_secret_after_the_password_changed_needs_the_new_password() -> None:
    client = Client()
    client.open(user="alice", password="secret")
    client.users.delete_user("alice")
    client.users.add_user("alice", "rotated")
    assert client.send(update_secret("rotated")) == [UPDATE_SECRET_OK]
    assert client.send(update_secret("secret")) == [SECRET_REFUSED]


def test_update_secret_of_a_deleted_user_is_refused() -> None:
    client = Client()
    client.open(user="alice", password="secret")
    client.users.delete_user("alice")
    assert client.send(update_secret("secret")) == [SECRET_REFUSED]


def test_update_secret_of_an_external_login_checks_the_certificate_user_still_exists() -> None:
    certificate = {"subject": ((("commonName", "alice"),),)}
    client = Client(certificate=certificate)
    assert client.send(HEADER)[0][2]["mechanisms"] == "PLAIN AMQPLAIN EXTERNAL"
    assert client.send(
        commands.Connection.StartOk(client_properties={}, mechanism="EXTERNAL", response=""),
        commands.Connection.TuneOk(2047, 131072, 0),
        commands.Connection.Open(virtual_host="/"),
    ) == [tune(), (0, "Connection.OpenOk", {"known_hosts": ""})]
    assert client.send(update_secret("anything")) == [UPDATE_SECRET_OK]
    client.users.delete_user("alice")
    assert client.send(update_secret("anything")) == [SECRET_REFUSED]


def test_methods_behind_a_pending_update_secret_are_handled_after_it_in_order(
    bytewise: bool,
) -> None:
    client = Client(bytewise=bytewise, deferred=True)
    open_after_login(client)
    assert (
        client.send(
            update_secret("guest"),
            (1, commands.Channel.Open()),
            (1, commands.Queue.Declare(queue="q1")),
        )
        == []
    )
    assert client.conn.reading_paused
    assert client.send((1, commands.Queue.Declare(queue="q2"))) == []  # read before the pause
    request = client.auth.answer()
    assert (request.username, request.password, request.mechanism) == ("guest", "guest", "PLAIN")
    assert client.received() == [
        UPDATE_SECRET_OK,
        CHANNEL_OPEN_OK,
        declare_ok("q1"),
        declare_ok("q2"),
    ]
    assert not client.conn.reading_paused


def test_a_refused_pending_update_secret_drops_what_follows_it() -> None:
    client = Client(deferred=True)
    open_after_login(client)
    assert client.send(update_secret("wrong"), (1, commands.Channel.Open())) == []
    client.auth.answer()
    assert client.received() == [SECRET_REFUSED]
    assert not client.conn.reading_paused  # close-ok must be read
    assert client.send(commands.Connection.CloseOk()) == []
    assert client.conn.closed


def test_a_frame_error_behind_a_pending_update_secret_waits_its_turn() -> None:
    client = Client(deferred=True)
    open_after_login(client)
    assert client.send(update_secret("guest"), b"\x05\x00\x00\x00\x00\x00\x00\xce") == []
    client.auth.answer()
    assert client.received() == [
        UPDATE_SECRET_OK,
        (
            0,
            "Connection.Close",
            {
                "reply_code": 501,
                "reply_text": "FRAME_ERROR - type 5, all octets = <<>>: unknown_frame",
                "class_id": 0,
                "method_id": 0,
            },
        ),
    ]


def test_update_secret_during_a_pending_login_closes_once_tuning() -> None:
    # As RabbitMQ, which reads it after the login: unexpected while tuning, closed unanswered.
    client = Client(deferred=True)
    client.send(HEADER)
    assert client.send(start_ok("guest", "guest"), update_secret("guest")) == []
    assert client.auth is not None
    client.auth.answer()
    assert client.received() == [tune()]
    assert client.conn.closed


def test_a_pending_update_secret_answered_after_a_forced_close_is_ignored() -> None:
    client = Client(deferred=True)
    open_after_login(client)
    client.send(update_secret("guest"))
    client.conn.shutdown()
    [(_, name, fields)] = client.received()
    assert (name, fields["reply_code"]) == ("Connection.Close", 320)
    assert not client.conn.reading_paused
    client.auth.answer()
    assert client.received() == []


# -- methods a state does not take -------------------------------------------------------

CLIENT_METHODS: list[Frame] = [
    commands.Connection.Start(),
    start_ok("guest", "guest"),
    commands.Connection.Secure(challenge=""),
    commands.Connection.SecureOk(response=""),
    commands.Connection.Tune(),
    commands.Connection.TuneOk(2047, 131072, 0),
    commands.Connection.Open(virtual_host="/"),
    commands.Connection.OpenOk(),
    commands.Connection.CloseOk(),
    commands.Connection.Blocked(reason="x"),
    commands.Connection.Unblocked(),
    update_secret("guest"),
    commands.Connection.UpdateSecretOk(),
    commands.Channel.Open(),
    commands.Basic.Qos(),
]
#: What each state takes (connection.close is taken everywhere and tested below).
TAKEN = {
    "starting": {"Connection.StartOk"},
    "tuning": {"Connection.TuneOk"},
    "opening": {"Connection.Open"},
    "running": {"Connection.UpdateSecret", "Connection.CloseOk"},
}


def _client_in(state: str, bytewise: bool = False) -> Client:
    client = Client(bytewise=bytewise)
    client.send(HEADER)
    if state == "starting":
        return client
    client.send(start_ok("guest", "guest"))
    if state == "tuning":
        return client
    client.send(commands.Connection.TuneOk(2047, 131072, 0))
    if state == "opening":
        return client
    client.send(commands.Connection.Open(virtual_host="/"))
    return client


def _not_taken(state: str) -> list[Frame]:
    return [method for method in CLIENT_METHODS if method.name not in TAKEN[state]]


@pytest.mark.parametrize(
    ("state", "method"),
    [
        (state, method)
        for state in ("starting", "tuning", "opening")
        for method in _not_taken(state)
    ],
    ids=lambda value: value if isinstance(value, str) else value.name,
)
def test_an_unexpected_method_during_the_handshake_closes_unanswered(
    state: str, method: Frame, bytewise: bool
) -> None:
    client = _client_in(state, bytewise)
    assert client.send(method) == []
    assert client.conn.closed


@pytest.mark.parametrize("method", _not_taken("running"), ids=lambda m: m.name)
def test_an_unexpected_method_on_channel_0_when_open_is_closed_with_504(
    method: Frame, bytewise: bool
) -> None:
    client = _client_in("running", bytewise)
    index = method.index
    assert client.send(method) == [
        (
            0,
            "Connection.Close",
            {
                "reply_code": 504,
                "reply_text": "CHANNEL_ERROR - unexpected method in connection state running",
                "class_id": index >> 16,
                "method_id": index & 0xFFFF,
            },
        )
    ]


@pytest.mark.parametrize("method", CLIENT_METHODS, ids=lambda m: m.name)
def test_while_closing_only_close_ok_and_close_count(method: Frame, bytewise: bool) -> None:
    client = _client_in("running", bytewise)
    client.conn.force_close("CONNECTION_FORCED - test")
    client.received()
    assert client.send(method, (1, method)) == []
    assert client.conn.closed == (method.name == "Connection.CloseOk")


@pytest.mark.parametrize("state", ["starting", "tuning", "opening", "running"])
def test_connection_close_is_answered_with_close_ok_in_every_state(
    state: str, bytewise: bool
) -> None:
    client = _client_in(state, bytewise)
    assert client.send(commands.Connection.Close(200, "bye", 0, 0)) == [close_ok()]
    assert client.conn.closed


def test_a_channel_method_before_open_is_closed_with_504() -> None:
    client = _client_in("opening")
    assert client.send((1, commands.Channel.Open())) == [
        (
            0,
            "Connection.Close",
            {
                "reply_code": 504,
                "reply_text": "CHANNEL_ERROR - expected 'connection.open'",
                "class_id": 20,
                "method_id": 10,
            },
        )
    ]


# -- timers ------------------------------------------------------------------------------


def test_the_handshake_timer_returns_the_real_deadline_then_closes(bytewise: bool) -> None:
    client = Client(bytewise=bytewise)
    assert client.timer(START) == 10.0
    client.send(HEADER)
    assert client.timer(START + 9.5) == 0.5
    assert not client.conn.closed
    assert client.timer(START + 10.0) == IDLE_S
    assert client.conn.closed
    assert client.received() == []


def test_finishing_the_handshake_asks_the_transport_for_a_new_deadline() -> None:
    client = Client()
    assert client.timer(START) == 10.0
    client.open(heartbeat_s=4)
    assert client.retimed == 1
    assert client.timer(START) == 2.0  # the first heartbeat tick, not the handshake deadline


def test_heartbeats_are_sent_only_when_nothing_else_was() -> None:
    client = Client()
    client.open(heartbeat_s=10)  # open-ok went out at START
    assert client.timer(START) == 5.0
    assert client.timer(START + 5.0) == 5.0
    assert client.received() == []  # open-ok was sent since the last tick
    client.now = START + 9.0
    client.feed(HEARTBEAT)
    assert client.timer(START + 10.0) == 5.0
    assert client.received() == [(0, "Heartbeat", {})]


def test_client_heartbeats_keep_the_connection_alive() -> None:
    client = Client()
    client.open(heartbeat_s=10)
    for second in range(5, 60, 5):
        client.now = START + second
        client.feed(HEARTBEAT)
        client.timer(START + second)
    assert not client.conn.closed


def test_two_missed_heartbeat_intervals_close_with_rabbitmqs_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    client = Client()
    with caplog.at_level(logging.INFO, logger="rapidmq"):
        client.open(heartbeat_s=10)
        client.received()
        assert client.timer(START + 15.0) == 5.0
        assert client.timer(START + 19.9) == pytest.approx(0.1)
        assert not client.conn.closed
        assert client.timer(START + 20.0) == IDLE_S
    assert client.conn.closed
    assert client.received() == []  # open-ok went within the first tick; no close frame
    reasons = [getattr(r, "reason", None) for r in caplog.records if r.name == "rapidmq.connection"]
    reasons = [reason for reason in reasons if reason is not None]  # the open line has none
    assert reasons == ["missed heartbeats from client, timeout: 10s"]


def test_heartbeats_are_not_due_while_reading_is_paused_by_an_alarm() -> None:
    client = Client()
    client.open(heartbeat_s=10)
    client.send((1, commands.Channel.Open()))
    client.send(publish(1, "q", b"x"))
    client.conn.set_resource_alarms(("memory",))
    assert client.conn.reading_paused
    assert client.received() == [(0, "Connection.Blocked", {"reason": "low on memory"})]
    assert client.timer(START + 60.0) == 5.0
    assert not client.conn.closed


def test_no_heartbeat_negotiated_means_no_timer() -> None:
    client = Client()
    client.open(heartbeat_s=0)
    assert client.timer(START + 1000.0) == IDLE_S
    assert client.received() == []


def test_close_ok_not_received_in_time_ends_the_connection() -> None:
    client = Client()
    client.open(heartbeat_s=60)
    client.received()
    client.now = START + 1.0
    client.conn.force_close("CONNECTION_FORCED - test")
    assert client.retimed == 2  # the close deadline comes before the next heartbeat tick
    assert client.received() == [
        (
            0,
            "Connection.Close",
            {
                "reply_code": 320,
                "reply_text": "CONNECTION_FORCED - test",
                "class_id": 0,
                "method_id": 0,
            },
        )
    ]
    assert client.timer(START + 1.0) == CLOSE_TIMEOUT_S
    assert not client.conn.closed
    assert client.timer(START + 1.0 + CLOSE_TIMEOUT_S) == IDLE_S
    assert client.conn.closed


# -- decisions of handshake.py -----------------------------------------------------------


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


# -- any split of the input --------------------------------------------------------------


def _session_script() -> bytes:
    return b"".join(
        [
            HEADER,
            frame.marshal(start_ok("guest", "guest"), 0),
            frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0),
            frame.marshal(commands.Connection.Open(virtual_host="/"), 0),
            frame.marshal(update_secret("guest"), 0),
            frame.marshal(commands.Channel.Open(), 1),
            frame.marshal(commands.Queue.Declare(queue="q1"), 1),
            publish(1, "q1", b"body"),
            frame.marshal(update_secret("wrong"), 0),
            frame.marshal(commands.Queue.Declare(queue="q2"), 1),
        ]
    )


def _replies(chunks: list[bytes], deferred: bool) -> list[Sent]:
    client = Client(deferred=deferred)
    out: list[Sent] = []
    for chunk in chunks:
        client.feed(chunk)
        while client.auth is not None and client.auth.waiting:
            client.auth.answer()
        out += client.received()
    return out


@settings(max_examples=60, deadline=None)
@given(cuts=st.lists(st.integers(min_value=1, max_value=300), max_size=40), deferred=st.booleans())
def test_any_split_of_a_session_gets_the_same_replies(cuts: list[int], deferred: bool) -> None:
    data = _session_script()
    chunks, start = [], 0
    for cut in sorted(set(cuts)):
        chunks.append(data[start:cut])
        start = cut
    chunks.append(data[start:])
    assert _replies(chunks, deferred) == [
        START_REPLY,
        tune(60),
        (0, "Connection.OpenOk", {"known_hosts": ""}),
        UPDATE_SECRET_OK,
        CHANNEL_OPEN_OK,
        declare_ok("q1"),
        SECRET_REFUSED,
    ]
    while _clients:
        _clients.pop().conn.connection_lost()
