"""Rates from sampled counters: per second, over at least a second, never negative."""

from __future__ import annotations

from rapidmq.admin.rates import RateSampler


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_is_change_since_the_newest_sample_a_second_old() -> None:
    clock = Clock()
    rates = RateSampler(clock)
    rates.take({"q": {"published": 0}})
    clock.now += 5.0
    rates.take({"q": {"published": 500}})
    clock.now += 0.5  # the newest sample is too recent: the one before serves
    assert rates.rate("q", "published", 1000) == round(1000 / 5.5, 1)
    clock.now += 1.5
    assert rates.rate("q", "published", 800) == round(300 / 2.0, 1)


def test_no_sample_yet_or_unknown_key_is_zero_and_a_reset_never_goes_negative() -> None:
    clock = Clock()
    rates = RateSampler(clock)
    assert rates.rate("q", "published", 10) == 0.0
    rates.take({"q": {"published": 50}})
    clock.now += 2.0
    assert rates.rate("other", "published", 10) == 0.0
    assert rates.rate("q", "published", 10) == 0.0  # a queue re-created with fresh counters


def test_stats_has_rabbitmq_message_stats_shape() -> None:
    clock = Clock()
    rates = RateSampler(clock)
    rates.take({"b": {"published": 0, "acknowledged": 0}})
    clock.now += 2.0
    stats = rates.stats(
        "b", {"published": 20, "acknowledged": 10}, {"publish": "published", "ack": "acknowledged"}
    )
    assert stats == {
        "publish": 20,
        "publish_details": {"rate": 10.0},
        "ack": 10,
        "ack_details": {"rate": 5.0},
    }
