"""Message rates, per second, from counters sampled at an interval.

Counters (published, delivered, acked…) are plain integers the core keeps; no
rate is ever updated per message.  A sampler task calls :meth:`RateSampler.take`
every ``SAMPLE_S`` with the counters of the broker and of each queue, and a
rate is the change from the newest sample at least ``MIN_WINDOW_S`` old to the
live value now.  Counts shown by the API are always the live values.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable, Mapping
from typing import Any

__all__ = ["MIN_WINDOW_S", "SAMPLE_S", "RateSampler"]

#: How often counters are sampled (RabbitMQ's collect_statistics_interval is 5 s).
SAMPLE_S = 5.0
#: A rate is taken over at least this long.
MIN_WINDOW_S = 1.0

Figures = dict[Hashable, Mapping[str, int]]


class RateSampler:
    """The last few samples of every object's counters, by key."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._samples: deque[tuple[float, Figures]] = deque(maxlen=3)

    def take(self, figures: Figures, now: float | None = None) -> None:
        """Record one sample: every object's counters at ``now``."""
        self._samples.append((self.clock() if now is None else now, figures))

    def rate(self, key: Hashable, name: str, value: int, now: float | None = None) -> float:
        """Per-second change of counter ``name`` of ``key``, up to its live ``value``."""
        if now is None:
            now = self.clock()
        for taken, figures in reversed(self._samples):
            elapsed = now - taken
            if elapsed >= MIN_WINDOW_S:
                base = figures.get(key)
                if base is None:
                    return 0.0
                return round(max(0.0, (value - base.get(name, 0)) / elapsed), 1)
        return 0.0

    def stats(
        self, key: Hashable, counters: Mapping[str, int], names: Mapping[str, str]
    ) -> dict[str, Any]:
        """RabbitMQ's ``message_stats`` shape: ``{"publish": n, "publish_details": {"rate": r}}``.

        Args:
            key: the object the counters belong to, as sampled.
            counters: its live counters.
            names: API name → counter name, e.g. ``{"publish": "published"}``.
        """
        now = self.clock()
        out: dict[str, Any] = {}
        for api_name, counter in names.items():
            value = int(counters.get(counter, 0))
            out[api_name] = value
            out[f"{api_name}_details"] = {"rate": self.rate(key, counter, value, now)}
        return out
