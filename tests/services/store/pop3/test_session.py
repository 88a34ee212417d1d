"""The session over raw sockets: bad input of every kind, AUTH PLAIN, pipelining, the
idle timeout, the bad-command limit, commands after QUIT, a server stop, STLS injection."""

from __future__ import annotations

import asyncio
import base64

import pytest

from services.store.pop3 import replies
from tests.services.store.pop3.conftest import PASSWORD, Factory, Pop3Harness, RawClient, message


@pytest.fixture
async def alice_pop(pop: Pop3Harness) -> Pop3Harness:
    alice = await pop.add_user()
    await pop.deliver(alice, message(1), message(2))
    return pop


async def test_bad_message_numbers(alice_pop: Pop3Harness) -> None:
    c = await RawClient.open(alice_pop.port)
    await c.login()
    for cmd in (b"RETR 0", b"RETR 3", b"RETR 99999999999999999999", b"DELE 0", b"LIST 4",
                b"UIDL 0", b"TOP 0 1", b"TOP 4294967297 1"):  # fmt: skip
        assert await c.cmd(cmd) == replies.NO_SUCH_MESSAGE.line, cmd
    for cmd in (b"RETR -1", b"RETR", b"RETR x", b"TOP 1", b"TOP 1 -1", b"DELE 1 2"):
        reply = await c.cmd(cmd)
        assert reply.startswith(b"-ERR ") and b"[" not in reply, cmd
    # TOP with a huge count is the whole message
    assert await c.cmd(b"TOP 1 99999999999999999999999") == replies.TOP_FOLLOWS.line
    assert b"".join(await c.multiline()) == message(1)
    assert (await c.cmd(b"STAT")).startswith(b"+OK 2 ")  # the session is still fine
    assert await c.cmd(b"QUIT") == replies.signed_off(0).line
    assert await c.eof()


async def test_garbage_and_overlong_lines(alice_pop: Pop3Harness) -> None:
    c = await RawClient.open(alice_pop.port)
    assert await c.cmd(b"\xff\xfe\x00\x80 garbage") == replies.UNKNOWN_COMMAND.line
    assert await c.cmd(b"") == replies.UNKNOWN_COMMAND.line
    assert await c.cmd(b"NOOP " + b"A" * 3000) == replies.LINE_TOO_LONG.line
    # longer than the stream reader's buffer: read and dropped, never held whole
    assert await c.cmd(b"USER " + b"B" * 600_000) == replies.LINE_TOO_LONG.line
    assert await c.cmd(b"STAT") == replies.NOT_AUTHENTICATED.line
    assert await c.cmd(b"USER \xc3\x28@example.com") == b"-ERR Invalid UTF-8 in argument\r\n"
    await c.login()
    assert await c.cmd(b"USER alice@example.com") == replies.ALREADY_AUTHENTICATED.line
    assert await c.cmd(b"STLS") == replies.WRONG_STATE.line
    assert (await c.cmd(b"STAT")).startswith(b"+OK 2 ")
    await c.close()


async def test_too_many_bad_commands_end_the_session(make_pop3: Factory) -> None:
    pop = await make_pop3(max_bad_commands=3)
    c = await RawClient.open(pop.port)
    assert await c.cmd(b"HELO") == replies.UNKNOWN_COMMAND.line
    assert await c.cmd(b"RETR 1") == replies.NOT_AUTHENTICATED.line
    assert await c.cmd(b"XYZ") == replies.UNKNOWN_COMMAND.line
    assert await c.line() == replies.TOO_MANY_BAD_COMMANDS.line
    assert await c.eof()


async def test_commands_after_quit_are_not_read(alice_pop: Pop3Harness) -> None:
    c = await RawClient.open(alice_pop.port)
    await c.login()
    await c.send(b"DELE 1\r\nQUIT\r\nDELE 2\r\nSTAT\r\nRETR 1\r\n")
    assert await c.line() == replies.DELETED.line
    assert await c.line() == replies.signed_off(1).line
    assert await c.eof()  # the server closed after QUIT (RFC 1939 §6); nothing more ran
    alice = alice_pop.users["alice@example.com"]
    assert len(await alice_pop.uids(alice)) == 1


async def test_quit_before_login(alice_pop: Pop3Harness) -> None:
    c = await RawClient.open(alice_pop.port)
    assert await c.cmd(b"QUIT") == replies.BYE.line
    assert await c.eof()


