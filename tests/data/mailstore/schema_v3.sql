-- The index schema of version 3 (mailcore/mailstore/schema.py before version 4).
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
    PRIMARY KEY (mailbox_id, uid)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS messages_file ON messages (file_id);
-- EXPUNGE finds the messages flagged \Deleted without reading every row of the mailbox
CREATE INDEX IF NOT EXISTS messages_deleted ON messages (mailbox_id, uid)
    WHERE instr(flags, '\Deleted') > 0;
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
CREATE TABLE IF NOT EXISTS deliveries (
    key TEXT PRIMARY KEY,
    mailbox_id INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    at REAL NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS deliveries_at ON deliveries (at);
CREATE TABLE IF NOT EXISTS unlink (file_id INTEGER PRIMARY KEY);
