"""The server side of one AMQP 0-9-1 connection, without I/O.

Theory of operation
-------------------
Bytes go in through :meth:`AMQPConnection.data_received` and are parsed into
events; frames to send pile up in :attr:`AMQPConnection.out`, which the
transport flushes once per loop turn after ``wake``.  Time comes in through
:meth:`AMQPConnection.handle_timer`, which returns the next deadline; a
connection whose deadline moves earlier calls ``retime``.  ``closed`` tells
the transport to close the socket once ``out`` is flushed.

The connection walks these states; :data:`_CONNECTION_METHODS` says which
channel-0 method each one takes, and any other is a protocol error::

    HEADER --header--> START --start-ok--> LOGGING_IN --login accepted--> TUNE
    TUNE --tune-ok--> OPEN_WAIT --open--> OPEN --close / error--> CLOSING --close-ok--> closed

What each step sends and whom it lets in is decided in ``handshake.py``.  Once
open, channel methods go to :class:`~rapidmq.protocols.amqp091.channel.Channel`,
and core errors become ``channel.close`` or ``connection.close`` by their scope.

Logins may be decided later (LDAP answers from a worker thread).  While the
login of a start-ok or an update-secret is in flight, the events that follow
it are held, in order, and the transport stops reading; the answer handles
them.  So nothing a client pipelines is lost or reordered, and holding costs
at most one read.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from pamqp import commands as spec

from rapidmq.auth.backends import LoginRequest, LoginResult
from rapidmq.auth.users import UserStore
from rapidmq.core.api import ClientInfo
from rapidmq.core.broker import Broker, CoreConnection
from rapidmq.core.errors import CoreError
from rapidmq.logs import client_product, connection_closed, connection_opened
from rapidmq.protocols.amqp091 import encode
from rapidmq.protocols.amqp091.channel import Channel, ChannelState
from rapidmq.protocols.amqp091.channels import (
    channel_error,
    channel_method,
    frame_on_bad_channel,
    method_ids,
)
from rapidmq.protocols.amqp091.constants import PROTOCOL_HEADER
from rapidmq.protocols.amqp091.errors import REPLY_CODES, FrameError, ProtocolHeaderMismatch
from rapidmq.protocols.amqp091.events import (
    AckReceived,
    Event,
    HeartbeatReceived,
    MethodReceived,
    ProtocolHeaderReceived,
    PublishReceived,
)
from rapidmq.protocols.amqp091.frames import FrameParser
from rapidmq.protocols.amqp091.handshake import (
    FRAME_MIN_SIZE,
    SECRET_REFUSED_TEXT,
    AMQPSettings,
    Refused,
    authenticator_for,
    login_refused,
    login_request,
    open_vhost,
    refused_text,
    secret_request,
    start_method,
    tune,
    tune_method,
)
from rapidmq.protocols.output import OUTPUT_HIGH_WATER, OutputBuffer

__all__ = ["REPLY_CODES", "AMQPConnection", "AMQPSettings"]  # AMQPSettings: see handshake.py

log = logging.getLogger("rapidmq.connection")

#: How long to wait for close-ok after we send connection.close.
CLOSE_TIMEOUT_S = 3.0
#: What handle_timer returns when no deadline is pending.
IDLE_S = 3600.0

_Held = Event | FrameError  # a frame error after held events waits its turn too


class _State(enum.Enum):
    HEADER = "awaiting protocol header"
    START = "awaiting connection.start-ok"
    LOGGING_IN = "logging in"  # start-ok received; the login backends have not answered yet
    TUNE = "awaiting connection.tune-ok"
    OPEN_WAIT = "awaiting connection.open"
    OPEN = "open"
    CLOSING = "closing"


# RabbitMQ's names for the reader states, used in its reply texts.
_STATE_NAMES = {
    _State.START: "starting",
    _State.LOGGING_IN: "starting",
    _State.TUNE: "tuning",
    _State.OPEN_WAIT: "opening",
    _State.OPEN: "running",
}


class AMQPConnection(OutputBuffer):
    """One client connection: handshake, channels, heartbeats and errors."""

    def __init__(
        self,
        broker: Broker,
        users: UserStore,
        settings: AMQPSettings,
        peer: tuple[str, int],
        wake: Callable[[], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.users = users
        self.settings = settings
        self._clock = clock
        self._init_output(peer, wake)
        self.parser = FrameParser(frame_max=max(settings.frame_max, FRAME_MIN_SIZE))
        self.state = _State.HEADER
        self.closed = False  # the transport closes the socket once `out` is flushed
        self.channels: dict[int, Channel] = {}
        self.confirms_pending: set[Channel] = set()
        self.frame_max = FRAME_MIN_SIZE
        self.channel_max = settings.channel_max
        self.heartbeat_s = 0
        self.user = ""
        self.vhost = ""
        self.client_properties: dict[str, Any] = {}
        self.auth_mechanism = ""  # the SASL mechanism the client logged in with
        self.login: LoginResult | None = None  # the accepted login (vhost restrictions)
        self.core: CoreConnection | None = None  # set on connection.open
        self.blocked = False  # the client was told connection.blocked
        self.reading_paused = False  # the transport stops reading while this is true
        self._alarms: tuple[str, ...] = ()
        self._publisher_blocked = False  # an alarm stopped reading this publisher
        self._request: LoginRequest | None = None  # what start-ok logged in with
        self._checking: object | None = None  # the login in flight, if any
        self._held: list[_Held] | None = None  # events after it, while it is in flight
        self._halted = False  # closed or holding: stop handling events
        now = clock()
        self._created = now
        self._last_recv = now
        self._next_beat = 0.0
        self._sent_since_tick = False
        self._close_deadline = 0.0

    # -- transport face ------------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything buffered for the socket, emptying the buffer."""
        data = self._take_output()
        if data:
            self._sent_since_tick = True
        return data

    def output_drained(self) -> None:
        """The transport flushed the buffer: resume consumers paused by back-pressure."""
        if self.output_paused and len(self.out) < OUTPUT_HIGH_WATER:
            self.output_paused = False
            for channel in list(self.channels.values()):
                if channel.state is ChannelState.OPEN:
                    channel.session.resume()

    def client_capability(self, name: str) -> bool:
        caps = self.client_properties.get("capabilities")
        return isinstance(caps, dict) and bool(caps.get(name))

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._last_recv = self._clock()
        events: Sequence[_Held]
        try:
            events = self.parser.receive_data(data)
        except ProtocolHeaderMismatch:
            self.out += PROTOCOL_HEADER
            self._finish("bad protocol header")
            return
        except FrameError as err:
            # Events parsed before the bad frame are handled, then the connection ends.
            events = [*err.events, err]
        if self._held is not None:
            self._held.extend(events)
            return
        self._handle_events(events)
        # Only during an alarm: a connection is blocked when it publishes.
        if (
            self._alarms
            and not self._publisher_blocked
            and any(type(event) is PublishReceived for event in events)
        ):
            self._block_publisher()

    def _handle_events(self, events: Iterable[_Held]) -> None:
        channels = self.channels
        pending = iter(events)
        for event in pending:
            # Publish and ack are the hot path: tested inline, as a table lookup and call
            # per event measured 2.5 times slower; the rest go through a table.
            if type(event) is PublishReceived:
                channel = channels.get(event.channel)
                if channel is None or channel.state is not ChannelState.OPEN:
                    frame_on_bad_channel(self, event.channel, 60, 40)
                else:
                    try:
                        channel.handle_publish(event)
                    except CoreError as err:
                        channel_error(self, channel, err, 60, 40)
            elif type(event) is AckReceived:
                channel = channels.get(event.channel)
                if channel is None or channel.state is not ChannelState.OPEN:
                    frame_on_bad_channel(self, event.channel, 60, 80)
                else:
                    try:
                        channel.handle_ack(event.delivery_tag, event.multiple)
                    except CoreError as err:
                        channel_error(self, channel, err, 60, 80)
            else:
                _EVENTS[type(event)](self, event)
            if self._halted:
                if self._held is not None:
                    self._held.extend(pending)
                break
        if self.confirms_pending:
            for channel in self.confirms_pending:
                channel.flush_confirms()
            self.confirms_pending.clear()

    def handle_timer(self, now: float) -> float:
        """Enforce timeouts and send heartbeats. Returns seconds until the next deadline."""
        if self.closed:
            return IDLE_S
        if self.state is _State.CLOSING:
            if now >= self._close_deadline:
                self._finish("close-ok not received")
                return IDLE_S
            return self._close_deadline - now
        if self.state is not _State.OPEN:
            deadline = self._created + self.settings.handshake_timeout_s
            if now >= deadline:
                log.warning(
                    "closing AMQP connection %s: handshake not finished within %ss",
                    self.peer_name,
                    self.settings.handshake_timeout_s,
                )
                self._finish("handshake timeout")
                return IDLE_S
            return deadline - now
        hb = self.heartbeat_s
        if not hb:
            return IDLE_S
        if self.reading_paused:
            self._last_recv = now  # as in RabbitMQ, an unread client's heartbeats are not due
        silent_until = self._last_recv + 2 * hb
        if now >= silent_until:
            reason = f"missed heartbeats from client, timeout: {hb}s"
            connection_closed(self, reason, level=logging.WARNING)
            self._finish("missed heartbeats")
            return IDLE_S
        if now >= self._next_beat:
            # As RabbitMQ's heartbeat sender: every hb/2, a heartbeat if nothing else went.
            if not self._sent_since_tick and not self.out:
                encode.encode_heartbeat(self.out)
                self.wake()
            self._sent_since_tick = False
            self._next_beat = now + hb / 2
        return min(self._next_beat, silent_until) - now

    def connection_lost(self) -> None:
        """The socket is gone: release everything held in the core."""
        if self.state in (_State.OPEN, _State.CLOSING) and not self.closed:
            connection_closed(self, "client unexpectedly closed TCP connection")
        self._release()
        self.closed = True
        self._set_flags()

    def shutdown(self, reason: str = "shutdown") -> None:
        """The broker is stopping: close with 320 CONNECTION_FORCED."""
        self.force_close(
            f"CONNECTION_FORCED - broker forced connection closure with reason '{reason}'", reason
        )

    def force_close(self, text: str, reason: str = "closed by the broker") -> None:
        """Close with 320 CONNECTION_FORCED and ``text`` (e.g. from the management API)."""
        if self.closed:
            return
        if self.state is _State.OPEN:
            self._send_connection_close(320, text, 0, 0)
        elif self.state is not _State.CLOSING:
            self._finish(reason)

    def set_blocked(self, blocked: bool, reason: str = "low on memory") -> None:
        """Tell the client that publishing is blocked (or unblocked again)."""
        if blocked == self.blocked:
            return
        self.blocked = blocked
        if self.state is _State.OPEN and self.client_capability("connection.blocked"):
            method = (
                spec.Connection.Blocked(reason=reason) if blocked else spec.Connection.Unblocked()
            )
            encode.encode_method(self.out, 0, method)
            self.wake()

    def set_resource_alarms(self, alarms: tuple[str, ...]) -> None:
        """The broker's memory or disk alarms changed (``()``: none is on).

        A connection that has published is blocked at once (``connection.blocked``
        and no more reading); one that has not is blocked when it next publishes,
        so connections that only consume keep reading their acks.  When the last
        alarm clears, blocked connections get ``connection.unblocked`` and are
        read again.
        """
        self._alarms = alarms
        if alarms:
            if not self._publisher_blocked and any(
                ch.session.published for ch in self.channels.values()
            ):
                self._block_publisher()
        elif self._publisher_blocked:
            self._publisher_blocked = False
            self._set_flags()
            self.set_blocked(False)
            self.wake()  # the transport's reader looks at reading_paused again

    def _block_publisher(self) -> None:
        self._publisher_blocked = True
        self._set_flags()
        self.set_blocked(True, " and ".join(f"low on {name}" for name in self._alarms))

    def statistics(self) -> dict[str, Any]:
        return {
            "peer": self.peer_name,
            "blocked": self._publisher_blocked,
            "user": self.user,
            "vhost": self.vhost,
            "state": self.state.value,
            "channels": len(self.channels),
            "frame_max": self.frame_max,
            "heartbeat": self.heartbeat_s,
            "pending_output_bytes": len(self.out),
        }

    # -- handshake -----------------------------------------------------------------------

    def _header(self, _event: ProtocolHeaderReceived) -> None:
        self.state = _State.START
        self.send(0, start_method(self.settings, self.peer_certificate))

    def _start_ok(self, m: spec.Connection.StartOk) -> None:
        self.client_properties = dict(m.client_properties or {})
        response = m.response
        raw = response.encode("latin-1") if isinstance(response, str) else bytes(response)
        mechanism = self.auth_mechanism = str(m.mechanism)
        try:
            request = login_request(
                self.settings, self.peer[0], mechanism, raw, peer_certificate=self.peer_certificate
            )
        except Refused as refused:
            self._refuse_login(refused.log, refused.text)
            return
        self._request = request
        self.state = _State.LOGGING_IN
        self._authenticate(request, self._logged_in)

    def _logged_in(self, result: LoginResult) -> None:
        """The backends' answer to start-ok: connection.tune, or a 403 close."""
        if result.user is None:
            self._refuse_login(result.reason, refused_text(self.auth_mechanism))
            return
        self.login = result
        self.user = result.user.name
        self.state = _State.TUNE
        self.send(0, tune_method(self.settings))

    def _refuse_login(self, why: str, text: str) -> None:
        login_refused(self.peer_name, why, self.auth_mechanism, "")
        # RabbitMQ sends connection.close 403 to clients that can take it, then closes.
        encode.encode_method(
            self.out, 0, spec.Connection.Close(reply_code=403, reply_text=text[:255])
        )
        self._finish("login refused")

    def _tune_ok(self, m: spec.Connection.TuneOk) -> None:
        try:
            tuned = tune(self.settings, m)
        except Refused as refused:
            self.connection_error(refused.code, refused.text, 10, 31)
            return
        self.frame_max = self.parser.frame_max = tuned.frame_max
        self.channel_max = tuned.channel_max
        self.heartbeat_s = tuned.heartbeat_s
        self.state = _State.OPEN_WAIT

    def _open(self, m: spec.Connection.Open) -> None:
        vhost = m.virtual_host or "/"
        name = str(self.client_properties.get("connection_name", ""))
        info = ClientInfo(protocol="amqp091", peer=self.peer_name, name=name, user=self.user)
        try:
            self.core = open_vhost(self.broker, self.login, vhost, info)
        except Refused as refused:
            self.connection_error(refused.code, refused.text, 10, 40)
            return
        self.vhost = vhost
        self.state = _State.OPEN
        self.send(0, spec.Connection.OpenOk())
        self._next_beat = self._clock() + self.heartbeat_s / 2
        self.retime()  # heartbeats are due long before the handshake deadline was
        product = client_product(self.client_properties)
        connection_opened(
            self,
            protocol="AMQP",
            client_address=self.peer_name,
            user=self.user,
            vhost=vhost,
            product=product,
            connection_name=name,
        )

    def _update_secret(self, m: spec.Connection.UpdateSecret) -> None:
        assert self._request is not None  # open, so start-ok logged in
        reason = str(m.reason)
        try:
            request = secret_request(self._request, m.new_secret or "")
        except Refused as refused:
            self._secret_refused(refused.log)
            return
        self._authenticate(request, lambda result: self._secret_checked(result, reason))

    def _secret_checked(self, result: LoginResult, reason: str) -> None:
        """The backends' answer to update-secret: update-secret-ok, or a 530 close."""
        if result.user is None:
            self._secret_refused(result.reason)
            return
        # Re-authenticated, as RabbitMQ does: the login as the backends see it now, and
        # the user's grants re-read rather than trusted from before.
        self.login = result
        if self.core is not None and self.core.access is not None:
            self.core.access.refresh()
        self.send(0, spec.Connection.UpdateSecretOk())
        log.info(
            "AMQP connection %s: user '%s' updated secret, reason: %s",
            self.peer_name,
            self.user,
            reason,
        )

    def _secret_refused(self, why: str) -> None:
        log.warning("secret update was refused for user '%s': %s", self.user, why)
        self.connection_error(530, SECRET_REFUSED_TEXT, 10, 70)

    def _authenticate(self, request: LoginRequest, then: Callable[[LoginResult], None]) -> None:
        """Ask the login chain; hold what follows until ``then`` has the answer."""
        self._checking = check = object()
        self._held = []
        self._set_flags()

        def done(result: LoginResult) -> None:
            if self._checking is not check:
                return  # the connection closed or began closing meanwhile
            held = self._held or []
            self._checking = self._held = None
            self._set_flags()
            then(result)
            if held and not self._halted:
                self._handle_events(held)
            self.wake()  # the transport's reader looks at reading_paused again

        authenticator_for(self.settings, self.users).login(request, done)

    # -- methods -------------------------------------------------------------------------

    def _method(self, event: MethodReceived) -> None:
        method: Any = event.method
        if event.channel == 0 or self.state is _State.CLOSING:
            handler = _CONNECTION_METHODS[self.state].get(type(method))
            if handler is not None:
                handler(self, method)
            elif self.state is _State.OPEN:
                text = "CHANNEL_ERROR - unexpected method in connection state running"
                self.connection_error(504, text, *method_ids(method))
            elif self.state is not _State.CLOSING:
                # A handshake the client got wrong is not answered; RabbitMQ just closes.
                text = f"unexpected method in connection state {_STATE_NAMES[self.state]}"
                log.warning("closing AMQP connection %s: %s", self.peer_name, text)
                self._finish("handshake error")
            # closing: everything but close and close-ok is discarded
        elif self.state is _State.OPEN:
            channel_method(self, event.channel, method)
        else:
            text = "CHANNEL_ERROR - expected 'connection.open'"
            self.connection_error(504, text, *method_ids(method))

    def _close(self, _m: spec.Connection.Close) -> None:
        if self.state is not _State.CLOSING:
            connection_closed(self, "closed by client")
            self._release()
        encode.encode_method(self.out, 0, spec.Connection.CloseOk())
        self._finish("closed by client")

    def _close_ok(self, _m: spec.Connection.CloseOk) -> None:
        self._finish("closed")

    # -- errors and the end --------------------------------------------------------------

    def send(self, channel_id: int, method: Any) -> None:
        """Queue one method for the client."""
        encode.encode_method(self.out, channel_id, method)
        self.wake()

    def _frame_error(self, err: FrameError) -> None:
        if self.state is not _State.CLOSING:
            log.warning("closing AMQP connection %s: %s", self.peer_name, err.text)
            self.connection_error(err.reply_code, err.text, err.class_id, err.method_id)

    def connection_error(self, code: int, text: str, class_id: int, method_id: int) -> None:
        """Close the connection for a protocol or core error, as far as the state allows."""
        if self.state is _State.CLOSING:
            return  # one connection.close is enough; the rest waits for close-ok
        if self.state in (_State.HEADER, _State.START, _State.LOGGING_IN):
            # Before tune the client cannot be told why; RabbitMQ just closes.
            self._finish(text)
            return
        self._send_connection_close(code, text, class_id, method_id)

    def _send_connection_close(self, code: int, text: str, class_id: int, method_id: int) -> None:
        connection_closed(self, text, level=logging.INFO if code == 320 else logging.WARNING)
        self._release()
        method = spec.Connection.Close(
            reply_code=code, reply_text=text[:255], class_id=class_id, method_id=method_id
        )
        self.state = _State.CLOSING
        self._set_flags()
        self._close_deadline = self._clock() + CLOSE_TIMEOUT_S
        self.send(0, method)
        self.retime()  # the close deadline may come before the next heartbeat

    def _release(self) -> None:
        for channel in self.channels.values():
            if channel.state is ChannelState.OPEN:
                channel.close_session()
                channel.state = ChannelState.CLOSING
        self.confirms_pending.clear()
        if self.core is not None:
            core, self.core = self.core, None
            core.close()

    def _finish(self, reason: str) -> None:
        connection_closed(self, reason)
        self._release()
        self.closed = True
        self._set_flags()
        self.wake()

    def _set_flags(self) -> None:
        """Derive what the hot path and the transport look at from the state."""
        ending = self.closed or self.state is _State.CLOSING
        if ending:
            self._checking = self._held = None  # a login answer arriving now is ignored
        holding = self._held is not None
        # Closing goes on through the batch: only close and close-ok still count there.
        self._halted = self.closed or holding
        # A closing connection must read the client's close-ok, blocked or not.
        self.reading_paused = not ending and (self._publisher_blocked or holding)


