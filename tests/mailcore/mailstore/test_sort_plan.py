"""SORT on a 100,000-message mailbox reads the sort indexes (no per-message parse, no
full sort for the indexed keys): the query plans, and the order, checked on 100,000 index
rows inserted directly. No timing is asserted."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from mailcore.mailstore import schema, sorting, sqlsearch
from mailcore.mailstore import search as q
from mailcore.mailstore.messages import INSERT_ROW, row_values
from mailcore.mailstore.searchdata import NO_DATA

N = 100_000


@pytest.fixture(scope="module")
def conn(tmp_path_factory: pytest.TempPathFactory) -> sqlite3.Connection:
    path: Path = tmp_path_factory.mktemp("plan") / "index.sqlite"
    c = schema.connect(path, durable=False)
    c.execute("BEGIN")
    schema.create(c)
    rows = []
    for uid in range(1, N + 1):
        keys = NO_DATA._replace(
            k_subject=f"S{uid % 5003:05d}",
            k_from=f"F{uid % 311:03d}",
            sent_at=1e9 + (uid * 7919) % N,
        )
        base = (1, uid, uid, "", 1e9 + uid, 1000 + uid % 977, uid, b"")
        rows.append(row_values(base, 1e9, keys))
    c.executemany(INSERT_ROW, rows)
    c.execute("COMMIT")
    return c


def _plan(conn: sqlite3.Connection, keys: list[tuple[str, bool]]) -> str:
    query = sqlsearch.compile_key(q.All())
    sql = sqlsearch.ordered_sql(query, sorting.order_by(keys))
    steps = conn.execute("EXPLAIN QUERY PLAN " + sql, [1, *query.params]).fetchall()
    return " | ".join(str(s[3]) for s in steps)


@pytest.mark.parametrize(
    ("keys", "index"),
    [
        ([("SUBJECT", False)], "messages_k_subject"),
        ([("DATE", False)], "messages_sent_at"),
        ([("FROM", False)], "messages_k_from"),
    ],
)
def test_indexed_keys_are_read_in_index_order(
    conn: sqlite3.Connection, keys: list[tuple[str, bool]], index: str
) -> None:
    plan = _plan(conn, keys)
    assert f"INDEX {index} (mailbox_id=?)" in plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan  # no sort step at all


@pytest.mark.parametrize(
    ("keys", "index"),
    [
        ([("DATE", True)], "messages_sent_at"),  # REVERSE DATE, then ascending UIDs
        ([("FROM", False), ("DATE", False)], "messages_k_from"),
    ],
)
def test_later_keys_only_sort_within_equal_first_keys(
    conn: sqlite3.Connection, keys: list[tuple[str, bool]], index: str
) -> None:
    plan = _plan(conn, keys)
    assert f"INDEX {index} (mailbox_id=?)" in plan
    assert "TEMP B-TREE FOR ORDER BY" not in plan
    assert "TEMP B-TREE FOR RIGHT PART OF ORDER BY" in plan


def test_order_matches_the_keys(conn: sqlite3.Connection) -> None:
    rows = conn.execute("SELECT uid, k_subject, sent_at, k_from FROM messages").fetchall()
    for keys, expected in (
        ([("SUBJECT", False)], sorted(rows, key=lambda r: (r[1], r[0]))),
        ([("DATE", True)], sorted(rows, key=lambda r: (-r[2], r[0]))),
        ([("FROM", False)], sorted(rows, key=lambda r: (r[3], r[0]))),
    ):
        found = sqlsearch.ordered(conn, "", 1, q.All(), sorting.order_by(keys))
        assert found == [r[0] for r in expected]
