"""A list page's rows, rendered once and remembered.

A row's markup (``templates/_row.html``) is a function of the folder and the row alone,
and rows are immutable (imap_records.Row: a new flag or a new preview is another row), so
the markup of rows shown lately is kept: a list page shown again renders its fifty rows
from memory instead of through the template (most of a list page's rendering time).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jinja2 import Template
from markupsafe import Markup

from services.webmail.imap_records import Row

LIMIT = 4096  # rows: a few users' first pages


class ListRows:
    def __init__(self, template: Template, url: Callable[..., str], limit: int = LIMIT) -> None:
        self.template = template
        self.url = url
        self.limit = limit
        self._made: dict[tuple[str, Row], Markup] = {}

    def __call__(self, folder: str, row: Row) -> Markup:
        key = (folder, row)
        found = self._made.get(key)
        if found is None:
            if len(self._made) >= self.limit:
                self._made.clear()
            # the template escapes every value it writes (autoescape)
            found = self._made[key] = Markup(self.render(folder, row))  # noqa: S704
        return found

    def render(self, folder: str, row: Row) -> str:
        ctx: dict[str, Any] = {"folder": folder, "r": row, "url": self.url}
        return self.template.render(ctx)
