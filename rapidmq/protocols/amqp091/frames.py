"""The AMQP 0-9-1 frame parser: bytes in, events out, no I/O.

Theory of operation: the client first sends the 8-octet protocol header, then
frames of ``type:8 channel:16 size:32 payload[size] 0xCE``.  A method that
carries content (basic.publish) is followed on its channel by one content
header frame and as many body frames as the header announces; other channels'
frames may interleave, so the state of content assembly is kept per channel::

    no entry in _content --method with content--> awaiting header
    awaiting header --content header, size 0--> complete (event)
    awaiting header --content header, size n--> awaiting body (remaining n)
    awaiting body --body frames totalling n--> complete (event)

Any other frame where content is expected is an error, with RabbitMQ's reply
code and text (rabbit_reader and rabbit_command_assembler).  basic.publish
and basic.ack are decoded by hand; a publish whose three frames lie whole and
contiguous in the input is assembled without touching the per-channel state.
Every other method is decoded into its pamqp object.
"""

from __future__ import annotations

import struct
from typing import Any

from pamqp import commands
from pamqp.base import Frame

from rapidmq.core.message import EMPTY_PROPERTIES, Properties
from rapidmq.protocols.amqp091.access import ACCESS_METHODS
from rapidmq.protocols.amqp091.constants import (
    ACCEPTED_PROTOCOL_HEADERS,
    BASIC_ACK,
    BASIC_PUBLISH,
    CONTENT_METHODS,
    DEFAULT_FRAME_MAX,
    FRAME_END,
    MAX_BODY_SIZE,
    ReplyCode,
)
from rapidmq.protocols.amqp091.errors import FrameError, ProtocolHeaderMismatch, erlang_octets
from rapidmq.protocols.amqp091.events import (
    AckReceived,
    Event,
    HeartbeatReceived,
    MethodReceived,
    ProtocolHeaderReceived,
    PublishReceived,
)
from rapidmq.protocols.amqp091.properties import decode_properties, decode_shortstr, decode_table

__all__ = ["METHOD_PLANS", "FrameParser", "decode_method"]

_FRAME_HEAD = struct.Struct(">BHI")
_CONTENT_HEAD = struct.Struct(">HHQ")
_HEADER_FRAME = struct.Struct(">BHIHHQ")
_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")
_ACK = struct.Struct(">QB")
_EMPTY = b"\x00\x00"
_BASIC = 60


class _Content:
    """A content-bearing method waiting for its header and body frames."""

    __slots__ = ("chunks", "encoded", "index", "method", "properties", "remaining")

    def __init__(self, index: int, method: Any) -> None:
        self.index = index
        self.method = method  # (exchange, routing_key, mandatory, immediate) or a pamqp method
        self.remaining = -1  # -1 until the content header arrives
        self.properties: Properties = EMPTY_PROPERTIES
        self.encoded = _EMPTY
        self.chunks: list[bytes] = []


def _decode_longstr(data: bytes, offset: int) -> tuple[Any, int]:
    start = offset + 4
    end = start + _U32.unpack_from(data, offset)[0]
    if end > len(data):
        raise ValueError("truncated long string")
    raw = data[start:end]
    try:  # as pamqp does: text when it is UTF-8, else bytes
        return raw.decode("utf-8"), end
    except UnicodeDecodeError:
        return raw, end


def _build_plan(cls: type[Frame]) -> list[tuple[str, Any]]:
    plan: list[tuple[str, Any]] = []
    bits: list[str] | None = None
    for name in cls.__slots__:
        kind = cls.amqp_type(name)
        if kind == "bit":
            if bits is None or len(bits) == 8:
                bits = []
                plan.append(("bit", bits))
            bits.append(name)
        else:
            bits = None
            plan.append((kind, name))
    return plan


# Per method index: its pamqp class and (AMQP type, field name or bit names) in wire order.
METHOD_PLANS = {index: (cls, _build_plan(cls)) for index, cls in commands.INDEX_MAPPING.items()}
METHOD_PLANS.update({cls.index: (cls, _build_plan(cls)) for cls in ACCESS_METHODS})
_FIXED = {"octet": (struct.Struct(">B"), 1), "short": (_U16, 2), "long": (_U32, 4)}
_FIXED["longlong"] = (_U64, 8)


