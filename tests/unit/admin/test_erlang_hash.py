"""RabbitMQ's binding argument hashes, with values read off RabbitMQ 3.10.8's management API."""

from __future__ import annotations

from typing import Any

import pytest

from rapidmq.admin.erlang_hash import Atom, args_hash, phash2
from rapidmq.admin.resources import properties_key
from rapidmq.core.message import Long

# (arguments as a client binds them, the hash RabbitMQ 3.10.8 showed after the "~").
RABBITMQ_HASHES: list[tuple[dict[str, Any], str]] = [
    ({"a": 1}, "rnJaMg"),
    ({"b": 2, "a": 1}, "7cSSUw"),
    ({"a": 1, "b": 2}, "7cSSUw"),
    ({"x-match": "all", "k": "v"}, "g-1wFg"),
    ({"s": "str", "n": -5, "b": True}, "OBMdzA"),
    ({"big": 2**40}, "PAtzfA"),
    ({"neg": -(2**31) - 5}, "cukF7A"),
    ({"l": [1, "a"]}, "LkZA-Q"),
    ({"t": {"z": 1}}, "xwWdAg"),
    ({"d": b"bytes"}, "uaiHtA"),
    ({"v": None}, "wLtq5A"),
    ({"small": 100000000}, "h_uSzA"),
    ({"e": ""}, "xDY5TA"),
    ({"long": "abcdefghijklmnopqrstuvwxyz"}, "SSBh8w"),
    ({"a": Long(1), "s": "x", "b": True}, "0tyoqA"),  # created over HTTP: integers are long
    ({"a": Long(1)}, "Ajat_Q"),
]


@pytest.mark.parametrize(("arguments", "expected"), RABBITMQ_HASHES)
def test_args_hash_is_rabbitmqs(arguments: dict[str, Any], expected: str) -> None:
    assert args_hash(arguments) == expected


def test_properties_key_joins_the_quoted_key_and_the_hash() -> None:
    assert [
        properties_key("", {}),
        properties_key("a b~c", {}),
        properties_key("k", {"a": 1}),
        properties_key("", {"a": 1}),
    ] == ["~", "a+b%7Ec", "k~rnJaMg", "~rnJaMg"]


def test_phash2_agrees_with_the_erlang_runtime() -> None:
    # Values from erlang:phash2(Term, 1 bsl 32) on the OTP 25 runtime under RabbitMQ 3.10.8.
    assert [
        phash2(Atom("a")),
        phash2([]),
        phash2(b""),
        phash2((1.5, -7, 1 << 70, [97, 98, 99, 100, 101])),
        phash2([(Atom("a"), Atom("b")), [1, 300]]),
        phash2(-200000000),
    ] == [97, 3468870702, 147926629, 1572950204, 599959965, 873524385]
