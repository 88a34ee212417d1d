"""``mailctl queue``: the mail waiting on NATS, and the dead letters.

``queue status`` counts the inbound, outbound and dead-letter streams. ``queue dead list``
shows each dead letter (id = its sequence in ``MAIL_DEAD``, age, reason, recipients).
``queue dead retry`` publishes a dead letter's frame to the inbound stream again — for
the recipients it names, or the ones given with ``--to`` — and removes it;
``queue dead drop`` removes it for good, with its claim-checked body.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TypeVar

import click
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from mailcore.bus import names
from mailcore.bus.deadletter import DeadLetter, get_dead, iter_dead
from mailcore.bus.schemas import MAIL_SCHEMA_VERSION, SchemaError, decode_mail, encode_mail
from mailcore.directory import Directory
from services.ctl.nats_cli import CtlError, fail, nats_option, open_bus, run
from services.ctl.status import approx

T = TypeVar("T")
QUEUES = (
    ("inbound", names.STREAM_INBOUND, "waiting for the store"),
    ("outbound", names.STREAM_OUTBOUND, "waiting for the relay"),
    ("dead", names.STREAM_DEAD, "dead letters: mailctl queue dead list"),
)


def age(seconds: float) -> str:
    s = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


# --- the work, on a connected JetStream context (also used by tests) ---------------------
async def queue_counts(js: JetStreamContext) -> dict[str, tuple[int, int] | None]:
    """Messages and bytes per stream; None for a stream that was never declared."""
    out: dict[str, tuple[int, int] | None] = {}
    for label, stream, _ in QUEUES:
        try:
            info = await js.stream_info(stream)
        except NotFoundError:
            out[label] = None
            continue
        out[label] = (int(info.state.messages), int(info.state.bytes))
    return out


async def list_dead(js: JetStreamContext) -> list[DeadLetter]:
    try:
        return [letter async for letter in iter_dead(js)]
    except NotFoundError:
        return []


async def find_dead(js: JetStreamContext, ident: str) -> DeadLetter:
    """A dead letter by its number, or by the mail id when exactly one carries it."""
    if ident.isdigit():
        letter = await get_dead(js, int(ident))
        if letter is None:
            raise CtlError(f"no dead letter {ident}")
        return letter
    found = [d for d in await list_dead(js) if d.message_id == ident]
    if not found:
        raise CtlError(f"no dead letter {ident}")
    if len(found) > 1:
        seqs = ", ".join(str(d.seq) for d in found)
        raise CtlError(f"{ident} is in dead letters {seqs}: give the number")
    return found[0]


async def _body_shared(js: JetStreamContext, letter: DeadLetter, ref: str) -> bool:
    """True when another dead letter names the same claim-checked body."""
    for other in await list_dead(js):
        if other.seq == letter.seq:
            continue
        try:
            if decode_mail(other.payload).body_ref == ref:
                return True
        except SchemaError:
            continue
    return False


async def retry_dead(
    js: JetStreamContext,
    letter: DeadLetter,
    *,
    to: list[str] | None = None,
    directory: Directory | None = None,
) -> list[str]:
    """Publish the letter's mail to the inbound stream for ``to`` (else the recipients it
    names), then remove the letter. With ``directory`` every recipient must resolve.
    Returns the recipients."""
    if not letter.retryable:
        raise CtlError(
            f"dead letter {letter.seq} ({letter.reason}) cannot be retried; "
            f"see it with `mailctl queue dead list`, remove it with `mailctl queue dead drop`"
        )
    try:
        mail = decode_mail(letter.payload)
    except SchemaError as exc:
        raise CtlError(f"dead letter {letter.seq} is not a mail frame: {exc}") from None
    rcpts = list(to) if to else list(letter.recipients)
    if not rcpts:
        raise CtlError(f"dead letter {letter.seq} names no recipients: give --to ADDRESS")
    if directory is not None:
        unknown = [r for r in rcpts if not directory.resolve(r)]
        if unknown:
            raise CtlError(
                f"dead letter {letter.seq}: {', '.join(unknown)} not in the directory "
                "(add the user or alias, or give --to ADDRESS)"
            )
    mail.recipients = rcpts
    bodies = await js.object_store(names.OBJ_BODIES)
    if mail.body_ref is not None:
        ref = mail.body_ref
        try:
            data = (await bodies.get(ref)).data if await _body_shared(js, letter, ref) else None
        except NotFoundError:
            raise CtlError(f"dead letter {letter.seq}: its body {ref} is gone") from None
        if data is not None:
            # Another dead letter needs this body too: the retry gets its own copy, which
            # the store deletes after delivery.
            mail.body_ref = f"{ref}.retry{letter.seq}"
            await bodies.put(mail.body_ref, data)
    headers = {
        names.HDR_MSG_ID: f"{mail.id}.retry.{letter.seq}",
        names.HDR_SCHEMA: str(MAIL_SCHEMA_VERSION),
    }
    try:
        await js.publish(names.SUBJECT_INBOUND, encode_mail(mail), headers=headers)
    except NatsError as exc:
        raise CtlError(f"dead letter {letter.seq} not requeued: {_why(exc)}") from None
    await js.delete_msg(names.STREAM_DEAD, letter.seq)
    return rcpts


def _why(exc: Exception) -> str:
    return getattr(exc, "description", None) or f"{type(exc).__name__}: {exc}"


async def _guarded(coro: Awaitable[T]) -> T:
    """NATS failures as one line."""
    try:
        return await coro
    except NatsError as exc:
        raise CtlError(f"NATS: {_why(exc)}") from None


async def drop_dead(js: JetStreamContext, letter: DeadLetter) -> None:
    """Remove a dead letter, and its claim-checked body unless another letter needs it."""
    await js.delete_msg(names.STREAM_DEAD, letter.seq)
    try:
        ref = decode_mail(letter.payload).body_ref
    except SchemaError:
        return
    if ref is not None and not await _body_shared(js, letter, ref):
        bodies = await js.object_store(names.OBJ_BODIES)
        try:
            await bodies.delete(ref)
        except NotFoundError:
            pass


# --- the commands ------------------------------------------------------------------------
@click.group()
def queue() -> None:
    """Mail queued on NATS: backlog and dead letters."""


@queue.command("status")
@nats_option
def queue_status(nats_url: str) -> None:
    """Messages and bytes waiting in the inbound, outbound and dead-letter streams."""

    async def go() -> dict[str, tuple[int, int] | None]:
        bus = await open_bus(nats_url)
        try:
            return await _guarded(queue_counts(bus.js))
        finally:
            await bus.close()

    counts = run(go)
    for label, _, what in QUEUES:
        c = counts[label]
        if c is None:
            click.echo(f"{label:<9} not declared yet")
            continue
        click.echo(f"{label:<9} {c[0]:>7} messages  {approx(c[1]):>10}  ({what})")


@queue.group("dead")
def dead() -> None:
    """Dead letters: accepted mail the store could not deliver."""


@dead.command("list")
@nats_option
def dead_list(nats_url: str) -> None:
    """Every dead letter: id, age, reason, recipients, sender, mail id, detail."""

    async def go() -> list[DeadLetter]:
        bus = await open_bus(nats_url)
        try:
            return await _guarded(list_dead(bus.js))
        finally:
            await bus.close()

    letters = run(go)
    if not letters:
        click.echo("no dead letters")
        return
    now = time.time()
    for d in letters:
        try:
            sender = decode_mail(d.payload).mail_from or "<>"
        except SchemaError:
            sender = "?"
        rcpts = ", ".join(d.recipients) or "-"
        click.echo(
            f"{d.seq}  {age(now - d.dead_at)}  {d.reason}  to {rcpts}  from {sender}"
            f"  id {d.message_id or '-'}" + (f"  ({d.detail})" if d.detail else "")
        )


@dataclass
class _Outcome:
    done: list[str]
    failed: list[str]


@dead.command("retry")
@click.argument("ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="retry every dead letter that can be")
@click.option(
    "--to",
    "to",
    multiple=True,
    help="deliver to this address instead of the recipients the letter names (repeatable)",
)
@click.option("--force", is_flag=True, help="publish even when a recipient is not in the directory")
@nats_option
def dead_retry(
    ids: tuple[str, ...], every: bool, to: tuple[str, ...], force: bool, nats_url: str
) -> None:
    """Deliver dead letters again (by id, or --all) and remove them from the dead stream."""
    if bool(ids) == every:
        fail("give dead letter ids or --all (not both)")

    async def go() -> _Outcome:
        bus = await open_bus(nats_url)
        try:
            return await _guarded(work(bus.js))
        finally:
            await bus.close()

    async def work(js: JetStreamContext) -> _Outcome:
        directory = None if force else await Directory.open(js, watch=False)
        out = _Outcome([], [])
        letters: list[DeadLetter] = []
        if every:
            letters = await list_dead(js)
        for ident in ids:
            try:
                letters.append(await find_dead(js, ident))
            except CtlError as exc:
                out.failed.append(str(exc))
        for letter in letters:
            try:
                rcpts = await retry_dead(js, letter, to=list(to) or None, directory=directory)
            except CtlError as exc:
                out.failed.append(str(exc))
                continue
            out.done.append(f"dead letter {letter.seq} requeued for {', '.join(rcpts)}")
        return out

    outcome = run(go)
    for line in outcome.done:
        click.echo(line)
    if every and not outcome.done and not outcome.failed:
        click.echo("no dead letters")
    if len(outcome.failed) == 1 and not outcome.done:
        fail(outcome.failed[0])
    for line in outcome.failed:
        click.echo(f"not retried: {line}")
    if outcome.failed:
        fail(f"{len(outcome.failed)} dead letter(s) not retried")


@dead.command("drop")
@click.argument("ids", nargs=-1, required=True)
@nats_option
def dead_drop(ids: tuple[str, ...], nats_url: str) -> None:
    """Remove dead letters for good (with their claim-checked bodies)."""

    async def go() -> list[DeadLetter]:
        bus = await open_bus(nats_url)
        try:
            return await _guarded(work(bus.js))
        finally:
            await bus.close()

    async def work(js: JetStreamContext) -> list[DeadLetter]:
        letters = [await find_dead(js, i) for i in ids]
        for letter in letters:
            await drop_dead(js, letter)
        return letters

    for letter in run(go):
        click.echo(
            f"dead letter {letter.seq} dropped ({letter.reason}, {letter.message_id or '-'})"
        )
