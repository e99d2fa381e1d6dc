"""Placeholder: routes of this part of the API are added by its own change."""

from __future__ import annotations

from starlette.routing import BaseRoute

ROUTES: list[BaseRoute] = []
