"""The AMQP front end and core without sockets: publish -> route -> deliver, in one process.

Feeds pre-encoded basic.publish frames to one ``AMQPConnection`` while another
consumes, and reports messages per second.  It isolates the Python hot path
from the kernel and the event loop, for profiling:

    .venv/bin/python bench/amqp_inprocess_bench.py [--ack] [--messages N] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time

from pamqp import commands, frame

from rapidmq.auth.users import UserStore
from rapidmq.core.broker import Broker
from rapidmq.protocols.amqp091 import encode
from rapidmq.protocols.amqp091.connection import AMQPConnection, AMQPSettings

HEADER = b"AMQP\x00\x00\x09\x01"


def _open(broker: Broker, users: UserStore) -> AMQPConnection:
    conn = AMQPConnection(broker, users, AMQPSettings(), ("127.0.0.1", 1), lambda: None)
    conn.data_received(HEADER)
    conn.data_received(
        frame.marshal(
            commands.Connection.StartOk(
                client_properties={}, mechanism="PLAIN", response="\0guest\0guest"
            ),
            0,
        )
        + frame.marshal(commands.Connection.TuneOk(2047, 131072, 0), 0)
        + frame.marshal(commands.Connection.Open(virtual_host="/"), 0)
        + frame.marshal(commands.Channel.Open(), 1)
    )
    conn.data_to_send()
    return conn


def run(messages: int, ack: bool, batch: int = 1000) -> float:
    broker = Broker()
    users = UserStore()
    users.add_user("guest", "guest")
    pub = _open(broker, users)
    sub = _open(broker, users)
    pub.data_received(frame.marshal(commands.Queue.Declare(queue="bench"), 1))
    if ack:
        sub.data_received(frame.marshal(commands.Basic.Qos(prefetch_count=1000), 1))
    sub.data_received(
        frame.marshal(commands.Basic.Consume(queue="bench", consumer_tag="c", no_ack=not ack), 1)
    )
    pub.data_to_send()
    sub.data_to_send()
    chunk = bytearray()
    for _ in range(batch):
        encode.encode_publish(chunk, 1, "", "bench", False, b"\x00\x00", b"x" * 16, 131072)
    data = bytes(chunk)
    ack_every = 100
    delivered = 0
    acked = 0
    started = time.perf_counter()
    for _ in range(messages // batch):
        pub.data_received(data)
        out = sub.data_to_send()
        delivered += out.count(b"\x00\x3c\x00\x3c")  # basic.deliver method ids
        if ack:
            while delivered - acked >= ack_every:
                acked += ack_every
                frame_bytes = bytearray()
                encode.encode_ack(frame_bytes, 1, acked, True)
                sub.data_received(bytes(frame_bytes))
            out = sub.data_to_send()
            delivered += out.count(b"\x00\x3c\x00\x3c")
        pub.data_to_send()
    elapsed = time.perf_counter() - started
    return messages / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--messages", type=int, default=500_000)
    parser.add_argument("--ack", action="store_true")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        rate = run(args.messages, args.ack)
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(20)
    else:
        rate = max(run(args.messages, args.ack) for _ in range(3))
    print(f"{'ack' if args.ack else 'no-ack'}: {rate:,.0f} msgs/s")


if __name__ == "__main__":
    main()
