"""Record values round-trip exactly, and encoded keys sort as their tuples do."""

from __future__ import annotations

import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rapidmq.storage.records import (
    decode_key,
    decode_value,
    encode_key,
    encode_value,
    prefix_end,
    record_key,
)

AWKWARD: dict[str, Any] = {
    "bytes": b"\x00\xff\x80 raw",
    "empty": b"",
    "text": "caf\u00e9 \U0001f600 \x00 \udc80",
    "nested": {"x-args": {"deep": [1, b"\x01", {"$bytes": "not a tag"}]}, "$map": 1},
    "when": datetime.datetime(2024, 2, 29, 23, 59, 59, 123456, tzinfo=datetime.UTC),
    "elsewhere": datetime.datetime(
        2001, 1, 1, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))
    ),
    "naive": datetime.datetime(1999, 12, 31, 12, 0),
    "money": Decimal("1.50"),
    "exponent": Decimal("-7E+3"),
    "tuple": (1, "two", (b"3",)),
    "list": [True, False, None, 0, -(2**63), 2**64, 0.1, -0.0, 1e300],
    "big": 10**30,
}


def test_awkward_values_round_trip_exactly() -> None:
    decoded = decode_value(encode_value(AWKWARD))

    assert decoded == AWKWARD
    assert [type(value) for value in decoded.values()] == [type(v) for v in AWKWARD.values()]
    assert decoded["elsewhere"].utcoffset() == datetime.timedelta(hours=-5, minutes=-30)
    assert str(decoded["money"]) == "1.50"
    assert decoded["nested"]["x-args"]["deep"][2] == {"$bytes": "not a tag"}


def test_encoded_value_is_tagged_ascii_json() -> None:
    value = {"b": b"\x00", "t": (1,), "d": Decimal("2.5"), "$x": "s\u00e9"}

    assert encode_value(value) == (
        b'{"$map":{"b":{"$bytes":"AA=="},"t":{"$tuple":[1]},"d":{"$decimal":"2.5"},'
        b'"$x":"s\\u00e9"}}'
    )


def test_nan_and_infinities_round_trip() -> None:
    decoded = decode_value(encode_value({"v": [float("nan"), float("inf"), float("-inf")]}))

    assert [repr(item) for item in decoded["v"]] == ["nan", "inf", "-inf"]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"k": {1: "x"}}, "record dict keys must be str, not int"),
        ({"k": {1, 2}}, "cannot store set in a record: {1, 2}"),
        ({"k": object}, "cannot store type in a record: <class 'object'>"),
    ],
)
def test_values_records_cannot_carry_are_refused(value: dict[str, Any], message: str) -> None:
    with pytest.raises(TypeError) as info:
        encode_value(value)

    assert str(info.value) == message


def test_unknown_tag_is_refused() -> None:
    with pytest.raises(ValueError) as info:
        decode_value(b'{"k":{"$pickle":"x"}}')

    assert str(info.value) == "unknown tag '$pickle' in a stored record"


def test_key_encoding_escapes_nul_and_terminates_each_part() -> None:
    assert encode_key(("a\x00b", "", "\u00e9")) == b"a\x00\xffb\x00\x01\x00\x01\xc3\xa9\x00\x01"
    assert decode_key(b"a\x00\xffb\x00\x01\x00\x01\xc3\xa9\x00\x01") == ("a\x00b", "", "\u00e9")


def test_record_key_checks_kind_and_arity() -> None:
    assert record_key("queue", ("/", "q")) == b"queue\x00\x01/\x00\x01q\x00\x01"
    with pytest.raises(ValueError) as unknown:
        record_key("queues", ("/", "q"))
    with pytest.raises(ValueError) as arity:
        record_key("queue", ("q",))

    assert str(unknown.value) == "unknown metadata kind 'queues'"
    assert str(arity.value) == "a queue key is 2 strings ('vhost', 'name'), not ('q',)"


def test_prefix_end_bounds_exactly_the_keys_with_the_prefix() -> None:
    prefix = encode_key(("/", "q"))
    inside = [prefix, prefix + b"\xff" * 8, prefix + (7).to_bytes(8, "big")]
    outside = [encode_key(("/", "q\x00")), encode_key(("/", "r")), encode_key(("/",))]

    assert [prefix <= key < prefix_end(prefix) for key in inside + outside] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert prefix_end(b"a\xff\xff") == b"b"


# Surrogates included: AMQP strings that were not UTF-8 arrive surrogate-escaped.
_TEXT = st.text(st.characters(codec=None, exclude_categories=()), max_size=6)
_TUPLES = st.lists(_TEXT, max_size=4).map(tuple)


@given(st.lists(_TUPLES, max_size=20))
def test_encoded_keys_sort_as_their_tuples(keys: list[tuple[str, ...]]) -> None:
    assert sorted(keys, key=encode_key) == sorted(keys)


@given(_TUPLES)
def test_keys_round_trip(key: tuple[str, ...]) -> None:
    assert decode_key(encode_key(key)) == key


_LEAVES = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | _TEXT
    | st.binary(max_size=8)
    | st.decimals(allow_nan=False, allow_infinity=False)
    | st.datetimes(timezones=st.just(datetime.UTC))
)
_VALUES = st.recursive(
    _LEAVES,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.lists(inner, max_size=3).map(tuple)
        | st.dictionaries(_TEXT, inner, max_size=3)
    ),
    max_leaves=12,
)


@given(st.dictionaries(_TEXT, _VALUES, max_size=4))
def test_values_round_trip(value: dict[str, Any]) -> None:
    assert decode_value(encode_value(value)) == value
