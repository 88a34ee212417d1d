"""``mailctl queue``: backlog counts and dead letters against the session's nats-server."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import TypeVar

from click.testing import CliRunner

from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus, connect
from mailcore.bus.deadletter import DeadLetter, iter_dead, publish_dead
from mailcore.bus.schemas import MailMessage, decode_mail, encode_mail, new_message_id
from services.cli import main
from services.ctl import daemons
from tests.services.ctl.test_accounts import ok, refused
from tests.support.daemons import NatsServer

T = TypeVar("T")
BODY = b"From: a@remote.example\r\nSubject: dead\r\n\r\nbody\r\n"


def on_bus(url: str, fn: Callable[[Bus], Awaitable[T]]) -> T:
    async def go() -> T:
        b = await connect(url, "test-queue", wait=5)
        try:
            return await fn(b)
        finally:
            await b.close()

    return asyncio.run(go())


def _mail(rcpts: list[str], body: bytes = BODY, body_ref: str | None = None) -> MailMessage:
    return MailMessage(
        id=new_message_id(),
        mail_from="a@remote.example",
        recipients=rcpts,
        size=len(body),
        body=b"" if body_ref else body,
        body_ref=body_ref,
    )


async def _dead(b: Bus, mail: MailMessage, reason: str, rcpts: list[str], seq: int) -> int:
    ack = await publish_dead(
        b.js,
        encode_mail(mail),
        reason=reason,
        recipients=rcpts,
        message_id=mail.id,
        detail="for a test",
        source_seq=seq,
    )
    return int(ack.seq)


def dead_letters(url: str) -> list[DeadLetter]:
    async def go(b: Bus) -> list[DeadLetter]:
        return [d async for d in iter_dead(b.js)]

    return on_bus(url, go)


def last_inbound(url: str) -> tuple[MailMessage, dict[str, str]]:
    async def go(b: Bus) -> tuple[MailMessage, dict[str, str]]:
        raw = await b.js.get_msg(names.STREAM_INBOUND, subject=names.SUBJECT_INBOUND)
        return decode_mail(raw.data or b""), dict(raw.headers or {})

    return on_bus(url, go)


def body_exists(url: str, ref: str) -> bool:
    async def go(b: Bus) -> bool:
        bodies = await b.js.object_store(names.OBJ_BODIES)
        try:
            await bodies.get(ref)
        except Exception:
            return False
        return True

    return on_bus(url, go)


def test_status_counts_each_queue(bus: Bus, nats_server: NatsServer) -> None:
    url = nats_server.url

    async def fill(b: Bus) -> None:
        bodies = await b.js.object_store(names.OBJ_BODIES)
        for _ in range(2):
            await publish_mail(b.js, bodies, names.SUBJECT_INBOUND, _mail(["x@q.test"]), BODY)
        await _dead(b, _mail(["y@q.test"]), "quota", ["y@q.test"], 7)

    on_bus(url, fill)
    out = ok(url, "queue", "status")
    assert re.search(r"^inbound\s+2 messages\s+\d+ B", out, re.M), out
    assert re.search(r"^outbound\s+0 messages", out, re.M), out
    assert re.search(r"^dead\s+1 messages", out, re.M), out
    # `mailctl status` points at them too (its store is not running here: exit 1).
    r = CliRunner().invoke(main, ["status", "--store", "http://127.0.0.1:1", "--nats", url])
    assert "dead letters: 1 (mailctl queue dead list)" in r.stdout
    assert "cannot reach NATS" in refused(
        f"nats://127.0.0.1:{daemons.free_port()}", "queue", "status"
    )


def test_dead_list_retry_drop(bus: Bus, nats_server: NatsServer) -> None:
    url = nats_server.url
    assert "no dead letters" in ok(url, "queue", "dead", "list")
    ok(url, "domain", "add", "q.test")
    for who in ("alice", "bob"):
        ok(url, "user", "add", f"{who}@q.test", "--password-stdin", stdin=f"password-{who}\n")
    quota_mail = _mail(["alice@q.test", "bob@q.test"])
    big = b"Subject: big\r\n\r\n" + b"z" * (600 * 1024) + b"\r\n"
    ref = f"{names.SUBJECT_INBOUND}.{new_message_id()}"
    unknown_mail = _mail(["ghost@q.test"], body=big, body_ref=ref)

    async def fill(b: Bus) -> tuple[int, int, int]:
        bodies = await b.js.object_store(names.OBJ_BODIES)
        await bodies.put(ref, big)
        q = await _dead(b, quota_mail, "quota", ["bob@q.test"], 11)
        u = await _dead(b, unknown_mail, "unknown_recipient", ["ghost@q.test"], 12)
        ack = await publish_dead(
            b.js, b"\x00not a frame", reason="poison", recipients=[], message_id="", source_seq=13
        )
        return q, u, int(ack.seq)

    q, u, p = on_bus(url, fill)
    listing = ok(url, "queue", "dead", "list").splitlines()
    assert len(listing) == 3
    assert re.match(
        rf"{q}  \d+s  quota  to bob@q.test  from a@remote.example  id {quota_mail.id}", listing[0]
    )
    assert re.match(rf"{u}  \d+s  unknown_recipient  to ghost@q.test", listing[1])
    assert re.match(rf"{p}  \d+s  poison  to -  from \?", listing[2])
    assert "(for a test)" in listing[0]

    # quota: back to the inbound stream for the recipient it names, same mail id.
    assert f"dead letter {q} requeued for bob@q.test" in ok(url, "queue", "dead", "retry", str(q))
    again, headers = last_inbound(url)
    assert (again.id, again.recipients, again.body) == (quota_mail.id, ["bob@q.test"], BODY)
    assert headers[names.HDR_MSG_ID] == f"{quota_mail.id}.retry.{q}"
    assert [d.seq for d in dead_letters(url)] == [u, p]

    # unknown: refused while the address still does not resolve; --to redirects it.
    assert "ghost@q.test not in the directory" in refused(url, "queue", "dead", "retry", str(u))
    assert [d.seq for d in dead_letters(url)] == [u, p]
    out = ok(url, "queue", "dead", "retry", unknown_mail.id, "--to", "alice@q.test")
    assert f"dead letter {u} requeued for alice@q.test" in out
    again, _ = last_inbound(url)
    assert (again.id, again.recipients, again.body_ref) == (unknown_mail.id, ["alice@q.test"], ref)
    assert body_exists(url, ref)  # the store deletes it once the retry is delivered

    # poison cannot be retried; it can be dropped.
    assert "cannot be retried" in refused(url, "queue", "dead", "retry", str(p))
    assert f"dead letter {p} dropped (poison" in ok(url, "queue", "dead", "drop", str(p))
    assert dead_letters(url) == []
    assert f"no dead letter {p}" in refused(url, "queue", "dead", "drop", str(p))
    assert "no dead letter nonsense" in refused(url, "queue", "dead", "retry", "nonsense")
    assert "ids or --all" in refused(url, "queue", "dead", "retry")
    assert "no dead letters" in ok(url, "queue", "dead", "retry", "--all")


def test_shared_body_is_copied_on_retry_and_dropped_last(bus: Bus, nats_server: NatsServer) -> None:
    url = nats_server.url
    ok(url, "domain", "add", "shared.test")
    ok(url, "user", "add", "sam@shared.test", "--password-stdin", stdin="password-sam\n")
    big = b"Subject: big\r\n\r\n" + b"s" * (600 * 1024) + b"\r\n"
    ref = f"{names.SUBJECT_INBOUND}.{new_message_id()}"
    mail = _mail(["sam@shared.test", "gone@shared.test", "full@shared.test"], big, ref)

    async def fill(b: Bus) -> tuple[int, int, int]:
        bodies = await b.js.object_store(names.OBJ_BODIES)
        await bodies.put(ref, big)
        # One message, three reasons: three letters naming one body.
        return (
            await _dead(b, mail, "quota", ["sam@shared.test"], 21),
            await _dead(b, mail, "unknown_recipient", ["gone@shared.test"], 21),
            await _dead(b, mail, "failed", ["full@shared.test"], 21),
        )

    first, second, third = on_bus(url, fill)
    ok(url, "queue", "dead", "retry", str(first))
    again, _ = last_inbound(url)
    assert again.body_ref == f"{ref}.retry{first}"  # its own copy: the store deletes it
    assert body_exists(url, again.body_ref) and body_exists(url, ref)
    ok(url, "queue", "dead", "drop", str(second))
    assert body_exists(url, ref)  # the third letter still needs it
    ok(url, "queue", "dead", "drop", str(third))
    assert not body_exists(url, ref)


def test_retry_all_reports_what_it_could_not_retry(bus: Bus, nats_server: NatsServer) -> None:
    url = nats_server.url
    ok(url, "domain", "add", "all.test")
    ok(url, "user", "add", "ann@all.test", "--password-stdin", stdin="password-ann\n")

    async def fill(b: Bus) -> list[int]:
        return [
            await _dead(b, _mail(["ann@all.test"]), "quota", ["ann@all.test"], 31),
            await _dead(
                b, _mail(["nobody@all.test"]), "unknown_recipient", ["nobody@all.test"], 32
            ),
            await _dead(b, _mail(["ann@all.test"]), "body_missing", ["ann@all.test"], 33),
        ]

    done, unresolved, missing = on_bus(url, fill)
    r = CliRunner().invoke(main, ["queue", "dead", "retry", "--all", "--nats", url])
    assert r.exit_code == 1
    assert f"dead letter {done} requeued for ann@all.test" in r.stdout
    assert (
        f"not retried: dead letter {unresolved}: nobody@all.test not in the directory" in r.stdout
    )
    assert f"not retried: dead letter {missing} (body_missing) cannot be retried" in r.stdout
    assert r.stderr.strip() == "mailctl: 2 dead letter(s) not retried"
    assert [d.seq for d in dead_letters(url)] == [unresolved, missing]
    # --force publishes even for an address the directory lacks (the store dead-letters
    # it again after its attempts, so nothing is lost).
    assert f"dead letter {unresolved} requeued" in ok(
        url, "queue", "dead", "retry", str(unresolved), "--force"
    )
