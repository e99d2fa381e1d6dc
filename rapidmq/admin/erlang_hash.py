"""Erlang's ``erlang:phash2/2`` over the terms RabbitMQ makes of x-argument tables.

RabbitMQ's management API names a binding with arguments ``key~HASH``, where
HASH is ``phash2(Args, 2^32)`` as 32 bits, in URL-safe base64 without padding,
and ``Args`` is the binding's argument table as RabbitMQ holds it: a list of
``{Name, Type, Value}`` tuples sorted by name.  Clients address bindings by that
key, so it has to be the same number, which means computing the same hash over
the same term.

Theory of operation: :func:`phash2` walks a small model of Erlang terms
(:class:`Atom`, ``int``, ``bytes`` for binaries, ``tuple``, ``list``, ``float``)
the way the runtime's portable hash does: a running 32-bit value is mixed with
Bob Jenkins' 96-bit mix, using a per-type constant (multiples of the golden
ratio), tuples and lists are walked depth first, binaries are hashed in 12-byte
blocks seeded with the running value, and an atom hashes its name with
``hashpjw``.  :func:`amqp_term` turns a decoded argument table into that term;
the AMQP field type of each value is inferred from its Python type the way
common clients choose it (``signedint`` for a 32-bit integer, ``long`` beyond;
:class:`~rapidmq.core.message.Long` marks integers that came from JSON,
which RabbitMQ always types ``long``).
"""

from __future__ import annotations

import base64
import datetime
import struct
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from rapidmq.core.message import Long

__all__ = ["Atom", "amqp_term", "args_hash", "phash2"]

_MASK = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9


def _golden(n: int) -> int:
    return (_GOLDEN * n) & _MASK


_INT = _GOLDEN
_NIL = _golden(2)
_ATOM = _golden(3)
_BYTE_RUN = _golden(4)
_TUPLE = _golden(9)
_NEGATIVE_BIG = _golden(10)
_POSITIVE_BIG = _golden(11)
_FLOAT = _golden(12)
_BINARY = _golden(13)
#: What the hash of an empty list is when nothing was hashed before it.
_FIRST_NIL = 3468870702


class Atom(str):
    """An Erlang atom (a plain ``str`` is never a term here)."""

    __slots__ = ()


def _mix(a: int, b: int, c: int) -> tuple[int, int, int]:
    a = (a - b - c) & _MASK
    a ^= c >> 13
    b = (b - c - a) & _MASK
    b ^= (a << 8) & _MASK
    c = (c - a - b) & _MASK
    c ^= b >> 13
    a = (a - b - c) & _MASK
    a ^= c >> 12
    b = (b - c - a) & _MASK
    b ^= (a << 16) & _MASK
    c = (c - a - b) & _MASK
    c ^= b >> 5
    a = (a - b - c) & _MASK
    a ^= c >> 3
    b = (b - c - a) & _MASK
    b ^= (a << 10) & _MASK
    c = (c - a - b) & _MASK
    c ^= b >> 15
    return a, b, c


def _words(hash_: int, first: int, second: int, constant: int) -> int:
    return _mix((constant + first) & _MASK, (constant + second) & _MASK, hash_)[2]


def _atom_name_hash(name: str) -> int:
    value = 0
    for octet in name.encode("latin-1"):
        value = ((value << 4) + octet) & _MASK
        top = value & 0xF0000000
        if top:
            value ^= top >> 24
            value ^= top
    return value


def _binary(data: bytes, seed: int) -> int:
    a = b = _GOLDEN
    c = seed
    full = len(data) - len(data) % 12
    for at in range(0, full, 12):
        a = (a + int.from_bytes(data[at : at + 4], "little")) & _MASK
        b = (b + int.from_bytes(data[at + 4 : at + 8], "little")) & _MASK
        c = (c + int.from_bytes(data[at + 8 : at + 12], "little")) & _MASK
        a, b, c = _mix(a, b, c)
    tail = data[full:].ljust(12, b"\0")
    # The low byte of ``c`` takes the length instead of a twelfth tail byte.
    a = (a + int.from_bytes(tail[0:4], "little")) & _MASK
    b = (b + int.from_bytes(tail[4:8], "little")) & _MASK
    c = (c + len(data) + (int.from_bytes(tail[8:11], "little") << 8)) & _MASK
    return _mix(a, b, c)[2]


