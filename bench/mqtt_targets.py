"""The MQTT brokers a benchmark can run against: the local Mosquitto (127.0.0.1:1883),
amqtt's broker started here on a free port, or RapidMQ started on free ports with
rapidmq.testing.BrokerProcess (its MQTT port comes from the ready line)."""

from __future__ import annotations

import contextlib
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from mqtt_raw import RawMQTT
from targets import HOST, nofile_soft_limit, rss_kb

MOSQUITTO_PORT = 1883
MQTT_TARGETS = ("mosquitto", "amqtt", "rapidmq")

__all__ = [
    "MQTT_TARGETS",
    "MQTTTarget",
    "nofile_soft_limit",
    "open_mqtt_target",
    "raise_nofile_limit",
    "rss_kb",
]


@dataclass
class MQTTTarget:
    name: str
    host: str
    port: int
    pid: int | None
    version: str = "?"


def raise_nofile_limit() -> int:
    """Raise this process's open-files soft limit to its hard limit (brokers started
    from here inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _probe(host: str, port: int, timeout: float = 5.0) -> None:
    """One MQTT CONNECT/CONNACK and DISCONNECT."""
    with RawMQTT.open(host, port, timeout=timeout):
        pass


def _mosquitto_pid() -> int | None:
    try:
        out = subprocess.run(
            ["pgrep", "-x", "mosquitto"], capture_output=True, text=True, timeout=10
        ).stdout.split()
    except (OSError, subprocess.SubprocessError):
        return None
    return int(out[0]) if out else None


def _mosquitto_version() -> str:
    tool = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    try:
        out = subprocess.run([tool, "-h"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "mosquitto ?"
    for line in (out.stdout + out.stderr).splitlines():
        if "version" in line:
            return line.strip()
    return "mosquitto ?"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


_AMQTT_CONFIG = """\
listeners:
  default:
    type: tcp
    bind: {host}:{port}
plugins:
  amqtt.plugins.authentication.AnonymousAuthPlugin:
    allow_anonymous: true
"""


@contextlib.contextmanager
def _amqtt() -> Iterator[MQTTTarget]:
    """amqtt's broker in a subprocess on a free port, anonymous allowed, with only the
    anonymous-auth plugin (no packet logger, no $SYS publisher)."""
    import importlib.metadata

    tmp = tempfile.TemporaryDirectory(prefix="rapidmq-bench-amqtt-")
    port = _free_port()
    cfg = Path(tmp.name) / "broker.yaml"
    cfg.write_text(_AMQTT_CONFIG.format(host=HOST, port=port))
    log_path = Path(tmp.name) / "broker.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in the finally below
    exe = Path(sys.executable).parent / "amqtt"
    cmd = [str(exe), "-c", str(cfg)]
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"amqtt exited with {proc.returncode}: {log_path.read_text()[-2000:]}"
                )
            try:
                _probe(HOST, port, 2.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        version = f"amqtt {importlib.metadata.version('amqtt')}"
        yield MQTTTarget("amqtt", HOST, port, proc.pid, version)
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()
        tmp.cleanup()


@contextlib.contextmanager
def open_mqtt_target(name: str, backend: str | None = None) -> Iterator[MQTTTarget]:
    if name == "mosquitto":
        _probe(HOST, MOSQUITTO_PORT)
        yield MQTTTarget(name, HOST, MOSQUITTO_PORT, _mosquitto_pid(), _mosquitto_version())
        return
    if name == "amqtt":
        with _amqtt() as target:
            yield target
        return
    if name != "rapidmq":
        raise ValueError(f"unknown target {name!r}")
    from rapidmq.testing import BrokerProcess

    broker = BrokerProcess(backend=backend)
    broker.start()
    try:
        assert broker.proc is not None
        if broker.mqtt_port is None:
            raise RuntimeError("RapidMQ started without an MQTT listener (mqtt=off)")
        try:
            _probe(HOST, broker.mqtt_port)
        except Exception as exc:
            time.sleep(0.3)
            errors = [line.strip() for line in broker.output if "Error" in line]
            hint = f"; broker log: {errors[-1]}" if errors else ""
            raise RuntimeError(
                f"started on MQTT port {broker.mqtt_port} but CONNECT failed "
                f"({type(exc).__name__}: {exc}){hint}"
            ) from exc
        import rapidmq

        version = f"RapidMQ {getattr(rapidmq, '__version__', '?')}"
        yield MQTTTarget(name, HOST, broker.mqtt_port, broker.proc.pid, version)
    finally:
        code = broker.stop()
        if code not in (0, None, -15):
            tail = "\n".join(list(broker.output)[-20:])
            print(f"note: rapidmq exited with {code}; last output:\n{tail}")


if __name__ == "__main__":
    raise_nofile_limit()
    for n in sys.argv[1:] or MQTT_TARGETS:
        try:
            with open_mqtt_target(n) as t:
                print(t, "RSS kB", rss_kb(t.pid), "nofile", nofile_soft_limit(t.pid))
        except Exception as exc:
            print(n, "not usable:", type(exc).__name__, exc)
