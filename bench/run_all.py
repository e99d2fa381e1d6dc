"""Run every benchmark case against RabbitMQ (127.0.0.1:5672) and RapidMQ (started on
free ports with rapidmq.testing.BrokerProcess) and print one markdown table with each
figure and the ratio RapidMQ/RabbitMQ.

Cases:
  1. transient 16-byte messages, 1 publisher -> 1 consumer, no-ack: msgs/s end to end
  2. the same with manual acks (prefetch 1000, multiple ack every 100)
  3. end-to-end latency p50/p99/max at a steady 5,000 msgs/s for 10 s
  4. 1,000 idle AMQP connections: broker RSS, and a publish/consume round trip

    .venv/bin/python bench/run_all.py                      # both brokers
    .venv/bin/python bench/run_all.py --target rabbitmq --quick
    .venv/bin/python bench/run_all.py --messages 500000 --json /tmp/bench.json
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

import amqp_latency
import amqp_throughput
import idle_connections
from targets import TARGETS, open_target

CASES = ("noack", "ack", "latency", "idle")
# Idle connections run first, so the broker's RSS is not inflated by memory that the
# throughput cases made it allocate (allocators rarely give it back).
RUN_ORDER = ("idle", "noack", "ack", "latency")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _busy_pct(interval_s: float = 0.5) -> float | None:
    """Share of all CPUs busy over ``interval_s``, from /proc/stat: other work on the
    machine makes the figures noisy, so each case records it."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(interval_s)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return 100.0 * (1 - (idle1 - idle0) / total) if total > 0 else None