_RECOVER_ASYNC = 0x003C0064


def decode_method(index: int, arguments: bytes) -> Frame:
    """The pamqp method object for method ``index`` with encoded ``arguments``.

    Stricter than pamqp: every octet must be used.

    Raises:
        KeyError: unknown method index.
        ValueError: the arguments are malformed.
    """
    cls, plan = METHOD_PLANS[index]
    # pamqp warns on constructing the deprecated basic.recover-async; every field
    # is set from the plan below, so skipping __init__ loses nothing.
    method: Frame = object.__new__(cls) if index == _RECOVER_ASYNC else cls()
    offset = 0
    value: Any
    try:
        for kind, name in plan:
            if kind == "bit":
                octet = arguments[offset]
                offset += 1
                for position, bit_name in enumerate(name):
                    setattr(method, bit_name, bool(octet >> position & 1))
                continue
            if kind == "shortstr":
                value, offset = decode_shortstr(arguments, offset)
            elif kind == "table":
                value, offset = decode_table(arguments, offset)
            elif kind == "longstr":
                value, offset = _decode_longstr(arguments, offset)
            else:
                codec, size = _FIXED[kind]
                value = codec.unpack_from(arguments, offset)[0]
                offset += size
            setattr(method, name, value)
    except (struct.error, IndexError, KeyError, RecursionError) as exc:
        raise ValueError(f"malformed arguments: {exc!r}") from exc
    if offset != len(arguments):
        raise ValueError("trailing octets after the method arguments")
    return method


def _cannot_decode(index: int, arguments: bytes) -> FrameError:
    text = "cannot decode <<" + ",".join(map(str, arguments)) + ">>"
    return FrameError.of(ReplyCode.FRAME_ERROR, text, index)


def _unexpected(detail: str, index: int = 0) -> FrameError:
    return FrameError.of(ReplyCode.UNEXPECTED_FRAME, detail, index)


def _frame_error(ftype: int, payload: bytes, reason: str) -> FrameError:
    return FrameError.of(ReplyCode.FRAME_ERROR, f"type {ftype}, {erlang_octets(payload)}: {reason}")


def _expected(pending: _Content) -> FrameError:
    if pending.remaining < 0:
        detail = "expected content header for class 60, got non content header frame instead"
    else:
        detail = "expected content body, got non content body frame instead"
    return _unexpected(detail, pending.index)


