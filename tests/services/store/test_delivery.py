"""The delivery consumer on a real nats-server and a real mail store."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.js.errors import APIError
from prometheus_client import REGISTRY

from mailcore.bus import deadletter as dead_module
from mailcore.bus import names
from mailcore.bus.claimcheck import publish_mail
from mailcore.bus.connect import Bus
from mailcore.bus.deadletter import DeadLetter, iter_dead
from mailcore.bus.schemas import (
    MailMessage,
    ScanResult,
    decode_mail,
    encode_mail,
    new_message_id,
)
from mailcore.bus.setup import MAX_MSG_SIZE, declare_all, delivery_consumer
from mailcore.directory import Directory, User
from mailcore.mailstore import Account, MailStore
from mailcore.mailstore.layout import index_path, message_path
from services.ctl.queue import retry_dead
from services.store.delivery import DeliveryConsumer
from tests.conftest import TEST_LIMITS

BODY = (
    b"From: sender@remote.example\r\nSubject: hello\r\n"
    b"Message-ID: <m1@remote.example>\r\n\r\nHi!\r\n"
)


@dataclass
class Env:
    bus: Bus
    directory: Directory
    store: MailStore
    consumer: DeliveryConsumer
    alice: User
    bob: User

    async def publish(
        self, rcpts: list[str], body: bytes = BODY, *, spam: bool = False, mid: str | None = None
    ) -> MailMessage:
        msg = MailMessage(
            id=mid or new_message_id(),
            mail_from="sender@remote.example",
            recipients=rcpts,
            size=0,
            scan=ScanResult(spam_tagged=spam, spam_scanned=True),
        )
        bodies = await self.bus.js.object_store(names.OBJ_BODIES)
        await publish_mail(self.bus.js, bodies, names.SUBJECT_INBOUND, msg, body)
        return msg

    async def publish_raw(self, payload: bytes) -> None:
        await self.bus.js.publish(
            names.SUBJECT_INBOUND, payload, headers={names.HDR_MSG_ID: new_message_id()}
        )

    async def backlog(self) -> int:
        return int((await self.bus.js.stream_info(names.STREAM_INBOUND)).state.messages)

    async def dead(self) -> list[DeadLetter]:
        return [d async for d in iter_dead(self.bus.js)]

    async def inbox(self, user: User, box: str = "INBOX") -> list[bytes]:
        acct = await self.store.account(user.account_id)
        mb = await acct.mailbox(box)
        out = []
        for rec in await acct.fetch(mb.id, (await acct.snapshot(mb.id)).uids):
            with acct.open_message(rec) as fh:
                out.append(fh.read())
        return out


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


def counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


@pytest.fixture
async def env(bus: Bus, tmp_path: Path) -> AsyncIterator[Env]:
    # The durable consumer without its backoff list, so a NAK's delay is the one the
    # consumer asks for (seconds, not minutes); restored afterwards.
    config = delivery_consumer(TEST_LIMITS)
    config.backoff = None
    await bus.js.delete_consumer(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)
    await bus.js.add_consumer(names.STREAM_INBOUND, config)
    directory = await Directory.open(bus.js)
    await directory.add_domain("example.org")
    alice = await directory.add_user("alice@example.org", "password-alice")
    bob = await directory.add_user("bob@example.org", "password-bob")
    await directory.add_alias("team@example.org", ["alice@example.org", "bob@example.org"])
    await directory.add_alias("fwd@example.org", ["alice@example.org", "someone@remote.example"])
    store = await MailStore.open(tmp_path / "mail")
    consumer = DeliveryConsumer(
        bus,
        directory,
        store,
        batch=64,
        max_deliver=20,
        retry_delay=0.2,
        quota_retry=0.2,
        unknown_retry=0.2,
        unknown_attempts=3,
    )
    consumer.probe_interval = 0.1
    stopping = asyncio.Event()
    task = asyncio.create_task(consumer.run(stopping))
    await eventually(lambda: _true(consumer.running))
    yield Env(bus, directory, store, consumer, alice, bob)
    stopping.set()
    await asyncio.wait_for(task, 30)
    await store.close()
    await directory.close()
    await bus.js.delete_consumer(names.STREAM_INBOUND, names.CONSUMER_DELIVERY)
    await declare_all(bus.js, TEST_LIMITS)


async def _true(value: bool) -> bool:
    return value


async def test_delivers_every_local_recipient_once_then_acks(env: Env) -> None:
    forwarded_before = counter("postern_deliveries_total", outcome="forwarded")
    unknown_before = counter("postern_deliveries_total", outcome="unknown_recipient")
    # alice is reached three ways (plus tag, alias, alias with a remote target): one copy.
    msg = await env.publish(
        ["alice+news@example.org", "team@example.org", "fwd@example.org", "gone@example.org"]
    )
    await eventually(lambda: _backlog_is(env, 0))
    (a,) = await env.inbox(env.alice)
    (b,) = await env.inbox(env.bob)
    assert a.endswith(BODY) and b.endswith(BODY)
    # RFC 5321 §4.4: the final delivery adds Return-Path.
    assert a.startswith(
        b"Return-Path: <sender@remote.example>\r\nDelivered-To: alice@example.org\r\n"
    )
    assert b"Delivered-To: bob@example.org\r\n" in b
    assert counter("postern_deliveries_total", outcome="forwarded") == forwarded_before + 1
    # the alias's remote target waits on the outbound stream for the relay
    # (read, not consumed: the relay's durable is the stream's one consumer)
    out = await env.bus.js.get_msg(
        names.STREAM_OUTBOUND, seq=1, subject=names.SUBJECT_OUTBOUND, next=True
    )
    fwd = decode_mail(out.data or b"")
    assert fwd.recipients == ["someone@remote.example"]
    assert fwd.mail_from == "sender@remote.example"
    assert fwd.id == f"{msg.id}.fwd"
    assert fwd.body == BODY
    assert counter("postern_deliveries_total", outcome="unknown_recipient") == unknown_before + 1
    # The unknown address did not vanish: it is a dead letter; the retries that preceded
    # it did not deliver alice or bob twice.
    (dead,) = await env.dead()
    assert (dead.reason, dead.recipients, dead.message_id) == (
        "unknown_recipient",
        ["gone@example.org"],
        msg.id,
    )
    assert len(await env.inbox(env.alice)) == 1 and len(await env.inbox(env.bob)) == 1
    acct = await env.store.account(env.alice.account_id)
    inbox = await acct.mailbox("INBOX")
    (rec,) = await acct.fetch(inbox.id, [1])
    assert rec.internal_date == pytest.approx(msg.received_at)


async def _backlog_is(env: Env, n: int) -> bool:
    return await env.backlog() == n


async def test_redelivered_message_is_stored_once(env: Env) -> None:
    mid = new_message_id()
    # Two bus messages carrying the same mail (a replayed publish outside the dedup window).
    await env.publish(["alice@example.org"], mid=mid)
    await eventually(lambda: _backlog_is(env, 0))
    await env.publish(["alice@example.org"], mid=mid)
    await eventually(lambda: _backlog_is(env, 0))
    assert len(await env.inbox(env.alice)) == 1


async def test_spam_goes_to_junk(env: Env) -> None:
    junk_before = counter("postern_deliveries_total", outcome="junk")
    await env.publish(["bob@example.org"], spam=True)
    await eventually(lambda: _backlog_is(env, 0))
    assert await env.inbox(env.bob) == []
    (j,) = await env.inbox(env.bob, "Junk")
    assert j.endswith(BODY)
    acct = await env.store.account(env.bob.account_id)
    junk = await acct.mailbox("Junk")
    (rec,) = await acct.fetch(junk.id, [1])
    assert "$Junk" in rec.flags
    assert counter("postern_deliveries_total", outcome="junk") == junk_before + 1


async def test_poison_is_terminated_and_the_consumer_goes_on(env: Env) -> None:
    before = {
        r: counter("postern_delivery_terminated_total", reason=r)
        for r in ("schema", "body_missing")
    }
    await env.publish_raw(b"this is not a frame")
    header = {"v": 99, "id": "x", "mail_from": "", "recipients": ["alice@example.org"], "size": 0}
    await env.publish_raw(json.dumps(header).encode() + b"\n")
    missing = MailMessage(
        id=new_message_id(),
        mail_from="a@remote.example",
        recipients=["alice@example.org"],
        size=10,
        body_ref="mail.inbound.nonexistent",
    )
    await env.publish_raw(encode_mail(missing))
    await env.publish(["alice@example.org"])
    await eventually(lambda: _backlog_is(env, 0))
    assert len(await env.inbox(env.alice)) == 1
    assert counter("postern_delivery_terminated_total", reason="schema") == before["schema"] + 2
    assert (
        counter("postern_delivery_terminated_total", reason="body_missing")
        == before["body_missing"] + 1
    )
    assert env.consumer.running
    # An operator can still see them: the raw bytes are kept as dead letters.
    dead = await env.dead()
    assert sorted(d.reason for d in dead) == ["body_missing", "poison", "poison"]
    assert b"this is not a frame" in [d.payload for d in dead]
    (gone,) = [d for d in dead if d.reason == "body_missing"]
    assert gone.message_id == missing.id and gone.recipients == ["alice@example.org"]


async def test_claim_checked_body_is_delivered_and_dropped(env: Env) -> None:
    big = BODY + b"x" * (700 * 1024) + b"\r\n"
    msg = await env.publish(["bob@example.org"], body=big)
    assert msg.body_ref is not None
    await eventually(lambda: _backlog_is(env, 0))
    (b,) = await env.inbox(env.bob)
    assert b.endswith(big)
    bodies = await env.bus.js.object_store(names.OBJ_BODIES)

    async def dropped() -> bool:
        try:
            await bodies.get(msg.body_ref or "")
        except Exception:
            return True
        return False

    await eventually(dropped)


async def test_full_mailbox_defers_until_there_is_room(env: Env) -> None:
    await env.directory.set_quota("alice@example.org", quota_bytes=0, quota_messages=1)
    await env.publish(["alice@example.org"])
    await eventually(lambda: _backlog_is(env, 0))
    await env.publish(["alice@example.org", "bob@example.org"])
    await eventually(lambda: _inbox_len(env, env.bob, 1))
    # alice is full: the bus message stays (nacked with a delay), bob's copy is in.
    await asyncio.sleep(1.0)
    assert await env.backlog() == 1
    assert len(await env.inbox(env.alice)) == 1
    await env.directory.set_quota("alice@example.org", quota_bytes=0, quota_messages=5)
    await eventually(lambda: _backlog_is(env, 0))
    assert len(await env.inbox(env.alice)) == 2
    assert len(await env.inbox(env.bob)) == 1  # the retry did not deliver bob twice


async def _inbox_len(env: Env, user: User, n: int) -> bool:
    return len(await env.inbox(user)) == n


async def test_full_mailbox_is_dead_lettered_after_the_last_attempt(env: Env) -> None:
    env.consumer.settler.max_deliver = 3
    before = counter("postern_delivery_dead_lettered_total", reason="quota")
    await env.directory.set_quota("bob@example.org", quota_bytes=10, quota_messages=0)
    big = BODY + b"x" * (700 * 1024) + b"\r\n"  # claim-checked: the body must survive
    msg = await env.publish(["bob@example.org", "alice@example.org"], body=big)
    assert msg.body_ref is not None
    await eventually(lambda: _backlog_is(env, 0))
    assert counter("postern_delivery_dead_lettered_total", reason="quota") == before + 1
    assert await env.inbox(env.bob) == []
    assert len(await env.inbox(env.alice)) == 1
    (dead,) = await env.dead()
    assert (dead.reason, dead.recipients, dead.message_id) == (
        "quota",
        ["bob@example.org"],
        msg.id,
    )
    frame = decode_mail(dead.payload)
    assert frame.id == msg.id and frame.body_ref == msg.body_ref
    bodies = await env.bus.js.object_store(names.OBJ_BODIES)
    assert (await bodies.get(msg.body_ref)).data == big


async def test_disk_full_naks_pauses_and_loses_nothing(env: Env) -> None:
    acct: Account = await env.store.account(env.alice.account_id)
    adir = env.store.account_dir(acct.id)
    with sqlite3.connect(index_path(adir)) as conn:
        (first_free,) = conn.execute("SELECT next_file_id FROM state").fetchone()
    # The kernel's ENOSPC for the next message file.
    target = message_path(adir, first_free)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to("/dev/full")
    await env.publish(["alice@example.org"])
    await eventually(lambda: _true(env.consumer.disk_full))
    assert await env.backlog() == 1  # not acked
    assert (await acct.usage())[1] == 0
    # The failed write removed the link, the probe finds room, the retry delivers.
    await eventually(lambda: _backlog_is(env, 0))
    await eventually(lambda: _true(not env.consumer.disk_full))
    (a,) = await env.inbox(env.alice)
    assert a.endswith(BODY)


async def test_failure_on_the_last_attempt_requeues_instead_of_sticking(env: Env) -> None:
    env.consumer.settler.max_deliver = 1  # the first failure is already the last attempt
    before = counter("postern_delivery_requeued_total")
    acct: Account = await env.store.account(env.bob.account_id)
    adir = env.store.account_dir(acct.id)
    with sqlite3.connect(index_path(adir)) as conn:
        (first_free,) = conn.execute("SELECT next_file_id FROM state").fetchone()
    target = message_path(adir, first_free)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to("/dev/full")
    await env.publish(["bob@example.org"])
    await eventually(lambda: _backlog_is(env, 0))
    await eventually(lambda: _inbox_len(env, env.bob, 1))
    assert counter("postern_delivery_requeued_total") == before + 1


def _plant_write_error(env: Env, acct: Account) -> Path:
    """The next message file of ``acct`` is a directory: every write fails with EISDIR, a
    temporary failure that is not a full disk."""
    adir = env.store.account_dir(acct.id)
    with sqlite3.connect(index_path(adir)) as conn:
        (first_free,) = conn.execute("SELECT next_file_id FROM state").fetchone()
    target = message_path(adir, first_free)
    target.mkdir(parents=True)
    return target


async def test_endless_failure_is_dead_lettered_after_the_requeue_limit(env: Env) -> None:
    env.consumer.settler.max_deliver = 1  # every failure is the last attempt: requeued at once
    env.consumer.settler.max_requeues = 2
    requeued = counter("postern_delivery_requeued_total")
    acct: Account = await env.store.account(env.bob.account_id)
    target = _plant_write_error(env, acct)
    msg = await env.publish(["bob@example.org", "alice@example.org"])
    await eventually(lambda: _dead_count(env, 1))
    await eventually(lambda: _backlog_is(env, 0))
    assert counter("postern_delivery_requeued_total") == requeued + 2
    (dead,) = await env.dead()
    assert (dead.reason, dead.recipients, dead.message_id) == (
        "failed",
        ["bob@example.org"],
        msg.id,
    )
    assert "IsADirectoryError" in dead.detail
    assert decode_mail(dead.payload).recipients == ["bob@example.org", "alice@example.org"]
    assert len(await env.inbox(env.alice)) == 1  # delivered once, whatever the requeues
    assert await env.inbox(env.bob) == []
    target.rmdir()


async def _dead_count(env: Env, n: int) -> bool:
    return len(await env.dead()) == n


async def test_recipient_missing_from_a_lagging_watch_is_found_afresh(env: Env) -> None:
    # The store's copy of the directory stands still (a watch that lags behind the
    # filter's): carol exists on NATS, so the filter accepted mail for her.
    env.consumer.directory = await Directory.open(env.bus.js, watch=False)
    carol = await env.directory.add_user("carol@example.org", "password-carol")
    assert env.consumer.directory.user("carol@example.org") is None
    await env.publish(["carol@example.org"])
    await eventually(lambda: _inbox_len(env, carol, 1))
    await eventually(lambda: _backlog_is(env, 0))
    assert await env.dead() == []


async def test_unknown_recipient_is_retried_until_the_user_exists(env: Env) -> None:
    env.consumer.settler.unknown_attempts = 1000  # long enough for the user to be added
    env.consumer.settler.unknown_retry = 0.3
    await env.publish(["late@example.org", "alice@example.org"])
    # alice is delivered at the first attempt; the message stays for late@.
    await eventually(lambda: _inbox_len(env, env.alice, 1))
    await asyncio.sleep(0.5)
    assert await env.backlog() == 1
    late = await env.directory.add_user("late@example.org", "password-late")
    await eventually(lambda: _inbox_len(env, late, 1))
    await eventually(lambda: _backlog_is(env, 0))
    assert len(await env.inbox(env.alice)) == 1
    assert await env.dead() == []


class _LogRecorder:
    """Stands in for the delivery module's logger; keeps the error-level lines."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.errors: list[tuple[str, dict[str, Any]]] = []

    def error(self, event: str, **kw: Any) -> None:
        self.errors.append((event, kw))
        self.inner.error(event, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_removed_recipient_is_dead_lettered_and_logged(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = _LogRecorder(dead_module.log)
    monkeypatch.setattr(dead_module, "log", recorder)
    # bob is removed after the filter's 250.
    await env.directory.remove_user("bob@example.org")
    big = BODY + b"y" * (600 * 1024) + b"\r\n"
    msg = await env.publish(["bob@example.org", "alice@example.org"], body=big)
    await eventually(lambda: _backlog_is(env, 0))
    (dead,) = await env.dead()
    assert (dead.reason, dead.recipients) == ("unknown_recipient", ["bob@example.org"])
    assert "after 3 attempts" in dead.detail  # unknown_attempts, then given up
    assert len(await env.inbox(env.alice)) == 1
    events = [(e, kw.get("reason"), kw.get("id")) for e, kw in recorder.errors]
    assert ("mail dead-lettered", "unknown_recipient", msg.id) in events
    # The claim-checked body stays for the dead letter.
    bodies = await env.bus.js.object_store(names.OBJ_BODIES)
    assert (await bodies.get(msg.body_ref or "")).data == big


async def test_full_dead_stream_keeps_the_mail_on_the_inbound_stream(env: Env) -> None:
    failures = counter("postern_delivery_dead_letter_failures_total")
    js = env.bus.js
    config = (await js.stream_info(names.STREAM_DEAD)).config
    config.max_bytes, config.max_msg_size = 8 * 1024, 4 * 1024
    await js.update_stream(config)
    try:
        # Fill the dead stream to its byte budget: discard-new refuses what comes next.
        with pytest.raises(APIError):
            for _ in range(100):
                await js.publish(names.SUBJECT_DEAD, b"f" * 1024)
        filler = len(await env.dead())
        await env.publish(["ghost@example.org"])
        await eventually(
            lambda: _true(counter("postern_delivery_dead_letter_failures_total") > failures)
        )
        await asyncio.sleep(0.5)
        assert await env.backlog() == 1  # not acked: still waiting on the inbound stream
        assert len(await env.dead()) == filler  # nothing old was discarded for it
    finally:
        await js.purge_stream(names.STREAM_DEAD)
        config.max_bytes, config.max_msg_size = TEST_LIMITS.dead_max_bytes, MAX_MSG_SIZE
        await js.update_stream(config)
    # With room again, the next attempt stores the dead letter and only then acks.
    await eventually(lambda: _dead_count(env, 1))
    await eventually(lambda: _backlog_is(env, 0))
    (dead,) = await env.dead()
    assert dead.recipients == ["ghost@example.org"]


async def test_retried_dead_letter_is_delivered_once_there_is_room(env: Env) -> None:
    env.consumer.settler.max_deliver = 2
    await env.directory.set_quota("bob@example.org", quota_bytes=10, quota_messages=0)
    big = BODY + b"q" * (600 * 1024) + b"\r\n"
    msg = await env.publish(["bob@example.org", "team@example.org"], body=big)
    await eventually(lambda: _dead_count(env, 1))
    await eventually(lambda: _backlog_is(env, 0))
    assert len(await env.inbox(env.alice)) == 1
    # The operator raises the quota and retries (`mailctl queue dead retry ID`).
    await env.directory.set_quota("bob@example.org", quota_bytes=0, quota_messages=0)
    (dead,) = await env.dead()
    assert await retry_dead(env.bus.js, dead, directory=env.directory) == ["bob@example.org"]
    await eventually(lambda: _inbox_len(env, env.bob, 1))
    await eventually(lambda: _backlog_is(env, 0))
    assert await env.dead() == []
    (b,) = await env.inbox(env.bob)
    assert b.endswith(big)
    assert len(await env.inbox(env.alice)) == 1  # alice (via team@) was not delivered twice
    bodies = await env.bus.js.object_store(names.OBJ_BODIES)

    async def dropped() -> bool:
        try:
            await bodies.get(msg.body_ref or "")
        except Exception:
            return True
        return False

    await eventually(dropped)


class _WarnRecorder:
    """Stands in for the settlement logger; keeps the warning-level lines with a time."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.warnings: list[tuple[float, str, dict[str, Any]]] = []

    def warning(self, event: str, **kw: Any) -> None:
        self.warnings.append((asyncio.get_running_loop().time(), event, kw))
        self.inner.warning(event, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


async def test_full_outbound_stream_defers_the_forward_without_a_tight_loop(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mailcore.bus.setup import stream_configs
    from services.store import settlement

    recorder = _WarnRecorder(settlement.log)
    monkeypatch.setattr(settlement, "log", recorder)
    env.consumer.settler.retry_delay = 0.5
    (outbound,) = [c for c in stream_configs(TEST_LIMITS) if c.name == names.STREAM_OUTBOUND]
    outbound.max_bytes = 1  # nothing fits: the forward is refused
    await env.bus.js.update_stream(outbound)
    try:
        msg = await env.publish(["fwd@example.org"])

        def refusals() -> list[float]:
            return [t for t, e, _ in recorder.warnings if e.startswith("remote alias targets")]

        await eventually(lambda: _true(len(refusals()) >= 3))
        first, second, third = refusals()[:3]
        # Each retry waits for the nak's delay: no tight loop.
        assert second - first >= 0.45 and third - second >= 0.45
        _, _, kw = next(w for w in recorder.warnings if w[1].startswith("remote alias"))
        assert kw["targets"] == ["someone@remote.example"] and kw["id"] == msg.id
        assert "maximum bytes" in kw["error"].lower()
        assert len(await env.inbox(env.alice)) == 1  # the local copy is not held back
    finally:
        outbound.max_bytes = TEST_LIMITS.outbound_max_bytes
        await env.bus.js.update_stream(outbound)
    await eventually(lambda: _backlog_is(env, 0))
    out = await env.bus.js.get_msg(
        names.STREAM_OUTBOUND, seq=1, subject=names.SUBJECT_OUTBOUND, next=True
    )
    assert decode_mail(out.data or b"").id == f"{msg.id}.fwd"
    assert len(await env.inbox(env.alice)) == 1  # redelivery stored nothing twice
