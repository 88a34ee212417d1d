"""Plays every transcript in tests/transcripts/smtp/ against a live filter node."""

from __future__ import annotations

import asyncio
import fnmatch
from pathlib import Path

import pytest

from services.filter.app import FilterNode

TRANSCRIPTS = Path(__file__).resolve().parents[3] / "transcripts" / "smtp"
FILES = sorted(TRANSCRIPTS.glob("*.txt"))


def test_there_are_transcripts() -> None:
    assert len(FILES) >= 10


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
async def test_transcript(mx: FilterNode, path: Path) -> None:
    lines = path.read_text().splitlines()
    listener = "smtp"
    for line in lines:
        if line.startswith("# listener:"):
            listener = line.split(":", 1)[1].strip()
    port = {"smtp": mx.settings.smtp_port, "submission": mx.settings.submission_port}[listener]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for number, line in enumerate(lines, 1):
            where = f"{path.name}:{number}"
            if line.startswith("C:"):
                writer.write(line[3:].encode() + b"\r\n")
            elif line.startswith("R:"):
                writer.write(line[3:].encode().decode("unicode_escape").encode("latin-1"))
            elif line.startswith("S:"):
                expected = line[3:]
                async with asyncio.timeout(30):
                    got = await reader.readline()
                if expected == "<closed>":
                    assert got == b"", f"{where}: expected the end, got {got!r}"
                    continue
                assert got.endswith(b"\r\n"), f"{where}: reply {got!r} lacks CRLF"
                text = got[:-2].decode()
                assert fnmatch.fnmatchcase(text, expected), f"{where}: {text!r} !~ {expected!r}"
            elif line.strip() and not line.startswith("#"):
                raise AssertionError(f"{where}: unknown transcript line {line!r}")
    finally:
        writer.close()
