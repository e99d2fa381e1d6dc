"""Basic properties and field tables between Python values and AMQP 0-9-1 octets.

``encode_properties`` / ``decode_properties`` work on the part of a content
header after class-id, weight and body-size: property flags, then values.
Field tables follow RabbitMQ's type letters, choosing the same encodings as
pamqp so that both produce identical octets, except where pamqp loses
information: floats go out as doubles (``d``) and ``bytes`` as byte arrays
(``x``).  Decoding gives back exactly what was encoded: ``str``, ``bytes``,
``int``, ``float``, ``bool``, ``None``, ``Decimal``, UTC ``datetime``, ``list``
and ``dict``.  Malformed input raises ``ValueError``.
"""

from __future__ import annotations

import datetime
import struct
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from rapidmq.core.message import EMPTY_PROPERTIES, Long, Properties

__all__ = [
    "EMPTY_ENCODED_PROPERTIES",
    "add_long_header",
    "decode_properties",
    "decode_shortstr",
    "decode_table",
    "encode_properties",
    "encode_shortstr",
    "encode_table",
    "long_header_writer",
]

EMPTY_ENCODED_PROPERTIES = b"\x00\x00"

_U8 = struct.Struct(">B")
_I8 = struct.Struct(">b")
_U16 = struct.Struct(">H")
_I16 = struct.Struct(">h")
_U32 = struct.Struct(">I")
_I32 = struct.Struct(">i")
_U64 = struct.Struct(">Q")
_I64 = struct.Struct(">q")
_F32 = struct.Struct(">f")
_F64 = struct.Struct(">d")
_DECIMAL = struct.Struct(">Bi")
_UTC = datetime.UTC

# (attribute, flag bit, AMQP type) in wire order.
_FIELDS = (
    ("content_type", 0x8000, "s"),
    ("content_encoding", 0x4000, "s"),
    ("headers", 0x2000, "F"),
    ("delivery_mode", 0x1000, "o"),
    ("priority", 0x0800, "o"),
    ("correlation_id", 0x0400, "s"),
    ("reply_to", 0x0200, "s"),
    ("expiration", 0x0100, "s"),
    ("message_id", 0x0080, "s"),
    ("timestamp", 0x0040, "T"),
    ("type", 0x0020, "s"),
    ("user_id", 0x0010, "s"),
    ("app_id", 0x0008, "s"),
    ("cluster_id", 0x0004, "s"),
)


def _need(data: bytes, end: int) -> None:
    if end > len(data):
        raise ValueError("truncated field")


def encode_shortstr(value: str) -> bytes:
    """A length octet and the UTF-8 octets of ``value`` (at most 255)."""
    raw = value.encode("utf-8", "surrogateescape")
    if len(raw) > 255:
        raise ValueError(f"short string longer than 255 octets: {value[:40]!r}...")
    return _U8.pack(len(raw)) + raw


def decode_shortstr(data: bytes, offset: int) -> tuple[str, int]:
    """The short string at ``offset`` and the offset after it.

    Octets that are not UTF-8 survive as surrogate escapes, so that encoding
    the string again gives back the same octets.
    """
    end = offset + 1 + data[offset]
    _need(data, end)
    return data[offset + 1 : end].decode("utf-8", "surrogateescape"), end


def _longstr(data: bytes, offset: int) -> tuple[bytes, int]:
    start = offset + 4
    end = start + _U32.unpack_from(data, offset)[0]
    _need(data, end)
    return data[start:end], end


def _decode_string(data: bytes, offset: int) -> tuple[Any, int]:
    raw, end = _longstr(data, offset)
    try:
        return raw.decode("utf-8"), end
    except UnicodeDecodeError:
        return raw, end


def _decode_bytes(data: bytes, offset: int) -> tuple[Any, int]:
    return _longstr(data, offset)


def _fixed(codec: struct.Struct) -> Callable[[bytes, int], tuple[Any, int]]:
    size = codec.size

    def decode(data: bytes, offset: int) -> tuple[Any, int]:
        return codec.unpack_from(data, offset)[0], offset + size

    return decode


def _decode_bool(data: bytes, offset: int) -> tuple[Any, int]:
    return data[offset] != 0, offset + 1


def _decode_decimal(data: bytes, offset: int) -> tuple[Any, int]:
    scale, mantissa = _DECIMAL.unpack_from(data, offset)
    return Decimal(mantissa).scaleb(-scale), offset + 5


