"""Search criteria as one SQL ``WHERE`` over the ``messages`` index (RFC 3501 §6.4.4).

UIDs, flags, sizes, modseqs, internal and sent dates and the FROM/TO/CC/BCC/SUBJECT
fields (decoded and case-folded in columns, see :mod:`mailcore.mailstore.searchdata`) are
compared by SQLite without a Python object per message, and without holding the GIL while
it scans. Only BODY, TEXT and header fields without a column need the message: those
leaves become calls of a Python function that evaluates them with the reference
:func:`mailcore.mailstore.matcher.matches`, and SQLite calls it only for rows the rest of
the expression has not decided already.

Every compiled expression is 0 or 1, never NULL, so ``NOT`` keeps its meaning.
"""

from __future__ import annotations

import bisect
import json
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from mailcore import message
from mailcore.logging import get_logger
from mailcore.mailstore import flags as flagset
from mailcore.mailstore import layout, matcher
from mailcore.mailstore import search as s
from mailcore.mailstore.errors import SearchStopped
from mailcore.mailstore.model import SYSTEM_FLAGS
from mailcore.mailstore.searchdata import HEADER_COLUMNS

log = get_logger("mailstore")

_SYSTEM = {f.lower(): f for f in SYSTEM_FLAGS}
MAX_INLINE_RANGES = 32  # UID ranges written out as BETWEENs; more go through bisect
_INT_MIN, _INT_MAX = -(2**63), 2**63 - 1
PROGRESS_STEPS = 1000  # SQLite VM steps between two looks at ``stopped`` (rows that
# need no message also count; the residual function looks before every message it reads)
RESIDUAL_FN = "postern_match"
RANGES_FN = "postern_uid_in"
FLAG_FN = "postern_flag"


