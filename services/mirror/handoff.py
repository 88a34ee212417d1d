"""The filters' hand-off follows the master: inbound mail the peer's filters put on the
peer's NATS is moved to this store's NATS while this store is master.

Filters publish accepted mail to ``MAIL_INBOUND`` on their own NATS and need no store
(architecture invariant 5). A slave store does not consume its ``MAIL_INBOUND``; the
master's mirror pulls it over the peer link (the durable consumer ``store-delivery``, the
one the peer's store would use) and publishes each message to its own ``MAIL_INBOUND``
with the same ``Nats-Msg-Id`` — claim-checked bodies copied to the local ``MAIL_BODIES``
first — and acks the peer's copy only after the local PubAck. A crash in between
publishes it again: the stream's duplicate window drops it by id, and past the window
the store's delivery keys (message id + account, replicated with every delivery) make
the second copy a duplicate, not a second message.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

from nats.js.errors import NotFoundError

from mailcore.bus import names
from mailcore.bus.claimcheck import drop_body, load_body, publish_mail
from mailcore.bus.schemas import SchemaError, decode_mail


@dataclass
class HandoffStats:
    forwarded: int = 0


class Handoff:
    def __init__(self, local_js: Any, peer_js: Any) -> None:
        self.js, self.peer_js = local_js, peer_js
        self.stats = HandoffStats()
        self._sub: Any = None
        self._bodies: tuple[Any, Any] | None = None  # (the peer's, ours)

    async def pass_once(self, batch: int = 256, timeout: float = 1.0) -> int:
        """Move one batch of the peer's inbound mail here; the number moved."""
        if self._sub is None:
            self._sub = await self.peer_js.pull_subscribe_bind(
                durable=names.CONSUMER_DELIVERY, stream=names.STREAM_INBOUND
            )
        try:
            msgs = await self._sub.fetch(batch, timeout=timeout)
        except TimeoutError:
            return 0
        for i, msg in enumerate(msgs):
            try:
                await self._move(msg)
            except BaseException:
                # the rest of the batch back at once, not after the consumer's backoff
                # (120 s and more from the second delivery on); one already published here
                # comes again as a duplicate, dropped by its Nats-Msg-Id
                for left in msgs[i:]:
                    with contextlib.suppress(Exception):
                        await left.nak()
                raise
        return len(msgs)

    async def close(self) -> None:
        """Unsubscribe: a fetch still open on the peer's server would otherwise deliver
        into a subscription nobody reads, and those messages wait out the ack wait."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None

    async def _move(self, msg: Any) -> None:
        headers = dict(msg.headers or {})
        try:
            mail = decode_mail(msg.data)
        except SchemaError:  # poison: the store's consumer dead-letters it, as it would there
            await self.js.publish(names.SUBJECT_INBOUND, msg.data, headers=headers)
            await msg.ack_sync()
            return
        if self._bodies is None:
            self._bodies = (
                await self.peer_js.object_store(names.OBJ_BODIES),
                await self.js.object_store(names.OBJ_BODIES),
            )
        peer_bodies, local_bodies = self._bodies
        if mail.body_ref is not None:
            mail.body = await load_body(peer_bodies, mail)
        ref = mail.body_ref
        await publish_mail(self.js, local_bodies, names.SUBJECT_INBOUND, mail, mail.body)
        await msg.ack_sync()
        self.stats.forwarded += 1
        if ref is not None:
            mail.body_ref = ref
            with contextlib.suppress(NotFoundError):
                await drop_body(peer_bodies, mail)


__all__ = ["Handoff", "HandoffStats"]
