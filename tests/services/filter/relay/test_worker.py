"""The relay end to end: outbound stream → relay → aiosmtpd 'remote MXs' on 127.0.0.x."""

from __future__ import annotations

import email.message

import pytest

from tests.services.filter.relay.conftest import (
    ACK_WAIT,
    ALICE,
    LOCAL,
    REMOTE,
    RelayEnv,
    counter,
    eventually,
    message,
)


def _report_parts(dsn: email.message.EmailMessage) -> dict[str, str]:
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    parts = {}
    for part in dsn.iter_parts():
        payload = part.get_payload(decode=False)
        if isinstance(payload, list):  # message/delivery-status: header blocks
            payload = "\n\n".join(str(p) for p in payload)
        parts[part.get_content_type()] = str(payload)
    return parts


async def test_delivered_on_the_first_try_one_transaction_per_domain(relay_env: RelayEnv) -> None:
    env = relay_env
    a = env.sink("127.0.0.2")
    b = env.sink("127.0.0.3")
    await env.start_relay({REMOTE: a.address, "other.example": b.address})
    before = counter("postern_relay_deliveries_total", outcome="delivered")
    await env.submit([f"bob@{REMOTE}", f"carol@{REMOTE}", "dave@other.example"])
    await eventually(lambda: len(a.messages) == 1 and len(b.messages) == 1)
    await eventually(lambda: _zero(env.outbound()))
    (got,) = a.messages
    assert sorted(got.rcpt_tos) == [f"bob@{REMOTE}", f"carol@{REMOTE}"]  # one transaction
    assert got.mail_from == ALICE
    assert b"Subject: hello" in got.data
    assert b.messages[0].rcpt_tos == ["dave@other.example"]
    assert a.sessions == 1 and b.sessions == 1
    assert counter("postern_relay_deliveries_total", outcome="delivered") - before == 3
    assert not [k async for k in _state_keys(env)]  # the queue record is gone


async def test_4xx_twice_then_success(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(rcpt=["451 4.3.0 try again later", "452 4.3.1 busy"])
    await env.start_relay({REMOTE: sink.address})
    env.relays[-1][0].pool.idle = 600.0  # however slow the machine, the session is kept
    before = counter("postern_relay_deliveries_total", outcome="deferred")
    await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: len(sink.messages) == 1)
    await eventually(lambda: _zero(env.outbound()))
    assert sink.transactions == 3
    assert sink.sessions == 1  # the session was kept for the retries
    assert counter("postern_relay_deliveries_total", outcome="deferred") - before == 2
    assert await env.inbox() == []  # no DSN for a delivery that succeeded


