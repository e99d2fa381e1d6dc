"""Filtering, sorting and paging as RabbitMQ's management API does them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.requests import Request

from rapidmq.admin.listing import list_response
from rapidmq.admin.util import ApiError


@dataclass
class Item:
    name: str
    messages: int


ITEMS = [Item(f"q{n:02d}", (n * 7) % 10) for n in range(25)]
rendered: list[str] = []


def render(item: Item) -> dict[str, Any]:
    rendered.append(item.name)
    return {"name": item.name, "messages": item.messages, "stats": {"rate": -item.messages}}


def answer(query: str, **options: Any) -> Any:
    request = Request({"type": "http", "query_string": query.encode(), "headers": []})
    response = list_response(request, ITEMS, render=render, name=lambda i: i.name, **options)
    return json.loads(bytes(response.body))


def test_without_page_a_plain_list_in_the_default_order() -> None:
    body = answer("", default_sort=lambda i: i.name)
    assert [row["name"] for row in body] == sorted(i.name for i in ITEMS)


def test_a_page_renders_only_its_items_and_reports_the_counts() -> None:
    rendered.clear()
    body = answer("page=2&page_size=10", default_sort=lambda i: i.name)
    assert rendered == [f"q{n:02d}" for n in range(10, 20)]
    assert {k: v for k, v in body.items() if k != "items"} == {
        "filtered_count": 25,
        "item_count": 10,
        "page": 2,
        "page_count": 3,
        "page_size": 10,
        "total_count": 25,
    }


def test_name_filter_is_a_substring_or_a_regex() -> None:
    assert [r["name"] for r in answer("name=Q1")] == [f"q1{n}" for n in range(10)]
    regex = answer("name=%5Eq2%5B02%5D%24&use_regex=true")
    assert [r["name"] for r in regex] == ["q20", "q22"]


def test_sort_by_a_key_function_or_by_a_nested_field() -> None:
    by_key = answer("sort=messages&sort_reverse=true", sort_keys={"messages": lambda i: i.messages})
    assert [r["messages"] for r in by_key] == sorted((i.messages for i in ITEMS), reverse=True)
    nested = answer("sort=stats.rate")
    assert [r["stats"]["rate"] for r in nested] == sorted(-i.messages for i in ITEMS)


def test_columns_keep_only_the_named_fields() -> None:
    body = answer("columns=name,stats.rate&page=1&page_size=2", default_sort=lambda i: i.name)
    assert body["items"] == [
        {"name": "q00", "stats": {"rate": 0}},
        {"name": "q01", "stats": {"rate": -7}},
    ]


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("page=4&page_size=10", "page_out_of_range"),
        ("page=1&page_size=501", "invalid_pagination_parameters"),
        ("page=x", "bad_request"),
        ("page=0", "bad_request"),
        ("name=(&use_regex=true", "bad_request"),
    ],
)
def test_bad_parameters_are_400(query: str, error: str) -> None:
    with pytest.raises(ApiError) as caught:
        answer(query)
    assert caught.value.status == 400
    assert caught.value.error == error


def test_an_empty_list_has_page_one_of_zero() -> None:
    request = Request({"type": "http", "query_string": b"page=1", "headers": []})
    response = list_response(request, [], render=render, name=lambda i: i.name)
    body = json.loads(bytes(response.body))
    assert body["page_count"] == 0 and body["items"] == [] and body["total_count"] == 0
