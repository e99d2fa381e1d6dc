"""SASL responses as AMQP clients send them in ``connection.start-ok``.

PLAIN (RFC 4616) is ``authzid NUL user NUL password``; clients leave the authzid
empty.  AMQPLAIN is RabbitMQ's own: an AMQP field table with the keys ``LOGIN``
and ``PASSWORD``, sent *without* the table's 4-byte length prefix.
"""

from __future__ import annotations

import ipaddress

from pamqp import decode

from rapidmq.errors import RapidMQError

__all__ = [
    "MECHANISMS",
    "SaslError",
    "is_loopback",
    "parse_amqplain",
    "parse_plain",
    "parse_response",
]

MECHANISMS = ("PLAIN", "AMQPLAIN")
"""The mechanisms RapidMQ offers in ``connection.start``, in order of preference."""


class SaslError(RapidMQError):
    """A SASL response RapidMQ cannot read. ``str(err)`` says why."""


def parse_plain(response: bytes) -> tuple[str, str]:
    """Read a PLAIN response into ``(username, password)``.

    Raises:
        SaslError: not three NUL-separated parts, an empty user name, or not UTF-8.
    """
    parts = response.split(b"\0")
    if len(parts) != 3:
        raise SaslError(
            f"PLAIN response must be 'authzid NUL user NUL password', got {len(parts)} part(s)"
        )
    _authzid, user, password = parts
    if not user:
        raise SaslError("PLAIN response has an empty user name")
    return _utf8(user, "user name"), _utf8(password, "password")


def parse_amqplain(response: bytes) -> tuple[str, str]:
    """Read an AMQPLAIN response (a field table without its length) into ``(user, password)``.

    Raises:
        SaslError: not a field table, or LOGIN or PASSWORD missing or not a string.
    """
    table = _field_table_body(response)
    return _table_text(table, "LOGIN"), _table_text(table, "PASSWORD")


def parse_response(mechanism: str, response: bytes) -> tuple[str, str]:
    """Read the ``response`` of ``connection.start-ok`` for ``mechanism``.

    Raises:
        SaslError: an unknown mechanism or an unreadable response.
    """
    if mechanism == "PLAIN":
        return parse_plain(response)
    if mechanism == "AMQPLAIN":
        return parse_amqplain(response)
    raise SaslError(f"unsupported mechanism {mechanism!r}; offered: {' '.join(MECHANISMS)}")


def is_loopback(peer_host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and IPv4-mapped 127.x (``::ffff:127.0.0.1``).

    Accepts a bare address, an IPv6 address in brackets, or one with a zone (``%lo``).
    """
    host = peer_host.strip().removeprefix("[").removesuffix("]").split("%", 1)[0]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def _field_table_body(body: bytes) -> dict[str, object]:
    """Decode field-table entries filling all of ``body``, checking every length."""
    table: dict[str, object] = {}
    offset = 0
    while offset < len(body):
        key_end = offset + 1 + body[offset]
        if key_end >= len(body):
            raise SaslError("AMQPLAIN response is cut short inside a field")
        key = _utf8(body[offset + 1 : key_end], "field name")
        try:
            consumed, value = decode.embedded_value(body[key_end:])
        except ValueError as err:
            raise SaslError(f"AMQPLAIN field {key!r} cannot be read ({err})") from None
        offset = key_end + consumed
        if offset > len(body):
            raise SaslError(f"AMQPLAIN field {key!r} is longer than the response")
        table[key] = value
    return table


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(f"the {what} is not valid UTF-8") from None


def _table_text(table: dict[str, object], key: str) -> str:
    value = table.get(key)
    if isinstance(value, bytes):
        return _utf8(value, key)
    if isinstance(value, str):
        return value
    if value is None:
        raise SaslError(f"AMQPLAIN response has no {key}")
    raise SaslError(f"AMQPLAIN {key} must be a string, got {type(value).__name__}")
