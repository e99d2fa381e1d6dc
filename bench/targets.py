"""The brokers a benchmark can run against: the local RabbitMQ, or RapidMQ started on
free ports with rapidmq.testing.BrokerProcess."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from amqp_raw import RawConnection

from rapidmq.testing import resident_bytes

RABBITMQ_PORT = 5672
HOST = "127.0.0.1"
TARGETS = ("rabbitmq", "rapidmq")


@dataclass
class Target:
    name: str
    host: str
    port: int
    pid: int | None
    version: str = "?"


def rss_kb(pid: int | None) -> int | None:
    """VmRSS of ``pid`` in kB, from /proc/PID/status."""
    if pid is None:
        return None
    try:
        return resident_bytes(pid) // 1024 or None
    except OSError:
        return None


def settled_rss_kb(pid: int | None, settle_s: float) -> int | None:
    """Wait ``settle_s`` and return the larger of two VmRSS samples taken a little apart."""
    time.sleep(max(0.0, settle_s - 0.5))
    first = rss_kb(pid)
    time.sleep(0.5)
    second = rss_kb(pid)
    values = [v for v in (first, second) if v is not None]
    return max(values) if values else None


def find_beam_pid() -> int | None:
    """The RabbitMQ node's beam.smp process (the largest one if there are several)."""
    best: tuple[int, int] | None = None
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/comm") as f:
                comm = f.read().strip()
        except OSError:
            continue
        if comm.startswith("beam"):
            rss = rss_kb(int(entry)) or 0
            if best is None or rss > best[1]:
                best = (int(entry), rss)
    return best[0] if best else None


def nofile_soft_limit(pid: int | None) -> int | None:
    """The soft open-files limit of ``pid``, from /proc/PID/limits."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/limits") as f:
            for line in f:
                if line.startswith("Max open files"):
                    soft = line.split()[3]
                    return None if soft == "unlimited" else int(soft)
    except (OSError, ValueError, IndexError):
        return None
    return None


def rabbitmq_sockets() -> tuple[int, int] | None:
    """(sockets limit, sockets in use) of the local RabbitMQ node, from
    ``rabbitmq-diagnostics status``; None if that is not available."""
    tool = shutil.which("rabbitmq-diagnostics")
    if tool is None:
        return None
    try:
        out = subprocess.run(
            [tool, "-q", "status", "--formatter", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        fds = json.loads(out)["file_descriptors"]
        return int(fds["sockets_limit"]), int(fds["sockets_used"])
    except (OSError, subprocess.SubprocessError, ValueError, KeyError, TypeError):
        return None


def _server_version(host: str, port: int) -> str:
    conn = RawConnection.open(host, port)
    try:
        props = conn.server_properties
        product = props.get("product", "?")
        version = props.get("version", "?")
        if isinstance(product, bytes):
            product = product.decode()
        if isinstance(version, bytes):
            version = version.decode()
        return f"{product} {version}"
    finally:
        conn.close()


@contextlib.contextmanager
def open_target(name: str, backend: str | None = None) -> Iterator[Target]:
    if name == "rabbitmq":
        yield Target(
            name, HOST, RABBITMQ_PORT, find_beam_pid(), _server_version(HOST, RABBITMQ_PORT)
        )
        return
    if name != "rapidmq":
        raise ValueError(f"unknown target {name!r}")
    from rapidmq.testing import BrokerProcess

    broker = BrokerProcess(backend=backend)
    broker.start()
    try:
        assert broker.amqp_port is not None, "RapidMQ started without an AMQP listener"
        assert broker.proc is not None
        try:
            version = _server_version(HOST, broker.amqp_port)
        except Exception as exc:
            time.sleep(0.3)
            errors = [line.strip() for line in broker.output if "Error" in line]
            hint = f"; broker log: {errors[-1]}" if errors else ""
            raise RuntimeError(
                f"started on port {broker.amqp_port} but the AMQP handshake failed "
                f"({type(exc).__name__}: {exc}){hint}"
            ) from exc
        yield Target(name, HOST, broker.amqp_port, broker.proc.pid, version)
    finally:
        code = broker.stop()
        if code not in (0, None, -15):
            tail = "\n".join(list(broker.output)[-20:])
            print(f"note: rapidmq exited with {code}; last output:\n{tail}")
