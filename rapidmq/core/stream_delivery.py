"""A stream message as delivered: its headers carry ``x-stream-offset``.

Every delivery from a stream is a new message (the header differs for each),
so it is made cheaply: the encoded properties get the header spliced in by a
writer the codec provides (one concatenation, no encoding of the other
properties), and the :class:`Properties` record with the header is built only
if something reads it (the AMQP front end reads only the encoded form).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rapidmq.core.message import Long, Message, Properties

__all__ = ["OFFSET_HEADER", "OffsetStamp"]

OFFSET_HEADER = "x-stream-offset"
_PROPERTIES = Message.__dict__["properties"]  # the slot, under the property below

WriterFactory = Callable[[bytes, str], Callable[[int], bytes] | None]


class _Delivered(Message):
    """A message with ``x-stream-offset`` added to its headers."""

    __slots__ = ("_offset", "_plain")

    def __init__(self, message: Message, offset: int, encoded: bytes | None) -> None:
        self.exchange = message.exchange
        self.routing_key = message.routing_key
        self.body = message.body
        self.encoded_properties = encoded
        self.annotations = message.annotations
        self._plain = message.properties
        self._offset = offset
        _PROPERTIES.__set__(self, None)

    @property
    def properties(self) -> Properties:
        props: Properties | None = _PROPERTIES.__get__(self)
        if props is None:
            props = _with_header(self._plain, self._offset)
            _PROPERTIES.__set__(self, props)
        return props

    @properties.setter
    def properties(self, value: Properties) -> None:
        _PROPERTIES.__set__(self, value)


def _with_header(p: Properties, offset: int) -> Properties:
    value = Long(offset)
    headers: dict[str, Any] | None = p.headers
    return Properties(
        p.content_type,
        p.content_encoding,
        {**headers, OFFSET_HEADER: value} if headers else {OFFSET_HEADER: value},
        p.delivery_mode,
        p.priority,
        p.correlation_id,
        p.reply_to,
        p.expiration,
        p.message_id,
        p.timestamp,
        p.type,
        p.user_id,
        p.app_id,
        p.cluster_id,
    )


class OffsetStamp:
    """Makes delivered messages; keeps the header writer of the last encoding seen,
    which messages published alike share."""

    __slots__ = ("_factory", "_writer", "_writer_for")

    def __init__(self, factory: WriterFactory | None) -> None:
        self._factory = factory
        self._writer_for = b""
        self._writer: Callable[[int], bytes] | None = None

    def __call__(self, message: Message, offset: int) -> Message:
        encoded = message.encoded_properties
        factory = self._factory
        if encoded is None or factory is None:
            return _Delivered(message, offset, None)
        if encoded != self._writer_for:
            self._writer_for = encoded
            self._writer = factory(encoded, OFFSET_HEADER)
        writer = self._writer
        return _Delivered(message, offset, None if writer is None else writer(offset))
