"""THREAD=ORDEREDSUBJECT grouped and ordered by SQLite (sqlsearch.subject_threads) gives
what the in-memory algorithm (mailthreads.ordered_subject, RFC 5256 §4) gives, on index
rows of shared and empty base subjects, equal sent dates, NULL keys and UID gaps, with
and without search criteria."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailcore.mailstore import mailthreads, schema, sqlsearch
from mailcore.mailstore import search as q
from mailcore.mailstore.messages import INSERT_ROW, row_values
from mailcore.mailstore.searchdata import NO_DATA

_ROWS = st.lists(
    st.tuples(
        st.integers(1, 60),  # uid (duplicates dropped)
        st.sampled_from([None, "", "A", "B", "A\u0308", "HELLO WORLD"]),  # base subject
        st.sampled_from([None, 0.0, 1.0, 2.0, 3.5]),  # sent date (NULL: an old index)
        st.booleans(),  # \Seen
    ),
    max_size=40,
)


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    c = schema.connect(tmp_path / "index.sqlite", durable=False)
    c.execute("BEGIN")
    schema.create(c)
    c.execute("COMMIT")
    return c


def _fill(c: sqlite3.Connection, rows: list[tuple[int, str | None, float | None, bool]]) -> None:
    c.execute("DELETE FROM messages")
    for uid, subject, sent, seen in {r[0]: r for r in rows}.values():
        base = (1, uid, uid, "\\Seen" if seen else "", 100.0 + uid, 10, uid, b"")
        values = row_values(base, 0.0, NO_DATA._replace(k_subject=subject))
        c.execute(INSERT_ROW, values)
        c.execute("UPDATE messages SET sent_at = ? WHERE uid = ?", (sent, uid))  # NULL too


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_ROWS, st.sampled_from([q.All(), q.Not(q.Flag("\\Seen")), q.UidIn(((5, 40),))]))
def test_sql_grouping_matches_the_algorithm(
    conn: sqlite3.Connection,
    rows: list[tuple[int, str | None, float | None, bool]],
    key: q.SearchKey,
) -> None:
    _fill(conn, rows)
    found = sqlsearch.rows(conn, "", 1, key, mailthreads.SUBJECT_COLUMNS)
    expected = mailthreads.render(mailthreads.ordered_subject(mailthreads.subject_rows_of(found)))
    pairs = sqlsearch.subject_threads(conn, "", 1, key)
    assert mailthreads.render(mailthreads.SubjectThreads(pairs)) == expected
    numbers = {uid: n for n, uid in enumerate(sorted(u for u, _ in pairs), start=1)}
    threads = mailthreads.ordered_subject(mailthreads.subject_rows_of(found))
    assert mailthreads.render(mailthreads.SubjectThreads(pairs), numbers) == (
        mailthreads.render(threads, numbers)
    )


def test_threads_of_three_sizes(conn: sqlite3.Connection) -> None:
    # "A": 3 messages (parent and two children), "B": 2, "": 1; by first sent date
    _fill(
        conn,
        [
            (1, "A", 2.0, False),
            (2, "B", 1.0, False),
            (3, "A", 1.5, False),
            (4, "A", 3.0, False),
            (5, "B", 0.5, False),
            (7, "", 9.0, False),
        ],
    )
    pairs = sqlsearch.subject_threads(conn, "", 1, q.All())
    assert pairs == [(5, 5), (2, 5), (3, 3), (1, 3), (4, 3), (7, 7)]
    assert mailthreads.render(mailthreads.SubjectThreads(pairs)) == b"(5 2)(3 (1)(4))(7)"
