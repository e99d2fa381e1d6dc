"""A policy change over many queues: how long until every queue has its new settings.

A broker in this process (no sockets) with ``--queues`` classic queues named
``q.N``, ``--messages`` messages each and ``--others`` policies that match
none of them (so each queue is matched against all of them), then, timed
one at a time:

* ``set``: a policy matching every queue: ``max-length``, ``message-ttl``
  and, unless ``--no-dead-letter``, a dead-letter exchange that routes to one
  queue.  The limit is above the queues' depth, so this measures changing
  settings; with ``--drop`` it is below, and every queue also drops (and
  dead-letters) the messages over it at once;
* ``change``: the same policy with a lower limit;
* ``operator``: an operator policy that lowers it again;
* ``clear``: both cleared, every queue back to its own arguments.

With ``--store rocksdb`` the broker records policies in a RocksDB metadata
store in a temporary directory, as ``rapidmq serve`` does (one synced write
per change).  Each figure is the best of ``--rounds``.

Run: ``.venv/bin/python bench/policy_bench.py [--queues 10000] [--store rocksdb]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable

from rapidmq.core import Broker, ClientInfo, Message, Properties
from rapidmq.core.policy import make_policy
from rapidmq.core.vhost import VirtualHost
from rapidmq.storage import open_stores
from rapidmq.storage.api import MetadataStore


def build(queues: int, messages: int, others: int, store: MetadataStore | None) -> VirtualHost:
    broker = Broker(metadata=store)
    if store is not None:
        broker.restore()
    connection = broker.connect("/", ClientInfo("amqp091", "bench", user="guest"))
    session = connection.open_session(_NullSink())
    host = broker.vhost("/")
    assert host is not None
    session.declare_queue("dead")  # what the dead-letter exchange routes to
    session.bind_queue("dead", "amq.fanout", "")
    for n in range(queues):
        name = f"q.{n}"
        session.declare_queue(name, arguments={"x-max-length": 1000})
        for _ in range(messages):
            session.publish(Message("", name, b"x" * 16, Properties()))
    for n in range(others):
        body = {"pattern": f"^other{n}$", "definition": {"max-length": 1}, "priority": n}
        host.set_policy(make_policy("/", f"other{n}", body, operator=False))
    return host


class _NullSink:
    def deliver(self, *args: object) -> None:
        pass

    def consumer_cancelled(self, consumer_tag: str) -> None:
        pass

    def writable(self) -> bool:
        return True


def timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def one_round(host: VirtualHost, dead_letter: bool, drop: bool) -> dict[str, float]:
    # Limits above the queues' depth change settings only; below it, every
    # queue also drops (and dead-letters) messages at once.
    limits = (5, 3, 2) if drop else (50, 40, 30)

    def policy(limit: int) -> object:
        definition: dict[str, object] = {"max-length": limit, "message-ttl": 60000}
        if dead_letter:
            definition["dead-letter-exchange"] = "amq.fanout"
        body = {
            "pattern": "^q\\.",
            "definition": definition,
            "priority": 100,
            "apply-to": "queues",
        }
        return host.set_policy(make_policy("/", "bench", body, operator=False))

    operator_body = {"pattern": "^q\\.", "definition": {"max-length": limits[2]}}
    figures = {
        "set": timed(lambda: policy(limits[0])),
        "change": timed(lambda: policy(limits[1])),
        "operator": timed(
            lambda: host.set_policy(
                make_policy("/", "cap", operator_body, operator=True), operator=True
            )
        ),
        "clear": timed(
            lambda: (host.clear_policy("bench"), host.clear_policy("cap", operator=True))
        ),
    }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--queues", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=10)
    parser.add_argument("--others", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=("none", "rocksdb"), default="none")
    parser.add_argument(
        "--drop",
        action="store_true",
        help="limits below the queues' depth: every change also drops messages",
    )
    parser.add_argument(
        "--no-dead-letter",
        action="store_true",
        help="no dead-letter exchange: what is dropped is only counted",
    )
    args = parser.parse_args()
    best: dict[str, float] = {}
    for _ in range(args.rounds):
        tmp = tempfile.mkdtemp(prefix="rapidmq-policy-bench-")
        store = None
        try:
            if args.store == "rocksdb":
                store, messages = open_stores(tmp, "rocksdb")
            host = build(args.queues, args.messages, args.others, store)
            for name, seconds in one_round(host, not args.no_dead_letter, args.drop).items():
                best[name] = min(best.get(name, seconds), seconds)
            if store is not None:
                store.close()
                messages.close()
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    print(
        f"{args.queues} queues x {args.messages} messages, {args.others} other policies, "
        f"store {args.store}, {'dropping' if args.drop else 'no drops'}, "
        f"dead-lettering {'off' if args.no_dead_letter else 'on'}, "
        f"best of {args.rounds}:"
    )
    for name, seconds in best.items():
        print(f"  {name:<9} {seconds * 1000:8.1f} ms  ({args.queues / seconds:,.0f} queues/s)")


if __name__ == "__main__":
    main()
