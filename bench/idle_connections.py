"""Case 4: hold N idle AMQP connections (handshake done, channel 1 open, heartbeats
off) and measure the broker's resident memory (VmRSS from /proc/PID/status; for
RabbitMQ the beam.smp process), then check that the broker still serves a
publish/consume round trip on a fresh connection while they are open.

    .venv/bin/python bench/idle_connections.py --target rabbitmq --connections 1000
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from amqp_raw import BrokerClosed, RawConnection, close_many, open_many, round_trip
from targets import (
    TARGETS,
    Target,
    nofile_soft_limit,
    open_target,
    rabbitmq_sockets,
    settled_rss_kb,
)

# Sockets left free on a capped RabbitMQ for the probe and anyone else using it.
_SPARE_SOCKETS = 30


def run(
    target: Target,
    *,
    connections: int = 1000,
    wave: int = 50,
    settle_s: float = 2.0,
) -> dict[str, Any]:
    if target.pid is None:
        raise RuntimeError(f"no process id for {target.name}; cannot read its RSS")
    requested = connections
    cap_note = None
    if target.name == "rabbitmq":
        # RabbitMQ stops accepting at its socket limit (about 0.8 x its open-files
        # limit); asking for more only trips its alarm and times the handshakes out.
        sockets = rabbitmq_sockets()
        if sockets is not None:
            limit, used = sockets
            room = limit - used - _SPARE_SOCKETS
            if room < connections:
                connections = max(0, room)
                cap_note = (
                    f"RabbitMQ sockets_limit={limit} (beam.smp open-files soft limit "
                    f"{nofile_soft_limit(target.pid)}), {used} in use"
                )
    rss_before = settled_rss_kb(target.pid, 1.0)
    t0 = time.monotonic()
    conns: list[RawConnection] = []
    open_error = None
    while len(conns) < connections:
        try:
            conns += open_many(min(wave, connections - len(conns)), target.host, target.port)
        except (OSError, BrokerClosed, TimeoutError) as exc:
            open_error = f"{type(exc).__name__}: {exc}"
            break
    open_s = time.monotonic() - t0
    try:
        rss_after = settled_rss_kb(target.pid, settle_s)
        rt_ms = None
        rt_error = None
        try:
            with RawConnection.open(target.host, target.port) as probe:
                rt_ms = round_trip(probe)
        except (OSError, BrokerClosed, TimeoutError) as exc:
            rt_error = f"{type(exc).__name__}: {exc}"
        # Every idle connection must still be alive: nothing but EOF or silence.
        dead = 0
        for c in conns:
            c.sock.setblocking(False)
            try:
                if c.sock.recv(4096) == b"":
                    dead += 1
            except BlockingIOError:
                pass
            except OSError:
                dead += 1
            finally:
                c.sock.setblocking(True)
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
        "capped_by": cap_note,
        "open_error": open_error,
        "open_s": open_s,
        "close_s": close_s,
        "pid": target.pid,
        "rss_before_mb": rss_before / 1024 if rss_before is not None else None,
        "rss_mb": rss_after / 1024 if rss_after is not None else None,
        "rss_per_connection_kb": per_conn,
        "rss_mb_at_requested_extrapolated": at_requested,
        "round_trip_ms": rt_ms,
        "round_trip_error": rt_error,
        "dead_connections": dead,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=TARGETS, default="rabbitmq")
    p.add_argument("--connections", type=int, default=1000)
    p.add_argument("--wave", type=int, default=50, help="connections handshaking at once")
    p.add_argument("--settle", type=float, default=2.0, help="seconds before sampling RSS")
    p.add_argument("--backend", default=None, help="RapidMQ --backend")
    a = p.parse_args()
    with open_target(a.target, a.backend) as target:
        res = run(target, connections=a.connections, wave=a.wave, settle_s=a.settle)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
