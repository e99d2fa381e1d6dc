"""Run a real RapidMQ broker in a subprocess, for tests and benchmarks.

    with BrokerProcess() as broker:
        url = broker.amqp_url   # amqp://guest:guest@127.0.0.1:PORT/

The broker binds free ports (port 0) and is found through its ready line,
``rapidmq ready amqp=PORT mqtt=PORT http=PORT``.  The ports of the other
listeners (MQTT over WebSocket, and with ``--tls-cert`` AMQPS, MQTTS, MQTT over
secure WebSocket and HTTPS) come from their "listening for … on ADDR:PORT"
log lines, which are logged before the ready line.

    with BrokerProcess("--tls-cert", cert, "--tls-key", key) as broker:
        broker.amqps_port   # a free port, like every other listener
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from types import TracebackType

__all__ = ["BrokerProcess", "PeakResident", "resident_bytes"]

_READY = re.compile(r"^rapidmq ready amqp=(\S+) mqtt=(\S+) http=(\S+)")
_LISTENING = re.compile(r"listening for (.+?) on \S+:(\d+)")
#: Listener name in the log line -> attribute of BrokerProcess.
_LISTENER_PORTS = {
    "MQTT over WebSocket": "mqtt_ws_port",
    "AMQP over TLS": "amqps_port",
    "MQTT over TLS": "mqtts_port",
    "MQTT over secure WebSocket": "mqtt_wss_port",
    "HTTPS": "https_port",
}
#: Listeners that are on only with a certificate; they bind free ports unless given.
_TLS_FLAGS = ("--amqps-port", "--mqtts-port", "--mqtt-wss-port")


def _port(value: str) -> int | None:
    return None if value == "off" else int(value)


class BrokerProcess:
    """A ``rapidmq serve`` subprocess on free ports."""

    def __init__(
        self,
        *args: str,
        backend: str | None = None,
        data_dir: str | None = None,
        env: dict[str, str] | None = None,
        start_timeout_s: float = 20.0,
    ) -> None:
        self._extra = list(args)
        self._backend = backend
        self._data_dir = data_dir
        self._env = env
        self._start_timeout_s = start_timeout_s
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self.proc: subprocess.Popen[str] | None = None
        self.amqp_port: int | None = None
        self.mqtt_port: int | None = None
        self.http_port: int | None = None
        self.mqtt_ws_port: int | None = None
        self.amqps_port: int | None = None
        self.mqtts_port: int | None = None
        self.mqtt_wss_port: int | None = None
        self.https_port: int | None = None
        self.output: deque[str] = deque(maxlen=2000)
        self._reader: threading.Thread | None = None

    @property
    def amqp_url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    def start(self) -> BrokerProcess:
        if self._data_dir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="rapidmq-test-")
            self._data_dir = self._tmp.name
        cmd = [sys.executable, "-m", "rapidmq", "serve", "--amqp-port", "0"]
        if "--mqtt-port" not in self._extra:
            cmd += ["--mqtt-port", "0"]
        if "--http-port" not in self._extra:
            cmd += ["--http-port", "0"]
        if "--mqtt-ws-port" not in self._extra:
            cmd += ["--mqtt-ws-port", "0"]
        if "--tls-cert" in self._extra:
            for flag in _TLS_FLAGS:
                if flag not in self._extra:
                    cmd += [flag, "0"]
        cmd += ["--data-dir", self._data_dir]
        if self._backend:
            cmd += ["--backend", self._backend]
        cmd += self._extra
        env = dict(os.environ)
        env.update(self._env or {})
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.proc = subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        ready = threading.Event()

        def pump() -> None:
            assert self.proc is not None and self.proc.stdout is not None
            for line in self.proc.stdout:
                self.output.append(line.rstrip("\n"))
                listening = _LISTENING.search(line)
                if listening:
                    attr = _LISTENER_PORTS.get(listening.group(1))
                    if attr is not None and getattr(self, attr) is None:
                        setattr(self, attr, int(listening.group(2)))
                m = _READY.match(line)
                if m and not ready.is_set():
                    self.amqp_port = _port(m.group(1))
                    self.mqtt_port = _port(m.group(2))
                    self.http_port = _port(m.group(3))
                    ready.set()

        self._reader = threading.Thread(target=pump, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self._start_timeout_s
        while not ready.wait(0.05):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("rapidmq did not start:\n" + "\n".join(self.output))
        return self

    def stop(self, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> int | None:
        """Stop the broker (SIGTERM by default) and return its exit code."""
        code = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(sig)
                try:
                    self.proc.wait(timeout_s)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait()
            code = self.proc.returncode
            if self._reader is not None:
                self._reader.join(2)
            if self.proc.stdout is not None:
                self.proc.stdout.close()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def resident_bytes(pid: int) -> int:
    """The resident memory (VmRSS) of process ``pid`` in bytes; 0 if it has none.

    Raises:
        OSError: the process is gone.
    """
    with open(f"/proc/{pid}/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class PeakResident:
    """Samples a process's resident memory every ``interval_s`` and keeps the peak."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid = pid
        self.peak = 0
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.peak = max(self.peak, resident_bytes(self.pid))
            except OSError:
                return

    def stop(self) -> int:
        """Stop sampling; returns the peak in bytes."""
        self._stop.set()
        self._thread.join()
        return self.peak
