"""Requests operators send to the store over NATS (``mailctl user remove --purge``).

Request/reply, not a stream: when no store answers, ``mailctl`` says so and nothing is
removed. A purge removes the user from the directory, then erases the account's mail
(the engine moves the account directory aside at once and deletes it in the background).
"""

from __future__ import annotations

import json
from typing import Any

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.mailstore import MailStore

log = get_logger("admin")


async def purge(directory: Directory, store: MailStore, address: str) -> dict[str, Any]:
    user = directory.user(address)
    if user is None:
        return {"error": f"no user {address}"}
    await directory.remove_user(user.address)
    await store.remove_account(user.account_id)
    log.warning("user removed and mail erased", user=user.address, account=user.account_id)
    return {"ok": True, "address": user.address, "account_id": user.account_id}


async def serve_admin(bus: Bus, directory: Directory, store: MailStore) -> Any:
    """Subscribe the store's request subjects; returns the subscription (to unsubscribe)."""

    async def on_purge(msg: Any) -> None:
        try:
            request = json.loads(msg.data)
            reply = await purge(directory, store, str(request["address"]))
        except (ValueError, KeyError, TypeError):
            reply = {"error": "bad request"}
        except Exception as exc:
            log.exception("purge failed")
            reply = {"error": f"purge failed: {type(exc).__name__}"}
        await msg.respond(json.dumps(reply).encode())

    # A queue group: with several store processes (a mirror) exactly one answers.
    return await bus.nc.subscribe(names.SUBJECT_STORE_PURGE, queue="store", cb=on_purge)
