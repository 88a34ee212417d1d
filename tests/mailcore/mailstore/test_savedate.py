"""RFC 8514 save date in the engine: set when a message is saved in a mailbox (APPEND,
delivery, COPY, MOVE) whatever its internal date; SAVEDBEFORE/SAVEDON/SAVEDSINCE in SQL
and in the reference matcher; an unknown save date matches no day."""

from __future__ import annotations

import datetime
import sqlite3
import time
from pathlib import Path

from mailcore.mailstore import Account, matcher
from mailcore.mailstore import search as q
from mailcore.mailstore.layout import account_dir, index_path
from tests.mailcore.mailstore.conftest import message


def _index(tmp_path: Path) -> sqlite3.Connection:
    return sqlite3.connect(index_path(account_dir(tmp_path / "store", "acct-1")))


async def test_save_date_is_set_on_append_copy_and_move(account: Account, tmp_path: Path) -> None:
    inbox = (await account.mailbox("INBOX")).id
    work = (await account.create_mailbox("Work")).id
    before = time.time()
    a = await account.append(inbox, message("a"), internal_date=946684800.0)  # 2000-01-01
    b = await account.append(inbox, message("b"), internal_date=946684800.0)
    (rec,) = await account.fetch(inbox, [a.uid])
    assert rec.internal_date == 946684800.0
    assert rec.save_date is not None and rec.save_date >= before
    with _index(tmp_path) as conn:  # saved long ago (as if)
        conn.execute("UPDATE messages SET save_date = 1e9 WHERE mailbox_id = ?", (inbox,))
    copied = await account.copy(inbox, [a.uid], work)
    moved = await account.move(inbox, [b.uid], work)
    recs = await account.fetch(work, [copied.mapping[0][1], moved.mapping[0][1]])
    assert all(r.save_date is not None and r.save_date >= before for r in recs)
    (old,) = await account.fetch(inbox, [a.uid])
    assert old.save_date == 1e9  # the source keeps its own


async def test_saved_date_search(account: Account, tmp_path: Path) -> None:
    inbox = (await account.mailbox("INBOX")).id
    uids = [(await account.append(inbox, message(f"m{i}"))).uid for i in range(3)]
    day = datetime.date(2001, 9, 9)  # 1e9 is 2001-09-09T01:46:40Z
    with _index(tmp_path) as conn:
        conn.execute("UPDATE messages SET save_date = 1e9 WHERE uid = ?", (uids[0],))
        conn.execute("UPDATE messages SET save_date = NULL WHERE uid = ?", (uids[2],))
    cases = {
        q.SavedDate("on", day): [uids[0]],
        q.SavedDate("before", day + datetime.timedelta(days=1)): [uids[0]],
        q.SavedDate("since", day + datetime.timedelta(days=1)): [uids[1]],
        q.Not(q.SavedDate("since", day)): [uids[2]],  # unknown: no day matches
    }
    for key, expected in cases.items():
        assert await account.search(inbox, key) == expected, key
        with _index(tmp_path) as conn:
            assert matcher.scan(conn, "", inbox, key) == expected, key
