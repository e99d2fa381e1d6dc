"""CONNECT checks that need no connection state: credentials, vhost, client id, will.

Each check returns ``None`` when the CONNECT passes it, or a
:class:`Refusal` with the MQTT 5 reason code and the 3.1/3.1.1 CONNACK code.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from rapidmq.auth.backends import (
    Authenticator,
    LoginRequest,
    LoginResult,
    certificate_common_name,
)
from rapidmq.auth.users import UserStore
from rapidmq.core.broker import Broker
from rapidmq.protocols.mqtt.errors import InvalidTopic
from rapidmq.protocols.mqtt.packets import (
    MQTT_3_1,
    MQTT_5,
    ConnAckCode311,
    Connect,
    ReasonCode,
)
from rapidmq.protocols.mqtt.topics import validate_topic_name

__all__ = [
    "Login",
    "Refusal",
    "assign_client_id",
    "check_login",
    "check_will",
    "log_in",
    "login_request",
]

log = logging.getLogger("rapidmq.auth")


@dataclass(slots=True, frozen=True)
class Refusal:
    """Why a CONNECT is refused: the MQTT 5 reason and the 3.1.1 return code."""

    reason_code: int
    code_311: int
    text: str

    def code_for(self, level: int) -> int:
        return self.reason_code if level == MQTT_5 else self.code_311


@dataclass(slots=True, frozen=True)
class Login:
    """Who logged in, and to which vhost."""

    user: str
    vhost: str


# A refused login is "not authorized" in both versions (CONNACK 5 / 0x87), as RabbitMQ
# answers it, rather than MQTT 5's "bad user name or password".
BAD_LOGIN = Refusal(
    ReasonCode.NOT_AUTHORIZED,
    ConnAckCode311.NOT_AUTHORIZED,
    "bad user name or password",
)


def login_request(
    connect: Connect,
    peer_host: str,
    *,
    default_vhost: str,
    allow_anonymous: bool,
    anonymous_user: str,
    anonymous_pass: str,
    anonymous_usernames: bool = False,
    peer_certificate: Any = None,
) -> tuple[LoginRequest, str] | Refusal:
    """The login a CONNECT asks for and the vhost it names, as RabbitMQ's MQTT plugin reads it.

    ``vhost:user`` names pick the vhost.  Without a user name, a client with a
    verified TLS certificate logs in as the certificate's CN (RabbitMQ's
    ``ssl_cert_login``); otherwise, if allowed, as the anonymous user.  With
    ``anonymous_usernames``, a user name without a password logs in as the
    anonymous user too, in the default vhost: devices that send their id as a
    user name, as Mosquitto's ``allow_anonymous true`` lets them.
    """
    name = connect.username
    if name is None:
        common_name = certificate_common_name(peer_certificate) if peer_certificate else None
        if common_name is not None and connect.password is None:
            return LoginRequest("mqtt", common_name, None, peer_host, "EXTERNAL"), default_vhost
        if not allow_anonymous or connect.password is not None:
            log.warning(
                "MQTT login refused from %s: no user name",
                peer_host,
                extra=_refused_fields("", peer_host),
            )
            return BAD_LOGIN
        name, password = anonymous_user, anonymous_pass
    elif connect.password is None and anonymous_usernames and allow_anonymous:
        # The sent name is only a label (no vhost prefix is read from it): the
        # connection shows it beside the default user it acts as.
        return (
            LoginRequest("mqtt", anonymous_user, anonymous_pass, peer_host, "PLAIN"),
            default_vhost,
        )
    elif connect.password is None:
        log.warning(
            "MQTT login refused for user '%s' from %s: no password",
            name,
            peer_host,
            extra=_refused_fields(name, peer_host),
        )
        return BAD_LOGIN
    else:
        password = connect.password.decode("utf-8", "replace")
    vhost = default_vhost
    if ":" in name:
        vhost, name = name.split(":", 1)
    return LoginRequest("mqtt", name, password, peer_host, "PLAIN"), vhost


def check_login(
    result: LoginResult, request: LoginRequest, vhost: str, broker: Broker
) -> Login | Refusal:
    """The backends' answer to a CONNECT, and whether its vhost may be opened."""
    name, peer_host = request.username, request.client_address
    if result.user is None:
        log.warning(
            "MQTT login refused for user '%s' from %s: %s",
            name,
            peer_host,
            result.reason,
            extra=_refused_fields(name, peer_host, vhost),
        )
        return BAD_LOGIN
    if broker.vhost(vhost) is None:
        return Refusal(
            ReasonCode.NOT_AUTHORIZED, ConnAckCode311.NOT_AUTHORIZED, f"vhost '{vhost}' not found"
        )
    if not result.may_open(vhost):
        log.warning(
            "MQTT login refused for user '%s' from %s: not in the LDAP group of vhost '%s'",
            name,
            peer_host,
            vhost,
            extra=_refused_fields(name, peer_host, vhost),
        )
        return Refusal(
            ReasonCode.NOT_AUTHORIZED,
            ConnAckCode311.NOT_AUTHORIZED,
            f"access to vhost '{vhost}' refused for user '{name}'",
        )
    return Login(result.user.name, vhost)


