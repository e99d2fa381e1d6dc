"""Turning API answers into what the admin commands print.

Kept free of HTTP and broker imports so that the formatting can be tested, and
``rapidmq --help`` loaded, without either.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["cell", "key_values", "lookup", "table", "to_json"]

_ESCAPES = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def lookup(item: Any, column: str) -> Any:
    """``item[column]``, where a dotted column reaches into nested objects.

    The API nests what a reader wants beside the rest (``queue.name`` of a
    consumer, ``connection_details.name`` of a channel); a missing key is
    ``None`` rather than an error because RabbitMQ leaves out keys it has no
    value for, and one such row must not break a listing.
    """
    value = item
    for part in column.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def cell(value: Any) -> str:
    """One value as table text, always on one line so that rows stay rows."""
    if value is None:
        text = ""
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, float):
        text = format(value, "g")
    elif isinstance(value, list | tuple):
        text = ",".join(cell(part) for part in value)
    elif isinstance(value, Mapping):
        text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    else:
        text = str(value)
    return text.translate(_ESCAPES)


def table(rows: Sequence[Any], columns: Sequence[str]) -> str:
    """Aligned columns under a header row; no trailing blanks, no borders.

    The header is printed even with no rows, so that scripts reading the
    output (``awk 'NR>1'``) see the same layout whether or not anything matched.
    """
    grid = [list(columns)] + [[cell(lookup(row, column)) for column in columns] for row in rows]
    widths = [max(len(line[index]) for line in grid) for index in range(len(columns))]
    lines = []
    for line in grid:
        padded = [text.ljust(width) for text, width in zip(line, widths, strict=True)]
        lines.append("  ".join(padded).rstrip())
    return "\n".join(lines)


def key_values(pairs: Sequence[tuple[str, Any]]) -> str:
    """``name  value`` lines with the values aligned, for one object (``status``)."""
    width = max((len(name) for name, _ in pairs), default=0)
    return "\n".join(f"{name.ljust(width)}  {cell(value)}".rstrip() for name, value in pairs)


def to_json(data: Any) -> str:
    """The API's JSON, pretty-printed, keys in the API's order."""
    return json.dumps(data, indent=2, ensure_ascii=False)