def _ignore(_conn: AMQPConnection, _event: Any) -> None:
    return None


#: The events other than publish and ack, by their type.
_EVENTS: dict[type[Any], Callable[[AMQPConnection, Any], None]] = {
    MethodReceived: AMQPConnection._method,
    ProtocolHeaderReceived: AMQPConnection._header,
    HeartbeatReceived: _ignore,
    FrameError: AMQPConnection._frame_error,
}

_Handler = Callable[[AMQPConnection, Any], None]
_ON_CLOSE: dict[type[Any], _Handler] = {spec.Connection.Close: AMQPConnection._close}

#: state -> channel-0 method -> handler; a method missing from its state's row is an error.
_CONNECTION_METHODS: dict[_State, dict[type[Any], _Handler]] = {
    _State.HEADER: {},
    _State.START: {spec.Connection.StartOk: AMQPConnection._start_ok, **_ON_CLOSE},
    _State.LOGGING_IN: {},  # what follows start-ok waits in _held until the login is answered
    _State.TUNE: {spec.Connection.TuneOk: AMQPConnection._tune_ok, **_ON_CLOSE},
    _State.OPEN_WAIT: {spec.Connection.Open: AMQPConnection._open, **_ON_CLOSE},
    _State.OPEN: {
        spec.Connection.UpdateSecret: AMQPConnection._update_secret,
        spec.Connection.CloseOk: AMQPConnection._close_ok,
        **_ON_CLOSE,
    },
    _State.CLOSING: {spec.Connection.CloseOk: AMQPConnection._close_ok, **_ON_CLOSE},
}
