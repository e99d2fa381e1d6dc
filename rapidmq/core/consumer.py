"""A consumer: one subscription of a session to a queue, with its credit."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rapidmq.core.queue import Queue
    from rapidmq.core.session import Session

__all__ = ["Consumer"]


class Consumer:
    """A subscription; ``prefetch`` 0 means unlimited, ``unacked`` counts its deliveries."""

    __slots__ = (
        "arguments",
        "delivered",
        "exclusive",
        "no_ack",
        "prefetch",
        "priority",
        "queue",
        "session",
        "tag",
        "unacked",
    )

    def __init__(
        self,
        session: Session,
        queue: Queue,
        tag: str,
        *,
        no_ack: bool,
        exclusive: bool,
        priority: int,
        prefetch: int,
        arguments: dict[str, Any],
    ) -> None:
        self.session = session
        self.queue = queue
        self.tag = tag
        self.no_ack = no_ack
        self.exclusive = exclusive
        self.priority = priority
        self.prefetch = prefetch
        self.arguments = arguments
        self.unacked = 0
        self.delivered = 0

    def statistics(self) -> dict[str, Any]:
        """What admin shows for one consumer."""
        return {
            "consumer_tag": self.tag,
            "queue": self.queue.name,
            "ack_required": not self.no_ack,
            "exclusive": self.exclusive,
            "priority": self.priority,
            "prefetch_count": self.prefetch,
            "unacked": self.unacked,
            "delivered": self.delivered,
            "arguments": dict(self.arguments),
        }

    def __repr__(self) -> str:
        return f"Consumer({self.tag!r}, queue={self.queue.name!r})"
