"""The server side of one MQTT 3.1, 3.1.1 or 5.0 connection, without I/O.

Theory of operation
-------------------
Bytes go in through :meth:`MQTTConnection.data_received`, are parsed into
packet records and handled one by one by :meth:`MQTTConnection.handle_packet`;
everything sent goes through :meth:`MQTTConnection.send` (or the PUBLISH hot
path) into :attr:`out`, which the transport flushes once per loop turn.  The
connection has three states::

    AWAIT_CONNECT --CONNECT accepted--> CONNECTED --DISCONNECT / error / drop--> CLOSED
    AWAIT_CONNECT --anything else, refusal, timeout--> CLOSED

Once connected it drives an :class:`~rapidmq.protocols.mqtt.session.MQTTSession`
(kept in :class:`~rapidmq.protocols.mqtt.state.MQTTState` so it can outlive
this connection): publishes are routed through the session's core session,
acknowledgements settle its deliveries, subscriptions become bindings.
Packets a client must not send are protocol errors.  Leaving CONNECTED in any
way but a DISCONNECT with reason 0 publishes the will (at once, or after its
Will Delay Interval when the session outlives the connection).
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rapidmq.auth.backends import Authenticator, LoginRequest, LoginResult
from rapidmq.auth.users import UserStore
from rapidmq.core.api import ClientInfo
from rapidmq.core.broker import Broker
from rapidmq.core.errors import CoreError
from rapidmq.logs import connection_closed, connection_opened
from rapidmq.protocols.mqtt.codec import (
    MQTTParser,
    encode_ack,
    encode_into,
    encode_properties,
    encode_publish,
    encode_publish_v5,
)
from rapidmq.protocols.mqtt.errors import MQTTProtocolError, UnsupportedProtocolVersion
from rapidmq.protocols.mqtt.login import (
    Login,
    Refusal,
    assign_client_id,
    check_login,
    check_will,
    login_request,
)
from rapidmq.protocols.mqtt.mapping import TOPIC_EXCHANGE
from rapidmq.protocols.mqtt.packets import (
    MQTT_3_1_1,
    MQTT_5,
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
    ReasonCode,
    Subscribe,
    Unsubscribe,
)
from rapidmq.protocols.mqtt.publishing import PublishHandler
from rapidmq.protocols.mqtt.session import MQTTSession, Outgoing, with_alias
from rapidmq.protocols.mqtt.state import MQTTState
from rapidmq.protocols.mqtt.subscribing import handle_subscribe, handle_unsubscribe
from rapidmq.protocols.mqtt.topics import topic_to_routing_key
from rapidmq.protocols.output import OUTPUT_HIGH_WATER, OutputBuffer

__all__ = ["MQTTConnection", "MQTTSettings"]

#: Packets a client may pipeline behind CONNECT while its login is being decided.
MAX_HELD_PACKETS = 1000

log = logging.getLogger("rapidmq.connection")

DEFAULT_MAX_PACKET_SIZE = 268435455
NEVER_EXPIRES = 0xFFFFFFFF


@dataclass(slots=True)
class MQTTSettings:
    """What the MQTT front end needs to know from the broker's configuration."""

    default_vhost: str = "/"  # used when the user name has no "vhost:" prefix
    loopback_users: tuple[str, ...] = ("guest",)
    allow_anonymous: bool = True  # a CONNECT without user name logs in as anonymous_user
    anonymous_user: str = "guest"
    anonymous_pass: str = "guest"
    #: A user name without a password logs in as anonymous_user (mqtt_anonymous_usernames).
    anonymous_usernames: bool = False
    max_packet_size: int = 268435455
    receive_maximum: int = 65535  # QoS > 0 publishes a client may have in flight to us
    topic_alias_maximum: int = 65535
    max_keep_alive_s: int = 65535  # Server Keep Alive is sent when the client asks for more
    connect_timeout_s: float = 10.0
    #: The login chain; None = the connection's user store alone (bare connection objects).
    authenticator: Authenticator | None = None


