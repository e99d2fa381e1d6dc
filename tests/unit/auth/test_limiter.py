"""The failed-login limiter: per address, per fixed one-minute window, one warning."""

from __future__ import annotations

import logging

import pytest

from rapidmq.auth import limiter as limiter_module
from rapidmq.auth.limiter import LoginLimiter


def make(limit: int) -> tuple[LoginLimiter, list[float]]:
    now = [100.0]
    return LoginLimiter(limit, clock=lambda: now[0]), now


def test_an_address_is_blocked_after_limit_failures_until_its_window_ends() -> None:
    limiter, now = make(3)
    for _ in range(2):
        limiter.failed("10.0.0.1")
    assert not limiter.blocked("10.0.0.1")
    now[0] += 10
    limiter.failed("10.0.0.1")
    assert limiter.blocked("10.0.0.1")
    assert limiter.retry_after_s("10.0.0.1") == pytest.approx(50.0)
    assert not limiter.blocked("10.0.0.2")  # other addresses are not affected
    now[0] += 49.9
    assert limiter.blocked("10.0.0.1")
    now[0] += 0.1
    assert not limiter.blocked("10.0.0.1")  # a new window: `limit` more tries
    limiter.failed("10.0.0.1")
    assert not limiter.blocked("10.0.0.1")


def test_loopback_is_limited_like_any_address() -> None:
    limiter, _ = make(1)
    limiter.failed("127.0.0.1")
    assert limiter.blocked("127.0.0.1")


def test_zero_turns_the_limiter_off() -> None:
    limiter, _ = make(0)
    for _ in range(1000):
        limiter.failed("10.0.0.1")
    assert not limiter.blocked("10.0.0.1")
    assert len(limiter) == 0


def test_one_warning_per_address_per_window(caplog: pytest.LogCaptureFixture) -> None:
    limiter, now = make(2)
    with caplog.at_level(logging.WARNING, logger="rapidmq.auth"):
        for _ in range(20):
            limiter.failed("192.0.2.7")
        now[0] += 60
        for _ in range(20):
            limiter.failed("192.0.2.7")
    warnings = [r for r in caplog.records if getattr(r, "event", "") == "auth.rate_limited"]
    assert len(warnings) == 2
    assert "192.0.2.7" in warnings[0].getMessage()
    assert getattr(warnings[0], "client_address") == "192.0.2.7"  # noqa: B009


def test_the_table_stays_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limiter_module, "MAX_ADDRESSES", 100)
    limiter, now = make(5)
    for i in range(50):
        limiter.failed(f"10.0.0.{i}")
    now[0] += 61  # those windows have ended: swept when the table is full
    for i in range(300):
        limiter.failed(f"10.1.{i // 250}.{i % 250}")
    assert len(limiter) <= 100
