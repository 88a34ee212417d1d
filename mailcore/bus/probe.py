"""Can JetStream store a message now? A write to the probe stream says.

JetStream that ran out of disk switches itself off ("JetStream out of File resources, will
be DISABLED"), and a stream whose block write failed may go on refusing writes after the
space is back; neither shows on the client connection, which stays up. A publish to the
one-message probe stream (file storage, like the mail streams) answers for both, and costs
a few bytes. Used by the filter's ``/healthz`` (``bus``) and by ``mailctl up``'s watch of
its nats-server (services.ctl.natswatch).
"""

from __future__ import annotations

import asyncio
import time

from nats.js import JetStreamContext

from mailcore.bus import names


async def can_store(js: JetStreamContext, timeout: float = 2.0) -> bool:
    """True when the probe stream acknowledged a write within ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            await js.publish(names.SUBJECT_PROBE, str(time.time()).encode(), timeout=timeout)
        return True
    except Exception:
        return False
