"""The data dir: its layout, its lock and its format version.

Layout of ``--data-dir``::

    DATA_DIR/LOCK     flock()ed while a RapidMQ uses the dir; holds its pid
    DATA_DIR/FORMAT   the format version, readable before RocksDB opens
    DATA_DIR/db/      the RocksDB database (it also holds the version, key "format")

:func:`open_database` then opens RocksDB, refusing a newer format or a
database it cannot read.  Every refusal is a :class:`StorageError` whose text
is one line that names the fix, because start-up prints it and exits non-zero.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from dataclasses import dataclass

import rocksdict

from rapidmq.storage.api import FORMAT_VERSION, StorageError

__all__ = [
    "COLUMN_FAMILIES",
    "DataDir",
    "corrupted_error",
    "in_use_error",
    "lock_data_dir",
    "newer_format_error",
    "one_line",
    "open_database",
    "os_error",
    "read_format_file",
    "write_format_file",
]

LOCK_FILE = "LOCK"
FORMAT_FILE = "FORMAT"
DB_DIR = "db"
#: The column families of the database (besides "default", which holds FORMAT_KEY).
COLUMN_FAMILIES = ("meta", "messages", "delivered", "streams")
FORMAT_KEY = b"format"
#: The memtable size of the default column family (pages).
PAGES_WRITE_BUFFER_BYTES = 8 << 20


@dataclass(slots=True)
class DataDir:
    """A locked data dir; :meth:`release` gives it up."""

    path: str
    lock_fd: int

    @property
    def db_path(self) -> str:
        """Where the RocksDB database lives."""
        return os.path.join(self.path, DB_DIR)

    def release(self) -> None:
        """Unlock the dir (closing the file drops the flock)."""
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


def lock_data_dir(path: str) -> DataDir:
    """Create ``path`` if missing and take its lock, writing our pid in it.

    Raises:
        StorageError: not a directory, not writable, or in use by another RapidMQ.
    """
    path = os.path.abspath(path)
    try:
        os.makedirs(path, exist_ok=True)
    except FileExistsError:
        raise StorageError(
            f"rapidmq: data dir {path} is not a directory; remove it or choose another --data-dir"
        ) from None
    except OSError as exc:
        raise os_error(path, exc) from None
    if not os.path.isdir(path):
        raise StorageError(
            f"rapidmq: data dir {path} is not a directory; remove it or choose another --data-dir"
        )
    lock_path = os.path.join(path, LOCK_FILE)
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise os_error(path, exc) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        holder = _read_pid(fd)
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise in_use_error(path, holder) from None
        raise os_error(path, exc) from None
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        if not os.access(path, os.W_OK):
            raise PermissionError(errno.EACCES, "permission denied", path)
    except OSError as exc:
        os.close(fd)
        raise os_error(path, exc) from None
    return DataDir(path, fd)


def open_database(locked: DataDir) -> rocksdict.Rdict:
    """Open (or create) the database of a locked dir, checking its format version.

    Raises:
        StorageError: a newer format, a corrupted database, no permission.
    """
    version = read_format_file(locked.path)
    if version is not None and version > FORMAT_VERSION:
        raise newer_format_error(locked.path, version)
    exists = os.path.exists(os.path.join(locked.db_path, "CURRENT"))
    if version is not None and not exists:
        # Opening with create_if_missing here would silently start an empty broker.
        raise corrupted_error(locked.path, "db/CURRENT is missing")
    db = _open_rdict(locked, create=not exists)
    try:
        stored = db.get(FORMAT_KEY)
        if stored is None:
            if version is not None:
                raise corrupted_error(locked.path, "the format key is missing")
            _write_synced(db, FORMAT_KEY, str(FORMAT_VERSION).encode("ascii"))
        elif not stored.isdigit():
            raise corrupted_error(locked.path, f"the format key holds {stored[:16]!r}")
        elif int(stored) > FORMAT_VERSION:
            raise newer_format_error(locked.path, int(stored))
        if version is None:
            write_format_file(locked.path)
    except BaseException:
        db.close()
        raise
    return db


def _open_rdict(locked: DataDir, *, create: bool) -> rocksdict.Rdict:
    options = _options()
    options.create_if_missing(create)
    options.create_missing_column_families(True)
    # The default family holds pages, bodies taken out of memory when it runs short:
    # small memtables, or paging would just move them into RocksDB's memory.
    options.set_write_buffer_size(PAGES_WRITE_BUFFER_BYTES)
    options.set_max_write_buffer_number(2)
    families = {name: _options() for name in COLUMN_FAMILIES}
    # Queues delete what they add: compact a file early when deletes crowd it.
    families["messages"].add_compact_on_deletion_collector_factory(1024, 512, 0.5)
    families["delivered"].add_compact_on_deletion_collector_factory(1024, 512, 0.5)
    try:
        if not create:
            # A family we do not know must still be opened, or RocksDB refuses.
            for name in rocksdict.Rdict.list_cf(locked.db_path, _options()):
                if name != "default":
                    families.setdefault(name, _options())
        return rocksdict.Rdict(locked.db_path, options, column_families=families)
    except Exception as exc:
        text = str(exc)
        if "Permission denied" in text:
            raise StorageError(
                f"rapidmq: cannot write to data dir {locked.path} (permission denied); "
                "fix its permissions or choose another --data-dir"
            ) from None
        if "lock" in text.lower() and ("unavailable" in text or "hold" in text):
            raise in_use_error(locked.path, None) from None
        raise corrupted_error(locked.path, exc) from None


def _options() -> rocksdict.Options:
    options = rocksdict.Options(raw_mode=True)
    options.set_paranoid_checks(True)
    return options


def _write_synced(db: rocksdict.Rdict, key: bytes, value: bytes) -> None:
    options = rocksdict.WriteOptions()
    options.sync = True
    db.put(key, value, options)


def corrupted_error(path: str, detail: object) -> StorageError:
    """The refusal of a database RocksDB cannot read."""
    return StorageError(
        f"rapidmq: the database in {path} is corrupted ({one_line(detail)}); "
        "restore a backup or move it away"
    )


def one_line(detail: object) -> str:
    """``detail`` as one line of text."""
    return " ".join(str(detail).split())


def read_format_file(path: str) -> int | None:
    """The version in ``DATA_DIR/FORMAT``, or ``None`` for a new dir.

    Raises:
        StorageError: the file is unreadable or does not hold a version.
    """
    format_path = os.path.join(path, FORMAT_FILE)
    try:
        with open(format_path, "rb") as file:
            text = file.read(64)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise os_error(path, exc) from None
    try:
        return int(text.strip())
    except ValueError:
        raise StorageError(
            f"rapidmq: the database in {path} is corrupted ({FORMAT_FILE} holds {text[:16]!r}, "
            "not a version); restore a backup or move it away"
        ) from None


def write_format_file(path: str, version: int = FORMAT_VERSION) -> None:
    """Write ``DATA_DIR/FORMAT`` atomically and durably (temp file, fsync, rename)."""
    format_path = os.path.join(path, FORMAT_FILE)
    temp_path = format_path + ".tmp"
    try:
        with open(temp_path, "wb") as file:
            file.write(f"{version}\n".encode("ascii"))
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, format_path)
        dir_fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError as exc:
        raise os_error(path, exc) from None


def newer_format_error(path: str, version: int) -> StorageError:
    """The refusal of a data dir written by a newer RapidMQ."""
    return StorageError(
        f"rapidmq: data dir {path} holds format {version}, newer than this RapidMQ reads "
        f"({FORMAT_VERSION}); use a newer RapidMQ or another --data-dir"
    )


def in_use_error(path: str, pid: int | None) -> StorageError:
    """The refusal of a data dir locked by another broker."""
    holder = f"pid {pid}" if pid is not None else "pid unknown"
    return StorageError(
        f"rapidmq: data dir {path} is in use by another RapidMQ ({holder}); "
        "stop it or choose another --data-dir"
    )


def os_error(path: str, exc: OSError) -> StorageError:
    """One line for an operating-system error on the data dir."""
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageError(
            f"rapidmq: cannot write to data dir {path} ({exc.strerror or 'permission denied'}); "
            "fix its permissions or choose another --data-dir"
        )
    if isinstance(exc, NotADirectoryError):
        return StorageError(
            f"rapidmq: data dir {path} is not a directory (a part of its path is a file); "
            "choose another --data-dir"
        )
    return StorageError(
        f"rapidmq: cannot use data dir {path} ({exc.strerror or exc}); choose another --data-dir"
    )


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).strip())
    return None
