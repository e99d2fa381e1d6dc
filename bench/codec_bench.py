"""Micro-benchmark of the AMQP 0-9-1 codec: publishes parsed and deliveries encoded per second.

    .venv/bin/python bench/codec_bench.py [--count N] [--read-size OCTETS]

Parses ``count`` basic.publish commands (16-octet body, no properties) fed in
reads of ``read-size`` octets, as a socket would hand them over, and encodes
``count`` basic.deliver commands into one output buffer.  Also times pamqp on
the same publishes for comparison.
"""

from __future__ import annotations

import argparse
import time

from pamqp import frame as pamqp_frame

from rapidmq.protocols.amqp091.constants import PROTOCOL_HEADER
from rapidmq.protocols.amqp091.encode import encode_deliver, encode_publish
from rapidmq.protocols.amqp091.events import PublishReceived
from rapidmq.protocols.amqp091.frames import FrameParser

BODY = b"0123456789abcdef"
NO_PROPERTIES = b"\x00\x00"


def publish_stream(count: int) -> bytes:
    out = bytearray()
    for _ in range(count):
        encode_publish(out, 1, "amq.direct", "bench.key", False, NO_PROPERTIES, BODY, 131072)
    return bytes(out)


def bench_parse(count: int, read_size: int) -> float:
    data = publish_stream(count)
    reads = [data[i : i + read_size] for i in range(0, len(data), read_size)]
    parser = FrameParser()
    parser.receive_data(PROTOCOL_HEADER)
    published = 0
    start = time.perf_counter()
    for chunk in reads:
        published += len(parser.receive_data(chunk))
    elapsed = time.perf_counter() - start
    assert published == count, published
    return count / elapsed


def bench_encode(count: int) -> float:
    out = bytearray()
    start = time.perf_counter()
    for tag in range(1, count + 1):
        encode_deliver(
            out, 1, "ctag-1", tag, False, "amq.direct", "bench.key", NO_PROPERTIES, BODY, 131072
        )
    elapsed = time.perf_counter() - start
    assert len(out) > count * 16
    return count / elapsed


def bench_pamqp_parse(count: int) -> float:
    data = publish_stream(count)
    start = time.perf_counter()
    offset = 0
    frames = 0
    while offset < len(data):
        used, _channel, _frame = pamqp_frame.unmarshal(data[offset : offset + 4096])
        offset += used
        frames += 1
    elapsed = time.perf_counter() - start
    assert frames == 3 * count
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--read-size", type=int, default=65536)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    assert isinstance(PublishReceived, type)
    parse = max(bench_parse(args.count, args.read_size) for _ in range(args.rounds))
    encode = max(bench_encode(args.count) for _ in range(args.rounds))
    reference = bench_pamqp_parse(min(args.count, 50_000))
    print(f"parse basic.publish (16 B body, {args.read_size} B reads): {parse:,.0f}/s")
    print(f"encode basic.deliver (16 B body):                  {encode:,.0f}/s")
    print(f"pamqp.frame.unmarshal, same publishes:              {reference:,.0f}/s")


if __name__ == "__main__":
    main()
