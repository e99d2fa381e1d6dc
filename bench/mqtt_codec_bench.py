"""Micro-benchmark of the MQTT codec against the mqtt5 (Rust) and amqtt codecs.

    .venv/bin/python bench/mqtt_codec_bench.py [--count N] [--rounds R] [--read-size OCTETS]

Decodes and encodes ``count`` PUBLISH packets (16-octet payload, topic
``bench/topic``) at QoS 0 and QoS 1, and PUBACKs, with:

- RapidMQ's codec at MQTT 3.1.1 and MQTT 5 (``MQTTParser`` fed reads of
  ``read-size`` octets as a socket hands them over; ``encode_publish`` /
  ``encode_publish_v5`` / ``encode_ack`` into one buffer, and the generic
  ``encode`` of a ``Publish`` record);
- ``mqtt5`` (MQTT 5 only): ``mqtt5.read`` over the same buffer, and
  ``PublishPacket(...).write()``;
- amqtt (MQTT 3.1.1 only): its decoders are coroutines over a reader; they
  never suspend on a ``BufferReader``, so each is driven with ``send(None)``
  and no event loop.  Encode is ``PublishPacket.build(...).to_bytes()``.

Prints one line per case in packets per second (best of ``rounds``), and
``--json`` prints them as one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Coroutine
from typing import Any

import mqtt5
from amqtt.adapters import BufferReader
from amqtt.mqtt.puback import PubackPacket as AmqttPuback
from amqtt.mqtt.publish import PublishPacket as AmqttPublish

from rapidmq.protocols.mqtt.codec import (
    MQTTParser,
    encode,
    encode_ack,
    encode_publish,
    encode_publish_v5,
)
from rapidmq.protocols.mqtt.packets import PacketType, Publish

TOPIC = "bench/topic"
TOPIC_BYTES = TOPIC.encode()
PAYLOAD = b"0123456789abcdef"


def publish_stream(count: int, qos: int, level: int) -> bytes:
    out = bytearray()
    write = encode_publish_v5 if level == 5 else encode_publish
    for i in range(count):
        write(out, TOPIC_BYTES, PAYLOAD, qos, False, False, (i % 65535) + 1 if qos else None)
    return bytes(out)


def puback_stream(count: int) -> bytes:
    out = bytearray()
    for i in range(count):
        encode_ack(out, PacketType.PUBACK, (i % 65535) + 1)
    return bytes(out)


def timed(fn: Callable[[], int], count: int, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        done = fn()
        best = min(best, time.perf_counter() - start)
        assert done == count, (done, count)
    return count / best


def rapidmq_decode(data: bytes, level: int, read_size: int) -> Callable[[], int]:
    reads = [data[i : i + read_size] for i in range(0, len(data), read_size)]

    def run() -> int:
        parser = MQTTParser(protocol_level=level)
        return sum(len(parser.receive_data(chunk)) for chunk in reads)

    return run


def rapidmq_encode(count: int, qos: int, level: int) -> Callable[[], int]:
    write = encode_publish_v5 if level == 5 else encode_publish

    def run() -> int:
        out = bytearray()
        for i in range(count):
            write(out, TOPIC_BYTES, PAYLOAD, qos, False, False, (i % 65535) + 1 if qos else None)
        return count if len(out) > 16 * count else 0

    return run


def rapidmq_encode_record(count: int, qos: int, level: int) -> Callable[[], int]:
    def run() -> int:
        done = 0
        for i in range(count):
            packet = Publish(TOPIC, PAYLOAD, qos, packet_id=(i % 65535) + 1 if qos else None)
            done += len(encode(packet, level)) > 16
        return done

    return run


def rapidmq_encode_puback(count: int) -> Callable[[], int]:
    def run() -> int:
        out = bytearray()
        for i in range(count):
            encode_ack(out, PacketType.PUBACK, (i % 65535) + 1)
        return len(out) // 4

    return run


def mqtt5_decode(data: bytes) -> Callable[[], int]:
    def run() -> int:
        view = memoryview(data)
        offset = done = 0
        while offset < len(data):
            _packet, used = mqtt5.read(view[offset:])
            offset += used
            done += 1
        return done

    return run


def mqtt5_decode_records(data: bytes) -> Callable[[], int]:
    """mqtt5 as it would serve under RapidMQ's API: each packet made a ``Publish`` record."""

    def run() -> int:
        view = memoryview(data)
        offset = 0
        packets = []
        while offset < len(data):
            p, used = mqtt5.read(view[offset:])
            offset += used
            packets.append(
                Publish(p.topic, p.payload, int(p.qos), p.retain, p.duplicate, p.packet_id, None)
            )
        return len(packets)

    return run