def _decode_timestamp(data: bytes, offset: int) -> tuple[Any, int]:
    seconds = _U64.unpack_from(data, offset)[0]
    try:
        return datetime.datetime.fromtimestamp(seconds, _UTC), offset + 8
    except (OverflowError, ValueError, OSError):
        return seconds, offset + 8  # beyond year 9999: keep the number


def _decode_void(data: bytes, offset: int) -> tuple[Any, int]:
    return None, offset


def _decode_array(data: bytes, offset: int) -> tuple[Any, int]:
    start = offset + 4
    end = start + _U32.unpack_from(data, offset)[0]
    _need(data, end)
    items = []
    offset = start
    while offset < end:
        value, offset = _DECODERS[data[offset]](data, offset + 1)
        items.append(value)
    if offset != end:
        raise ValueError("array overruns its length")
    return items, end


def _decode_table_value(data: bytes, offset: int) -> tuple[Any, int]:
    return decode_table(data, offset)


def decode_table(data: bytes, offset: int = 0) -> tuple[dict[str, Any], int]:
    """The field table at ``offset`` and the offset after it.

    Raises:
        ValueError: the table is malformed.
    """
    start = offset + 4
    end = start + _U32.unpack_from(data, offset)[0]
    _need(data, end)
    table: dict[str, Any] = {}
    offset = start
    while offset < end:
        key, offset = decode_shortstr(data, offset)
        table[key], offset = _DECODERS[data[offset]](data, offset + 1)
    if offset != end:
        raise ValueError("table overruns its length")
    return table, end


_DECODERS: dict[int, Callable[[bytes, int], tuple[Any, int]]] = {
    ord("t"): _decode_bool,
    ord("b"): _fixed(_I8),
    ord("B"): _fixed(_U8),
    ord("s"): _fixed(_I16),
    ord("u"): _fixed(_U16),
    ord("I"): _fixed(_I32),
    ord("i"): _fixed(_U32),
    ord("l"): _fixed(_I64),
    ord("L"): _fixed(_U64),
    ord("f"): _fixed(_F32),
    ord("d"): _fixed(_F64),
    ord("D"): _decode_decimal,
    ord("S"): _decode_string,
    ord("x"): _decode_bytes,
    ord("A"): _decode_array,
    ord("T"): _decode_timestamp,
    ord("F"): _decode_table_value,
    ord("V"): _decode_void,
}


def _encode_int(value: int) -> bytes:
    # The same choice of width as pamqp, smallest first.
    if -128 <= value <= 127:
        return b"b" + _I8.pack(value)
    if -32768 <= value <= 32767:
        return b"s" + _I16.pack(value)
    if 0 <= value <= 65535:
        return b"u" + _U16.pack(value)
    if -2147483648 <= value <= 2147483647:
        return b"I" + _I32.pack(value)
    if 0 <= value <= 4294967295:
        return b"i" + _U32.pack(value)
    if -9223372036854775808 <= value <= 9223372036854775807:
        return b"l" + _I64.pack(value)
    raise ValueError(f"integer out of the signed 64-bit range: {value}")


def _encode_decimal(value: Decimal) -> bytes:
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int):
        raise ValueError(f"cannot encode {value} as a decimal")
    if exponent > 0:
        scale, mantissa = 0, int(value)
    else:
        scale, mantissa = -exponent, int(value.scaleb(-exponent))
    if scale > 255 or not -2147483648 <= mantissa <= 2147483647:
        raise ValueError(f"decimal out of range: {value}")
    return b"D" + _DECIMAL.pack(scale, mantissa)


def _encode_timestamp(value: datetime.datetime) -> bytes:
    if value.tzinfo is None or value.utcoffset() is None:
        value = value.replace(tzinfo=_UTC)
    seconds = int(value.timestamp())
    if seconds < 0:
        raise ValueError(f"timestamp before 1970: {value}")
    return _U64.pack(seconds)


def _encode_value(value: Any) -> bytes:
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape")
        return b"S" + _U32.pack(len(raw)) + raw
    if isinstance(value, bool):
        return b"t\x01" if value else b"t\x00"
    if isinstance(value, int):
        return b"l" + _I64.pack(value) if type(value) is Long else _encode_int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return b"x" + _U32.pack(len(value)) + bytes(value)
    if isinstance(value, float):
        return b"d" + _F64.pack(value)
    if isinstance(value, Decimal):
        return _encode_decimal(value)
    if isinstance(value, datetime.datetime):
        return b"T" + _encode_timestamp(value)
    if isinstance(value, dict):
        return b"F" + encode_table(value)
    if isinstance(value, list | tuple):
        body = b"".join([_encode_value(item) for item in value])
        return b"A" + _U32.pack(len(body)) + body
    if value is None:
        return b"V"
    raise TypeError(f"cannot encode {type(value).__name__} in a field table: {value!r}")


