"""A stream's index: offsets, chunks and segments, and the retention rule.

Chunks are kept as two arrays (first offset and write time of each chunk, 16
bytes a chunk), so the index of a long stream stays small; segments are a short
list of counters over runs of chunks.  Nothing here touches a message or the
store: the stream asks the index what to trim, and trims.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left

from rapidmq.core.arguments import QueueSettings
from rapidmq.core.stream_args import StartAt

__all__ = ["StreamIndex"]


class _Segment:
    __slots__ = ("bytes", "count", "first", "last_ts")

    def __init__(self, first: int, now_s: float) -> None:
        self.first = first
        self.bytes = 0
        self.count = 0
        self.last_ts = now_s  # when its newest message was written (wall clock)


class StreamIndex:
    """Where each chunk and segment of one stream starts, and how much it holds."""

    __slots__ = (
        "_chunk_base",
        "_chunk_first",
        "_chunk_ts",
        "count",
        "first",
        "max_age_s",
        "max_bytes",
        "next",
        "segment_bytes",
        "segments",
        "total_bytes",
    )

    def __init__(self, settings: QueueSettings) -> None:
        self.first = 0  # the oldest retained offset
        self.next = 0  # the offset the next message gets
        self.count = 0
        self.total_bytes = 0  # body bytes retained
        self._chunk_first = array("q")
        self._chunk_ts = array("d")
        self._chunk_base = 0  # chunks before it were removed (compacted lazily)
        self.segments: list[_Segment] = []
        self.configure(settings)

    def configure(self, settings: QueueSettings) -> None:
        """Take the retention settings (at declare, or when a policy changes them)."""
        self.max_bytes = settings.max_length_bytes
        self.max_age_s = settings.max_age_s
        self.segment_bytes = max(1, settings.stream_max_segment_size_bytes)

    def append(self, offset: int, size: int, now: float, chunk: bool) -> bool:
        """Count one message; True when it closed a segment (time for retention)."""
        if not self.count:
            self.first = offset
        self.next = offset + 1
        self.count += 1
        self.total_bytes += size
        segments = self.segments
        closed = False
        if chunk or not segments:
            self._chunk_first.append(offset)
            self._chunk_ts.append(now)
            if not segments or segments[-1].bytes >= self.segment_bytes:
                closed = bool(segments)
                segments.append(_Segment(offset, now))
        segment = segments[-1]
        segment.bytes += size
        segment.count += 1
        segment.last_ts = now
        return closed

    def retain(self, now: float) -> bool:
        """Remove the oldest closed segments while over a limit; True if any went."""
        segments = self.segments
        max_bytes, max_age = self.max_bytes, self.max_age_s
        removed = 0
        while len(segments) - removed > 1:
            oldest = segments[removed]
            if not (
                (max_bytes is not None and self.total_bytes > max_bytes)
                or (max_age is not None and oldest.last_ts < now - max_age)
            ):
                break
            removed += 1
            self.total_bytes -= oldest.bytes
            self.count -= oldest.count
        if not removed:
            return False
        del segments[:removed]
        first = self.first = segments[0].first
        chunks = self._chunk_first
        cut = self._chunk_base = bisect_left(chunks, first, self._chunk_base)
        if cut > len(chunks) // 2:
            del chunks[:cut], self._chunk_ts[:cut]
            self._chunk_base = 0
        return True

    def age_deadline(self) -> float | None:
        """The wall-clock time the oldest closed segment passes ``x-max-age``."""
        if self.max_age_s is None or len(self.segments) < 2:
            return None
        return self.segments[0].last_ts + self.max_age_s

    def start(self, start: StartAt) -> int:
        """The offset a consumer asking for ``start`` reads first."""
        kind = start.kind
        if kind == "first":
            return self.first
        if kind == "next":
            return self.next
        chunks = self._chunk_first
        base = self._chunk_base
        if kind == "last":
            return chunks[-1] if len(chunks) > base else self.next
        if kind == "offset":
            return max(start.offset, self.first)
        index = bisect_left(self._chunk_ts, start.time_s, base)
        return chunks[index] if index < len(chunks) else self.next