class FrameParser:
    """Turns the bytes a client sends into :mod:`events`.

    Args:
        frame_max: the largest frame payload accepted; 0 for no limit.  The
            connection sets it to the negotiated value after connection.tune-ok.
        max_body_size: the largest message body accepted (RabbitMQ: 512 MiB).
    """

    def __init__(
        self, *, frame_max: int = DEFAULT_FRAME_MAX, max_body_size: int = MAX_BODY_SIZE
    ) -> None:
        self.frame_max = frame_max
        self.max_body_size = max_body_size
        self._header_seen = False
        self._buffer = bytearray()
        self._need = 0  # octets the buffer must hold before parsing can progress
        self._content: dict[int, _Content] = {}
        self._error: Exception | None = None

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Parse ``data`` and return the events it completes.

        Raises:
            ProtocolHeaderMismatch: the first 8 octets are not AMQP 0-9-1's header.
            FrameError: malformed input; ``err.events`` holds the events parsed
                before it.  Every later call raises the same error.
        """
        if self._error is not None:
            raise self._error
        if self._buffer:
            self._buffer += data
            if len(self._buffer) < self._need:
                return []
            buf = bytes(self._buffer)
            self._buffer.clear()
        else:
            buf = data if type(data) is bytes else bytes(data)
        events: list[Event] = []
        try:
            pos = self._parse(buf, events)
        except FrameError as err:
            err.events = events
            self._error = err
            raise
        except ProtocolHeaderMismatch as err:
            self._error = err
            raise
        if pos < len(buf):
            self._buffer += memoryview(buf)[pos:]
        return events

    def _parse(self, buf: bytes, events: list[Event]) -> int:
        n = len(buf)
        pos = 0
        if not self._header_seen:
            if n < 8:
                self._need = 8
                return 0
            if buf[:8] not in ACCEPTED_PROTOCOL_HEADERS:
                raise ProtocolHeaderMismatch(buf[:8])
            self._header_seen = True
            events.append(ProtocolHeaderReceived())
            pos = 8
        limit = self.frame_max
        content = self._content
        unpack_head = _FRAME_HEAD.unpack_from
        append = events.append
        while True:
            if n - pos < 7:
                self._need = 7
                return pos
            ftype, channel, size = unpack_head(buf, pos)
            if limit and size > limit:
                # RabbitMQ allows frame_max - 8 plus 8 octets of fudge.
                reason = f"{{frame_too_large,{size},{limit - 8}}}"
                raise _frame_error(ftype, b"", reason)
            end = pos + 7 + size
            if end >= n:
                self._need = size + 8
                return pos
            if buf[end] != FRAME_END:
                reason = f"{{invalid_frame_end_marker,{buf[end]}}}"
                raise _frame_error(ftype, buf[pos + 7 : end], reason)
            if ftype == 1 and size >= 4 and channel and channel not in content:
                index = _U32.unpack_from(buf, pos + 7)[0]
                if index == BASIC_PUBLISH:
                    pos = self._publish(buf, pos, channel, end, append)
                    continue
                if index == BASIC_ACK:
                    if size != 13:
                        raise _cannot_decode(index, buf[pos + 11 : end])
                    tag, bits = _ACK.unpack_from(buf, pos + 11)
                    append(AckReceived(channel, tag, bool(bits & 1)))
                    pos = end + 1
                    continue
            self._frame(ftype, channel, buf[pos + 7 : end], append)
            pos = end + 1

    def _publish(self, buf: bytes, pos: int, channel: int, end: int, append: Any) -> int:
        """Decode basic.publish at ``pos``; assemble its content when it follows whole."""
        p = pos + 13  # after the method index and the deprecated ticket
        q = p + 1 + buf[p] if p < end else end
        r = q + 1 + buf[q] if q < end else end
        if r + 1 != end:
            raise _cannot_decode(BASIC_PUBLISH, buf[pos + 11 : end])
        exchange = buf[p + 1 : q].decode("utf-8", "surrogateescape") if q > p + 1 else ""
        routing_key = buf[q + 1 : r].decode("utf-8", "surrogateescape") if r > q + 1 else ""
        mandatory = (buf[r] & 1) != 0
        immediate = (buf[r] & 2) != 0
        h = end + 1
        n = len(buf)
        if n - h >= 19:
            htype, hchannel, hsize, class_id, weight, body_size = _HEADER_FRAME.unpack_from(buf, h)
            hend: int = h + 7 + hsize
            limit = self.frame_max
            if (
                htype == 2
                and hchannel == channel
                and class_id == _BASIC
                and not weight
                and hend < n
                and buf[hend] == FRAME_END
                and hsize >= 14
                and (hsize <= limit or not limit)
                and body_size <= self.max_body_size
            ):
                encoded = buf[h + 19 : hend]
                properties = EMPTY_PROPERTIES if encoded == _EMPTY else _properties(encoded)
                b = hend + 1
                if not body_size:
                    append(
                        PublishReceived(
                            channel, exchange, routing_key, mandatory, immediate,
                            properties, encoded, b"",
                        )
                    )  # fmt: skip
                    return b
                if n - b >= 7:
                    btype, bchannel, bsize = _FRAME_HEAD.unpack_from(buf, b)
                    bend: int = b + 7 + bsize
                    if (
                        btype == 3
                        and bchannel == channel
                        and bsize == body_size
                        and bend < n
                        and buf[bend] == FRAME_END
                        and (bsize <= limit or not limit)
                    ):
                        append(
                            PublishReceived(
                                channel, exchange, routing_key, mandatory, immediate,
                                properties, encoded, buf[b + 7 : bend],
                            )
                        )  # fmt: skip
                        return bend + 1
        self._content[channel] = _Content(
            BASIC_PUBLISH, (exchange, routing_key, mandatory, immediate)
        )
        return h

    def _frame(self, ftype: int, channel: int, payload: bytes, append: Any) -> None:
        """Handle one frame the fast paths did not take."""
        if ftype == 1:
            if len(payload) < 4:
                raise _frame_error(ftype, payload, "unknown_frame")
            self._method(channel, _U32.unpack_from(payload)[0], payload[4:], append)
        elif ftype == 2:
            if len(payload) < 12:
                raise _frame_error(ftype, payload, "unknown_frame")
            self._content_header(channel, payload, append)
        elif ftype == 3:
            self._content_body(channel, payload, append)
        elif ftype == 8:
            if payload:
                raise _frame_error(ftype, payload, "unknown_frame")
            if channel:
                raise _unexpected(f"type 8, {erlang_octets(payload)}")
            append(HeartbeatReceived())
        else:
            raise _frame_error(ftype, payload, "unknown_frame")

    def _method(self, channel: int, index: int, arguments: bytes, append: Any) -> None:
        if index not in METHOD_PLANS:
            detail = f"unknown method {{{index >> 16},{index & 0xFFFF}}}"
            raise FrameError.of(ReplyCode.NOT_IMPLEMENTED, detail)
        pending = self._content.get(channel) if channel else None
        if pending is not None:
            raise _expected(pending)
        try:
            method: Any = decode_method(index, arguments)
        except ValueError:
            raise _cannot_decode(index, arguments) from None
        if channel and index in CONTENT_METHODS:
            if index == BASIC_PUBLISH:
                info = (method.exchange, method.routing_key, method.mandatory, method.immediate)
                self._content[channel] = _Content(index, info)
            else:
                self._content[channel] = _Content(index, method)
        elif channel and index == BASIC_ACK:
            append(AckReceived(channel, method.delivery_tag, method.multiple))
        else:
            append(MethodReceived(channel, method))

    def _content_header(self, channel: int, payload: bytes, append: Any) -> None:
        if not channel:
            raise _unexpected(f"type 2, {erlang_octets(payload)}")
        pending = self._content.get(channel)
        if pending is None:
            raise _unexpected("expected method frame, got non method frame instead")
        if pending.remaining >= 0:
            raise _expected(pending)
        class_id, weight, body_size = _CONTENT_HEAD.unpack_from(payload)
        if weight:
            raise _expected(pending)
        if class_id != _BASIC:
            detail = f"expected content header for class 60, got one for class {class_id} instead"
            raise _unexpected(detail, pending.index)
        if body_size > self.max_body_size:
            detail = f"content body size {body_size} exceeds maximum allowed size"
            raise FrameError.of(
                ReplyCode.FRAME_ERROR, f"{detail} {self.max_body_size}", pending.index
            )
        pending.encoded = payload[12:]
        if pending.index == BASIC_PUBLISH:
            pending.properties = _properties(pending.encoded)
        pending.remaining = body_size
        if not body_size:
            self._complete(channel, pending, append)

    def _content_body(self, channel: int, payload: bytes, append: Any) -> None:
        if not channel:
            raise _unexpected(f"type 3, {erlang_octets(payload)}")
        pending = self._content.get(channel)
        if pending is None:
            raise _unexpected("expected method frame, got non method frame instead")
        if pending.remaining < 0:
            raise _expected(pending)
        if len(payload) > pending.remaining:
            detail = "content body frame exceeds remaining content size"
            raise FrameError.of(ReplyCode.FRAME_ERROR, detail, pending.index)
        pending.chunks.append(payload)
        pending.remaining -= len(payload)
        if not pending.remaining:
            self._complete(channel, pending, append)

    def _complete(self, channel: int, pending: _Content, append: Any) -> None:
        del self._content[channel]
        if pending.index != BASIC_PUBLISH:
            append(MethodReceived(channel, pending.method))
            return
        chunks = pending.chunks
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        exchange, routing_key, mandatory, immediate = pending.method
        append(
            PublishReceived(
                channel, exchange, routing_key, mandatory, immediate,
                pending.properties, pending.encoded, body,
            )
        )  # fmt: skip


def _properties(encoded: bytes) -> Properties:
    if encoded == _EMPTY:
        return EMPTY_PROPERTIES
    try:
        return decode_properties(encoded)
    except ValueError:
        # RabbitMQ fails inside the channel process and reports only this.
        raise FrameError(ReplyCode.INTERNAL_ERROR, "INTERNAL_ERROR") from None