class _State(enum.Enum):
    AWAIT_CONNECT = "awaiting CONNECT"
    LOGGING_IN = "logging in"  # CONNECT received; the login backends have not answered yet
    CONNECTED = "connected"
    CLOSED = "closed"


class MQTTConnection(OutputBuffer):
    """One client connection: CONNECT, keep-alive, packets, will, close."""

    def __init__(
        self,
        broker: Broker,
        users: UserStore,
        state: MQTTState,
        settings: MQTTSettings,
        peer: tuple[str, int],
        wake: Callable[[], None],
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.broker = broker
        self.users = users
        self.mqtt = state
        self.settings = settings
        self._clock = clock
        self._init_output(peer, wake)
        self.closed = False
        self.state = _State.AWAIT_CONNECT
        self.parser = MQTTParser(max_packet_size=settings.max_packet_size)
        self.level = MQTT_3_1_1
        self.client_id = ""
        self.user = ""
        #: The user name a CONNECT sent without a password, when it logged in as the
        #: default user (mqtt_anonymous_usernames); shown in the log and connection list.
        self.sent_username: str | None = None
        self.vhost = ""
        self.keep_alive_s = 0
        self.session: MQTTSession = None  # type: ignore[assignment]  # set on CONNECT
        self.will: Any = None
        self.problem_information = True
        self.client_max_packet = DEFAULT_MAX_PACKET_SIZE
        self.client_alias_max = 0
        self._out_aliases: dict[str, int] = {}
        self.publishing = PublishHandler(self)
        self._alarms: tuple[str, ...] = ()
        self.reading_paused = False  # the transport stops reading while this is true
        now = clock()
        self._created = now
        self._last_recv = now
        self.received = 0

    # -- transport face ----------------------------------------------------------------

    def data_to_send(self) -> bytes:
        """Everything buffered for the socket, emptying the buffer."""
        session = self.session
        if session is not None:
            if self.state is _State.CONNECTED:
                session.flush()
            if session.record_due:
                # Before the acknowledgements that rely on it leave (metadata writes sync).
                self.mqtt.record(session)
        return self._take_output()

    def output_drained(self) -> None:
        """The transport flushed the buffer: resume deliveries paused by back-pressure."""
        if self.output_paused and len(self.out) < OUTPUT_HIGH_WATER and self.session is not None:
            self.output_paused = False
            if self.state is _State.CONNECTED:
                self.session.core_session.resume()
                self.session.flush()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._last_recv = self._clock()
        try:
            packets = self.parser.receive_data(data)
        except MQTTProtocolError as err:
            for packet in err.packets:
                self.handle_packet(packet)
                if self.closed:
                    return
            self._protocol_error(err)
            return
        for packet in packets:
            self.handle_packet(packet)
            if self.closed:
                return
        if self.session is not None and self.state is _State.CONNECTED:
            self.session.flush()

    def handle_timer(self, now: float) -> float:
        """Enforce the CONNECT timeout and keep-alive; returns seconds until the next call."""
        if self.closed:
            return 3600.0
        if self.state is _State.AWAIT_CONNECT or self.state is _State.LOGGING_IN:
            deadline = self._created + self.settings.connect_timeout_s
            if now >= deadline:
                log.warning("closing MQTT connection %s: no CONNECT in time", self.peer_name)
                self._close(None, publish_will=False)
                return 3600.0
            return deadline - now  # CONNECT in calls retime, so keep-alive starts at once
        keep_alive = self.keep_alive_s
        if not keep_alive:
            return 3600.0
        if self.reading_paused:
            # A resource alarm stopped reading: the client's PINGREQs wait unread, so
            # silence is ours, not its. The count restarts when reading resumes.
            return min(keep_alive, 1.0)
        deadline = self._last_recv + 1.5 * keep_alive
        if now >= deadline:
            connection_closed(self, "keep-alive timeout", level=logging.WARNING)
            self._close(ReasonCode.KEEP_ALIVE_TIMEOUT, publish_will=True)
            return 3600.0
        return deadline - now

    def connection_lost(self) -> None:
        """The socket is gone: an abnormal end unless the connection already closed."""
        if not self.closed:
            connection_closed(self, "client unexpectedly closed TCP connection")
            self._close(None, publish_will=True)

    def shutdown(self) -> None:
        """The broker is stopping: DISCONNECT 0x8B (MQTT 5) and close; no will."""
        if not self.closed:
            connection_closed(self, "broker shutting down")
            self._close(ReasonCode.SERVER_SHUTTING_DOWN, publish_will=False)

    def disconnect_by_admin(self, reason: str) -> None:
        """An operator closed this connection: DISCONNECT 0x98 (MQTT 5), will published."""
        if not self.closed:
            connection_closed(self, reason)
            self._close(ReasonCode.ADMINISTRATIVE_ACTION, publish_will=True)

    def take_over(self) -> None:
        """Another connection took this client id: close, publishing the will."""
        if not self.closed:
            connection_closed(self, "client id taken over by another connection")
            self._close(ReasonCode.SESSION_TAKEN_OVER, publish_will=True)

    def set_resource_alarms(self, alarms: tuple[str, ...]) -> None:
        """Memory or disk alarms changed (``()``: none is on).

        As for AMQP, a connection that has published stops being read at once and
        one that has not when it next publishes, so subscribers keep sending the
        PUBACKs that free memory.  MQTT cannot tell the client why.
        """
        self._alarms = alarms
        if alarms:
            if self.publishing.published and not self.reading_paused:
                self._pause_reading(True)
        elif self.reading_paused:
            self._pause_reading(False)

    def _pause_reading(self, paused: bool) -> None:
        self.reading_paused = paused
        self._last_recv = self._clock()  # keep-alive counts again from here
        self.wake()  # the transport's reader looks at reading_paused again

    def statistics(self) -> dict[str, Any]:
        return {
            "peer": self.peer_name,
            "protocol_level": self.level,
            "state": self.state.value,
            "client_id": self.client_id,
            "user": self.user,
            "vhost": self.vhost,
            "keep_alive_s": self.keep_alive_s,
            "packets_received": self.received,
            "inflight_out": 0 if self.session is None else len(self.session.inflight),
            "topic_aliases_out": len(self._out_aliases),
            "topic_aliases_in": len(self.publishing.aliases),
            "pending_output_bytes": len(self.out),
        }

    # -- packets -----------------------------------------------------------------------

    def send(self, packet: Packet) -> None:
        """Queue one packet for the client."""
        encode_into(self.out, packet, self.level)
        self.wake()

    def handle_packet(self, packet: Packet) -> None:
        """Act on one packet from the client."""
        self.received += 1
        if self.state is not _State.CONNECTED:
            if self.state is _State.LOGGING_IN:
                # Pipelined after CONNECT: handled once the login is decided, up to a
                # bound, so a client cannot make the broker buffer while LDAP answers.
                if len(self._held) >= MAX_HELD_PACKETS:
                    self._close(None, publish_will=False)
                    return
                self._held.append(packet)
                return
            if self.state is _State.AWAIT_CONNECT and isinstance(packet, Connect):
                self._connect(packet)
            else:
                self._close(None, publish_will=False)
            return
        session = self.session
        if isinstance(packet, Publish):
            self.publishing.publish(packet)
            if self._alarms and not self.reading_paused:
                self._pause_reading(True)  # a publisher during an alarm: read no more
        elif isinstance(packet, PubAck):
            session.puback(packet.packet_id)
        elif isinstance(packet, PubRec):
            packet_id = packet.packet_id
            if session.pubrec(packet_id, packet.reason_code):
                self.send_pubrel(packet_id)
            elif packet.reason_code < 0x80 and packet_id not in session.inflight:
                self._send_ack(PacketType.PUBREL, packet_id, ReasonCode.PACKET_IDENTIFIER_NOT_FOUND)
        elif isinstance(packet, PubRel):
            self.publishing.pubrel(packet.packet_id)
        elif isinstance(packet, PubComp):
            session.pubcomp(packet.packet_id)
        elif isinstance(packet, Subscribe):
            handle_subscribe(self, packet)
        elif isinstance(packet, Unsubscribe):
            handle_unsubscribe(self, packet)
        elif isinstance(packet, PingReq):
            self.send(PingResp())
        elif isinstance(packet, Disconnect):
            self._disconnect(packet)
        elif isinstance(packet, Auth):
            self.protocol_violation("AUTH without an authentication method")
        else:
            self.protocol_violation(f"{type(packet).__name__} may not be sent by a client")

    # -- CONNECT -----------------------------------------------------------------------

    def _connect(self, c: Connect) -> None:
        self.level = level = c.protocol_level
        s = self.settings
        props = c.properties or MQTTProperties()
        if level == MQTT_5 and props.authentication_method is not None:
            self._refuse(Refusal(ReasonCode.BAD_AUTHENTICATION_METHOD, 5, "authentication method"))
            return
        assigned = assign_client_id(c)
        if isinstance(assigned, Refusal):
            self._refuse(assigned)
            return
        client_id, generated = assigned
        asked = login_request(
            c,
            self.peer[0],
            default_vhost=s.default_vhost,
            allow_anonymous=s.allow_anonymous,
            anonymous_user=s.anonymous_user,
            anonymous_pass=s.anonymous_pass,
            anonymous_usernames=s.anonymous_usernames,
            peer_certificate=getattr(self, "peer_certificate", None),
        )
        if isinstance(asked, Refusal):
            self._refuse(asked)
            return
        request, vhost = asked
        authenticator = s.authenticator
        if authenticator is None:
            authenticator = Authenticator.internal(self.users, loopback_users=s.loopback_users)
        self.state = _State.LOGGING_IN
        self._held: list[Packet] = []

        def done(result: LoginResult) -> None:
            self._login_done(c, client_id, generated, request, vhost, result)

        # Decided at once for the internal store; later (on the event loop) for LDAP.
        authenticator.login(request, done)

    def _login_done(
        self,
        c: Connect,
        client_id: str,
        generated: bool,
        request: LoginRequest,
        vhost: str,
        result: LoginResult,
    ) -> None:
        if self.closed or self.state is not _State.LOGGING_IN:
            return  # the client left, or CONNECT timed out, meanwhile
        held, self._held = self._held, []
        login = check_login(result, request, vhost, self.broker)
        if isinstance(login, Refusal):
            self._refuse(login)
            return
        self._connected(c, client_id, generated, login)
        for packet in held:
            if self.closed:
                return
            self.handle_packet(packet)
        if held and not self.closed and self.session is not None:
            self.session.flush()

    def _connected(self, c: Connect, client_id: str, generated: bool, login: Login) -> None:
        level = c.protocol_level
        s = self.settings
        props = c.properties or MQTTProperties()
        refusal = check_will(c)
        if refusal is not None:
            self._refuse(refusal)
            return
        keep_alive = c.keep_alive
        server_keep_alive = None
        if keep_alive > s.max_keep_alive_s:
            if level < MQTT_5:  # Mosquitto refuses what it cannot renegotiate
                self._refuse(Refusal(0x85, 2, "keep alive above the server's maximum"))
                return
            keep_alive = server_keep_alive = s.max_keep_alive_s
        self.client_id, self.user, self.vhost = client_id, login.user, login.vhost
        # Only a name sent without a password can have logged in as someone else.
        self.sent_username = c.username if c.password is None else None
        self.keep_alive_s = keep_alive
        self.will = c.will
        if level == MQTT_5:
            self.problem_information = props.request_problem_information != 0
            if props.maximum_packet_size:
                self.client_max_packet = props.maximum_packet_size
            self.client_alias_max = props.topic_alias_maximum or 0
            expiry = props.session_expiry_interval or 0
            expiry_s: int | None = None if expiry == NEVER_EXPIRES else expiry
        else:
            expiry_s = 0 if c.clean_start else None
        key = (login.vhost, client_id)
        mqtt = self.mqtt
        info = ClientInfo(protocol="mqtt", peer=self.peer_name, name=client_id, user=login.user)
        try:
            # Checked before a take-over: a login refused the vhost leaves its holder be.
            access = self.broker.access_for(login.vhost, info)
        except CoreError as err:
            self._refuse(Refusal(ReasonCode.NOT_AUTHORIZED, 5, err.text))
            return
        previous = mqtt.connections.get(key)
        if previous is not None:
            log.info(
                "MQTT client '%s' taken over by %s",
                client_id,
                self.peer_name,
                extra={"event": "connection.takeover", "client_id": client_id},
            )
            previous.take_over()
        session = mqtt.resume_session(key)
        if session is not None and c.clean_start:
            mqtt.end_session(session)
            session = None
        present = session is not None
        if session is None:
            try:
                session = mqtt.open_session(login.vhost, client_id, info, expiry_s)
            except CoreError as err:
                self._refuse(Refusal(ReasonCode.NOT_AUTHORIZED, 5, err.text))
                return
        else:
            # A resumed session (possibly restored at start-up, with no user) now acts
            # for this login's user, and counts toward the connection limits again.
            try:
                self.broker.resume(session.core, info)
            except CoreError as err:
                self._refuse(Refusal(ReasonCode.NOT_AUTHORIZED, 5, err.text))
                return
            session.core.grant(access)
        if c.will is not None:
            # As RabbitMQ: the will's topic needs write permission at CONNECT, so a will
            # that could never be published is refused up front.
            try:
                session.core_session.authorize_publish(
                    TOPIC_EXCHANGE, topic_to_routing_key(c.will.topic)
                )
            except CoreError as err:
                if not present:
                    mqtt.end_session(session)
                self._refuse(Refusal(ReasonCode.NOT_AUTHORIZED, 5, err.text))
                return
        session.expiry_s = expiry_s
        self.session = session
        mqtt.connections[key] = self
        self.state = _State.CONNECTED
        self.retime()  # the timer's deadline is keep-alive's now, not the CONNECT timeout
        connack_props = None
        if level == MQTT_5:
            connack_props = MQTTProperties(
                assigned_client_identifier=client_id if generated else None,
                server_keep_alive=server_keep_alive,
                receive_maximum=s.receive_maximum if s.receive_maximum < 65535 else None,
                topic_alias_maximum=s.topic_alias_maximum or None,
                maximum_packet_size=(
                    s.max_packet_size if s.max_packet_size < DEFAULT_MAX_PACKET_SIZE else None
                ),
            )
        self.send(ConnAck(present, 0, connack_props))
        connection_opened(
            self,
            protocol="MQTT",
            client_address=self.peer_name,
            user=login.user,
            vhost=login.vhost,
            product=client_id,
            connection_name=client_id,
            client_id=client_id,
            protocol_level=level,
            **({} if self.sent_username is None else {"sent_username": self.sent_username}),
        )
        session.attach(self, level, props.receive_maximum or 65535 if level == MQTT_5 else 65535)
        mqtt.record(session)  # connected: no expiry deadline while it stays

    def _refuse(self, refusal: Refusal) -> None:
        log.warning(
            "refusing MQTT connection %s: %s",
            self.peer_name,
            refusal.text,
            extra={
                "event": "connection.refused",
                "protocol": "mqtt",
                "client_address": self.peer_name,
            },
        )
        props = None
        if self.level == MQTT_5:
            props = MQTTProperties(reason_string=refusal.text)
        self.send(ConnAck(False, refusal.code_for(self.level), props))
        self._finish()

    # -- DISCONNECT and errors -----------------------------------------------------------

    def _disconnect(self, d: Disconnect) -> None:
        props = d.properties
        session = self.session
        if props is not None and props.session_expiry_interval is not None:
            if session.expiry_s == 0 and props.session_expiry_interval != 0:
                self.protocol_violation("session expiry set on DISCONNECT after 0 on CONNECT")
                return
            expiry = props.session_expiry_interval
            session.expiry_s = None if expiry == NEVER_EXPIRES else expiry
        with_will = d.reason_code == ReasonCode.DISCONNECT_WITH_WILL_MESSAGE
        connection_closed(self, "client sent DISCONNECT")
        self._close(None, publish_will=with_will)

    def protocol_violation(self, text: str, code: int = ReasonCode.PROTOCOL_ERROR) -> None:
        """Close this connection for breaking MQTT (DISCONNECT with ``code`` in MQTT 5)."""
        if not connection_closed(self, text, level=logging.WARNING):
            log.warning("closing MQTT connection %s: %s", self.peer_name, text)
        self._close(code, publish_will=True, text=text)

    def _protocol_error(self, err: MQTTProtocolError) -> None:
        if self.closed:
            return
        if self.state is _State.AWAIT_CONNECT:
            log.warning("closing MQTT connection %s: %s", self.peer_name, err.text)
            if isinstance(err, UnsupportedProtocolVersion):
                if err.connect_level is not None:
                    self.level = MQTT_3_1_1
                    self.send(ConnAck(False, 1))
            elif self.parser.protocol_level == MQTT_5:
                self.level = MQTT_5
                self.send(ConnAck(False, err.reason_code))
            self._finish()
            return
        self.protocol_violation(err.text, err.reason_code)

    def _close(self, reason_code: int | None, *, publish_will: bool, text: str = "") -> None:
        if self.closed:
            return
        if self.state is not _State.CONNECTED:
            self._finish()
            return
        if reason_code is not None and self.level == MQTT_5:
            props = None
            if text and self.problem_information:
                props = MQTTProperties(reason_string=text[:200])
            self.send(Disconnect(reason_code, props))
        self.state = _State.CLOSED
        session = self.session
        mqtt = self.mqtt
        if mqtt.connections.get(session.key) is self:
            del mqtt.connections[session.key]
        now = self._clock()
        will, self.will = self.will, None
        if will is not None and publish_will:
            props = will.properties
            delay = 0 if props is None else props.will_delay_interval or 0
            expiry = session.expiry_s
            if delay and expiry != 0:
                if expiry is not None:
                    delay = min(delay, expiry)
                mqtt.session_detached(session, now)
                mqtt.delay_will(session, will, delay, now)
            else:
                mqtt.session_detached(session, now)
                mqtt.publish_will(session.vhost, session.origin, will)
        else:
            mqtt.session_detached(session, now)
        self._finish()

    def _finish(self) -> None:
        connection_closed(self, "closed")
        self.state = _State.CLOSED
        self.closed = True
        self.wake()

    # -- sending -----------------------------------------------------------------------

    def send_publish(self, out: Outgoing, *, dup: bool) -> bool:
        """The PUBLISH hot path (the session's outlet); False if it is too large to send."""
        buf = self.out
        start = len(buf)
        topic = out.topic
        if self.level == MQTT_5:
            props = out.properties
            alias = 0
            new_alias = False
            if self.client_alias_max:
                alias = self._out_aliases.get(topic, 0)
                if alias:
                    props = with_alias(props, alias)
                    topic = ""
                elif len(self._out_aliases) < self.client_alias_max:
                    alias = len(self._out_aliases) + 1
                    new_alias = True
                    props = with_alias(props, alias)
            block = b"" if props is None else encode_properties(props, PacketType.PUBLISH)
            encode_publish_v5(
                buf, topic.encode(), out.payload, out.qos, out.retain, dup, out.packet_id, block
            )
            if len(buf) - start > self.client_max_packet:
                del buf[start:]
                return False
            if new_alias:
                self._out_aliases[topic] = alias
        else:
            encode_publish(
                buf, topic.encode(), out.payload, out.qos, out.retain, dup, out.packet_id
            )
        self.wake()
        return True

    def send_pubrel(self, packet_id: int) -> None:
        self._send_ack(PacketType.PUBREL, packet_id, 0)

    def send_ack(self, packet_type: int, packet_id: int, reason_code: int) -> None:
        """PUBACK, PUBREC, PUBREL or PUBCOMP (the reason code only in MQTT 5)."""
        self._send_ack(packet_type, packet_id, reason_code)

    def _send_ack(self, packet_type: int, packet_id: int, reason_code: int) -> None:
        encode_ack(self.out, packet_type, packet_id, reason_code if self.level == MQTT_5 else 0)
        self.wake()
