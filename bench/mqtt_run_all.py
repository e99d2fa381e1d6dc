"""Run every MQTT benchmark case against the local Mosquitto (127.0.0.1:1883), amqtt's
broker (started here on a free port) and RapidMQ (started on free ports with
rapidmq.testing.BrokerProcess), and print one markdown table with each figure and the
ratios RapidMQ/Mosquitto and RapidMQ/amqtt.

Cases (MQTT 3.1.1, 16-byte payloads, raw-socket load generator):
  qos0    1 publisher -> 1 subscriber, QoS 0: delivered msgs/s at the subscriber
  qos1    the same at QoS 1: the subscriber PUBACKs every PUBLISH, the publisher keeps
          at most 1,000 PUBLISHes un-PUBACKed and counts the PUBACKs
  fanout  1 publisher -> 100 subscribers of one topic, QoS 0: delivered msgs/s in total
  idle    10,000 idle connections, keep-alive 60: broker RSS, a publish still reaches a
          subscriber, every idle connection still answers PINGREQ

    .venv/bin/python bench/mqtt_run_all.py                     # all three brokers
    .venv/bin/python bench/mqtt_run_all.py --target rapidmq,mosquitto --quick
    .venv/bin/python bench/mqtt_run_all.py --cases qos0,qos1 --json /tmp/mqtt.json
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

import mqtt_fanout
import mqtt_idle
import mqtt_throughput
from mqtt_targets import MQTT_TARGETS, open_mqtt_target, raise_nofile_limit
from run_all import _busy_pct, _cpu_model, _fmt, _median_run

CASES = ("qos0", "qos1", "fanout", "idle")
# Idle connections first, so the RSS is not inflated by memory that the throughput
# cases made the broker allocate.
RUN_ORDER = ("idle", "qos0", "qos1", "fanout")
LABELS = {"mosquitto": "Mosquitto", "amqtt": "amqtt", "rapidmq": "RapidMQ"}


def _messages(a: argparse.Namespace, name: str, case: str) -> int:
    """amqtt is an order of magnitude slower: it gets fewer messages (rates compare)."""
    n = a.fanout_messages if case == "fanout" else a.messages
    if name == "amqtt":
        n = max(1000, n // a.amqtt_divisor)
    return n


def run_target(name: str, a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"target": name}
    try:
        ctx = open_mqtt_target(name, a.backend)
        target = ctx.__enter__()
    except Exception as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        detail = lines[-1] if lines else ""
        out["error"] = f"not usable: {type(exc).__name__}: {detail}"
        print(f"[{name}] {out['error']}", file=sys.stderr)
        return out
    try:
        out["version"] = target.version
        out["pid"] = target.pid
        for case in sorted(a.cases, key=RUN_ORDER.index):
            busy = _busy_pct()
            t0 = time.monotonic()
            print(f"[{name}] {case} ...", file=sys.stderr, flush=True)
            try:
                if case in ("qos0", "qos1"):
                    qos = 1 if case == "qos1" else 0
                    runs = [
                        mqtt_throughput.run(
                            target,
                            messages=_messages(a, name, case),
                            qos=qos,
                            batch=1000 if qos == 0 else 250,
                            window=a.window,
                        )
                        for _ in range(a.repeat)
                    ]
                    out[case] = _median_run(runs, "consume_rate")
                elif case == "fanout":
                    runs = [
                        mqtt_fanout.run(
                            target,
                            messages=_messages(a, name, case),
                            subscribers=a.subscribers,
                            processes=a.processes,
                        )
                        for _ in range(a.repeat)
                    ]
                    out[case] = _median_run(runs, "consume_rate")
                elif case == "idle":
                    out[case] = mqtt_idle.run(target, connections=a.connections)
            except Exception as exc:
                out[case] = {"error": f"{type(exc).__name__}: {exc}"}
                traceback.print_exc()
            out[case]["machine_busy_pct_before"] = busy
            print(
                f"[{name}] {case} done in {time.monotonic() - t0:.1f}s: "
                + json.dumps(out[case], default=str)[:400],
                file=sys.stderr,
                flush=True,
            )
    finally:
        ctx.__exit__(None, None, None)
    return out


def _get(res: dict[str, Any], case: str, key: str) -> Any:
    if "error" in res:
        return None
    data = res.get(case)
    if not isinstance(data, dict) or "error" in data:
        return None
    return data.get(key)


def _check(check: str, value: Any, ratios: dict[str, float | None]) -> tuple[str, str]:
    """(target text, met) for a check such as "mosquitto>=0.5,amqtt>=10" or "value<400"."""
    if not check:
        return "", ""
    texts = []
    results = []
    for part in check.split(","):
        if part.startswith("value<"):
            bound = float(part.split("<")[1])
            texts.append(f"< {bound:g}")
            results.append(None if value is None else value < bound)
        elif part == "reached":
            texts.append("publish reaches a subscriber")
            results.append(None if value is None else True)
        else:
            who, bound_txt = part.split(">=")
            bound = float(bound_txt)
            texts.append(f">= {bound:g} x {LABELS[who]}")
            ratio = ratios.get(who)
            results.append(None if ratio is None else ratio >= bound)
    if any(r is False for r in results):
        met = "NO"
    elif any(r is None for r in results):
        met = "n/a"
    else:
        met = "yes"
    return " and ".join(texts), met


def table(results: dict[str, dict[str, Any]], a: argparse.Namespace) -> str:
    mos = results.get("mosquitto", {"error": "not run"})
    amq = results.get("amqtt", {"error": "not run"})
    rap = results.get("rapidmq", {"error": "not run"})
    n = a.connections
    # (case label, metric, case key, field, digits, check)
    rows: list[tuple[str, str, str, str, int, str]] = [
        ("qos0", "delivered msgs/s (first to last delivery)", "qos0", "consume_rate", 0, ""),
        ("qos0", "publish start to last delivery msgs/s", "qos0", "publish_to_last_rate", 0, ""),
        ("qos0", "lost %", "qos0", "lost_pct", 2, ""),
        ("qos1", "delivered msgs/s (first to last delivery)", "qos1", "consume_rate", 0, ""),
        ("qos1", "publish start to last delivery msgs/s", "qos1", "publish_to_last_rate", 0, ""),
        ("qos1", "PUBACKs to the publisher", "qos1", "pubacks", 0, ""),
        ("fanout", "delivered msgs/s, all subscribers", "fanout", "consume_rate", 0, ""),
        ("fanout", "lost %", "fanout", "lost_pct", 2, ""),
        ("idle", "connections held", "idle", "connections", 0, ""),
        ("idle", "broker RSS MB", "idle", "rss_mb", 1, ""),
        (
            "idle",
            f"RSS MB at {n:,} (extrapolated)",
            "idle",
            "rss_mb_at_requested_extrapolated",
            1,
            "",
        ),
        ("idle", "RSS kB per connection", "idle", "rss_per_connection_kb", 2, ""),
        ("idle", "publish -> subscriber round trip ms", "idle", "round_trip_ms", 3, ""),
        ("idle", "idle connections answering PINGREQ", "idle", "pingresps", 0, ""),
    ]
    checks = {
        ("qos0", "consume_rate"): "mosquitto>=0.5,amqtt>=10",
        ("qos1", "consume_rate"): "mosquitto>=0.5",
        ("fanout", "consume_rate"): "mosquitto>=0.5",
        ("idle", "rss_mb"): "value<400",
        ("idle", "round_trip_ms"): "reached",
    }
    lines = [
        "| Case | Metric | Mosquitto | amqtt | RapidMQ | RapidMQ/Mosquitto | RapidMQ/amqtt "
        "| Target | Met |",
        "|---|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for case, metric, key, field, digits, _ in rows:
        if key not in a.cases:
            continue
        v_mos = _get(mos, key, field)
        v_amq = _get(amq, key, field)
        v_rap = _get(rap, key, field)
        ratios: dict[str, float | None] = {}
        for who, other in (("mosquitto", v_mos), ("amqtt", v_amq)):
            ratios[who] = (
                v_rap / other
                if isinstance(v_rap, int | float) and isinstance(other, int | float) and other
                else None
            )
        target_txt, met = _check(checks.get((key, field), ""), v_rap, ratios)
        lines.append(
            f"| {case} | {metric} | {_fmt(v_mos, digits)} | {_fmt(v_amq, digits)} | "
            f"{_fmt(v_rap, digits)} | {_fmt(ratios['mosquitto'], 2)} | "
            f"{_fmt(ratios['amqtt'], 2)} | {target_txt} | {met} |"
        )
    notes = []
    for name, res in (("Mosquitto", mos), ("amqtt", amq), ("RapidMQ", rap)):
        if "error" in res and res["error"] != "not run":
            notes.append(f"- {name}: {res['error']}")
        for case in a.cases:
            data = res.get(case)
            if not isinstance(data, dict):
                continue
            if data.get("error"):
                notes.append(f"- {name} {case}: {data['error']}")
            if case != "idle" and "received" in data:
                notes.append(
                    f"- {name} {case}: {data['messages']:,} messages published, "
                    f"{data['received']:,} of {data['expected']:,} deliveries received; "
                    f"subscriber CPU/wall {_fmt(data.get('subscriber_cpu_per_wall_max'), 2)}"
                )
            if data.get("capped_by") or data.get("open_error"):
                notes.append(
                    f"- {name} idle: held {data['connections']:,} of {data['requested']:,} "
                    f"connections ({data.get('capped_by') or data.get('open_error')})"
                )
            if data.get("dead_connections"):
                notes.append(f"- {name} idle: {data['dead_connections']} connections died")
            if data.get("round_trip_error"):
                notes.append(f"- {name} idle round trip failed: {data['round_trip_error']}")
            busy = data.get("machine_busy_pct_before")
            if busy is not None and busy > 20:
                notes.append(
                    f"- {name} {case}: the machine was {busy:.0f}% busy with other work "
                    "just before this case; its figures are noisy"
                )
    return "\n".join(lines + (["", *notes] if notes else []))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--target", default="all", help="all, or a comma list of " + ",".join(MQTT_TARGETS)
    )
    p.add_argument("--messages", type=int, default=None, help="messages per qos0/qos1 run")
    p.add_argument("--fanout-messages", type=int, default=None, help="messages per fan-out run")
    p.add_argument("--amqtt-divisor", type=int, default=10, help="amqtt gets 1/N of the messages")
    p.add_argument("--quick", action="store_true", help="smaller, faster runs")
    p.add_argument("--repeat", type=int, default=None, help="throughput runs per case (median)")
    p.add_argument("--window", type=int, default=1000, help="QoS 1 PUBLISHes un-PUBACKed")
    p.add_argument("--subscribers", type=int, default=100, help="fan-out subscribers")
    p.add_argument("--processes", type=int, default=4, help="fan-out subscriber processes")
    p.add_argument("--connections", type=int, default=None, help="idle connections")
    p.add_argument("--cases", default=",".join(CASES), help="comma list of " + ",".join(CASES))
    p.add_argument("--backend", default=None, help="RapidMQ --backend (trio|asyncio)")
    p.add_argument("--json", default=None, help="also write all raw figures to this file")
    a = p.parse_args()
    a.cases = [c for c in CASES if c in a.cases.split(",")]
    if a.messages is None:
        a.messages = 50_000 if a.quick else 200_000
    if a.fanout_messages is None:
        a.fanout_messages = 5_000 if a.quick else 20_000
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    if a.connections is None:
        a.connections = 2_000 if a.quick else 10_000
    names = MQTT_TARGETS if a.target == "all" else tuple(a.target.split(","))
    for name in names:
        if name not in MQTT_TARGETS:
            p.error(f"unknown target {name!r}")
    nofile = raise_nofile_limit()  # before any broker starts, so it inherits the limit
    started = dt.datetime.now(dt.UTC)
    load = os.getloadavg()
    results = {name: run_target(name, a) for name in names}
    header = [
        f"RapidMQ MQTT benchmarks, {started:%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores, {_cpu_model()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, "
        f"open-files limit {nofile}",
    ]
    for name in names:
        if results[name].get("version"):
            header.append(f"{name}: {results[name]['version']}")
    header.append(
        f"params: messages={a.messages} fanout_messages={a.fanout_messages} "
        f"(amqtt 1/{a.amqtt_divisor}) repeat={a.repeat} (median) window={a.window} "
        f"subscribers={a.subscribers} connections={a.connections}"
    )
    print("\n".join(header) + "\n")
    print(table(results, a))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(
                {"started": started.isoformat(), "args": vars(a), "results": results},
                f,
                indent=2,
                default=str,
            )


if __name__ == "__main__":
    main()