def _median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (upper median for an even count)."""
    ordered = sorted(runs, key=lambda r: r[key])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["all_" + key] = [r[key] for r in runs]
    return chosen


def run_target(name: str, a: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {"target": name}
    try:
        ctx = open_target(name, a.backend)
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
                if case in ("noack", "ack"):
                    runs = [
                        amqp_throughput.run(
                            target, messages=a.messages, ack=case == "ack", nap_us=a.nap_us
                        )
                        for _ in range(a.repeat)
                    ]
                    out[case] = _median_run(runs, "consume_rate")
                elif case == "latency":
                    out[case] = amqp_latency.run(
                        target, rate=a.rate, duration_s=a.duration, warmup_s=a.warmup
                    )
                elif case == "idle":
                    out[case] = idle_connections.run(target, connections=a.connections)
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


def _fmt(value: Any, digits: int) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def table(results: dict[str, dict[str, Any]], a: argparse.Namespace) -> str:
    rmq = results.get("rabbitmq", {"error": "not run"})
    rap = results.get("rapidmq", {"error": "not run"})
    n = a.connections
    # (case, metric, case key, figure, digits, target check on the RapidMQ value or ratio)
    rows: list[tuple[str, str, str, str, int, str]] = [
        (
            "1 no-ack",
            "end-to-end msgs/s (first to last delivery)",
            "noack",
            "consume_rate",
            0,
            "ratio>=1.0",
        ),
        (
            "1 no-ack",
            "publish start to last delivery msgs/s",
            "noack",
            "publish_to_last_rate",
            0,
            "",
        ),
        ("1 no-ack", "publish msgs/s", "noack", "publish_rate", 0, ""),
        (
            "2 ack",
            "end-to-end msgs/s (first to last delivery)",
            "ack",
            "consume_rate",
            0,
            "ratio>=0.8",
        ),
        ("2 ack", "publish start to last delivery msgs/s", "ack", "publish_to_last_rate", 0, ""),
        ("2 ack", "publish msgs/s", "ack", "publish_rate", 0, ""),
        ("3 latency", "p50 ms", "latency", "p50_ms", 3, ""),
        ("3 latency", "p99 ms", "latency", "p99_ms", 3, "value<=2"),
        ("3 latency", "p99.9 ms", "latency", "p999_ms", 3, ""),
        ("3 latency", "max ms", "latency", "max_ms", 3, ""),
        ("3 latency", "achieved msgs/s", "latency", "rate_achieved", 0, ""),
        ("4 idle", "connections held", "idle", "connections", 0, ""),
        ("4 idle", "broker RSS MB", "idle", "rss_mb", 1, "value<150"),
        (
            "4 idle",
            f"RSS MB at {n} (extrapolated)",
            "idle",
            "rss_mb_at_requested_extrapolated",
            1,
            "",
        ),
        ("4 idle", "RSS kB per connection", "idle", "rss_per_connection_kb", 1, ""),
        ("4 idle", "round trip ms", "idle", "round_trip_ms", 3, ""),
    ]
    lines = [
        "| Case | Metric | RabbitMQ | RapidMQ | RapidMQ/RabbitMQ | Target | Met |",
        "|---|---|---:|---:|---:|---|---|",
    ]
    for case, metric, key, field, digits, check in rows:
        if key not in a.cases:
            continue
        v_rmq = _get(rmq, key, field)
        v_rap = _get(rap, key, field)
        ratio = None
        if isinstance(v_rmq, int | float) and isinstance(v_rap, int | float) and v_rmq:
            ratio = v_rap / v_rmq
        met = ""
        target_txt = ""
        if check.startswith("ratio>="):
            bound = float(check.split(">=")[1])
            target_txt = f">= {bound:g} x RabbitMQ"
            met = "n/a" if ratio is None else ("yes" if ratio >= bound else "NO")
        elif check.startswith("value<="):
            bound = float(check.split("<=")[1])
            target_txt = f"<= {bound:g}"
            met = "n/a" if v_rap is None else ("yes" if v_rap <= bound else "NO")
        elif check.startswith("value<"):
            bound = float(check.split("<")[1])
            target_txt = f"< {bound:g}"
            met = "n/a" if v_rap is None else ("yes" if v_rap < bound else "NO")
        lines.append(
            f"| {case} | {metric} | {_fmt(v_rmq, digits)} | {_fmt(v_rap, digits)} | "
            f"{_fmt(ratio, 2)} | {target_txt} | {met} |"
        )
    notes = []
    for name, res in (("RabbitMQ", rmq), ("RapidMQ", rap)):
        if "error" in res and res["error"] != "not run":
            notes.append(f"- {name}: {res['error']}")
        for case in a.cases:
            data = res.get(case)
            if isinstance(data, dict) and data.get("error"):
                notes.append(f"- {name} {case}: {data['error']}")
            if isinstance(data, dict) and "received" in data:
                expected = data.get("messages", data.get("sent"))
                if expected is not None and data["received"] != expected:
                    notes.append(
                        f"- {name} {case}: received {data['received']:,} of {expected:,} messages"
                    )
            if isinstance(data, dict) and data.get("capped_by"):
                notes.append(
                    f"- {name} idle: held {data['connections']} of {data['requested']} "
                    f"connections, capped by {data['capped_by']}"
                )
            busy = data.get("machine_busy_pct_before") if isinstance(data, dict) else None
            if busy is not None and busy > 20:
                notes.append(
                    f"- {name} {case}: the machine was {busy:.0f}% busy with other work "
                    "just before this case; its figures are noisy"
                )
            if isinstance(data, dict) and data.get("round_trip_error"):
                notes.append(f"- {name} idle round trip failed: {data['round_trip_error']}")
    return "\n".join(lines + (["", *notes] if notes else []))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", choices=(*TARGETS, "both"), default="both")
    p.add_argument("--messages", type=int, default=None, help="messages per throughput run")
    p.add_argument("--quick", action="store_true", help="smaller, faster runs")
    p.add_argument("--repeat", type=int, default=None, help="throughput runs per case (median)")
    p.add_argument(
        "--nap-us", type=int, default=0, help="throughput consumer sleeps after a small read"
    )
    p.add_argument("--rate", type=int, default=5000, help="latency case publish rate")
    p.add_argument("--duration", type=float, default=None, help="latency case seconds")
    p.add_argument("--warmup", type=float, default=1.0, help="latency seconds not measured")
    p.add_argument("--connections", type=int, default=None, help="idle connections")
    p.add_argument("--cases", default=",".join(CASES), help="comma list of " + ",".join(CASES))
    p.add_argument("--backend", default=None, help="RapidMQ --backend (trio|asyncio)")
    p.add_argument("--json", default=None, help="also write all raw figures to this file")
    a = p.parse_args()
    a.cases = [c for c in CASES if c in a.cases.split(",")]
    if a.messages is None:
        a.messages = 50_000 if a.quick else 300_000
    if a.repeat is None:
        a.repeat = 1 if a.quick else 3
    if a.duration is None:
        a.duration = 3.0 if a.quick else 10.0
    if a.connections is None:
        a.connections = 1000
    names = TARGETS if a.target == "both" else (a.target,)
    started = dt.datetime.now(dt.UTC)
    load = os.getloadavg()
    results = {name: run_target(name, a) for name in names}
    header = [
        f"RapidMQ benchmarks, {started:%Y-%m-%d %H:%M} UTC",
        f"machine: {os.cpu_count()} cores, {_cpu_model()}, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}, "
        f"load average at start {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
    ]
    for name in names:
        if results[name].get("version"):
            header.append(f"{name}: {results[name]['version']}")
    header.append(
        f"params: messages={a.messages} repeat={a.repeat} (median) nap_us={a.nap_us} "
        f"rate={a.rate}/s "
        f"duration={a.duration}s warmup={a.warmup}s connections={a.connections}"
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
