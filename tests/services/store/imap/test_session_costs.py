"""Per-command costs that stay out of the command path (issue 20): the commands counter's
labelled child is looked up once per (command, status), a mailbox name is encoded for the
wire once, and the counts and names on the wire are what they were."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from mailcore import metrics
from services.store.imap import utf7
from services.store.listener import Connection
from tests.services.store.imap.conftest import ImapHarness, message


def _commands(command: str, status: str) -> float:
    labels = {"command": command, "status": status}
    return REGISTRY.get_sample_value("postern_imap_commands_total", labels) or 0.0


async def test_command_counter_labels_once(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await imap.raw_login()
    await c.cmd(b"n0 NOOP")
    await c.cmd(b"x0 FROBNICATE")
    looked_up: list[tuple[str, ...]] = []
    real = metrics.IMAP_COMMANDS.labels

    def counting(*values: str) -> Any:
        looked_up.append(values)
        return real(*values)

    monkeypatch.setattr(metrics.IMAP_COMMANDS, "labels", counting)
    noops, unknown = _commands("NOOP", "OK"), _commands("unknown", "BAD")
    for i in range(1, 21):
        assert (await c.cmd(b"n%d NOOP" % i))[-1].startswith(b"n%d OK" % i)
    assert (await c.cmd(b"x1 FROBNICATE"))[-1].startswith(b"x1 BAD")
    assert _commands("NOOP", "OK") == noops + 20
    assert _commands("unknown", "BAD") == unknown + 1
    assert looked_up == []
    await c.close()


async def test_mailbox_names_encoded_once(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    c = await imap.raw_login()
    assert (await c.cmd(b'c CREATE "Entw&APw-rfe &-c"'))[-1].startswith(b"c OK")
    encoded: list[str] = []
    real = utf7.encode

    def counting(name: str) -> str:
        encoded.append(name)
        return real(name)

    monkeypatch.setattr(utf7, "encode", counting)
    for i in range(10):
        reply = await c.cmd(b'l%d LIST "" "Entw*"' % i)
        assert reply[0] == b'* LIST (\\HasNoChildren) "/" "Entw&APw-rfe &-c"\r\n', reply
        reply = await c.cmd(b"s%d STATUS INBOX (MESSAGES)" % i)
        assert reply[0] == b"* STATUS INBOX (MESSAGES 0)\r\n", reply
    # each name on the wire encoded once (LIST's pattern is another matter)
    assert encoded.count("Entwürfe &c") <= 1
    assert encoded.count("INBOX") <= 1
    await c.close()


async def test_one_write_per_reply_and_no_drain_when_it_all_went_out(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command's untagged lines and its tagged reply go to the transport in one write
    (issue 20: reply writes were a quarter of the GIL samples), and a reply the kernel
    took whole is not followed by a wait for the socket (StreamWriter.drain)."""
    await imap.deliver(*[message(i) for i in range(1, 41)])
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    writes: list[int] = []
    drains = [0]
    real_write = Connection.write
    real_drain = asyncio.StreamWriter.drain

    def write(self: Connection, data: bytes | bytearray) -> None:
        writes.append(len(data))
        real_write(self, data)

    async def drain(self: asyncio.StreamWriter) -> None:
        if self.transport.get_extra_info("sockname")[1] == imap.port:  # the server's side
            drains[0] += 1
        await real_drain(self)

    monkeypatch.setattr(Connection, "write", write)
    monkeypatch.setattr(asyncio.StreamWriter, "drain", drain)
    commands = [
        b"a SELECT INBOX",  # EXISTS, RECENT, FLAGS, OKs, then the tagged OK
        b"b UID FETCH 1:* (UID FLAGS)",
        b"c STATUS INBOX (MESSAGES UNSEEN UIDNEXT)",
        b"d FETCH 1:5 (ENVELOPE)",
        b'e LIST "" "*"',
        b"f NOOP",
    ]
    for cmd in commands:
        got = await c.cmd(cmd)
        assert got[-1].startswith(cmd[:2] + b"OK")
        assert len(got) > 1 or cmd.startswith(b"f")
    assert len(writes) == len(commands)  # one per command, untagged lines included
    assert drains[0] == 0
    await c.close()
