"""POP3 against the real server with poplib: whole sessions, TOP, UIDL stability across a
restart of the engine, the maildrop lock, DELE semantics (drop deletes nothing, QUIT
deletes exactly what was marked), the login snapshot, POP3S and STLS."""

from __future__ import annotations

import poplib
import socket

import pytest

from mailcore.mailstore import FlagOp
from services.store.auth import LoginThrottle
from tests.services.store.pop3.conftest import PASSWORD, Factory, Pop3Harness, message


def joined(lines: list[bytes]) -> bytes:
    return b"".join(line + b"\r\n" for line in lines)


async def test_full_session(pop: Pop3Harness) -> None:
    alice = await pop.add_user()
    msgs = [message(1), message(2, b".leading dot\r\n..two dots\r\n.\r\nend\r\n"), message(3)]
    uids = await pop.deliver(alice, *msgs)

    def client() -> dict[str, object]:
        c = pop.connect()
        assert c.getwelcome().startswith(b"+OK")
        assert c.user("alice@example.com").startswith(b"+OK")
        assert c.pass_(PASSWORD).startswith(b"+OK Logged in: 3 messages")
        out: dict[str, object] = {"stat": c.stat(), "list": c.list()[1], "uidl": c.uidl()[1]}
        out["one"] = c.list(2)
        out["retr"] = [joined(c.retr(n)[1]) for n in (1, 2, 3)]
        assert c.noop().startswith(b"+OK")
        assert c.dele(2) == b"+OK Message deleted"
        out["stat_after_dele"] = c.stat()
        with pytest.raises(poplib.error_proto, match="deleted"):
            c.retr(2)
        out["quit"] = c.quit()
        return out

    out = await pop.run(client)
    sizes = [len(m) for m in msgs]
    assert out["stat"] == (3, sum(sizes))
    assert out["list"] == [b"%d %d" % (n, s) for n, s in enumerate(sizes, 1)]
    acct, inbox = await pop.inbox(alice)
    uidvalidity = (await acct.snapshot(inbox)).uidvalidity
    assert out["uidl"] == [b"%d %d.%d" % (n, uidvalidity, u) for n, u in enumerate(uids, 1)]
    assert out["one"] == b"+OK 2 %d" % sizes[1]
    assert out["retr"] == msgs  # byte-stuffing undone by poplib: exactly the stored bytes
    assert out["stat_after_dele"] == (2, sizes[0] + sizes[2])
    assert out["quit"] == b"+OK Postern POP3 server signing off (1 messages deleted)"
    assert await pop.uids(alice) == [uids[0], uids[2]]
    flags = await pop.flags(alice)
    assert "\\Seen" in flags[uids[0]] and "\\Seen" in flags[uids[2]]  # RETR'd, kept: read


async def test_top(pop: Pop3Harness) -> None:
    alice = await pop.add_user()
    body = b"".join(b"line %d\r\n" % i for i in range(1, 11)) + b".dotted\r\n"
    msg = message(1, body)
    await pop.deliver(alice, msg)
    header = msg[: msg.index(b"\r\n\r\n") + 4]

    def client() -> list[bytes]:
        c = pop.login()
        got = [joined(c.top(1, n)[1]) for n in (0, 3, 10, 11, 10**12)]
        c.quit()
        return got

    got = await pop.run(client)
    assert got[0] == header
    assert got[1] == header + b"line 1\r\nline 2\r\nline 3\r\n"
    assert got[2] == header + body[: body.index(b".dotted")]
    assert got[3] == msg and got[4] == msg
    flags = await pop.flags(alice)
    assert all("\\Seen" not in f for f in flags.values())  # TOP does not mark as read


async def test_uidl_stable_across_engine_restart(pop: Pop3Harness) -> None:
    alice = await pop.add_user()
    await pop.deliver(alice, message(1), message(2), message(3))

    def uidl() -> list[bytes]:
        c = pop.login()
        ids = c.uidl()[1]
        c.quit()
        return [line.split()[1] for line in ids]

    before = await pop.run(uidl)
    assert len(set(before)) == 3
    for uid in before:  # RFC 1939 §7: 1-70 characters in 0x21..0x7E
        assert 1 <= len(uid) <= 70 and all(0x21 <= b <= 0x7E for b in uid)
    await pop.restart()
    assert await pop.run(uidl) == before
    await pop.deliver(alice, message(4))
    after = await pop.run(uidl)
    assert after[:3] == before and after[3] not in before


async def test_second_session_gets_in_use(pop: Pop3Harness) -> None:
    alice = await pop.add_user()
    await pop.deliver(alice, message(1))

    def client() -> bytes:
        first = pop.login()
        second = pop.connect()
        second.user("alice@example.com")
        with pytest.raises(poplib.error_proto) as exc:
            second.pass_(PASSWORD)
        first.quit()
        # the lock is gone with the first session: the second may now log in
        assert second.user("alice@example.com").startswith(b"+OK")
        assert second.pass_(PASSWORD).startswith(b"+OK")
        second.quit()
        return exc.value.args[0]

    assert await pop.run(client) == b"-ERR [IN-USE] Maildrop is locked by another POP3 session"


