"""How metadata records and message keys become bytes.

**Values** are JSON (UTF-8, ASCII-escaped) with tags for what JSON lacks, so
an AMQP argument table comes back exactly as it went in:

==============================  ==========================================
Python value                    JSON form
==============================  ==========================================
``bytes`` / ``bytearray``       ``{"$bytes": "<base64>"}``
``datetime.datetime``           ``{"$datetime": "<ISO 8601, with offset>"}``
``decimal.Decimal``             ``{"$decimal": "<str(value)>"}``
``tuple``                       ``{"$tuple": [...]}``
a ``dict`` with a ``$`` key     ``{"$map": {...}}`` (so it is never a tag)
==============================  ==========================================

``None``, ``bool``, ``int``, ``float`` (NaN and infinities included), ``str``
(lone surrogates included) and ``list`` are plain JSON.  Dict keys must be
strings.  Never pickle: a record is data, not code.

**Keys** are tuples of strings encoded so that the byte order of two encoded
keys is the order of the tuples: each string is UTF-8 (surrogates passed
through, which keeps code point order), with ``00`` escaped as ``00 FF`` and
ended by ``00 01``.  A tuple's encoding is a prefix of the encoding of every
longer tuple that starts with it, so one kind, one vhost or one queue is one
contiguous key range.
"""

from __future__ import annotations

import base64
import datetime
import json
from decimal import Decimal
from typing import Any

from rapidmq.storage.api import KINDS

__all__ = [
    "decode_key",
    "decode_value",
    "encode_key",
    "encode_value",
    "kind_prefix",
    "prefix_end",
    "record_key",
]

_TERMINATOR = b"\x00\x01"
_ESCAPED_NUL = b"\x00\xff"


def encode_key(parts: tuple[str, ...]) -> bytes:
    """The order-preserving encoding of a tuple of strings."""
    out = bytearray()
    for part in parts:
        out += part.encode("utf-8", "surrogatepass").replace(b"\x00", _ESCAPED_NUL)
        out += _TERMINATOR
    return bytes(out)


def decode_key(data: bytes) -> tuple[str, ...]:
    """The tuple that :func:`encode_key` turned into ``data``.

    Raises:
        ValueError: ``data`` is not an encoded key.
    """
    parts: list[str] = []
    start = 0
    while start < len(data):
        # Every NUL inside a part is followed by FF, so "00 01" is always the terminator.
        end = data.find(_TERMINATOR, start)
        if end < 0:
            raise ValueError(f"unterminated key part in {data!r}")
        raw = data[start:end]
        parts.append(raw.replace(_ESCAPED_NUL, b"\x00").decode("utf-8", "surrogatepass"))
        start = end + len(_TERMINATOR)
    return tuple(parts)


def prefix_end(prefix: bytes) -> bytes:
    """The smallest key greater than every key that starts with ``prefix``.

    Raises:
        ValueError: ``prefix`` is empty or all ``FF`` (no such key exists).
    """
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise ValueError(f"no key follows every key starting with {prefix!r}")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def encode_value(value: dict[str, Any]) -> bytes:
    """A record's value as tagged JSON.

    Raises:
        TypeError: a value of a type records cannot carry, or a non-string dict key.
    """
    return json.dumps(_tag(value), separators=(",", ":"), ensure_ascii=True).encode("ascii")


def decode_value(data: bytes) -> dict[str, Any]:
    """The record value that :func:`encode_value` turned into ``data``.

    Raises:
        ValueError: ``data`` is not a tagged JSON object.
    """
    value = _untag(json.loads(data))
    if not isinstance(value, dict):
        raise ValueError(f"a record value must be an object, not {type(value).__name__}")
    return value


def _tag(value: Any) -> Any:
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(f"record dict keys must be str, not {type(key).__name__}")
        tagged = {key: _tag(item) for key, item in value.items()}
        if any(key.startswith("$") for key in value):
            return {"$map": tagged}
        return tagged
    if isinstance(value, list):
        return [_tag(item) for item in value]
    if isinstance(value, tuple):
        return {"$tuple": [_tag(item) for item in value]}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, datetime.datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    raise TypeError(f"cannot store {type(value).__name__} in a record: {value!r}")


def _untag(value: Any) -> Any:
    # Top down, so the payload of a "$map" is never itself read as a tag.
    if isinstance(value, list):
        return [_untag(item) for item in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        [(key, payload)] = value.items()
        if key.startswith("$"):
            return _untag_tagged(key, payload)
    return {key: _untag(item) for key, item in value.items()}


def _untag_tagged(tag: str, payload: Any) -> Any:
    if tag == "$map":
        return {key: _untag(item) for key, item in payload.items()}
    if tag == "$tuple":
        return tuple(_untag(item) for item in payload)
    if tag == "$bytes":
        return base64.b64decode(payload, validate=True)
    if tag == "$datetime":
        return datetime.datetime.fromisoformat(payload)
    if tag == "$decimal":
        return Decimal(payload)
    raise ValueError(f"unknown tag {tag!r} in a stored record")


def record_key(kind: str, key: tuple[str, ...]) -> bytes:
    """The metadata key of one record: ``(kind, *key)`` encoded.

    Raises:
        ValueError: an unknown kind, or a key of the wrong length for it.
    """
    fields = KINDS.get(kind)
    if fields is None:
        raise ValueError(f"unknown metadata kind {kind!r}")
    if len(key) != len(fields) or not all(isinstance(part, str) for part in key):
        raise ValueError(f"a {kind} key is {len(fields)} strings {fields}, not {key!r}")
    return encode_key((kind, *key))


def kind_prefix(kind: str) -> bytes:
    """The key prefix shared by every record of ``kind``.

    Raises:
        ValueError: an unknown kind.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown metadata kind {kind!r}")
    return encode_key((kind,))
