"""The policy half of the AMQP handshake: what the server offers and whom it lets in.

``connection.py`` walks the handshake states; this module decides their
contents: the ``connection.start`` it sends, the login a ``start-ok`` or an
``update-secret`` asks for (SASL parsing; the user store, LDAP and the
loopback-only users answer through the :class:`Authenticator` chain), the
``tune-ok`` limits, and whether ``connection.open`` may open its vhost.  Each
decision is a plain function that returns what to send or raises
:class:`Refused` with the reply code and RabbitMQ's text, so it reads and
tests without a connection around it.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

from pamqp import commands as spec

from rapidmq import __version__
from rapidmq.auth.backends import (
    Authenticator,
    LoginRequest,
    LoginResult,
    certificate_common_name,
)
from rapidmq.auth.sasl import SaslError, is_loopback, parse_amqplain, parse_plain
from rapidmq.auth.users import User, UserStore
from rapidmq.core.api import ClientInfo
from rapidmq.core.broker import Broker, CoreConnection
from rapidmq.core.errors import AccessRefused, CoreError
from rapidmq.protocols.amqp091.errors import REPLY_CODES

__all__ = [
    "FRAME_MIN_SIZE",
    "SECRET_REFUSED_TEXT",
    "AMQPSettings",
    "LoginRefused",
    "Refused",
    "Tuned",
    "authenticator_for",
    "check_login",
    "check_tune",
    "login_refused",
    "login_request",
    "offered_mechanisms",
    "open_vhost",
    "refused_text",
    "secret_request",
    "server_properties",
    "start_method",
    "tune",
    "tune_method",
]

auth_log = logging.getLogger("rapidmq.auth")
log = logging.getLogger("rapidmq.connection")

#: RabbitMQ's reply text (530, connection.close) when a backend refuses a new secret.
SECRET_REFUSED_TEXT = "NOT_ALLOWED - New secret was refused by one of the backends"

FRAME_MIN_SIZE = 4096

_SERVER_CAPABILITIES = {
    "publisher_confirms": True,
    "exchange_exchange_bindings": True,
    "basic.nack": True,
    "consumer_cancel_notify": True,
    "connection.blocked": True,
    "consumer_priorities": True,
    "authentication_failure_close": True,
    "per_consumer_qos": True,
    "direct_reply_to": True,
}


@dataclass(slots=True)
class AMQPSettings:
    """What the AMQP front end needs to know from the broker's configuration."""

    heartbeat_s: int = 60
    frame_max: int = 131072
    channel_max: int = 2047
    handshake_timeout_s: float = 10.0
    loopback_users: tuple[str, ...] = ("guest",)
    cluster_name: str = "rapidmq"
    mechanisms: tuple[str, ...] = field(default=("PLAIN", "AMQPLAIN"))
    #: The login chain; None = the connection's user store alone (bare connection objects).
    authenticator: Authenticator | None = None


class Refused(Exception):
    """A handshake step says no: ``code`` and ``text`` close the connection, ``log`` says why."""

    def __init__(self, code: int, text: str, log: str = "") -> None:
        super().__init__(text)
        self.code = code
        self.text = text
        self.log = log or text


class LoginRefused(Refused):
    """``text`` is the whole reply text of the 403 connection.close; ``log`` says why."""

    def __init__(self, text: str, log: str) -> None:
        super().__init__(403, text, log)


@dataclass(frozen=True, slots=True)
class Tuned:
    """What tune-ok settled for the rest of the connection."""

    frame_max: int
    channel_max: int
    heartbeat_s: int


def server_properties(settings: AMQPSettings) -> dict[str, Any]:
    """The server properties of connection.start, shaped as RabbitMQ's."""
    return {
        "product": "RapidMQ",
        "version": __version__,
        "platform": "Python",
        "cluster_name": settings.cluster_name,
        "copyright": "RapidMQ contributors",
        "information": "Licensed under the Apache License 2.0",
        "capabilities": _SERVER_CAPABILITIES,
    }


def start_method(settings: AMQPSettings, peer_certificate: Any) -> spec.Connection.Start:
    """The connection.start that answers the protocol header."""
    return spec.Connection.Start(
        server_properties=server_properties(settings),
        mechanisms=" ".join(offered_mechanisms(settings, peer_certificate)),
        locales="en_US",
    )


def tune_method(settings: AMQPSettings) -> spec.Connection.Tune:
    """The connection.tune that follows an accepted login."""
    return spec.Connection.Tune(
        channel_max=settings.channel_max,
        frame_max=settings.frame_max,
        heartbeat=settings.heartbeat_s,
    )


def authenticator_for(settings: AMQPSettings, users: UserStore) -> Authenticator:
    """The login chain: the server's, or the user store alone for a bare connection."""
    if settings.authenticator is not None:
        return settings.authenticator
    return Authenticator.internal(users, loopback_users=settings.loopback_users)


def offered_mechanisms(settings: AMQPSettings, peer_certificate: Any) -> tuple[str, ...]:
    """The mechanisms of connection.start: EXTERNAL only with a verified client certificate.

    As RabbitMQ's rabbitmq_auth_mechanism_ssl, EXTERNAL logs in as the
    certificate's CN, so offering it without a certificate would only mislead.
    """
    if peer_certificate and certificate_common_name(peer_certificate) is not None:
        return (*settings.mechanisms, "EXTERNAL")
    return settings.mechanisms


def refused_text(mechanism: str) -> str:
    """RabbitMQ's 403 reply text for refused credentials: it never says which part was wrong."""
    return (
        f"ACCESS_REFUSED - Login was refused using authentication mechanism {mechanism}. "
        "For details see the broker logfile."
    )


