"""Every IMAP command that changes mail writes exactly the journal records it should
(issue 11): one table, each row commands over a real socket and the record kinds (and
key fields) the account's journal must gain."""

from __future__ import annotations

from typing import Any

import pytest

from mailcore.mailstore.records import (
    AppendRecord,
    ExpungeRecord,
    FlagsRecord,
    MailboxCreateRecord,
    MailboxDeleteRecord,
    MailboxRenameRecord,
    Record,
    SubscribeRecord,
    UnsubscribeRecord,
)
from tests.services.store.imap.conftest import ImapHarness, message

MSG = message(7)
APPEND = b"X APPEND Box (\\Flagged $Work) {%d+}\r\n%s" % (len(MSG), MSG)

# (name, commands after "SELECT Box" (Box holds UID 1 \Seen and UID 2 \Deleted), records)
CASES: list[tuple[str, list[bytes], list[tuple[type[Record], dict[str, Any]]]]] = [
    (
        "APPEND",
        [APPEND],
        [(AppendRecord, {"uid": 3, "flags": {"\\Flagged", "$Work"}, "size": len(MSG)})],
    ),
    (
        "STORE +FLAGS",
        [b"X STORE 1:2 +FLAGS (\\Answered)"],
        [
            (FlagsRecord, {"uid": 1, "flags": {"\\Seen", "\\Answered"}}),
            (FlagsRecord, {"uid": 2, "flags": {"\\Deleted", "\\Answered"}}),
        ],
    ),
    (
        "UID STORE FLAGS.SILENT",
        [b"X UID STORE 2 FLAGS.SILENT ($A)"],
        [(FlagsRecord, {"uid": 2, "flags": {"$A"}})],
    ),
    ("STORE changing nothing", [b"X STORE 1 +FLAGS (\\Seen)"], []),
    ("FETCH BODY[] sets \\Seen", [b"X FETCH 2 BODY[]"], [(FlagsRecord, {"uid": 2})]),
    ("EXPUNGE", [b"X EXPUNGE"], [(ExpungeRecord, {"uids": (2,)})]),
    ("UID EXPUNGE", [b"X UID EXPUNGE 1"], []),
    ("CLOSE", [b"X CLOSE"], [(ExpungeRecord, {"uids": (2,)})]),
    ("COPY", [b"X COPY 1 INBOX"], [(AppendRecord, {"uid": 1, "flags": {"\\Seen"}})]),
    (
        "MOVE",
        [b"X MOVE 1 INBOX"],
        [(AppendRecord, {"uid": 1}), (ExpungeRecord, {"uids": (1,)})],
    ),
    ("CREATE", [b"X CREATE New"], [(MailboxCreateRecord, {"name": "New", "uidnext": 1})]),
    (
        "DELETE",
        [b"X CREATE Gone", b"Y DELETE Gone"],
        [
            (MailboxCreateRecord, {"name": "Gone"}),
            (MailboxDeleteRecord, {"name": "Gone"}),
        ],
    ),
    (
        "RENAME",
        [b"X RENAME Sent Posted"],
        [
            (MailboxRenameRecord, {"old_name": "Sent", "new_name": "Posted"}),
            (UnsubscribeRecord, {"name": "Sent"}),
            (SubscribeRecord, {"name": "Posted"}),
        ],
    ),
    (
        "SUBSCRIBE a missing name",
        [b"X SUBSCRIBE Nowhere"],
        [(SubscribeRecord, {"name": "Nowhere"})],
    ),
    ("UID COPY", [b"X UID COPY 2 Archive"], [(AppendRecord, {"uid": 1, "flags": {"\\Deleted"}})]),
    (
        "UID MOVE",
        [b"X UID MOVE 1:2 Trash"],
        [
            (AppendRecord, {"uid": 1}),
            (AppendRecord, {"uid": 2}),
            (ExpungeRecord, {"uids": (1, 2)}),
        ],
    ),
    (
        "CREATE with SPECIAL-USE",
        [b"X CREATE Mine (USE (\\Archive))"],
        [(MailboxCreateRecord, {"name": "Mine", "special_use": "\\Archive"})],
    ),
    (
        "RENAME INBOX",
        [b"X APPEND INBOX {4+}\r\nhi\r\n", b"Y RENAME INBOX Saved"],
        [
            (AppendRecord, {"uid": 1}),
            (MailboxCreateRecord, {"name": "Saved"}),
            (AppendRecord, {"uid": 1}),
            (ExpungeRecord, {"uids": (1,)}),
        ],
    ),
    (
        "STORE UNCHANGEDSINCE refused",
        [b"X STORE 1 (UNCHANGEDSINCE 1) +FLAGS (\\Flagged)"],
        [],
    ),
    ("UNSELECT keeps \\Deleted messages", [b"X UNSELECT"], []),
    ("UNSUBSCRIBE", [b"X UNSUBSCRIBE Trash"], [(UnsubscribeRecord, {"name": "Trash"})]),
    (
        "EXAMINE, FETCH, SEARCH, STATUS: no records",
        [
            b"X EXAMINE Box",
            b"Y FETCH 1:* (FLAGS BODY[])",
            b"Z SEARCH ALL",
            b"W STATUS INBOX (MESSAGES)",
        ],
        [],
    ),
]


@pytest.mark.parametrize(("name", "commands", "expected"), CASES, ids=[c[0] for c in CASES])
async def test_imap_command_writes_its_records(
    imap: ImapHarness,
    name: str,
    commands: list[bytes],
    expected: list[tuple[type[Record], dict[str, Any]]],
) -> None:
    acct = await imap.account()
    box = await acct.create_mailbox("Box")
    await acct.append(box.id, message(1), flags=["\\Seen"])
    await acct.append(box.id, message(2), flags=["\\Deleted"])
    c = await imap.raw_login()
    assert (await c.cmd(b"S SELECT Box"))[-1].startswith(b"S OK")
    start = acct.change_seq
    for command in commands:
        if b"{" in command:
            tag = command.split(b" ", 1)[0]
            await c.send(command + b"\r\n")
            reply = await c.until_tagged(tag)
        else:
            reply = await c.cmd(command)
        assert reply[-1].split(b" ")[1] == b"OK", reply
    got = await acct.changes_since(start)
    assert [type(r) for r in got] == [cls for cls, _ in expected], got
    for rec, (_, fields) in zip(got, expected, strict=True):
        for key, value in fields.items():
            assert getattr(rec, key) == value, (rec, key)
    await c.close()
