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


async def test_a_failed_move_gives_the_rest_back_at_once(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """This store's NATS fails in the middle of a hand-off: the fetched messages are naked
    (redelivered at once, to the next pass) instead of waiting out the consumer's ack wait
    and, from their second delivery on, its backoff of minutes."""
    peer_nats = NatsServer(tmp_path / "peer-nats")
    peer_nats.start()
    here, peer = await fresh_bus(own_nats.url), await fresh_bus(peer_nats.url)
    gone = await fresh_bus(own_nats.url)
    try:
        bodies = await peer.js.object_store(names.OBJ_BODIES)
        for _ in range(3):
            msg = MailMessage(
                id=new_message_id(), mail_from="a@x.example", recipients=["b@y.test"], size=0
            )
            await publish_mail(
                peer.js, bodies, names.SUBJECT_INBOUND, msg, b"Subject: s\r\n\r\nx\r\n"
            )
        await gone.close()  # this store's NATS, as the hand-off sees it: gone
        failing = Handoff(gone.js, peer.js)
        with pytest.raises(Exception):  # noqa: B017 (whatever nats-py raises for a closed link)
            while not await failing.pass_once():
                pass
        await failing.close()
        await peer.nc.flush()
        handoff = Handoff(here.js, peer.js)
        # back at once: the next pass finds all three (held, they would come after a minute)
        assert await handoff.pass_once(timeout=10) == 3
        await handoff.close()
        assert (await peer.js.stream_info(names.STREAM_INBOUND)).state.messages == 0
    finally:
        await here.close()
        await peer.close()
        peer_nats.stop()
