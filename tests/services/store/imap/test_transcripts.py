"""Replays every protocol transcript in tests/transcripts/imap/ against the real server.

Format: ``C: text`` is sent as a line (CRLF added); ``S: pattern`` must match the next line
the server sends. In patterns ``<n>`` matches a number and ``<any>`` any text; the rest is
literal. Before each transcript the mailbox INBOX holds three messages (``message(1..3)``,
internal date 2024-03-04 10:00:00 UTC); the user is alice@example.com with the harness
password, written ``PASSWORD`` in transcripts. ``# setup: plaintext=never`` lines pick
harness options.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.services.store.imap.conftest import PASSWORD, Factory, message

DIR = Path(__file__).resolve().parents[3] / "transcripts" / "imap"
FILES = sorted(DIR.glob("*.txt"))


def _pattern(text: str) -> re.Pattern[bytes]:
    out = []
    for token in re.split(r"(<n>|<any>)", text):
        if token == "<n>":
            out.append(r"\d+")
        elif token == "<any>":
            out.append(r".*?")
        else:
            out.append(re.escape(token))
    return re.compile(("".join(out) + r"\r\n").encode("utf-8"), re.DOTALL)


def test_every_family_has_a_transcript() -> None:
    names = {f.stem for f in FILES}
    assert {
        "auth",
        "mailbox",
        "select",
        "fetch",
        "store",
        "search",
        "copy_move",
        "expunge",
        "append",
        "idle",
        "extensions",
        "errors",
    } <= names, names


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
async def test_transcript(path: Path, make_imap: Factory) -> None:
    options: dict[str, str] = {}
    lines = path.read_text(encoding="utf-8").splitlines()
    for ln in lines:
        if ln.startswith("# setup:"):
            for item in ln.split(":", 1)[1].split():
                k, v = item.split("=")
                options[k] = v
    h = await make_imap(plaintext=options.get("plaintext", "loopback"))
    await h.deliver(message(1), message(2), message(3))
    c = await h.raw()
    try:
        for number, ln in enumerate(lines, 1):
            where = f"{path.name}:{number}"
            if ln.startswith("C: "):
                await c.send(ln[3:].replace("PASSWORD", f'"{PASSWORD}"').encode() + b"\r\n")
            elif ln.startswith("C+ "):  # literal octets without a line end of their own
                await c.send(ln[3:].encode().replace(b"\\r\\n", b"\r\n"))
            elif ln.startswith("S: "):
                got = await c.line(timeout=30)
                assert _pattern(ln[3:]).fullmatch(got), f"{where}: expected {ln[3:]!r}, got {got!r}"
            elif ln.startswith("S-closed"):
                assert await c.line(timeout=30) == b"", where
    finally:
        await c.close()
