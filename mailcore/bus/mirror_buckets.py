"""The mirror's streams and buckets on a store's NATS, made on first use by whichever
process needs one first (store, mirror, ``mailctl``): ``MIRROR_ROLE`` (mailcore.bus.roles),
``MIRROR_STATUS`` (the mirror's counters), ``MIRROR_BODIES`` (record bodies above 512 KiB),
``MIRROR_CONFLICTS`` and the queues ``MIRROR_TO_<peer>`` (mailcore.bus.mirror).

Each gets as many replicas as the mail path's inbound stream on the same server
(:func:`replicas`): R3 in compose's ``ha`` profile, where ``POSTERN_STREAM_REPLICAS=3``
declared ``MAIL_INBOUND``, R1 elsewhere. Reading the figure from the server, not from a
setting, gives every process the same answer whatever environment it was started with, so
the role record and the large bodies survive the loss of one NATS node as the mail does.
"""

from __future__ import annotations

from typing import Any

from nats.js import JetStreamContext, api
from nats.js.errors import BucketNotFoundError, NotFoundError

from mailcore.bus import names


async def replicas(js: JetStreamContext) -> int:
    """The inbound stream's replica count on this server; 1 before it exists."""
    try:
        info = await js.stream_info(names.STREAM_INBOUND)
    except NotFoundError:
        return 1
    return info.config.num_replicas or 1


async def key_value(js: JetStreamContext, bucket: str, *, history: int) -> Any:
    """The KV ``bucket``, made if missing."""
    try:
        return await js.key_value(bucket)
    except BucketNotFoundError:
        return await js.create_key_value(
            api.KeyValueConfig(
                bucket=bucket,
                history=history,
                storage=api.StorageType.FILE,
                replicas=await replicas(js),
            )
        )


async def bodies(js: JetStreamContext) -> Any:
    """The ``MIRROR_BODIES`` object store, made if missing."""
    try:
        return await js.object_store(names.OBJ_MIRROR_BODIES)
    except BucketNotFoundError:
        return await js.create_object_store(
            names.OBJ_MIRROR_BODIES,
            config=api.ObjectStoreConfig(
                bucket=names.OBJ_MIRROR_BODIES,
                storage=api.StorageType.FILE,
                replicas=await replicas(js),
            ),
        )


__all__ = ["bodies", "key_value", "replicas"]
