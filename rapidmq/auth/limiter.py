"""Failed-login rate limiting per source address.

Password guessing is cheap for a client and, with LDAP, costly for the broker
and the directory.  After ``limit`` failed logins from one address within a
window (a minute), every further login from that address is refused at once,
without consulting any backend, until the window ends.  The window is fixed: it
starts at the address's first failure, so a guesser waits out the rest of the
minute and then gets ``limit`` more tries, never more.

One warning is logged per address per window, when the limit is reached, so a
flood of attempts cannot flood the log too.  Memory is bounded: expired windows
are swept when the table grows past :data:`MAX_ADDRESSES`, and if every entry
is live the oldest are dropped (the limit then errs on the side of letting in).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["MAX_ADDRESSES", "WINDOW_S", "LoginLimiter"]

log = logging.getLogger("rapidmq.auth")

WINDOW_S = 60.0
MAX_ADDRESSES = 100_000


class _Window:
    __slots__ = ("failures", "started", "warned")

    def __init__(self, started: float) -> None:
        self.started = started
        self.failures = 0
        self.warned = False


class LoginLimiter:
    """Counts failed logins per address; ``limit`` 0 turns the limiter off."""

    __slots__ = ("_clock", "_windows", "limit", "window_s")

    def __init__(
        self,
        limit: int,
        *,
        window_s: float = WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self._clock = clock
        self._windows: dict[str, _Window] = {}

    def _current(self, address: str, now: float) -> _Window | None:
        window = self._windows.get(address)
        if window is not None and now - window.started >= self.window_s:
            del self._windows[address]
            return None
        return window

    def blocked(self, address: str) -> bool:
        """True while ``address`` has used up its failures in the current window."""
        if not self.limit:
            return False
        window = self._current(address, self._clock())
        return window is not None and window.failures >= self.limit

    def retry_after_s(self, address: str) -> float:
        """Seconds until ``address`` may try again (0 when it may now)."""
        now = self._clock()
        window = self._current(address, now)
        if window is None or window.failures < self.limit:
            return 0.0
        return max(0.0, window.started + self.window_s - now)

    def failed(self, address: str) -> None:
        """Count one failed login from ``address``."""
        if not self.limit:
            return
        now = self._clock()
        window = self._current(address, now)
        if window is None:
            if len(self._windows) >= MAX_ADDRESSES:
                self._sweep(now)
            window = self._windows[address] = _Window(now)
        window.failures += 1
        if window.failures >= self.limit and not window.warned:
            window.warned = True
            remaining = window.started + self.window_s - now
            log.warning(
                "%d failed logins from %s within %.0f s; refusing its logins for %.0f s",
                window.failures,
                address,
                self.window_s,
                remaining,
                extra={"event": "auth.rate_limited", "client_address": address},
            )

    def _sweep(self, now: float) -> None:
        windows = self._windows
        for address in [a for a, w in windows.items() if now - w.started >= self.window_s]:
            del windows[address]
        while len(windows) >= MAX_ADDRESSES:
            del windows[next(iter(windows))]

    def __len__(self) -> int:
        return len(self._windows)
