"""The data dir refuses, in one line, what would lose data or fight another broker."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import pytest
import rocksdict

from rapidmq.storage import StorageError, open_stores
from rapidmq.storage.datadir import COLUMN_FAMILIES


def _open_and_close(data_dir: Path) -> None:
    metadata, messages = open_stores(str(data_dir), "rocksdb")
    messages.close()
    metadata.close()


def _refusal(data_dir: Path) -> str:
    with pytest.raises(StorageError) as info:
        open_stores(str(data_dir), "rocksdb")
    return str(info.value)


def _populated(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    metadata, messages = open_stores(str(data_dir), "rocksdb")
    for seq in range(500):
        messages.add(("/", "q"), seq, b"x" * 100)
    messages.close()
    metadata.put("vhost", ("/",), {})
    metadata.close()
    return data_dir


def test_a_new_data_dir_gets_its_layout(tmp_path: Path) -> None:
    data_dir = tmp_path / "nested" / "data"
    metadata, messages = open_stores(str(data_dir), "rocksdb")

    assert sorted(os.listdir(data_dir)) == ["FORMAT", "LOCK", "db"]
    assert (data_dir / "FORMAT").read_text() == "1\n"
    assert (data_dir / "LOCK").read_text() == f"{os.getpid()}\n"
    messages.close()
    metadata.close()


def test_a_second_open_is_refused_until_the_first_closes(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    metadata, messages = open_stores(str(data_dir), "rocksdb")

    assert _refusal(data_dir) == (
        f"rapidmq: data dir {data_dir} is in use by another RapidMQ (pid {os.getpid()}); "
        "stop it or choose another --data-dir"
    )
    messages.close()
    metadata.close()
    _open_and_close(data_dir)


_HOLDER = textwrap.dedent(
    """
    import sys, time
    from rapidmq.storage import open_stores
    stores = open_stores(sys.argv[1], "rocksdb")
    print("ready", flush=True)
    time.sleep(60)
    """
)


def test_a_data_dir_locked_by_another_process_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(data_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "ready\n"
        refusal = _refusal(data_dir)
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()

    assert refusal == (
        f"rapidmq: data dir {data_dir} is in use by another RapidMQ (pid {holder.pid}); "
        "stop it or choose another --data-dir"
    )
    _open_and_close(data_dir)  # a killed holder leaves no lock behind


def test_a_newer_format_is_refused(tmp_path: Path) -> None:
    data_dir = _populated(tmp_path)
    (data_dir / "FORMAT").write_text("2\n")

    assert _refusal(data_dir) == (
        f"rapidmq: data dir {data_dir} holds format 2, newer than this RapidMQ reads (1); "
        "use a newer RapidMQ or another --data-dir"
    )


def test_a_newer_format_in_the_database_is_refused_without_the_format_file(
    tmp_path: Path,
) -> None:
    data_dir = _populated(tmp_path)
    metadata, messages = open_stores(str(data_dir), "rocksdb")
    messages.close()
    metadata.close()
    options = rocksdict.Options(raw_mode=True)
    families = {name: rocksdict.Options(raw_mode=True) for name in COLUMN_FAMILIES}
    db = rocksdict.Rdict(str(data_dir / "db"), options, column_families=families)
    db[b"format"] = b"7"
    db.close()
    del db
    (data_dir / "FORMAT").unlink()

    assert _refusal(data_dir) == (
        f"rapidmq: data dir {data_dir} holds format 7, newer than this RapidMQ reads (1); "
        "use a newer RapidMQ or another --data-dir"
    )


@pytest.mark.parametrize(
    ("damage", "detail"),
    [
        ("CURRENT", "Corruption: CURRENT file corrupted"),
        ("MANIFEST", "Corruption: no log_file_number, next_file_number, last_sequence entry"),
        ("missing CURRENT", "db/CURRENT is missing"),
        ("FORMAT", "FORMAT holds b'\\x00\\x01garbage', not a version"),
    ],
)
def test_a_corrupted_database_is_refused(tmp_path: Path, damage: str, detail: str) -> None:
    data_dir = _populated(tmp_path)
    db_dir = data_dir / "db"
    if damage == "CURRENT":
        (db_dir / "CURRENT").write_bytes(b"garbage\x00\xff\n")
    elif damage == "MANIFEST":
        [manifest] = db_dir.glob("MANIFEST-*")
        manifest.write_bytes(bytes(range(64)))
    elif damage == "missing CURRENT":
        (db_dir / "CURRENT").unlink()
    else:
        (data_dir / "FORMAT").write_bytes(b"\x00\x01garbage")

    refusal = _refusal(data_dir)

    assert re.fullmatch(
        f"rapidmq: the database in {re.escape(str(data_dir))} is corrupted "
        f"\\({re.escape(detail)}[^\\n]*\\); restore a backup or move it away",
        refusal,
    ), refusal
    _open_and_close(tmp_path / "fresh")  # the refusal left no lock or handle behind


def test_a_corrupted_table_file_is_refused_when_read(tmp_path: Path) -> None:
    data_dir = _populated(tmp_path)
    metadata, messages = open_stores(str(data_dir), "rocksdb")
    messages.close()
    metadata.close()
    for table in (data_dir / "db").glob("*.sst"):
        with table.open("r+b") as file:
            file.write(bytes(64))

    # RocksDB may notice at open or only when the damaged block is read.
    with pytest.raises(StorageError) as info:
        metadata, messages = open_stores(str(data_dir), "rocksdb")
        try:
            list(messages.recover())
        finally:
            messages.close()
            metadata.close()

    assert re.fullmatch(
        f"rapidmq: the database in {re.escape(str(data_dir))} is corrupted "
        "\\(Corruption: block checksum mismatch[^\\n]*\\); restore a backup or move it away",
        str(info.value),
    ), str(info.value)


def test_a_file_in_place_of_the_data_dir_is_refused(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("not a dir")

    assert _refusal(data_dir) == (
        f"rapidmq: data dir {data_dir} is not a directory; remove it or choose another --data-dir"
    )


_UNPRIVILEGED = textwrap.dedent(
    """
    import os, sys
    from rapidmq.storage import StorageError, open_stores
    if os.geteuid() == 0:
        os.setgid(65534)
        os.setuid(65534)
    try:
        open_stores(sys.argv[1], "rocksdb")
    except StorageError as exc:
        print(exc)
    """
)


def test_a_data_dir_without_write_permission_is_refused(tmp_path: Path) -> None:
    parent = Path(tempfile.mkdtemp(prefix="rapidmq-readonly-", dir="/tmp"))
    try:
        data_dir = parent / "data"
        data_dir.mkdir()
        parent.chmod(0o755)
        data_dir.chmod(0o555)
        result = subprocess.run(
            [sys.executable, "-c", _UNPRIVILEGED, str(data_dir)],
            capture_output=True,
            text=True,
            timeout=60,
            cwd="/",
            check=True,
        )
    finally:
        shutil.rmtree(parent)

    assert result.stdout == (
        f"rapidmq: cannot write to data dir {data_dir} (Permission denied); "
        "fix its permissions or choose another --data-dir\n"
    )


def test_memory_stores_touch_no_disk(tmp_path: Path) -> None:
    metadata, messages = open_stores(str(tmp_path / "data"), "memory")
    metadata.put("vhost", ("/",), {})
    messages.add(("/", "q"), 1, b"x")
    messages.commit()

    assert (os.listdir(tmp_path), messages.sync()) == ([], 1)
