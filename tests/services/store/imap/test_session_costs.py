"""Per-command costs that stay out of the command path (issue 20): the commands counter's
labelled child is looked up once per (command, status), a mailbox name is encoded for the
wire once, and the counts and names on the wire are what they were."""

from __future__ import annotations

from typing import Any

import pytest
from prometheus_client import REGISTRY

from mailcore import metrics
from services.store.imap import utf7
from tests.services.store.imap.conftest import ImapHarness


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
