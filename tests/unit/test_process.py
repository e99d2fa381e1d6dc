"""Readings of the broker's own process and disk."""

from __future__ import annotations

import os
from pathlib import Path

from rapidmq.process import disk_free_bytes, fd_limit, open_fds, resident_bytes


def test_a_data_dir_not_made_yet_is_measured_where_it_would_be_created(tmp_path: Path) -> None:
    # --storage memory never creates the data dir; its disk is still the one to watch.
    missing = tmp_path / "not" / "made" / "yet"
    stat = os.statvfs(tmp_path)
    free = disk_free_bytes(str(missing))
    assert free is not None
    assert abs(free - stat.f_bavail * stat.f_frsize) < 64 << 20  # the same file system


def test_process_readings_are_plausible() -> None:
    assert resident_bytes() > 1_000_000
    assert 0 < open_fds() <= fd_limit()
