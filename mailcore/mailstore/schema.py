"""The per-account SQLite index: schema, connection settings, creation.

WAL with ``synchronous=FULL``: every commit fsyncs the WAL, so a committed delivery
survives power loss (WAL with NORMAL may lose the last commits on power loss, which would
break "ack after commit").
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

SCHEMA_VERSION = 6  # 2: search columns in messages; 3: journal; 4: sort/thread keys, save date;
# 5: journal origins; 6: sort keys in i;unicode-casemap form (mailcore.mailstore.migrate)

SCHEMA = """
CREATE TABLE IF NOT EXISTS state (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema INTEGER NOT NULL,
    next_file_id INTEGER NOT NULL,      -- files with this id or above are uncommitted
    modseq INTEGER NOT NULL,            -- RFC 7162: last mod-sequence given out
    change_seq INTEGER NOT NULL,        -- last change log entry
    last_uidvalidity INTEGER NOT NULL,
    usage_bytes INTEGER NOT NULL,
    usage_messages INTEGER NOT NULL,
    created REAL NOT NULL,
    -- version 3:
    last_mailbox_id INTEGER NOT NULL DEFAULT 0, -- mailbox ids are never reused
    quota_bytes INTEGER NOT NULL DEFAULT 0,     -- the quota last journalled
    quota_messages INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS mailboxes (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    special_use TEXT,
    uidvalidity INTEGER NOT NULL,
    uidnext INTEGER NOT NULL,
    highestmodseq INTEGER NOT NULL,
    digest BLOB                         -- version 3: mailcore.mailstore.digest (NULL: empty)
);
CREATE TABLE IF NOT EXISTS subscriptions (name TEXT PRIMARY KEY) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,             -- msgs/<shard>/<id>
    size INTEGER NOT NULL,
    parsed BLOB NOT NULL                -- mailcore.message.dumps(), parsed once
);
CREATE TABLE IF NOT EXISTS messages (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    flags TEXT NOT NULL,                -- sorted, space separated
    internal_date REAL NOT NULL,
    size INTEGER NOT NULL,
    file_id INTEGER NOT NULL,           -- COPY shares the file
    -- for SEARCH without the message file (mailcore.mailstore.searchdata), version 2:
    hdr_size INTEGER,                   -- bytes of the header, blank line included
    s_from TEXT,                        -- decoded, case-folded text, NULL = no such field
    s_to TEXT,
    s_cc TEXT,
    s_bcc TEXT,
    s_subject TEXT,
    sent_day INTEGER,                   -- the Date header's own day, yyyymmdd
    sha256 BLOB,                        -- version 3: of the stored bytes (32 bytes)
    -- version 4: SORT / THREAD keys (mailcore.mailstore.sortkeys), RFC 8514 save date
    k_subject TEXT,                     -- RFC 5256 §2.1 base subject (keys: RFC 5051 form)
    k_reply INTEGER,                    -- 1: the subject had a reply/forward marker
    k_from TEXT,                        -- RFC 5256 §3: first address' mailbox part
    k_to TEXT,
    k_cc TEXT,
    k_dfrom TEXT,                       -- RFC 5957 display name (else addr-spec)
    k_dto TEXT,
    sent_at REAL,                       -- Date header, else the internal date
    msg_id TEXT,                        -- Message-ID without <>
    refs TEXT,                          -- References (else In-Reply-To) ids, oldest first
    save_date REAL,                     -- RFC 8514: when saved in this mailbox (NULL: unknown)
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_file ON messages (file_id);
-- EXPUNGE finds the messages flagged \\Deleted without reading every row of the mailbox
CREATE INDEX IF NOT EXISTS messages_deleted ON messages (mailbox_id, uid)
    WHERE instr(flags, '\\Deleted') > 0;
CREATE TABLE IF NOT EXISTS recent (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS expunged (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    modseq INTEGER NOT NULL,
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
-- version 3: the journal (mailcore.mailstore.journal), replacing the change log "changes"
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY,            -- dense per account, = state.change_seq when newest
    kind TEXT NOT NULL,                 -- mailcore.mailstore.records.RecordKind
    mailbox_id INTEGER,                 -- NULL: subscriptions, quota, account removal
    at REAL NOT NULL,
    data TEXT NOT NULL                  -- JSON array of the record's other fields
);
CREATE TABLE IF NOT EXISTS journal_readers (
    name TEXT PRIMARY KEY,              -- e.g. mirror:store-b
    position INTEGER NOT NULL,          -- last record the reader confirmed
    confirmed_at REAL NOT NULL,
    resync INTEGER NOT NULL DEFAULT 0   -- 1: fell beyond the ceiling, must start over
) WITHOUT ROWID;
-- version 4: where a replicated record came from (mailcore.mailstore.replica), so a
-- mirror never ships a peer's record back to it
CREATE TABLE IF NOT EXISTS journal_origin (
    seq INTEGER PRIMARY KEY,            -- a journal record written by replica apply
    origin TEXT NOT NULL                -- the peer it came from, e.g. store-b
);
-- split brain (mailcore.mailstore.splitbrain): a peer's message that arrived on a UID this
-- store had used for another one. On the resolving store: where it went (new_uid, NULL:
-- it was gone already). On the deferring store: the peer's records about that UID are
-- about another message, and new_uid is where the resolver holds our message now (its
-- uid-move records, NULL: not told yet). Created on open (IF NOT EXISTS): no schema step.
CREATE TABLE IF NOT EXISTS uid_moves (
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    origin TEXT NOT NULL,
    new_uid INTEGER,
    ours TEXT,                          -- deferring: SHA-256 (hex) of our message there
    theirs TEXT,                        -- deferring: SHA-256 (hex) of the peer's there
    PRIMARY KEY (mailbox_id, uid, origin)
) WITHOUT ROWID;
-- split brain, mailboxes (mailcore.mailstore.splitboxes, created on open: no schema step).
-- Resolving store: a peer's mailbox (its id there) whose messages come into another one
-- here (merged into a mailbox of the same name, or one made for it), and where each went.
CREATE TABLE IF NOT EXISTS mailbox_moves (
    origin TEXT NOT NULL,
    mailbox_id INTEGER NOT NULL,        -- the peer's id
    target INTEGER NOT NULL,            -- the mailbox here that takes its messages
    theirs INTEGER NOT NULL,            -- 1: the peer's own (made there while cut), 0:
                                        -- one this store had too (records.MailboxMergeRecord)
    PRIMARY KEY (origin, mailbox_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS mailbox_moved_uids (
    origin TEXT NOT NULL,
    mailbox_id INTEGER NOT NULL,        -- the peer's id (negated: its own, splitboxes._key)
    uid INTEGER NOT NULL,               -- the peer's UID
    new_uid INTEGER,                    -- in the target (NULL: it was gone already)
    sha256 TEXT,                        -- (hex) of that message: another one under the
                                        -- peer's UID is the peer's own, not this one
                                        -- ('': our copy of another UID of the peer's
                                        -- was there, splitmerge.COPY)
    PRIMARY KEY (origin, mailbox_id, uid)
) WITHOUT ROWID;
-- Deferring store: a mailbox of its own set aside for the resolver's verdict (its id or
-- name was wanted by the resolver's mailbox, or the resolver deleted it while this store
-- took mail into it). Once the verdict names the mailbox its messages come back in, each
-- copy here goes when it has come back, and the mailbox goes when empty.
CREATE TABLE IF NOT EXISTS mailbox_parked (
    origin TEXT NOT NULL,
    local_id INTEGER NOT NULL,          -- its id here (the negated one: parked off its id)
    name TEXT NOT NULL,                 -- its name when parked
    target INTEGER,                     -- the verdict (NULL: none yet)
    PRIMARY KEY (origin, local_id)
) WITHOUT ROWID;
-- Deferring store: the resolver's uid-merge records (records.UidMergeRecord) not matched
-- yet: its append at (target, new_uid) is the copy of our message (local_id, uid) set
-- aside, which goes once that copy is here.
CREATE TABLE IF NOT EXISTS mailbox_merged_uids (
    origin TEXT NOT NULL,
    target INTEGER NOT NULL,            -- the resolver's mailbox that took it
    new_uid INTEGER NOT NULL,           -- its UID there
    local_id INTEGER NOT NULL,          -- our mailbox set aside (mailbox_parked.local_id)
    uid INTEGER NOT NULL,               -- our UID there
    PRIMARY KEY (origin, target, new_uid, local_id, uid)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY,
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries (at);
CREATE TABLE IF NOT EXISTS unlink (file_id INTEGER PRIMARY KEY);
"""


# version 4: SORT orders by these without a sort step (the primary key's uid, the
# tie-break of RFC 5256 §3, ends every index entry). Created with the columns: an older
# index gets them from mailcore.mailstore.migrate.
SORT_INDEXES = """
CREATE INDEX IF NOT EXISTS messages_k_subject ON messages (mailbox_id, k_subject);
CREATE INDEX IF NOT EXISTS messages_k_from ON messages (mailbox_id, k_from);
CREATE INDEX IF NOT EXISTS messages_sent_at ON messages (mailbox_id, sent_at)
"""


def create_sort_indexes(conn: sqlite3.Connection) -> None:
    for statement in SORT_INDEXES.split(";"):
        if statement.strip():
            conn.execute(statement)


WAIT_SECONDS = 60  # how long a waiting connection waits for another's write lock
WAL_AUTOCHECKPOINT = 1000  # SQLite's default: checkpoint once the WAL holds this many pages


def connect(path: Path, *, durable: bool, wait: bool = True) -> sqlite3.Connection:
    """A connection in autocommit mode; callers BEGIN and COMMIT explicitly. ``wait=False``:
    a lock held elsewhere fails at once ("database is locked") instead of waiting."""
    timeout = WAIT_SECONDS if wait else 0
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=timeout)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={'FULL' if durable else 'OFF'}")
    conn.execute(f"PRAGMA busy_timeout={timeout * 1000}")
    conn.execute("PRAGMA temp_store=MEMORY")
    return conn


_STATE_COLUMNS = {  # added by version 3; filled by migrate._to_3
    "last_mailbox_id": "INTEGER NOT NULL DEFAULT 0",
    "quota_bytes": "INTEGER NOT NULL DEFAULT 0",
    "quota_messages": "INTEGER NOT NULL DEFAULT 0",
}


def _add_state_columns(conn: sqlite3.Connection) -> None:
    """Columns of ``state`` an older index lacks: the state row is read before the
    upgrade runs (mailcore.mailstore.migrate fills them)."""
    have = {r[1] for r in conn.execute("PRAGMA table_info(state)")}
    for name, decl in _STATE_COLUMNS.items():
        if name not in have:
            conn.execute(f"ALTER TABLE state ADD COLUMN {name} {decl}")


def create(conn: sqlite3.Connection) -> bool:
    """Create the tables inside the caller's transaction; True when the index is new.

    An index of an older version is left for :func:`mailcore.mailstore.migrate.upgrade`;
    one written by a newer Postern is refused.
    """
    for statement in SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    row = conn.execute("SELECT schema FROM state WHERE id = 1").fetchone()
    if row is not None:
        if row[0] > SCHEMA_VERSION:
            raise RuntimeError(f"index schema {row[0]} is newer than {SCHEMA_VERSION}")
        _add_state_columns(conn)
        return False
    create_sort_indexes(conn)
    conn.execute(
        "INSERT INTO state (id, schema, next_file_id, modseq, change_seq, last_uidvalidity,"
        " usage_bytes, usage_messages, created) VALUES (1, ?, 1, 0, 0, 0, 0, 0, ?)",
        (SCHEMA_VERSION, time.time()),
    )
    return True
