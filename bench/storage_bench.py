"""Durable 1 KB messages through the RocksDB message store: group commit vs one fsync each.

A loop thread adds messages and commits a batch every ``group`` messages
without waiting; a flusher thread syncs whenever batches are committed and
publishes the highest durable batch, as the broker's confirm path will.  So
even "group 1" shares each fsync among every batch committed while the
previous one ran.  "sync each" commits and fsyncs one message at a time.

Run: ``.venv/bin/python bench/storage_bench.py [--messages N] [--dir PATH]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time

from rapidmq.storage import open_stores

QUEUE = ("/", "bench")


def group_commit(data_dir: str, messages: int, group: int) -> tuple[float, int]:
    """Durable msgs/s with a batch every ``group`` messages, synced in a worker thread."""
    metadata, store = open_stores(data_dir, "rocksdb")
    body = bytes(1024)
    committed = threading.Condition()
    state = {"committed": 0, "durable": 0, "done": False}

    def flusher() -> None:
        while True:
            with committed:
                committed.wait_for(lambda: state["committed"] > state["durable"] or state["done"])
                if state["committed"] <= state["durable"]:
                    return
            durable = store.sync()  # releases the GIL while fsyncing
            with committed:
                state["durable"] = durable
                committed.notify_all()

    thread = threading.Thread(target=flusher)
    start = time.perf_counter()
    thread.start()
    for seq in range(messages):
        store.add(QUEUE, seq, body)
        if (seq + 1) % group == 0 or seq + 1 == messages:
            number = store.commit()
            with committed:
                state["committed"] = number
                committed.notify_all()
    with committed:
        committed.wait_for(lambda: state["durable"] >= state["committed"])
        state["done"] = True
        committed.notify_all()
    thread.join()
    elapsed = time.perf_counter() - start
    syncs = int(store.statistics()["syncs"])
    store.close()
    metadata.close()
    return messages / elapsed, syncs


def sync_each(data_dir: str, messages: int) -> tuple[float, int]:
    """Durable msgs/s with one commit and one fsync per message, inline."""
    metadata, store = open_stores(data_dir, "rocksdb")
    body = bytes(1024)
    start = time.perf_counter()
    for seq in range(messages):
        store.add(QUEUE, seq, body)
        store.commit()
        store.sync()
    elapsed = time.perf_counter() - start
    store.close()
    metadata.close()
    return messages / elapsed, messages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--dir", default=None, help="parent of the scratch data dirs")
    args = parser.parse_args()
    cases: list[tuple[str, int]] = [("sync each", 1)] + [
        (f"group {size}", size) for size in (1, 16, 256)
    ]
    for label, size in cases:
        scratch = tempfile.mkdtemp(prefix="rapidmq-storage-bench-", dir=args.dir)
        try:
            count = min(args.messages, 5_000) if size == 1 else args.messages
            if label == "sync each":
                rate, syncs = sync_each(scratch + "/data", count)
            else:
                rate, syncs = group_commit(scratch + "/data", count, size)
        finally:
            shutil.rmtree(scratch)
        print(f"{label:>10}: {rate:>10,.0f} durable 1 KB msgs/s ({count} messages, {syncs} fsyncs)")


if __name__ == "__main__":
    main()