def _integer(hash_: int, value: int) -> int:
    if -(1 << 27) <= value < (1 << 27):
        if value < 0:  # the runtime mixes negative small integers twice
            hash_ = _words(hash_, -value, 0, _INT)
        return _words(hash_, value & _MASK, 0, _INT)
    constant = _NEGATIVE_BIG if value < 0 else _POSITIVE_BIG
    magnitude = abs(value)
    while True:  # 64-bit digits, least significant first
        digit = magnitude & 0xFFFFFFFFFFFFFFFF
        hash_ = _words(hash_, digit & _MASK, digit >> 32, constant)
        magnitude >>= 64
        if not magnitude:
            return hash_


def phash2(term: Any) -> int:
    """``erlang:phash2(Term, 1 bsl 32)`` for a term of the model above."""
    hash_ = 0
    stack: list[Any] = [term]
    while stack:
        item = stack.pop()
        if isinstance(item, Atom):
            name_hash = _atom_name_hash(item)
            hash_ = name_hash if hash_ == 0 else _words(hash_, name_hash, 0, _ATOM)
        elif isinstance(item, bool):
            raise TypeError("a boolean is the atom true or false")
        elif isinstance(item, int):
            hash_ = _integer(hash_, item)
        elif isinstance(item, bytes):
            seed = (_BINARY + hash_) & _MASK
            hash_ = _binary(item, seed) if item else seed
        elif isinstance(item, tuple):
            hash_ = _words(hash_, len(item), 0, _TUPLE)
            stack.extend(reversed(item))
        elif isinstance(item, list):
            # A run of integers 0..255 at the head is hashed four at a time.
            at = run = count = 0
            while at < len(item) and _is_byte(item[at]):
                run = ((run << 8) + item[at]) & _MASK
                at += 1
                count += 1
                if count == 4:
                    hash_ = _words(hash_, run, 0, _BYTE_RUN)
                    run = count = 0
            if count:
                hash_ = _words(hash_, run, 0, _BYTE_RUN)
            if at < len(item):
                stack.append(item[at + 1 :])
                stack.append(item[at])
            else:
                hash_ = _FIRST_NIL if hash_ == 0 else _words(hash_, 2, 0, _NIL)
        elif isinstance(item, float):
            bits = struct.unpack(">Q", struct.pack(">d", item + 0.0))[0]
            hash_ = _words(hash_, bits >> 32, bits & _MASK, _FLOAT)
        else:
            raise TypeError(f"no Erlang term for {item!r}")
    return hash_


def _is_byte(value: Any) -> bool:
    return type(value) in (int, Long) and 0 <= value <= 255


def _typed(value: Any) -> tuple[Atom, Any]:
    """``{Type, Value}`` as RabbitMQ's AMQP table parser makes it."""
    if isinstance(value, bool):
        return Atom("bool"), Atom("true" if value else "false")
    if isinstance(value, Long):
        return Atom("long"), int(value)
    if isinstance(value, int):
        return Atom("signedint" if -(2**31) <= value < 2**31 else "long"), value
    if isinstance(value, str):
        return Atom("longstr"), value.encode("utf-8", "surrogateescape")
    if isinstance(value, bytes | bytearray):
        return Atom("binary"), bytes(value)
    if isinstance(value, float):
        return Atom("double"), value
    if isinstance(value, Decimal):
        sign, digits, exponent = value.as_tuple()
        unscaled = int("".join(map(str, digits)) or "0") * (-1 if sign else 1)
        scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return Atom("decimal"), (scale, unscaled & _MASK)  # RabbitMQ reads it unsigned
    if isinstance(value, datetime.datetime):
        return Atom("timestamp"), int(value.timestamp())
    if isinstance(value, Mapping):
        return Atom("table"), _table(value)
    if isinstance(value, list | tuple):
        return Atom("array"), [_typed(item) for item in value]
    return Atom("void"), Atom("undefined")


def _table(table: Mapping[str, Any]) -> list[tuple[bytes, Atom, Any]]:
    return [(name.encode("utf-8"), *_typed(value)) for name, value in table.items()]


def amqp_term(arguments: Mapping[str, Any]) -> list[tuple[bytes, Atom, Any]]:
    """An argument table as RabbitMQ holds a binding's: sorted by name at the top level."""
    return sorted(_table(arguments), key=lambda field: field[0])


def args_hash(arguments: Mapping[str, Any]) -> str:
    """RabbitMQ's ``args_hash``: the six characters after ``~`` in a properties key."""
    digest = struct.pack(">I", phash2(amqp_term(arguments)))
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
