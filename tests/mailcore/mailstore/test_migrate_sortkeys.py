"""Upgrading an index of version 3 (tests/data/mailstore/schema_v3.sql, the schema before
the sort keys) to version 4: the SORT / THREAD keys are filled from the message files,
the sort indexes made, the save date back-filled from the internal date; SORT and THREAD
then work, and a message stored afterwards gets its keys and a save date at once."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from mailcore import message
from mailcore.mailstore import MailStore, mailthreads, searchdata
from mailcore.mailstore import search as q
from mailcore.mailstore.layout import account_dir, index_path, message_path
from mailcore.mailstore.schema import SCHEMA_VERSION

SCHEMA_V3 = Path(__file__).parents[2] / "data" / "mailstore" / "schema_v3.sql"
DATAS = [
    b"From: Zed <zed@x>\r\nSubject: Re: b\r\nMessage-ID: <2@x>\r\nReferences: <1@x>\r\n"
    b"Date: Thu, 2 Jan 2020 10:00:00 +0000\r\n\r\nz\r\n",
    b"From: amy@x\r\nSubject: b\r\nMessage-ID: <1@x>\r\n\r\na\r\n",  # no Date
    b"From: =?UTF-8?Q?=C3=89?= <bob@x>\r\nSubject: =?UTF-8?Q?a_=C3=A9?=\r\n\r\nb\r\n",
]


def _v3_store(root: Path) -> None:
    acct = account_dir(root, "old")
    acct.mkdir(parents=True)
    conn = sqlite3.connect(index_path(acct))
    conn.executescript(SCHEMA_V3.read_text())
    size = sum(map(len, DATAS))
    conn.execute(
        "INSERT INTO state VALUES (1, 3, 4, 3, 3, 1000, ?, 3, ?, 1, 0, 0)", (size, time.time())
    )
    conn.execute("INSERT INTO mailboxes VALUES (1, 'INBOX', NULL, 1000, 6, 3, NULL)")
    for fid, data in enumerate(DATAS, start=1):
        path = message_path(acct, fid)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        parsed = message.parse(data)
        conn.execute("INSERT INTO files VALUES (?, ?, ?)", (fid, len(data), message.dumps(parsed)))
        conn.execute(
            "INSERT INTO messages VALUES (1, ?, ?, '', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL)",
            (
                fid + 2,  # UIDs 3, 4, 5
                fid,
                1.5e9 + fid,
                len(data),
                fid,
                *searchdata.of(parsed, data)[: len(searchdata.SEARCH_COLUMNS)],
            ),
        )
    conn.commit()
    conn.close()


async def test_version_3_index_gets_sort_keys(tmp_path: Path) -> None:
    root = tmp_path / "s"
    _v3_store(root)
    store = await MailStore.open(root, fsync=False)
    try:
        acct = await store.account("old")
        inbox = (await acct.mailbox("INBOX")).id
        path = index_path(account_dir(root, "old"))
        with sqlite3.connect(path) as conn:
            (version,) = conn.execute("SELECT schema FROM state").fetchone()
            assert version == SCHEMA_VERSION == 6
            rows = conn.execute(
                "SELECT uid, k_subject, k_reply, k_from, k_dfrom, sent_at, msg_id, refs,"
                " save_date FROM messages ORDER BY uid"
            ).fetchall()
            indexes = {r[1] for r in conn.execute("PRAGMA index_list(messages)")}
        assert rows == [
            (3, "B", 1, "ZED", "ZED", 1577959200.0, "2@x", "1@x", 1.5e9 + 1),
            (4, "B", 0, "AMY", "AMY@X", 1.5e9 + 2, "1@x", "", 1.5e9 + 2),  # internal date
            (5, "A E\u0301", 0, "BOB", "E\u0301", 1.5e9 + 3, None, "", 1.5e9 + 3),
        ]
        assert {"messages_k_subject", "messages_k_from", "messages_sent_at"} <= indexes
        everything = q.All()
        assert await acct.sort(inbox, everything, [("SUBJECT", False)]) == [5, 3, 4]
        assert await acct.sort(inbox, everything, [("DATE", True)]) == [3, 5, 4]
        threads = await acct.thread(inbox, everything, "REFERENCES")
        assert mailthreads.render(threads) == b"(4 3)(5)"
        # stored from now on: keys and a save date straight away
        before = time.time()
        new = await acct.append(inbox, b"Subject: Fwd: a \xc3\xa9\r\n\r\nx\r\n", internal_date=1.0)
        with sqlite3.connect(path) as conn:
            k, saved = conn.execute(
                "SELECT k_subject, save_date FROM messages WHERE uid = ?", (new.uid,)
            ).fetchone()
        assert k == "A E\u0301"
        assert saved >= before
        assert await acct.sort(inbox, everything, [("SUBJECT", False)]) == [5, new.uid, 3, 4]
    finally:
        await store.close()


async def test_version_5_keys_become_unicode_casemap(tmp_path: Path) -> None:
    # an index of version 5 held its string keys in i;ascii-casemap form; version 6 in
    # i;unicode-casemap form (RFC 5051), converted without reading the message files
    root = tmp_path / "s"
    store = await MailStore.open(root, fsync=False)
    try:
        acct = await store.account("five")
        inbox = (await acct.mailbox("INBOX")).id
        for data in (
            b"Subject: =?UTF-8?Q?=C3=84rger?=\r\nFrom: =?UTF-8?Q?=C3=96lf?= <o@x>\r\n\r\n.\r\n",
            b"Subject: =?ISO-8859-1?Q?=E4pfel?=\r\nFrom: Otto <p@x>\r\n\r\n.\r\n",
            b"Subject: Zebra\r\nFrom: zed@x\r\n\r\n.\r\n",
        ):
            await acct.append(inbox, data)
    finally:
        await store.close()
    path = index_path(account_dir(root, "five"))
    old = {1: ("ÄRGER", "ÖLF"), 2: ("äPFEL", "OTTO"), 3: ("ZEBRA", "ZED@X")}
    with sqlite3.connect(path) as conn:
        for uid, (subject, name) in old.items():
            conn.execute(
                "UPDATE messages SET k_subject = ?, k_dfrom = ? WHERE uid = ?",
                (subject, name, uid),
            )
        conn.execute("UPDATE state SET schema = 5")
    for (fid,) in sqlite3.connect(path).execute("SELECT file_id FROM messages"):
        message_path(account_dir(root, "five"), fid).unlink()  # not read by the upgrade
    store = await MailStore.open(root, fsync=False)
    try:
        acct = await store.account("five")
        with sqlite3.connect(path) as conn:
            (version,) = conn.execute("SELECT schema FROM state").fetchone()
            rows = conn.execute("SELECT uid, k_subject, k_dfrom FROM messages ORDER BY uid")
            keys = rows.fetchall()
        assert version == 6
        assert keys == [
            (1, "A\u0308RGER", "O\u0308LF"),
            (2, "A\u0308PFEL", "OTTO"),
            (3, "ZEBRA", "ZED@X"),
        ]
        everything = q.All()
        assert await acct.sort(inbox, everything, [("SUBJECT", False)]) == [2, 1, 3]
        assert await acct.sort(inbox, everything, [("DISPLAYFROM", False)]) == [2, 1, 3]
    finally:
        await store.close()