async def test_lock_released_when_connection_drops(pop: Pop3Harness) -> None:
    alice = await pop.add_user()
    await pop.deliver(alice, message(1))

    def drop() -> None:
        c = pop.login()
        c.sock.shutdown(socket.SHUT_RDWR)
        c.close()

    await pop.run(drop)
    await pop.wait_idle()

    def again() -> int:
        c = pop.login()
        n = c.stat()[0]
        c.quit()
        return n

    assert await pop.run(again) == 1


async def test_dele_then_drop_deletes_nothing(pop: Pop3Harness) -> None:
    alice = await pop.add_user()
    uids = await pop.deliver(alice, message(1), message(2))

    def client() -> None:
        c = pop.login()
        c.dele(1)
        c.dele(2)
        c.sock.close()  # no QUIT: the connection just goes away

    await pop.run(client)
    await pop.wait_idle()
    assert await pop.uids(alice) == uids
    assert all("\\Deleted" not in f for f in (await pop.flags(alice)).values())


async def test_dele_rset_quit(pop: Pop3Harness) -> None:
    alice = await pop.add_user()
    uids = await pop.deliver(alice, message(1), message(2), message(3))

    def client() -> tuple[bytes, bytes]:
        c = pop.login()
        c.dele(1)
        c.dele(2)
        rset = c.rset()
        c.dele(3)
        with pytest.raises(poplib.error_proto, match="deleted"):
            c.dele(3)
        return rset, c.quit()

    rset, bye = await pop.run(client)
    assert rset.startswith(b"+OK Maildrop has 3 messages")
    assert bye.endswith(b"(1 messages deleted)")
    assert await pop.uids(alice) == uids[:2]


async def test_snapshot_and_other_sessions(pop: Pop3Harness) -> None:
    """RFC 1939 §5: the maildrop is fixed at login. Changes by other (IMAP) sessions: a
    message expunged meanwhile answers -ERR; QUIT removes only what this session marked."""
    alice = await pop.add_user()
    uids = await pop.deliver(alice, message(1), message(2), message(3))
    acct, inbox = await pop.inbox(alice)
    c = await pop.run(pop.login)
    # meanwhile: new mail arrives, an IMAP client flags one message and expunges another
    new = await pop.deliver(alice, message(4))
    await acct.store_flags(inbox, [uids[0]], FlagOp.ADD, ["\\Deleted"])
    await acct.store_flags(inbox, [uids[2]], FlagOp.ADD, ["\\Deleted"])
    await acct.expunge(inbox, [uids[2]])

    def rest() -> tuple[tuple[int, int], bytes]:
        stat = c.stat()
        with pytest.raises(poplib.error_proto) as exc:
            c.retr(3)
        c.retr(2)
        c.dele(2)
        c.quit()
        return stat, exc.value.args[0]

    stat, gone = await pop.run(rest)
    assert stat[0] == 3  # the new message is not shown
    assert gone == b"-ERR Message was removed by another session"
    # message 1 stays, flagged \Deleted by the IMAP client (its own expunge removes it)
    assert await pop.uids(alice) == [uids[0], *new]
    assert "\\Deleted" in (await pop.flags(alice))[uids[0]]


async def test_empty_maildrop(pop: Pop3Harness) -> None:
    await pop.add_user()

    def client() -> tuple[tuple[int, int], list[bytes], list[bytes]]:
        c = pop.login()
        out = (c.stat(), c.list()[1], c.uidl()[1])
        with pytest.raises(poplib.error_proto, match="No such message"):
            c.retr(1)
        c.quit()
        return out

    assert await pop.run(client) == ((0, 0), [], [])


async def test_large_message_round_trip(pop: Pop3Harness) -> None:
    """A few MB with LF line ends and dot-led lines, streamed in chunks."""
    alice = await pop.add_user()
    line = b".starts with a dot and is long enough " + b"x" * 60 + b"\n"
    body = b"Subject: big\n\n" + line * 60_000  # ~6 MB
    await pop.deliver(alice, body)

    def client() -> bytes:
        c = pop.login()
        _, lines, _ = c.retr(1)
        c.quit()
        return joined(lines)

    got = await pop.run(client)
    assert got == body.replace(b"\n", b"\r\n")


async def test_pop3s_implicit_tls(pop: Pop3Harness) -> None:
    alice = await pop.add_user()
    await pop.deliver(alice, message(1))

    def client() -> tuple[dict[str, list[str]], bytes]:
        c = pop.connect(tls=True)
        caps = c.capa()
        c.user("alice@example.com")
        c.pass_(PASSWORD)
        data = joined(c.retr(1)[1])
        c.quit()
        return caps, data

    caps, data = await pop.run(client)
    assert "STLS" not in caps and "USER" in caps and caps["SASL"] == ["PLAIN"]
    assert data == message(1)


