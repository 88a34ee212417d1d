"""POP3 writes exactly the journal records it should (issue 11): a message read with
RETR becomes \\Seen at QUIT (a flags record), DELE + QUIT is one expunge record, RSET
and reading commands write none."""

from __future__ import annotations

import poplib
from collections.abc import Callable

import pytest

from mailcore.mailstore.records import ExpungeRecord, FlagsRecord, Record
from tests.services.store.pop3.conftest import Pop3Harness, message


def _dele_two(c: poplib.POP3) -> None:
    c.dele(1)
    c.dele(3)


def _dele_then_rset(c: poplib.POP3) -> None:
    c.dele(1)
    c.rset()


def _list_uidl_top(c: poplib.POP3) -> None:
    c.list()
    c.uidl()
    c.top(1, 0)


CASES: list[tuple[str, Callable[[poplib.POP3], object], list[type[Record]], dict[str, object]]] = [
    ("DELE + QUIT", _dele_two, [ExpungeRecord], {"uids": (1, 3)}),
    ("DELE + RSET", _dele_then_rset, [], {}),
    ("LIST, UIDL, TOP", _list_uidl_top, [], {}),
]


@pytest.mark.parametrize(("name", "session", "kinds", "fields"), CASES, ids=[c[0] for c in CASES])
async def test_pop3_session_writes_its_records(
    pop: Pop3Harness,
    name: str,
    session: Callable[[poplib.POP3], object],
    kinds: list[type[Record]],
    fields: dict[str, object],
) -> None:
    user = await pop.add_user()
    await pop.deliver(user, message(1), message(2), message(3))
    acct, _ = await pop.inbox(user)
    start = acct.change_seq

    def run() -> None:
        c = pop.login()
        session(c)
        c.quit()

    await pop.run(run)
    await pop.wait_idle()
    got = await acct.changes_since(start)
    assert [type(r) for r in got] == kinds, got
    for key, value in fields.items():
        assert getattr(got[0], key) == value


async def test_pop3_retr_marks_seen_with_a_flags_record(pop: Pop3Harness) -> None:
    user = await pop.add_user()
    await pop.deliver(user, message(1))
    acct, _ = await pop.inbox(user)
    start = acct.change_seq

    def run() -> None:
        c = pop.login()
        c.retr(1)
        c.quit()

    await pop.run(run)
    await pop.wait_idle()
    (rec,) = await acct.changes_since(start)
    assert isinstance(rec, FlagsRecord)
    assert (rec.uid, rec.flags) == (1, {"\\Seen"})