def log_in(
    connect: Connect,
    users: UserStore,
    broker: Broker,
    peer_host: str,
    *,
    default_vhost: str,
    loopback_users: tuple[str, ...],
    allow_anonymous: bool,
    anonymous_user: str,
    anonymous_pass: str,
) -> Login | Refusal:
    """Authenticate against ``users`` alone, at once (no backends that may block)."""
    asked = login_request(
        connect,
        peer_host,
        default_vhost=default_vhost,
        allow_anonymous=allow_anonymous,
        anonymous_user=anonymous_user,
        anonymous_pass=anonymous_pass,
    )
    if isinstance(asked, Refusal):
        return asked
    request, vhost = asked
    decided: list[LoginResult] = []
    Authenticator.internal(users, loopback_users=loopback_users).login(request, decided.append)
    return check_login(decided[0], request, vhost, broker)


def _refused_fields(user: str, peer_host: str, vhost: str = "") -> dict[str, str]:
    # The structured fields of a refused login: never the password.
    fields = {
        "event": "auth.refused",
        "protocol": "mqtt",
        "user": user,
        "client_address": peer_host,
    }
    if vhost:
        fields["vhost"] = vhost
    return fields


def assign_client_id(connect: Connect) -> tuple[str, bool] | Refusal:
    """The session's client id and whether the server made it up.

    An empty id gets ``auto-<uuid>`` as Mosquitto does, except in 3.1 and with
    a persistent 3.1.1 session, which are refused with "identifier rejected".
    """
    if connect.client_id:
        return connect.client_id, False
    if connect.protocol_level == MQTT_3_1 or (
        connect.protocol_level < MQTT_5 and not connect.clean_start
    ):
        return Refusal(
            ReasonCode.CLIENT_IDENTIFIER_NOT_VALID,
            ConnAckCode311.IDENTIFIER_REJECTED,
            "empty client identifier",
        )
    return f"auto-{str(uuid.uuid4()).upper()}", True


def check_will(connect: Connect) -> Refusal | None:
    """A will must have a valid topic name and, if it says so, a UTF-8 payload."""
    will = connect.will
    if will is None:
        return None
    try:
        validate_topic_name(will.topic)
    except InvalidTopic as err:
        return Refusal(ReasonCode.TOPIC_NAME_INVALID, ConnAckCode311.NOT_AUTHORIZED, err.text)
    props = will.properties
    if props is not None and props.payload_format_indicator == 1 and not is_utf8(will.payload):
        return Refusal(
            ReasonCode.PAYLOAD_FORMAT_INVALID,
            ConnAckCode311.NOT_AUTHORIZED,
            "will payload is not UTF-8",
        )
    return None


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
