"""MQTT case 3: fan-out. One publisher sends 16-byte QoS 0 messages to one topic that
``--subscribers`` connections subscribe to; the figure is messages delivered per
second, summed over all subscribers, from the first delivery anywhere to the last.

The subscribers are spread over ``--processes`` processes (25 sockets each by default),
each walking its sockets with one selector. A broker may drop QoS 0 messages for a
subscriber that falls behind (Mosquitto does, past max_queued_messages); the loss is
reported next to the rate. The subscribers stop after ``--idle`` (30) seconds without
data, long enough that a broker which stalls mid-run is measured slow, not lossy.

    .venv/bin/python bench/mqtt_fanout.py --target mosquitto --messages 20000
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from amqp_raw import wait_reply
from mqtt_raw import RawMQTT, unique_topic
from mqtt_targets import MQTT_TARGETS, MQTTTarget, open_mqtt_target
from mqtt_throughput import publish, start_subscribers, stop_subscribers, summarise


def run(
    target: MQTTTarget,
    *,
    messages: int = 20_000,
    subscribers: int = 100,
    processes: int = 4,
    batch: int = 100,
    idle_s: float = 30.0,
    timeout_s: float = 180.0,
) -> dict[str, Any]:
    if subscribers % processes:
        raise ValueError("--subscribers must be a multiple of --processes")
    topic = unique_topic("fanout")
    per_proc = subscribers // processes
    procs = start_subscribers(target, topic, 0, processes, per_proc, messages, idle_s, timeout_s)
    conn = None
    try:
        conn = RawMQTT.open(target.host, target.port, timeout=timeout_s)
        pub = publish(conn, topic, messages, 0, batch, batch, timeout_s)
        subs = [wait_reply(parent, proc, timeout_s + 30, "subscriber") for proc, parent in procs]
    finally:
        if conn is not None:
            conn.close()
        stop_subscribers(procs)
    res = summarise(target, "fanout", messages, pub, subs, subscribers)
    res.update({"qos": 0, "batch": batch, "processes": processes})
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=MQTT_TARGETS, default="mosquitto")
    p.add_argument("--messages", type=int, default=20_000, help="messages published")
    p.add_argument("--subscribers", type=int, default=100)
    p.add_argument("--processes", type=int, default=4, help="subscriber processes")
    p.add_argument("--batch", type=int, default=100, help="PUBLISHes per sendall")
    p.add_argument("--idle", type=float, default=30.0, help="subscribers stop after idle s")
    p.add_argument("--timeout", type=float, default=180.0)
    p.add_argument("--backend", default=None, help="RapidMQ --backend")
    a = p.parse_args()
    with open_mqtt_target(a.target, a.backend) as target:
        res = run(
            target,
            messages=a.messages,
            subscribers=a.subscribers,
            processes=a.processes,
            batch=a.batch,
            idle_s=a.idle,
            timeout_s=a.timeout,
        )
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
