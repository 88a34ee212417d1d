"""The brute-force probe tells a slowed or turned-away attacker from one still being
answered as before."""

from __future__ import annotations

from reliability.hostile.logins import _kind, _turned_away


def test_answer_kinds() -> None:
    assert _kind("535 5.7.8 Authentication credentials invalid") == "535"
    assert _kind("421 4.7.0 Too many failures") != _kind("535 5.7.8 Authentication failed")
    imap_failed = "a NO [AUTHENTICATIONFAILED] Invalid credentials"
    assert _kind("a NO [UNAVAILABLE] Try later") != _kind(imap_failed)
    assert _kind("a NO [AUTHENTICATIONFAILED] other text") == _kind(imap_failed)
    assert _kind("-ERR [AUTH] Authentication failed") == _kind("-ERR [AUTH] again")
    assert _kind("-ERR [IN-USE] locked") != _kind("-ERR [AUTH] Authentication failed")


def test_a_pop3_throttle_is_told_by_its_words() -> None:
    # the store's POP3 answers both with -ERR [AUTH] (services/store/pop3/replies.py)
    failed, throttled = "-ERR [AUTH] Authentication failed", "-ERR [AUTH] Too many failed logins"
    assert _kind(failed) == _kind(throttled)
    assert _turned_away(throttled) and not _turned_away(failed)
