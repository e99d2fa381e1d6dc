"""``rapidmq serve`` refuses a data dir it must not use: one line on stderr, exit 1.

No traceback, no ready line, and the data dir is left as it was found.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from rapidmq.storage import FORMAT_VERSION
from rapidmq.testing import BrokerProcess


def _serve(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "rapidmq",
            "serve",
            "--bind",
            "127.0.0.1",
            "--amqp-port",
            "0",
            "--mqtt-port",
            "0",
            "--mqtt-ws-port",
            "0",
            "--http-port",
            "0",
            "--data-dir",
            str(data_dir),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def _used_data_dir(tmp_path: Path) -> Path:
    """A data dir a broker has run on and stopped."""
    data_dir = tmp_path / "data"
    with BrokerProcess("--bind", "127.0.0.1", data_dir=str(data_dir)):
        pass
    return data_dir


def test_data_dir_in_use_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with BrokerProcess("--bind", "127.0.0.1", data_dir=str(data_dir)) as running:
        assert running.proc is not None
        result = _serve(data_dir)
        pid = running.proc.pid
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"rapidmq: data dir {data_dir} is in use by another RapidMQ (pid {pid}); "
        "stop it or choose another --data-dir\n",
    )


def test_newer_format_is_refused_and_left_alone(tmp_path: Path) -> None:
    data_dir = _used_data_dir(tmp_path)
    (data_dir / "FORMAT").write_text(f"{FORMAT_VERSION + 1}\n")
    result = _serve(data_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"rapidmq: data dir {data_dir} holds format {FORMAT_VERSION + 1}, newer than this "
        f"RapidMQ reads ({FORMAT_VERSION}); use a newer RapidMQ or another --data-dir\n",
    )
    assert (data_dir / "FORMAT").read_text() == f"{FORMAT_VERSION + 1}\n"


def _garble(path: Path) -> None:
    data = bytearray(path.read_bytes())
    for i in range(min(len(data), 600)):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damaged", ["MANIFEST-*", "*.sst"])
def test_corrupted_database_is_refused(tmp_path: Path, damaged: str) -> None:
    data_dir = _used_data_dir(tmp_path)
    files = sorted((data_dir / "db").glob(damaged))
    assert files
    for path in files:
        _garble(path)
    result = _serve(data_dir)
    lines = result.stderr.splitlines()
    assert (result.returncode, result.stdout, len(lines)) == (1, "", 1)
    assert lines[0].startswith(f"rapidmq: the database in {data_dir} is corrupted (Corruption: ")
    assert lines[0].endswith("); restore a backup or move it away")


def test_data_dir_that_is_a_file_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a dir")
    result = _serve(data_dir)
    assert (result.returncode, result.stdout, result.stderr) == (
        1,
        "",
        f"rapidmq: data dir {data_dir} is not a directory; "
        "remove it or choose another --data-dir\n",
    )


def test_refused_start_leaves_the_data_dir_usable(tmp_path: Path) -> None:
    data_dir = _used_data_dir(tmp_path)
    with BrokerProcess("--bind", "127.0.0.1", data_dir=str(data_dir)):
        assert _serve(data_dir).returncode == 1
    assert sorted(os.listdir(data_dir)) == ["FORMAT", "LOCK", "db"]
    with BrokerProcess("--bind", "127.0.0.1", data_dir=str(data_dir)) as again:
        assert any("recovered 1 vhosts, 1 users" in line for line in again.output)
