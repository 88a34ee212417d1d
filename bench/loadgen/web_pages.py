"""W7 load: N browsers, each logged in with its own session, alternately open the Inbox
(first page, 50 rows) and a message, as fast as answers come; per level of concurrency
the latency of each page kind. Speaks to Postern's webmail or to Roundcube.

Prints one JSON object: {"levels": {"10": {"list": {"p50": ms, "p95": ms, "n": k},
"message": {...}}, ...}, "errors": n}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import re
import time
from typing import Any

import httpx

TOKEN = re.compile(r'name="_token" value="([^"]+)"')
CSRF = re.compile(r'name="csrf" value="([^"]+)"')
REQUEST_TOKEN = re.compile(r'"request_token":"([^"]+)"')


class Browser:
    def __init__(self, kind: str, base: str, user: str, password: str) -> None:
        self.kind = kind
        self.http = httpx.AsyncClient(base_url=base, timeout=60, follow_redirects=False)
        self.user, self.password = user, password
        self.rc_token = ""

    async def login(self) -> None:
        if self.kind == "postern":
            page = await self.http.get("/login")
            m = CSRF.search(page.text)
            assert m, "no login form"
            r = await self.http.post(
                "/login", data={"user": self.user, "password": self.password, "csrf": m.group(1)}
            )
            if r.status_code != 303:
                raise RuntimeError(f"postern login: {r.status_code}")
            return
        page = await self.http.get("/?_task=login")
        m = TOKEN.search(page.text)
        assert m, "no Roundcube login form"
        r = await self.http.post(
            "/?_task=login",
            data={
                "_token": m.group(1),
                "_task": "login",
                "_action": "login",
                "_timezone": "UTC",
                "_url": "",
                "_user": self.user,
                "_pass": self.password,
            },
        )
        if r.status_code not in (301, 302):
            raise RuntimeError(f"roundcube login: {r.status_code}")
        mail = await self.http.get("/?_task=mail&_mbox=INBOX")
        t = REQUEST_TOKEN.search(mail.text)
        if t is None:
            raise RuntimeError("roundcube: no request token after login")
        self.rc_token = t.group(1)

    async def inbox(self) -> httpx.Response:
        if self.kind == "postern":
            return await self.http.get("/mail?f=INBOX")
        return await self.http.get(
            "/?_task=mail&_action=list&_mbox=INBOX&_page=1&_remote=1",
            headers={"X-Roundcube-Request": self.rc_token},
        )

    async def message(self, uid: int) -> httpx.Response:
        if self.kind == "postern":
            return await self.http.get(f"/read?f=INBOX&uid={uid}")
        return await self.http.get(f"/?_task=mail&_action=show&_uid={uid}&_mbox=INBOX")


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else 0.0


async def level(args: argparse.Namespace, users: int, seed: int) -> tuple[dict[str, Any], int]:
    browsers = [Browser(args.kind, args.base, args.user, args.password) for _ in range(users)]
    await asyncio.gather(*(b.login() for b in browsers))
    lat: dict[str, list[float]] = {"list": [], "message": []}
    errors = 0
    requests = 0  # every page asked for, warm-up visits included (CPU per page)
    deadline = time.monotonic() + args.duration

    async def visit(b: Browser, rng: random.Random) -> None:
        # one unmeasured visit (warm caches, pooled connections), then measured visits
        # until the deadline, at least two per browser however slow the answers are
        nonlocal errors, requests
        visits = 0
        while visits < 3 or time.monotonic() < deadline:
            for kind in ("list", "message"):
                t0 = time.monotonic()
                try:
                    r = await (
                        b.inbox() if kind == "list" else b.message(rng.randint(1, args.uids))
                    )
                    ok = r.status_code == 200
                except httpx.HTTPError:
                    ok = False
                t1 = time.monotonic()
                requests += 1
                if not ok:
                    errors += 1
                elif visits > 0:
                    lat[kind].append((t1 - t0) * 1000)
            visits += 1

    await asyncio.gather(
        *(visit(b, random.Random(seed * 1000 + i)) for i, b in enumerate(browsers))
    )
    for b in browsers:
        await b.http.aclose()
    out: dict[str, Any] = {
        k: {"p50": pct(v, 0.5), "p95": pct(v, 0.95), "n": len(v)} for k, v in lat.items()
    }
    out["requests"] = requests
    return out, errors


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--kind", choices=["postern", "roundcube"], required=True)
    ap.add_argument("--base", required=True)
    ap.add_argument("--user", required=True)
    ap.add_argument("--password", required=True)
    ap.add_argument("--levels", default="1,10,50")
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--uids", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    levels: dict[str, Any] = {}
    errors = 0
    for n in (int(x) for x in args.levels.split(",")):
        levels[str(n)], e = await level(args, n, args.seed)
        errors += e
    print(json.dumps({"levels": levels, "errors": errors}))


if __name__ == "__main__":
    asyncio.run(main())
