"""The server side of one AMQP 0-9-1 connection, without I/O.

Theory of operation
-------------------
Bytes go in through :meth:`AMQPConnection.data_received`, frames to send pile up
in :attr:`AMQPConnection.out` (one ``bytearray`` per connection, flushed by the
transport once per loop turn), and time comes in through
:meth:`AMQPConnection.handle_timer`.  The transport learns that there is output
through the ``wake`` callback and that the socket must be closed through
:attr:`AMQPConnection.closed`.

The connection walks the handshake with a table of states::

    HEADER --protocol header--> START --start-ok--> TUNE --tune-ok--> OPEN_WAIT
    OPEN_WAIT --connection.open--> OPEN --close / error--> CLOSING --close-ok--> closed

A method that the table does not expect in a state is a protocol error.  Once
open, channel methods go to :class:`~rapidmq.protocols.amqp091.channel.Channel`.
Core errors are turned into ``channel.close`` or ``connection.close`` by their
scope with the one table :data:`REPLY_CODES`.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any

from pamqp import commands as spec

from rapidmq.auth.backends import Authenticator, LoginResult
from rapidmq.auth.users import UserStore
from rapidmq.core.api import ClientInfo
from rapidmq.core.broker import Broker, CoreConnection
from rapidmq.core.errors import (
    AccessRefused,
    CommandInvalid,
    CoreError,
    NotAllowed,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
    ResourceLimitExceeded,
    ResourceLocked,
    StorageFailed,
)
from rapidmq.logs import client_product, connection_closed, connection_opened
from rapidmq.protocols.amqp091 import encode
from rapidmq.protocols.amqp091.channel import Channel, ChannelState
from rapidmq.protocols.amqp091.constants import PROTOCOL_HEADER
from rapidmq.protocols.amqp091.errors import FrameError, ProtocolHeaderMismatch
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
    AMQPSettings,
    LoginRefused,
    check_tune,
    login_request,
    offered_mechanisms,
    refused_text,
    server_properties,
)
from rapidmq.protocols.output import OUTPUT_HIGH_WATER, OutputBuffer

__all__ = ["REPLY_CODES", "AMQPConnection", "AMQPSettings"]  # AMQPSettings: see handshake.py

log = logging.getLogger("rapidmq.connection")
auth_log = logging.getLogger("rapidmq.auth")
channel_log = logging.getLogger("rapidmq.channel")

#: Core error -> (reply code, reply name), the one translation table of this front end.
REPLY_CODES: dict[type[CoreError], tuple[int, str]] = {
    AccessRefused: (403, "ACCESS_REFUSED"),
    NotFound: (404, "NOT_FOUND"),
    ResourceLocked: (405, "RESOURCE_LOCKED"),
    PreconditionFailed: (406, "PRECONDITION_FAILED"),
    ResourceLimitExceeded: (406, "PRECONDITION_FAILED"),
    NotAllowed: (530, "NOT_ALLOWED"),
    CommandInvalid: (503, "COMMAND_INVALID"),
    NotImplementedFeature: (540, "NOT_IMPLEMENTED"),
    StorageFailed: (541, "INTERNAL_ERROR"),
}

#: How long to wait for close-ok after we send connection.close.
CLOSE_TIMEOUT_S = 3.0


class _State(enum.Enum):
    HEADER = "awaiting protocol header"
    START = "awaiting connection.start-ok"
    LOGGING_IN = "logging in"  # start-ok received; the login backends have not answered yet
    TUNE = "awaiting connection.tune-ok"
    OPEN_WAIT = "awaiting connection.open"
    OPEN = "open"
    CLOSING = "closing"


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
        self.core: CoreConnection = None  # type: ignore[assignment]  # set on connection.open
        self.blocked = False
        self.reading_paused = False  # the transport stops reading while this is true
        self._alarms: tuple[str, ...] = ()
        now = clock()
        self._created = now
        self._last_recv = now
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
        try:
            events = self.parser.receive_data(data)
        except ProtocolHeaderMismatch:
            self.out += PROTOCOL_HEADER
            self._finish("bad protocol header")
            return
        except FrameError as err:
            # Events parsed before the bad frame are handled, then the connection ends.
            log.warning("closing AMQP connection %s: %s", self.peer_name, err.text)
            self._handle_events(err.events)
            if not self.closed and self.state is not _State.CLOSING:
                self._connection_error(err.reply_code, err.text, err.class_id, err.method_id)
            return
        self._handle_events(events)
        # Only during an alarm: a connection is blocked when it publishes.
        if (
            self._alarms
            and not self.reading_paused
            and any(type(event) is PublishReceived for event in events)
        ):
            self._block_publisher()

    def _handle_events(self, events: list[Event]) -> None:
        channels = self.channels
        for event in events:
            kind = type(event)
            if kind is PublishReceived:
                channel = channels.get(event.channel)  # type: ignore[union-attr]
                if channel is None or channel.state is not ChannelState.OPEN:
                    self._frame_on_bad_channel(event.channel, 60, 40)  # type: ignore[union-attr]
                else:
                    try:
                        channel.handle_publish(event)  # type: ignore[arg-type]
                    except CoreError as err:
                        self._core_error(channel, err, 60, 40)
            elif kind is AckReceived:
                channel = channels.get(event.channel)  # type: ignore[union-attr]
                if channel is None or channel.state is not ChannelState.OPEN:
                    self._frame_on_bad_channel(event.channel, 60, 80)  # type: ignore[union-attr]
                else:
                    try:
                        channel.handle_ack(event.delivery_tag, event.multiple)  # type: ignore[union-attr]
                    except CoreError as err:
                        self._core_error(channel, err, 60, 80)
            elif kind is MethodReceived:
                self._method(event.channel, event.method)  # type: ignore[union-attr]
            elif kind is ProtocolHeaderReceived:
                self._send_start()
            elif kind is HeartbeatReceived:
                pass
            if self.closed or self.state is _State.CLOSING:
                break
        if self.confirms_pending:
            for channel in self.confirms_pending:
                channel.flush_confirms()
            self.confirms_pending.clear()

    def handle_timer(self, now: float) -> float:
        """Enforce timeouts and send heartbeats. Returns seconds until the next call."""
        if self.closed:
            return 3600.0
        if self.state is _State.CLOSING:
            if now >= self._close_deadline:
                self._finish("close-ok not received")
            return max(0.05, self._close_deadline - now)
        if self.state is not _State.OPEN:
            deadline = self._created + self.settings.handshake_timeout_s
            if now >= deadline:
                log.warning(
                    "closing AMQP connection %s: handshake not finished within %ss",
                    self.peer_name,
                    self.settings.handshake_timeout_s,
                )
                self._finish("handshake timeout")
                return 3600.0
            # Poll briefly during the handshake so heartbeats start as soon as it ends.
            return min(deadline - now, 0.25)
        hb = self.heartbeat_s
        if not hb:
            return 3600.0
        if self.reading_paused:
            self._last_recv = now  # as in RabbitMQ, a blocked client's heartbeats are not due
        if now - self._last_recv > 2 * hb:
            connection_closed(
                self,
                f"missed heartbeats from client, timeout: {hb}s",
                level=logging.WARNING,
            )
            self._finish("missed heartbeats")
            return 3600.0
        if not self._sent_since_tick and not self.out:
            encode.encode_heartbeat(self.out)
            self.wake()
        self._sent_since_tick = False
        return hb / 2

    def connection_lost(self) -> None:
        """The socket is gone: release everything held in the core."""
        if self.state in (_State.OPEN, _State.CLOSING) and not self.closed:
            connection_closed(self, "client unexpectedly closed TCP connection")
        self._release()
        self.closed = True

    def shutdown(self, reason: str = "shutdown") -> None:
        """The broker is stopping: close with 320 CONNECTION_FORCED."""
        self.force_close(
            f"CONNECTION_FORCED - broker forced connection closure with reason '{reason}'", reason
        )

    def force_close(self, text: str, reason: str = "closed by the broker") -> None:
        """Close with 320 CONNECTION_FORCED and ``text`` (e.g. from the management API)."""
        if self.closed:
            return
        self.reading_paused = False  # a blocked publisher's close-ok must be read
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
            if not self.reading_paused and any(
                ch.session.published for ch in self.channels.values()
            ):
                self._block_publisher()
        elif self.reading_paused:
            self.reading_paused = False
            self.set_blocked(False)
            self.wake()  # the transport's reader looks at reading_paused again

    def _block_publisher(self) -> None:
        self.reading_paused = True
        reason = " and ".join(f"low on {name}" for name in self._alarms)
        self.set_blocked(True, reason)

    def statistics(self) -> dict[str, Any]:
        return {
            "peer": self.peer_name,
            "blocked": self.reading_paused,
            "user": self.user,
            "vhost": self.vhost,
            "state": self.state.value,
            "channels": len(self.channels),
            "frame_max": self.frame_max,
            "heartbeat": self.heartbeat_s,
            "pending_output_bytes": len(self.out),
        }

    # -- handshake -----------------------------------------------------------------------

    def _send_start(self) -> None:
        self.state = _State.START
        method = spec.Connection.Start(
            server_properties=server_properties(self.settings),
            mechanisms=" ".join(
                offered_mechanisms(self.settings, getattr(self, "peer_certificate", None))
            ),
            locales="en_US",
        )
        encode.encode_method(self.out, 0, method)
        self.wake()

    def _start_ok(self, m: spec.Connection.StartOk) -> None:
        self.client_properties = dict(m.client_properties or {})
        response = m.response
        raw = response.encode("latin-1") if isinstance(response, str) else bytes(response)
        mechanism = str(m.mechanism)
        try:
            request = login_request(
                self.settings,
                self.peer[0],
                mechanism,
                raw,
                peer_certificate=getattr(self, "peer_certificate", None),
            )
        except LoginRefused as refused:
            self._login_refused(refused.log, refused.text, mechanism, "")
            return
        authenticator = self.settings.authenticator
        if authenticator is None:
            authenticator = Authenticator.internal(
                self.users, loopback_users=self.settings.loopback_users
            )
        self.auth_mechanism = mechanism
        # The backends may answer later (LDAP runs in a worker thread); the client
        # waits for connection.tune meanwhile, so nothing else can arrive.
        self.state = _State.LOGGING_IN
        authenticator.login(request, self._login_done)

    def _login_refused(self, why: str, text: str, mechanism: str, user: str) -> None:
        auth_log.warning(
            "AMQP login refused from %s: %s",
            self.peer_name,
            why,
            extra={
                "event": "auth.refused",
                "protocol": "amqp",
                "client_address": self.peer_name,
                "mechanism": mechanism,
                "user": user,
            },
        )
        self._refuse_login(text)

    def _login_done(self, result: LoginResult) -> None:
        """The backends' answer to start-ok: connection.tune, or a 403 close."""
        if self.closed or self.state is not _State.LOGGING_IN:
            return  # the client left, or the handshake timed out, meanwhile
        user = result.user
        if user is None:
            mechanism = self.auth_mechanism
            self._login_refused(result.reason, refused_text(mechanism), mechanism, "")
            return
        self.login = result
        self.user = user.name
        self.state = _State.TUNE
        tune = spec.Connection.Tune(
            channel_max=self.settings.channel_max,
            frame_max=self.settings.frame_max,
            heartbeat=self.settings.heartbeat_s,
        )
        encode.encode_method(self.out, 0, tune)
        self.wake()

    def _refuse_login(self, text: str) -> None:
        # RabbitMQ sends connection.close 403 to clients that can take it, then closes.
        encode.encode_method(
            self.out, 0, spec.Connection.Close(reply_code=403, reply_text=text[:255])
        )
        self._finish("login refused")

    def _tune_ok(self, m: spec.Connection.TuneOk) -> None:
        frame_max = m.frame_max
        problem = check_tune(self.settings, frame_max)
        if problem is not None:
            self._connection_error(530, problem, 10, 31)
            return
        self.frame_max = frame_max
        self.parser.frame_max = frame_max
        channel_max = m.channel_max or self.settings.channel_max
        self.channel_max = min(channel_max, self.settings.channel_max or 65535)
        self.heartbeat_s = m.heartbeat
        self.state = _State.OPEN_WAIT

    def _open(self, m: spec.Connection.Open) -> None:
        vhost = m.virtual_host or "/"
        if self.login is not None and not self.login.may_open(vhost):
            # An LDAP vhost group the user is not in (RabbitMQ's text for a refused vhost).
            text = f"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{self.user}'"
            auth_log.warning(
                "refusing AMQP connection %s (user '%s', vhost '%s'): not in its LDAP group",
                self.peer_name,
                self.user,
                vhost,
                extra={"event": "connection.refused", "protocol": "amqp", "user": self.user},
            )
            self._connection_error(530, text, 10, 40)
            return
        info = ClientInfo(
            protocol="amqp091",
            peer=self.peer_name,
            name=str(self.client_properties.get("connection_name", "")),
            user=self.user,
        )
        try:
            self.core = self.broker.connect(vhost, info)
        except CoreError as err:
            code, name = REPLY_CODES.get(type(err), (530, "NOT_ALLOWED"))
            (auth_log if isinstance(err, AccessRefused) else log).warning(
                "refusing AMQP connection %s (user '%s', vhost '%s'): %s",
                self.peer_name,
                self.user,
                vhost,
                err.text,
                extra={
                    "event": "connection.refused",
                    "protocol": "amqp",
                    "user": self.user,
                    "vhost": vhost,
                    "client_address": self.peer_name,
                },
            )
            self._connection_error(code, f"{name} - {err.text}", 10, 40)
            return
        self.vhost = vhost
        self.state = _State.OPEN
        encode.encode_method(self.out, 0, spec.Connection.OpenOk())
        self.wake()
        connection_opened(
            self,
            protocol="AMQP",
            client_address=self.peer_name,
            user=self.user,
            vhost=vhost,
            product=client_product(self.client_properties),
            connection_name=info.name,
        )

    # -- methods -------------------------------------------------------------------------

    def _method(self, channel_id: int, method: Any) -> None:
        kind = type(method)
        state = self.state
        if state is _State.CLOSING:
            if kind is spec.Connection.CloseOk:
                self._finish("closed")
            elif kind is spec.Connection.Close:
                encode.encode_method(self.out, 0, spec.Connection.CloseOk())
                self._finish("closed")
            return
        if channel_id == 0:
            self._connection_method(method)
            return
        if state is not _State.OPEN:
            self._connection_error(504, "CHANNEL_ERROR - expected 'connection.open'", *_ids(method))
            return
        channel = self.channels.get(channel_id)
        if kind is spec.Channel.Open:
            if channel is not None:
                self._connection_error(504, "CHANNEL_ERROR - second 'channel.open' seen", 20, 10)
            elif len(self.channels) >= self.channel_max:
                # RabbitMQ counts open channels against channel_max (a higher channel
                # number is fine while fewer are open), and says so in this text.
                self._connection_error(
                    530,
                    f"NOT_ALLOWED - number of channels opened ({len(self.channels)}) has "
                    f"reached the negotiated channel_max ({self.channel_max})",
                    20,
                    10,
                )
            elif (limit := self.broker.user_channel_limit(self.user)) is not None:
                self._connection_error(
                    530,
                    f"NOT_ALLOWED - number of channels opened for user '{self.user}' has "
                    f"reached the maximum allowed user limit of ({limit})",
                    20,
                    10,
                )
            else:
                self.channels[channel_id] = Channel(self, channel_id)
                encode.encode_method(self.out, channel_id, spec.Channel.OpenOk())
                self.wake()
            return
        if channel is None:
            self._connection_error(504, "CHANNEL_ERROR - expected 'channel.open'", *_ids(method))
            return
        if channel.state is ChannelState.CLOSING:
            if kind is spec.Channel.CloseOk:
                del self.channels[channel_id]
            elif kind is spec.Channel.Close:
                encode.encode_method(self.out, channel_id, spec.Channel.CloseOk())
                self.wake()
            return  # everything else is discarded until close-ok, as the spec says
        if kind is spec.Channel.Close:
            channel.close_session()
            self.confirms_pending.discard(channel)
            del self.channels[channel_id]
            encode.encode_method(self.out, channel_id, spec.Channel.CloseOk())
            self.wake()
            return
        if kind is spec.Channel.CloseOk:
            return
        try:
            channel.handle_method(method)
        except CoreError as err:
            self._core_error(channel, err, *_ids(method))

    def _connection_method(self, method: Any) -> None:
        kind = type(method)
        state = self.state
        if state is _State.START and kind is spec.Connection.StartOk:
            self._start_ok(method)
        elif state is _State.TUNE and kind is spec.Connection.TuneOk:
            self._tune_ok(method)
        elif state is _State.OPEN_WAIT and kind is spec.Connection.Open:
            self._open(method)
        elif kind is spec.Connection.Close:
            connection_closed(self, "closed by client")
            self._release()
            encode.encode_method(self.out, 0, spec.Connection.CloseOk())
            self._finish("closed by client")
        elif state is _State.OPEN and kind is spec.Connection.CloseOk:
            self._finish("closed")
        elif state is _State.OPEN and kind is spec.Connection.UpdateSecret:
            self._connection_error(540, "NOT_IMPLEMENTED - connection.update_secret", 10, 70)
        else:
            text = f"CHANNEL_ERROR - unexpected method in connection state {self._state_name()}"
            if state is _State.OPEN:
                self._connection_error(504, text, *_ids(method))
            else:
                log.warning("closing AMQP connection %s: %s", self.peer_name, text)
                self._finish("handshake error")

    def _state_name(self) -> str:
        # RabbitMQ's names for the reader states, used in its reply texts.
        return {
            _State.START: "starting",
            _State.LOGGING_IN: "starting",
            _State.TUNE: "tuning",
            _State.OPEN_WAIT: "opening",
            _State.OPEN: "running",
        }.get(self.state, "closing")

    # -- errors --------------------------------------------------------------------------

    def _core_error(self, channel: Channel, err: CoreError, class_id: int, method_id: int) -> None:
        code, name = REPLY_CODES.get(type(err), (541, "INTERNAL_ERROR"))
        text = f"{name} - {err.text}"
        if err.scope == "connection" or code >= 500:
            if isinstance(err, ResourceLimitExceeded):
                code, text = 530, f"NOT_ALLOWED - {err.text}"
            self._connection_error(code, text, class_id, method_id)
            return
        channel_log.warning(
            "channel error on AMQP connection %s (user '%s', vhost '%s'), channel %s: %s",
            self.peer_name,
            self.user,
            self.vhost,
            channel.id,
            text,
            extra={
                "event": "channel.error",
                "protocol": "amqp",
                "user": self.user,
                "vhost": self.vhost,
                "client_address": self.peer_name,
                "channel": channel.id,
                "reply_code": code,
                "class_id": class_id,
                "method_id": method_id,
            },
        )
        channel.flush_confirms()
        self.confirms_pending.discard(channel)
        channel.close_session()
        channel.state = ChannelState.CLOSING
        method = spec.Channel.Close(
            reply_code=code, reply_text=text[:255], class_id=class_id, method_id=method_id
        )
        encode.encode_method(self.out, channel.id, method)
        self.wake()

    def _frame_on_bad_channel(self, channel_id: int, class_id: int, method_id: int) -> None:
        channel = self.channels.get(channel_id)
        if channel is not None:
            return  # a closing channel discards until close-ok
        self._connection_error(504, "CHANNEL_ERROR - expected 'channel.open'", class_id, method_id)

    def _connection_error(self, code: int, text: str, class_id: int, method_id: int) -> None:
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
        encode.encode_method(self.out, 0, method)
        self.state = _State.CLOSING
        self._close_deadline = self._clock() + CLOSE_TIMEOUT_S
        self.wake()

    def _release(self) -> None:
        for channel in self.channels.values():
            if channel.state is ChannelState.OPEN:
                channel.close_session()
                channel.state = ChannelState.CLOSING
        self.confirms_pending.clear()
        if self.core is not None:
            core, self.core = self.core, None  # type: ignore[assignment]
            core.close()

    def _finish(self, reason: str) -> None:
        connection_closed(self, reason)
        self._release()
        self.closed = True
        self.wake()


def _ids(method: Any) -> tuple[int, int]:
    index: int = method.index
    return index >> 16, index & 0xFFFF
