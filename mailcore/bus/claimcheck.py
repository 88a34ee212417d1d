"""Claim check: bodies above the inline threshold travel through the Object Store.

NATS refuses payloads above ``max_payload`` (1 MiB by default, and no command-line flag
raises it), so the filter puts a large body in ``MAIL_BODIES`` first and publishes a header
that names it. The consumer fetches it, and deletes it once the message is committed.
"""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError
from nats.js.object_store import ObjectStore

from mailcore.bus import names
from mailcore.bus.bodyput import put_new_object
from mailcore.bus.schemas import MAIL_SCHEMA_VERSION, MailMessage, encode_mail

INLINE_MAX = 512 * 1024


class BodyMissing(LookupError):
    """The header names a body object that is not in the Object Store."""


def body_object_name(msg: MailMessage, subject: str) -> str:
    """One object per published message, so inbound and outbound copies are independent."""
    return f"{subject}.{msg.id}"


async def publish_mail(
    js: JetStreamContext,
    bodies: ObjectStore,
    subject: str,
    msg: MailMessage,
    body: bytes,
    *,
    inline_max: int = INLINE_MAX,
    timeout: float = 10.0,
    bucket: str = names.OBJ_BODIES,
    write_only: bool = False,
) -> js_api.PubAck:
    """Publish and return JetStream's PubAck: only then is the message safe on disk.

    ``Nats-Msg-Id`` is the message id, so a retried publish within the duplicate window
    is stored once. ``write_only`` (the filter): a large body is written to ``bucket``
    without reading anything (mailcore.bus.bodyput: a filter may write bodies, never read
    them); otherwise nats-py's put, which also removes an earlier version's chunks.
    """
    msg.size = len(body)
    if len(body) > inline_max:
        ref = body_object_name(msg, subject)
        if write_only:
            await put_new_object(js, bucket, ref, body)
        else:
            await bodies.put(ref, body)
        msg.body_ref, msg.body = ref, b""
    else:
        msg.body_ref, msg.body = None, body
    headers = {names.HDR_MSG_ID: msg.id, names.HDR_SCHEMA: str(MAIL_SCHEMA_VERSION)}
    return await js.publish(subject, encode_mail(msg), timeout=timeout, headers=headers)


async def load_body(bodies: ObjectStore, msg: MailMessage) -> bytes:
    """The message's bytes, inline or from the Object Store."""
    if msg.body_ref is None:
        return msg.body
    try:
        result = await bodies.get(msg.body_ref)
    except NotFoundError:
        raise BodyMissing(msg.body_ref) from None
    data = result.data or b""
    if len(data) != msg.size:
        raise BodyMissing(f"{msg.body_ref}: {len(data)} bytes, header says {msg.size}")
    return data


async def drop_body(bodies: ObjectStore, msg: MailMessage) -> None:
    """Delete a claim-checked body after the message is committed (missing is fine)."""
    if msg.body_ref is None:
        return
    try:
        await bodies.delete(msg.body_ref)
    except NotFoundError:
        pass