def login_request(
    settings: AMQPSettings,
    peer_host: str,
    mechanism: str,
    response: bytes,
    *,
    peer_certificate: Any = None,
) -> LoginRequest:
    """The login a start-ok asks for.

    Raises:
        LoginRefused: with RabbitMQ's reply text, for a mechanism not offered or
            a malformed response.
    """
    if mechanism not in offered_mechanisms(settings, peer_certificate):
        text = f"ACCESS_REFUSED - unsupported authentication mechanism '{mechanism}'"
        raise LoginRefused(text, text)
    if mechanism == "EXTERNAL":
        # The response (an authzid, usually empty) is ignored, as RabbitMQ does.
        name = certificate_common_name(peer_certificate)
        assert name is not None  # offered_mechanisms checked it
        return LoginRequest("amqp", name, None, peer_host, mechanism)
    try:
        if mechanism == "PLAIN":
            username, password = parse_plain(response)
        else:
            username, password = parse_amqplain(response)
    except SaslError as err:
        raise LoginRefused(f"ACCESS_REFUSED - {err}", str(err)) from None
    return LoginRequest("amqp", username, password, peer_host, mechanism)


def secret_request(login: LoginRequest, secret: str | bytes) -> LoginRequest:
    """The login an update-secret asks for: the same user and mechanism, the new secret.

    RabbitMQ hands the new secret to its backends as the user's new
    credential; the user name is the connection's, whatever the secret holds.
    EXTERNAL ignores it, as start-ok's response, and re-reads the
    certificate's user.

    Raises:
        Refused: 530 with RabbitMQ's text, for a secret that cannot be a password.
    """
    if login.by_certificate:
        return login
    if isinstance(secret, bytes):
        # The parser keeps a long string that is not UTF-8 as bytes; no password is.
        raise Refused(530, SECRET_REFUSED_TEXT, "the new secret is not UTF-8")
    return dataclasses.replace(login, password=secret)


def login_refused(peer_name: str, why: str, mechanism: str, user: str) -> None:
    """Log one refused login (never with the password)."""
    auth_log.warning(
        "AMQP login refused from %s: %s",
        peer_name,
        why,
        extra={
            "event": "auth.refused",
            "protocol": "amqp",
            "client_address": peer_name,
            "mechanism": mechanism,
            "user": user,
        },
    )


def check_login(
    users: UserStore,
    settings: AMQPSettings,
    peer_host: str,
    mechanism: str,
    response: bytes,
) -> User:
    """The user a start-ok logs in as, checked against ``users`` alone and at once.

    Raises:
        LoginRefused: with RabbitMQ's reply text, for a bad mechanism, a
            malformed response, wrong credentials, or a loopback-only user
            connecting from elsewhere.
    """
    request = login_request(settings, peer_host, mechanism, response)
    username, password = request.username, request.password or ""
    refused = refused_text(mechanism)
    user = users.authenticate(username, password)
    if user is None:
        raise LoginRefused(refused, f"user '{username}' failed to log in using {mechanism}")
    if username in settings.loopback_users and not is_loopback(peer_host):
        raise LoginRefused(refused, f"user '{username}' may only connect via localhost")
    return user


def tune(settings: AMQPSettings, m: spec.Connection.TuneOk) -> Tuned:
    """The limits a tune-ok settles.

    Raises:
        Refused: 530 with RabbitMQ's text for an unacceptable frame_max.
    """
    problem = check_tune(settings, m.frame_max)
    if problem is not None:
        raise Refused(530, problem)
    channel_max = min(m.channel_max or settings.channel_max, settings.channel_max or 65535)
    return Tuned(m.frame_max, channel_max, m.heartbeat)


def open_vhost(
    broker: Broker, login: LoginResult | None, vhost: str, info: ClientInfo
) -> CoreConnection:
    """The core connection a connection.open asks for, refusals logged.

    Raises:
        Refused: the user may not open ``vhost`` (an LDAP vhost group it is not
            in, no permission, a connection limit, no such vhost), with
            RabbitMQ's code and text.
    """
    user = info.user
    where = f"refusing AMQP connection {info.peer} (user '{user}', vhost '{vhost}')"
    extra = {"event": "connection.refused", "protocol": "amqp", "user": user}
    if login is not None and not login.may_open(vhost):
        auth_log.warning("%s: not in its LDAP group", where, extra=extra)
        raise Refused(530, f"NOT_ALLOWED - access to vhost '{vhost}' refused for user '{user}'")
    try:
        return broker.connect(vhost, info)
    except CoreError as err:
        code, name = REPLY_CODES.get(type(err), (530, "NOT_ALLOWED"))
        extra |= {"vhost": vhost, "client_address": info.peer}
        (auth_log if isinstance(err, AccessRefused) else log).warning(
            "%s: %s", where, err.text, extra=extra
        )
        raise Refused(code, f"{name} - {err.text}") from None


def check_tune(settings: AMQPSettings, frame_max: int) -> str | None:
    """The 530 reply text if the client's tune-ok frame_max is unacceptable, else None."""
    if frame_max and frame_max < FRAME_MIN_SIZE:
        return f"NOT_ALLOWED - frame_max={frame_max} < {FRAME_MIN_SIZE} min size"
    server_frame_max = settings.frame_max
    if server_frame_max and (frame_max == 0 or frame_max > server_frame_max):
        return (
            f"NOT_ALLOWED - negotiated frame_max = {frame_max} is higher than the "
            f"maximum allowed value ({server_frame_max})"
        )
    return None