async def test_5xx_bounces_with_a_dsn_in_the_senders_inbox(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(rcpt=["550 5.1.1 no such user here"])
    await env.start_relay({REMOTE: sink.address})
    before = counter("postern_relay_bounces_total", reason="rejected")
    body = message(subject="quarterly figures")
    await env.submit([f"nobody@{REMOTE}", f"bob@{REMOTE}"], body)
    await eventually(lambda: env.inbox_has(1))
    (dsn,) = await env.inbox()
    assert dsn["From"].addresses[0].username == "MAILER-DAEMON"
    assert dsn["Return-Path"] == "<>"
    parts = _report_parts(dsn)
    status = parts["message/delivery-status"]
    assert f"Final-Recipient: rfc822; nobody@{REMOTE}" in status
    assert "Action: failed" in status and "Status: 5.1.1" in status
    assert "Diagnostic-Code: smtp; 550 no such user here" in status
    assert f"bob@{REMOTE}" not in status  # bob was delivered
    headers = parts["text/rfc822-headers"]
    assert "Subject: quarterly figures" in headers and "Hello from Postern" not in headers
    assert [m.rcpt_tos for m in sink.messages] == [[f"bob@{REMOTE}"]]
    await eventually(lambda: _zero(env.outbound()))
    assert counter("postern_relay_bounces_total", reason="rejected") - before == 1


async def test_delay_warning_once_while_retrying(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(rcpt=["451 4.7.1 greylisted"] * 1000)
    await env.start_relay({REMOTE: sink.address}, relay_delay_warning=0.3)
    await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: env.inbox_has(1))
    count = sink.transactions
    await eventually(lambda: sink.transactions >= count + 3)  # still retrying
    (warning,) = await env.inbox()  # one warning, however many retries
    w = _report_parts(warning)["message/delivery-status"]
    assert "Action: delayed" in w and "Will-Retry-Until:" in w and "greylisted" in w
    assert await env.outbound() == 1  # still queued


async def test_expiry_bounces_with_a_dsn(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(rcpt=["451 4.7.1 greylisted"] * 1000)
    await env.start_relay({REMOTE: sink.address}, relay_max_age=1.0, relay_delay_warning=3600)
    await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: env.inbox_has(1))
    await eventually(lambda: _zero(env.outbound()))
    (bounce,) = await env.inbox()
    b = _report_parts(bounce)["message/delivery-status"]
    assert "Action: failed" in b and "Status: 4.4.7" in b and "greylisted" in b
    assert sink.messages == [] and sink.transactions >= 1


async def test_no_bounce_to_a_null_sender(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(rcpt=["550 5.1.1 no such user"])
    await env.start_relay({REMOTE: sink.address})
    before = counter("postern_relay_bounces_total", reason="rejected")
    dsn_before = counter("postern_relay_dsn_total", action="failed")
    await env.submit([f"nobody@{REMOTE}"], sender="")
    await eventually(lambda: _zero(env.outbound()))
    assert counter("postern_relay_bounces_total", reason="rejected") - before == 1
    assert counter("postern_relay_dsn_total", action="failed") == dsn_before
    assert await env.inbound() == 0 and await env.inbox() == []


async def test_local_recipients_never_leave_the_system(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink()
    # Even a route for the local domain is not used: local mail goes to the store.
    await env.start_relay({REMOTE: sink.address, LOCAL: sink.address})
    await env.submit([ALICE, f"bob@{REMOTE}"])
    await eventually(lambda: env.inbox_has(1))
    await eventually(lambda: len(sink.messages) == 1)
    assert sink.messages[0].rcpt_tos == [f"bob@{REMOTE}"]
    (copy,) = await env.inbox()
    assert copy["Subject"] == "hello"


async def test_opportunistic_starttls(relay_env: RelayEnv) -> None:
    env = relay_env
    from mailcore.tls import ensure_certificate, server_context

    cert, key = env.tmp / "c.pem", env.tmp / "k.pem"
    ensure_certificate(cert, key, "mx.remote.example")
    sink = env.sink(tls=server_context(cert, key))
    await env.start_relay({REMOTE: sink.address})
    await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: len(sink.messages) == 1)
    assert sink.messages[0].tls


async def test_per_destination_concurrency_limit(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(delay=0.2)
    await env.start_relay({REMOTE: sink.address}, relay_destination_concurrency=1)
    for _ in range(4):
        await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: len(sink.messages) == 4)
    assert sink.max_active == 1


async def test_no_limit_lets_several_connections_through(relay_env: RelayEnv) -> None:
    """The counterpart of the limit test: the sink does see parallel sessions."""
    env = relay_env
    sink = env.sink(delay=0.5)
    await env.start_relay({REMOTE: sink.address}, relay_destination_concurrency=8)
    for _ in range(4):
        await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: len(sink.messages) == 4)
    assert sink.max_active > 1


async def test_a_remote_slower_than_the_ack_wait_keeps_the_message_with_its_relay(
    relay_env: RelayEnv,
) -> None:
    """The heartbeat (``in_progress``) resets JetStream's ack wait while the remote MX
    takes its time: the message is not handed out again mid-transaction."""
    env = relay_env
    sink = env.sink(delay=ACK_WAIT * 2.5)
    await env.start_relay({REMOTE: sink.address})
    await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: len(sink.messages) == 1)
    await eventually(lambda: _zero(env.outbound()))
    assert sink.data_commands == 1  # no second copy was started meanwhile
    assert len(sink.messages) == 1


