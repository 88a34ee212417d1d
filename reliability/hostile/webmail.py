"""Webmail probes against a real node (services/webmail on loopback, the hostile cluster's
store behind it): hostile HTML in a delivered mail must be shown without script, event
handlers, ``javascript:`` URLs or remote images; a state-changing POST without the session's
CSRF token, with a wrong one or from a foreign Origin must be refused and change nothing;
the session and login cookies must be HttpOnly and SameSite, and Secure over HTTPS (behind
a TLS proxy, told by ``X-Forwarded-Proto`` from a trusted address)."""

from __future__ import annotations

import asyncio
import imaplib
import re
import time
from collections.abc import Sequence

import httpx

from reliability.cluster import HOST, Cluster
from reliability.ledger import HEADER
from reliability.load import new_rid, send_once
from reliability.report import Probe
from services.ctl import daemons
from services.webmail.security import LOGIN_CSRF_COOKIE, SESSION_COOKIE

NODE = "webmail-hostile"

# One hostile construct per row of the table: (what it is, the HTML, a marker only the
# construct carries, found in the shown body if and only if it survived).
HOSTILE_HTML: tuple[tuple[str, str, str], ...] = (
    ("<script> element", "<script>document.title='pwned-script'</script>", "pwned-script"),
    ("<img onerror=…>", '<img src="x" onerror="document.title=\'pwned-onerror\'">', "onerror"),
    ("<svg onload=…>", "<svg onload=\"document.title='pwned-svg'\"></svg>", "onload"),
    ("javascript: link", "<a href=\"javascript:document.title='pwned-js'\">x</a>", "javascript:"),
    ("remote image (tracker)", '<img src="http://tracker.remote.example/p.gif">', "tracker.remote"),
    ("<iframe> to elsewhere", '<iframe src="http://fr.remote.example/"></iframe>', "fr.remote"),
)
EXPECT_HTML = "gone from the shown body; its CSP allows no script, images data: only"


def html_mail(rid: str, sender: str, rcpt: str) -> bytes:
    body = "<html><body><p>Hello</p>" + "".join(h for _, h, _ in HOSTILE_HTML) + "</body></html>"
    return (
        f"From: <{sender}>\r\nTo: <{rcpt}>\r\nSubject: hostile html {rid}\r\n"
        f"Message-ID: <{rid}@reliability.test>\r\n{HEADER}: {rid}\r\nMIME-Version: 1.0\r\n"
        f"Content-Type: text/html; charset=utf-8\r\n\r\n{body}\r\n"
    ).encode()


def _csp_safe(csp: str) -> bool:
    """The body's Content-Security-Policy: no script source at all, images only inline
    until the reader asks for remote ones, and a sandbox (RFC-free: CSP Level 3)."""
    img = re.search(r"img-src([^;]*)", csp)
    return (
        "script-src" not in csp
        and "default-src 'none'" in csp
        and "sandbox" in csp
        and img is not None
        and "http" not in img.group(1)
    )


def judge_body(status: int, body: str, csp: str) -> list[Probe]:
    """One row per hostile construct: its marker must be gone from the shown body."""
    text = body.lower()
    shown = status == 200 and "hello" in text
    safe = _csp_safe(csp)
    out = []
    for what, html, marker in HOSTILE_HTML:
        survived = marker.lower() in text
        if not shown:
            got = f"body not shown: HTTP {status}"
        else:
            got = ("still there" if survived else "removed") + (
                "; CSP: no script, images data:" if safe else f"; CSP too open: {csp[:60]}"
            )
        out.append(
            Probe(
                "webmail HTML",
                f"HTML mail with {what}: {html[:45]}",
                EXPECT_HTML,
                got,
                shown and not survived and safe,
            )
        )
    return out


def judge_cookie(what: str, set_cookie: Sequence[str], name: str, https: bool) -> Probe:
    """``name``'s Set-Cookie: HttpOnly, SameSite=Lax or Strict, Secure iff over HTTPS (a
    Secure cookie over plain HTTP is dropped by the browser: no login at all)."""
    line = next((c for c in set_cookie if c.split("=", 1)[0].strip() == name), "")
    attrs = {a.strip().split("=", 1)[0].lower(): a.strip() for a in line.split(";")[1:]}
    samesite = attrs.get("samesite", "").split("=", 1)[-1].lower()
    ok = bool(line) and "httponly" in attrs and samesite in ("lax", "strict")
    ok = ok and (("secure" in attrs) == https)
    expected = f"HttpOnly, SameSite=Lax/Strict, {'Secure' if https else 'no Secure (plain HTTP)'}"
    got = "; ".join(a for k, a in attrs.items() if k in ("httponly", "samesite", "secure"))
    if line and "secure" not in attrs:
        got += "; no Secure"
    return Probe("webmail cookies", what, expected, got if line else f"no {name} cookie", ok)


def judge_csrf(what: str, status: int, changed: bool) -> Probe:
    """A forged state-changing POST: refused (403) and nothing changed."""
    return Probe(
        "webmail CSRF",
        what,
        "403, message not flagged",
        f"{status}, message {'FLAGGED' if changed else 'not flagged'}",
        status == 403 and not changed,
    )


def _uid_and_flags(port: int, user: str, password: str, rid: str) -> tuple[int, str]:
    """The delivered message's UID in INBOX and its flags (waits for the delivery)."""
    deadline = time.monotonic() + 60
    with imaplib.IMAP4(HOST, port, timeout=30) as imap:
        imap.login(user, password)
        while True:
            imap.select("INBOX", readonly=True)
            typ, data = imap.uid("SEARCH", "HEADER", HEADER, rid)
            found = data[0].split() if typ == "OK" and data and data[0] else []
            if found:
                uid = int(found[-1])
                typ, got = imap.uid("FETCH", str(uid), "(FLAGS)")
                return uid, str(got[0])
            if time.monotonic() > deadline:
                raise TimeoutError(f"{rid} was not delivered within 60 s")
            time.sleep(0.3)