def encode_table(table: dict[str, Any]) -> bytes:
    """A field table, keys sorted as pamqp sorts them.

    Raises:
        TypeError: a value of a type field tables cannot carry.
        ValueError: a value out of range, or a key longer than 255 octets.
    """
    body = b"".join(
        [encode_shortstr(key) + _encode_value(value) for key, value in sorted(table.items())]
    )
    return _U32.pack(len(body)) + body


def encode_properties(properties: Properties) -> bytes:
    """Property flags and values for a content header.

    A property that is ``None`` is absent; an empty string is present and empty.
    """
    if properties is EMPTY_PROPERTIES:
        return EMPTY_ENCODED_PROPERTIES
    flags = 0
    parts = [b""]
    for name, flag, kind in _FIELDS:
        value = getattr(properties, name)
        if value is None:
            continue
        flags |= flag
        if kind == "s":
            parts.append(encode_shortstr(value))
        elif kind == "o":
            parts.append(_U8.pack(value))
        elif kind == "T":
            parts.append(_U64.pack(value))
        else:
            parts.append(encode_table(value))
    parts[0] = _U16.pack(flags)
    return b"".join(parts)


_HEADERS_FLAG = 0x2000
_LONG_ENTRY = struct.Struct(">Bq")  # type letter "l" and the value


def add_long_header(encoded: bytes, key: str, value: int) -> bytes | None:
    """``encoded`` properties with a header ``key`` carried as a long (``l``), spliced
    into the bytes instead of encoding every property again; None when ``key`` may
    already be there (then encode the properties).

    The entry goes after the existing ones: a field table's order carries no meaning.
    """
    flags = _U16.unpack_from(encoded, 0)[0]
    pos = 2
    for flag in (0x8000, 0x4000):  # content type, content encoding: shortstrs
        if flags & flag:
            pos += 1 + encoded[pos]
    raw_key = key.encode()
    entry = bytes((len(raw_key),)) + raw_key + _LONG_ENTRY.pack(ord("l"), value)
    if not flags & _HEADERS_FLAG:
        return b"".join(
            (
                _U16.pack(flags | _HEADERS_FLAG),
                encoded[2:pos],
                _U32.pack(len(entry)),
                entry,
                encoded[pos:],
            )
        )
    size = _U32.unpack_from(encoded, pos)[0]
    end = pos + 4 + size
    if entry[: 1 + len(raw_key)] in encoded[pos + 4 : end]:
        return None
    return b"".join(
        (encoded[:pos], _U32.pack(size + len(entry)), encoded[pos + 4 : end], entry, encoded[end:])
    )


def long_header_writer(encoded: bytes, key: str) -> Callable[[int], bytes] | None:
    """A function giving ``encoded`` with the long header ``key`` set to its argument:
    the bytes around the value are joined once, so each call is one concatenation.
    None when :func:`add_long_header` cannot splice it."""
    spliced = add_long_header(encoded, key, 0)
    if spliced is None:
        return None
    raw_key = key.encode()
    at = spliced.rindex(bytes((len(raw_key),)) + raw_key + b"l") + len(raw_key) + 2
    head, tail = spliced[:at], spliced[at + 8 :]
    pack = _I64.pack

    def write(value: int) -> bytes:
        return head + pack(value) + tail

    return write


def decode_properties(data: bytes) -> Properties:
    """The ``Properties`` encoded in ``data`` (flags then values).

    Raises:
        ValueError: the octets are malformed or have trailing garbage.
    """
    if data == EMPTY_ENCODED_PROPERTIES:
        return EMPTY_PROPERTIES
    try:
        flags = _U16.unpack_from(data, 0)[0]
        offset = 2
        values: dict[str, Any] = {}
        for name, flag, kind in _FIELDS:
            if not flags & flag:
                continue
            if kind == "s":
                values[name], offset = decode_shortstr(data, offset)
            elif kind == "o":
                values[name] = data[offset]
                offset += 1
            elif kind == "T":
                values[name] = _U64.unpack_from(data, offset)[0]
                offset += 8
            else:
                values[name], offset = decode_table(data, offset)
    except (struct.error, IndexError, KeyError, RecursionError) as exc:
        raise ValueError(f"malformed content properties: {exc!r}") from exc
    if offset != len(data):
        raise ValueError("trailing octets after the content properties")
    return Properties(**values)
