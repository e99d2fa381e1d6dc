"""Errors raised by the AMQP 0-9-1 codec, and the table that turns core errors into reply codes.

    RapidMQError
    ├── FrameError              malformed frames: answer with connection.close(reply_code, text)
    └── ProtocolHeaderMismatch  not an AMQP 0-9-1 header: send PROTOCOL_HEADER and close

Texts follow RabbitMQ's reply texts character for character where RabbitMQ has
one, including its Erlang rendering of binaries (``<<0,60>>``, ``<<"abc">>``).
"""

from __future__ import annotations

from typing import Any

from rapidmq.core.errors import (
    AccessRefused,
    CommandInvalid,
    CoreError,
    NotAllowed,
    NotFound,
    NotImplementedFeature,
    PreconditionFailed,
    ResourceLimitExceeded,
    ResourceLocked,
    StorageFailed,
)
from rapidmq.errors import RapidMQError
from rapidmq.protocols.amqp091.constants import ReplyCode

__all__ = [
    "REPLY_CODES",
    "FrameError",
    "ProtocolHeaderMismatch",
    "erlang_binary",
    "erlang_octets",
]

#: Core error -> (reply code, reply name), the one translation table of this front end.
REPLY_CODES: dict[type[CoreError], tuple[int, str]] = {
    AccessRefused: (403, "ACCESS_REFUSED"),
    NotFound: (404, "NOT_FOUND"),
    ResourceLocked: (405, "RESOURCE_LOCKED"),
    PreconditionFailed: (406, "PRECONDITION_FAILED"),
    ResourceLimitExceeded: (406, "PRECONDITION_FAILED"),
    NotAllowed: (530, "NOT_ALLOWED"),
    CommandInvalid: (503, "COMMAND_INVALID"),
    NotImplementedFeature: (540, "NOT_IMPLEMENTED"),
    StorageFailed: (541, "INTERNAL_ERROR"),
}

_MAX_REPLY_TEXT = 255
# Erlang's ~p prints a binary as a string when every octet is printable latin-1.
_ESCAPES = {8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v", 12: "\\f", 13: "\\r", 27: "\\e"}
_ESCAPES.update({0x22: '\\"', 0x5C: "\\\\"})
_PRINTABLE = frozenset([*range(32, 127), *range(160, 256), *_ESCAPES])


def erlang_binary(data: bytes) -> str:
    """Render ``data`` as Erlang's ``~p`` does: ``<<"abc">>`` or ``<<0,255>>``."""
    if data and all(b in _PRINTABLE for b in data):
        return '<<"' + "".join(_ESCAPES.get(b) or chr(b) for b in data) + '">>'
    return "<<" + ",".join(map(str, data)) + ">>"


def erlang_octets(data: bytes) -> str:
    """RabbitMQ's payload snippet: ``all octets = ...`` or ``first 16 octets = ...``."""
    if len(data) <= 16:
        return "all octets = " + erlang_binary(data)
    return "first 16 octets = " + erlang_binary(data[:16])


class FrameError(RapidMQError):
    """The peer sent bytes that break the framing rules; the connection must close.

    Attributes:
        reply_code: the connection.close reply code.
        text: the full reply text, e.g. ``FRAME_ERROR - type 5, all octets = <<>>:
            unknown_frame``, cut to the 255 octets a shortstr holds as RabbitMQ does.
        class_id, method_id: the method the error concerns, or 0.
        events: events parsed from the same ``receive_data`` call before the
            error; handle them before closing, as RabbitMQ would have.
    """

    def __init__(
        self, reply_code: int, text: str, *, class_id: int = 0, method_id: int = 0
    ) -> None:
        if len(text.encode("utf-8", "surrogateescape")) > _MAX_REPLY_TEXT:
            cut = text.encode("utf-8", "surrogateescape")[: _MAX_REPLY_TEXT - 3]
            text = cut.decode("utf-8", "ignore") + "..."
        super().__init__(text)
        self.reply_code = ReplyCode(reply_code)
        self.text = text
        self.class_id = class_id
        self.method_id = method_id
        self.events: list[Any] = []

    @classmethod
    def of(cls, code: ReplyCode, detail: str, method_index: int = 0) -> FrameError:
        """A ``FrameError`` whose text is ``CODE_NAME - detail``."""
        return cls(
            code,
            f"{code.name} - {detail}",
            class_id=method_index >> 16,
            method_id=method_index & 0xFFFF,
        )

    def __repr__(self) -> str:
        return f"FrameError({int(self.reply_code)}, {self.text!r})"


class ProtocolHeaderMismatch(RapidMQError):
    """The first eight octets are not an AMQP 0-9-1 protocol header.

    RabbitMQ answers with its own header, ``AMQP\\x00\\x00\\x09\\x01``, and closes.
    """

    def __init__(self, received: bytes) -> None:
        super().__init__(f"unsupported protocol header {received!r}")
        self.received = received