def _csrf_of(html: str) -> str:
    m = re.search(r'name="csrf" value="([^"]+)"', html)
    if m is None:
        raise RuntimeError("no csrf field in the page")
    return m.group(1)


def _cookie(response: httpx.Response, name: str) -> str | None:
    for line in response.headers.get_list("set-cookie"):
        key, _, rest = line.partition("=")
        if key.strip() == name:
            return rest.split(";", 1)[0]
    return None


async def _login(client: httpx.AsyncClient, user: str, password: str) -> httpx.Response:
    """The login form, then its POST with the form's token and cookie (sent by hand: a
    Secure cookie is not sent back over the plain HTTP between the proxy and the node)."""
    page = await client.get("/login")
    form_cookie = _cookie(page, LOGIN_CSRF_COOKIE) or ""
    return await client.post(
        "/login",
        data={"user": user, "password": password, "csrf": _csrf_of(page.text)},
        headers={"cookie": f"{LOGIN_CSRF_COOKIE}={form_cookie}"},
    )


async def webmail_probes(c: Cluster, user: str, password: str) -> list[Probe]:
    """Every webmail probe against a node started on ``c`` (stopped with it)."""
    from reliability.scenarios.webmail import start_node

    port = daemons.free_port()
    await asyncio.to_thread(start_node, c, NODE, port)
    rid = new_rid("html")
    step, code, text = await send_once(
        HOST, c.smtp_port, "mallory@remote.example", [user], html_mail(rid, "m@r.example", user)
    )
    if code != 250:
        raise RuntimeError(f"the hostile HTML mail was not accepted: {step} {code} {text}")
    uid, _ = await asyncio.to_thread(_uid_and_flags, c.imap_port, user, password, rid)
    out: list[Probe] = []
    base = f"http://{HOST}:{port}"
    async with httpx.AsyncClient(base_url=base, timeout=30, follow_redirects=False) as b:
        # cookies, plain HTTP: the login form's token cookie, then the session's
        form = await b.get("/login")
        out.append(
            judge_cookie(
                "login form cookie over HTTP",
                form.headers.get_list("set-cookie"),
                LOGIN_CSRF_COOKIE,
                https=False,
            )
        )
        # a login POST without the form's cookie (a cross-site login) is refused
        forged = await b.post(
            "/login",
            data={"user": user, "password": password, "csrf": "x" * 43},
            headers={"cookie": f"{LOGIN_CSRF_COOKIE}={'y' * 43}"},
        )
        forged_session = _cookie(forged, SESSION_COOKIE) is not None
        out.append(
            Probe(
                "webmail CSRF",
                "POST /login with a token not matching the form's cookie",
                "403, no session cookie",
                f"{forged.status_code}, "
                + ("a session cookie set" if forged_session else "no session cookie"),
                forged.status_code == 403 and not forged_session,
            )
        )
        b.cookies.clear()
        session = await _login(b, user, password)
        if session.status_code != 303:
            raise RuntimeError(f"webmail login answered {session.status_code}")
        out.append(
            judge_cookie(
                "session cookie over HTTP",
                session.headers.get_list("set-cookie"),
                SESSION_COOKIE,
                https=False,
            )
        )
        # hostile HTML
        shown = await b.get(f"/body?f=INBOX&uid={uid}")
        out += judge_body(
            shown.status_code, shown.text, shown.headers.get("content-security-policy", "")
        )
        # CSRF: a logged-in browser tricked into posting "flag this message"
        flag = {"f": "INBOX", "uid": str(uid), "action": "flag"}
        page = await b.get("/mail?f=INBOX")
        token = _csrf_of(page.text)
        forgeries: list[tuple[str, dict[str, str], dict[str, str]]] = [
            ("POST /act (flag) without a CSRF token", flag, {}),
            ("POST /act (flag) with a wrong CSRF token", flag | {"csrf": "x" * 43}, {}),
            (
                "POST /act (flag), right token, Origin: https://evil.example",
                flag | {"csrf": token},
                {"origin": "https://evil.example"},
            ),
        ]
        for what, data, headers in forgeries:
            r = await b.post("/act", data=data, headers=headers)
            _, flags = await asyncio.to_thread(_uid_and_flags, c.imap_port, user, password, rid)
            out.append(judge_csrf(what, r.status_code, "\\Flagged" in flags))
        # the control: the same POST with the right token and no foreign Origin works, so
        # the refusals above were the token's and the Origin's doing
        r = await b.post("/act", data=flag | {"csrf": token})
        _, flags = await asyncio.to_thread(_uid_and_flags, c.imap_port, user, password, rid)
        flagged = "\\Flagged" in flags
        out.append(
            Probe(
                "webmail CSRF",
                "the same POST with the right token, same origin (control)",
                "303, message flagged",
                f"{r.status_code}, message {'flagged' if flagged else 'NOT flagged'}",
                r.status_code == 303 and flagged,
            )
        )
    # cookies over HTTPS: a TLS proxy on a trusted address says so in X-Forwarded-Proto
    async with httpx.AsyncClient(
        base_url=base, timeout=30, headers={"x-forwarded-proto": "https"}
    ) as tls:
        session = await _login(tls, user, password)
        out.append(
            judge_cookie(
                "session cookie over HTTPS (X-Forwarded-Proto from the proxy)",
                session.headers.get_list("set-cookie"),
                SESSION_COOKIE,
                https=True,
            )
        )
    return out
