"""A webmail node SIGKILLed mid-request: two nodes behind one balancer, every account
logged in through it and reading its inbox in a loop while SMTP load delivers. The
balancer says when the victim has a request in flight; it is killed then. The requests it
was answering break (counted); each user's next request must succeed on the other node
with the same session (sessions live in NATS), and the restarted node serves the same
sessions again. The mail itself is checked as in every scenario."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import sys
import time
from dataclasses import dataclass, field

import httpx

from reliability.balancer import Balancer
from reliability.checker import Report
from reliability.cluster import HOST, Cluster
from reliability.scenarios import scenario
from reliability.scenarios.common import Context, cluster_run
from services.ctl import daemons

SESSION_KEY = base64.urlsafe_b64encode(b"reliability-webmail-session-key!").decode()
NODES = ("webmail0", "webmail1")


@dataclass
class Browser:
    """One user's browser: a session cookie and a new connection per request (so the
    balancer spreads one user's requests over both nodes)."""

    user: str
    password: str
    base: str
    client: httpx.AsyncClient = field(init=False)
    ok: int = 0
    broken: list[str] = field(default_factory=list)  # requests cut by the kill
    bad: list[str] = field(default_factory=list)  # wrong answers (lost session, errors)
    after_kill: list[bool] = field(default_factory=list)  # each request's success, post-kill

    def __post_init__(self) -> None:
        self.client = httpx.AsyncClient(
            base_url=self.base,
            timeout=30,
            follow_redirects=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )

    async def login(self) -> None:
        page = await self.client.get("/login")
        m = re.search(r'name="csrf" value="([^"]+)"', page.text)
        if m is None:
            raise RuntimeError(f"no login form: {page.status_code}")
        r = await self.client.post(
            "/login", data={"user": self.user, "password": self.password, "csrf": m.group(1)}
        )
        if r.status_code != 303:
            raise RuntimeError(f"{self.user}: login answered {r.status_code}")

    async def read_inbox(self, killed: bool) -> None:
        try:
            r = await self.client.get("/mail?f=INBOX")
        except httpx.TransportError as exc:
            when = "after" if killed else "before"
            self.broken.append(f"{self.user} ({when} the kill): {type(exc).__name__}: {exc}")
            if killed:
                self.after_kill.append(False)
            return
        good = r.status_code == 200 and 'name="csrf"' in r.text
        if good:
            self.ok += 1
        else:
            where = r.headers.get("location", "")
            self.bad.append(f"{self.user}: /mail answered {r.status_code} {where}".strip())
        if killed:
            self.after_kill.append(good)


def start_node(c: Cluster, name: str, port: int) -> None:
    env = c.env() | {
        "POSTERN_DATA": str(c.root / name),
        "POSTERN_HTTP_PORT": str(port),
        "POSTERN_WEBMAIL_OPS_PORT": str(daemons.free_port()),
        "POSTERN_IMAP_PORT": str(c.imap_port),
        "POSTERN_SUBMISSION_PORT": str(c.submission_port),
        "POSTERN_SUBMISSION_STARTTLS": "false",
        "POSTERN_WEBMAIL_SESSION_KEY": SESSION_KEY,
        "POSTERN_WEBMAIL_SPAMD_ENABLED": "false",
    }
    c.spawn(name, [sys.executable, "-m", "services.webmail"], env)
    if not daemons.wait_for_port(HOST, port, 60, lambda: c.alive(name)):
        raise RuntimeError(f"{name} did not start:\n{c.log_tail(name)}")


@scenario(
    "webmail-kill-mid-request",
    "webmail",
    "one of two webmail nodes behind a balancer SIGKILLed with a request in flight",
)
async def webmail_kill(ctx: Context) -> Report:
    name = "webmail-kill-mid-request"
    async with cluster_run(ctx, name) as run:
        c = run.cluster
        ports = [daemons.free_port() for _ in NODES]
        for node, port in zip(NODES, ports, strict=True):
            await asyncio.to_thread(start_node, c, node, port)
        lb = Balancer(ports, HOST)
        await lb.start()
        browsers = [Browser(u, p, f"http://{HOST}:{lb.port}") for u, p in c.users.items()]
        killed = asyncio.Event()
        stop = asyncio.Event()

        async def reader(b: Browser) -> None:
            while not stop.is_set():
                was_killed = killed.is_set()
                await b.read_inbox(was_killed)
                if was_killed and len(b.after_kill) >= 5:
                    await asyncio.sleep(0.2)

        try:
            for b in browsers:
                await b.login()
            run.start_load()
            tasks = [asyncio.create_task(reader(b)) for b in browsers]
            await asyncio.sleep(ctx.duration / 3)
            deadline = time.monotonic() + ctx.duration
            while not lb.in_flight(ports[0]) and time.monotonic() < deadline:
                await asyncio.sleep(0.001)
            mid_request = lb.in_flight(ports[0])
            c.kill(NODES[0])
            killed.set()
            await asyncio.sleep(ctx.duration / 3)
            await asyncio.to_thread(start_node, c, NODES[0], ports[0])  # back, same sessions
            served_before = sum(b.ok for b in browsers)
            await asyncio.sleep(ctx.duration / 3)
            stop.set()
            await asyncio.gather(*tasks)
            # the restarted node serves the sessions made before its death
            direct = []
            for b in browsers:
                async with httpx.AsyncClient(
                    base_url=f"http://{HOST}:{ports[0]}", cookies=b.client.cookies, timeout=30
                ) as h:
                    direct.append((await h.get("/mail?f=INBOX")).status_code)
            report = await run.finish()
        finally:
            stop.set()
            await lb.stop()
            for b in browsers:
                with contextlib.suppress(Exception):
                    await b.client.aclose()
        cut = lb.cut[ports[0]]
        requests = sum(b.ok + len(b.broken) + len(b.bad) for b in browsers)
        report.note(
            f"webmail: {requests} page requests, {sum(b.ok for b in browsers)} ok, "
            f"{cut} cut in flight by the kill, {sum(len(b.broken) for b in browsers)} "
            f"broken at the client, {sum(len(b.bad) for b in browsers)} wrong answers"
        )
        if not mid_request or cut == 0:
            report.fail("the webmail node was not killed with a request in flight")
        for b in browsers:
            for bad in b.bad[:3]:
                report.fail(f"wrong answer: {bad}")
            if not all(b.after_kill):  # every request begun after the kill must succeed
                report.fail(f"{b.user}: a request after the kill failed: {b.broken}")
            if len(b.after_kill) < 2:
                report.fail(f"{b.user}: fewer than two requests after the kill")
        if sum(b.ok for b in browsers) <= served_before:
            report.fail("no request served after the killed node came back")
        if any(code != 200 for code in direct):
            report.fail(f"the restarted node did not serve the old sessions: {direct}")
        return report
