"""MQTT case 4: hold N idle MQTT 3.1.1 connections (CONNECT/CONNACK done, keep-alive
60 s, no subscriptions) and measure the broker's resident memory (VmRSS from
/proc/PID/status), then check that a publish still reaches a subscriber on fresh
connections, and that every idle connection still answers a PINGREQ.

Open files: this process raises its soft RLIMIT_NOFILE to the hard limit before it
starts a broker (RapidMQ and amqtt inherit it). Mosquitto runs with its own limit,
read from /proc/PID/limits; the case opens at most that limit minus the
descriptors Mosquitto already uses minus a margin, and says so.

    .venv/bin/python bench/mqtt_idle.py --target mosquitto --connections 10000
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

from mqtt_raw import MQTTClosed, RawMQTT, close_many, open_many, ping_many, round_trip
from mqtt_targets import (
    MQTT_TARGETS,
    MQTTTarget,
    nofile_soft_limit,
    open_mqtt_target,
    raise_nofile_limit,
)
from targets import settled_rss_kb

# Descriptors left free for the probe connections, listeners, logs and other users.
_SPARE_FDS = 64


def _open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def run(
    target: MQTTTarget,
    *,
    connections: int = 10_000,
    keep_alive: int = 60,
    wave: int = 100,
    settle_s: float = 2.0,
    open_timeout_s: float = 240.0,
) -> dict[str, Any]:
    if target.pid is None:
        raise RuntimeError(f"no process id for {target.name}; cannot read its RSS")
    requested = connections
    own_limit = raise_nofile_limit()
    cap_note = None
    broker_limit = nofile_soft_limit(target.pid)
    room_limits = [own_limit - _SPARE_FDS]
    if broker_limit is not None:
        in_use = _open_fds(target.pid) or 0
        room_limits.append(broker_limit - in_use - _SPARE_FDS)
    room = min(room_limits)
    if room < connections:
        connections = max(0, room)
        cap_note = f"open-files limits: {target.name} {broker_limit}, load generator {own_limit}"
    rss_before = settled_rss_kb(target.pid, 1.0)
    t0 = time.monotonic()
    deadline = t0 + open_timeout_s
    conns: list[RawMQTT] = []
    open_error = None
    last_ping = t0
    early_dead = 0
    while len(conns) < connections:
        if time.monotonic() - last_ping > keep_alive / 2:
            # A slow broker: keep the connections opened so far inside their keep-alive.
            early_dead += ping_many(conns)[1]
            last_ping = time.monotonic()
        if time.monotonic() > deadline:
            open_error = f"stopped opening after {open_timeout_s:.0f}s"
            break
        try:
            conns += open_many(
                min(wave * 10, connections - len(conns)),
                target.host,
                target.port,
                keep_alive=keep_alive,
                wave=wave,
            )
        except (OSError, MQTTClosed, TimeoutError) as exc:
            open_error = f"{type(exc).__name__}: {exc}"
            break
    open_s = time.monotonic() - t0
    try:
        rss_after = settled_rss_kb(target.pid, settle_s)
        rt_ms = None
        rt_error = None
        try:
            rt_ms = round_trip(target.host, target.port)
        except (OSError, MQTTClosed, TimeoutError) as exc:
            rt_error = f"{type(exc).__name__}: {exc}"
        # Every idle connection must still be alive: PINGREQ -> PINGRESP. This also
        # keeps them inside the keep-alive (1.5 x 60 s) however long the opening took.
        pings, dead = ping_many(conns)
        held_s = time.monotonic() - t0
    finally:
        t1 = time.monotonic()
        close_many(conns)
        close_s = time.monotonic() - t1
    opened = len(conns)
    per_conn = None
    at_requested = None
    if rss_before is not None and rss_after is not None and opened:
        per_conn = (rss_after - rss_before) / opened
        at_requested = (rss_before + per_conn * requested) / 1024
    return {
        "case": "idle-connections",
        "target": target.name,
        "requested": requested,
        "connections": opened,
        "keep_alive_s": keep_alive,
        "capped_by": cap_note,
        "open_error": open_error,
        "open_s": open_s,
        "connections_per_s": opened / open_s if open_s > 0 else None,
        "close_s": close_s,
        "held_s": held_s,
        "pid": target.pid,
        "broker_nofile_limit": broker_limit,
        "rss_before_mb": rss_before / 1024 if rss_before is not None else None,
        "rss_mb": rss_after / 1024 if rss_after is not None else None,
        "rss_per_connection_kb": per_conn,
        "rss_mb_at_requested_extrapolated": at_requested,
        "round_trip_ms": rt_ms,
        "round_trip_error": rt_error,
        "pingresps": pings,
        "dead_connections": dead + early_dead,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=MQTT_TARGETS, default="mosquitto")
    p.add_argument("--connections", type=int, default=10_000)
    p.add_argument("--keep-alive", type=int, default=60)
    p.add_argument("--wave", type=int, default=100, help="connections handshaking at once")
    p.add_argument("--settle", type=float, default=2.0, help="seconds before sampling RSS")
    p.add_argument("--backend", default=None, help="RapidMQ --backend")
    a = p.parse_args()
    raise_nofile_limit()  # before the broker starts, so it inherits the limit
    with open_mqtt_target(a.target, a.backend) as target:
        res = run(
            target,
            connections=a.connections,
            keep_alive=a.keep_alive,
            wave=a.wave,
            settle_s=a.settle,
        )
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
