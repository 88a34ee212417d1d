"""Limits and hostile input: line length, literal sizes (refused before the continuation),
nesting, bad commands, login delays and throttling, connection caps, idle timeout,
plaintext policy, STARTTLS injection."""

from __future__ import annotations

import asyncio
import base64
import types
from typing import Any

import pytest

from mailcore.mailstore import StoreClosed
from services.store import auth as auth_module
from services.store.auth import LoginThrottle
from services.store.imap import lexer
from services.store.imap.lexer import MAX_LINE
from tests.services.store.imap.conftest import ALICE, PASSWORD, Factory, ImapHarness, message


async def test_long_line_ends_session(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    await c.send(b"a NOOP " + b"x" * (MAX_LINE + 10) + b"\r\n")
    lines = [await c.line(), await c.line()]
    assert lines[0].startswith(b"* BYE [TOOBIG]")
    assert lines[1] == b""  # closed
    # just under the limit is fine
    c2 = await imap.raw_login()
    await c2.cmd(b"s SELECT INBOX")
    reply = await c2.cmd(b'a SEARCH HEADER X-Long "' + b"y" * (MAX_LINE - 100) + b'"', timeout=60)
    assert reply[-1].startswith(b"a OK"), reply
    await c2.close()


async def test_oversized_append_refused_before_continuation(make_imap: Factory) -> None:
    h = await make_imap(max_message_size=1000)
    c = await h.raw_login()
    await c.send(b"a APPEND INBOX {1001}\r\n")
    reply = await c.line()
    assert reply.startswith(b"a NO [TOOBIG]"), reply
    # the session goes on: the client never sent the octets
    assert (await c.cmd(b"b NOOP"))[-1].startswith(b"b OK")
    # a fitting one is accepted
    body = message(1)
    await c.send(b"c APPEND INBOX {%d}\r\n" % len(body))
    assert (await c.line()).startswith(b"+ ")
    await c.send(body + b"\r\n")
    assert (await c.until_tagged(b"c"))[-1].startswith(b"c OK [APPENDUID ")
    # a non-synchronizing literal that is too large ends the session
    await c.send(b"d APPEND INBOX {5000+}\r\n")
    assert (await c.line()).startswith(b"* BYE [TOOBIG]")
    await c.close()


async def test_no_large_literal_before_login(imap: ImapHarness) -> None:
    c = await imap.raw()
    await c.send(b"a APPEND INBOX {1000000}\r\n")
    assert (await c.line()).startswith(b"a BAD Literal too large")
    await c.close()


async def test_large_literal_in_other_commands_refused(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    await c.send(b"a LOGIN {100000}\r\n")
    assert (await c.line()).startswith(b"a BAD")
    await c.close()


async def test_deep_nesting_refused(imap: ImapHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    # the parser gives up at the first level past the limit: it never reads further into
    # the command, nor builds anything for the levels it did not reach
    reached: list[tuple[int, int]] = []
    nest = lexer.Cursor.nest

    def counting_nest(cur: lexer.Cursor) -> None:
        reached.append((cur.depth + 1, cur.pos))
        nest(cur)

    monkeypatch.setattr(lexer.Cursor, "nest", counting_nest)
    await imap.deliver(message(1))
    c = await imap.raw_login()
    await c.cmd(b"s SELECT INBOX")
    prefix = b"a SEARCH "
    reply = await c.cmd(prefix + b"(" * 5000 + b"ALL" + b")" * 5000)
    assert reply[-1].startswith(b"a BAD"), reply[-1]
    assert len(reached) == lexer.MAX_DEPTH + 1  # one step past the limit, not 5000
    deepest, pos = reached[-1]
    assert deepest == lexer.MAX_DEPTH + 1
    assert pos == len(prefix) + lexer.MAX_DEPTH + 1  # just after the 33rd "(" of 5000
    assert (await c.cmd(b"b NOOP"))[-1].startswith(b"b OK")
    await c.close()


async def test_bad_commands_before_login_end_session(imap: ImapHarness) -> None:
    c = await imap.raw()
    lines: list[bytes] = []
    for i in range(10):
        await c.send(b"x%d FROB\r\n" % i)
    while True:
        ln = await c.line()
        if not ln:
            break
        lines.append(ln)
    assert lines[-1].startswith(b"* BYE"), lines
    assert len([ln for ln in lines if b" BAD " in ln]) == imap.rt.max_bad_commands


async def test_failed_logins_are_delayed_and_throttled(
    make_imap: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the failure delay is held open by the test: the reply must wait for it
    delays: list[float] = []
    gate = asyncio.Event()

    async def held_sleep(delay: float) -> None:
        delays.append(delay)
        await gate.wait()

    monkeypatch.setattr(auth_module, "asyncio", types.SimpleNamespace(sleep=held_sleep))
    h = await make_imap(throttle=LoginThrottle(0.2, max_per_account=3, max_per_ip=100))
    c = await h.raw()
    await c.send(b"a LOGIN alice@example.com wrong\r\n")
    while not delays:
        await asyncio.sleep(0.01)
    with pytest.raises(TimeoutError):  # no answer while the delay lasts
        await c.line(timeout=0.3)
    gate.set()
    reply = await c.until_tagged(b"a")
    assert reply[-1].startswith(b"a NO [AUTHENTICATIONFAILED]")
    await c.cmd(b"b LOGIN alice@example.com wrong")
    await c.cmd(b"c LOGIN alice@example.com wrong")
    assert delays == [0.2, 0.4, 0.8]  # doubling with each recent failure
    # the account is now throttled: even the right password is refused for a while
    reply = await c.cmd(f'd LOGIN {ALICE} "{PASSWORD}"'.encode())
    assert reply[-1].startswith(b"d NO [UNAVAILABLE]"), reply
    await c.close()


async def test_plaintext_login_refused_without_tls(make_imap: Factory) -> None:
    h = await make_imap(plaintext="never")
    c = await h.raw()
    caps = await c.cmd(b"a CAPABILITY")
    assert b"LOGINDISABLED" in caps[0] and b"AUTH=PLAIN" not in caps[0]
    reply = await c.cmd(f'b LOGIN {ALICE} "{PASSWORD}"'.encode())
    assert reply[-1].startswith(b"b NO [PRIVACYREQUIRED]")
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
    reply = await c.cmd(b"c AUTHENTICATE PLAIN " + token)
    assert reply[-1].startswith(b"c NO [PRIVACYREQUIRED]")
    await c.close()
    # implicit TLS: allowed
    t = await h.raw(tls=True)
    reply = await t.cmd(b"d AUTHENTICATE PLAIN " + token)
    assert reply[-1].startswith(b"d OK"), reply
    await t.close()


async def test_authenticate_plain_with_continuation(imap: ImapHarness) -> None:
    c = await imap.raw()
    await c.send(b"a AUTHENTICATE PLAIN\r\n")
    assert (await c.line()) == b"+ \r\n"
    await c.send(base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()) + b"\r\n")
    reply = await c.until_tagged(b"a")
    assert reply[-1].startswith(b"a OK [CAPABILITY IMAP4rev1"), reply
    # cancelled exchange (RFC 3501 §6.2.2)
    c2 = await imap.raw()
    await c2.send(b"b AUTHENTICATE PLAIN\r\n")
    await c2.line()
    await c2.send(b"*\r\n")
    assert (await c2.until_tagged(b"b"))[-1].startswith(b"b BAD")
    await c.close()
    await c2.close()


async def test_starttls_discards_pipelined_commands(imap: ImapHarness) -> None:
    c = await imap.raw()
    # RFC 3501 §6.2.1: the injected NOOP must not be executed after the handshake
    await c.send(b"a STARTTLS\r\nb NOOP\r\n")
    assert (await c.line()).startswith(b"a OK")
    await c.writer.start_tls(imap.client_tls)
    reply = await c.cmd(b"c CAPABILITY")
    assert not any(ln.startswith(b"b ") for ln in reply), reply
    assert b"STARTTLS" not in reply[0] and b"AUTH=PLAIN" in reply[0]
    await c.close()


async def test_connection_caps(make_imap: Factory) -> None:
    h = await make_imap(max_per_ip=3, max_per_user=2)
    conns = [await h.raw() for _ in range(3)]
    reader, writer = await asyncio.open_connection("127.0.0.1", h.port)
    assert (await reader.readline()).startswith(b"* BYE [UNAVAILABLE]")
    writer.close()
    for i, c in enumerate(conns):
        reply = await c.cmd(f'a{i} LOGIN {ALICE} "{PASSWORD}"'.encode())
        expect = b"OK" if i < 2 else b"NO [LIMIT]"
        assert reply[-1].startswith(f"a{i} ".encode() + expect), reply
    for c in conns:
        await c.close()


async def test_idle_timeout_logs_out(make_imap: Factory) -> None:
    h = await make_imap(idle_timeout=0.5)
    c = await h.raw_login()
    assert (await c.line(timeout=10)).startswith(b"* BYE Autologout")
    c2 = await h.raw_login()
    await c2.cmd(b"s SELECT INBOX")
    await c2.send(b"i IDLE\r\n")
    assert (await c2.line()).startswith(b"+ ")
    assert (await c2.line(timeout=10)).startswith(b"* BYE Autologout")
    await c.close()
    await c2.close()


async def test_autologout_counts_each_wait_not_the_session(make_imap: Factory) -> None:
    """RFC 3501 §5.4: the timer measures the wait for the next command. A session whose
    commands come less than the timeout apart stays logged in for longer than the
    timeout in all; once it stops sending, it is logged out."""
    h = await make_imap(idle_timeout=1.0)
    c = await h.raw_login()
    for i in range(6):  # 6 x 0.3 s: well past the timeout in all
        reply = await c.cmd(b"n%d NOOP" % i)
        assert reply[-1].startswith(b"n%d OK" % i), reply
        await asyncio.sleep(0.3)
    assert (await c.line(timeout=10)).startswith(b"* BYE Autologout")
    await c.close()


async def test_commands_arm_no_timer_each(
    imap: ImapHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The autologout timer is one per session, not armed and cancelled around every wait
    for a command (that was a measurable part of a command's CPU, issue 20)."""
    c = await imap.raw_login()
    loop = asyncio.get_running_loop()
    armed: list[float] = []
    real = loop.call_at

    def counting(when: float, *args: Any, **kwargs: Any) -> asyncio.TimerHandle:
        armed.append(when)
        return real(when, *args, **kwargs)

    monkeypatch.setattr(loop, "call_at", counting)
    for i in range(50):
        await c.send(b"n%d NOOP\r\n" % i)  # read without a timeout of the client's own
        assert (await c.reader.readline()).startswith(b"n%d OK" % i)
    assert len(armed) < 5
    await c.close()


async def test_server_stop_says_bye(make_imap: Factory) -> None:
    h = await make_imap()
    c = await h.raw_login()
    await h.server.stop(grace=2)
    assert (await c.line(timeout=10)).startswith(b"* BYE")
    await c.close()


async def test_mailbox_names_never_paths(imap: ImapHarness) -> None:
    c = await imap.raw_login()
    reply = await c.cmd(b'a CREATE "../../../etc/passwd"')
    # a name is a row: creating it is harmless, nothing appears outside the store
    assert reply[-1].startswith((b"a OK", b"a NO"))
    assert not (imap.root.parent / "etc").exists()
    assert not any(p.name == "passwd" for p in imap.root.rglob("*"))
    await c.close()


async def test_login_whose_account_fails_to_open_stays_logged_out(
    make_imap: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = await make_imap(max_per_user=1)

    async def broken(account_id: str) -> object:
        raise StoreClosed("the mail store is closed")

    monkeypatch.setattr(h.store, "account", broken)
    c = await h.raw()
    reply = await c.cmd(f'a LOGIN {ALICE} "{PASSWORD}"'.encode())
    assert reply[-1].startswith(b"a NO [UNAVAILABLE]"), reply
    # nothing of a login stuck: capabilities, literal limit and state are pre-login ones
    caps = (await c.cmd(b"b CAPABILITY"))[0]
    assert b"NAMESPACE" not in caps and b"IMAP4rev1" in caps
    await c.send(b"c APPEND INBOX {100000}\r\n")
    assert (await c.line()).startswith(b"c BAD Literal too large")
    assert (await c.cmd(b"d SELECT INBOX"))[-1].startswith(b"d BAD")
    # and the user's only connection slot (max_per_user=1) was given back
    monkeypatch.undo()
    reply = await c.cmd(f'e LOGIN {ALICE} "{PASSWORD}"'.encode())
    assert reply[-1].startswith(b"e OK"), reply
    await c.close()
