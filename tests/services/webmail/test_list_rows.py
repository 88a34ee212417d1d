"""List rows are rendered once: a row shown again comes from memory, and is the markup
the row template gives; another flag or folder is another row."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from services.webmail.app import make_templates
from services.webmail.imap_records import Row
from services.webmail.list_rows import ListRows


def _row(**kw: Any) -> Row:
    fields: dict[str, Any] = dict(
        uid=7,
        flags=frozenset({"\\Flagged"}),
        size=4096,
        date=datetime(2024, 3, 4, 10, 0, tzinfo=UTC),
        sender='René <"&>',
        sender_address="r@example.net",
        to="me",
        subject="<script>café</script>",
        preview="a preview",
    )
    return Row(**(fields | kw))


def test_rows_rendered_once_and_as_the_template_gives_them() -> None:
    rows = make_templates().env.globals["list_row"]
    assert isinstance(rows, ListRows)
    rendered: list[Row] = []
    real = rows.render

    def counting(folder: str, row: Row) -> str:
        rendered.append(row)
        return real(folder, row)

    rows.render = counting  # type: ignore[method-assign]
    first = rows("INBOX", _row())
    assert rows("INBOX", _row()) is first  # an equal row: from memory
    assert rendered == [_row()]
    assert str(first) == rows.template.render(folder="INBOX", r=_row(), url=rows.url)
    assert "<script>" not in first and "&lt;script&gt;café" in first
    assert 'class="row unread flagged"' in first and "/read?f=INBOX&amp;uid=7" in first
    seen = rows("INBOX", _row(flags=frozenset({"\\Seen"})))
    assert 'class="row"' in seen and len(rendered) == 2
    other = rows("Sent", _row())
    assert "/read?f=Sent&amp;uid=7" in other and len(rendered) == 3


def test_remembered_rows_are_bounded() -> None:
    rows = make_templates().env.globals["list_row"]
    assert isinstance(rows, ListRows)
    rows.limit = 3
    for uid in range(1, 8):
        rows("INBOX", _row(uid=uid))
    assert len(rows._made) <= 3
