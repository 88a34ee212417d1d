"""Limits on keywords (RFC 3501 §2.3.2 flag keywords), like Dovecot's: at most
:data:`MAX_PER_MESSAGE` on one message and :data:`MAX_PER_MAILBOX` distinct ones in one
mailbox. Without them one client could give every message thousands of keywords, and every
SELECT would list them all (FLAGS, PERMANENTFLAGS) to every session.

Keywords compare case-insensitively; stored flags are the space-joined sorted set, so a
keyword is present in a row when `` <keyword> `` occurs in `` <flags> `` (lower-cased,
padded with spaces: exact tokens, never a prefix of a longer keyword). Keywords are ASCII
atoms (flags.normalize), so SQLite's ``lower`` folds them exactly as Python does.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable

from mailcore.mailstore import flags as flagset
from mailcore.mailstore.errors import TooManyKeywords

MAX_PER_MESSAGE = 100
MAX_PER_MAILBOX = 1000
_PROBES = 8  # new keywords looked up one by one; more: the mailbox's set read once


def of(flags: Iterable[str]) -> set[str]:
    """The keywords (not system flags) of ``flags``, lower-cased."""
    return {f.lower() for f in flags if not f.startswith("\\")}


def check_message(flags: frozenset[str]) -> None:
    n = sum(1 for f in flags if not f.startswith("\\"))
    if n > MAX_PER_MESSAGE:
        raise TooManyKeywords(f"{n} keywords on one message; at most {MAX_PER_MESSAGE}")


def _present(conn: sqlite3.Connection, mailbox_id: int, keyword: str) -> bool:
    row = conn.execute(
        "SELECT 1 FROM messages WHERE mailbox_id = ?"
        " AND instr(' ' || lower(flags) || ' ', ?) > 0 LIMIT 1",
        (mailbox_id, f" {keyword} "),
    ).fetchone()
    return row is not None


def in_mailbox(conn: sqlite3.Connection, mailbox_id: int) -> set[str]:
    """Every keyword used in the mailbox, lower-cased (one pass over its distinct flag
    sets, which are few: messages share them)."""
    found: set[str] = set()
    for (text,) in conn.execute(
        "SELECT DISTINCT flags FROM messages WHERE mailbox_id = ? AND flags != ''", (mailbox_id,)
    ):
        found |= of(flagset.decode(text))
    return found


def check_mailbox(conn: sqlite3.Connection, mailbox_id: int, adding: set[str]) -> None:
    """Refuse when ``adding`` (lower-cased keywords about to be stored in the mailbox)
    would take it past :data:`MAX_PER_MAILBOX` distinct keywords. Keywords it has already
    cost one probe each; only new ones make it count the mailbox's set."""
    if not adding:
        return
    if len(adding) <= _PROBES:
        new = {k for k in adding if not _present(conn, mailbox_id, k)}
        if not new:
            return
        existing = in_mailbox(conn, mailbox_id)
    else:
        existing = in_mailbox(conn, mailbox_id)
        new = adding - existing
    if new and len(existing) + len(new) > MAX_PER_MAILBOX:
        raise TooManyKeywords(
            f"the mailbox would hold {len(existing) + len(new)} distinct keywords;"
            f" at most {MAX_PER_MAILBOX}"
        )
