"""A Docker daemon for the image tests, and the RapidMQ containers they run.

:class:`DockerDaemon` makes ``docker`` usable: it installs docker.io through
``make system-deps`` when Docker is missing, starts ``dockerd`` (its log in a
temporary file) when no daemon answers, and stops the one it started.  When
Docker cannot run here, :meth:`DockerDaemon.start` returns why, for a skip.

:class:`Container` is one ``docker run -d`` of the image with its ports
published on free ports of 127.0.0.1 (``-p 127.0.0.1::5672``, read back with
``docker port``).  It follows ``docker logs`` in a thread and is ready once
the broker prints ``rapidmq ready …``.  :meth:`Container.remove` removes it
together with its anonymous volumes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

__all__ = ["REPO", "Container", "DockerDaemon", "docker", "image_exists", "wait_for"]

REPO = Path(__file__).resolve().parents[2]
#: The ports the image exposes (see packaging/Dockerfile).
AMQP, MQTT, MQTT_WS, HTTP = 5672, 1883, 15675, 15672
_PUBLISHED = (AMQP, MQTT, MQTT_WS, HTTP)
_READY_PREFIX = "rapidmq ready "

T = TypeVar("T")


def docker(*args: str, timeout_s: float = 120.0, check: bool = True) -> str:
    """Run ``docker ARGS`` and return its stdout; raise with its stderr if it fails."""
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout_s, check=False
    )
    if check and done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done.stdout


def image_exists(name: str) -> bool:
    done = subprocess.run(
        ["docker", "image", "inspect", name], capture_output=True, timeout=60, check=False
    )
    return done.returncode == 0


def wait_for(probe: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Call ``probe`` until it returns something other than None, or fail after the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        time.sleep(0.1)


def make_env() -> dict[str, str]:
    """The environment for a nested ``make``, without the outer make's flags."""
    return {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}


class DockerDaemon:
    """A Docker daemon that answers, started here when none runs."""

    def __init__(self) -> None:
        self.log_path = Path(tempfile.gettempdir()) / "rapidmq-test-dockerd.log"
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def answers() -> bool:
        try:
            done = subprocess.run(
                ["docker", "info", "--format", "{{.ServerVersion}}"],
                capture_output=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    def start(self, timeout_s: float = 60.0) -> str | None:
        """None once a daemon answers, else why Docker cannot run here."""
        if shutil.which("docker") is None or shutil.which("dockerd") is None:
            subprocess.run(
                ["make", "-s", "system-deps"],
                cwd=REPO,
                env=make_env(),
                capture_output=True,
                timeout=900,
                check=False,
            )
        if shutil.which("docker") is None:
            return "docker is not installed and `make system-deps` could not install docker.io"
        if self.answers():
            return None
        if shutil.which("dockerd") is None:
            return "no Docker daemon answers and dockerd is not installed"
        if os.geteuid() != 0:
            return "no Docker daemon answers, and starting dockerd needs root"
        log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            ["dockerd"], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout_s
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                tail = self.log_path.read_text(errors="replace").strip().splitlines()[-3:]
                return "dockerd could not start: " + " | ".join(tail)
            time.sleep(0.2)
        return None

    def stop(self) -> None:
        """Stop the dockerd this started, if any."""
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class Container:
    """One container of the image, its ports published on free ports of 127.0.0.1."""

    def __init__(self, image: str, *, volume: str | None = None, args: Sequence[str] = ()) -> None:
        self.image = image
        self.name = f"rapidmq-test-{uuid.uuid4().hex[:12]}"
        self.volume = volume
        self.args = list(args)
        self.ports: dict[int, int] = {}
        self.output: deque[str] = deque(maxlen=2000)
        self._ready = threading.Event()
        self._follower: subprocess.Popen[str] | None = None

    def start(self, timeout_s: float = 30.0) -> Container:
        cmd = ["run", "--detach", "--name", self.name]
        for port in _PUBLISHED:
            cmd += ["--publish", f"127.0.0.1::{port}"]
        if self.volume is not None:
            cmd += ["--volume", f"{self.volume}:/var/lib/rapidmq"]
        docker(*cmd, *self.args, self.image)
        self._follow()
        deadline = time.monotonic() + timeout_s
        while not self._ready.wait(0.1):
            if time.monotonic() > deadline or self.state()["Status"] != "running":
                raise AssertionError(
                    f"{self.name} did not print its ready line:\n" + "\n".join(self.output)
                )
        for port in _PUBLISHED:
            # "127.0.0.1:49153"
            self.ports[port] = int(docker("port", self.name, f"{port}/tcp").split(":")[-1])
        return self

    def _follow(self) -> None:
        self._follower = subprocess.Popen(
            ["docker", "logs", "--follow", self.name],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

        def pump() -> None:
            assert self._follower is not None and self._follower.stdout is not None
            for line in self._follower.stdout:
                self.output.append(line.rstrip("\n"))
                if line.startswith(_READY_PREFIX):
                    self._ready.set()

        threading.Thread(target=pump, daemon=True).start()

    def inspect(self) -> dict[str, Any]:
        found: list[dict[str, Any]] = json.loads(docker("inspect", self.name))
        return found[0]

    def state(self) -> dict[str, Any]:
        state: dict[str, Any] = self.inspect()["State"]
        return state

    def exec(self, *args: str) -> str:
        return docker("exec", self.name, *args)

    def stop(self, grace_s: int = 10) -> float:
        """``docker stop`` (SIGTERM, SIGKILL after ``grace_s``); returns the seconds it took."""
        started = time.monotonic()
        docker("stop", "--time", str(grace_s), self.name, timeout_s=grace_s + 60)
        return time.monotonic() - started

    def remove(self) -> None:
        docker("rm", "--force", "--volumes", self.name, check=False)
        if self._follower is not None:
            if self._follower.poll() is None:
                self._follower.kill()
            self._follower.wait()
            if self._follower.stdout is not None:
                self._follower.stdout.close()
