"""Memory and disk alarms: limits, alarm state and hysteresis, without I/O.

Theory of operation
-------------------
The server samples two figures about once a second -- the process's resident
memory and the free space of the data dir's file system -- and hands them to
:meth:`ResourceAlarms.update`, which returns what changed as events
(:class:`AlarmSet`, :class:`AlarmCleared`).  Nothing here reads ``/proc`` or
calls ``statvfs``: the figures come in as arguments, as time does for the
protocol state machines.

* The **memory alarm** is set when memory use reaches the high watermark
  (``--memory-high-watermark``, a fraction of total RAM like RabbitMQ's
  ``vm_memory_high_watermark``, or an absolute size) and cleared once use falls
  below :data:`MEMORY_CLEAR_RATIO` of it, so a process hovering at the line
  does not block and unblock its publishers every sample.
* The **disk alarm** is set when free space falls below ``--disk-free-limit``
  and cleared once it is back above the limit plus :data:`DISK_CLEAR_MARGIN`
  of it.
* **Paging** (:attr:`ResourceAlarms.paging`) starts earlier, at
  :data:`PAGING_RATIO` of the watermark (RabbitMQ's
  ``vm_memory_high_watermark_paging_ratio``): message bodies beyond the head
  of each queue are then dropped from memory (persistent ones are already in
  the message store, others are written to its page space first) and read back
  when they reach the head of their queue.

* The **storage alarm** is set by the flusher when the message store refuses a
  write or a sync (:meth:`ResourceAlarms.storage_failed`) and cleared when a
  retry succeeds (:meth:`ResourceAlarms.storage_recovered`).  It is a fact
  reported from outside, not a sampled figure, so it has no hysteresis.

While any alarm is set, publishers are blocked (AMQP ``connection.blocked``,
no more reading from their sockets); consumers keep going, which is what lets
memory and disk use fall again.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from rapidmq.errors import RapidMQError

__all__ = [
    "DISK_CLEAR_MARGIN",
    "MEMORY_CLEAR_RATIO",
    "PAGING_RATIO",
    "AlarmCleared",
    "AlarmEvent",
    "AlarmSet",
    "BadLimit",
    "ResourceAlarms",
    "Watermark",
    "format_size",
    "parse_size",
    "parse_watermark",
]

#: Paging starts at this fraction of the memory high watermark.
PAGING_RATIO = 0.5
#: The memory alarm clears below this fraction of the watermark.
MEMORY_CLEAR_RATIO = 0.9
#: The disk alarm clears once free space exceeds the limit by this fraction of it.
DISK_CLEAR_MARGIN = 0.1

_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "kib": 1 << 10,
    "m": 1000**2,
    "mb": 1000**2,
    "mib": 1 << 20,
    "g": 1000**3,
    "gb": 1000**3,
    "gib": 1 << 30,
    "t": 1000**4,
    "tb": 1000**4,
    "tib": 1 << 40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


class BadLimit(RapidMQError):
    """A limit that cannot be parsed; ``str(err)`` says what it must be."""


def parse_size(value: object) -> int:
    """Bytes from ``"50MB"``, ``"2GiB"``, ``"1.5GB"`` or a whole number of bytes.

    Units follow RabbitMQ's config: kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB
    powers of 1024.

    Raises:
        BadLimit: not a size.
    """
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match is not None:
            unit = _UNITS.get(match.group(2).lower())
            if unit is not None:
                number = match.group(1)
                if number.isdigit():  # exact, however large
                    return int(number) * unit
                return int(float(number) * unit)
    raise BadLimit('must be a size such as "50MB", "512MiB" or "2GB", or a number of bytes')


@dataclass(frozen=True, slots=True)
class Watermark:
    """The memory high watermark: a fraction of total RAM or an absolute size."""

    fraction: float | None = None
    size_bytes: int | None = None

    def limit_bytes(self, total_memory_bytes: int) -> int:
        """The watermark in bytes on a machine with ``total_memory_bytes`` of RAM."""
        if self.size_bytes is not None:
            return self.size_bytes
        assert self.fraction is not None
        return int(total_memory_bytes * self.fraction)


def parse_watermark(value: object) -> Watermark:
    """A fraction of RAM (``0.4``, ``"0.4"``; more than 0, at most 1) or a size (``"512MB"``).

    Raises:
        BadLimit: neither.
    """
    number: float | None = None
    if isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
        if number is None:
            try:
                size = parse_size(value)
            except BadLimit:
                size = 0
            if size > 0:
                return Watermark(size_bytes=size)
    if number is not None and math.isfinite(number) and 0 < number <= 1:
        return Watermark(fraction=number)
    raise BadLimit(
        'must be a fraction of total RAM above 0 and at most 1 (0.4) or a size ("512MB", "2GiB")'
    )


def format_size(size_bytes: int) -> str:
    """``size_bytes`` as a short human figure for log lines (``"150.0 MB"``)."""
    for unit, scale in (("TB", 1000**4), ("GB", 1000**3), ("MB", 1000**2), ("kB", 1000)):
        if size_bytes >= scale:
            return f"{size_bytes / scale:.1f} {unit}"
    return f"{size_bytes} B"


@dataclass(frozen=True, slots=True)
class AlarmSet:
    """A resource alarm went off: ``used`` crossed ``limit`` (bytes)."""

    resource: str  # "memory", "disk" or "storage"
    used: int  # memory in use, or disk space free (0 for "storage")
    limit: int


@dataclass(frozen=True, slots=True)
class AlarmCleared:
    """A resource alarm is over."""

    resource: str
    used: int
    limit: int


AlarmEvent = AlarmSet | AlarmCleared


class ResourceAlarms:
    """The memory and disk alarms and the paging switch of one broker."""

    def __init__(self, *, memory_limit_bytes: int, disk_free_limit_bytes: int) -> None:
        self.memory_limit_bytes = memory_limit_bytes
        self.disk_free_limit_bytes = disk_free_limit_bytes
        self.paging_threshold_bytes = int(memory_limit_bytes * PAGING_RATIO)
        self.memory_used_bytes = 0
        self.disk_free_bytes: int | None = None
        self.memory = False
        self.disk = False
        self.paging = False
        self.storage = False
        self.storage_error = ""  # the last store error while the storage alarm is on
        self.set_count = 0

    @property
    def active(self) -> tuple[str, ...]:
        """The alarms that are on, in a fixed order."""
        flags = (("memory", self.memory), ("disk", self.disk), ("storage", self.storage))
        return tuple(name for name, on in flags if on)

    def update(self, *, memory_used_bytes: int, disk_free_bytes: int | None) -> list[AlarmEvent]:
        """Take one sample; ``disk_free_bytes`` is None when it could not be read.

        Returns:
            The alarms set and cleared by this sample, memory first.
        """
        events: list[AlarmEvent] = []
        self.memory_used_bytes = memory_used_bytes
        limit = self.memory_limit_bytes
        if not self.memory and memory_used_bytes >= limit:
            self.memory = True
            events.append(AlarmSet("memory", memory_used_bytes, limit))
        elif self.memory and memory_used_bytes < limit * MEMORY_CLEAR_RATIO:
            self.memory = False
            events.append(AlarmCleared("memory", memory_used_bytes, limit))
        self.paging = memory_used_bytes >= self.paging_threshold_bytes
        if disk_free_bytes is not None:
            self.disk_free_bytes = disk_free_bytes
            floor = self.disk_free_limit_bytes
            if not self.disk and disk_free_bytes < floor:
                self.disk = True
                events.append(AlarmSet("disk", disk_free_bytes, floor))
            elif self.disk and disk_free_bytes > floor * (1 + DISK_CLEAR_MARGIN):
                self.disk = False
                events.append(AlarmCleared("disk", disk_free_bytes, floor))
        self.set_count += sum(isinstance(event, AlarmSet) for event in events)
        return events

    def storage_failed(self, detail: str) -> list[AlarmEvent]:
        """The message store refused a write or a sync; ``detail`` is its one-line error.

        Returns:
            ``[AlarmSet("storage", 0, 0)]`` if the alarm was off, else ``[]``.
        """
        self.storage_error = detail
        if self.storage:
            return []
        self.storage = True
        self.set_count += 1
        return [AlarmSet("storage", 0, 0)]

    def storage_recovered(self) -> list[AlarmEvent]:
        """A write and sync succeeded again.

        Returns:
            ``[AlarmCleared("storage", 0, 0)]`` if the alarm was on, else ``[]``.
        """
        if not self.storage:
            return []
        self.storage = False
        self.storage_error = ""
        return [AlarmCleared("storage", 0, 0)]

    def statistics(self) -> dict[str, Any]:
        return {
            "alarms": list(self.active),
            "memory_used_bytes": self.memory_used_bytes,
            "memory_limit_bytes": self.memory_limit_bytes,
            "memory_paging_threshold_bytes": self.paging_threshold_bytes,
            "paging": self.paging,
            "disk_free_bytes": self.disk_free_bytes,
            "disk_free_limit_bytes": self.disk_free_limit_bytes,
            "alarms_set": self.set_count,
        }
