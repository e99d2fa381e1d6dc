"""Dead-lettered messages and their ``x-death`` history, as RabbitMQ 3.10 writes them.

A dead-lettered message gets a new ``x-death`` entry at the front (or the entry
for the same queue and reason has its ``count`` incremented and moves to the
front, keeping its other fields), ``x-first-death-*`` headers the first time,
and loses its ``expiration`` (kept as ``original-expiration``).  With a
dead-letter routing key the ``CC`` header is removed.  Header tables come out
sorted by key, as RabbitMQ's ``set_table_value`` leaves them.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from rapidmq.core.message import Message

__all__ = ["dead_lettered", "is_cycle"]


def dead_lettered(
    message: Message,
    routing_keys: tuple[str, ...],
    *,
    reason: str,
    queue: str,
    exchange: str,
    routing_key: str | None,
    now_s: float,
) -> tuple[Message, tuple[str, ...]]:
    """The message to republish to ``exchange`` and the keys to route it with.

    Args:
        message: the message as it sat in the queue.
        routing_keys: every key it was published with (routing key, CC, BCC).
        reason: ``rejected``, ``expired`` or ``maxlen``.
        queue: the queue it dies in.
        exchange: the dead-letter exchange.
        routing_key: the queue's ``x-dead-letter-routing-key``, if any.
        now_s: wall-clock seconds since the epoch.
    """
    props = message.properties
    headers: dict[str, Any] = dict(props.headers) if props.headers else {}
    cc = headers.get("CC")
    death_keys = [routing_keys[0]]
    if isinstance(cc, list):
        death_keys.extend(k for k in cc if isinstance(k, str))
    info: dict[str, Any] = {
        "reason": reason,
        "queue": queue,
        "time": datetime.fromtimestamp(int(now_s), UTC),
        "exchange": message.exchange,
        "routing-keys": death_keys,
    }
    if props.expiration is not None:
        info["original-expiration"] = props.expiration
    deaths = headers.get("x-death")
    if isinstance(deaths, list):
        match: dict[str, Any] | None = None
        others: list[Any] = []
        for death in deaths:
            if (
                match is None
                and isinstance(death, dict)
                and death.get("queue") == queue
                and death.get("reason") == reason
            ):
                match = death
            else:
                others.append(death)
        if match is None:
            first = {"count": 1, **info}
        else:
            first = dict(match)
            count = first.get("count")
            first["count"] = (count if isinstance(count, int) else 0) + 1
        headers["x-death"] = [dict(sorted(first.items())), *others]
    else:
        headers["x-first-death-reason"] = reason
        headers["x-first-death-queue"] = queue
        headers["x-first-death-exchange"] = message.exchange
        headers["x-death"] = [{"count": 1, **info}]
    if routing_key is not None:
        headers.pop("CC", None)
        keys: tuple[str, ...] = (routing_key,)
    else:
        keys = routing_keys
    headers = dict(sorted(headers.items()))
    new = message.evolve(exchange=exchange, routing_key=keys[0], headers=headers, expiration=None)
    return new, keys


def is_cycle(queue: str, deaths: Sequence[Any]) -> bool:
    """True if dead-lettering into ``queue`` closes a cycle with no rejection in it.

    ``deaths`` is the new ``x-death`` list, newest first.
    """
    for i, death in enumerate(deaths):
        if isinstance(death, dict) and death.get("queue") == queue:
            return all(
                isinstance(d, dict) and d.get("reason") != "rejected" for d in deaths[: i + 1]
            )
    return False
