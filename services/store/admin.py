"""Requests operators send to the store over NATS (``mailctl user remove --purge``).

Request/reply, not a stream: when no store answers, ``mailctl`` says so and nothing is
removed. A purge takes three steps: ``mailctl`` asks whether a store knows the user
(``check``), removes the user from the directory itself (the store's NATS user may not
write the directory), then asks the store to erase the account's mail, which it does once
its own view of the directory no longer has the user (so no delivery recreates it). The
engine moves the account directory aside at once and deletes it in the background.
A request with the address alone (an older ``mailctl``) has the store remove the user too.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.directory import Directory
from mailcore.logging import get_logger
from mailcore.mailstore import MailStore

log = get_logger("admin")


GONE_WAIT = 10.0  # seconds the store waits to see the user leave its directory view


async def purge(directory: Directory, store: MailStore, address: str) -> dict[str, Any]:
    """Remove the user and erase the mail (the request of an older ``mailctl``)."""
    user = directory.user(address)
    if user is None:
        return {"error": f"no user {address}"}
    await directory.remove_user(user.address)
    await store.remove_account(user.account_id)
    log.warning("user removed and mail erased", user=user.address, account=user.account_id)
    return {"ok": True, "address": user.address, "account_id": user.account_id}


def check(directory: Directory, address: str) -> dict[str, Any]:
    user = directory.user(address)
    if user is None:
        return {"error": f"no user {address}"}
    return {"ok": True, "address": user.address, "account_id": user.account_id}


async def erase(
    directory: Directory, store: MailStore, address: str, account_id: str
) -> dict[str, Any]:
    """Erase ``account_id``'s mail once ``address`` has left this store's directory view."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + GONE_WAIT
    while (user := directory.user(address)) is not None:
        if user.account_id != account_id:
            return {"error": f"{address} now names another account; nothing erased"}
        if loop.time() > deadline:
            return {"error": f"{address} is still in the directory; nothing erased"}
        await asyncio.sleep(0.1)
    await store.remove_account(account_id)
    log.warning("mail erased", user=address, account=account_id)
    return {"ok": True, "address": address, "account_id": account_id}


async def serve_admin(bus: Bus, directory: Directory, store: MailStore) -> Any:
    """Subscribe the store's request subjects; returns the subscription (to unsubscribe)."""

    async def on_purge(msg: Any) -> None:
        try:
            request = json.loads(msg.data)
            address = str(request["address"])
            if request.get("check"):
                reply = check(directory, address)
            elif "account_id" in request:
                reply = await erase(directory, store, address, str(request["account_id"]))
            else:
                reply = await purge(directory, store, address)
        except (ValueError, KeyError, TypeError):
            reply = {"error": "bad request"}
        except Exception as exc:
            log.exception("purge failed")
            reply = {"error": f"purge failed: {type(exc).__name__}"}
        await msg.respond(json.dumps(reply).encode())

    # A queue group: with several store processes (a mirror) exactly one answers.
    return await bus.nc.subscribe(names.SUBJECT_STORE_PURGE, queue="store", cb=on_purge)