async def test_pipelining(alice_pop: Pop3Harness) -> None:
    """RFC 2449 §6.6: many commands in one write, answered in order."""
    c = await RawClient.open(alice_pop.port)
    user, pw = b"USER alice@example.com\r\n", b"PASS " + PASSWORD.encode() + b"\r\n"
    await c.send(user + pw + b"STAT\r\nRETR 1\r\nRETR 2\r\nUIDL 2\r\nNOOP\r\nQUIT\r\n")
    assert await c.line() == replies.USER_ACCEPTED.line
    assert (await c.line()).startswith(b"+OK Logged in")
    assert (await c.line()).startswith(b"+OK 2 ")
    for n in (1, 2):
        assert (await c.line()) == replies.retr_follows(len(message(n))).line
        assert b"".join(await c.multiline()) == message(n)
    assert (await c.line()).startswith(b"+OK 2 ")
    assert await c.line() == replies.NOOP.line
    assert await c.line() == replies.signed_off(0).line
    assert await c.eof()


def _plain(user: str, password: str, authzid: str = "") -> bytes:
    return base64.b64encode(f"{authzid}\0{user}\0{password}".encode())


async def test_auth_plain(alice_pop: Pop3Harness) -> None:
    # RFC 5034 with an initial response
    c = await RawClient.open(alice_pop.port)
    assert (await c.cmd(b"AUTH PLAIN " + _plain("alice@example.com", PASSWORD))).startswith(
        b"+OK Logged in: 2 messages"
    )
    assert await c.cmd(b"AUTH PLAIN") == replies.ALREADY_AUTHENTICATED.line
    assert (await c.cmd(b"QUIT")).startswith(b"+OK")
    # without one: an empty challenge, then the response
    c = await RawClient.open(alice_pop.port)
    assert await c.cmd(b"AUTH") == replies.AUTH_MECHANISMS.line
    assert await c.multiline() == [b"PLAIN\r\n"]
    assert await c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert await c.cmd(b"*") == replies.AUTH_CANCELLED.line
    assert await c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    assert await c.cmd(b"not base64!") == replies.AUTH_BAD_RESPONSE.line
    assert await c.cmd(b"AUTH PLAIN " + base64.b64encode(b"no nuls")) == (
        replies.AUTH_BAD_RESPONSE.line
    )
    assert await c.cmd(b"AUTH CRAM-MD5") == replies.AUTH_UNSUPPORTED.line
    wrong = await c.cmd(b"AUTH PLAIN " + _plain("alice@example.com", "nope"))
    assert wrong == replies.AUTH_FAILED.line
    other = _plain("alice@example.com", PASSWORD, authzid="bob@example.com")
    assert await c.cmd(b"AUTH PLAIN " + other) == replies.AUTH_AUTHZID_REFUSED.line
    assert await c.cmd(b"AUTH PLAIN") == b"+ \r\n"
    same = _plain("alice@example.com", PASSWORD, authzid="Alice@Example.com")
    assert (await c.cmd(same)).startswith(b"+OK Logged in")
    await c.close()


async def test_auth_refused_without_tls(make_pop3: Factory) -> None:
    pop = await make_pop3(plaintext="never")
    await pop.add_user()
    c = await RawClient.open(pop.port)
    assert await c.cmd(b"AUTH") == replies.AUTH_MECHANISMS.line
    assert await c.multiline() == []  # nothing usable before STLS
    plain = b"AUTH PLAIN " + _plain("alice@example.com", PASSWORD)
    assert await c.cmd(plain) == replies.PLAINTEXT_REFUSED.line
    assert await c.cmd(b"USER alice@example.com") == replies.PLAINTEXT_REFUSED.line
    assert await c.cmd(b"PASS " + PASSWORD.encode()) == replies.PASS_WITHOUT_USER.line
    await c.close()
    # over POP3S the same credentials work
    c = await RawClient.open(pop.pop3s_port, tls=pop.client_tls)
    assert (await c.cmd(plain)).startswith(b"+OK Logged in")
    assert await c.cmd(b"STLS") == replies.WRONG_STATE.line
    await c.close()


async def test_stls_discards_pipelined_commands(make_pop3: Factory) -> None:
    """Commands sent in the clear behind STLS must not run inside the TLS session."""
    pop = await make_pop3(plaintext="never")
    await pop.add_user()
    reader, writer = await asyncio.open_connection("127.0.0.1", pop.port)
    assert (await reader.readline()).startswith(b"+OK")
    writer.write(b"STLS\r\nUSER alice@example.com\r\n")
    await writer.drain()
    assert await reader.readline() == replies.STLS_BEGIN.line
    await writer.start_tls(pop.client_tls)
    writer.write(b"PASS " + PASSWORD.encode() + b"\r\n")
    await writer.drain()
    # had the injected USER survived, this PASS would log in
    assert await asyncio.wait_for(reader.readline(), 30) == replies.PASS_WITHOUT_USER.line
    writer.write(b"STLS\r\n")
    assert await asyncio.wait_for(reader.readline(), 30) == replies.STLS_ACTIVE.line
    writer.close()


