"""The stored form of a persistent message: compact binary, no pickle.

Layout (big-endian)::

    version:u8  flags:u8  len(exchange):u16  len(routing_key):u16
    len(properties):u32  len(body):u32  len(annotations):u32
    exchange  routing_key  properties  body  annotations

``properties`` are the AMQP 0-9-1 property flags and values, encoded by the
functions the server injects (the core imports no protocol), and reused from
``Message.encoded_properties`` when the front end already has them.
``annotations`` (MQTT's facts about a message) are JSON, kept only when they
are JSON-able; ``published_at`` is a monotonic clock reading, meaningless after
a restart, so it is never stored.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from typing import Any

from rapidmq.core.message import Message, Properties

__all__ = ["MessageCodec"]

_VERSION = 1
_HEADER = struct.Struct(">BBHHIII")
_HAS_ANNOTATIONS = 0x01
_UNSTORED_ANNOTATIONS = frozenset({"published_at"})


class MessageCodec:
    """Turns a :class:`Message` into the bytes a ``MessageStore`` keeps, and back."""

    __slots__ = ("_decode_properties", "_encode_properties")

    def __init__(
        self,
        encode_properties: Callable[[Properties], bytes],
        decode_properties: Callable[[bytes], Properties],
    ) -> None:
        self._encode_properties = encode_properties
        self._decode_properties = decode_properties

    def encode(self, message: Message) -> bytes:
        """The stored form of ``message``."""
        props = message.encoded_properties
        if props is None:
            # The same cache the AMQP front end fills: computing it once is idempotent.
            props = message.encoded_properties = self._encode_properties(message.properties)
        exchange = message.exchange.encode()
        routing_key = message.routing_key.encode()
        annotations = _encode_annotations(message.annotations)
        flags = 0 if annotations is None else _HAS_ANNOTATIONS
        extra = annotations or b""
        body = message.body
        return b"".join(
            (
                _HEADER.pack(
                    _VERSION,
                    flags,
                    len(exchange),
                    len(routing_key),
                    len(props),
                    len(body),
                    len(extra),
                ),
                exchange,
                routing_key,
                props,
                body,
                extra,
            )
        )

    def decode(self, data: bytes) -> Message:
        """The message stored as ``data``.

        Raises:
            ValueError: ``data`` is not a stored message of a known version.
        """
        try:
            version, flags, n_exchange, n_key, n_props, n_body, n_extra = _HEADER.unpack_from(
                data, 0
            )
        except struct.error as exc:
            raise ValueError(f"truncated stored message: {exc}") from None
        if version != _VERSION:
            raise ValueError(f"stored message of unknown version {version}")
        offset = _HEADER.size
        end = offset + n_exchange + n_key + n_props + n_body + n_extra
        if end != len(data):
            raise ValueError(f"stored message of {len(data)} bytes, its header says {end}")
        view = memoryview(data)
        exchange = bytes(view[offset : offset + n_exchange]).decode()
        offset += n_exchange
        routing_key = bytes(view[offset : offset + n_key]).decode()
        offset += n_key
        props = bytes(view[offset : offset + n_props])
        offset += n_props
        body = bytes(view[offset : offset + n_body])
        offset += n_body
        annotations = None
        if flags & _HAS_ANNOTATIONS:
            annotations = _decode_annotations(bytes(view[offset : offset + n_extra]))
        return Message(
            exchange, routing_key, body, self._decode_properties(props), props, annotations
        )


def _encode_annotations(annotations: Any) -> bytes | None:
    if not annotations:
        return None
    kept = {k: v for k, v in annotations.items() if k not in _UNSTORED_ANNOTATIONS}
    if not kept:
        return None
    try:
        return json.dumps(kept, separators=(",", ":"), allow_nan=False).encode()
    except (TypeError, ValueError):
        # Not JSON-able: stored without them, as a message from AMQP would be.
        return None


def _decode_annotations(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError as exc:
        raise ValueError(f"unreadable annotations of a stored message: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("the annotations of a stored message are not a table")
    pairs = value.get("user_properties")
    if isinstance(pairs, list):
        # JSON has no tuples; MQTT keeps its user properties as (key, value) pairs.
        value["user_properties"] = tuple(tuple(p) if isinstance(p, list) else p for p in pairs)
    return value
