"""A Celery worker running tasks end to end through the broker under test."""

from __future__ import annotations

from celery import Celery
from celery.contrib.testing.worker import start_worker
from compat_support import Scratch

RESULT_TIMEOUT_S = 10.0


def make_app(scratch: Scratch) -> Celery:
    app = Celery(f"compat-{scratch.token}", broker=scratch.url, backend="rpc://")
    queue = scratch.queue("celery")
    app.conf.update(
        task_default_queue=queue,
        task_default_exchange=scratch.exchange("celery"),
        task_default_routing_key=queue,
        task_queue_ha_policy=None,
        worker_enable_remote_control=False,
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        worker_prefetch_multiplier=1,
        broker_connection_retry_on_startup=False,
        broker_connection_retry=False,
        broker_connection_timeout=5,
        broker_heartbeat=0,
        result_persistent=False,
    )
    return app


def test_celery_worker_runs_tasks_and_returns_results(scratch: Scratch) -> None:
    app = make_app(scratch)

    @app.task(name="compat.add")
    def add(x: int, y: int) -> int:
        return x + y

    @app.task(name="compat.fail")
    def fail(text: str) -> None:
        raise ValueError(text)

    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=5):
            results = [add.delay(i, i * 10) for i in range(5)]
            assert [r.get(timeout=RESULT_TIMEOUT_S) for r in results] == [
                i + i * 10 for i in range(5)
            ]
            failed = fail.delay("boom")
            try:
                failed.get(timeout=RESULT_TIMEOUT_S)
            except ValueError as exc:
                assert str(exc) == "boom"
            else:
                raise AssertionError("the failing task should raise ValueError")
            assert failed.state == "FAILURE"
    finally:
        app.close()
