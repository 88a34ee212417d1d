"""A sender's resend under a new bus id (it got a 451 although the bus stored the first
copy) is dropped by the store and counted; redeliveries without a Message-ID, or to
another envelope, are not taken for resends."""

from __future__ import annotations

from mailcore.bus.schemas import MailMessage, new_message_id
from services.store.duplicates import RecentDeliveries, fingerprint
from tests.services.store.test_delivery import Env, _backlog_is, counter, eventually
from tests.services.store.test_delivery import env as env  # noqa: PLC0414 (the fixture)

WITH_ID = b"From: a@remote.example\r\nMessage-ID: <resend-1@remote.example>\r\n\r\nsame\r\n"
WITHOUT_ID = b"From: a@remote.example\r\nSubject: ping\r\n\r\nsame\r\n"


def test_fingerprint_ignores_the_filters_trace_fields() -> None:
    def mail(body: bytes, rcpts: list[str]) -> MailMessage:
        m = MailMessage(id=new_message_id(), mail_from="a@remote.example", recipients=rcpts, size=0)
        m.body = body
        return m

    first = mail(b"Received: from x by mx1; 10:00\r\n" + WITH_ID, ["b@example.org"])
    again = mail(b"Received: from x by mx2; 10:01\r\n" + WITH_ID, ["B@example.org"])
    other = mail(WITH_ID, ["c@example.org"])
    assert fingerprint(first) == fingerprint(again) is not None
    assert fingerprint(other) != fingerprint(first)
    assert fingerprint(mail(WITHOUT_ID, ["b@example.org"])) is None
    recent = RecentDeliveries(window=60)
    recent.remember(fingerprint(first), first.id)
    assert recent.resent(fingerprint(again), again.id)
    assert not recent.resent(fingerprint(first), first.id)  # a redelivery, not a resend


async def test_resend_under_a_new_bus_id_is_dropped_and_counted(env: Env) -> None:
    before = counter("postern_delivery_resent_duplicates_total")
    await env.publish(["alice@example.org"], WITH_ID)
    await eventually(lambda: _backlog_is(env, 0))
    await env.publish(["alice@example.org"], WITH_ID)  # new bus id, same message
    await eventually(lambda: _backlog_is(env, 0))
    assert len(await env.inbox(env.alice)) == 1
    assert counter("postern_delivery_resent_duplicates_total") == before + 1
    # both copies in one batch: still one
    await env.publish(["bob@example.org"], WITH_ID)
    await env.publish(["bob@example.org"], WITH_ID)
    await eventually(lambda: _backlog_is(env, 0))
    assert len(await env.inbox(env.bob)) == 1


async def test_equal_messages_without_a_message_id_are_all_delivered(env: Env) -> None:
    await env.publish(["alice@example.org"], WITHOUT_ID)
    await env.publish(["alice@example.org"], WITHOUT_ID)
    await eventually(lambda: _backlog_is(env, 0))
    assert len(await env.inbox(env.alice)) == 2
