"""The server's TLS context, built once from the settings for every TLS listener.

One context serves AMQPS, MQTTS, MQTT over secure WebSocket and HTTPS, so a
certificate problem is found once, at start-up, and reported as one line that
names the setting to fix (a broker that started and then failed every
handshake would be much harder to diagnose).

Choices, and why:

* TLS 1.2 is the minimum: RabbitMQ 3.10 and Mosquitto 2 refuse older versions
  by default, and every client we support speaks 1.2.
* TLS 1.2 cipher suites are forward secret AEAD only (ECDHE/DHE with AES-GCM
  or ChaCha20-Poly1305); TLS 1.3 suites are OpenSSL's, which are all fine.
  AES-GCM comes first because it is hardware accelerated on servers.
* Compression is off (CRIME) and renegotiation is off: the transport drives
  the TLS object from two tasks, and a renegotiation would need the writer to
  read, which it never does.
* ``tls_verify_peer`` asks for a client certificate and checks it against
  ``tls_ca`` (CERT_OPTIONAL); ``tls_fail_if_no_peer_cert`` also refuses a
  client that sends none (CERT_REQUIRED).  These are RabbitMQ's ``verify`` and
  ``fail_if_no_peer_cert`` options.
"""

from __future__ import annotations

import ssl

from rapidmq.config import Settings
from rapidmq.transport.tcp import ListenError

__all__ = ["TLS12_CIPHERS", "TLSConfigError", "server_context"]

#: Forward secret AEAD suites for TLS 1.2 (TLS 1.3 suites are configured apart by OpenSSL).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL:!eNULL:!MD5:!DSS"


class TLSConfigError(ListenError):
    """The certificate, key or CA cannot be used; the message is one line naming the setting.

    It is a :class:`ListenError` so that start-up reports it like a port in use:
    one line on stderr and exit code 1.
    """


def _reason(err: BaseException) -> str:
    if isinstance(err, OSError) and err.strerror and not isinstance(err, ssl.SSLError):
        return err.strerror.lower()
    text = getattr(err, "reason", None) or str(err)
    return " ".join(str(text).split())


def _check_readable(path: str, setting: str) -> None:
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as err:
        raise TLSConfigError(
            f"cannot read {setting} {path}: {_reason(err)}; fix --{setting.replace('_', '-')}"
        ) from None


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    raise TLSConfigError("")


def server_context(settings: Settings) -> ssl.SSLContext:
    """The TLS context of every TLS listener.

    Raises:
        TLSConfigError: a file is missing or unreadable, is not PEM, or the key
            does not belong to the certificate (one line naming the setting).
    """
    cert, key, ca = settings.tls_cert, settings.tls_key, settings.tls_ca
    _check_readable(cert, "tls_cert")
    _check_readable(key, "tls_key")
    if ca:
        _check_readable(ca, "tls_ca")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.options |= (
        ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    )
    context.set_ciphers(TLS12_CIPHERS)
    # The certificate alone first, so that a bad certificate is not blamed on the key.
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cafile=cert)
    except (ssl.SSLError, ValueError) as err:
        raise TLSConfigError(
            f"tls_cert {cert} holds no PEM certificate ({_reason(err)}); fix --tls-cert"
        ) from None
    try:
        context.load_cert_chain(cert, key, password=_no_password)
    except TLSConfigError:
        raise TLSConfigError(
            f"tls_key {key} is encrypted; give an unencrypted key with --tls-key"
        ) from None
    except ssl.SSLError as err:
        reason = _reason(err)
        if "KEY_VALUES_MISMATCH" in str(err) or "mismatch" in reason.lower():
            raise TLSConfigError(
                f"tls_key {key} does not match the certificate in tls_cert {cert}; "
                "give the key of that certificate with --tls-key"
            ) from None
        raise TLSConfigError(
            f"tls_key {key} holds no usable PEM private key ({reason}); fix --tls-key"
        ) from None
    if ca:
        try:
            context.load_verify_locations(cafile=ca)
        except (ssl.SSLError, ValueError) as err:
            raise TLSConfigError(
                f"tls_ca {ca} holds no PEM certificate ({_reason(err)}); fix --tls-ca"
            ) from None
    if settings.tls_verify_peer:
        if not ca:
            raise TLSConfigError(
                "tls_verify_peer needs the CA that signs client certificates; give --tls-ca FILE"
            )
        context.verify_mode = (
            ssl.CERT_REQUIRED if settings.tls_fail_if_no_peer_cert else ssl.CERT_OPTIONAL
        )
    else:
        context.verify_mode = ssl.CERT_NONE
    return context
