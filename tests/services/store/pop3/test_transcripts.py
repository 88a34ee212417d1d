"""Replays every transcript in tests/transcripts/pop3/ against the real server.

``C:`` lines are sent as they are (with CRLF); ``S:`` lines must arrive exactly, in order;
``S: <EOF>`` expects the server to close. ``{uidvalidity}``, ``{uid1}``, ``{uid2}`` are
filled in from the store. A ``# plaintext: never`` line switches the plaintext policy.
Each transcript starts with alice@example.com holding message(1) and message(2).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.services.store.pop3.conftest import Factory, message

TRANSCRIPTS = Path(__file__).resolve().parents[3] / "transcripts" / "pop3"
FILES = sorted(TRANSCRIPTS.glob("*.txt"))


def test_transcripts_exist() -> None:
    assert len(FILES) >= 4


@pytest.mark.parametrize("path", FILES, ids=[p.stem for p in FILES])
async def test_transcript(path: Path, make_pop3: Factory) -> None:
    text = path.read_text()
    plaintext = "never" if "# plaintext: never" in text else "loopback"
    pop = await make_pop3(plaintext=plaintext)
    alice = await pop.add_user()
    uids = await pop.deliver(alice, message(1), message(2))
    acct, inbox = await pop.inbox(alice)
    values = {
        "uidvalidity": str((await acct.snapshot(inbox)).uidvalidity),
        "uid1": str(uids[0]),
        "uid2": str(uids[1]),
    }
    reader, writer = await asyncio.open_connection("127.0.0.1", pop.port)
    try:
        for number, raw in enumerate(text.split("\n"), 1):
            if raw.startswith("C: "):
                writer.write(raw[3:].encode() + b"\r\n")
                await writer.drain()
            elif raw == "S: <EOF>":
                assert await asyncio.wait_for(reader.read(), 30) == b"", f"line {number}"
            elif raw.startswith("S: "):
                expected = raw[3:]
                for key, value in values.items():
                    expected = expected.replace("{" + key + "}", value)
                got = await asyncio.wait_for(reader.readline(), 30)
                assert got == expected.encode() + b"\r\n", f"{path.name} line {number}"
            else:
                assert raw == "" or raw.startswith("#"), f"{path.name} line {number}: {raw!r}"
    finally:
        writer.close()