async def test_stls_unavailable_without_certificate(make_pop3: Factory) -> None:
    pop = await make_pop3(tls=False)
    c = await RawClient.open(pop.port)
    assert await c.cmd(b"STLS") == replies.STLS_UNAVAILABLE.line
    assert await c.cmd(b"CAPA") == replies.CAPA_FOLLOWS.line
    assert b"STLS\r\n" not in await c.multiline()
    await c.close()


async def test_idle_timeout(make_pop3: Factory) -> None:
    pop = await make_pop3(idle_timeout=0.3)
    alice = await pop.add_user()
    await pop.deliver(alice, message(1))
    c = await RawClient.open(pop.port)
    await c.login()
    assert await c.cmd(b"DELE 1") == replies.DELETED.line
    assert await c.line() == replies.IDLE_TIMEOUT.line
    assert await c.eof()
    await pop.wait_idle()
    assert len(await pop.uids(alice)) == 1  # a timed-out session never reaches UPDATE


async def test_server_stop_says_goodbye_and_deletes_nothing(alice_pop: Pop3Harness) -> None:
    c = await RawClient.open(alice_pop.port)
    await c.login()
    assert await c.cmd(b"DELE 1") == replies.DELETED.line
    await alice_pop.server.stop(grace=5)
    assert await c.line() == replies.SHUTTING_DOWN.line
    assert await c.eof()
    assert len(await alice_pop.uids(alice_pop.users["alice@example.com"])) == 2
    assert len(alice_pop.server.env.locks) == 0


async def test_capa_in_transaction_state(alice_pop: Pop3Harness) -> None:
    c = await RawClient.open(alice_pop.port)
    await c.login()
    assert await c.cmd(b"CAPA") == replies.CAPA_FOLLOWS.line
    caps = await c.multiline()
    assert b"TOP\r\n" in caps and b"UIDL\r\n" in caps
    assert b"USER\r\n" not in caps and b"STLS\r\n" not in caps
    await c.close()


async def test_storage_failure_at_login_releases_the_lock(alice_pop: Pop3Harness) -> None:
    """The engine refusing (here: closed under the session) is -ERR [SYS/TEMP], and the
    maildrop lock and the user's connection slot are given back."""
    await alice_pop.store.close()
    c = await RawClient.open(alice_pop.port)
    assert (await c.cmd(b"USER alice@example.com")).startswith(b"+OK")
    assert (await c.cmd(b"PASS " + PASSWORD.encode())).startswith(b"-ERR [SYS/TEMP] ")
    assert len(alice_pop.server.env.locks) == 0
    assert await c.cmd(b"STAT") == replies.NOT_AUTHENTICATED.line
    await c.close()
    await alice_pop.restart()  # the store opens again on the same data
    c = await RawClient.open(alice_pop.port)
    await c.login()
    assert (await c.cmd(b"STAT")).startswith(b"+OK 2 ")
    await c.close()


async def test_connection_caps(make_pop3: Factory) -> None:
    pop = await make_pop3(max_per_ip=2, max_per_user=1)
    alice = await pop.add_user()
    await pop.deliver(alice, message(1))
    first = await RawClient.open(pop.port)
    await first.login()
    second = await RawClient.open(pop.port)
    # the same user again: the maildrop lock answers first
    assert (await second.cmd(b"USER alice@example.com")).startswith(b"+OK")
    assert await second.cmd(b"PASS " + PASSWORD.encode()) == replies.IN_USE.line
    # a third connection from this address is refused at once
    reader, writer = await asyncio.open_connection("127.0.0.1", pop.port)
    refused = await asyncio.wait_for(reader.read(), 30)
    assert refused == b"-ERR [SYS/TEMP] Too many connections from your address\r\n"
    writer.close()
    # the user's slot is taken (an IMAP session would count the same): TOO_MANY, no lock left
    assert (await first.cmd(b"QUIT")).startswith(b"+OK")
    assert await first.eof()
    await pop.wait_idle_except(1)
    pop.server.env.limiter.open_user("alice@example.com")  # as if IMAP held the only slot
    assert (await second.cmd(b"USER alice@example.com")).startswith(b"+OK")
    assert await second.cmd(b"PASS " + PASSWORD.encode()) == replies.TOO_MANY_CONNECTIONS.line
    assert len(pop.server.env.locks) == 0
    pop.server.env.limiter.close_user("alice@example.com")
    await second.login()
    await second.close()
