"""The webmail service: Starlette + uvicorn + Jinja2, server-rendered, in front of the
store's IMAP and the filters' submission port.

Nodes are stateless: sessions live in the JetStream KV bucket SESSIONS (sessions.py), so
operators run several behind a load balancer; each node pools IMAP logins per user.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailcore import metrics
from mailcore.bus import names
from mailcore.bus.connect import Bus
from mailcore.config import WebmailSettings
from mailcore.logging import get_logger
from mailcore.loginguard import LoginGuard, Policy
from mailcore.service import ServiceContext
from mailcore.tls import client_context_trusting
from services.webmail.compose import Submission
from services.webmail.imap_gateway import ROUND_TRIPS, Upstream
from services.webmail.list_rows import ListRows
from services.webmail.listen import listen_sockets
from services.webmail.pool import ImapPool
from services.webmail.runtime import TEMPLATES, Webmail, url
from services.webmail.security import DEFAULT_HEADERS
from services.webmail.sessions import SessionStore, load_key
from services.webmail.views import auth, compose, events, folders, mailbox, message, settings
from services.webmail.workers import HttpWorkers, worker_count

log = get_logger("webmail")
STATIC = Path(__file__).resolve().parent / "static"
PARENT_CHECK = 1.0  # seconds between a worker's looks for the node's service process


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the service runner owns SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Instrument:
    """Per request: latency and IMAP round trips by route (mailcore.metrics), and the
    security headers every response carries unless it set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        counter = [0]
        token = ROUND_TRIPS.set(counter)
        start = time.perf_counter()
        status = [500]

        async def send_wrapper(msg: Message) -> None:
            if msg["type"] == "http.response.start":
                status[0] = msg["status"]
                present = {k.lower() for k, _ in msg.get("headers", [])}
                extra = [
                    (k.encode(), v.encode())
                    for k, v in DEFAULT_HEADERS.items()
                    if k.encode() not in present
                ]
                msg["headers"] = list(msg.get("headers", [])) + extra
            await send(msg)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            ROUND_TRIPS.reset(token)
            route = scope.get("route")
            name = getattr(route, "path", "other") if route is not None else "other"
            if name != "/events":
                metrics.WEBMAIL_PAGE_SECONDS.labels(name).observe(time.perf_counter() - start)
                metrics.WEBMAIL_IMAP_ROUND_TRIPS.labels(name).observe(counter[0])
            metrics.WEBMAIL_REQUESTS.labels(name, str(status[0])).inc()


async def healthz(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok\n")


ROUTES = [
    Route("/", mailbox.index),
    Route("/login", auth.login_form, methods=["GET"]),
    Route("/login", auth.login, methods=["POST"]),
    Route("/logout", auth.logout, methods=["POST"]),
    Route("/logout-everywhere", auth.logout_everywhere, methods=["POST"]),
    Route("/mail", mailbox.mailbox, methods=["GET"]),
    Route("/act", mailbox.act, methods=["POST"]),
    Route("/read", message.read, methods=["GET"]),
    Route("/body", message.body, methods=["GET"]),
    Route("/conversation", message.conversation, methods=["GET"]),
    Route("/part", message.part, methods=["GET"]),
    Route("/compose", compose.compose_form, methods=["GET"]),
    Route("/compose", compose.compose_post, methods=["POST"]),
    Route("/folders", folders.folders_page, methods=["GET"]),
    Route("/folders", folders.folders_post, methods=["POST"]),
    Route("/settings", settings.settings_page, methods=["GET"]),
    Route("/settings", settings.settings_post, methods=["POST"]),
    Route("/events", events.events, methods=["GET"]),
    Route("/healthz", healthz),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
]


def upstream_tls(s: WebmailSettings) -> ssl.SSLContext:
    ca = s.upstream_ca or (s.cert_path if s.cert_path.exists() else None)
    if ca is not None:
        return client_context_trusting(ca)
    return ssl.create_default_context()


def build_app(wm: Webmail) -> Starlette:
    app = Starlette(routes=ROUTES)
    app.state.webmail = wm
    app.add_middleware(Instrument)
    return app


async def make_webmail(s: WebmailSettings, bus: Bus) -> Webmail:
    js = bus.js
    kv = await js.key_value(names.KV_SESSIONS)
    tls = upstream_tls(s)
    upstream = Upstream(s.imap_host, s.imap_port, tls if s.imap_tls == "implicit" else None)
    return Webmail(
        settings=s,
        sessions=SessionStore(
            kv,
            load_key(s.webmail_session_key, s.data),
            idle_timeout=s.webmail_session_idle,
            max_age=s.webmail_session_max_age,
        ),
        pool=ImapPool(upstream, idle_timeout=s.webmail_imap_idle),
        submission=Submission(
            s.submission_host, s.submission_port, tls if s.submission_starttls else None
        ),
        guard=await LoginGuard.open(js, Policy.from_settings(s, s.auth_fail_delay)),
        kv=kv,
        js=js,
        nc=bus.nc,
        templates=make_templates(),
    )


def make_templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(TEMPLATES))
    env = templates.env
    env.auto_reload = False  # the templates ship with the code: no file checks per page
    env.globals["list_row"] = ListRows(env.get_template("_row.html"), url)
    return templates


async def serve(ctx: ServiceContext[WebmailSettings], *, parent: int | None = None) -> None:
    """The node's webmail; with ``webmail_workers`` > 1 the service process also starts the
    node's other processes (services/webmail/workers.py), which run this with ``parent``:
    the service process's id, without which they stop."""
    s = ctx.settings
    # registered first: /healthz is not ok before HTTP is served (an early probe would
    # otherwise see only the bus connection)
    servers: list[_Server] = []
    ctx.ops.add_check("http", lambda: bool(servers) and servers[0].started)
    bus = await ctx.connect_bus()
    wm = await make_webmail(s, bus)
    wm.pool.start()
    ctx.on_cleanup(wm.pool.close)
    processes = 1 if parent is not None else worker_count(s.webmail_workers)
    sockets = listen_sockets(
        s.listen_host,
        s.http_port,
        reuse_port=parent is not None or processes > 1,
        backlog=s.listen_backlog,
    )
    config = uvicorn.Config(
        build_app(wm),
        host=s.listen_host,
        port=s.http_port,
        log_config=None,
        access_log=False,
        proxy_headers=True,
        forwarded_allow_ips=s.webmail_forwarded_allow_ips,
        timeout_graceful_shutdown=5,
        backlog=s.listen_backlog,
    )
    server = _Server(config)
    servers.append(server)
    task = asyncio.create_task(server.serve(sockets=sockets))
    port = sockets[0].getsockname()[1]
    if processes > 1:
        workers = HttpWorkers(processes - 1, port=port)
        await workers.start()
        ctx.on_cleanup(workers.stop)
    orphan = None
    if parent is not None:
        orphan = asyncio.create_task(_stop_without(parent, ctx.stopping), name="parent-watch")
    log.info("webmail listening", port=port, worker=parent is not None)
    await ctx.stopping.wait()
    server.should_exit = True
    await task
    if orphan is not None:
        orphan.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await orphan


async def _stop_without(parent: int, stopping: asyncio.Event) -> None:
    """A worker stops once the node's service process is gone (killed without stopping
    its workers, where PR_SET_PDEATHSIG is not available)."""
    while os.getppid() == parent:  # noqa: ASYNC110 (no event for a parent's end)
        await asyncio.sleep(PARENT_CHECK)
    log.warning("webmail service process gone; worker stopping")
    stopping.set()
