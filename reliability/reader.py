"""Read every mailbox of some users over IMAP into :class:`MailboxView` snapshots."""

from __future__ import annotations

import imaplib
import re
from collections.abc import Iterable

from reliability.checker import MailboxView
from reliability.ledger import HEADER

_LIST = re.compile(rb'\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')
_UID = re.compile(rb"UID (\d+)")
_RID = re.compile(HEADER.encode() + rb":\s*(\S+)", re.IGNORECASE)


def _unquote(name: bytes) -> str:
    text = name.decode()
    if text.startswith('"') and text.endswith('"'):
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _quote(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _number(value: object) -> int:
    assert isinstance(value, bytes | str), value
    return int(value)


def read_user(
    store: str, host: str, port: int, user: str, password: str, timeout: float = 60.0
) -> list[MailboxView]:
    """Every mailbox of ``user``: UIDVALIDITY and UIDNEXT from SELECT, then each message's
    UID and reliability id. Messages above the SELECT's UIDNEXT (arrived meanwhile) are
    left for the next snapshot, so a view is consistent with its UIDNEXT."""
    views = []
    with imaplib.IMAP4(host, port, timeout=timeout) as imap:
        imap.login(user, password)
        typ, lines = imap.list()
        assert typ == "OK", lines
        names = []
        for line in lines:
            if not isinstance(line, bytes):
                continue
            m = _LIST.match(line)
            if m and b"\\noselect" not in m.group("flags").lower():
                names.append(_unquote(m.group("name")))
        for name in names:
            typ, _ = imap.select(_quote(name), readonly=True)
            assert typ == "OK", name
            uidvalidity = _number(imap.untagged_responses["UIDVALIDITY"][-1])
            uidnext = _number(imap.untagged_responses["UIDNEXT"][-1])
            msgs: list[tuple[int, str | None]] = []
            typ, data = imap.uid("FETCH", "1:*", f"(UID BODY.PEEK[HEADER.FIELDS ({HEADER})])")
            assert typ == "OK", data
            for item in data:
                if not isinstance(item, tuple):
                    continue
                um = _UID.search(item[0])
                if um is None:
                    continue
                uid = int(um.group(1))
                if uid >= uidnext:
                    continue
                rm = _RID.search(item[1])
                msgs.append((uid, rm.group(1).decode() if rm else None))
            views.append(MailboxView(store, user, name, uidvalidity, uidnext, tuple(msgs)))
            imap.close()
    return views


def snapshot(
    store: str, host: str, port: int, accounts: Iterable[tuple[str, str]]
) -> list[MailboxView]:
    out: list[MailboxView] = []
    for user, password in accounts:
        out += read_user(store, host, port, user, password)
    return out
