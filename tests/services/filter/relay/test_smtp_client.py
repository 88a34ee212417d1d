"""The relay's SMTP client against aiosmtpd servers on 127.0.0.x (real sockets)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailcore.tls import ensure_certificate, server_context
from services.filter.relay.payload import encode_data
from services.filter.relay.smtp_client import ConnectionLost, SmtpClient, SmtpError
from tests.services.filter.relay.sink import Sink

BODY = b"Subject: hi\r\n\r\nHello.\r\n.starts with a dot\r\n"
TEXT = encode_data(BODY)


@pytest.fixture
def sinks() -> Iterator[list[Sink]]:
    started: list[Sink] = []
    yield started
    for s in started:
        s.stop()


def start(sinks: list[Sink], host: str = "127.0.0.2", **kw: object) -> Sink:
    s = Sink(host, **kw).start()  # type: ignore[arg-type]
    sinks.append(s)
    return s


async def connect(sink: Sink, timeout: float = 30.0) -> SmtpClient:
    return await SmtpClient.connect(
        sink.host, sink.port, local_hostname="relay.test", timeout=timeout, connect_timeout=10
    )


async def test_a_pipelined_transaction(sinks: list[Sink]) -> None:
    # The server answers MAIL and RCPT only once DATA has come: a client that waited for
    # each reply would wait for ever (here: time out and fail).
    sink = start(sinks, pipelining=True)
    client = await connect(sink)
    assert client.supports("PIPELINING")
    rcpts = ["a@remote.example", "b@remote.example"]
    result = await client.transaction("s@postern.test", rcpts, TEXT, [])
    assert {r: reply.code for r, reply in result.answers.items()} == dict.fromkeys(rcpts, 250)
    (got,) = sink.messages
    assert got.rcpt_tos == rcpts and got.mail_from == "s@postern.test"
    assert got.data == BODY  # dot-stuffing undone by the server: the same text
    await client.quit()


async def test_mixed_answers_per_recipient(sinks: list[Sink]) -> None:
    sink = start(sinks, pipelining=True, rcpt=[None, "550 5.1.1 no such user", "452 4.2.2 full"])
    client = await connect(sink)
    rcpts = ["ok@r.example", "gone@r.example", "full@r.example"]
    result = await client.transaction("s@postern.test", rcpts, TEXT, [])
    answers = result.answers
    assert answers["ok@r.example"].code == 250
    assert (answers["gone@r.example"].code, answers["gone@r.example"].enhanced) == (550, "5.1.1")
    assert answers["full@r.example"].code == 452 and answers["full@r.example"].temporary
    assert [m.rcpt_tos for m in sink.messages] == [["ok@r.example"]]
    await client.quit()


async def test_every_recipient_refused_sends_no_text(sinks: list[Sink]) -> None:
    sink = start(sinks, pipelining=True, rcpt=["550 5.1.1 no", "550 5.1.1 no"])
    client = await connect(sink)
    result = await client.transaction("s@postern.test", ["a@r.example", "b@r.example"], TEXT, [])
    assert [r.code for r in result.answers.values()] == [550, 550]
    assert sink.messages == []
    # The session is still in step: the next transaction on it goes through.
    again = await client.transaction("s@postern.test", ["c@r.example"], TEXT, [])
    assert again.answers["c@r.example"].code == 250
    assert [m.rcpt_tos for m in sink.messages] == [["c@r.example"]]
    await client.quit()


async def test_a_server_without_pipelining_gets_one_command_at_a_time(sinks: list[Sink]) -> None:
    sink = start(sinks, rcpt=[None, "550 5.1.1 no such user"])
    client = await connect(sink)
    assert not client.supports("PIPELINING")
    result = await client.transaction("s@postern.test", ["a@r.example", "b@r.example"], TEXT, [])
    assert [r.code for r in result.answers.values()] == [250, 550]
    assert [m.rcpt_tos for m in sink.messages] == [["a@r.example"]]
    # Every recipient refused: no DATA at all, and the next transaction starts with RSET.
    sink.rcpt.replies = ["550 5.1.1 no"]
    refused = await client.transaction("s@postern.test", ["c@r.example"], TEXT, [])
    assert refused.answers["c@r.example"].code == 550
    assert sink.data_commands == 1
    await client.transaction("s@postern.test", ["d@r.example"], TEXT, [])
    assert sink.resets >= 1 and len(sink.messages) == 2
    await client.quit()


@pytest.mark.parametrize("pipelining", [True, False])
async def test_one_session_carries_many_transactions(sinks: list[Sink], pipelining: bool) -> None:
    sink = start(sinks, pipelining=pipelining)
    client = await connect(sink)
    for i in range(5):
        result = await client.transaction("s@postern.test", [f"u{i}@r.example"], TEXT, [])
        assert result.answers[f"u{i}@r.example"].code == 250
    assert sink.sessions == 1 and sink.transactions == 5 and len(sink.messages) == 5
    if pipelining:  # RSET between transactions costs no round trip when pipelined
        assert sink.resets == 4
    await client.quit()


async def test_a_refused_sender_refuses_the_transaction(sinks: list[Sink]) -> None:
    sink = start(sinks, pipelining=True, mail=["553 5.7.1 sender refused"])
    client = await connect(sink)
    with pytest.raises(SmtpError) as caught:
        await client.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    assert caught.value.command == "MAIL" and caught.value.reply.code == 553
    assert sink.messages == []
    # RCPT and DATA were refused too (no sender): the session stays usable.
    again = await client.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    assert again.answers["a@r.example"].code == 250
    await client.quit()


async def test_421_ends_the_session(sinks: list[Sink]) -> None:
    sink = start(sinks, pipelining=True, rcpt=["421 4.3.2 shutting down"])
    client = await connect(sink)
    with pytest.raises(SmtpError) as caught:
        await client.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    assert caught.value.reply.code == 421 and caught.value.command == "session"
    assert sink.messages == []
    client.close()


@pytest.mark.parametrize("pipelining", [True, False])
async def test_dropped_in_the_envelope_nothing_delivered(
    sinks: list[Sink], pipelining: bool
) -> None:
    sink = start(sinks, pipelining=pipelining, drop={"rcpt"})
    client = await connect(sink)
    with pytest.raises(ConnectionLost):
        await client.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    assert sink.messages == [] and not client.is_connected
    again = await connect(sink)
    result = await again.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    assert result.answers["a@r.example"].code == 250 and len(sink.messages) == 1
    await again.quit()


async def test_dropped_after_the_text_is_a_lost_reply(sinks: list[Sink]) -> None:
    sink = start(sinks, pipelining=True, drop={"stored"})
    client = await connect(sink)
    with pytest.raises(ConnectionLost) as caught:
        await client.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    assert caught.value.replied  # replies had come: not a stale session; maybe delivered
    assert len(sink.messages) == 1


async def test_a_closed_kept_session_is_seen_before_anything_is_sent(sinks: list[Sink]) -> None:
    sink = start(sinks, pipelining=True)
    client = await connect(sink)
    await client.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    sink.stop()
    sinks.remove(sink)
    with pytest.raises(ConnectionLost) as caught:
        await client.transaction("s@postern.test", ["b@r.example"], TEXT, [])
    assert not caught.value.replied  # no reply at all: safe to send again elsewhere


async def test_a_kept_session_that_refuses_rset_is_given_up(sinks: list[Sink]) -> None:
    sink = start(sinks, pipelining=True)
    client = await connect(sink)
    await client.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    sink.rset_reply = "502 5.5.1 no RSET here"
    with pytest.raises(ConnectionLost) as caught:  # not a refusal of the recipients
        await client.transaction("s@postern.test", ["b@r.example"], TEXT, [])
    assert not caught.value.replied and not client.is_connected
    assert [m.rcpt_tos for m in sink.messages] == [["a@r.example"]]


async def test_starttls_then_pipelined(sinks: list[Sink], tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    ensure_certificate(cert, key, "mx.remote.example")
    sink = start(sinks, pipelining=True, tls=server_context(cert, key))
    client = await connect(sink)
    assert client.supports("STARTTLS") and not client.tls
    ctx = ssl.create_default_context(cafile=str(cert))
    ctx.check_hostname = False
    await client.starttls(ctx, server_hostname="mx.remote.example")
    assert client.tls and not client.supports("STARTTLS")  # EHLO again, over TLS
    assert client.supports("PIPELINING")
    result = await client.transaction("s@postern.test", ["a@r.example"], TEXT, [])
    assert result.answers["a@r.example"].code == 250
    assert sink.messages[0].tls and sink.sessions == 2
    await client.quit()


async def test_starttls_refused_certificate_is_a_lost_connection(
    sinks: list[Sink], tmp_path: Path
) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    ensure_certificate(cert, key, "mx.remote.example")
    sink = start(sinks, tls=server_context(cert, key))
    client = await connect(sink)
    with pytest.raises(ConnectionLost):  # the default context trusts no self-signed cert
        await client.starttls(ssl.create_default_context(), server_hostname="mx.remote.example")
    client.close()
    assert sink.messages == []


async def test_auth_plain(sinks: list[Sink], tmp_path: Path) -> None:
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    ensure_certificate(cert, key, "smarthost.test")
    sink = start(sinks, "127.0.0.1", tls=server_context(cert, key), logins={"relay": "pw"})
    client = await connect(sink)
    ctx = ssl.create_default_context(cafile=str(cert))
    await client.starttls(ctx, server_hostname="localhost")
    with pytest.raises(SmtpError) as caught:
        await client.login("relay", "wrong")
    assert caught.value.reply.code == 535
    await client.login("relay", "pw")
    assert sink.authenticated == ["relay"]
    await client.quit()
