"""A broker whose data dir is on a small tmpfs that fills up, driven by pika in confirm mode.

The data dir sits on its own 16 MB tmpfs (mounting needs root; the tests skip
without it).  A filler file takes part of the space, so freeing it is how the
"operator" makes room.  Whatever happens, every publish pika saw confirmed must
be consumable, then and after a restart on the same data dir.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pika
import pika.exceptions
import pytest

from rapidmq.testing import BrokerProcess

MOUNT_SIZE = "16m"
BODY_BYTES = 2000
QUEUE = "full"


@pytest.fixture
def small_disk() -> Iterator[Path]:
    mount_point = Path(tempfile.mkdtemp(prefix="rapidmq-small-disk-"))
    try:
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={MOUNT_SIZE}", "tmpfs", str(mount_point)],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as err:
        mount_point.rmdir()
        pytest.skip(f"cannot run mount: {err}")
    if done.returncode != 0:
        mount_point.rmdir()
        pytest.skip(f"mounting a tmpfs is not permitted here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=True)
        mount_point.rmdir()


def fill(mount_point: Path, leave_free_bytes: int) -> Path:
    """A filler file that leaves about ``leave_free_bytes`` free on the mount."""
    stat = os.statvfs(mount_point)
    size = stat.f_bavail * stat.f_frsize - leave_free_bytes
    filler = mount_point / "filler"
    with open(filler, "wb") as out:
        out.write(b"\0" * size)
    return filler


@dataclass
class ConfirmingPublisher:
    """Publishes numbered persistent messages in confirm mode until the broker stops it."""

    url: str
    confirmed: list[int] = field(default_factory=list)
    error: BaseException | None = None
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        params = pika.URLParameters(self.url)
        params.blocked_connection_timeout = 3.0  # a blocked publisher gives up
        try:
            conn = pika.BlockingConnection(params)
            channel = conn.channel()
            channel.confirm_delivery()
            properties = pika.BasicProperties(delivery_mode=2)
            filler = b"x" * (BODY_BYTES - 8)
            for i in range(1_000_000):
                channel.basic_publish("", QUEUE, i.to_bytes(8, "big") + filler, properties)
                self.confirmed.append(i)  # basic_publish returned: the broker confirmed it
        except BaseException as err:  # the expected end: blocked too long, or closed
            self.error = err

    def join(self, timeout_s: float) -> None:
        assert self.thread is not None
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), f"publisher stuck after {len(self.confirmed)}"


def declare(url: str) -> None:
    conn = pika.BlockingConnection(pika.URLParameters(url))
    conn.channel().queue_declare(QUEUE, durable=True)
    conn.close()


def consume_ids(url: str, *, ack: bool) -> list[int]:
    """Every message of the queue, by number; without ``ack`` they go back on close."""
    conn = pika.BlockingConnection(pika.URLParameters(url))
    channel = conn.channel()
    channel.basic_qos(prefetch_count=500 if ack else 0)  # unacked: take them all
    ids: list[int] = []
    for method, _properties, body in channel.consume(QUEUE, inactivity_timeout=2.0):
        if method is None:
            break
        assert len(body) == BODY_BYTES
        ids.append(int.from_bytes(body[:8], "big"))
        if ack:
            channel.basic_ack(method.delivery_tag)
    channel.cancel()
    conn.close()
    return ids


def wait_for_line(broker: BrokerProcess, text: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(text in line for line in broker.output):
            return True
        time.sleep(0.05)
    return False


def test_disk_alarm_blocks_before_the_disk_fills_and_freeing_space_resumes_publishing(
    small_disk: Path,
) -> None:
    data_dir = small_disk / "data"
    data_dir.mkdir()
    with BrokerProcess("--disk-free-limit", "3MB", data_dir=str(data_dir)) as broker:
        filler = fill(small_disk, 7_000_000)
        declare(broker.amqp_url)
        publisher = ConfirmingPublisher(broker.amqp_url)
        publisher.start()
        publisher.join(timeout_s=60)
        # connection.blocked arrived and stayed: pika gave up after its timeout.
        assert isinstance(publisher.error, pika.exceptions.ConnectionBlockedTimeout)
        assert wait_for_line(broker, "disk alarm set", 1)
        assert broker.proc is not None and broker.proc.poll() is None
        assert not any("storage" in line for line in broker.output)
        confirmed = publisher.confirmed
        assert len(confirmed) > 500

        filler.unlink()
        assert wait_for_line(broker, "disk alarm cleared", 5)
        conn = pika.BlockingConnection(pika.URLParameters(broker.amqp_url))
        channel = conn.channel()
        channel.confirm_delivery()
        after = 10**9  # apart from the numbers the publisher used
        body = after.to_bytes(8, "big") + b"x" * (BODY_BYTES - 8)
        channel.basic_publish("", QUEUE, body, pika.BasicProperties(delivery_mode=2))
        conn.close()
        served = consume_ids(broker.amqp_url, ack=False)
        assert_confirmed_then(served, confirmed, after)

    with BrokerProcess(data_dir=str(data_dir)) as restarted:
        assert consume_ids(restarted.amqp_url, ack=True) == served


def assert_confirmed_then(ids: list[int], confirmed: list[int], after: int) -> None:
    """The confirmed messages in order, at most the one whose confirm pika did not wait
    for (it was read when the connection blocked), then ``after``."""
    assert ids[: len(confirmed)] == confirmed
    assert ids[len(confirmed) :] in ([after], [len(confirmed), after])


def test_store_refusing_writes_sets_an_alarm_confirms_nothing_unsynced_and_restart_recovers(
    small_disk: Path,
) -> None:
    data_dir = small_disk / "data"
    data_dir.mkdir()
    # A one-byte limit: the disk alarm cannot warn before RocksDB hits a full disk.
    with BrokerProcess("--disk-free-limit", "1", data_dir=str(data_dir)) as broker:
        filler = fill(small_disk, 6_000_000)
        declare(broker.amqp_url)
        publisher = ConfirmingPublisher(broker.amqp_url)
        publisher.start()
        publisher.join(timeout_s=60)
        assert isinstance(publisher.error, pika.exceptions.ConnectionBlockedTimeout)
        assert wait_for_line(broker, "publishes from now on are not confirmed", 2), "\n".join(
            broker.output
        )
        assert broker.proc is not None and broker.proc.poll() is None
        confirmed = publisher.confirmed
        assert len(confirmed) > 500
        filler.unlink()
        time.sleep(0.5)
        assert broker.proc.poll() is None
        # The messages are still served from memory, the confirmed ones first.
        served = consume_ids(broker.amqp_url, ack=False)
        assert served[: len(confirmed)] == confirmed
        broker.stop()

    with BrokerProcess(data_dir=str(data_dir)) as restarted:
        recovered = consume_ids(restarted.amqp_url, ack=True)
    assert recovered[: len(confirmed)] == confirmed
    assert recovered == list(range(len(recovered)))
