"""A message's place in one queue: the entry record and the order of entries.

:class:`Entry` lives apart from :mod:`rapidmq.core.queue` because the queue,
its paging (:mod:`rapidmq.core.paging`) and the sessions holding unacked
deliveries all make or read entries; here none of them imports another to
reach it.
"""

from __future__ import annotations

from collections import deque

from rapidmq.core.message import Message

__all__ = ["Entry", "insert_by_seq"]


class Entry:
    """One message in one queue (ready or delivered and unacked)."""

    # ``returns`` (a quorum queue's count of returns) is set only once a message
    # comes back, so classic queues never pay for it; read it with getattr.
    __slots__ = ("expires_at", "message", "redelivered", "returns", "routing_keys", "seq", "stored")

    returns: int

    def __init__(
        self,
        message: Message,
        seq: int,
        expires_at: float | None,
        routing_keys: tuple[str, ...] | None,
    ) -> None:
        self.message = message
        self.seq = seq
        self.expires_at = expires_at
        self.routing_keys = routing_keys  # None: just (message.routing_key,)
        self.redelivered = False
        self.stored = 0  # the size in the message store; 0: not stored


def insert_by_seq(level: deque[Entry], entry: Entry) -> None:
    """Put ``entry`` back in its place: requeued messages keep their original order."""
    if not level or entry.seq < level[0].seq:
        level.appendleft(entry)
    elif entry.seq > level[-1].seq:
        level.append(entry)
    else:
        lo, hi = 0, len(level)
        while lo < hi:
            mid = (lo + hi) // 2
            if level[mid].seq < entry.seq:
                lo = mid + 1
            else:
                hi = mid
        level.insert(lo, entry)
