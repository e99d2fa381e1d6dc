"""A long header spliced into encoded properties: the octets decode as if encoded whole."""

from __future__ import annotations

import pytest

from rapidmq.core.message import Long, Properties
from rapidmq.protocols.amqp091.properties import (
    add_long_header,
    decode_properties,
    encode_properties,
    long_header_writer,
)

KEY = "x-stream-offset"


@pytest.mark.parametrize(
    "properties",
    [
        Properties(),
        Properties(delivery_mode=2),
        Properties(content_type="text/plain", content_encoding="gzip", priority=3),
        Properties(content_type="a", headers={"h": 1, "z": "text"}, message_id="m", timestamp=7),
        Properties(headers={}),
    ],
)
@pytest.mark.parametrize("value", [0, 1, 2**40, -5])
def test_a_spliced_long_header_decodes_as_the_whole_encoding_would(
    properties: Properties, value: int
) -> None:
    encoded = encode_properties(properties)
    expected_headers = {**(properties.headers or {}), KEY: value}
    writer = long_header_writer(encoded, KEY)
    assert writer is not None
    for spliced in (add_long_header(encoded, KEY, value), writer(value)):
        assert spliced is not None
        decoded = decode_properties(spliced)
        assert decoded.headers == expected_headers
        assert decoded == Properties(**{**vars_of(properties), "headers": expected_headers})
        assert b"\x0fx-stream-offsetl" + value.to_bytes(8, "big", signed=True) in spliced


def test_a_header_already_named_so_is_left_to_a_whole_encoding() -> None:
    encoded = encode_properties(Properties(headers={KEY: 3}))
    assert (add_long_header(encoded, KEY, 4), long_header_writer(encoded, KEY)) == (None, None)


def test_a_long_header_value_is_encoded_as_a_long_whatever_its_size() -> None:
    encoded = encode_properties(Properties(headers={KEY: Long(1)}))
    assert encoded.endswith(b"\x0fx-stream-offsetl" + (1).to_bytes(8, "big"))


def vars_of(properties: Properties) -> dict[str, object]:
    return {name: getattr(properties, name) for name in Properties.__dataclass_fields__}
