"""docs/configuration.md lists every setting as the code defines it."""

from __future__ import annotations

from pathlib import Path

from mailcore.config import reference_markdown

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def test_reference_is_current() -> None:
    text = DOC.read_text()
    begin, end = "<!-- settings:begin -->", "<!-- settings:end -->"
    current = text[text.index(begin) + len(begin) : text.index(end)].strip()
    assert current == reference_markdown().strip(), (
        "docs/configuration.md is stale: run `make docs`"
    )
