"""Errors the core raises when a client asks for something it refuses.

Each error carries its *scope*: ``"channel"`` errors end only the session that
caused them, ``"connection"`` errors end the whole connection.  The protocol
front ends translate them with one table each (AMQP reply codes, MQTT reason
codes).  ``text`` is the human part of RabbitMQ's reply text, without the
``NOT_FOUND - `` prefix, e.g. ``no queue 'q1' in vhost '/'``.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from rapidmq.errors import RapidMQError

__all__ = [
    "AccessRefused",
    "CommandInvalid",
    "CoreError",
    "NotAllowed",
    "NotFound",
    "NotImplementedFeature",
    "PreconditionFailed",
    "ResourceLimitExceeded",
    "ResourceLocked",
    "Scope",
    "StorageFailed",
]

Scope = Literal["channel", "connection"]


class CoreError(RapidMQError):
    """A refusal by the core. ``str(err)`` is the human-readable text."""

    default_scope: ClassVar[Scope] = "channel"

    def __init__(self, text: str, *, scope: Scope | None = None) -> None:
        super().__init__(text)
        self.text = text
        self.scope: Scope = scope or self.default_scope


class NotFound(CoreError):
    """The named exchange, queue or consumer does not exist (AMQP 404)."""


class AccessRefused(CoreError):
    """The client may not do this (AMQP 403)."""


class ResourceLocked(CoreError):
    """The resource is held by another connection, e.g. an exclusive queue (AMQP 405)."""


class PreconditionFailed(CoreError):
    """A declared property disagrees with the existing object, or a bad argument (AMQP 406)."""


class ResourceLimitExceeded(CoreError):
    """A configured limit was reached (AMQP 406 in a channel, 530 for connections)."""


class NotAllowed(CoreError):
    """Not allowed at connection level, e.g. an unknown vhost (AMQP 530)."""

    default_scope: ClassVar[Scope] = "connection"


class CommandInvalid(CoreError):
    """The command makes no sense, e.g. an unknown exchange type (AMQP 503)."""

    default_scope: ClassVar[Scope] = "connection"


class NotImplementedFeature(CoreError):
    """A feature RapidMQ does not implement (AMQP 540)."""

    default_scope: ClassVar[Scope] = "connection"


class StorageFailed(CoreError):
    """A durable object could not be written to the metadata store (AMQP 541).

    The operation is refused rather than done without durability; the front end
    closes the connection, since 541 INTERNAL_ERROR is a connection error.
    """

    default_scope: ClassVar[Scope] = "connection"
