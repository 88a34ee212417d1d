"""Putting a body in the Object Store without reading it: what a filter may do.

nats-py's ``ObjectStore.put`` first reads the name's current metadata with a stream
message get, and a NATS user allowed that request can read any message of the bucket by
sequence number, every other mail's body included (permissions see the request's subject,
not its payload). Claim-check names are new for every message, so there is nothing to
read first: this writes the chunks and the metadata exactly as nats-py does (its
``get`` reads them back and checks the digest) and needs only publish rights on
``$O.<bucket>.>`` (mailcore.bus.permissions).

A publish retried under the same name (the filter's hand-off patience) replaces the
metadata; the first attempt's chunks then stay until the bucket's limits remove them.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.kv import MSG_ROLLUP_SUBJECT
from nats.js.object_store import (
    OBJ_CHUNKS_PRE_TEMPLATE,
    OBJ_DEFAULT_CHUNK_SIZE,
    OBJ_DIGEST_TEMPLATE,
    OBJ_META_PRE_TEMPLATE,
)
from nats.nuid import NUID

_NUID = NUID()  # chunk subjects: the same kind of unique id nats-py's put uses


async def put_new_object(
    js: JetStreamContext,
    bucket: str,
    name: str,
    data: bytes,
    *,
    chunk_size: int = OBJ_DEFAULT_CHUNK_SIZE,
) -> None:
    """Store ``data`` as object ``name`` of ``bucket`` (chunks, then the metadata that
    makes it visible), reading nothing."""
    nuid = _NUID.next().decode()
    chunks = OBJ_CHUNKS_PRE_TEMPLATE.format(bucket=bucket, obj=nuid)
    digest = hashlib.sha256()
    sent = 0
    for start in range(0, len(data), chunk_size):
        piece = data[start : start + chunk_size]
        digest.update(piece)
        await js.publish(chunks, piece)
        sent += 1
    info = js_api.ObjectInfo(
        name=name,
        bucket=bucket,
        nuid=nuid,
        size=len(data),
        chunks=sent,
        mtime=datetime.now(UTC).isoformat(),
        digest=OBJ_DIGEST_TEMPLATE.format(
            digest=base64.urlsafe_b64encode(digest.digest()).decode()
        ),
        options=js_api.ObjectMetaOptions(max_chunk_size=chunk_size),
    )
    meta = OBJ_META_PRE_TEMPLATE.format(
        bucket=bucket, obj=base64.urlsafe_b64encode(name.encode()).decode()
    )
    await js.publish(
        meta,
        json.dumps(info.as_dict()).encode(),
        headers={js_api.Header.ROLLUP: MSG_ROLLUP_SUBJECT},
    )
