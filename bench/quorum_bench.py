"""Quorum queues: publish-only with publisher confirms, RabbitMQ and RapidMQ in one run.

One publisher in confirm mode keeps ``--window`` unconfirmed 1 KB messages
(delivery mode ``--delivery-mode``, 2 by default) in flight into a durable
quorum queue (``x-queue-type: quorum``) with no consumer; the figure is
confirmed messages per second, first send to last confirm.  Each broker gets a
fresh queue with a unique name per run, deleted afterwards.  RapidMQ is started
on free ports with its default storage (RocksDB, group commit); a quorum queue
there confirms only after the sync, as RabbitMQ's does after its Raft log is
written.

    .venv/bin/python bench/quorum_bench.py                   # both brokers, 3 runs each
    .venv/bin/python bench/quorum_bench.py --messages 200000 --runs 5
    .venv/bin/python bench/quorum_bench.py --queue-type classic   # the same into classic queues
"""

from __future__ import annotations

import argparse
import json
import statistics
from typing import Any

from amqp_persistent import publish_confirmed
from amqp_raw import RawConnection, unique_queue
from pamqp import commands
from targets import TARGETS, Target, open_target


def run_publish(
    target: Target, *, messages: int, window: int, timeout_s: float, queue_type: str
) -> dict[str, Any]:
    """One publish-only round into a new durable queue of ``queue_type``; returns the figures."""
    queue = unique_queue(queue_type)
    arguments = {"x-queue-type": queue_type}
    admin = RawConnection.open(target.host, target.port)
    publisher: RawConnection | None = None
    try:
        admin.rpc(
            commands.Queue.Declare(queue=queue, durable=True, arguments=arguments),
            commands.Queue.DeclareOk,
        )
        publisher = RawConnection.open(target.host, target.port)
        pub = publish_confirmed(publisher, queue, messages, window, timeout_s)
        ok = admin.rpc(
            commands.Queue.Declare(queue=queue, durable=True, passive=True, arguments=arguments),
            commands.Queue.DeclareOk,
        )
        return {
            "case": f"{queue_type}-publish-confirm-1kb",
            "target": target.name,
            "version": target.version,
            "messages": messages,
            "nacked": pub["nacked"],
            "queued": int(ok.message_count),
            "confirmed_rate": messages / (pub["span_ns"] / 1e9),
            "window": window,
        }
    finally:
        if publisher is not None:
            publisher.close()
        try:
            admin.queue_delete(queue)
        finally:
            admin.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=(*TARGETS, "both"), default="both")
    p.add_argument("--messages", type=int, default=100_000)
    p.add_argument("--runs", type=int, default=3, help="runs per broker (median)")
    p.add_argument("--window", type=int, default=256, help="unconfirmed publishes in flight")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument(
        "--queue-type", default="quorum", choices=("quorum", "classic"), help="for comparison"
    )
    p.add_argument("--backend", default=None, help="RapidMQ --backend")
    p.add_argument("--json", default=None, help="also write every result to this file")
    a = p.parse_args()
    names = TARGETS if a.target == "both" else (a.target,)
    out: list[dict[str, Any]] = []
    rates: dict[str, list[float]] = {}
    for name in names:
        with open_target(name, a.backend) as target:
            for _ in range(a.runs):
                res = run_publish(
                    target,
                    messages=a.messages,
                    window=a.window,
                    timeout_s=a.timeout,
                    queue_type=a.queue_type,
                )
                print(json.dumps(res))
                out.append(res)
                rates.setdefault(name, []).append(res["confirmed_rate"])
    rabbit = statistics.median(rates["rabbitmq"]) if "rabbitmq" in rates else None
    rapid = statistics.median(rates["rapidmq"]) if "rapidmq" in rates else None
    print("\n| Metric | RabbitMQ | RapidMQ | RapidMQ/RabbitMQ |")
    print("|---|---:|---:|---:|")
    ratio = f"{rapid / rabbit:.2f}" if rabbit and rapid is not None else "-"
    show = [f"{v:,.0f}" if v is not None else "-" for v in (rabbit, rapid)]
    label = f"{a.queue_type} queue, confirmed 1 KB publishes msgs/s"
    print(f"| {label} | {show[0]} | {show[1]} | {ratio} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
