"""A webmail app in the test's event loop, on the real bus and the real store's IMAP."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from pathlib import Path

import httpx
from starlette.applications import Starlette

from mailcore.bus.connect import Bus
from mailcore.config import WebmailSettings
from services.webmail.app import build_app, make_webmail
from services.webmail.runtime import Webmail
from tests.services.store.imap.conftest import ALICE, PASSWORD, ImapHarness

KEY = base64.urlsafe_b64encode(b"k" * 32).decode()


@dataclass
class Node:
    wm: Webmail
    app: Starlette

    def client(
        self, base: str = "http://webmail.test", peer: str = "198.51.100.20"
    ) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=self.app, client=(peer, 40000)),
            base_url=base,
            follow_redirects=False,
        )


async def node(bus: Bus, imap: ImapHarness, tmp: Path, **overrides: object) -> Node:
    values: dict[str, object] = {
        "data": tmp,
        "imap_port": imap.port,
        "submission_port": 1,
        "webmail_session_key": KEY,
        "webmail_spamd_enabled": False,
    }
    settings = WebmailSettings(**(values | overrides))  # type: ignore[arg-type]
    wm = await make_webmail(settings, bus)
    return Node(wm, build_app(wm))


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    assert m, html[:500]
    return m.group(1)


async def login(
    c: httpx.AsyncClient, user: str = ALICE, password: str = PASSWORD
) -> httpx.Response:
    page = await c.get("/login")
    return await c.post(
        "/login", data={"user": user, "password": password, "csrf": csrf_of(page.text)}
    )