async def test_two_relays_share_the_queue_and_send_each_message_once(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(delay=0.1)
    routes = {REMOTE: sink.address}
    one = await env.start_relay(routes, relay_concurrency=1)
    two = await env.start_relay(routes, relay_concurrency=1)
    handled = {id(one): 0, id(two): 0}
    for worker in (one, two):
        original = worker.handle

        async def counting(msg: object, _w: object = worker, _h: object = original) -> None:
            handled[id(_w)] += 1
            await _h(msg)  # type: ignore[operator]

        worker.handle = counting  # type: ignore[method-assign]
    ids = [(await env.submit([f"u{i}@{REMOTE}"])).id for i in range(10)]
    await eventually(lambda: len(sink.messages) == 10)
    await eventually(lambda: _zero(env.outbound()))
    rcpts = sorted(r for m in sink.messages for r in m.rcpt_tos)
    assert rcpts == sorted(f"u{i}@{REMOTE}" for i in range(10))  # each exactly once
    assert len(ids) == 10
    assert handled[id(one)] > 0 and handled[id(two)] > 0


async def _zero(n: object) -> bool:
    return await n == 0  # type: ignore[misc]


async def _state_keys(env: RelayEnv):  # type: ignore[no-untyped-def]
    from mailcore.bus import names

    kv = await env.bus.js.key_value(names.KV_RELAY)
    try:
        for k in await kv.keys():
            yield k
    except Exception:
        return


async def test_next_mx_when_the_preferred_one_fails(relay_env: RelayEnv) -> None:
    env = relay_env
    good = env.sink("127.0.0.3")
    busy = env.sink("127.0.0.5", port=good.port)
    busy.controller.stop()  # nothing listens on 127.0.0.5 any more: connection refused
    env.sinks.remove(busy)
    greeting_421 = env.sink("127.0.0.6", port=good.port, rcpt=["421 4.3.2 shutting down"])

    async def lookup(domain: str) -> list[tuple[int, str]]:
        assert domain == REMOTE
        return [(30, "127.0.0.3"), (10, "127.0.0.5"), (20, "127.0.0.6")]

    await env.start_relay({}, lookup=lookup, relay_mx_port=good.port)
    await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: len(good.messages) == 1)
    assert greeting_421.sessions == 1 and greeting_421.messages == []


async def test_smarthost_with_starttls_and_auth(relay_env: RelayEnv) -> None:
    from mailcore.tls import ensure_certificate, server_context

    env = relay_env
    cert, key = env.tmp / "c.pem", env.tmp / "k.pem"
    ensure_certificate(cert, key, "smarthost.test")  # valid for localhost too
    smart = env.sink("127.0.0.1", tls=server_context(cert, key), logins={"relay": "s3cret"})
    await env.start_relay(
        {},
        relay_smarthost=f"localhost:{smart.port}",  # the certificate is checked
        relay_smarthost_user="relay",
        relay_smarthost_password="s3cret",
        relay_smarthost_ca=cert,
    )
    await env.submit([f"bob@{REMOTE}", "x@elsewhere.example"])
    await eventually(lambda: len(smart.messages) == 2)
    assert all(m.tls for m in smart.messages)
    assert smart.authenticated == ["relay", "relay"]


async def test_queue_gauges_show_depth_and_oldest_age(
    relay_env: RelayEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio

    from services.filter.relay import app

    env = relay_env
    monkeypatch.setattr(app, "GAUGE_INTERVAL", 0.1)
    sink = env.sink(rcpt=["451 4.3.0 later"] * 10)
    await env.start_relay({REMOTE: sink.address}, relay_retry_schedule=[3600.0])
    await env.submit([f"bob@{REMOTE}"])
    await env.submit([f"carol@{REMOTE}"])
    await eventually(lambda: sink.transactions == 2)
    stopping = asyncio.Event()
    task = asyncio.create_task(app.queue_gauges(env.bus, stopping))
    try:
        await eventually(lambda: counter("postern_relay_queue_depth") == 2)
        await eventually(lambda: counter("postern_relay_oldest_seconds") > 0)
    finally:
        stopping.set()
        await task


async def test_a_kept_session_the_peer_closed_is_replaced(relay_env: RelayEnv) -> None:
    env = relay_env
    first = env.sink("127.0.0.2")
    await env.start_relay({REMOTE: first.address})
    node = env.relays[-1][0]
    node.pool.idle = 600.0  # keep the session however slow the machine is
    deferred = counter("postern_relay_deliveries_total", outcome="deferred")
    await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: len(first.messages) == 1)
    await eventually(lambda: bool(node.pool._idle))  # the session is kept
    first.stop()  # closes the kept session on the server's side
    env.sinks.remove(first)
    second = env.sink("127.0.0.2", port=first.port)
    await env.submit([f"carol@{REMOTE}"])
    await eventually(lambda: len(second.messages) == 1)
    assert second.messages[0].rcpt_tos == [f"carol@{REMOTE}"]
    # Replaced at once, not deferred: the dead session had not been used for anything.
    assert counter("postern_relay_deliveries_total", outcome="deferred") == deferred