def _clamp(n: int) -> int:
    return min(max(n, _INT_MIN), _INT_MAX)


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def merge_ranges(ranges: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for lo, hi in sorted((lo, hi) for lo, hi in ranges if lo <= hi):
        if out and lo <= out[-1][1] + 1:
            if hi > out[-1][1]:
                out[-1] = (out[-1][0], hi)
        else:
            out.append((lo, hi))
    return out


def ranges_of(uids: Sequence[int]) -> list[tuple[int, int]]:
    return merge_ranges([(u, u) for u in uids])


@dataclass
class Query:
    """A compiled search: ``where`` with ``params``; ``residual`` are the leaves the
    Python function evaluates, ``uid_sets`` the range lists too long to inline,
    ``flag_names`` the non-ASCII flag names compared in Python."""

    where: str = "1"
    params: list[object] = field(default_factory=list)
    residual: list[s.SearchKey] = field(default_factory=list)
    uid_sets: list[tuple[list[int], list[int]]] = field(default_factory=list)
    flag_names: list[str] = field(default_factory=list)

    @property
    def reads_messages(self) -> bool:
        return bool(self.residual)


def _operands(key: s.And | s.Or) -> list[s.SearchKey]:
    """The operands of a chain of ANDs (or ORs) as one list: IMAP's "OR OR OR a b c d"
    nests as deep as it is long, and SQLite's parser takes about 40 nested levels."""
    kind = type(key)
    out: list[s.SearchKey] = []
    stack: list[s.SearchKey] = [key]
    while stack:
        k = stack.pop()
        while isinstance(k, s.Not) and isinstance(k.key, s.Not):
            k = k.key.key  # NOT NOT x is x
        if isinstance(k, s.And) and kind is s.And:
            stack.extend(reversed(k.keys))
        elif isinstance(k, s.Or) and kind is s.Or:
            stack.extend((k.b, k.a))
        else:
            out.append(k)
    return out


class _Compiler:
    def __init__(self) -> None:
        self.q = Query()

    def param(self, value: object) -> str:
        self.q.params.append(value)
        return "?"

    def joined(self, parts: list[str], op: str) -> str:
        # balanced, so a long AND/OR list stays far below SQLite's expression depth limit
        if len(parts) == 1:
            return parts[0]
        mid = len(parts) // 2
        return f"({self.joined(parts[:mid], op)} {op} {self.joined(parts[mid:], op)})"

    def expr(self, key: s.SearchKey) -> str:
        if isinstance(key, s.All):
            return "1"
        if isinstance(key, s.And):
            parts = [self.expr(k) for k in _operands(key)]
            return self.joined(parts, "AND") if parts else "1"
        if isinstance(key, s.Or):
            return self.joined([self.expr(k) for k in _operands(key)], "OR")
        if isinstance(key, s.Not):
            inner, negated = key.key, True
            while isinstance(inner, s.Not):  # NOT NOT x is x
                inner, negated = inner.key, not negated
            return f"(NOT {self.expr(inner)})" if negated else self.expr(inner)
        if isinstance(key, s.UidIn):
            return self.uid_in(merge_ranges(key.ranges))
        if isinstance(key, s.Flag):
            return self.flag(key)
        if isinstance(key, s.Larger):
            return f"size > {self.param(_clamp(key.n))}"
        if isinstance(key, s.Smaller):
            return f"size < {self.param(_clamp(key.n))}"
        if isinstance(key, s.ModSeq):
            return f"modseq >= {self.param(_clamp(key.at_least))}"
        if isinstance(key, (s.InternalDate, s.SavedDate)):
            # the UTC day the internal (or RFC 8514 save) date's second falls in
            # (matcher.internal_day); an unknown save date (NULL) matches no day
            when = "internal_date" if isinstance(key, s.InternalDate) else "save_date"
            start = matcher.epoch_day(key.day) * 86400
            if key.op == "before":
                return f"coalesce({when} < {self.param(start)}, 0)"
            if key.op == "since":
                return f"coalesce({when} >= {self.param(start)}, 0)"
            return (
                f"coalesce({when} >= {self.param(start)}"
                f" AND {when} < {self.param(start + 86400)}, 0)"
            )
        if isinstance(key, s.FileIs):
            return f"file_id = {self.param(_clamp(key.file_id))}"
        if isinstance(key, s.InternalTime):
            op = "<=" if key.op == "before" else ">"
            return f"internal_date {op} {self.param(key.at)}"
        if isinstance(key, s.SentDate):
            day = key.day.year * 10000 + key.day.month * 100 + key.day.day
            op = {"before": "<", "on": "=", "since": ">="}[key.op]
            return f"coalesce(sent_day {op} {self.param(day)}, 0)"
        if isinstance(key, s.Header):
            column = HEADER_COLUMNS.get(key.name.lower())
            if column is not None:
                needle = key.text.casefold()
                if not needle:
                    return f"{column} IS NOT NULL"  # RFC 3501 §6.4.4: "" = the field exists
                if not _encodable(needle):
                    return "0"  # no stored text contains a lone surrogate
                return f"coalesce(instr({column}, {self.param(needle)}), 0) > 0"
            return self.residual(key, parsed=False)
        if isinstance(key, (s.Body, s.Text)):
            return self.residual(key, parsed=True)
        raise TypeError(f"unknown search key {key!r}")

    def uid_in(self, ranges: list[tuple[int, int]]) -> str:
        if not ranges:
            return "0"
        if len(ranges) <= MAX_INLINE_RANGES:
            terms = []
            for first, last in ranges:
                lo, hi = _clamp(first), _clamp(last)
                if lo == hi:
                    terms.append(f"uid = {self.param(lo)}")
                else:
                    terms.append(f"uid BETWEEN {self.param(lo)} AND {self.param(hi)}")
            return self.joined(terms, "OR")
        self.q.uid_sets.append(([lo for lo, _ in ranges], [hi for _, hi in ranges]))
        return f"{RANGES_FN}({len(self.q.uid_sets) - 1}, uid)"

    def flag(self, key: s.Flag) -> str:
        name = key.name
        if not name or name.split() != [name]:
            # stored flags are never empty and never contain white space
            return "0" if key.present else "1"
        system = _SYSTEM.get(name.lower())
        if system is not None:
            # stored in canonical spelling; no other stored flag contains "\\" (keywords
            # cannot), so a plain substring test is exact
            test = f"instr(flags, {self.param(system)}) > 0"
        elif name.isascii():
            # keywords compare case-insensitively (flags.has); for ASCII names SQLite's
            # lower() is Python's, and no stored non-ASCII flag lowers to ASCII
            test = f"instr(' ' || lower(flags) || ' ', {self.param(' ' + name.lower() + ' ')}) > 0"
        else:
            self.q.flag_names.append(name)
            test = f"{FLAG_FN}({len(self.q.flag_names) - 1}, flags)"
        return test if key.present else f"(NOT {test})"

    def residual(self, key: s.SearchKey, *, parsed: bool) -> str:
        self.q.residual.append(key)
        blob = "(SELECT parsed FROM files WHERE id = file_id)" if parsed else "NULL"
        return f"{RESIDUAL_FN}({len(self.q.residual) - 1}, uid, file_id, hdr_size, {blob})"


def compile_key(key: s.SearchKey, uids: Sequence[int] | None = None) -> Query:
    """``key`` (restricted to ``uids`` when given) as SQL over ``messages``."""
    c = _Compiler()
    # parameters are numbered in the order they are written: the UID test comes first
    restrict = None if uids is None else c.uid_in(ranges_of(uids))
    where = c.expr(key)
    c.q.where = where if restrict is None else f"({restrict} AND {where})"
    return c.q


class _Residual:
    """The Python side of the residual leaves of one query, for one connection."""

    def __init__(
        self,
        q: Query,
        msgs_dir: str,
        stopped: Callable[[], bool] | None = None,
        interrupt: Callable[[], None] | None = None,
    ) -> None:
        self.q = q
        self.msgs_dir = msgs_dir
        self.error: BaseException | None = None
        self._stopped = stopped
        self._interrupt = interrupt
        self._last: tuple[int, matcher.Candidate] | None = None
        self._flag_memo: dict[tuple[int, str], int] = {}

    def match(
        self, i: int, uid: int, file_id: int, hdr_size: int | None, blob: bytes | None
    ) -> int:
        if self._stopped is not None and self._stopped():
            # before the next message is read: SQLite ends the query ("interrupted")
            if self._interrupt is not None:
                self._interrupt()
            return 0
        try:
            cand = self._candidate(uid, file_id, hdr_size, blob)
            return 1 if matcher.matches(self.q.residual[i], cand) else 0
        except BaseException as exc:  # re-raised by run() once SQLite returns
            self.error = self.error or exc
            return 0

    def _candidate(
        self, uid: int, file_id: int, hdr_size: int | None, blob: bytes | None
    ) -> matcher.Candidate:
        last = self._last
        if last is not None and last[0] == uid:
            cand = last[1]
            if cand.parsed is None and blob is not None:
                cand.parsed = _loads(blob, file_id)
            return cand
        path = layout.message_file(self.msgs_dir, file_id)
        parsed = _loads(blob, file_id) if blob is not None else None
        cand = matcher.Candidate(
            uid, 0, frozenset(), 0.0, 0, file_id, parsed, path, hdr_size=hdr_size
        )
        self._last = (uid, cand)
        return cand

    def uid_in(self, i: int, uid: int) -> int:
        starts, ends = self.q.uid_sets[i]
        j = bisect.bisect_right(starts, uid) - 1
        return 1 if j >= 0 and uid <= ends[j] else 0

    def flag(self, i: int, encoded: str) -> int:
        memo_key = (i, encoded)
        found = self._flag_memo.get(memo_key)
        if found is None:
            found = int(flagset.has(flagset.decode(encoded), self.q.flag_names[i]))
            self._flag_memo[memo_key] = found
        return found


def _loads(blob: bytes, file_id: int) -> message.ParsedMessage | None:
    try:
        return message.loads(blob)
    except (ValueError, TypeError, IndexError, KeyError):
        log.warning("unreadable parse cache", file_id=file_id)
        return None


def run(
    conn: sqlite3.Connection,
    msgs_dir: str,
    mailbox_id: int,
    key: s.SearchKey,
    uids: Sequence[int] | None = None,
    *,
    stopped: Callable[[], bool] | None = None,
) -> list[int]:
    """UIDs of ``mailbox_id`` matching ``key``, ascending. Raises ``sqlite3.Error`` for a
    query SQLite cannot take (an expression too deep, too many variables).

    ``stopped`` is asked before every message a query reads, and by a SQLite progress
    handler in between; once it says True the query is abandoned with
    :class:`SearchStopped`. Queries over the index alone do not ask (they are quick, and
    the handler would take the GIL back from SQLite)."""
    found = ordered(conn, msgs_dir, mailbox_id, key, "uid", uids=uids, stopped=stopped)
    found.sort()  # the aggregate follows the ordered subquery; linear when it did
    return found


def ordered(
    conn: sqlite3.Connection,
    msgs_dir: str,
    mailbox_id: int,
    key: s.SearchKey,
    order_by: str,
    *,
    uids: Sequence[int] | None = None,
    stopped: Callable[[], bool] | None = None,
) -> list[int]:
    """As :func:`run`, in the order of the SQL ``order_by`` over ``messages`` columns
    (RFC 5256 SORT: mailcore.mailstore.sorting)."""
    q = compile_key(key, uids)
    sql = ordered_sql(q, order_by)
    done = _execute(conn, msgs_dir, q, sql, mailbox_id=mailbox_id, stopped=stopped)
    found: list[int] = json.loads(str(done.fetchone()[0]))
    return found


def ordered_sql(q: Query, order_by: str) -> str:
    """The statement :func:`ordered` runs (parameters: the mailbox id, then ``q.params``)."""
    # one aggregate row: SQLite scans without the GIL and hands over one JSON array,
    # instead of one GIL round trip per matching message
    return (
        "SELECT json_group_array(uid) FROM (SELECT uid FROM messages"  # noqa: S608 (placeholders only)
        f" WHERE mailbox_id = ? AND {q.where} ORDER BY {order_by})"
    )


def rows(
    conn: sqlite3.Connection,
    msgs_dir: str,
    mailbox_id: int,
    key: s.SearchKey,
    columns: str,
    *,
    stopped: Callable[[], bool] | None = None,
) -> list[tuple[object, ...]]:
    """``columns`` of the messages matching ``key``, by ascending UID (THREAD)."""
    q = compile_key(key)
    sql = (
        f"SELECT {columns} FROM messages"  # noqa: S608 (placeholders only)
        f" WHERE mailbox_id = ? AND {q.where} ORDER BY uid"
    )
    return _execute(conn, msgs_dir, q, sql, mailbox_id=mailbox_id, stopped=stopped).fetchall()


def subject_threads(
    conn: sqlite3.Connection,
    msgs_dir: str,
    mailbox_id: int,
    key: s.SearchKey,
    *,
    stopped: Callable[[], bool] | None = None,
) -> list[tuple[int, int]]:
    """RFC 5256 §4 THREAD=ORDEREDSUBJECT of the messages matching ``key``, in one query:
    ``(uid, first uid of its thread)`` pairs thread by thread, each thread's first message
    first. A thread is the messages of one base subject, ordered by sent date (then UID);
    threads by their first message's sent date (then UID). SQLite groups and sorts: no
    object per message in Python (the same result as
    :func:`mailcore.mailstore.mailthreads.ordered_subject`, which reads ``NULL`` keys
    as "" and 0)."""
    q = compile_key(key)
    sql = (
        "SELECT uid, root FROM ("  # noqa: S608 (placeholders only)
        " SELECT uid, coalesce(sent_at, 0.0) AS sent,"
        " first_value(uid) OVER w AS root, first_value(coalesce(sent_at, 0.0)) OVER w AS first"
        f" FROM messages WHERE mailbox_id = ? AND {q.where}"
        " WINDOW w AS (PARTITION BY coalesce(k_subject, '') ORDER BY coalesce(sent_at, 0.0), uid))"
        " ORDER BY first, root, sent, uid"
    )
    done = _execute(conn, msgs_dir, q, sql, mailbox_id=mailbox_id, stopped=stopped)
    return done.fetchall()  # type: ignore[return-value]


class _Done:
    """A result fetched while the query's functions were registered."""

    def __init__(self, result: list[tuple[object, ...]]) -> None:
        self._result = result

    def fetchone(self) -> tuple[object, ...]:
        return self._result[0]

    def fetchall(self) -> list[tuple[object, ...]]:
        return self._result


def _execute(
    conn: sqlite3.Connection,
    msgs_dir: str,
    q: Query,
    sql: str,
    *,
    mailbox_id: int,
    stopped: Callable[[], bool] | None,
) -> _Done:
    ev = _Residual(q, msgs_dir, stopped, conn.interrupt)
    if q.residual:
        conn.create_function(RESIDUAL_FN, 5, ev.match)
    if q.uid_sets:
        conn.create_function(RANGES_FN, 2, ev.uid_in, deterministic=True)
    if q.flag_names:
        conn.create_function(FLAG_FN, 2, ev.flag, deterministic=True)
    watch = stopped is not None and bool(q.residual)
    if watch:
        assert stopped is not None
        conn.set_progress_handler(lambda: 1 if stopped() else 0, PROGRESS_STEPS)
    try:
        result = conn.execute(sql, [mailbox_id, *q.params]).fetchall()
    except sqlite3.OperationalError:
        if watch and stopped is not None and stopped():
            raise SearchStopped("search stopped") from None  # "interrupted" by the handler
        raise
    finally:
        if watch:
            conn.set_progress_handler(None, 0)
        for name, n, used in (
            (RESIDUAL_FN, 5, q.residual),
            (RANGES_FN, 2, q.uid_sets),
            (FLAG_FN, 2, q.flag_names),
        ):
            if used:
                conn.create_function(name, n, None)  # no reference to this query kept
    if ev.error is not None:
        raise ev.error
    return _Done(result)


__all__ = [
    "Query",
    "compile_key",
    "merge_ranges",
    "ordered",
    "ordered_sql",
    "ranges_of",
    "rows",
    "run",
    "subject_threads",
]
