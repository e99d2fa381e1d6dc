"""What the broker reads of its own process and host: memory, disk, file descriptors.

Each reading is one system call or one small /proc read, cheap enough for the
resource monitor to take every 50 ms.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import resource
from collections.abc import Callable

__all__ = ["disk_free_bytes", "fd_limit", "open_fds", "resident_bytes", "return_free_memory"]

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """The process's resident set size, from /proc/self/statm."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * _PAGE_BYTES
    except (OSError, ValueError, IndexError):
        return 0


def disk_free_bytes(path: str) -> int | None:
    """Space free to unprivileged users on the file system that holds (or will hold) ``path``.

    A data dir that does not exist yet (``--storage memory`` never makes it) is
    measured at its nearest existing parent, where it would be created.
    """
    current = os.path.abspath(path)
    while True:
        try:
            stat = os.statvfs(current)
        except OSError:
            parent = os.path.dirname(current)
            if parent == current:
                return None
            current = parent
            continue
        return stat.f_bavail * stat.f_frsize


def open_fds() -> int:
    """File descriptors the process has open."""
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return 0


def fd_limit() -> int:
    """The soft limit on open file descriptors."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return int(soft) if soft != resource.RLIM_INFINITY else 1 << 20


def _load_malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    return trim


_malloc_trim = _load_malloc_trim()


def return_free_memory() -> None:
    """Give freed heap pages back to the OS (glibc keeps them otherwise), so RSS falls."""
    if _malloc_trim is not None:
        _malloc_trim(0)