async def test_mixed_answers_in_one_pipelined_transaction(relay_env: RelayEnv) -> None:
    """One transaction, three answers: delivered, bounced (5xx), retried (4xx)."""
    env = relay_env
    sink = env.sink(pipelining=True, rcpt=[None, "550 5.1.1 no such user", "451 4.2.0 later"])
    await env.start_relay({REMOTE: sink.address})
    ok, gone, later = (f"{u}@{REMOTE}" for u in ("ok", "gone", "later"))
    await env.submit([ok, gone, later])
    await eventually(lambda: env.inbox_has(1))
    await eventually(lambda: _zero(env.outbound()))
    assert [m.rcpt_tos for m in sink.messages] == [[ok], [later]]  # each once
    (dsn,) = await env.inbox()
    status = _report_parts(dsn)["message/delivery-status"]
    assert f"Final-Recipient: rfc822; {gone}" in status and "Status: 5.1.1" in status
    assert ok not in status and later not in status


@pytest.mark.parametrize(("point", "copies"), [("rcpt", 1), ("data", 1), ("stored", 2)])
async def test_connection_dropped_mid_transaction(
    relay_env: RelayEnv, point: str, copies: int
) -> None:
    """Dropped before the server kept the text: retried, delivered once. Dropped after it
    kept the text but before its 250: delivered again on the retry (RFC 5321 §6.1: at
    least once, never lost)."""
    env = relay_env
    sink = env.sink(pipelining=True, drop={point})
    await env.start_relay({REMOTE: sink.address})
    deferred = counter("postern_relay_deliveries_total", outcome="deferred")
    await env.submit([f"bob@{REMOTE}"])
    await eventually(lambda: len(sink.messages) == copies)
    await eventually(lambda: _zero(env.outbound()))
    assert [m.rcpt_tos for m in sink.messages] == [[f"bob@{REMOTE}"]] * copies
    assert counter("postern_relay_deliveries_total", outcome="deferred") - deferred == 1
    assert await env.inbox() == []  # no bounce


async def test_one_pipelined_session_carries_message_after_message(relay_env: RelayEnv) -> None:
    env = relay_env
    sink = env.sink(pipelining=True)
    await env.start_relay({REMOTE: sink.address})
    env.relays[-1][0].pool.idle = 600.0  # however slow the machine, the session is kept
    for i in range(3):
        await env.submit([f"u{i}@{REMOTE}"])
        await eventually(lambda n=i: len(sink.messages) == n + 1)  # type: ignore[misc]
    assert sink.sessions == 1 and sink.transactions == 3
    assert sink.resets == 2  # RSET before each reuse, inside the pipelined group


async def test_a_retry_whose_record_changed_meanwhile_sends_nothing(relay_env: RelayEnv) -> None:
    """The relay read the record, then `mailctl queue retry` took the message over: the
    relay's claim fails and it sends nothing (the operator's new copy goes instead)."""
    from mailcore.bus import names, outbound_state
    from mailcore.bus.outbound_state import QueueState, StateChanged
    from mailcore.bus.schemas import MailMessage

    env = relay_env
    sink = env.sink()
    worker = await env.start_relay({REMOTE: sink.address})
    kv = await env.bus.js.key_value(names.KV_RELAY)
    mail = MailMessage(id="raced", mail_from=ALICE, recipients=[f"bob@{REMOTE}"], size=0)
    await outbound_state.save(kv, QueueState(id="raced", recipients=mail.recipients, attempts=1))
    read = await outbound_state.load(kv, "raced")  # what the relay read
    operator = await outbound_state.load(kv, "raced")
    assert read is not None and operator is not None
    operator.next_attempt = 1.0
    await outbound_state.claim(kv, operator)  # the operator's retry wins
    with pytest.raises(StateChanged):
        await worker.dispatcher.attempt(mail, message(), read, delivery=2, seq=1)
    assert sink.transactions == 0
    await outbound_state.forget(kv, "raced")
