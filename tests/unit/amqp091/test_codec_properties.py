"""Basic properties and field tables: round trips, and pamqp's octets where pamqp is exact."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pamqp import commands

from rapidmq.core.message import EMPTY_PROPERTIES, Properties
from rapidmq.protocols.amqp091.properties import (
    decode_properties,
    decode_table,
    encode_properties,
    encode_table,
)

UTC = datetime.UTC
shortstr = st.text(max_size=60)
keys = st.text(min_size=1, max_size=30)
seconds = st.integers(0, 253402300799)  # up to 9999-12-31T23:59:59Z
datetimes = seconds.map(lambda s: datetime.datetime.fromtimestamp(s, UTC))
decimals = st.builds(
    lambda mantissa, scale: Decimal(mantissa).scaleb(-scale),
    st.integers(-(2**31), 2**31 - 1),
    st.integers(0, 255),
)
int64 = st.integers(-(2**63), 2**63 - 1)

# Values pamqp encodes and decodes without loss, so both codecs must agree octet for octet.
pamqp_scalars = st.one_of(
    st.text(max_size=40),
    int64,
    st.booleans(),
    st.none(),
    st.builds(lambda m, s: Decimal(m).scaleb(-s), st.integers(0, 2**31 - 1), st.integers(0, 20)),
    st.integers(0, 2**32 - 1).map(lambda s: datetime.datetime.fromtimestamp(s, UTC)),
)
all_scalars = st.one_of(
    pamqp_scalars,
    st.binary(max_size=40),
    st.floats(allow_nan=False),
    decimals,
    datetimes,
)


def tables(scalars: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    values = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )
    return st.dictionaries(keys, values, max_size=6)


def properties(strings: st.SearchStrategy[str], headers: st.SearchStrategy[Any]) -> Any:
    return st.builds(
        Properties,
        content_type=st.none() | strings,
        content_encoding=st.none() | strings,
        headers=st.none() | headers,
        delivery_mode=st.none() | st.integers(0, 255),
        priority=st.none() | st.integers(0, 255),
        correlation_id=st.none() | strings,
        reply_to=st.none() | strings,
        expiration=st.none() | strings,
        message_id=st.none() | strings,
        timestamp=st.none() | st.integers(0, 2**64 - 1),
        type=st.none() | strings,
        user_id=st.none() | strings,
        app_id=st.none() | strings,
        cluster_id=st.none() | strings,
    )


def typed(value: Any) -> Any:
    """``value`` with the type of every part spelled out, so that True != 1."""
    if isinstance(value, dict):
        return ("dict", {k: typed(v) for k, v in value.items()})
    if isinstance(value, list):
        return ("list", [typed(v) for v in value])
    if isinstance(value, Decimal):
        return ("Decimal", value.as_tuple())
    return (type(value).__name__, value)


def typed_properties(props: Properties) -> Any:
    return {f.name: typed(getattr(props, f.name)) for f in dataclasses.fields(Properties)}


def to_pamqp(props: Properties) -> commands.Basic.Properties:
    theirs = commands.Basic.Properties()
    for field in dataclasses.fields(Properties):
        value = getattr(props, field.name)
        if field.name == "timestamp" and value is not None:
            value = datetime.datetime.fromtimestamp(value, UTC)
        setattr(theirs, "message_type" if field.name == "type" else field.name, value)
    return theirs


@given(properties(shortstr, tables(all_scalars)))
def test_properties_round_trip_exactly(props: Properties) -> None:
    assert typed_properties(decode_properties(encode_properties(props))) == typed_properties(props)


@given(properties(st.text(min_size=1, max_size=60), tables(pamqp_scalars)))
def test_properties_encode_to_pamqp_octets(props: Properties) -> None:
    if props.timestamp is not None:
        props = dataclasses.replace(props, timestamp=props.timestamp % 253402300800)
    assert encode_properties(props) == to_pamqp(props).marshal()


@given(tables(all_scalars))
def test_table_round_trip_exactly(table: dict[str, Any]) -> None:
    encoded = encode_table(table)
    assert typed(decode_table(encoded, 0)) == typed((table, len(encoded)))


def test_no_properties_are_two_zero_octets_both_ways() -> None:
    assert encode_properties(EMPTY_PROPERTIES) == b"\x00\x00"
    assert encode_properties(Properties()) == b"\x00\x00"
    assert decode_properties(b"\x00\x00") is EMPTY_PROPERTIES


def test_empty_string_property_is_present_and_empty() -> None:
    encoded = encode_properties(Properties(content_type=""))
    assert encoded == b"\x80\x00\x00"
    assert decode_properties(encoded) == Properties(content_type="")


def test_floats_and_bytes_use_double_and_byte_array_types() -> None:
    assert encode_table({"f": 0.1, "x": b"\x00\xff"}) == (
        b"\x00\x00\x00\x14\x01fd\x3f\xb9\x99\x99\x99\x99\x99\x9a\x01xx\x00\x00\x00\x02\x00\xff"
    )


def test_naive_datetime_is_taken_as_utc() -> None:
    naive = datetime.datetime(2024, 1, 2, 3, 4, 5)
    table, _ = decode_table(encode_table({"t": naive}), 0)
    assert table == {"t": naive.replace(tzinfo=UTC)}


@pytest.mark.parametrize(
    ("table", "error"),
    [
        ({"n": 2**63}, ValueError),
        ({"d": Decimal("NaN")}, ValueError),
        ({"d": Decimal(2**31)}, ValueError),
        ({"k" * 256: 1}, ValueError),
        ({"o": object()}, TypeError),
        ({"t": datetime.datetime(1969, 12, 31, tzinfo=UTC)}, ValueError),
    ],
)
def test_unencodable_values_raise(table: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        encode_table(table)


@pytest.mark.parametrize(
    "encoded",
    [
        b"\x80",  # truncated flags
        b"\x80\x00\x05ab",  # short string longer than the data
        b"\x20\x00\x00\x00\x00\x03\x01aZ",  # unknown field type Z
        b"\x20\x00\x00\x00\x00\x09\x01aS\x00\x00\x00\x09",  # long string past the table
        b"\x10\x00\x02\x00",  # a trailing octet after delivery-mode
    ],
)
def test_malformed_properties_raise_value_error(encoded: bytes) -> None:
    with pytest.raises(ValueError):
        decode_properties(encoded)


@given(st.binary(max_size=64))
def test_garbage_properties_raise_only_value_error(data: bytes) -> None:
    with contextlib.suppress(ValueError):
        decode_properties(data)
