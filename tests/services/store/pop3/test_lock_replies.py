"""The maildrop lock table and the reply catalogue."""

from __future__ import annotations

from services.store.pop3 import replies
from services.store.pop3.lock import MaildropLocks
from services.store.pop3.replies import MAX_REPLY_LINE, Reply


def test_one_lease_per_account() -> None:
    locks = MaildropLocks()
    a = locks.acquire("acct1", "pop3-1")
    assert a is not None
    assert locks.acquire("acct1", "pop3-2") is None
    assert locks.holder("acct1") == "pop3-1"
    b = locks.acquire("acct2", "pop3-3")
    assert b is not None and len(locks) == 2
    locks.release(a)
    locks.release(a)  # idempotent
    assert locks.holder("acct1") is None
    c = locks.acquire("acct1", "pop3-4")
    assert c is not None
    locks.release(a)  # a stale lease never frees someone else's lock
    assert locks.holder("acct1") == "pop3-4"


def test_every_reply_is_a_valid_line() -> None:
    found = [v for v in vars(replies).values() if isinstance(v, Reply)]
    assert len(found) > 30
    for r in found:
        line = r.line
        assert line.endswith(b"\r\n") and b"\r\n" not in line[:-2]
        assert len(line) <= MAX_REPLY_LINE  # RFC 2449 §4
        assert line.startswith(b"+OK" if r.ok else b"-ERR")
        if r.code:
            assert line.startswith(b"-ERR [" + r.code.encode() + b"] ")


def test_response_codes() -> None:
    assert replies.IN_USE.line == b"-ERR [IN-USE] Maildrop is locked by another POP3 session\r\n"
    assert replies.AUTH_FAILED.line.startswith(b"-ERR [AUTH] ")
    assert replies.INTERNAL_ERROR.line.startswith(b"-ERR [SYS/TEMP] ")
    assert replies.NOOP.line == b"+OK\r\n"
    assert replies.stat(2, 320).line == b"+OK 2 320\r\n"
    assert replies.scan_line(1, 120) == b"1 120\r\n"
    assert replies.uidl_line(3, "17.9") == b"3 17.9\r\n"
