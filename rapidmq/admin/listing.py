"""Lists as RabbitMQ's management API returns them: filtered, sorted and paged.

Query parameters, as RabbitMQ reads them:

* ``name``: keep items whose name contains it (case-insensitive), or matches it
  as a regular expression with ``use_regex=true``;
* ``sort``: a field, dotted for nested ones (``message_stats.publish``);
  ``sort_reverse=true`` reverses;
* ``page`` and ``page_size`` (default 100, at most 500): with ``page`` the answer
  is an object with ``items``, ``page``, ``page_count``, ``page_size``,
  ``filtered_count``, ``item_count`` and ``total_count``; without, a plain list;
* ``columns``: keep only these (comma-separated, dotted) fields of each item.

Only the items of the page are rendered to JSON: filtering and sorting run on
the objects with cheap key functions, so a page of 10,000 queues costs the
100 items it shows (ARCHITECTURE.md: the admin reads, it never slows the broker).
A sort on a field without a key function renders every filtered item first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from rapidmq.admin.util import ApiError, bad_request, flag, respond

__all__ = ["DEFAULT_PAGE_SIZE", "MAX_PAGE_SIZE", "list_response"]

T = TypeVar("T")

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 500


def _int_param(request: Request, name: str, default: int) -> int:
    text = request.query_params.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_request(f"{name} must be an integer, got '{text}'") from None
    if value < 1:
        raise bad_request(f"{name} must be at least 1, got {value}")
    return value


def _dig(item: Mapping[str, Any], dotted: str) -> Any:
    value: Any = item
    for part in dotted.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _sortable(value: Any) -> tuple[int, Any]:
    """Orders None first, then numbers, then text, without comparing across types."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float):
        return (1, value)
    return (2, str(value))


def _columns(item: dict[str, Any], columns: list[str]) -> dict[str, Any]:
    picked: dict[str, Any] = {}
    for column in columns:
        value = _dig(item, column)
        if value is None and column.split(".")[0] not in item:
            continue
        target = picked
        parts = column.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        target[parts[-1]] = value
    return picked


def list_response(
    request: Request,
    items: Sequence[T],
    *,
    render: Callable[[T], dict[str, Any]],
    name: Callable[[T], str],
    sort_keys: Mapping[str, Callable[[T], Any]] | None = None,
    default_sort: Callable[[T], Any] | None = None,
) -> Response:
    """Filter, sort, page and render ``items`` as the query parameters ask.

    Args:
        items: every object the user may see.
        render: one object as its JSON dict.
        name: the object's name, for the ``name`` filter.
        sort_keys: fields that can be sorted on without rendering.
        default_sort: the order when no ``sort`` is given (RabbitMQ lists by name).

    Raises:
        ApiError: 400 for a bad parameter or a page out of range.
    """
    query = request.query_params
    total = len(items)
    selected: Sequence[T] = items
    pattern = query.get("name")
    if pattern:
        if flag(query.get("use_regex")):
            try:
                regex = re.compile(pattern)
            except re.error as err:
                raise bad_request(f"invalid regular expression '{pattern}': {err}") from None
            selected = [item for item in selected if regex.search(name(item))]
        else:
            needle = pattern.lower()
            selected = [item for item in selected if needle in name(item).lower()]
    reverse = flag(query.get("sort_reverse"))
    sort = query.get("sort")
    rendered: list[dict[str, Any]] | None = None
    if sort:
        key = (sort_keys or {}).get(sort)
        if key is not None:
            selected = sorted(selected, key=lambda item: _sortable(key(item)), reverse=reverse)
        else:
            rendered = [render(item) for item in selected]
            rendered.sort(key=lambda item: _sortable(_dig(item, sort)), reverse=reverse)
    elif default_sort is not None:
        selected = sorted(selected, key=default_sort, reverse=reverse)
    elif reverse:
        selected = list(reversed(selected))
    filtered = len(selected)
    columns = [c for c in query.get("columns", "").split(",") if c]

    def finish(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [_columns(row, columns) for row in rows] if columns else rows

    if "page" not in query:
        rows = rendered if rendered is not None else [render(item) for item in selected]
        return respond(finish(rows))
    page = _int_param(request, "page", 1)
    page_size = _int_param(request, "page_size", DEFAULT_PAGE_SIZE)
    if page_size > MAX_PAGE_SIZE:
        raise ApiError(
            400,
            "invalid_pagination_parameters",
            f"Invalid pagination parameters: page number {page}, page size {page_size}",
        )
    page_count = -(-filtered // page_size)
    if page > max(page_count, 1):
        raise ApiError(
            400,
            "page_out_of_range",
            f"Page out of range, page: {page} page size: {page_size}, len: {filtered}",
        )
    start = (page - 1) * page_size
    if rendered is not None:
        rows = rendered[start : start + page_size]
    else:
        rows = [render(item) for item in selected[start : start + page_size]]
    return respond(
        {
            "filtered_count": filtered,
            "item_count": len(rows),
            "items": finish(rows),
            "page": page,
            "page_count": page_count,
            "page_size": page_size,
            "total_count": total,
        }
    )
