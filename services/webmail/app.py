"""The webmail service: an HTTP app in front, IMAP to the store behind.

Webmail proper is a later capability. Until then this node serves one honest page that
says so and points at the IMAP endpoint, so the local cluster and compose already have
the process, its port and its health check.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
from collections.abc import Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse
from starlette.routing import Route

from mailcore.config import WebmailSettings
from mailcore.logging import get_logger
from mailcore.service import ServiceContext

log = get_logger("webmail")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service runner owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def build_app(settings: WebmailSettings) -> Starlette:
    imap = f"{settings.imap_host}:{settings.imap_port}"

    async def index(request: Request) -> HTMLResponse:
        body = (
            "<!doctype html><html lang=en><meta charset=utf-8><title>Postern</title>"
            "<h1>Postern</h1><p>Webmail is not built yet. Read your mail with any IMAP "
            f"client at <code>{html.escape(imap)}</code>.</p></html>"
        )
        return HTMLResponse(body)

    async def healthz(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok\n")

    return Starlette(routes=[Route("/", index), Route("/healthz", healthz)])


async def serve(ctx: ServiceContext[WebmailSettings]) -> None:
    s = ctx.settings
    config = uvicorn.Config(
        build_app(s), host=s.listen_host, port=s.http_port, log_config=None, access_log=False
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve())
    ctx.ops.add_check("http", lambda: server.started)
    log.info("webmail listening", port=s.http_port)
    await ctx.stopping.wait()
    server.should_exit = True
    await task
