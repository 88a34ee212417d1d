"""``mailctl queue list|show|retry|delete|bounce``: the outbound queue (``MAIL_OUTBOUND``)
with what the relay recorded for each message (``RELAY_QUEUE``): attempts, the next
attempt, the last remote answer, recipients done and pending.

``retry`` and ``bounce`` publish the message's frame again (fresh, so the relay takes it
at once instead of at its next scheduled attempt) and delete the old copy; the relay then
sends only to the recipients still pending (``bounce``: returns them to the sender with a
DSN). A message a relay is delivering right now is left alone: a retry records its
destinations in flight, and a first attempt writes no record at all (a KV write per
message costs the relay's throughput), so a message without a record is asked about of
the relay consumer instead: handed to a relay and not yet acked (work-queue retention:
an acked message has left the stream) means a relay has it; not handed out yet means it
is due now already, and ``retry`` leaves it where it is. ``delete`` removes a
message, its record and its body for good, without telling the sender.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import click
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from mailcore.bus import names, outbound_state
from mailcore.bus.outbound_state import QueueState
from mailcore.bus.schemas import MAIL_SCHEMA_VERSION, MailMessage, SchemaError, decode_mail
from services.ctl.nats_cli import CtlError, fail, nats_option, open_bus, run
from services.ctl.queue import age

T = TypeVar("T")


@dataclass(slots=True)
class Entry:
    seq: int
    mail: MailMessage
    state: QueueState | None
    queued_at: float

    @property
    def pending(self) -> list[str]:
        return self.state.pending() if self.state else list(self.mail.recipients)


async def entries(js: JetStreamContext) -> list[Entry]:
    """Every message on the outbound stream, oldest first, with the relay's record."""
    kv = await js.key_value(names.KV_RELAY)
    out: list[Entry] = []
    seq = 1
    while True:
        try:
            raw = await js.get_msg(
                names.STREAM_OUTBOUND, seq=seq, subject=names.SUBJECT_OUTBOUND, next=True
            )
        except NotFoundError:
            return out
        seq = int(raw.seq or seq) + 1
        try:
            mail = decode_mail(raw.data or b"")
        except SchemaError:
            continue
        state = await outbound_state.load(kv, mail.id)
        at = raw.time.timestamp() if raw.time else mail.received_at
        out.append(Entry(int(raw.seq or 0), mail, state, at))


async def find(js: JetStreamContext, ident: str) -> Entry:
    """A queued message by mail id (as ``list`` shows it) or stream sequence."""
    for e in await entries(js):
        if e.mail.id == ident or str(e.seq) == ident:
            return e
    raise CtlError(f"no outbound message {ident}")


async def taken(js: JetStreamContext, seq: int) -> bool:
    """Whether the relay consumer has handed stream copy ``seq`` out and not had it acked.

    The consumer delivers in stream order (one durable pull consumer), so every copy up to
    its last delivered sequence has been handed out; one still on the work-queue stream is
    unacked: in a relay's hands, or nak'd for a retry (which leaves a record first)."""
    info = await js.consumer_info(names.STREAM_OUTBOUND, names.CONSUMER_RELAY)
    delivered = int(info.delivered.stream_seq or 0) if info.delivered else 0
    acked = int(info.ack_floor.stream_seq or 0) if info.ack_floor else 0
    return acked < seq <= delivered


async def _republish(js: JetStreamContext, e: Entry, *, bounce: bool) -> bool:
    """Publish ``e`` again for the relay to take now; False when it is due now already."""
    kv = await js.key_value(names.KV_RELAY)
    if e.state is None:
        # First attempt: no record to look at (see the module's docstring).
        if await taken(js, e.seq):
            raise CtlError(f"{e.mail.id}: a relay is delivering it now; try again in a moment")
        if not bounce:
            return False  # not handed out yet: the relay takes it as soon as it has room
    state = e.state or QueueState(
        id=e.mail.id,
        sender=e.mail.mail_from,
        recipients=list(e.mail.recipients),
        received_at=e.mail.received_at,
    )
    if state.inflight:
        raise CtlError(f"{e.mail.id}: a relay is delivering it now; try again in a moment")
    state.next_attempt = time.time()
    state.bounce_requested = state.bounce_requested or bounce
    try:
        # Only if no relay wrote the record since it was read (a retry it just started,
        # or a first attempt that just deferred): else both would act on the message.
        await outbound_state.claim(kv, state)
    except outbound_state.StateChanged:
        raise CtlError(
            f"{e.mail.id}: a relay is delivering it now; try again in a moment"
        ) from None
    raw = await js.get_msg(names.STREAM_OUTBOUND, seq=e.seq)
    headers = {
        names.HDR_MSG_ID: f"{e.mail.id}.retry.{e.seq}",
        names.HDR_SCHEMA: str(MAIL_SCHEMA_VERSION),
        names.HDR_RELAY_STATE: "1",
    }
    await js.publish(names.SUBJECT_OUTBOUND, raw.data or b"", headers=headers)
    await js.delete_msg(names.STREAM_OUTBOUND, e.seq)
    return True


