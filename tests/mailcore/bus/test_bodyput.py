"""mailcore.bus.bodyput: a body written without reading anything is the same object
nats-py's Object Store reads back (chunks, size, digest checked by ``get``)."""

from __future__ import annotations

import os

from mailcore.bus import names
from mailcore.bus.bodyput import put_new_object
from mailcore.bus.connect import Bus


async def test_written_object_reads_back_through_nats_py(bus: Bus) -> None:
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    data = os.urandom(700 * 1024 + 17)  # six chunks, the last one short
    await put_new_object(bus.js, names.OBJ_BODIES, "mail.inbound.bodyput-1", data)
    got = await bodies.get("mail.inbound.bodyput-1")
    assert got.data == data
    assert got.info.size == len(data)
    assert got.info.chunks == 6
    # deleting it the ordinary way works too (the store drops bodies after commit)
    await bodies.delete("mail.inbound.bodyput-1")
    assert (await bodies.get_info("mail.inbound.bodyput-1", show_deleted=True)).deleted


async def test_empty_body(bus: Bus) -> None:
    bodies = await bus.js.object_store(names.OBJ_BODIES)
    await put_new_object(bus.js, names.OBJ_BODIES, "mail.inbound.bodyput-empty", b"")
    got = await bodies.get("mail.inbound.bodyput-empty")
    assert got.data == b""
