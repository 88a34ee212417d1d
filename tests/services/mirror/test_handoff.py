"""The hand-off following the master (services/mirror/handoff.py), between two real
nats-servers: the slave side's inbound mail — inline and claim-checked — lands on the
master's MAIL_INBOUND with the same ids and bodies, and leaves the slave side."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.js.errors import NotFoundError

from mailcore.bus import names
from mailcore.bus.claimcheck import load_body, publish_mail
from mailcore.bus.schemas import MailMessage, decode_mail, new_message_id
from services.mirror.handoff import Handoff
from tests.conftest import fresh_bus
from tests.support.daemons import NatsServer


async def test_the_slave_sides_mail_moves_to_the_master(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    peer_nats = NatsServer(tmp_path / "peer-nats")
    peer_nats.start()
    here, peer = await fresh_bus(own_nats.url), await fresh_bus(peer_nats.url)
    try:
        sent: dict[str, bytes] = {}
        bodies = await peer.js.object_store(names.OBJ_BODIES)
        for size in (300, 700 * 1024):  # inline, and through the object store
            body = b"Subject: s\r\n\r\n" + b"x" * size + b"\r\n"
            msg = MailMessage(
                id=new_message_id(), mail_from="a@x.example", recipients=["b@y.test"], size=0
            )
            await publish_mail(peer.js, bodies, names.SUBJECT_INBOUND, msg, body)
            sent[msg.id] = body
        moved = 0
        handoff = Handoff(here.js, peer.js)
        while moved < 2:
            moved += await handoff.pass_once()
        assert handoff.stats.forwarded == 2

        local = await here.js.object_store(names.OBJ_BODIES)
        sub = await here.js.pull_subscribe_bind(
            durable=names.CONSUMER_DELIVERY, stream=names.STREAM_INBOUND
        )
        got = {}
        for m in await sub.fetch(2, timeout=5):
            mail = decode_mail(m.data)
            assert (m.headers or {}).get(names.HDR_MSG_ID) == mail.id
            got[mail.id] = await load_body(local, mail)
        assert got == sent
        assert (await peer.js.stream_info(names.STREAM_INBOUND)).state.messages == 0
        with pytest.raises(NotFoundError):  # no object left: the claim check was dropped
            await bodies.list(ignore_deletes=True)
    finally:
        await here.close()
        await peer.close()
        peer_nats.stop()
