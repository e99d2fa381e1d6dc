"""Direct reply-to: the ``amq.rabbitmq.reply-to`` pseudo-queue, as RabbitMQ has it.

Theory of operation: a session that consumes ``amq.rabbitmq.reply-to`` (no-ack
only, one per session) is given an unguessable suffix and registered here under
it, in its virtual host's registry.  When that session publishes a message whose
``reply_to`` is ``amq.rabbitmq.reply-to``, the core rewrites it to
``amq.rabbitmq.reply-to.<suffix>``.  A publish to the default exchange with that
name as routing key is handed straight to the consumer: no queue, no credit, no
acknowledgement.  When the session is gone, the name is gone, and such a reply is
dropped silently.

The suffix is the session's only credential: anyone who knows it can reply, so
it is made of random bytes rather than of anything a client could derive, as
RabbitMQ's mixes a secret key into its own.  Registries are per virtual host (so a
reply cannot cross tenants, which RabbitMQ would allow), and held weakly, so a
deleted virtual host takes its registry with it.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from weakref import WeakKeyDictionary

if TYPE_CHECKING:
    from rapidmq.core.message import Message
    from rapidmq.core.session import Session
    from rapidmq.core.vhost import VirtualHost

__all__ = [
    "REPLY_PREFIX",
    "REPLY_QUEUE",
    "ReplyConsumer",
    "ReplyRegistry",
    "registry_for",
]

REPLY_QUEUE = "amq.rabbitmq.reply-to"
REPLY_PREFIX = REPLY_QUEUE + "."

# 16 bytes identify the broker process, as RabbitMQ's suffix names its node and
# channel pid; 18 more are the secret.  Both are random, so no suffix predicts another.
_PROCESS_ID = base64.urlsafe_b64encode(secrets.token_bytes(12)).decode("ascii")
_SECRET_BYTES = 18


@dataclass(slots=True, frozen=True)
class ReplyConsumer:
    """A session's consumer of ``amq.rabbitmq.reply-to``."""

    tag: str
    suffix: str
    session: Session

    @property
    def reply_to(self) -> str:
        """The name a request's ``reply_to`` is rewritten to."""
        return REPLY_PREFIX + self.suffix


class ReplyRegistry:
    """The reply consumers of one virtual host, by suffix."""

    def __init__(self) -> None:
        self._by_suffix: dict[str, ReplyConsumer] = {}
        self.delivered = 0
        self.dropped = 0

    def register(self, session: Session, tag: str) -> ReplyConsumer:
        """Give ``session``'s reply consumer ``tag`` a fresh suffix."""
        while True:
            secret = base64.urlsafe_b64encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii")
            suffix = f"{_PROCESS_ID}.{secret}"
            if suffix not in self._by_suffix:
                break
        consumer = ReplyConsumer(tag, suffix, session)
        self._by_suffix[suffix] = consumer
        return consumer

    def unregister(self, consumer: ReplyConsumer) -> None:
        """Forget ``consumer``; replies to its name are dropped from now on."""
        if self._by_suffix.get(consumer.suffix) is consumer:
            del self._by_suffix[consumer.suffix]

    def find(self, name: str) -> ReplyConsumer | None:
        """The consumer ``amq.rabbitmq.reply-to.<suffix>`` names, if it is still there."""
        if not name.startswith(REPLY_PREFIX):
            return None
        return self._by_suffix.get(name[len(REPLY_PREFIX) :])

    def deliver(self, name: str, message: Message) -> bool:
        """Hand ``message`` to the consumer ``name`` names; False when there is none."""
        consumer = self.find(name)
        if consumer is None:
            self.dropped += 1
            return False
        self.delivered += 1
        consumer.session.deliver_reply(consumer, message)
        return True

    def statistics(self) -> dict[str, Any]:
        """Reply consumers and what became of the replies sent to them."""
        return {
            "consumers": len(self._by_suffix),
            "delivered": self.delivered,
            "dropped": self.dropped,
        }


_registries: WeakKeyDictionary[VirtualHost, ReplyRegistry] = WeakKeyDictionary()


def registry_for(vhost: VirtualHost) -> ReplyRegistry:
    """The reply registry of ``vhost``, made on first use."""
    registry = _registries.get(vhost)
    if registry is None:
        registry = _registries[vhost] = ReplyRegistry()
    return registry
