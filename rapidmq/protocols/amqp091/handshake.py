"""The policy half of the AMQP handshake: what the server offers and whom it lets in.

``connection.py`` walks the handshake states; this module decides their
contents: the server properties of ``connection.start``, the login check of
``start-ok`` (SASL parsing, the user store, the loopback-only users), and the
``tune-ok`` limits.  Each decision is a plain function, so it reads and tests
without a connection around it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rapidmq import __version__
from rapidmq.auth.backends import LoginRequest, certificate_common_name
from rapidmq.auth.sasl import SaslError, is_loopback, parse_amqplain, parse_plain
from rapidmq.auth.users import User, UserStore

if TYPE_CHECKING:
    from rapidmq.auth.backends import Authenticator

__all__ = [
    "FRAME_MIN_SIZE",
    "AMQPSettings",
    "LoginRefused",
    "check_login",
    "check_tune",
    "login_request",
    "offered_mechanisms",
    "refused_text",
    "server_properties",
]

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


class LoginRefused(Exception):
    """``text`` is the whole reply text of the 403 connection.close; ``log`` says why."""

    def __init__(self, text: str, log: str) -> None:
        super().__init__(text)
        self.text = text
        self.log = log


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
