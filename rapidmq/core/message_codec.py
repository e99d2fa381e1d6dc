"""The stored form of a persistent message: compact binary, no pickle.

Layout (big-endian)::

    version:u8  flags:u8  len(exchange):u16  len(routing_key):u16
    len(properties):u32  len(body):u32  len(annotations):u32  published_at:f64
    exchange  routing_key  properties  body  annotations

``published_at`` (version 2) is the wall-clock time of the publish in seconds,
so a recovered message's TTL counts from its publish, not from the restart.
Version 1 records (without it) are still read; their TTL counts from the
restart.  Each record carries its version, so the data dir format is unchanged.

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

_VERSION = 2
_HEADER_V1 = struct.Struct(">BBHHIII")
_HEADER = struct.Struct(">BBHHIIId")
_HAS_ANNOTATIONS = 0x01
_UNSTORED_ANNOTATIONS = frozenset({"published_at"})


class MessageCodec:
    """Turns a :class:`Message` into the bytes a ``MessageStore`` keeps, and back."""

    __slots__ = (
        "_decode_properties",
        "_encode_properties",
        "_last_names",
        "_last_props",
        "long_header_writer",
    )

    def __init__(
        self,
        encode_properties: Callable[[Properties], bytes],
        decode_properties: Callable[[bytes], Properties],
        long_header_writer: Callable[[bytes, str], Callable[[int], bytes] | None] | None = None,
    ) -> None:
        self._encode_properties = encode_properties
        self._decode_properties = decode_properties
        # Sets one long header in encoded properties without encoding them all again
        # (a stream's x-stream-offset on every delivery); None: encode them.
        self.long_header_writer = long_header_writer
        # Recovery decodes runs of messages alike: the last properties and names are
        # shared with the next message that has the same bytes (a recovered queue of a
        # million messages then holds one Properties, not a million).
        self._last_props: tuple[bytes, Properties] | None = None
        self._last_names: tuple[bytes, int, str, str] = (b"", 0, "", "")

    def encode(self, message: Message, published_at_s: float = 0.0, prefix: bytes = b"") -> bytes:
        """The stored form of ``message``, published at wall-clock ``published_at_s``.

        ``published_at_s`` is seconds since the epoch; 0 means unknown.  ``prefix``
        goes before it in the same copy (a stream's flag byte).
        """
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
                prefix,
                _HEADER.pack(
                    _VERSION,
                    flags,
                    len(exchange),
                    len(routing_key),
                    len(props),
                    len(body),
                    len(extra),
                    published_at_s,
                ),
                exchange,
                routing_key,
                props,
                body,
                extra,
            )
        )

    @staticmethod
    def record_facts(data: bytes, offset: int = 0) -> tuple[float | None, int]:
        """The publish time and body size of the record at ``offset`` of ``data``,
        without decoding it (a stream's index at start-up).

        Raises:
            ValueError: not a stored message of a known version.
        """
        try:
            version = data[offset]
            if version == _VERSION:
                fields = _HEADER.unpack_from(data, offset)
                return (fields[7] or None), fields[5]
            if version == 1:
                return None, _HEADER_V1.unpack_from(data, offset)[5]
        except (struct.error, IndexError) as exc:
            raise ValueError(f"truncated stored message: {exc}") from None
        raise ValueError(f"stored message of unknown version {version}")

    def decode_all(self, records: list[bytes], skip: int = 0) -> list[Message]:
        """The messages stored in ``records``, each starting ``skip`` bytes in (a
        stream's flag byte): :meth:`decode` in one loop, for a stream read.

        Raises:
            ValueError: a record is not a stored message of a known version.
        """
        messages = []
        unpack = _HEADER.unpack_from
        size = _HEADER.size
        last_names, last_props = self._last_names, self._last_props
        for data in records:
            if data[skip] != _VERSION:
                messages.append(self.decode(data[skip:]))
                continue
            try:
                _, flags, n_exchange, n_key, n_props, n_body, n_extra, _ = unpack(data, skip)
            except struct.error as exc:
                raise ValueError(f"truncated stored message: {exc}") from None
            start = skip + size
            names_end = start + n_exchange + n_key
            body_start = names_end + n_props
            body_end = body_start + n_body
            if body_end + n_extra != len(data):
                raise ValueError(f"stored message of {len(data) - skip} bytes, its header differs")
            raw_names = data[start:names_end]
            if raw_names != last_names[0] or n_exchange != last_names[1]:
                last_names = (
                    raw_names,
                    n_exchange,
                    raw_names[:n_exchange].decode(),
                    raw_names[n_exchange:].decode(),
                )
            props = data[names_end:body_start]
            if last_props is None or props != last_props[0]:
                last_props = (props, self._decode_properties(props))
            annotations = None
            if flags & _HAS_ANNOTATIONS:
                annotations = _decode_annotations(data[body_end : body_end + n_extra])
            messages.append(
                Message(
                    last_names[2],
                    last_names[3],
                    data[body_start:body_end],
                    last_props[1],
                    last_props[0],
                    annotations,
                )
            )
        self._last_names, self._last_props = last_names, last_props
        return messages

    def decode(self, data: bytes) -> Message:
        """The message stored as ``data``.

        Raises:
            ValueError: ``data`` is not a stored message of a known version.
        """
        return self.decode_record(data)[0]

    def decode_record(
        self, data: bytes, *, with_body: bool = True
    ) -> tuple[Message, float | None, int]:
        """The message stored as ``data``, its publish time and its body size.

        Args:
            with_body: False leaves the body out (``b""``): recovery of a long queue.

        Returns:
            The message, the wall-clock publish time in seconds (None if not
            stored), and the size of the body in bytes.

        Raises:
            ValueError: ``data`` is not a stored message of a known version.
        """
        try:
            version = data[0]
            if version == _VERSION:
                header = _HEADER
            elif version == 1:
                header = _HEADER_V1
            else:
                raise ValueError(f"stored message of unknown version {version}")
            fields = header.unpack_from(data, 0)
        except (struct.error, IndexError) as exc:
            raise ValueError(f"truncated stored message: {exc}") from None
        flags, n_exchange, n_key, n_props, n_body, n_extra = fields[1:7]
        published_at = fields[7] if version == _VERSION and fields[7] > 0 else None
        offset = header.size
        end = offset + n_exchange + n_key + n_props + n_body + n_extra
        if end != len(data):
            raise ValueError(f"stored message of {len(data)} bytes, its header says {end}")
        view = memoryview(data)
        names_end = offset + n_exchange + n_key
        raw_names = bytes(view[offset:names_end])
        last_names = self._last_names
        if raw_names == last_names[0] and n_exchange == last_names[1]:
            exchange, routing_key = last_names[2], last_names[3]
        else:
            exchange = raw_names[:n_exchange].decode()
            routing_key = raw_names[n_exchange:].decode()
            self._last_names = (raw_names, n_exchange, exchange, routing_key)
        offset = names_end
        props = bytes(view[offset : offset + n_props])
        offset += n_props
        last_props = self._last_props
        if last_props is not None and last_props[0] == props:
            props, properties = last_props
        else:
            properties = self._decode_properties(props)
            self._last_props = (props, properties)
        body = bytes(view[offset : offset + n_body]) if with_body else b""
        offset += n_body
        annotations = None
        if flags & _HAS_ANNOTATIONS:
            annotations = _decode_annotations(bytes(view[offset : offset + n_extra]))
        message = Message(exchange, routing_key, body, properties, props, annotations)
        return message, published_at, n_body


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
