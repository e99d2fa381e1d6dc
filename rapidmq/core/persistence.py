"""Persistent messages of durable queues, written through a ``MessageStore``.

Theory of operation: the broker holds one :class:`Persistence` when it has a
message store.  A durable queue calls it for every persistent message it takes
(``add``), hands out (``mark_delivered``), takes back in a quorum queue
(``mark_returned``) or lets go (``remove``, ``drop_queue``);
transient messages and non-durable queues never reach it, so the transient hot
path pays one ``is None`` test per publish.

Writes go into the store's current batch, numbered :attr:`Persistence.batch`.
The first write after a commit calls :attr:`Persistence.wakeup` (set by the
server), whose flusher task then calls :meth:`commit` on the loop, syncs the
store in a worker thread and reports the durable batch with :meth:`durable`.
That is the group commit of ARCHITECTURE.md §4: front ends hold a confirm until
:attr:`durable_batch` reaches the batch its publish went into, and register with
:meth:`when_durable` to hear about it.

Paging: when memory runs short the server calls :meth:`page_out`, which
commits the current batch (so every stored message can be read back) and asks
each queue (:attr:`queues`) to drop the bodies of its ready messages behind a
head window.  A stored message's body is read back from its stored record
(:meth:`read_body`); any other body -- a transient message, or any message of a
non-durable queue -- is first written as a *page* (:meth:`page`, in the same
batch, never synced for its own sake and never recovered), read back with
:meth:`read_page` and deleted then.  Only a store that keeps pages out of memory
(``keeps_pages``: RocksDB) pages those; the memory store pages nothing.

The core does no I/O and imports no protocol: the codec (AMQP property
encoding) is injected by the server.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rapidmq.core.message import Message
from rapidmq.core.message_codec import MessageCodec
from rapidmq.storage.api import MessageStore

if TYPE_CHECKING:
    from rapidmq.core.queue import Queue

__all__ = ["Persistence"]

log = logging.getLogger("rapidmq.core")

QueueKey = tuple[str, str]

#: Pages are committed (unsynced) every this many bytes while paging out, so the
#: store's batch never holds much of what paging frees.
PAGE_COMMIT_BYTES = 4 << 20
_FLAG_BYTES = [bytes((flags,)) for flags in range(256)]


class Persistence:
    """The broker's side of a message store: batches, the codec and durability waiters."""

    __slots__ = (
        "_last_data",
        "_last_message",
        "_page_bytes",
        "_waiters",
        "adds",
        "codec",
        "committed",
        "durable_batch",
        "lazy",
        "paged_in",
        "paged_out",
        "pages",
        "pending",
        "queues",
        "store",
        "streams",
        "wakeup",
        "wall_clock",
    )

    def __init__(self, store: MessageStore, codec: MessageCodec) -> None:
        self.store = store
        self.codec = codec
        self.committed = store.commit()  # the last batch written (nothing pending yet)
        self.durable_batch = self.committed
        self.pending = False
        self.adds = 0  # messages added so far: a publish compares it to see if it stored
        self.wakeup: Callable[[], None] | None = None
        self._waiters: dict[Callable[[int], None], None] = {}
        # A fanned-out message is encoded once: the last one is remembered (and held,
        # so its id cannot be reused by another message).
        self._last_message: Message | None = None
        self._last_data = b""
        # Queues that page: those holding stored messages, or every queue when the
        # store keeps pages out of memory.
        self.queues: dict[QueueKey, Queue] = {}
        # Lazy queues (x-queue-mode=lazy): they page out whatever the memory use.
        self.lazy: dict[QueueKey, Queue] = {}
        self.pages = store.keeps_pages
        self.paged_out = 0  # bodies dropped from memory so far
        self.paged_in = 0  # bodies read back
        self._page_bytes = 0  # page bytes in the current batch
        self.wall_clock: Callable[[], float] = time.time  # publish times of stored messages

    @property
    def batch(self) -> int:
        """The number of the batch that writes go into now."""
        return self.committed + 1

    def _touch(self) -> None:
        if not self.pending:
            self.pending = True
            wakeup = self.wakeup
            if wakeup is not None:
                wakeup()

    # -- writes (loop thread, no I/O) ------------------------------------------------------

    def add(self, queue: QueueKey, seq: int, message: Message) -> int:
        """Store one message of a durable queue; returns its stored size in bytes."""
        if message is self._last_message:
            data = self._last_data
        else:
            data = self.codec.encode(message, self.wall_clock())
            self._last_message, self._last_data = message, data
        self.store.add(queue, seq, data)
        self.adds += 1
        self._touch()
        return len(data)

    def mark_delivered(self, queue: QueueKey, seq: int) -> None:
        """The message went to a consumer (or basic.get) and awaits its ack."""
        self.store.mark_delivered(queue, seq)
        self._touch()

    def mark_returned(self, queue: QueueKey, seq: int, returns: int) -> None:
        """A quorum queue's message came back for the ``returns``-th time."""
        self.store.mark_returned(queue, seq, returns)
        self._touch()

    def remove(self, queue: QueueKey, seq: int) -> None:
        """The message is acked or dropped."""
        self.store.remove(queue, seq)
        self._touch()

    def drop_queue(self, queue: QueueKey) -> None:
        """Every message of the queue goes (deleted, or purged with nothing unacked)."""
        self.store.drop_queue(queue)
        self._touch()

    # -- streams (see rapidmq.core.stream) ----------------------------------------------------

    def stream_append(
        self, stream: QueueKey, offset: int, message: Message, published_at_s: float, flags: int
    ) -> None:
        """Append one message to a stream's log in the current batch."""
        record = self.codec.encode(message, published_at_s, _FLAG_BYTES[flags])
        self.store.streams.append(stream, offset, record)
        self.adds += 1
        self._touch()

    def stream_trim(self, stream: QueueKey, before: int) -> None:
        """Retention removed every offset below ``before``."""
        self.store.streams.trim(stream, before)
        self._touch()

    def stream_drop(self, stream: QueueKey) -> None:
        """The stream was deleted."""
        self.store.streams.drop(stream)
        self._touch()

    def stream_read(self, stream: QueueKey, start: int, count: int) -> list[Message]:
        """The messages at offsets ``start`` to ``start + count - 1`` of a stream's log.

        The current batch is committed first (unsynced, as the flusher would), so
        that everything appended so far can be read.
        """
        if self.pending:
            self.commit()
        return self.codec.decode_all(self.store.streams.read(stream, start, count), 1)

    # -- paging ------------------------------------------------------------------------------

    def page_out(self) -> int:
        """Drop from memory the bodies of ready messages behind the heads; returns the bytes.

        The current batch is committed first (unsynced, as the flusher would), so
        every stored message can be read back, and again after, so every page can.
        """
        if self.pending:
            self.commit()
        dropped = 0
        pages = self.pages
        for key, queue in list(self.queues.items()):
            if queue.deleted or not (queue.persistent_count or pages):
                if self.queues.get(key) is queue:
                    del self.queues[key]
                continue
            dropped += queue.page_out()
        if self.pending:
            self.commit()
        return dropped

    def page_out_lazy(self) -> int:
        """:meth:`page_out` for the lazy queues only, as RabbitMQ's lazy mode keeps
        bodies on disk from the start; returns the bytes dropped from memory."""
        if not self.lazy:
            return 0
        if self.pending:
            self.commit()
        dropped = 0
        for queue in list(self.lazy.values()):
            dropped += queue.page_out()
        if self.pending:
            self.commit()
        return dropped

    def read_body(self, queue: QueueKey, seq: int) -> bytes:
        """The body of a stored message whose body was paged out."""
        self.paged_in += 1
        return self.codec.decode(self.store.read(queue, seq)).body

    def page(self, queue: QueueKey, seq: int, body: bytes) -> None:
        """Keep the body of a message that is not stored out of memory."""
        self.store.page(queue, seq, body)
        self._touch()
        self._page_bytes += len(body)
        if self._page_bytes >= PAGE_COMMIT_BYTES:
            self.commit()

    def read_page(self, queue: QueueKey, seq: int) -> bytes:
        """Read back (and delete) a body kept by :meth:`page`."""
        self.paged_in += 1
        body = self.store.read_page(queue, seq)
        self.store.unpage(queue, seq)
        self._touch()
        return body

    def unpage(self, queue: QueueKey, seq: int) -> None:
        """A paged message left its queue unread (dropped or expired)."""
        self.store.unpage(queue, seq)
        self._touch()

    def drop_pages(self, queue: QueueKey) -> None:
        """Every page of a purged or deleted queue goes."""
        self.store.drop_pages(queue)
        self._touch()

    # -- group commit ----------------------------------------------------------------------

    def commit(self) -> int:
        """Write the current batch unsynced; returns the last batch number written."""
        self.pending = False
        self._page_bytes = 0
        self._last_message, self._last_data = None, b""
        self.committed = self.store.commit()
        return self.committed

    def durable(self, batch: int) -> None:
        """Every batch up to ``batch`` is on disk: tell the waiters (once each)."""
        if batch <= self.durable_batch:
            return
        self.durable_batch = batch
        waiters, self._waiters = self._waiters, {}
        for waiter in waiters:
            try:
                waiter(batch)
            except Exception:  # one front end's bug must not stop the others' confirms
                log.exception("a durability waiter failed")

    def when_durable(self, waiter: Callable[[int], None]) -> None:
        """Call ``waiter(durable_batch)`` once, after the next sync that advances it."""
        self._waiters[waiter] = None

    def statistics(self) -> dict[str, Any]:
        """The store's figures, with the batch numbers seen from the broker."""
        return {
            **self.store.statistics(),
            "batch": self.batch,
            "committed_batch": self.committed,
            "durable_batch": self.durable_batch,
            "waiters": len(self._waiters),
            "paged_out": self.paged_out,
            "paged_in": self.paged_in,
            "paged_bytes": sum(queue.paged_bytes for queue in self.queues.values()),
        }
