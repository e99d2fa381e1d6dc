"""What ``/api/queues`` shows of each queue type beyond the fields every queue has.

RabbitMQ 3.10 lists a quorum queue with its Raft members (``leader``,
``members``, ``online``; on one node all three name this node), its held
at-least-once dead letters (``messages_dlx``, ``message_bytes_dlx``, also
counted in ``messages`` and ``message_bytes``) and ``single_active_consumer_ctag``,
and without the classic queue's paging, RAM and exclusive-consumer fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rapidmq.core.queue import Queue

__all__ = ["adapt_to_type"]

#: Fields of a classic queue that a quorum queue's JSON does not have.
_CLASSIC_ONLY = (
    "exclusive_consumer_tag",
    "head_message_timestamp",
    "idle_since",
    "messages_paged_out",
    "message_bytes_paged_out",
    "messages_ready_ram",
    "messages_unacknowledged_ram",
    "recoverable_slaves",
    "single_active_consumer_tag",
)


def adapt_to_type(body: dict[str, Any], queue: Queue, node: str) -> None:
    """Turn a classic queue's JSON into its type's, in place (classic queues stay)."""
    queue_type = queue.settings.queue_type
    if queue_type != "quorum":
        return
    held = len(queue.held_dead_letters)
    held_bytes = queue.held_bytes
    single_active = body.get("single_active_consumer_tag")
    for key in _CLASSIC_ONLY:
        body.pop(key, None)
    body.update(
        type="quorum",
        leader=node,
        members=[node],
        online=[node],
        open_files={node: 0},
        single_active_consumer_ctag=single_active,
        messages=body["messages"] + held,
        messages_dlx=held,
        message_bytes=body["message_bytes"] + held_bytes,
        message_bytes_dlx=held_bytes,
        messages_ram=0,
    )