async def retry(js: JetStreamContext, e: Entry) -> None:
    await _republish(js, e, bounce=False)


async def bounce(js: JetStreamContext, e: Entry) -> None:
    await _republish(js, e, bounce=True)


async def delete(js: JetStreamContext, e: Entry) -> None:
    await js.delete_msg(names.STREAM_OUTBOUND, e.seq)
    kv = await js.key_value(names.KV_RELAY)
    await outbound_state.forget(kv, e.mail.id)
    if e.mail.body_ref is not None:
        bodies = await js.object_store(names.OBJ_BODIES)
        try:
            await bodies.delete(e.mail.body_ref)
        except NotFoundError:
            pass


def _when(at: float, now: float) -> str:
    if at <= 0:
        return "now"
    return "now" if at <= now else f"in {age(at - now)}"


def _line(e: Entry, now: float) -> str:
    s = e.state
    attempts = s.attempts if s else 0
    nxt = _when(s.next_attempt, now) if s else "now"
    answer = (s.last_answer if s else "") or "-"
    return (
        f"{e.mail.id}  {age(now - e.mail.received_at)}  from {e.mail.mail_from or '<>'}"
        f"  to {', '.join(e.pending) or '-'}  attempts {attempts}  next {nxt}  last: {answer}"
    )


async def _with_js(url: str, fn: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    bus = await open_bus(url)
    try:
        return await fn(bus.js)
    except NotFoundError as exc:
        raise CtlError(f"not found: {exc}") from None
    finally:
        await bus.close()


@click.command("list")
@nats_option
def queue_list(nats_url: str) -> None:
    """Outbound mail waiting for the relay: id, age, sender, pending recipients, attempts,
    next attempt, last remote answer."""
    found: list[Entry] = run(lambda: _with_js(nats_url, entries))
    if not found:
        click.echo("outbound queue is empty")
        return
    now = time.time()
    for e in found:
        click.echo(_line(e, now))


@click.command("show")
@click.argument("ident")
@nats_option
def queue_show(ident: str, nats_url: str) -> None:
    """One outbound message in full."""
    e: Entry = run(lambda: _with_js(nats_url, lambda js: find(js, ident)))
    now = time.time()
    s = e.state
    rows = [
        ("id", e.mail.id),
        ("stream seq", str(e.seq)),
        ("from", e.mail.mail_from or "<>"),
        ("received", f"{age(now - e.mail.received_at)} ago"),
        ("size", str(e.mail.size)),
        ("recipients", ", ".join(e.mail.recipients)),
        ("pending", ", ".join(e.pending) or "-"),
        ("attempts", str(s.attempts if s else 0)),
        ("next attempt", _when(s.next_attempt, now) if s else "now"),
        ("last answer", (s.last_answer if s else "") or "-"),
    ]
    if s:
        rows += [(f"  delivered {r}", "") for r in s.done]
        rows += [(f"  deferred {r}", a) for r, a in s.deferred.items()]
        rows += [(f"  bounced {r}", a) for r, a in s.bounced.items()]
        if s.warned:
            rows.append(("delay warning", "sent"))
        if s.inflight:
            rows.append(("in progress", ", ".join(s.inflight)))
    for k, v in rows:
        click.echo(f"{k:<14} {v}".rstrip())


Action = Callable[[JetStreamContext, Entry], Awaitable[None]]


def _act(ident: str, every: bool, nats_url: str, action: Action, verb: str) -> None:
    if bool(ident) == every:
        fail("give a message id or --all (not both)")

    async def work(js: JetStreamContext) -> list[str]:
        targets = await entries(js) if every else [await find(js, ident)]
        done: list[str] = []
        for e in targets:
            try:
                await action(js, e)
            except CtlError as exc:
                click.echo(f"not {verb}: {exc}", err=True)
                continue
            done.append(e.mail.id)
        return done

    done: list[str] = run(lambda: _with_js(nats_url, work))
    for mid in done:
        click.echo(f"{mid} {verb}")
    if every and not done:
        click.echo("nothing to do")


@click.command("retry")
@click.argument("ident", required=False, default="")
@click.option("--all", "every", is_flag=True, help="every outbound message")
@nats_option
def queue_retry(ident: str, every: bool, nats_url: str) -> None:
    """Attempt delivery now (pending recipients only)."""
    _act(ident, every, nats_url, retry, "queued for delivery now")


@click.command("bounce")
@click.argument("ident")
@nats_option
def queue_bounce(ident: str, nats_url: str) -> None:
    """Give up: return the message to its sender with a DSN (pending recipients)."""
    _act(ident, False, nats_url, bounce, "returned to sender")


@click.command("delete")
@click.argument("ident")
@nats_option
def queue_delete(ident: str, nats_url: str) -> None:
    """Remove the message for good, without telling the sender."""
    _act(ident, False, nats_url, delete, "deleted")


def register(group: click.Group) -> None:
    """Add the outbound commands to ``mailctl queue``."""
    for command in (queue_list, queue_show, queue_retry, queue_bounce, queue_delete):
        group.add_command(command)