def mqtt5_encode(count: int, qos: int) -> Callable[[], int]:
    level = mqtt5.QoS(qos)

    def run() -> int:
        out = bytearray()
        for i in range(count):
            packet_id = (i % 65535) + 1 if qos else None
            out += mqtt5.PublishPacket(TOPIC, PAYLOAD, qos=level, packet_id=packet_id).write()
        return count if len(out) > 16 * count else 0

    return run


def mqtt5_encode_puback(count: int) -> Callable[[], int]:
    def run() -> int:
        out = bytearray()
        for i in range(count):
            out += mqtt5.PubAckPacket(packet_id=(i % 65535) + 1).write()
        return len(out) // 4

    return run


def _drive(coroutine: Coroutine[Any, Any, Any]) -> Any:
    """Run a coroutine that never suspends (amqtt's decoders over a BufferReader)."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    raise RuntimeError("the amqtt decoder suspended")


def amqtt_decode(data: bytes, packet_class: Any) -> Callable[[], int]:
    def run() -> int:
        reader = BufferReader(data)
        done = 0
        size = len(data)
        consumed = 0
        while consumed < size:
            packet = _drive(packet_class.from_stream(reader))
            consumed += packet.fixed_header.bytes_length + packet.fixed_header.remaining_length
            done += 1
        return done

    return run


def amqtt_encode(count: int, qos: int) -> Callable[[], int]:
    def run() -> int:
        out = bytearray()
        for i in range(count):
            packet_id = (i % 65535) + 1 if qos else None
            out += AmqttPublish.build(TOPIC, PAYLOAD, packet_id, False, qos, False).to_bytes()
        return count if len(out) > 16 * count else 0

    return run


def amqtt_encode_puback(count: int) -> Callable[[], int]:
    def run() -> int:
        out = bytearray()
        for i in range(count):
            out += AmqttPuback.build((i % 65535) + 1).to_bytes()
        return len(out) // 4

    return run


def cases(count: int, read_size: int) -> dict[str, Callable[[], int]]:
    table: dict[str, Callable[[], int]] = {}
    for qos in (0, 1):
        v4 = publish_stream(count, qos, 4)
        v5 = publish_stream(count, qos, 5)
        table[f"decode qos{qos} rapidmq 3.1.1"] = rapidmq_decode(v4, 4, read_size)
        table[f"decode qos{qos} rapidmq 5"] = rapidmq_decode(v5, 5, read_size)
        table[f"decode qos{qos} mqtt5 5"] = mqtt5_decode(v5)
        table[f"decode qos{qos} mqtt5 as records 5"] = mqtt5_decode_records(v5)
        table[f"decode qos{qos} amqtt 3.1.1"] = amqtt_decode(v4, AmqttPublish)
        table[f"encode qos{qos} rapidmq 3.1.1"] = rapidmq_encode(count, qos, 4)
        table[f"encode qos{qos} rapidmq 5"] = rapidmq_encode(count, qos, 5)
        table[f"encode qos{qos} rapidmq record 5"] = rapidmq_encode_record(count, qos, 5)
        table[f"encode qos{qos} mqtt5 5"] = mqtt5_encode(count, qos)
        table[f"encode qos{qos} amqtt 3.1.1"] = amqtt_encode(count, qos)
    acks = puback_stream(count)
    table["decode puback rapidmq 3.1.1"] = rapidmq_decode(acks, 4, read_size)
    table["decode puback mqtt5 5"] = mqtt5_decode(acks)
    table["decode puback amqtt 3.1.1"] = amqtt_decode(acks, AmqttPuback)
    table["encode puback rapidmq"] = rapidmq_encode_puback(count)
    table["encode puback mqtt5"] = mqtt5_encode_puback(count)
    table["encode puback amqtt"] = amqtt_encode_puback(count)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=500_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--read-size", type=int, default=65536)
    parser.add_argument("--only", default="", help="run the cases whose name contains this")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = {}
    for name, fn in cases(args.count, args.read_size).items():
        if args.only not in name:
            continue
        rounds = 1 if "amqtt" in name else args.rounds
        results[name] = timed(fn, args.count, rounds)
        if not args.json:
            print(f"{name:36s} {results[name]:>12,.0f} /s", flush=True)
    if args.json:
        print(json.dumps({name: round(rate) for name, rate in results.items()}))


if __name__ == "__main__":
    main()
