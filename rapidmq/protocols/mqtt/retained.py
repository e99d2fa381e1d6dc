"""Retained messages of one virtual host, matched against topic filters.

A PUBLISH with RETAIN=1 replaces the topic's retained message; an empty
payload removes it.  Messages keep their expiry: one whose interval has run
out is dropped when it is next looked at.  Matching walks every retained
topic (``topic_matches``), which is simple and fast enough for the thousands
of retained topics a broker typically holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from rapidmq.core.message import Message
from rapidmq.protocols.mqtt.topics import topic_matches

__all__ = ["RetainedStore"]


class RetainedStore:
    """Topic -> the last retained core message on it."""

    __slots__ = ("_messages", "stored")

    def __init__(self) -> None:
        self._messages: dict[str, Message] = {}
        self.stored = 0

    def put(self, topic: str, message: Message) -> None:
        """Retain ``message`` on ``topic``, or clear the topic if its body is empty."""
        if message.body:
            self._messages[topic] = message
            self.stored += 1
        else:
            self._messages.pop(topic, None)

    def get(self, topic: str, now: float) -> Message | None:
        """The live retained message on ``topic``, if any."""
        message = self._messages.get(topic)
        if message is not None and _expired(message, now):
            del self._messages[topic]
            return None
        return message

    def matching(self, topic_filter: str, now: float) -> Iterator[tuple[str, Message]]:
        """(topic, message) for every live retained message ``topic_filter`` matches."""
        expired = []
        for topic, message in list(self._messages.items()):
            if not topic_matches(topic_filter, topic):
                continue
            if _expired(message, now):
                expired.append(topic)
                continue
            yield topic, message
        for topic in expired:
            self._messages.pop(topic, None)

    def __len__(self) -> int:
        return len(self._messages)

    def statistics(self) -> dict[str, Any]:
        return {
            "retained_messages": len(self._messages),
            "retained_bytes": sum(len(m.body) for m in self._messages.values()),
            "stored": self.stored,
        }


def _expired(message: Message, now: float) -> bool:
    expiration = message.properties.expiration
    if expiration is None or message.annotations is None:
        return False
    published_at = message.annotations.get("published_at")
    if not isinstance(published_at, float | int):
        return False
    return now - published_at >= int(expiration) / 1000.0
