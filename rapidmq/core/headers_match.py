"""Headers-exchange matching with RabbitMQ 3.10's rules.

``x-match`` is ``all`` (the default), ``any``, ``all-with-x`` or ``any-with-x``.
Binding keys starting with ``x-`` are ignored unless the mode ends in
``-with-x``; ``x-match`` itself is always ignored.  A binding value of ``None``
(AMQP void) matches any value of a header that is present.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rapidmq.core.arguments import amqp_type_name, erlang_repr
from rapidmq.core.errors import PreconditionFailed

__all__ = ["HeadersPattern", "validate_headers_binding"]

_MODES = {"all": "all", "any": "any", "all-with-x": "all", "any-with-x": "any"}


def validate_headers_binding(arguments: Mapping[str, Any]) -> None:
    """Raise 406 for an ``x-match`` RabbitMQ refuses."""
    if "x-match" not in arguments:
        return
    mode = arguments["x-match"]
    if isinstance(mode, bytes):
        mode = mode.decode("utf-8", "replace")
    if isinstance(mode, str):
        if mode not in _MODES:
            raise PreconditionFailed(
                f'Invalid x-match field value <<"{mode}">>; '
                "expected all, any, all-with-x, or any-with-x"
            )
        return
    raise PreconditionFailed(
        f"Invalid x-match field type {amqp_type_name(mode)} "
        f"(value {erlang_repr(mode)}); expected longstr"
    )


def _same(pattern: object, value: object) -> bool:
    # Erlang compares terms: true is not 1, and a longstr is bytes either way.
    if isinstance(pattern, bool) or isinstance(value, bool):
        return type(pattern) is type(value) and pattern == value
    if isinstance(pattern, str) and isinstance(value, bytes | bytearray):
        return pattern.encode() == value
    if isinstance(value, str) and isinstance(pattern, bytes | bytearray):
        return value.encode() == pattern
    return pattern == value


@dataclass(slots=True, frozen=True)
class HeadersPattern:
    """One headers binding, prepared for matching."""

    match_any: bool
    fields: tuple[tuple[str, Any], ...]

    @classmethod
    def from_arguments(cls, arguments: Mapping[str, Any]) -> HeadersPattern:
        mode = arguments.get("x-match", "all")
        if isinstance(mode, bytes):
            mode = mode.decode("utf-8", "replace")
        with_x = mode in ("all-with-x", "any-with-x")
        fields = tuple(
            (key, value)
            for key, value in arguments.items()
            if key != "x-match" and (with_x or not key.startswith("x-"))
        )
        return cls(match_any=_MODES.get(mode, "all") == "any", fields=fields)

    def matches(self, headers: Mapping[str, Any] | None) -> bool:
        """True if a message with ``headers`` matches this binding."""
        if headers is None:
            headers = {}
        if self.match_any:
            for key, expected in self.fields:
                if key in headers and (expected is None or _same(expected, headers[key])):
                    return True
            return False
        for key, expected in self.fields:
            if key not in headers:
                return False
            if expected is not None and not _same(expected, headers[key]):
                return False
        return True