async def test_stls_required_for_plaintext(make_pop3: Factory) -> None:
    pop: Pop3Harness = await make_pop3(plaintext="never")
    alice = await pop.add_user()
    await pop.deliver(alice, message(1))

    def client() -> tuple[dict[str, list[str]], bytes, dict[str, list[str]], int]:
        c = pop.connect()
        before = c.capa()
        with pytest.raises(poplib.error_proto) as exc:
            c.user("alice@example.com")
        c.stls(context=pop.client_tls)
        after = c.capa()
        c.user("alice@example.com")
        c.pass_(PASSWORD)
        n = c.stat()[0]
        c.quit()
        return before, exc.value.args[0], after, n

    before, refused, after, n = await pop.run(client)
    assert "STLS" in before and "USER" not in before and "SASL" not in before
    assert {"TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"} <= set(before)
    assert refused.startswith(b"-ERR [AUTH] Plaintext authentication disallowed")
    assert "STLS" not in after and "USER" in after and after["SASL"] == ["PLAIN"]
    assert n == 1


async def test_failed_logins_same_reply_and_throttled(make_pop3: Factory) -> None:
    throttle = LoginThrottle(0.01, max_per_account=3)
    pop: Pop3Harness = await make_pop3(throttle=throttle)
    await pop.add_user()

    def attempt(user: str, password: str) -> bytes:
        c = pop.connect()
        c.user(user)
        try:
            return c.pass_(password)
        except poplib.error_proto as exc:
            return bytes(exc.args[0])
        finally:
            c.close()

    unknown = await pop.run(lambda: attempt("nobody@example.com", "x"))
    wrong = await pop.run(lambda: attempt("alice@example.com", "wrong"))
    assert unknown == wrong == b"-ERR [AUTH] Authentication failed"
    await pop.run(lambda: attempt("alice@example.com", "wrong"))
    await pop.run(lambda: attempt("alice@example.com", "wrong"))
    # three failures for the account: even the right password is refused for a while
    throttled = await pop.run(lambda: attempt("alice@example.com", PASSWORD))
    assert throttled == b"-ERR [AUTH] Too many failed logins; try again later"


async def test_sizes_are_the_octets_sent_for_mail_appended_with_bare_lf(pop: Pop3Harness) -> None:
    """RFC 1939 §5: LIST and STAT count the octets RETR sends; the engine stores CRLF."""
    alice = await pop.add_user()
    bare = b"From: a@example.org\nSubject: lf\n\nline one\n.dot line\rlast\n"
    await pop.deliver(alice, bare)

    def client() -> tuple[tuple[int, int], bytes, int, list[bytes]]:
        c = pop.login()
        stat, one = c.stat(), c.list(1)
        _, lines, octets = c.retr(1)  # poplib counts the octets of the unstuffed lines
        c.quit()
        return stat, one, octets, lines

    stat, one, octets, lines = await pop.run(client)
    wire = b"From: a@example.org\r\nSubject: lf\r\n\r\nline one\r\n.dot line\r\nlast\r\n"
    assert joined(lines) == wire
    assert stat == (1, len(wire)) and one == b"+OK 1 %d" % len(wire) and octets == len(wire)


async def test_quit_removes_the_marked_messages_in_one_transaction(
    pop: Pop3Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """UPDATE (RFC 1939 §6) is one engine expunge of exactly the marked UIDs: when it
    fails nothing is removed and no message is left flagged \\Deleted."""
    alice = await pop.add_user()
    uids = await pop.deliver(alice, message(1), message(2), message(3))
    acct, _ = await pop.inbox(alice)
    real = type(acct).expunge
    calls: list[tuple[list[int] | None, bool]] = []

    async def failing(
        self: object, mailbox_id: int, uids: object = None, *, force: bool = False
    ) -> list[int]:
        calls.append((list(uids) if uids is not None else None, force))  # type: ignore[call-overload]
        raise OSError("disk gone")

    monkeypatch.setattr(type(acct), "expunge", failing)

    def client() -> bytes:
        c = pop.login()
        c.dele(1)
        c.dele(3)
        with pytest.raises(poplib.error_proto) as exc:
            c.quit()
        return exc.value.args[0]

    assert (await pop.run(client)).startswith(b"-ERR")
    assert calls == [([uids[0], uids[2]], True)]
    assert await pop.uids(alice) == uids
    assert all("\\Deleted" not in f for f in (await pop.flags(alice)).values())
    monkeypatch.setattr(type(acct), "expunge", real)
    await pop.wait_idle()

    def again() -> bytes:
        c = pop.login()
        c.dele(1)
        c.dele(3)
        return c.quit()

    assert (await pop.run(again)).endswith(b"(2 messages deleted)")
    assert await pop.uids(alice) == [uids[1]]
